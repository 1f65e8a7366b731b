"""The one tracking loop: from a frame's features and the objects' memory banks to their masks and new memories.

Every caller drives this loop: the offline `VideoPredictor` (frame by frame through a video, prompts included),
the `StreamingTracker` (frames as they arrive, memory bank pruned), the trainers (clips with gradients on) and the
benchmark (through the predictor). A frame goes through it in four steps:

1. the policy's `WindowPlan` routes the image encoder (`encode`);
2. each object selects its memory frames and pointers (`memory_bank` rules); objects whose selections coincide
   (and whose policy keys agree) form one batch;
3. one model step per batch (`step`): memory attention under the policy's `MemoryPlan`, SAM heads, memory encoder;
4. outputs are stored per object and the policy observes the frame (`track_frame`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..modeling.sam2 import BackboneFeatures, MemoryFrame, ObjectPointer, PointPrompt, SAM2Model, StepOutput
from .memory_bank import select_memory_frames, select_object_pointers
from .policy import FramePolicy, FrameResult
from .postprocess import fill_holes
from .state import FrameOutput, ObjectTrack

__all__ = ["TrackingLoop", "MemorySelection", "GroupStep"]


@dataclass
class MemorySelection:
    """What one object attends to on one frame: [(t_pos, frame, output)] and [(distance, frame, output)]."""

    memories: list[tuple[int, int, FrameOutput]]
    pointers: list[tuple[int, int, FrameOutput]]

    def layout(self) -> tuple:
        return (tuple((t_pos, t) for t_pos, t, _ in self.memories), tuple((d, t) for d, t, _ in self.pointers))


@dataclass
class GroupStep:
    """A model step for a batch of objects: the raw step (decoder outputs included) and each object's output."""

    step: StepOutput
    outputs: list[FrameOutput]


def _rows(feats: BackboneFeatures, index: Sequence[int], total: int) -> BackboneFeatures:
    """Features for the objects `index` of `total`: one shared frame (batch 1) is expanded, a batch is indexed."""
    if feats.vision.shape[0] == 1:
        return feats.expand(len(index))
    if feats.vision.shape[0] != total:
        raise ValueError(f"features have batch {feats.vision.shape[0]}, expected 1 or {total} (one per object)")
    if len(index) == total:
        return feats
    idx = torch.as_tensor(list(index), device=feats.vision.device)
    return BackboneFeatures([f.index_select(0, idx) for f in feats.high_res], feats.vision.index_select(0, idx),
                            feats.vision_pos.index_select(0, idx))


class TrackingLoop:
    """Runs tracking steps of `model` for any number of objects.

    Args:
        model: the stateless SAM2Model.
        fill_hole_area: background holes of at most this many pixels (at 4E x 4E) in tracked masks become
            foreground before they are stored (and encoded into memory), as the reference predictor does.
        memory_dtype: dtype of stored spatial memories (bf16 like the reference; fp32 for training).
        detach: store outputs without autograd history (inference); trainers pass False.
        memory_stride: temporal stride of the recent memory frames (None: the model's `memory_temporal_stride`;
            the shortcut trainer varies it per epoch without touching the model's config).
    """

    def __init__(self, model: SAM2Model, fill_hole_area: int = 0, memory_dtype: torch.dtype = torch.bfloat16,
                 detach: bool = True, memory_stride: int | None = None) -> None:
        self.model = model
        self.fill_hole_area = fill_hole_area
        self.memory_dtype = memory_dtype
        self.detach = detach
        stride = model.cfg.memory_temporal_stride if memory_stride is None else memory_stride
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"memory_stride must be a positive integer, got {memory_stride!r}")
        self.memory_stride = stride

    # ------------------------------------------------------------------ 1. image
    def encode(self, images: torch.Tensor, frame_idx: int, policy: FramePolicy | None = None) -> BackboneFeatures:
        """Image features of normalised frames (B, 3, S, S), routed by the policy's window plan."""
        plan = None if policy is None else policy.window_plan(frame_idx, images)
        return self.model.forward_image(images, window_plan=plan)

    # ------------------------------------------------------------------ 2. memory
    def select(self, track: ObjectTrack, frame_idx: int, num_frames: int, reverse: bool) -> MemorySelection:
        cfg = self.model.cfg
        mems, sel_cond, unsel_cond = select_memory_frames(
            frame_idx, track.cond_outputs, track.non_cond_outputs, cfg.num_maskmem, self.memory_stride,
            cfg.max_cond_frames_in_attn, reverse,
        )
        ptrs = select_object_pointers(
            frame_idx, sel_cond, unsel_cond, track.non_cond_outputs, num_frames, cfg.max_obj_ptrs_in_encoder,
            cfg.use_signed_tpos_enc_to_obj_ptrs, reverse,
        )
        return MemorySelection(mems, ptrs)

    def memory(self, tracks: Sequence[ObjectTrack], frame_idx: int, num_frames: int, reverse: bool = False,
               device: torch.device | None = None) -> tuple[list[MemoryFrame], list[ObjectPointer]]:
        """The memories (B, Cm, E, E) and object pointers (B, C) that `tracks` read on `frame_idx`, batched.

        The tracks must share one memory layout (the same selected frames and pointer distances); a step for
        them reads exactly these (the shortcut trainer conditions its teacher and student features on them).
        """
        selections = [self.select(t, frame_idx, num_frames, reverse) for t in tracks]
        layouts = {s.layout() for s in selections}
        if len(layouts) > 1:
            raise ValueError(f"objects {[t.obj_id for t in tracks]} read different memory layouts on frame "
                             f"{frame_idx}: {sorted(layouts)}")
        return self._gather(selections, device or self.model.device)

    def _gather(self, selections: Sequence[MemorySelection], device) -> tuple[list[MemoryFrame], list[ObjectPointer]]:
        first = selections[0]
        memories = []
        for k, (t_pos, t, _) in enumerate(first.memories):
            feats = torch.cat([s.memories[k][2].maskmem_features for s in selections], 0)
            memories.append(MemoryFrame(feats.to(device, non_blocking=True), t_pos, t))
        pointers = []
        for k, (d, t, _) in enumerate(first.pointers):
            ptr = torch.cat([s.pointers[k][2].obj_ptr for s in selections], 0)
            pointers.append(ObjectPointer(ptr.to(device), d, t))
        return memories, pointers

    # ------------------------------------------------------------------ 3. one model step
    def step(
        self,
        feats: BackboneFeatures,
        tracks: Sequence[ObjectTrack],
        frame_idx: int,
        num_frames: int,
        *,
        is_init: bool = False,
        reverse: bool = False,
        points: PointPrompt | None = None,
        mask: torch.Tensor | None = None,
        prev_mask_logits: torch.Tensor | None = None,
        run_mem_encoder: bool = True,
        policy: FramePolicy | None = None,
        selections: Sequence[MemorySelection] | None = None,
        storage_device: torch.device | None = None,
    ) -> GroupStep:
        """One model step for `tracks` (B objects sharing one memory layout) on `frame_idx`.

        `feats` has batch 1 (one frame for every object) or B (one frame per object, as in training). Prompted
        steps (`points`, `mask`, `is_init`) read no memory; tracked steps read each object's memory bank.
        """
        B = len(tracks)
        feats = _rows(feats, range(B), B)
        device = feats.vision.device
        memories: list[MemoryFrame] = []
        pointers: list[ObjectPointer] = []
        if not is_init and mask is None:
            if selections is None:
                selections = [self.select(t, frame_idx, num_frames, reverse) for t in tracks]
            memories, pointers = self._gather(selections, device)
            if not memories and not pointers:
                raise RuntimeError(f"no memory to track object(s) {[t.obj_id for t in tracks]} on frame {frame_idx}")
        plan = None
        if policy is not None and memories:
            plan = policy.memory_plan(frame_idx, [t.obj_id for t in tracks], memories, len(pointers))
        step = self.model.track_step(
            feats, memories, pointers, num_frames, points=points, mask=mask, prev_mask_logits=prev_mask_logits,
            is_init_cond_frame=is_init, run_mem_encoder=run_mem_encoder, memory_plan=plan,
            return_saliency=policy is not None and policy.wants_saliency(frame_idx),
        )
        if policy is not None:
            policy.observe_step(frame_idx, [t.obj_id for t in tracks], step)
        return GroupStep(step, self._outputs(step, B, storage_device or device))

    def _outputs(self, step: StepOutput, B: int, storage_device: torch.device) -> list[FrameOutput]:
        masks = step.pred_masks
        if self.fill_hole_area > 0:
            masks = fill_holes(masks, self.fill_hole_area)
        mem, ptr, score = step.maskmem_features, step.obj_ptr, step.object_score_logits
        if self.detach:
            masks, ptr, score = masks.detach(), ptr.detach(), score.detach()
            mem = None if mem is None else mem.detach()
        if mem is not None:
            mem = mem.to(self.memory_dtype).to(storage_device, non_blocking=True)
        masks = masks.to(storage_device, non_blocking=True)
        return [FrameOutput(masks[b:b + 1], ptr[b:b + 1], score[b:b + 1],
                            None if mem is None else mem[b:b + 1]) for b in range(B)]

    def encode_memory(self, feats: BackboneFeatures, out: FrameOutput) -> torch.Tensor:
        """Spatial memory of a stored prompt output (encoded when tracking resumes), in the memory dtype."""
        return self.encode_memories(feats, [out])

    def encode_memories(self, feats: BackboneFeatures, outs: Sequence[FrameOutput]) -> torch.Tensor:
        """Spatial memories (N, Cm, E, E) of N stored prompt outputs on one frame in one memory-encoder batch, in
        the memory dtype; `feats` has batch 1 (expanded) or N."""
        S = self.model.image_size
        feats = _rows(feats, range(len(outs)), len(outs))
        device = feats.vision.device
        masks = torch.cat([o.pred_masks.to(device) for o in outs], 0)
        scores = torch.cat([o.object_score_logits.to(device) for o in outs], 0)
        high = torch.nn.functional.interpolate(masks, size=(S, S), mode="bilinear", align_corners=False)
        mem = self.model.encode_memory(feats.vision, high, scores,
                                       binarize=self.model.cfg.binarize_mask_from_pts_for_mem_enc)
        return mem.to(self.memory_dtype)

    # ------------------------------------------------------------------ 4. a whole frame
    def track(
        self,
        feats: BackboneFeatures,
        tracks: Sequence[ObjectTrack],
        frame_idx: int,
        num_frames: int,
        reverse: bool = False,
        policy: FramePolicy | None = None,
        storage_device: torch.device | None = None,
    ) -> list[FrameOutput]:
        """Track objects with no prompt on this frame, batching those whose memory layouts coincide."""
        selections = [self.select(t, frame_idx, num_frames, reverse) for t in tracks]
        groups: dict[tuple, list[int]] = {}
        for i, (track, sel) in enumerate(zip(tracks, selections)):
            extra = () if policy is None else policy.group_key(track.obj_id, [t for _, t, _ in sel.memories])
            groups.setdefault((sel.layout(), extra), []).append(i)
        results: list[FrameOutput | None] = [None] * len(tracks)
        for idx in groups.values():
            group = self.step(_rows(feats, idx, len(tracks)), [tracks[i] for i in idx], frame_idx, num_frames,
                              reverse=reverse, policy=policy, selections=[selections[i] for i in idx],
                              storage_device=storage_device)
            for i, out in zip(idx, group.outputs):
                results[i] = out
        return results

    def track_frame(
        self,
        features: Callable[[], BackboneFeatures],
        tracks: Sequence[ObjectTrack],
        frame_idx: int,
        num_frames: int,
        reverse: bool = False,
        policy: FramePolicy | None = None,
        storage_device: torch.device | None = None,
    ) -> list[FrameResult]:
        """One frame of propagation for every object: prompted objects keep their conditioning output, the others
        are tracked (features are computed only if some object needs them) and stored as tracked frames.
        """
        results: list[FrameResult | None] = [None] * len(tracks)
        to_track = []
        for i, track in enumerate(tracks):
            out = track.cond_outputs.get(frame_idx)
            if out is not None:
                results[i] = FrameResult(track.obj_id, out, prompted=True)
            else:
                to_track.append(i)
        device = self.model.device
        if to_track:
            outs = self.track(features(), [tracks[i] for i in to_track], frame_idx, num_frames, reverse, policy,
                              storage_device)
            for i, out in zip(to_track, outs):
                tracks[i].non_cond_outputs[frame_idx] = out
                results[i] = FrameResult(tracks[i].obj_id, out, prompted=False)
        for track in tracks:
            track.frames_tracked[frame_idx] = reverse
        if policy is not None:
            policy.observe_frame(frame_idx, results, device)
        return results
