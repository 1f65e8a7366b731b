"""Per-frame video object segmentation metrics: region similarity J and boundary F-measure.

Both follow the DAVIS definitions used by the DAVIS 2017 toolkit and the SA-V evaluator:

* J (region similarity) is the intersection over union of the binary masks; a frame where both masks are empty
  scores 1.
* F (boundary accuracy) compares 1-pixel boundary maps. A predicted boundary pixel is a match when a ground-truth
  boundary pixel lies within the tolerance disk around it (and vice versa for recall). Precision / recall when a
  boundary is empty: predicted empty, GT not -> P=1, R=0; predicted not, GT empty -> P=0, R=1; both empty -> P=R=1.
  F = 2PR / (P + R), or 0 when P + R = 0.

Every function accepts one frame (H, W) or a stack of frames (N, H, W); masks may be bool or numeric (non-zero is
foreground). Only numpy and OpenCV are used.
"""

from __future__ import annotations

import math
from typing import Union

import cv2
import numpy as np

DEFAULT_BOUND_TH = 0.008
"""Default boundary tolerance as a fraction of the image diagonal (DAVIS / SA-V)."""

Score = Union[float, np.ndarray]


def _as_mask_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(gt).astype(bool, copy=False)
    pred = np.asarray(pred).astype(bool, copy=False)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth and prediction shapes differ: {gt.shape} vs {pred.shape}")
    if gt.ndim not in (2, 3):
        raise ValueError(f"masks must be (H, W) or (N, H, W); got shape {gt.shape}")
    return gt, pred


def region_similarity(gt: np.ndarray, pred: np.ndarray) -> Score:
    """Region similarity J (intersection over union) per frame.

    Args:
        gt, pred: (H, W) or (N, H, W) masks of the same shape.
    Returns:
        a float for one frame, else an (N,) float64 array. Frames where both masks are empty score 1.
    """
    gt, pred = _as_mask_pair(gt, pred)
    inter = np.count_nonzero(gt & pred, axis=(-2, -1))
    union = np.count_nonzero(gt | pred, axis=(-2, -1))
    j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return float(j) if j.ndim == 0 else j


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """1-pixel boundary map of a binary mask, by the DAVIS `seg2bmap` rule at the mask's own size.

    A pixel is a boundary pixel when its value differs from at least one of its right, bottom and bottom-right
    neighbours, considering only neighbours inside the image: a pixel of the last column is compared with its bottom
    neighbour only, a pixel of the last row with its right neighbour only, and the bottom-right corner pixel is never
    a boundary pixel. Nothing outside the image is compared against, so a mask touching the image border gets no
    boundary along that border (a full-image mask has an empty boundary). Both sides of a transition can be marked
    (e.g. the background pixel left of an object), which places the boundary half a pixel towards the origin.

    Args:
        mask: (H, W) or (N, H, W), bool or numeric (non-zero is foreground).
    Returns:
        bool array of the same shape.
    """
    m = np.asarray(mask).astype(bool, copy=False)
    if m.ndim not in (2, 3):
        raise ValueError(f"mask must be (H, W) or (N, H, W); got shape {m.shape}")
    b = np.zeros(m.shape, dtype=bool)
    b[..., :, :-1] |= m[..., :, :-1] != m[..., :, 1:]  # right neighbour
    b[..., :-1, :] |= m[..., :-1, :] != m[..., 1:, :]  # bottom neighbour
    b[..., :-1, :-1] |= m[..., :-1, :-1] != m[..., 1:, 1:]  # bottom-right neighbour
    return b


def tolerance_radius(shape: tuple[int, int], bound_th: float = DEFAULT_BOUND_TH) -> float:
    """Boundary tolerance in pixels for an (H, W) image.

    `bound_th < 1` is a fraction of the image diagonal: ceil(bound_th * sqrt(H^2 + W^2)); `bound_th >= 1` is taken
    as the radius in pixels itself.
    """
    if bound_th < 0:
        raise ValueError(f"bound_th must be >= 0; got {bound_th}")
    if bound_th >= 1:
        return float(bound_th)
    h, w = int(shape[0]), int(shape[1])
    return float(math.ceil(bound_th * math.sqrt(h * h + w * w)))


def disk(radius: float) -> np.ndarray:
    """Disk structuring element: the integer offsets (dy, dx) with dy^2 + dx^2 <= radius^2.

    Returns a (2k+1, 2k+1) uint8 array of 0/1 with k = floor(radius), centred on the middle pixel. For integer radii
    this equals `skimage.morphology.disk(radius)`.
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0; got {radius}")
    k = int(math.floor(radius))
    offsets = np.arange(-k, k + 1)
    dist2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
    return (dist2 <= radius * radius).astype(np.uint8)


def _crop_stacks_to_masks(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # (N, H, W) views restricted to the union bounding box of every mask, grown by one pixel on each side (where the
    # image allows). Boundary pixels only occur within one pixel of a foreground pixel, and the extra bottom / right
    # row and column keep the "compare with the neighbour" rule identical to the full frame, so boundary maps of the
    # crop equal those of the full frame inside the crop and nothing is lost outside it.
    union = (gt | pred).any(axis=0)
    rows = np.flatnonzero(union.any(axis=1))
    cols = np.flatnonzero(union.any(axis=0))
    if len(rows) == 0:
        return gt[:, :0, :0], pred[:, :0, :0]
    box = (slice(None), slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
    return gt[box], pred[box]


def _crop_to_content(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Bounding box of the union of two non-empty (H, W) boundary maps. Dilation restricted to this box is exact at
    # every pixel inside it, because every source pixel of the dilation lies inside the box too.
    union = a | b
    rows = np.flatnonzero(union.any(axis=1))
    cols = np.flatnonzero(union.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return np.ascontiguousarray(a[box]), np.ascontiguousarray(b[box])


def _dilate(boundary: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # cv2's default border for dilation adds nothing from outside the array.
    return cv2.dilate(boundary.view(np.uint8), kernel) > 0


def boundary_f_measure(gt: np.ndarray, pred: np.ndarray, bound_th: float = DEFAULT_BOUND_TH) -> Score:
    """Boundary F-measure per frame.

    The boundary maps of both masks (`boundary_map`) are matched within a disk of radius `tolerance_radius((H, W),
    bound_th)`: precision = predicted boundary pixels with a GT boundary pixel inside their disk / predicted boundary
    pixels, recall likewise for the GT boundary. Empty boundaries follow the DAVIS rules (see the module docstring).

    Args:
        gt, pred: (H, W) or (N, H, W) masks of the same shape.
        bound_th: tolerance as a fraction of the image diagonal (< 1) or in pixels (>= 1).
    Returns:
        a float for one frame, else an (N,) float64 array, in [0, 1].
    """
    gt, pred = _as_mask_pair(gt, pred)
    single = gt.ndim == 2
    if single:
        gt, pred = gt[None], pred[None]
    kernel = disk(tolerance_radius(gt.shape[-2:], bound_th))  # from the full frame size
    gt, pred = _crop_stacks_to_masks(gt, pred)

    gt_b = boundary_map(gt)
    pred_b = boundary_map(pred)
    n_gt = np.count_nonzero(gt_b, axis=(1, 2))
    n_pred = np.count_nonzero(pred_b, axis=(1, 2))

    # Matched pixel counts stay 0 wherever one boundary is empty, which turns the general formulas below into the
    # DAVIS special cases: (pred empty, GT not) -> P=1, R=0; (pred not, GT empty) -> P=0, R=1; both empty -> 1, 1.
    gt_hit = np.zeros(len(gt), dtype=np.int64)
    pred_hit = np.zeros(len(gt), dtype=np.int64)
    for i in np.flatnonzero((n_gt > 0) & (n_pred > 0)):
        g, p = _crop_to_content(gt_b[i], pred_b[i])
        pred_hit[i] = np.count_nonzero(p & _dilate(g, kernel))
        gt_hit[i] = np.count_nonzero(g & _dilate(p, kernel))

    precision = np.where(n_pred > 0, pred_hit / np.maximum(n_pred, 1), 1.0)
    recall = np.where(n_gt > 0, gt_hit / np.maximum(n_gt, 1), 1.0)
    total = precision + recall
    f = np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1.0), 0.0)
    return float(f[0]) if single else f
