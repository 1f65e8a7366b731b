"""Synthetic video-object-segmentation data: procedurally generated videos with exact ground truth, in stress
subsets (standard, fast_motion, occlusion, reappearance, distractors, camera_shake, scene_cut), written as DAVIS-layout
datasets that `vos`, `eval` and the trainers read.

    from efficient_sam2.data import generate_video, write_dataset
    video = generate_video(0, "occlusion")            # frames, label maps, visibility, camera, ...
    names = write_dataset("synth/train", videos=30, split="train", seed=0, subsets=["standard", "occlusion"])
"""

from .synthetic import (
    DEFAULT_FRAMES,
    DEFAULT_SIZE,
    GENERATOR_VERSION,
    MAX_OBJECTS,
    MIN_FIRST_FRAME_AREA,
    SUBSET_NAMES,
    SUBSETS,
    Layer,
    NonTarget,
    RenderedFrame,
    SubsetSpec,
    SyntheticConfig,
    SyntheticVideo,
    generate_video,
    render_frame,
)
from .writer import (
    DEFAULT_RESOLUTION,
    SPLITS,
    SyntheticDataset,
    dataset_layout,
    resolution_name,
    video_seed,
    write_dataset,
)

__all__ = [
    "DEFAULT_FRAMES",
    "DEFAULT_RESOLUTION",
    "DEFAULT_SIZE",
    "GENERATOR_VERSION",
    "MAX_OBJECTS",
    "MIN_FIRST_FRAME_AREA",
    "SPLITS",
    "SUBSETS",
    "SUBSET_NAMES",
    "Layer",
    "NonTarget",
    "RenderedFrame",
    "SubsetSpec",
    "SyntheticConfig",
    "SyntheticDataset",
    "SyntheticVideo",
    "dataset_layout",
    "generate_video",
    "render_frame",
    "resolution_name",
    "video_seed",
    "write_dataset",
]
