"""Video predictor with the reference SAM 2 API (per-object memory semantics of the Dec-2024 predictor).

All per-video state lives in an `InferenceState` (per-object `ObjectTrack`s and the video's frame policy); the
predictor's methods are thin, every model step goes through the one `TrackingLoop`, and the model is stateless.
Dense SAM 2 and Efficient-SAM2 are the same predictor with different frame policies (`policy=`).
Frames are decoded lazily through a bounded cache, so a long video never sits in memory as S x S float tensors.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..io.frames import FrameDecodeError, VideoError, VideoFrames
from ..modeling.sam2 import NO_OBJ_SCORE, BackboneFeatures, PointPrompt, SAM2Model
from ..tracking.loop import TrackingLoop
from ..tracking.policy import DenseFactory, FramePolicy, PolicyFactory
from ..tracking.state import FrameOutput, ObjectTrack
from ..tracking.postprocess import non_overlap

__all__ = ["VideoPredictor", "InferenceState", "FrameOutput", "ObjectState", "PromptError", "VideoError",
           "FrameDecodeError"]


class PromptError(ValueError):
    """A prompt (points, box, mask, frame index, object id) that cannot be used."""


ObjectState = ObjectTrack  # the name used before the tracking layer existed


@dataclass
class InferenceState:
    """Everything the predictor knows about one video."""

    frames: VideoFrames
    device: torch.device
    storage_device: torch.device
    objects: "OrderedDict[int, ObjectState]" = field(default_factory=OrderedDict)
    feature_cache: "OrderedDict[int, BackboneFeatures]" = field(default_factory=OrderedDict)
    feature_cache_size: int = 2
    policy: FramePolicy = field(default_factory=FramePolicy)  # this video's frame policy (dense: no plans)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def video_height(self) -> int:
        return self.frames.height

    @property
    def video_width(self) -> int:
        return self.frames.width

    @property
    def obj_ids(self) -> list[int]:
        return list(self.objects)

    def check_frame(self, frame_idx: int) -> int:
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
            raise PromptError(f"frame index must be an integer, got {frame_idx!r}")
        if not 0 <= frame_idx < self.num_frames:
            raise PromptError(f"frame index {frame_idx} is outside the video (frames 0..{self.num_frames - 1})")
        return int(frame_idx)


class VideoPredictor:
    """Semi-supervised video object segmentation with SAM 2 (reference-compatible API).

    Args:
        model: a SAM2Model (e.g. from `build_sam2`).
        fill_hole_area: background holes of at most this many pixels (at 4E x 4E) in predicted masks become
            foreground (0 = off).
        non_overlap_masks: at each pixel keep only the highest-scoring object in returned masks.
        policy: makes each video's frame policy (`new_video()`); None is dense SAM 2, an
            `efficient_sam2.efficient.EfficientSAM2` is Efficient-SAM2 (see `EfficientVideoPredictor`).
    """

    def __init__(self, model: SAM2Model, fill_hole_area: int = 0, non_overlap_masks: bool = False,
                 policy: PolicyFactory | None = None) -> None:
        if isinstance(fill_hole_area, bool) or not isinstance(fill_hole_area, (int, np.integer)) or fill_hole_area < 0:
            raise ValueError(f"fill_hole_area must be a non-negative integer (pixels), got {fill_hole_area!r}")
        self.model = model
        self.fill_hole_area = fill_hole_area
        self.non_overlap_masks = non_overlap_masks
        self.policy = policy if policy is not None else DenseFactory()
        self.loop = TrackingLoop(model, fill_hole_area=fill_hole_area)

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ------------------------------------------------------------------ state
    @torch.inference_mode()
    def init_state(
        self,
        video,
        offload_video_to_cpu: bool = True,
        offload_state_to_cpu: bool = False,
        frame_cache_size: int = 16,
        feature_cache_size: int = 2,
    ) -> InferenceState:
        """Open `video` (a folder of JPEG frames, a video file, or a sequence of RGB frames) for tracking.

        Frames are decoded on demand through an LRU cache of `frame_cache_size` preprocessed frames (kept on the
        CPU with `offload_video_to_cpu`, else on the model's device); the image features of the last
        `feature_cache_size` frames are kept too. With `offload_state_to_cpu` the per-frame memories and masks
        are stored on the CPU. Raises VideoNotFoundError (a FileNotFoundError) for a missing path and VideoError
        (a ValueError) for an empty folder, an unreadable file or a frame that cannot be decoded.
        """
        for what, value, low in (("frame_cache_size", frame_cache_size, 0),
                                 ("feature_cache_size", feature_cache_size, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
        frames = video if isinstance(video, VideoFrames) else VideoFrames(
            video, image_size=self.image_size, cache_size=int(frame_cache_size), device=self.device,
            offload=offload_video_to_cpu,
        )
        if frames.image_size != self.image_size:
            raise ValueError(
                f"the VideoFrames were prepared for image_size {frames.image_size}, the model uses {self.image_size}"
            )
        device = self.device
        state = InferenceState(
            frames=frames,
            device=device,
            storage_device=torch.device("cpu") if offload_state_to_cpu else device,
            feature_cache_size=int(feature_cache_size),
        )
        self._new_video(state)
        # Warm up: encode frame 0 (it is almost always the first frame prompted).
        try:
            self._image_features(state, 0)
        except BaseException:
            if frames is not video:
                frames.close()
            raise
        return state

    def _new_video(self, state: InferenceState) -> None:
        state.policy = self.policy.new_video()

    def statistics(self, state: InferenceState):
        """What the frame policy skipped on this video so far (`EfficiencyStats`), or None for dense SAM 2."""
        return getattr(state.policy, "stats", None)

    @torch.inference_mode()
    def reset_state(self, state: InferenceState) -> None:
        """Remove every object, prompt and result (the video itself stays open)."""
        state.objects.clear()
        self._new_video(state)

    def _object(self, state: InferenceState, obj_id, create: bool = True) -> ObjectState:
        if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
            raise PromptError(f"object id must be an integer, got {obj_id!r}")
        obj_id = int(obj_id)
        obj = state.objects.get(obj_id)
        if obj is None:
            if not create:
                raise PromptError(f"unknown object id {obj_id}; known ids: {state.obj_ids}")
            obj = ObjectTrack(obj_id)
            state.objects[obj_id] = obj
        return obj

    # ------------------------------------------------------------------ features
    def _image_features(self, state: InferenceState, frame_idx: int,
                        policy: FramePolicy | None = None) -> BackboneFeatures:
        """Features of a frame from the cache, or encoded (routed by `policy` while propagating)."""
        feats = state.feature_cache.get(frame_idx)
        if feats is not None:
            state.feature_cache.move_to_end(frame_idx)
            return feats
        image = state.frames.get_tensor(frame_idx).to(state.device, non_blocking=True).float().unsqueeze(0)
        feats = self.loop.encode(image, frame_idx, policy)
        state.feature_cache[frame_idx] = feats
        while len(state.feature_cache) > state.feature_cache_size:
            state.feature_cache.popitem(last=False)
        return feats

    # ------------------------------------------------------------------ prompts
    @torch.inference_mode()
    def add_new_points_or_box(
        self,
        state: InferenceState,
        frame_idx: int,
        obj_id: int,
        points=None,
        labels=None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box=None,
    ):
        """Add clicks and/or a box for one object on one frame; returns (frame_idx, obj_ids, masks (N,1,H,W)).

        Points are (x, y) in video pixels (or in [0, 1] with normalize_coords=False); labels 1 = positive,
        0 = negative. A box (x0, y0, x1, y1) is placed before the clicks. On a frame already tracked for this
        object the clicks refine the tracked mask.
        """
        frame_idx = state.check_frame(frame_idx)
        self._check_obj_id(obj_id)
        prompt = self._make_point_prompt(state, points, labels, box, clear_old_points, normalize_coords)
        with self._prompt_transaction(state, obj_id, frame_idx) as obj:
            if not clear_old_points and frame_idx in obj.point_inputs:
                prompt = obj.point_inputs[frame_idx].cat(prompt)
            obj.point_inputs[frame_idx] = prompt
            obj.mask_inputs.pop(frame_idx, None)

            is_init = frame_idx not in obj.frames_tracked
            reverse = False if is_init else obj.frames_tracked[frame_idx]
            temp = obj.temp_cond_outputs if is_init else obj.temp_non_cond_outputs
            prev = temp.get(frame_idx) or obj.cond_outputs.get(frame_idx) or obj.non_cond_outputs.get(frame_idx)
            prev_logits = None
            if prev is not None:
                prev_logits = prev.pred_masks.to(state.device).clamp(-32.0, 32.0)
            out = self._run_frame(state, obj, frame_idx, is_init, reverse, points=prompt, mask=None,
                                  prev_mask_logits=prev_logits)
            temp[frame_idx] = out
        return frame_idx, state.obj_ids, self._consolidated_masks(state, frame_idx, is_init)

    add_new_points = add_new_points_or_box

    @staticmethod
    def _check_obj_id(obj_id) -> int:
        if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
            raise PromptError(f"object id must be an integer, got {obj_id!r}")
        return int(obj_id)

    @contextmanager
    def _prompt_transaction(self, state: InferenceState, obj_id: int, frame_idx: int):
        """Yield the object to prompt; if anything fails, undo the prompt (and forget an object created here)."""
        obj_id = self._check_obj_id(obj_id)
        created = obj_id not in state.objects
        obj = self._object(state, obj_id)
        saved = (obj.point_inputs.get(frame_idx), obj.mask_inputs.get(frame_idx))
        try:
            yield obj
        except BaseException:
            if created:
                state.objects.pop(obj_id, None)
            else:
                for d, old in zip((obj.point_inputs, obj.mask_inputs), saved):
                    if old is None:
                        d.pop(frame_idx, None)
                    else:
                        d[frame_idx] = old
            raise

    def _make_point_prompt(self, state, points, labels, box, clear_old_points, normalize_coords) -> PointPrompt:
        return point_prompt(points, labels, box, (state.video_height, state.video_width), self.image_size,
                            state.device, clear_old_points, normalize_coords)

    @staticmethod
    def _check_inside(pts: np.ndarray, w: float, h: float, what: str) -> None:
        _check_inside(pts, w, h, what)

    @torch.inference_mode()
    def add_new_mask(self, state: InferenceState, frame_idx: int, obj_id: int, mask):
        """Give an object's mask on a frame (2-D, the video's H x W); returns (frame_idx, obj_ids, masks)."""
        frame_idx = state.check_frame(frame_idx)
        self._check_obj_id(obj_id)
        mt = mask_prompt(mask, (state.video_height, state.video_width), self.image_size, state.device)
        with self._prompt_transaction(state, obj_id, frame_idx) as obj:
            obj.mask_inputs[frame_idx] = mt
            obj.point_inputs.pop(frame_idx, None)
            is_init = frame_idx not in obj.frames_tracked
            reverse = False if is_init else obj.frames_tracked[frame_idx]
            temp = obj.temp_cond_outputs if is_init else obj.temp_non_cond_outputs
            out = self._run_frame(state, obj, frame_idx, is_init, reverse, points=None, mask=mt,
                                  prev_mask_logits=None)
            temp[frame_idx] = out
        return frame_idx, state.obj_ids, self._consolidated_masks(state, frame_idx, is_init)

    @torch.inference_mode()
    def clear_all_prompts_in_frame(self, state: InferenceState, frame_idx: int, obj_id: int, need_output=True):
        """Forget one object's prompts on one frame (a conditioning frame becomes an ordinary tracked frame)."""
        frame_idx = state.check_frame(frame_idx)
        obj = self._object(state, obj_id, create=False)
        obj.point_inputs.pop(frame_idx, None)
        obj.mask_inputs.pop(frame_idx, None)
        obj.temp_cond_outputs.pop(frame_idx, None)
        obj.temp_non_cond_outputs.pop(frame_idx, None)
        out = obj.cond_outputs.pop(frame_idx, None)
        if out is not None:
            # no longer prompted: the frame's result stays as an ordinary memory, and a later prompt there is
            # a new conditioning frame
            obj.non_cond_outputs[frame_idx] = out
            obj.frames_tracked.pop(frame_idx, None)
        if not need_output:
            return None
        is_cond = any(frame_idx in o.temp_cond_outputs for o in state.objects.values())
        return frame_idx, state.obj_ids, self._consolidated_masks(state, frame_idx, is_cond)

    @torch.inference_mode()
    def remove_object(self, state: InferenceState, obj_id: int, strict: bool = False, need_output: bool = True):
        """Drop an object and everything about it.

        Returns (remaining obj_ids, updated) where `updated` lists (frame_idx, masks (N, 1, H, W)) of the remaining
        objects on every frame that the removed object had prompts on (empty with need_output=False or when no
        object remains). An unknown id is ignored unless `strict`.
        """
        key = None
        if not isinstance(obj_id, bool) and isinstance(obj_id, (int, np.integer)):
            key = int(obj_id)
        if key not in state.objects:
            if strict:
                raise PromptError(f"cannot remove unknown object id {obj_id!r}; known ids: {state.obj_ids}")
            return state.obj_ids, []
        obj = state.objects.pop(key)
        if not state.objects:
            self.reset_state(state)
            return state.obj_ids, []
        updated = []
        if need_output:
            for t in sorted(set(obj.point_inputs) | set(obj.mask_inputs)):
                is_cond = any(t in o.temp_cond_outputs for o in state.objects.values())
                updated.append((t, self._consolidated_masks(state, t, is_cond)))
        return state.obj_ids, updated

    # ------------------------------------------------------------------ propagation
    @torch.inference_mode()
    def propagate_in_video(
        self,
        state: InferenceState,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
        progress: bool = True,
    ) -> Iterator[tuple[int, list[int], torch.Tensor]]:
        """Track every object; yields (frame_idx, obj_ids, mask logits (N, 1, H, W)) frame by frame.

        Starts at `start_frame_idx` (default: the earliest prompted frame of any object) and visits at most
        `max_frame_num_to_track` frames after it (before it with `reverse`), the start frame included; reverse
        tracking from frame 0 visits nothing. Prompted frames return their stored masks. A frame that cannot be
        decoded raises FrameDecodeError (naming the file) when tracking reaches it; frames yielded before stay
        tracked.
        """
        if max_frame_num_to_track is not None and (
            isinstance(max_frame_num_to_track, bool)
            or not isinstance(max_frame_num_to_track, (int, np.integer))
            or max_frame_num_to_track < 0
        ):
            raise ValueError(f"max_frame_num_to_track must be None or an integer >= 0, got {max_frame_num_to_track!r}")
        if not isinstance(reverse, (bool, np.bool_)):
            raise TypeError(f"reverse must be True or False, got {reverse!r}")
        if start_frame_idx is not None:
            state.check_frame(start_frame_idx)
        self._preflight(state)
        objs = list(state.objects.values())
        n = state.num_frames
        if start_frame_idx is None:
            start_frame_idx = min(t for o in objs for t in o.cond_outputs)
        start_frame_idx = state.check_frame(start_frame_idx)
        if max_frame_num_to_track is None:
            max_frame_num_to_track = n
        if reverse:
            end = max(start_frame_idx - max_frame_num_to_track, 0)
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
        else:
            end = min(start_frame_idx + max_frame_num_to_track, n - 1)
            order = range(start_frame_idx, end + 1)
        policy = state.policy
        policy.start(reverse)
        try:
            for frame_idx in tqdm(order, desc="propagate in video", disable=not progress):
                results = self.loop.track_frame(
                    lambda t=frame_idx: self._image_features(state, t, policy), objs, frame_idx, n, reverse,
                    policy, state.storage_device,
                )
                masks = torch.cat([r.output.pred_masks.to(state.device) for r in results], 0)
                yield frame_idx, state.obj_ids, self._video_res(state, masks)
        finally:
            policy.stop()

    def _run_frame(
        self,
        state: InferenceState,
        obj: ObjectTrack,
        frame_idx: int,
        is_init: bool,
        reverse: bool,
        points: PointPrompt | None,
        mask: torch.Tensor | None,
        prev_mask_logits: torch.Tensor | None,
    ) -> FrameOutput:
        """A prompted step for one object on `frame_idx` (dense; its memory is encoded when tracking resumes)."""
        group = self.loop.step(
            self._image_features(state, frame_idx), [obj], frame_idx, state.num_frames, is_init=is_init,
            reverse=reverse, points=points, mask=mask, prev_mask_logits=prev_mask_logits, run_mem_encoder=False,
            storage_device=state.storage_device,
        )
        return group.outputs[0]

    def _preflight(self, state: InferenceState) -> None:
        """Move just-prompted outputs into the memory bank, encoding their memories."""
        if not state.objects:
            raise PromptError("no object has been prompted yet: add points, a box or a mask first")
        for obj in state.objects.values():
            for temp, store in ((obj.temp_non_cond_outputs, obj.non_cond_outputs),
                                (obj.temp_cond_outputs, obj.cond_outputs)):
                for t, out in temp.items():
                    if out.maskmem_features is None:
                        mem = self.loop.encode_memory(self._image_features(state, t), out)
                        out.maskmem_features = mem.to(state.storage_device)
                    store[t] = out
                temp.clear()
            if not obj.cond_outputs:
                raise PromptError(f"object {obj.obj_id} has no prompt yet: add points, a box or a mask for it")
            for t in obj.cond_outputs:
                obj.non_cond_outputs.pop(t, None)

    # ------------------------------------------------------------------ outputs
    def _consolidated_masks(self, state: InferenceState, frame_idx: int, is_cond: bool) -> torch.Tensor:
        """All objects' current logits on a frame at video resolution (N, 1, H, W); absent ones NO_OBJ_SCORE."""
        H, W = state.video_height, state.video_width
        out = torch.full((len(state.objects), 1, H, W), NO_OBJ_SCORE, device=state.device)
        for i, obj in enumerate(state.objects.values()):
            temp = obj.temp_cond_outputs if is_cond else obj.temp_non_cond_outputs
            o = temp.get(frame_idx) or obj.cond_outputs.get(frame_idx) or obj.non_cond_outputs.get(frame_idx)
            if o is not None:
                out[i : i + 1] = F.interpolate(o.pred_masks.to(state.device), size=(H, W), mode="bilinear",
                                               align_corners=False)
        if self.non_overlap_masks:
            out = non_overlap(out)
        return out

    def _video_res(self, state: InferenceState, masks: torch.Tensor) -> torch.Tensor:
        H, W = state.video_height, state.video_width
        if masks.shape[-2:] != (H, W):
            masks = F.interpolate(masks, size=(H, W), mode="bilinear", align_corners=False)
        if self.non_overlap_masks:
            masks = non_overlap(masks)
        return masks


# ---------------------------------------------------------------------------------------------------------------------
# Prompt parsing shared by the video and image predictors.


def point_prompt(points, labels, box, size: tuple[int, int], image_size: int, device, clear_old_points: bool = True,
                 normalize_coords: bool = True) -> PointPrompt:
    """Clicks and/or a box on a frame of `size` (H, W) as a PointPrompt in model-input pixels (a box first).

    Points are (x, y) in frame pixels (or in [0, 1] with normalize_coords=False); PromptError for anything unusable.
    """
    if (points is None) != (labels is None):
        raise PromptError("points and labels must be given together")
    H, W = size
    pts = np.zeros((0, 2), np.float32) if points is None else _as_points(points)
    lab = np.zeros((0,), np.int64) if labels is None else _as_labels(labels)
    if pts.shape[0] != lab.shape[0]:
        raise PromptError(f"got {pts.shape[0]} points but {lab.shape[0]} labels; give one label per point")
    if box is None and pts.shape[0] == 0:
        raise PromptError("empty prompt: give at least one point (with its label) or a box")
    if lab.size and not np.isin(lab, (-1, 0, 1, 2, 3)).all():
        raise PromptError(f"point labels must be 1 (positive) or 0 (negative), got {sorted(set(lab.tolist()))}")
    if not np.isfinite(pts).all():
        raise PromptError("point coordinates must be finite numbers (got NaN or infinity)")
    limit_w, limit_h = (W, H) if normalize_coords else (1.0, 1.0)
    if box is not None:
        if not clear_old_points:
            raise PromptError("a box must come before any click: use clear_old_points=True with a box")
        b = _as_box(box)
        _check_inside(b.reshape(2, 2), limit_w, limit_h, "box corner")
        pts = np.concatenate([b.reshape(2, 2), pts], 0)
        lab = np.concatenate([np.array([2, 3]), lab], 0)
    _check_inside(pts, limit_w, limit_h, "point")
    scale = np.array([image_size / limit_w, image_size / limit_h], np.float32)
    coords = torch.from_numpy(pts * scale).to(device)[None]
    return PointPrompt(coords, torch.from_numpy(lab.astype(np.int32)).to(device)[None])


def _check_inside(pts: np.ndarray, w: float, h: float, what: str) -> None:
    bad = (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)
    if bad.any():
        x, y = pts[bad][0].tolist()
        raise PromptError(f"{what} ({x:g}, {y:g}) is outside the frame (x in [0, {w:g}], y in [0, {h:g}])")


def _as_mask(mask) -> np.ndarray:
    """A 2-D (H, W) numeric or boolean array from a mask prompt ((1, H, W) accepted); PromptError otherwise."""
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.dtype == object or not (np.issubdtype(m.dtype, np.number) or m.dtype == bool):
        raise PromptError(f"a mask must be a numeric or boolean array, got dtype {m.dtype}")
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise PromptError(f"a mask must be 2-D (H, W), got shape {m.shape}")
    return m


def mask_prompt(mask, size: tuple[int, int], image_size: int, device, what: str = "the video's") -> torch.Tensor:
    """A (1, 1, S, S) binary mask input from a mask at the frame's `size` (H, W): pixels > 0 are the object,
    resized (bilinear, antialiased) to S x S and re-binarised at 0.5. PromptError for a bad mask or size."""
    m = _as_mask(mask)
    H, W = size
    if m.shape != (H, W):
        raise PromptError(
            f"mask size {m.shape[1]}x{m.shape[0]} (WxH) differs from {what} {W}x{H}; "
            f"give a mask at {what} resolution"
        )
    S = image_size
    mt = torch.from_numpy(m > 0).float()[None, None].to(device)
    if (H, W) != (S, S):
        mt = F.interpolate(mt, size=(S, S), mode="bilinear", align_corners=False, antialias=True)
        mt = (mt >= 0.5).float()
    return mt


def _as_points(points) -> np.ndarray:
    """(N, 2) float32 (x, y) points from an (N, 2) or (2,) array-like; PromptError otherwise."""
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    try:
        pts = np.asarray(points, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"points must be numbers in an (N, 2) array of (x, y), got {points!r}") from exc
    if pts.size == 0:
        return np.zeros((0, 2), np.float32)
    if pts.ndim == 1 and pts.shape[0] == 2:
        pts = pts[None]
    elif pts.ndim == 3 and pts.shape[0] == 1:
        pts = pts[0]  # a batch of one, as the reference accepts
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise PromptError(f"points must be an (N, 2) array of (x, y), got shape {tuple(pts.shape)}")
    return pts


def _as_labels(labels) -> np.ndarray:
    """(N,) int64 labels; PromptError for non-integer values."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    try:
        lab = np.asarray(labels)
        num = lab.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"labels must be integers (1 positive, 0 negative), got {labels!r}") from exc
    if lab.ndim == 2 and lab.shape[0] == 1:
        lab, num = lab[0], num[0]
    if lab.ndim > 1:
        raise PromptError(f"labels must be a 1-D array (one label per point), got shape {tuple(lab.shape)}")
    num = num.reshape(-1)
    if not np.all(np.isfinite(num)) or not np.all(num == np.round(num)):
        raise PromptError(f"labels must be integers (1 positive, 0 negative), got {num.tolist()}")
    return num.astype(np.int64)


def _as_box(box) -> np.ndarray:
    """(4,) float32 (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1; PromptError otherwise."""
    if isinstance(box, torch.Tensor):
        box = box.detach().cpu().numpy()
    try:
        b = np.asarray(box, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"a box is four numbers (x0, y0, x1, y1), got {box!r}") from exc
    if b.shape[0] != 4:
        raise PromptError(f"a box is four numbers (x0, y0, x1, y1), got {b.shape[0]} number(s)")
    if not np.isfinite(b).all():
        raise PromptError(f"box coordinates must be finite numbers, got {b.tolist()}")
    if b[2] < b[0] or b[3] < b[1]:
        raise PromptError(
            f"box {[round(float(v), 3) for v in b]} has x1 < x0 or y1 < y0; a box is (x0, y0, x1, y1) with "
            "(x0, y0) the top-left corner"
        )
    return b
