"""Overlay of automatic masks on their image: one colour per mask, largest masks painted first, prompt points
as white-ringed dots."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .amg import BoxedMask

__all__ = ["mask_colours", "render_overlay"]


def mask_colours(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) uint8 distinct, saturated colours (golden-ratio hue steps)."""
    rng = np.random.default_rng(seed)
    hues = (rng.random() + np.arange(n) * 0.618033988749895) % 1.0
    hsv = np.stack([hues * 179, np.full(n, 200), np.full(n, 230)], axis=1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0] if n else np.zeros((0, 3), np.uint8)


def render_overlay(rgb: np.ndarray, masks: Sequence[BoxedMask], points: Sequence[Sequence[Sequence[float]]] = (),
                   alpha: float = 0.5, draw_points: bool = True) -> np.ndarray:
    """(H, W, 3) uint8: `rgb` with every mask blended in its colour (alpha) and a dark outline, and the prompt
    points (one list of (x, y) per mask) drawn on top."""
    out = np.asarray(rgb, dtype=np.uint8).copy()
    h, w = out.shape[:2]
    colours = mask_colours(len(masks))
    order = sorted(range(len(masks)), key=lambda i: -masks[i].area)
    radius = max(2, round(min(h, w) / 150))
    for i in order:
        m = masks[i]
        x0, y0, x1, y1 = m.box
        region = out[y0:y1 + 1, x0:x1 + 1]
        px = m.pixels
        blended = region[px].astype(np.float32) * (1 - alpha) + colours[i].astype(np.float32) * alpha
        region[px] = blended.round().astype(np.uint8)
        contours, _ = cv2.findContours(px.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(c * 0.5) for c in colours[i]), 1, offset=(x0, y0))
    if draw_points:
        for i in order:
            for x, y in (points[i] if i < len(points) else []):
                c = (int(round(x)), int(round(y)))
                cv2.circle(out, c, radius + 1, (255, 255, 255), -1, lineType=cv2.LINE_AA)
                cv2.circle(out, c, radius, tuple(int(v) for v in colours[i]), -1, lineType=cv2.LINE_AA)
    return out
