"""Where grid prompting puts its points, and how an image is tiled into crops.

Coordinates: points are (x, y). A normalised grid lives in [0, 1]^2 and is scaled by a crop's (width, height).
Crop boxes are (x0, y0, x1, y1) integer pixel boxes with exclusive x1 / y1, so `image[y0:y1, x0:x1]` is the crop.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["build_point_grid", "build_layer_point_grids", "generate_crop_boxes", "crop_points"]


def build_point_grid(points_per_side: int) -> np.ndarray:
    """(n*n, 2) cell-centre points of an n x n grid over [0, 1]^2, row-major (x varies fastest).

    The point of cell (row r, column c) is ((c + 0.5) / n, (r + 0.5) / n).
    """
    n = int(points_per_side)
    if n < 1:
        raise ValueError(f"points_per_side must be >= 1, got {points_per_side}")
    centres = (np.arange(n, dtype=np.float64) + 0.5) / n
    xs, ys = np.meshgrid(centres, centres)  # xs[r, c] = centres[c], ys[r, c] = centres[r]
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def build_layer_point_grids(points_per_side: int, crop_n_layers: int, downscale_factor: int = 1) -> list[np.ndarray]:
    """One normalised grid per crop layer: layer i has int(points_per_side / downscale_factor**i) points per side."""
    if crop_n_layers < 0:
        raise ValueError(f"crop_n_layers must be >= 0, got {crop_n_layers}")
    if downscale_factor < 1:
        raise ValueError(f"crop_n_points_downscale_factor must be >= 1, got {downscale_factor}")
    grids = []
    for layer in range(crop_n_layers + 1):
        n = int(points_per_side / downscale_factor**layer)
        if n < 1:
            raise ValueError(
                f"crop layer {layer} would get {points_per_side}/{downscale_factor}^{layer} < 1 points per side; "
                "lower crop_n_layers or crop_n_points_downscale_factor"
            )
        grids.append(build_point_grid(n))
    return grids


def generate_crop_boxes(image_hw: tuple[int, int], n_layers: int, overlap_ratio: float
                        ) -> tuple[list[list[int]], list[int]]:
    """Crop boxes of every layer and the layer index of each box.

    Layer 0 is the whole image. Layer i >= 1 tiles the image with k x k crops, k = 2**i, that overlap by
    int(overlap_ratio * short_side * 2 / k) pixels; each crop is ceil((overlap * (k - 1) + side) / k) long on
    each axis, so the crops exactly cover the image (the last row / column is clipped to the image).
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    if not 0.0 <= overlap_ratio < 1.0:
        raise ValueError(f"crop_overlap_ratio must be in [0, 1), got {overlap_ratio}")
    boxes: list[list[int]] = [[0, 0, w, h]]
    layers = [0]
    short = min(h, w)
    for layer in range(1, n_layers + 1):
        k = 2**layer
        overlap = int(overlap_ratio * short * 2 / k)
        crop_w = math.ceil((overlap * (k - 1) + w) / k)
        crop_h = math.ceil((overlap * (k - 1) + h) / k)
        xs = [int((crop_w - overlap) * i) for i in range(k)]
        ys = [int((crop_h - overlap) * i) for i in range(k)]
        for x0 in xs:  # column-major order over the tiles, as the reference does
            for y0 in ys:
                if x0 >= w or y0 >= h:  # an image narrower than the tiles (a few pixels): no empty crops
                    continue
                boxes.append([x0, y0, min(x0 + crop_w, w), min(y0 + crop_h, h)])
                layers.append(layer)
    return boxes, layers


def crop_points(grid: np.ndarray, crop_box) -> np.ndarray:
    """Normalised grid points scaled to a crop's (width, height): crop-local pixel coordinates (K, 2)."""
    x0, y0, x1, y1 = crop_box
    return np.asarray(grid, dtype=np.float64) * np.array([x1 - x0, y1 - y0], dtype=np.float64)
