"""Builders and checkpoint loading with strict, readable errors. Nothing is ever downloaded here.

Where a model's weights come from: a `checkpoint` file (Meta's official checkpoints load unchanged), the weights
bundled with the package (the micro model, trained here: `weights=None` and no checkpoint), or a random
initialisation that must be asked for (`weights="random"`, for benchmarks and tests). Asking a real model for no
checkpoint and no random weights is an error that says where to get the file.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import torch

from .configs import MODEL_CONFIGS, SAM2Config, get_config, resolve_model_name
from .modeling.sam2 import SAM2Model

__all__ = [
    "CheckpointError",
    "build_sam2",
    "build_sam2_video_predictor",
    "build_sam2_image_predictor",
    "load_checkpoint",
    "read_state_dict",
    "identify_checkpoint",
    "MissingCheckpointError",
    "bundled_weights",
    "bundled_shortcut",
    "WEIGHT_SOURCES",
]

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
_BUNDLED = {"sam2.1_hiera_micro": ("sam2.1_hiera_micro.pt", "sam2.1_hiera_micro_shortcut.pt")}
WEIGHT_SOURCES = ("checkpoint", "bundled", "random")
"""`weights=`: None picks the checkpoint if given, else the bundled weights; "random" is a fresh initialisation."""


def bundled_weights(name: str) -> str | None:
    """Path of the weights shipped in the package for model `name`, or None (Meta's models ship none)."""
    files = _BUNDLED.get(resolve_model_name(name))
    return os.path.join(WEIGHTS_DIR, files[0]) if files else None


def bundled_shortcut(name: str) -> str | None:
    """Path of the SWR shortcut trained for the bundled weights of `name`, or None."""
    files = _BUNDLED.get(resolve_model_name(name))
    return os.path.join(WEIGHTS_DIR, files[1]) if files else None

# Options that configure the video predictor rather than the network.
_PREDICTOR_OPTIONS = ("fill_hole_area", "non_overlap_masks")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded into the requested model."""


class MissingCheckpointError(CheckpointError):
    """A model with no weights of its own was built without a checkpoint and without `weights="random"`."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model state_dict stored in a checkpoint file.

    Accepts an official checkpoint (`{"model": state_dict}`, as Meta ships them), a `{"state_dict": ...}` wrapper
    or a bare state_dict; a `module.` prefix on every key (a model saved from DistributedDataParallel) is removed.
    Raises FileNotFoundError for a missing path and CheckpointError for anything that is not a dict of tensors.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a file path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint path is a folder, not a file: {path}")
    from .io.torch_files import TorchFileError, read_torch_file

    try:
        obj = read_torch_file(path, "checkpoint")
    except TorchFileError as exc:  # empty, random bytes, truncated, or Python objects that are never unpickled
        raise CheckpointError(str(exc)) from exc
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path} is not a SAM 2 checkpoint: expected a dict with a 'model' state_dict (as Meta ships them) "
            f"or a state_dict of tensors, found {_summarize(obj)}"
        )
    if not obj:
        raise CheckpointError(f"{path} is not a SAM 2 checkpoint: its state_dict holds no tensors")
    sd = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _summarize(obj) -> str:
    """A short description of an unexpected checkpoint payload, for error messages."""
    if isinstance(obj, Mapping):
        kinds = sorted({type(v).__name__ for v in obj.values()})
        keys = ", ".join(repr(k) for k in list(obj)[:5]) + (", ..." if len(obj) > 5 else "")
        return f"a dict with keys {keys} holding {', '.join(kinds) or 'nothing'}"
    return f"a {type(obj).__name__}"


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


def _looks_like_sam1(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return "image_encoder.patch_embed.proj.weight" in state_dict and any(
        k.startswith("image_encoder.blocks.") for k in state_dict
    )


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
            if _looks_like_sam1(sd):
                lines.append("  the file looks like a SAM 1 (segment-anything) checkpoint, not SAM 2 / SAM 2.1")
            else:
                lines.append("  the file does not look like any SAM 2 / SAM 2.1 checkpoint")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(sd, strict=True)


def _split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    predictor = {k: overrides.pop(k) for k in list(overrides) if k in _PREDICTOR_OPTIONS}
    return overrides, predictor


def _config_fields() -> list[str]:
    return sorted(f.name for f in dataclasses.fields(SAM2Config) if f.name not in ("name", "version", "hiera"))


def _check_overrides(func: str, overrides: Mapping[str, Any], predictor_options: bool) -> None:
    valid = set(_config_fields()) | (set(_PREDICTOR_OPTIONS) if predictor_options else set())
    unknown = sorted(k for k in overrides if k not in valid)
    if not unknown:
        return
    if not predictor_options and any(k in _PREDICTOR_OPTIONS for k in unknown):
        raise TypeError(
            f"{[k for k in unknown if k in _PREDICTOR_OPTIONS]} configure the video predictor: pass them to "
            "build_sam2_video_predictor"
        )
    raise TypeError(f"{func}() got unknown option(s) {unknown}; valid options: {', '.join(sorted(valid))}")


def resolve_weights(name: str, checkpoint, weights: str | None) -> tuple[str, str | None]:
    """(source, file) of a model's weights: ("checkpoint", path), ("bundled", path) or ("random", None)."""
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a file path (str or os.PathLike) or None, got {type(checkpoint).__name__}")
    if weights not in (None, *WEIGHT_SOURCES):
        raise ValueError(f"weights must be None, 'checkpoint', 'bundled' or 'random', got {weights!r}")
    canonical = resolve_model_name(name)
    if checkpoint is not None:
        if weights not in (None, "checkpoint"):
            raise ValueError(f"a checkpoint file was given together with weights={weights!r}: give one or the other")
        return "checkpoint", os.fspath(checkpoint)
    if weights == "checkpoint":
        raise MissingCheckpointError(f"weights='checkpoint' but no checkpoint file was given for {canonical}")
    if weights == "random":
        return "random", None
    bundled = bundled_weights(canonical)
    if bundled is not None:
        if not os.path.isfile(bundled):
            raise MissingCheckpointError(
                f"the bundled weights of {canonical} are missing from this installation ({bundled}); reinstall the "
                "package, or pass a checkpoint (train one with `efficient-sam2 train --model micro ...`)"
            )
        return "bundled", bundled
    if weights == "bundled":
        raise MissingCheckpointError(f"{canonical} has no bundled weights; only the micro model ships with weights")
    raise MissingCheckpointError(
        f"no checkpoint given for {canonical}: Meta's weights are not shipped with this package. Get the file with "
        f"`efficient-sam2 download {canonical} --dir checkpoints` and pass checkpoint='checkpoints/{canonical}.pt' "
        f"(--checkpoint on the command line); for an untrained model (benchmarks, tests) pass weights='random' "
        f"(--random-weights). The micro model ('micro') runs with no download."
    )


def _model(name: str, checkpoint, device, cfg_overrides: dict[str, Any], weights: str | None = None) -> SAM2Model:
    cfg: SAM2Config = get_config(name, **cfg_overrides)
    device = _check_device(device)
    source, path = resolve_weights(name, checkpoint, weights)
    model = SAM2Model(cfg)
    if path is not None:
        load_checkpoint(model, path)
    model.weights_source = source  # "checkpoint", "bundled" or "random": reported by the commands
    return model.to(device).eval()


def _check_device(device) -> torch.device:
    from .devices import resolve_device

    return resolve_device(device)


def build_sam2(
    name: str,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    apply_postprocessing: bool = True,
    weights: str | None = None,
    **overrides,
) -> SAM2Model:
    """Build a SAM 2 / 2.1 network by name (e.g. "sam2.1_hiera_large", "large" or "micro") with its weights.

    Weights: `checkpoint` (a file; Meta's checkpoints load unchanged), else the bundled weights (micro), else an
    error saying how to get Meta's file; `weights="random"` asks for a fresh initialisation instead.
    `overrides` are SAM2Config fields such as `image_size=512`. With `apply_postprocessing` (the reference
    builder's default) the decoder falls back to the best multimask output when the single mask is unstable.
    """
    cfg_overrides = {}
    if apply_postprocessing:
        cfg_overrides["dynamic_multimask_via_stability"] = True
    else:
        cfg_overrides["dynamic_multimask_via_stability"] = False
    resolve_model_name(name)  # an unknown name is reported before anything else
    _check_overrides("build_sam2", overrides, predictor_options=False)
    cfg_overrides.update(overrides)
    return _model(name, checkpoint, device, cfg_overrides, weights)


def build_sam2_image_predictor(name: str, checkpoint=None, device="cpu", weights: str | None = None, **overrides):
    """An ImagePredictor around `build_sam2(name, checkpoint, device, weights=weights, **overrides)`."""
    from .predictors.image import ImagePredictor

    return ImagePredictor(build_sam2(name, checkpoint, device, weights=weights, **overrides))


def build_sam2_video_predictor(
    name: str,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    apply_postprocessing: bool = True,
    efficient=None,
    shortcut_checkpoint: str | os.PathLike | None = None,
    weights: str | None = None,
    **overrides,
):
    """Build a video predictor by name with its weights (see `build_sam2`).

    `overrides` are SAM2Config fields (`image_size`, `memory_temporal_stride`, ...) or predictor options
    (`fill_hole_area`, `non_overlap_masks`). With `apply_postprocessing` (the reference default) the memory of
    clicked frames is encoded from binarised masks and holes of up to 8 px in masks are filled.
    `efficient` (an EfficientConfig) turns on Sparse Window Routing / Sparse Memory Retrieval; None is dense.
    With the bundled micro weights and no `shortcut_checkpoint`, the shortcut trained for them is used.
    """
    resolve_model_name(name)
    _check_overrides("build_sam2_video_predictor", overrides, predictor_options=True)
    cfg_overrides, predictor_opts = _split_overrides(dict(overrides))
    base = {
        "dynamic_multimask_via_stability": apply_postprocessing,
        "binarize_mask_from_pts_for_mem_enc": apply_postprocessing,
    }
    base.update(cfg_overrides)
    predictor_opts.setdefault("fill_hole_area", 8 if apply_postprocessing else 0)
    model = _model(name, checkpoint, device, base, weights)
    if (efficient is not None and shortcut_checkpoint is None and model.weights_source == "bundled"
            and efficient.swr and efficient.shortcut == "bottleneck"):
        shortcut_checkpoint = bundled_shortcut(name)
        if not os.path.isfile(shortcut_checkpoint):
            shortcut_checkpoint = None
    if efficient is None and shortcut_checkpoint is None:
        from .predictors.video import VideoPredictor

        return VideoPredictor(model, **predictor_opts)
    from .predictors.efficient_video import EfficientVideoPredictor

    return EfficientVideoPredictor(model, efficient=efficient, shortcut_checkpoint=shortcut_checkpoint,
                                   **predictor_opts)


def build_sam2_stream_tracker(
    name: str,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    efficient=None,
    shortcut_checkpoint: str | os.PathLike | None = None,
    max_cond_frames: int = 4,
    **overrides,
):
    """Build a `StreamingTracker` (frames tracked as they arrive, bounded memory) by name.

    The model, its post-processing defaults and the frame policy are built exactly as by
    `build_sam2_video_predictor` (same arguments, e.g. `apply_postprocessing`, `image_size`, `fill_hole_area`), so
    for prompts on the first frame the tracker's masks equal `propagate_in_video`'s. `max_cond_frames`: prompted
    frames kept per object (the first and the most recent).
    """
    from .predictors.stream import StreamingTracker

    predictor = build_sam2_video_predictor(name, checkpoint, device, efficient=efficient,
                                           shortcut_checkpoint=shortcut_checkpoint, **overrides)
    return StreamingTracker(predictor.model, fill_hole_area=predictor.fill_hole_area, policy=predictor.policy,
                            max_cond_frames=max_cond_frames, non_overlap_masks=predictor.non_overlap_masks)
