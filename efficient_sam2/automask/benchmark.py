"""The thesis's automatic-mask tables in miniature: prompting methods compared on "segment everything" images.

Data: a folder written by `efficient-sam2 synth --images` (``JPEGImages/<subset>/*.jpg`` and
``Annotations/<subset>/*.png``, every segment an instance). For each method and subset it measures

    mIoU           mean over ground-truth instances of the IoU of the best-matching predicted mask
    recall@0.5     share of ground-truth instances matched at IoU >= 0.5
    prompts, masks per image
    seconds per image: embedding (image encoder), prompts (attention read-out + HDBSCAN; 0 for grids),
                       decoding (mask decoder + filters), merging (NMS or union-find, mask encoding), total

Methods (`standard_methods`): random 1024 points, grid 16 x 16, grid 32 x 32 (all with NMS), attention
prompting with the low_latency and high_quality presets (the model's default merging and outputs: union-find on
the best output per prompt in the thesis) (Tables 2, 4, 5); `ablation_methods` crosses grid / attention prompts
with NMS / mask NMS / union-find merging (Table 3). `calibrate_sites` measures every
(global block, head) of the trunk for attention prompting (the thesis chose its head by ablation on COCO).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..io.frames import load_image
from .evaluate import best_match_ious, find_gt, list_images, load_gt_instances

__all__ = ["BenchRow", "load_image_set", "standard_methods", "ablation_methods", "run_methods", "calibrate_sites",
           "calibrate_thresholds", "calibrate_presets", "click_agreement", "load_clip_clicks",
           "markdown_table", "RANDOM_POINTS_SEED"]

RANDOM_POINTS_SEED = 0


@dataclass
class BenchRow:
    method: str
    subset: str
    images: int
    instances: int
    miou: float
    recall50: float
    prompts: float
    masks: float
    embedding: float
    prompting: float
    decoding: float
    merging: float
    total: float

    def as_dict(self) -> dict:
        return asdict(self)


def load_image_set(root: str | os.PathLike, subset: str, limit: int | None = None
                   ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """[(name, rgb (H, W, 3) uint8, gt masks (G, H, W) bool)] of one subset of a `synth --images` folder."""
    root = os.fspath(root)
    img_dir, ann_dir = os.path.join(root, "JPEGImages", subset), os.path.join(root, "Annotations", subset)
    if not os.path.isdir(img_dir):
        raise FileNotFoundError(f"no subset {subset!r} in {root!r} (expected {img_dir!r}; write one with "
                                "`efficient-sam2 synth --images N --out DIR --split val --seed 0`)")
    paths = list_images(img_dir)
    if limit is not None:
        paths = paths[:limit]
    stem = lambda path: os.path.splitext(os.path.basename(path))[0]  # noqa: E731
    return [(stem(p), load_image(p), load_gt_instances(find_gt(ann_dir, p))[0]) for p in paths]


def standard_methods(random_points: int = 1024) -> dict[str, dict]:
    """Generator settings of Tables 2, 4 and 5: {name: AutomaticMaskGenerator keyword arguments}; the thesis's
    baselines decode each point once (seed_radii=()), and "grid, model default" is what `automask` does by default
    (for the micro model 16 x 16 points at three seed radii)."""
    rng = np.random.default_rng(RANDOM_POINTS_SEED)
    return {
        f"random {random_points}": dict(prompting="grid", points_per_side=None,
                                        point_grids=[rng.random((random_points, 2))], seed_radii=()),
        "grid 16x16": dict(prompting="grid", points_per_side=16, seed_radii=()),
        "grid 32x32": dict(prompting="grid", points_per_side=32, seed_radii=()),
        DEFAULT_GRID: dict(prompting="grid"),
        "attention low_latency": dict(prompting="attention", preset="low_latency"),
        "attention high_quality": dict(prompting="attention", preset="high_quality"),
    }


DEFAULT_GRID = "grid (model default)"
"""The row of `automask`'s default grid prompting (the model's points per side and seed radii)."""

CEILING = "grid 32x32, every candidate (ceiling)"
"""The ablation row that keeps every candidate of the 32 x 32 grid (no thresholds, only identical masks merged)."""


def ablation_methods() -> dict[str, dict]:
    """Table 3: grid 32 x 32 or attention (low_latency) prompts x box NMS, mask NMS or union-find merging (the
    model's default outputs and prompts per attention prompt), attention with disk seeds of region radii instead
    of region seeds, with click seeds alone, with three region seeds, without spread prompts, from the cluster
    medoids only, the
    thesis's attention exactly (medoids, the best output per prompt, union-find), and the ceiling of the grid's
    candidates (`CEILING`)."""
    return {
        "grid 32x32 + NMS": dict(prompting="grid", points_per_side=32, merge="nms"),
        "grid 32x32 + mask-NMS": dict(prompting="grid", points_per_side=32, merge="mask-nms"),
        "grid 32x32 + union-find": dict(prompting="grid", points_per_side=32, merge="union-find"),
        "attention + NMS": dict(prompting="attention", preset="low_latency", merge="nms"),
        "attention + mask-NMS": dict(prompting="attention", preset="low_latency", merge="mask-nms"),
        "attention, disk seeds (region radii) + mask-NMS": dict(prompting="attention", preset="low_latency",
                                                                merge="mask-nms", region_seeds=False),
        "attention, click seeds only + mask-NMS": dict(prompting="attention", preset="low_latency",
                                                       merge="mask-nms", region_seeds=False, region_radii=False),
        "attention, 3 region seeds + mask-NMS": dict(prompting="attention", preset="low_latency", merge="mask-nms",
                                                     region_seeds=("share", "share+1", "cluster")),
        "attention, no spread prompts + mask-NMS": dict(prompting="attention", preset="low_latency",
                                                        merge="mask-nms", cluster_spacing=0),
        "attention medoids only + mask-NMS": dict(prompting="attention", preset="low_latency", merge="mask-nms",
                                                  noise_prompts=False, cluster_spacing=0),
        "attention + union-find": dict(prompting="attention", preset="low_latency", merge="union-find"),
        "attention best-of-3 + union-find (thesis)": dict(prompting="attention", preset="low_latency",
                                                          merge="union-find", attention_masks="best",
                                                          noise_prompts=False, cluster_spacing=0,
                                                          region_radii=False, region_seeds=False),
        # every output of every grid prompt, nothing filtered or merged away: the coverage no threshold or merging
        # rule can exceed, so a row below it shows what the filters cost and a target above it needs a better model
        CEILING: dict(prompting="grid", points_per_side=32, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                      merge="mask-nms", merge_thresh=1.0),
    }


def _score(gen, data, name: str, subset: str) -> BenchRow:
    ious, prompts, masks = [], [], []
    t = {k: [] for k in ("embedding", "prompting", "decoding", "merging", "total")}
    for _, rgb, gt in data:
        res = gen.generate_result(rgb)
        ious.extend(best_match_ious(gt, res.boxed_masks).tolist())
        prompts.append(res.num_prompts)
        masks.append(len(res.masks))
        s = res.timings
        t["embedding"].append(s["embedding"])
        t["prompting"].append(s["attention"] + s["clustering"])
        t["decoding"].append(s["decoding"])
        t["merging"].append(s["merging"] + s["encoding"])
        t["total"].append(s["total"] - s["load"])
    ious = np.asarray(ious, dtype=np.float64)
    mean = lambda v: float(np.mean(v)) if len(v) else float("nan")  # noqa: E731
    return BenchRow(name, subset, len(data), int(ious.size), mean(ious), mean(ious >= 0.5), mean(prompts),
                    mean(masks), *(mean(t[k]) for k in ("embedding", "prompting", "decoding", "merging", "total")))


def run_methods(model, data: dict[str, list], methods: dict[str, dict], common: dict | None = None,
                log: Callable[[str], None] | None = None) -> list[BenchRow]:
    """Score every method on every subset: data {subset: load_image_set(...)}; common: keyword arguments given to
    every generator (thresholds). One warm-up image per method is run first and not counted."""
    from .generator import AutomaticMaskGenerator

    rows = []
    for name, kw in methods.items():
        gen = AutomaticMaskGenerator(model, **{**(common or {}), **kw})
        first = next(iter(data.values()))
        if first:
            gen.generate_result(first[0][1])  # warm-up (allocations, lazy imports)
        for subset, items in data.items():
            row = _score(gen, items, name, subset)
            rows.append(row)
            if log is not None:
                log(format_row(row))
    return rows


def calibrate_sites(model, data: Sequence, preset: str = "low_latency", common: dict | None = None,
                    log: Callable[[str], None] | None = None) -> list[tuple[int, int, BenchRow]]:
    """Attention prompting with every (global block, head) of the trunk on `data` (one subset's images):
    [(block, head, row)], best mIoU first."""
    from .generator import AutomaticMaskGenerator

    trunk = model.image_encoder.trunk
    out = []
    for b, blk in enumerate(trunk.blocks):
        if blk.window_size != 0 or blk.q_stride is not None:
            continue
        for h in range(blk.attn.num_heads):
            gen = AutomaticMaskGenerator(model, "attention", preset=preset, block=b, head=h, **(common or {}))
            row = _score(gen, data, f"block {b} head {h}", "")
            out.append((b, h, row))
            if log is not None:
                log(format_row(row))
    out.sort(key=lambda r: -r[2].miou)
    return out


def calibrate_thresholds(model, data: dict[str, list], iou_values=(0.0, 0.2, 0.5, 0.8),
                         stability_values=(0.0, 0.8, 0.95), method: dict | None = None,
                         log: Callable[[str], None] | None = None) -> list[tuple[float, float, float, float]]:
    """mIoU and recall@0.5 of one method (default grid 16 x 16 with NMS) for every (pred_iou_thresh,
    stability_score_thresh) pair over every subset in `data`: [(iou_t, stab_t, miou, recall50)], best mIoU first."""
    from .generator import AutomaticMaskGenerator

    method = method or dict(prompting="grid", points_per_side=16)
    out = []
    for it in iou_values:
        for st in stability_values:
            gen = AutomaticMaskGenerator(model, **method, pred_iou_thresh=it, stability_score_thresh=st)
            rows = [_score(gen, items, "", sub) for sub, items in data.items()]
            n = sum(r.instances for r in rows)
            miou = sum(r.miou * r.instances for r in rows) / max(n, 1)
            rec = sum(r.recall50 * r.instances for r in rows) / max(n, 1)
            out.append((it, st, miou, rec))
            if log is not None:
                log(f"pred_iou_thresh={it} stability_score_thresh={st}  mIoU={100 * miou:.1f}  "
                    f"recall@0.5={100 * rec:.1f}  masks/img={np.mean([r.masks for r in rows]):.1f}")
    out.sort(key=lambda r: -r[2])
    return out


def click_agreement(model, rgb: np.ndarray, clicks: Sequence[tuple[float, float]], generator):
    """Does an automatic mask cover what a single click selects? For every click (x, y): the image predictor's
    mask for that click alone (multimask, best predicted IoU) and its IoU with the best-matching automatic mask of
    `generator`. Returns ([IoU per click], the click masks (K, H, W) bool, the AutomaskResult)."""
    from ..predictors.image import ImagePredictor

    pred = ImagePredictor(model)
    pred.set_image(rgb)
    res = generator.generate_result(rgb)
    masks = []
    for x, y in clicks:
        m, scores, _ = pred.predict(point_coords=np.array([[x, y]], dtype=np.float32), point_labels=np.array([1]),
                                    multimask_output=True)
        masks.append(np.asarray(m[int(np.argmax(scores))], dtype=bool))
    masks = np.stack(masks) if masks else np.zeros((0, *rgb.shape[:2]), bool)
    return best_match_ious(masks, res.boxed_masks).tolist(), masks, res


def load_clip_clicks(folder: str | os.PathLike) -> list[tuple[str, np.ndarray, list[tuple[float, float]]]]:
    """First frames of the clips written by scripts/fetch_opencv_clips.sh and the first click of every object in
    their `<clip>.clicks.prompts`: [(clip, rgb, [(x, y), ...])]."""
    from ..io.prompts import load_prompts

    folder = os.fspath(folder)
    out = []
    for f in sorted(os.listdir(folder)):
        if not f.endswith(".clicks.prompts"):
            continue
        clip = f[: -len(".clicks.prompts")]
        frames = sorted(x for x in os.listdir(os.path.join(folder, clip)) if x.lower().endswith((".jpg", ".png")))
        if not frames:
            continue
        prompts = load_prompts(os.path.join(folder, f))
        clicks = [(float(p.points[0][0]), float(p.points[0][1])) for p in prompts.prompts
                  if p.frame == 0 and p.points is not None and len(p.points)]
        out.append((clip, load_image(os.path.join(folder, clip, frames[0])), clicks))
    if not out:
        raise FileNotFoundError(f"no <clip>.clicks.prompts with frames in {folder!r} (run "
                                "scripts/fetch_opencv_clips.sh DIR)")
    return out


PRESET_GRID = ((1, 2), (2, 3), (2, 5), (2, 10), (5, 40))
"""(min_samples, min_cluster_size) pairs measured by `calibrate_presets` (the thesis's four and a finer one)."""


def calibrate_presets(model, data: dict[str, list], common: dict | None = None, grid=PRESET_GRID,
                      log: Callable[[str], None] | None = None) -> list[BenchRow]:
    """Attention prompting with every HDBSCAN setting of `grid`, merged by union-find and by NMS, on `data`."""
    methods = {}
    for ms, mcs in grid:
        for merge in ("union-find", "nms"):
            methods[f"({ms}, {mcs}) + {merge}"] = dict(prompting="attention", min_samples=ms, min_cluster_size=mcs,
                                                        merge=merge)
    return run_methods(model, data, methods, common, log=log)


COLUMNS = ("method", "subset", "mIoU", "recall@0.5", "prompts/img", "masks/img", "embed s", "prompts s",
           "decode s", "merge s", "total s")


def _cells(r: BenchRow) -> list[str]:
    return [r.method, r.subset, f"{100 * r.miou:.1f}", f"{100 * r.recall50:.1f}", f"{r.prompts:.0f}",
            f"{r.masks:.1f}", f"{r.embedding:.3f}", f"{r.prompting:.3f}", f"{r.decoding:.3f}", f"{r.merging:.3f}",
            f"{r.total:.3f}"]


def format_row(r: BenchRow) -> str:
    return "  ".join(f"{k}={v}" for k, v in zip(COLUMNS, _cells(r)))


def markdown_table(rows: Sequence[BenchRow]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def threads(n: int) -> None:
    if n > 0:
        torch.set_num_threads(n)
