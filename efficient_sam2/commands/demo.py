"""`efficient-sam2 demo`: the same masks, faster, on one screen, with nothing to download.

Makes a short synthetic video with exact ground truth (held out: a seed no training video uses), tracks its objects
from their first-frame masks with the bundled micro SAM 2.1, once dense and once with Efficient-SAM2 (SWR + SMR,
the bundled shortcut), and prints the J&F of both against the ground truth, the time of each, the speed-up and the
sparsity achieved. Writes the frames, the masks of both runs (palette PNGs) and a side-by-side overlay video.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

DESCRIPTION = """\
Run SAM 2 (the bundled micro SAM 2.1, trained on synthetic videos) dense and with Efficient-SAM2 on a generated
sample video, and compare: J&F of both against the exact ground truth, tracking time, speed-up, kept windows and
kept memory. Writes to --out: frames/ (the video, JPEG), ground_truth/, dense/ and efficient/ (palette PNGs), and
overlay.mp4 (ground truth | dense | Efficient-SAM2, side by side). Nothing is downloaded.

Use --model/--checkpoint to run it on another model (e.g. Meta's large at --image-size 1024: slow on a CPU).
"""

DEMO_SEED = 20261130  # a video seed, drawn apart from every synth split (see efficient_sam2.data.writer)


@dataclass
class RunResult:
    name: str
    seconds: float
    masks: list  # (H, W) uint8 id maps per frame
    jf: float
    j: float
    f: float
    stats: dict | None


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="dense vs Efficient-SAM2 on a generated video, no download",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="efficient_sam2_demo", help="output folder (default ./efficient_sam2_demo)")
    p.add_argument("--frames", type=int, default=32, help="frames of the sample video (default 32)")
    p.add_argument("--subset", default="standard",
                   help="kind of sample video: standard, fast_motion, occlusion, reappearance, distractors, "
                        "camera_shake, scene_cut (default standard)")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help="seed of the sample video")
    p.add_argument("--model", default="micro", help="model name (default micro, bundled)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (not needed for micro)")
    p.add_argument("--image-size", type=int, default=None, help="model input size (default: the model's)")
    p.add_argument("--chosen-mask-only", action="store_true",
                   help="route windows from the chosen mask only (the paper's Table 4 ablation) instead of the union "
                        "of all three multimask outputs")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty --out (only the demo's own files are replaced)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _score(gt: list, pred: list, ids: list[int]) -> tuple[float, float, float]:
    """DAVIS J&F (percent) of id maps, frames 1..T-2 as the evaluator scores them."""
    import numpy as np

    from ..evaluation.metrics import boundary_f_measure, region_similarity

    frames = range(1, len(gt) - 1) if len(gt) > 2 else range(len(gt))
    js, fs = [], []
    for i in ids:
        g = np.stack([gt[t] == i for t in frames])
        p = np.stack([pred[t] == i for t in frames])
        js.append(float(np.mean(region_similarity(g, p))))
        fs.append(float(np.mean(boundary_f_measure(g, p))))
    j, f = 100 * float(np.mean(js)), 100 * float(np.mean(fs))
    return (j + f) / 2, j, f


def _track(predictor, frames, first_ids, ids, progress: bool) -> tuple[list, float, dict | None]:
    import torch

    from ..inference.common import logits_to_ids

    state = predictor.init_state(frames)
    for i in ids:
        predictor.add_new_mask(state, 0, i, first_ids == i)
    out = [None] * len(frames)
    start = time.perf_counter()
    with torch.inference_mode():
        for t, obj_ids, logits in predictor.propagate_in_video(state, progress=progress):
            out[t] = logits_to_ids(logits, obj_ids)
    seconds = time.perf_counter() - start
    stats = predictor.statistics(state)
    return out, seconds, (stats.summary() if stats is not None else None)


def run(args) -> int:
    import numpy as np
    import torch

    from ..build import CheckpointError, build_sam2_video_predictor
    from ..data.synthetic import generate_video
    from ..efficient.config import EfficientConfig
    from ..io.atomic import check_output_folder
    from ..io.masks import write_palette_mask
    from ..io.overlay import OverlayWriter, overlay_ids

    if args.frames < 3:
        print(f"error: --frames must be at least 3, got {args.frames}", file=sys.stderr)
        return 2
    try:
        check_output_folder(args.out, args.overwrite, "demo output folder")
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = not args.no_progress
    try:
        video = generate_video(args.seed, args.subset, frames=args.frames)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    frames, gt = video.frames, video.masks
    ids = [int(i) for i in np.unique(gt[0]) if i != 0]
    overrides = {} if args.image_size is None else {"image_size": args.image_size}
    try:
        dense = build_sam2_video_predictor(args.model, args.checkpoint, **overrides)
        efficient = build_sam2_video_predictor(args.model, args.checkpoint,
                                               efficient=EfficientConfig(all_masks=not args.chosen_mask_only),
                                               **overrides)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    H, W = gt[0].shape
    print(f"sample video: {len(frames)} frames, {W}x{H}, {len(ids)} object(s) ({args.subset}, seed {args.seed}); "
          f"model {dense.model.cfg.name} at {dense.model.image_size} px ({dense.model.weights_source} weights); "
          f"Efficient-SAM2 with the paper's settings"
          f"{' (windows routed from the chosen mask only)' if args.chosen_mask_only else ''}")

    # warm-up (first-call allocations), then the two timed runs
    _track(dense, frames[:3], gt[0], ids, False)
    runs = []
    for name, predictor in (("dense SAM 2", dense), ("Efficient-SAM2", efficient)):
        masks, seconds, stats = _track(predictor, frames, gt[0], ids, progress)
        jf, j, f = _score(gt, masks, ids)
        runs.append(RunResult(name, seconds, masks, jf, j, f, stats))

    os.makedirs(args.out, exist_ok=True)
    for sub, maps in (("ground_truth", gt), ("dense", runs[0].masks), ("efficient", runs[1].masks)):
        for t, m in enumerate(maps):
            write_palette_mask(os.path.join(args.out, sub, f"{t:05d}.png"), m)
    from PIL import Image

    for t, rgb in enumerate(frames):
        path = os.path.join(args.out, "frames", f"{t:05d}.jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(rgb).save(path, quality=92)
    with OverlayWriter(os.path.join(args.out, "overlay.mp4"), fps=8, overwrite=True) as writer:
        for t, rgb in enumerate(frames):
            panels = [overlay_ids(rgb, m[t]) for m in (gt, runs[0].masks, runs[1].masks)]
            writer.write(np.concatenate(panels, axis=1))

    d, e = runs
    n = len(frames)
    print()
    print(f"{'':16s} {'J&F':>6s} {'J':>6s} {'F':>6s} {'ms/frame':>9s}")
    for r in runs:
        print(f"{r.name:16s} {r.jf:6.1f} {r.j:6.1f} {r.f:6.1f} {1000 * r.seconds / n:9.1f}")
    s = e.stats or {}
    print()
    print(f"speed-up {d.seconds / e.seconds:.2f}x end to end; J&F {e.jf - d.jf:+.1f} vs dense; "
          f"agreement with dense masks {100 * _agreement(d.masks, e.masks):.1f} % of pixels")
    kept_w = s.get("mean_kept_window_fraction")
    kept_m = s.get("mean_kept_memory_fraction")
    print(f"sparsity: {100 * (1 - kept_w):.0f} % of stride-16 windows skipped on average" if kept_w is not None
          else "sparsity: n/a", end="")
    print(f", {100 * (1 - kept_m):.0f} % of memory tokens skipped" if kept_m is not None else "", end="")
    print(f", saliency fallback on {s.get('saliency_fallbacks', 0)} of {s.get('routed_frames', 0)} routed frames")
    print(f"wrote {args.out}/: frames/, ground_truth/, dense/, efficient/, overlay.mp4 "
          "(ground truth | dense | Efficient-SAM2)")
    if dense.model.image_size <= 256:
        print(f"note: at {dense.model.image_size} px a frame's time goes mostly to stages sparsity does not touch "
              "(Python overhead, mask decoder, memory encoder); the paper's speed-ups are for 1024 px models, see "
              "BENCHMARKS.md")
    return 0


def _agreement(a: list, b: list) -> float:
    import numpy as np

    return float(np.mean([np.mean(x == y) for x, y in zip(a, b)]))
