"""The streaming tracker: SAM 2 / Efficient-SAM2 on frames as they arrive (a camera, a network stream, a file),
with a memory that stays bounded however long the stream runs.

`StreamingTracker.track(frame)` segments one RGB frame and returns every object's mask on it; `add_object` prompts
an object (a mask, clicks or a box) on the frame just tracked, or on the first frame before the stream starts.
Every model step goes through the one `TrackingLoop`, with the same memory-bank rules as the offline
`VideoPredictor`: for prompts on the first frame the masks equal `propagate_in_video`'s.

What later frames can read is all the tracker keeps (see `frames_to_keep`): per object its conditioning frames
(at most `max_cond_frames`: the first and the most recent), the spatial memories of the last `num_maskmem`
frames (with the memory stride), the object pointers of the last `max_obj_ptrs_in_encoder` frames, and the image
features and mask logits of the current frame only. No frame is kept. `state_nbytes()` is constant once the
memory bank is full.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..efficient.policy import EfficiencyStats
from ..io.frames import ImageError, load_image, preprocess_frame
from ..modeling.sam2 import BackboneFeatures, SAM2Model
from ..tracking.loop import TrackingLoop
from ..tracking.memory_bank import frames_to_keep
from ..tracking.policy import DenseFactory, FramePolicy, PolicyFactory
from ..tracking.state import FrameOutput, ObjectTrack
from ..tracking.postprocess import non_overlap
from .video import PromptError, _as_box, _as_labels, _as_mask, _as_points, mask_prompt, point_prompt

__all__ = ["StreamingTracker", "TrackResult", "StreamStats", "STREAM_LENGTH"]

STREAM_LENGTH = 2**62
"""The video length a stream tells the tracking loop: longer than any stream, so that the object-pointer temporal
encoding is normalised by `max_obj_ptrs_in_encoder - 1`, as offline for videos of at least that many frames."""

STATS_WINDOW = 1000
"""Frames of per-frame statistics kept by a stream (the totals cover every frame)."""


@dataclass
class TrackResult:
    """Every object's mask on one frame of a stream.

    frame_idx: the frame's index in the stream (0 = the first frame given to `track`); obj_ids: N ids, in the order
    the objects were added; masks (N, H, W) bool and logits (N, H, W) float32 at the frame's resolution;
    object_scores (N,) object-presence logits (> 0: the object is visible). Tensors are on the model's device.
    """

    frame_idx: int
    obj_ids: list[int]
    masks: torch.Tensor
    logits: torch.Tensor
    object_scores: torch.Tensor


@dataclass
class StreamStats(EfficiencyStats):
    """`EfficiencyStats` of a stream: the per-frame dicts hold the last `STATS_WINDOW` frames; the means, counts and
    `summary()` cover every frame since the stream (re)started."""

    earlier_frames: int = 0
    earlier_kept_windows: float = 0.0  # sum over the frames no longer in `kept_windows`
    earlier_memory_frames: int = 0
    earlier_kept_memory: float = 0.0
    earlier_fallbacks: int = 0
    earlier_scene_cuts: int = 0
    earlier_guarded: int = 0

    @property
    def frames(self) -> int:
        return self.earlier_frames + len(self.kept_windows)

    @property
    def mean_kept_windows(self) -> float:
        return (self.earlier_kept_windows + sum(self.kept_windows.values())) / max(1, self.frames)

    @property
    def mean_kept_memory(self) -> float:
        n = self.earlier_memory_frames + len(self.kept_memory)
        return (self.earlier_kept_memory + sum(self.kept_memory.values())) / max(1, n)

    @property
    def fallback_rate(self) -> float:
        return (self.earlier_fallbacks + len(self.saliency_fallbacks)) / max(1, self.routed_frames)

    def summary(self) -> dict:
        out = super().summary()
        memory_frames = self.earlier_memory_frames + len(self.kept_memory)
        out.update(frames=self.frames, saliency_fallbacks=self.earlier_fallbacks + len(self.saliency_fallbacks),
                   scene_cuts=self.earlier_scene_cuts + len(self.scene_cuts),
                   guarded_frames=self.earlier_guarded + len(self.guarded_frames),
                   mean_kept_memory_fraction=round(self.mean_kept_memory, 4) if memory_frames else None)
        return out


@dataclass
class _Prompt:
    """A validated prompt waiting for a frame: kind "mask" (mask) or "points" (points, labels, box)."""

    kind: str
    mask: np.ndarray | None = None
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None
    clear_old_points: bool = True

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.mask, self.points, self.labels, self.box) if a is not None)


class StreamingTracker:
    """Track objects through frames that arrive one at a time; see the module docstring.

    Args:
        model: the stateless SAM2Model.
        fill_hole_area: background holes of at most this many pixels (at 4E x 4E) in masks become foreground.
        policy: makes the stream's frame policy (`new_video()`); None is dense SAM 2, an
            `efficient_sam2.efficient.policy.EfficientSAM2` is Efficient-SAM2.
        max_cond_frames: conditioning (prompted) frames kept per object, at least 2: the first and the most recent.
        non_overlap_masks: at each pixel keep only the highest-scoring object in returned logits.
    """

    def __init__(self, model: SAM2Model, fill_hole_area: int = 0, policy: PolicyFactory | None = None,
                 max_cond_frames: int = 4, non_overlap_masks: bool = False) -> None:
        if isinstance(fill_hole_area, bool) or not isinstance(fill_hole_area, (int, np.integer)) or fill_hole_area < 0:
            raise ValueError(f"fill_hole_area must be a non-negative integer (pixels), got {fill_hole_area!r}")
        if isinstance(max_cond_frames, bool) or not isinstance(max_cond_frames, (int, np.integer)) \
                or max_cond_frames < 2:
            raise ValueError(f"max_cond_frames must be an integer >= 2 (the first prompted frame and the most recent "
                             f"one), got {max_cond_frames!r}")
        self.model = model
        self.fill_hole_area = int(fill_hole_area)
        self.policy_factory = policy if policy is not None else DenseFactory()
        self.max_cond_frames = int(max_cond_frames)
        self.non_overlap_masks = non_overlap_masks
        self.loop = TrackingLoop(model, fill_hole_area=self.fill_hole_area)
        self.reset()

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @property
    def obj_ids(self) -> list[int]:
        """Ids of the objects tracked (and of those waiting for the first frame), in the order they were added."""
        return list(self.objects) + [o for o in self._pending if o not in self.objects]

    @property
    def frame_idx(self) -> int:
        """Index of the frame just tracked (-1 before the first)."""
        return self._frame_idx

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget every object, prompt and memory: the next frame starts a new stream (frame 0)."""
        self.objects: "OrderedDict[int, ObjectTrack]" = OrderedDict()
        self._pending: "OrderedDict[int, list[_Prompt]]" = OrderedDict()
        self._frame_idx = -1
        self._size: tuple[int, int] | None = None  # (H, W) of the current frame
        self._image: torch.Tensor | None = None  # the current frame, preprocessed, until it is encoded
        self._features: BackboneFeatures | None = None
        self._observed = False  # the policy has observed the current frame
        self._replan = False
        self.policy: FramePolicy = self.policy_factory.new_video()
        self.policy.start(False)
        self._totals = StreamStats()

    def statistics(self) -> StreamStats | None:
        """What the frame policy skipped on this stream (an `EfficiencyStats`), or None for dense SAM 2."""
        stats = getattr(self.policy, "stats", None)
        if stats is None:
            return None
        t = self._totals
        return StreamStats(kept_windows=dict(stats.kept_windows), kept_memory=dict(stats.kept_memory),
                           saliency_fallbacks=list(stats.saliency_fallbacks), routed_frames=stats.routed_frames,
                           scene_cuts=list(stats.scene_cuts), guarded_frames=list(stats.guarded_frames),
                           earlier_frames=t.earlier_frames, earlier_kept_windows=t.earlier_kept_windows,
                           earlier_memory_frames=t.earlier_memory_frames, earlier_kept_memory=t.earlier_kept_memory,
                           earlier_fallbacks=t.earlier_fallbacks, earlier_scene_cuts=t.earlier_scene_cuts,
                           earlier_guarded=t.earlier_guarded)

    def state_nbytes(self) -> int:
        """Bytes of every tensor the tracker holds: memory bank, object pointers, the current frame's features and
        mask logits, prompts (each storage counted once)."""
        seen: set[tuple[int, str]] = set()
        total = 0

        def add(t: torch.Tensor | None) -> None:
            nonlocal total
            if t is None:
                return
            storage = t.untyped_storage()
            key = (storage.data_ptr(), str(t.device))
            if key not in seen:
                seen.add(key)
                total += storage.nbytes()

        for obj in self.objects.values():
            for t in obj.tensors():
                add(t)
        if self._features is not None:
            for t in (*self._features.high_res, self._features.vision, self._features.vision_pos):
                add(t)
        add(self._image)
        total += sum(p.nbytes() for prompts in self._pending.values() for p in prompts)
        return total + self.policy.nbytes()

    # ------------------------------------------------------------------ prompts
    @torch.inference_mode()
    def add_object(self, obj_id: int, *, mask=None, points=None, labels=None, box=None,
                   clear_old_points: bool = True) -> torch.Tensor | None:
        """Prompt object `obj_id` on the frame just tracked (before the first frame: on the first frame).

        Give a mask (2-D, the frame's H x W; pixels > 0 are the object), or clicks (`points` (N, 2) as (x, y) in
        frame pixels with `labels` (N,), 1 positive, 0 negative) and/or a `box` (x0, y0, x1, y1). A new id starts
        a new object; for a known one the prompt corrects its mask on this frame (clicks refine its current logits;
        with clear_old_points=False they add to earlier clicks on this frame), and the frame becomes one of its
        conditioning frames. Later frames are tracked from the corrected mask. Returns the object's (H, W) bool mask
        on the frame, or None before the first frame (the prompt is then checked against the first frame when it
        arrives).
        """
        obj_id = _check_obj_id(obj_id)
        prompt = _parse_prompt(mask, points, labels, box, clear_old_points)
        if self._frame_idx < 0:
            self._pending.setdefault(obj_id, []).append(prompt)
            return None
        out = self._prompt(obj_id, prompt)
        self._replan = True  # the policy planned the next frame from the masks before this prompt
        H, W = self._size
        logits = F.interpolate(out.pred_masks.to(self.device), size=(H, W), mode="bilinear", align_corners=False)
        return logits[0, 0] > 0

    @torch.inference_mode()
    def remove_object(self, obj_id: int) -> None:
        """Stop tracking an object and forget everything about it; PromptError for an unknown id."""
        key = None if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)) else int(obj_id)
        if key not in self.objects and key not in self._pending:
            raise PromptError(f"cannot remove unknown object id {obj_id!r}; known ids: {self.obj_ids}")
        self.objects.pop(key, None)
        self._pending.pop(key, None)
        self.policy.forget_object(key)

    def _prompt(self, obj_id: int, prompt: _Prompt) -> FrameOutput:
        """A prompted step for one object on the current frame (dense; its memory is encoded with the next frame)."""
        t = self._frame_idx
        size = self._size
        feats = self._current_features()
        created = obj_id not in self.objects
        obj = self.objects.setdefault(obj_id, ObjectTrack(obj_id))
        try:
            points = mask = prev_logits = None
            if prompt.kind == "mask":
                mask = mask_prompt(prompt.mask, size, self.image_size, self.device, what="the frame's")
            else:
                points = point_prompt(prompt.points, prompt.labels, prompt.box, size, self.image_size, self.device,
                                      prompt.clear_old_points)
                if not prompt.clear_old_points and t in obj.point_inputs:
                    points = obj.point_inputs[t].cat(points)
            # a first prompt reads no memory; a correction of a tracked frame reads the memory bank, as offline
            is_init = t not in obj.frames_tracked
            temp = obj.temp_cond_outputs
            if points is not None:
                prev = temp.get(t) or obj.cond_outputs.get(t) or obj.non_cond_outputs.get(t)
                if prev is not None:
                    prev_logits = prev.pred_masks.to(self.device).clamp(-32.0, 32.0)
            group = self.loop.step(feats, [obj], t, STREAM_LENGTH, is_init=is_init, points=points, mask=mask,
                                   prev_mask_logits=prev_logits, run_mem_encoder=False)
        except BaseException:
            if created:
                self.objects.pop(obj_id, None)
            raise
        if points is not None:
            obj.point_inputs[t] = points
            obj.mask_inputs.pop(t, None)
        else:
            obj.mask_inputs[t] = mask
            obj.point_inputs.pop(t, None)
        out = group.outputs[0]
        temp[t] = out
        return out

    def _commit_prompts(self) -> None:
        """Move the outputs of prompts on the current frame into the memory bank as conditioning frames, encoding
        their memories; each object keeps at most `max_cond_frames` of them (the first and the most recent).

        Offline, a correction of a tracked frame becomes an ordinary memory (forgotten after `num_maskmem` frames);
        in a stream it is kept as a conditioning frame (the reference's `add_all_frames_to_correct_as_cond`), so
        that a correction of a drifting object lasts.
        """
        for obj in self.objects.values():
            if not obj.temp_cond_outputs:
                continue
            for t, out in obj.temp_cond_outputs.items():
                if out.maskmem_features is None:
                    out.maskmem_features = self.loop.encode_memory(self._current_features(), out)
                obj.cond_outputs[t] = out
                obj.non_cond_outputs.pop(t, None)
            obj.temp_cond_outputs.clear()
            if len(obj.cond_outputs) > self.max_cond_frames:
                frames = sorted(obj.cond_outputs)
                keep = {frames[0], *frames[-(self.max_cond_frames - 1):]}
                for t in frames:
                    if t not in keep:
                        del obj.cond_outputs[t]

    # ------------------------------------------------------------------ frames
    def _current_features(self) -> BackboneFeatures:
        """The current frame's image features, encoded on first use (routed by the policy's window plan)."""
        if self._features is None:
            if self._image is None:
                raise PromptError("no frame has been tracked yet")
            # routed only while the frame is being tracked; a prompt after that encodes it densely
            self._features = self.loop.encode(self._image, self._frame_idx, None if self._observed else self.policy)
            self._image = None
        return self._features

    @torch.inference_mode()
    def track(self, frame) -> TrackResult:
        """Segment every object on the next frame of the stream: an (H, W, 3) uint8 RGB array (any size; sizes may
        change between frames) or a PIL image. Prompts given before the first frame are applied to it first."""
        try:
            rgb = load_image(frame)
        except ImageError as exc:
            raise ImageError(f"frame {self._frame_idx + 1} of the stream: {exc}") from None
        self._commit_prompts()  # prompts on the previous frame, with its features
        if self._replan:
            self.policy.start(False)  # plans made before those prompts are void: the next frames run densely
            self._replan = False
        t = self._frame_idx + 1
        image = preprocess_frame(rgb, self.image_size).to(self.device).unsqueeze(0)
        saved = (self._frame_idx, self._size, self._image, self._features, self._observed)
        self._frame_idx, self._size, self._image, self._features, self._observed = t, rgb.shape[:2], image, None, False
        if self._pending:
            created = [o for o in self._pending if o not in self.objects]
            try:
                for obj_id, prompts in self._pending.items():
                    for prompt in prompts:
                        self._prompt(obj_id, prompt)
            except BaseException as exc:
                for o in created:
                    self.objects.pop(o, None)
                self._frame_idx, self._size, self._image, self._features, self._observed = saved
                if isinstance(exc, PromptError):
                    raise PromptError(f"the prompt given before the first frame for object {obj_id} does not fit "
                                      f"it: {exc} (remove_object({obj_id}) or reset() to drop it)") from None
                raise
            self._pending.clear()
            self._commit_prompts()
        tracks = list(self.objects.values())
        results = self.loop.track_frame(self._current_features, tracks, t, STREAM_LENGTH, False, self.policy)
        self._observed = True
        result = self._result(t, [r.output for r in results])
        self._forget(t)
        self._fold_statistics(t)
        return result

    def _result(self, t: int, outputs: list[FrameOutput]) -> TrackResult:
        H, W = self._size
        n = len(outputs)
        if n == 0:
            empty = torch.zeros((0, H, W), device=self.device)
            return TrackResult(t, [], empty.bool(), empty, torch.zeros((0,), device=self.device))
        logits = torch.cat([o.pred_masks.to(self.device) for o in outputs], 0)
        logits = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False)
        if self.non_overlap_masks:
            logits = non_overlap(logits)
        scores = torch.cat([o.object_score_logits.to(self.device).reshape(-1) for o in outputs])
        logits = logits[:, 0]
        return TrackResult(t, list(self.objects), logits > 0, logits, scores)

    def _forget(self, t: int) -> None:
        """Drop what no later frame (nor a prompt on frame t) can read: see `frames_to_keep`."""
        cfg = self.model.cfg
        keep = [frames_to_keep(last, cfg.num_maskmem, cfg.memory_temporal_stride, cfg.max_obj_ptrs_in_encoder)
                for last in (t - 1, t)]
        for obj in self.objects.values():
            for d in (obj.frames_tracked, obj.point_inputs, obj.mask_inputs):
                for f in [f for f in d if f < t]:
                    del d[f]
            for f, out in list(obj.cond_outputs.items()):
                if f < t and out.pred_masks is not None:
                    obj.cond_outputs[f] = replace(out, pred_masks=None)
            for f, out in list(obj.non_cond_outputs.items()):
                if f >= t:
                    continue
                memory = any(needs_memory(f) for needs_memory, _ in keep)
                pointer = any(needs_pointer(f) for _, needs_pointer in keep)
                if not memory and not pointer:
                    del obj.non_cond_outputs[f]
                elif out.pred_masks is not None or (not memory and out.maskmem_features is not None):
                    obj.non_cond_outputs[f] = replace(out, pred_masks=None,
                                                      maskmem_features=out.maskmem_features if memory else None)

    def _fold_statistics(self, t: int) -> None:
        """Fold per-frame statistics older than STATS_WINDOW frames into the stream's totals."""
        stats = getattr(self.policy, "stats", None)
        if stats is None:
            return
        old = t - STATS_WINDOW
        totals = self._totals
        for f in [f for f in stats.kept_windows if f <= old]:
            totals.earlier_frames += 1
            totals.earlier_kept_windows += stats.kept_windows.pop(f)
        for f in [f for f in stats.kept_memory if f <= old]:
            totals.earlier_memory_frames += 1
            totals.earlier_kept_memory += stats.kept_memory.pop(f)
        for frames, total in ((stats.saliency_fallbacks, "earlier_fallbacks"), (stats.scene_cuts, "earlier_scene_cuts"),
                              (stats.guarded_frames, "earlier_guarded")):
            recent = [f for f in frames if f > old]
            setattr(totals, total, getattr(totals, total) + len(frames) - len(recent))
            frames[:] = recent


# ---------------------------------------------------------------------------------------------------------------------


def _check_obj_id(obj_id) -> int:
    if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
        raise PromptError(f"object id must be an integer, got {obj_id!r}")
    return int(obj_id)


def _parse_prompt(mask: Any, points: Any, labels: Any, box: Any, clear_old_points: bool) -> _Prompt:
    """Check a prompt's form (its fit to a frame is checked when it is applied)."""
    if mask is not None:
        if points is not None or labels is not None or box is not None:
            raise PromptError("give either a mask or points / a box for an object, not both")
        return _Prompt("mask", mask=_as_mask(mask).copy())
    if points is None and labels is None and box is None:
        raise PromptError("empty prompt: give a mask, points (with their labels) or a box")
    if (points is None) != (labels is None):
        raise PromptError("points and labels must be given together")
    pts = None if points is None else _as_points(points)
    lab = None if labels is None else _as_labels(labels)
    b = None if box is None else _as_box(box)
    if box is not None and not clear_old_points:
        raise PromptError("a box must come before any click: use clear_old_points=True with a box")
    return _Prompt("points", points=pts, labels=lab, box=b, clear_old_points=bool(clear_old_points))
