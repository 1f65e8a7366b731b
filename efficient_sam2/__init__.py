"""efficient-sam2: fast SAM 2 video object segmentation without retraining.

A clean, checkpoint-compatible SAM 2 / SAM 2.1 implementation with the Efficient-SAM2 method (Sparse Window
Routing in the image encoder, Sparse Memory Retrieval in memory attention).
"""

from .build import (
    CheckpointError,
    build_sam2,
    build_sam2_image_predictor,
    build_sam2_video_predictor,
    identify_checkpoint,
    load_checkpoint,
)
from .configs import SAM2Config, available_models, get_config
from .efficient.config import EfficientConfig

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "EfficientConfig",
    "SAM2Config",
    "available_models",
    "build_sam2",
    "build_sam2_image_predictor",
    "build_sam2_video_predictor",
    "get_config",
    "identify_checkpoint",
    "load_checkpoint",
    "__version__",
]
