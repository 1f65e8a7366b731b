"""`efficient-sam2 automask`: segment everything in images, with grid or attention-guided prompts.

Writes, per image `<name>.<ext>`, `<output>/<name>.json` (masks as COCO RLE, scores, boxes, prompt points, the
time of every stage) and `<output>/<name>.png` (the masks over the image), plus `<output>/summary.json`. With
`--prompting both` the two methods write to `<output>/grid/` and `<output>/attention/`. With `--gt-dir` every
image is also scored against its ground-truth instances (mean best-match IoU per instance).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

from ..automask import attention_prompts as ap
from ..automask.evaluate import GroundTruthError, best_match_ious, find_gt, list_images, load_gt_instances
from ..automask.generator import ATTENTION_MASKS, MERGES, STAGES, AutomaticMaskGenerator, default_thresholds
from ..automask.visualize import render_overlay
from ..io.frames import ImageError, load_image
from .common import add_model_args, weights_from_args
from ..io.atomic import atomic_open, check_output_folder

HELP = "segment everything in images (grid or attention-guided prompts), optionally scored against ground truth"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "automask",
        help=HELP,
        description=HELP + ". Writes one JSON (COCO RLE masks, scores, boxes, prompt points, stage timings) and "
        "one overlay PNG per image, and summary.json.",
    )
    p.add_argument("input", metavar="IMAGE_OR_DIR", help="an image file, or a folder of images (not recursive)")
    add_model_args(p)
    p.add_argument("--output", required=True, metavar="DIR",
                   help="output folder (created; must be empty or missing unless --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty output folder, replacing the files of the same name that this run "
                        "writes (other files are kept)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--prompting", choices=("grid", "attention", "both"), default="grid",
                   help="grid: a regular point grid (the reference generator); attention: HDBSCAN medoids of an "
                        "encoder attention head (needs scikit-learn >= 1.3); both: run and compare the two, "
                        "writing to DIR/grid and DIR/attention (default: %(default)s)")

    g = p.add_argument_group("grid prompting")
    g.add_argument("--points-per-side", type=int, default=None, metavar="N",
                   help="grid points per image side (default: the model's: 32; 16 for micro, each point decoded at "
                        "its three seed radii)")
    g.add_argument("--seed-radii", type=_radii, default=None, metavar="R,R,...",
                   help="models with click seeds (micro): decode every prompt point once per seed radius (input "
                        "pixels; larger seeds ask for larger masks); 'one' = once at the model's own radius "
                        "(default: the model's with its default grid (micro: 12,24,36), else one)")
    g.add_argument("--crop-n-layers", type=int, default=0, metavar="N",
                   help="extra crop layers: layer i also runs on (2^i)^2 overlapping crops (default: %(default)s)")
    g.add_argument("--crop-overlap-ratio", type=float, default=512 / 1500, metavar="F",
                   help="overlap of the first-layer crops, as a fraction of the short image side (default: 512/1500)")
    g.add_argument("--crop-n-points-downscale-factor", type=int, default=1, metavar="N",
                   help="crop layer i uses points-per-side / N^i points per side (default: %(default)s)")
    g.add_argument("--crop-nms-thresh", type=float, default=0.7, metavar="F",
                   help="box IoU of the NMS across crops, which prefers masks from smaller crops (default: %(default)s)")

    a = p.add_argument_group("attention prompting")
    a.add_argument("--preset", choices=tuple(ap.PRESETS), default="low_latency",
                   help="HDBSCAN (min_samples, min_cluster_size): " + ", ".join(
                       f"{k} ({v.min_samples}, {v.min_cluster_size})" for k, v in ap.PRESETS.items()) + " (default: %(default)s)")
    a.add_argument("--min-samples", type=int, default=None, metavar="N", help="override the preset's min_samples")
    a.add_argument("--min-cluster-size", type=int, default=None, metavar="N",
                   help="override the preset's min_cluster_size")
    a.add_argument("--block", type=int, default=None, metavar="N",
                   help="global-attention block of the Hiera trunk (0-based; default: the first global block: "
                        "tiny 5, small 7, base_plus 12, large 23)")
    a.add_argument("--head", type=int, default=None, metavar="N", help="attention head of that block (default 2)")

    d = p.add_argument_group("decoding, filtering and merging (both methods)")
    d.add_argument("--points-per-batch", type=int, default=64, metavar="N", help="prompts decoded at once; lower it if memory runs out (default: %(default)s)")
    d.add_argument("--pred-iou-thresh", type=float, default=None, metavar="F",
                   help="keep masks with predicted IoU above this; 0: no filter (default: the model's: 0.8 as in "
                        "SAM, or the value measured for the bundled micro model)")
    d.add_argument("--stability-score-thresh", type=float, default=None, metavar="F",
                   help="keep masks with stability score at least this; 0: no filter (default: the model's: 0.95 "
                        "as in SAM, or the value measured for the bundled micro model)")
    d.add_argument("--stability-score-offset", type=float, default=1.0, metavar="F",
                   help="logit offset of the stability score (default: %(default)s)")
    d.add_argument("--single-mask", action="store_true",
                   help="decode one mask per point instead of three (multimask)")
    d.add_argument("--merge", choices=MERGES, default=None,
                   help="duplicate removal: nms (box NMS), mask-nms (NMS on the masks' IoU) or union-find (merge "
                        "masks whose intersection over the smaller mask passes --merge-thresh); default: nms for "
                        "grid, union-find for attention, or the model's measured choice (mask-nms for micro)")
    d.add_argument("--attention-masks", choices=ATTENTION_MASKS, default=None,
                   help="attention prompting: keep the best of each prompt's three masks (the thesis's) or all "
                        "three (default: the model's: best, all for micro)")
    d.add_argument("--noise-prompts", choices=("on", "off"), default=None,
                   help="attention prompting: also prompt every token HDBSCAN leaves as noise (regions smaller than "
                        "a cluster), besides the cluster medoids (default: the model's: off as in the thesis, on "
                        "for micro)")
    d.add_argument("--cluster-spacing", type=float, default=None,
                   help="attention prompting: also prompt each cluster's tokens spread this many token cells apart "
                        "(0: its medoid only, as in the thesis; default: the preset's: 4 / 3 for micro's "
                        "low_latency / high_quality, else 0)")
    d.add_argument("--region-radii", type=_region, default=None, metavar="LOW,HIGH,SCALE",
                   help="attention prompting, models with click seeds (micro): each prompt's seed as large as its "
                        "share of its cluster x SCALE, within LOW..HIGH input pixels; 'off': the model's own radius "
                        "(default: the model's where there are no region seeds: 12,48,1.5 for micro)")
    d.add_argument("--region-seeds", type=_region_seeds, default=None, metavar="KINDS",
                   help="attention prompting, models with click seeds (micro): decode each prompt once per kind, its "
                        "click seed joined by a region of the token grid: share (its share of its cluster), share+N "
                        "(grown by N token cells), cluster (its whole cluster); comma-separated, or 'off' "
                        "(default: the preset's: share for micro's low_latency, share,share+1 for its high_quality)")
    d.add_argument("--merge-thresh", type=float, default=None, metavar="F",
                   help="threshold of the chosen merge: box IoU for nms (default 0.7), mask IoU for mask-nms "
                        "(default 0.6), intersection over the smaller mask for union-find (default 0.5)")
    d.add_argument("--min-region-area", type=int, default=0, metavar="N",
                   help="fill holes and remove islands smaller than N pixels in every mask; 0: off (default: %(default)s)")
    d.add_argument("--no-overlay", action="store_true", help="do not write overlay PNGs")

    e = p.add_argument_group("evaluation")
    e.add_argument("--gt-dir", default=None, metavar="DIR",
                   help="score every image against its ground truth: DIR/<name>.png (instance ids, 0 = "
                        "background) or DIR/<name>/*.png (one binary PNG per instance)")
    e.add_argument("--evaluate", action="store_true", help="require evaluation (an error without --gt-dir)")
    e.add_argument("--ignore-id", type=int, default=None, metavar="N",
                   help="instance id marking pixels to ignore in id PNGs (e.g. 255)")

    b = p.add_argument_group("benchmark (the thesis's tables on `synth --images` data; IMAGE_OR_DIR is that folder)")
    b.add_argument("--benchmark", action="store_true",
                   help="compare random 1024 points, grid 16x16 and 32x32, attention low_latency and high_quality "
                        "on every subset (mIoU, recall@0.5, prompts and seconds per image by stage); writes "
                        "report.json and report.md to --output")
    b.add_argument("--ablation", action="store_true",
                   help="with --benchmark: also grid / attention prompts x NMS / union-find merging (Table 3)")
    b.add_argument("--calibrate", action="store_true",
                   help="measure attention prompting with every (global block, head) on the instances subset")
    b.add_argument("--subsets", default="instances,salient,camouflaged", help="subsets to run (default: all three)")
    b.add_argument("--images-per-subset", type=int, default=20, metavar="N", help="images per subset (default 20)")
    b.add_argument("--methods", default=None,
                   help="comma-separated subset of the methods (e.g. 'grid 32x32,attention low_latency')")
    b.add_argument("--threads", type=int, default=0, metavar="N", help="torch CPU threads (default: torch's)")
    b.add_argument("--real", default=None, metavar="DIR",
                   help="with --benchmark: also real footage (a folder from scripts/fetch_opencv_clips.sh): on each "
                        "clip's first frame, the IoU between the image predictor's mask for the first click of each "
                        "object and the best automatic mask (grid 32x32); overlays go to --output")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------------------------------------------


def _error(msg: str) -> int:
    print(f"efficient-sam2 automask: error: {msg}", file=sys.stderr)
    return 2


def _check_device(name: str) -> torch.device:
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"invalid --device {name!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for but CUDA is not available; use --device cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {name} was asked for but MPS is not available; use --device cpu")
    return dev


def _atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def _clean(obj):
    """JSON-safe copy: numpy scalars to Python, NaN / inf to None."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_json(path: str, obj) -> None:
    _atomic_write_bytes(path, json.dumps(_clean(obj), indent=1, allow_nan=False).encode("utf-8"))


def _write_png(path: str, rgb: np.ndarray) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    _atomic_write_bytes(path, buf.getvalue())


def _radii(text: str) -> tuple[float, ...]:
    """--seed-radii: 'one' (no extra radii) or comma-separated radii > 0."""
    if text.strip().lower() == "one":
        return ()
    try:
        radii = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated radii or 'one', got {text!r}") from None
    if not radii or any(not r > 0 for r in radii):
        raise argparse.ArgumentTypeError(f"seed radii must be > 0, got {text!r}")
    return radii


def _region_seeds(text: str):
    """--region-seeds: 'off' or comma-separated kinds."""
    from ..automask.attention_prompts import parse_region_seeds

    if text.strip().lower() == "off":
        return False
    try:
        return parse_region_seeds(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _region(text: str):
    """--region-radii: 'off' or LOW,HIGH,SCALE."""
    if text.strip().lower() == "off":
        return False
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not 0 < values[0] <= values[1] or not values[2] > 0:
        raise argparse.ArgumentTypeError(f"expected 'off' or LOW,HIGH,SCALE with 0 < LOW <= HIGH and SCALE > 0, "
                                         f"got {text!r}")
    return values


def _generator_kwargs(args, prompting: str, model=None) -> dict:
    kw = dict(
        points_per_side=args.points_per_side,
        points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        stability_score_offset=args.stability_score_offset,
        crop_n_layers=args.crop_n_layers,
        crop_nms_thresh=args.crop_nms_thresh,
        crop_overlap_ratio=args.crop_overlap_ratio,
        crop_n_points_downscale_factor=args.crop_n_points_downscale_factor,
        min_mask_region_area=args.min_region_area,
        multimask_output=not args.single_mask,
        merge=args.merge,
        attention_masks=args.attention_masks,
        noise_prompts=None if args.noise_prompts is None else args.noise_prompts == "on",
        cluster_spacing=args.cluster_spacing,
        seed_radii=args.seed_radii,
        region_radii=args.region_radii if prompting == "attention" else None,
        region_seeds=args.region_seeds if prompting == "attention" else None,
        preset=args.preset,
        min_samples=args.min_samples,
        min_cluster_size=args.min_cluster_size,
        block=args.block,
        head=args.head,
    )
    from ..automask.generator import default_merge

    merge = args.merge or default_merge(model, prompting)
    if args.merge_thresh is not None:
        kw["box_nms_thresh" if merge == "nms" else "merge_thresh"] = args.merge_thresh
    return kw


def _check_inputs(args) -> list[str]:
    """Everything that can be checked before the model is built; returns the image paths."""
    images = list_images(args.input)
    stems: dict[str, str] = {}
    for path in images:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems:
            raise ValueError(f"{stems[stem]!r} and {path!r} would write the same output {stem}.json; rename one")
        stems[stem] = path
    if stems.keys() & {"summary"}:
        raise ValueError("an input image is named 'summary', which would clash with summary.json: rename it")
    try:
        check_output_folder(args.output, args.overwrite, "--output")
    except FileExistsError as e:
        raise ValueError(str(e)) from None
    if args.evaluate and not args.gt_dir:
        raise ValueError("--evaluate needs --gt-dir DIR (the ground-truth instance masks)")
    if args.gt_dir and not os.path.isdir(args.gt_dir):
        raise ValueError(f"--gt-dir {args.gt_dir!r} is not a folder")
    if args.checkpoint is not None and not os.path.isfile(args.checkpoint):
        what = "is a folder, not a file" if os.path.isdir(args.checkpoint) else "not found"
        raise ValueError(f"checkpoint {args.checkpoint!r} {what}")
    return images


def run_benchmark(args) -> int:
    """`automask DATA --benchmark / --calibrate`: the tables of BENCHMARKS.md "Automatic masks"."""
    from ..automask import benchmark as bm
    from ..build import CheckpointError, build_sam2

    if args.images_per_subset < 1:
        return _error(f"--images-per-subset must be >= 1, got {args.images_per_subset}")
    bm.threads(args.threads)
    try:
        check_output_folder(args.output, args.overwrite, "--output")
        subsets = [x.strip() for x in args.subsets.split(",") if x.strip()]
        data = {sub: bm.load_image_set(args.input, sub, args.images_per_subset) for sub in subsets}
        device = _check_device(args.device)
        overrides = {} if args.image_size is None else {"image_size": args.image_size}
        model = build_sam2(args.model, args.checkpoint, device=device, weights=weights_from_args(args), **overrides)
        ap.require_hdbscan()
    except (ValueError, FileNotFoundError, FileExistsError, GroundTruthError, CheckpointError,
            ap.AutomaskDependencyError) as e:
        return _error(str(e))
    os.makedirs(args.output, exist_ok=True)
    common = dict(pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_score_thresh,
                  stability_score_offset=args.stability_score_offset, points_per_batch=args.points_per_batch,
                  min_mask_region_area=args.min_region_area)
    log = (lambda m: None) if args.no_progress else (lambda m: print(m, file=sys.stderr))
    shown = {**default_thresholds(model), **{k: v for k, v in common.items() if v is not None}}
    report = {"model": model.cfg.name, "checkpoint": args.checkpoint, "data": os.path.abspath(args.input),
              "images_per_subset": args.images_per_subset, "threads": torch.get_num_threads(), "settings": shown}
    md = [f"model {model.cfg.name}, {args.images_per_subset} images per subset, {torch.get_num_threads()} "
          f"thread(s), pred_iou_thresh {shown['pred_iou_thresh']}, stability_score_thresh "
          f"{shown['stability_score_thresh']}", ""]
    if args.calibrate:
        # the filters first (grid 16x16), then the attention site under the best filters
        sweep = bm.calibrate_thresholds(model, data, log=log)
        report["thresholds"] = [{"pred_iou_thresh": a, "stability_score_thresh": b, "miou": c, "recall50": d}
                                for a, b, c, d in sweep]
        md += ["filters (grid 16x16 + NMS, every subset), best mIoU first:", "",
               "| pred_iou_thresh | stability_score_thresh | mIoU | recall@0.5 |", "|---|---|---|---|"]
        md += [f"| {a} | {b} | {100 * c:.1f} | {100 * d:.1f} |" for a, b, c, d in sweep] + [""]
        site_filters = dict(common)
        if args.pred_iou_thresh is None and args.stability_score_thresh is None and sweep:
            site_filters.update(pred_iou_thresh=sweep[0][0], stability_score_thresh=sweep[0][1])
        sites = bm.calibrate_sites(model, data.get("instances") or next(iter(data.values())), common=site_filters,
                                   log=log)
        report["calibration"] = [{"block": b, "head": h, **r.as_dict()} for b, h, r in sites]
        site_filters.update(block=sites[0][0], head=sites[0][1])
        presets = bm.calibrate_presets(model, data, common=site_filters, log=log)
        report["presets"] = [r.as_dict() for r in presets]
        md += [f"attention sites (low_latency preset, instances subset, pred_iou_thresh "
               f"{site_filters['pred_iou_thresh']}, stability_score_thresh {site_filters['stability_score_thresh']}), "
               "best first:", "", bm.markdown_table([r for _, _, r in sites]), "",
               f"HDBSCAN (min_samples, min_cluster_size) at block {sites[0][0]} head {sites[0][1]}:", "",
               bm.markdown_table(presets), ""]
    if args.benchmark:
        methods = bm.standard_methods()
        if args.methods:
            wanted = [x.strip() for x in args.methods.split(",") if x.strip()]
            unknown = [w for w in wanted if w not in methods]
            if unknown:
                return _error(f"unknown method(s) {unknown}; choose from {list(methods)}")
            methods = {k: methods[k] for k in wanted}
        rows = bm.run_methods(model, data, methods, common, log=log)
        report["methods"] = [r.as_dict() for r in rows]
        md += [bm.markdown_table(sorted(rows, key=lambda r: (subsets.index(r.subset), list(methods).index(r.method)))),
               ""]
        if args.ablation:
            rows = bm.run_methods(model, data, bm.ablation_methods(), common, log=log)
            report["ablation"] = [r.as_dict() for r in rows]
            md += ["ablation (Table 3):", "", bm.markdown_table(rows), ""]
    if args.benchmark and args.real:
        gen = AutomaticMaskGenerator(model, "grid", **common)
        try:
            clips = bm.load_clip_clicks(args.real)
        except (FileNotFoundError, ValueError) as e:
            return _error(str(e))
        md += ["real footage (first frames; IoU of the click's mask with the best automatic mask, automask's "
               "default grid):", "",
               "| clip | clicks | IoU per click | masks | click masks of different objects: mean IoU |",
               "|---|---|---|---|---|"]
        report["real"] = []
        for clip, rgb, clicks in clips:
            ious, click_masks, res = bm.click_agreement(model, rgb, clicks, gen)
            k = len(click_masks)
            pair = [float((click_masks[i] & click_masks[j]).sum() / max(1, (click_masks[i] | click_masks[j]).sum()))
                    for i in range(k) for j in range(i + 1, k)]
            same = float(np.mean(pair)) if pair else float("nan")  # ~1: the model ignores where the click is
            report["real"].append({"clip": clip, "clicks": clicks, "ious": ious, "masks": len(res.masks),
                                   "click_masks_pairwise_iou": same})
            md.append(f"| {clip} | {len(clicks)} | {', '.join(f'{100 * v:.0f}' for v in ious)} | {len(res.masks)} | "
                      f"{100 * same:.0f} |")
            _write_png(os.path.join(args.output, f"real_{clip}.png"),
                       render_overlay(rgb, res.boxed_masks, [r["point_coords"] for r in res.masks]))
        md.append("")
    _write_json(os.path.join(args.output, "report.json"), report)
    _atomic_write_bytes(os.path.join(args.output, "report.md"), "\n".join(md).encode("utf-8"))
    print("\n".join(md))
    return 0


def run(args) -> int:
    from tqdm import tqdm

    from ..build import CheckpointError, build_sam2

    if args.benchmark or args.calibrate:
        return run_benchmark(args)

    try:
        images = _check_inputs(args)
        device = _check_device(args.device)
    except (ValueError, FileNotFoundError) as e:
        return _error(str(e))
    methods = ["grid", "attention"] if args.prompting == "both" else [args.prompting]
    if "attention" in methods:
        try:
            ap.require_hdbscan()
        except ap.AutomaskDependencyError as e:
            return _error(str(e))

    overrides = {} if args.image_size is None else {"image_size": args.image_size}
    try:
        model = build_sam2(args.model, args.checkpoint, device=device, weights=weights_from_args(args), **overrides)
    except (FileNotFoundError, CheckpointError, ValueError, TypeError) as e:
        return _error(str(e))
    generators = {}
    for m in methods:
        try:
            generators[m] = AutomaticMaskGenerator(model, m, **_generator_kwargs(args, m, model))
        except (ValueError, ap.AutomaskDependencyError) as e:
            return _error(f"{m} prompting: {e}")

    out_dirs = {m: (os.path.join(args.output, m) if len(methods) > 1 else args.output) for m in methods}
    for d in out_dirs.values():
        os.makedirs(d, exist_ok=True)

    stats = {m: {"images": 0, "masks": [], "prompts": [], "timings": {s: [] for s in (*STAGES, "total")},
                 "ious": [], "image_mious": []} for m in methods}
    failures: list[tuple[str, str]] = []
    missing_gt: list[str] = []
    for path in tqdm(images, desc="automask", unit="img", file=sys.stderr, disable=args.no_progress):
        stem = os.path.splitext(os.path.basename(path))[0]
        t0 = time.perf_counter()
        try:
            rgb = load_image(path)
        except (ImageError, OSError) as e:
            failures.append((path, str(e)))
            tqdm.write(f"skipped {path}: {e}", file=sys.stderr)
            continue
        t_load = time.perf_counter() - t0
        gt = ignore = gt_path = None
        if args.gt_dir:
            try:
                gt_path = find_gt(args.gt_dir, path)
                gt, ignore = load_gt_instances(gt_path, args.ignore_id)
                if gt.shape[1:] != rgb.shape[:2]:
                    raise GroundTruthError(
                        f"ground truth {gt_path!r} is {gt.shape[1]}x{gt.shape[2]} but the image is "
                        f"{rgb.shape[0]}x{rgb.shape[1]} (HxW)")
            except GroundTruthError as e:
                missing_gt.append(path)
                tqdm.write(f"not scored {path}: {e}", file=sys.stderr)
                gt = None
        for m, gen in generators.items():
            try:
                res = gen.generate_result(rgb)
            except (RuntimeError, ValueError) as e:  # e.g. out of memory on a huge image
                failures.append((path, f"{m}: {e}"))
                tqdm.write(f"failed {path} ({m}): {e}", file=sys.stderr)
                continue
            res.timings["load"] = t_load
            res.timings["total"] += t_load
            doc = {"image": os.path.abspath(path), "settings": gen.settings(), **res.to_json()}
            if gt is not None:
                ious = best_match_ious(gt, res.boxed_masks, ignore)
                doc["evaluation"] = {"ground_truth": os.path.abspath(gt_path), "num_instances": int(ious.size),
                                     "miou": float(ious.mean()) if ious.size else None,
                                     "instance_ious": ious.tolist()}
                stats[m]["ious"].extend(ious.tolist())
                if ious.size:
                    stats[m]["image_mious"].append(float(ious.mean()))
            _write_json(os.path.join(out_dirs[m], stem + ".json"), doc)
            if not args.no_overlay:
                points = [r["point_coords"] for r in res.masks]
                _write_png(os.path.join(out_dirs[m], stem + ".png"), render_overlay(rgb, res.boxed_masks, points))
            s = stats[m]
            s["images"] += 1
            s["masks"].append(len(res.masks))
            s["prompts"].append(res.num_prompts)
            for k, v in res.timings.items():
                s["timings"].setdefault(k, []).append(v)

    summary = _summary(args, generators, stats, images, failures, missing_gt)
    _write_json(os.path.join(args.output, "summary.json"), summary)
    _print_summary(summary)
    return 1 if failures else 0


def _mean(v):
    return float(np.mean(v)) if len(v) else float("nan")


def _summary(args, generators, stats, images, failures, missing_gt) -> dict:
    out = {"input": os.path.abspath(args.input), "num_images": len(images), "methods": {},
           "failures": [{"image": p, "error": e} for p, e in failures]}
    if args.gt_dir:
        out["ground_truth"] = os.path.abspath(args.gt_dir)
        out["images_without_ground_truth"] = missing_gt
    for m, s in stats.items():
        d = {"settings": generators[m].settings(), "images": s["images"], "mean_masks": _mean(s["masks"]),
             "mean_prompts": _mean(s["prompts"]),
             "mean_seconds": {k: _mean(v) for k, v in s["timings"].items()}}
        if args.gt_dir:
            d["miou"] = _mean(s["ious"])
            d["image_miou"] = _mean(s["image_mious"])
            d["num_instances"] = len(s["ious"])
        out["methods"][m] = d
    return out


def _print_summary(summary: dict) -> None:
    print(f"{summary['num_images']} image(s), {len(summary['failures'])} failed")
    for m, d in summary["methods"].items():
        t = d["mean_seconds"]
        stages = ", ".join(f"{k} {t[k]:.3f}s" for k in (*STAGES, "total") if k in t and np.isfinite(t[k]))
        print(f"[{m}] {d['images']} image(s): {d['mean_prompts']:.1f} prompts, {d['mean_masks']:.1f} masks per "
              f"image; mean time per image: {stages}")
        if "miou" in d:
            miou = d["miou"]
            txt = "n/a" if not np.isfinite(miou) else f"{100 * miou:.2f}"
            print(f"[{m}] mean best-match IoU over {d['num_instances']} instance(s): {txt}")
    for f in summary["failures"]:
        print(f"failed: {f['image']}: {f['error']}", file=sys.stderr)
