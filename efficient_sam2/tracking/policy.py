"""Frame policies: what the tracking loop asks before and tells after every frame.

The network executes plans; a policy decides them. Before a frame is encoded the loop asks for its `WindowPlan`
and whether the decoder's token->image attention is needed; before memory attention runs for a group of objects it
asks for the group's `MemoryPlan`; after every model step and after every frame it reports what happened. The dense
policy answers "no plan" everywhere. The Efficient-SAM2 policy lives in `efficient_sam2.efficient.policy`.

A policy object belongs to one video or stream (it holds that video's routing and saliency state); a
`PolicyFactory` makes a fresh one per video. Policies are only consulted while propagating: prompt steps
(clicks, boxes, masks) always run densely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

from ..modeling.hiera import WindowPlan
from ..modeling.memory_attention import MemoryPlan
from ..modeling.sam2 import MemoryFrame, StepOutput
from .state import FrameOutput

__all__ = ["FramePolicy", "DensePolicy", "PolicyFactory", "FrameResult"]


@dataclass
class FrameResult:
    """One object's outcome on a frame, given to `FramePolicy.observe_frame`.

    prompted: the frame is a conditioning frame of this object (its stored prompt output was used, no step ran).
    """

    obj_id: int
    output: FrameOutput
    prompted: bool


class FramePolicy:
    """The dense policy: no plans, nothing observed. Subclasses override what they decide."""

    def start(self, reverse: bool) -> None:
        """A propagation begins (forward, or backward with `reverse`)."""

    def stop(self) -> None:
        """The propagation ended (normally or not)."""

    def window_plan(self, frame_idx: int, image: torch.Tensor | None = None) -> WindowPlan | None:
        """Which windows of the routed Hiera span to compute on this frame (None = all); `image` is the frame as the
        encoder gets it ((B, 3, H, W), normalised), when the caller has it."""
        return None

    def wants_saliency(self, frame_idx: int) -> bool:
        """Whether this frame's decoder must return its token->image attention map."""
        return False

    def group_key(self, obj_id: int, memory_frames: Sequence[int]) -> tuple:
        """Objects with equal memory layouts are batched only when their keys agree too."""
        return ()

    def memory_plan(self, frame_idx: int, obj_ids: Sequence[int], memories: Sequence[MemoryFrame],
                    num_ptr_tokens: int) -> MemoryPlan | None:
        """Which memory tokens each memory-attention layer reads for this group of objects (None = all)."""
        return None

    def observe_step(self, frame_idx: int, obj_ids: Sequence[int], step: StepOutput) -> None:
        """A model step ran for these objects on this frame."""

    def observe_frame(self, frame_idx: int, results: Sequence[FrameResult], device: torch.device) -> None:
        """Every object has its result on this frame."""

    def forget_object(self, obj_id: int) -> None:
        """The object was removed (a stream forgets what the policy holds about it)."""

    def nbytes(self) -> int:
        """Bytes of the tensors the policy holds for its video or stream."""
        return 0


class DensePolicy(FramePolicy):
    """Plain SAM 2."""


class PolicyFactory(Protocol):
    def new_video(self) -> FramePolicy:
        """A fresh policy for one video or stream."""
        ...


class DenseFactory:
    def new_video(self) -> FramePolicy:
        return DensePolicy()
