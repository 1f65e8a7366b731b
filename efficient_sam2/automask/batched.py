"""Post-processing of many decoded masks at once: the fast path of automatic mask generation.

The decoder's low-resolution logits of every prompt of a crop (a 32 x 32 grid gives 1024 prompts x 3 outputs)
go through the filters as tensors, in slices bounded by an element budget:

    predicted-IoU filter (on the scores, before any upsampling)
    -> bilinear upsampling to the crop -> tight boxes from the row and column maxima of the logits, and the
       stability score where a stability filter asks for it (one pass per slice)
    -> stability filter, empty masks, masks cut by an inner crop edge
    -> greedy box NMS on the whole batch (IoU rows of the kept boxes only), or greedy NMS on the low-resolution
       masks' IoU (`mask_nms`)

When nothing before de-duplication needs the boxes (mask NMS or merging on a crop that is the whole image, no
stability filter), the upsampling pass is skipped: emptiness is decided on the low-resolution logits wherever that
is exact (`nonempty_after_upsampling`), and the survivors' boxes come with their masks.

Only the upsampled logits of the masks that survive are computed a second time, to become `BoxedMask`s (and to
get their stability scores when no filter needed them earlier): no per-candidate Python work happens before NMS,
and no full-resolution mask of a discarded candidate is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .amg import BoxedMask, projection_boxes, stability_score
from .merge import box_nms

__all__ = ["Candidates", "filter_candidates", "batched_nms", "mask_nms", "materialize", "near_crop_edge",
           "logit_boxes", "nonempty_after_upsampling"]

UPSAMPLE_BUDGET = 1 << 20
"""Upsampled logits (floats) processed at once: 4 MiB in fp32, so that upsampling, the three comparisons and the
box reductions of a slice run in cache (16 masks at 256 x 256; slices of 256 masks were 1.5-3x slower)."""


@dataclass
class Candidates:
    """Decoded masks of one crop that passed the filters.

    logits (K, h, w) low-resolution logits; ious (K,) predicted IoU; stability (K,) (None until computed: only a
    stability filter needs it before NMS, see `stability_of`); boxes (K, 4) int64 inclusive
    xyxy in full-image pixels; points (K, 2) float64 prompt (x, y) in full-image pixels; crop_box exclusive xyxy;
    crop_hw: the crop's (H, W).
    """

    logits: torch.Tensor
    ious: torch.Tensor
    stability: torch.Tensor | None
    boxes: torch.Tensor | None
    points: np.ndarray
    crop_box: tuple[int, int, int, int]
    crop_hw: tuple[int, int]

    def __len__(self) -> int:
        return int(self.ious.shape[0])

    def take(self, index) -> "Candidates":
        index = torch.as_tensor(index, dtype=torch.long, device=self.ious.device)
        stability = None if self.stability is None else self.stability[index]
        boxes = None if self.boxes is None else self.boxes[index]
        return Candidates(self.logits[index], self.ious[index], stability, boxes,
                          self.points[index.cpu().numpy()], self.crop_box, self.crop_hw)


def near_crop_edge(boxes: torch.Tensor, crop_box, image_hw: tuple[int, int], atol: float = 20.0) -> torch.Tensor:
    """(K,) bool: boxes (K, 4) inclusive xyxy (full image) within `atol` px of a crop side that is not an image
    side (vectorised `amg.box_near_crop_edge`)."""
    h, w = image_hw
    crop = torch.as_tensor(crop_box, dtype=torch.float64, device=boxes.device)
    image = torch.as_tensor((0, 0, w, h), dtype=torch.float64, device=boxes.device)
    b = boxes.double()
    return ((b - crop).abs().le(atol) & (b - image).abs().gt(atol)).any(dim=1)


def filter_candidates(low_res: torch.Tensor, ious: torch.Tensor, points: np.ndarray, crop_box, crop_hw,
                      image_hw, *, pred_iou_thresh: float, stability_score_thresh: float,
                      stability_score_offset: float, mask_threshold: float,
                      budget: int = UPSAMPLE_BUDGET, boxes: bool = True) -> Candidates:
    """Filter the decoded masks of one crop.

    low_res (P, M, h, w) logits of P prompts with M outputs each; ious (P, M); points (P, 2) prompt (x, y) in crop
    pixels. Keeps masks with predicted IoU > pred_iou_thresh (0: off) and stability >= stability_score_thresh (0:
    off) that are non-empty and not cut by an inner crop edge. With `boxes=False` (the caller does not need them
    before the masks are materialised) and neither a stability filter nor an inner crop edge to test, nothing is
    upsampled here and the result's boxes are None (the same candidates are kept).
    """
    P, M = ious.shape
    ch, cw = crop_hw
    x0, y0 = crop_box[0], crop_box[1]
    logits = low_res.flatten(0, 1).float()
    scores = ious.flatten().float()
    prompt_of = torch.arange(P, device=scores.device).repeat_interleave(M)
    keep = torch.ones_like(scores, dtype=torch.bool)
    if pred_iou_thresh > 0:
        keep &= scores > pred_iou_thresh
    if not bool(keep.all()):
        idx = keep.nonzero().flatten()
        logits, scores, prompt_of = logits[idx], scores[idx], prompt_of[idx]
    K = logits.shape[0]
    need_stability = stability_score_thresh > 0
    whole_image = tuple(int(v) for v in crop_box) == (0, 0, int(image_hw[1]), int(image_hw[0]))
    stab = None
    if boxes or need_stability or not whole_image:
        stab = torch.zeros(K, device=scores.device) if need_stability else None
        box_t = torch.zeros(K, 4, dtype=torch.long, device=scores.device)
        non_empty = torch.zeros(K, dtype=torch.bool, device=scores.device)
        step = max(1, budget // max(1, ch * cw))
        for s in range(0, K, step):
            up = F.interpolate(logits[s:s + step, None], size=(ch, cw), mode="bilinear", align_corners=False)[:, 0]
            if need_stability:
                stab[s:s + step] = stability_score(up, mask_threshold, stability_score_offset)
            box_t[s:s + step], non_empty[s:s + step] = logit_boxes(up, mask_threshold)
        box_t = box_t + torch.as_tensor([x0, y0, x0, y0], device=box_t.device)
        keep = non_empty & ~near_crop_edge(box_t, crop_box, image_hw)
        if need_stability:
            keep &= stab >= stability_score_thresh
    else:
        box_t = None
        keep = nonempty_after_upsampling(logits, (ch, cw), mask_threshold, budget)
    idx = keep.nonzero().flatten()
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) + np.array([x0, y0], dtype=np.float64)
    return Candidates(logits[idx], scores[idx], None if stab is None else stab[idx],
                      None if box_t is None else box_t[idx], pts[prompt_of[idx].cpu().numpy()],
                      tuple(int(v) for v in crop_box), (int(ch), int(cw)))


def nonempty_after_upsampling(logits: torch.Tensor, size: tuple[int, int], mask_threshold: float,
                              budget: int = UPSAMPLE_BUDGET) -> torch.Tensor:
    """(K,) bool: does `F.interpolate(logits, size, bilinear, align_corners=False) > mask_threshold` hold anywhere?

    Exact, and mostly without upsampling. Every upsampled value is a convex combination of (at most) four
    neighbouring low-resolution values, so a mask whose logits never exceed the threshold is empty. When the
    output is at least as large as the logits in both directions, the sample spacing is at most one low-resolution
    pixel, so every 2 x 2 block of neighbours holds a sample whose weights fall on that block only: a block whose
    four values all exceed the threshold (by a margin covering rounding) makes the mask non-empty. Only the masks
    that neither rule decides are upsampled."""
    K, h, w = logits.shape
    H, W = size
    if K == 0:
        return torch.zeros(0, dtype=torch.bool, device=logits.device)
    flat_max = logits.flatten(1).amax(dim=1)
    result = torch.zeros(K, dtype=torch.bool, device=logits.device)
    undecided = flat_max > mask_threshold
    if H >= h and W >= w and h >= 2 and w >= 2:
        margin = 1e-3 * max(1.0, abs(float(mask_threshold)))
        rows_min = torch.minimum(logits[:, :-1], logits[:, 1:])  # (K, h-1, w)
        block_min = torch.minimum(rows_min[:, :, :-1], rows_min[:, :, 1:])  # (K, h-1, w-1): 2 x 2 minima
        sure = block_min.flatten(1).amax(dim=1) > mask_threshold + margin
        result |= sure
        undecided &= ~sure
    rest = undecided.nonzero().flatten()
    step = max(1, budget // max(1, H * W))
    for s in range(0, int(rest.numel()), step):
        rows = rest[s:s + step]
        up = F.interpolate(logits[rows, None], size=(H, W), mode="bilinear", align_corners=False)
        result[rows] = up.flatten(1).amax(dim=1) > mask_threshold
    return result


def logit_boxes(logits: torch.Tensor, mask_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`amg.mask_boxes(logits > mask_threshold)` without the boolean masks: a row (column) holds a mask pixel
    exactly when its maximum logit is above the threshold. logits (K, H, W) -> ((K, 4) int64 inclusive xyxy,
    (K,) bool non-empty); empty masks get (0, 0, 0, 0)."""
    return projection_boxes(logits.amax(dim=2) > mask_threshold, logits.amax(dim=1) > mask_threshold)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thresh: float) -> torch.Tensor:
    """`merge.box_nms` on tensors: greedy box NMS of (K, 4) xyxy boxes. Returns kept indices (int64), highest
    score first."""
    return torch.from_numpy(box_nms(boxes.double().cpu().numpy(), scores.double().cpu().numpy(), iou_thresh))


def mask_nms(logits: torch.Tensor, scores: torch.Tensor, iou_thresh: float, mask_threshold: float = 0.0,
             chunk: int = 256) -> torch.Tensor:
    """Greedy NMS on mask IoU: visit masks by decreasing score (ties: lower index first) and keep a mask unless its
    IoU with a mask already kept is > iou_thresh. The IoU is that of the low-resolution masks (logits (K, h, w) >
    mask_threshold, the decoder's 4E x 4E grid), a close stand-in for the upsampled masks' at a fraction of the
    cost. Candidates are taken `chunk` at a time: one matrix product against the kept masks, one within the chunk,
    then the greedy rule inside the chunk. Returns kept indices (int64), highest score first."""
    K = int(scores.shape[0])
    if K == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.from_numpy(np.argsort(-scores.double().cpu().numpy(), kind="stable"))
    masks = (logits.cpu() > mask_threshold).flatten(1)[order].float()  # (K, P), by decreasing score
    area = masks.sum(dim=1)

    def iou(a, area_a, b, area_b):
        inter = a @ b.T
        union = area_a[:, None] + area_b[None, :] - inter
        return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))

    kept_rows: list[int] = []
    kept, kept_area = masks[:0], area[:0]
    for s in range(0, K, chunk):
        block, block_area = masks[s:s + chunk], area[s:s + chunk]
        suppressed = (iou(kept, kept_area, block, block_area) > iou_thresh).any(dim=0).numpy()
        within = (iou(block, block_area, block, block_area) > iou_thresh).numpy()
        new = []
        for j in range(block.shape[0]):
            if suppressed[j]:
                continue
            new.append(j)
            suppressed |= within[j]
        kept = torch.cat([kept, block[new]])
        kept_area = torch.cat([kept_area, block_area[new]])
        kept_rows += [s + j for j in new]
    return order[torch.as_tensor(kept_rows, dtype=torch.long)]


def materialize(c: Candidates, image_hw: tuple[int, int], mask_threshold: float,
                budget: int = UPSAMPLE_BUDGET, stability_score_offset: float | None = None) -> list[BoxedMask]:
    """The candidates' masks as BoxedMasks (upsampled again, only these). With `stability_score_offset` and no
    stability scores yet, they are computed on the way and stored in `c.stability`."""
    ch, cw = c.crop_hw
    x0, y0 = c.crop_box[0], c.crop_box[1]
    out: list[BoxedMask] = []
    step = max(1, budget // max(1, ch * cw))
    new_boxes = c.boxes is None
    if new_boxes:
        box_t = torch.zeros(len(c), 4, dtype=torch.long, device=c.ious.device)
    all_boxes = None if new_boxes else c.boxes.cpu().numpy()
    fill = c.stability is None and stability_score_offset is not None
    stab = torch.zeros(len(c), device=c.ious.device) if fill else None
    for s in range(0, len(c), step):
        up = F.interpolate(c.logits[s:s + step, None], size=(ch, cw), mode="bilinear", align_corners=False)[:, 0]
        if fill:
            stab[s:s + step] = stability_score(up, mask_threshold, stability_score_offset)
        if new_boxes:
            chunk_boxes, non_empty = logit_boxes(up, mask_threshold)
            if not bool(non_empty.all()):
                raise ValueError("materialize: an empty mask among the candidates (filter_candidates drops them)")
            box_t[s:s + step] = chunk_boxes + torch.as_tensor([x0, y0, x0, y0], device=chunk_boxes.device)
            boxes = box_t[s:s + step].cpu().numpy()
        else:
            boxes = all_boxes[s:s + step]
        masks = (up > mask_threshold).cpu().numpy()
        for j in range(masks.shape[0]):
            bx0, by0, bx1, by1 = (int(v) for v in boxes[j])
            pixels = np.ascontiguousarray(masks[j, by0 - y0:by1 - y0 + 1, bx0 - x0:bx1 - x0 + 1])
            out.append(BoxedMask((bx0, by0, bx1, by1), pixels, (int(image_hw[0]), int(image_hw[1]))))
    if fill:
        c.stability = stab
    if new_boxes:
        c.boxes = box_t
    return out
