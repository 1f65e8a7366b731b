"""How well a model segments from one click: IoU of its masks for a click at the most interior pixel of each
ground-truth instance of `synth --images` data (or any folder in that layout); and from its box alone.

    python docs/click_iou.py data/images_val [--checkpoint runs/prompts/model.pt] [--images-per-subset 8] \
        [--click-seed-radius 12] [--no-box-seeds] [--single-output-token] [--click-seed-radii 12,24,36|off]

Prints per subset: mean best-of-three IoU (the best of the three multimask outputs), mean IoU of the output the
model's IoU head ranks first, and how many instances were clicked; then the mean IoU of the one mask asked for
with the instance's tight box as the only prompt (multimask_output=False, as box prompts are used); then one
correction click as an interactive user gives it: after the first click's top-ranked mask, a click at the most
interior pixel of the error (positive on a missed region, negative on a false one), decoded with the first click
and the first mask's logits as the mask prompt, one mask asked for (SAM's interactive protocol). The interior pixel is the last one left when
the instance is eroded (3 x 3) until nothing is left; instances under 30 pixels are skipped.
"""

from __future__ import annotations

import argparse
import glob
import os

import numpy as np
import torch
import torch.nn.functional as F

from efficient_sam2.build import build_sam2_image_predictor
from efficient_sam2.io.masks import read_palette_mask


def interior_pixel(mask: np.ndarray) -> tuple[int, int]:
    """(y, x) of a pixel deepest inside `mask` (3 x 3 erosion until one more step would empty it)."""
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    while True:
        eroded = -F.max_pool2d(-F.pad(m, (1, 1, 1, 1), value=0.0), 3, stride=1)
        if eroded.sum() == 0:
            break
        m = eroded
    ys, xs = np.nonzero(m[0, 0].numpy())
    k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
    return int(ys[k]), int(xs[k])


def _instances(predictor, data: str, images_per_subset: int):
    """Yield (subset, ground-truth mask) for every instance of at least 30 pixels of the first `images_per_subset`
    images of each subset of `data`, with the predictor already set to that image."""
    root = os.path.join(data, "JPEGImages")
    for subset in sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))):
        for path in sorted(glob.glob(os.path.join(root, subset, "*.jpg")))[:images_per_subset]:
            ann = os.path.join(data, "Annotations", subset, os.path.splitext(os.path.basename(path))[0] + ".png")
            ids = read_palette_mask(ann)[0]
            predictor.set_image(path)
            for v in np.unique(ids):
                gt = ids == v
                if v != 255 and gt.sum() >= 30:
                    yield subset, gt


def _iou(mask: np.ndarray, gt: np.ndarray) -> float:
    return float((mask & gt).sum() / max((mask | gt).sum(), 1))


def click_results(predictor, data: str, images_per_subset: int = 8) -> dict[str, list[tuple[float, float, int]]]:
    """Per subset of `data`, one (best-of-three IoU, IoU of the top-ranked output, area of the first output) per
    clicked instance: a click at `interior_pixel` of every instance of at least 30 pixels."""
    out: dict[str, list] = {}
    for subset, gt in _instances(predictor, data, images_per_subset):
        y, x = interior_pixel(gt)
        masks, scores, _ = predictor.predict(np.array([[x + 0.5, y + 0.5]]), np.array([1]))
        ious = [_iou(m, gt) for m in masks]
        out.setdefault(subset, []).append((max(ious), ious[int(np.argmax(scores))], int(masks[0].sum())))
    return out


def box_results(predictor, data: str, images_per_subset: int = 8) -> dict[str, list[float]]:
    """Per subset of `data`, the IoU of the single mask a box alone gives (the instance's tight box, every
    instance of at least 30 pixels)."""
    out: dict[str, list] = {}
    for subset, gt in _instances(predictor, data, images_per_subset):
        ys, xs = np.nonzero(gt)
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)
        mask = predictor.predict(box=box, multimask_output=False)[0][0]
        out.setdefault(subset, []).append(_iou(mask, gt))
    return out


def correction_results(predictor, data: str, images_per_subset: int = 8) -> dict[str, list[tuple[float, float]]]:
    """Per subset of `data`, (IoU of the first click's top-ranked mask, IoU after one correction click) per
    instance of at least 30 pixels; an instance whose first mask is off by fewer than 5 pixels keeps its IoU."""
    out: dict[str, list] = {}
    for subset, gt in _instances(predictor, data, images_per_subset):
        y, x = interior_pixel(gt)
        first = np.array([[x + 0.5, y + 0.5]])
        masks, scores, low = predictor.predict(first, np.array([1]))
        top = int(np.argmax(scores))
        iou1 = _iou(masks[top], gt)
        error = masks[top] ^ gt
        if error.sum() < 5:
            out.setdefault(subset, []).append((iou1, iou1))
            continue
        ey, ex = interior_pixel(error)
        mask = predictor.predict(np.concatenate([first, [[ex + 0.5, ey + 0.5]]]), np.array([1, int(gt[ey, ex])]),
                                 mask_input=low[top][None], multimask_output=False)[0][0]
        out.setdefault(subset, []).append((iou1, _iou(mask, gt)))
    return out


def radii_overrides(text: str | None) -> dict:
    """Builder overrides for a --click-seed-radii value: comma-separated radii, or 'off' (one decode per prompt)."""
    if text is None:
        return {}
    return {"click_seed_radii": () if text == "off" else tuple(float(r) for r in text.split(","))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--model", default="micro")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--images-per-subset", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--click-seed-radius", type=float, default=None,
                    help="build the model with this SAM2Config.click_seed_radius (weights tuned with seeds)")
    ap.add_argument("--no-box-seeds", action="store_true", help="build the model with box_seeds=False")
    ap.add_argument("--single-output-token", action="store_true",
                    help="build the model with single_output_from_best=False (SAM 2's single-mask output)")
    ap.add_argument("--click-seed-radii", default=None,
                    help="build the model with these SAM2Config.click_seed_radii (comma-separated; 'off': one "
                         "decode per prompt)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {} if args.click_seed_radius is None else {"click_seed_radius": args.click_seed_radius}
    if args.no_box_seeds:
        overrides["box_seeds"] = False
    if args.single_output_token:
        overrides["single_output_from_best"] = False
    overrides.update(radii_overrides(args.click_seed_radii))
    predictor = build_sam2_image_predictor(args.model, checkpoint=args.checkpoint, **overrides)
    for subset, rows in click_results(predictor, args.data, args.images_per_subset).items():
        best, top = [r[0] for r in rows], [r[1] for r in rows]
        print(f"{subset:12s} best-of-3 IoU {np.mean(best):.3f}  top-ranked IoU {np.mean(top):.3f}  "
              f"instances {len(best)}", flush=True)
    for subset, rows in box_results(predictor, args.data, args.images_per_subset).items():
        print(f"{subset:12s} box alone IoU {np.mean(rows):.3f}  instances {len(rows)}", flush=True)
    for subset, rows in correction_results(predictor, args.data, args.images_per_subset).items():
        print(f"{subset:12s} top-ranked IoU after 1 click {np.mean([r[0] for r in rows]):.3f}, after a correction "
              f"click {np.mean([r[1] for r in rows]):.3f}  instances {len(rows)}", flush=True)


if __name__ == "__main__":
    main()
