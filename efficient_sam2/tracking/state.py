"""Typed per-object tracking state: what is kept of every frame an object was segmented on, and its prompts.

The model is stateless; the predictors and the streaming tracker own one `ObjectTrack` per object. Frame dicts
are keyed by frame index. `cond` outputs come from prompted (conditioning) frames, `non_cond` from tracked ones;
`temp_*` hold outputs of prompts given since the last propagation (their memories are encoded when tracking
resumes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..modeling.sam2 import PointPrompt

__all__ = ["FrameOutput", "ObjectTrack"]


@dataclass
class FrameOutput:
    """What is kept of one object on one frame.

    maskmem_features (1, Cm, E, E) bf16 (None until encoded, or once no later frame can read it); pred_masks
    (1, 1, 4E, 4E) fp32 logits (None once forgotten by a stream); obj_ptr (1, C); object_score_logits (1, 1).
    """

    pred_masks: torch.Tensor | None
    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor
    maskmem_features: torch.Tensor | None = None

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in
                   (self.pred_masks, self.obj_ptr, self.object_score_logits, self.maskmem_features) if t is not None)


@dataclass
class ObjectTrack:
    """Prompts and outputs of one object."""

    obj_id: int
    point_inputs: dict[int, PointPrompt] = field(default_factory=dict)
    mask_inputs: dict[int, torch.Tensor] = field(default_factory=dict)
    cond_outputs: dict[int, FrameOutput] = field(default_factory=dict)
    non_cond_outputs: dict[int, FrameOutput] = field(default_factory=dict)
    temp_cond_outputs: dict[int, FrameOutput] = field(default_factory=dict)
    temp_non_cond_outputs: dict[int, FrameOutput] = field(default_factory=dict)
    frames_tracked: dict[int, bool] = field(default_factory=dict)  # frame -> tracked in reverse

    def clear_results(self) -> None:
        for d in (self.point_inputs, self.mask_inputs, self.cond_outputs, self.non_cond_outputs,
                  self.temp_cond_outputs, self.temp_non_cond_outputs, self.frames_tracked):
            d.clear()

    def output_on(self, frame_idx: int) -> FrameOutput | None:
        """The newest output of this object on a frame (a pending prompt's first), or None."""
        for d in (self.temp_cond_outputs, self.temp_non_cond_outputs, self.cond_outputs, self.non_cond_outputs):
            out = d.get(frame_idx)
            if out is not None:
                return out
        return None

    def tensors(self):
        """Every tensor this object holds (for memory accounting)."""
        for d in (self.point_inputs,):
            for p in d.values():
                yield p.coords
                yield p.labels
        yield from self.mask_inputs.values()
        for d in (self.cond_outputs, self.non_cond_outputs, self.temp_cond_outputs, self.temp_non_cond_outputs):
            for out in d.values():
                for t in (out.pred_masks, out.obj_ptr, out.object_score_logits, out.maskmem_features):
                    if t is not None:
                        yield t
