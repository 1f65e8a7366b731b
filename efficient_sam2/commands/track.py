"""`efficient-sam2 track`: track objects through one video from a mask, clicks or a box."""

from __future__ import annotations

import argparse
import os
import sys
import time

DESCRIPTION = """\
Track objects through a video (a folder of frames or a video file) from a prompt on one frame, and write one
palette PNG per frame (DAVIS palette, pixel value = object id, non-overlapping) into --output; optionally an .mp4
with the masks drawn over the frames.

Prompts: --mask PNG (an indexed or greyscale PNG at the video's resolution; each non-zero value is one object, a
single-valued mask is object --obj-id), or --points and/or --box for one object (--obj-id, default 1), or --prompts
FILE: a prompt file (lines `point OBJ FRAME X Y [LABEL]`, `box OBJ FRAME X0 Y0 X1 Y1`, `mask FRAME PNG`; see
efficient_sam2/io/prompts.py) for any number of objects, tracked from its first prompted frame. The prompt is
on frame --frame (default 0); tracking runs forward to the end and, when the frame is not the first, backward to the
start. The masks are written to a temporary folder first and moved into place when complete. A non-empty output
folder is refused unless --overwrite: then the frame PNGs of this run replace files of the same name and every other
file in the folder is left as it is (and named in a note).

A video file whose header promises more frames than can be decoded (a truncated download, say) is tracked over the
frames that decode, with a note giving both counts; --strict makes that an error.
"""


def _floats(text: str, n: tuple[int, ...], what: str) -> list[float]:
    parts = [p for p in text.replace(" ", "").split(",") if p != ""]
    if len(parts) not in n:
        raise argparse.ArgumentTypeError(f"{what} {text!r}: expected {' or '.join(map(str, n))} comma-separated "
                                         "numbers")
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} {text!r}: not numbers") from None


def point_arg(text: str) -> tuple[float, float, int]:
    """'X,Y' or 'X,Y,LABEL' (label 1 = positive, 0 = negative)."""
    v = _floats(text, (2, 3), "point")
    label = 1 if len(v) == 2 else v[2]
    if label not in (0, 1):
        raise argparse.ArgumentTypeError(f"point {text!r}: the label must be 1 (positive) or 0 (negative)")
    return v[0], v[1], int(label)


def box_arg(text: str) -> tuple[float, float, float, float]:
    """'X0,Y0,X1,Y1' in pixels."""
    v = _floats(text, (4,), "box")
    if v[2] < v[0] or v[3] < v[1]:
        raise argparse.ArgumentTypeError(f"box {text!r}: expected X0,Y0,X1,Y1 with X1 >= X0 and Y1 >= Y0")
    return v[0], v[1], v[2], v[3]


def register(subparsers) -> None:
    from .common import add_efficient_args, add_model_args

    p = subparsers.add_parser("track", help="track objects through one video from a mask, clicks or a box",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", metavar="VIDEO", help="folder of frames (.jpg/.png, ordered by number) or a video file")
    g = p.add_argument_group("prompt (--mask, or --points and/or --box, or --prompts)")
    g.add_argument("--mask", default=None, metavar="PNG",
                   help="mask PNG of the prompt frame; several values = several objects (their ids)")
    g.add_argument("--points", nargs="+", type=point_arg, default=None, metavar="X,Y[,LABEL]",
                   help="clicks in pixels; LABEL 1 = positive (default), 0 = negative")
    g.add_argument("--box", type=box_arg, default=None, metavar="X0,Y0,X1,Y1", help="box in pixels")
    g.add_argument("--prompts", default=None, metavar="FILE",
                   help="a prompt file (clicks, boxes and masks of several objects, e.g. docs/clips/vtest.prompts) "
                        "or a palette PNG of first-frame masks")
    g.add_argument("--obj-id", type=int, default=None, metavar="N",
                   help="object id of a single-object prompt (default 1; 1..255)")
    g.add_argument("--frame", type=int, default=0, metavar="N", help="index of the prompted frame (default 0)")
    o = p.add_argument_group("output")
    o.add_argument("--output", required=True, metavar="DIR", help="folder for the per-frame palette PNGs")
    o.add_argument("--overlay", default=None, metavar="OUT.mp4",
                   help="also write the video with the masks drawn over it (.mp4, .mov, .avi, .mkv)")
    o.add_argument("--fps", type=float, default=None,
                   help="frame rate of the overlay (default: the video file's, or 24 for a folder of frames)")
    o.add_argument("--alpha", type=float, default=0.5, help="opacity of the overlay colours (default 0.5)")
    o.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty output folder, replacing the frame PNGs of the same name (other files "
                        "are kept), and replace an existing overlay video")
    t = p.add_argument_group("tracking")
    t.add_argument("--no-reverse", action="store_true",
                   help="do not track backward from a prompt frame other than the first (earlier frames stay empty)")
    t.add_argument("--score-threshold", type=float, default=0.0, help="mask logit threshold (default 0.0)")
    t.add_argument("--memory-stride", type=int, default=None, metavar="N",
                   help="temporal stride of the memory frames (default 1)")
    t.add_argument("--no-postprocessing", action="store_true",
                   help="turn off the interactive post-processing (stability fallback, binarised memory of "
                        "clicked frames, hole filling)")
    t.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto: bfloat16 autocast on CUDA, float32 on the CPU")
    t.add_argument("--strict", action="store_true",
                   help="fail when a video file decodes to fewer frames than its header says (default: a note, and "
                        "the frames that decode are tracked)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(p, default_model="micro")  # the bundled model, as `stream`
    add_efficient_args(p)
    p.set_defaults(func=run)


def _fail(msg: str, code: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def _mask_objects(path: str, obj_id, size) -> dict[int, "object"]:
    import numpy as np

    from ..io.masks import read_palette_mask

    ids, _ = read_palette_mask(path)
    h, w = size
    if ids.shape != (h, w):
        raise ValueError(f"mask {path!r} is {ids.shape[1]}x{ids.shape[0]} (WxH) but the video's frames are {w}x{h}; "
                         "give a mask at the video's resolution")
    values = [int(v) for v in np.unique(ids) if v != 0]
    if not values:
        raise ValueError(f"mask {path!r} is empty (every pixel is 0)")
    if len(values) == 1:
        v = values[0]
        oid = obj_id if obj_id is not None else (v if v != 255 else 1)
        return {oid: ids == v}
    if obj_id is not None:
        raise ValueError(f"mask {path!r} holds several objects (values {values}); --obj-id only names the object of "
                         "a single-object prompt")
    return {v: ids == v for v in values}


def run(args) -> int:
    if args.mask is None and args.points is None and args.box is None and args.prompts is None:
        return _fail("give a prompt: --mask PNG, or --points and/or --box, or --prompts FILE")
    if args.mask is not None and (args.points is not None or args.box is not None):
        return _fail("--mask cannot be combined with --points / --box (give one kind of prompt)")
    if args.prompts is not None and (args.mask is not None or args.points is not None or args.box is not None
                                     or args.obj_id is not None or args.frame != 0):
        return _fail("--prompts names its objects and frames: leave out --mask, --points, --box, --obj-id, --frame")
    if args.obj_id is not None and not 1 <= args.obj_id <= 255:
        return _fail(f"--obj-id must be in 1..255 (it is the palette index); got {args.obj_id}")
    if args.frame < 0:
        return _fail(f"--frame must be >= 0; got {args.frame}")
    if args.memory_stride is not None and args.memory_stride < 1:
        return _fail(f"--memory-stride must be >= 1; got {args.memory_stride}")
    if not 0.0 <= args.alpha <= 1.0:
        return _fail(f"--alpha must be in [0, 1]; got {args.alpha}")
    from ..io.atomic import check_output_folder

    out_dir = os.path.abspath(args.output)
    try:
        check_output_folder(args.output, args.overwrite, "--output")
    except FileExistsError as exc:
        return _fail(str(exc))
    if args.overlay is not None:
        if os.path.exists(args.overlay) and not args.overwrite:
            return _fail(f"overlay video {args.overlay!r} already exists; use --overwrite to replace it")
        ext = os.path.splitext(args.overlay)[1].lower()
        if ext not in (".mp4", ".m4v", ".mov", ".avi", ".mkv"):
            return _fail(f"--overlay {args.overlay!r}: use an .mp4, .m4v, .mov, .avi or .mkv file name")
    try:
        return _track(args, out_dir)
    except (ValueError, OSError, RuntimeError) as exc:
        return _fail(str(exc) or type(exc).__name__, 1)


def _track(args, out_dir: str) -> int:
    import numpy as np
    from tqdm.auto import tqdm

    from ..configs import get_config
    from ..inference.common import autocast_context, build_predictor, check_device, logits_to_ids
    from ..io.datasets import VideoOutput
    from ..io.frames import VideoFrames
    from ..io.masks import read_palette_mask
    from ..io.overlay import OverlayWriter, overlay_ids
    from ..io.prompts import apply_prompts, load_prompts
    from .common import efficient_config_from_args, weights_from_args

    check_device(args.device)
    efficient = efficient_config_from_args(args)
    # Check the video and the prompt before the (slow) model build.
    image_size = get_config(args.model, **({"image_size": args.image_size} if args.image_size else {})).image_size
    frames = VideoFrames(args.video, image_size=image_size, strict=args.strict)
    try:
        n = len(frames)
        names = frames.frame_names
        prompts = None
        if args.prompts is not None:
            prompts = load_prompts(args.prompts)
            prompts.check_video(n, (frames.height, frames.width))
            args.frame = prompts.frames[0]  # track from the first prompted frame
        if args.frame >= n:
            raise ValueError(f"--frame {args.frame} is outside the video (frames 0..{n - 1})")
        objects = None
        if args.mask is not None:
            objects = _mask_objects(args.mask, args.obj_id, (frames.height, frames.width))
            bad = [o for o in objects if not 1 <= o <= 255]
            if bad:
                raise ValueError(f"object id(s) {bad} do not fit a palette PNG (1..255)")
        predictor = build_predictor(args.model, args.checkpoint, args.device, image_size=args.image_size,
                                    weights=weights_from_args(args),
                                    efficient=efficient, shortcut_checkpoint=args.shortcut_checkpoint,
                                    memory_stride=args.memory_stride,
                                    apply_postprocessing=not args.no_postprocessing)
        t0 = time.perf_counter()
        state = predictor.init_state(frames)
        with autocast_context(predictor.device, args.precision):
            if prompts is not None:
                apply_prompts(predictor, state, prompts)
            elif objects is not None:
                for oid, m in objects.items():
                    predictor.add_new_mask(state, args.frame, oid, m)
            else:
                oid = args.obj_id if args.obj_id is not None else 1
                pts = labels = None
                if args.points:
                    pts = np.array([[x, y] for x, y, _ in args.points], np.float32)
                    labels = np.array([lab for _, _, lab in args.points], np.int32)
                predictor.add_new_points_or_box(state, args.frame, oid, points=pts, labels=labels, box=args.box)
            backward = args.frame > 0 and not args.no_reverse
            total = (n - args.frame) + (args.frame + 1 if backward else 0)
            parent, name = os.path.split(out_dir)
            # An empty existing folder holds nothing to lose: let it be replaced.
            out = VideoOutput(parent, name, overwrite=args.overwrite or os.path.isdir(out_dir))
            with out, tqdm(total=total, unit="frame", desc="track", disable=args.no_progress) as bar:
                passes = [False] + ([True] if backward else [])
                for reverse in passes:
                    for t, ids, logits in predictor.propagate_in_video(state, start_frame_idx=args.frame,
                                                                       reverse=reverse, progress=False):
                        out.write_ids(names[t], logits_to_ids(logits, list(ids), args.score_threshold))
                        bar.update()
                empty = np.zeros((frames.height, frames.width), np.uint8)
                for t in range(n):
                    if not out.has(f"{names[t]}.png"):
                        out.write_ids(names[t], empty)
                out.commit([f"{nm}.png" for nm in names])
            if out.kept:
                shown = ", ".join(out.kept[:10]) + (f" (+{len(out.kept) - 10} more)" if len(out.kept) > 10 else "")
                print(f"note: {args.output} also holds {len(out.kept)} file(s) this run did not write, left as they "
                      f"were: {shown}", file=sys.stderr)
        seconds = time.perf_counter() - t0
        stats = predictor.statistics(state) if hasattr(predictor, "statistics") else None
        stats = stats.summary() if stats is not None else None  # None: dense SAM 2
        overlay_path = None
        if args.overlay is not None:
            fps = args.fps or _video_fps(args.video) or 24.0
            writer = OverlayWriter(args.overlay, fps, overwrite=args.overwrite)
            with writer:
                for t in tqdm(range(n), unit="frame", desc="overlay", disable=args.no_progress):
                    ids_map, _ = read_palette_mask(os.path.join(out_dir, f"{names[t]}.png"))
                    writer.write(overlay_ids(frames.get_rgb(t), ids_map, alpha=args.alpha))
            overlay_path = args.overlay
    finally:
        frames.close()
    tracked = total
    print(f"tracked {len(state.obj_ids)} object(s) {state.obj_ids} over {n} frames ({tracked} frame steps) in "
          f"{seconds:.1f} s: {tracked / seconds:.2f} frames/s")
    if stats is not None:
        kw, km = stats["mean_kept_window_fraction"], stats["mean_kept_memory_fraction"]
        print("efficient: kept-window fraction " + (f"{kw:.3f}" if kw is not None else "n/a")
              + ", kept-memory fraction " + (f"{km:.3f}" if km is not None else "n/a")
              + f", saliency fallbacks {stats['saliency_fallbacks']} of {stats['routed_frames']} routed frames")
    print(f"masks: {out_dir}")
    if overlay_path:
        print(f"overlay: {overlay_path}")
    return 0


def _video_fps(video: str):
    if not os.path.isfile(video):
        return None
    import cv2

    cap = cv2.VideoCapture(video)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    return fps if fps and fps > 0 and fps < 1000 else None
