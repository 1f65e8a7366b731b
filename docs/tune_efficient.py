"""How the defaults beyond the paper were chosen: fidelity of candidate EfficientConfigs to dense SAM 2.

Tracks every video of DAVIS-layout datasets from its first-frame masks with the bundled micro model, dense once and
then with each candidate (`EfficientConfig.paper(**options)`), and prints per candidate the mean IoU of its masks
with dense's (fidelity), the worst video, the change in mean IoU against the ground truth (dJ), the kept window
and memory fractions, the fallback rate, the scene cuts and guarded frames, and then per subset
"fidelity / kept windows / kept memory". The tuning videos are their own seed, never used for the reported tables:

    efficient-sam2 synth --out data/tune --videos 3 --split val --seed 7 --subset all
    python docs/tune_efficient.py '{"paper": {}, "guard": {"guard": 0.2}}' data/tune

(`bench --accuracy` / `bench --fidelity` measure the chosen configurations; this script only sweeps options that
have no row there.)
"""

from __future__ import annotations

import json
import os
import sys
import warnings

import numpy as np
import torch
from PIL import Image

from efficient_sam2 import build as builder
from efficient_sam2.efficient.config import EfficientConfig
from efficient_sam2.predictors.efficient_video import EfficientVideoPredictor


def _track(predictor, folder: str, first: np.ndarray):
    state = predictor.init_state(folder)
    for o in np.unique(first):
        if o:
            predictor.add_new_mask(state, 0, int(o), first == o)
    out = {f: {i: (m[k, 0] > 0).numpy() for k, i in enumerate(ids)}
           for f, ids, m in predictor.propagate_in_video(state, progress=False)}
    return out, (predictor.statistics(state) if hasattr(predictor, "efficient") else None)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def main(candidates: dict, roots: list[str]) -> None:
    torch.set_num_threads(1)
    dense = builder.build_sam2_video_predictor("micro", apply_postprocessing=False, non_overlap_masks=False,
                                               fill_hole_area=0)
    shortcut = builder.bundled_shortcut("micro")
    videos = []
    for root in roots:
        res = sorted(os.listdir(os.path.join(root, "JPEGImages")))[0]
        for v in sorted(os.listdir(os.path.join(root, "JPEGImages", res))):
            ann = os.path.join(root, "Annotations", res, v)
            gt = [np.array(Image.open(os.path.join(ann, f))) for f in sorted(os.listdir(ann))]
            folder = os.path.join(root, "JPEGImages", res, v)
            videos.append((v, folder, gt, _track(dense, folder, gt[0])[0]))
    for name, options in candidates.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predictor = EfficientVideoPredictor(dense.model, efficient=EfficientConfig.paper(**options),
                                                shortcut_checkpoint=shortcut)
        rows = []
        for v, folder, gt, ref in videos:
            masks, s = _track(predictor, folder, gt[0])
            pairs = [(f, o) for f in ref if f > 0 for o in ref[f]]
            fid = np.mean([_iou(masks[f][o], ref[f][o]) for f, o in pairs])
            d_j = np.mean([_iou(masks[f][o], gt[f] == o) - _iou(ref[f][o], gt[f] == o) for f, o in pairs])
            rows.append(dict(v=v, fid=fid, dJ=d_j, kw=s.mean_kept_windows,
                             km=s.mean_kept_memory if s.kept_memory else 1.0, fb=s.fallback_rate,
                             cuts=len(s.scene_cuts), guarded=len(s.guarded_frames)))
        fid = np.array([r["fid"] for r in rows])
        print(f"{name:24s} fidelity IoU {100 * fid.mean():5.1f}  worst video {100 * fid.min():5.1f} "
              f"({rows[int(fid.argmin())]['v']})  dJ {100 * np.mean([r['dJ'] for r in rows]):+5.2f}  "
              f"kept windows {np.mean([r['kw'] for r in rows]):.3f}  kept memory {np.mean([r['km'] for r in rows]):.3f}"
              f"  fallback {np.mean([r['fb'] for r in rows]):.2f}  cuts {sum(r['cuts'] for r in rows)}  "
              f"guarded {sum(r['guarded'] for r in rows)}", flush=True)
        subsets: dict[str, list] = {}
        for r in rows:
            subsets.setdefault(r["v"].rsplit("_", 1)[0], []).append(r)
        print("    " + " ".join(f"{s}:{100 * np.mean([r['fid'] for r in x]):.1f}/{np.mean([r['kw'] for r in x]):.2f}/"
                                 f"{np.mean([r['km'] for r in x]):.2f}" for s, x in subsets.items()), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(json.loads(sys.argv[1]), sys.argv[2:])
