"""Mask utilities of automatic mask generation: stability score, boxes, boxed masks, small-region clean-up.

Boxes are (x0, y0, x1, y1) with INCLUSIVE x1 / y1 (the last column / row that holds a mask pixel), the layout
the box NMS of the reference generator works on. The XYWH boxes written to the output follow COCO instead:
width = x1 - x0 + 1, height = y1 - y0 + 1.

Masks kept between the stages are `BoxedMask`s: the tight bounding box and the boolean pixels inside it. Memory is
proportional to the boxes' areas, not to (number of masks) x (image size), and pairwise overlaps only touch the
intersection of two boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..io.masks import encode_rle_in_box

__all__ = [
    "stability_score",
    "mask_boxes",
    "projection_boxes",
    "BoxedMask",
    "box_near_crop_edge",
    "remove_small_regions",
    "clean_small_regions",
]


def stability_score(logits: torch.Tensor, mask_threshold: float = 0.0, offset: float = 1.0) -> torch.Tensor:
    """IoU of the masks binarised at `mask_threshold + offset` and at `mask_threshold - offset`.

    logits (..., H, W) -> (...). The first mask is contained in the second, so the IoU is the ratio of their
    areas. A mask whose looser binarisation is empty scores 0.
    """
    # int32 counts: exact for any mask below 2**31 pixels, and summed faster than int64 on CPUs
    inner = (logits > mask_threshold + offset).flatten(-2).sum(-1, dtype=torch.int32)
    outer = (logits > mask_threshold - offset).flatten(-2).sum(-1, dtype=torch.int32)
    score = inner.double() / outer.clamp(min=1).double()
    return torch.where(outer > 0, score, torch.zeros_like(score)).float()


def mask_boxes(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tight boxes of boolean masks (K, H, W): ((K, 4) int64 inclusive xyxy, (K,) bool non-empty).

    Empty masks get the box (0, 0, 0, 0) and non_empty False.
    """
    return projection_boxes(masks.any(dim=2), masks.any(dim=1))


def projection_boxes(rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tight boxes from the masks' row and column projections: rows (K, H) and cols (K, W) bool, True where the
    row / column holds a mask pixel. Returns ((K, 4) int64 inclusive xyxy, (K,) bool non-empty); empty masks get
    (0, 0, 0, 0)."""
    H, W = rows.shape[1], cols.shape[1]
    non_empty = rows.any(dim=1)
    ar_h = torch.arange(H, device=rows.device)
    ar_w = torch.arange(W, device=cols.device)
    y0 = torch.where(rows, ar_h, H).amin(dim=1)
    y1 = torch.where(rows, ar_h, -1).amax(dim=1)
    x0 = torch.where(cols, ar_w, W).amin(dim=1)
    x1 = torch.where(cols, ar_w, -1).amax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    boxes = torch.where(non_empty[:, None], boxes, torch.zeros_like(boxes))
    return boxes.long(), non_empty


@dataclass
class BoxedMask:
    """A non-empty binary mask stored as its tight box (inclusive xyxy in full-image pixels) and the pixels in it.

    `pixels` has shape (y1 - y0 + 1, x1 - x0 + 1); `image_hw` is the full image size.
    """

    box: tuple[int, int, int, int]
    pixels: np.ndarray
    image_hw: tuple[int, int]

    @classmethod
    def from_mask(cls, mask: np.ndarray, offset: tuple[int, int] = (0, 0),
                  image_hw: tuple[int, int] | None = None) -> "BoxedMask | None":
        """Box a 2-D mask whose top-left pixel sits at `offset` (x, y) in an image of `image_hw` (default: the
        mask's own size). Returns None for an empty mask."""
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise ValueError(f"a mask must be 2-D (H, W), got shape {mask.shape}")
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(mask.any(axis=0))
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
        ox, oy = int(offset[0]), int(offset[1])
        hw = tuple(image_hw) if image_hw is not None else mask.shape
        return cls((x0 + ox, y0 + oy, x1 + ox, y1 + oy), np.ascontiguousarray(mask[y0:y1 + 1, x0:x1 + 1]),
                   (int(hw[0]), int(hw[1])))

    @property
    def area(self) -> int:
        return int(self.pixels.sum())

    @property
    def bbox_xywh(self) -> list[int]:
        """COCO box [x, y, width, height] (width = x1 - x0 + 1)."""
        x0, y0, x1, y1 = self.box
        return [x0, y0, x1 - x0 + 1, y1 - y0 + 1]

    def to_full(self) -> np.ndarray:
        """(H, W) bool mask of the full image."""
        out = np.zeros(self.image_hw, dtype=bool)
        x0, y0, x1, y1 = self.box
        out[y0:y1 + 1, x0:x1 + 1] = self.pixels
        return out

    def to_rle(self, compress: bool = True) -> dict:
        """COCO RLE of the full-image mask ({"size": [H, W], "counts": str or list})."""
        return encode_rle_in_box(self.pixels, self.box, self.image_hw, compress=compress)

    def intersection(self, other: "BoxedMask") -> int:
        """Number of pixels in both masks (computed on the overlap of the two boxes only)."""
        ax0, ay0, ax1, ay1 = self.box
        bx0, by0, bx1, by1 = other.box
        x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
        if x0 > x1 or y0 > y1:
            return 0
        a = self.pixels[y0 - ay0:y1 - ay0 + 1, x0 - ax0:x1 - ax0 + 1]
        b = other.pixels[y0 - by0:y1 - by0 + 1, x0 - bx0:x1 - bx0 + 1]
        return int(np.count_nonzero(a & b))

    @staticmethod
    def union(masks: "list[BoxedMask]") -> "BoxedMask":
        """The pixel-wise OR of several masks of the same image."""
        if not masks:
            raise ValueError("union of no masks")
        x0 = min(m.box[0] for m in masks)
        y0 = min(m.box[1] for m in masks)
        x1 = max(m.box[2] for m in masks)
        y1 = max(m.box[3] for m in masks)
        canvas = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=bool)
        for m in masks:
            mx0, my0, mx1, my1 = m.box
            canvas[my0 - y0:my1 - y0 + 1, mx0 - x0:mx1 - x0 + 1] |= m.pixels
        return BoxedMask((x0, y0, x1, y1), canvas, masks[0].image_hw)


def box_near_crop_edge(box, crop_box, image_hw: tuple[int, int], atol: float = 20.0) -> bool:
    """True if an inclusive-xyxy box (full-image pixels) lies within `atol` px of a side of `crop_box` that is
    not also a side of the image: such a mask is probably cut by the crop and is dropped."""
    h, w = image_hw
    image_box = (0, 0, w, h)
    for b, c, i in zip(box, crop_box, image_box):
        if abs(b - c) <= atol and abs(b - i) > atol:
            return True
    return False


def remove_small_regions(mask: np.ndarray, area_thresh: int, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes ("holes") or drop disconnected islands ("islands") smaller than `area_thresh` pixels.

    Components are 8-connected (cv2.connectedComponentsWithStats). In "islands" mode, if every island is small
    the largest one is kept so that a mask never vanishes. Returns (new mask, changed).
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    mask = np.asarray(mask, dtype=bool)
    fill = mode == "holes"
    work = (~mask if fill else mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(work, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]  # component 0 is the complement of `work`
    small = np.flatnonzero(sizes < area_thresh) + 1
    if small.size == 0:
        return mask, False
    if fill:
        return mask | _select(labels, n, small), True
    large = np.flatnonzero(sizes >= area_thresh) + 1
    if large.size == 0:
        large = np.array([int(np.argmax(sizes)) + 1])
    return _select(labels, n, large), True


def _select(labels: np.ndarray, n: int, chosen) -> np.ndarray:
    """Boolean map of the pixels whose component label is in `chosen` (a lookup table, faster than isin)."""
    lut = np.zeros(n, dtype=bool)
    lut[np.asarray(chosen, dtype=np.int64)] = True
    return lut[labels]


def clean_small_regions(m: BoxedMask, area_thresh: int) -> tuple[BoxedMask | None, bool]:
    """`remove_small_regions` (holes, then islands) on a boxed mask, with the areas of the full image.

    The box is padded by one background pixel on every side that is not an image border. The padding stands for
    the background outside the box (all of it is background, since the box is tight): complement components
    that reach it are completed with the outside pixels they connect to, so each hole has exactly its
    full-image size. The outside is one region unless the box spans the whole height (left / right parts) or the
    whole width (top / bottom parts); the padding's own connectivity mirrors that. Returns (new mask, changed).
    """
    if area_thresh <= 0:
        return m, False
    H, W = m.image_hw
    h, w = m.pixels.shape
    x0, y0, x1, y1 = m.box
    pad_t, pad_b, pad_l, pad_r = int(y0 > 0), int(y1 < H - 1), int(x0 > 0), int(x1 < W - 1)
    padded = np.zeros((h + pad_t + pad_b, w + pad_l + pad_r), dtype=bool)
    padded[pad_t:pad_t + h, pad_l:pad_l + w] = m.pixels
    changed = False

    # holes: components of the complement, those touching the padding completed with the outside
    n, labels, stats, _ = cv2.connectedComponentsWithStats((~padded).astype(np.uint8), connectivity=8)
    sizes = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    ph, pw = padded.shape
    spans_h, spans_w = not (pad_t or pad_b), not (pad_l or pad_r)
    if spans_h and spans_w:
        outside = []
    elif spans_h:  # left and right parts of the outside are separate regions
        outside = [(labels[0, 0], x0 * H, ph)] if pad_l else []
        outside += [(labels[0, pw - 1], (W - 1 - x1) * H, ph)] if pad_r else []
    elif spans_w:
        outside = [(labels[0, 0], y0 * W, pw)] if pad_t else []
        outside += [(labels[ph - 1, 0], (H - 1 - y1) * W, pw)] if pad_b else []
    else:  # one connected outside; the padding strips meet at the corners
        any_pad = (0, 0) if pad_t or pad_l else (ph - 1, pw - 1)
        outside = [(labels[any_pad], H * W - h * w, ph * pw - h * w)]
    for label, outside_px, padding_px in outside:
        sizes[label] += outside_px - padding_px
    if any(sizes[label] < area_thresh for label, _, _ in outside):
        # background outside the box is itself a small "hole" (tiny images): work on the full image
        full = m.to_full()
        full, c_holes = remove_small_regions(full, area_thresh, "holes")
        full, c_islands = remove_small_regions(full, area_thresh, "islands")
        return BoxedMask.from_mask(full), c_holes or c_islands
    holes = [i for i in range(1, n) if sizes[i] < area_thresh]
    if holes:
        padded = padded | _select(labels, n, holes)
        changed = True

    # islands: components of the mask itself (all inside the box)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(padded.astype(np.uint8), connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    if (sizes < area_thresh).any():
        keep = np.flatnonzero(sizes >= area_thresh) + 1
        if keep.size == 0:
            keep = np.array([int(np.argmax(sizes)) + 1])
        padded = _select(labels, n, keep)
        changed = True
    if not changed:
        return m, False
    return BoxedMask.from_mask(padded, offset=(x0 - pad_l, y0 - pad_t), image_hw=m.image_hw), True
