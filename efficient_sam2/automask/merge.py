"""Removing duplicate masks: box non-maximum suppression, or merging overlapping masks with union-find.

* `box_nms`: greedy NMS on boxes (the reference generator's de-duplication). Boxes are (x0, y0, x1, y1); the IoU
  uses the areas (x1 - x0) * (y1 - y0), exactly as box NMS is usually computed on continuous boxes.
* `merge_masks`: masks i and j are linked when |Mi n Mj| / min(|Mi|, |Mj|) > thresh ("intersection over the
  smaller mask", 1.0 for nested masks); union-find collects the connected components of the link graph, and each
  component becomes one mask, the union of its members.

Both work on plain (K, H, W) arrays; the generator uses the `BoxedMask` variants, which only touch the
overlap of two boxes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .amg import BoxedMask

__all__ = [
    "box_iou",
    "box_nms",
    "UnionFind",
    "overlap_over_smaller",
    "merge_groups",
    "merge_masks",
    "boxed_merge_groups",
]


def box_iou(boxes: np.ndarray) -> np.ndarray:
    """(K, K) IoU of xyxy boxes (K, 4); pairs whose union has zero area get IoU 0."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    area = (b[:, 2] - b[:, 0]).clip(min=0) * (b[:, 3] - b[:, 1]).clip(min=0)
    lt = np.maximum(b[:, None, :2], b[None, :, :2])
    rb = np.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clip(min=0).prod(axis=-1)
    union = area[:, None] + area[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Greedy NMS: visit boxes by decreasing score (ties: lower index first); keep a box unless it has
    IoU > iou_thresh with a box already kept. Returns the kept indices, highest score first."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
    if scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    area = (b[:, 2] - b[:, 0]).clip(min=0) * (b[:, 3] - b[:, 1]).clip(min=0)
    suppressed = np.zeros(order.size, dtype=bool)
    keep = []
    # Only the rows of kept boxes, and only against the boxes still in play after them, are ever needed: the same
    # arithmetic as `box_iou` (so the same decisions) without its K x K matrix (3,000 grid masks: 2 s -> 0.05 s).
    for i in range(order.size):
        if suppressed[i]:
            continue
        keep.append(order[i])
        rest = np.flatnonzero(~suppressed[i + 1:]) + (i + 1)
        if rest.size == 0:
            break
        lt = np.maximum(b[i, :2], b[rest, :2])
        rb = np.minimum(b[i, 2:], b[rest, 2:])
        inter = (rb - lt).clip(min=0).prod(axis=-1)
        union = area[i] + area[rest] - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
        suppressed[rest[iou > iou_thresh]] = True
    return np.asarray(keep, dtype=np.int64)


class UnionFind:
    """Disjoint sets over 0..n-1 with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, i: int, j: int) -> bool:
        """Join the sets of i and j; False if they were already one set."""
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return False
        if self.size[ri] < self.size[rj]:
            ri, rj = rj, ri
        self.parent[rj] = ri
        self.size[ri] += self.size[rj]
        return True

    def groups(self) -> list[list[int]]:
        """The sets, each sorted, ordered by their smallest member."""
        by_root: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            by_root.setdefault(self.find(i), []).append(i)
        return sorted(by_root.values(), key=lambda g: g[0])


def _as_mask_stack(masks) -> np.ndarray:
    if hasattr(masks, "detach"):
        masks = masks.detach().cpu().numpy()
    m = np.asarray(masks)
    if m.ndim != 3:
        raise ValueError(f"masks must be a (K, H, W) stack, got shape {m.shape}")
    return m if m.dtype == bool else m > 0


def overlap_over_smaller(masks) -> np.ndarray:
    """(K, K) |Mi n Mj| / min(|Mi|, |Mj|) for a (K, H, W) stack; 0 where either mask is empty. Diagonal: 1 for
    non-empty masks."""
    m = _as_mask_stack(masks).reshape(len(masks), -1).astype(np.float64)
    inter = m @ m.T
    area = m.sum(axis=1)
    smaller = np.minimum(area[:, None], area[None, :])
    return np.where(smaller > 0, inter / np.where(smaller > 0, smaller, 1.0), 0.0)


def merge_groups(masks, thresh: float) -> list[list[int]]:
    """Connected components of the graph linking masks with overlap_over_smaller > thresh (union-find).

    Groups are sorted lists of indices, ordered by their smallest member.
    """
    ov = overlap_over_smaller(masks)
    uf = UnionFind(ov.shape[0])
    ii, jj = np.nonzero(np.triu(ov > thresh, k=1))
    for i, j in zip(ii.tolist(), jj.tolist()):
        uf.union(i, j)
    return uf.groups()


def merge_masks(masks, scores: Sequence[float], thresh: float) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Merge a (K, H, W) stack by union-find on intersection over the smaller mask.

    Returns (merged (G, H, W) bool, merged scores (G,) = best member score, groups). Groups are ordered by
    decreasing merged score; inside a group the members are ordered by decreasing score.
    """
    m = _as_mask_stack(masks)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size != m.shape[0]:
        raise ValueError(f"{m.shape[0]} masks but {scores.size} scores")
    groups = [sorted(g, key=lambda i: (-scores[i], i)) for g in merge_groups(m, thresh)]
    groups.sort(key=lambda g: (-scores[g[0]], g[0]))
    merged = np.stack([m[g].any(axis=0) for g in groups]) if groups else np.zeros((0,) + m.shape[1:], bool)
    return merged, np.array([scores[g[0]] for g in groups]), groups


def boxed_merge_groups(masks: Sequence[BoxedMask], thresh: float) -> list[list[int]]:
    """`merge_groups` for boxed masks. Only pairs whose boxes overlap enough to pass the threshold are
    intersected, and pairs already in one set are skipped (they cannot change the components)."""
    n = len(masks)
    uf = UnionFind(n)
    if n < 2:
        return uf.groups()
    boxes = np.array([m.box for m in masks], dtype=np.int64)
    areas = np.array([m.area for m in masks], dtype=np.float64)
    # overlap rectangle (inclusive pixel boxes) bounds the intersection from above
    x0 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y0 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x1 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y1 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    rect = (x1 - x0 + 1).clip(min=0) * (y1 - y0 + 1).clip(min=0)
    smaller = np.minimum(areas[:, None], areas[None, :])
    candidates = np.triu(rect > thresh * smaller, k=1)
    for i, j in zip(*np.nonzero(candidates)):
        i, j = int(i), int(j)
        if uf.find(i) == uf.find(j):
            continue
        if masks[i].intersection(masks[j]) > thresh * smaller[i, j]:
            uf.union(i, j)
    return uf.groups()
