"""Training data of shortcut training: videos with a first-frame mask for every object to track.

Layouts (the same as for dataset inference):

* ``video_dir/<video>/`` a folder of frames (.jpg/.jpeg/.png), or ``video_dir/<video>.mp4`` (any of
  .mp4/.avi/.mov/.mkv) a video file whose frames are named 00000, 00001, ...
* ``"davis"`` (also ``"mose"``): ``mask_dir/<video>/<frame>.png``, one indexed PNG per frame whose pixel values are
  object ids (0 background, 255 DAVIS "void", never an object).
* ``"sav"``: ``mask_dir/<video>/<obj_id>/<frame>.png``, one binary PNG per object (pixel > 0 = object).

Only the mask of the video's first frame is read: it is the prompt of every object (shortcut training needs no
other label; the loss compares the model with itself). The first frame's mask file is the one named like the first
frame (``00000.jpg`` -> ``00000.png``); when frame names are integers, a mask whose name has the same integer value
(``0.png``) is accepted too. Objects whose first-frame mask is empty are skipped; of the rest, the `max_objects`
smallest ids are kept (the official training data keeps one object per video).

`scan_training_videos` checks everything before training starts and reports every problem at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from ..io.frames import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoError, VideoFrames
from ..io.masks import MaskError, read_object_mask, read_palette_mask

__all__ = [
    "LAYOUTS",
    "TrainingDataError",
    "TrainingVideo",
    "find_videos",
    "read_video_list",
    "scan_training_videos",
]

PathLike = Union[str, os.PathLike]
LAYOUTS = ("davis", "mose", "sav")
VOID_LABEL = 255


class TrainingDataError(ValueError):
    """The training videos or their masks cannot be used; the message lists every problem found."""


@dataclass(frozen=True)
class TrainingVideo:
    """One training video and the objects prompted on its first frame.

    frames: the frame folder or video file; mask: the first frame's palette PNG ("davis") or the video's mask
    folder ("sav"); first_frame: name of the first frame (no extension); object_ids: the prompted objects in
    ascending order; height, width: the frame size.
    """

    name: str
    frames: str
    mask: str
    layout: str
    first_frame: str
    object_ids: tuple[int, ...]
    num_frames: int
    height: int
    width: int

    def open_frames(self, image_size: int, cache_size: int = 2) -> VideoFrames:
        """The video's frames preprocessed for a model of input size `image_size` (decoded lazily)."""
        return VideoFrames(self.frames, image_size=image_size, cache_size=cache_size)

    def load_prompts(self) -> dict[int, np.ndarray]:
        """{object id: (H, W) bool first-frame mask} for every prompted object, in ascending id order."""
        masks = _read_first_masks(self.mask, self.layout, self.first_frame)
        return {i: masks[i] for i in self.object_ids}


# ---------------------------------------------------------------------------------------------------------------------
# Finding videos and masks


def find_videos(video_dir: PathLike) -> dict[str, str]:
    """{video name: path} of every frame folder and video file directly inside `video_dir`, sorted by name.

    A folder counts as a video if it holds at least one image file; a file counts if its extension is a video
    extension. A folder and a file with the same name are ambiguous and raise TrainingDataError.
    """
    video_dir = os.fspath(video_dir)
    if not os.path.isdir(video_dir):
        raise TrainingDataError(f"video folder not found: {video_dir!r}")
    found: dict[str, str] = {}
    clashes = []
    for entry in sorted(os.listdir(video_dir)):
        if entry.startswith("."):
            continue
        path = os.path.join(video_dir, entry)
        if os.path.isdir(path):
            if not any(os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS for f in os.listdir(path)):
                continue
            name = entry
        elif os.path.splitext(entry)[1].lower() in VIDEO_EXTENSIONS:
            name = os.path.splitext(entry)[0]
        else:
            continue
        if name in found:
            clashes.append(name)
        found[name] = path
    if clashes:
        raise TrainingDataError(
            f"{video_dir!r}: these names are both a frame folder and a video file, so the video is ambiguous: "
            f"{', '.join(sorted(set(clashes)))}"
        )
    return dict(sorted(found.items()))


def read_video_list(path: PathLike) -> list[str]:
    """Video names from a list file: one per line; blank lines and lines starting with '#' are ignored.

    A name may carry a file extension (``bike.mp4``) or a trailing slash; duplicates are dropped (first kept).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TrainingDataError(f"video list file not found: {path!r}")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"cannot read video list file {path!r}: {exc}") from exc
    names: list[str] = []
    for line in lines:
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        name = name.rstrip("/\\")
        stem, ext = os.path.splitext(name)
        if ext.lower() in VIDEO_EXTENSIONS:
            name = stem
        if name not in names:
            names.append(name)
    if not names:
        raise TrainingDataError(f"video list file {path!r} names no video")
    return names


def _first_mask_file(folder: str, frame_name: str) -> str | None:
    """The PNG in `folder` for frame `frame_name`: same name, or the same integer value."""
    exact = os.path.join(folder, frame_name + ".png")
    if os.path.isfile(exact):
        return exact
    if not os.path.isdir(folder):
        return None
    try:
        target = int(frame_name)
    except ValueError:
        return None
    for entry in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(entry)
        if ext.lower() != ".png":
            continue
        try:
            if int(stem) == target:
                return os.path.join(folder, entry)
        except ValueError:
            continue
    return None


def _sav_object_folders(folder: str) -> dict[int, str]:
    out = {}
    if not os.path.isdir(folder):
        return out
    for entry in os.listdir(folder):
        if os.path.isdir(os.path.join(folder, entry)):
            try:
                out[int(entry)] = entry
            except ValueError:
                continue
    return dict(sorted(out.items()))


def _read_first_masks(mask: str, layout: str, frame_name: str) -> dict[int, np.ndarray]:
    """{object id: (H, W) bool} of every non-empty object on the first frame."""
    if layout == "sav":
        out = {}
        for obj_id, entry in _sav_object_folders(mask).items():
            path = _first_mask_file(os.path.join(mask, entry), frame_name)
            if path is None:
                continue
            m = read_object_mask(path)
            if m.any():
                out[obj_id] = m
        return out
    ids, _ = read_palette_mask(mask)
    return {int(i): ids == i for i in np.unique(ids) if 0 < i != VOID_LABEL}


def _mask_location(mask_dir: str, name: str, layout: str, frame_name: str) -> tuple[str | None, str]:
    """(path to use, description of what was looked for)."""
    folder = os.path.join(mask_dir, name)
    if layout == "sav":
        if not _sav_object_folders(folder):
            return None, f"no object folders (e.g. {os.path.join(folder, '001')!r}) in {folder!r}"
        return folder, folder
    path = _first_mask_file(folder, frame_name)
    if path is None:
        return None, f"no first-frame mask {os.path.join(folder, frame_name + '.png')!r}"
    return path, path


def scan_training_videos(
    video_dir: PathLike,
    mask_dir: PathLike,
    layout: str = "davis",
    video_list: PathLike | Sequence[str] | None = None,
    max_objects: int | None = 1,
) -> list[TrainingVideo]:
    """Every usable training video, checked before training starts.

    Args:
        video_dir: folder of frame folders and/or video files.
        mask_dir: folder of first-frame masks in `layout` ("davis", "mose" = "davis", or "sav").
        video_list: a list file (see `read_video_list`) or a sequence of names choosing and ordering the videos;
            None takes every video of `video_dir` in name order.
        max_objects: at most this many objects per video (smallest ids first); None or 0 = all.
    Raises:
        TrainingDataError listing, all at once: videos named in the list that do not exist, videos without a
        first-frame mask or with only empty masks, masks whose size differs from the frames, unreadable files.
    """
    layout = layout.lower() if isinstance(layout, str) else layout
    if layout not in LAYOUTS:
        raise TrainingDataError(f"unknown mask layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    if max_objects is not None and (isinstance(max_objects, bool) or not isinstance(max_objects, int)
                                    or max_objects < 0):
        raise TrainingDataError(f"max_objects must be a positive integer (or 0 / None for all), got {max_objects!r}")
    video_dir, mask_dir = os.fspath(video_dir), os.fspath(mask_dir)
    available = find_videos(video_dir)
    if not os.path.isdir(mask_dir):
        raise TrainingDataError(f"mask folder not found: {mask_dir!r}")

    if video_list is None:
        names = list(available)
        if not names:
            raise TrainingDataError(
                f"no videos in {video_dir!r}: expected frame folders (<video>/<frame>.jpg) or video files "
                f"({', '.join(VIDEO_EXTENSIONS)})"
            )
    else:
        names = read_video_list(video_list) if isinstance(video_list, (str, os.PathLike)) else list(video_list)
        if not names:
            raise TrainingDataError("the video list is empty")
        missing = [n for n in names if n not in available]
        if missing:
            where = f" (list file {os.fspath(video_list)!r})" if isinstance(video_list, (str, os.PathLike)) else ""
            raise TrainingDataError(
                f"{len(missing)} video(s) named in the video list{where} are not in {video_dir!r}: "
                f"{', '.join(missing)}"
            )

    key = "sav" if layout == "sav" else "davis"
    videos, no_mask, empty, problems = [], [], [], []
    for name in names:
        try:
            with VideoFrames(available[name], image_size=32, cache_size=0) as frames:
                first, count, h, w = frames.frame_names[0], len(frames), frames.height, frames.width
        except VideoError as exc:
            problems.append(f"{name}: {exc}")
            continue
        path, looked_for = _mask_location(mask_dir, name, key, first)
        if path is None:
            no_mask.append(f"{name} ({looked_for})")
            continue
        try:
            masks = _read_first_masks(path, key, first)
        except (MaskError, OSError) as exc:
            problems.append(f"{name}: {exc}")
            continue
        if not masks:
            empty.append(name)
            continue
        bad_size = {i: m.shape for i, m in masks.items() if m.shape != (h, w)}
        if bad_size:
            shape = next(iter(bad_size.values()))
            problems.append(
                f"{name}: the first-frame mask is {shape[1]}x{shape[0]} (WxH) but the frames are {w}x{h}"
            )
            continue
        ids = sorted(masks)
        if max_objects:
            ids = ids[:max_objects]
        videos.append(TrainingVideo(name, available[name], path, key, first, tuple(ids), count, h, w))

    lines = []
    if no_mask:
        lines.append(f"{len(no_mask)} video(s) have no first-frame mask in {mask_dir!r} (layout {layout!r}):")
        lines += [f"  {item}" for item in no_mask]
    if empty:
        lines.append(f"{len(empty)} video(s) have only empty first-frame masks (no object to prompt):")
        lines += [f"  {item}" for item in empty]
    if problems:
        lines.append(f"{len(problems)} video(s) cannot be read:")
        lines += [f"  {item}" for item in problems]
    if lines:
        lines.append("Fix or remove them (or choose videos with a list file) before training.")
        raise TrainingDataError("\n".join(lines))
    return videos
