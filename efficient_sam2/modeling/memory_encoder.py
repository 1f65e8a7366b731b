"""Memory encoder: turns a frame's backbone feature and its predicted mask into a 64-channel memory.

mask (B, 1, 16E, 16E) --MaskDownSampler--> (B, 256, E, E) --+
pix_feat (B, 256, E, E) --pix_feat_proj (1x1)--------------> + --Fuser (2 ConvNeXt blocks)--> out_proj --> (B, 64, E, E)

E = image size / 16 (64 at 1024 px). The memory's position encoding is the 2-D sine encoding of the E x E grid.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .common import LayerNorm2d
from .position_encoding import PositionEmbeddingSine

__all__ = ["MaskDownSampler", "CXBlock", "Fuser", "MemoryEncoder"]


class MaskDownSampler(nn.Module):
    """Reduce a mask by `total_stride` with repeated [conv stride `stride` -> LayerNorm2d -> GELU] steps.

    Each step multiplies the channels by stride**2 (1 -> 4 -> 16 -> 64 -> 256 for stride 2, total 16), then a
    1x1 conv maps to `embed_dim`. State-dict keys `encoder.{i}` (i = 0..12 for the default settings).
    """

    def __init__(
        self,
        embed_dim: int = 256,
        kernel_size: int = 3,
        stride: int = 2,
        padding: int = 1,
        total_stride: int = 16,
    ) -> None:
        super().__init__()
        num_steps = round(math.log(total_stride, stride))
        if stride**num_steps != total_stride:
            raise ValueError(f"total_stride {total_stride} is not a power of stride {stride}")
        layers: list[nn.Module] = []
        channels = 1
        for _ in range(num_steps):
            out_channels = channels * stride**2
            layers += [
                nn.Conv2d(channels, out_channels, kernel_size, stride=stride, padding=padding),
                LayerNorm2d(out_channels),
                nn.GELU(),
            ]
            channels = out_channels
        layers.append(nn.Conv2d(channels, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, mask: Tensor) -> Tensor:
        """(B, 1, H, W) -> (B, embed_dim, H / total_stride, W / total_stride)."""
        return self.encoder(mask)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7 conv -> LayerNorm2d -> MLP (4x, GELU) -> layer scale, plus the input."""

    def __init__(self, dim: int = 256, kernel_size: int = 7, padding: int = 3, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=padding, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, mlp_ratio * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(mlp_ratio * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: Tensor) -> Tensor:
        """(B, dim, H, W) -> (B, dim, H, W)."""
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)  # channels last for the pointwise MLP
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    """`num_layers` CXBlocks applied in sequence (keys `layers.{i}`)."""

    def __init__(self, dim: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim) for _ in range(num_layers))

    def forward(self, x: Tensor) -> Tensor:
        """(B, dim, H, W) -> (B, dim, H, W)."""
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Fuse a frame's raw backbone feature with its mask into a memory of `out_dim` channels."""

    def __init__(self, out_dim: int = 64, in_dim: int = 256) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(embed_dim=in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim, num_layers=2)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1) if out_dim != in_dim else nn.Identity()
        self.position_encoding = PositionEmbeddingSine(out_dim)

    def forward(self, pix_feat: Tensor, masks: Tensor, skip_mask_sigmoid: bool = False) -> dict[str, object]:
        """pix_feat: (B, in_dim, E, E); masks: (B, 1, 16E, 16E) logits (probabilities if `skip_mask_sigmoid`).

        Returns {"vision_features": (B, out_dim, E, E), "vision_pos_enc": [(B, out_dim, E, E)]}; the position
        encoding is a batch-expanded view of a cached tensor: copy it before writing to it in place.
        """
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(masks)
        x = self.out_proj(self.fuser(x))
        pos = self.position_encoding(x)
        return {"vision_features": x, "vision_pos_enc": [pos]}
