"""Memory attention: conditions the current frame's stride-16 features on the memory bank.

Four pre-norm transformer layers, each made of self-attention over the current frame, cross-attention from the
frame to the memory bank, and a ReLU feed-forward block. Both attentions rotate their queries and keys with a
2-D axial rotary position encoding (RoPE).

Token positions are passed explicitly as integer grid indices (row-major cell `n` of a `grid x grid` map, or -1
for "not rotated"), so a subset of memory keys gathered from anywhere in the bank keeps each token's original
2-D position. This is what Sparse Memory Retrieval needs: a `MemoryPlan` names, per layer, the memory tokens the
cross-attention reads; they are gathered before the key/value projections, so dropped tokens cost nothing.

On the CPU (inference) objects go through a few at a time and the feed-forward blocks in row chunks
(`kernels.by_object_chunks`, `kernels.residual_mlp`): the same computation, in cache.

Shapes use B = batch (objects), L = grid * grid query tokens (64 * 64 at 1024 px), M = memory tokens
(spatial memory frames of L tokens each, then object-pointer tokens).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from efficient_sam2.modeling import kernels

__all__ = [
    "MemoryPlan",
    "summary_blocks",
    "MemoryAttentionOutput",
    "axial_rope_tables",
    "axial_rope_rotations",
    "apply_rope",
    "apply_rope_complex",
    "RotaryAttention",
    "MemoryAttentionLayer",
    "MemoryAttention",
]


# ----------------------------------------------------------------------------------------------------------------
# 2-D axial rotary position encoding: real cos / sin tables, applied as complex numbers in eager mode
# ----------------------------------------------------------------------------------------------------------------

_ROPE_TABLES: dict[tuple[int, float, int, str], tuple[Tensor, Tensor]] = {}
_ROPE_ROTATIONS: dict[tuple[int, float, int, str], Tensor] = {}


def axial_rope_tables(dim: int, grid: int, theta: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """Rotation tables of a `grid x grid` map for head dimension `dim`, cached per (dim, theta, grid, device).

    Returns (cos, sin), each fp32 of shape (grid * grid + 1, dim // 2). Row n < grid * grid belongs to cell n in
    row-major order (x = n mod grid, y = n // grid); the extra last row is the identity rotation, so the grid index
    -1 selects "not rotated". Channel pair m = (2m, 2m+1) turns by x * f_m for m < dim / 4 and by y * f_(m - dim/4)
    otherwise, with f_j = theta^(-4j / dim).

    The angles are computed in fp32 like the tables the official checkpoints were trained with.
    """
    if dim % 4:
        raise ValueError(f"axial RoPE needs a head dimension divisible by 4, got {dim}")
    key = (dim, float(theta), grid, str(device))
    tables = _ROPE_TABLES.get(key)
    if tables is None:
        # Ordinary (non-inference) tensors, so the cache stays usable if a later call records autograd.
        with torch.inference_mode(False), torch.no_grad():
            freqs = 1.0 / (theta ** (torch.arange(0, dim, 4, dtype=torch.float32, device=device) / dim))
            cells = torch.arange(grid * grid, dtype=torch.float32, device=device)
            x = cells % grid
            y = torch.div(cells, grid, rounding_mode="floor")
            angles = torch.cat((torch.outer(x, freqs), torch.outer(y, freqs)), dim=1)  # (grid*grid, dim/2)
            angles = torch.cat((angles, angles.new_zeros(1, dim // 2)), dim=0)  # identity row for index -1
            tables = (angles.cos(), angles.sin())
        # Never cache the placeholder tensors that tracing (torch.export, torch.compile) computes with.
        if type(tables[0]) is torch.Tensor and not torch.compiler.is_compiling():
            _ROPE_TABLES[key] = tables
    return tables


def axial_rope_rotations(dim: int, grid: int, theta: float, device: torch.device) -> Tensor:
    """The rotations of `axial_rope_tables` as unit complex numbers cos + i sin, (grid * grid + 1, dim // 2)
    complex64, cached like the tables (the fast eager path of `RotaryAttention`)."""
    key = (dim, float(theta), grid, str(device))
    table = _ROPE_ROTATIONS.get(key)
    if table is None:
        cos, sin = axial_rope_tables(dim, grid, theta, device)
        with torch.inference_mode(False), torch.no_grad():
            table = torch.complex(cos, sin)
        _ROPE_ROTATIONS[key] = table
    return table


def _complex_rope_allowed(x: Tensor) -> bool:
    """Eager CPU / CUDA runs rotate with one complex multiply; tracing, scripting, export and compilation (ONNX,
    torch.export, torch.compile) see only the real cos / sin form."""
    if x.device.type not in ("cpu", "cuda"):
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False
    onnx = getattr(torch, "onnx", None)
    return not (onnx is not None and hasattr(onnx, "is_in_onnx_export") and onnx.is_in_onnx_export())


def apply_rope_complex(x: Tensor, rotations: Tensor) -> Tensor:
    """`apply_rope` with the rotations as complex numbers, (N, D/2) or (B, N, D/2): the same arithmetic in one
    fused multiply (about 7x faster on the CPU than the separate real operations). Computed in fp32."""
    if rotations.dim() == 3:
        rotations = rotations.unsqueeze(1)
    pairs = x.float().unflatten(-1, (-1, 2))
    if pairs.stride(-1) != 1 or any(st % 2 for st in pairs.stride()[:-1]):
        pairs = pairs.contiguous()
    pairs = torch.view_as_complex(pairs)
    return torch.view_as_real(pairs * rotations).flatten(-2).to(x.dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent channel pairs of `x` (B, heads, N, D) by per-token angles, computed in fp32.

    `cos`, `sin`: (N, D/2) shared by the batch, or (B, N, D/2). Returns a tensor of x's shape and dtype.
    """
    if cos.dim() == 3:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    pairs = x.float().unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------------------------


class RotaryAttention(nn.Module):
    """Multi-head attention with axial RoPE on queries and keys (after the projections).

    Keys and values may come from a narrower space (`kv_in_dim`, 64 for the memory bank).
    """

    def __init__(
        self,
        embedding_dim: int = 256,
        num_heads: int = 1,
        kv_in_dim: int | None = None,
        rope_theta: float = 10000.0,
        saliency_chunk_elems: int = 1 << 20,
    ) -> None:
        super().__init__()
        kv_in_dim = kv_in_dim or embedding_dim
        if embedding_dim % num_heads:
            raise ValueError("num_heads must divide embedding_dim")
        self.num_heads = num_heads
        self.head_dim = embedding_dim // num_heads
        self.rope_theta = rope_theta
        self.saliency_chunk_elems = saliency_chunk_elems
        self.q_proj = nn.Linear(embedding_dim, embedding_dim)
        self.k_proj = nn.Linear(kv_in_dim, embedding_dim)
        self.v_proj = nn.Linear(kv_in_dim, embedding_dim)
        self.out_proj = nn.Linear(embedding_dim, embedding_dim)

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # (B, heads, N, head_dim)

    def _rotate(self, x: Tensor, grid_idx: Tensor, grid: int) -> Tensor:
        if _complex_rope_allowed(x):
            rotations = axial_rope_rotations(self.head_dim, grid, self.rope_theta, x.device)
            return apply_rope_complex(x, rotations[grid_idx])
        cos, sin = axial_rope_tables(self.head_dim, grid, self.rope_theta, x.device)
        return apply_rope(x, cos[grid_idx], sin[grid_idx])

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        q_grid_idx: Tensor,
        k_grid_idx: Tensor,
        grid: int,
        saliency_keys: Tensor | None = None,
        pool: int = 1,
        num_spatial: int = 0,
        key_bias: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from `q` (B, Nq, C) to `k`, `v` (B, Nk, kv_in_dim).

        With `pool` > 1 the first `num_spatial` keys and values (whole frames of grid x grid tokens) are
        average-pooled over pool x pool cells after projection and rotation (the MemPool baseline).

        `q_grid_idx` (Nq,) or (B, Nq) and `k_grid_idx` (Nk,) or (B, Nk): integer cell of each token on the
        `grid x grid` map, -1 for a token that is not rotated. `key_bias` (B, Nk), if given, is added to every
        query's logit of each key (log(n): the key weighs as n copies of it; -inf: never attended).

        Returns the output (B, Nq, C) and, with `saliency_keys` (B, n), indices into the key axis, the saliency of
        those keys (B, n): the softmax of the scaled q.k logits over just these keys, averaged over queries and
        heads (else None).
        """
        q = self._rotate(self._heads(self.q_proj(q)), q_grid_idx, grid)
        k = self._rotate(self._heads(self.k_proj(k)), k_grid_idx, grid)
        v = self._heads(self.v_proj(v))
        if pool > 1 and num_spatial:
            k, v = _pool_frames(k, num_spatial, grid, pool), _pool_frames(v, num_spatial, grid, pool)
        mask = None if key_bias is None else key_bias[:, None, None, :].to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = self.out_proj(out.transpose(1, 2).flatten(2))
        if saliency_keys is None:
            return out, None
        span_k = k.gather(2, saliency_keys[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3]))
        return out, self._mean_attention(q, span_k)

    def _mean_attention(self, q: Tensor, k: Tensor) -> Tensor:
        """Softmax(q k^T / sqrt(d)) over the keys of `k`, averaged over queries and heads: (B, n), fp32.

        q: (B, heads, Nq, d), k: (B, heads, n, d). Queries are processed in chunks so that the explicit
        attention matrix never holds more than `saliency_chunk_elems` entries.
        """
        b, h, nq, d = q.shape
        n = k.shape[2]
        chunk = max(1, self.saliency_chunk_elems // max(1, b * h * n))
        total = q.new_zeros(b, n, dtype=torch.float32)
        with torch.autocast(q.device.type, enabled=False):  # fp32 logits even under bf16 autocast
            k = k.float().transpose(-1, -2) * (1.0 / math.sqrt(d))
            for start in range(0, nq, chunk):
                probs = torch.softmax(q[:, :, start : start + chunk].float() @ k, dim=-1)
                total += probs.sum(dim=(1, 2))
        return total / (h * nq)


def _pool_frames(x: Tensor, num_spatial: int, grid: int, pool: int) -> Tensor:
    """Average-pool the spatial tokens x[:, :, :num_spatial] (frames of grid x grid) over pool x pool cells."""
    B, h, N, d = x.shape
    frames = num_spatial // (grid * grid)
    spatial = x[:, :, :num_spatial].reshape(B * h * frames, grid, grid, d).permute(0, 3, 1, 2)
    spatial = F.avg_pool2d(spatial, pool, stride=pool, ceil_mode=True)
    spatial = spatial.permute(0, 2, 3, 1).reshape(B, h, -1, d)
    return torch.cat((spatial, x[:, :, num_spatial:]), dim=2)


def summary_blocks(grid: int, block: int, device: torch.device | str = "cpu") -> Tensor:
    """(grid * grid,) the block of block x block cells each cell of a row-major grid x grid frame falls in
    (row-major blocks, ceil(grid / block) per side): the grouping of `MemoryPlan.summary`."""
    side = -(-grid // block)
    cell = torch.arange(grid * grid, device=device)
    return (cell // grid // block) * side + (cell % grid) // block


def _append_summaries(memory_keys: Tensor, memory: Tensor, keep: Tensor, keys: Tensor, values: Tensor,
                      keys_grid_idx: Tensor, num_spatial: int, grid: int, block: int
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The kept keys, values and grid indices (B, k, ...) followed by one summary token per (memory frame, block of
    block x block cells): the mean of that block's spatial tokens that `keep` (B, k) leaves out, not rotated.
    Also returns the key bias (B, k + summaries): 0 for a kept token, log(count) for a summary (its logit then
    weighs as `count` copies of the mean key would), -inf for a block with nothing left out (a dense frame).

    The mean is taken before the projections, which are affine, so it equals the mean of the projected tokens."""
    batch, num_memory, _ = memory_keys.shape
    device = memory.device
    tokens = grid * grid
    side = -(-grid // block)
    block_of_cell = summary_blocks(grid, block, device)
    frames = torch.arange(num_spatial // tokens, device=device)
    group = (frames[:, None] * side * side + block_of_cell).flatten().expand(batch, -1)  # (B, num_spatial)
    n_groups = int(frames.numel()) * side * side
    dropped = torch.ones(batch, num_memory, dtype=memory.dtype, device=device).scatter_(1, keep, 0.0)
    dropped = dropped[:, :num_spatial]
    counts = dropped.new_zeros(batch, n_groups).scatter_add_(1, group, dropped)

    def block_mean(x: Tensor) -> Tensor:
        sums = x.new_zeros(batch, n_groups, x.shape[-1]).scatter_add_(
            1, group[..., None].expand(-1, -1, x.shape[-1]), x[:, :num_spatial] * dropped[..., None])
        return sums / counts.clamp_min(1.0)[..., None]

    bias = torch.where(counts > 0, counts.clamp_min(1.0).log(), torch.full_like(counts, float("-inf")))
    keys_grid_idx = keys_grid_idx.expand(batch, -1)
    summary_grid_idx = keys_grid_idx.new_full((batch, n_groups), -1)
    return (torch.cat((keys, block_mean(memory_keys)), 1), torch.cat((values, block_mean(memory)), 1),
            torch.cat((keys_grid_idx, summary_grid_idx), 1), torch.cat((bias.new_zeros(keys.shape[:2]), bias), 1))


# ----------------------------------------------------------------------------------------------------------------
# Memory attention
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class MemoryPlan:
    """Which memory tokens each memory-attention layer reads, and whether to report their saliency.

    keep: one entry per layer; (B, K) indices into the memory axis, sorted ascending, read by that layer's
        cross-attention (None = every token). A 1-D (K,) tensor is shared by the whole batch. The whole `keep`
        may be None (dense).
    saliency_span: (start, end) in the original memory axis. When set, every layer also returns the saliency of
        memory tokens [start, end): its cross-attention probabilities renormalised within the span and averaged
        over queries, (B, end - start). The span must be fully kept by every layer.
    """

    keep: Sequence[Tensor | None] | None = None
    saliency_span: tuple[int, int] | None = None
    pool: int = 1  # > 1: average-pool every spatial memory frame's keys and values (MemPool baseline)
    # > 0 (with `keep`): the tokens each layer leaves out of every summary x summary block of cells of a memory
    # frame are read as one summary token, their mean, weighted by their count (`_append_summaries`)
    summary: int = 0

    def for_objects(self, objects: slice) -> "MemoryPlan":
        """The plan of a slice of the batch (per-object (B, K) keeps are sliced, shared ones kept)."""
        keep = self.keep
        if keep is not None:
            keep = [k if k is None or k.dim() == 1 else k[objects] for k in keep]
        return dataclasses.replace(self, keep=keep)


@dataclass
class MemoryAttentionOutput:
    """What `MemoryAttention.forward` returns.

    features: (B, L, C) the current frame's tokens conditioned on the memory bank.
    saliency: when the plan names a `saliency_span` (start, end), one (B, end - start) saliency per layer, else None.
    """

    features: Tensor
    saliency: list[Tensor] | None = None

    @staticmethod
    def cat(parts: Sequence["MemoryAttentionOutput"]) -> "MemoryAttentionOutput":
        """The outputs of consecutive object chunks joined along the batch."""
        saliency = None
        if parts[0].saliency is not None:
            saliency = [torch.cat(layer) for layer in zip(*(p.saliency for p in parts))]
        return MemoryAttentionOutput(torch.cat([p.features for p in parts]), saliency)


# torch.export sees the output as a pytree of its tensors
torch.export.register_dataclass(MemoryAttentionOutput, serialized_type_name="efficient_sam2.MemoryAttentionOutput")


class MemoryAttentionLayer(nn.Module):
    """Pre-norm layer: RoPE self-attention, RoPE cross-attention to memory, ReLU feed-forward (no dropout)."""

    def __init__(
        self,
        d_model: int = 256,
        kv_in_dim: int = 64,
        dim_feedforward: int = 2048,
        num_heads: int = 1,
        rope_theta: float = 10000.0,
    ) -> None:
        super().__init__()
        self.self_attn = RotaryAttention(d_model, num_heads, rope_theta=rope_theta)
        self.cross_attn_image = RotaryAttention(d_model, num_heads, kv_in_dim=kv_in_dim, rope_theta=rope_theta)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        x: Tensor,
        x_grid_idx: Tensor,
        memory_keys: Tensor,
        memory_values: Tensor,
        memory_grid_idx: Tensor,
        grid: int,
        saliency_keys: Tensor | None = None,
        pool: int = 1,
        num_spatial: int = 0,
        key_bias: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, L, C) current-frame tokens; memory_keys = memory + PE and memory_values = memory, (B, K, kv_dim).

        Grid indices as in `RotaryAttention`. Returns the updated x (B, L, C) and, when `saliency_keys` (B, n)
        is given, the saliency of those keys (B, n), else None.
        """
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, x_grid_idx, x_grid_idx, grid)[0]

        h = self.norm2(x)
        out, saliency = self.cross_attn_image(
            h, memory_keys, memory_values, x_grid_idx, memory_grid_idx, grid, saliency_keys, pool, num_spatial,
            key_bias,
        )
        x = x + out

        x = kernels.residual_mlp(self._feed_forward, x, self.linear1.out_features)
        return x, saliency

    def _feed_forward(self, x: Tensor) -> Tensor:
        return self.linear2(F.relu(self.linear1(self.norm3(x))))


class MemoryAttention(nn.Module):
    """Stack of `MemoryAttentionLayer`s and a final LayerNorm (batch-first)."""

    def __init__(
        self,
        d_model: int = 256,
        num_layers: int = 4,
        kv_in_dim: int = 64,
        dim_feedforward: int = 2048,
        rope_theta: float = 10000.0,
        num_heads: int = 1,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(d_model, kv_in_dim, dim_feedforward, num_heads, rope_theta) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self,
        curr: Tensor,
        curr_pos: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        num_obj_ptr_tokens: int = 0,
        memory_plan: MemoryPlan | None = None,
    ) -> MemoryAttentionOutput:
        """Condition the current frame on the memory bank.

        curr, curr_pos: (B, L, C) features and sine PE of the current frame, L = grid * grid (row-major).
        memory, memory_pos: (B, M, kv_dim); token i < M - num_obj_ptr_tokens is a spatial memory token at cell
            i mod L, the trailing num_obj_ptr_tokens are object-pointer tokens (not rotated).
        memory_plan: per-layer kept memory tokens and an optional saliency span (None = dense).

        Returns a `MemoryAttentionOutput`: the features (B, L, C) and, when the plan asks for it, the saliency
        (B, end - start) of every layer.
        """
        def run(objects: slice) -> MemoryAttentionOutput:
            plan = memory_plan.for_objects(objects) if memory_plan is not None else None
            return self._forward(
                curr[objects], curr_pos[objects], memory[objects], memory_pos[objects], num_obj_ptr_tokens, plan
            )

        return kernels.by_object_chunks(run, curr.shape[0], curr.device, MemoryAttentionOutput.cat)

    def _forward(
        self,
        curr: Tensor,
        curr_pos: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        num_obj_ptr_tokens: int,
        memory_plan: MemoryPlan | None,
    ) -> MemoryAttentionOutput:
        """`forward` on one batch of objects."""
        batch, num_tokens, _ = curr.shape
        num_memory = memory.shape[1]
        grid = math.isqrt(num_tokens)
        if grid * grid != num_tokens:
            raise ValueError(f"the current frame must be a square grid of tokens, got {num_tokens}")
        num_spatial = num_memory - num_obj_ptr_tokens
        plan = memory_plan or MemoryPlan()
        keeps = list(plan.keep) if plan.keep is not None else [None] * len(self.layers)
        if len(keeps) != len(self.layers):
            raise ValueError(f"memory plan has {len(keeps)} layer entries for {len(self.layers)} layers")

        def grid_idx(memory_idx: Tensor) -> Tensor:
            return torch.where(memory_idx < num_spatial, memory_idx % num_tokens, -1)

        device = curr.device
        x = curr + 0.1 * curr_pos
        x_grid_idx = torch.arange(num_tokens, device=device)
        memory_keys = memory + memory_pos
        dense_idx = torch.arange(num_memory, device=device)
        dense_grid_idx = grid_idx(dense_idx)
        span = plan.saliency_span
        span_offsets = None if span is None else torch.arange(span[1] - span[0], device=device)

        saliencies = []
        for layer, keep in zip(self.layers, keeps):
            saliency_keys = None
            if keep is None:
                keys, values, keys_grid_idx = memory_keys, memory, dense_grid_idx
                if span_offsets is not None:
                    saliency_keys = (span[0] + span_offsets).expand(batch, -1)
            else:
                keep = keep.to(device=device, dtype=torch.long)
                if keep.dim() == 1:
                    keep = keep.expand(batch, -1)
                keep = keep.contiguous()
                keys = memory_keys.gather(1, keep[..., None].expand(-1, -1, memory_keys.shape[-1]))
                values = memory.gather(1, keep[..., None].expand(-1, -1, memory.shape[-1]))
                keys_grid_idx = grid_idx(keep)
                if span_offsets is not None:
                    # The span is fully kept and `keep` is sorted, so it is one block starting where index
                    # span[0] sits in each row.
                    first = torch.searchsorted(keep, keep.new_full((batch, 1), span[0]))
                    saliency_keys = first + span_offsets
            pool = plan.pool if keep is None else 1
            key_bias = None
            if keep is not None and plan.summary:
                keys, values, keys_grid_idx, key_bias = _append_summaries(
                    memory_keys, memory, keep, keys, values, keys_grid_idx, num_spatial, grid, plan.summary)
            x, saliency = layer(x, x_grid_idx, keys, values, keys_grid_idx, grid, saliency_keys, pool, num_spatial,
                                key_bias)
            if saliency is not None:
                saliencies.append(saliency)

        return MemoryAttentionOutput(self.norm(x), saliencies if span is not None else None)
