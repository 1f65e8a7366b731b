"""Memory attention (RoPE, MemoryPlan) and memory encoder.

Parity tests load the reference modules' randomized weights into ours (strict) and compare outputs; the plan
tests compare the gathered sparse path with an independent hand computation (complex-number RoPE, explicit
softmax with -inf on dropped keys) written here.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F

from efficient_sam2.modeling.memory_attention import (
    MemoryAttention,
    MemoryPlan,
    RotaryAttention,
    apply_rope,
    axial_rope_tables,
)
from efficient_sam2.modeling.memory_encoder import MemoryEncoder
from tests.reference_oracle import build_reference_model, require_reference

TOL = 1e-4
SMALL_DIM, SMALL_KV = 64, 32  # width of the models used for the plan tests


# ----------------------------------------------------------------------------------------------------------------
# Independent helpers
# ----------------------------------------------------------------------------------------------------------------


def complex_rope(x: torch.Tensor, cells: torch.Tensor, grid: int, theta: float = 10000.0) -> torch.Tensor:
    """Axial RoPE with complex numbers: x (B, N, D), cells (B, N) row-major grid index or -1 (not rotated)."""
    d = x.shape[-1]
    freqs = 1.0 / (theta ** (torch.arange(0, d, 4)[: d // 4].float() / d))
    px = (cells % grid).float()
    py = torch.div(cells, grid, rounding_mode="floor").float()
    angles = torch.cat((px[..., None] * freqs, py[..., None] * freqs), dim=-1)
    rot = torch.polar(torch.ones_like(angles), angles)
    rot = torch.where((cells >= 0)[..., None], rot, torch.ones_like(rot))
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2).contiguous())
    return torch.view_as_real(xc * rot).flatten(-2)


def hand_attention(attn, q_in, k_in, v_in, q_cells, k_cells, grid, key_mask=None):
    """Attention with the module's own projections; returns (out (B, Nq, C), logits (B, heads, Nq, Nk))."""
    heads = attn.num_heads
    split = lambda t: t.unflatten(-1, (heads, -1)).transpose(1, 2)  # noqa: E731
    q = complex_rope(split(attn.q_proj(q_in)), q_cells[:, None], grid)
    k = complex_rope(split(attn.k_proj(k_in)), k_cells[:, None], grid)
    v = split(attn.v_proj(v_in))
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    masked = logits if key_mask is None else logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    out = (torch.softmax(masked, dim=-1) @ v).transpose(1, 2).flatten(2)
    return attn.out_proj(out), logits


def hand_memory_attention(model, curr, curr_pos, memory, memory_pos, num_ptr, key_masks=None, span=None):
    """Dense memory attention; key_masks[i] (B, M) bool drops keys of layer i with -inf. Returns (out, saliency)."""
    b, n, _ = curr.shape
    m = memory.shape[1]
    grid = math.isqrt(n)
    q_cells = torch.arange(n).expand(b, n)
    idx = torch.arange(m)
    k_cells = torch.where(idx < m - num_ptr, idx % n, -1).expand(b, m)
    x = curr + 0.1 * curr_pos
    saliency = []
    for i, layer in enumerate(model.layers):
        h = layer.norm1(x)
        x = x + hand_attention(layer.self_attn, h, h, h, q_cells, q_cells, grid)[0]
        h = layer.norm2(x)
        mask = None if key_masks is None else key_masks[i]
        out, logits = hand_attention(layer.cross_attn_image, h, memory + memory_pos, memory, q_cells, k_cells,
                                     grid, mask)
        if span is not None:
            saliency.append(torch.softmax(logits[..., span[0]:span[1]], dim=-1).mean(dim=(1, 2)))
        x = x + out
        x = x + layer.linear2(F.relu(layer.linear1(layer.norm3(x))))
    return model.norm(x), saliency


def memory_inputs(batch: int, side: int, frames: int, num_ptr: int, seed: int = 0, dim: int = 256,
                  kv_dim: int = 64):
    g = torch.Generator().manual_seed(seed)
    n = side * side
    m = frames * n + num_ptr
    curr = torch.randn(batch, n, dim, generator=g)
    curr_pos = torch.randn(batch, n, dim, generator=g)
    memory = torch.randn(batch, m, kv_dim, generator=g)
    memory_pos = torch.randn(batch, m, kv_dim, generator=g)
    return curr, curr_pos, memory, memory_pos


def random_model(seed: int = 0, num_heads: int = 1) -> MemoryAttention:
    """A narrow copy of our module (the plan mechanism does not depend on width) with informative weights."""
    torch.manual_seed(seed)
    model = MemoryAttention(d_model=SMALL_DIM, kv_in_dim=SMALL_KV, dim_feedforward=128, num_heads=num_heads).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn_like(p) / p.shape[1] ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.02 * torch.randn_like(p))
    return model


# ----------------------------------------------------------------------------------------------------------------
# RoPE tables
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim,grid", [(16, 3), (256, 5)])
def test_rope_tables_match_complex_numbers(dim, grid):
    cos, sin = axial_rope_tables(dim, grid, 10000.0, torch.device("cpu"))
    assert cos.shape == sin.shape == (grid * grid + 1, dim // 2)

    freqs = 1.0 / (10000.0 ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    cells = torch.arange(grid * grid)
    angles = torch.cat((torch.outer((cells % grid).float(), freqs),
                        torch.outer((cells // grid).float(), freqs)), dim=1)
    rot = torch.polar(torch.ones_like(angles), angles)
    torch.testing.assert_close(cos[:-1], rot.real, rtol=0, atol=1e-6)
    torch.testing.assert_close(sin[:-1], rot.imag, rtol=0, atol=1e-6)
    assert torch.equal(cos[-1], torch.ones(dim // 2)) and torch.equal(sin[-1], torch.zeros(dim // 2))

    # Rotating with the tables equals complex multiplication, including unrotated (-1) tokens, batch-wise cells.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 7, dim, generator=g)
    idx = torch.randint(-1, grid * grid, (2, 7), generator=g)
    idx[:, 0] = -1
    got = apply_rope(x, cos[idx], sin[idx])
    want = complex_rope(x[:, 0], idx, grid)[:, None]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert torch.equal(got[:, :, 0], x[:, :, 0])

    # Tables are cached per (grid, device).
    assert axial_rope_tables(dim, grid, 10000.0, torch.device("cpu"))[0] is cos


def test_rope_keeps_dtype_and_uses_fp32():
    cos, sin = axial_rope_tables(8, 4, 10000.0, torch.device("cpu"))
    x = torch.randn(1, 1, 16, 8).bfloat16()
    out = apply_rope(x, cos[torch.arange(16)], sin[torch.arange(16)])
    assert out.dtype == torch.bfloat16
    want = complex_rope(x[:, 0].float(), torch.arange(16)[None], 4)[:, None].bfloat16()
    torch.testing.assert_close(out.float(), want.float(), rtol=1e-2, atol=1e-2)


def test_state_dict_layout_without_reference():
    ma, me = MemoryAttention(), MemoryEncoder()
    assert sum(p.numel() for p in ma.parameters()) == 5_922_304
    assert sum(p.numel() for p in me.parameters()) == 1_384_608
    sd = ma.state_dict()
    assert sd["layers.0.cross_attn_image.k_proj.weight"].shape == (256, 64)
    assert sd["layers.3.linear1.weight"].shape == (2048, 256)
    assert ma.layers[0].norm1.eps == 1e-5
    keys = set(me.state_dict())
    assert {f"mask_downsampler.encoder.{i}.weight" for i in (0, 1, 3, 4, 6, 7, 9, 10, 12)} <= keys
    assert "fuser.layers.1.gamma" in keys and "out_proj.weight" in keys
    assert me.state_dict()["fuser.layers.0.dwconv.weight"].shape == (256, 1, 7, 7)


# ----------------------------------------------------------------------------------------------------------------
# Parity with the reference
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    require_reference()
    return build_reference_model("sam2.1_hiera_tiny", image_size=256)


@pytest.fixture(scope="module")
def ours(reference):
    ma, me = MemoryAttention().eval(), MemoryEncoder().eval()
    ma.load_state_dict(reference.memory_attention.state_dict(), strict=True)
    me.load_state_dict(reference.memory_encoder.state_dict(), strict=True)
    return ma, me


def run_reference_attention(ref_ma, curr, curr_pos, memory, memory_pos, num_ptr):
    seq = lambda t: t.transpose(0, 1)  # noqa: E731  (reference is sequence-first)
    out = ref_ma(curr=seq(curr), memory=seq(memory), curr_pos=seq(curr_pos), memory_pos=seq(memory_pos),
                 num_obj_ptr_tokens=num_ptr)
    return seq(out)


@pytest.mark.reference
@pytest.mark.parametrize("batch,side,frames,num_ptr", [
    (1, 16, 3, 8), (1, 16, 3, 0), (2, 16, 3, 8), (1, 16, 7, 64),
    pytest.param(1, 32, 7, 64, marks=pytest.mark.slow),
])
@torch.no_grad()
def test_memory_attention_matches_reference(reference, ours, batch, side, frames, num_ptr):
    inputs = memory_inputs(batch, side, frames, num_ptr)
    want = run_reference_attention(reference.memory_attention, *inputs, num_ptr)
    got = ours[0](*inputs, num_obj_ptr_tokens=num_ptr).features
    diff = (got - want).abs().max().item()
    print(f"memory attention B={batch} E={side} frames={frames} ptr={num_ptr}: max abs diff {diff:.2e}")
    assert got.shape == want.shape and diff <= TOL


@pytest.mark.reference
@pytest.mark.slow
@torch.no_grad()
def test_memory_attention_matches_reference_full_size(reference, ours):
    """E = 64 (1024 px), 7 memory frames + 16 pointers (64 tokens): the reference's full memory bank."""
    inputs = memory_inputs(1, 64, 7, 64)
    t0 = time.perf_counter()
    want = run_reference_attention(reference.memory_attention, *inputs, 64)
    got = ours[0](*inputs, num_obj_ptr_tokens=64).features
    diff = (got - want).abs().max().item()
    print(f"memory attention E=64 7 frames + 64 ptr: max abs diff {diff:.2e} ({time.perf_counter() - t0:.1f}s)")
    assert diff <= TOL


@pytest.mark.reference
@pytest.mark.parametrize("batch,side,skip_sigmoid", [(2, 16, False), (1, 8, True)])
@torch.no_grad()
def test_memory_encoder_matches_reference(reference, ours, batch, side, skip_sigmoid):
    g = torch.Generator().manual_seed(3)
    pix_feat = torch.randn(batch, 256, side, side, generator=g)
    masks = 8 * torch.randn(batch, 1, 16 * side, 16 * side, generator=g)
    if skip_sigmoid:
        masks = masks.sigmoid() * 20 - 10
    want = reference.memory_encoder(pix_feat, masks, skip_mask_sigmoid=skip_sigmoid)
    got = ours[1](pix_feat, masks, skip_mask_sigmoid=skip_sigmoid)
    feat_diff = (got["vision_features"] - want["vision_features"]).abs().max().item()
    pos_diff = (got["vision_pos_enc"][0] - want["vision_pos_enc"][0]).abs().max().item()
    print(f"memory encoder B={batch} E={side}: features {feat_diff:.2e}, pos {pos_diff:.2e}")
    assert got["vision_features"].shape == (batch, 64, side, side)
    assert len(got["vision_pos_enc"]) == 1 and got["vision_pos_enc"][0].shape == (batch, 64, side, side)
    assert feat_diff <= TOL and pos_diff <= 1e-5


# ----------------------------------------------------------------------------------------------------------------
# MemoryPlan: kept keys and saliency
# ----------------------------------------------------------------------------------------------------------------

SIDE, FRAMES, PTR = 16, 3, 8
L = SIDE * SIDE
M = FRAMES * L + PTR
SPAN = (2 * L, 3 * L)  # the last spatial frame


def random_keep(batch: int, k: int, seed: int, span=SPAN) -> torch.Tensor:
    """Sorted (B, K) memory indices: the whole span plus random others (spatial and pointer tokens)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(batch):
        outside = torch.cat((torch.arange(0, span[0]), torch.arange(span[1], M)))
        pick = outside[torch.randperm(len(outside), generator=g)[: k - (span[1] - span[0])]]
        rows.append(torch.cat((pick, torch.arange(*span))).sort().values)
    return torch.stack(rows)


def small_inputs(batch: int, seed: int):
    return memory_inputs(batch, SIDE, FRAMES, PTR, seed=seed, dim=SMALL_DIM, kv_dim=SMALL_KV)


def keep_to_mask(keep: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(keep.shape[0], M, dtype=torch.bool)
    return mask.scatter_(1, keep, True)


@torch.no_grad()
def test_hand_computation_matches_dense_path():
    model = random_model()
    inputs = small_inputs(2, seed=5)
    want, _ = hand_memory_attention(model, *inputs, PTR)
    got = model(*inputs, num_obj_ptr_tokens=PTR).features
    assert (got - want).abs().max().item() <= TOL


@torch.no_grad()
def test_plan_keeping_everything_is_the_dense_path():
    model = random_model()
    inputs = small_inputs(2, seed=6)
    dense = model(*inputs, num_obj_ptr_tokens=PTR)
    assert dense.saliency is None
    dense = dense.features
    everything = torch.arange(M).expand(2, M)
    plan = MemoryPlan(keep=[everything] * 4)
    assert (model(*inputs, num_obj_ptr_tokens=PTR, memory_plan=plan).features - dense).abs().max().item() <= 1e-6
    plan = MemoryPlan(keep=[None, everything, torch.arange(M), None], saliency_span=SPAN)
    got = model(*inputs, num_obj_ptr_tokens=PTR, memory_plan=plan)
    out, saliency = got.features, got.saliency
    assert (out - dense).abs().max().item() <= 1e-6
    dense_saliency = model(*inputs, num_obj_ptr_tokens=PTR, memory_plan=MemoryPlan(saliency_span=SPAN)).saliency
    assert len(saliency) == 4
    for s, d in zip(saliency, dense_saliency):
        assert s.shape == (2, L) and (s - d).abs().max().item() <= 1e-6


@pytest.mark.parametrize("batch,heads", [(1, 1), (2, 1), (2, 2)])
@torch.no_grad()
def test_plan_subset_equals_masked_dense_attention(batch, heads):
    model = random_model(seed=2, num_heads=heads)
    inputs = small_inputs(batch, seed=7)
    keeps = [random_keep(batch, k, seed=10 + i) for i, k in enumerate((300, 400, 257, 500))]
    keeps[1] = None  # a dense layer in between
    masks = [None if k is None else keep_to_mask(k) for k in keeps]
    masks_full = [torch.ones(batch, M, dtype=torch.bool) if m is None else m for m in masks]
    want, want_sal = hand_memory_attention(model, *inputs, PTR, key_masks=masks_full, span=SPAN)
    out = model(*inputs, num_obj_ptr_tokens=PTR, memory_plan=MemoryPlan(keep=keeps, saliency_span=SPAN))
    got, got_sal = out.features, out.saliency
    dense = model(*inputs, num_obj_ptr_tokens=PTR).features
    diff = (got - want).abs().max().item()
    print(f"sparse plan B={batch} heads={heads}: max abs diff vs masked dense {diff:.2e}")
    assert diff <= TOL
    assert (got - dense).abs().max().item() > 1e-3  # the plan really changed the result
    for g, w in zip(got_sal, want_sal):
        assert g.shape == (batch, SPAN[1] - SPAN[0])
        assert (g - w).abs().max().item() <= 1e-6
        torch.testing.assert_close(g.sum(-1), torch.ones(batch), rtol=0, atol=1e-5)


@torch.no_grad()
def test_saliency_of_dense_pass_and_query_chunking():
    model = random_model(seed=3, num_heads=2)
    inputs = small_inputs(2, seed=8)
    span = (L, 2 * L + 5)
    want_out, want_sal = hand_memory_attention(model, *inputs, PTR, span=span)
    got = model(*inputs, num_obj_ptr_tokens=PTR, memory_plan=MemoryPlan(saliency_span=span))
    out, sal = got.features, got.saliency
    assert (out - want_out).abs().max().item() <= TOL
    for layer in model.layers:
        layer.cross_attn_image.saliency_chunk_elems = 1000  # forces many query chunks
    sal_chunked = model(*inputs, num_obj_ptr_tokens=PTR, memory_plan=MemoryPlan(saliency_span=span)).saliency
    for g, c, w in zip(sal, sal_chunked, want_sal):
        assert (g - w).abs().max().item() <= 1e-6
        assert (c - w).abs().max().item() <= 1e-6
        torch.testing.assert_close(g.sum(-1), torch.ones(2), rtol=0, atol=1e-5)


@torch.no_grad()
def test_kept_tokens_keep_their_original_positions():
    """Dropping a whole frame equals a bank without that frame only if every token keeps its own grid cell."""
    model = random_model(seed=4)
    curr, curr_pos, memory, memory_pos = small_inputs(1, seed=9)
    keep = torch.cat((torch.arange(L), torch.arange(2 * L, M)))[None]  # drop frame 1
    got = model(curr, curr_pos, memory, memory_pos, PTR, MemoryPlan(keep=[keep] * 4)).features
    smaller = [t[:, keep[0]] for t in (memory, memory_pos)]
    want = model(curr, curr_pos, *smaller, num_obj_ptr_tokens=PTR).features
    assert (got - want).abs().max().item() <= 1e-5
    # A 1-D keep is shared by the batch.
    got_1d = model(curr, curr_pos, memory, memory_pos, PTR, MemoryPlan(keep=[keep[0]] * 4)).features
    assert (got_1d - got).abs().max().item() <= 1e-6


def test_plan_validation():
    model = random_model()
    inputs = memory_inputs(1, SIDE, 1, 0, dim=SMALL_DIM, kv_dim=SMALL_KV)
    with pytest.raises(ValueError):
        model(*inputs, num_obj_ptr_tokens=0, memory_plan=MemoryPlan(keep=[None] * 3))
    curr, curr_pos, memory, memory_pos = inputs
    with pytest.raises(ValueError):
        model(curr[:, :-1], curr_pos[:, :-1], memory, memory_pos)


@pytest.mark.slow
def test_exportable_without_complex_ops_and_cache_stays_real():
    """torch.export sees no complex ops, and tracing does not leave placeholder tensors in the RoPE cache."""
    from efficient_sam2.modeling import memory_attention as ma_module

    torch.manual_seed(0)
    model = MemoryAttention(d_model=16, kv_in_dim=8, dim_feedforward=16, num_layers=1).eval()
    inputs = memory_inputs(1, 3, 2, 4, dim=16, kv_dim=8)  # a grid size no other test uses
    program = torch.export.export(model, (*inputs, 4))
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert not [t for t in targets if "complex" in t or "polar" in t]
    assert all(type(c) is torch.Tensor for c, _ in ma_module._ROPE_TABLES.values())
    with torch.no_grad():
        torch.testing.assert_close(program.module()(*inputs, 4).features, model(*inputs, 4).features, rtol=0,
                                   atol=1e-5)


@torch.no_grad()
def test_feed_forward_in_row_chunks_is_the_one_piece_result(monkeypatch):
    """At 1024 px the feed-forward's hidden activation (4096 x 2048 per object) goes through in row chunks on
    the CPU; a small chunk makes a small input take that path, with the same result."""
    import efficient_sam2.modeling.kernels as kernels

    model = random_model(4)
    inputs = memory_inputs(2, 16, 3, 8, seed=4, dim=SMALL_DIM, kv_dim=SMALL_KV)
    whole = model(*inputs, num_obj_ptr_tokens=8).features
    calls = []
    chunked = kernels.residual_mlp

    def spy(fn, x, hidden, chunk_elements=None):
        calls.append(x.numel() // x.shape[-1] * hidden)
        return chunked(fn, x, hidden, chunk_elements)

    monkeypatch.setattr(kernels, "ROW_CHUNK_ELEMENTS", 1 << 12)  # 32 rows of 128 hidden: 256-row chunks
    monkeypatch.setattr(kernels, "residual_mlp", spy)
    pieces = model(*inputs, num_obj_ptr_tokens=8).features
    assert len(calls) == len(model.layers) and all(n >= 4 * (1 << 12) for n in calls)
    assert (pieces - whole).abs().max().item() <= 1e-6 * max(1.0, whole.abs().max().item())
    # by hand: x + fn(x) over 600 rows in chunks of 256, 256 and 88
    x = torch.randn(3, 200, 8)
    fn = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    assert torch.allclose(chunked(fn, x, 64, 1 << 10), x + fn(x), atol=1e-6)
    with torch.enable_grad():  # autograd: one piece, gradients flow
        xg = x.clone().requires_grad_()
        chunked(fn, xg, 64, 1 << 10).sum().backward()
        assert xg.grad is not None


@pytest.mark.parametrize("heads", [1, 2])
def test_complex_rope_path_equals_the_real_tables(heads):
    """Eager runs rotate with complex numbers, traced / exported ones with the real tables: same rotation."""
    from efficient_sam2.modeling.memory_attention import apply_rope_complex, axial_rope_rotations

    dim, grid = 16, 5
    cos, sin = axial_rope_tables(dim, grid, 10000.0, torch.device("cpu"))
    rot = axial_rope_rotations(dim, grid, 10000.0, torch.device("cpu"))
    assert rot.dtype == torch.complex64 and torch.equal(rot.real, cos) and torch.equal(rot.imag, sin)
    g = torch.Generator().manual_seed(3)
    base = torch.randn(2, 9, heads * dim, generator=g)
    x = base.unflatten(-1, (heads, dim)).transpose(1, 2)  # (B, heads, N, D), strided as in the attention
    for idx in (torch.randint(-1, grid * grid, (9,), generator=g), torch.randint(-1, grid * grid, (2, 9), generator=g)):
        torch.testing.assert_close(apply_rope_complex(x, rot[idx]), apply_rope(x, cos[idx], sin[idx]),
                                   rtol=0, atol=1e-6)
    out = apply_rope_complex(x.bfloat16(), rot[torch.arange(9)])
    assert out.dtype == torch.bfloat16 and out.shape == x.shape
    # a whole attention module gives the same output on either path
    torch.manual_seed(0)
    attn = RotaryAttention(embedding_dim=heads * dim, num_heads=heads, kv_in_dim=8).eval()
    q, k = torch.randn(2, 9, heads * dim), torch.randn(2, 12, 8)
    qi, ki = torch.arange(9), torch.cat((torch.arange(8), torch.full((4,), -1)))
    with torch.no_grad():
        eager = attn(q, k, k, qi, ki, grid)[0]
        import efficient_sam2.modeling.memory_attention as ma_module

        real = ma_module._complex_rope_allowed
        try:
            ma_module._complex_rope_allowed = lambda x: False
            tables = attn(q, k, k, qi, ki, grid)[0]
        finally:
            ma_module._complex_rope_allowed = real
    torch.testing.assert_close(eager, tables, rtol=0, atol=1e-5)


@torch.no_grad()
def test_many_objects_run_in_chunks_with_the_same_result(monkeypatch):
    """On the CPU, more than CPU_OBJECT_CHUNK objects go through memory attention a few at a time: outputs and
    saliencies equal the one-batch computation, for dense, shared and per-object plans."""
    import efficient_sam2.modeling.kernels as kernels

    model = random_model(7)
    inputs = small_inputs(7, seed=8)
    k = M // 2
    plans = [None, MemoryPlan(saliency_span=SPAN),
             MemoryPlan(keep=[None, random_keep(7, k, 1), random_keep(1, k, 2)[0], random_keep(7, k, 3)],
                        saliency_span=SPAN),
             MemoryPlan(pool=2)]
    calls = []
    forward = MemoryAttention._forward
    monkeypatch.setattr(MemoryAttention, "_forward",
                        lambda self, curr, *a, **kw: calls.append(curr.shape[0]) or forward(self, curr, *a, **kw))
    for plan in plans:
        monkeypatch.setattr(kernels, "CPU_OBJECT_CHUNK", 100)
        calls.clear()
        whole = model(*inputs, num_obj_ptr_tokens=PTR, memory_plan=plan)
        assert calls == [7]
        monkeypatch.setattr(kernels, "CPU_OBJECT_CHUNK", 3)
        calls.clear()
        parts = model(*inputs, num_obj_ptr_tokens=PTR, memory_plan=plan)
        assert calls == [3, 3, 1]
        (whole, whole_sal), (parts, parts_sal) = (whole.features, whole.saliency), (parts.features, parts.saliency)
        if plan is None or plan.saliency_span is None:
            assert whole_sal is None and parts_sal is None
        else:
            assert len(parts_sal) == len(whole_sal) == 4
            for a, b in zip(whole_sal, parts_sal):
                assert a.shape == b.shape == (7, L) and (a - b).abs().max().item() <= 1e-6
        assert parts.shape == whole.shape and (parts - whole).abs().max().item() <= 1e-5
