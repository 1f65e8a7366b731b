"""Procedural textures and shapes for synthetic video: value noise, gradients, stripes, blobs and shape masks.

Every function is a pure function of its numpy `Generator` and its arguments (no global random state). Noise fields
are float32 in [0, 1] of shape (H, W); textures are uint8 RGB of shape (H, W, 3); shape masks are float32 0 / 1 of
shape (P, P), centred in the square. Everything is vectorised numpy / OpenCV: a 400 x 400 texture costs about a
millisecond.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = [
    "BACKGROUND_KINDS",
    "OBJECT_TEXTURES",
    "SHAPE_FAMILIES",
    "background_texture",
    "colourise",
    "fractal_noise",
    "object_texture",
    "random_palette",
    "shape_mask",
    "value_noise",
]

BACKGROUND_KINDS: tuple[str, ...] = ("noise", "gradient", "stripes", "blobs", "mixed")
OBJECT_TEXTURES: tuple[str, ...] = ("noise", "stripes", "spots", "checker", "gradient")
SHAPE_FAMILIES: tuple[str, ...] = ("ellipse", "polygon", "blob")


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (y (H, 1), x (1, W)) as float32, for broadcasting."""
    h, w = shape
    return np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]


def value_noise(rng: np.random.Generator, shape: tuple[int, int], cells: float) -> np.ndarray:
    """Smooth (H, W) float32 noise in [0, 1]: a random grid of about `cells` cells along the longer side, upsampled
    bicubically (so features are about max(H, W) / cells pixels wide)."""
    h, w = shape
    scale = max(h, w) / max(float(cells), 1.0)
    gh, gw = max(2, math.ceil(h / scale) + 1), max(2, math.ceil(w / scale) + 1)
    grid = rng.random((gh, gw), dtype=np.float32)
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], cells: float, octaves: int = 4,
                  persistence: float = 0.5) -> np.ndarray:
    """Value noise summed over `octaves` scales (cells, 2 cells, 4 cells, ...), rescaled to [0, 1]: (H, W) float32."""
    out = np.zeros(shape, dtype=np.float32)
    amp = 1.0
    for k in range(octaves):
        out += amp * value_noise(rng, shape, cells * 2 ** k)
        amp *= persistence
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def random_palette(rng: np.random.Generator, k: int, saturation: tuple[float, float] = (0.2, 0.9),
                   value: tuple[float, float] = (0.2, 0.95), hue: float | None = None,
                   hue_spread: float = 360.0) -> np.ndarray:
    """(k, 3) float32 RGB colours in [0, 255] drawn in HSV; hues within `hue_spread` degrees of `hue` (random if
    None)."""
    h0 = rng.uniform(0, 360) if hue is None else hue
    hsv = np.stack([(h0 + rng.uniform(-0.5, 0.5, k) * hue_spread) % 360, rng.uniform(*saturation, k),
                    rng.uniform(*value, k)], axis=1).astype(np.float32)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0] * 255.0


def colourise(t: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map an (H, W) field in [0, 1] through a (k, 3) palette (piecewise-linear ramp): (H, W, 3) float32."""
    k = len(palette)
    if k == 1:
        return np.broadcast_to(palette[0], t.shape + (3,)).astype(np.float32)
    idx = np.clip(t, 0.0, 1.0) * (k - 1)
    lo = np.minimum(idx.astype(np.int32), k - 2)
    frac = (idx - lo)[..., None]
    return palette[lo] * (1.0 - frac) + palette[lo + 1] * frac


def _stripes(rng: np.random.Generator, shape: tuple[int, int], period: float, warp: float) -> np.ndarray:
    y, x = _grid(shape)
    theta = rng.uniform(0, math.pi)
    phase = (x * math.cos(theta) + y * math.sin(theta)) * (2 * math.pi / period)
    if warp > 0:
        phase = phase + warp * (value_noise(rng, shape, rng.uniform(1.5, 4)) - 0.5) * 2 * math.pi
    t = 0.5 + 0.5 * np.sin(phase + rng.uniform(0, 2 * math.pi))
    if rng.random() < 0.4:  # hard-edged stripes
        t = (t > 0.5).astype(np.float32)
    return t.astype(np.float32)


def _gradient(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    y, x = _grid(shape)
    theta = rng.uniform(0, 2 * math.pi)
    t = x * math.cos(theta) + y * math.sin(theta)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return np.broadcast_to(t, shape).astype(np.float32)


def _blobs(rng: np.random.Generator, shape: tuple[int, int], palette: np.ndarray) -> np.ndarray:
    h, w = shape
    img = colourise(value_noise(rng, shape, rng.uniform(1.5, 4)), palette).astype(np.uint8)
    side = min(h, w)
    for _ in range(int(rng.integers(15, 60))):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (max(1, int(side * rng.uniform(0.02, 0.12))), max(1, int(side * rng.uniform(0.02, 0.12))))
        colour = palette[rng.integers(len(palette))] * rng.uniform(0.7, 1.15)
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360,
                    tuple(float(c) for c in np.clip(colour, 0, 255)), -1, cv2.LINE_AA)
    return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 2.0)).astype(np.float32)


def _background_layer(rng: np.random.Generator, shape: tuple[int, int], kind: str) -> np.ndarray:
    side = min(shape)
    palette = random_palette(rng, int(rng.integers(2, 5)), hue_spread=rng.uniform(40, 360))
    if kind == "noise":
        t = fractal_noise(rng, shape, rng.uniform(1.5, 8), octaves=int(rng.integers(2, 6)))
        return colourise(t ** rng.uniform(0.6, 1.6), palette)
    if kind == "gradient":
        t = 0.8 * _gradient(rng, shape) + 0.2 * fractal_noise(rng, shape, rng.uniform(2, 6), 3)
        return colourise(t, palette)
    if kind == "stripes":
        t = _stripes(rng, shape, side * rng.uniform(0.03, 0.2), rng.uniform(0, 1.5))
        return colourise(t, palette[:2])
    if kind == "blobs":
        return _blobs(rng, shape, palette)
    raise ValueError(f"unknown background kind {kind!r}; expected one of {', '.join(BACKGROUND_KINDS)}")


def background_texture(rng: np.random.Generator, shape: tuple[int, int], kind: str | None = None) -> np.ndarray:
    """A textured background of `kind` (one of BACKGROUND_KINDS; random if None): (H, W, 3) uint8 RGB.

    "mixed" blends two other kinds through a smooth noise mask. Every kind gets fine grain and a smooth
    illumination ramp on top, so no region is flat.
    """
    kind = kind if kind is not None else str(rng.choice(BACKGROUND_KINDS))
    if kind == "mixed":
        a, b = rng.choice(BACKGROUND_KINDS[:-1], size=2, replace=False)
        alpha = fractal_noise(rng, shape, rng.uniform(1.5, 4), 3)
        alpha = np.clip((alpha - 0.5) * rng.uniform(2, 8) + 0.5, 0, 1)[..., None]
        img = _background_layer(rng, shape, str(a)) * alpha + _background_layer(rng, shape, str(b)) * (1 - alpha)
    else:
        img = _background_layer(rng, shape, kind)
    grain = (fractal_noise(rng, shape, max(shape) / rng.uniform(2, 6), 2) - 0.5) * rng.uniform(10, 40)
    light = 1.0 + (_gradient(rng, shape) - 0.5) * rng.uniform(0, 0.5)
    return np.clip(img * light[..., None] + grain[..., None], 0, 255).astype(np.uint8)


def object_texture(rng: np.random.Generator, size: int, kind: str | None = None,
                   avoid: np.ndarray | None = None, min_distance: float = 60.0) -> np.ndarray:
    """A (size, size, 3) uint8 object texture of `kind` (one of OBJECT_TEXTURES; random if None) with radial
    shading, so the object looks like a lit solid.

    `avoid`: an RGB colour (3,) the texture's mean colour should be at least `min_distance` away from (e.g. the
    background's mean); palettes are redrawn up to 10 times to get there.
    """
    kind = kind if kind is not None else str(rng.choice(OBJECT_TEXTURES))
    shape = (size, size)
    for _ in range(10):
        palette = random_palette(rng, 2, saturation=(0.35, 1.0), value=(0.35, 1.0), hue_spread=rng.uniform(20, 200))
        if avoid is None or np.linalg.norm(palette.mean(0) - avoid) >= min_distance:
            break
    if kind == "noise":
        t = fractal_noise(rng, shape, rng.uniform(2, 6), 3)
    elif kind == "stripes":
        t = _stripes(rng, shape, size * rng.uniform(0.08, 0.25), rng.uniform(0, 0.6))
    elif kind == "spots":
        y, x = _grid(shape)
        period = size * rng.uniform(0.1, 0.25)
        t = ((np.sin(x * 2 * math.pi / period) * np.sin(y * 2 * math.pi / period)) > rng.uniform(0.1, 0.5))
        t = cv2.GaussianBlur(t.astype(np.float32), (0, 0), 1.0)
    elif kind == "checker":
        y, x = _grid(shape)
        period = size * rng.uniform(0.12, 0.3)
        t = (((x // period) + (y // period)) % 2).astype(np.float32)
        t = cv2.GaussianBlur(t, (0, 0), 0.8)
    elif kind == "gradient":
        t = 0.75 * _gradient(rng, shape) + 0.25 * fractal_noise(rng, shape, 4, 3)
    else:
        raise ValueError(f"unknown object texture {kind!r}; expected one of {', '.join(OBJECT_TEXTURES)}")
    img = colourise(np.broadcast_to(t, shape), palette)
    y, x = _grid(shape)
    c = (size - 1) / 2
    r2 = ((x - c) ** 2 + (y - c) ** 2) / (c * c)
    shade = 1.1 - rng.uniform(0.15, 0.45) * np.minimum(r2, 1.5)
    return np.clip(img * shade[..., None], 0, 255).astype(np.uint8)


def shape_mask(rng: np.random.Generator, size: int, family: str, radius: float,
               aspect: float | None = None) -> np.ndarray:
    """A hard (size, size) float32 0 / 1 mask of a random shape of `family`, centred in the square and reaching at
    most `radius` pixels from its centre.

    Families: the target families SHAPE_FAMILIES (ellipse, polygon, smooth random blob) and "bar" (a rectangle of
    half-length `radius` along x, for occluders). `aspect` (minor / major axis) fixes an ellipse's or a bar's
    proportions instead of drawing them; an ellipse is then axis-aligned.
    """
    c = (size - 1) / 2
    if family == "bar":
        half_w = radius * (aspect if aspect is not None else rng.uniform(0.15, 0.35))
        pts = np.array([[-radius, -half_w], [radius, -half_w], [radius, half_w], [-radius, half_w]])
    elif family == "ellipse":
        a, b = radius, radius * (aspect if aspect is not None else rng.uniform(0.45, 1.0))
        angle = rng.uniform(0, 2 * math.pi) if aspect is None else 0.0
        phi = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        px, py = a * np.cos(phi), b * np.sin(phi)
        pts = np.stack([px * math.cos(angle) - py * math.sin(angle), px * math.sin(angle) + py * math.cos(angle)], 1)
    elif family == "polygon":
        n = int(rng.integers(3, 9))
        phi = np.sort((np.arange(n) + rng.uniform(-0.3, 0.3, n)) * 2 * math.pi / n + rng.uniform(0, 2 * math.pi))
        r = radius * rng.uniform(0.65, 1.0, n)
        pts = np.stack([r * np.cos(phi), r * np.sin(phi)], 1)
    elif family == "blob":
        phi = np.linspace(0, 2 * math.pi, 128, endpoint=False)
        r = np.ones_like(phi)
        for k in range(2, 6):
            r += rng.uniform(0, 0.45 / k) * np.cos(k * phi + rng.uniform(0, 2 * math.pi))
        r = radius * r / r.max()
        pts = np.stack([r * np.cos(phi), r * np.sin(phi)], 1)
    else:
        raise ValueError(f"unknown shape family {family!r}; expected one of {', '.join(SHAPE_FAMILIES)} or bar")
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round((pts + c) * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return mask.astype(np.float32)
