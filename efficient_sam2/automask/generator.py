"""Automatic mask generation: segment everything in an image with point prompts chosen automatically.

Two ways of choosing the prompts share one pipeline:

* "grid" (the reference generator's behaviour): a regular points_per_side x points_per_side grid of points per
  crop; every point yields three masks (multimask); masks are kept if their predicted IoU > pred_iou_thresh and
  their stability score >= stability_score_thresh; duplicates are removed by box NMS (box_nms_thresh), then across
  crop layers by NMS preferring smaller crops (crop_nms_thresh).
* "attention" (the Efficient SAM2 thesis): one head of one global-attention block of the Hiera trunk is read
  out, its attention rows are clustered with HDBSCAN (cosine distance), each cluster's medoid token becomes one
  point prompt, each prompt yields one mask (the best of the three by predicted IoU), and overlapping masks are
  merged by union-find on the intersection over the smaller mask. Per model, measurement may choose otherwise
  (`MODEL_ATTENTION_DECODING`: the micro model keeps all three outputs and de-duplicates them by mask NMS).

Pipeline per crop (the whole image is crop 0):

    preprocess -> image encoder (once; attention read out on the way) -> prompts -> batched decoder
    -> predicted-IoU filter, upsampling to the crop, stability filter, binarisation, boxes, masks cut by an inner
       crop edge dropped, all as tensors over the crop's whole batch (`batched.py`)
    -> de-duplicate (box NMS on the batch, then the survivors' masks are materialised and cleaned of small
       regions; or union-find merging) -> records (COCO RLE)

The decoder runs on `points_per_batch` prompts at a time against the shared image embedding; upsampled logits
are processed in cache-sized slices, so memory stays bounded for large images. Every stage is timed. Thresholds
left as None take the model's defaults (`default_thresholds`: SAM's, or values measured for the micro model).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..io.frames import load_image
from ..modeling.sam2 import SAM2Model
from ..predictors.image import ImagePredictor
from . import attention_prompts as ap
from .amg import BoxedMask, clean_small_regions
from .batched import Candidates, batched_nms, filter_candidates, mask_nms, materialize
from .grid import build_layer_point_grids, crop_points, generate_crop_boxes
from .merge import box_nms, boxed_merge_groups

__all__ = ["AutomaticMaskGenerator", "AutomaskResult", "PROMPTINGS", "MERGES", "OUTPUT_MODES", "STAGES",
           "ATTENTION_MASKS", "default_merge", "default_attention_masks", "default_noise_prompts"]

PROMPTINGS = ("grid", "attention")
MERGES = ("nms", "mask-nms", "union-find")
ATTENTION_MASKS = ("best", "all")
OUTPUT_MODES = ("coco_rle", "uncompressed_rle", "binary_mask")
STAGES = ("load", "embedding", "attention", "clustering", "decoding", "merging", "encoding")
DEFAULT_MERGE_THRESH = 0.5
"""Union-find's threshold on the intersection over the smaller mask."""
DEFAULT_MASK_NMS_THRESH = 0.6
"""Mask NMS's threshold on the mask IoU. `automask --benchmark` (stage d weights, grid 32 x 32, 8 images per
subset; BENCHMARKS.md "Mask NMS at 0.6"): 0.5 / 0.6 / 0.7 give mIoU 51.2 / 51.8 / 52.6 on instances (salient 65.0 /
68.9 / 70.8) at 526 / 655 / 838 masks per image, and 8 / 10 / 10 of the 11 clicked objects of the real clips
covered at IoU >= 0.7: at 0.5 a higher-scored mask overlapping a clicked pedestrian or face by more than half
suppressed the one that matched the click."""
DEFAULT_THRESHOLDS = {"pred_iou_thresh": 0.8, "stability_score_thresh": 0.95}
"""SAM's filters, for the official checkpoints."""
MODEL_THRESHOLDS: dict[str, dict[str, float]] = {
    # `automask data/images_val --calibrate` (click-seeded weights, grid 16x16): mIoU 37.7 with both filters off,
    # 28.2 with a predicted-IoU filter of 0.2, 1.0 with 0.5, <= 1.5 with any stability filter >= 0.8 (the micro
    # model's IoU head and logits are softer than SAM's), so both filters are off: NMS removes the duplicates.
    "sam2.1_hiera_micro": {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0},
}
"""Per model (config name), filters chosen by measurement where SAM's would drop good masks (the micro model's
IoU head is calibrated on synthetic data and its logits are softer); see BENCHMARKS.md "Automatic masks"."""


MODEL_GRID_MERGE: dict[str, str] = {
    # `automask data/images_val --benchmark` on the stage c weights: greedy NMS on mask IoU (0.5) instead of box
    # NMS (0.7) keeps about as many masks and covers far more instances (grid 32 x 32, BENCHMARKS.md "Mask NMS"):
    # the micro model's candidates are good (the best of them covers 51 / 60 / 46 % of the instances) but box NMS
    # drops nested and overlapping objects whose boxes coincide.
    "sam2.1_hiera_micro": "mask-nms",
}
"""Per model (config name), the default de-duplication of grid prompting where measurement chose another than
SAM's box NMS."""


MODEL_GRID_PROMPTS: dict[str, dict] = {
    # `automask --benchmark` on the stage d weights, 8 held-out images per subset, filters off, mask NMS 0.6
    # (BENCHMARKS.md "Seed radii"): a click seed's size sets the size of the mask the micro model answers with
    # (radius 12: objects of 2-8 % of the image were covered at IoU >= 0.5 for 29 / 10 % of the instances /
    # camouflaged ones, every candidate of a 32 x 32 grid kept; radius 24: 96 / 90 %). A 16 x 16 grid at radii 12,
    # 24 and 36 (768 prompts) covers 73.0 / 81.5 / 80.5 % of the instances (instances / salient / camouflaged;
    # grid 32 x 32 at radius 12: 53.9 / 74.1 / 31.7 %) at mIoU 58.4 / 68.4 / 60.8 (51.8 / 68.9 / 41.7).
    "sam2.1_hiera_micro": {"points_per_side": 16, "seed_radii": (12.0, 24.0, 36.0)},
}
"""Per model (config name), the grid that grid prompting uses when the caller gives none: points per side and the
click-seed radii every point is decoded with (models with click seeds only). Others: 32 x 32, one decode per point."""


def default_grid_prompts(model) -> dict:
    """{"points_per_side", "seed_radii"} of the default grid of `model` (a SAM2Model or SAM2Config): 32 and None
    (each point decoded once, with the model's own seed if any), or the model's measured choice."""
    cfg = getattr(model, "cfg", model)
    grid = {"points_per_side": 32, "seed_radii": None, **MODEL_GRID_PROMPTS.get(getattr(cfg, "name", None), {})}
    if not getattr(cfg, "click_seed_radius", 0) > 0:  # the same model built without its seeds
        grid["seed_radii"] = None
    return grid


MODEL_ATTENTION_DECODING: dict[str, dict] = {
    # `automask data/images_val --benchmark` on the stage c weights, 8 images per subset (BENCHMARKS.md "Attention
    # prompts keep every output"): union-find chains the micro model's overlapping masks into 1-5 masks per image
    # (high_quality mIoU 15.8 / 34.7 / 19.9 instances / salient / camouflaged); mask NMS on all three outputs of
    # every prompt keeps 74-90 masks and gives 34.4 / 51.0 / 35.5 from the same 72 prompts (stage d: 37.4 / 56.9 /
    # 35.3).
    # Noise prompts (`automask --benchmark`, stage d weights, 8 images per subset; BENCHMARKS.md "Noise tokens as
    # prompts"): HDBSCAN leaves the tokens of objects smaller than a cluster as noise, so medoids alone never prompt
    # them; high_quality with them 37.4 / 56.9 / 35.3 -> 42.5 / 63.2 / 38.1 mIoU at 117 instead of 72 prompts.
    # Region radii (BENCHMARKS.md "Seed radii"): each attention prompt's click seed as large as its share of the
    # cluster (x 1.5, 12-48 px) instead of the model's 12 px: low_latency 45.1 / 64.1 / 41.0 -> 47.6 / 66.4 / 48.4
    # mIoU at the same prompts (x 1, 12-36 px: 47.6 / 65.6 / 43.5; x 2, 12-64 px: 45.4 / 67.6 / 51.5), high_quality
    # 46.6 / 64.6 / 40.7 -> 48.9 / 65.4 / 48.9. Since the presets' region seeds (attention_prompts.MODEL_ATTENTION,
    # BENCHMARKS.md "Region seeds") they apply only where region seeds are off.
    "sam2.1_hiera_micro": {"merge": "mask-nms", "masks": "all", "noise": True, "region_radii": (12.0, 48.0, 1.5)},
}
"""Per model (config name), how attention prompting decodes and de-duplicates where measurement chose otherwise
than the thesis (the best of the three outputs per prompt, union-find merging)."""


def default_grid_merge(model) -> str:
    """The de-duplication grid prompting uses when the caller gives none: "nms" (SAM's), or the model's measured
    choice (`MODEL_GRID_MERGE`)."""
    cfg = getattr(model, "cfg", model)
    return MODEL_GRID_MERGE.get(getattr(cfg, "name", None), "nms")


def default_merge(model, prompting: str) -> str:
    """The de-duplication used when the caller gives none: for grid prompting `default_grid_merge`; for attention
    prompting union-find (the thesis's), or the model's measured choice (`MODEL_ATTENTION_DECODING`)."""
    if prompting == "grid":
        return default_grid_merge(model)
    cfg = getattr(model, "cfg", model)
    return MODEL_ATTENTION_DECODING.get(getattr(cfg, "name", None), {}).get("merge", "union-find")


def default_noise_prompts(model) -> bool:
    """Whether attention prompting also prompts every token HDBSCAN left as noise when the caller does not say:
    False (the thesis's: one prompt per cluster medoid), or the model's measured choice (True for the micro
    model)."""
    cfg = getattr(model, "cfg", model)
    return bool(MODEL_ATTENTION_DECODING.get(getattr(cfg, "name", None), {}).get("noise", False))


def default_region_radii(model) -> tuple[float, float, float] | None:
    """(low, high, scale) of `attention_prompts.region_radii` for attention prompts when the caller does not say:
    None (every prompt at the model's own seed radius, or no seed), or the model's measured choice (micro)."""
    cfg = getattr(model, "cfg", model)
    if not getattr(cfg, "click_seed_radius", 0) > 0:
        return None
    return MODEL_ATTENTION_DECODING.get(getattr(cfg, "name", None), {}).get("region_radii")


def default_attention_masks(model) -> str:
    """Which outputs of an attention prompt become candidates when the caller does not say: "best" (the thesis's:
    the output with the best predicted IoU), or the model's measured choice ("all" three for the micro model)."""
    cfg = getattr(model, "cfg", model)
    return MODEL_ATTENTION_DECODING.get(getattr(cfg, "name", None), {}).get("masks", "best")


def default_thresholds(model) -> dict[str, float]:
    """pred_iou_thresh and stability_score_thresh used when the caller gives none."""
    cfg = getattr(model, "cfg", model)
    return {**DEFAULT_THRESHOLDS, **MODEL_THRESHOLDS.get(getattr(cfg, "name", None), {})}


@dataclass
class _Candidate:
    mask: BoxedMask
    iou: float
    stability: float
    point: tuple[float, float]  # full-image pixels
    crop_box: tuple[int, int, int, int]  # exclusive xyxy


@dataclass
class AutomaskResult:
    """Masks of one image, with what it cost.

    masks: records, best predicted IoU first, each with
        segmentation   COCO RLE {"size": [H, W], "counts": str} (or per `output_mode`)
        area           pixels
        bbox           [x, y, width, height] (COCO convention)
        predicted_iou  the decoder's IoU prediction (the score)
        stability_score
        point_coords   [[x, y], ...] the prompt point(s), image pixels; merged masks list every member's point,
                       the best member's first
        crop_box       [x, y, width, height] of the crop the mask came from
        num_merged     how many decoded masks this record merges (1 without merging)
    timings: seconds per stage (see STAGES) and "total".
    num_prompts: point prompts decoded (over all crops).
    attention: for attention prompting, the block, head, HDBSCAN settings, clusters and noise tokens per crop.
    boxed_masks: the masks as `BoxedMask`s (tight box + pixels), in the order of `masks`.
    """

    masks: list[dict]
    image_hw: tuple[int, int]
    prompting: str
    num_prompts: int
    timings: dict[str, float]
    attention: dict | None = None
    boxed_masks: list[BoxedMask] = field(default_factory=list, repr=False)

    def binary_masks(self) -> np.ndarray:
        """(K, H, W) bool masks in the order of `masks`."""
        if not self.boxed_masks:
            return np.zeros((0, *self.image_hw), dtype=bool)
        return np.stack([m.to_full() for m in self.boxed_masks])

    def to_json(self) -> dict:
        """A JSON-serialisable dict (binary masks are written as COCO RLE)."""
        masks = []
        for rec, bm in zip(self.masks, self.boxed_masks):
            rec = dict(rec)
            if isinstance(rec["segmentation"], np.ndarray):
                rec["segmentation"] = bm.to_rle()
            masks.append(rec)
        out = {
            "height": self.image_hw[0],
            "width": self.image_hw[1],
            "prompting": self.prompting,
            "num_prompts": self.num_prompts,
            "num_masks": len(self.masks),
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
        }
        if self.attention is not None:
            out["attention"] = self.attention
        out["masks"] = masks
        return out


class _Clock:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.t = {s: 0.0 for s in STAGES}

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


class AutomaticMaskGenerator:
    """Segment everything in an image with SAM 2, prompted by a point grid or by the encoder's attention.

    Args:
        model: a SAM2Model (from `build_sam2`), or a predictor holding one in `.model`.
        prompting: "grid" or "attention".
        points_per_side: grid points per side on crop layer 0 (grid prompting; default: the model's,
            `default_grid_prompts`: 32, or 16 at three seed radii for the micro model).
        points_per_batch: prompts decoded together (memory vs speed).
        point_grids: instead of points_per_side, one (K, 2) array of normalised [0, 1] (x, y) points per crop
            layer (grid prompting).
        pred_iou_thresh: keep masks whose predicted IoU is > this (0 disables the filter; None: the model's
            default, `default_thresholds`: SAM's 0.8, or a measured value for the micro model).
        stability_score_thresh: keep masks whose stability score is >= this (0 disables the filter; None: the
            model's default, SAM's 0.95 or a measured value).
        stability_score_offset: logit offset of the stability score (IoU of the masks at threshold +- offset).
        mask_threshold: logit threshold that binarises masks.
        box_nms_thresh: box IoU above which NMS drops the lower-scored mask (merge="nms").
        crop_n_layers: extra crop layers; layer i cuts the image into (2**i)**2 overlapping crops.
        crop_nms_thresh: box IoU of the NMS across crops (merge="nms", crop_n_layers > 0).
        crop_overlap_ratio: overlap of the layer-1 crops as a fraction of the short image side.
        crop_n_points_downscale_factor: layer i uses points_per_side / factor**i points per side.
        min_mask_region_area: fill holes and remove islands smaller than this many pixels (0: off).
        multimask_output: decode three masks per point. Grid prompting keeps all three (each is filtered);
            attention prompting keeps what `attention_masks` says.
        output_mode: "coco_rle" (compressed string counts), "uncompressed_rle" or "binary_mask".
        preset: HDBSCAN preset of attention prompting: low_latency, high_quality, sam3d, sam1.
        min_samples, min_cluster_size: override the preset's HDBSCAN settings.
        block, head: which global-attention block (0-based index in the trunk) and head to read (default:
            `attention_prompts.default_attention_site`, the first global block, head 2).
        attention_chunk: query rows per softmax chunk when computing the attention.
        merge: "nms" (box NMS), "mask-nms" (greedy NMS on the masks' IoU, see `batched.mask_nms`) or "union-find"
            (default: `default_merge`: for grid box NMS as SAM, for attention union-find as the thesis; mask NMS
            for the micro model in both).
        attention_masks: with multimask output, which outputs of an attention prompt become candidates: "best"
            (the one with the best predicted IoU, the thesis's) or "all" three (default: `default_attention_masks`:
            best, all for the micro model).
        noise_prompts: attention prompting also prompts every token HDBSCAN left as noise (tokens of regions
            smaller than a cluster), besides the cluster medoids (default: `default_noise_prompts`: off as in the
            thesis, on for the micro model).
        cluster_spacing: attention prompting also prompts each cluster's tokens spread this many token cells apart
            (farthest-point sampling from the medoid, `attention_prompts.spread_prompts`; 0: the medoid only, as in
            the thesis; default: the preset's, 0 but for the micro model's presets).
        seed_radii: models with click seeds (the micro model) only: every prompt point is decoded once per radius
            (input pixels), since a seed's size sets the size of the mask it asks for; () or None: once, at the
            model's own radius. Default: with the model's default grid (no points_per_side or point_grids given),
            the model's radii (`MODEL_GRID_PROMPTS`: 12, 24, 36 for micro), else ().
        region_radii: attention prompting on models with click seeds: (low, high, scale): each prompt's seed is as
            large as its share of its cluster (`attention_prompts.region_radii`), so a prompt standing for a large
            region asks for a large mask; False: every prompt at the model's own radius. Default: the model's
            (`MODEL_ATTENTION_DECODING`: (12, 48, 1.5) for micro) where there are no region seeds, else off.
        region_seeds: attention prompting on models with click seeds: each prompt decoded once per kind, its click
            seed joined by a region of the token grid (`attention_prompts.region_masks`): "share" (its share of its
            cluster), "share+N" (that share grown by N token cells), "cluster" (its whole cluster); a model that
            follows its seeds answers with a mask of that shape. False: none. Default: the preset's
            (`ClusteringPreset.seeds`: ("share",) for micro's low_latency, ("share", "share+1") for its
            high_quality), unless seed_radii or region_radii are given.
        merge_thresh: union-find threshold on the intersection over the smaller mask (default 0.5), or the mask
            IoU above which mask NMS drops the lower-scored mask (default 0.6).
    """

    def __init__(
        self,
        model: SAM2Model,
        prompting: str = "grid",
        *,
        points_per_side: int | None = None,
        points_per_batch: int = 64,
        point_grids: Sequence[np.ndarray] | None = None,
        pred_iou_thresh: float | None = None,
        stability_score_thresh: float | None = None,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        min_mask_region_area: int = 0,
        multimask_output: bool = True,
        output_mode: str = "coco_rle",
        preset: str = "low_latency",
        min_samples: int | None = None,
        min_cluster_size: int | None = None,
        block: int | None = None,
        head: int | None = None,
        attention_chunk: int = 1024,
        merge: str | None = None,
        merge_thresh: float | None = None,
        attention_masks: str | None = None,
        noise_prompts: bool | None = None,
        cluster_spacing: float | None = None,
        seed_radii: Sequence[float] | None = None,
        region_radii: Sequence[float] | bool | None = None,
        region_seeds: Sequence[str] | str | bool | None = None,
    ) -> None:
        if not isinstance(model, SAM2Model):
            inner = getattr(model, "model", None)
            if not isinstance(inner, SAM2Model):
                raise TypeError(f"model must be a SAM2Model (see build_sam2) or a predictor holding one, got "
                                f"{type(model).__name__}")
            model = inner
        if prompting not in PROMPTINGS:
            raise ValueError(f"prompting must be one of {PROMPTINGS}, got {prompting!r}")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
        if merge is None:
            merge = default_merge(model, prompting)
        if attention_masks is None:
            attention_masks = default_attention_masks(model)
        if attention_masks not in ATTENTION_MASKS:
            raise ValueError(f"attention_masks must be one of {ATTENTION_MASKS}, got {attention_masks!r}")
        noise_prompts = default_noise_prompts(model) if noise_prompts is None else noise_prompts
        if not isinstance(noise_prompts, (bool, np.bool_)):
            raise TypeError(f"noise_prompts must be True or False, got {noise_prompts!r}")
        defaults = default_thresholds(model)
        pred_iou_thresh = defaults["pred_iou_thresh"] if pred_iou_thresh is None else pred_iou_thresh
        if stability_score_thresh is None:
            stability_score_thresh = defaults["stability_score_thresh"]
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        _check_range("pred_iou_thresh", pred_iou_thresh, 0.0, 1.0)
        _check_range("stability_score_thresh", stability_score_thresh, 0.0, 1.0)
        _check_range("box_nms_thresh", box_nms_thresh, 0.0, 1.0)
        _check_range("crop_nms_thresh", crop_nms_thresh, 0.0, 1.0)
        if merge_thresh is None:
            merge_thresh = DEFAULT_MASK_NMS_THRESH if merge == "mask-nms" else DEFAULT_MERGE_THRESH
        merge_thresh = float(merge_thresh)
        _check_range("merge_thresh", merge_thresh, 0.0, 1.0)
        if stability_score_offset < 0:
            raise ValueError(f"stability_score_offset must be >= 0, got {stability_score_offset}")
        if points_per_batch < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {points_per_batch}")
        if min_mask_region_area < 0:
            raise ValueError(f"min_mask_region_area must be >= 0, got {min_mask_region_area}")
        if attention_chunk < 1:
            raise ValueError(f"attention_chunk must be >= 1, got {attention_chunk}")
        if crop_n_layers < 0:
            raise ValueError(f"crop_n_layers must be >= 0, got {crop_n_layers}")

        self.model = model
        self.prompting = prompting
        self.point_grids: list[np.ndarray] | None = None
        if prompting == "grid":
            if point_grids is not None:
                grids = [np.asarray(g, dtype=np.float64).reshape(-1, 2) for g in point_grids]
                if len(grids) != crop_n_layers + 1:
                    raise ValueError(f"point_grids needs one grid per crop layer ({crop_n_layers + 1}), got "
                                     f"{len(grids)}")
                if any(g.size and (g.min() < 0 or g.max() > 1) for g in grids):
                    raise ValueError("point_grids must hold normalised (x, y) points in [0, 1]")
                self.point_grids = grids
            else:
                if points_per_side is None:  # the model's default grid, with its seed radii unless given
                    grid = default_grid_prompts(model)
                    points_per_side = grid["points_per_side"]
                    if seed_radii is None:
                        seed_radii = grid["seed_radii"]
                self.point_grids = build_layer_point_grids(points_per_side, crop_n_layers,
                                                           crop_n_points_downscale_factor)
        self.points_per_side = points_per_side
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_score_thresh = float(stability_score_thresh)
        self.stability_score_offset = float(stability_score_offset)
        self.mask_threshold = float(mask_threshold)
        self.box_nms_thresh = float(box_nms_thresh)
        self.crop_n_layers = int(crop_n_layers)
        self.crop_nms_thresh = float(crop_nms_thresh)
        self.crop_overlap_ratio = float(crop_overlap_ratio)
        self.crop_n_points_downscale_factor = int(crop_n_points_downscale_factor)
        self.min_mask_region_area = int(min_mask_region_area)
        self.multimask_output = bool(multimask_output)
        self.output_mode = output_mode
        self.merge = merge
        self.merge_thresh = merge_thresh
        self.attention_masks = attention_masks
        self.noise_prompts = bool(noise_prompts)
        if seed_radii is not None:
            seed_radii = tuple(float(r) for r in seed_radii)
            if any(not r > 0 for r in seed_radii):
                raise ValueError(f"seed_radii must be radii > 0 (input pixels), got {seed_radii}")
        if seed_radii:
            if not model.sam_prompt_encoder.click_seed_radius > 0:
                raise ValueError(f"seed_radii needs a model with click seeds (SAM2Config.click_seed_radius > 0); "
                                 f"{model.cfg.name} has none")
        self.seed_radii = seed_radii or None  # () or None: one decode per point, at the model's own radius
        self.attention_chunk = int(attention_chunk)
        self.preset = preset
        self.block = self.head = None
        self.min_samples = self.min_cluster_size = self.cluster_spacing = None
        if prompting == "attention":
            presets = ap.presets_for(model)
            if preset not in presets:
                raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(presets)}")
            p = presets[preset]
            self.min_samples = int(min_samples if min_samples is not None else p.min_samples)
            self.min_cluster_size = int(min_cluster_size if min_cluster_size is not None else p.min_cluster_size)
            if self.min_samples < 1:
                raise ValueError(f"min_samples must be >= 1, got {self.min_samples}")
            if self.min_cluster_size < 2:
                raise ValueError(f"min_cluster_size must be >= 2, got {self.min_cluster_size}")
            self.cluster_spacing = float(p.spacing if cluster_spacing is None else cluster_spacing)
            if not self.cluster_spacing >= 0:
                raise ValueError(f"cluster_spacing must be >= 0 (0: medoids only), got {cluster_spacing}")
            d_block, d_head = ap.default_attention_site(model)
            self.block = d_block if block is None else block
            self.head = d_head if head is None else head
            ap.check_attention_site(model, self.block, self.head)
            ap.require_hdbscan()  # fail now, not after the first image embedding
        self.region_seeds = self._resolve_region_seeds(model, prompting, region_seeds, region_radii)
        self.region_radii = self._resolve_region_radii(model, prompting, region_radii)
        self._predictor = ImagePredictor(model, mask_threshold=mask_threshold)

    # ------------------------------------------------------------------------------------------------------------

    def _resolve_region_seeds(self, model, prompting: str, region_seeds, region_radii) -> tuple[str, ...]:
        """The region seeds of attention prompts: None -> the preset's (with click seeds and no seed or region radii
        given), False or () -> none; validated."""
        seeded = model.sam_prompt_encoder.click_seed_radius > 0
        if region_seeds is None:
            if prompting != "attention" or not seeded or self.seed_radii or region_radii not in (None, False, ()):
                return ()
            region_seeds = ap.presets_for(model)[self.preset].seeds
        if region_seeds is True:
            raise ValueError("region_seeds must be kinds (share, share+N, cluster), None (the preset's) or False")
        if region_seeds is False or (not isinstance(region_seeds, str) and len(region_seeds) == 0):
            return ()
        seeds = ap.parse_region_seeds(region_seeds)
        if prompting != "attention":
            raise ValueError("region_seeds applies to attention prompting only")
        if not seeded:
            raise ValueError(f"region_seeds needs a model with click seeds; {model.cfg.name} has none")
        if self.seed_radii is not None or region_radii not in (None, False, ()):
            raise ValueError("region_seeds sets each prompt's seed; seed_radii and region_radii set a disk's "
                             "radius: choose one")
        return seeds

    def _resolve_region_radii(self, model, prompting: str, region_radii) -> tuple[float, float, float] | None:
        """(low, high, scale) of attention prompts' seed radii: None -> the model's (when there are no region seeds
        or seed radii), False or () -> off; validated."""
        if region_radii is None:
            fresh = prompting == "attention" and not self.seed_radii and not self.region_seeds
            region_radii = default_region_radii(model) if fresh else None
        if region_radii is None or region_radii is False or region_radii == ():
            return None
        if isinstance(region_radii, bool):
            raise ValueError("region_radii must be (low, high, scale), None (the model's) or False (off)")
        region_radii = tuple(float(v) for v in region_radii)
        if len(region_radii) != 3 or not 0 < region_radii[0] <= region_radii[1] or not region_radii[2] > 0:
            raise ValueError(f"region_radii must be (low, high, scale) with 0 < low <= high and scale > 0, got "
                             f"{region_radii}")
        if prompting != "attention":
            raise ValueError("region_radii applies to attention prompting only")
        if self.seed_radii is not None:
            raise ValueError("region_radii and seed_radii both set a prompt's seed radius: choose one")
        if not model.sam_prompt_encoder.click_seed_radius > 0:
            raise ValueError(f"region_radii needs a model with click seeds; {model.cfg.name} has none")
        return region_radii

    def settings(self) -> dict[str, Any]:
        """The settings that decide the output (written next to the results)."""
        s = {
            "model": self.model.cfg.name,
            "image_size": self.model.image_size,
            "prompting": self.prompting,
            "points_per_batch": self.points_per_batch,
            "pred_iou_thresh": self.pred_iou_thresh,
            "stability_score_thresh": self.stability_score_thresh,
            "stability_score_offset": self.stability_score_offset,
            "mask_threshold": self.mask_threshold,
            "crop_n_layers": self.crop_n_layers,
            "crop_overlap_ratio": self.crop_overlap_ratio,
            "min_mask_region_area": self.min_mask_region_area,
            "multimask_output": self.multimask_output,
            "merge": self.merge,
        }
        if self.merge == "nms":
            s.update(box_nms_thresh=self.box_nms_thresh, crop_nms_thresh=self.crop_nms_thresh)
        elif self.merge == "mask-nms":
            s.update(merge_thresh=self.merge_thresh, crop_nms_thresh=self.crop_nms_thresh)
        else:
            s["merge_thresh"] = self.merge_thresh
        if self.prompting == "grid":
            s.update(points_per_side=self.points_per_side,
                     crop_n_points_downscale_factor=self.crop_n_points_downscale_factor)
        else:
            s.update(preset=self.preset, min_samples=self.min_samples, min_cluster_size=self.min_cluster_size,
                     block=self.block, head=self.head, attention_masks=self.attention_masks,
                     noise_prompts=self.noise_prompts, cluster_spacing=self.cluster_spacing)
        if self.seed_radii is not None:
            s["seed_radii"] = list(self.seed_radii)
        if self.region_radii is not None:
            s["region_radii"] = list(self.region_radii)
        if self.region_seeds:
            s["region_seeds"] = list(self.region_seeds)
        return s

    def generate(self, image) -> list[dict]:
        """Mask records of one image (a path, a PIL image, or an (H, W, 3) uint8 RGB array); see AutomaskResult."""
        return self.generate_result(image).masks

    @torch.inference_mode()
    def generate_result(self, image) -> AutomaskResult:
        """Masks of one image with the number of prompts and the time of every stage."""
        clock = _Clock(self.model.device)
        t_start = clock.now()
        rgb = load_image(image)
        h, w = rgb.shape[:2]
        clock.t["load"] = clock.now() - t_start

        crop_boxes, layers = generate_crop_boxes((h, w), self.crop_n_layers, self.crop_overlap_ratio)
        candidates: list[Candidates] = []
        num_prompts = 0
        attention_info = [] if self.prompting == "attention" else None
        for crop_box, layer in zip(crop_boxes, layers):
            cands, n, info = self._process_crop(rgb, tuple(crop_box), layer, clock)
            candidates.append(cands)
            num_prompts += n
            if info is not None:
                attention_info.append(info)

        t0 = clock.now()
        kept = self._deduplicate(candidates, (h, w), len(crop_boxes) > 1)
        clock.t["merging"] += clock.now() - t0

        t0 = clock.now()
        records = [self._record(m) for m in kept]
        clock.t["encoding"] += clock.now() - t0

        timings = dict(clock.t)
        timings["total"] = clock.now() - t_start
        attention = None
        if attention_info is not None:
            attention = {"block": self.block, "head": self.head, "preset": self.preset,
                         "min_samples": self.min_samples, "min_cluster_size": self.min_cluster_size,
                         "crops": attention_info}
        return AutomaskResult(
            masks=records, image_hw=(h, w), prompting=self.prompting, num_prompts=num_prompts,
            timings=timings, attention=attention, boxed_masks=[m["mask"] for m in kept],
        )

    # ------------------------------------------------------------------------------------------------------------

    def _process_crop(self, rgb: np.ndarray, crop_box, layer: int, clock: _Clock):
        x0, y0, x1, y1 = crop_box
        crop = np.array(rgb[y0:y1, x0:x1])  # contiguous and writable (torch.from_numpy warns on read-only)
        ch, cw = crop.shape[:2]
        model = self.model

        t0 = clock.now()
        images = self._predictor.preprocess(crop)
        info = None
        if self.prompting == "grid":
            feats = model.forward_image(images)
            clock.t["embedding"] += clock.now() - t0
            points = crop_points(self.point_grids[layer], (0, 0, cw, ch))
        else:
            feats, attn, grid_hw, t_attn = ap.encode_with_attention(model, images, self.block, self.head,
                                                                    self.attention_chunk)
            total = clock.now() - t0
            clock.t["attention"] += t_attn
            clock.t["embedding"] += total - t_attn

            t0 = clock.now()
            dist = ap.cosine_distance_matrix(attn)
            del attn
            labels = ap.cluster_rows(dist, self.min_samples, self.min_cluster_size)
            tokens = ap.medoids(dist, labels)
            del dist
            num_clusters = len(tokens)
            tokens = tokens + ap.spread_prompts(labels, tokens, grid_hw[1], self.cluster_spacing)
            if self.noise_prompts:
                tokens = tokens + np.flatnonzero(labels < 0).tolist()
            points = ap.tokens_to_points(tokens, grid_hw, (ch, cw))
            if self.region_seeds:  # every prompt once per kind, kind-major
                regions = np.concatenate([ap.region_masks(k, labels, tokens, grid_hw) for k in self.region_seeds])
                points = np.tile(points, (len(self.region_seeds), 1))
            if self.region_radii is not None:
                region = ap.region_radii(labels, tokens, grid_hw[1], model.image_size / grid_hw[1], *self.region_radii)
            clock.t["clustering"] += clock.now() - t0
            info = {"crop_box": [int(v) for v in crop_box], "num_tokens": int(labels.size),
                    "num_clusters": num_clusters, "num_noise_tokens": int((labels < 0).sum()),
                    "num_prompts": len(points)}

        t0 = clock.now()
        C = model.hidden_dim
        image_embed = feats.vision + model.no_mem_embed.reshape(1, C, 1, 1)
        radii = None
        if self.prompting == "attention" and self.region_radii is not None:  # one radius per prompt
            radii = region.astype(np.float32)
        elif self.seed_radii is not None:  # every point once per seed radius
            radii = np.repeat(np.asarray(self.seed_radii, dtype=np.float32), len(points))
            points = np.tile(points, (len(self.seed_radii), 1))
            if info is not None:
                info["num_prompts"] = len(points)
        logits, ious = [], []
        for s in range(0, len(points), self.points_per_batch):
            e = s + self.points_per_batch
            lr, iou = self._decode_batch(points[s:e], image_embed, feats.high_res, (ch, cw),
                                         None if radii is None else radii[s:e],
                                         regions[s:e] if self.region_seeds else None)
            logits.append(lr)
            ious.append(iou)
        M = 3 if self.multimask_output and (self.prompting == "grid" or self.attention_masks == "all") else 1
        if logits:
            low_res, scores = torch.cat(logits), torch.cat(ious)
        else:
            side = model.cfg.low_res_mask_size
            low_res = torch.zeros(0, M, side, side, device=image_embed.device)
            scores = torch.zeros(0, M, device=image_embed.device)
        cands = filter_candidates(
            low_res, scores, points, crop_box, (ch, cw), rgb.shape[:2], pred_iou_thresh=self.pred_iou_thresh,
            stability_score_thresh=self.stability_score_thresh, stability_score_offset=self.stability_score_offset,
            mask_threshold=self.mask_threshold, boxes=self.merge == "nms",
        )
        clock.t["decoding"] += clock.now() - t0
        return cands, len(points), info

    def _decode_batch(self, points: np.ndarray, image_embed, high_res, crop_hw, radii: np.ndarray | None = None,
                      regions: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder logits (B, M, 4E, 4E) and predicted IoUs (B, M) of B point prompts (crop pixels), with seed
        radii `radii` (B,) and seed regions `regions` (B, grid_h, grid_w) bool where given; attention prompting
        with attention_masks "best" keeps the output with the best predicted IoU (M = 1)."""
        model = self.model
        device = image_embed.device
        ch, cw = crop_hw
        S = model.image_size
        B = len(points)
        coords = torch.as_tensor(points / np.array([cw, ch], dtype=np.float64) * S, dtype=torch.float32,
                                 device=device).view(B, 1, 2)
        labels = torch.ones(B, 1, dtype=torch.int32, device=device)
        seed_radius = None if radii is None else torch.as_tensor(radii, device=device)
        seed_regions = None if regions is None else torch.as_tensor(regions, device=device)
        sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None,
                                                 seed_radius=seed_radius, seed_regions=seed_regions)
        out = model.sam_mask_decoder(
            image_embeddings=image_embed,
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=self.multimask_output,
            repeat_image=True,
            high_res_features=high_res,
            prompted=torch.ones(B, dtype=torch.bool, device=device),
        )
        low_res, ious = out.masks, out.ious
        if self.prompting == "attention" and self.attention_masks == "best" and low_res.shape[1] > 1:
            best = ious.argmax(dim=1)
            rows = torch.arange(B, device=device)
            low_res, ious = low_res[rows, best][:, None], ious[rows, best][:, None]
        return low_res.float(), ious.float()

    def _candidates(self, c: Candidates, image_hw) -> list[_Candidate]:
        masks = materialize(c, image_hw, self.mask_threshold, stability_score_offset=self.stability_score_offset)
        ious, stab = c.ious.tolist(), c.stability.tolist()
        out = []
        for k, bm in enumerate(masks):
            if self.min_mask_region_area > 0:
                bm, _ = clean_small_regions(bm, self.min_mask_region_area)
                if bm is None:
                    continue
            px, py = c.points[k]
            out.append(_Candidate(bm, float(ious[k]), float(stab[k]), (float(px), float(py)), c.crop_box))
        return out

    def _deduplicate(self, per_crop: list[Candidates], image_hw, multi_crop: bool) -> list[dict]:
        """Filtered candidates of every crop -> kept masks as dicts {mask, iou, stability, points, crop_box,
        num_merged}. NMS (on boxes, or on the low-resolution masks) runs on the whole batch of a crop before any mask
        is materialised; small-region clean-up (min_mask_region_area) runs on the survivors, which then go through
        box NMS once more (as SAM does); across crops, box NMS preferring smaller crops."""
        if self.merge in ("nms", "mask-nms"):
            survivors: list[_Candidate] = []
            for c in per_crop:
                if len(c) == 0:
                    continue
                if self.merge == "nms":
                    keep = batched_nms(c.boxes, c.ious, self.box_nms_thresh)
                else:
                    keep = mask_nms(c.logits, c.ious, self.merge_thresh, self.mask_threshold)
                kept = self._candidates(c.take(keep), image_hw)
                if self.min_mask_region_area > 0 and kept:
                    again = box_nms(np.array([k.mask.box for k in kept], dtype=np.float64),
                                    np.array([k.iou for k in kept]), self.box_nms_thresh)
                    kept = [kept[i] for i in again]
                survivors.extend(kept)
            if multi_crop and survivors:
                areas = np.array([(c.crop_box[2] - c.crop_box[0]) * (c.crop_box[3] - c.crop_box[1])
                                  for c in survivors], dtype=np.float64)
                keep = box_nms(np.array([c.mask.box for c in survivors], dtype=np.float64), 1.0 / areas,
                               self.crop_nms_thresh)
                survivors = [survivors[i] for i in keep]
            groups = [[c] for c in survivors]
        else:
            cands = [k for c in per_crop for k in self._candidates(c, image_hw)]
            idx_groups = boxed_merge_groups([c.mask for c in cands], self.merge_thresh)
            groups = [[cands[i] for i in g] for g in idx_groups]

        kept = []
        for g in groups:
            g = sorted(g, key=lambda c: -c.iou)
            best = g[0]
            mask = best.mask if len(g) == 1 else BoxedMask.union([c.mask for c in g])
            points = []
            for c in g:
                if c.point not in points:
                    points.append(c.point)
            kept.append({"mask": mask, "iou": best.iou, "stability": best.stability, "points": points,
                         "crop_box": best.crop_box, "num_merged": len(g)})
        kept.sort(key=lambda k: -k["iou"])  # stable: NMS order is kept among equal scores
        return kept

    def _record(self, k: dict) -> dict:
        m: BoxedMask = k["mask"]
        if self.output_mode == "binary_mask":
            seg: Any = m.to_full()
        else:
            seg = m.to_rle(compress=self.output_mode == "coco_rle")
        cx0, cy0, cx1, cy1 = k["crop_box"]
        return {
            "segmentation": seg,
            "area": m.area,
            "bbox": m.bbox_xywh,
            "predicted_iou": float(k["iou"]),
            "stability_score": float(k["stability"]),
            "point_coords": [[float(x), float(y)] for x, y in k["points"]],
            "crop_box": [cx0, cy0, cx1 - cx0, cy1 - cy0],
            "num_merged": int(k["num_merged"]),
        }


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}") from None
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
