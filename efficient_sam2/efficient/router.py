"""The object-aware window router of Sparse Window Routing (paper section 3.2, Eqs. 9-12).

From the previous frame's outputs of every object it decides which windows of the routed Hiera stage the next
frame computes:

* W_pred: windows touched by the dilated union, over all objects, of the previous frame's multimask outputs
  (all three, or only the chosen one);
* W_saliency: when any object's score logit is below theta_obj or W_pred is empty, for every object the
  smallest set of windows, in descending order of the previous frame's decoder token->image attention mass,
  whose mass reaches tau. Only the previous frame's maps are used.

Beyond the paper (EfficientConfig options, off in `EfficientConfig.paper()`):

* W_change (`change_threshold`): windows whose image changed since the previous frame, from the frames pooled to
  the routed token grid (`pooled_frame`, `frame_change`), so objects that move into windows the previous mask did
  not reach are computed densely;
* scene cuts (`scene_cut`): a frame whose mean pooled change is large runs dense;
* a relative fallback threshold (`theta_relative`): passed to `route` as per-object thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import EfficientConfig

__all__ = ["WindowGrid", "RouteDecision", "WindowRouter", "windows_touched", "saliency_windows", "pooled_frame",
           "frame_change", "change_windows"]


@dataclass(frozen=True)
class WindowGrid:
    """Geometry of the routed stage: a feat_size x feat_size token map cut into window x window windows.

    The map is zero-padded at the bottom/right to a whole number of windows; windows are numbered row-major.
    Masks live at `mask_scale` times the token resolution (4: 256 x 256 masks for a 64 x 64 map).
    """

    feat_size: int
    window: int
    mask_scale: int = 4

    @property
    def side(self) -> int:
        """Windows per side."""
        return math.ceil(self.feat_size / self.window)

    @property
    def num_windows(self) -> int:
        return self.side**2

    @property
    def padded(self) -> int:
        return self.side * self.window

    @property
    def mask_size(self) -> int:
        return self.feat_size * self.mask_scale

    def window_of_token(self, y: int, x: int) -> int:
        return (y // self.window) * self.side + x // self.window

    def window_of_mask_pixel(self, y: int, x: int) -> int:
        return self.window_of_token(y // self.mask_scale, x // self.mask_scale)


def windows_touched(masks: torch.Tensor, grid: WindowGrid, dilation: int = 1) -> torch.Tensor:
    """Windows that contain any foreground pixel of the union of `masks` after a square dilation.

    masks: (..., h, w) boolean at mask resolution (grid.mask_size); dilation: side of the square structuring
    element (odd; 1 = none). Returns (num_windows,) bool.
    """
    size = grid.mask_size
    union = masks.reshape(-1, *masks.shape[-2:]).any(dim=0)
    if tuple(union.shape) != (size, size):
        raise ValueError(f"masks must be {size}x{size} for this grid, got {tuple(union.shape)}")
    if dilation > 1:
        union = F.max_pool2d(union[None, None].float(), dilation, stride=1, padding=dilation // 2)[0, 0] > 0
        union = union[:size, :size]
    pad = grid.padded * grid.mask_scale - size
    union = F.pad(union, (0, pad, 0, pad))
    side, cell = grid.side, grid.window * grid.mask_scale
    return union.view(side, cell, side, cell).any(dim=3).any(dim=1).flatten()


def window_mass(saliency: torch.Tensor, grid: WindowGrid) -> torch.Tensor:
    """Sum of a token-level map over each window: (N, feat_size**2) -> (N, num_windows)."""
    N = saliency.shape[0]
    maps = saliency.reshape(N, grid.feat_size, grid.feat_size).float()
    pad = grid.padded - grid.feat_size
    maps = F.pad(maps, (0, pad, 0, pad))
    side, w = grid.side, grid.window
    return maps.view(N, side, w, side, w).sum(dim=(2, 4)).flatten(1)


def saliency_windows(saliency: torch.Tensor, grid: WindowGrid, tau: float) -> torch.Tensor:
    """Union over rows of the smallest descending-mass prefix of windows whose mass reaches `tau`.

    saliency: (N, feat_size**2) attention maps (each row sums to 1). Returns (num_windows,) bool.
    """
    mass = window_mass(saliency, grid)  # (N, nW)
    mass = mass / mass.sum(dim=1, keepdim=True).clamp_min(1e-12)
    order = mass.argsort(dim=1, descending=True)
    cum = mass.gather(1, order).cumsum(dim=1)
    # number of windows needed: those strictly below tau, plus the one that reaches it
    count = ((cum < tau - 1e-6).sum(dim=1) + 1).clamp(max=grid.num_windows)
    rank = torch.arange(grid.num_windows, device=mass.device)[None]
    chosen = torch.zeros_like(mass, dtype=torch.bool)
    chosen.scatter_(1, order, rank < count[:, None])
    return chosen.any(dim=0)


def pooled_frame(image: torch.Tensor, grid: WindowGrid) -> torch.Tensor:
    """A preprocessed frame (3, H, W) or (B, 3, H, W) (the first of a batch is used) average-pooled to the routed
    stage's token grid: (3, feat_size, feat_size), fp32."""
    if image.dim() == 4:
        image = image[0]
    return F.adaptive_avg_pool2d(image[None].float(), grid.feat_size)[0]


def frame_change(previous: torch.Tensor, current: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Per-token change between two pooled frames (3, S, S): |d - mean(d)| averaged over the channels, where the
    global mean change of each channel (a lighting drift) is removed first. Returns ((S, S) map, its mean)."""
    d = current - previous
    d = d - d.mean(dim=(1, 2), keepdim=True)
    change = d.abs().mean(dim=0)
    return change, float(change.mean())


def change_windows(change: torch.Tensor, grid: WindowGrid, threshold: float) -> torch.Tensor:
    """Windows with any token whose change (feat_size, feat_size) exceeds `threshold`: (num_windows,) bool."""
    pad = grid.padded - grid.feat_size
    maps = F.pad(change[None], (0, pad, 0, pad))[0]
    side, w = grid.side, grid.window
    return (maps.view(side, w, side, w).amax(dim=(1, 3)) > threshold).flatten()


@dataclass
class RouteDecision:
    """The router's output for one frame: kept window indices (K,) and why they were kept."""

    keep: torch.Tensor
    num_windows: int
    mask_windows: int
    saliency_fired: bool

    @property
    def kept_fraction(self) -> float:
        return self.keep.numel() / self.num_windows


class WindowRouter:
    """Decides the next frame's windows from the previous frame's outputs of every object."""

    def __init__(self, grid: WindowGrid, cfg: EfficientConfig) -> None:
        self.grid = grid
        self.cfg = cfg
        # the paper's dilation is given at 256 x 256 masks; keep it the same physical size at other resolutions
        k = max(1, round(cfg.dilation * grid.mask_size / 256))
        self.dilation = k if k % 2 == 1 else k + 1
        if cfg.dilation == 1:
            self.dilation = 1

    def route(
        self,
        mask_logits: torch.Tensor,
        object_scores: torch.Tensor,
        saliency: torch.Tensor | None,
        thresholds: torch.Tensor | None = None,
    ) -> RouteDecision:
        """mask_logits: (N, M, h, w) previous-frame logits of N objects (M = 3 multimask outputs, or 1);
        object_scores: (N,) or (N, 1) score logits; saliency: (N, feat_size**2) decoder attention maps or None;
        thresholds: (N,) per-object fallback thresholds (None: theta_obj for every object).
        """
        masks = mask_logits > 0
        if not self.cfg.all_masks and masks.shape[1] > 1:
            raise ValueError("all_masks=False needs the chosen mask only (M = 1)")
        pred = windows_touched(masks, self.grid, self.dilation)
        mask_windows = int(pred.sum())
        if self.cfg.kept_windows is not None:
            return self._fixed_fraction(pred, mask_windows, saliency)
        limit = self.cfg.theta_obj if thresholds is None else thresholds.reshape(-1).to(object_scores.device)
        fire = mask_windows == 0 or bool((object_scores.reshape(-1) < limit).any())
        keep = pred
        if fire:
            if saliency is None:
                keep = torch.ones_like(pred)  # no attention map: be safe and keep everything
            else:
                keep = pred | saliency_windows(saliency, self.grid, self.cfg.tau)
        return RouteDecision(keep.nonzero().flatten(), self.grid.num_windows, mask_windows, fire)

    def _fixed_fraction(self, pred: torch.Tensor, mask_windows: int, saliency: torch.Tensor | None):
        """Exactly ceil(kept_windows x N_W) windows: mask windows first, then by attention mass."""
        n = min(self.grid.num_windows, max(1, math.ceil(self.cfg.kept_windows * self.grid.num_windows - 1e-9)))
        score = pred.float() * 2.0
        if saliency is not None:
            mass = window_mass(saliency, self.grid).sum(dim=0)
            score = score + mass / mass.sum().clamp_min(1e-12)
        keep = score.topk(n).indices.sort().values
        return RouteDecision(keep, self.grid.num_windows, mask_windows, False)
