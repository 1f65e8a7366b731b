"""One synthetic scene being drawn: sprites (textured shapes with hard masks), their motion over a shot (smooth
paths that bounce off the frame borders, rotation, scale), the camera (pan and shake), and the stress events of the
subsets (crossings, sweeping occluders, exits and returns, hiding behind an occluder).

Coordinates: object paths are in camera-stabilised frame pixels (x, y); the shake (a similarity about the frame
centre) moves objects and background alike, the pan moves the background only. Sizes and speeds are fractions of
min(H, W) (see `SubsetSpec`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .subsets import MIN_FIRST_FRAME_AREA, SyntheticConfig
from .textures import SHAPE_FAMILIES, background_texture, object_texture, shape_mask

__all__ = ["Scene", "Sprite", "Track"]


@dataclass
class Sprite:
    """A textured shape: rgba (P, P, 4) uint8 (alpha 255 inside the hard mask), radius: reach of the shape from the
    sprite centre (sprite pixels), area: mask pixels, family: shape family."""

    rgba: np.ndarray
    radius: float
    area: float
    family: str

    @property
    def size(self) -> int:
        return self.rgba.shape[0]


def _sprite(mask: np.ndarray, texture: np.ndarray, radius: float, family: str) -> Sprite:
    rgba = np.concatenate([texture, (mask * 255).astype(np.uint8)[..., None]], axis=2)
    return Sprite(rgba, radius, float(mask.sum()), family)


@dataclass
class Track:
    """A sprite's motion over one shot: centre (n, 2) x, y, angle (n,) radians, scale (n,) frame px per sprite px,
    in camera-stabilised frame coordinates; label: annotation id (0 for non-targets)."""

    sprite: Sprite
    label: int
    centre: np.ndarray
    angle: np.ndarray
    scale: np.ndarray

    def matrices(self) -> np.ndarray:
        """(n, 3, 3) sprite pixel -> stabilised frame coordinates."""
        return _similarity(self.centre, self.angle, self.scale, (self.sprite.size - 1) / 2)

    def extent(self) -> np.ndarray:
        """(n,) reach of the shape from its centre, in frame pixels."""
        return self.sprite.radius * self.scale


def _similarity(centre: np.ndarray, angle: np.ndarray, scale: np.ndarray, pivot) -> np.ndarray:
    """(n, 3, 3) maps: rotate by angle and scale about `pivot` (x, y or scalar), then move the pivot to centre."""
    n = len(angle)
    px, py = (pivot, pivot) if np.isscalar(pivot) else pivot
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    m = np.zeros((n, 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = c, -s, s, c, 1.0
    m[:, 0, 2] = centre[:, 0] - (c * px - s * py)
    m[:, 1, 2] = centre[:, 1] - (s * px + c * py)
    return m


def _wobble(rng: np.random.Generator, n: int, amplitude: float, dims: int = 2) -> np.ndarray:
    """(n, dims) smooth offsets (two sinusoids per axis), zero on the first frame."""
    t = np.arange(n, dtype=np.float64)[:, None]
    out = np.zeros((n, dims))
    for _ in range(2):
        period = rng.uniform(max(4.0, n / 3), max(8.0, 2.0 * n), dims)
        phase = rng.uniform(0, 2 * math.pi, dims)
        amp = rng.uniform(0, amplitude, dims) / 2
        out += amp * (np.sin(2 * math.pi * t / period + phase) - np.sin(phase))
    return out


def _fold(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Reflect positions into [lo, hi] per axis: a path that bounces off the walls."""
    span = np.maximum(hi - lo, 1e-6)
    y = np.mod(x - lo, 2 * span)
    return lo + np.where(y > span, 2 * span - y, y)


def _plateau(n: int, start: int, stop: int, ramp: int) -> np.ndarray:
    """(n,) weight: 0, smooth rise over `ramp` frames, 1 on frames start..stop, smooth fall, 0."""
    t = np.arange(n, dtype=np.float64)
    w = np.clip(np.minimum((t - (start - ramp)) / ramp, ((stop + ramp) - t) / ramp), 0.0, 1.0)
    return w * w * (3 - 2 * w)


class Scene:
    """Draws the sprites and shots of one video attempt from one random generator."""

    def __init__(self, rng: np.random.Generator, config: SyntheticConfig) -> None:
        self.rng, self.config, self.spec = rng, config, config.spec
        self.h, self.w = config.size
        self.side = min(self.h, self.w)
        self.sprite_size = int(np.clip(round(0.5 * self.side), 48, 512))

    # -- sprites -------------------------------------------------------------------------------------------------
    shape_families: tuple[str, ...] = SHAPE_FAMILIES
    """The families of the targets' shapes (a style overrides it with `target_shape` and `target_texture`)."""

    def target_shape(self, family: str) -> np.ndarray:
        """A (sprite_size, sprite_size) mask of a random shape of `family` reaching 0.45 x sprite_size."""
        p = self.sprite_size
        return shape_mask(self.rng, p, family, 0.45 * p)

    def target_texture(self, avoid: np.ndarray) -> np.ndarray:
        """A (sprite_size, sprite_size, 3) target texture whose mean colour keeps away from `avoid`."""
        return object_texture(self.rng, self.sprite_size, avoid=avoid)

    def target_sprite(self, avoid: np.ndarray) -> Sprite:
        family = str(self.rng.choice(self.shape_families))
        texture = self.target_texture(avoid)
        return _sprite(self.target_shape(family), texture, 0.45 * self.sprite_size, family)

    def lookalike(self, sprite: Sprite) -> Sprite:
        """Another shape of the same family with the same texture."""
        return _sprite(self.target_shape(sprite.family), sprite.rgba[..., :3], 0.45 * self.sprite_size, sprite.family)

    def occluder_sprite(self, family: str, radius: float, aspect: Optional[float] = None) -> Sprite:
        """A large object, `radius` frame pixels from centre to tip, drawn at scale 1."""
        p = int(math.ceil(2 * radius / 0.9)) + 2
        texture = object_texture(self.rng, p, kind=str(self.rng.choice(("noise", "stripes", "gradient"))))
        return _sprite(shape_mask(self.rng, p, family, radius, aspect), texture, radius, family)

    def base_scale(self, sprite: Sprite, radius_frac: float) -> float:
        """Scale giving the sprite a reach of radius_frac x min(H, W), but never less than 1.6 x the minimum
        first-frame area."""
        scale = radius_frac * self.side / sprite.radius
        min_area = 1.6 * MIN_FIRST_FRAME_AREA * self.h * self.w
        return max(scale, math.sqrt(min_area / max(sprite.area, 1.0)))

    # -- placement and paths -------------------------------------------------------------------------------------
    def place(self, radius: float, others: list[tuple[np.ndarray, float]], tries: int = 40) -> np.ndarray:
        """A start point (x, y) keeping a disc of `radius` inside the frame and clear of `others` (centre, radius)
        where possible (a random clear candidate, else the clearest)."""
        rng = self.rng
        m = np.minimum(radius * 1.05, np.array([self.w, self.h]) * 0.45)
        cand = rng.uniform(m, np.array([self.w, self.h]) - m, size=(tries, 2))
        if not others:
            return cand[0]
        clear = np.min([np.linalg.norm(cand - c, axis=1) - (radius + r) * 0.8 for c, r in others], axis=0)
        ok = np.flatnonzero(clear >= 0)
        return cand[ok[0]] if len(ok) else cand[int(np.argmax(clear))]

    def path(self, sprite: Sprite, label: int, n: int, start: np.ndarray, scale0: float) -> Track:
        rng, spec, side = self.rng, self.spec, self.side
        t = np.arange(n, dtype=np.float64)
        heading = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(*spec.speed) * side
        raw = start + np.outer(t, [math.cos(heading), math.sin(heading)]) * speed + _wobble(rng, n, spec.wiggle * side)
        lo = np.full(2, 0.3 * sprite.radius * scale0)
        hi = np.array([self.w, self.h]) - lo
        centre = _fold(raw, np.minimum(lo, start), np.maximum(hi, start))
        angle = rng.uniform(0, 2 * math.pi) + rng.uniform(-1, 1) * spec.rotation * t
        angle = angle + _wobble(rng, n, spec.rotation * 4, dims=1)[:, 0]
        period, phase = rng.uniform(max(6.0, n / 2), max(12.0, 2.0 * n)), rng.uniform(0, 2 * math.pi)
        scale = scale0 * np.exp(spec.scale_change * (np.sin(2 * math.pi * t / period + phase) - math.sin(phase)))
        return Track(sprite, label, centre, angle, scale)

    def camera(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(pan (n, 2) background offset, shake (n, 3, 3) jitter about the frame centre), both identity at t = 0."""
        rng, spec, side = self.rng, self.spec, self.side
        t = np.arange(n, dtype=np.float64)[:, None]
        heading = rng.uniform(0, 2 * math.pi)
        pan = t * rng.uniform(0, spec.pan) * side * np.array([math.cos(heading), math.sin(heading)])
        pan = pan + _wobble(rng, n, spec.pan * side * 2)
        jitter = np.zeros((n, 4))
        sigma = spec.shake * np.array([side, side, 0.6, 0.6])
        for i in range(1, n):
            jitter[i] = 0.4 * jitter[i - 1] + sigma * rng.standard_normal(4)
        centre = np.array([(self.w - 1) / 2, (self.h - 1) / 2])
        shake = _similarity(centre + jitter[:, :2], jitter[:, 2], np.exp(jitter[:, 3]), centre)
        return pan, shake

    # -- stress events -------------------------------------------------------------------------------------------
    def cross(self, back: Track, front: Track, offset: float) -> None:
        """Steer `back` so that it passes behind `front` at a mid frame: a smooth (smoothstep) added offset that is 0
        on frame 0 and reaches the meeting point at the crossing frame; after it the object keeps its own motion."""
        n = len(back.angle)
        tc = int(self.rng.integers(max(1, n // 3), max(2, (2 * n) // 3 + 1)))
        direction = self.rng.uniform(0, 2 * math.pi)
        reach = (back.extent()[tc] + front.extent()[tc]) * offset
        target = front.centre[tc] + reach * np.array([math.cos(direction), math.sin(direction)])
        w = np.clip(np.arange(n) / tc, 0.0, 1.0)
        back.centre = back.centre + np.outer(w * w * (3 - 2 * w), target - back.centre[tc])

    def sweeping_occluder(self, victim: Track) -> Track:
        """A bar entering from outside the frame that covers `victim`'s centre at a mid frame, then moves on."""
        rng, n = self.rng, len(victim.angle)
        sprite = self.occluder_sprite("bar", rng.uniform(0.3, 0.5) * self.side, rng.uniform(0.25, 0.45))
        tc = int(rng.integers(max(1, n // 3), max(2, (2 * n) // 3 + 1)))
        heading = rng.uniform(0, 2 * math.pi)
        u = np.array([math.cos(heading), math.sin(heading)])
        q = victim.centre[tc]
        # distance from q back along -u to the frame border, then one more occluder reach: fully outside at t = 0
        with np.errstate(divide="ignore"):
            to_border = np.where(-u > 0, (np.array([self.w, self.h]) - q) / -u, np.where(-u < 0, q / u, np.inf))
        dist = float(np.min(to_border)) + sprite.radius + 2
        t = np.arange(n, dtype=np.float64)
        centre = q - u * dist + np.outer(t / tc, u * dist)
        angle = np.full(n, heading + math.pi / 2) + rng.uniform(-0.02, 0.02) * t
        return Track(sprite, 0, centre, angle, np.ones(n))

    def hide_window(self, n: int) -> tuple[int, int, int]:
        """(first hidden frame, last hidden frame, ramp) leaving >= 2 visible frames at the end."""
        rng = self.rng
        ramp = int(rng.integers(2, 5)) if n >= 16 else 2
        length = int(rng.integers(3, max(4, min(8, n // 3) + 1)))
        first_min, first_max = ramp + 1, n - 3 - ramp - length + 1
        start = int(rng.integers(first_min, max(first_min, first_max) + 1))
        return start, start + length - 1, ramp

    def exit_and_return(self, track: Track) -> None:
        """Push `track` out through the nearest frame border for a few frames, then bring it back."""
        n = len(track.angle)
        start, stop, ramp = self.hide_window(n)
        x, y = track.centre[start:stop + 1, 0], track.centre[start:stop + 1, 1]
        reach = track.extent()[start:stop + 1] * 1.1 + 4 + 4 * self.spec.shake * self.side
        needs = np.stack([self.w - x + reach, x + reach, self.h - y + reach, y + reach])  # +x, -x, +y, -y
        side = int(np.argmin(needs.max(axis=1)))
        u = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], dtype=np.float64)[side]
        track.centre = track.centre + np.outer(_plateau(n, start, stop, ramp), u * needs[side].max())

    def hide_behind(self, track: Track, others: list[Track]) -> Track:
        """A still occluder clear of every object on frame 0; `track` goes behind it for a few frames."""
        rng, n = self.rng, len(track.angle)
        start, stop, ramp = self.hide_window(n)
        minor = float(track.extent()[start:stop + 1].max()) * 1.25 + 2
        aspect = 1.0 / rng.uniform(1.0, 1.5)
        sprite = self.occluder_sprite("ellipse", minor / aspect, aspect)
        starts = [(o.centre[0], float(o.extent()[0])) for o in others]
        q = self.place(sprite.radius * 0.6, starts)
        w = _plateau(n, start, stop, ramp)[:, None]
        track.centre = track.centre * (1 - w) + q * w
        return Track(sprite, 0, np.tile(q, (n, 1)), np.full(n, rng.uniform(0, math.pi)), np.ones(n))

    # -- shots ---------------------------------------------------------------------------------------------------
    def background(self, shape: tuple[int, int]) -> np.ndarray:
        """The (H, W, 3) uint8 background canvas of a shot."""
        return background_texture(self.rng, shape)

    def lighting(self, n: int) -> None:
        """Per-frame lighting of a shot of n frames: none in this style (see `organic.Lighting`)."""
        return None

    def backdrop(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(background canvas (H + 2 my, W + 2 mx, 3) uint8, camera (n, 3, 3) canvas -> frame, shake (n, 3, 3)
        stabilised -> frame coordinates) of a shot of n frames; the canvas margin covers the pan and the shake."""
        pan, shake = self.camera(n)
        margin = np.abs(pan).max(0) + self.side * (4 * self.spec.shake + 0.05) + 8
        mx, my = (int(math.ceil(v)) for v in margin)
        canvas = self.background((self.h + 2 * my, self.w + 2 * mx))
        moves = np.tile(np.eye(3), (n, 1, 1))
        moves[:, :2, 2] = -pan - np.array([mx, my])
        return canvas, shake @ moves, shake

    def tracks(self, n: int, targets: list[Sprite], distractors: list[tuple[Sprite, int]],
               depth: list[int]) -> list[Track]:
        """The tracks of one shot of n frames in drawing order (back to front).

        `depth` is the drawing order of targets and distractors (target k as k + 1, distractor j as -(j + 1)); the
        occluders the subset adds go on top, after them.
        """
        rng, spec = self.rng, self.spec
        tracks: dict[int, Track] = {}
        placed: list[tuple[np.ndarray, float]] = []
        for k, sprite in enumerate(targets):
            scale0 = self.base_scale(sprite, rng.uniform(0.09, 0.25 - 0.025 * len(targets)))  # crowded: smaller
            start = self.place(sprite.radius * scale0, placed)
            placed.append((start, sprite.radius * scale0))
            tracks[k + 1] = self.path(sprite, k + 1, n, start, scale0)
        for j, (sprite, like) in enumerate(distractors):
            scale0 = float(tracks[like].scale[0]) * rng.uniform(0.8, 1.2)
            start = self.place(sprite.radius * scale0, placed)
            placed.append((start, sprite.radius * scale0))
            tracks[-(j + 1)] = self.path(sprite, 0, n, start, scale0)
        target_order = [d for d in depth if d > 0]
        if len(targets) >= 2 and n >= 3:
            crossings = int(rng.random() < spec.crossing) + int(len(targets) >= 3 and rng.random() < spec.crossing / 2)
            area = {d: tracks[d].sprite.area * tracks[d].scale[0] ** 2 for d in target_order}
            pairs = [(b, f) for i, b in enumerate(target_order) for f in target_order[i + 1:]
                     if not spec.full_occlusion or area[b] < area[f]]  # only a smaller object hides fully
            for _ in range(crossings if pairs else 0):
                back, front = pairs[int(rng.integers(len(pairs)))]
                self.cross(tracks[back], tracks[front], rng.uniform(*spec.crossing_offset))
        ordered = [tracks[d] for d in depth]
        if spec.occluder > 0 and rng.random() < spec.occluder:
            ordered.append(self.sweeping_occluder(tracks[int(rng.integers(1, len(targets) + 1))]))
        if spec.reappear:
            victim = tracks[int(rng.integers(1, len(targets) + 1))]
            if rng.random() < 0.5 or victim.extent().max() > 0.17 * self.side:  # (a large one: no room to hide)
                self.exit_and_return(victim)
            else:
                ordered.append(self.hide_behind(victim, ordered))
        return ordered
