"""Synthetic video-object-segmentation videos with exact ground truth, in named stress subsets.

A video is one shot, or two with a scene cut. A shot is a textured background canvas, larger than the frame, seen
through a camera (pan plus shake: a similarity transform per frame), and a stack of layers drawn back to front:
target objects (annotated 1..N) and non-targets (distractors that copy a target's shape family and texture, and
occluders), each a textured sprite with a hard mask moved by a per-frame similarity transform (a smooth path,
rotation, scale). `render_frame` composites the layers and records which layer was painted last at each pixel; the
label map is read from that record, so the ground truth is exactly what is visible, occlusions included.

Motion is in camera-stabilised coordinates (objects bounce inside the frame while the background pans behind them);
the shake moves everything. Every target is fully placed and clearly visible (>= MIN_FIRST_FRAME_AREA of the frame,
at least half of it unoccluded) on frame 0, whose mask is the prompt, and on the first frame after a cut.

Determinism: a video is a pure function of (seed, config). Random numbers come from
`np.random.default_rng(SeedSequence([seed, subset code]))`; a draw that misses a subset's property (e.g. no object
hidden long enough) is redrawn from the same generator, so the result is still fixed by the seed.

Styles: the default "synth" (what the micro model is trained and tuned on) and "organic" (`organic.py`, held out:
other textures, shapes, motion law, lighting drift and aspect ratios; the same subsets, compositing and ground truth).
The style is part of the seed; "synth" videos are the same as before styles existed.

The subsets, styles and `SyntheticConfig` are defined in `subsets.py`, the drawing of sprites, paths and camera in
`scene.py` (and `organic.py`), the procedural textures and shapes in `textures.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from .organic import OrganicScene
from .scene import Scene, Sprite
from .subsets import (DEFAULT_FRAMES, DEFAULT_SIZE, GENERATOR_VERSION, MAX_OBJECTS, MIN_FIRST_FRAME_AREA,
                      STYLE_NAMES, STYLES, SUBSET_NAMES, SUBSETS, StyleSpec, SubsetSpec, SyntheticConfig,
                      default_size)

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
    "Layer",
    "NonTarget",
    "RenderedFrame",
    "StyleSpec",
    "SubsetSpec",
    "SyntheticConfig",
    "SyntheticVideo",
    "default_size",
    "generate_video",
    "render_frame",
]

_MAX_ATTEMPTS = 60
_SCENES: dict[str, type[Scene]] = {"synth": Scene, "organic": OrganicScene}
assert set(_SCENES) == set(STYLE_NAMES)


@dataclass(frozen=True)
class Layer:
    """One object drawn into a frame: mask (H, W) bool, texture (H, W, 3) uint8 RGB (read where the mask is set),
    label: its annotation id (1..255), or 0 for a non-target (its pixels are background in the annotation)."""

    mask: np.ndarray
    texture: np.ndarray
    label: int


@dataclass(frozen=True)
class RenderedFrame:
    """image (H, W, 3) uint8 RGB; labels (H, W) uint8 annotation ids; owner (H, W) uint8: 0 where the background
    shows, k + 1 where layer k was painted last (so labels == [0, layer labels...][owner])."""

    image: np.ndarray
    labels: np.ndarray
    owner: np.ndarray


@dataclass(frozen=True)
class NonTarget:
    """A drawn object that is not annotated: kind "distractor" (copies target `looks_like`'s shape family and
    texture) or "occluder" (a large object passing in front; `looks_like` None)."""

    kind: str
    looks_like: Optional[int] = None


@dataclass
class SyntheticVideo:
    """One generated video and what is known about it.

    frames: T arrays (H, W, 3) uint8 RGB. masks: T arrays (H, W) uint8, 0 = background, 1..N = objects.
    visible: (T, N) int64, visible pixels of object k + 1 on each frame (== its count in `masks`).
    unoccluded: (T, N) int64, pixels inside the frame the object would cover with nothing in front of it.
    non_targets: the non-annotated objects; non_target_maps: T arrays (H, W) uint8, k + 1 where non-target k is
    visible. depth_order: drawing order, back to front: target ids as positive numbers, non-target k as -(k + 1).
    camera: (T, 2, 3) affine mapping background (world) coordinates to the frame, per frame (world = frame-0 pixels
    of the shot). cut_frame: the first frame of the second shot of a scene cut, else None.
    """

    seed: int
    config: SyntheticConfig
    frames: list[np.ndarray]
    masks: list[np.ndarray]
    visible: np.ndarray
    unoccluded: np.ndarray
    non_targets: tuple[NonTarget, ...]
    non_target_maps: list[np.ndarray]
    depth_order: tuple[int, ...]
    camera: np.ndarray
    cut_frame: Optional[int] = None

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def num_objects(self) -> int:
        return self.visible.shape[1]

    @property
    def occluded(self) -> np.ndarray:
        """(T, N) bool: part of the object's in-frame area is hidden by something in front of it."""
        return self.visible < self.unoccluded

    @property
    def hidden(self) -> np.ndarray:
        """(T, N) bool: the object has no visible pixel (out of the frame or fully occluded)."""
        return self.visible == 0

    def summary(self) -> dict:
        """JSON-ready facts about the video (for a dataset's meta.json)."""
        h, w = self.config.size
        occ = 1.0 - self.visible / np.maximum(self.unoccluded, 1)
        return {
            "subset": self.config.subset, "seed": int(self.seed), "frames": self.num_frames, "objects": self.num_objects,
            "distractors": sum(n.kind == "distractor" for n in self.non_targets),
            "occluders": sum(n.kind == "occluder" for n in self.non_targets),
            "cut_frame": self.cut_frame,
            "hidden_frames": [int(v) for v in self.hidden.sum(0)],
            "max_occluded_fraction": [round(float(v), 3) for v in occ.max(0)],
            "first_frame_area": [round(float(v) / (h * w), 4) for v in self.visible[0]],
            **({} if self.config.style == "synth" else {"style": self.config.style, "size": [h, w]}),
        }


# ---------------------------------------------------------------------------------------------------------------------
# Compositing


def render_frame(background: np.ndarray, layers: Sequence[Layer]) -> RenderedFrame:
    """Paint `layers` (back to front) over `background` (H, W, 3) uint8.

    Each layer's texture replaces the image where its mask is set; the same masks in the same order write `owner`,
    and the labels are read from it, so a pixel's label is the object whose colour it shows.
    """
    background = np.asarray(background)
    if background.ndim != 3 or background.shape[2] != 3 or background.dtype != np.uint8:
        raise ValueError(f"background must be (H, W, 3) uint8; got shape {background.shape}, dtype {background.dtype}")
    if len(layers) > 255:
        raise ValueError(f"at most 255 layers can be rendered; got {len(layers)}")
    h, w = background.shape[:2]
    image = np.ascontiguousarray(background).copy()
    owner = np.zeros((h, w), dtype=np.uint8)
    for k, layer in enumerate(layers):
        if layer.mask.shape != (h, w) or layer.mask.dtype != bool:
            raise ValueError(f"layer {k}: mask must be ({h}, {w}) bool; got {layer.mask.shape}, {layer.mask.dtype}")
        if layer.texture.shape != (h, w, 3) or layer.texture.dtype != np.uint8:
            raise ValueError(f"layer {k}: texture must be ({h}, {w}, 3) uint8; got {layer.texture.shape}, "
                             f"{layer.texture.dtype}")
        if not 0 <= int(layer.label) <= 255:
            raise ValueError(f"layer {k}: label must be 0..255; got {layer.label}")
        mask = np.ascontiguousarray(layer.mask).view(np.uint8)
        cv2.copyTo(layer.texture, mask, image)  # in place: image[mask] = texture[mask]
        cv2.max(owner, mask * np.uint8(k + 1), dst=owner)  # later layers have larger k: owner[mask] = k + 1
    lut = np.array([0] + [int(layer.label) for layer in layers], dtype=np.uint8)
    return RenderedFrame(image, lut[owner], owner)


# ---------------------------------------------------------------------------------------------------------------------
# Generation


def _warp_layer(sprite: Sprite, m: np.ndarray, size: tuple[int, int], empty: Layer, label: int) -> Layer:
    h, w = size
    p = sprite.size
    corners = m[:2, :2] @ np.array([[0, p, 0, p], [0, 0, p, p]], dtype=np.float64) + m[:2, 2:3]
    if corners[0].max() < 0 or corners[0].min() >= w or corners[1].max() < 0 or corners[1].min() >= h:
        return Layer(empty.mask, empty.texture, label)
    rgba = cv2.warpAffine(sprite.rgba, m[:2], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return Layer(rgba[..., 3] >= 128, cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB), label)  # contiguous: fast copyTo


def _attempt(rng: np.random.Generator, seed: int, config: SyntheticConfig) -> Optional[SyntheticVideo]:
    spec, (h, w), n = config.spec, config.size, config.frames
    scene = _SCENES[config.style](rng, config)
    num = config.num_objects if config.num_objects is not None else int(rng.choice(spec.objects))
    cut = int(rng.integers(max(2, n // 3), min(n - 2, (2 * n) // 3) + 1)) if spec.scene_cut else None
    bounds = [(0, n)] if cut is None else [(0, cut), (cut, n)]
    backdrops = [scene.backdrop(b - a) for a, b in bounds]
    avoid = backdrops[0][0].reshape(-1, 3).mean(0)  # keep the targets' colours off the background's mean
    targets = [scene.target_sprite(avoid) for _ in range(num)]
    n_distractors = int(rng.integers(spec.distractors[0], spec.distractors[1] + 1))
    likes = [int(rng.integers(1, num + 1)) for _ in range(n_distractors)]
    distractors = [(scene.lookalike(targets[k - 1]), k) for k in likes]
    depth = [int(d) for d in rng.permutation(list(range(1, num + 1)) + [-(j + 1) for j in range(n_distractors)])]
    shots = [scene.tracks(b - a, targets, distractors, depth) for a, b in bounds]

    occluders = len(shots[0]) - len(depth)
    assert all(len(tracks) == len(shots[0]) for tracks in shots), "occluders are drawn in single-shot subsets only"
    non_targets = tuple([NonTarget("distractor", k) for k in likes] + [NonTarget("occluder")] * occluders)
    min_area = MIN_FIRST_FRAME_AREA * h * w
    # sensor noise: random crops of one Gaussian field per video (cheaper than a fresh field per frame)
    pad = 16
    grain = np.round(rng.standard_normal((h + pad, w + pad, 3), dtype=np.float32) * rng.uniform(0.5, 3.0))
    grain = np.clip(grain, -127, 127).astype(np.int8)
    empty = Layer(np.zeros((h, w), dtype=bool), np.zeros((h, w, 3), dtype=np.uint8), 0)
    frames, masks, others, cameras = [], [], [], []
    visible, unoccluded = np.zeros((n, num), np.int64), np.zeros((n, num), np.int64)
    for (a, b), (canvas, camera, shake), tracks in zip(bounds, backdrops, shots):
        mats = [shake @ t.matrices() for t in tracks]
        lighting = scene.lighting(b - a)  # None: the style keeps the lighting constant
        # non-target index of each layer (0 for targets): distractor j -> j + 1, occluder i -> n_distractors + i + 1
        other_lut = np.array([0] + [-d if d < 0 else 0 for d in depth]
                             + list(range(n_distractors + 1, len(non_targets) + 1)), dtype=np.uint8)
        margin = np.eye(3)
        margin[:2, 2] = [(canvas.shape[1] - w) // 2, (canvas.shape[0] - h) // 2]
        world_camera = camera @ margin  # background in frame-0 pixels of the shot -> this frame
        for i in range(b - a):
            bg = cv2.warpAffine(canvas, camera[i, :2], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            layers = [_warp_layer(t.sprite, m[i], (h, w), empty, t.label) for t, m in zip(tracks, mats)]
            frame = render_frame(bg, layers)
            t = a + i
            visible[t] = np.bincount(frame.labels.ravel(), minlength=num + 1)[1:num + 1]
            for layer in layers:
                if layer.label:
                    unoccluded[t, layer.label - 1] = int(np.count_nonzero(layer.mask))
            if i == 0 and not np.all((visible[t] >= min_area) & (visible[t] * 2 >= unoccluded[t])):
                return None  # a target is not clearly visible where it is (re)introduced
            image = frame.image if lighting is None else lighting.apply(frame.image, i)  # pixel by pixel
            dy, dx = rng.integers(0, pad + 1, 2)
            frames.append(cv2.add(image, grain[dy:dy + h, dx:dx + w], dtype=cv2.CV_8U))  # saturating
            masks.append(frame.labels)
            others.append(other_lut[frame.owner])
            cameras.append(world_camera[i, :2])
    video = SyntheticVideo(seed, config, frames, masks, visible, unoccluded, non_targets, others, tuple(depth),
                           np.stack(cameras), cut)
    return video if _has_property(video, spec) else None


def _has_property(video: SyntheticVideo, spec: SubsetSpec) -> bool:
    """Whether the video shows what its subset is about (else it is redrawn)."""
    h, w = video.config.size
    area = h * w
    if spec.reappear:
        ok = False
        for k in range(video.num_objects):
            hidden = video.hidden[:, k].astype(np.int8)
            runs = np.flatnonzero(np.diff(np.concatenate([[0], hidden, [0]])))
            for s, e in zip(runs[::2], runs[1::2]):
                if e - s >= 3 and (video.visible[e:, k] >= 0.002 * area).any():
                    ok = True
        if not ok:
            return False
    if spec.full_occlusion:  # occlusion: some object at least half hidden behind another
        frac = 1.0 - video.visible / np.maximum(video.unoccluded, 1)
        if not ((frac >= 0.5) & (video.unoccluded >= MIN_FIRST_FRAME_AREA * area)).any():
            return False
    if spec.distractors[1] > 0:
        counts = np.stack([np.bincount(m.ravel(), minlength=len(video.non_targets) + 1) for m in video.non_target_maps])
        distractor_ids = [j + 1 for j, nt in enumerate(video.non_targets) if nt.kind == "distractor"]
        if any(counts[:, j].max() < MIN_FIRST_FRAME_AREA * area for j in distractor_ids):
            return False
    if video.cut_frame is not None:
        c = video.cut_frame
        jump = np.abs(video.frames[c].astype(np.int16) - video.frames[c - 1].astype(np.int16)).mean()
        if jump < 30:
            return False
    return True


def generate_video(seed: int, subset: str = "standard", *, frames: int = DEFAULT_FRAMES,
                   size: Optional[tuple[int, int]] = None, num_objects: Optional[int] = None,
                   style: str = "synth") -> SyntheticVideo:
    """Generate one synthetic VOS video: a pure function of its arguments.

    Args:
        seed: a non-negative integer; the same seed and arguments give the same arrays.
        subset: one of SUBSET_NAMES (see SUBSETS for what each stresses).
        frames: number of frames T; size: (H, W) in pixels, None = the style's (`default_size(style, seed)`:
            256 x 256 for "synth"); num_objects: targets (1..4), None = the subset's draw.
        style: one of STYLE_NAMES: "synth" (the default) or "organic" (held out: other textures, shapes, motion,
            lighting and aspect ratios); the style is part of the seed.
    Returns:
        a SyntheticVideo (frames, label maps, per-object visible / unoccluded pixel counts, non-targets, camera).
    Raises ValueError for bad arguments.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    size = default_size(style, int(seed)) if size is None else size
    config = SyntheticConfig(subset=subset, frames=frames, size=size, num_objects=num_objects, style=style)
    entropy = [int(seed), config.spec.code] + ([config.style_spec.code] if config.style_spec.code else [])
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    for _ in range(_MAX_ATTEMPTS):
        video = _attempt(rng, int(seed), config)
        if video is not None:
            return video
    raise RuntimeError(f"could not draw a {subset!r} {style} video of {frames} frames at {config.size[0]}x"
                       f"{config.size[1]} with seed {seed} in {_MAX_ATTEMPTS} attempts; try a larger size or more "
                       "frames")
