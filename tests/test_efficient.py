"""Sparse Window Routing and Sparse Memory Retrieval: router, FIFO cache, plans, and dense equivalence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from efficient_sam2 import EfficientConfig, build_sam2, build_sam2_video_predictor
from efficient_sam2.efficient.policy import EfficientPolicy
from efficient_sam2.efficient.memory_retrieval import (
    MemorySlot,
    SaliencyCache,
    build_memory_plan,
    kept_count,
    select_tokens,
)
from efficient_sam2.efficient.router import WindowGrid, WindowRouter, saliency_windows, window_mass, windows_touched
from efficient_sam2.modeling.hiera import WindowPlan, WindowResiduals, window_partition
from reference_oracle import randomize_
from test_parity import _write_video

SIZES = ["sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus", "sam2.1_hiera_large"]


# ------------------------------------------------------------------------------------------------ router
def test_window_index_mapping_with_padding():
    g = WindowGrid(feat_size=64, window=14)  # base_plus at 1024 px: 64 padded to 70, 5 x 5 windows
    assert (g.side, g.num_windows, g.padded, g.mask_size) == (5, 25, 70, 256)
    assert g.window_of_token(0, 0) == 0 and g.window_of_token(13, 13) == 0
    assert g.window_of_token(14, 0) == 5 and g.window_of_token(0, 14) == 1
    assert g.window_of_token(63, 63) == 24
    assert g.window_of_mask_pixel(255, 255) == 24 and g.window_of_mask_pixel(55, 56) == 1


def test_window_index_mapping_without_padding():
    g = WindowGrid(feat_size=64, window=16)  # large: 4 x 4 windows, no padding
    assert (g.side, g.num_windows, g.padded) == (4, 16, 64)
    assert g.window_of_token(63, 63) == 15 and g.window_of_mask_pixel(255, 0) == 12
    assert g.window_of_mask_pixel(63, 64) == 1


@pytest.mark.parametrize("feat,window", [(64, 14), (64, 16), (16, 14), (20, 8)])
def test_windows_touched_matches_pixel_mapping(feat, window):
    g = WindowGrid(feat, window)
    rng = np.random.default_rng(feat + window)
    for _ in range(5):
        m = torch.zeros(g.mask_size, g.mask_size, dtype=torch.bool)
        ys, xs = rng.integers(0, g.mask_size, 3), rng.integers(0, g.mask_size, 3)
        m[ys, xs] = True
        expected = sorted({g.window_of_mask_pixel(int(y), int(x)) for y, x in zip(ys, xs)})
        got = windows_touched(m[None, None], g).nonzero().flatten().tolist()
        assert got == expected


def test_dilation_grows_the_window_set():
    g = WindowGrid(64, 14)  # mask-space window side 56
    m = torch.zeros(1, 3, 256, 256, dtype=torch.bool)
    m[0, 1, 54, 54] = True  # two pixels from the window corner at 56
    assert windows_touched(m, g, 1).nonzero().flatten().tolist() == [0]
    assert windows_touched(m, g, 5).nonzero().flatten().tolist() == [0, 1, 5, 6]  # dilated to 52..56
    assert windows_touched(m, g, 3).nonzero().flatten().tolist() == [0]  # 53..55 stays inside


def _saliency_map(g: WindowGrid, masses: dict[int, float]) -> torch.Tensor:
    """A token map whose per-window mass is `masses` (spread evenly over each window's real tokens)."""
    sal = torch.zeros(g.feat_size, g.feat_size)
    for win, mass in masses.items():
        r, c = divmod(win, g.side)
        ys = slice(r * g.window, min((r + 1) * g.window, g.feat_size))
        xs = slice(c * g.window, min((c + 1) * g.window, g.feat_size))
        n = (ys.stop - ys.start) * (xs.stop - xs.start)
        sal[ys, xs] = mass / n
    return sal.flatten()[None]


def test_tau_prefix_rule():
    g = WindowGrid(64, 14)
    sal = _saliency_map(g, {3: 0.5, 7: 0.3, 1: 0.15, 20: 0.05})
    assert torch.allclose(window_mass(sal, g)[0, [3, 7, 1, 20]], torch.tensor([0.5, 0.3, 0.15, 0.05]))
    pick = lambda tau: saliency_windows(sal, g, tau).nonzero().flatten().tolist()  # noqa: E731
    assert pick(0.4) == [3]
    assert pick(0.5) == [3]  # the first window reaches tau exactly
    assert pick(0.7) == [3, 7]  # 0.5 < 0.7, 0.8 reaches it
    assert pick(0.81) == [1, 3, 7]
    assert pick(1.0) == [1, 3, 7, 20]
    # union over several objects' maps
    sal2 = torch.cat([sal, _saliency_map(g, {24: 1.0})])
    assert saliency_windows(sal2, g, 0.7).nonzero().flatten().tolist() == [3, 7, 24]


def test_theta_trigger_and_empty_masks():
    g = WindowGrid(64, 14)
    router = WindowRouter(g, EfficientConfig(theta_obj=5.0, tau=0.7, dilation=1))
    masks = torch.full((2, 3, 256, 256), -5.0)
    masks[0, 2, 10, 10] = 3.0  # object 0, third multimask output, window 0
    sal = torch.cat([_saliency_map(g, {24: 1.0}), _saliency_map(g, {12: 1.0})])
    confident = router.route(masks, torch.tensor([8.0, 9.0]), sal)
    assert confident.keep.tolist() == [0] and not confident.saliency_fired
    unsure = router.route(masks, torch.tensor([8.0, 4.9]), sal)  # one object below theta_obj
    assert unsure.keep.tolist() == [0, 12, 24] and unsure.saliency_fired
    empty = router.route(torch.full_like(masks, -1.0), torch.tensor([8.0, 9.0]), sal)
    assert empty.keep.tolist() == [12, 24] and empty.saliency_fired and empty.mask_windows == 0
    # only the chosen mask when all_masks is off
    chosen = WindowRouter(g, EfficientConfig(all_masks=False, dilation=1))
    with pytest.raises(ValueError):
        chosen.route(masks, torch.tensor([8.0, 9.0]), sal)
    assert chosen.route(masks[:, :1], torch.tensor([8.0, 9.0]), sal).keep.tolist() == [12, 24]


def test_fixed_kept_fraction():
    g = WindowGrid(64, 14)
    router = WindowRouter(g, EfficientConfig(kept_windows=0.2, dilation=1))
    masks = torch.full((1, 3, 256, 256), -5.0)
    masks[0, 0, 200, 200] = 1.0  # window 18
    d = router.route(masks, torch.tensor([9.0]), _saliency_map(g, {0: 0.6, 1: 0.3, 2: 0.1}))
    assert d.keep.tolist() == [0, 1, 2, 18, 24] or d.keep.numel() == 5
    assert 18 in d.keep.tolist() and 0 in d.keep.tolist() and d.kept_fraction == 0.2


# ------------------------------------------------------------------------------------------------ SMR pieces
def test_saliency_cache_fifo_order_and_eviction():
    c = SaliencyCache(capacity=3)
    for f in range(5):
        c.put(1, f, torch.full((4, 2), f))
    assert c.frames(1) == [2, 3, 4]
    assert c.get(1, 1) is None and int(c.get(1, 3)[0, 0]) == 3
    c.put(1, 2, torch.zeros(4, 2))  # re-inserting moves to the newest position
    assert c.frames(1) == [3, 4, 2]
    c.put(2, 9, torch.zeros(4, 2))  # objects are independent
    assert c.frames(2) == [9] and c.frames(1) == [3, 4, 2]
    c.drop_object(1)
    assert c.frames(1) == [] and c.frames(2) == [9]


def test_select_tokens_rules():
    sal = [torch.tensor([[0.1, 0.5, 0.05, 0.3, 0.05]]), torch.tensor([[0.3, 0.1, 0.4, 0.1, 0.1]])]
    assert kept_count(5, 0.6) == 2 and kept_count(4096, 0.95) == 204 and kept_count(10, 0.0) == 10
    top = select_tokens("topk", 2, 5, 0.6, saliency=sal)
    assert top.tolist() == [[[1, 3], [0, 2]]]
    assert select_tokens("uniform", 2, 10, 0.8).tolist() == [[[0, 5], [0, 5]]]
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    r1 = select_tokens("random", 4, 100, 0.9, generator=g1, batch=2)
    assert torch.equal(r1, select_tokens("random", 4, 100, 0.9, generator=g2, batch=2))
    assert r1.shape == (2, 4, 10) and (r1.diff(dim=-1) > 0).all()


def test_build_memory_plan_offsets():
    slots = [
        MemorySlot(0),  # conditioning frame, dense
        MemorySlot(5, dense=False, indices=torch.tensor([[[1, 3], [0, 2]]])),  # (B=1, layers=2, k=2)
        MemorySlot(6, first_recollection=True),  # frame t-1
    ]
    plan, kept = build_memory_plan(slots, tokens_per_frame=4, num_ptr_tokens=2, num_layers=2, batch=1,
                                   device=torch.device("cpu"))
    assert kept == 4 + 2 + 4 + 2 and plan.saliency_span == (8, 12)
    assert plan.keep[0].tolist() == [[0, 1, 2, 3, 5, 7, 8, 9, 10, 11, 12, 13]]
    assert plan.keep[1].tolist() == [[0, 1, 2, 3, 4, 6, 8, 9, 10, 11, 12, 13]]
    dense, total = build_memory_plan([MemorySlot(0)], 4, 2, 2, 1, torch.device("cpu"))
    assert dense is None and total == 6


# ------------------------------------------------------------------------------------------------ image encoder
# large (22 s) runs with -m slow only, to keep the suite inside the CI budget: its unpadded window grid is the
# kind tiny's 448 px case of test_official_padding_differs_only_on_padded_grids checks
@pytest.mark.parametrize("name,size", [("tiny", 512), ("base_plus", 512),
                                       pytest.param("large", 512, marks=pytest.mark.slow)])
@torch.no_grad()
def test_routed_encoder_with_every_window_is_the_dense_encoder(name, size):
    m = build_sam2(name, weights="random", image_size=size)
    randomize_(m, 5)
    trunk = m.image_encoder.trunk
    g = WindowGrid(size // 16, trunk.routed_window)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    dense = m.forward_image(x)
    routed = m.forward_image(x, WindowPlan(torch.arange(g.num_windows), shortcut=torch.nn.Identity()))
    for a, b in zip([dense.vision, *dense.high_res], [routed.vision, *routed.high_res]):
        assert (a - b).abs().max().item() <= 1e-5
    # dropping windows changes only what the routed span computes: the stride-4/8 features are untouched
    sparse = m.forward_image(x, WindowPlan(torch.tensor([0]), shortcut=torch.nn.Identity()))
    assert torch.equal(sparse.high_res[0], dense.high_res[0]) and torch.equal(sparse.high_res[1], dense.high_res[1])
    assert (sparse.vision - dense.vision).abs().max() > 1e-3


@torch.no_grad()
def test_routed_blocks_compute_only_the_kept_windows():
    m = build_sam2("tiny", weights="random", image_size=512)  # 32 x 32 map, windows of 14: 3 x 3 windows, padded
    trunk = m.image_encoder.trunk
    first, last = trunk.routed_span
    seen = []
    for i in range(first, last):
        blk = trunk.blocks[i]
        orig = blk.attention

        def spy(x, orig=orig, windowed=blk.window_size > 0):
            seen.append((windowed, tuple(x.shape[:-1])))
            return orig(x)

        blk.attention = spy
    bg_seen = []

    class Shortcut(torch.nn.Module):
        def forward(self, x):
            bg_seen.append(tuple(x.shape[:3]))
            return x

    m.forward_image(torch.randn(2, 3, 512, 512), WindowPlan(torch.tensor([0, 4, 8]), shortcut=Shortcut()))
    windowed = [s for w, s in seen if w]
    global_ = [s for w, s in seen if not w]
    assert windowed and all(s == (2 * 3, 14, 14) for s in windowed)  # 3 kept windows per image
    real_tokens = 14 * 14 + 14 * 14 + 4 * 4  # windows 0 and 4 are whole, window 8 holds the 4 x 4 corner
    assert global_ and all(s == (2, real_tokens) for s in global_)
    assert bg_seen == [(2 * 6, 14, 14)]  # background windows go through the shortcut once


def test_official_padding_differs_only_on_padded_grids():
    torch.manual_seed(0)
    for name, size, padded in [("base_plus", 256, True), ("tiny", 448, False)]:  # 2 x 2 windows of 14 at 448
        m = build_sam2(name, weights="random", image_size=size)
        randomize_(m, 2)
        g = WindowGrid(size // 16, m.image_encoder.trunk.routed_window)
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            keep = torch.arange(g.num_windows)
            zero = m.forward_image(x, WindowPlan(keep, padding="zero")).vision
            official = m.forward_image(x, WindowPlan(keep, padding="official")).vision
            dense = m.forward_image(x).vision
        assert (zero - dense).abs().max() <= 1e-5
        assert ((official - dense).abs().max() > 1e-3) == padded


@torch.no_grad()
def test_reused_residuals_carry_each_windows_own_features_over():
    """A background window with a stored residual gets its input + that residual (so an unchanged window gets its
    computed features exactly), the shortcut only when it has none; kept windows are computed and stored."""
    m = build_sam2("tiny", weights="random", image_size=512)  # 3 x 3 windows of 14 on the 32 x 32 map, padded
    randomize_(m, 4)
    trunk = m.image_encoder.trunk
    first, last = trunk.routed_span
    w = trunk.routed_window
    h = trunk.embed(torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(1)))
    for i in range(first):
        h = trunk.blocks[i](h)
    n = WindowGrid(32, w).num_windows
    calls = []

    class Shortcut(torch.nn.Module):
        def forward(self, x):
            calls.append(x.shape[0])
            return 2 * x

    res = WindowResiduals()
    full = trunk._routed_forward(h, WindowPlan(torch.arange(n), shortcut=Shortcut(), residuals=res), first, last)
    assert calls == [] and bool(res.valid.all()) and res.nbytes() > 0
    part = lambda t: window_partition(t, w)[0]  # noqa: E731
    # the same input, 2 windows computed: the other 7 are the full pass's own outputs, no shortcut called
    sparse = trunk._routed_forward(h, WindowPlan(torch.tensor([0, 4]), shortcut=Shortcut(), residuals=res),
                                   first, last)
    bg = torch.tensor([1, 2, 3, 5, 6, 7, 8])
    assert calls == [] and (part(sparse)[bg] - part(full)[bg]).abs().max() <= 1e-5
    assert (part(sparse)[0] - part(full)[0]).abs().max() > 1e-4  # window 0 computed without the others
    # a changed input: background = new input + the stored residual, by hand
    h2 = h + 0.1 * torch.randn(h.shape, generator=torch.Generator().manual_seed(2))
    moved = trunk._routed_forward(h2, WindowPlan(torch.tensor([0]), shortcut=Shortcut(), residuals=res), first, last)
    expect = part(h2)[bg] + (part(full)[bg] - part(h)[bg])
    assert (part(moved)[bg] - expect).abs().max() <= 1e-4
    # only windows 0 and 1 computed so far: 1 is reused, the other 7 of the 8 background windows take the shortcut
    fresh = WindowResiduals()
    trunk._routed_forward(h, WindowPlan(torch.tensor([0, 1]), shortcut=Shortcut(), residuals=fresh), first, last)
    calls.clear()
    out = trunk._routed_forward(h2, WindowPlan(torch.tensor([0]), shortcut=Shortcut(), residuals=fresh), first, last)
    assert calls == [7]
    assert (part(out)[2] - 2 * part(h2)[2]).abs().max() <= 1e-6
    # a batch of two never reuses (the cache holds one stream's windows)
    calls.clear()
    trunk._routed_forward(torch.cat([h, h2]), WindowPlan(torch.tensor([0]), shortcut=Shortcut(), residuals=res),
                          first, last)
    assert calls == [16]


@torch.no_grad()
def test_global_context_lets_kept_windows_attend_to_the_background():
    """global_context: attend_with_context is attention over the concatenation (rows of x); on the micro model,
    whose routed span starts with a global block, the kept windows become exactly dense's; deeper global blocks
    (tiny) need the carried-over residuals and are exact with them on an unchanged input; all windows kept is
    still dense."""
    torch.manual_seed(0)
    att = build_sam2("tiny", weights="random", image_size=256).image_encoder.trunk.blocks[5].attn
    x, ctx = torch.randn(2, 7, att.qkv.in_features), torch.randn(2, 5, att.qkv.in_features)
    assert (att.attend_with_context(x, ctx) - att(torch.cat([x, ctx], 1))[:, :7]).abs().max() <= 1e-5
    for name, size in (("micro", 256), ("tiny", 512)):
        m = build_sam2(name, weights="random", image_size=size).eval()
        randomize_(m, 3)
        trunk = m.image_encoder.trunk
        first, last = trunk.routed_span
        w = trunk.routed_window
        h = trunk.embed(torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(5)))
        for i in range(first):
            h = trunk.blocks[i](h)
        dense = h
        for i in range(first, last):
            dense = trunk.blocks[i](dense)
        n = WindowGrid(size // 16, w).num_windows
        keep = torch.tensor([0, 1, n - 1])
        part = lambda t: window_partition(t, w)[0][keep]  # noqa: E731
        err = lambda plan: (part(trunk._routed_forward(h, plan, first, last)) - part(dense)).abs().max()  # noqa
        alone = err(WindowPlan(keep))
        assert alone > 1e-3  # the paper: kept windows attend to each other only
        res = WindowResiduals()
        full = trunk._routed_forward(h, WindowPlan(torch.arange(n), residuals=res, context=True), first, last)
        assert (full - dense).abs().max() <= 1e-5  # every window kept: dense
        if name == "micro":
            assert err(WindowPlan(keep, context=True)) <= 1e-5
        else:
            assert sorted(res.depths) == [i for i in range(first + 1, last) if trunk.blocks[i].window_size == 0]
            assert err(WindowPlan(keep, context=True)) == alone  # no global block at the span's start
            assert err(WindowPlan(keep, context=True, residuals=res)) <= 1e-5


def test_flops_of_global_context():
    from efficient_sam2.bench.flops import hiera_flops, ideal_speedups
    from efficient_sam2.configs import get_config

    cfg = get_config("sam2.1_hiera_large").hiera
    keep = list(range(10))
    plain = hiera_flops(cfg, 1024, keep=keep)["total"]
    # large's span has global blocks only deeper inside: context costs nothing without carried-over residuals
    assert hiera_flops(cfg, 1024, keep=keep, context=True)["total"] == plain
    assert hiera_flops(cfg, 1024, keep=keep, context=True, reuse=True)["total"] > plain
    every = list(range(64 * 64 // 16 ** 2))
    assert hiera_flops(cfg, 1024, keep=every, context=True, reuse=True)["total"] == \
        hiera_flops(cfg, 1024, keep=every)["total"]  # no background: nothing more to read
    a, b = ideal_speedups(0.4, 0.5), ideal_speedups(0.4, 0.5, context=True, reuse=True)
    assert all(1.0 < b[m] < a[m] * 1.01 for m in a)  # reuse skips the shortcut, context adds a little


# ------------------------------------------------------------------------------------------------ predictor
@pytest.fixture(scope="module")
def video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("video") / "v"
    disc = _write_video(folder, n=9)
    return str(folder), disc


def _predictor(name, size, efficient=None, seed=1, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained shortcut
        p = build_sam2_video_predictor(name, weights="random", image_size=size, fill_hole_area=0, efficient=efficient, **kw)
    randomize_(p.model, seed)
    return p


def _track(p, video, disc, **kw):
    state = p.init_state(video)
    p.add_new_mask(state, 0, 1, disc)
    p.add_new_points_or_box(state, 0, 2, points=[[92, 32]], labels=[1])
    out = {t: m.clone() for t, _, m in p.propagate_in_video(state, progress=False, **kw)}
    return out, state


# large's predictor-level case (27 s) runs with -m slow only (CI budget): the tracking loop and policy are the
# same code for every size, and large's routed encoder is checked against the dense one above
@pytest.mark.parametrize("name,size", [(n, 128) for n in SIZES[:3]]
                         + [pytest.param(SIZES[3], 128, marks=pytest.mark.slow)])
def test_every_window_and_zero_sparsity_gives_the_dense_output(name, size, video):
    """The accelerated path with nothing pruned is the dense model, for every size (logits within 1e-5).

    At 128 px to stay fast (one padded window per frame; the multi-window routed encoder is checked against the
    dense one at 512 px above, exactly)."""
    folder, disc = video
    dense, _ = _track(_predictor(name, size), folder, disc)
    eff = _predictor(name, size, EfficientConfig(kept_windows=1.0, sparsity=0.0))
    got, state = _track(eff, folder, disc)
    stats = eff.statistics(state)
    # every frame after the first is routed (the defaults' guards only make a frame read every memory token)
    assert stats.routed_frames == len(dense) - 1 and stats.mean_kept_memory == 1.0
    informative = 0
    for t in dense:
        assert (got[t] - dense[t]).abs().max().item() <= 1e-5, t
        # real decoder logits (not the constant written for absent objects) with some spread
        informative += int(dense[t].max() > -1000 and dense[t].std() > 0.1)
    assert informative == len(dense), "objects vanished: the comparison would be vacuous"


def test_first_two_frames_dense_and_routing_after(video, monkeypatch):
    folder, disc = video
    eff = _predictor("tiny", 256, EfficientConfig.paper(kept_windows=0.25, smr=False))
    plans = {}
    orig = EfficientPolicy.window_plan

    def spy(self, t, image=None):
        plan = orig(self, t, image)
        plans[t] = None if plan is None else plan.keep.tolist()
        return plan

    monkeypatch.setattr(EfficientPolicy, "window_plan", spy)
    out, state = _track(eff, folder, disc)
    assert 0 not in plans  # frame 0 is prompted: its features come from the prompt step, never routed
    assert plans[1] is None  # frame 1 keeps every window
    assert all(plans[t] is not None and len(plans[t]) == 1 for t in range(2, 9))  # 25% of 2 x 2 windows
    stats = eff.statistics(state)
    assert stats.kept_windows[0] == stats.kept_windows[1] == 1.0
    assert all(stats.kept_windows[t] == 0.25 for t in range(2, 9))
    assert stats.routed_frames == 8


def test_smr_prunes_every_object_and_reads_fewer_keys(video, monkeypatch):
    folder, disc = video
    eff = _predictor("tiny", 256, EfficientConfig.paper(swr=False, sparsity=0.95))
    lengths = []
    ca = eff.model.memory_attention.layers[2].cross_attn_image
    orig = ca.forward

    def spy(q, k, v, *a, **kw):
        lengths.append((q.shape[0], k.shape[1]))
        return orig(q, k, v, *a, **kw)

    monkeypatch.setattr(ca, "forward", spy)
    out, state = _track(eff, folder, disc)
    cache = state.policy.cache
    # both objects (not only the last one) have cached patterns for the strided frames t-6 .. t-2 of frame 8
    assert cache.frames(1) == cache.frames(2) == [3, 4, 5, 6, 7]
    K, k = 16 * 16, kept_count(16 * 16, 0.95)
    # frame 8: cond frame 0 + t-1 dense, frames 2..6 pruned, pointers of 8 frames (4 tokens each)
    assert lengths[-1] == (2, 2 * K + 5 * k + 8 * 4)
    assert eff.statistics(state).kept_memory[8] == pytest.approx((2 * K + 5 * k + 32) / (7 * K + 32))
    assert all(torch.isfinite(m).all() for m in out.values())


def test_smr_with_memory_stride_caches_only_strided_frames(video):
    folder, disc = video
    eff = _predictor("tiny", 128, EfficientConfig.paper(swr=False), memory_temporal_stride=3)
    _, state = _track(eff, folder, disc)
    frames = state.policy.cache.frames(1)
    assert frames and all(f % 3 == 0 for f in frames)
    assert state.policy.cache.frames(2) == frames


def test_mempool_and_baselines_run(video):
    folder, disc = video
    for sel in ("mempool", "random", "uniform"):
        eff = _predictor("tiny", 128, EfficientConfig.paper(swr=False, memory_selection=sel))
        out, state = _track(eff, folder, disc)
        assert all(torch.isfinite(m).all() for m in out.values())
        frac = eff.statistics(state).mean_kept_memory
        assert 0.0 < frac < 1.0


def test_statistics_report_the_saliency_fallback(video):
    folder, disc = video
    # theta_obj above any reachable score: the saliency fallback fires on every routed frame
    eff = _predictor("tiny", 256, EfficientConfig.paper(theta_obj=1e9, smr=False))
    _, state = _track(eff, folder, disc)
    s = eff.statistics(state)
    assert s.routed_frames == 8 and len(s.saliency_fallbacks) == 8 and s.fallback_rate == 1.0
    summary = s.summary()
    assert summary["frames"] == 9 and summary["saliency_fallbacks"] == 8
