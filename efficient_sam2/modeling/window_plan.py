"""What Sparse Window Routing asks of the Hiera trunk: a `WindowPlan` (which windows of the routed span to compute,
what stands in for the others) and the `WindowResiduals` a plan may carry (each window's residual of the last frame
that computed it; state of one video or stream, owned by the frame policy, written by the trunk as it executes the
plan)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["WindowPlan", "WindowResiduals"]


@dataclass
class WindowPlan:
    """Which windows of the routed span of the stride-16 stage to compute (Sparse Window Routing).

    keep: (K,) sorted window indices on that stage's padded window grid, row-major, shared by the batch.
    shortcut: module applied once to the background windows (N_bg, w, w, C) -> same shape; the routed blocks
        never see them.
    padding: "zero" re-zeroes window padding after every norm, as the dense model does (so keeping every window
        equals the dense model); "official" keeps padded tokens alive between routed window blocks, like the
        official Efficient-SAM2 code, whose shipped shortcut weights expect it.
    residuals: a `WindowResiduals` cache (batch of one): every computed window stores what the routed blocks
        added to it, and a background window that has one takes its input plus that residual instead of the
        shortcut (`EfficientConfig.reuse_residuals`). None: the shortcut for every background window.
    context: the span's global blocks let the kept tokens attend to the background tokens too (keys and values
        only; `EfficientConfig.global_context`): those of the span's input, which are exact for a global block at
        the start of the span, plus, deeper in the span and with `residuals`, the residual each window had at that
        depth when last computed. False: kept tokens attend to kept tokens only (the paper).
    """

    keep: torch.Tensor
    shortcut: nn.Module | None = None
    padding: str = "zero"
    residuals: "WindowResiduals | None" = None
    context: bool = False


class WindowResiduals:
    """Per window of the routed span, what the routed blocks added to it on the last frame that computed it: the
    residual at the span's end (output - input) and, for `global_context`, at the input of each global block
    deeper in the span; (nW, w, w, C) each, and which windows have them. Reset when the grid or width changes."""

    def __init__(self) -> None:
        self.residual: torch.Tensor | None = None
        self.valid: torch.Tensor | None = None
        self.depths: dict[int, torch.Tensor] = {}

    def clear(self) -> None:
        self.residual = self.valid = None
        self.depths = {}

    def nbytes(self) -> int:
        tensors = ([] if self.residual is None else [self.residual]) + list(self.depths.values())
        return sum(t.numel() * t.element_size() for t in tensors)

    def _fits(self, num_windows: int, like: torch.Tensor) -> bool:
        r = self.residual
        return r is not None and tuple(r.shape) == (num_windows, *like.shape[1:]) and r.dtype == like.dtype \
            and r.device == like.device

    def store(self, keep: torch.Tensor, inputs: torch.Tensor, outputs: torch.Tensor, num_windows: int,
              depths: dict[int, torch.Tensor] | None = None) -> None:
        """Remember outputs - inputs (K, w, w, C) of the windows `keep` (K,) of a grid of `num_windows`, and
        depths[i] - inputs for the states entering block i."""
        if not self._fits(num_windows, outputs):
            self.residual = outputs.new_zeros((num_windows, *outputs.shape[1:]))
            self.valid = torch.zeros(num_windows, dtype=torch.bool, device=outputs.device)
            self.depths = {}
        self.residual[keep] = (outputs - inputs).detach()
        for i, state in (depths or {}).items():
            if i not in self.depths:
                self.depths[i] = torch.zeros_like(self.residual)
            self.depths[i][keep] = (state - inputs).detach()
        self.valid[keep] = True

    def apply(self, idx: torch.Tensor, inputs: torch.Tensor, num_windows: int,
              depth: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """For windows `idx` (N,) with span inputs (N, w, w, C): (inputs + the residual at the span's end, or at
        the input of block `depth`, where one is stored (inputs elsewhere), which of the N had one)."""
        table = self.residual if depth is None else self.depths.get(depth)
        if table is None or not self._fits(num_windows, inputs):
            return inputs, torch.zeros(idx.numel(), dtype=torch.bool, device=inputs.device)
        have = self.valid[idx]
        return inputs + table[idx], have
