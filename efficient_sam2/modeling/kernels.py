"""CPU kernels: the same arithmetic as a plain forward, in pieces whose activations stay in cache.

On the CPU, without autograd, a big token-wise computation is faster in cache-sized pieces than in one batch that
writes hundreds of MB of hidden activations to memory. Each function here is one such trick behind one call, so
that the modules' forwards read like the method:

    x = kernels.residual_mlp(self._mlp, x, hidden)                             # x + mlp(x), rows in chunks
    return kernels.windowed_block(self._forward, x, window, q_stride, hidden)  # a windowed block, band by band
    return kernels.by_object_chunks(run, batch, device, Output.cat)            # a few objects at a time

Every piece computes exactly what the whole computes (every window lies inside one band, every row and object
is independent), up to the summation order the matrix-multiply library picks for another shape. On the GPU,
with autograd (training, export tracing of a graph with gradients) and for small inputs each is the plain call.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import torch

__all__ = [
    "ROW_CHUNK_ELEMENTS",
    "CPU_OBJECT_CHUNK",
    "cache_bound",
    "residual_mlp",
    "windowed_block",
    "in_bands",
    "by_object_chunks",
]

ROW_CHUNK_ELEMENTS = 1 << 21
"""Hidden activations (floats, 8 MB in fp32) per row chunk of `residual_mlp` and per band of `windowed_block`.
Work whose whole hidden activation is under 4 chunks runs in one piece."""

CPU_OBJECT_CHUNK = 4
"""On the CPU (inference), memory attention runs on at most this many objects at a time: per object, larger
batches are slower there (their memory keys and values no longer fit in cache), up to 20 % at 8 objects."""

T = TypeVar("T")


def _on_cpu_inference(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and not torch.is_grad_enabled()


def cache_bound(x: torch.Tensor, hidden: int, chunk_elements: int | None = None) -> bool:
    """Whether token-wise work on x (..., C) with a `hidden`-wide inner activation is worth doing in cache-sized
    pieces: CPU, no autograd, and a whole hidden activation of at least 4 chunks of `chunk_elements` floats."""
    if chunk_elements is None:
        chunk_elements = ROW_CHUNK_ELEMENTS
    if not _on_cpu_inference(x) or x.shape[-1] == 0:
        return False
    return (x.numel() // x.shape[-1]) * hidden >= 4 * chunk_elements


def residual_mlp(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, hidden: int, chunk_elements: int | None = None
) -> torch.Tensor:
    """x + fn(x) for a token-wise `fn` (a feed-forward block with `hidden` inner width) over x (..., C).

    When `cache_bound`, the tokens go through in row chunks (whole multiples of 256 rows) whose hidden
    activations stay in cache; elsewhere it is simply x + fn(x). The result keeps x's dtype (fp32 under bf16
    autocast as well).
    """
    if chunk_elements is None:
        chunk_elements = ROW_CHUNK_ELEMENTS
    if not cache_bound(x, hidden, chunk_elements):
        return x + fn(x)
    C = x.shape[-1]
    rows = x.numel() // C
    chunk = max(256, chunk_elements // hidden // 256 * 256)
    flat = x.reshape(rows, C)
    out = torch.empty_like(flat)
    for i in range(0, rows, chunk):
        part = flat[i:i + chunk]
        torch.add(part, fn(part), out=out[i:i + chunk])
    return out.view(x.shape)


def windowed_block(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    window: int,
    q_stride: tuple[int, int] | None,
    hidden: int,
    chunk_elements: int | None = None,
) -> torch.Tensor:
    """fn(x) for a windowed transformer block `fn`: (B, H, W, C) -> (B, H / sh, W / sw, C').

    `window` is the block's window side, `q_stride` (sh, sw) its query pooling (None: none) and `hidden` its MLP
    width. When `cache_bound`, the block runs band by band (`in_bands`): a band is whole rows of windows holding
    about `chunk_elements` MLP activations, so its q/k/v and MLP activations stay in cache (30-40 % faster on
    the stride-4 and stride-8 stages of Hiera).
    """
    if chunk_elements is None:
        chunk_elements = ROW_CHUNK_ELEMENTS
    if window <= 0 or not cache_bound(x, hidden, chunk_elements):
        return fn(x)
    B, _, W, _ = x.shape
    per_window_row = B * window * W * hidden
    rows = window * max(1, chunk_elements // max(1, per_window_row))
    return in_bands(fn, x, rows, q_stride)


def in_bands(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, rows: int, q_stride: tuple[int, int] | None
) -> torch.Tensor:
    """fn applied to bands of `rows` grid rows of x (B, H, W, C) (the last band may be shorter), reassembled into
    (B, H / sh, W / sw, C'). `rows` must be a multiple of fn's window side, so that every window lies in one band."""
    B, H, W, _ = x.shape
    sh, sw = q_stride if q_stride is not None else (1, 1)
    out = None
    for r in range(0, H, rows):
        band = fn(x[:, r:r + rows])
        if out is None:
            out = band.new_empty(B, H // sh, W // sw, band.shape[-1])
        out[:, r // sh:r // sh + band.shape[1]] = band
    return out


def by_object_chunks(
    fn: Callable[[slice], T], batch: int, device: torch.device, cat: Callable[[Sequence[T]], T]
) -> T:
    """fn(objects) over a batch of `batch` objects, where `objects` is the slice of the batch fn computes.

    On the CPU without autograd a batch of more than CPU_OBJECT_CHUNK objects goes through CPU_OBJECT_CHUNK at a
    time and the parts are joined with `cat`; elsewhere it is fn(slice(None)), the whole batch at once. fn must
    treat every object independently.
    """
    if batch <= CPU_OBJECT_CHUNK or torch.device(device).type != "cpu" or torch.is_grad_enabled():
        return fn(slice(None))
    starts = range(0, batch, CPU_OBJECT_CHUNK)
    return cat([fn(slice(start, min(batch, start + CPU_OBJECT_CHUNK))) for start in starts])
