"""The stress subsets of the synthetic videos (what each one draws), the visual styles, and the generation config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = [
    "DEFAULT_FRAMES",
    "DEFAULT_SIZE",
    "GENERATOR_VERSION",
    "MAX_OBJECTS",
    "MIN_FIRST_FRAME_AREA",
    "STYLES",
    "STYLE_NAMES",
    "SUBSETS",
    "SUBSET_NAMES",
    "StyleSpec",
    "SubsetSpec",
    "SyntheticConfig",
    "default_size",
]

GENERATOR_VERSION = 1
"""Bumped whenever the same (seed, config) would give different videos."""
DEFAULT_SIZE: tuple[int, int] = (256, 256)
DEFAULT_FRAMES = 24
MAX_OBJECTS = 4
MIN_FIRST_FRAME_AREA = 0.005
"""Fraction of the frame each target covers, visibly, on frame 0 (and on the first frame after a scene cut)."""


@dataclass(frozen=True)
class SubsetSpec:
    """How a stress subset draws its scenes. Distances are fractions of min(H, W); speeds are per frame.

    code: stable integer mixed into every video's seed (never reuse one); objects: the number of targets is drawn
    uniformly from this tuple; speed: drift speed range; wiggle: amplitude of the smooth wobble on the drift;
    rotation: max rotation speed (rad / frame); scale_change: amplitude of the log-scale oscillation; pan: max camera
    pan speed; shake: camera shake (std of the jitter; rotation and zoom scale with it); distractors: (min, max)
    look-alike non-targets; crossing: probability that two targets are steered to pass one behind the other, at a
    closest approach of crossing_offset x their summed radii; full_occlusion: crossings put the smaller object
    behind, and some target must be at least half hidden on some frame; occluder: probability of a large
    non-target sweeping in front of a target; reappear: some target leaves the frame or is hidden behind an occluder for >= 3 frames and
    comes back; scene_cut: an abrupt cut to a new view; min_frames: shortest video the subset can make.
    """

    name: str
    code: int
    description: str
    objects: tuple[int, ...] = (1, 2, 2, 3, 3, 4)
    speed: tuple[float, float] = (0.003, 0.015)
    wiggle: float = 0.04
    rotation: float = 0.03
    scale_change: float = 0.08
    pan: float = 0.004
    shake: float = 0.0
    distractors: tuple[int, int] = (0, 0)
    crossing: float = 0.5
    crossing_offset: tuple[float, float] = (0.5, 0.9)
    full_occlusion: bool = False
    occluder: float = 0.0
    reappear: bool = False
    scene_cut: bool = False
    min_frames: int = 2


SUBSETS: dict[str, SubsetSpec] = {s.name: s for s in (
    SubsetSpec("standard", 0, "a few objects, moderate motion, some partial occlusions"),
    SubsetSpec("fast_motion", 1, "fast, bouncing motion with quick rotation and scale changes",
               speed=(0.035, 0.08), wiggle=0.1, rotation=0.15, scale_change=0.25, pan=0.012, shake=0.004,
               crossing=0.3),
    SubsetSpec("occlusion", 2, "objects pass behind each other and behind large occluders",
               objects=(2, 3, 3, 4), crossing=1.0, crossing_offset=(0.0, 0.2), full_occlusion=True, occluder=0.5),
    SubsetSpec("reappearance", 3, "an object leaves the frame or is hidden for several frames, then comes back",
               objects=(1, 2, 2, 3), crossing=0.2, reappear=True, min_frames=10),
    SubsetSpec("distractors", 4, "non-target look-alikes (same shape family and texture) move among the targets",
               objects=(1, 2, 2, 3), distractors=(1, 3), crossing=0.3),
    SubsetSpec("camera_shake", 5, "a panning camera that shakes, rotates and zooms from frame to frame",
               pan=0.01, shake=0.025, crossing=0.3),
    SubsetSpec("scene_cut", 6, "an abrupt cut to another view: new background and camera, objects elsewhere",
               crossing=0.3, scene_cut=True, min_frames=4),
)}
SUBSET_NAMES: tuple[str, ...] = tuple(SUBSETS)


@dataclass(frozen=True)
class StyleSpec:
    """How a style looks: its textures, shapes, motion law and lighting (drawn by `scene.make_scene`), and its frame
    sizes. The stress subsets apply to every style.

    code: stable integer mixed into every video's seed (0 leaves the seed as it was before styles existed; never
    reuse one); height, widths: the default frame size is (height, one of widths), drawn per video from its seed (a
    fixed height keeps a dataset in one DAVIS ``<H>p`` folder, as DAVIS' 480p videos of several widths).
    """

    name: str
    code: int
    description: str
    height: int
    widths: tuple[int, ...]


STYLES: dict[str, StyleSpec] = {s.name: s for s in (
    StyleSpec("synth", 0, "square frames; noise, gradient, stripe and blob textures; ellipses, polygons and smooth "
              "blobs drifting and bouncing with a light wobble; constant lighting", 256, (256,)),
    StyleSpec("organic", 1, "frames of several aspect ratios; marble, wood-ring, cell and plasma textures; stars, "
              "rings, crescents, crosses and flowers that accelerate, curve, sway, spin up and grow or shrink; "
              "brightness, contrast and tint drift under a moving vignette", 192, (144, 240, 256, 288, 320)),
)}
STYLE_NAMES: tuple[str, ...] = tuple(STYLES)
"""The first, "synth", is the default (the videos the micro model was trained and tuned on); the others are held
out: never used for training or tuning."""


def default_size(style: str, seed: int) -> tuple[int, int]:
    """The frame size (H, W) a video of `style` gets when none is asked for: (style height, a width drawn from the
    style's widths by `seed`). "synth": always DEFAULT_SIZE."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid styles: {', '.join(STYLE_NAMES)}")
    spec = STYLES[style]
    if len(spec.widths) == 1:
        return spec.height, spec.widths[0]
    pick = int(np.random.SeedSequence([int(seed), spec.code, 0x5153]).generate_state(1)[0]) % len(spec.widths)
    return spec.height, spec.widths[pick]


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate: subset (one of SUBSET_NAMES), frames per video, size (H, W) in pixels (need not be square),
    num_objects (targets, 1..MAX_OBJECTS; None = drawn per video from the subset's range), style (one of
    STYLE_NAMES)."""

    subset: str = "standard"
    frames: int = DEFAULT_FRAMES
    size: tuple[int, int] = DEFAULT_SIZE
    num_objects: Optional[int] = None
    style: str = "synth"

    def __post_init__(self) -> None:
        if self.subset not in SUBSETS:
            raise ValueError(f"unknown subset {self.subset!r}; valid subsets: {', '.join(SUBSET_NAMES)}")
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}; valid styles: {', '.join(STYLE_NAMES)}")
        try:
            h, w = (int(v) for v in self.size)
        except (TypeError, ValueError):
            raise ValueError(f"size must be (H, W), two integers; got {self.size!r}") from None
        if min(h, w) < 32 or max(h, w) > 4096:
            raise ValueError(f"size must be between 32 and 4096 pixels per side; got {h}x{w} (HxW)")
        object.__setattr__(self, "size", (h, w))
        spec = SUBSETS[self.subset]
        if not isinstance(self.frames, (int, np.integer)) or self.frames < spec.min_frames:
            raise ValueError(f"subset {self.subset!r} needs at least {spec.min_frames} frames per video; "
                             f"got {self.frames!r}")
        if self.num_objects is not None and not 1 <= self.num_objects <= MAX_OBJECTS:
            raise ValueError(f"num_objects must be 1..{MAX_OBJECTS} (or None); got {self.num_objects!r}")

    @property
    def spec(self) -> SubsetSpec:
        return SUBSETS[self.subset]

    @property
    def style_spec(self) -> StyleSpec:
        return STYLES[self.style]
