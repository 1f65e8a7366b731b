"""Builders and checkpoint loading with strict, readable errors. Nothing is ever downloaded here."""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch

from .configs import MODEL_CONFIGS, SAM2Config, get_config
from .modeling.sam2 import SAM2Model

__all__ = [
    "CheckpointError",
    "build_sam2",
    "build_sam2_video_predictor",
    "build_sam2_image_predictor",
    "load_checkpoint",
    "read_state_dict",
    "identify_checkpoint",
]

# Options that configure the video predictor rather than the network.
_PREDICTOR_OPTIONS = ("fill_hole_area", "non_overlap_masks")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded into the requested model."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model state_dict stored in an official checkpoint ({"model": state_dict}) or a bare state_dict."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint path is a folder, not a file: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or not a torch file
        raise CheckpointError(f"could not read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path} is not a SAM 2 checkpoint: expected a dict with a 'model' state_dict (as Meta ships them) "
            "or a state_dict of tensors"
        )
    sd = dict(obj)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def identify_checkpoint(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """Best guess of the registry model a state_dict belongs to (None if it is not a SAM 2 checkpoint)."""
    pe = state_dict.get("image_encoder.trunk.pos_embed")
    if pe is None or pe.dim() != 4:
        return None
    blocks = {k.split(".")[3] for k in state_dict if k.startswith("image_encoder.trunk.blocks.")}
    depth = len(blocks)
    version = "2.1" if "no_obj_embed_spatial" in state_dict else "2"
    for name, cfg in MODEL_CONFIGS.items():
        h = cfg.hiera
        if (
            cfg.version == version
            and h.embed_dim == pe.shape[1]
            and tuple(pe.shape[2:]) == tuple(h.window_pos_embed_bkg_spatial_size)
            and h.depth == depth
        ):
            return name
    return None


def _describe(keys: list[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_checkpoint(model: SAM2Model, path: str | os.PathLike) -> None:
    """Load an official SAM 2 / 2.1 checkpoint into `model` with strict key and shape checking."""
    sd = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong_shape = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong_shape:
        lines = [f"checkpoint {os.fspath(path)} does not match model {model.cfg.name}:"]
        if missing:
            lines.append(f"  {len(missing)} missing key(s): {_describe(missing)}")
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected key(s): {_describe(unexpected)}")
        if wrong_shape:
            lines.append(f"  {len(wrong_shape)} shape mismatch(es) (file vs model): {_describe(wrong_shape, 4)}")
        guess = identify_checkpoint(sd)
        if guess is not None and guess != model.cfg.name:
            lines.append(f"  the file looks like a {guess} checkpoint: build that model instead")
        elif guess is None:
            lines.append("  the file does not look like any SAM 2 / SAM 2.1 checkpoint")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(sd, strict=True)


def _split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    predictor = {k: overrides.pop(k) for k in list(overrides) if k in _PREDICTOR_OPTIONS}
    return overrides, predictor


def _model(name: str, checkpoint, device, cfg_overrides: dict[str, Any]) -> SAM2Model:
    cfg: SAM2Config = get_config(name, **cfg_overrides)
    model = SAM2Model(cfg)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.to(device).eval()


def build_sam2(
    name: str,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    apply_postprocessing: bool = True,
    **overrides,
) -> SAM2Model:
    """Build a SAM 2 / 2.1 network by name (e.g. "sam2.1_hiera_large" or "large") and load its checkpoint.

    `overrides` are SAM2Config fields such as `image_size=512`. With `apply_postprocessing` (the reference
    builder's default) the decoder falls back to the best multimask output when the single mask is unstable.
    """
    cfg_overrides = {}
    if apply_postprocessing:
        cfg_overrides["dynamic_multimask_via_stability"] = True
    else:
        cfg_overrides["dynamic_multimask_via_stability"] = False
    cfg_overrides.update(overrides)
    bad = [k for k in cfg_overrides if k in _PREDICTOR_OPTIONS]
    if bad:
        raise TypeError(f"{bad} configure the video predictor: pass them to build_sam2_video_predictor")
    return _model(name, checkpoint, device, cfg_overrides)


def build_sam2_image_predictor(name: str, checkpoint=None, device="cpu", **overrides):
    """An ImagePredictor around `build_sam2(name, checkpoint, device, **overrides)`."""
    from .predictors.image import ImagePredictor

    return ImagePredictor(build_sam2(name, checkpoint, device, **overrides))


def build_sam2_video_predictor(
    name: str,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    apply_postprocessing: bool = True,
    efficient=None,
    shortcut_checkpoint: str | os.PathLike | None = None,
    **overrides,
):
    """Build a video predictor by name and load its checkpoint.

    `overrides` are SAM2Config fields (`image_size`, `memory_temporal_stride`, ...) or predictor options
    (`fill_hole_area`, `non_overlap_masks`). With `apply_postprocessing` (the reference default) the memory of
    clicked frames is encoded from binarised masks and holes of up to 8 px in masks are filled.
    `efficient` (an EfficientConfig) turns on Sparse Window Routing / Sparse Memory Retrieval; None is dense.
    """
    cfg_overrides, predictor_opts = _split_overrides(dict(overrides))
    base = {
        "dynamic_multimask_via_stability": apply_postprocessing,
        "binarize_mask_from_pts_for_mem_enc": apply_postprocessing,
    }
    base.update(cfg_overrides)
    predictor_opts.setdefault("fill_hole_area", 8 if apply_postprocessing else 0)
    model = _model(name, checkpoint, device, base)
    if efficient is None and shortcut_checkpoint is None:
        from .predictors.video import VideoPredictor

        return VideoPredictor(model, **predictor_opts)
    from .predictors.efficient_video import EfficientVideoPredictor

    return EfficientVideoPredictor(model, efficient=efficient, shortcut_checkpoint=shortcut_checkpoint,
                                   **predictor_opts)
