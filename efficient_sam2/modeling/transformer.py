"""Two-way transformer of the SAM mask decoder.

Prompt/output tokens and image tokens update each other: in every block the tokens self-attend, read the image
(token -> image), pass an MLP, and then the image reads the tokens back (image -> token). A final token -> image
attention closes the stack. All tensors are batch-first.

The token -> image attention probabilities can be returned (`return_attention=True`, else that output is None);
they are what the decoder turns into its saliency map. Only then are probabilities formed explicitly; otherwise
attention runs through `scaled_dot_product_attention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP

__all__ = ["Attention", "TwoWayAttentionBlock", "TwoWayTransformer"]


class Attention(nn.Module):
    """Multi-head attention whose q/k/v projections may shrink the width by `downsample_rate`.

    Keys `q_proj`, `k_proj`, `v_proj` (embedding_dim -> embedding_dim // downsample_rate) and `out_proj` (back).
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        internal_dim = embedding_dim // downsample_rate
        if internal_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the internal width {internal_dim}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embedding_dim, internal_dim)
        self.k_proj = nn.Linear(embedding_dim, internal_dim)
        self.v_proj = nn.Linear(embedding_dim, internal_dim)
        self.out_proj = nn.Linear(internal_dim, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, h * d) -> (B, h, N, d)."""
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, -1).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, Nq, C), k and v (B, Nk, C) -> (B, Nq, C)."""
        return self.with_probabilities(q, k, v, probabilities=False)[0]

    def with_probabilities(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, probabilities: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`forward`, plus the attention probabilities (B, heads, Nq, Nk) in float32, each row summing to 1
        (None when `probabilities` is False)."""
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        out = F.scaled_dot_product_attention(q, k, v)
        probs = None
        if probabilities:
            # the probabilities are computed on the side, so that asking for them leaves the output unchanged
            logits = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
            probs = logits.softmax(dim=-1, dtype=torch.float32)
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1)), probs


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token -> image attention, token MLP, image -> token attention; post-norm each.

    `skip_first_layer_pe` (first block): the self-attention sees no position code and replaces the tokens
    instead of adding a residual.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, num_layers=2, activation=nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self,
        tokens: torch.Tensor,
        image: torch.Tensor,
        token_pe: torch.Tensor,
        image_pe: torch.Tensor,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """tokens (B, N, C), image (B, HW, C), token_pe like tokens, image_pe (B or 1, HW, C).

        Returns the updated tokens and image, and the token -> image probabilities (B, heads, N, HW) when
        `return_attention` (else None).
        """
        if self.skip_first_layer_pe:
            tokens = self.self_attn(tokens, tokens, tokens)
        else:
            q = tokens + token_pe
            tokens = tokens + self.self_attn(q, q, tokens)
        tokens = self.norm1(tokens)

        q, k = tokens + token_pe, image + image_pe
        attn_out, probs = self.cross_attn_token_to_image.with_probabilities(q, k, image, return_attention)
        tokens = self.norm2(tokens + attn_out)

        tokens = self.norm3(tokens + self.mlp(tokens))

        q, k = tokens + token_pe, image + image_pe
        image = self.norm4(image + self.cross_attn_image_to_token(k, q, tokens))
        return tokens, image, probs


class TwoWayTransformer(nn.Module):
    """`depth` two-way blocks plus a final token -> image attention and LayerNorm.

    Args:
        depth: number of TwoWayAttentionBlocks (2 in SAM 2).
        embedding_dim: token / image width (256).
        num_heads: heads of every attention (8).
        mlp_dim: hidden width of the token MLP (2048).
        attention_downsample_rate: width reduction inside the cross-attentions (2 -> 128).
    """

    def __init__(
        self,
        depth: int = 2,
        embedding_dim: int = 256,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, attention_downsample_rate,
                                 skip_first_layer_pe=(i == 0))
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        point_embedding: torch.Tensor,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor] | None]:
        """Run the decoder transformer.

        Args:
            image_embedding: (B, C, H, W) image tokens (image embedding + dense prompt).
            image_pe: (B or 1, C, H, W) position code of the image tokens.
            point_embedding: (B, N, C) output + prompt tokens; also their position code in every layer.
            return_attention: also return the token -> image attention probabilities.

        Returns:
            tokens (B, N, C), image (B, H*W, C) and, with `return_attention`, a list with the
            (B, heads, N, H*W) float32 probabilities of every token -> image attention (one per block, then the
            final one), else None.
        """
        image = image_embedding.flatten(2).transpose(1, 2)
        image_pe = image_pe.flatten(2).transpose(1, 2)
        tokens = point_embedding

        attention = []
        for layer in self.layers:
            tokens, image, probs = layer(tokens, image, point_embedding, image_pe, return_attention)
            attention.append(probs)

        q, k = tokens + point_embedding, image + image_pe
        attn_out, probs = self.final_attn_token_to_image.with_probabilities(q, k, image, return_attention)
        attention.append(probs)
        tokens = self.norm_final_attn(tokens + attn_out)
        return tokens, image, attention if return_attention else None
