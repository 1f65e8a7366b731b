"""`efficient-sam2 bench --sweep`: growth of time and memory with the number of objects and the video length.

The fitting and report code is checked on made-up points; the memory probe on an allocation of known size; one
small real sweep runs two child processes end to end (about 10 s).
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from PIL import Image

from efficient_sam2.bench import BenchError, BenchmarkSettings
from efficient_sam2.bench.report import linear_fit, plot_sweep, sweep_markdown
from efficient_sam2.bench.scaling import MemoryProbe, SweepPoint, SweepResult, parse_sweep, run_sweep, \
    tensor_megabytes
from efficient_sam2.cli import main


def test_parse_sweep():
    assert parse_sweep("objects=4,1,2,2") == ("objects", [1, 2, 4])
    assert parse_sweep("frames=12, 24,") == ("frames", [12, 24])
    for text, message in (("objects", "must look like"), ("colours=1,2", "can vary objects or frames"),
                          ("objects=1,x", "'x' is not a whole number"), ("frames=0", "at least 1"),
                          ("objects=", "lists no values")):
        with pytest.raises(BenchError, match=message):
            parse_sweep(text)


def test_linear_fit_by_hand():
    # y = 3x + 2 exactly, then a noisy set whose least-squares slope is worked out by hand:
    # xs 1,2,3 (mean 2), ys 1,2,6 (mean 3): slope = ((-1)(-2) + 0 + (1)(3)) / 2 = 2.5, intercept = 3 - 5 = -2
    assert linear_fit([1, 2, 4], [5, 8, 14]) == pytest.approx((3.0, 2.0))
    assert linear_fit([1, 2, 3], [1, 2, 6]) == pytest.approx((2.5, -2.0))
    assert linear_fit([1, 1], [1, 2]) is None
    assert linear_fit([1, 2, 3], [1, None, 3]) == pytest.approx((1.0, 0.0))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the RSS high-water mark is reset through /proc")
def test_memory_probe_sees_an_allocation_of_known_size():
    import mmap

    probe = MemoryProbe("cpu")
    probe.start()
    size = 64 * 2**20
    block = mmap.mmap(-1, size)  # fresh pages (a malloc could reuse memory already resident), every page touched
    for offset in range(0, size, 4096):
        block[offset] = 1
    block.close()
    out = probe.stop()
    assert out["kind"] == "cpu_rss" and out["peak_is_tracking"]
    assert 60 <= out["growth_mb"] <= 80
    assert out["peak_mb"] >= out["start_mb"] + 60
    with pytest.raises(RuntimeError, match="before start"):
        MemoryProbe("cpu").stop()


def test_tensor_megabytes_counts_each_storage_once():
    from dataclasses import dataclass

    @dataclass
    class Holder:
        a: torch.Tensor
        more: dict

    class Plain:
        def __init__(self, t):
            self.t = t
            self.me = self  # cycles are fine

    big = torch.zeros(2**18)  # 1 MiB
    state = Holder(big, {"view": big[10:], "list": [torch.zeros(2**17), Plain(big)], "n": 3,
                         "module": torch.nn.Linear(1000, 1000)})  # modules (the model) are not state
    assert tensor_megabytes(state) == pytest.approx(1.5)


def _made_up() -> SweepResult:
    points = []
    for v in (1, 2, 4):
        points.append(SweepPoint(v, "dense", {"image_encoder": 100.0, "memory_attention": 50.0 * v,
                                              "end_to_end": 160.0 + 50.0 * v}, {}, 3, {},
                                 {"kind": "cpu_rss", "start_mb": 500.0, "peak_mb": 510.0 + 4 * v,
                                  "growth_mb": 10.0 + 4 * v, "setup_peak_mb": 600.0, "peak_is_tracking": True,
                                  "state_mb": 12.0 + 0.5 * v}))
        points.append(SweepPoint(v, "efficient", {"image_encoder": 60.0, "memory_attention": 20.0 * v,
                                                  "end_to_end": 90.0 + 20.0 * v}, {}, 3, {},
                                 {"kind": "cpu_rss", "start_mb": 500.0, "peak_mb": 511.0 + 3 * v,
                                  "growth_mb": 11.0 + 3 * v, "setup_peak_mb": 600.0, "peak_is_tracking": True,
                                  "state_mb": 12.5 + 0.5 * v}))
    points.append(SweepPoint(8, "dense", error="the benchmark process ended without a result: killed"))
    settings = {"model": "sam2.1_hiera_tiny", "image_size": 512, "dtype": "fp32", "frames": 10, "frame_cache": 16,
                "kept_windows": 0.2, "clock": "cpu", "weights": "random (seed 0)"}
    env = {"device": "cpu", "cpu": "test CPU", "threads": 1, "torch": torch.__version__}
    return SweepResult(settings, "objects", [1, 2, 4, 8], ["dense", "efficient"], points, env, "efficient-sam2 x")


def test_sweep_report_from_made_up_points():
    result = _made_up()
    md = sweep_markdown(result)
    assert "| 2 | efficient | 60.0 | 40.0 | 130.0 | 2.00x | 13.5 | 500 | 517 | 17 |" in md
    assert "| 4 | dense | 100.0 | 200.0 | 360.0 | - | 14.0 | 500 | 526 | 26 |" in md
    assert "| 8 | dense | failed: the benchmark process ended without a result: killed |" in md
    assert ("- dense: each extra object adds +50.0 ms per frame, +0.50 MiB of tracking state, +4.0 MiB of peak "
            "memory growth") in md
    assert "- efficient: each extra object adds +20.0 ms per frame, +0.50 MiB of tracking state, +3.0 MiB" in md
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["quantity"] == "objects" and len(doc["points"]) == 7 and doc["points"][-1]["error"]
    for backend in ("pil", "matplotlib"):
        if backend == "matplotlib":
            pytest.importorskip("matplotlib")
        png = plot_sweep(result, backend)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_refuses_bad_values_before_any_process_starts():
    settings = BenchmarkSettings(model="tiny", image_size=64, configs=("dense",), warmup=0, repeats=1)
    with pytest.raises(BenchError, match="--frames must be at least 8"):
        run_sweep(settings, "frames", [12, 5], progress=False)
    with pytest.raises(BenchError, match="cannot sweep"):
        run_sweep(settings, "colours", [1], progress=False)


@pytest.mark.parametrize("argv, message", [
    (["--sweep", "objects=1,2", "--objects", "3"], "leave out --objects"),
    (["--sweep", "frames=9", "--frames", "9"], "leave out --frames"),
    (["--sweep", "speed=1"], "can vary objects or frames"),
    (["--sweep", "frames=4"], "--frames must be at least 8"),
])
def test_sweep_command_errors(capsys, argv, message):
    code = main(["bench", "--model", "tiny", "--image-size", "64", "--no-progress"] + argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_sweep_runs_each_point_in_its_own_process(tmp_path, capsys):
    """Two objects counts, dense only: two child processes; their medians, FLOPs and memory come back, and the
    second object adds memory-attention work (FLOPs exactly double: the memories are batched per object)."""
    out = tmp_path / "sweep"
    code = main(["bench", "--model", "tiny", "--image-size", "64", "--frames", "8", "--configs", "dense",
                 "--warmup", "0", "--repeats", "1", "--threads", "1", "--no-progress", "--sweep", "objects=1,2",
                 "--json", str(out / "s.json"), "--markdown", str(out / "s.md"), "--plot", str(out / "s.png")])
    printed = capsys.readouterr().out
    assert code == 0
    doc = json.loads((out / "s.json").read_text())
    assert doc["schema"] == "efficient-sam2/bench-sweep/1" and doc["values"] == [1, 2]
    assert doc["command"].endswith("--sweep objects=1,2")
    one, two = doc["points"]
    for p in (one, two):
        assert p["error"] is None and p["samples"] == 1 and p["median_ms"]["end_to_end"] > 0
        mem = p["memory"]
        assert mem["start_mb"] > 100 and mem["peak_mb"] >= mem["start_mb"] and mem["growth_mb"] >= 0
        assert mem["state_mb"] > 0
    assert two["gflops_per_frame"]["memory_attention"] == pytest.approx(
        2 * one["gflops_per_frame"]["memory_attention"], rel=1e-6)
    assert two["gflops_per_frame"]["image_encoder"] == pytest.approx(one["gflops_per_frame"]["image_encoder"])
    # a second object keeps its own per-frame outputs and memories
    assert two["memory"]["state_mb"] > one["memory"]["state_mb"]
    assert (out / "s.md").read_text() in printed
    assert Image.open(out / "s.png").format == "PNG"


def test_a_failing_point_is_reported_and_the_sweep_goes_on(tmp_path, capsys):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    code = main(["bench", "--model", "tiny", "--image-size", "64", "--configs", "dense", "--warmup", "0",
                 "--repeats", "1", "--threads", "1", "--no-progress", "--sweep", "frames=8",
                 "--checkpoint", str(bad)])
    captured = capsys.readouterr()
    assert code == 1
    assert "| 8 | dense | failed:" in captured.out and "1 of 1 runs failed" in captured.err
