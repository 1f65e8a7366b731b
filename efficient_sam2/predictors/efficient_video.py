"""The Efficient-SAM2 video predictor: the reference-compatible `VideoPredictor` with the Efficient-SAM2 frame
policy (Sparse Window Routing in the image encoder, Sparse Memory Retrieval in memory attention).

Nothing is overridden: the policy (`efficient_sam2.efficient.policy`) plans every frame of the one tracking loop.
What was skipped is kept per video (`predictor.statistics(state)`).
"""

from __future__ import annotations

import torch

from ..efficient.config import EfficientConfig
from ..efficient.policy import EfficiencyStats, EfficientSAM2
from ..modeling.sam2 import SAM2Model
from .video import VideoPredictor

__all__ = ["EfficientVideoPredictor", "EfficiencyStats"]


class EfficientVideoPredictor(VideoPredictor):
    """VideoPredictor with SWR and SMR. `efficient=EfficientConfig()` gives the paper's defaults.

    Args:
        model: a SAM2Model.
        efficient: EfficientConfig (None: the paper's defaults).
        shortcut_checkpoint: shortcut weights (ours or the official `.pth` files).
        shortcut: an already built shortcut module (wins over the checkpoint).
        fill_hole_area, non_overlap_masks: as for `VideoPredictor`.
    """

    def __init__(
        self,
        model: SAM2Model,
        efficient: EfficientConfig | None = None,
        shortcut_checkpoint=None,
        fill_hole_area: int = 0,
        non_overlap_masks: bool = False,
        shortcut: torch.nn.Module | None = None,
    ) -> None:
        method = EfficientSAM2(model, efficient, shortcut_checkpoint=shortcut_checkpoint, shortcut=shortcut)
        super().__init__(model, fill_hole_area=fill_hole_area, non_overlap_masks=non_overlap_masks, policy=method)
        self.method = method

    @property
    def efficient(self) -> EfficientConfig:
        return self.method.config

    @property
    def shortcut(self) -> torch.nn.Module | None:
        return self.method.shortcut

    @property
    def shortcut_info(self) -> dict:
        return self.method.shortcut_info

    @property
    def router(self):
        return self.method.router

    @property
    def grid(self):
        return self.method.grid
