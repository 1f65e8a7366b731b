"""Validation J&F during training: track annotated videos from their first-frame masks and score every object.

Scores follow the evaluator's DAVIS protocol (`efficient_sam2.evaluation`): J and F per object averaged over its
frames except the first and the last, J&F the mean of J and F over objects, in percent. Objects are scored on their
own masks (no merging into one label map), which is what the evaluator does with per-object outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..evaluation.metrics import boundary_f_measure, region_similarity
from ..io.masks import read_palette_mask
from ..modeling.sam2 import SAM2Model

__all__ = ["ValidationScore", "track_and_score", "validation_row"]


@dataclass
class ValidationScore:
    jf: float
    j: float
    f: float
    objects: int


def track_and_score(model: SAM2Model, videos, predictor=None, progress: bool = False) -> ValidationScore:
    """Dense (or `predictor`'s) J&F over `videos` (objects with `.frames` and `.masks` file lists)."""
    from ..predictors.video import VideoPredictor

    predictor = predictor or VideoPredictor(model, fill_hole_area=8)
    js, fs = [], []
    for video in tqdm(videos, desc="validate", disable=not progress):
        frames = [np.array(Image.open(p).convert("RGB")) for p in video.frames]
        labels = [read_palette_mask(p)[0] for p in video.masks]
        ids = [int(v) for v in np.unique(labels[0]) if v not in (0, 255)]
        if not ids:
            continue
        state = predictor.init_state(frames)
        for obj_id in ids:
            predictor.add_new_mask(state, 0, obj_id, labels[0] == obj_id)
        preds = [None] * len(frames)
        with torch.inference_mode():
            for t, obj_ids, logits in predictor.propagate_in_video(state, progress=False):
                preds[t] = (logits[:, 0] > 0).cpu().numpy()
        scored = range(1, len(frames) - 1) if len(frames) > 2 else range(len(frames))
        for k, obj_id in enumerate(ids):
            gt = np.stack([labels[t] == obj_id for t in scored])
            pr = np.stack([preds[t][k] for t in scored])
            js.append(float(np.mean(region_similarity(gt, pr))))
            fs.append(float(np.mean(boundary_f_measure(gt, pr))))
        state.frames.close() if hasattr(state.frames, "close") else None
    if not js:
        return ValidationScore(0.0, 0.0, 0.0, 0)
    j, f = 100 * float(np.mean(js)), 100 * float(np.mean(fs))
    return ValidationScore((j + f) / 2, j, f, len(js))


def validation_row(model: SAM2Model, dataset, limit: int, step: int) -> dict:
    """{"step", "J&F", "J", "F", "videos"}: dense J&F of `model` on the first `limit` videos (0 = all) of `dataset`
    (a `ClipDataset`), the row the trainers keep in validation.csv."""
    names = dataset.video_names()
    if limit:
        names = names[:limit]
    score = track_and_score(model, [dataset.video(n) for n in names], progress=False)
    return {"step": step, "J&F": score.jf, "J": score.j, "F": score.f, "videos": len(names)}
