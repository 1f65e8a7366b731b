"""The options beyond the paper (adaptive SMR, change windows, scene cuts, relative fallback threshold) on
constructed inputs, and `EfficientConfig.paper()` reproducing the code that predates them."""

from __future__ import annotations

import hashlib
import os
import warnings

import numpy as np
import pytest
import torch

from efficient_sam2 import EfficientConfig, build_sam2_video_predictor
from efficient_sam2.data.synthetic import generate_video
from efficient_sam2.efficient.config import BEYOND_PAPER, PAPER_OPTIONS
from efficient_sam2.efficient.memory_retrieval import kept_count, mass_count, select_tokens
from efficient_sam2.efficient.policy import EfficientPolicy, EfficientSAM2, is_scene_cut
from efficient_sam2.efficient.router import WindowGrid, change_windows, frame_change, pooled_frame

pytestmark = pytest.mark.usefixtures("one_thread")
GOLDEN = os.path.join(os.path.dirname(__file__), "data", "paper_golden.npz")


# ------------------------------------------------------------------------------------------------ presets
def test_paper_preset_is_the_paper_and_defaults_go_beyond_it():
    paper = EfficientConfig.paper()
    for key, value in PAPER_OPTIONS.items():
        assert getattr(paper, key) == value, key
    assert paper.is_paper and all(getattr(paper, k) in (None, False) for k in BEYOND_PAPER)
    assert (paper.sparsity, paper.tau, paper.theta_obj, paper.dilation) == (0.95, 0.7, 5.0, 5)
    assert EfficientConfig.paper(sparsity=0.9).sparsity == 0.9
    assert not EfficientConfig().is_paper  # the defaults add what measurement chose
    with pytest.raises(ValueError, match="memory_mass"):
        EfficientConfig(memory_mass=1.5)
    with pytest.raises(ValueError, match="scene_cut"):
        EfficientConfig(scene_cut=0.0)


def test_paper_preset_reproduces_the_code_before_the_new_options():
    """Masks and statistics of `EfficientConfig.paper()` on a fixed held-out clip equal what the code of commit
    d85918f (before any option beyond the paper) wrote into tests/data/paper_golden.npz."""
    from efficient_sam2.build import bundled_shortcut, bundled_weights

    golden = np.load(GOLDEN)
    for path, key in ((bundled_weights("micro"), "weights_sha256"), (bundled_shortcut("micro"), "shortcut_sha256")):
        with open(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == str(golden[key]), (
                "the bundled weights changed: regenerate tests/data/paper_golden.npz (see make_paper_golden.py)")
    video = generate_video(20261207, "fast_motion", frames=10)
    predictor = build_sam2_video_predictor("micro", efficient=EfficientConfig.paper())
    state = predictor.init_state(video.frames)
    for i in np.unique(video.masks[0]):
        if i:
            predictor.add_new_mask(state, 0, int(i), video.masks[0] == i)
    masks = np.stack([(m[:, 0] > 0).numpy() for _, _, m in predictor.propagate_in_video(state, progress=False)])
    stats = predictor.statistics(state)
    shape = tuple(golden["shape"])
    expected = np.unpackbits(golden["masks"])[: int(np.prod(shape))].reshape(shape).astype(bool)
    assert masks.shape == shape
    assert np.mean(masks != expected) <= 1e-4  # bit-exact here; a few pixels of slack for other CPUs' rounding
    np.testing.assert_allclose(list(stats.kept_windows.values()), golden["kept_windows"])
    np.testing.assert_allclose(list(stats.kept_memory.values()), golden["kept_memory"], atol=1e-9)
    assert stats.saliency_fallbacks == golden["fallbacks"].tolist()
    assert np.mean(golden["kept_windows"][2:]) < 0.5  # the clip really routes


# ------------------------------------------------------------------------------------------------ SMR
def test_adaptive_smr_keeps_its_floor_on_peaked_and_more_on_flat_attention():
    K, L = 256, 2
    floor = kept_count(K, 0.95)
    assert floor == 12
    peaked = torch.full((1, K), 1e-6)
    peaked[0, :3] = 1.0  # three tokens hold (almost) all the mass
    flat = torch.ones(1, K)
    assert mass_count(peaked, 0.9) == 3
    assert mass_count(flat, 0.5) == 128  # flat: half the tokens for half the mass
    idx = select_tokens("topk", L, K, 0.95, saliency=[peaked] * L, mass=0.9)
    assert idx.shape == (1, L, floor)  # never fewer than the paper's floor((1 - s) K)
    assert set(range(3)) <= set(idx[0, 0].tolist())
    idx = select_tokens("topk", L, K, 0.95, saliency=[flat, peaked], mass=0.5)
    assert idx.shape == (1, L, 128)  # the count is the largest over layers (one tensor for all)
    assert select_tokens("topk", L, K, 0.95, saliency=[flat] * L).shape == (1, L, floor)  # no mass: the paper
    # hand-computed: masses 0.4, 0.3, 0.2, 0.1 need 2 tokens for 0.7 and 3 for 0.75
    sal = torch.tensor([[0.1, 0.4, 0.2, 0.3]])
    assert mass_count(sal, 0.7) == 2 and mass_count(sal, 0.75) == 3 and mass_count(sal, 1.0) == 4


# ------------------------------------------------------------------------------------------------ SWR
def test_change_windows_follow_a_moving_square_and_ignore_lighting():
    grid = WindowGrid(feat_size=16, window=2)  # 8 x 8 windows of 2 x 2 tokens
    a = torch.zeros(3, 256, 256)
    b = torch.zeros(3, 256, 256)
    a[:, 32:64, 32:64] = 2.0  # a bright square in window (1, 1) (32 px windows)...
    b[:, 32:64, 64:96] = 2.0  # ...moves one window right
    change, mean = frame_change(pooled_frame(a, grid), pooled_frame(b, grid))
    kept = change_windows(change, grid, 0.5).reshape(8, 8)
    assert kept.nonzero().tolist() == [[1, 1], [1, 2]]  # where it was and where it is now
    brighter = pooled_frame(a + 0.7, grid)  # a global brightness change (lighting drift) is not motion
    change, mean = frame_change(pooled_frame(a, grid), brighter)
    assert not change_windows(change, grid, 0.05).any() and mean < 1e-6
    # a batch of one frame pools like the frame itself
    assert torch.equal(pooled_frame(a[None], grid), pooled_frame(a, grid))


def test_scene_cut_rule():
    assert not is_scene_cut(0.1, [0.01, 0.01], 4.0)  # below the floor
    assert is_scene_cut(0.5, [0.02, 0.03, 0.025], 4.0)  # 20x the median
    assert not is_scene_cut(0.3, [0.1, 0.2, 0.15], 4.0)  # a shaking camera changes every frame a lot
    assert is_scene_cut(0.5, [], 4.0) and not is_scene_cut(0.3, [], 4.0)  # no history: absolute


def _two_scenes(cut: int, frames: int):
    first = generate_video(20261208, "standard", frames=frames)
    other = generate_video(20261209, "camera_shake", frames=frames)
    video = list(first.frames[:cut]) + list(other.frames[cut:])
    return video, first.masks[0]


def test_a_scene_cut_runs_dense_frames_after_it():
    video, first = _two_scenes(cut=6, frames=10)
    results = {}
    for name, cfg in (("cut", EfficientConfig.paper(scene_cut=4.0)), ("paper", EfficientConfig.paper())):
        predictor = build_sam2_video_predictor("micro", efficient=cfg)
        state = predictor.init_state(video)
        for i in np.unique(first):
            if i:
                predictor.add_new_mask(state, 0, int(i), first == i)
        for _ in predictor.propagate_in_video(state, progress=False):
            pass
        results[name] = predictor.statistics(state)
    cut, paper = results["cut"], results["paper"]
    assert cut.scene_cuts == [6] and paper.scene_cuts == []
    assert cut.kept_windows[6] == cut.kept_windows[7] == 1.0  # the cut and the frame after it: every window
    assert paper.kept_windows[6] < 1.0 and cut.kept_windows[8] < 1.0  # routed otherwise
    assert cut.kept_memory[6] == 1.0  # every memory frame read densely at the cut
    assert all(cut.kept_windows[t] == paper.kept_windows[t] for t in range(6))  # nothing changes before it


def test_relative_fallback_threshold():
    model = build_sam2_video_predictor("micro").model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        policy = EfficientSAM2(model, EfficientConfig.paper(theta_relative=0.5), shortcut=torch.nn.Identity()
                               ).new_video()
    assert isinstance(policy, EfficientPolicy)
    assert policy.fallback_threshold(1) == 5.0  # no scores yet: theta_obj
    policy.reference_scores[1] = [2.0, 4.0, 3.0]
    policy.reference_scores[2] = [20.0]
    policy.reference_scores[3] = [-4.0]
    assert policy.fallback_threshold(1) == pytest.approx(1.5)  # 0.5 x mean 3
    assert policy.fallback_threshold(2) == 5.0  # never above theta_obj
    assert policy.fallback_threshold(3) == 0.0  # an object scored absent from the start: fires below 0


def _results(masks: dict[int, torch.Tensor]):
    from efficient_sam2.tracking.policy import FrameResult
    from efficient_sam2.tracking.state import FrameOutput

    return [FrameResult(o, FrameOutput(pred_masks=torch.where(m, 5.0, -5.0)[None, None], obj_ptr=torch.zeros(1, 8),
                                       object_score_logits=torch.full((1, 1), 9.0)), prompted=False)
            for o, m in masks.items()]


def test_guards_fire_on_fast_change_and_on_area_drift():
    model = build_sam2_video_predictor("micro").model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        policy = EfficientSAM2(model, EfficientConfig.paper(guard=0.3, drift_guard=0.25),
                               shortcut=torch.nn.Identity()).new_video()
    square = torch.zeros(64, 64, dtype=torch.bool)
    square[10:30, 10:30] = True  # 400 pixels

    def shifted(dx, rows=20):
        m = torch.zeros(64, 64, dtype=torch.bool)
        m[10:10 + rows, 10 + dx:30 + dx] = True
        return m

    assert not policy._mask_changed(_results({1: square}), dense=True)  # first sight: nothing to compare
    # moved by 2 px: IoU 360 / 440 = 0.82 -> change 0.18 < 0.3; the area is the same
    assert not policy._mask_changed(_results({1: shifted(2)}), dense=False)
    # moved by 6 more px: IoU with the previous mask 280 / 520 -> change 0.46 > 0.3
    assert policy._mask_changed(_results({1: shifted(8)}), dense=False) == {1}
    # a slow shrink behind an occluder: 10 % of the area per frame never trips `guard`, but after three frames
    # the area is 30 % below the last dense frame's (the anchor: the square, 400 pixels)
    policy._mask_changed(_results({1: shifted(8)}), dense=True)  # a dense frame: the anchor moves here
    assert not policy._mask_changed(_results({1: shifted(8, rows=18)}), dense=False)  # -10 %
    assert not policy._mask_changed(_results({1: shifted(8, rows=16)}), dense=False)  # -20 %
    assert policy._mask_changed(_results({1: shifted(8, rows=14)}), dense=False)  # -30 % > 25 %
    # with several objects, the ones that changed: object 2 stays, object 1 jumps back
    policy._mask_changed(_results({1: shifted(8, rows=14), 2: shifted(30)}), dense=True)
    assert policy._mask_changed(_results({1: shifted(0, rows=14), 2: shifted(30)}), dense=False) == {1}
    # the paper has no guard
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paper = EfficientSAM2(model, EfficientConfig.paper(), shortcut=torch.nn.Identity()).new_video()
    assert not paper._mask_changed(_results({1: square}), dense=True)
    assert not paper._mask_changed(_results({1: shifted(30)}), dense=False)


def _tracked_stats(config: EfficientConfig, seed: int, subset: str, frames: int):
    """The efficiency statistics of the micro model tracking a synthetic video from its first-frame masks."""
    video = generate_video(seed, subset, frames=frames)
    predictor = build_sam2_video_predictor("micro", efficient=config)
    state = predictor.init_state(video.frames)
    for i in np.unique(video.masks[0]):
        if i:
            predictor.add_new_mask(state, 0, int(i), video.masks[0] == i)
    for _ in predictor.propagate_in_video(state, progress=False):
        pass
    stats = predictor.statistics(state)
    return stats


def test_a_guarded_frame_computes_every_window_and_reads_every_memory_token():
    stats = _tracked_stats(EfficientConfig.paper(guard=0.1), 20261211, "standard", 12)
    assert stats.guarded_frames, "guard 0.1 must trip on this video"
    for t in stats.guarded_frames:
        if t in stats.kept_windows:
            assert stats.kept_windows[t] == 1.0 and stats.kept_memory.get(t, 1.0) == 1.0, t
    assert any(stats.kept_windows[t] < 1.0 for t in stats.kept_windows if t not in stats.guarded_frames and t > 1)


def _policy(model, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return EfficientSAM2(model, EfficientConfig.paper(**options), shortcut=torch.nn.Identity()).new_video()


def _box(top, left, rows, cols):
    m = torch.zeros(64, 64, dtype=torch.bool)
    m[top:top + rows, left:left + cols] = True
    return m


def test_a_tolerant_guard_ignores_boundary_jitter_but_not_a_real_change():
    model = build_sam2_video_predictor("micro").model
    small = _box(20, 20, 6, 6)  # a small object: 36 low-res pixels
    jittered = _box(21, 21, 6, 6)  # moved by 1 px diagonally: IoU 25 / 47, 1 - IoU = 0.47
    strict, tolerant = _policy(model, guard=0.2), _policy(model, guard=0.2, guard_tolerance=1)
    for policy in (strict, tolerant):
        assert not policy._mask_changed(_results({1: small}), dense=True)
    assert strict._mask_changed(_results({1: jittered}), dense=False)  # the plain guard trips on jitter
    assert not tolerant._mask_changed(_results({1: jittered}), dense=False)  # every changed pixel is 1 px away
    # one pixel grown on every side (36 -> 64 pixels): jitter too
    assert not tolerant._mask_changed(_results({1: _box(20, 20, 7, 7)}), dense=False)
    # a real move (4 px right of the last mask): most pixels are far from the other mask
    assert tolerant._mask_changed(_results({1: _box(20, 24, 7, 7)}), dense=False)
    # the object lost (empty mask) trips it
    assert tolerant._mask_changed(_results({1: torch.zeros(64, 64, dtype=torch.bool)}), dense=False)
    # tolerance 2 forgives a 2 px shift that tolerance 1 does not
    t1, t2 = _policy(model, guard=0.2, guard_tolerance=1), _policy(model, guard=0.2, guard_tolerance=2)
    for policy in (t1, t2):
        policy._mask_changed(_results({1: _box(20, 20, 10, 10)}), dense=True)
    # moved by 3 px: 40 of the 130 pixels are more than 1 px from the other mask, 20 more than 2 px
    assert t1._mask_changed(_results({1: _box(20, 23, 10, 10)}), dense=False)
    assert not t2._mask_changed(_results({1: _box(20, 23, 10, 10)}), dense=False)


def test_a_tolerant_drift_guard_ignores_boundary_jitter_but_not_a_real_shrink():
    model = build_sam2_video_predictor("micro").model
    strict, tolerant = _policy(model, drift_guard=0.2), _policy(model, drift_guard=0.2, guard_tolerance=1)
    for policy in (strict, tolerant):
        assert not policy._mask_changed(_results({1: _box(20, 20, 6, 6)}), dense=True)  # anchor: 36 pixels
    # eroded by one pixel on every side: 16 pixels, area -56 %, all of it the anchor's 20 boundary pixels: jitter
    # of the boundary, not a drift
    assert strict._mask_changed(_results({1: _box(21, 21, 4, 4)}), dense=False)
    assert not tolerant._mask_changed(_results({1: _box(21, 21, 4, 4)}), dense=False)
    # a large object sliding behind an occluder: the area falls by far more than its boundary explains
    policy = _policy(model, drift_guard=0.2, guard_tolerance=1)
    policy._mask_changed(_results({1: _box(10, 10, 30, 30)}), dense=True)  # 900 pixels
    assert not policy._mask_changed(_results({1: _box(10, 10, 27, 30)}), dense=False)  # -10 %
    assert policy._mask_changed(_results({1: _box(10, 10, 15, 30)}), dense=False)  # -50 % (slack: 116 pixels)


def test_tolerance_and_sparse_memory_options_are_validated_and_off_in_the_paper():
    paper = EfficientConfig.paper()
    assert paper.guard_tolerance is None and paper.guard_sparse_memory is False
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="guard_tolerance"):
            EfficientConfig(guard_tolerance=bad)
    assert EfficientConfig(guard_tolerance=2).guard_tolerance == 2


def test_a_guarded_frame_with_sparse_memory_computes_every_window_but_keeps_smr():
    stats = _tracked_stats(EfficientConfig.paper(guard=0.1, guard_sparse_memory=True), 20261211, "standard", 12)
    guarded = [t for t in stats.guarded_frames if t in stats.kept_windows and t >= 4]
    assert guarded, "guard 0.1 must trip on this video after the memory bank holds pruned frames"
    for t in guarded:
        assert stats.kept_windows[t] == 1.0 and stats.kept_memory[t] < 1.0, t


def test_memory_only_guards_read_every_memory_token_and_keep_swr():
    """guard_memory_only: the frame after a trip reads every memory token (every object) with its windows routed."""
    stats = _tracked_stats(EfficientConfig.paper(guard=0.2, guard_memory_only=True), 20261212, "distractors", 12)
    guarded = [t for t in stats.guarded_frames if t in stats.kept_windows and t >= 4]
    assert guarded, "guard 0.2 must trip on this two-object video after the memory bank holds pruned frames"
    for t in guarded:
        assert stats.kept_windows[t] < 1.0 and stats.kept_memory[t] == 1.0, t
    assert all(stats.kept_windows[t] < 1.0 for t in range(2, 12))  # every frame after the first two routed
    unguarded = [t for t in stats.kept_memory if t >= 4 and t not in guarded]
    assert all(stats.kept_memory[t] < 1.0 for t in unguarded)
    with pytest.raises(ValueError, match="guard_memory_only"):
        EfficientConfig(guard_sparse_memory=True, guard_memory_only=True)


def test_required_tokens_are_kept_before_the_most_attended_ones():
    """select_tokens(required=...): the required tokens first, then by saliency; the count grows to hold them."""
    L, K = 2, 16
    sal = torch.linspace(1.0, 0.1, K)[None].expand(1, K)  # token 0 the most attended, token 15 the least
    sal = sal / sal.sum()
    required = torch.zeros(1, K, dtype=torch.bool)
    required[0, [14, 15]] = True
    idx = select_tokens("topk", L, K, 0.95, saliency=[sal] * L, required=required)  # floor 0.8 -> 1, required 2
    assert idx.shape == (1, L, 2) and idx[0, 0].tolist() == [14, 15]
    idx = select_tokens("topk", L, K, 0.8, saliency=[sal] * L, required=required)  # floor 3: one more, the best
    assert idx[0, 1].tolist() == [0, 14, 15]
    idx = select_tokens("topk", L, K, 0.95, saliency=[sal] * L, required=torch.zeros(1, K, dtype=torch.bool))
    assert idx[0, 0].tolist() == [0]  # nothing required: the paper's top-k


def test_object_tokens_are_the_mask_pooled_to_the_memory_grid_and_grown_by_one():
    model = build_sam2_video_predictor("micro").model
    policy = _policy(model, memory_object_tokens=True)
    K = model.cfg.embed_size ** 2  # 16 x 16 memory tokens over a 64 x 64 low-resolution mask
    policy.last_masks = (5, {1: _box(20, 20, 6, 6).float()[None, None] * 2 - 1, 2: None})
    tokens = policy._object_tokens(5, [1, 2], K)
    rows, cols = torch.meshgrid(torch.arange(4, 8), torch.arange(4, 8), indexing="ij")  # pixels 20..25 -> 5..6
    assert set(tokens[0].nonzero().flatten().tolist()) == set((rows * 16 + cols).flatten().tolist())
    assert not tokens[1].any()  # an object without a mask requires nothing
    assert policy._object_tokens(6, [1], K) is None  # another frame's masks
    assert _policy(model)._object_tokens(5, [1], K) is None  # off


def test_object_tokens_widen_smr_on_a_tracked_video():
    """The first frame that reads a pruned memory keeps more of it than the paper (the object's tokens are not all
    among the most attended), and memory stays sparse."""
    base = _tracked_stats(EfficientConfig.paper(), 20261211, "standard", 10)
    objects = _tracked_stats(EfficientConfig.paper(memory_object_tokens=True), 20261211, "standard", 10)
    assert objects.kept_memory.keys() == base.kept_memory.keys()
    assert objects.kept_memory[1] == base.kept_memory[1] == 1.0  # nothing pruned yet
    first = min(t for t, v in base.kept_memory.items() if v < 1.0)  # the first frame reading a pruned memory
    assert base.kept_memory[first] < objects.kept_memory[first] < 1.0
    assert all(v < 1.0 for t, v in objects.kept_memory.items() if t >= first)


def test_guard_tolerance_and_sparse_memory_flags():
    import argparse

    from efficient_sam2.commands.common import add_efficient_args, efficient_config_from_args

    parser = argparse.ArgumentParser()
    add_efficient_args(parser)
    config = efficient_config_from_args(parser.parse_args(["--guard-tolerance", "1", "--guard-sparse-memory", "on"]))
    assert (config.guard_tolerance, config.guard_sparse_memory) == (1, True)
    config = efficient_config_from_args(parser.parse_args(["--guard-memory-only", "on"]))
    assert config.guard_memory_only and not config.guard_sparse_memory
    assert config.memory_object_tokens  # the default
    assert not efficient_config_from_args(parser.parse_args(["--memory-object-tokens", "off"])).memory_object_tokens
    config = efficient_config_from_args(parser.parse_args(["--guard-tolerance", "0", "--guard-sparse-memory", "off"]))
    assert (config.guard_tolerance, config.guard_sparse_memory) == (None, False)
    assert efficient_config_from_args(parser.parse_args(["--paper"])) == EfficientConfig.paper()


def test_backoff_counts_guarded_routed_frames():
    from efficient_sam2.efficient.policy import BACKOFF_FRAMES, BACKOFF_WINDOW

    model = build_sam2_video_predictor("micro").model
    policy = _policy(model, backoff=0.5)
    for k in range(BACKOFF_WINDOW - 1):  # 4 of 9: the window is not full yet
        policy._note_guarded(k % 2 == 0)
    assert policy.backoff_left == 0
    policy._note_guarded(False)  # 5 of 10 -> 0.5 >= 0.5: back off
    assert policy.backoff_left == BACKOFF_FRAMES and policy.recent_guarded == []
    calm = _policy(model, backoff=0.5)
    for k in range(3 * BACKOFF_WINDOW):  # one in three guarded: never half
        calm._note_guarded(k % 3 == 0)
    assert calm.backoff_left == 0
    off = _policy(model)  # the paper: no backoff, nothing counted
    for _ in range(BACKOFF_WINDOW):
        off._note_guarded(True)
    assert off.backoff_left == 0 and off.recent_guarded == []


def test_backoff_frames_are_consecutive_and_dense():
    from efficient_sam2.efficient.policy import BACKOFF_FRAMES

    stats = _tracked_stats(EfficientConfig.paper(guard=0.05, backoff=0.3), 20261212, "fast_motion", 48)
    assert stats.backoff_frames, "guard 0.05 must trip often enough on fast motion to back off"
    first = stats.backoff_frames[0]
    assert stats.backoff_frames[:BACKOFF_FRAMES] == list(range(first, first + min(BACKOFF_FRAMES, 48 - first)))
    for t in stats.backoff_frames:
        if t in stats.kept_windows:  # (the last one may name the frame after the video's end)
            assert stats.kept_windows[t] == 1.0 and stats.kept_memory.get(t, 1.0) == 1.0, t
    assert stats.summary()["backoff_frames"] == len(stats.backoff_frames)
    with pytest.raises(ValueError, match="backoff"):
        EfficientConfig(backoff=1.5)
    assert EfficientConfig.paper().backoff is None and EfficientConfig().backoff is None


def test_backoff_flag():
    import argparse

    from efficient_sam2.commands.common import add_efficient_args, efficient_config_from_args

    parser = argparse.ArgumentParser()
    add_efficient_args(parser)
    assert efficient_config_from_args(parser.parse_args(["--backoff", "0.5"])).backoff == 0.5
    assert efficient_config_from_args(parser.parse_args(["--backoff", "0"])).backoff is None


def test_reused_residuals_on_a_tracked_video_with_a_scene_cut(monkeypatch):
    """reuse_residuals: dense frames compute every window through a plan that remembers their residuals, routed
    frames get the same cache, a scene cut empties it, and the routed frames' masks change (the background windows
    no longer come from the shortcut); the paper keeps no cache."""
    video, first = _two_scenes(cut=6, frames=10)
    seen = {}
    orig = EfficientPolicy.window_plan

    def spy(self, t, image=None):
        plan = orig(self, t, image)
        res = self.residuals
        seen[t] = (None if plan is None else plan.keep.numel(), None if plan is None else plan.residuals,
                   res, None if res is None or res.valid is None else int(res.valid.sum()))
        return plan

    monkeypatch.setattr(EfficientPolicy, "window_plan", spy)
    out = {}
    for name, cfg in (("reuse", EfficientConfig.paper(scene_cut=4.0, reuse_residuals=True)),
                      ("paper", EfficientConfig.paper(scene_cut=4.0))):
        seen.clear()
        predictor = build_sam2_video_predictor("micro", efficient=cfg)
        state = predictor.init_state(video)
        for i in np.unique(first):
            if i:
                predictor.add_new_mask(state, 0, int(i), first == i)
        out[name] = {t: m.clone() for t, _, m in predictor.propagate_in_video(state, progress=False)}
        out[name + "_seen"] = dict(seen)
        out[name + "_stats"] = predictor.statistics(state)
    n = WindowGrid(16, predictor.model.image_encoder.trunk.routed_window).num_windows  # 16 x 16 tokens at 256 px
    reuse, stats = out["reuse_seen"], out["reuse_stats"]
    assert stats.scene_cuts == [6]
    cache = reuse[1][2]
    assert cache is not None and all(s[1] is cache for s in reuse.values())  # one cache, in every plan
    for t in (1, 6, 7):  # dense: every window computed, through a plan (so their residuals are stored)
        assert reuse[t][0] == n and stats.kept_windows[t] == 1.0, t
    assert reuse[5][3] == n  # every window has a residual after the dense frame 1
    assert reuse[6][3] is None  # the cut emptied the cache before its frame was computed
    routed = [t for t in range(2, 10) if t not in (6, 7)]
    assert all(reuse[t][0] < n for t in routed)
    paper = out["paper_seen"]
    assert all(s[2] is None for s in paper.values()) and paper[1][0] is None  # the paper: no cache, dense = None
    assert any((out["reuse"][t] - out["paper"][t]).abs().max() > 1e-3 for t in routed)
    assert all(torch.equal(out["reuse"][t], out["paper"][t]) for t in (0, 1))  # identical until the first route


def test_reuse_residuals_flag():
    import argparse

    from efficient_sam2.commands.common import add_efficient_args, efficient_config_from_args

    parser = argparse.ArgumentParser()
    add_efficient_args(parser)
    assert efficient_config_from_args(parser.parse_args(["--reuse-residuals", "on", "--paper"])).reuse_residuals
    assert not efficient_config_from_args(parser.parse_args(["--reuse-residuals", "off"])).reuse_residuals
    assert not EfficientConfig.paper().reuse_residuals
    assert efficient_config_from_args(parser.parse_args(["--global-context", "on", "--paper"])).global_context
    assert not EfficientConfig.paper().global_context


def test_memory_summaries_are_the_block_means_of_the_dropped_tokens_weighted_by_count():
    from efficient_sam2.modeling.memory_attention import _append_summaries

    grid, C = 4, 3  # frames of 16 tokens, blocks of 2 x 2 cells: 4 summaries per frame
    memory = torch.randn(1, 2 * 16 + 2, C)  # two spatial frames and two pointer tokens
    memory_keys = memory + 1.0
    keep = torch.tensor([list(range(16)) + [16, 21, 32, 33]])  # frame 0 whole; frame 1: cells 0 and 5; pointers
    keys, values, grid_idx = memory_keys.gather(1, keep[..., None].expand(-1, -1, C)), memory[:, keep[0]], keep % 16
    k, v, g, bias = _append_summaries(memory_keys, memory, keep, keys, values, grid_idx, 32, grid, 2)
    assert k.shape == (1, 20 + 8, C) and torch.equal(k[:, :20], keys) and torch.equal(v[:, :20], values)
    assert torch.equal(g[0, 20:], torch.full((8,), -1)) and torch.equal(bias[0, :20], torch.zeros(20))
    assert torch.isinf(bias[0, 20:24]).all()  # frame 0 is read whole: nothing to summarise
    # frame 1, block 0 holds cells 0, 1, 4, 5 (tokens 16, 17, 20, 21): 16 and 21 kept, 17 and 20 summarised
    blocks = [[17, 20], [18, 19, 22, 23], [24, 25, 28, 29], [26, 27, 30, 31]]
    for j, members in enumerate(blocks):
        assert torch.allclose(v[0, 24 + j], memory[0, members].mean(0), atol=1e-6)
        assert torch.allclose(k[0, 24 + j], memory_keys[0, members].mean(0), atol=1e-6)
        assert bias[0, 24 + j].item() == pytest.approx(np.log(len(members)))


def test_a_count_weighted_key_attends_like_that_many_copies_of_it():
    from efficient_sam2.modeling.memory_attention import RotaryAttention

    torch.manual_seed(0)
    attn = RotaryAttention(16, 2, kv_in_dim=8).eval()
    q, k = torch.randn(1, 5, 16), torch.randn(1, 2, 8)
    copies = torch.cat((k[:, :1], k[:, 1:].expand(-1, 3, -1)), 1)
    with torch.no_grad():
        weighted = attn(q, k, k, torch.arange(5), torch.full((2,), -1), 4,
                        key_bias=torch.tensor([[0.0, float(np.log(3))]]))[0]
        expected = attn(q, copies, copies, torch.arange(5), torch.full((4,), -1), 4)[0]
    assert torch.allclose(weighted, expected, atol=1e-5)


def test_memory_summaries_on_a_tracked_video_add_their_tokens_to_the_kept_memory():
    base = _tracked_stats(EfficientConfig.paper(), 20261211, "standard", 10)
    summary = _tracked_stats(EfficientConfig.paper(memory_summary=4), 20261211, "standard", 10)
    assert summary.kept_memory.keys() == base.kept_memory.keys()
    first = min(t for t, v in base.kept_memory.items() if v < 1.0)
    assert all(summary.kept_memory[t] == base.kept_memory[t] for t in base.kept_memory if t < first)
    assert all(base.kept_memory[t] < summary.kept_memory[t] < 1.0 for t in base.kept_memory if t >= first)
    with pytest.raises(ValueError, match="memory_summary"):
        EfficientConfig(memory_summary=0)
    assert EfficientConfig.paper().memory_summary is None and EfficientConfig().memory_summary is None


def test_per_object_guards_read_every_memory_token_only_for_the_objects_that_changed():
    """guard_per_object: on the frame after a trip only the tripped objects read every memory token; the others keep
    their sparse memory (kept memory between the two). Until the first such frame both runs are the same."""
    config = EfficientConfig.paper(guard=0.2, guard_memory_only=True)
    whole = _tracked_stats(config, 20261212, "distractors", 12)
    split = _tracked_stats(config.replace(guard_per_object=True), 20261212, "distractors", 12)
    first = min(t for t in whole.guarded_frames if t >= 4)  # the memory bank holds pruned frames from frame 4 on
    assert all(split.kept_memory[t] == whole.kept_memory[t] for t in whole.kept_memory if t < first)
    assert whole.kept_memory[first] == 1.0 and split.kept_memory[first] <= 1.0
    tripped = [t for t in split.guarded_frames if t >= 4 and t in split.kept_memory]
    assert any(split.kept_memory[t] < 1.0 for t in tripped), "on some trip only one of the two objects changed"
    assert all(split.kept_memory[t] >= 0.5 for t in tripped)  # two objects: at least one reads every token
    assert not EfficientConfig.paper().guard_per_object


def test_summary_count_by_hand():
    from efficient_sam2.efficient.memory_retrieval import summary_count

    # a 4 x 4 frame in 2 x 2 blocks; keeping all of block 0 (cells 0, 1, 4, 5) and cell 2 leaves 3 blocks with a
    # dropped token; keeping everything leaves none; two rows average
    assert summary_count(torch.tensor([[0, 1, 4, 5, 2]]), 4, 2) == 3.0
    assert summary_count(torch.arange(16)[None], 4, 2) == 0.0
    assert summary_count(torch.stack([torch.tensor([0, 1, 4, 5]), torch.tensor([0, 2, 8, 10])]), 4, 2) == 3.5
    assert summary_count(torch.tensor([[0]]), 4, 8) == 1.0  # one block larger than the frame
