"""Tracking from one click per object: J&F against ground truth of videos tracked by dense SAM 2 from a single
positive click on each object's first-frame mask (its deepest pixel, docs/click_iou.py's rule), and the IoU of the
first frame's mask; VOS layout (`synth` output: JPEGImages/<res>/<video>/*.jpg, Annotations/<res>/<video>/*.png).
First and last frames are left out of J&F, as in `evaluate`.

    python docs/click_tracking.py data/val [--subset standard] [--videos 30] [--model micro] [--click-seed-radii off]
"""

from __future__ import annotations

import argparse
import glob
import os

import numpy as np
import torch

from click_iou import interior_pixel, radii_overrides
from efficient_sam2 import build_sam2_video_predictor
from efficient_sam2.evaluation.metrics import boundary_f_measure, region_similarity
from efficient_sam2.io.masks import read_palette_mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--subset", default="standard", help="videos whose names start with this")
    ap.add_argument("--videos", type=int, default=30)
    ap.add_argument("--model", default="micro")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--click-seed-radii", default=None,
                    help="build the model with these SAM2Config.click_seed_radii ('off': one decode per prompt)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = radii_overrides(args.click_seed_radii)
    res = sorted(os.listdir(os.path.join(args.data, "JPEGImages")))[0]  # the first resolution
    frames_root = os.path.join(args.data, "JPEGImages", res)
    videos = sorted(v for v in os.listdir(frames_root) if v.startswith(args.subset))[:args.videos]
    if not videos:
        raise SystemExit(f"no videos starting with {args.subset!r} under {frames_root}")
    predictor = build_sam2_video_predictor(args.model, checkpoint=args.checkpoint, **overrides)
    js, fs, firsts = [], [], []
    for v in videos:
        anns = [read_palette_mask(f)[0] for f in sorted(glob.glob(os.path.join(args.data, "Annotations", res, v,
                                                                               "*.png")))]
        state = predictor.init_state(os.path.join(frames_root, v))
        objects = [int(i) for i in np.unique(anns[0]) if i not in (0, 255)]
        for obj in objects:
            y, x = interior_pixel(anns[0] == obj)
            predictor.add_new_points_or_box(state, 0, obj, points=np.array([[x + 0.5, y + 0.5]]), labels=np.array([1]))
        out = {f: {i: (m[k, 0] > 0).numpy() for k, i in enumerate(ids)}
               for f, ids, m in predictor.propagate_in_video(state, progress=False)}
        for obj in objects:
            gt = np.stack([a == obj for a in anns[1:-1]])
            pred = np.stack([out[f][obj] for f in range(1, len(anns) - 1)])
            js.append(np.mean(region_similarity(gt, pred)))
            fs.append(np.mean(boundary_f_measure(gt, pred)))
            firsts.append(region_similarity(anns[0] == obj, out[0][obj]))
    print(f"{len(videos)} videos, {len(js)} objects: J&F {50 * (np.mean(js) + np.mean(fs)):.1f} "
          f"(J {100 * np.mean(js):.1f}, F {100 * np.mean(fs):.1f}); first-frame IoU {100 * np.mean(firsts):.1f}")


if __name__ == "__main__":
    main()
