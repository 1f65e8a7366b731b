"""Image encoder (Hiera trunk + FPN neck) against the reference `sam2` package, plus self-contained invariants.

The reference modules are built directly (no hydra) with the per-size numbers of the SAM 2.1 configs, written
out here independently of `efficient_sam2.configs`, and given seeded random weights of trained-like scale.
"""

from __future__ import annotations

import pytest
import torch

from efficient_sam2.configs import HieraConfig, get_config
from efficient_sam2.modeling.hiera import Hiera, HieraBlock, max_pool_tokens, window_partition, window_unpartition
from efficient_sam2.modeling.neck import FpnNeck, ImageEncoder
from reference_oracle import randomize_, require_reference

SIZES = ["tiny", "small", "base_plus", "large"]
TOL = 1e-4

# sam2-reference.md section 1.1 (SAM 2.1 yaml files + Hiera class defaults)
REF_HIERA_KWARGS = {
    "tiny": dict(embed_dim=96, num_heads=1, stages=[1, 2, 7, 2], global_att_blocks=[5, 7, 9],
                 window_pos_embed_bkg_spatial_size=[7, 7], window_spec=[8, 4, 14, 7]),
    "small": dict(embed_dim=96, num_heads=1, stages=[1, 2, 11, 2], global_att_blocks=[7, 10, 13],
                  window_pos_embed_bkg_spatial_size=[7, 7], window_spec=[8, 4, 14, 7]),
    "base_plus": dict(embed_dim=112, num_heads=2, stages=[2, 3, 16, 3], global_att_blocks=[12, 16, 20],
                      window_pos_embed_bkg_spatial_size=[14, 14], window_spec=[8, 4, 14, 7]),
    "large": dict(embed_dim=144, num_heads=2, stages=[2, 6, 36, 4], global_att_blocks=[23, 33, 43],
                  window_pos_embed_bkg_spatial_size=[7, 7], window_spec=[8, 4, 16, 8]),
}


def build_reference_encoder(size: str, seed: int = 0) -> torch.nn.Module:
    require_reference()
    from sam2.modeling.backbones.hieradet import Hiera as RefHiera
    from sam2.modeling.backbones.image_encoder import FpnNeck as RefFpnNeck
    from sam2.modeling.backbones.image_encoder import ImageEncoder as RefImageEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine as RefPositionEmbeddingSine

    trunk = RefHiera(**REF_HIERA_KWARGS[size])
    neck = RefFpnNeck(
        position_encoding=RefPositionEmbeddingSine(num_pos_feats=256, normalize=True, temperature=10000),
        d_model=256,
        backbone_channel_list=trunk.channel_list,
        fpn_top_down_levels=[2, 3],
        fpn_interp_model="nearest",
    )
    encoder = RefImageEncoder(trunk=trunk, neck=neck, scalp=1)
    randomize_(encoder, seed)
    return encoder.eval()


def build_encoder(size: str) -> ImageEncoder:
    trunk = Hiera(get_config(size).hiera)
    return ImageEncoder(trunk, FpnNeck(256, trunk.channel_list), scalp=1).eval()


def encoder_from_reference(size: str, ref: torch.nn.Module) -> ImageEncoder:
    """Our encoder holding the reference's weights (built on the meta device: no wasted initialisation).

    strict=True checks the key sets and load_state_dict checks every shape before assigning.
    """
    with torch.device("meta"):
        ours = build_encoder(size)
    ours.load_state_dict(ref.state_dict(), strict=True, assign=True)
    return ours


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def run_with_trunk_outputs(encoder: torch.nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], dict]:
    """One forward pass; the trunk's stage maps are captured with a forward hook."""
    captured = []
    handle = encoder.trunk.register_forward_hook(lambda module, args, out: captured.append(out))
    try:
        with torch.inference_mode():
            out = encoder(x)
    finally:
        handle.remove()
    return captured[0], out


def compare(ref: torch.nn.Module, ours: ImageEncoder, x: torch.Tensor) -> dict[str, float]:
    """Max abs differences of the trunk stage maps and of all encoder outputs."""
    ref_trunk, ref_out = run_with_trunk_outputs(ref, x)
    our_trunk, our_out = run_with_trunk_outputs(ours, x)
    assert ref_out["vision_features"].std() > 1e-2  # the comparison is not vacuous
    diffs = {f"trunk[{i}]": max_diff(a, b) for i, (a, b) in enumerate(zip(ref_trunk, our_trunk, strict=True))}
    diffs["vision_features"] = max_diff(ref_out["vision_features"], our_out["vision_features"])
    for key in ("backbone_fpn", "vision_pos_enc"):
        for i, (a, b) in enumerate(zip(ref_out[key], our_out[key], strict=True)):
            diffs[f"{key}[{i}]"] = max_diff(a, b)
    return diffs


@pytest.fixture(scope="module", params=SIZES)
def encoder_pair(request):
    size = request.param
    ref = build_reference_encoder(size)
    ours = encoder_from_reference(size, ref)
    yield size, ref, ours
    del ref, ours


# ---------------------------------------------------------------------------------------------------------------
# Reference parity
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.reference
def test_state_dict_keys_and_shapes_match_reference(encoder_pair):
    size, ref, _ = encoder_pair
    with torch.device("meta"):
        ours = build_encoder(size)  # freshly built, not the loaded copy
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert set(our_sd) == set(ref_sd)
    assert {k: tuple(v.shape) for k, v in our_sd.items()} == {k: tuple(v.shape) for k, v in ref_sd.items()}
    assert list(ours.trunk.channel_list) == list(ref.trunk.channel_list)


@pytest.mark.reference
def test_outputs_match_reference_256(encoder_pair):
    size, ref, ours = encoder_pair
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    diffs = compare(ref, ours, x)
    print(f"\n{size} @256 max abs diff: " + ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= TOL, diffs


@pytest.mark.reference
@pytest.mark.parametrize("batch, hw", [(1, (512, 512)), (2, (256, 320))])
def test_outputs_match_reference_other_sizes_tiny(batch, hw):
    ref = build_reference_encoder("tiny", seed=3)
    ours = encoder_from_reference("tiny", ref)
    x = torch.randn(batch, 3, *hw, generator=torch.Generator().manual_seed(2))
    diffs = compare(ref, ours, x)
    print(f"\ntiny @{hw} max abs diff: " + ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= TOL, diffs


# ---------------------------------------------------------------------------------------------------------------
# Self-contained checks
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [256, 512])
def test_output_shapes(size):
    torch.manual_seed(0)
    encoder = build_encoder("tiny")
    with torch.inference_mode():
        feats = encoder.trunk(torch.randn(1, 3, size, size))
        out = encoder.forward_features(feats)
    C = 96
    assert [tuple(f.shape) for f in feats] == [
        (1, C * 2**i, size // 4 // 2**i, size // 4 // 2**i) for i in range(4)
    ]
    assert encoder.trunk.channel_list == [768, 384, 192, 96]
    assert tuple(out["vision_features"].shape) == (1, 256, size // 16, size // 16)
    expected = [(1, 256, size // s, size // s) for s in (4, 8, 16)]
    assert [tuple(f.shape) for f in out["backbone_fpn"]] == expected
    assert [tuple(p.shape) for p in out["vision_pos_enc"]] == expected
    assert out["vision_features"] is out["backbone_fpn"][-1]


@pytest.mark.parametrize("hw", [(250, 256), (256, 200), (100, 100)])
def test_rejects_size_not_multiple_of_32(hw):
    encoder = build_encoder("tiny")
    with pytest.raises(ValueError, match="multiples of 32"):
        encoder(torch.zeros(1, 3, *hw))


def test_rejects_wrong_channel_count_and_mismatched_neck():
    encoder = build_encoder("tiny")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        encoder(torch.zeros(1, 4, 64, 64))
    with pytest.raises(ValueError, match="do not match"):
        ImageEncoder(encoder.trunk, FpnNeck(256, [896, 448, 224, 112]))


def test_block_layout_matches_spec():
    """Per-block windows / widths / Q-pooling for base_plus (sam2-reference.md section 2.3)."""
    trunk = Hiera(get_config("base_plus").hiera)
    windows = [b.window_size for b in trunk.blocks]
    assert windows == [8, 8, 8, 4, 4, 4] + [14] * 6 + [0, 14, 14, 14, 0, 14, 14, 14, 0] + [14, 7, 7]
    assert [i for i, b in enumerate(trunk.blocks) if b.q_stride] == [2, 5, 21]
    assert [i for i, b in enumerate(trunk.blocks) if b.proj is not None] == [2, 5, 21]
    assert [b.attn.num_heads for b in trunk.blocks][:7] == [2, 2, 4, 4, 4, 8, 8]
    assert trunk.stage_ends == [1, 4, 20, 23]


@pytest.mark.parametrize("name, span, window, dim", [
    ("tiny", (4, 9), 14, 384), ("small", (4, 13), 14, 384),
    ("base_plus", (6, 20), 14, 448), ("large", (9, 43), 16, 576),
])
def test_geometry_is_the_trunk_layout(name, span, window, dim):
    """The trunk is built from its HieraGeometry, the layout the FLOP model reads: the routed span runs from the
    block after the stride-16 Q-pool block up to the stage's last global block."""
    from efficient_sam2.modeling.hiera_geometry import HieraGeometry

    cfg = get_config(name).hiera
    geometry = HieraGeometry.of(cfg)
    with torch.device("meta"):
        trunk = Hiera(cfg)
    assert [(b.dim, b.dim_out, b.attn.num_heads, b.window_size, b.q_stride, b.mlp_hidden) for b in trunk.blocks] == \
        [(g.dim, g.dim_out, g.num_heads, g.window, g.q_stride, g.mlp_hidden) for g in geometry.blocks]
    assert geometry.routed_span == trunk.routed_span == span
    assert geometry.routed_window == trunk.routed_window == window and geometry.routed_dim == trunk.routed_dim == dim
    first = span[0]
    assert geometry.blocks[first - 1].q_stride == (2, 2) and geometry.blocks[first - 1].stage == 2
    assert geometry.blocks[span[1]].is_global and geometry.token_grid(first, 1024) == 64


def test_window_partition_round_trip_with_padding():
    x = torch.randn(2, 10, 13, 5)
    windows, (Hp, Wp) = window_partition(x, 4)
    assert (Hp, Wp) == (12, 16) and windows.shape == (2 * 3 * 4, 4, 4, 5)
    # row-major window order: window 1 of image 0 covers rows 0..3, cols 4..7
    assert torch.equal(windows[1], x[0, 0:4, 4:8])
    # the padded border is exact zeros
    assert torch.count_nonzero(windows[3][:, 1:]) == 0
    assert torch.equal(window_unpartition(windows, (Hp, Wp), (10, 13)), x)


def test_max_pool_tokens_hand_case():
    x = torch.arange(2 * 5 * 4 * 3, dtype=torch.float32).view(2, 5, 4, 3)
    y = max_pool_tokens(x, (2, 2))
    assert y.shape == (2, 2, 2, 3)  # floor mode drops the 5th row
    expected = torch.stack([x[:, 2 * i + 1, 2 * j + 1] for i in range(2) for j in range(2)], 1).view(2, 2, 2, 3)
    assert torch.equal(y, expected)  # increasing values: the max is the bottom-right token of every 2x2 cell


@pytest.mark.parametrize("q_stride", [None, (2, 2)])
def test_attention_on_window_subset_equals_dense(q_stride):
    """What Sparse Window Routing relies on: attention of a gathered subset of windows reproduces the dense
    windows, and a block's dense forward equals its pieces called by hand."""
    torch.manual_seed(0)
    dim_out = 64 if q_stride else 32
    block = HieraBlock(32, dim_out, num_heads=2, window_size=4, q_stride=q_stride).eval()
    x = torch.randn(1, 10, 10, 32)
    with torch.no_grad():
        x_norm = block.norm1(x)
        windows, padded = window_partition(x_norm, 4)
        dense = block.attention(windows)
        kept = torch.tensor([0, 4, 8])
        assert torch.allclose(block.attention(windows[kept]), dense[kept], atol=1e-6)
        shortcut = block.shortcut(x, x_norm)
        w = block.out_window_size
        scale = 2 if q_stride else 1
        manual = block.mlp_residual(
            shortcut + window_unpartition(dense, (padded[0] // scale, padded[1] // scale), shortcut.shape[1:3])
        )
        assert torch.allclose(block(x), manual, atol=1e-6)
        assert w == 4 // scale and manual.shape == (1, 10 // scale, 10 // scale, dim_out)


def test_global_attention_flat_tokens_equal_grid():
    torch.manual_seed(0)
    block = HieraBlock(32, 32, num_heads=4, window_size=0).eval()
    x = torch.randn(2, 6, 7, 32)
    with torch.no_grad():
        grid = block.attention(x)
        flat = block.attention(x.reshape(2, 42, 32))
    assert torch.allclose(grid.reshape(2, 42, 32), flat, atol=1e-6)


def test_pos_embed_cache_follows_new_weights():
    cfg = HieraConfig(embed_dim=16, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                      window_pos_embed_bkg_spatial_size=(4, 4))
    a, b = Hiera(cfg).eval(), Hiera(cfg).eval()
    randomize_(a, 0)
    randomize_(b, 1)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a(x)  # fills the cache
        a.load_state_dict(b.state_dict())
        assert all(torch.equal(p, q) for p, q in zip(a(x), b(x)))


def test_trunk_backward_reaches_pos_embed():
    cfg = HieraConfig(embed_dim=16, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                      window_pos_embed_bkg_spatial_size=(4, 4))
    trunk = Hiera(cfg)
    randomize_(trunk, 0)
    with torch.no_grad():
        trunk(torch.randn(1, 3, 64, 64))  # a cached no-grad embedding must not leak into training
    sum(f.sum() for f in trunk(torch.randn(1, 3, 64, 64))).backward()
    assert trunk.pos_embed.grad is not None and trunk.pos_embed.grad.abs().sum() > 0
    assert trunk.pos_embed_window.grad.abs().sum() > 0


@pytest.mark.parametrize("size, hw", [("tiny", (256, 256)), ("base_plus", (256, 320))])
def test_cache_sized_bands_compute_the_same_encoder(monkeypatch, size, hw):
    """On the CPU, big windowed blocks run band by band and big MLPs in row chunks (both switch on at 1024 px).
    Shrinking the chunk makes every block of a small input take those paths: windows with padding (the 14-wide
    windows of a 16 x 20 map), Q-pool blocks, and chunked global-block MLPs; the result is the one-piece result."""
    import efficient_sam2.modeling.hiera as hiera
    import efficient_sam2.modeling.kernels as kernels

    encoder = build_encoder(size)
    randomize_(encoder, 3)
    x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        whole = encoder(x)
    bands, chunks = [], []
    monkeypatch.setattr(kernels, "ROW_CHUNK_ELEMENTS", 1 << 12)
    banded, chunked = kernels.in_bands, hiera.HieraBlock.mlp_residual
    monkeypatch.setattr(kernels, "in_bands",
                        lambda fn, x, rows, q_stride: bands.append((x.shape[1], rows)) or banded(fn, x, rows, q_stride))
    monkeypatch.setattr(hiera.HieraBlock, "mlp_residual",
                        lambda self, x: chunks.append(self.window_size) or chunked(self, x))
    with torch.inference_mode():
        pieces = encoder(x)
    blocks = encoder.trunk.blocks
    assert len(bands) == sum(1 for b in blocks if b.window_size > 0)  # every windowed block ran in bands
    assert any(h % rows for h, rows in bands) and any(rows < h for h, rows in bands)  # partial last bands
    assert 0 in chunks  # global blocks took the chunked MLP
    for key in ("vision_features", "backbone_fpn"):
        a, b = whole[key], pieces[key]
        for u, v in (zip(a, b) if isinstance(a, list) else [(a, b)]):
            assert max_diff(u, v) <= 2e-6 * max(1.0, u.abs().max().item())  # float summation order only
    # with autograd on (shortcut training), blocks run in one piece
    bands.clear()
    encoder.trunk(x[:, :, :64, :64].requires_grad_())
    assert not bands
