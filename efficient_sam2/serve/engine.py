"""The predictors one server shares between its sessions: one model, dense SAM 2 and Efficient-SAM2 over it.

Both predictors drive the same stateless model; a session's `InferenceState` is opened by the dense predictor and
each propagation gives it a fresh frame policy of the kind asked for (`Engine.predictor(efficient)`), so the page's
toggle switches between dense SAM 2 and Efficient-SAM2 on the same video, prompts and memory.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from ..efficient.config import EfficientConfig
from ..predictors.efficient_video import EfficientVideoPredictor
from ..predictors.video import VideoPredictor


@dataclass
class Engine:
    """dense: the VideoPredictor of dense SAM 2; efficient: the EfficientVideoPredictor on the same model."""

    dense: VideoPredictor
    efficient: EfficientVideoPredictor
    model_name: str
    weights: str
    _automask: dict = field(default_factory=dict, repr=False)
    _automask_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def build(cls, model: str = "micro", checkpoint: str | os.PathLike | None = None, device: str = "cpu",
              image_size: int | None = None, efficient: EfficientConfig | None = None,
              shortcut_checkpoint: str | os.PathLike | None = None, weights: str | None = None) -> "Engine":
        """Build the model once (as `efficient-sam2 track` does) and both predictors over it."""
        from ..inference.common import build_predictor

        eff = build_predictor(model, checkpoint, device, image_size=image_size,
                              efficient=efficient if efficient is not None else EfficientConfig(),
                              shortcut_checkpoint=shortcut_checkpoint, weights=weights)
        dense = VideoPredictor(eff.model, fill_hole_area=eff.fill_hole_area,
                               non_overlap_masks=eff.non_overlap_masks)
        return cls(dense=dense, efficient=eff, model_name=eff.model.cfg.name,
                   weights=getattr(eff.model, "weights_source", "checkpoint"))

    @property
    def model(self):
        return self.dense.model

    @property
    def image_size(self) -> int:
        return self.dense.image_size

    def predictor(self, efficient: bool) -> VideoPredictor:
        return self.efficient if efficient else self.dense

    def describe(self) -> dict:
        cfg = self.efficient.efficient
        return {
            "model": self.model_name,
            "weights": self.weights,
            "image_size": self.image_size,
            "device": str(self.model.device),
            "efficient": {"swr": cfg.swr, "smr": cfg.smr, "sparsity": cfg.sparsity,
                          "shortcut": self.efficient.shortcut_info.get("source", cfg.shortcut)},
        }

    def automask(self, pred_iou_thresh: float | None = None, stability_score_thresh: float | None = None):
        """The attention-prompted automatic mask generator with these filters (None: the generator's defaults);
        built on first use, needs scikit-learn."""
        key = (pred_iou_thresh, stability_score_thresh)
        with self._automask_lock:
            gen = self._automask.get(key)
            if gen is None:
                from ..automask import AutomaticMaskGenerator

                kw = {k: v for k, v in (("pred_iou_thresh", pred_iou_thresh),
                                        ("stability_score_thresh", stability_score_thresh)) if v is not None}
                gen = self._automask[key] = AutomaticMaskGenerator(self.model, "attention", **kw)
            return gen
