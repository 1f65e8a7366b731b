"""Sparse Memory Retrieval (paper section 3.3, Eqs. 15-19).

When memory frame t-1 is first recalled (at frame t), every memory-attention layer ranks its K spatial tokens by
query-averaged softmax attention and the top floor((1 - s) K) are cached, per object and per layer, in a FIFO.
On later frames the memory frames t-m .. t-2 are read only through their cached tokens, while the conditioning
frames, frame t-1 and the object pointers stay dense. Kept tokens keep their RoPE positions because the memory
attention rotates every key by its original grid cell.

The selection rule is pluggable: "topk" (the paper), "random" (SMR-random) and "uniform" (SMR-uniform). Beyond the
paper, "topk" can keep a number of tokens that adapts to the attention (`mass`): the smallest descending-saliency
prefix whose mass reaches `mass` in every layer and for every object of the batch, never fewer than the paper's
floor((1 - s) K). The count is shared by the batch and the layers so that the kept indices stay one tensor.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from ..modeling.memory_attention import MemoryPlan, summary_blocks

__all__ = ["SaliencyCache", "select_tokens", "mass_count", "kept_count", "build_memory_plan", "MemorySlot",
           "summary_count"]


def kept_count(num_tokens: int, sparsity: float) -> int:
    """floor((1 - s) K), at least 1."""
    return max(1, int((1.0 - sparsity) * num_tokens + 1e-9))


def select_tokens(
    rule: str,
    num_layers: int,
    num_tokens: int,
    sparsity: float,
    saliency: list[torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    batch: int = 1,
    device: torch.device | str = "cpu",
    mass: float | None = None,
    required: torch.Tensor | None = None,
) -> torch.Tensor:
    """Kept token indices of one memory frame: (batch, num_layers, k), sorted ascending within each layer.

    rule "topk" needs `saliency`, one (batch, num_tokens) tensor per layer; with `mass` it keeps
    max(floor((1 - s) K), mass_count(saliency, mass)) tokens; `required` ((batch, num_tokens) bool) tokens are
    kept before any other (the count grows to hold the most any row requires).
    """
    k = kept_count(num_tokens, sparsity)
    if rule == "topk":
        if saliency is None or len(saliency) != num_layers:
            raise ValueError("topk selection needs one saliency map per layer")
        sal = torch.stack(saliency, dim=1)  # (B, L, K)
        if mass is not None:
            k = max(k, mass_count(sal, mass))
        if required is not None:
            required = required.to(sal.device)
            k = max(k, int(required.sum(dim=-1).max()))
            # rank the required tokens above every other one: saliency is a probability mass, at most 1
            sal = sal.float() + 2.0 * required[:, None, :].float()
        idx = sal.topk(k, dim=-1).indices
    elif rule == "random":
        scores = torch.rand(batch, num_layers, num_tokens, generator=generator)
        idx = scores.topk(k, dim=-1).indices.to(device)
    elif rule == "uniform":
        base = torch.div(torch.arange(k) * num_tokens, k, rounding_mode="floor")
        idx = base.to(device).expand(batch, num_layers, k)
    else:
        raise ValueError(f"unknown memory selection rule {rule!r}")
    return idx.sort(dim=-1).values


def mass_count(saliency: torch.Tensor, mass: float) -> int:
    """The number of tokens that every row of `saliency` (..., K) needs, in descending order, for its
    (renormalised) mass to reach `mass`: the largest such count over the rows."""
    sal = saliency.float().clamp_min(0).flatten(0, -2)
    sal = sal / sal.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    cum = sal.sort(dim=-1, descending=True).values.cumsum(dim=-1)
    count = (cum < mass - 1e-6).sum(dim=-1) + 1
    return int(count.clamp(max=sal.shape[-1]).max())


def summary_count(indices: torch.Tensor, grid: int, block: int) -> float:
    """The number of summary tokens (`MemoryPlan.summary`) one pruned memory frame adds: its blocks of block x
    block cells (of a grid x grid frame) holding a token that `indices` (..., k) leaves out, averaged over the
    leading dimensions (objects, layers)."""
    tokens = grid * grid
    side = -(-grid // block)
    block_of_cell = summary_blocks(grid, block, indices.device)
    flat = indices.reshape(-1, indices.shape[-1])
    dropped = torch.ones(flat.shape[0], tokens, device=indices.device).scatter_(1, flat, 0.0)
    per_block = dropped.new_zeros(flat.shape[0], side * side).index_add_(1, block_of_cell, dropped)
    return float((per_block > 0).float().sum(dim=1).mean())


class SaliencyCache:
    """Per object, a FIFO of the kept-token indices (num_layers, k) of recent memory frames, keyed by frame."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self._entries: dict[int, OrderedDict[int, torch.Tensor]] = {}

    def put(self, obj_id: int, frame_idx: int, indices: torch.Tensor) -> None:
        """Cache the kept indices (num_layers, k) of `frame_idx` for `obj_id`, evicting the oldest entries."""
        fifo = self._entries.setdefault(obj_id, OrderedDict())
        fifo.pop(frame_idx, None)
        fifo[frame_idx] = indices
        while len(fifo) > self.capacity:
            fifo.popitem(last=False)

    def get(self, obj_id: int, frame_idx: int) -> torch.Tensor | None:
        fifo = self._entries.get(obj_id)
        return None if fifo is None else fifo.get(frame_idx)

    def frames(self, obj_id: int) -> list[int]:
        """Cached frames of an object, oldest first."""
        return list(self._entries.get(obj_id, ()))

    def drop_object(self, obj_id: int) -> None:
        self._entries.pop(obj_id, None)

    def nbytes(self) -> int:
        """Bytes of the cached index tensors."""
        return sum(t.numel() * t.element_size() for fifo in self._entries.values() for t in fifo.values())

    def clear(self) -> None:
        self._entries.clear()


@dataclass
class MemorySlot:
    """What SMR does with one spatial memory frame of the bank: read it densely, read only `indices`
    ((B, num_layers, k) token indices), or compute the saliency of its first recollection."""

    frame_idx: int
    dense: bool = True
    indices: torch.Tensor | None = None
    first_recollection: bool = False


def build_memory_plan(
    slots: list[MemorySlot],
    tokens_per_frame: int,
    num_ptr_tokens: int,
    num_layers: int,
    batch: int,
    device: torch.device,
) -> tuple[MemoryPlan | None, int]:
    """The MemoryPlan reading `slots` (in memory order) then the pointer tokens, and the number of memory tokens
    each layer reads. Returns (None, total) when everything is read densely and no saliency is needed."""
    total = len(slots) * tokens_per_frame + num_ptr_tokens
    span = None
    for j, slot in enumerate(slots):
        if slot.first_recollection:
            span = (j * tokens_per_frame, (j + 1) * tokens_per_frame)
    if all(s.dense for s in slots):
        if span is None:
            return None, total
        return MemoryPlan(keep=None, saliency_span=span), total
    per_layer = []
    for layer in range(num_layers):
        pieces = []
        for j, slot in enumerate(slots):
            offset = j * tokens_per_frame
            if slot.dense:
                pieces.append(torch.arange(offset, offset + tokens_per_frame, device=device).expand(batch, -1))
            else:
                pieces.append(slot.indices[:, layer].to(device) + offset)
        if num_ptr_tokens:
            start = len(slots) * tokens_per_frame
            pieces.append(torch.arange(start, start + num_ptr_tokens, device=device).expand(batch, -1))
        per_layer.append(torch.cat(pieces, dim=1))
    return MemoryPlan(keep=per_layer, saliency_span=span), per_layer[0].shape[1]
