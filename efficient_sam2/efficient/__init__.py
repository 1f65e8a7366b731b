"""The Efficient-SAM2 method: decides WHAT to compute (window plans, memory plans); the model executes them."""

from .config import EfficientConfig
from .memory_retrieval import SaliencyCache, build_memory_plan, select_tokens
from .router import RouteDecision, WindowGrid, WindowRouter, saliency_windows, windows_touched

__all__ = [
    "EfficientConfig",
    "RouteDecision",
    "SaliencyCache",
    "WindowGrid",
    "WindowRouter",
    "build_memory_plan",
    "saliency_windows",
    "select_tokens",
    "windows_touched",
]
