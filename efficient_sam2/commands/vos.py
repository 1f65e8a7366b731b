"""`efficient-sam2 vos`: semi-supervised VOS over a DAVIS / MOSE / SA-V style dataset folder."""

from __future__ import annotations

import argparse
import sys

from ..io.datasets import DATASET_LAYOUTS
from .common import add_efficient_args, add_model_args, efficient_config_from_args, weights_from_args

DESCRIPTION = """\
Track every annotated object of every video from its first-frame mask and write a mask PNG for every frame at the
original resolution (the reference VOS protocol).

Layouts: davis / mose read one indexed PNG per annotated frame (<mask-dir>/<video>/<frame>.png, pixel values =
object ids) and write one palette PNG per frame (<output-dir>/<video>/<frame>.png, non-overlapping, lowest id wins
ties); sav reads and writes one 0/1 PNG per object per frame (<dir>/<video>/<obj>/<frame>.png).

The run is resumable: videos whose output folder already holds every file are skipped, each video is written to a
hidden temporary folder and moved into place when complete, and nothing is overwritten without --overwrite (every
video) or --redo VIDEO[,VIDEO] (the named videos); either replaces only the files the run writes. A video that fails
is reported and the run goes on; the exit code is 1 if any video failed. Evaluation results (per_object.csv, ...)
left in --output-dir by an earlier `eval` are named in a note when new predictions are written beside them.

Multi-GPU / multi-node: `torchrun --nproc-per-node N -m efficient_sam2 vos ...` gives video i (in sorted order) to
process i % N; with --device cuda each process uses cuda:LOCAL_RANK. Each process logs to
<log-dir>/vos-rank<r>.jsonl and process 0 prints the merged summary and writes <log-dir>/summary.json.
"""


def _names(text: str) -> list[str]:
    names = [n.strip().rstrip("/\\") for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated video names, got {text!r}")
    return names


def register(subparsers) -> None:
    p = subparsers.add_parser("vos", help="semi-supervised VOS over a dataset (DAVIS, MOSE, SA-V layouts)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("dataset")
    d.add_argument("--layout", required=True, choices=DATASET_LAYOUTS,
                   help="dataset layout: davis / mose (indexed PNG per frame) or sav (PNG per object per frame)")
    d.add_argument("--video-dir", required=True,
                   help="folder with one sub-folder of JPEG frames per video (DAVIS JPEGImages/480p, SA-V "
                        "JPEGImages_24fps)")
    d.add_argument("--mask-dir", required=True,
                   help="folder with the annotations, one sub-folder per video (DAVIS Annotations/480p, SA-V "
                        "Annotations_6fps)")
    d.add_argument("--output-dir", required=True, help="where <video>/... output PNGs are written")
    d.add_argument("--video-list", default=None,
                   help="text file with the videos to process, one name per line ('#' comments allowed); default: "
                        "every video folder of --video-dir and --mask-dir")
    o = p.add_argument_group("protocol")
    o.add_argument("--per-object", action="store_true",
                   help="write one 0/1 PNG per object per frame (<video>/<obj:03d>/<frame>.png) instead of one "
                        "palette PNG per frame; always on with --layout sav")
    o.add_argument("--track-objects-appearing-later", action="store_true",
                   help="track objects absent from the first annotated frame from their own first annotated frame "
                        "(otherwise such a video fails with an explanation)")
    o.add_argument("--use-all-masks", action="store_true",
                   help="condition on every annotated frame, not only on each object's first one")
    o.add_argument("--memory-stride", type=int, default=None, metavar="N",
                   help="temporal stride of the memory frames (model default 1: the last 6 frames)")
    o.add_argument("--score-threshold", type=float, default=0.0,
                   help="mask logit threshold (default 0.0)")
    o.add_argument("--apply-postprocessing", action="store_true",
                   help="use the interactive post-processing (stability fallback, binarised memory, hole filling); "
                        "off in the VOS protocol")
    o.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto: bfloat16 autocast on CUDA (the reference protocol), float32 on the CPU")
    r = p.add_argument_group("run")
    r.add_argument("--overwrite", action="store_true",
                   help="recompute every video, complete or not, replacing the files this run writes (other files "
                        "are kept)")
    r.add_argument("--redo", action="append", type=_names, default=[], metavar="VIDEO[,VIDEO]",
                   help="recompute only these videos (comma-separated; may be repeated), as --overwrite does")
    r.add_argument("--log-dir", default=None,
                   help="per-process logs and summary.json (default <output-dir>/.logs)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--dist-backend", choices=("gloo", "nccl"), default="gloo",
                   help="process group backend under torchrun; it only exchanges summaries (default gloo)")
    r.add_argument("--dist-timeout", type=float, default=24 * 60, metavar="MINUTES",
                   help="how long a process waits for the others at the end (default 1440)")
    add_model_args(p)
    add_efficient_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..inference.common import check_device
    from ..inference.vos import VOSError, run_vos

    if args.memory_stride is not None and args.memory_stride < 1:
        print(f"error: --memory-stride must be >= 1; got {args.memory_stride}", file=sys.stderr)
        return 2
    try:
        efficient = efficient_config_from_args(args)
        check_device(args.device)
        summary = run_vos(
            args.video_dir, args.mask_dir, args.output_dir, args.layout,
            model=args.model, checkpoint=args.checkpoint, weights=weights_from_args(args), device=args.device,
            image_size=args.image_size,
            efficient=efficient, shortcut_checkpoint=args.shortcut_checkpoint, memory_stride=args.memory_stride,
            apply_postprocessing=args.apply_postprocessing, video_list=args.video_list,
            per_object=args.per_object, track_objects_appearing_later=args.track_objects_appearing_later,
            use_all_masks=args.use_all_masks, score_threshold=args.score_threshold, overwrite=args.overwrite,
            redo=[v for group in args.redo for v in group],
            precision=args.precision, progress=not args.no_progress, log_dir=args.log_dir,
            dist_backend=args.dist_backend, dist_timeout_minutes=args.dist_timeout,
        )
    except (VOSError, ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if summary.rank == 0:
        print(summary.format())
    return summary.exit_code
