"""`efficient-sam2 stream`: track objects through frames as they arrive (camera, network stream, file, folder)."""

from __future__ import annotations

import argparse
import os
import sys
import time

DESCRIPTION = """\
Track objects through a stream of frames with the streaming tracker (memory stays bounded however long the
stream runs): a camera (an index such as 0), a network stream (rtsp://, http(s)://), a video file or a folder of
frames. The prompt is on the first frame: --mask PNG (an indexed or greyscale PNG at the first frame's resolution;
each non-zero value is one object), or --points and/or --box for one object (--obj-id, default 1).

As each frame is tracked, its masks are written to --output as a palette PNG (DAVIS palette, pixel value = object
id, non-overlapping; named after the frame file for a folder, else by frame number), each file complete when it
appears; --overlay writes a video of the masks drawn over the frames. The progress bar shows frames per second.
Ctrl-C stops cleanly: every PNG written so far is complete and the overlay video is finalised. A source that cannot
be opened or stalls (no frame for --timeout seconds) is reported; a frame that cannot be decoded is skipped with a
note and counted in the summary. A non-empty --output is refused unless --overwrite: then this run's PNGs replace
files of the same name and nothing else in the folder is touched.
"""


def _points_arg(text: str) -> list[tuple[float, float, int]]:
    """'X,Y[,LABEL]' or several joined by ';'."""
    from .track import point_arg

    return [point_arg(part) for part in text.split(";") if part.strip()]


def _labels_arg(text: str) -> list[int]:
    parts = [p for p in text.replace(" ", "").replace(";", ",").split(",") if p]
    if not parts or any(p not in ("0", "1") for p in parts):
        raise argparse.ArgumentTypeError(f"labels {text!r}: expected comma-separated 1 (positive) / 0 (negative)")
    return [int(p) for p in parts]


def register(subparsers) -> None:
    from .common import add_efficient_args, add_model_args
    from .track import box_arg

    p = subparsers.add_parser("stream", help="track objects through a camera, network stream, video file or folder "
                                             "as frames arrive (bounded memory)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE",
                   help="camera index (0, 1, ...), stream URL (rtsp://, http://), video file or folder of frames")
    g = p.add_argument_group("prompt on the first frame (--mask, or --points and/or --box)")
    g.add_argument("--mask", default=None, metavar="PNG",
                   help="mask PNG of the first frame; several values = several objects (their ids)")
    g.add_argument("--points", nargs="+", type=_points_arg, default=None, metavar="X,Y[;X,Y..]",
                   help="clicks in pixels, each X,Y or X,Y,LABEL (1 positive, default; 0 negative), separated by "
                        "spaces or ';'")
    g.add_argument("--labels", type=_labels_arg, default=None, metavar="L[,L..]",
                   help="labels of the clicks in order (1 positive, 0 negative), instead of per-click labels")
    g.add_argument("--box", type=box_arg, default=None, metavar="X0,Y0,X1,Y1", help="box in pixels")
    g.add_argument("--obj-id", type=int, default=None, metavar="N",
                   help="object id of a single-object prompt (default 1; 1..255)")
    o = p.add_argument_group("output")
    o.add_argument("--output", default=None, metavar="DIR", help="folder for the per-frame palette PNGs")
    o.add_argument("--overlay", default=None, metavar="OUT.mp4",
                   help="also write the frames with the masks drawn over them (.mp4, .mov, .avi, .mkv)")
    o.add_argument("--fps", type=float, default=None,
                   help="frame rate of the overlay (default: the source's, else 24)")
    o.add_argument("--alpha", type=float, default=0.5, help="opacity of the overlay colours (default 0.5)")
    o.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty output folder, replacing the PNGs of the same name (other files are "
                        "kept), and replace an existing overlay video")
    s = p.add_argument_group("stream")
    s.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    s.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="give up when the source delivers no frame for S seconds (default 10)")
    s.add_argument("--read-ahead", type=int, default=4, metavar="N",
                   help="frames decoded ahead of tracking (default 4); a live source drops its oldest frame when "
                        "tracking falls behind")
    s.add_argument("--max-cond-frames", type=int, default=4, metavar="N",
                   help="prompted frames kept per object (default 4)")
    s.add_argument("--score-threshold", type=float, default=0.0, help="mask logit threshold (default 0.0)")
    s.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto: bfloat16 autocast on CUDA, float32 on the CPU")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(p, checkpoint_required=False, default_model="micro")  # the bundled model is the default
    add_efficient_args(p)
    p.set_defaults(func=run)


def _fail(msg: str, code: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def _check_args(args) -> str | None:
    """What is wrong with the arguments, or None."""
    if args.mask is None and args.points is None and args.box is None:
        return "give a prompt for the first frame: --mask PNG, or --points and/or --box"
    if args.mask is not None and (args.points is not None or args.box is not None):
        return "--mask cannot be combined with --points / --box (give one kind of prompt)"
    if args.labels is not None:
        if args.points is None:
            return "--labels gives the labels of --points: give --points too"
        n = sum(len(group) for group in args.points)
        if len(args.labels) != n:
            return f"--labels gives {len(args.labels)} label(s) for {n} point(s)"
    if args.obj_id is not None and not 1 <= args.obj_id <= 255:
        return f"--obj-id must be in 1..255 (it is the palette index); got {args.obj_id}"
    if args.max_frames is not None and args.max_frames < 1:
        return f"--max-frames must be >= 1; got {args.max_frames}"
    if not args.timeout > 0:
        return f"--timeout must be > 0 seconds; got {args.timeout}"
    if args.read_ahead < 1:
        return f"--read-ahead must be >= 1; got {args.read_ahead}"
    if args.max_cond_frames < 2:
        return (f"--max-cond-frames must be >= 2 (the first prompted frame and the most recent); got "
                f"{args.max_cond_frames}")
    if not 0.0 <= args.alpha <= 1.0:
        return f"--alpha must be in [0, 1]; got {args.alpha}"
    if args.fps is not None and not args.fps > 0:
        return f"--fps must be > 0; got {args.fps}"
    if args.overlay is not None:
        if os.path.exists(args.overlay) and not args.overwrite:
            return f"overlay video {args.overlay!r} already exists; use --overwrite to replace it"
        if os.path.splitext(args.overlay)[1].lower() not in (".mp4", ".m4v", ".mov", ".avi", ".mkv"):
            return f"--overlay {args.overlay!r}: use an .mp4, .m4v, .mov, .avi or .mkv file name"
    return None


def run(args) -> int:
    problem = _check_args(args)
    if problem:
        return _fail(problem)
    from ..io.atomic import check_output_folder

    existing: list[str] = []
    if args.output is not None:
        try:
            existing = check_output_folder(args.output, args.overwrite, "--output")
        except FileExistsError as exc:
            return _fail(str(exc))
    from ..io.sources import SourceError

    try:
        return _stream(args, existing)
    except SourceError as exc:
        return _fail(str(exc), 1)
    except (ValueError, OSError, RuntimeError) as exc:
        return _fail(str(exc) or type(exc).__name__, 1)


def _prompts(args) -> list[tuple[int, dict]]:
    """[(obj_id, add_object keyword arguments)] for the first frame."""
    import numpy as np

    if args.mask is not None:
        from ..io.masks import read_palette_mask
        from .track import _mask_objects

        ids, _ = read_palette_mask(args.mask)
        objects = _mask_objects(args.mask, args.obj_id, ids.shape)  # the size is checked on the first frame
        bad = [o for o in objects if not 1 <= o <= 255]
        if bad:
            raise ValueError(f"object id(s) {bad} do not fit a palette PNG (1..255)")
        return [(oid, {"mask": m}) for oid, m in objects.items()]
    kw: dict = {"box": args.box}
    if args.points:
        pts = [p for group in args.points for p in group]
        labels = args.labels if args.labels is not None else [lab for _, _, lab in pts]
        kw["points"] = np.array([[x, y] for x, y, _ in pts], np.float32)
        kw["labels"] = np.array(labels, np.int32)
    return [(args.obj_id if args.obj_id is not None else 1, kw)]


def _stream(args, existing: list[str]) -> int:
    import collections

    import cv2
    import numpy as np
    from tqdm.auto import tqdm

    from ..build import build_sam2_stream_tracker
    from ..inference.common import autocast_context, check_device, logits_to_ids
    from ..io.masks import write_palette_mask
    from ..io.overlay import OverlayWriter, overlay_ids
    from ..io.sources import SourceStalledError, open_source
    from .common import efficient_config_from_args, weights_from_args

    check_device(args.device)
    efficient = efficient_config_from_args(args)
    prompts = _prompts(args)
    if args.checkpoint is not None and not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f"checkpoint file not found: {args.checkpoint!r} (official checkpoints can be fetched "
                                "with `efficient-sam2 download NAME`)")
    source = open_source(args.source, read_ahead=args.read_ahead, timeout=args.timeout)
    try:
        overrides = {"image_size": args.image_size} if args.image_size else {}
        tracker = build_sam2_stream_tracker(args.model, args.checkpoint, device=args.device, efficient=efficient,
                                            shortcut_checkpoint=args.shortcut_checkpoint,
                                            max_cond_frames=args.max_cond_frames, weights=weights_from_args(args),
                                            **overrides)
        for oid, kw in prompts:
            tracker.add_object(oid, **kw)
        if args.output is not None:
            os.makedirs(args.output, exist_ok=True)
        writer = None
        written: list[str] = []
        frames = 0
        interrupted = stalled = None
        recent: collections.deque = collections.deque(maxlen=30)
        total = args.max_frames if source.declared_frames is None else min(source.declared_frames,
                                                                             args.max_frames or 1 << 62)
        bar = tqdm(total=total, unit="frame", desc="stream", disable=args.no_progress)
        t0 = time.perf_counter()
        try:
            for frame in source.frames():
                with autocast_context(tracker.device, args.precision):
                    result = tracker.track(frame.rgb)
                h, w = frame.rgb.shape[:2]
                if result.obj_ids:
                    ids = logits_to_ids(result.logits, result.obj_ids, args.score_threshold)
                else:
                    ids = np.zeros((h, w), np.uint8)
                if args.output is not None:
                    name = f"{frame.name}.png"
                    write_palette_mask(os.path.join(args.output, name), ids)  # atomic: complete or absent
                    written.append(name)
                if args.overlay is not None:
                    if writer is None:
                        writer = OverlayWriter(args.overlay, args.fps or source.fps or 24.0, overwrite=args.overwrite)
                        size = (w, h)
                    rgb = frame.rgb
                    if (w, h) != size:  # the overlay keeps the first frame's size
                        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
                        ids = cv2.resize(ids, size, interpolation=cv2.INTER_NEAREST)
                    writer.write(overlay_ids(rgb, ids, alpha=args.alpha))
                frames += 1
                recent.append(time.perf_counter())
                if len(recent) > 1:
                    bar.set_postfix(fps=f"{(len(recent) - 1) / (recent[-1] - recent[0]):.1f}", refresh=False)
                bar.update()
                if args.max_frames is not None and frames >= args.max_frames:
                    break
        except KeyboardInterrupt:
            interrupted = True
        except SourceStalledError as exc:
            stalled = exc
        finally:
            seconds = time.perf_counter() - t0
            bar.close()
            source.close()
            if writer is not None:
                if writer.frames_written:
                    writer.close()  # finalised, also when interrupted
                else:
                    writer.abort()
    finally:
        source.close()
    stats = tracker.statistics()
    label = source.label
    if frames == 0 and stalled is None and not interrupted:
        return _fail(f"{label} delivered no frame", 1)
    rate = frames / seconds if seconds > 0 else 0.0
    line = (f"tracked {len(tracker.obj_ids)} object(s) {tracker.obj_ids} over {frames} frame(s) of {label} in "
            f"{seconds:.1f} s: {rate:.2f} frames/s")
    extras = []
    if source.skipped:
        extras.append(f"{source.skipped} undecodable frame(s) skipped")
    if source.dropped:
        extras.append(f"{source.dropped} frame(s) dropped while tracking was behind")
    print(line + ("; " + ", ".join(extras) if extras else ""))
    if stats is not None:
        s = stats.summary()
        km = s["mean_kept_memory_fraction"]
        print(f"efficient: kept-window fraction {s['mean_kept_window_fraction']:.3f}, kept-memory fraction "
              + (f"{km:.3f}" if km is not None else "n/a")
              + f", saliency fallbacks {s['saliency_fallbacks']} of {s['routed_frames']} routed frames")
    print(f"tracking state: {tracker.state_nbytes() / 2**20:.2f} MiB of tensors")
    if args.output is not None:
        own = set(written)
        others = [n for n in existing if n not in own]
        if others:
            shown = ", ".join(others[:10]) + (f" (+{len(others) - 10} more)" if len(others) > 10 else "")
            print(f"note: {args.output} also holds {len(others)} file(s) this run did not write, left as they were: "
                  f"{shown}", file=sys.stderr)
        print(f"masks: {args.output} ({len(written)} PNG files)")
    if writer is not None and writer.frames_written:
        print(f"overlay: {args.overlay}")
    if interrupted:
        print(f"interrupted after {frames} frame(s); everything written so far is complete", file=sys.stderr)
        return 130
    if stalled is not None:
        return _fail(f"{stalled}; everything written so far is complete", 1)
    return 0
