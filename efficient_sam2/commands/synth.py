"""`efficient-sam2 synth`: write synthetic video-object-segmentation videos as a DAVIS-layout dataset."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..data.synthetic import DEFAULT_FRAMES, DEFAULT_SIZE, STYLES, SUBSETS

DESCRIPTION = """\
Generate procedural videos with exact ground truth (textured backgrounds and objects, smooth motion, rotation and
scale, true occlusion in depth order, camera pan and shake) and write them in the DAVIS layout:

  OUT/JPEGImages/<H>p/<video>/00000.jpg ...   frames
  OUT/Annotations/<H>p/<video>/00000.png ...  every frame annotated (palette PNG, value = object id)
  OUT/ImageSets/<split>.txt                   video list
  OUT/meta.json                               seeds, subsets, counts

Subsets (--subset, comma-separated, or all; N videos each):
""" + "\n".join(f"  {name:13s} {spec.description}" for name, spec in SUBSETS.items()) + """

Styles (--style; the subsets apply to each):
""" + "\n".join(f"  {name:13s} {spec.description}" for name, spec in STYLES.items()) + """
synth is what the bundled micro model was trained and tuned on; organic is held out for evaluation (never train or
tune on it). Without --size, organic videos are 192 pixels high and 144 to 320 wide (drawn per video).

Train and val never share a video, even with the same --seed (the split is part of every video's seed; so is the
style). Read the result with `efficient-sam2 vos --layout davis --video-dir OUT/JPEGImages/256p --mask-dir
OUT/Annotations/256p` (192p for organic).
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("synth", help="write synthetic VOS videos (DAVIS layout) with stress subsets",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (absent or empty unless --overwrite)")
    p.add_argument("--videos", type=int, help="videos per subset (>= 1); required unless --images")
    p.add_argument("--images", type=int, default=None, metavar="N",
                   help="write N 'segment everything' images per image subset instead of videos (every segment "
                        "annotated, background regions included; --subset all or instances,salient,camouflaged)")
    p.add_argument("--split", choices=("train", "val"), required=True, help="split; part of every video's seed")
    p.add_argument("--seed", type=int, required=True, help="base seed (>= 0)")
    p.add_argument("--subset", default="standard",
                   help=f"comma-separated subsets, or all (default standard): {', '.join(SUBSETS)}")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help=f"frames per video ({DEFAULT_FRAMES})")
    p.add_argument("--size", default=None,
                   help="frame size of every video: N (square) or HxW, e.g. 256 or 240x320 (default: the style's: "
                        "256 for synth; 192 high and 144-320 wide, drawn per video, for organic)")
    p.add_argument("--style", default="synth", choices=tuple(STYLES),
                   help="look, motion and lighting of the videos: synth (default) or organic (held out)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty --out, replacing only files this generator writes (others are kept)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_size(text: str | None) -> tuple[int, int]:
    """'256' -> (256, 256); '240x320' -> (240, 320) (H x W); None -> DEFAULT_SIZE. Raises ValueError with the
    accepted forms."""
    if text is None:
        return DEFAULT_SIZE
    parts = text.lower().replace("*", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) <= 0:
        raise ValueError(f"--size must be N or HxW with positive integers (e.g. 256 or 240x320); got {text!r}")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def parse_subsets(text: str) -> list[str]:
    """'standard,occlusion' -> ['standard', 'occlusion']; 'all' -> every subset. Raises ValueError on unknown names."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if names == ["all"]:
        return list(SUBSETS)
    unknown = [s for s in names if s not in SUBSETS]
    if unknown or not names:
        what = f"unknown subset {', '.join(repr(u) for u in unknown)}" if unknown else "no subset given"
        raise ValueError(f"{what}; valid subsets: {', '.join(SUBSETS)}, or all")
    return list(dict.fromkeys(names))


def run(args) -> int:
    from ..data.writer import dataset_layout, write_dataset

    if args.images is not None:
        return run_images(args)
    try:
        if args.videos is None:
            raise ValueError("--videos is required (or --images N for single images)")
        if args.videos < 1:
            raise ValueError(f"--videos must be >= 1; got {args.videos}")
        if args.seed < 0:
            raise ValueError(f"--seed must be >= 0; got {args.seed}")
        subsets = parse_subsets(args.subset)
        size = parse_size(args.size) if args.size is not None else None  # None: the style's sizes
        start = time.perf_counter()
        names = write_dataset(args.out, args.videos, args.split, args.seed, subsets=subsets, frames=args.frames,
                              size=size, overwrite=args.overwrite, progress=not args.no_progress, style=args.style)
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: writing {args.out!r} failed: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    style = STYLES[args.style]
    if size is not None:
        shown = f"{size[0]}x{size[1]}"
    elif len(style.widths) == 1:
        size, shown = (style.height, style.widths[0]), f"{style.height}x{style.widths[0]}"
    else:
        size, shown = (style.height, style.widths[0]), f"{style.height}x({min(style.widths)}..{max(style.widths)})"
    layout = dataset_layout(args.out, args.split, size)
    rel = {k: os.path.relpath(getattr(layout, k), layout.root) for k in ("video_dir", "mask_dir", "video_list")}
    print(f"wrote {len(names)} {args.split} videos ({len(names) * args.frames} frames, {shown}, style {args.style}, "
          f"subsets {', '.join(subsets)}) to {args.out} in {seconds:.1f} s")
    print(f"  frames: {rel['video_dir']}  annotations: {rel['mask_dir']}  list: {rel['video_list']}  meta: meta.json")
    return 0


def run_images(args) -> int:
    """`synth --images N`: single "segment everything" images (efficient_sam2.data.images)."""
    from ..data.images import IMAGE_SUBSETS, write_images

    try:
        if args.videos is not None:
            raise ValueError("give either --videos (videos) or --images (single images), not both")
        names = [s.strip() for s in args.subset.split(",") if s.strip()]
        if names in (["all"], ["standard"]):  # "standard" is the video default: --images means every image subset
            names = list(IMAGE_SUBSETS)
        unknown = [s for s in names if s not in IMAGE_SUBSETS]
        if unknown:
            raise ValueError(f"unknown image subset {', '.join(map(repr, unknown))}; valid: "
                             f"{', '.join(IMAGE_SUBSETS)}, or all")
        size = parse_size(args.size)
        start = time.perf_counter()
        written = write_images(args.out, args.images, args.split, args.seed, subsets=names, size=size,
                               overwrite=args.overwrite, progress=not args.no_progress)
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: writing {args.out!r} failed: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} {args.split} images ({size[0]}x{size[1]}, subsets {', '.join(names)}) to "
          f"{args.out} in {time.perf_counter() - start:.1f} s")
    print("  images: JPEGImages/<subset>/  instance ids: Annotations/<subset>/  meta: meta.json")
    return 0
