"""Video object segmentation metrics (J, F, J&F) and dataset-level evaluation."""

from .metrics import (
    DEFAULT_BOUND_TH,
    boundary_f_measure,
    boundary_map,
    disk,
    region_similarity,
    tolerance_radius,
)
from .vos import LAYOUTS, EvalResult, ObjectScore, VideoScore, evaluate_vos

__all__ = [
    "DEFAULT_BOUND_TH",
    "LAYOUTS",
    "EvalResult",
    "ObjectScore",
    "VideoScore",
    "boundary_f_measure",
    "boundary_map",
    "disk",
    "evaluate_vos",
    "region_similarity",
    "tolerance_radius",
]
