"""Shared by the SAM 2 training tests: a run interrupted and resumed against the same run left uninterrupted."""

from __future__ import annotations

import pytest
import torch

from efficient_sam2.training.sam2_trainer import SAM2Trainer


def full_and_resumed(config, tmp_path, stop_at: int = 3):
    """Train `config(tmp_path / "full")` to the end, and `config(tmp_path / "cut")` interrupted after step
    `stop_at` then resumed; assert the two end with equal weights. Returns (full, resumed) trainers."""
    full = SAM2Trainer(config(tmp_path / "full"), progress=False)
    full.train()
    stopped = SAM2Trainer(config(tmp_path / "cut"), progress=False)

    def interrupt(rec):
        if rec.step == stop_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stopped.train(callback=interrupt)
    resumed = SAM2Trainer(config(tmp_path / "cut"), resume=True, progress=False)
    assert resumed.step == stop_at
    resumed.train()
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    return full, resumed
