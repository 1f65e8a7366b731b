"""The "organic" style of synthetic video: held-out looks, motion and lighting, never used for training or tuning.

It differs from the default "synth" style in everything but the stress events and the exact ground truth:

- textures: marble veins, wood rings, Voronoi cells and plasma for backgrounds (lit by a soft spotlight); marble,
  rings, cells, cross-hatching and spirals for objects (lit from one side, not radially);
- shapes: stars, rings (with a hole that shows the background), crescents, crosses and flowers;
- motion: speed that changes over the video (acceleration or braking) along a curving heading, a sideways sway,
  rotation that spins up or down, and a scale that grows or shrinks (approach, recede) besides oscillating;
- lighting: brightness, contrast and colour tint drift over the video, under a vignette whose centre moves.
  Lighting is applied to the composited image only, pixel by pixel, so what is drawn is still what is annotated.

The frame size is one of several aspect ratios (see `STYLES["organic"]`). Everything is a pure function of the
numpy `Generator` it is given, as in `textures.py` and `scene.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .scene import Scene, Sprite, Track, _fold, _sprite, _wobble
from .textures import _grid, colourise, fractal_noise, random_palette, value_noise

__all__ = [
    "ORGANIC_BACKGROUNDS",
    "ORGANIC_SHAPES",
    "ORGANIC_TEXTURES",
    "Lighting",
    "OrganicScene",
    "organic_background",
    "organic_shape",
    "organic_texture",
]

ORGANIC_BACKGROUNDS: tuple[str, ...] = ("marble", "rings", "cells", "plasma")
ORGANIC_TEXTURES: tuple[str, ...] = ("marble", "rings", "cells", "hatch", "spiral")
ORGANIC_SHAPES: tuple[str, ...] = ("star", "ring", "crescent", "cross", "flower")


# ---------------------------------------------------------------------------------------------------------------------
# Fields in [0, 1], (H, W) float32


def _marble(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Veins: a sinusoid across the field whose phase is pushed around by fractal noise."""
    y, x = _grid(shape)
    theta = rng.uniform(0, math.pi)
    period = max(shape) * rng.uniform(0.12, 0.4)
    turbulence = fractal_noise(rng, shape, rng.uniform(2, 5), 4) * rng.uniform(3, 9)
    phase = (x * math.cos(theta) + y * math.sin(theta)) * (2 * math.pi / period) + turbulence
    return (np.abs(np.sin(phase)) ** rng.uniform(0.3, 1.0)).astype(np.float32)


def _rings(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Wood: concentric rings about a centre (possibly outside the field), warped by smooth noise."""
    h, w = shape
    y, x = _grid(shape)
    cx, cy = rng.uniform(-0.5, 1.5) * w, rng.uniform(-0.5, 1.5) * h
    period = max(shape) * rng.uniform(0.04, 0.15)
    warp = (value_noise(rng, shape, rng.uniform(2, 4)) - 0.5) * rng.uniform(0.5, 3.0)
    t = 0.5 + 0.5 * np.sin(np.sqrt((x - cx) ** 2 + (y - cy) ** 2) * (2 * math.pi / period) + warp * 2 * math.pi)
    return (t ** rng.uniform(0.5, 2.0)).astype(np.float32)


def _cells(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Voronoi cells: each cell a random tone, darkened towards the edges between cells."""
    h, w = shape
    y, x = _grid(shape)
    k = int(rng.integers(8, 40))
    px, py, tone = rng.uniform(0, w, k), rng.uniform(0, h, k), rng.uniform(0.15, 1.0, k).astype(np.float32)
    d1 = np.full(shape, np.inf, np.float32)
    d2 = np.full(shape, np.inf, np.float32)
    near = np.zeros(shape, np.int64)
    for j in range(k):  # (k <= 40 points: one vectorised pass per point)
        d = np.sqrt((x - px[j]) ** 2 + (y - py[j]) ** 2)
        closer = d < d1
        d2 = np.where(closer, d1, np.minimum(d2, d))
        near = np.where(closer, j, near)
        d1 = np.where(closer, d, d1)
    edge = np.clip((d2 - d1) / (max(shape) * rng.uniform(0.01, 0.04)), 0.0, 1.0)
    return (tone[near] * (0.4 + 0.6 * np.sqrt(edge))).astype(np.float32)


def _plasma(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A sum of a few plane waves and one circular wave, rescaled to [0, 1]."""
    h, w = shape
    y, x = _grid(shape)
    out = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(3, 6))):
        theta, period = rng.uniform(0, 2 * math.pi), max(shape) * rng.uniform(0.2, 0.8)
        out += np.sin((x * math.cos(theta) + y * math.sin(theta)) * (2 * math.pi / period) + rng.uniform(0, 6.3))
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    out += np.sin(np.sqrt((x - cx) ** 2 + (y - cy) ** 2) * (2 * math.pi / (max(shape) * rng.uniform(0.15, 0.5))))
    return ((out - out.min()) / max(float(out.max() - out.min()), 1e-6)).astype(np.float32)


def _hatch(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Cross-hatching: two sets of hard lines at about right angles."""
    y, x = _grid(shape)
    theta = rng.uniform(0, math.pi)
    t = np.zeros(shape, np.float32)
    for angle in (theta, theta + math.pi / 2 + rng.uniform(-0.4, 0.4)):
        period = max(shape) * rng.uniform(0.08, 0.2)
        wave = np.sin((x * math.cos(angle) + y * math.sin(angle)) * (2 * math.pi / period))
        t = np.maximum(t, (wave > rng.uniform(0.3, 0.8)).astype(np.float32))
    return cv2.GaussianBlur(t, (0, 0), 0.7)


def _spiral(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Arms winding about the centre of the field."""
    h, w = shape
    y, x = _grid(shape)
    dx, dy = x - (w - 1) / 2, y - (h - 1) / 2
    arms = int(rng.integers(1, 5))
    pitch = max(shape) * rng.uniform(0.15, 0.5)
    phase = arms * np.arctan2(dy, dx) + np.sqrt(dx * dx + dy * dy) * (2 * math.pi / pitch) * rng.choice((-1, 1))
    return (0.5 + 0.5 * np.cos(phase)).astype(np.float32)


_FIELDS = {"marble": _marble, "rings": _rings, "cells": _cells, "plasma": _plasma, "hatch": _hatch,
           "spiral": _spiral}


# ---------------------------------------------------------------------------------------------------------------------
# Textures and shapes


def organic_background(rng: np.random.Generator, shape: tuple[int, int], kind: str | None = None) -> np.ndarray:
    """An (H, W, 3) uint8 background of `kind` (one of ORGANIC_BACKGROUNDS; random if None), three to five colours,
    lit by a soft spotlight (a broad Gaussian of light somewhere over the field) with a little grain."""
    kind = kind if kind is not None else str(rng.choice(ORGANIC_BACKGROUNDS))
    if kind not in ORGANIC_BACKGROUNDS:
        raise ValueError(f"unknown organic background {kind!r}; expected one of {', '.join(ORGANIC_BACKGROUNDS)}")
    h, w = shape
    palette = random_palette(rng, int(rng.integers(3, 6)), saturation=(0.1, 0.8), value=(0.25, 0.9),
                             hue_spread=rng.uniform(30, 240))
    img = colourise(_FIELDS[kind](rng, shape), palette)
    y, x = _grid(shape)
    cx, cy, spread = rng.uniform(0, w), rng.uniform(0, h), max(shape) * rng.uniform(0.3, 0.8)
    spot = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * spread * spread))
    light = 1.0 + rng.uniform(0.1, 0.45) * (spot - 0.5)
    grain = (value_noise(rng, shape, max(shape) / rng.uniform(1.5, 3)) - 0.5) * rng.uniform(8, 24)
    return np.clip(img * light[..., None] + grain[..., None], 0, 255).astype(np.uint8)


def organic_texture(rng: np.random.Generator, size: int, kind: str | None = None, avoid: np.ndarray | None = None,
                    min_distance: float = 60.0) -> np.ndarray:
    """A (size, size, 3) uint8 object texture of `kind` (one of ORGANIC_TEXTURES; random if None), lit from one side
    (a linear ramp of light across the object). `avoid`: an RGB colour the texture's mean colour keeps at least
    `min_distance` from (palettes redrawn up to 10 times)."""
    kind = kind if kind is not None else str(rng.choice(ORGANIC_TEXTURES))
    if kind not in ORGANIC_TEXTURES:
        raise ValueError(f"unknown organic texture {kind!r}; expected one of {', '.join(ORGANIC_TEXTURES)}")
    shape = (size, size)
    for _ in range(10):
        palette = random_palette(rng, 3, saturation=(0.3, 1.0), value=(0.3, 1.0), hue_spread=rng.uniform(30, 160))
        if avoid is None or np.linalg.norm(palette.mean(0) - avoid) >= min_distance:
            break
    img = colourise(_FIELDS[kind](rng, shape), palette)
    y, x = _grid(shape)
    c, beta = (size - 1) / 2, rng.uniform(0, 2 * math.pi)
    ramp = ((x - c) * math.cos(beta) + (y - c) * math.sin(beta)) / max(c, 1.0)
    shade = 1.0 + rng.uniform(0.15, 0.4) * np.clip(ramp, -1.0, 1.0)
    return np.clip(img * shade[..., None], 0, 255).astype(np.uint8)


def organic_shape(rng: np.random.Generator, size: int, family: str, radius: float) -> np.ndarray:
    """A hard (size, size) float32 0 / 1 mask of a random shape of `family` (one of ORGANIC_SHAPES), centred in the
    square and reaching at most `radius` pixels from its centre. A ring has a hole; a crescent is a disc with an
    off-centre bite."""
    c = (size - 1) / 2
    mask = np.zeros((size, size), np.uint8)

    def fill(pts: np.ndarray, value: int, offset=(0.0, 0.0)) -> None:
        pts = pts + np.asarray(offset) + c
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], value, cv2.LINE_8, shift=4)

    def ellipse(a: float, b: float, angle: float, k: int = 96) -> np.ndarray:
        phi = np.linspace(0, 2 * math.pi, k, endpoint=False)
        px, py = a * np.cos(phi), b * np.sin(phi)
        return np.stack([px * math.cos(angle) - py * math.sin(angle), px * math.sin(angle) + py * math.cos(angle)], 1)

    rot = rng.uniform(0, 2 * math.pi)
    if family == "star":
        k = int(rng.integers(4, 9))
        phi = rot + np.arange(2 * k) * math.pi / k
        r = np.where(np.arange(2 * k) % 2 == 0, radius, radius * rng.uniform(0.35, 0.6)) * rng.uniform(0.88, 1.0, 2 * k)
        fill(np.stack([r * np.cos(phi), r * np.sin(phi)], 1), 1)
    elif family == "ring":
        aspect, hole = rng.uniform(0.7, 1.0), rng.uniform(0.35, 0.6)
        fill(ellipse(radius, radius * aspect, rot), 1)
        shift = (1 - hole) * radius * aspect * rng.uniform(0, 0.3) * np.array([math.cos(rot), math.sin(rot)])
        fill(ellipse(radius * hole, radius * aspect * hole, rot), 0, shift)
    elif family == "crescent":
        bite, offset = radius * rng.uniform(0.6, 0.85), radius * rng.uniform(0.4, 0.65)
        fill(ellipse(radius, radius, 0.0), 1)
        fill(ellipse(bite, bite, 0.0), 0, offset * np.array([math.cos(rot), math.sin(rot)]))
    elif family == "cross":
        half = radius * rng.uniform(0.18, 0.32)
        for angle, reach in ((rot, 1.0), (rot + math.pi / 2 + rng.uniform(-0.3, 0.3), rng.uniform(0.6, 1.0))):
            length = math.sqrt(max((radius * reach) ** 2 - half * half, 1.0))  # the corners stay within radius
            bar = np.array([[-length, -half], [length, -half], [length, half], [-length, half]])
            cs, sn = math.cos(angle), math.sin(angle)
            fill(bar @ np.array([[cs, sn], [-sn, cs]]), 1)
    elif family == "flower":
        k, depth = int(rng.integers(3, 8)), rng.uniform(0.25, 0.5)
        phi = np.linspace(0, 2 * math.pi, 192, endpoint=False)
        r = radius * (1 - depth + depth * np.abs(np.cos(k * (phi - rot) / 2)) ** rng.uniform(0.5, 2.0))
        fill(np.stack([r * np.cos(phi), r * np.sin(phi)], 1), 1)
    else:
        raise ValueError(f"unknown organic shape {family!r}; expected one of {', '.join(ORGANIC_SHAPES)}")
    return mask.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# Lighting


@dataclass(frozen=True)
class Lighting:
    """Per-frame lighting of one shot: gain (n,) brightness, contrast (n,) about mid-grey, tint (n, 3) per-channel
    gain, vignette (n,) darkening at the frame's corners (0 = none), centre (n, 2) x, y of the vignette."""

    gain: np.ndarray
    contrast: np.ndarray
    tint: np.ndarray
    vignette: np.ndarray
    centre: np.ndarray

    def apply(self, image: np.ndarray, i: int) -> np.ndarray:
        """Frame `i`'s (H, W, 3) uint8 image under this lighting: each pixel is changed by its own value and place
        only, so no edge moves."""
        h, w = image.shape[:2]
        y, x = _grid((h, w))
        cx, cy = self.centre[i]
        r2 = ((x - cx) / (0.5 * w)) ** 2 + ((y - cy) / (0.5 * h)) ** 2
        fall = 1.0 - self.vignette[i] * np.minimum(r2 / 2.0, 1.0)
        scale = (self.gain[i] * self.tint[i]).astype(np.float32)
        out = (image.astype(np.float32) - 128.0) * np.float32(self.contrast[i]) + 128.0
        return np.clip(out * scale * fall[..., None], 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------------
# The scene


class OrganicScene(Scene):
    """A `Scene` with the organic style's sprites, background, motion and lighting; the stress events (crossings,
    occluders, exits, cuts) and the sizes are the default scene's."""

    shape_families = ORGANIC_SHAPES

    def target_shape(self, family: str) -> np.ndarray:
        p = self.sprite_size
        return organic_shape(self.rng, p, family, 0.45 * p)

    def target_texture(self, avoid: np.ndarray) -> np.ndarray:
        return organic_texture(self.rng, self.sprite_size, avoid=avoid)

    def occluder_sprite(self, family: str, radius: float, aspect: float | None = None) -> Sprite:
        sprite = super().occluder_sprite(family, radius, aspect)  # the bar / ellipse, re-textured in this style
        texture = organic_texture(self.rng, sprite.size, kind=str(self.rng.choice(("marble", "cells", "hatch"))))
        return _sprite(sprite.rgba[..., 3] > 0, texture, sprite.radius, sprite.family)

    def background(self, shape: tuple[int, int]) -> np.ndarray:
        return organic_background(self.rng, shape)

    def path(self, sprite: Sprite, label: int, n: int, start: np.ndarray, scale0: float) -> Track:
        """Speed changing linearly from v0 to v1 (accelerating or braking) along a heading that turns at a steady
        rate, plus a sideways sway; spin that changes linearly; log-scale drifting (growth) plus an oscillation."""
        rng, spec, side = self.rng, self.spec, self.side
        t = np.arange(n, dtype=np.float64)
        u = t / max(n - 1, 1)
        v0, v1 = rng.uniform(*spec.speed, 2) * side
        heading0 = rng.uniform(0, 2 * math.pi)
        heading = heading0 + rng.uniform(-1, 1) * rng.uniform(0.02, 0.08) * t
        step = ((v0 + (v1 - v0) * u) * np.stack([np.cos(heading), np.sin(heading)]))[:, :-1].T
        travel = np.concatenate([np.zeros((1, 2)), np.cumsum(step, axis=0)])
        period, phase = rng.uniform(max(6.0, n / 4), max(10.0, float(n))), rng.uniform(0, 2 * math.pi)
        sway = rng.uniform(0.3, 1.0) * 1.5 * spec.wiggle * side * (np.sin(2 * math.pi * t / period + phase)
                                                                    - math.sin(phase))
        raw = start + travel + np.outer(sway, [-math.sin(heading0), math.cos(heading0)])
        lo = np.full(2, 0.3 * sprite.radius * scale0)
        hi = np.array([self.w, self.h]) - lo
        centre = _fold(raw, np.minimum(lo, start), np.maximum(hi, start))
        spin0, spin1 = rng.uniform(-1, 1) * spec.rotation, rng.uniform(-2, 2) * spec.rotation
        spin = spin0 + (spin1 - spin0) * u
        angle = rng.uniform(0, 2 * math.pi) + np.concatenate([[0.0], np.cumsum(spin[:-1])])
        growth = rng.uniform(-3, 3) * spec.scale_change
        period, phase = rng.uniform(max(6.0, n / 2), max(12.0, 2.0 * n)), rng.uniform(0, 2 * math.pi)
        wave = 0.5 * spec.scale_change * (np.sin(2 * math.pi * t / period + phase) - math.sin(phase))
        return Track(sprite, label, centre, angle, scale0 * np.exp(growth * u + wave))

    def lighting(self, n: int) -> Lighting:
        rng, u = self.rng, np.arange(n, dtype=np.float64) / max(n - 1, 1)
        gain = np.exp(rng.uniform(-0.35, 0.35) * u + _wobble(rng, n, 0.25, dims=1)[:, 0])
        contrast = np.exp(rng.uniform(-0.25, 0.25) * u + _wobble(rng, n, 0.2, dims=1)[:, 0])
        tint = 1.0 + _wobble(rng, n, 0.12, dims=3) + rng.uniform(-0.06, 0.06, 3)
        vignette = np.clip(rng.uniform(0.15, 0.45) + _wobble(rng, n, 0.1, dims=1)[:, 0], 0.0, 0.55)
        centre = np.array([(self.w - 1) / 2, (self.h - 1) / 2]) + _wobble(rng, n, 0.3 * self.side)
        return Lighting(np.clip(gain, 0.6, 1.5), np.clip(contrast, 0.7, 1.35), np.clip(tint, 0.8, 1.2), vignette,
                        centre)
