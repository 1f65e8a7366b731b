"""Video frames: folders of images, video files and in-memory frames behind one lazy, cached interface.

`VideoFrames` is what the video predictors read. A video is never decoded into one big float tensor: each frame is
decoded when first asked for, preprocessed to the model's square input and kept in a small LRU cache, so memory use
does not grow with the length of the video.

Preprocessing matches the reference video predictor's JPEG path exactly: RGB -> PIL `resize((S, S))` with bicubic
resampling (PIL's default for RGB; the aspect ratio is not kept and nothing is padded) -> /255 -> ImageNet
normalisation. Video files go through the same path (the reference resizes them inside its decoder instead, which
differs slightly; the folder path is the one its benchmark numbers use).
"""

from __future__ import annotations

import os
import re
import warnings
from collections import OrderedDict
from typing import Iterator, Sequence, Union, overload

import cv2
import numpy as np
import torch
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# PIL modes whose pixels do not fit in 8 bits; converting them to RGB would silently clip.
_HIGH_BIT_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
# When a requested video frame lies at most this many frames ahead, decode forward instead of seeking.
_MAX_FORWARD_SKIP = 48

FrameLike = Union[np.ndarray, Image.Image]
VideoLike = Union[str, os.PathLike, np.ndarray, Sequence[FrameLike]]


class VideoError(ValueError):
    """A video (folder, file or in-memory frames) cannot be used as given."""


class VideoNotFoundError(VideoError, FileNotFoundError):
    """The path given as a video does not exist."""


class FrameDecodeError(VideoError):
    """One frame could not be decoded; `source` and `index` say which."""

    def __init__(self, message: str, source: str, index: int):
        super().__init__(message)
        self.source = source
        self.index = index


class FrameSizeError(VideoError):
    """A frame's size differs from frame 0's."""


class FrameCountError(VideoError):
    """A video file decodes to a number of frames other than its header's (raised with ``strict=True``)."""


class FrameCountWarning(UserWarning):
    """A video file decodes to a number of frames other than its header's; the decoded frames are used."""


class ImageError(ValueError):
    """A single image cannot be loaded or has the wrong type, dtype or shape."""


class ImageNotFoundError(ImageError, FileNotFoundError):
    """The image path does not exist."""


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


def sort_frame_names(names: Sequence[str]) -> list[str]:
    """Order frame file names: numerically by integer stem when every stem is an integer, else in natural order.

    `["10.jpg", "2.jpg", "0.jpg"] -> ["0.jpg", "2.jpg", "10.jpg"]`;
    `["frame10.jpg", "frame2.jpg"] -> ["frame2.jpg", "frame10.jpg"]`.
    """
    stems = [os.path.splitext(n)[0] for n in names]
    try:
        keys = [(int(s), n) for s, n in zip(stems, names)]
    except ValueError:
        keys = [(_natural_key(s), n) for s, n in zip(stems, names)]
    return [n for _, n in sorted(keys)]


def _natural_key(text: str) -> list:
    # re.split with a capture group alternates [text, digits, text, ...], so positions never mix str and int.
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(re.split(r"(\d+)", text))]


def _pil_to_rgb_array(img: Image.Image, what: str) -> np.ndarray:
    if img.mode in _HIGH_BIT_DEPTH_MODES:
        raise ImageError(
            f"{what} has PIL mode {img.mode!r} (more than 8 bits per pixel); an 8-bit RGB image is expected. "
            "Convert it to 8-bit RGB first."
        )
    return np.array(img.convert("RGB"))


def _check_rgb_array(arr: np.ndarray, what: str, error: type[Exception]) -> None:
    if arr.dtype != np.uint8:
        raise error(
            f"{what} has dtype {arr.dtype}; expected uint8 RGB values in [0, 255] "
            "(for floats in [0, 1] use (x * 255).round().astype(np.uint8))"
        )
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise error(f"{what} has shape {tuple(arr.shape)}; expected (H, W, 3) RGB")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise error(f"{what} has shape {tuple(arr.shape)}; expected a non-empty (H, W, 3) image")


def load_image(image: Union[str, os.PathLike, np.ndarray, Image.Image]) -> np.ndarray:
    """Load one image as an (H, W, 3) uint8 RGB array.

    Accepts a file path (any format PIL reads; palette, grey and RGBA images are converted to RGB, the alpha channel
    is dropped), a PIL image, or an (H, W, 3) uint8 array (returned as a C-contiguous array). No EXIF rotation is
    applied, as in the reference. Raises `ImageNotFoundError` / `ImageError` with the path or the expected format.
    """
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.exists(path):
            raise ImageNotFoundError(f"image file not found: {path!r}")
        if os.path.isdir(path):
            raise ImageError(f"{path!r} is a folder; load_image reads one image file (use VideoFrames for frames)")
        try:
            with Image.open(path) as img:
                img.load()
                return _pil_to_rgb_array(img, f"image {path!r}")
        except ImageError:
            raise
        except (OSError, ValueError, SyntaxError) as e:  # PIL reports broken files with any of these
            raise ImageError(f"cannot decode image {path!r}: {e}") from e
    if isinstance(image, Image.Image):
        return _pil_to_rgb_array(image, "PIL image")
    if isinstance(image, np.ndarray):
        _check_rgb_array(image, "image array", ImageError)
        return np.ascontiguousarray(image)
    raise ImageError(
        f"cannot load an image from {type(image).__name__}; expected a path, a PIL image or an (H, W, 3) uint8 array"
    )


def preprocess_frame(rgb: np.ndarray, image_size: int) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, S, S) float32, resized bicubically (PIL) to S = image_size and ImageNet-normalised.

    Bit-identical to the reference video predictor's JPEG loading (the /255 is done in float64 as there).
    """
    resized = Image.fromarray(rgb).resize((image_size, image_size), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.array(resized)).permute(2, 0, 1).to(torch.float64).div(255.0).to(torch.float32)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    return (x - mean) / std


# ---------------------------------------------------------------------------------------------------------------------
# Frame sources: each knows how many frames it has, their names and how to decode frame i to (H, W, 3) uint8 RGB.


class _FolderSource:
    def __init__(self, folder: str):
        self.label = folder
        # hidden files (e.g. macOS "._00000.jpg" resource forks) are not frames
        names = [n for n in os.listdir(folder)
                 if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS and not n.startswith(".")]
        names = [n for n in names if os.path.isfile(os.path.join(folder, n))]
        if not names:
            raise VideoError(
                f"no image frames found in folder {folder!r} (looked for files ending in "
                f"{', '.join(IMAGE_EXTENSIONS)}, any case)"
            )
        self.files = sort_frame_names(names)
        self.names = [os.path.splitext(n)[0] for n in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def path(self, idx: int) -> str:
        return os.path.join(self.label, self.files[idx])

    def size(self) -> tuple[int, int]:
        """(H, W) of frame 0, read from its header only."""
        try:
            with Image.open(self.path(0)) as img:
                w, h = img.size
        except (OSError, ValueError, SyntaxError) as e:
            raise self._decode_error(0, e) from e
        return h, w

    def read(self, idx: int) -> np.ndarray:
        try:
            with Image.open(self.path(idx)) as img:
                img.load()
                return _pil_to_rgb_array(img, f"frame {idx} ({self.path(idx)!r})")
        except ImageError as e:
            raise FrameDecodeError(str(e), self.path(idx), idx) from e
        except (OSError, ValueError, SyntaxError) as e:
            raise self._decode_error(idx, e) from e

    def _decode_error(self, idx: int, cause: Exception) -> FrameDecodeError:
        path = self.path(idx)
        return FrameDecodeError(f"cannot decode frame {idx} ({path!r}): {cause}", path, idx)

    def close(self) -> None:
        pass


class _VideoFileSource:
    """Sequential cv2 decoding with seeking for jumps; remembers the position of the next frame `read()` returns."""

    def __init__(self, path: str, strict: bool = False):
        self.label = path
        self._cap = self._open()
        self._pos: int | None = 0
        claimed = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.header_frames = claimed if claimed > 0 else None
        self._len = self._verified_count(claimed)
        if self._len == 0:
            self.close()
            raise VideoError(f"video file {path!r} has zero frames")
        if self.header_frames is not None and self._len != claimed:
            msg = (f"video file {path!r}: its header says {claimed} frames but {self._len} decode (truncated or "
                   "damaged?)")
            if strict:
                self.close()
                raise FrameCountError(f"{msg}; refused because strict checking is on")
            # stacklevel: warn -> _VideoFileSource -> _open_source -> VideoFrames -> its caller
            warnings.warn(f"{msg}; using the {self._len} frames that decode", FrameCountWarning, stacklevel=4)
        self.names = [f"{i:05d}" for i in range(self._len)]

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.label)
        if not cap.isOpened():
            raise VideoError(
                f"cv2 cannot open video file {self.label!r} (corrupt file or a codec that this OpenCV build lacks; "
                "extracting frames to a folder of JPEGs, e.g. with ffmpeg, always works)"
            )
        return cap

    def _rewind(self) -> None:
        self._cap.release()
        self._cap = self._open()
        self._pos = 0

    def _verified_count(self, claimed: int) -> int:
        # Trust the container's frame count only if its last frame decodes and nothing follows it.
        if claimed > 0 and self._seek(claimed - 1) and self._cap.grab() and not self._cap.grab():
            self._rewind()
            return claimed
        self._rewind()
        n = 0
        while self._cap.grab():
            n += 1
        self._rewind()
        return n

    def _seek(self, idx: int) -> bool:
        """Position the capture so that the next read returns frame `idx`; False if the backend cannot."""
        if idx == 0:
            self._rewind()
            return True
        self._pos = None
        if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, idx):
            return False
        if int(round(self._cap.get(cv2.CAP_PROP_POS_FRAMES))) != idx:
            return False
        self._pos = idx
        return True

    def __len__(self) -> int:
        return self._len

    def size(self) -> tuple[int, int]:
        # Decoded frame 0 rather than CAP_PROP_FRAME_HEIGHT/WIDTH, which ignore rotation metadata.
        h, w = self.read(0).shape[:2]
        return h, w

    def read(self, idx: int) -> np.ndarray:
        if self._pos != idx:
            ahead = None if self._pos is None else idx - self._pos
            if ahead is not None and 0 < ahead <= _MAX_FORWARD_SKIP:
                for _ in range(ahead):
                    if not self._cap.grab():
                        break
                self._pos = idx
            elif not self._seek(idx):
                # Backend cannot seek precisely: decode forward from the start.
                self._rewind()
                for _ in range(idx):
                    if not self._cap.grab():
                        break
                self._pos = idx
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            self._pos = None
            raise FrameDecodeError(f"cannot decode frame {idx} of video file {self.label!r}", self.label, idx)
        self._pos = idx + 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._cap.release()


class _MemorySource:
    def __init__(self, frames: Union[np.ndarray, Sequence[FrameLike]]):
        self.label = "<in-memory frames>"
        if isinstance(frames, np.ndarray):
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
                raise VideoError(
                    f"a video array must be (N, H, W, 3) uint8 RGB; got shape {tuple(frames.shape)}, "
                    f"dtype {frames.dtype}"
                )
            if frames.shape[0] == 0:
                raise VideoError("the video array has zero frames")
            _check_rgb_array(frames[0], "frame 0", VideoError)
        else:
            if len(frames) == 0:
                raise VideoError("the frame sequence is empty")
            first_size = None
            for i, f in enumerate(frames):
                if isinstance(f, Image.Image):
                    w, h = f.size
                elif isinstance(f, np.ndarray):
                    _check_rgb_array(f, f"frame {i}", VideoError)
                    h, w = f.shape[:2]
                else:
                    raise VideoError(
                        f"frame {i} is a {type(f).__name__}; expected an (H, W, 3) uint8 numpy array or a PIL image"
                    )
                if first_size is None:
                    first_size = (h, w)
                elif (h, w) != first_size:
                    raise FrameSizeError(
                        f"frame {i} of the in-memory frames is {h}x{w} (HxW) but frame 0 is "
                        f"{first_size[0]}x{first_size[1]}; all frames of a video must have the same size"
                    )
        self.frames = frames
        self.names = [f"{i:05d}" for i in range(len(frames))]

    def __len__(self) -> int:
        return len(self.frames)

    def size(self) -> tuple[int, int]:
        f = self.frames[0]
        if isinstance(f, Image.Image):
            return f.size[1], f.size[0]
        return f.shape[0], f.shape[1]

    def read(self, idx: int) -> np.ndarray:
        f = self.frames[idx]
        if isinstance(f, Image.Image):
            try:
                return _pil_to_rgb_array(f, f"frame {idx}")
            except ImageError as e:
                raise FrameDecodeError(str(e), self.label, idx) from e
        return f

    def close(self) -> None:
        pass


def _open_source(video: VideoLike, strict: bool = False):
    if isinstance(video, (str, os.PathLike)):
        path = os.fspath(video)
        if not os.path.exists(path):
            raise VideoNotFoundError(f"video path not found: {path!r}")
        if os.path.isdir(path):
            return _FolderSource(path)
        ext = os.path.splitext(path)[1].lower()
        if ext in VIDEO_EXTENSIONS:
            return _VideoFileSource(path, strict)
        if ext in IMAGE_EXTENSIONS:
            raise VideoError(f"{path!r} is a single image; pass the folder that holds the video's frames")
        raise VideoError(
            f"unsupported video path {path!r}: expected a folder of {'/'.join(IMAGE_EXTENSIONS)} frames or a video "
            f"file ending in {', '.join(VIDEO_EXTENSIONS)}"
        )
    if isinstance(video, (bytes, bytearray)):
        raise VideoError("raw video bytes are not supported; write them to a file first")
    if isinstance(video, np.ndarray) or isinstance(video, Sequence):
        return _MemorySource(video)
    raise VideoError(
        f"cannot read a video from {type(video).__name__}; expected a folder path, a video file path, "
        "an (N, H, W, 3) uint8 array or a sequence of frames"
    )


# ---------------------------------------------------------------------------------------------------------------------


class VideoFrames(Sequence[torch.Tensor]):
    """A video as a lazy sequence of preprocessed frames.

    `frames[i]` (same as `frames.get_tensor(i)`) is frame i as a (3, S, S) float32 tensor, S = `image_size`, on
    `device`; `frames.get_rgb(i)` is the original (H, W, 3) uint8 RGB frame. Frames are decoded on first use and the
    last `cache_size` preprocessed tensors are kept (LRU). With `offload=True` the cache lives on the CPU and each
    returned tensor is copied to `device`. Returned tensors may be shared with the cache: do not modify them in place.

    Args:
        video: a folder of .jpg/.jpeg/.png frames (any case; ordered by integer name, else naturally), a video file
            (.mp4/.avi/.mov/.mkv, decoded with OpenCV), an (N, H, W, 3) uint8 array, or a sequence of (H, W, 3)
            uint8 arrays / PIL images.
        image_size: side S of the square model input.
        cache_size: number of preprocessed frames kept; 0 disables the cache.
        device: where returned tensors live.
        offload: keep cached tensors on the CPU instead of `device`.
        strict: raise `FrameCountError` when a video file decodes to a number of frames other than its header's
            (default: a `FrameCountWarning` with both counts, and the frames that decode are used).
    """

    def __init__(
        self,
        video: VideoLike,
        image_size: int = 1024,
        cache_size: int = 16,
        device: Union[str, torch.device] = "cpu",
        offload: bool = False,
        strict: bool = False,
    ):
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.image_size = image_size
        self.cache_size = cache_size
        self.device = torch.device(device)
        self.cache_device = torch.device("cpu") if offload else self.device
        self._source = _open_source(video, strict)
        self._height, self._width = self._source.size()
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._last_rgb: tuple[int, np.ndarray] | None = None
        self.num_decoded = 0  # frames decoded from the source so far (for diagnostics and tests)

    # --- Sequence protocol ---------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._source)

    @overload
    def __getitem__(self, idx: int) -> torch.Tensor: ...

    @overload
    def __getitem__(self, idx: slice) -> list[torch.Tensor]: ...

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return [self.get_tensor(i) for i in range(*idx.indices(len(self)))]
        return self.get_tensor(idx)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(len(self)):
            yield self.get_tensor(i)

    def __repr__(self) -> str:
        return (
            f"VideoFrames({self.source!r}, num_frames={self.num_frames}, height={self.height}, width={self.width}, "
            f"image_size={self.image_size})"
        )

    # --- properties ------------------------------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return len(self._source)

    @property
    def height(self) -> int:
        """Original height of the video (frame 0)."""
        return self._height

    @property
    def width(self) -> int:
        """Original width of the video (frame 0)."""
        return self._width

    @property
    def frame_names(self) -> list[str]:
        """Frame names without extension ('00000'... for video files and in-memory frames)."""
        return list(self._source.names)

    @property
    def source(self) -> str:
        """The folder or file path, or '<in-memory frames>'."""
        return self._source.label

    # --- access ----------------------------------------------------------------------------------------------------

    def _index(self, idx: int) -> int:
        idx = int(idx)
        n = len(self)
        if idx < 0:
            idx += n
        if not 0 <= idx < n:
            raise IndexError(f"frame index {idx} out of range for a video of {n} frames")
        return idx

    def _decode(self, idx: int) -> np.ndarray:
        if self._last_rgb is not None and self._last_rgb[0] == idx:
            return self._last_rgb[1]
        rgb = self._source.read(idx)
        self.num_decoded += 1
        if rgb.shape[:2] != (self._height, self._width):
            name = self._source.names[idx]
            raise FrameSizeError(
                f"frame {idx} ({name!r}) of {self.source!r} is {rgb.shape[0]}x{rgb.shape[1]} (HxW) but frame 0 is "
                f"{self._height}x{self._width}; all frames of a video must have the same size"
            )
        self._last_rgb = (idx, rgb)
        return rgb

    def get_rgb(self, idx: int) -> np.ndarray:
        """Frame `idx` at its original size: (H, W, 3) uint8 RGB. Not cached beyond the most recent frame."""
        return self._decode(self._index(idx))

    def get_tensor(self, idx: int) -> torch.Tensor:
        """Frame `idx` preprocessed for the model: (3, S, S) float32 on `device`."""
        idx = self._index(idx)
        x = self._cache.get(idx)
        if x is not None:
            self._cache.move_to_end(idx)
        else:
            x = preprocess_frame(self._decode(idx), self.image_size).to(self.cache_device)
            if self.cache_size > 0:
                self._cache[idx] = x
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return x.to(self.device)

    def cached_indices(self) -> list[int]:
        """Indices currently in the tensor cache, least recently used first."""
        return list(self._cache)

    def verify(self) -> None:
        """Decode every frame once (without preprocessing) and raise the first decode or size error found."""
        for i in range(len(self)):
            self._decode(i)

    def close(self) -> None:
        """Release the video file handle (if any) and drop the cache."""
        self._source.close()
        self._cache.clear()
        self._last_rgb = None

    def __enter__(self) -> "VideoFrames":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
