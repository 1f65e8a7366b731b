"""Image-mode SAM 2 training (`train --image-data`): the image loss falls, resuming is bit-exact, bad data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from efficient_sam2.cli import main
from efficient_sam2.data.images import write_images
from efficient_sam2.data.writer import write_dataset
from efficient_sam2.training.data import TrainingDataError
from efficient_sam2.training.images import ImageDataset, image_losses
from efficient_sam2.training.sam2_trainer import SAM2TrainConfig, SAM2Trainer, SAM2TrainingError
from train_resume import full_and_resumed

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("img_train")
    write_dataset(root / "videos", videos=1, split="train", seed=3, frames=4, size=(64, 64), progress=False)
    write_images(root / "images", 3, "train", 0, size=(64, 64), progress=False)
    return str(root / "videos"), str(root / "images")


def _config(data, out, **kw):
    base = dict(model="micro", data=data[0], image_data=data[1], out=str(out), image_size=64, steps=4,
                batch_size=1, clip_len=2, warmup_steps=1, save_every=2, lr=2e-3, image_batch=2, image_instances=3)
    base.update(kw)
    return SAM2TrainConfig(**base)


def test_image_batches_are_a_function_of_seed_and_step(data):
    ds = ImageDataset(data[1], 64)
    assert len(ds) == 9
    a, b, c = ds.sample(2, 3, 0, 5), ds.sample(2, 3, 0, 5), ds.sample(2, 3, 0, 6)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not (torch.equal(a.images, c.images) and torch.equal(a.masks, c.masks))
    assert a.images.shape == (2, 3, 64, 64) and a.masks.shape == (6, 1, 64, 64)
    assert a.image_index.tolist() == [0, 0, 0, 1, 1, 1]
    assert (a.masks.flatten(1).sum(1) > 0).all()  # every instance has pixels


def test_image_losses_reach_every_part_of_the_decoder(data, tmp_path):
    trainer = SAM2Trainer(_config(data, tmp_path / "unused"), progress=False)
    batch = trainer.images.sample(2, 3, 0, 0)
    for box_prob in (0.0, 1.0):  # clicks (three outputs, the best one supervised) and boxes (one output)
        trainer.model.zero_grad(set_to_none=True)
        first, second = image_losses(trainer.model, batch, np.random.default_rng(0), box_prob=box_prob)
        assert all(torch.isfinite(t.total) for t in (first, second))
        (first.total + second.total).backward()
        head = trainer.model.sam_mask_decoder.iou_prediction_head
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
        assert trainer.model.image_encoder.trunk.patch_embed.proj.weight.grad.abs().sum() > 0


def test_a_few_image_steps_lower_the_image_loss(data, tmp_path):
    cfg = _config(data, tmp_path / "run", steps=12, lr=3e-3, warmup_steps=0, image_weight=1.0)
    trainer = SAM2Trainer(cfg, progress=False)
    with torch.no_grad():
        before = [float(trainer.image_loss(s)) for s in range(3)]
    for _ in range(cfg.steps):
        rec = trainer.train_step()
        assert rec.image > 0
    with torch.no_grad():
        after = [float(trainer.image_loss(s)) for s in range(3)]
    assert sum(after) < 0.8 * sum(before), (before, after)


def test_interrupted_image_run_resumed_equals_uninterrupted(data, tmp_path):
    full, resumed = full_and_resumed(lambda out: _config(data, out), tmp_path)
    assert [(r.loss, r.image) for r in full.history] == [(r.loss, r.image) for r in resumed.history]
    # the image settings are part of the run
    with pytest.raises(SAM2TrainingError, match="image_instances"):
        SAM2Trainer(_config(data, tmp_path / "cut", image_instances=4), resume=True, progress=False)


def test_bad_image_data(data, tmp_path, capsys):
    with pytest.raises(TrainingDataError, match="JPEGImages/ and Annotations/"):
        ImageDataset(tmp_path, 64)
    (tmp_path / "x" / "JPEGImages" / "s").mkdir(parents=True)
    (tmp_path / "x" / "Annotations").mkdir()
    (tmp_path / "x" / "JPEGImages" / "s" / "a.jpg").write_bytes(b"")
    with pytest.raises(TrainingDataError, match="no annotation"):
        ImageDataset(tmp_path / "x", 64)
    with pytest.raises(SAM2TrainingError, match="image_box_prob"):
        _config(data, tmp_path / "o", image_box_prob=1.5)
    rc = main(["train", "--model", "micro", "--data", data[0], "--image-data", str(tmp_path), "--out",
               str(tmp_path / "run"), "--image-size", "64", "--clip-len", "2", "--steps", "1", "--no-progress"])
    assert rc == 2 and "JPEGImages/ and Annotations/" in capsys.readouterr().err


def test_decoder_lr_scale(data, tmp_path):
    trainer = SAM2Trainer(_config(data, tmp_path / "run", decoder_lr_scale=4.0, warmup_steps=0), progress=False)
    rec = trainer.train_step()
    scaled = [g for g in trainer.optimizer.param_groups if g["lr_scale"] == 4.0]
    plain = [g for g in trainer.optimizer.param_groups if g["lr_scale"] == 1.0]
    assert scaled and plain and all(g["lr"] == 4.0 * rec.lr for g in scaled) and all(g["lr"] == rec.lr for g in plain)
    ids = {id(p) for g in scaled for p in g["params"]}
    for name, p in trainer.model.named_parameters():
        assert (id(p) in ids) == name.startswith(("sam_mask_decoder.", "sam_prompt_encoder.")), name
