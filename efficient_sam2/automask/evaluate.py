"""Scoring automatic masks against ground-truth instances, to compare prompting strategies on your own data.

Metric: for every ground-truth instance, the IoU of the predicted mask that overlaps it best ("best match per GT
instance"; a prediction may serve several instances). The mean over all instances of a dataset is the
instance-weighted mean IoU; the mean of the per-image means is reported too. Pixels marked `ignore_id` in the
ground truth count neither in intersections nor in unions. This is a recall-style measure: it rewards covering
every object and does not penalise extra masks, so read it together with the number of masks and prompts.

Ground-truth layouts, for an image `<name>.<ext>`:
    <gt_dir>/<name>.png     an instance-id PNG (8-bit indexed or greyscale, or 16-bit greyscale): 0 background,
                            every other value one instance
    <gt_dir>/<name>/*.png   one binary PNG per instance (pixel > 0 is the instance)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

from ..io.frames import IMAGE_EXTENSIONS, load_image
from ..io.masks import MaskError, read_object_mask, read_palette_mask
from .amg import BoxedMask

__all__ = [
    "GroundTruthError",
    "best_match_ious",
    "instance_miou",
    "load_gt_instances",
    "find_gt",
    "list_images",
    "MethodScore",
    "AutomaskEvaluation",
    "evaluate_automask",
]


class GroundTruthError(ValueError):
    """Ground truth that is missing, unreadable or does not fit its image."""


def _boxed(preds, hw: tuple[int, int]) -> list[BoxedMask]:
    if hasattr(preds, "detach"):
        preds = preds.detach().cpu().numpy()
    if isinstance(preds, np.ndarray):
        if preds.ndim != 3:
            raise ValueError(f"predicted masks must be a (K, H, W) stack, got shape {preds.shape}")
        preds = list(preds)
    out = []
    for p in preds:
        if isinstance(p, BoxedMask):
            if tuple(p.image_hw) != tuple(hw):
                raise ValueError(f"a predicted mask is for a {p.image_hw} image, the ground truth is {hw}")
            out.append(p)
            continue
        p = np.asarray(p)
        if p.shape != tuple(hw):
            raise ValueError(f"a predicted mask has shape {p.shape}, the ground truth is {tuple(hw)}")
        b = BoxedMask.from_mask(p if p.dtype == bool else p > 0)
        if b is not None:
            out.append(b)
    return out


def best_match_ious(gt_masks, pred_masks, ignore: np.ndarray | None = None) -> np.ndarray:
    """(G,) IoU of each ground-truth instance with its best-matching prediction (0 without predictions).

    gt_masks: (G, H, W) bool; pred_masks: (P, H, W) array or a sequence of (H, W) masks / BoxedMasks;
    ignore: optional (H, W) bool of pixels excluded from every intersection and union.
    """
    gt = np.asarray(gt_masks)
    if gt.ndim != 3:
        raise ValueError(f"ground-truth masks must be a (G, H, W) stack, got shape {gt.shape}")
    gt = gt if gt.dtype == bool else gt > 0
    hw = gt.shape[1:]
    preds = _boxed(pred_masks, hw)
    valid = None
    if ignore is not None:
        ignore = np.asarray(ignore, dtype=bool)
        if ignore.shape != hw:
            raise ValueError(f"ignore mask has shape {ignore.shape}, expected {hw}")
        valid = ~ignore
        gt = gt & valid
    pred_areas = []
    for p in preds:
        if valid is None:
            pred_areas.append(p.area)
        else:
            x0, y0, x1, y1 = p.box
            pred_areas.append(int(np.count_nonzero(p.pixels & valid[y0:y1 + 1, x0:x1 + 1])))
    out = np.zeros(gt.shape[0], dtype=np.float64)
    for g in range(gt.shape[0]):
        g_area = int(np.count_nonzero(gt[g]))
        best = 0.0
        for p, p_area in zip(preds, pred_areas):
            x0, y0, x1, y1 = p.box
            inter = int(np.count_nonzero(p.pixels & gt[g, y0:y1 + 1, x0:x1 + 1]))
            union = g_area + p_area - inter
            if union > 0:
                best = max(best, inter / union)
        out[g] = best
    return out


def instance_miou(gt_masks, pred_masks, ignore: np.ndarray | None = None) -> float:
    """Mean over ground-truth instances of `best_match_ious` (nan when there is no instance)."""
    ious = best_match_ious(gt_masks, pred_masks, ignore)
    return float(ious.mean()) if ious.size else float("nan")


# ----------------------------------------------------------------------------------------------------------------
# Ground truth on disk


def _read_ids(path: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.array(img).astype(np.int64)
    except (OSError, ValueError, SyntaxError) as e:
        raise GroundTruthError(f"cannot read ground-truth PNG {path!r}: {e}") from e
    try:
        return read_palette_mask(path)[0].astype(np.int64)
    except MaskError as e:
        raise GroundTruthError(str(e)) from e


def load_gt_instances(path: str | os.PathLike, ignore_id: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    """Ground-truth instances of one image: ((G, H, W) bool masks, (H, W) ignore mask or None).

    `path` is an instance-id PNG (0 background; `ignore_id`, e.g. 255, marks pixels to ignore) or a folder of
    per-instance binary PNGs.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.lower().endswith(".png") and not f.startswith("."))
        if not files:
            raise GroundTruthError(f"ground-truth folder {path!r} holds no per-instance .png files")
        masks = []
        for f in files:
            try:
                masks.append(read_object_mask(os.path.join(path, f)))
            except (MaskError, OSError) as e:
                raise GroundTruthError(f"cannot read ground-truth mask {os.path.join(path, f)!r}: {e}") from e
        shapes = {m.shape for m in masks}
        if len(shapes) > 1:
            raise GroundTruthError(f"the per-instance masks in {path!r} have different sizes: {sorted(shapes)}")
        return np.stack(masks), None
    if not os.path.exists(path):
        raise GroundTruthError(f"ground truth not found: {path!r}")
    ids = _read_ids(path)
    ignore = None
    if ignore_id is not None:
        ignore = ids == ignore_id
        ids = np.where(ignore, 0, ids)
    labels = [int(v) for v in np.unique(ids) if v != 0]
    masks = np.stack([ids == v for v in labels]) if labels else np.zeros((0, *ids.shape), dtype=bool)
    return masks, ignore


def find_gt(gt_dir: str | os.PathLike, image_path: str | os.PathLike) -> str:
    """The ground truth of an image: `<gt_dir>/<stem>.png` or the folder `<gt_dir>/<stem>/`."""
    gt_dir = os.fspath(gt_dir)
    stem = os.path.splitext(os.path.basename(os.fspath(image_path)))[0]
    png, folder = os.path.join(gt_dir, stem + ".png"), os.path.join(gt_dir, stem)
    has_png, has_dir = os.path.isfile(png), os.path.isdir(folder)
    if has_png and has_dir:
        raise GroundTruthError(f"both {png!r} and the folder {folder!r} exist: keep one ground-truth layout")
    if has_png:
        return png
    if has_dir:
        return folder
    raise GroundTruthError(f"no ground truth for {os.fspath(image_path)!r}: expected {png!r} (instance-id PNG) "
                           f"or {folder!r} (one PNG per instance)")


def list_images(path: str | os.PathLike) -> list[str]:
    """One image file, or the image files of a folder (not recursive), sorted by name."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"input not found: {path!r}")
    if os.path.isfile(path):
        return [path]
    names = sorted(f for f in os.listdir(path)
                   if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
                   and os.path.isfile(os.path.join(path, f)))
    if not names:
        raise FileNotFoundError(f"no images ({'/'.join(IMAGE_EXTENSIONS)}) in folder {path!r}")
    return [os.path.join(path, f) for f in names]


# ----------------------------------------------------------------------------------------------------------------
# Comparing generators on a dataset


@dataclass
class MethodScore:
    """Scores of one generator over a dataset."""

    name: str
    ious: list[float] = field(default_factory=list)  # best-match IoU of every GT instance
    image_mious: list[float] = field(default_factory=list)
    num_prompts: list[int] = field(default_factory=list)
    num_masks: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def miou(self) -> float:
        """Instance-weighted mean IoU."""
        return float(np.mean(self.ious)) if self.ious else float("nan")

    @property
    def image_miou(self) -> float:
        return float(np.mean(self.image_mious)) if self.image_mious else float("nan")

    def as_dict(self) -> dict:
        def mean(v):
            return float(np.mean(v)) if v else float("nan")

        return {"name": self.name, "miou": self.miou, "image_miou": self.image_miou,
                "num_instances": len(self.ious), "num_images": len(self.image_mious),
                "mean_prompts": mean(self.num_prompts), "mean_masks": mean(self.num_masks),
                "mean_seconds": mean(self.seconds)}


@dataclass
class AutomaskEvaluation:
    methods: dict[str, MethodScore]
    missing_gt: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{'method':<16}{'mIoU':>8}{'img mIoU':>10}{'#inst':>7}{'#img':>6}{'prompts':>9}{'masks':>8}"
                 f"{'s/img':>8}"]
        for m in self.methods.values():
            d = m.as_dict()
            lines.append(f"{d['name']:<16}{100 * d['miou']:>8.2f}{100 * d['image_miou']:>10.2f}"
                         f"{d['num_instances']:>7}{d['num_images']:>6}{d['mean_prompts']:>9.1f}"
                         f"{d['mean_masks']:>8.1f}{d['mean_seconds']:>8.3f}")
        if self.missing_gt:
            lines.append(f"{len(self.missing_gt)} image(s) without ground truth were skipped")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"methods": {k: v.as_dict() for k, v in self.methods.items()}, "missing_gt": list(self.missing_gt)}


def evaluate_automask(generators, images: str | os.PathLike | Sequence[str], gt_dir: str | os.PathLike,
                      ignore_id: int | None = None, progress: bool = True) -> AutomaskEvaluation:
    """Run each generator on each image and score it against the ground truth.

    generators: one AutomaticMaskGenerator, or {name: generator} to compare several (e.g. grid vs attention).
    images: an image file, a folder of images, or a list of image paths. Images without ground truth are
    skipped and listed in `missing_gt`.
    """
    from .generator import AutomaticMaskGenerator

    if isinstance(generators, AutomaticMaskGenerator):
        generators = {generators.prompting: generators}
    if not isinstance(generators, Mapping) or not generators:
        raise TypeError("generators must be an AutomaticMaskGenerator or a non-empty {name: generator} dict")
    paths = list_images(images) if isinstance(images, (str, os.PathLike)) else [os.fspath(p) for p in images]
    if not paths:
        raise FileNotFoundError("no images to evaluate")
    scores = {name: MethodScore(name) for name in generators}
    missing = []
    iterator: Iterable[str] = paths
    if progress:
        from tqdm import tqdm

        iterator = tqdm(paths, desc="evaluate", unit="img")
    for path in iterator:
        try:
            gt_path = find_gt(gt_dir, path)
        except GroundTruthError:
            missing.append(path)
            continue
        gt, ignore = load_gt_instances(gt_path, ignore_id)
        rgb = load_image(path)
        if gt.shape[1:] != rgb.shape[:2]:
            raise GroundTruthError(f"ground truth {gt_path!r} is {gt.shape[1]}x{gt.shape[2]} but image {path!r} "
                                   f"is {rgb.shape[0]}x{rgb.shape[1]} (HxW)")
        for name, gen in generators.items():
            res = gen.generate_result(rgb)
            ious = best_match_ious(gt, res.boxed_masks, ignore)
            s = scores[name]
            if ious.size:
                s.ious.extend(ious.tolist())
                s.image_mious.append(float(ious.mean()))
            s.num_prompts.append(res.num_prompts)
            s.num_masks.append(len(res.masks))
            s.seconds.append(res.timings["total"])
    return AutomaskEvaluation(scores, missing)
