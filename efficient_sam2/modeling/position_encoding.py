"""Sine position encodings: the 2-D map encoding of the FPN neck and memory encoder, and the 1-D encoding of
object-pointer temporal distances. None of these are learned or stored in checkpoints."""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """2-D sine encoding of an H x W grid, (B, num_pos_feats, H, W), channels [y-part, x-part].

    Coordinates 1..H and 1..W are normalised to (0, 2*pi]; each axis uses num_pos_feats/2 channels whose
    adjacent pairs share one frequency (even channel sin, odd channel cos).
    """

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError("num_pos_feats must be even")
        self.num_pos_feats = num_pos_feats // 2
        self.temperature = temperature
        self.scale = 2 * math.pi
        self._cache: dict[tuple, torch.Tensor] = {}

    @torch.no_grad()
    def encode(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (height, width, str(device), dtype)
        pe = self._cache.get(key)
        if pe is None:
            eps = 1e-6
            y = torch.arange(1, height + 1, dtype=torch.float32, device=device)
            x = torch.arange(1, width + 1, dtype=torch.float32, device=device)
            y = y / (y[-1] + eps) * self.scale
            x = x / (x[-1] + eps) * self.scale
            i = torch.arange(self.num_pos_feats, dtype=torch.float32, device=device)
            freq = self.temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / self.num_pos_feats)
            py = y[:, None] / freq  # (H, F)
            px = x[:, None] / freq  # (W, F)
            py = torch.stack((py[:, 0::2].sin(), py[:, 1::2].cos()), dim=2).flatten(1)
            px = torch.stack((px[:, 0::2].sin(), px[:, 1::2].cos()), dim=2).flatten(1)
            pe = torch.cat(
                (py[:, None, :].expand(height, width, -1), px[None, :, :].expand(height, width, -1)), dim=2
            )
            pe = pe.permute(2, 0, 1).contiguous().to(dtype)  # (2F, H, W)
            self._cache[key] = pe
        return pe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encoding for the spatial size of `x` (B, C, H, W), returned as (B, num_pos_feats, H, W)."""
        pe = self.encode(x.shape[-2], x.shape[-1], x.device, x.dtype)
        return pe.unsqueeze(0).expand(x.shape[0], -1, -1, -1)


def get_1d_sine_pe(pos: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1-D sine encoding of positions `pos` (N,) -> (N, dim) as [sin block, cos block]."""
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=pos.device)
    freq = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / half)
    angles = pos.to(torch.float32).unsqueeze(-1) / freq
    return torch.cat((angles.sin(), angles.cos()), dim=-1)
