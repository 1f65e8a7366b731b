"""Predictors: single images (`ImagePredictor`), videos (`VideoPredictor`, `EfficientVideoPredictor`) and streams
(`StreamingTracker`).

Names are imported lazily so that `import efficient_sam2.predictors` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "VideoPredictor": ".video",
    "InferenceState": ".video",
    "FrameOutput": ".video",
    "ObjectState": ".video",
    "PromptError": ".video",
    "ImagePredictor": ".image",
    "StreamingTracker": ".stream",
    "TrackResult": ".stream",
    "EfficientVideoPredictor": ".efficient_video",
    "EfficiencyStats": ".efficient_video",
    "fill_holes": "..tracking.postprocess",
    "non_overlap": "..tracking.postprocess",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
