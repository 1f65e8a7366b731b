"""Synthetic videos written as a DAVIS-layout dataset folder, readable by `vos`, `eval` and `VOSDataset`.

Layout under the output folder (``<res>`` is the frame height followed by "p", like DAVIS' "480p": "256p" for the
default 256 x 256 frames, see `resolution_name`)::

    JPEGImages/<res>/<video>/00000.jpg ...   frames (RGB JPEG)
    Annotations/<res>/<video>/00000.png ...  every frame annotated: palette PNGs, pixel value = object id (0 = bg)
    ImageSets/<split>.txt                    the videos, one per line
    meta.json                                generator version, seed, split, subsets, counts, and per video its
                                             seed (``generate_video(seed, subset, frames=, size=)`` rebuilds it)

Videos are named ``<subset>_<index>`` (``standard_0000``); with several subsets each gets `videos` videos. A video's
seed comes from ``SeedSequence([seed, split code, subset code, index])`` (and the style's code for a style other
than "synth"), so train and val, or two styles, drawn with the same `seed` never share a video.

Styles (`STYLES`): "synth" (the default, square 256 x 256 frames) and "organic" (held out for evaluation: other
textures, shapes, motion and lighting; without a `size`, every video is 192 pixels high and one of several widths,
drawn from its seed, so the dataset still sits in one ``192p`` folder, and meta.json lists each video's size).

Safety: an existing non-empty output folder is refused unless `overwrite`; with it, only files this generator
writes (or wrote, per the old meta.json) are replaced or removed, and anything else in the folder is kept. Each
video is written into hidden temporary folders and renamed into place, so an interrupted run leaves no half video
(at worst, one video's frames without its annotations; rerun with `overwrite`).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import cv2
import numpy as np
from tqdm import tqdm

from ..io.atomic import atomic_open
from ..io.masks import write_palette_mask
from .synthetic import (DEFAULT_FRAMES, DEFAULT_SIZE, GENERATOR_VERSION, STYLES, SUBSETS, SyntheticConfig,
                        generate_video)

__all__ = [
    "DEFAULT_RESOLUTION",
    "GENERATOR_NAME",
    "JPEG_QUALITY",
    "META_FILE",
    "SPLITS",
    "SyntheticDataset",
    "dataset_layout",
    "resolution_name",
    "video_seed",
    "write_dataset",
]

PathLike = Union[str, os.PathLike]
SPLITS: dict[str, int] = {"train": 0, "val": 1}
"""Split name -> the code mixed into every video's seed (never reuse one)."""
GENERATOR_NAME = "efficient_sam2.data.synthetic"
META_FILE = "meta.json"
JPEG_QUALITY = 92
_PARTIAL = ".partial-"
_OLD = ".old-"


def resolution_name(size: tuple[int, int]) -> str:
    """The ``<res>`` folder name of frames of size (H, W): the height and "p", as DAVIS' "480p"."""
    return f"{int(size[0])}p"


DEFAULT_RESOLUTION = resolution_name(DEFAULT_SIZE)
""""256p": the ``<res>`` folder of the default 256 x 256 videos."""


@dataclass(frozen=True)
class SyntheticDataset:
    """Where a written dataset's parts are: video_dir (frames, one folder per video), mask_dir (annotations),
    video_list (ImageSets/<split>.txt) and meta (meta.json); pass the first three to `VOSDataset("davis", ...)`."""

    root: str
    video_dir: str
    mask_dir: str
    video_list: str
    meta: str


def dataset_layout(out_dir: PathLike, split: str, size: tuple[int, int] = DEFAULT_SIZE) -> SyntheticDataset:
    """The paths of a synthetic dataset written to `out_dir` for `split` at `size`."""
    root = os.fspath(out_dir)
    res = resolution_name(size)
    return SyntheticDataset(root, os.path.join(root, "JPEGImages", res), os.path.join(root, "Annotations", res),
                            os.path.join(root, "ImageSets", f"{split}.txt"), os.path.join(root, META_FILE))


def video_seed(seed: int, split: str, subset: str, index: int, style: str = "synth") -> int:
    """The seed of video `index` of `subset` in `split`: a 63-bit integer from SeedSequence([seed, split code,
    subset code, index] + [style code] unless the style is "synth"); distinct splits, subsets and styles give
    unrelated seeds."""
    code = STYLES[style].code
    entropy = [int(seed), SPLITS[split], SUBSETS[subset].code, int(index)] + ([code] if code else [])
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) >> 1


def _frame_names(frames: int) -> list[str]:
    return [f"{t:05d}" for t in range(frames)]


def _check_args(videos, split, seed, subsets, frames, size, style) -> tuple[list[str], tuple[int, int]]:
    """The unique subset names and the size of the dataset's frames (the style's height and first width when `size`
    is None: the <res> folder is named after the height, which is the same for every video of a style)."""
    if isinstance(videos, bool) or not isinstance(videos, (int, np.integer)) or videos < 1:
        raise ValueError(f"the number of videos must be an integer >= 1; got {videos!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    if isinstance(subsets, str):
        subsets = [subsets]
    names = list(dict.fromkeys(subsets))  # unique, in order
    if not names:
        raise ValueError(f"no subset given; valid subsets: {', '.join(SUBSETS)}")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid styles: {', '.join(STYLES)}")
    if size is None:
        size = (STYLES[style].height, STYLES[style].widths[0])
    configs = [SyntheticConfig(subset=s, frames=frames, size=size, style=style) for s in names]  # validates them
    return names, configs[0].size


def _read_manifest(out_dir: str) -> dict:
    """The old meta.json of this generator (empty dict if absent or not ours)."""
    path = os.path.join(out_dir, META_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) and meta.get("generator") == GENERATOR_NAME else {}


def _owned(meta: dict) -> dict[tuple[str, str], int]:
    """{(res, video): frames} of every video an old meta.json says this generator wrote."""
    out = {}
    res = meta.get("resolution")
    for v in meta.get("videos", []):
        try:
            out[(str(res), str(v["name"]))] = int(v["frames"])
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _remove_files(folder: str, names: Sequence[str]) -> None:
    """Delete the named plain files of `folder`, then the folder itself if that left it empty."""
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not os.path.islink(path):
            os.remove(path)
    try:
        os.rmdir(folder)
    except OSError:
        pass  # not empty (other files are kept) or already gone


def _remove_partials(parent: str, video: str) -> None:
    """Delete hidden temporary folders that an interrupted run of this generator left for `video`."""
    if not os.path.isdir(parent):
        return
    prefix = f".{video}{_PARTIAL}"  # (never the ".old-" folders: one may hold a foreign entry kept aside)
    for e in list(os.scandir(parent)):
        if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path)


def _install(tmp: str, final: str, owned: set[str]) -> None:
    """Move the finished folder `tmp` to `final`. An existing `final` is set aside, replaced by `tmp` in one rename,
    and its files that are not ours (not in `owned`, not rewritten) are moved back into the new folder."""
    if not os.path.lexists(final):
        os.replace(tmp, final)
        return
    if not os.path.isdir(final) or os.path.islink(final):
        raise FileExistsError(f"{final!r} exists and is not a folder; remove it or write elsewhere")
    parent, name = os.path.split(final)
    aside = os.path.join(parent, f".{name}{_OLD}{uuid.uuid4().hex[:10]}")
    new = set(os.listdir(tmp))
    os.replace(final, aside)
    os.replace(tmp, final)
    for e in list(os.scandir(aside)):
        if (e.name in owned or e.name in new) and e.is_file(follow_symlinks=False):
            os.remove(e.path)
        elif e.name not in new:
            os.replace(e.path, os.path.join(final, e.name))
    try:
        os.rmdir(aside)
    except OSError:  # a foreign entry with a name we now use: keep it aside rather than delete it
        pass


def _write_json(path: str, obj: dict) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def write_dataset(out_dir: PathLike, videos: int, split: str, seed: int, subsets: Sequence[str] = ("standard",),
                  frames: int = DEFAULT_FRAMES, size: Optional[tuple[int, int]] = None, overwrite: bool = False,
                  progress: bool = True, jpeg_quality: int = JPEG_QUALITY, style: str = "synth") -> list[str]:
    """Generate `videos` videos per subset and write them as a DAVIS-layout dataset (see the module docstring).

    Args:
        out_dir: output folder; must be absent or empty unless `overwrite`.
        videos: videos per subset (>= 1); split: "train" or "val"; seed: base seed (>= 0).
        subsets: names from SUBSET_NAMES; frames: frames per video; size: (H, W) of every video, or None: the
            style's (256 x 256 for "synth"; for "organic" 192 high and a width drawn per video).
        overwrite: replace what this generator wrote before in `out_dir` (other files are kept).
        progress: show a tqdm progress bar; jpeg_quality: 1..100; style: one of STYLES ("synth", "organic").
    Returns:
        the video names written, in order (also listed in ImageSets/<split>.txt).
    Raises ValueError for bad arguments and FileExistsError for a non-empty `out_dir` without `overwrite`.
    """
    fixed_size = size is not None
    names, size = _check_args(videos, split, seed, subsets, frames, size, style)
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be 1..100; got {jpeg_quality!r}")
    layout = dataset_layout(out_dir, split, size)
    root = layout.root
    if os.path.lexists(root) and not os.path.isdir(root):
        raise FileExistsError(f"output {root!r} exists and is not a folder")
    if os.path.isdir(root) and os.listdir(root) and not overwrite:
        raise FileExistsError(f"output folder {root!r} is not empty; use --overwrite (overwrite=True) to replace the "
                              "files this generator writes there (other files are kept), or choose another folder")
    width = max(4, len(str(int(videos) - 1)))
    plan = [(f"{s}_{i:0{width}d}", s, video_seed(seed, split, s, i, style)) for s in names
            for i in range(int(videos))]
    res = resolution_name(size)
    os.makedirs(root, exist_ok=True)

    old_meta = _read_manifest(root)
    owned = _owned(old_meta)
    planned = {(res, name) for name, _, _ in plan}
    for (old_res, name), n in owned.items():  # videos of the old run that this run does not write again
        if (old_res, name) not in planned:
            _remove_files(os.path.join(root, "JPEGImages", old_res, name), [f"{f}.jpg" for f in _frame_names(n)])
            _remove_files(os.path.join(root, "Annotations", old_res, name), [f"{f}.png" for f in _frame_names(n)])
    old_split = old_meta.get("split")
    if old_split in SPLITS and old_split != split:
        _remove_files(os.path.join(root, "ImageSets"), [f"{old_split}.txt"])

    from .. import __version__

    meta = {
        "generator": GENERATOR_NAME, "generator_version": GENERATOR_VERSION, "package_version": __version__,
        "complete": False, "seed": int(seed), "split": split, "subsets": names, "videos_per_subset": int(videos),
        "frames": int(frames), "size": list(size) if fixed_size or style == "synth" else None, "resolution": res,
        **({} if style == "synth" else {"style": style}),
        "layout": {"frames": f"JPEGImages/{res}", "annotations": f"Annotations/{res}",
                   "video_list": f"ImageSets/{split}.txt"},
        # until complete, the manifest also covers frames an older, longer run left in the same videos
        "videos": [{"name": name, "subset": s, "seed": vs, "frames": max(int(frames), owned.get((res, name), 0))}
                   for name, s, vs in plan],
    }
    _write_json(layout.meta, meta)

    frame_names = _frame_names(int(frames))
    summaries = []
    for name, subset, vseed in tqdm(plan, desc=f"synth {split}", unit="video", disable=not progress):
        video = generate_video(vseed, subset, frames=int(frames), size=size if fixed_size else None, style=style)
        old_files = _frame_names(owned.get((res, name), 0))
        tmps = []
        for parent in (layout.video_dir, layout.mask_dir):
            os.makedirs(parent, exist_ok=True)
            _remove_partials(parent, name)
            tmps.append(os.path.join(parent, f".{name}{_PARTIAL}{uuid.uuid4().hex[:10]}"))
            os.makedirs(tmps[-1])
        try:
            for stem, image, ids in zip(frame_names, video.frames, video.masks):
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                       [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
                if not ok:
                    raise OSError(f"JPEG encoding failed for {name}/{stem}")
                with open(os.path.join(tmps[0], f"{stem}.jpg"), "wb") as f:
                    f.write(buf.tobytes())
                write_palette_mask(os.path.join(tmps[1], f"{stem}.png"), ids)
        except BaseException:
            for tmp in tmps:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        _install(tmps[0], os.path.join(layout.video_dir, name), {f"{f}.jpg" for f in old_files})
        _install(tmps[1], os.path.join(layout.mask_dir, name), {f"{f}.png" for f in old_files})
        summaries.append({"name": name, **video.summary()})

    with atomic_open(layout.video_list, "w", encoding="utf-8") as f:
        f.write("".join(f"{name}\n" for name, _, _ in plan))
    per_subset = {s: int(videos) for s in names}
    meta.update(complete=True, videos=summaries, counts={
        "videos": len(plan), "frames": len(plan) * int(frames), "objects": sum(v["objects"] for v in summaries),
        "per_subset": per_subset})
    _write_json(layout.meta, meta)
    return [name for name, _, _ in plan]
