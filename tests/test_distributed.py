"""Scale-out of `efficient-sam2 vos` over processes: deterministic sharding, and a real two-process CPU run (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from efficient_sam2 import build_sam2_video_predictor
from efficient_sam2.inference.distributed import init_distributed, resolve_device, shard
from efficient_sam2.io.masks import write_palette_mask
from reference_oracle import randomize_

H, W = 32, 40


def test_shard_is_deterministic_disjoint_and_complete():
    items = [f"v{i:02d}" for i in range(11)]
    parts = [shard(items, r, 3) for r in range(3)]
    assert parts[0] == ["v00", "v03", "v06", "v09"] and parts[2] == ["v02", "v05", "v08"]
    assert sorted(sum(parts, [])) == items
    assert shard(items, 0, 1) == items
    with pytest.raises(ValueError):
        shard(items, 3, 3)


def test_single_process_context(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx = init_distributed()
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert ctx.all_gather({"x": 1}) == [{"x": 1}]
    ctx.barrier()
    assert resolve_device("cpu", 1, 2) == "cpu"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        init_distributed()


def _dataset(root, videos):
    yy, xx = np.mgrid[:H, :W]
    for i, v in enumerate(videos):
        (root / "frames" / v).mkdir(parents=True)
        base = np.random.default_rng(i).integers(0, 60, (H, W, 3)).astype(np.uint8)
        for t in range(3):
            img = base.copy()
            img[(yy - 16) ** 2 + (xx - (12 + 3 * t)) ** 2 < 7**2] = (230, 40, 40)
            Image.fromarray(img).save(root / "frames" / v / f"{t:05d}.jpg")
        ids = ((yy - 16) ** 2 + (xx - 12) ** 2 < 7**2).astype(np.uint8)
        write_palette_mask(root / "masks" / v / "00000.png", ids)


def test_torchrun_two_cpu_processes_share_the_videos(tmp_path):
    videos = ["a", "b", "c", "d"]
    _dataset(tmp_path, videos)
    (tmp_path / "frames" / "e_broken").mkdir()  # no frames, no mask: fails on the rank that gets it
    m = build_sam2_video_predictor("tiny", weights="random", image_size=128)
    randomize_(m.model, 0)
    ckpt = tmp_path / "tiny.pt"
    torch.save({"model": m.model.state_dict()}, ckpt)
    del m
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "efficient_sam2", "vos", "--layout", "davis", "--video-dir", str(tmp_path / "frames"),
           "--mask-dir", str(tmp_path / "masks"), "--output-dir", str(out), "--model", "tiny",
           "--checkpoint", str(ckpt), "--image-size", "128", "--dense", "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    # one broken video -> non-zero exit on every rank, after everything else was done
    assert r.returncode != 0, r.stdout + r.stderr

    logs = {}
    for rank in (0, 1):
        records = [json.loads(line) for line in open(out / ".logs" / f"vos-rank{rank:03d}.jsonl")]
        assert records[0]["event"] == "start" and records[0]["world_size"] == 2
        assert records[-1]["event"] == "end"
        logs[rank] = {rec["video"]: rec["status"] for rec in records if rec["event"] == "video"}
    # sorted videos a, b, c, d, e_broken: video i goes to rank i % 2
    assert logs[0] == {"a": "done", "c": "done", "e_broken": "failed"}
    assert logs[1] == {"b": "done", "d": "done"}
    for v in videos:
        assert sorted(os.listdir(out / v)) == ["00000.png", "00001.png", "00002.png"]
    summary = json.loads((out / ".logs" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["done"] == videos
    assert list(summary["failed"]) == ["e_broken"]
    assert r.stdout.count("VOS summary (2 processes)") == 1  # printed by rank 0 only
    assert "4 done, 0 skipped (already complete), 1 failed" in r.stdout
