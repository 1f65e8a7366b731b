"""Small building blocks shared by several modules."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


ROW_CHUNK_ELEMENTS = 1 << 21
"""Hidden activations (floats, 8 MB in fp32) per row chunk of `residual_in_chunks`."""


def cache_bound(x: torch.Tensor, hidden: int, chunk_elements: int) -> bool:
    """Whether token-wise work on x (..., C) with a `hidden`-wide inner activation is worth doing in cache-sized
    pieces: CPU, no autograd, and a whole hidden activation of at least 4 chunks of `chunk_elements` floats."""
    if x.device.type != "cpu" or torch.is_grad_enabled() or x.shape[-1] == 0:
        return False
    return (x.numel() // x.shape[-1]) * hidden >= 4 * chunk_elements


def residual_in_chunks(fn, x: torch.Tensor, hidden: int, chunk_elements: int | None = None) -> torch.Tensor:
    """x + fn(x) for a token-wise `fn` (a feed-forward block with `hidden` inner width) over x (..., C).

    On the CPU, without autograd, and when the whole hidden activation would take at least 4 chunks, the
    tokens go through in row chunks (whole multiples of 256 rows) whose hidden activations stay in cache:
    the same per-token arithmetic, noticeably faster than writing a hundreds-of-MB hidden tensor to memory.
    Elsewhere (GPU, training) it is simply x + fn(x).
    """
    if chunk_elements is None:
        chunk_elements = ROW_CHUNK_ELEMENTS
    if not cache_bound(x, hidden, chunk_elements):
        return x + fn(x)
    C = x.shape[-1]
    rows = x.numel() // C
    chunk = max(256, chunk_elements // hidden // 256 * 256)
    flat = x.reshape(rows, C)
    out = torch.empty_like(flat)  # x + fn(x) keeps x's dtype (fp32 under bf16 autocast as well)
    for i in range(0, rows, chunk):
        part = flat[i:i + chunk]
        torch.add(part, fn(part), out=out[i:i + chunk])
    return out.view(x.shape)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) tensor."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MLP(nn.Module):
    """`num_layers` Linear layers with `activation` between them (state-dict keys `layers.{i}`)."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        activation: type[nn.Module] = nn.ReLU,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))
        self.act = activation()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        return torch.sigmoid(x) if self.sigmoid_output else x


def gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x)
