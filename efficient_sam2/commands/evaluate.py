"""`efficient-sam2 eval`: J, F and J&F of predicted masks against ground truth (DAVIS, MOSE, SA-V protocols)."""

from __future__ import annotations

import argparse
import csv
import os
import sys

from ..evaluation.vos import LAYOUTS, RESULT_FILES
from ..io.atomic import atomic_open

DESCRIPTION = """\
Score predicted masks against ground truth with region similarity J (IoU), boundary F-measure F (tolerance
ceil(0.008 x image diagonal)) and J&F = (J + F) / 2, in percent.

Protocols: only frames that have a ground-truth PNG are scored, and the first and last annotated frames are skipped
(DAVIS 2017 semi-supervised and SA-V). With --layout sav an object is scored from its first appearance in the
ground truth or the prediction, and the global scores average over all objects of all videos (the SA-V evaluator);
davis / mose score every object on every scored frame.

Writes per_object.csv, per_video.csv and summary.csv (and missing.csv when prediction files are missing or extra)
into --output (default: the prediction folder) and prints the summary table. Missing predictions count as empty
masks and are reported; --strict makes them an error instead.
"""



def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="J, F and J&F of predicted masks (DAVIS, MOSE, SA-V protocols)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt-dir", required=True, help="ground-truth folder, one sub-folder per video")
    p.add_argument("--pred-dir", required=True, help="predictions in the same layout, at the ground-truth resolution")
    p.add_argument("--layout", choices=LAYOUTS, default="davis",
                   help="davis / mose: one indexed PNG per frame; sav: one PNG per object per frame (default davis)")
    p.add_argument("--output", default=None,
                   help="folder for the CSV files (default: --pred-dir)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes scoring videos in parallel (default min(4, CPUs); 0 = none)")
    p.add_argument("--strict", action="store_true",
                   help="fail (exit 1) when any prediction video or frame is missing instead of scoring it empty")
    p.add_argument("--all-frames", action="store_true",
                   help="also score the first and last annotated frames (not the semi-supervised protocol)")
    p.add_argument("--from-first-appearance", choices=("auto", "on", "off"), default="auto",
                   help="score an object only from its first appearance in GT or prediction (auto: on for sav, "
                        "off for davis / mose)")
    p.add_argument("--bound-th", type=float, default=0.008,
                   help="boundary tolerance of F: a fraction of the image diagonal if < 1, else pixels (0.008)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace result CSV files already in --output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _write_missing(path: str, result) -> None:
    rows = [("missing_video", v, "") for v in result.missing_videos]
    rows += [("missing_frame", v, f) for v, f in result.missing]
    rows += [("extra", e.split("/")[0], e.split("/", 1)[1] if "/" in e else "") for e in result.extra]
    rows += [("unscored_object", v, o) for v, o in result.unscored]
    with atomic_open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "video", "item"])
        w.writerows(rows)


def _report_problems(result, limit: int = 10) -> list[str]:
    lines = []
    if result.missing_videos:
        shown = ", ".join(result.missing_videos[:limit])
        more = f" (+{len(result.missing_videos) - limit} more)" if len(result.missing_videos) > limit else ""
        lines.append(f"warning: {len(result.missing_videos)} video(s) have no prediction folder and score as empty: "
                     f"{shown}{more}")
    if result.missing:
        shown = ", ".join(f"{v}/{f}" for v, f in result.missing[:limit])
        more = f" (+{len(result.missing) - limit} more)" if len(result.missing) > limit else ""
        lines.append(f"warning: {len(result.missing)} prediction frame(s) are missing and score as empty: "
                     f"{shown}{more}")
    if result.extra:
        shown = ", ".join(result.extra[:limit])
        more = f" (+{len(result.extra) - limit} more)" if len(result.extra) > limit else ""
        lines.append(f"note: {len(result.extra)} prediction folder(s) have no ground truth and are ignored: "
                     f"{shown}{more}")
    if result.unscored:
        lines.append(f"note: {len(result.unscored)} ground-truth object(s) have no scored frame (listed in "
                     "missing.csv)")
    return lines


def run(args) -> int:
    from ..evaluation.vos import evaluate_vos

    out_dir = args.output if args.output is not None else args.pred_dir
    if args.workers is not None and args.workers < 0:
        print(f"error: --workers must be >= 0; got {args.workers}", file=sys.stderr)
        return 2
    if not args.overwrite and os.path.isdir(out_dir):
        existing = [f for f in RESULT_FILES if os.path.exists(os.path.join(out_dir, f))]
        if existing:
            print(f"error: {out_dir!r} already holds result file(s) {', '.join(existing)}; use --overwrite to "
                  "replace them or --output to write elsewhere", file=sys.stderr)
            return 2
    ffa = {"auto": None, "on": True, "off": False}[args.from_first_appearance]
    try:
        result = evaluate_vos(args.gt_dir, args.pred_dir, layout=args.layout,
                              skip_first_and_last=not args.all_frames, num_workers=args.workers,
                              strict=args.strict, progress=not args.no_progress, from_first_appearance=ffa,
                              bound_th=args.bound_th)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    written = result.write_csv(out_dir)
    if result.missing or result.missing_videos or result.extra or result.unscored:
        _write_missing(os.path.join(out_dir, "missing.csv"), result)
        written["missing.csv"] = os.path.join(out_dir, "missing.csv")
    elif os.path.exists(os.path.join(out_dir, "missing.csv")):
        os.remove(os.path.join(out_dir, "missing.csv"))  # stale report of an earlier evaluation (--overwrite)
    for line in _report_problems(result):
        print(line, file=sys.stderr)
    for video, error in result.failed:
        print(f"error: video {video} could not be evaluated: {error}", file=sys.stderr)
    print(result.summary_table())
    print(f"results: {', '.join(str(p) for p in written.values())}")
    return 1 if result.failed else 0
