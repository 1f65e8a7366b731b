"""Synthetic video-object-segmentation data: procedurally generated videos with exact ground truth, in stress
subsets (standard, fast_motion, occlusion, reappearance, distractors, camera_shake, scene_cut) and two styles (the
default "synth", and "organic", held out for evaluation: other textures, shapes, motion, lighting and aspect ratios),
written as DAVIS-layout datasets that `vos`, `eval` and the trainers read.

    from efficient_sam2.data import generate_video, write_dataset
    video = generate_video(0, "occlusion")            # frames, label maps, visibility, camera, ...
    held_out = generate_video(0, style="organic")     # 192 x (144..320) frames of the held-out style
    names = write_dataset("synth/train", videos=30, split="train", seed=0, subsets=["standard", "occlusion"])
"""

from .synthetic import (
    DEFAULT_FRAMES,
    DEFAULT_SIZE,
    GENERATOR_VERSION,
    MAX_OBJECTS,
    MIN_FIRST_FRAME_AREA,
    STYLE_NAMES,
    STYLES,
    SUBSET_NAMES,
    SUBSETS,
    Layer,
    NonTarget,
    RenderedFrame,
    StyleSpec,
    SubsetSpec,
    SyntheticConfig,
    SyntheticVideo,
    default_size,
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
    "STYLES",
    "STYLE_NAMES",
    "SUBSETS",
    "SUBSET_NAMES",
    "Layer",
    "NonTarget",
    "RenderedFrame",
    "StyleSpec",
    "SubsetSpec",
    "SyntheticConfig",
    "SyntheticDataset",
    "SyntheticVideo",
    "dataset_layout",
    "default_size",
    "generate_video",
    "render_frame",
    "resolution_name",
    "video_seed",
    "write_dataset",
]
