"""efficient-sam2: fast SAM 2 video object segmentation without retraining.

A clean, checkpoint-compatible SAM 2 / SAM 2.1 implementation with the Efficient-SAM2 method (Sparse Window
Routing in the image encoder, Sparse Memory Retrieval in memory attention), and automatic mask generation with
grid or attention-guided prompts (`AutomaticMaskGenerator`).
"""

from .build import (
    CheckpointError,
    build_sam2,
    build_sam2_image_predictor,
    build_sam2_stream_tracker,
    build_sam2_video_predictor,
    identify_checkpoint,
    load_checkpoint,
)
from .configs import SAM2Config, available_models, get_config
from .efficient.config import EfficientConfig

__version__ = "0.1.0"

# Exported lazily (module __getattr__): importing the package stays light, and automatic mask generation loads
# its own modules (and, for attention prompting, scikit-learn) only when asked for.
_LAZY = {
    "AutomaticMaskGenerator": "efficient_sam2.automask",
    "AutomaskResult": "efficient_sam2.automask",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'efficient_sam2' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AutomaticMaskGenerator",
    "AutomaskResult",
    "CheckpointError",
    "EfficientConfig",
    "SAM2Config",
    "available_models",
    "build_sam2",
    "build_sam2_image_predictor",
    "build_sam2_stream_tracker",
    "build_sam2_video_predictor",
    "get_config",
    "identify_checkpoint",
    "load_checkpoint",
    "__version__",
]
