"""The opencv-doc clips: conversion to JPEG folders (plain and gzipped sources, first frame, frame limit), the
manifest, the prompt files copied beside them, and the prompt files of the repository's docs/clips."""

import gzip
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from efficient_sam2.data.clips import CLIPS, Clip, ClipError, convert_clip, fetch_clips, find_source, main
from efficient_sam2.io.prompts import load_prompts

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "clips")


def _video(path, frames, size=(48, 64)):
    """An MJPG .avi whose frame i is flat grey level 20 * i."""
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((h, w, 3), 20 * i, np.uint8))
    writer.release()


@pytest.fixture
def doc_dir(tmp_path):
    root = tmp_path / "opencv-doc"
    (root / "examples" / "data").mkdir(parents=True)
    (root / "html").mkdir()
    _video(root / "examples" / "data" / "a.avi", 10)
    _video(tmp_path / "b.avi", 8)
    with open(tmp_path / "b.avi", "rb") as f, gzip.open(root / "html" / "b.avi.gz", "wb") as g:
        shutil.copyfileobj(f, g)
    return root


FAKE = (Clip("a", "examples/data/a.avi", 2, 5, (48, 64), "plain"),
        Clip("b", "html/b.avi.gz", 0, 20, (48, 64), "gzipped, shorter than asked"))


def _levels(folder):
    names = sorted(os.listdir(folder))
    return names, [round(float(cv2.imread(os.path.join(folder, n)).mean()) / 20) for n in names]


def test_fetch_writes_the_frames_the_manifest_and_the_prompts(tmp_path, doc_dir):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "a.prompts").write_text("mask 0 a_00000.png\n")
    (prompts / "a.clicks.prompts").write_text("point 1 0 5 5\n")
    (prompts / "a_00000.png").write_bytes(b"png")
    (prompts / "ab.prompts").write_text("point 1 0 5 5\n")  # another clip's
    out = tmp_path / "clips"
    logged = []
    entries = fetch_clips(str(out), str(doc_dir), prompts_dir=str(prompts), log=logged.append, clips=FAKE)
    names, levels = _levels(out / "a")
    assert names == [f"{t:05d}.jpg" for t in range(5)] and levels == [2, 3, 4, 5, 6]  # from source frame 2
    names, levels = _levels(out / "b")
    assert len(names) == 8 and levels == list(range(8))  # the .gz, all 8 of the 20 asked for
    assert "only 8 of 20 decode" in logged[1]
    assert sorted(f for f in os.listdir(out) if not os.path.isdir(out / f)) == [
        "a.clicks.prompts", "a.prompts", "a_00000.png", "clips.json"]
    with open(out / "clips.json") as f:
        manifest = json.load(f)
    assert [c["name"] for c in manifest["clips"]] == ["a", "b"] == [e["name"] for e in entries]
    a = manifest["clips"][0]
    assert a["frames"] == 5 and a["start"] == 2 and a["size"] == [48, 64] and a["fps"] == 10.0
    assert a["prompts"] == ["a.clicks.prompts", "a.prompts"] and len(a["sha256"]) == 64
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # no temporary file left

    # a second run keeps what is there; --overwrite writes it again
    stamp = os.path.getmtime(out / "a" / "00000.jpg")
    fetch_clips(str(out), str(doc_dir), names=["a"], log=logged.append, clips=FAKE)
    assert "already in" in logged[-1] and os.path.getmtime(out / "a" / "00000.jpg") == stamp
    (out / "a" / "00004.jpg").unlink()
    fetch_clips(str(out), str(doc_dir), names=["a"], log=logged.append, clips=FAKE)
    assert len(os.listdir(out / "a")) == 5


def test_errors(tmp_path, doc_dir):
    with pytest.raises(ClipError, match="apt-get install opencv-doc"):
        find_source(Clip("z", "examples/data/z.avi", 0, 1, (1, 1), ""), str(doc_dir))
    with pytest.raises(ClipError, match="no frame decodes at or after source frame 50"):
        convert_clip(str(doc_dir / "examples" / "data" / "a.avi"), str(tmp_path / "x"), start=50)
    assert not (tmp_path / "x").exists() and not [f for f in os.listdir(tmp_path) if f.startswith(".")]
    wrong = (Clip("a", "examples/data/a.avi", 0, 3, (480, 640), ""),)
    with pytest.raises(ClipError, match=r"decodes to 64x48 \(WxH\) frames, not 640x480"):
        fetch_clips(str(tmp_path / "o"), str(doc_dir), log=lambda m: None, clips=wrong)
    with pytest.raises(ClipError, match="unknown clip 'nope'"):
        fetch_clips(str(tmp_path / "o"), str(doc_dir), names=["nope"], clips=FAKE)
    assert main(["--out", str(tmp_path / "o2"), "--doc-dir", str(tmp_path / "empty")]) == 1


def test_the_repository_prompts_fit_the_clips():
    for clip in CLIPS:
        for suffix in (".prompts", ".clicks.prompts"):
            prompts = load_prompts(os.path.join(DOCS, clip.name + suffix))
            assert prompts.frames == [0] and 1 <= len(prompts.obj_ids) <= 3, (clip.name, suffix)
            prompts.check_video(clip.frames, clip.size)  # inside the frame, masks of the clip's size
        masks = load_prompts(os.path.join(DOCS, clip.name + ".prompts"))
        clicks = load_prompts(os.path.join(DOCS, clip.name + ".clicks.prompts"))
        assert masks.obj_ids == clicks.obj_ids, clip.name
        for m in masks.prompts:  # every positive click of an object lands on its own mask
            (c,) = [p for p in clicks.prompts if p.obj_id == m.obj_id]
            assert m.mask is not None and m.mask.mean() > 0.001, (clip.name, m.obj_id)
            for (x, y), label in zip(c.points, c.labels):
                assert not label or m.mask[int(y), int(x)], (clip.name, m.obj_id, x, y)
