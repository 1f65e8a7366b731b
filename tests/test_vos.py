"""Dataset VOS inference (`efficient-sam2 vos`, `run_vos`) and its evaluation (`efficient-sam2 eval`).

A small random-weight tiny model at image size 128 runs on synthetic datasets of a few 3-frame videos in each layout.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from efficient_sam2 import EfficientConfig, build_sam2_video_predictor
from efficient_sam2.cli import main
from efficient_sam2.inference.common import logits_to_ids, merge_into
from efficient_sam2.inference.vos import run_vos
from efficient_sam2.io.datasets import VOSDataset, read_video_list
from efficient_sam2.io.masks import DAVIS_PALETTE, write_object_mask, write_palette_mask
from efficient_sam2.tracking.postprocess import non_overlap
from reference_oracle import randomize_

SIZE = 128
H, W = 40, 56


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    m = build_sam2_video_predictor("tiny", weights="random", image_size=SIZE)
    randomize_(m.model, 0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny128.pt"
    torch.save({"model": m.model.state_dict()}, path)
    return str(path)


@pytest.fixture(scope="module")
def predictor(ckpt):
    return build_sam2_video_predictor("tiny", ckpt, image_size=SIZE, apply_postprocessing=False)


def _objects(t, h=H, w=W):
    yy, xx = np.mgrid[:h, :w]
    o1 = (yy - 20) ** 2 + (xx - (14 + 3 * t)) ** 2 < 8**2
    o2 = (yy >= 4 + 2 * t) & (yy < 16 + 2 * t) & (xx >= 36) & (xx < 50)
    return {1: o1, 2: o2}


def _make_dataset(root, layout, videos=("v0", "v1"), n=3, objects=(1, 2), appear=None, annotate_all=True):
    """JPEG frames + annotations. appear: {obj_id: first frame} (default 0). Returns (frames_dir, masks_dir)."""
    appear = appear or {}
    fdir, mdir = root / "JPEGImages", root / "Annotations"
    for vi, v in enumerate(videos):
        (fdir / v).mkdir(parents=True)
        base = np.random.default_rng(vi).integers(0, 60, (H, W, 3)).astype(np.uint8)
        for t in range(n):
            img = base.copy()
            objs = _objects(t)
            img[objs[1]] = (230, 40, 40)
            img[objs[2]] = (40, 220, 80)
            Image.fromarray(img).save(fdir / v / f"{t:05d}.jpg", quality=95)
            if not (annotate_all or t == 0 or t in appear.values()):
                continue
            present = {o: objs[o] & (t >= appear.get(o, 0)) for o in objects}
            if layout == "sav":
                for o in objects:
                    write_object_mask(mdir / v / f"{o - 1:03d}" / f"{t:05d}.png", present[o])
            else:
                ids = np.zeros((H, W), np.uint8)
                for o in sorted(objects, reverse=True):
                    ids[present[o]] = o
                write_palette_mask(mdir / v / f"{t:05d}.png", ids)
    return fdir, mdir


def _read(path):
    with Image.open(path) as im:
        return im.mode, np.array(im), im.getpalette()


def _model_args(ckpt):
    return ["--model", "tiny", "--checkpoint", ckpt, "--image-size", str(SIZE)]


# ---------------------------------------------------------------------------------------------------------------------
# Merging object logits into one id map


def _reference_paint(logits, ids, thr):
    """The reference protocol by hand: non-overlap on the logits, threshold, paint in descending id order."""
    order = np.argsort(ids)
    x = non_overlap(logits[order])
    out = np.zeros(logits.shape[-2:], np.uint8)
    for k in reversed(range(len(order))):
        out[(x[k, 0] > thr).numpy()] = ids[order[k]]
    return out


def test_logits_to_ids_matches_reference_protocol():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 9, 11, generator=g) * 4
    logits[1, 0, :3] = logits[2, 0, :3]  # ties between ids 7 and 2: the lower id must win
    logits[:, 0, 4, 4] = -20.0  # background everywhere
    ids = [5, 7, 2]
    got = logits_to_ids(logits, ids, 0.0)
    np.testing.assert_array_equal(got, _reference_paint(logits, np.array(ids), 0.0))
    assert got[4, 4] == 0
    tied = (logits[1, 0, :3] > logits[0, 0, :3]) & (logits[1, 0, :3] > 0)
    assert (got[:3][tied.numpy()] == 2).all()
    # Folding the objects in over several passes (objects appearing later) gives the same map.
    best = np.full((9, 11), -np.inf, np.float32)
    best_id = np.zeros((9, 11), np.uint8)
    merge_into(best, best_id, logits[1:, 0].numpy(), ids[1:])
    merge_into(best, best_id, logits[:1, 0].numpy(), ids[:1])
    np.testing.assert_array_equal(np.where(best > 0, best_id, 0), got)


# ---------------------------------------------------------------------------------------------------------------------
# vos -> eval end to end, each layout


def _hand_j(gt, pred):
    union = np.logical_or(gt, pred).sum()
    return 100.0 * (np.logical_and(gt, pred).sum() / union if union else 1.0)


@pytest.mark.parametrize("layout", ["davis", "mose", "sav"])
def test_vos_then_eval_end_to_end(tmp_path, ckpt, layout, capsys):
    fdir, mdir = _make_dataset(tmp_path / "data", layout)
    out = tmp_path / "pred"
    rc = main(["vos", "--layout", layout, "--video-dir", str(fdir), "--mask-dir", str(mdir), "--output-dir",
               str(out), "--no-progress", *_model_args(ckpt), "--dense"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "2 done, 0 skipped" in printed
    for v in ("v0", "v1"):
        for t in range(3):
            if layout == "sav":
                for obj in ("000", "001"):
                    mode, arr, _ = _read(out / v / obj / f"{t:05d}.png")
                    assert mode == "P" and arr.shape == (H, W) and set(np.unique(arr)) <= {0, 1}
            else:
                mode, arr, pal = _read(out / v / f"{t:05d}.png")
                assert mode == "P" and arr.shape == (H, W) and set(np.unique(arr)) <= {0, 1, 2}
                assert bytes(pal[:768]) == DAVIS_PALETTE[: len(pal[:768])]
        # frame 0 is the given mask, reproduced by the model's own decoding of it: mostly right
        if layout != "sav":
            first = _read(out / v / "00000.png")[1]
            assert _hand_j(_objects(0)[1], first == 1) > 50
    log = [json.loads(line) for line in open(out / ".logs" / "vos-rank000.jsonl")]
    done = [r for r in log if r.get("event") == "video" and r["status"] == "done"]
    assert sorted(r["video"] for r in done) == ["v0", "v1"]

    rc = main(["eval", "--gt-dir", str(mdir), "--pred-dir", str(out), "--layout", layout, "--workers", "0",
               "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "| J&F | J | F |" in printed
    with open(out / "per_object.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["video"] for r in rows} == {"v0", "v1"}
    # The only scored frame of a 3-frame video is frame 1: J must be its IoU, computed by hand.
    for r in rows:
        obj = r["object"]
        if layout == "sav":
            gt = _read(mdir / r["video"] / obj / "00001.png")[1] > 0
            pred = _read(out / r["video"] / obj / "00001.png")[1] > 0
        else:
            gt = _read(mdir / r["video"] / "00001.png")[1] == int(obj)
            pred = _read(out / r["video"] / "00001.png")[1] == int(obj)
        assert float(r["J"]) == pytest.approx(_hand_j(gt, pred), abs=1e-6)
        assert 0 <= float(r["F"]) <= 100
    with open(out / "summary.csv") as f:
        summary = next(csv.DictReader(f))
    assert float(summary["J"]) == pytest.approx(np.mean([float(r["J"]) for r in rows]))
    assert (out / "per_video.csv").exists()

    # Evaluating again refuses to replace the CSVs silently.
    assert main(["eval", "--gt-dir", str(mdir), "--pred-dir", str(out), "--layout", layout, "--workers", "0",
                 "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err

    # Running vos again skips the complete videos and leaves their files alone.
    stamp = os.stat(next(out.rglob("00001.png"))).st_mtime_ns
    rc = main(["vos", "--layout", layout, "--video-dir", str(fdir), "--mask-dir", str(mdir), "--output-dir",
               str(out), "--no-progress", *_model_args(ckpt), "--dense"])
    assert rc == 0
    assert "0 done, 2 skipped" in capsys.readouterr().out
    assert os.stat(next(out.rglob("00001.png"))).st_mtime_ns == stamp


# ---------------------------------------------------------------------------------------------------------------------
# Protocol details


def test_objects_appearing_later(tmp_path, predictor):
    fdir, mdir = _make_dataset(tmp_path / "data", "davis", videos=("v0",), n=2, appear={2: 1}, annotate_all=False)
    out = tmp_path / "pred"
    s = run_vos(fdir, mdir, out, "davis", predictor=predictor, progress=False, echo=lambda m: None)
    assert s.exit_code == 1 and [r.video for r in s.failed] == ["v0"]
    assert "--track-objects-appearing-later" in s.failed[0].error and "2 (frame '00001')" in s.failed[0].error
    assert not (out / "v0").exists()

    s = run_vos(fdir, mdir, out, "davis", predictor=predictor, progress=False, echo=lambda m: None,
                track_objects_appearing_later=True)
    assert s.exit_code == 0 and [r.video for r in s.done] == ["v0"]
    got = [_read(out / "v0" / f"{t:05d}.png")[1] for t in range(2)]

    # Independent: each object tracked on its own from its first annotated frame, merged by hand.
    logits = {t: {} for t in range(2)}
    first_masks = {1: (0, _objects(0)[1]), 2: (1, _objects(1)[2])}
    for obj, (start, mask) in first_masks.items():
        state = predictor.init_state(str(fdir / "v0"))
        predictor.add_new_mask(state, start, obj, mask)
        for t, _, lg in predictor.propagate_in_video(state, start_frame_idx=start, progress=False):
            logits[t][obj] = lg[0, 0].numpy()
    for t in range(2):
        objs = sorted(logits[t])
        stack = np.stack([logits[t][o] for o in objs])
        winner = np.array(objs)[np.argmax(stack, 0)]
        expected = np.where(stack.max(0) > 0, winner, 0)
        np.testing.assert_array_equal(got[t], expected)
    assert 2 not in got[0]


def test_sav_object_empty_on_first_frame_and_per_object_davis(tmp_path, predictor):
    # SA-V: object 001 is empty on frame 0 and appears on frame 1.
    fdir, mdir = _make_dataset(tmp_path / "sav", "sav", videos=("v0",), n=2, appear={2: 1})
    out = tmp_path / "pred_sav"
    s = run_vos(fdir, mdir, out, "sav", predictor=predictor, progress=False, echo=lambda m: None)
    assert "appear later: 1 (frame '00001')" in s.failed[0].error
    s = run_vos(fdir, mdir, out, "sav", predictor=predictor, progress=False, echo=lambda m: None,
                track_objects_appearing_later=True)
    assert s.exit_code == 0
    assert not _read(out / "v0" / "001" / "00000.png")[1].any()  # before its first appearance: empty
    assert sorted(p.name for p in (out / "v0").iterdir()) == ["000", "001"]


def test_per_object_output_for_davis_layout_with_the_efficient_predictor(tmp_path, ckpt):
    fdir, mdir = _make_dataset(tmp_path / "d", "davis", videos=("v0",), n=2, annotate_all=False)
    out = tmp_path / "pred"
    with pytest.warns(UserWarning, match="untrained"):
        efficient = build_sam2_video_predictor("tiny", ckpt, image_size=SIZE, apply_postprocessing=False,
                                               efficient=EfficientConfig())
    s = run_vos(fdir, mdir, out, "davis", predictor=efficient, progress=False, echo=lambda m: None,
                per_object=True)
    assert s.exit_code == 0
    eff = s.done[0].efficiency
    assert 0 < eff["kept_window_fraction"] <= 1 and eff["saliency_fallbacks"] <= eff["routed_frames"]
    assert sorted(p.name for p in (out / "v0").iterdir()) == ["001", "002"]
    masks = {o: [_read(out / "v0" / o / f"{t:05d}.png")[1] for t in range(2)] for o in ("001", "002")}
    assert all(set(np.unique(m)) <= {0, 1} for ms in masks.values() for m in ms)


# ---------------------------------------------------------------------------------------------------------------------
# Resuming, overwriting, failures


def test_resume_overwrite_and_interrupted_video(tmp_path, predictor, monkeypatch):
    fdir, mdir = _make_dataset(tmp_path / "data", "davis", videos=("v0", "v1"), n=2, objects=(1,),
                               annotate_all=False)
    out = tmp_path / "pred"
    quiet = dict(predictor=predictor, progress=False, echo=lambda m: None)
    s = run_vos(fdir, mdir, out, "davis", **quiet)
    assert [r.video for r in s.done] == ["v0", "v1"]
    before = {p: p.read_bytes() for p in out.rglob("*.png")}

    # An incomplete output folder is reported, not overwritten; the complete video is skipped.
    (out / "v0" / "00001.png").unlink()
    (out / ".v1.partial-deadbeef").mkdir()  # left by a killed run
    s = run_vos(fdir, mdir, out, "davis", **quiet)
    assert s.exit_code == 1
    assert [r.video for r in s.skipped] == ["v1"] and [r.video for r in s.failed] == ["v0"]
    assert "1 of the 2 expected files" in s.failed[0].error and "--overwrite" in s.failed[0].error
    assert sorted(p.name for p in (out / "v0").iterdir()) == ["00000.png"]

    # A video that fails half-way leaves the previous outputs intact and no temporary folder.
    original = type(predictor).propagate_in_video

    def broken(self, state, *args, **kwargs):
        for k, item in enumerate(original(self, state, *args, **kwargs)):
            if k == 1:
                raise RuntimeError("simulated crash on frame 1")
            yield item

    monkeypatch.setattr(type(predictor), "propagate_in_video", broken)
    s = run_vos(fdir, mdir, out, "davis", overwrite=True, video_list=["v1"], **quiet)
    assert {r.video: r.error for r in s.failed} == {"v1": "RuntimeError: simulated crash on frame 1"}
    assert (out / "v1" / "00001.png").read_bytes() == before[out / "v1" / "00001.png"]
    assert not [p for p in out.iterdir() if ".partial-" in p.name]
    monkeypatch.setattr(type(predictor), "propagate_in_video", original)

    s = run_vos(fdir, mdir, out, "davis", overwrite=True, video_list=["v0"], **quiet)
    assert [r.video for r in s.done] == ["v0"] and s.exit_code == 0
    after = {p: p.read_bytes() for p in out.rglob("*.png")}
    assert after.keys() == before.keys()
    assert all(np.array_equal(_read(p)[1], _read_bytes(before[p])) for p in after)  # deterministic redo
    summary = json.loads((out / ".logs" / "summary.json").read_text())
    assert summary["done"] == ["v0"] and summary["failed"] == {}


def _read_bytes(data):
    import io

    with Image.open(io.BytesIO(data)) as im:
        return np.array(im)


def test_bad_inputs_are_reported_and_the_run_goes_on(tmp_path, predictor):
    fdir, mdir = _make_dataset(tmp_path / "data", "davis", videos=("good",), n=2, objects=(1,), annotate_all=False)
    # frames without any mask folder
    (fdir / "no_mask").mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(fdir / "no_mask" / "00000.jpg")
    # a mask folder without frames
    write_palette_mask(mdir / "no_frames" / "00000.png", np.ones((H, W), np.uint8))
    # an RGB mask
    (fdir / "rgb").mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(fdir / "rgb" / "00000.jpg")
    (mdir / "rgb").mkdir()
    Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(mdir / "rgb" / "00000.png")
    # a mask whose size differs from the frames
    (fdir / "size").mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(fdir / "size" / "00000.jpg")
    write_palette_mask(mdir / "size" / "00000.png", np.ones((H + 2, W), np.uint8))
    # an annotation for a frame that does not exist (missing frame)
    (fdir / "gap").mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(fdir / "gap" / "00001.jpg")
    write_palette_mask(mdir / "gap" / "00000.png", np.ones((H, W), np.uint8))
    # SA-V style folders given with the davis layout
    (fdir / "sav_style").mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(fdir / "sav_style" / "00000.jpg")
    write_object_mask(mdir / "sav_style" / "000" / "00000.png", np.ones((H, W), bool))

    out = tmp_path / "pred"
    lines = []
    s = run_vos(fdir, mdir, out, "davis", predictor=predictor, progress=False, echo=lines.append)
    errors = {r.video: r.error for r in s.failed}
    assert [r.video for r in s.done] == ["good"] and s.exit_code == 1
    assert "no annotation folder" in errors["no_mask"]
    assert "frame folder not found" in errors["no_frames"]
    assert "RGB colour image" in errors["rgb"]
    assert "56x42 (WxH)" in errors["size"] and "56x40" in errors["size"]
    assert "no matching frame" in errors["gap"] and "00000.png" in errors["gap"]
    assert "--layout sav" in errors["sav_style"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["good"]
    assert any(line.startswith("FAILED rgb:") for line in lines)
    text = s.format()
    assert "1 done, 0 skipped (already complete), 6 failed" in text and "FAILED gap:" in text

    # a video list restricts (and sorts) the run; names without data are reported
    (tmp_path / "list.txt").write_text("# subset\ngood\n\nmissing_video\ngood\n")
    assert read_video_list(tmp_path / "list.txt") == ["good", "missing_video"]
    s = run_vos(fdir, mdir, out, "davis", predictor=predictor, progress=False, echo=lambda m: None,
                video_list=tmp_path / "list.txt")
    assert [r.video for r in s.skipped] == ["good"]
    assert "frame folder not found" in s.failed[0].error


def test_cli_reports_unusable_dataset(tmp_path, capsys, ckpt):
    rc = main(["vos", "--layout", "davis", "--video-dir", str(tmp_path / "nope"), "--mask-dir", str(tmp_path),
               "--output-dir", str(tmp_path / "out"), "--model", "tiny", "--checkpoint", ckpt, "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "video (frames) folder not found" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    (tmp_path / "data" / "v").mkdir(parents=True)
    rc = main(["vos", "--layout", "davis", "--video-dir", str(tmp_path / "data"), "--mask-dir",
               str(tmp_path / "data"), "--output-dir", str(tmp_path / "out"), "--model", "tiny", "--checkpoint",
               str(tmp_path / "x.pt"), "--no-progress"])
    assert rc == 2 and "checkpoint file not found" in capsys.readouterr().err


def test_dataset_listing(tmp_path):
    fdir, mdir = _make_dataset(tmp_path / "d", "sav", videos=("b", "a"), n=2)
    ds = VOSDataset("sav", fdir, mdir)
    assert ds.videos == ["a", "b"]
    ann = ds.annotations("a")
    assert ann.annotated == [0, 1] and [o.name for o in ann.objects.values()] == ["000", "001"]
    assert [o.obj_id for o in ann.objects.values()] == [0, 1]
    masks = ann.masks_on(1)
    np.testing.assert_array_equal(masks[1], _objects(1)[2])


def test_eval_reports_missing_and_extra_predictions(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for v in ("v0", "v1"):
        for t in range(4):
            ids = np.zeros((H, W), np.uint8)
            for o in (2, 1):
                ids[_objects(t)[o]] = o
            write_palette_mask(gt / v / f"{t:05d}.png", ids)
    for t in (0, 1, 3):  # v0 frame 2 is missing, v1 entirely
        write_palette_mask(pred / "v0" / f"{t:05d}.png", _read(gt / "v0" / f"{t:05d}.png")[1])
    write_palette_mask(pred / "stray" / "00000.png", np.zeros((H, W), np.uint8))

    args = ["eval", "--gt-dir", str(gt), "--pred-dir", str(pred), "--workers", "0", "--no-progress"]
    assert main(args + ["--strict", "--output", str(tmp_path / "strict")]) == 1
    err = capsys.readouterr().err
    assert "1 prediction video(s) and 1 prediction frame(s) are missing" in err and "00002.png" in err
    assert not (tmp_path / "strict").exists()

    assert main(args) == 0
    captured = capsys.readouterr()
    assert "1 video(s) have no prediction folder and score as empty: v1" in captured.err
    assert "1 prediction frame(s) are missing and score as empty: v0/00002.png" in captured.err
    assert "no ground truth and are ignored: stray" in captured.err
    with open(pred / "missing.csv") as f:
        rows = [tuple(r.values()) for r in csv.DictReader(f)]
    assert rows == [("missing_video", "v1", ""), ("missing_frame", "v0", "00002.png"), ("extra", "stray", "")]
    with open(pred / "per_object.csv") as f:
        scores = {(r["video"], r["object"]): float(r["J"]) for r in csv.DictReader(f)}
    # v0: frame 1 exact, frame 2 missing (empty prediction, J = 0) -> 50; v1: nothing predicted -> 0
    assert scores == {("v0", "1"): 50.0, ("v0", "2"): 50.0, ("v1", "1"): 0.0, ("v1", "2"): 0.0}
