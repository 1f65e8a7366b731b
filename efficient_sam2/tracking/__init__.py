"""The tracking layer between the predictors and the stateless network.

`memory_bank` holds the rules of which frames and pointers a frame attends to (and what a stream may forget),
`state` the typed per-object state, `policy` the frame-policy interface (dense: no plans), `postprocess` the mask
clean-ups (hole filling, non-overlap), `loop` the one tracking loop that the offline predictor, the streaming tracker,
the trainers and the benchmark all drive.
"""

from .loop import GroupStep, MemorySelection, TrackingLoop
from .memory_bank import frames_to_keep, select_closest_cond_frames, select_memory_frames, select_object_pointers
from .policy import DenseFactory, DensePolicy, FramePolicy, FrameResult, PolicyFactory
from .postprocess import fill_holes, non_overlap
from .state import FrameOutput, ObjectTrack

__all__ = [
    "TrackingLoop", "GroupStep", "MemorySelection", "FramePolicy", "DensePolicy", "DenseFactory", "PolicyFactory",
    "FrameResult", "FrameOutput", "ObjectTrack", "select_memory_frames", "select_object_pointers",
    "select_closest_cond_frames", "frames_to_keep", "fill_holes", "non_overlap",
]
