"""`efficient-sam2 demo`: the same masks, faster, on one screen, with nothing to download.

Makes a few short synthetic videos with exact ground truth (held out: seeds no training video uses, several kinds of
motion), tracks their objects from their first-frame masks with the bundled micro SAM 2.1 dense, with Efficient-SAM2
as in the paper and with this package's defaults (the bundled shortcut), and prints, averaged over the videos and
per video, J&F against the ground truth, the fidelity to dense SAM 2's masks (J&F with dense's masks as the
reference), the time of each, the speed-up and the sparsity achieved. Writes each video's frames, the masks of every
run (palette PNGs) and a side-by-side overlay video.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

DESCRIPTION = """\
Run SAM 2 (the bundled micro SAM 2.1, trained on synthetic videos) dense and with Efficient-SAM2 (as in the paper,
and with this package's defaults) on a few generated sample videos, and compare: J&F against the exact ground
truth, fidelity to dense SAM 2's masks, tracking time, speed-up, kept windows and kept memory, averaged over the
videos and per video. Writes to --out, one folder per video: frames/ (JPEG), ground_truth/, dense/, paper/ and
efficient/ (palette PNGs), and overlay.mp4 (ground truth | dense | Efficient-SAM2, side by side). Nothing is
downloaded.

Use --model/--checkpoint to run it on another model (e.g. Meta's large at --image-size 1024: slow on a CPU).
"""

DEMO_SEED = 20261130  # video seeds DEMO_SEED + i, drawn apart from every synth split (see efficient_sam2.data.writer)
DEMO_SUBSETS = "standard,occlusion,fast_motion,scene_cut"
RUNS = (("dense SAM 2", "dense"), ("Efficient-SAM2 (paper)", "paper"), ("Efficient-SAM2", "efficient"))
"""(printed name, folder) of the three runs on every video."""


@dataclass
class RunResult:
    name: str
    seconds: float
    masks: list  # (H, W) uint8 id maps per frame
    jf: float
    j: float
    f: float
    fidelity: float  # J&F against dense's masks
    stats: dict | None


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="dense vs Efficient-SAM2 on generated videos, no download",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="efficient_sam2_demo", help="output folder (default ./efficient_sam2_demo)")
    p.add_argument("--videos", type=int, default=4, help="sample videos (default 4)")
    p.add_argument("--frames", type=int, default=32, help="frames of each sample video (default 32)")
    p.add_argument("--subsets", "--subset", default=DEMO_SUBSETS, dest="subsets",
                   help="kinds of sample video, used in turn: standard, fast_motion, occlusion, reappearance, "
                        f"distractors, camera_shake, scene_cut (default {DEMO_SUBSETS})")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help="seed of the first sample video (the next: +1, ...)")
    p.add_argument("--model", default="micro", help="model name (default micro, bundled)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (not needed for micro)")
    p.add_argument("--image-size", type=int, default=None, help="model input size (default: the model's)")
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
    from ..data.subsets import SUBSETS
    from ..data.synthetic import generate_video
    from ..efficient.config import EfficientConfig
    from ..io.atomic import check_output_folder

    if args.frames < 3:
        print(f"error: --frames must be at least 3, got {args.frames}", file=sys.stderr)
        return 2
    if args.videos < 1:
        print(f"error: --videos must be at least 1, got {args.videos}", file=sys.stderr)
        return 2
    subsets = [s.strip() for s in args.subsets.split(",") if s.strip()]
    unknown = [s for s in subsets if s not in SUBSETS]
    if not subsets or unknown:
        print(f"error: unknown subset(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(SUBSETS)}",
              file=sys.stderr)
        return 2
    try:
        check_output_folder(args.out, args.overwrite, "demo output folder")
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = not args.no_progress
    overrides = {} if args.image_size is None else {"image_size": args.image_size}
    try:
        videos = [(f"{subsets[i % len(subsets)]}_{i}", generate_video(args.seed + i, subsets[i % len(subsets)],
                                                                       frames=args.frames))
                  for i in range(args.videos)]
        predictors = {"dense": build_sam2_video_predictor(args.model, args.checkpoint, **overrides),
                      "paper": build_sam2_video_predictor(args.model, args.checkpoint,
                                                          efficient=EfficientConfig.paper(), **overrides),
                      "efficient": build_sam2_video_predictor(args.model, args.checkpoint,
                                                              efficient=EfficientConfig(), **overrides)}
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model = predictors["dense"].model
    H, W = videos[0][1].masks[0].shape
    print(f"{len(videos)} sample video(s) of {args.frames} frames ({', '.join(n for n, _ in videos)}; seeds "
          f"{args.seed}..{args.seed + len(videos) - 1}); model {model.cfg.name} at {model.image_size} px "
          f"({model.weights_source} weights)")

    first = videos[0][1]
    _track(predictors["dense"], first.frames[:3], first.masks[0], _ids(first.masks[0]), False)  # warm-up
    results = []
    for name, video in videos:
        ids = _ids(video.masks[0])
        runs = {}
        for label, key in RUNS:
            masks, seconds, stats = _track(predictors[key], video.frames, video.masks[0], ids, progress)
            jf, j, f = _score(video.masks, masks, ids)
            fidelity = _score(runs["dense"].masks, masks, ids)[0] if runs else 100.0
            runs[key] = RunResult(label, seconds, masks, jf, j, f, fidelity, stats)
        _write_video(os.path.join(args.out, name), video, runs)
        results.append((name, video, runs))

    print()
    print(f"mean over {len(results)} video(s):")
    print(f"{'':24s} {'J&F':>6s} {'J':>6s} {'F':>6s} {'fidelity':>9s} {'ms/frame':>9s} {'windows':>8s} {'memory':>7s}")
    frames_total = sum(len(v.frames) for _, v, _ in results)
    for label, key in RUNS:
        rs = [r[key] for _, _, r in results]
        kept = [r.stats for r in rs if r.stats]
        kw = f"{100 * np.mean([k['mean_kept_window_fraction'] for k in kept]):7.0f}%" if kept else f"{'100%':>8s}"
        km = (f"{100 * np.mean([k['mean_kept_memory_fraction'] or 1.0 for k in kept]):6.0f}%" if kept
              else f"{'100%':>7s}")
        print(f"{label:24s} {np.mean([r.jf for r in rs]):6.1f} {np.mean([r.j for r in rs]):6.1f} "
              f"{np.mean([r.f for r in rs]):6.1f} {np.mean([r.fidelity for r in rs]):9.1f} "
              f"{1000 * sum(r.seconds for r in rs) / frames_total:9.1f} {kw} {km}")
    print()
    print("per video, J&F dense / paper / Efficient-SAM2 (fidelity to dense: paper / Efficient-SAM2):")
    for name, _, r in results:
        print(f"  {name:16s} {r['dense'].jf:5.1f} / {r['paper'].jf:5.1f} / {r['efficient'].jf:5.1f}   "
              f"({r['paper'].fidelity:5.1f} / {r['efficient'].fidelity:5.1f})")
    dense_s = sum(r["dense"].seconds for _, _, r in results)
    eff = [r["efficient"] for _, _, r in results]
    d_jf = np.mean([r["efficient"].jf - r["dense"].jf for _, _, r in results])
    p_jf = np.mean([r["paper"].jf - r["dense"].jf for _, _, r in results])
    agree = np.mean([_agreement(r["dense"].masks, r["efficient"].masks) for _, _, r in results])
    print()
    print(f"speed-up {dense_s / sum(r.seconds for r in eff):.2f}x end to end (paper "
          f"{dense_s / sum(r['paper'].seconds for _, _, r in results):.2f}x); J&F {d_jf:+.1f} vs dense (paper "
          f"{p_jf:+.1f}); agreement with dense masks {100 * agree:.1f} % of pixels")
    cuts = sum((r.stats or {}).get("scene_cuts", 0) for r in eff)
    falls = sum((r.stats or {}).get("saliency_fallbacks", 0) for r in eff)
    routed = sum((r.stats or {}).get("routed_frames", 0) for r in eff)
    print(f"Efficient-SAM2: saliency fallback on {falls} of {routed} routed frames, {cuts} scene cut(s) run dense")
    print(f"wrote {args.out}/<video>/: frames/, ground_truth/, dense/, paper/, efficient/, overlay.mp4 "
          "(ground truth | dense | Efficient-SAM2)")
    if model.image_size <= 256:
        print(f"note: at {model.image_size} px a frame's time goes mostly to stages sparsity does not touch "
              "(Python overhead, mask decoder, memory encoder); the paper's speed-ups are for 1024 px models, see "
              "BENCHMARKS.md")
    return 0


def _ids(first) -> list[int]:
    import numpy as np

    return [int(i) for i in np.unique(first) if i != 0]


def _write_video(folder: str, video, runs: dict) -> None:
    """frames/, ground_truth/, one folder of palette PNGs per run and overlay.mp4 of one sample video."""
    import numpy as np
    from PIL import Image

    from ..io.masks import write_palette_mask
    from ..io.overlay import OverlayWriter, overlay_ids

    os.makedirs(folder, exist_ok=True)
    for sub, maps in (("ground_truth", video.masks), *((key, r.masks) for key, r in runs.items())):
        for t, m in enumerate(maps):
            write_palette_mask(os.path.join(folder, sub, f"{t:05d}.png"), m)
    for t, rgb in enumerate(video.frames):
        path = os.path.join(folder, "frames", f"{t:05d}.jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(rgb).save(path, quality=92)
    with OverlayWriter(os.path.join(folder, "overlay.mp4"), fps=8, overwrite=True) as writer:
        for t, rgb in enumerate(video.frames):
            panels = [overlay_ids(rgb, m[t]) for m in (video.masks, runs["dense"].masks, runs["efficient"].masks)]
            writer.write(np.concatenate(panels, axis=1))


def _agreement(a: list, b: list) -> float:
    import numpy as np

    return float(np.mean([np.mean(x == y) for x, y in zip(a, b)]))
