"""Pieces shared by the tracking and dataset-inference front ends: building a predictor, mixed precision, turning
per-object logits into one object-id map, and collecting the efficiency statistics of a run."""

from __future__ import annotations

import contextlib
import os
from typing import Optional, Sequence

import numpy as np
import torch

from ..devices import resolve_device

__all__ = [
    "PRECISIONS",
    "EfficiencyTotals",
    "autocast_context",
    "build_predictor",
    "check_device",
    "logits_to_ids",
    "merge_into",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_device(device: str) -> str:
    """Validate a torch device string early, with a readable message (`devices.resolve_device`); returns it."""
    resolve_device(device)
    return str(device)


def autocast_context(device, precision: str = "auto"):
    """Mixed-precision context for model calls.

    "auto" is bfloat16 autocast on CUDA (what the reference VOS tooling runs) and full fp32 elsewhere; "fp32" turns
    autocast off; "bf16" / "fp16" force autocast with that dtype.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    dev = torch.device(device)
    if precision == "auto":
        precision = "bf16" if dev.type == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    if dev.type == "cpu" and precision == "fp16":
        raise ValueError("fp16 autocast is not supported on the CPU; use bf16 or fp32")
    return torch.autocast(dev.type, dtype=_DTYPES[precision])


def build_predictor(
    model: str,
    checkpoint: Optional[str | os.PathLike],
    device: str = "cpu",
    image_size: Optional[int] = None,
    efficient=None,
    shortcut_checkpoint: Optional[str | os.PathLike] = None,
    memory_stride: Optional[int] = None,
    apply_postprocessing: bool = True,
    non_overlap_masks: bool = False,
    weights: Optional[str] = None,
):
    """A video predictor (dense when `efficient` is None and no shortcut checkpoint is given); `weights` as for
    `build_sam2` (None: the checkpoint, else the bundled weights; "random": untrained)."""
    from ..build import build_sam2_video_predictor

    overrides = {"non_overlap_masks": non_overlap_masks}
    if image_size is not None:
        overrides["image_size"] = int(image_size)
    if memory_stride is not None:
        if memory_stride < 1:
            raise ValueError(f"the memory stride must be >= 1; got {memory_stride}")
        overrides["memory_temporal_stride"] = int(memory_stride)
    if checkpoint is not None and not os.path.isfile(os.fspath(checkpoint)):
        raise FileNotFoundError(f"checkpoint file not found: {os.fspath(checkpoint)!r} "
                                "(official checkpoints can be fetched with `efficient-sam2 download NAME`)")
    return build_sam2_video_predictor(model, checkpoint, device=device, apply_postprocessing=apply_postprocessing,
                                      efficient=efficient, shortcut_checkpoint=shortcut_checkpoint, weights=weights,
                                      **overrides)


def merge_into(best: np.ndarray, best_id: np.ndarray, logits: np.ndarray, obj_ids: Sequence[int]) -> None:
    """Fold objects' logits into a running per-pixel winner, in place.

    best: (H, W) float32 highest logit so far (start at -inf); best_id: (H, W) id of that object (start at 0);
    logits: (N, H, W) float32; obj_ids: N ids. A pixel goes to the object with the highest logit; on equal logits
    the lower id wins, whatever order the objects arrive in.
    """
    for k in np.argsort(np.asarray(obj_ids), kind="stable"):
        s = logits[k]
        oid = int(obj_ids[k])
        take = (s > best) | ((s == best) & (oid < best_id))
        np.copyto(best, s, where=take)
        best_id[take] = oid


def logits_to_ids(logits: torch.Tensor, obj_ids: Sequence[int], threshold: float = 0.0) -> np.ndarray:
    """One (H, W) uint8 id map from N objects' mask logits (N, 1, H, W) or (N, H, W).

    Non-overlapping: each pixel belongs to the object with the highest logit when that logit is above `threshold`
    (equal logits: the lowest id wins), else to the background (0). This equals applying the non-overlap
    constraint to the logits, thresholding, and painting the masks in descending id order.
    """
    if len(obj_ids) == 0:
        raise ValueError("no object logits to merge")
    ids = np.asarray([int(i) for i in obj_ids])
    if ids.min() < 1 or ids.max() > 255:
        raise ValueError(f"object ids must lie in 1..255 to fit a palette PNG; got {ids.tolist()} "
                         "(use per-object output for larger ids)")
    x = logits.detach().float()
    if x.dim() == 4:
        x = x[:, 0]
    order = torch.as_tensor(np.argsort(ids, kind="stable"), device=x.device)
    x = x.index_select(0, order)
    sorted_ids = torch.as_tensor(ids[order.cpu().numpy()], device=x.device, dtype=torch.uint8)
    best, idx = x.max(dim=0)  # the first (lowest-id) maximum on ties
    out = torch.where(best > threshold, sorted_ids[idx], torch.zeros_like(sorted_ids[idx]))
    return out.cpu().numpy().astype(np.uint8)


class EfficiencyTotals:
    """Kept-window / kept-memory fractions and saliency fallbacks accumulated over several propagations."""

    def __init__(self) -> None:
        self.kept_windows: list[float] = []
        self.kept_memory: list[float] = []
        self.fallbacks = 0
        self.routed_frames = 0

    def add(self, predictor, state) -> None:
        stats_fn = getattr(predictor, "statistics", None)
        if stats_fn is None:
            return
        stats = stats_fn(state)
        if stats is None:  # dense SAM 2: nothing skipped
            return
        self.kept_windows.extend(stats.kept_windows.values())
        self.kept_memory.extend(stats.kept_memory.values())
        self.fallbacks += len(stats.saliency_fallbacks)
        self.routed_frames += stats.routed_frames

    def summary(self) -> Optional[dict]:
        if not self.kept_windows and not self.kept_memory:
            return None
        return {
            "kept_window_fraction": round(float(np.mean(self.kept_windows)), 4) if self.kept_windows else None,
            "kept_memory_fraction": round(float(np.mean(self.kept_memory)), 4) if self.kept_memory else None,
            "routed_frames": self.routed_frames,
            "saliency_fallbacks": self.fallbacks,
        }
