"""Frame sources for streaming: cameras, network streams, video files, frame folders and iterators of frames.

`open_source(source)` opens any of them and returns a `FrameSource`: an iterator of (H, W, 3) uint8 RGB frames read
by a background thread into a bounded queue (`read_ahead` frames), so that decoding overlaps tracking and a long
source never sits in memory. Problems get clear messages:

- a source that cannot be opened raises `SourceError` naming it;
- a source that delivers no frame for `timeout` seconds raises `SourceStalledError` (a `SourceError`);
- a frame that cannot be decoded is skipped with a `SourceWarning` and counted (`source.skipped`);
- a source that ends before its declared frame count (a truncated file) ends with a `SourceWarning` giving both
  counts.

Live sources (cameras, network streams) drop the oldest queued frame when tracking falls behind (counted in
`source.dropped`), so the tracker always sees recent frames; files, folders and iterators deliver every frame.
"""

from __future__ import annotations

import os
import collections
import queue
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from .frames import VIDEO_EXTENSIONS, FrameDecodeError, ImageError, VideoError, _FolderSource, load_image

__all__ = ["FrameSource", "SourceError", "SourceFrame", "SourceStalledError", "SourceWarning", "open_source"]

_URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


class SourceError(OSError):
    """A frame source that cannot be opened or read."""


class SourceStalledError(SourceError, TimeoutError):
    """A frame source delivered no frame within its timeout."""


class SourceWarning(UserWarning):
    """A frame was skipped, or a source ended before its declared frame count."""


@dataclass
class SourceFrame:
    """One frame of a source: its position in the source (skipped and dropped frames counted), a name for output
    files (the file name without extension for a folder, else the zero-padded index), the RGB pixels and the
    time it was read (time.monotonic())."""

    index: int
    name: str
    rgb: np.ndarray
    time: float


# ---------------------------------------------------------------------------------------------------------------------
# Readers: `read()` returns the next RGB frame, None at the end, or raises _Skip for a frame that does not decode.


class _Skip(Exception):
    """One frame could not be decoded; the reader goes on with the next."""


class _CaptureReader:
    """Sequential OpenCV decoding of a camera, a network stream or a video file."""

    def __init__(self, label: str, target: Any, live: bool, timeout: float) -> None:
        self.label = label
        params = []
        if live and hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC"):
            ms = int(max(1.0, timeout) * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        cap = cv2.VideoCapture(target, cv2.CAP_ANY, params) if params else cv2.VideoCapture(target)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {label} (no such device, unreachable stream, or a format this OpenCV build "
                              "cannot decode)")
        self.cap = cap
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not live else 0
        self.declared = count if count > 0 else None
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None
        self.index = 0

    def read(self) -> np.ndarray | None:
        """The next frame (RGB), None at the end; raises _Skip for a frame that is there but does not decode."""
        if not self.cap.grab():
            return None
        ok, bgr = self.cap.retrieve()
        if not ok or bgr is None:
            raise _Skip(f"frame {self.index} of {self.label} cannot be decoded")
        if bgr.ndim == 2:
            return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def name(self, index: int) -> str:
        return f"{index:05d}"

    def close(self) -> None:
        self.cap.release()


class _FolderReader:
    """The image files of a folder, in frame order (`io.frames` naming rules)."""

    def __init__(self, folder: str) -> None:
        try:
            self.source = _FolderSource(folder)
        except VideoError as exc:
            raise SourceError(str(exc)) from None
        self.label = f"frame folder {folder!r}"
        self.declared = len(self.source)
        self.fps = None
        self.index = 0

    def read(self) -> np.ndarray | None:
        if self.index >= len(self.source):
            return None
        try:
            return self.source.read(self.index)
        except (FrameDecodeError, ImageError) as exc:
            raise _Skip(str(exc)) from None

    def name(self, index: int) -> str:
        return self.source.names[index]

    def close(self) -> None:
        self.source.close()


class _IterableReader:
    """Frames from any iterable of (H, W, 3) uint8 arrays or PIL images (a frame that is neither is skipped)."""

    def __init__(self, frames: Iterable) -> None:
        self.label = f"the {type(frames).__name__} of frames"
        try:
            self.declared = len(frames)  # type: ignore[arg-type]
        except TypeError:
            self.declared = None
        self.iterator = iter(frames)
        self.fps = None
        self.index = 0

    def read(self) -> np.ndarray | None:
        try:
            frame = next(self.iterator)
        except StopIteration:
            return None
        try:
            return load_image(frame) if not isinstance(frame, (str, os.PathLike)) else load_image(os.fspath(frame))
        except ImageError as exc:
            raise _Skip(f"frame {self.index} of {self.label}: {exc}") from None

    def name(self, index: int) -> str:
        return f"{index:05d}"

    def close(self) -> None:
        close = getattr(self.iterator, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                pass


# ---------------------------------------------------------------------------------------------------------------------


class FrameSource:
    """An opened frame source; iterate it for RGB frames, or `frames()` for `SourceFrame`s. Use `open_source`.

    Attributes: label (what was opened, for messages), declared_frames (the frame count a file or folder declares;
    None for live and unsized sources), fps (the file's or camera's frame rate, if known), live, frames_read,
    skipped (undecodable frames), dropped (frames a live source dropped because tracking fell behind).
    """

    def __init__(self, reader, read_ahead: int = 4, timeout: float = 10.0, live: bool = False,
                 drop_frames: bool | None = None) -> None:
        self._reader = reader
        self.label: str = reader.label
        self.declared_frames: int | None = reader.declared
        self.fps: float | None = reader.fps
        self.live = live
        self.timeout = timeout
        self.drop_frames = live if drop_frames is None else bool(drop_frames)
        self.frames_read = 0
        self.skipped = 0
        self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=read_ahead)  # ("frame", ...), ("end",), ("error", exc)
        self._notes: collections.deque[str] = collections.deque(maxlen=100)  # messages of skipped frames
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name=f"frame-source {self.label}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the reader thread
    def _put(self, item: tuple) -> bool:
        """Queue an item; a live source drops its oldest frame when the queue is full. False once stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self.drop_frames and item[0] == "frame":
                    try:
                        self._queue.get_nowait()  # only frames precede a frame in the queue
                        self.dropped += 1
                    except queue.Empty:
                        pass
        return False

    def _run(self) -> None:
        reader = self._reader
        try:
            while not self._stop.is_set():
                index = reader.index
                try:
                    rgb = reader.read()
                except _Skip as skip:
                    reader.index += 1
                    self.skipped += 1
                    self._notes.append(str(skip))
                    continue
                if rgb is None:
                    self._put(("end",))
                    return
                reader.index += 1
                if not self._put(("frame", index, reader.name(index), rgb, time.monotonic())):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it (KeyboardInterrupt included)
            self._put(("error", exc))
        finally:
            reader.close()

    # ------------------------------------------------------------------ the consumer
    def frames(self) -> Iterator[SourceFrame]:
        """Frames as they arrive; warns (SourceWarning) about skipped frames and a source that ends early."""
        while not self._done:
            try:
                item = self._queue.get(timeout=self.timeout)
            except queue.Empty:
                self.close()
                raise SourceStalledError(
                    f"{self.label} delivered no frame for {self.timeout:g} s (after {self.frames_read} frame(s)); "
                    "is the camera or stream still there?"
                ) from None
            while self._notes:
                warnings.warn(f"{self._notes.popleft()}; skipped", SourceWarning, stacklevel=2)
            kind = item[0]
            if kind == "frame":
                self.frames_read += 1
                yield SourceFrame(item[1], item[2], item[3], item[4])
            elif kind == "error":
                self._done = True
                self.close()
                raise item[1]
            else:  # end
                self._done = True
                got = self.frames_read + self.skipped + self.dropped
                if self.declared_frames is not None and got < self.declared_frames:
                    warnings.warn(f"{self.label} ended after {got} of its {self.declared_frames} declared frames "
                                  "(truncated or damaged?)", SourceWarning, stacklevel=2)

    def __iter__(self) -> Iterator[np.ndarray]:
        for frame in self.frames():
            yield frame.rgb

    def close(self) -> None:
        """Stop reading (the reader thread releases the source as soon as its current read returns)."""
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=1.0)

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FrameSource({self.label}, frames_read={self.frames_read}, skipped={self.skipped})"


def open_source(source, read_ahead: int = 4, timeout: float = 10.0, drop_frames: bool | None = None) -> FrameSource:
    """Open a frame source for streaming.

    Args:
        source: a camera index (an int, or a string of digits such as "0"); a network stream URL (rtsp://,
            http(s)://, ...; decoded by OpenCV); a video file (.mp4/.avi/.mov/.mkv, or anything OpenCV opens); a
            folder of .jpg/.png frames (ordered by number); or any iterable of (H, W, 3) uint8 RGB arrays / PIL
            images (a generator, a list, an (N, H, W, 3) array).
        read_ahead: frames decoded ahead of the consumer (the bounded queue's size, >= 1).
        timeout: seconds to wait for a frame (and to open a network stream) before `SourceStalledError`.
        drop_frames: drop the oldest queued frame when the consumer falls behind (default: for live sources).
    Raises:
        SourceError naming the source when it cannot be opened.
    """
    if isinstance(read_ahead, bool) or not isinstance(read_ahead, int) or read_ahead < 1:
        raise ValueError(f"read_ahead must be an integer >= 1, got {read_ahead!r}")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    reader, live = _open_reader(source, float(timeout))
    return FrameSource(reader, read_ahead=read_ahead, timeout=float(timeout), live=live, drop_frames=drop_frames)


def _open_reader(source, timeout: float) -> tuple[Any, bool]:
    if isinstance(source, (bool, np.bool_)):
        raise SourceError(f"cannot read frames from {source!r}")
    if isinstance(source, (int, np.integer)) or (isinstance(source, str) and source.strip().isdigit()
                                                 and not os.path.exists(source)):
        index = int(source)
        return _CaptureReader(f"camera {index}", index, live=True, timeout=timeout), True
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.lower().startswith(_URL_SCHEMES):
            return _CaptureReader(f"stream {_redact(path)}", path, live=True, timeout=timeout), True
        if not os.path.exists(path):
            raise SourceError(f"source not found: {path!r} (expected a camera index, a stream URL, a video file or a "
                              "folder of frames)")
        if os.path.isdir(path):
            return _FolderReader(path), False
        if os.path.splitext(path)[1].lower() not in VIDEO_EXTENSIONS:
            try:  # OpenCV reads other containers too; a clear message if it cannot
                return _CaptureReader(f"video file {path!r}", path, live=False, timeout=timeout), False
            except SourceError:
                raise SourceError(f"cannot open {path!r} as a video (expected a video file such as "
                                  f"{', '.join(VIDEO_EXTENSIONS)} or a folder of frames)") from None
        return _CaptureReader(f"video file {path!r}", path, live=False, timeout=timeout), False
    if isinstance(source, (bytes, bytearray)):
        raise SourceError("raw bytes are not a frame source; write them to a file first")
    if isinstance(source, Iterable) or callable(getattr(source, "__next__", None)):
        return _IterableReader(source), False
    raise SourceError(f"cannot read frames from a {type(source).__name__}; expected a camera index, a stream URL, a "
                      "video file, a folder of frames or an iterable of frames")


def _redact(url: str) -> str:
    """A URL without its password (rtsp://user:secret@host -> rtsp://user:***@host), for messages."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.partition("@")
    if at and ":" in creds:
        user = creds.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}"
    return url

