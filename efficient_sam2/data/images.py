"""Synthetic "segment everything" images: single frames with every segment annotated as an instance.

Each image is a stack of layers drawn back to front with `render_frame` (the compositor of the video generator):
background regions first (a full-frame region, then up to two more: a region under a wavy horizon and a large
blob, each with its own texture), then objects. Every layer that stays visible is one instance, so the label map
covers every pixel (the background regions are instances too, as in SA-1B), and because the labels are read from
the compositor's record of which layer painted each pixel last, the annotation is exactly what is drawn.

Subsets, after the automatic-mask benchmarks of the attention-prompting thesis (`seeds/004_*.txt`):

  instances    many objects of many sizes (4-12 objects, radii 3-22 % of the side) over 1-3 background regions
  salient      one dominant object (radius 22-40 % of the side) near the centre, 0-3 small ones
  camouflaged  1-4 objects textured like the region under them (a shifted, slightly recoloured copy of it)

Objects may overlap (true occlusion in depth order) but every object keeps at least half of its area visible.
An image is a pure function of (seed, subset, size); `image_seed` derives the seed of image k of a split.

Layout written by `write_images` (`efficient-sam2 synth --images`):

  OUT/JPEGImages/<subset>/<subset>_00000.jpg   the image
  OUT/Annotations/<subset>/<subset>_00000.png  instance ids (palette PNG, 1..N, every pixel labelled)
  OUT/meta.json                                seeds and each instance's role (background, object, salient,
                                               camouflaged)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import cv2
import numpy as np

from ..io.atomic import atomic_open
from ..io.masks import write_palette_mask
from .synthetic import Layer, render_frame
from .textures import SHAPE_FAMILIES, background_texture, object_texture, shape_mask

__all__ = ["IMAGE_SUBSETS", "IMAGE_SPLITS", "SyntheticImage", "generate_image", "image_seed", "write_images",
           "image_layout"]

IMAGE_SUBSETS: dict[str, tuple[int, str]] = {
    "instances": (101, "many objects of many sizes over 1-3 background regions"),
    "salient": (102, "one dominant object near the centre, 0-3 small ones"),
    "camouflaged": (103, "1-4 objects textured like the region under them"),
}
"""name -> (seed code, description)."""

IMAGE_SPLITS = {"train": 11, "val": 12}
ROLES = ("background", "object", "salient", "camouflaged")
JPEG_QUALITY = 95


@dataclass(frozen=True)
class SyntheticImage:
    """One generated image. image (H, W, 3) uint8 RGB; labels (H, W) uint8 instance ids 1..N (no 0: every pixel
    belongs to a segment); roles: N roles (ROLES), instance k + 1 first; layers: every layer drawn, back to front
    (Layer.label is its instance id, 0 when nothing of it stayed visible); owner (H, W) uint8: k + 1 where layer k
    was painted last."""

    seed: int
    subset: str
    image: np.ndarray
    labels: np.ndarray
    roles: tuple[str, ...]
    layers: tuple[Layer, ...]
    owner: np.ndarray

    @property
    def num_instances(self) -> int:
        return len(self.roles)


def image_seed(seed: int, split: str, subset: str, index: int) -> int:
    """The seed of image `index` of `subset` in `split` (63-bit, from SeedSequence)."""
    if split not in IMAGE_SPLITS:
        raise ValueError(f"split must be one of {', '.join(IMAGE_SPLITS)}; got {split!r}")
    entropy = [int(seed), IMAGE_SPLITS[split], IMAGE_SUBSETS[subset][0], int(index)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) >> 1


# ---------------------------------------------------------------------------------------------------------------------
# Layers


def _horizon(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(H, W) bool: the side of a wavy line across the frame (any direction)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    u = x * math.cos(theta) + y * math.sin(theta)
    v = -x * math.sin(theta) + y * math.cos(theta)
    lo, hi = float(u.min()), float(u.max())
    level = lo + (hi - lo) * rng.uniform(0.3, 0.7)
    side = min(h, w)
    wave = np.zeros_like(v)
    for k in range(1, 4):
        wave += rng.uniform(0, 0.06 / k) * side * np.sin(2 * math.pi * k * v / side * rng.uniform(0.5, 1.5)
                                                         + rng.uniform(0, 2 * math.pi))
    return u > level + wave


def _place(mask: np.ndarray, texture: np.ndarray, centre: tuple[float, float], h: int, w: int) -> Layer:
    """A (P, P) sprite mask / texture pasted with its centre at `centre` (x, y), cropped to the frame."""
    p = mask.shape[0]
    x0, y0 = int(round(centre[0] - p / 2)), int(round(centre[1] - p / 2))
    full_m = np.zeros((h, w), dtype=bool)
    full_t = np.zeros((h, w, 3), dtype=np.uint8)
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(w, x0 + p), min(h, y0 + p)
    if fx1 > fx0 and fy1 > fy0:
        sx0, sy0 = fx0 - x0, fy0 - y0
        full_m[fy0:fy1, fx0:fx1] = mask[sy0:sy0 + fy1 - fy0, sx0:sx0 + fx1 - fx0] > 0.5
        full_t[fy0:fy1, fx0:fx1] = texture[sy0:sy0 + fy1 - fy0, sx0:sx0 + fx1 - fx0]
    return Layer(full_m, full_t, 0)


def _camouflage(rng: np.random.Generator, backdrop: np.ndarray) -> np.ndarray:
    """A texture like `backdrop` (H, W, 3): the same pattern shifted by a random offset, flipped, slightly
    recoloured and darkened or brightened a little."""
    h, w = backdrop.shape[:2]
    t = np.roll(backdrop, (int(rng.integers(h // 5, h - h // 5)), int(rng.integers(w // 5, w - w // 5))), (0, 1))
    if rng.random() < 0.5:
        t = t[::-1]
    gain = rng.uniform(0.85, 1.15, 3) * rng.uniform(0.9, 1.1)
    return np.clip(t.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def _object(rng: np.random.Generator, radius: float, family: str | None = None) -> np.ndarray:
    p = int(math.ceil(2 * radius / 0.9)) + 2
    family = family or str(rng.choice(SHAPE_FAMILIES + ("bar",)))
    aspect = rng.uniform(0.25, 0.5) if family == "bar" else None
    mask = shape_mask(rng, p, family, radius, aspect)
    if family == "bar":  # bars drawn axis-aligned: turn them
        m = cv2.getRotationMatrix2D(((p - 1) / 2, (p - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        mask = (cv2.warpAffine(mask, m, (p, p), flags=cv2.INTER_NEAREST) > 0.5).astype(np.float32)
    return mask


def _visible(owner: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(owner.ravel(), minlength=n + 1)[1:]


def generate_image(seed: int, subset: str = "instances", size: tuple[int, int] = (256, 256)) -> SyntheticImage:
    """One "segment everything" image (a pure function of the arguments); see the module docstring."""
    if subset not in IMAGE_SUBSETS:
        raise ValueError(f"unknown image subset {subset!r}; valid: {', '.join(IMAGE_SUBSETS)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    h, w = int(size[0]), int(size[1])
    if min(h, w) < 32:
        raise ValueError(f"image size must be at least 32 x 32; got {h} x {w}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), IMAGE_SUBSETS[subset][0]]))
    side = min(h, w)
    layers: list[Layer] = []
    roles: list[str] = []
    textures: list[np.ndarray] = []  # each background region's full-frame texture (for camouflage)

    # background regions
    base = background_texture(rng, (h, w))
    layers.append(Layer(np.ones((h, w), dtype=bool), base, 0))
    roles.append("background")
    textures.append(base)
    extra = int(rng.integers(0, 3)) if subset == "instances" else int(rng.integers(0, 2))
    for k in range(extra):
        tex = background_texture(rng, (h, w))
        if k == 0:
            mask = _horizon(rng, h, w)
        else:
            r = rng.uniform(0.25, 0.45) * side
            blob = _object(rng, r, "blob")
            mask = _place(blob, np.zeros(blob.shape + (3,), np.uint8), tuple(rng.uniform(0, 1, 2) * (w, h)), h, w).mask
        if mask.sum() < 0.05 * h * w:
            continue
        layers.append(Layer(mask, tex, 0))
        roles.append("background")
        textures.append(tex)
    n_background = len(layers)

    # objects
    if subset == "instances":
        specs = [("object", math.exp(rng.uniform(math.log(0.03), math.log(0.22))))
                 for _ in range(int(rng.integers(4, 13)))]
    elif subset == "salient":
        specs = [("salient", rng.uniform(0.22, 0.40))]
        specs += [("object", rng.uniform(0.03, 0.08)) for _ in range(int(rng.integers(0, 4)))]
    else:
        specs = [("camouflaged", rng.uniform(0.07, 0.2)) for _ in range(int(rng.integers(1, 5)))]
    avoid = base.reshape(-1, 3).mean(0)
    owner = render_frame(base, layers).owner
    for role, frac in specs:
        radius = max(4.0, frac * side)
        sprite = _object(rng, radius, None if role != "camouflaged" else str(rng.choice(("ellipse", "blob"))))
        p = sprite.shape[0]
        before = _visible(owner, len(layers))[n_background:]  # the objects' visible areas so far
        for _try in range(30):
            if role == "salient":
                centre = (w / 2 + rng.uniform(-0.15, 0.15) * w, h / 2 + rng.uniform(-0.15, 0.15) * h)
            else:
                m = min(radius * 0.8, 0.45 * side)
                centre = (rng.uniform(m, w - m), rng.uniform(m, h - m))
            if role == "camouflaged":
                under = owner[int(np.clip(centre[1], 0, h - 1)), int(np.clip(centre[0], 0, w - 1))] - 1
                texture = _camouflage(rng, textures[min(int(under), len(textures) - 1)]
                                      if under < n_background else textures[0])
                x0, y0 = int(round(centre[0] - p / 2)), int(round(centre[1] - p / 2))
                tex = np.zeros((p, p, 3), np.uint8)
                ys, xs = np.mgrid[0:p, 0:p]
                tex[:] = texture[np.clip(ys + y0, 0, h - 1), np.clip(xs + x0, 0, w - 1)]
            else:
                tex = object_texture(rng, p, avoid=avoid)
            layer = _place(sprite, tex, centre, h, w)
            area = int(layer.mask.sum())
            if area < max(24, 0.6 * sprite.sum()):
                continue  # mostly outside the frame
            new_owner = owner.copy()
            new_owner[layer.mask] = len(layers) + 1
            after = _visible(new_owner, len(layers) + 1)[n_background:len(layers)]
            if (after * 2 >= before).all():  # every earlier object keeps at least half of its area
                layers.append(layer)
                roles.append(role)
                owner = new_owner
                break

    frame = render_frame(base, layers)
    counts = _visible(frame.owner, len(layers))
    keep = [k for k in range(len(layers)) if counts[k] > 0]
    ids = np.zeros(len(layers) + 1, dtype=np.uint8)
    for i, k in enumerate(keep):
        ids[k + 1] = i + 1
    labels = ids[frame.owner]
    final = tuple(Layer(layer.mask, layer.texture, int(ids[k + 1])) for k, layer in enumerate(layers))
    grain = np.round(rng.standard_normal((h, w, 3), dtype=np.float32) * rng.uniform(0.5, 3.0))
    image = np.clip(frame.image.astype(np.int16) + grain.astype(np.int16), 0, 255).astype(np.uint8)
    return SyntheticImage(int(seed), subset, image, labels, tuple(roles[k] for k in keep), final, frame.owner)


# ---------------------------------------------------------------------------------------------------------------------
# Writing


@dataclass(frozen=True)
class ImageLayout:
    root: str
    image_dir: str  # one folder per subset below it
    annotation_dir: str
    meta: str


def image_layout(out: str | os.PathLike) -> ImageLayout:
    root = os.fspath(out)
    return ImageLayout(root, os.path.join(root, "JPEGImages"), os.path.join(root, "Annotations"),
                       os.path.join(root, "meta.json"))


def write_images(out: str | os.PathLike, images: int, split: str, seed: int, subsets=("instances", "salient",
                 "camouflaged"), size: tuple[int, int] = (256, 256), overwrite: bool = False,
                 progress: bool = True) -> list[str]:
    """Write `images` images per subset (see the module docstring); returns the image names."""
    from tqdm.auto import tqdm

    if isinstance(images, bool) or not isinstance(images, (int, np.integer)) or images < 1:
        raise ValueError(f"the number of images must be an integer >= 1; got {images!r}")
    if split not in IMAGE_SPLITS:
        raise ValueError(f"split must be one of {', '.join(IMAGE_SPLITS)}; got {split!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    subsets = list(subsets)
    unknown = [s for s in subsets if s not in IMAGE_SUBSETS]
    if unknown or not subsets:
        raise ValueError(f"unknown image subset(s) {unknown}; valid: {', '.join(IMAGE_SUBSETS)}")
    layout = image_layout(out)
    if os.path.isdir(layout.root) and os.listdir(layout.root) and not overwrite:
        raise FileExistsError(f"output folder {layout.root!r} exists and is not empty (use --overwrite)")
    meta = {"kind": "segment-everything images", "split": split, "seed": int(seed), "size": [size[0], size[1]],
            "subsets": subsets, "images": {}}
    names = []
    bar = tqdm(total=images * len(subsets), desc="images", unit="img", disable=not progress)
    for subset in subsets:
        os.makedirs(os.path.join(layout.image_dir, subset), exist_ok=True)
        os.makedirs(os.path.join(layout.annotation_dir, subset), exist_ok=True)
        for i in range(images):
            s = image_seed(seed, split, subset, i)
            img = generate_image(s, subset, size)
            name = f"{subset}_{i:05d}"
            path = os.path.join(layout.image_dir, subset, name + ".jpg")
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img.image, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise OSError(f"could not encode {path!r}")
            with atomic_open(path, "wb") as f:
                f.write(buf.tobytes())
            write_palette_mask(os.path.join(layout.annotation_dir, subset, name + ".png"), img.labels)
            meta["images"][name] = {"subset": subset, "seed": s, "instances": img.num_instances,
                                    "roles": list(img.roles)}
            names.append(name)
            bar.update(1)
    bar.close()
    with atomic_open(layout.meta, "w") as f:
        json.dump(meta, f, indent=1)
    return names
