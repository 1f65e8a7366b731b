"""Mask post-processing used by the tracking loop and the predictors (OpenCV, no compiled extensions)."""

from __future__ import annotations

import cv2
import numpy as np
import torch


def non_overlap(masks: torch.Tensor) -> torch.Tensor:
    """At every pixel keep the logits of the highest-scoring object and clamp the others to at most -10.

    masks: (N, 1, H, W) logits of N objects on one frame.
    """
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise ValueError(f"non_overlap expects (N, 1, H, W) mask logits, got shape {tuple(masks.shape)}")
    if masks.shape[0] <= 1:
        return masks
    best = masks.argmax(dim=0, keepdim=True)
    keep = best == torch.arange(masks.shape[0], device=masks.device)[:, None, None, None]
    return torch.where(keep, masks, masks.clamp(max=-10.0))


def fill_holes(masks: torch.Tensor, max_area: int) -> torch.Tensor:
    """Turn background regions (logit <= 0, 8-connected) of at most `max_area` pixels into foreground (0.1).

    masks: (N, 1, H, W) logits. Runs on the CPU with OpenCV's connected components.
    """
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise ValueError(f"fill_holes expects (N, 1, H, W) mask logits, got shape {tuple(masks.shape)}")
    if max_area <= 0:
        return masks
    bg = (masks <= 0).squeeze(1).cpu().numpy().astype(np.uint8)
    fill = np.zeros(bg.shape, dtype=bool)
    for i in range(bg.shape[0]):
        n, labels, stats, _ = cv2.connectedComponentsWithStats(bg[i], connectivity=8)
        small = np.zeros(n, dtype=bool)
        small[1:] = stats[1:, cv2.CC_STAT_AREA] <= max_area
        fill[i] = small[labels]
    fill_t = torch.from_numpy(fill).to(masks.device)[:, None]
    return torch.where(fill_t, torch.full_like(masks, 0.1), masks)
