"""Real footage for evaluation: the video clips of Debian's ``opencv-doc`` package, cut to the frames to track.

The package (``apt-get install opencv-doc``) ships a few clips under /usr/share/doc/opencv-doc: ``vtest.avi``,
``Megamind.avi``, ``tree.avi`` in examples/data, and gzipped ``cup.mp4.gz``, ``box.mp4.gz`` in opencv4/html. `CLIPS`
names the ones with objects worth tracking and the frames to use; `fetch_clips` decodes each (decompressing a
``.gz`` first) and writes those frames, at their own resolution, as a folder of JPEGs that `track`, `vos` and the
benchmarks read::

    OUT/<clip>/00000.jpg ...   the clip's frames (frame 0 is the prompted frame)
    OUT/<clip>.prompts         first-frame masks of its objects (`mask 0 <clip>_00000.png`, see io/prompts.py)
    OUT/<clip>_00000.png       those masks (a palette PNG; drawn with GrabCut from a box and strokes, checked by eye)
    OUT/<clip>.clicks.prompts  the same objects as first-frame clicks (for real SAM 2 checkpoints: the bundled micro
                               model, trained on synthetic videos, follows masks but not clicks on real footage)
    OUT/clips.json             per clip: source file and its SHA-256, first source frame, frames, size, fps

The prompt files and masks are the repository's docs/clips/ (`--prompts`); the clips themselves are never committed.

Left out: ``Megamind_bugy.avi`` (a deliberately damaged copy of Megamind.avi) and ``tree.avi`` (its header
promises 444 frames but 68 decode, and it shows foliage with no object to click).

    python -m efficient_sam2.data.clips --out clips              # or scripts/fetch_opencv_clips.sh [OUT]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass
from typing import Optional, Sequence

import cv2

from ..download import sha256sum
from ..io.atomic import atomic_open

__all__ = ["CLIPS", "OPENCV_DOC", "Clip", "ClipError", "convert_clip", "fetch_clips", "find_source", "main"]

OPENCV_DOC = "/usr/share/doc/opencv-doc"
JPEG_QUALITY = 95
MANIFEST = "clips.json"


class ClipError(RuntimeError):
    """A clip that cannot be found or decoded."""


@dataclass(frozen=True)
class Clip:
    """One clip: `source` relative to the opencv-doc folder (a ``.gz`` beside it is used when the plain file is
    absent), `start` the first source frame used (frame 0 of the clip), `frames` how many to use, `size` (H, W) of
    its frames (checked when written: the prompt files are in these pixels)."""

    name: str
    source: str
    start: int
    frames: int
    size: tuple[int, int]
    description: str


CLIPS: tuple[Clip, ...] = (
    Clip("vtest", "examples/data/vtest.avi", 0, 200, (576, 768),
         "768x576, 10 fps: a static camera over a campus path; people walk in and out, cross and pass a lamp post"),
    Clip("megamind", "examples/data/Megamind.avi", 1, 199, (528, 720),
         "720x528, 24 fps, animation: a woman at a restaurant table, two scene cuts (clip frames 97 and 153) to "
         "the man opposite and back; source frame 0 is black and is skipped"),
    Clip("cup", "opencv4/html/cup.mp4.gz", 0, 200, (480, 640),
         "640x480, 27 fps, hand-held: a hand turns and tilts a dark cup in front of a white wall"),
    Clip("box", "opencv4/html/box.mp4.gz", 0, 200, (480, 640),
         "640x480, 30 fps: a hand moves a printed box over a table; a pen lies on the table"),
)


def find_source(clip: Clip, doc_dir: str = OPENCV_DOC) -> str:
    """The clip's file under `doc_dir`: the plain file, else the same name plus or minus ``.gz``. Raises ClipError
    saying how to install the package."""
    path = os.path.join(doc_dir, clip.source)
    alternative = path[:-3] if path.endswith(".gz") else path + ".gz"
    for candidate in (path, alternative):
        if os.path.isfile(candidate):
            return candidate
    raise ClipError(f"{clip.name}: {path!r} not found; install Debian's opencv-doc package (apt-get install "
                    f"opencv-doc) or give its folder (--doc-dir)")


def convert_clip(source: str, out_dir: str, start: int = 0, frames: Optional[int] = None,
                 quality: int = JPEG_QUALITY) -> dict:
    """Decode `source` (a video file, or one gzipped as ``*.gz``) and write source frames start, start + 1, ...
    (`frames` of them, or to the end) as ``out_dir/00000.jpg ...``, in a temporary folder renamed into place (an
    existing `out_dir` is replaced). Returns facts for the manifest: frames written, (height, width), fps. Raises
    ClipError when no frame decodes at `start`."""
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(out_dir)}.partial-{uuid.uuid4().hex[:10]}")
    scratch = None
    try:
        path = source
        if source.endswith(".gz"):  # OpenCV reads files: decompress next to the output first
            fd, scratch = tempfile.mkstemp(suffix=os.path.splitext(source[:-3])[1], dir=parent)
            with os.fdopen(fd, "wb") as f, gzip.open(source, "rb") as g:
                shutil.copyfileobj(g, f)
            path = scratch
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            raise ClipError(f"cannot open video {source!r}")
        fps = cap.get(cv2.CAP_PROP_FPS)
        os.makedirs(tmp)
        index, written, size = 0, 0, None
        while frames is None or written < frames:
            ok, bgr = cap.read()
            if not ok:
                break
            if index >= start:
                size = bgr.shape[:2]
                ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
                if not ok:
                    raise ClipError(f"JPEG encoding failed for frame {index} of {source!r}")
                with open(os.path.join(tmp, f"{written:05d}.jpg"), "wb") as f:
                    f.write(buf.tobytes())
                written += 1
            index += 1
        cap.release()
        if written == 0:
            raise ClipError(f"{source!r}: no frame decodes at or after source frame {start} ({index} decoded)")
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        if scratch is not None and os.path.exists(scratch):
            os.remove(scratch)
    return {"frames": written, "size": [int(size[0]), int(size[1])],
            "fps": round(float(fps), 3) if fps and 0 < fps < 1000 else None}


def fetch_clips(out_dir: str, doc_dir: str = OPENCV_DOC, names: Optional[Sequence[str]] = None,
                prompts_dir: Optional[str] = None, overwrite: bool = False, log=print,
                clips: Sequence[Clip] = CLIPS) -> list[dict]:
    """Write the clips `names` (default: all of `clips`) to `out_dir` (see the module docstring), with their prompt
    files and masks from `prompts_dir` (``<clip>.prompts``, ``<clip>.*.prompts``, ``<clip>_*.png``) when given,
    and OUT/clips.json. A clip whose folder already holds the expected frames is kept unless `overwrite`. Returns
    the manifest entries. Raises ClipError for a missing source, or frames of another size than the clip's."""
    chosen = list(clips) if not names else [_clip(n, clips) for n in names]
    os.makedirs(out_dir, exist_ok=True)
    entries = []
    for clip in chosen:
        source = find_source(clip, doc_dir)
        target = os.path.join(out_dir, clip.name)
        entry = {"name": clip.name, "source": source, "sha256": sha256sum(source), "start": clip.start,
                 "description": clip.description}
        existing = sorted(f for f in os.listdir(target) if f.endswith(".jpg")) if os.path.isdir(target) else []
        if len(existing) == clip.frames and not overwrite:
            first = cv2.imread(os.path.join(target, existing[0]))
            entry.update(frames=len(existing), size=list(first.shape[:2]), fps=None)
            log(f"{clip.name}: {len(existing)} frames already in {target} (--overwrite to write them again)")
        else:
            entry.update(convert_clip(source, target, clip.start, clip.frames))
            note = "" if entry["frames"] == clip.frames else f" (only {entry['frames']} of {clip.frames} decode)"
            log(f"{clip.name}: {entry['frames']} frames, {entry['size'][1]}x{entry['size'][0]} -> {target}{note}")
        if tuple(entry["size"]) != tuple(clip.size):
            raise ClipError(f"{clip.name}: {source!r} decodes to {entry['size'][1]}x{entry['size'][0]} (WxH) frames, "
                            f"not {clip.size[1]}x{clip.size[0]}: its prompts would not fit")
        if prompts_dir is not None:
            own = sorted(f for f in os.listdir(prompts_dir)
                         if (f.startswith(f"{clip.name}.") and f.endswith(".prompts"))
                         or (f.startswith(f"{clip.name}_") and f.endswith(".png")))
            for name in own:
                shutil.copyfile(os.path.join(prompts_dir, name), os.path.join(out_dir, name))
            entry["prompts"] = [f for f in own if f.endswith(".prompts")]
        entries.append(entry)
    with atomic_open(os.path.join(out_dir, MANIFEST), "w", encoding="utf-8") as f:
        json.dump({"package": "opencv-doc", "doc_dir": doc_dir, "clips": entries}, f, indent=1)
        f.write("\n")
    return entries


def _clip(name: str, clips: Sequence[Clip] = CLIPS) -> Clip:
    for clip in clips:
        if clip.name == name:
            return clip
    raise ClipError(f"unknown clip {name!r}; the clips are {', '.join(c.name for c in clips)}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m efficient_sam2.data.clips",
                                description="Write the opencv-doc clips as JPEG folders with their prompt files.")
    p.add_argument("--out", default="clips", help="output folder (default ./clips)")
    p.add_argument("--doc-dir", default=OPENCV_DOC, help=f"where opencv-doc is installed ({OPENCV_DOC})")
    p.add_argument("--prompts", default=None, metavar="DIR",
                   help="folder of <clip>.prompts files to copy beside the clips (the repository's docs/clips)")
    p.add_argument("--clip", action="append", default=None, choices=[c.name for c in CLIPS],
                   help="only this clip (repeatable; default: all)")
    p.add_argument("--overwrite", action="store_true", help="write clips again that are already there")
    args = p.parse_args(argv)
    try:
        fetch_clips(args.out, args.doc_dir, args.clip, args.prompts, args.overwrite)
    except (ClipError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
