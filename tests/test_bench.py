"""The speed benchmark: FLOP model, report arithmetic, the engine and the `bench` command.

Nothing here asserts that anything is faster: timings on a shared machine are noise. What is checked is the
bookkeeping: the FLOP model against hand-computed counts and torch's FlopCounterMode, the ratios against made-up
numbers, the sparsity and work the benchmark reports against what was asked for, and the command's outputs and
error messages.
"""

from __future__ import annotations

import json
import math
import re
import statistics

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from efficient_sam2 import build_sam2
from efficient_sam2.bench import (
    BenchError,
    BenchmarkResult,
    BenchmarkSettings,
    ConfigResult,
    markdown_report,
    plot_speedups,
    random_weights_,
    reference_available,
    run_benchmark,
    summarize,
    synthetic_video,
)
from efficient_sam2.bench.flops import (
    hiera_flops,
    hiera_routed_span,
    image_encoder_flops,
    kept_window_tokens,
    mask_decoder_flops,
    memory_attention_flops,
    memory_encoder_flops,
    prompt_encoder_flops,
)
from efficient_sam2.bench.speed import CallRecorder, TimedModule
from efficient_sam2.cli import main
from efficient_sam2.configs import HieraConfig
from efficient_sam2.efficient.shortcut import BottleneckShortcut, build_shortcut
from efficient_sam2.modeling.hiera import Hiera, WindowPlan
from efficient_sam2.modeling.memory_attention import MemoryPlan


pytestmark = pytest.mark.usefixtures("one_thread")


def _counted(fn) -> int:
    """FLOPs torch counts for fn(); the math attention backend makes SDPA visible to the counter on CPU."""
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


# ----------------------------------------------------------------------------------------------------------------
# FLOP model
# ----------------------------------------------------------------------------------------------------------------

# A miniature Hiera: blocks 0 | 1 | 2 3 4 5 | 6, widths 8 / 16 / 32 / 64, global blocks 4 and 5, 96 px input
# (a 24 x 24 patch grid). The routed span is block 3 (windowed) and block 4 (an intermediate global block); block 5
# is the dense global block that reassembles the map. Stage 2 runs on a 6 x 6 grid cut into 4 x 4 windows, padded
# to 8 x 8: windows 0 (rows/cols 0-3, 16 real tokens), 1, 2 and 3 (rows/cols 4-5 only, 4 real tokens).
MINI = HieraConfig(embed_dim=8, num_heads=1, stages=(1, 1, 4, 1), global_att_blocks=(4, 5),
                   window_pos_embed_bkg_spatial_size=(2, 2), window_spec=(4, 2, 4, 2))
PATCH = 2 * 24 * 24 * 8 * 3 * 49  # 7x7 stride-4 conv, 3 -> 8 channels, 24 x 24 outputs
BLOCK0 = 2 * 576 * 8 * 24 + 4 * 36 * 16 * 16 * 8 + 2 * 576 * 8 * 8 + 2 * (2 * 576 * 8 * 32)  # 36 windows of 4x4
BLOCK1 = (2 * 576 * 8 * 16  # residual projection, then pooled
          + 2 * 576 * 8 * 48 + 4 * 36 * 4 * 16 * 16  # qkv; 4 pooled queries x 16 keys per window
          + 2 * 144 * 16 * 16 + 2 * (2 * 144 * 16 * 64))  # proj and MLP on the 12 x 12 output
BLOCK2 = (2 * 144 * 16 * 32 + 2 * 144 * 16 * 96 + 4 * 36 * 1 * 4 * 32  # 36 windows of 2x2, 1 pooled query
          + 2 * 36 * 32 * 32 + 2 * (2 * 36 * 32 * 128))
BLOCK3 = 2 * 64 * 32 * 96 + 4 * 4 * 16 * 16 * 32 + 2 * 64 * 32 * 32 + 2 * (2 * 36 * 32 * 128)  # 64 padded tokens
GLOBAL = 2 * 36 * 32 * 96 + 4 * 36 * 36 * 32 + 2 * 36 * 32 * 32 + 2 * (2 * 36 * 32 * 128)
BLOCK6 = (2 * 36 * 32 * 64 + 2 * 64 * 32 * 192 + 4 * 4 * 4 * 16 * 64  # padded windows, 4 pooled queries each
          + 2 * 16 * 64 * 64 + 2 * (2 * 9 * 64 * 256))  # proj on 4 x 4 pooled padded queries, MLP on 3 x 3


def test_flop_model_matches_hand_counts_of_a_miniature_hiera():
    assert hiera_routed_span(MINI) == (3, 5)
    dense = hiera_flops(MINI, 96)
    assert dense["total"] == PATCH + BLOCK0 + BLOCK1 + BLOCK2 + BLOCK3 + 2 * GLOBAL + BLOCK6 == 10_273_792
    # keep window 3 only: 16 padded tokens through block 3's attention and its 4 real tokens through block 3's MLP
    # and all of block 4, and the bottleneck shortcut (32 -> 16 -> 32) on the 3 background windows' 48 tokens
    routed3 = (2 * 16 * 32 * 96 + 4 * 16 * 16 * 32 + 2 * 16 * 32 * 32 + 2 * (2 * 4 * 32 * 128)
               + 2 * 4 * 32 * 96 + 4 * 4 * 4 * 32 + 2 * 4 * 32 * 32 + 2 * (2 * 4 * 32 * 128)
               + 2 * (2 * 48 * 32 * 16))
    got = hiera_flops(MINI, 96, keep=[3], shortcut="bottleneck")
    assert got["total"] == PATCH + BLOCK0 + BLOCK1 + BLOCK2 + routed3 + GLOBAL + BLOCK6 == 8_406_016
    assert kept_window_tokens([3], 6, 6, 4) == 4 and kept_window_tokens([0], 6, 6, 4) == 16
    assert kept_window_tokens([0, 1, 2, 3], 6, 6, 4) == 36
    assert hiera_flops(MINI, 96, keep=[3], shortcut="identity")["total"] == got["total"] - 2 * (2 * 48 * 32 * 16)


@pytest.mark.parametrize("keep", [None, [3], [0], [0, 3], []])
def test_flop_model_matches_flop_counter_on_the_miniature_hiera(keep):
    torch.manual_seed(0)
    trunk = Hiera(MINI).eval()
    x = torch.randn(1, 3, 96, 96)
    plan = None if keep is None else WindowPlan(torch.tensor(keep, dtype=torch.long), BottleneckShortcut(32))
    assert _counted(lambda: trunk(x, window_plan=plan)) == hiera_flops(MINI, 96, keep=keep)["total"]


def test_memory_attention_flops_by_hand():
    # 4 queries of width 8, 10 keys of width 4, feed-forward 16, one layer
    self_attn = 4 * (2 * 4 * 8 * 8) + 4 * 4 * 4 * 8
    cross_qo = 2 * (2 * 4 * 8 * 8)
    ffn = 2 * (2 * 4 * 8 * 16)
    dense = self_attn + cross_qo + 2 * (2 * 10 * 4 * 8) + 4 * 4 * 10 * 8 + ffn
    assert memory_attention_flops(1, 4, [10], d_model=8, kv_dim=4, dim_feedforward=16) == dense == 8192
    # saliency of 6 keys: one explicit q.k^T
    assert memory_attention_flops(1, 4, [10], saliency_per_layer=[6], d_model=8, kv_dim=4,
                                  dim_feedforward=16) == dense + 2 * 4 * 6 * 8
    # MemPool: 12 tokens projected, 3 keys attended after pooling; batch 2 doubles everything
    pooled = self_attn + cross_qo + 2 * (2 * 12 * 4 * 8) + 4 * 4 * 3 * 8 + ffn
    assert memory_attention_flops(2, 4, [3], projected_per_layer=[12], d_model=8, kv_dim=4,
                                  dim_feedforward=16) == 2 * pooled


def test_prompt_and_memory_encoder_flops_by_hand():
    # one click plus the padding point, Fourier features (2 -> 128) for batch 3
    assert prompt_encoder_flops(3, 1, boxes=False, mask=False, embed_size=8) == 2 * 3 * 2 * 2 * 128
    # 64 px masks: convs to 32, 16, 8, 4 px (1 -> 4 -> 16 -> 64 -> 256 channels, 3x3), then 1x1s on 4 x 4
    e = 4
    expected = (2 * 32 * 32 * 4 * 1 * 9 + 2 * 16 * 16 * 16 * 4 * 9 + 2 * 8 * 8 * 64 * 16 * 9
                + 2 * e * e * 256 * 64 * 9 + 2 * e * e * 256 * 256 + 2 * e * e * 256 * 256
                + 2 * (2 * e * e * 256 * 49 + 2 * (2 * e * e * 256 * 1024)) + 2 * e * e * 256 * 64)
    assert memory_encoder_flops(1, 64) == expected


@pytest.fixture(scope="module")
def tiny128():
    model = build_sam2("tiny", weights="random", image_size=128).eval()
    random_weights_(model, 0)
    return model


def test_flop_model_matches_flop_counter_on_real_modules(tiny128):
    m = tiny128
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 128, 128, generator=g)
    assert _counted(lambda: m.image_encoder(x)) == image_encoder_flops(m.cfg)

    B, L, M, ptr = 2, 64, 7 * 64 + 12, 12
    curr, pos = torch.randn(B, L, 256, generator=g), torch.randn(B, L, 256, generator=g)
    mem, mpos = torch.randn(B, M, 64, generator=g), torch.randn(B, M, 64, generator=g)
    keep = [torch.cat([torch.arange(0, 64), torch.arange(100, 103 + layer), torch.arange(6 * 64, M)])
            for layer in range(4)]
    cases = [
        (None, memory_attention_flops(B, L, [M] * 4)),
        (MemoryPlan(keep=keep), memory_attention_flops(B, L, [k.numel() for k in keep])),
        (MemoryPlan(keep=keep, saliency_span=(6 * 64, 7 * 64)),
         memory_attention_flops(B, L, [k.numel() for k in keep], saliency_per_layer=[64] * 4)),
        (MemoryPlan(pool=2), memory_attention_flops(B, L, [7 * 16 + ptr] * 4, projected_per_layer=[M] * 4)),
    ]
    for plan, expected in cases:
        got = _counted(lambda: m.memory_attention(curr, pos, mem, mpos, ptr, memory_plan=plan))
        assert abs(got - expected) <= 0.01 * expected, (plan, got, expected)

    image = torch.randn(B, 256, 8, 8, generator=g)
    high_res = [torch.randn(B, 32, 32, 32, generator=g), torch.randn(B, 64, 16, 16, generator=g)]
    coords, labels = torch.zeros(B, 1, 2), -torch.ones(B, 1, dtype=torch.int32)
    sparse, dense = m.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    pe = m.sam_prompt_encoder.get_dense_pe()
    got = _counted(lambda: m.sam_mask_decoder(image_embeddings=image, image_pe=pe, sparse_prompt_embeddings=sparse,
                                              dense_prompt_embeddings=dense, multimask_output=True,
                                              repeat_image=False, high_res_features=high_res))
    expected = mask_decoder_flops(B, sparse.shape[1], 8)
    assert abs(got - expected) <= 0.01 * expected
    got = _counted(lambda: m.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=torch.zeros(B, 1, 32, 32)))
    assert got == prompt_encoder_flops(B, 1, boxes=False, mask=True, embed_size=8)
    masks = torch.randn(B, 1, 128, 128, generator=g)
    assert _counted(lambda: m.memory_encoder(image, masks, skip_mask_sigmoid=True)) == memory_encoder_flops(B, 128)


def test_routed_image_encoder_flops_match_flop_counter():
    m = build_sam2("tiny", weights="random", image_size=256).eval()  # a 16 x 16 stride-16 map: 2 x 2 windows of 14, padded
    x = torch.randn(1, 3, 256, 256)
    shortcut = build_shortcut("bottleneck", m.image_encoder.trunk.routed_dim)
    for keep in ([1], [0, 3]):
        plan = WindowPlan(torch.tensor(keep), shortcut)
        assert _counted(lambda: m.image_encoder(x, window_plan=plan)) == \
            image_encoder_flops(m.cfg, keep=keep, shortcut="bottleneck")


# ----------------------------------------------------------------------------------------------------------------
# Report arithmetic
# ----------------------------------------------------------------------------------------------------------------


def test_summarize_with_made_up_numbers():
    samples = {
        "dense": {"image_encoder": [10.0, 12.0, 11.0], "end_to_end": [30.0, 34.0, 31.0, 33.0]},
        "swr": {"image_encoder": [5.0, 7.0, 6.0], "end_to_end": [20.0, 21.0, 22.0]},
        "broken": {"image_encoder": [], "end_to_end": [0.0]},
    }
    flops = {"dense": {"image_encoder": 100.0, "end_to_end": 300.0},
             "swr": {"image_encoder": 40.0, "end_to_end": 240.0},
             "broken": {"image_encoder": 0.0, "end_to_end": 300.0}}
    s = summarize(samples, flops, buckets=("image_encoder", "end_to_end"))
    assert s["dense"]["median_ms"] == {"image_encoder": 11.0, "end_to_end": 32.0}  # even count: mean of middle
    assert s["dense"]["ratio_to_dense"] == {"image_encoder": 1.0, "end_to_end": 1.0}
    swr = s["swr"]
    assert swr["median_ms"]["image_encoder"] == 6.0
    assert swr["ratio_to_dense"]["image_encoder"] == pytest.approx(11 / 6)
    assert swr["ratio_to_dense"]["end_to_end"] == pytest.approx(32 / 21)
    assert swr["ideal_ratio"]["image_encoder"] == pytest.approx(2.5)
    assert swr["ideal_ratio"]["end_to_end"] == pytest.approx(1.25)
    assert swr["fraction_of_ideal"]["image_encoder"] == pytest.approx((11 / 6) / 2.5)
    assert swr["gflops_per_frame"]["image_encoder"] == pytest.approx(40e-9)
    assert swr["quartiles_ms"]["image_encoder"] == pytest.approx([5.5, 6.5])
    assert s["dense"]["quartiles_ms"]["end_to_end"] == pytest.approx([30.75, 33.25])
    broken = s["broken"]
    assert broken["median_ms"]["image_encoder"] is None and broken["ratio_to_dense"]["image_encoder"] is None
    assert broken["ideal_ratio"]["image_encoder"] is None  # zero FLOPs: no ratio rather than a division error
    assert broken["ratio_to_dense"]["end_to_end"] is None  # zero time
    with pytest.raises(ValueError, match="baseline"):
        summarize({"swr": samples["swr"]}, flops)


def _fake_result(configs=("dense", "swr", "efficient")) -> BenchmarkResult:
    rng = np.random.default_rng(0)
    results = {}
    for i, name in enumerate(configs):
        c = ConfigResult(name, f"config {name}", None)
        for b in ("image_encoder", "memory_attention", "mask_decoder", "memory_encoder", "other", "end_to_end"):
            c.samples_ms[b] = list(10.0 / (1 + 0.3 * i) + rng.random(5))
        c.flops = {b: 1e9 / (1 + 0.4 * i) for b in c.samples_ms}
        c.sparsity = {"mean_kept_window_fraction": 1.0 - 0.4 * i, "mean_kept_memory_fraction": 1.0 - 0.3 * i}
        results[name] = c
    settings = {"model": "sam2.1_hiera_tiny", "weights": "random (seed 0)", "image_size": 128, "dtype": "fp32",
                "video_description": "synthetic", "frames": 12, "repeats": 1, "warmup": 0, "kept_windows": 0.2}
    env = {"device": "cpu", "cpu": "test cpu", "threads": 1, "torch": torch.__version__}
    return BenchmarkResult(settings, env, results, [7, 8, 9, 10, 11], command="efficient-sam2 bench --model tiny")


def test_markdown_and_plots_from_made_up_results():
    result = _fake_result()
    md = markdown_report(result)
    summary = result.summary()
    for name in ("dense", "swr", "efficient"):
        assert f"| {name} |" in md
    r = summary["efficient"]["ratio_to_dense"]["image_encoder"]
    ideal = summary["efficient"]["ideal_ratio"]["image_encoder"]
    assert f"{r:.2f}x ({ideal:.2f}x, {100 * r / ideal:.0f}%)" in md
    assert "20.0%" in md  # efficient's kept-window fraction (1 - 0.8)
    for backend in ("pil", "matplotlib"):
        if backend == "matplotlib":
            pytest.importorskip("matplotlib")
        png = plot_speedups(result, backend=backend)
        import io

        img = Image.open(io.BytesIO(png))
        assert img.format == "PNG" and img.size[0] > 500


# ----------------------------------------------------------------------------------------------------------------
# Engine pieces
# ----------------------------------------------------------------------------------------------------------------


def test_timed_module_is_transparent_and_records_only_when_active():
    inner = torch.nn.Linear(4, 3)
    rec = CallRecorder(torch.device("cpu"))
    wrapped = TimedModule(inner, "image_encoder", "image_encoder", rec, lambda m, a, k: {"batch": a[0].shape[0]})
    x = torch.randn(5, 4)
    assert torch.equal(wrapped(x), inner(x))
    assert rec.calls == []  # inactive: nothing recorded
    rec.start()
    wrapped(x)
    calls = rec.stop()
    assert len(calls) == 1 and calls[0].work == {"batch": 5} and calls[0].seconds >= 0
    # attributes of the wrapped module stay reachable through the wrapper
    assert wrapped.weight is inner.weight and wrapped.in_features == 4 and wrapped.inner is inner


def test_random_weights_are_seeded():
    from efficient_sam2.modeling.mask_decoder import MaskDecoder

    a, b = MaskDecoder(pred_obj_scores=True, pred_obj_scores_mlp=True), MaskDecoder(pred_obj_scores=True,
                                                                                    pred_obj_scores_mlp=True)
    random_weights_(a, 3)
    random_weights_(b, 3)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.all(sa["pred_obj_score_head.layers.2.bias"] == 4.0)  # objects predicted present
    norm = sa["output_upscaling.1.weight"]  # a LayerNorm2d scale: around 1
    assert 0.5 < norm.mean() < 1.5 and norm.std() > 0
    random_weights_(b, 4)
    assert not torch.equal(sa["iou_token.weight"], b.state_dict()["iou_token.weight"])


def test_synthetic_video_moves_its_objects():
    frames, masks = synthetic_video(4, 72, 128, num_objects=3, seed=1)
    assert len(frames) == 4 and frames[0].shape == (72, 128, 3) and frames[0].dtype == np.uint8
    assert sorted(masks) == [1, 2, 3] and all(m.any() for m in masks.values())
    assert not np.array_equal(frames[0], frames[3])
    again, _ = synthetic_video(4, 72, 128, num_objects=3, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(frames, again))


# ----------------------------------------------------------------------------------------------------------------
# Whole runs
# ----------------------------------------------------------------------------------------------------------------


def test_kept_window_fraction_is_the_one_asked_for():
    """tiny at 256 px: the routed map is 16 x 16 in 2 x 2 windows; kept_windows=0.5 must keep 2 of 4."""
    settings = BenchmarkSettings(model="tiny", image_size=256, frames=9, objects=2, configs=("swr",),
                                 kept_windows=0.5, warmup=0, repeats=1, threads=1)
    result = run_benchmark(settings, progress=False)
    assert list(result.configs) == ["dense", "swr"] and result.timed_frames == [7, 8]
    swr, dense = result.configs["swr"], result.configs["dense"]
    assert swr.sparsity["mean_kept_window_fraction"] == 0.5
    assert swr.work["windows_computed"] == 2 and swr.work["windows_total"] == 4
    assert dense.work["computed_window_fraction"] == 1.0
    cfg = build_sam2("tiny", weights="random", image_size=256).cfg
    assert dense.flops["image_encoder"] == image_encoder_flops(cfg)
    # routed frames compute 2 of 4 windows: between the cheapest and the dearest pair of windows
    pairs = [image_encoder_flops(cfg, keep=[i, j]) for i in range(4) for j in range(i + 1, 4)]
    assert min(pairs) <= swr.flops["image_encoder"] <= max(pairs)
    # both objects in one batch, 7 memory frames of 256 tokens plus 4 tokens per object pointer (t pointers on
    # frame t: the prompted frame's and those of frames 1 .. t-1)
    expected = statistics.fmean(memory_attention_flops(2, 256, [7 * 256 + 4 * t] * 4) for t in (7, 8))
    assert dense.flops["memory_attention"] == pytest.approx(expected)
    assert swr.flops["memory_attention"] == pytest.approx(expected)
    assert all(len(v) == 2 for v in swr.samples_ms.values())


def test_bench_command_writes_json_markdown_and_plot(tmp_path, capsys):
    configs = "dense,paper" + (",reference" if reference_available() else "")
    out = tmp_path / "out"
    code = main(["bench", "--model", "tiny", "--image-size", "128", "--frames", "9", "--objects", "2",
                 "--configs", configs, "--warmup", "0", "--repeats", "1", "--threads", "1", "--no-progress",
                 "--kept-windows", "0.2", "--json", str(out / "r.json"), "--markdown", str(out / "r.md"),
                 "--plot", str(out / "r.png")])
    assert code == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "r.json").read_text())
    md = (out / "r.md").read_text()
    assert md in printed
    assert Image.open(out / "r.png").format == "PNG"
    names = configs.split(",")
    assert list(doc["configs"]) == names and doc["timed_frames"] == [7, 8] and doc["samples_per_config"] == 2
    assert doc["command"].startswith("efficient-sam2 bench --model tiny")
    for name in names:
        c = doc["configs"][name]
        assert f"| {name} |" in md
        samples = c["samples_ms"]
        assert all(len(v) == 2 for v in samples.values())
        assert c["median_ms"]["end_to_end"] == pytest.approx(statistics.median(samples["end_to_end"]), abs=1e-3)
        parts = sum(samples[b][0] for b in ("image_encoder", "memory_attention", "mask_decoder", "memory_encoder",
                                            "other"))
        assert parts == pytest.approx(samples["end_to_end"][0], abs=1e-2)
        dense_med = doc["configs"]["dense"]["median_ms"]["memory_attention"]
        assert c["ratio_to_dense"]["memory_attention"] == pytest.approx(
            dense_med / c["median_ms"]["memory_attention"], rel=1e-3)
    eff = doc["configs"]["paper"]
    # the paper's SMR on timed frames t = 7, 8: the conditioning frame, t-1 and the t pointers (4 tokens each) are read
    # densely, the 5 older frames through floor(0.05 * 64) = 3 of their 64 tokens each
    kept = statistics.fmean((2 * 64 + 5 * 3 + 4 * t) / (7 * 64 + 4 * t) for t in (7, 8))
    assert eff["sparsity"]["mean_kept_memory_fraction"] == pytest.approx(kept, abs=1e-4)
    assert eff["sparsity"]["mean_kept_memory_fraction"] == pytest.approx(eff["work"]["computed_memory_fraction"],
                                                                         abs=1e-3)
    assert eff["work"]["memory_keys_read"] < doc["configs"]["dense"]["work"]["memory_keys_read"]
    assert eff["ideal_ratio"]["memory_attention"] > 1.0
    # the router needs the decoder's token -> image attention maps: a little more decoder work than dense
    assert 0.99 < eff["ideal_ratio"]["mask_decoder"] < 1.0
    if "reference" in names:  # the same work as our dense path, counted from the reference's own calls
        ref, dense = doc["configs"]["reference"], doc["configs"]["dense"]
        assert ref["gflops_per_frame"] == pytest.approx(dense["gflops_per_frame"], rel=1e-9)
        assert "speed of the reference package" in md


def test_real_video_with_first_frame_mask(tmp_path):
    from efficient_sam2.io.masks import write_palette_mask

    frames, masks = synthetic_video(9, 72, 128, num_objects=2, seed=2)
    video = tmp_path / "clip"
    video.mkdir()
    for i, rgb in enumerate(frames):
        Image.fromarray(rgb).save(video / f"frame_{i}.jpg", quality=95)  # not integer names: still fine
    ids = np.zeros((72, 128), np.uint8)
    ids[masks[1]] = 3
    ids[masks[2]] = 7
    write_palette_mask(tmp_path / "first.png", ids)
    settings = BenchmarkSettings(model="tiny", image_size=128, frames=20, objects=1, configs=("smr",),
                                 video=str(video), mask=str(tmp_path / "first.png"), warmup=0, repeats=1, threads=1)
    result = run_benchmark(settings, progress=False)
    # 9 frames available although 20 were asked for; only the first id (3) is tracked
    assert result.settings["frames"] == 9 and result.settings["objects"] == 1 and result.timed_frames == [7, 8]
    assert "clip" in result.settings["video_description"]
    for c in result.configs.values():
        assert all(len(v) == 2 for v in c.samples_ms.values())
    assert result.configs["smr"].sparsity["mean_kept_memory_fraction"] < 1.0

    (tmp_path / "blank.png").write_bytes(b"")
    write_palette_mask(tmp_path / "empty.png", np.zeros((72, 128), np.uint8))
    write_palette_mask(tmp_path / "small.png", np.ones((36, 64), np.uint8))
    for mask, message in (("empty.png", "has no object"), ("small.png", "64x36 (WxH) but the video's frames are "
                                                                      "128x72"), ("blank.png", "cannot decode")):
        bad = BenchmarkSettings(model="tiny", image_size=128, frames=9, video=str(video), mask=str(tmp_path / mask))
        with pytest.raises(BenchError, match=re.escape(message)):
            run_benchmark(bad, progress=False)


@pytest.mark.parametrize("argv, message", [
    (["--configs", "dense,turbo"], "unknown configuration 'turbo'"),
    (["--kept-windows", "1.5"], "--kept-windows must be in (0, 1]"),
    (["--kept-windows", "0"], "--kept-windows must be in (0, 1]"),
    (["--video", "VIDEO"], "--video and --mask go together"),
    (["--mask", "MASK"], "--video and --mask go together"),
    (["--frames", "5"], "--frames must be at least 8"),
    (["--image-size", "100"], "multiple of 32"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--sparsity", "1.5"], "sparsity must be in [0, 1)"),
    (["--json", "NOTADIR/x.json"], "cannot write --json"),
    (["--json", "DIR"], "is a folder"),
    (["--json", "EXISTING"], "already exists; pass --overwrite"),
    (["--plot", "DIR/x.jpg"], "must end with .png"),
    (["--json", "DIR/a.json", "--markdown", "DIR/a.json"], "name the same file"),
    (["--model", "giant"], "unknown model name"),
])
def test_bad_inputs_give_clear_errors(tmp_path, capsys, argv, message):
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "existing.json").write_text("{}")
    video = tmp_path / "video"
    video.mkdir()
    subst = {"NOTADIR": str(tmp_path / "file.txt"), "DIR": str(tmp_path), "EXISTING": str(tmp_path / "existing.json"),
             "VIDEO": str(video), "MASK": str(tmp_path / "file.txt")}
    argv = [subst.get(a, a) for a in argv]
    argv = [next((a.replace(k, v) for k, v in subst.items() if a.startswith(k + "/")), a) for a in argv]
    base = ["bench", "--model", "tiny", "--image-size", "128", "--no-progress"]
    if "--model" in argv:
        base = base[:1] + base[3:]
    code = main(base + argv)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert (tmp_path / "existing.json").read_text() == "{}"  # never overwritten


def test_settings_validation_in_python():
    with pytest.raises(BenchError, match="use either --kept-windows"):
        BenchmarkSettings(video="x", mask="y", kept_windows=0.2).validate()
    s = BenchmarkSettings(configs=("smr", "efficient", "smr")).validate()
    assert s.configs == ("dense", "smr", "efficient")  # dense added first, duplicates dropped
    assert s.efficient_config("smr").swr is False and s.efficient_config("dense") is None
    s = BenchmarkSettings(configs=("swr",), kept_windows=0.3, sparsity=0.9).validate()
    eff = s.efficient_config("swr")
    assert eff.kept_windows == 0.3 and eff.sparsity == 0.9 and eff.smr is False
    if not reference_available():
        with pytest.raises(BenchError, match="reference package"):
            BenchmarkSettings(configs=("reference",)).validate()
    assert math.isclose(BenchmarkSettings().validate().frames, 12)
