"""FPN neck and the full SAM 2 image encoder (Hiera trunk + neck).

The neck maps every trunk stage to `d_model` channels with a 1x1 convolution, adds a nearest-neighbour top-down
path into the listed levels only, and attaches a 2-D sine position encoding to every level. The image encoder
then drops the `scalp` coarsest levels.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from efficient_sam2.modeling.hiera import Hiera
from efficient_sam2.modeling.position_encoding import PositionEmbeddingSine

__all__ = ["FpnNeck", "ImageEncoder"]


class _Lateral(nn.Module):
    """1x1 lateral convolution (state-dict keys `conv.weight`, `conv.bias`)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FpnNeck(nn.Module):
    """Feature pyramid without output convolutions.

    Level i is the trunk output of stride 4 * 2**i (level 0 finest). `convs[j]` is the lateral of the j-th entry
    of `backbone_channel_list`, which lists the trunk channels coarsest first, so `convs[0]` acts on the
    coarsest level. Levels in `fpn_top_down_levels` add the 2x nearest upsampling (in fp32) of the next coarser
    level's output to their lateral; the other levels are pure laterals.
    """

    def __init__(
        self,
        d_model: int,
        backbone_channel_list: Sequence[int],
        fpn_top_down_levels: Sequence[int] = (2, 3),
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = [int(c) for c in backbone_channel_list]
        self.fpn_top_down_levels = tuple(fpn_top_down_levels)
        self.convs = nn.ModuleList(_Lateral(c, d_model) for c in self.backbone_channel_list)
        self.position_encoding = PositionEmbeddingSine(d_model)

    def forward(self, xs: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """xs: trunk maps finest first, xs[i] (B, backbone_channel_list[-1 - i], H_i, W_i).

        Returns (features, pos): two lists, finest first, of (B, d_model, H_i, W_i) maps.
        """
        n = len(self.convs)
        if len(xs) != n:
            raise ValueError(f"expected {n} feature maps, got {len(xs)}")
        features: list[torch.Tensor] = [None] * n  # type: ignore[list-item]
        pos: list[torch.Tensor] = [None] * n  # type: ignore[list-item]
        prev = None
        for level in range(n - 1, -1, -1):  # coarsest to finest
            out = self.convs[n - 1 - level](xs[level])
            if prev is not None and level in self.fpn_top_down_levels:
                out = out + F.interpolate(prev.float(), scale_factor=2.0, mode="nearest")
            features[level] = out
            pos[level] = self.position_encoding(out)
            prev = out
        return features, pos


class ImageEncoder(nn.Module):
    """Hiera trunk + FPN neck: (B, 3, S, S) -> the stride-16 embedding, high-res features and their encodings."""

    def __init__(self, trunk: Hiera, neck: FpnNeck, scalp: int = 1) -> None:
        super().__init__()
        if list(trunk.channel_list) != list(neck.backbone_channel_list):
            raise ValueError(
                f"trunk channels {trunk.channel_list} do not match the neck's {neck.backbone_channel_list}"
            )
        if not 0 <= scalp < len(neck.convs):
            raise ValueError(f"scalp must be in [0, {len(neck.convs) - 1}], got {scalp}")
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward_features(self, trunk_outputs: Sequence[torch.Tensor]) -> dict[str, object]:
        """Run the neck on trunk outputs (finest first, channels-first) computed elsewhere.

        Returns {"vision_features": (B, d_model, S/16, S/16) (the coarsest kept level),
                 "vision_pos_enc": [(B, d_model, S/4, S/4), (.., S/8, S/8), (.., S/16, S/16)],
                 "backbone_fpn":   same shapes as vision_pos_enc}   (for scalp = 1)
        """
        features, pos = self.neck(trunk_outputs)
        if self.scalp > 0:
            features, pos = features[: -self.scalp], pos[: -self.scalp]
        return {"vision_features": features[-1], "vision_pos_enc": pos, "backbone_fpn": features}

    def forward(self, x: torch.Tensor, window_plan=None) -> dict[str, object]:
        """x: (B, 3, S, S) normalised images, S a multiple of 32. See `forward_features` for the output.

        `window_plan` (a hiera.WindowPlan) routes the trunk's stride-16 stage; None is the dense path.
        """
        return self.forward_features(self.trunk(x, window_plan=window_plan))
