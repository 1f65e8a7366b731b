"""Running the video predictor over whole videos and datasets: VOS dataset inference and multi-process sharding."""

from .common import PRECISIONS, autocast_context, build_predictor, logits_to_ids
from .distributed import DistContext, init_distributed, shard
from .vos import VOSError, VOSProtocol, VOSSummary, VideoResult, run_vos, segment_video

__all__ = [
    "PRECISIONS",
    "DistContext",
    "VOSError",
    "VOSProtocol",
    "VOSSummary",
    "VideoResult",
    "autocast_context",
    "build_predictor",
    "init_distributed",
    "logits_to_ids",
    "run_vos",
    "segment_video",
    "shard",
]
