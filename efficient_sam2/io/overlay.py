"""Masks drawn over video frames, and overlay videos written with OpenCV.

`overlay_ids` blends an (H, W) object-id map over an RGB frame in the colours of a palette (DAVIS by default) and
outlines every object; `OverlayWriter` / `write_overlay_video` write such frames to an .mp4 (or .avi) file. The video
is written to a temporary file next to the target and renamed at the end, so an interrupted run never leaves a
truncated video under the final name.
"""

from __future__ import annotations

import os
import uuid
from typing import Iterable, Optional, Union

import cv2
import numpy as np

from .masks import DAVIS_PALETTE

__all__ = ["OverlayError", "OverlayWriter", "overlay_ids", "write_overlay_video"]

PathLike = Union[str, os.PathLike]

# FourCC per container; mp4v is available in every OpenCV build that can write MP4 at all.
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class OverlayError(ValueError):
    """An overlay video cannot be written (unsupported extension, codec missing, mismatched frame sizes)."""


def _palette_array(palette: Union[bytes, np.ndarray, None]) -> np.ndarray:
    pal = DAVIS_PALETTE if palette is None else palette
    arr = np.frombuffer(bytes(pal), dtype=np.uint8) if not isinstance(pal, np.ndarray) else pal.astype(np.uint8)
    arr = arr.reshape(-1, 3)
    if arr.shape[0] < 256:
        arr = np.concatenate([arr, np.zeros((256 - arr.shape[0], 3), np.uint8)])
    return arr[:256]


def overlay_ids(rgb: np.ndarray, ids: np.ndarray, palette: Union[bytes, np.ndarray, None] = None,
                alpha: float = 0.5, contour: bool = True) -> np.ndarray:
    """Blend object ids over a frame.

    Args:
        rgb: (H, W, 3) uint8 RGB frame.
        ids: (H, W) integer object ids (0 = background, left untouched).
        palette: 768 bytes (or an (N, 3) array) giving each id's colour; default the DAVIS palette.
        alpha: opacity of the colour fill, in [0, 1].
        contour: draw each object's outline in its colour at full opacity.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    rgb = np.asarray(rgb)
    ids = np.asarray(ids)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise OverlayError(f"frame must be (H, W, 3) uint8 RGB; got shape {rgb.shape}, dtype {rgb.dtype}")
    if ids.shape != rgb.shape[:2]:
        raise OverlayError(f"mask is {ids.shape} but the frame is {rgb.shape[:2]} (H, W)")
    if not 0.0 <= alpha <= 1.0:
        raise OverlayError(f"alpha must be in [0, 1]; got {alpha}")
    pal = _palette_array(palette)
    fg = ids > 0
    out = rgb.copy()
    if not fg.any():
        return out
    colours = pal[np.clip(ids, 0, 255).astype(np.intp)]
    blended = rgb.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha
    out[fg] = np.round(blended[fg]).astype(np.uint8)
    if contour:
        thickness = max(1, round(min(rgb.shape[:2]) / 300))
        for obj_id in np.unique(ids[fg]).tolist():
            m = (ids == obj_id).astype(np.uint8)
            found = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            contours = found[0] if len(found) == 2 else found[1]
            colour = tuple(int(c) for c in pal[int(obj_id) % 256])
            cv2.drawContours(out, contours, -1, colour, thickness)
    return out


class OverlayWriter:
    """Write RGB frames to a video file; `close()` renames the finished file into place.

    Args:
        path: target file (.mp4, .m4v, .mov: MPEG-4 part 2 'mp4v'; .avi, .mkv: Motion-JPEG).
        fps: frames per second (> 0).
        overwrite: replace an existing file at `path` (only once the new video is complete).
    """

    def __init__(self, path: PathLike, fps: float, overwrite: bool = False) -> None:
        self.path = os.fspath(path)
        ext = os.path.splitext(self.path)[1].lower()
        if ext not in _FOURCC:
            raise OverlayError(f"overlay video {self.path!r}: unsupported extension {ext!r}; use one of "
                               f"{', '.join(sorted(_FOURCC))}")
        if not fps or fps <= 0 or not np.isfinite(fps):
            raise OverlayError(f"fps must be a positive number; got {fps}")
        if os.path.exists(self.path) and not overwrite:
            raise FileExistsError(f"overlay video {self.path!r} already exists; use --overwrite to replace it")
        if os.path.isdir(self.path):
            raise OverlayError(f"overlay path {self.path!r} is a folder")
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        self.fps = float(fps)
        self.fourcc = _FOURCC[ext]
        self.tmp = os.path.join(folder, f".{os.path.basename(self.path)}.{uuid.uuid4().hex[:10]}.tmp{ext}")
        self._writer: Optional[cv2.VideoWriter] = None
        self._size: Optional[tuple[int, int]] = None
        self.frames_written = 0

    def write(self, rgb: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame (every frame must have the first one's size)."""
        h, w = rgb.shape[:2]
        if self._writer is None:
            self._size = (w, h)
            self._writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self._writer.isOpened():
                self._writer = None
                self._cleanup()
                raise OverlayError(
                    f"OpenCV cannot write {self.fourcc!r} video to {self.path!r} (codec missing from this OpenCV "
                    "build?); try an .avi path"
                )
        elif (w, h) != self._size:
            raise OverlayError(f"frame {self.frames_written} is {w}x{h} but the video is {self._size[0]}x"
                               f"{self._size[1]} (WxH)")
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> str:
        """Finish the file and move it to `path`; returns `path`."""
        if self._writer is None:
            raise OverlayError(f"no frame was written to {self.path!r}")
        self._writer.release()
        self._writer = None
        if not os.path.exists(self.tmp) or os.path.getsize(self.tmp) == 0:
            self._cleanup()
            raise OverlayError(f"OpenCV produced no data for {self.path!r}")
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._cleanup()

    def _cleanup(self) -> None:
        if os.path.exists(self.tmp):
            os.remove(self.tmp)

    def __enter__(self) -> "OverlayWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_overlay_video(path: PathLike, frames: Iterable[tuple[np.ndarray, np.ndarray]], fps: float = 24.0,
                        palette: Union[bytes, np.ndarray, None] = None, alpha: float = 0.5,
                        overwrite: bool = False) -> str:
    """Write `frames`, an iterable of ((H, W, 3) uint8 RGB, (H, W) ids) pairs, as an overlay video at `path`."""
    with OverlayWriter(path, fps, overwrite=overwrite) as writer:
        for rgb, ids in frames:
            writer.write(overlay_ids(rgb, ids, palette, alpha))
    return os.fspath(path)
