"""One opened video: its frames, the predictor state, the tracked masks and the progress of the running job.

Model work (prompts, propagation, automatic masks, removal, reset, export) runs one call at a time under the
session's `lock`; reading frames and masks, the progress stream and cancelling do not wait for it, so the page stays
live while a video is tracked. Tracked masks are kept per frame as palette PNG bytes (pixel value = object id), so
a long video costs kilobytes per frame, not a decoded array.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
from PIL import Image

from ..inference.common import logits_to_ids
from ..io.frames import FrameDecodeError, VideoError, VideoFrames
from ..io.masks import DAVIS_PALETTE, encode_rle
from ..predictors.video import PromptError
from .engine import Engine
from .errors import BadRequest, NotFound

DIRECTIONS = ("forward", "backward", "both")
MAX_OBJ_ID = 255  # object ids are palette indices


def encode_png(ids: np.ndarray) -> bytes:
    """(H, W) uint8 object ids as a palette PNG (DAVIS colours; index 0 transparent so it overlays a frame)."""
    img = Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint8), mode="L")
    img.putpalette(DAVIS_PALETTE)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1, transparency=0)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img)


@dataclass
class Progress:
    """The session's current or last job, as the page's progress bar shows it."""

    state: str = "idle"  # idle | running | done | cancelled | error
    job: str = ""
    done: int = 0
    total: int = 0
    frame_idx: int | None = None
    frames_per_s: float = 0.0
    message: str = ""
    version: int = 0

    def as_dict(self) -> dict:
        return {"state": self.state, "job": self.job, "done": self.done, "total": self.total,
                "frame_idx": self.frame_idx, "frames_per_s": round(self.frames_per_s, 3), "message": self.message}


@dataclass
class PropagationResult:
    frames: int
    seconds: float
    cancelled: bool
    statistics: dict | None
    efficient: bool
    direction: str

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {"frames": self.frames, "frames_per_s": round(self.frames_per_s, 3), "statistics": self.statistics,
                "seconds": round(self.seconds, 4), "cancelled": self.cancelled, "efficient": self.efficient,
                "direction": self.direction}


@dataclass
class VideoSession:
    """A video opened for tracking. Create with `VideoSession.open`; `close()` releases it (its folder is the
    store's to remove)."""

    video_id: str
    engine: Engine
    frames: VideoFrames  # read by the predictor, under `lock`
    viewer: VideoFrames  # a second reader for the frame images, under `_view_lock`
    state: object
    folder: str | None  # the private folder of an upload (None: a video named on the command line)
    fps: float
    lock: threading.RLock = field(default_factory=threading.RLock)
    last_used: float = field(default_factory=time.monotonic)
    progress: Progress = field(default_factory=Progress)
    last_run: dict | None = None
    _masks: dict = field(default_factory=dict)  # frame index -> palette PNG bytes
    _data_lock: threading.Lock = field(default_factory=threading.Lock)
    _view_lock: threading.Lock = field(default_factory=threading.Lock)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    @classmethod
    def open(cls, video_id: str, engine: Engine, path: str, folder: str | None) -> "VideoSession":
        """Open `path` (a video file or a folder of frames) and embed frame 0. BadRequest for what cannot be read."""
        def public(message: str) -> str:  # an upload's server-side path is not the client's business
            return _public(message, path) if folder is not None else message

        try:
            frames = VideoFrames(path, image_size=engine.image_size, cache_size=16)
        except VideoError as exc:
            raise BadRequest(public(str(exc))) from None
        viewer = None
        try:
            viewer = VideoFrames(path, image_size=engine.image_size, cache_size=0)
            state = engine.dense.init_state(frames)
        except (VideoError, OSError) as exc:
            frames.close()
            if viewer is not None:
                viewer.close()
            raise BadRequest(public(str(exc))) from None
        return cls(video_id=video_id, engine=engine, frames=frames, viewer=viewer, state=state, folder=folder,
                   fps=_video_fps(path))

    # ------------------------------------------------------------------ facts
    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def width(self) -> int:
        return self.frames.width

    @property
    def height(self) -> int:
        return self.frames.height

    @property
    def busy(self) -> bool:
        return self.progress.state == "running"

    def info(self) -> dict:
        with self._data_lock:
            tracked = sorted(self._masks)
        return {"video_id": self.video_id, "num_frames": self.num_frames, "width": self.width,
                "height": self.height, "fps": self.fps, "obj_ids": list(self.state.obj_ids),
                "tracked_frames": len(tracked), "last_run": self.last_run, "progress": self.progress.as_dict()}

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def check_frame(self, frame_idx) -> int:
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, int):
            raise BadRequest(f"frame_idx must be an integer, got {frame_idx!r}")
        if not 0 <= frame_idx < self.num_frames:
            raise BadRequest(f"frame_idx {frame_idx} is outside the video (frames 0..{self.num_frames - 1})")
        return frame_idx

    # ------------------------------------------------------------------ reading (no model lock)
    def frame_jpeg(self, frame_idx: int, quality: int = 90) -> bytes:
        import cv2

        with self._view_lock:
            try:
                rgb = self.viewer.get_rgb(frame_idx)
            except (FrameDecodeError, VideoError) as exc:
                raise BadRequest(f"frame {frame_idx} cannot be decoded: {exc}") from None
        ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError(f"cannot encode frame {frame_idx} as JPEG")
        return buf.tobytes()

    def frame_rgb(self, frame_idx: int) -> np.ndarray:
        with self._view_lock:
            return self.viewer.get_rgb(frame_idx)

    def mask_png(self, frame_idx: int) -> bytes:
        """The frame's object ids as a palette PNG (all background where nothing was tracked yet)."""
        with self._data_lock:
            data = self._masks.get(frame_idx)
        return data if data is not None else encode_png(np.zeros((self.height, self.width), np.uint8))

    def mask_ids(self, frame_idx: int) -> np.ndarray:
        with self._data_lock:
            data = self._masks.get(frame_idx)
        return decode_png(data) if data is not None else np.zeros((self.height, self.width), np.uint8)

    def _store(self, frame_idx: int, logits, obj_ids) -> None:
        ids = logits_to_ids(logits, list(obj_ids)) if len(obj_ids) else np.zeros((self.height, self.width),
                                                                                  np.uint8)
        data = encode_png(ids)
        with self._data_lock:
            self._masks[frame_idx] = data

    # ------------------------------------------------------------------ progress
    def _report(self, **kw) -> None:
        with self._changed:
            for k, v in kw.items():
                setattr(self.progress, k, v)
            self.progress.version += 1
            self._changed.notify_all()

    def wait_progress(self, version: int, timeout: float) -> tuple[int, dict]:
        """Block until the progress differs from `version` (or `timeout` seconds); returns (version, progress)."""
        with self._changed:
            if self.progress.version == version and not self.closed:
                self._changed.wait(timeout)
            return self.progress.version, self.progress.as_dict()

    def cancel(self) -> bool:
        """Ask the running job to stop after its current frame; False when nothing runs."""
        if not self.busy:
            return False
        self._cancel.set()
        return True

    # ------------------------------------------------------------------ model work (under lock)
    def add_prompt(self, frame_idx: int, obj_id: int, points, labels, box, clear_old_points: bool) -> dict:
        predictor = self.engine.dense
        with self.lock:
            self._check_open()
            try:
                t, obj_ids, logits = predictor.add_new_points_or_box(
                    self.state, frame_idx, obj_id, points=points, labels=labels, box=box,
                    clear_old_points=clear_old_points)
            except PromptError as exc:
                raise BadRequest(str(exc)) from None
            return self._prompt_answer(t, obj_id, obj_ids, logits)

    def add_mask(self, frame_idx: int, obj_id: int, mask: np.ndarray) -> dict:
        predictor = self.engine.dense
        with self.lock:
            self._check_open()
            try:
                t, obj_ids, logits = predictor.add_new_mask(self.state, frame_idx, obj_id, mask)
            except PromptError as exc:
                raise BadRequest(str(exc)) from None
            return self._prompt_answer(t, obj_id, obj_ids, logits)

    def _prompt_answer(self, frame_idx: int, obj_id: int, obj_ids, logits) -> dict:
        self._store(frame_idx, logits, obj_ids)
        k = list(obj_ids).index(obj_id)
        mask = (logits[k, 0] > 0).cpu().numpy()
        return {"frame_idx": frame_idx, "obj_id": obj_id, "mask": encode_rle(mask)}

    def remove_object(self, obj_id: int) -> None:
        with self.lock:
            self._check_open()
            if obj_id not in self.state.obj_ids:
                raise NotFound(f"no object {obj_id} in this video; objects: {self.state.obj_ids}")
            remaining, updated = self.engine.dense.remove_object(self.state, obj_id, strict=True)
            redrawn = {t for t, _ in updated}
            with self._data_lock:
                frames = [t for t in self._masks if t not in redrawn]
            for t in frames:  # the object leaves every tracked frame; frames it was prompted on are redrawn below
                ids = self.mask_ids(t)
                if (ids == obj_id).any():
                    ids = np.where(ids == obj_id, 0, ids).astype(np.uint8)
                    with self._data_lock:
                        self._masks[t] = encode_png(ids)
            for t, logits in updated:
                self._store(t, logits, remaining)

    def reset(self) -> None:
        with self.lock:
            self._check_open()
            self.engine.dense.reset_state(self.state)
            with self._data_lock:
                self._masks.clear()
            self.last_run = None

    def propagate(self, efficient: bool, direction: str, start_frame_idx: int | None) -> PropagationResult:
        """Track every object through the video; progress is reported frame by frame, `cancel()` stops it."""
        if direction not in DIRECTIONS:
            raise BadRequest(f"direction must be one of {', '.join(DIRECTIONS)}; got {direction!r}")
        with self.lock:
            self._check_open()
            if not self.state.obj_ids:
                raise BadRequest("no object to track: click an object (or draw a box) first")
            if start_frame_idx is not None:
                self.check_frame(start_frame_idx)
            predictor = self.engine.predictor(efficient)
            n = self.num_frames
            start = start_frame_idx
            if start is None:
                start = min(t for o in self.state.objects.values()
                            for t in (*o.cond_outputs, *o.temp_cond_outputs))
            passes = {"forward": [False], "backward": [True], "both": [False, True]}[direction]
            total = sum((start + 1 if rev else n - start) if not (rev and start == 0) else 0 for rev in passes)
            self._cancel.clear()
            self._report(state="running", job="propagate", done=0, total=total, frame_idx=None, frames_per_s=0.0,
                         message="")
            # a fresh frame policy per run: its statistics are this run's (the policy restarts on every pass anyway)
            self.state.policy = predictor.policy.new_video()
            done, cancelled = 0, False
            t0 = time.perf_counter()
            try:
                for reverse in passes:
                    if cancelled:
                        break
                    gen = predictor.propagate_in_video(self.state, start_frame_idx=start_frame_idx, reverse=reverse,
                                                       progress=False)
                    try:
                        for t, obj_ids, logits in gen:
                            self._store(t, logits, obj_ids)
                            done += 1
                            dt = time.perf_counter() - t0
                            self._report(done=done, frame_idx=t, frames_per_s=done / dt if dt > 0 else 0.0)
                            if self._cancel.is_set():
                                cancelled = True
                                break
                    finally:
                        gen.close()
            except PromptError as exc:
                self._report(state="error", message=str(exc))
                raise BadRequest(str(exc)) from None
            except BaseException as exc:
                self._report(state="error", message=str(exc) or type(exc).__name__)
                raise
            seconds = time.perf_counter() - t0
            stats = predictor.statistics(self.state)
            result = PropagationResult(frames=done, seconds=seconds, cancelled=cancelled,
                                       statistics=stats.summary() if stats is not None else None,
                                       efficient=efficient, direction=direction)
            self.last_run = result.as_dict()
            self._report(state="cancelled" if cancelled else "done", frames_per_s=result.frames_per_s)
            return result

    def automask(self, frame_idx: int, pred_iou_thresh: float | None, stability_score_thresh: float | None,
                 limit: int) -> dict:
        from ..automask.attention_prompts import AutomaskDependencyError

        with self.lock:
            self._check_open()
            try:
                gen = self.engine.automask(pred_iou_thresh, stability_score_thresh)
            except AutomaskDependencyError as exc:
                raise BadRequest(f"Find objects needs scikit-learn: {exc}") from None
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
            result = gen.generate_result(self.frame_rgb(frame_idx))
        masks = []
        for rec in result.masks[:limit]:
            masks.append({"mask": rec["segmentation"], "area": int(rec["area"]),
                          "bbox": [float(v) for v in rec["bbox"]], "score": round(float(rec["predicted_iou"]), 4),
                          "point": [float(v) for v in rec["point_coords"][0]]})
        return {"frame_idx": frame_idx, "masks": masks, "num_prompts": result.num_prompts,
                "seconds": round(result.timings.get("total", 0.0), 4)}

    def tracked_ids(self) -> Iterator[tuple[int, np.ndarray]]:
        """(frame_idx, ids) of every frame, background where nothing was tracked (for exports), decoded one frame
        at a time so a long video is never held decoded at once."""
        return ((t, self.mask_ids(t)) for t in range(self.num_frames))

    # ------------------------------------------------------------------ life
    def _check_open(self) -> None:
        if self.closed:
            raise NotFound("this video was closed")

    def close(self) -> None:
        """Stop the running job and release the video (waits for the job to notice)."""
        self._cancel.set()
        with self.lock:
            self.closed = True
            self.frames.close()
            with self._view_lock:
                self.viewer.close()
            with self._data_lock:
                self._masks.clear()
        with self._changed:
            self._changed.notify_all()


def _public(message: str, path: str) -> str:
    """An error message without the server's file path in it."""
    return message.replace(repr(path), "the upload").replace(path, "the upload")


def _video_fps(path: str) -> float:
    import os

    import cv2

    if os.path.isfile(path):
        cap = cv2.VideoCapture(path)
        try:
            fps = cap.get(cv2.CAP_PROP_FPS)
        finally:
            cap.release()
        if fps and 0 < fps < 1000:
            return float(fps)
    return 24.0
