"""Test-only helpers around the reference package `sam2==1.1.0`, used as an oracle.

Nothing here is shipped: the reference builds seeded random-weight models at small input sizes, which are saved
in the official checkpoint format ({"model": state_dict}) and loaded by our own builders.
"""

from __future__ import annotations

import os

import pytest
import torch

REF_CONFIGS = {
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_large": "configs/sam2/sam2_hiera_l.yaml",
}


def require_reference():
    """Import the reference package or skip the calling test."""
    from reference_shims import install

    install()
    return pytest.importorskip("sam2.build_sam", reason="reference package sam2==1.1.0 is not installed")


def _overrides(image_size: int, extra: list[str] | None) -> list[str]:
    ov = [f"++model.image_size={image_size}"]
    return ov + list(extra or [])


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Re-draw every parameter and buffer with seeded noise whose scale keeps activations informative.

    Default initialisations leave several heads near zero (e.g. the object-score MLP, layer-scale gammas of 1e-6),
    which would make a parity test vacuous; this gives every tensor a scale comparable to a trained model.
    """
    g = torch.Generator().manual_seed(seed)
    for name, t in sorted(model.state_dict(keep_vars=True).items()):
        if not torch.is_floating_point(t):
            continue
        if name.endswith("norm.weight") or ".norm" in name and name.endswith("weight"):
            t.copy_(1.0 + 0.1 * torch.randn(t.shape, generator=g))
        elif name.endswith("bias"):
            t.copy_(0.02 * torch.randn(t.shape, generator=g))
        elif name.endswith("gamma"):
            t.copy_(0.5 + 0.1 * torch.randn(t.shape, generator=g))
        elif t.dim() >= 2:
            fan_in = t[0].numel() if t.dim() > 1 else t.numel()
            t.copy_(torch.randn(t.shape, generator=g) / max(fan_in, 1) ** 0.5)
        else:
            t.copy_(0.1 * torch.randn(t.shape, generator=g))
    # Random object-score heads often predict "absent" on every tracked frame, which turns every propagated mask
    # into the constant -1024 and makes a video comparison vacuous: bias the score towards "present".
    for name, t in model.state_dict(keep_vars=True).items():
        if name.endswith("pred_obj_score_head.layers.2.bias"):
            t.fill_(4.0)


def build_reference_model(name: str, image_size: int = 256, seed: int = 0, extra_overrides=None):
    """Reference SAM2Base (image model) with seeded random weights; postprocessing as `build_sam2` defaults."""
    bs = require_reference()
    model = bs.build_sam2(
        REF_CONFIGS[name], ckpt_path=None, device="cpu", mode="eval",
        hydra_overrides_extra=_overrides(image_size, extra_overrides),
    )
    randomize_(model, seed)
    return model.eval()


def build_reference_video_predictor(name: str, image_size: int = 256, seed: int = 0, extra_overrides=None,
                                    **kwargs):
    bs = require_reference()
    predictor = bs.build_sam2_video_predictor(
        REF_CONFIGS[name], ckpt_path=None, device="cpu", mode="eval",
        hydra_overrides_extra=_overrides(image_size, extra_overrides), **kwargs,
    )
    randomize_(predictor, seed)
    return predictor.eval()


def save_official_checkpoint(model: torch.nn.Module, path: str | os.PathLike) -> str:
    """Write `model` as Meta ships checkpoints: a dict with one entry "model" holding the state_dict."""
    torch.save({"model": model.state_dict()}, path)
    return str(path)
