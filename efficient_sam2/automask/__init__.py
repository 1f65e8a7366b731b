"""Automatic mask generation ("segment everything"): grid prompting and attention-guided prompting.

    from efficient_sam2 import build_sam2
    from efficient_sam2.automask import AutomaticMaskGenerator

    model = build_sam2("large", "sam2.1_hiera_large.pt", device="cuda")
    grid = AutomaticMaskGenerator(model, prompting="grid")                  # the model's default grid
    attn = AutomaticMaskGenerator(model, prompting="attention", preset="low_latency")  # HDBSCAN medoids, merging
    result = attn.generate_result("photo.jpg")   # .masks (COCO RLE records), .timings, .num_prompts

Attention prompting needs scikit-learn >= 1.3 (`pip install efficient-sam2[automask]`); it is imported lazily.
"""

from .amg import BoxedMask, clean_small_regions, mask_boxes, remove_small_regions, stability_score
from .attention_prompts import (
    PRESETS,
    AutomaskDependencyError,
    ClusteringPreset,
    block_attention,
    check_attention_site,
    cluster_rows,
    cosine_distance_matrix,
    default_attention_site,
    encode_with_attention,
    medoids,
    tokens_to_points,
)
from .evaluate import (
    AutomaskEvaluation,
    GroundTruthError,
    best_match_ious,
    evaluate_automask,
    find_gt,
    instance_miou,
    list_images,
    load_gt_instances,
)
from .generator import MERGES, OUTPUT_MODES, PROMPTINGS, STAGES, AutomaskResult, AutomaticMaskGenerator
from .grid import build_layer_point_grids, build_point_grid, generate_crop_boxes
from .merge import UnionFind, box_iou, box_nms, merge_groups, merge_masks, overlap_over_smaller
from .visualize import render_overlay

__all__ = [
    "AutomaticMaskGenerator",
    "AutomaskResult",
    "AutomaskDependencyError",
    "AutomaskEvaluation",
    "BoxedMask",
    "ClusteringPreset",
    "GroundTruthError",
    "MERGES",
    "OUTPUT_MODES",
    "PRESETS",
    "PROMPTINGS",
    "STAGES",
    "UnionFind",
    "best_match_ious",
    "block_attention",
    "box_iou",
    "box_nms",
    "build_layer_point_grids",
    "build_point_grid",
    "check_attention_site",
    "clean_small_regions",
    "cluster_rows",
    "cosine_distance_matrix",
    "default_attention_site",
    "encode_with_attention",
    "evaluate_automask",
    "find_gt",
    "generate_crop_boxes",
    "instance_miou",
    "list_images",
    "load_gt_instances",
    "mask_boxes",
    "medoids",
    "merge_groups",
    "merge_masks",
    "overlap_over_smaller",
    "remove_small_regions",
    "render_overlay",
    "stability_score",
    "tokens_to_points",
]
