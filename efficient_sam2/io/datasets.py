"""Semi-supervised VOS dataset folders (DAVIS, MOSE, SA-V): listing videos, reading annotations, writing outputs.

Layouts. Frames are always one folder of images per video, ``<video_dir>/<video>/<frame>.jpg``. Annotations:

* ``"davis"`` / ``"mose"``: ``<mask_dir>/<video>/<frame>.png``, one indexed (palette) PNG per annotated frame whose
  pixel values are object ids (0 = background; 255 is DAVIS' "void" label and never an object). Validation sets
  ship the first frame's PNG only.
* ``"sav"``: ``<mask_dir>/<video>/<obj_id>/<frame>.png``, one binary PNG per object per annotated frame (pixel > 0 =
  object), object folders named by integer id (``000``, ``001``, ...). SA-V annotates every 4th frame (6 fps) of
  24-fps videos.

Outputs (`VideoOutput`) are written for every frame of the video at its original resolution: one palette PNG per
frame ``<out>/<video>/<frame>.png``, or with per-object output ``<out>/<video>/<obj>/<frame>.png`` (0/1 PNGs). A
video's outputs are written into a hidden temporary folder next to the final one and renamed into place when every
file is written, so an interrupted run never leaves a half-written video behind, and a video folder that exists with
all its files is complete (`video_output_complete`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from .atomic import move_into, unlisted_files
from .frames import IMAGE_EXTENSIONS, sort_frame_names
from .masks import read_palette_mask, write_object_mask, write_palette_mask

__all__ = [
    "DATASET_LAYOUTS",
    "VOID_LABEL",
    "DatasetError",
    "ObjectTrack",
    "VideoAnnotations",
    "VOSDataset",
    "VideoOutput",
    "expected_output_files",
    "read_video_list",
    "video_output_complete",
]

PathLike = Union[str, os.PathLike]
DATASET_LAYOUTS: tuple[str, ...] = ("davis", "mose", "sav")
VOID_LABEL = 255
"""DAVIS marks ambiguous pixels with 255; it is never read as an object (as in the evaluator)."""

_PARTIAL = ".partial-"
_OLD = ".old-"


class DatasetError(ValueError):
    """A dataset folder, or one video in it, cannot be used as given."""


def _visible_entries(path: str) -> list[os.DirEntry]:
    with os.scandir(path) as it:
        return [e for e in it if not e.name.startswith(".")]


def read_video_list(path: PathLike) -> list[str]:
    """Video names from a text file: one per line; blank lines and lines starting with '#' are ignored.

    Duplicates are dropped (first occurrence kept). Raises DatasetError when the file is missing or lists nothing.
    """
    path = os.fspath(path)
    if not os.path.exists(path) or os.path.isdir(path):
        raise DatasetError(f"video list file not found: {path!r}")
    names: list[str] = []
    seen = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            name = name.rstrip("/\\")
            if os.sep in name or "/" in name or name in (".", ".."):
                raise DatasetError(f"video list {path!r}: {name!r} is not a video folder name")
            if name not in seen:
                seen.add(name)
                names.append(name)
    if not names:
        raise DatasetError(f"video list file {path!r} lists no video")
    return names


@dataclass
class ObjectTrack:
    """One annotated object of a video.

    obj_id: its integer id; name: the output name of its folder in per-object output (the input folder name in the
    SA-V layout, else ``f"{obj_id:03d}"``); first_frame: index of the first frame on which its annotation is
    non-empty (None if it is empty on every annotated frame).
    """

    obj_id: int
    name: str
    first_frame: Optional[int]


@dataclass
class VideoAnnotations:
    """The annotations of one video, matched to its frames.

    frame_names: stems of every frame of the video, in order; annotated: indices of the frames that have an
    annotation file, ascending; objects: {obj_id: ObjectTrack} in ascending id order; palette: the palette of the
    first annotated PNG (DAVIS layout) or None; size: (H, W) of the annotations (equal to the frames').
    """

    video: str
    layout: str
    mask_dir: str
    frame_names: list[str]
    annotated: list[int]
    objects: dict[int, ObjectTrack]
    palette: Optional[bytes]
    size: tuple[int, int]
    _files: dict[int, str] = field(default_factory=dict, repr=False)  # frame index -> annotation file name

    @property
    def first_annotated(self) -> int:
        return self.annotated[0]

    def masks_on(self, frame_idx: int) -> dict[int, np.ndarray]:
        """{obj_id: (H, W) bool mask} of every known object on annotated frame `frame_idx` (empty masks included).

        In the SA-V layout an object without a PNG for that frame is left out.
        """
        if frame_idx not in self._files:
            raise KeyError(f"frame {frame_idx} of video {self.video!r} has no annotation")
        fname = self._files[frame_idx]
        if self.layout == "sav":
            out = {}
            for obj in self.objects.values():
                path = os.path.join(self.mask_dir, obj.name, fname)
                if os.path.exists(path):
                    out[obj.obj_id] = _read_mask(path, self.size) > 0
            return out
        ids = _read_mask(os.path.join(self.mask_dir, fname), self.size)
        return {obj_id: ids == obj_id for obj_id in self.objects}


def _read_mask(path: str, size: Optional[tuple[int, int]] = None) -> np.ndarray:
    ids, _ = read_palette_mask(path)
    if size is not None and ids.shape != tuple(size):
        raise DatasetError(
            f"mask {path!r} is {ids.shape[1]}x{ids.shape[0]} (WxH) but the video's frames are {size[1]}x{size[0]}; "
            "annotations must have the resolution of the frames"
        )
    return ids


class VOSDataset:
    """A semi-supervised VOS dataset: frames in `video_dir`, annotations in `mask_dir`, in `layout`.

    `videos` is the sorted list of videos to process: the names in `video_list` (a file path or a sequence of
    names) if given, else every video that has a frame folder or an annotation folder. A video missing one of the
    two is kept in the list so that processing it reports the problem (see `check_video`).
    """

    def __init__(
        self,
        layout: str,
        video_dir: PathLike,
        mask_dir: PathLike,
        video_list: Union[PathLike, Sequence[str], None] = None,
    ) -> None:
        if layout not in DATASET_LAYOUTS:
            raise DatasetError(f"layout must be one of {', '.join(DATASET_LAYOUTS)}; got {layout!r}")
        self.layout = layout
        self.video_dir = os.fspath(video_dir)
        self.mask_dir = os.fspath(mask_dir)
        for what, folder in (("video (frames)", self.video_dir), ("mask (annotations)", self.mask_dir)):
            if not os.path.isdir(folder):
                raise DatasetError(f"{what} folder not found: {folder!r}")
        if video_list is None:
            names = {e.name for e in _visible_entries(self.video_dir) if e.is_dir()}
            names |= {e.name for e in _visible_entries(self.mask_dir) if e.is_dir()}
            if not names:
                raise DatasetError(
                    f"no video folders in {self.video_dir!r} or {self.mask_dir!r} (expected one sub-folder per video)"
                )
        elif isinstance(video_list, (str, os.PathLike)):
            names = read_video_list(video_list)
        else:
            names = [str(v) for v in video_list]
            if not names:
                raise DatasetError("the video list is empty")
        self.videos: list[str] = sorted(set(names))

    def __len__(self) -> int:
        return len(self.videos)

    def __repr__(self) -> str:
        return (f"VOSDataset(layout={self.layout!r}, video_dir={self.video_dir!r}, mask_dir={self.mask_dir!r}, "
                f"videos={len(self.videos)})")

    @property
    def per_object_input(self) -> bool:
        return self.layout == "sav"

    def frames_dir(self, video: str) -> str:
        return os.path.join(self.video_dir, video)

    def annotation_dir(self, video: str) -> str:
        return os.path.join(self.mask_dir, video)

    # ------------------------------------------------------------------------------------------------------------
    def frame_names(self, video: str) -> list[str]:
        """Stems of the video's frame images in order (DatasetError if the folder is missing or holds no image)."""
        folder = self.frames_dir(video)
        if not os.path.isdir(folder):
            raise DatasetError(f"video {video!r}: frame folder not found: {folder!r}")
        files = [e.name for e in _visible_entries(folder)
                 if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS]
        if not files:
            raise DatasetError(
                f"video {video!r}: no frames in {folder!r} (looked for {', '.join(IMAGE_EXTENSIONS)} files)"
            )
        return [os.path.splitext(n)[0] for n in sort_frame_names(files)]

    def object_folders(self, video: str) -> dict[int, str]:
        """SA-V layout: {obj_id: folder name} of a video's annotation folder."""
        folder = self.annotation_dir(video)
        out: dict[int, str] = {}
        pngs = []
        for e in _visible_entries(folder):
            if e.is_dir():
                try:
                    obj_id = int(e.name)
                except ValueError:
                    continue
                if obj_id < 0:
                    continue
                if obj_id in out:
                    raise DatasetError(
                        f"video {video!r}: object folders {out[obj_id]!r} and {e.name!r} in {folder!r} have the same "
                        f"id {obj_id}"
                    )
                out[obj_id] = e.name
            elif e.name.lower().endswith(".png"):
                pngs.append(e.name)
        if not out:
            hint = (" It holds PNG files directly, which is the DAVIS / MOSE layout: use --layout davis."
                    if pngs else "")
            raise DatasetError(
                f"video {video!r}: no per-object folders (named by integer id, e.g. '001') in {folder!r}.{hint}"
            )
        return dict(sorted(out.items()))

    def annotations(self, video: str, frame_names: Optional[Sequence[str]] = None,
                    frame_size: Optional[tuple[int, int]] = None) -> VideoAnnotations:
        """Read and check a video's annotations.

        Every annotated frame is scanned once to find each object's first appearance. Raises DatasetError (or
        MaskError for unreadable / colour PNGs) with the offending file when: the annotation folder is missing or
        empty, an annotation has no matching frame, a mask's size differs from `frame_size` (the frames' (H, W)) or
        from the other masks, or no object is annotated at all.
        """
        names = list(frame_names) if frame_names is not None else self.frame_names(video)
        index = {n: i for i, n in enumerate(names)}
        folder = self.annotation_dir(video)
        if not os.path.isdir(folder):
            raise DatasetError(f"video {video!r}: no annotation folder {folder!r} (the first-frame mask is missing)")
        size = tuple(frame_size) if frame_size is not None else None
        if self.layout == "sav":
            return self._annotations_per_object(video, folder, names, index, size)
        return self._annotations_palette(video, folder, names, index, size)

    @staticmethod
    def _match_frames(video: str, folder: str, files: Iterable[str], index: dict[str, int],
                      names: Sequence[str]) -> dict[int, str]:
        matched: dict[int, str] = {}
        unmatched = []
        for f in files:
            stem = os.path.splitext(f)[0]
            if stem in index:
                matched[index[stem]] = f
            else:
                unmatched.append(f)
        if unmatched:
            example = ", ".join(sorted(unmatched)[:3])
            raise DatasetError(
                f"video {video!r}: {len(unmatched)} annotation file(s) in {folder!r} have no matching frame "
                f"(e.g. {example}); the video has {len(names)} frames named {names[0]!r} .. {names[-1]!r}. "
                "Missing frames, or annotation names that differ from the frame names?"
            )
        return dict(sorted(matched.items()))

    def _annotations_palette(self, video, folder, names, index, size) -> VideoAnnotations:
        entries = _visible_entries(folder)
        pngs = [e.name for e in entries if e.is_file() and e.name.lower().endswith(".png")]
        if not pngs:
            dirs = [e.name for e in entries if e.is_dir()]
            hint = (" It holds sub-folders, which looks like the SA-V per-object layout: use --layout sav."
                    if dirs else "")
            raise DatasetError(f"video {video!r}: no annotation PNG in {folder!r}.{hint}")
        files = self._match_frames(video, folder, pngs, index, names)
        objects: dict[int, ObjectTrack] = {}
        palette = None
        for k, (t, fname) in enumerate(files.items()):
            path = os.path.join(folder, fname)
            ids, pal = read_palette_mask(path)
            if size is None:
                size = ids.shape
            elif ids.shape != size:
                raise DatasetError(
                    f"mask {path!r} is {ids.shape[1]}x{ids.shape[0]} (WxH) but the video's frames are "
                    f"{size[1]}x{size[0]}; annotations must have the resolution of the frames"
                )
            if k == 0:
                palette = pal
            present = np.flatnonzero(np.bincount(ids.ravel(), minlength=256))
            for obj_id in present.tolist():
                if obj_id in (0, VOID_LABEL) or obj_id in objects:
                    continue
                objects[obj_id] = ObjectTrack(obj_id, f"{obj_id:03d}", t)
        if not objects:
            raise DatasetError(f"video {video!r}: the annotations in {folder!r} contain no object (all background)")
        return VideoAnnotations(video, self.layout, folder, names, list(files), dict(sorted(objects.items())),
                                palette, tuple(size), files)

    def _annotations_per_object(self, video, folder, names, index, size) -> VideoAnnotations:
        obj_folders = self.object_folders(video)
        files_per_obj = {}
        all_frames: dict[int, str] = {}
        for obj_id, oname in obj_folders.items():
            ofolder = os.path.join(folder, oname)
            pngs = [e.name for e in _visible_entries(ofolder) if e.is_file() and e.name.lower().endswith(".png")]
            matched = self._match_frames(video, ofolder, pngs, index, names)
            files_per_obj[obj_id] = matched
            all_frames.update(matched)
        if not all_frames:
            raise DatasetError(f"video {video!r}: the object folders in {folder!r} hold no PNG")
        objects: dict[int, ObjectTrack] = {}
        for obj_id, oname in obj_folders.items():
            first = None
            for t, fname in files_per_obj[obj_id].items():
                path = os.path.join(folder, oname, fname)
                m = read_palette_mask(path)[0]
                if size is None:
                    size = m.shape
                elif m.shape != size:
                    raise DatasetError(
                        f"mask {path!r} is {m.shape[1]}x{m.shape[0]} (WxH) but the video's frames are "
                        f"{size[1]}x{size[0]}; annotations must have the resolution of the frames"
                    )
                if m.any():
                    first = t
                    break
            objects[obj_id] = ObjectTrack(obj_id, oname, first)
        if all(o.first_frame is None for o in objects.values()):
            raise DatasetError(f"video {video!r}: every object mask in {folder!r} is empty")
        annotated = dict(sorted(all_frames.items()))
        return VideoAnnotations(video, self.layout, folder, names, list(annotated), objects, None, tuple(size),
                                annotated)


# ---------------------------------------------------------------------------------------------------------------------
# Outputs


def expected_output_files(frame_names: Sequence[str], object_names: Optional[Sequence[str]] = None) -> list[str]:
    """Relative paths of a video's output files: ``<frame>.png`` per frame (palette output, `object_names` None)
    or ``<obj>/<frame>.png`` per object and frame (per-object output)."""
    if object_names is None:
        return [f"{n}.png" for n in frame_names]
    return [os.path.join(o, f"{n}.png") for o in object_names for n in frame_names]


def video_output_complete(output_dir: PathLike, video: str, expected: Sequence[str]) -> tuple[bool, int]:
    """(True, n) when ``<output_dir>/<video>`` holds every expected file; else (False, number present)."""
    folder = os.path.join(os.fspath(output_dir), video)
    if not os.path.isdir(folder):
        return False, 0
    present = sum(os.path.isfile(os.path.join(folder, rel)) for rel in expected)
    return present == len(expected) and len(expected) > 0, present


class VideoOutput:
    """Writes one video's output masks into a hidden temporary folder, then moves it into place atomically.

    Use as a context manager: on a clean exit `commit()` is called (if not done yet); on an exception the temporary
    folder is removed and any existing output is left untouched. With `overwrite`, the files of an existing video
    folder are replaced only once the new ones are complete, and only those: a folder that holds nothing else is
    swapped for the new one (the old one renamed aside, then deleted); files this run did not write are left where
    they are and listed in `kept` after the commit.
    """

    def __init__(self, output_dir: PathLike, video: str, overwrite: bool = False,
                 palette: Optional[bytes] = None) -> None:
        self.output_dir = os.fspath(output_dir)
        self.video = video
        self.overwrite = overwrite
        self.palette = palette
        self.final = os.path.join(self.output_dir, video)
        os.makedirs(self.output_dir, exist_ok=True)
        self.remove_stale_partials(self.output_dir, video)
        self.tmp = os.path.join(self.output_dir, f".{video}{_PARTIAL}{uuid.uuid4().hex[:10]}")
        os.makedirs(self.tmp)
        self.committed = False
        self.kept: list[str] = []  # files of an existing folder that this output left in place (see commit)
        self._written: set[str] = set()

    @staticmethod
    def remove_stale_partials(output_dir: str, video: str) -> None:
        """Delete temporary folders left by interrupted runs on this video."""
        prefix = f".{video}{_PARTIAL}"
        for e in _visible_or_hidden(output_dir):
            if e.name.startswith(prefix) and e.is_dir():
                shutil.rmtree(e.path, ignore_errors=True)

    def write_ids(self, frame_name: str, ids: np.ndarray) -> None:
        """Palette PNG ``<frame>.png`` of an (H, W) id map."""
        rel = f"{frame_name}.png"
        write_palette_mask(os.path.join(self.tmp, rel), ids, self.palette)
        self._written.add(rel)

    def write_object(self, obj_name: str, frame_name: str, mask: np.ndarray) -> None:
        """0/1 PNG ``<obj>/<frame>.png`` of one object's (H, W) mask."""
        rel = os.path.join(obj_name, f"{frame_name}.png")
        write_object_mask(os.path.join(self.tmp, rel), mask)
        self._written.add(rel)

    def has(self, rel: str) -> bool:
        return rel in self._written

    def commit(self, expected: Optional[Sequence[str]] = None) -> None:
        """Move the finished video folder into place (checking first that every `expected` file was written)."""
        if self.committed:
            return
        if expected is not None:
            missing = [r for r in expected if r not in self._written]
            if missing:
                raise RuntimeError(f"video {self.video!r}: {len(missing)} output file(s) were not written, "
                                   f"e.g. {missing[0]!r}")
        old = None
        if os.path.lexists(self.final):
            if not self.overwrite:
                raise FileExistsError(f"output {self.final!r} already exists; use --overwrite to replace it")
            if not os.path.isdir(self.final):
                raise FileExistsError(f"output {self.final!r} exists and is not a folder; move it away")
            self.kept = unlisted_files(self.final, self._written)
            if self.kept:  # other files live there: replace ours one by one and leave theirs alone
                move_into(self.tmp, self.final, sorted(self._written))
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.committed = True
                return
            old = os.path.join(self.output_dir, f".{self.video}{_OLD}{uuid.uuid4().hex[:10]}")
            os.replace(self.final, old)
        os.replace(self.tmp, self.final)
        self.committed = True
        if old is not None:
            if os.path.isdir(old) and not os.path.islink(old):
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.remove(old)

    def abort(self) -> None:
        if not self.committed:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "VideoOutput":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _visible_or_hidden(path: str) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except FileNotFoundError:
        return []

