"""`evaluate_vos` end to end on tiny synthetic DAVIS- and SA-V-layout datasets with hand-computed scores.

All frames are 40x40, so the default boundary tolerance is ceil(0.008 * 56.6) = 1 px. Recurring per-frame values:
* perfect prediction: J = F = 1;
* a 10x10 square predicted 2 px to the right: J = 80 / 120, F = 0.55 (hand count in tests/test_metrics.py);
* empty prediction of a non-empty object: J = F = 0; GT and prediction both empty: J = F = 1;
* a prediction where the GT is empty: J = 0, and F = 0 (P = 0, R = 1 -> 2PR / (P + R) = 0).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import re

import numpy as np
import pytest
from PIL import Image

from efficient_sam2.evaluation import EvalResult, evaluate_vos

SIZE = 40
SHIFTED_J = 80 / 120
SHIFTED_F = 0.55


def square(top: int, left: int, side: int = 10) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), dtype=bool)
    m[top : top + side, left : left + side] = True
    return m


def write_indexed(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(ids, dtype=np.uint8))  # 2-D uint8 -> mode 'L'
    img.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [255, 255, 255] * 253)  # -> mode 'P'
    img.save(path)


def write_grey(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def frame(i: int) -> str:
    return f"{i:05d}.png"


# ---------------------------------------------------------------------------------------------------------------------
# DAVIS layout
#
# bear (5 frames): object 1 = square(5, 5), object 2 = square(22, 22) in every frame, plus a DAVIS void strip (255).
#   prediction: frames 1..3 -> object 1 perfect, object 2 shifted 2 px right; frames 0 and 4 -> empty.
# cat (4 frames): object 1 = square(5, 5); no prediction folder at all.
# dog: prediction only (extra).
#
# Scored frames (first and last skipped): bear 1..3, cat 1..2.
#   bear/1: J = F = 100            bear/2: J = 66.67, F = 55        cat/1: J = F = 0 (missing = empty)
#   global J = (100 + 66.67 + 0) / 3 = 55.56, F = (100 + 55 + 0) / 3 = 51.67


def make_davis(root: Path) -> tuple[Path, Path]:
    gt, pred = root / "gt", root / "pred"
    for i in range(5):
        ids = np.zeros((SIZE, SIZE), np.uint8)
        ids[square(5, 5)] = 1
        ids[square(22, 22)] = 2
        ids[39, :4] = 255  # void: never an object
        write_indexed(gt / "bear" / frame(i), ids)
        p = np.zeros((SIZE, SIZE), np.uint8)
        if 1 <= i <= 3:
            p[square(5, 5)] = 1
            p[square(22, 24)] = 2
        write_indexed(pred / "bear" / frame(i), p)
    for i in range(4):
        ids = np.zeros((SIZE, SIZE), np.uint8)
        ids[square(5, 5)] = 1
        write_indexed(gt / "cat" / frame(i), ids)
    write_indexed(pred / "dog" / frame(0), np.zeros((SIZE, SIZE), np.uint8))
    return gt, pred


def by_key(result: EvalResult) -> dict[tuple[str, str], tuple[float, float, int]]:
    return {(o.video, o.object): (o.J, o.F, o.num_frames) for o in result.objects}


def test_davis_layout_scores(tmp_path):
    gt, pred = make_davis(tmp_path)
    res = evaluate_vos(gt, pred, layout="davis", num_workers=0, progress=False)
    assert res.skip_first_and_last and not res.from_first_appearance
    rows = by_key(res)
    assert set(rows) == {("bear", "1"), ("bear", "2"), ("cat", "1")}  # 255 is void, not an object
    assert rows["bear", "1"] == pytest.approx((100.0, 100.0, 3))
    assert rows["bear", "2"] == pytest.approx((100 * SHIFTED_J, 100 * SHIFTED_F, 3))
    assert rows["cat", "1"] == pytest.approx((0.0, 0.0, 2))
    assert res.J == pytest.approx((100 + 100 * SHIFTED_J + 0) / 3)
    assert res.F == pytest.approx((100 + 100 * SHIFTED_F + 0) / 3)
    assert res.JF == pytest.approx((res.J + res.F) / 2)
    for o in res.objects:
        assert o.JF == pytest.approx((o.J + o.F) / 2)
    videos = {v.video: v for v in res.videos}
    assert [v.video for v in res.videos] == ["bear", "cat"]
    assert videos["bear"].J == pytest.approx((100 + 100 * SHIFTED_J) / 2)
    assert videos["bear"].num_objects == 2
    assert videos["cat"].JF == pytest.approx(0.0)
    # Reports: the whole "cat" prediction is missing, "dog" is extra.
    assert res.missing_videos == ["cat"]
    assert res.missing == []
    assert res.extra == ["dog"]
    assert res.unscored == []


def test_davis_layout_without_skipping(tmp_path):
    # Frames 0 and 4 now count and have empty predictions (J = F = 0 there):
    #   bear/1: J = F = 3 / 5 = 60;  bear/2: J = 3 * (2/3) / 5 = 40, F = 3 * 0.55 / 5 = 33;  cat/1: 0 over 4 frames.
    gt, pred = make_davis(tmp_path)
    res = evaluate_vos(gt, pred, layout="mose", skip_first_and_last=False, num_workers=0, progress=False)
    rows = by_key(res)
    assert rows["bear", "1"] == pytest.approx((60.0, 60.0, 5))
    assert rows["bear", "2"] == pytest.approx((40.0, 33.0, 5))
    assert rows["cat", "1"] == pytest.approx((0.0, 0.0, 4))


def test_missing_frame_reported_and_scored_empty(tmp_path):
    gt, pred = make_davis(tmp_path)
    os.remove(pred / "bear" / frame(2))
    res = evaluate_vos(gt, pred, layout="davis", num_workers=0, progress=False)
    assert res.missing == [("bear", "00002.png")]
    rows = by_key(res)
    # Frame 2 scores 0 for both objects: bear/1 J = F = 2/3 * 100; bear/2 J = 2 * (2/3) / 3, F = 2 * 0.55 / 3.
    assert rows["bear", "1"] == pytest.approx((200 / 3, 200 / 3, 3))
    assert rows["bear", "2"] == pytest.approx((100 * 2 * SHIFTED_J / 3, 100 * 2 * SHIFTED_F / 3, 3))
    # A missing unscored frame (the first) is not reported.
    os.remove(pred / "bear" / frame(0))
    assert evaluate_vos(gt, pred, layout="davis", num_workers=0, progress=False).missing == [("bear", "00002.png")]


def test_strict_raises_with_full_list(tmp_path):
    gt, pred = make_davis(tmp_path)
    os.remove(pred / "bear" / frame(3))
    with pytest.raises(FileNotFoundError) as info:
        evaluate_vos(gt, pred, layout="davis", strict=True, num_workers=0, progress=False)
    message = str(info.value)
    assert "00003.png" in message and "'cat'" in message
    # Complete predictions pass in strict mode.
    (pred / "cat").mkdir()
    for i in range(4):
        write_indexed(pred / "cat" / frame(i), np.zeros((SIZE, SIZE), np.uint8))
    write_indexed(pred / "bear" / frame(3), np.zeros((SIZE, SIZE), np.uint8))
    evaluate_vos(gt, pred, layout="davis", strict=True, num_workers=0, progress=False)


def test_size_mismatch_names_the_file(tmp_path):
    gt, pred = make_davis(tmp_path)
    write_indexed(pred / "bear" / frame(2), np.zeros((30, SIZE), np.uint8))
    # the failing video is reported and the others keep their scores
    result = evaluate_vos(gt, pred, layout="davis", num_workers=0, progress=False)
    assert [v for v, _ in result.failed] == ["bear"]
    assert re.search(r"bear[/\\]00002\.png", result.failed[0][1])
    assert "bear" not in {o.video for o in result.objects} and result.objects


def test_colour_png_is_refused(tmp_path):
    gt, pred = make_davis(tmp_path)
    Image.new("RGB", (SIZE, SIZE), (128, 0, 0)).save(pred / "bear" / frame(1))
    assert "indexed" in evaluate_vos(gt, pred, layout="davis", num_workers=0, progress=False).failed[0][1]


def test_wrong_layout_is_explained(tmp_path):
    gt, pred = make_davis(tmp_path)
    with pytest.raises(ValueError, match="layout='davis'"):
        evaluate_vos(gt, pred, layout="sav", num_workers=0, progress=False)
    gt_sav, pred_sav = make_sav(tmp_path / "sav")
    with pytest.raises(ValueError, match="layout='sav'"):
        evaluate_vos(gt_sav, pred_sav, layout="davis", num_workers=0, progress=False)
    with pytest.raises(ValueError, match="layout must be"):
        evaluate_vos(gt, pred, layout="ytvos", num_workers=0, progress=False)


def test_csv_and_summary(tmp_path):
    gt, pred = make_davis(tmp_path)
    res = evaluate_vos(gt, pred, layout="davis", num_workers=0, progress=False)
    out = tmp_path / "report"
    written = res.write_csv(out)
    assert set(written) == {"per_object.csv", "per_video.csv", "summary.csv"}
    assert sorted(os.listdir(out)) == ["per_object.csv", "per_video.csv", "summary.csv"]  # no temp files left
    with open(out / "per_object.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["video"], r["object"]) for r in rows] == [("bear", "1"), ("bear", "2"), ("cat", "1")]
    assert float(rows[1]["J"]) == pytest.approx(100 * SHIFTED_J)
    assert float(rows[1]["J&F"]) == pytest.approx(50 * (SHIFTED_J + SHIFTED_F))
    assert int(rows[1]["num_frames"]) == 3
    with open(out / "per_video.csv", newline="") as f:
        assert [r["video"] for r in csv.DictReader(f)] == ["bear", "cat"]
    with open(out / "summary.csv", newline="") as f:
        (summary,) = list(csv.DictReader(f))
    assert float(summary["J&F"]) == pytest.approx(res.JF)
    assert int(summary["num_missing_videos"]) == 1 and int(summary["num_extra"]) == 1
    table = res.summary_table()
    assert table.splitlines()[0] == "| J&F | J | F | objects | videos |"
    assert f"| {res.JF:.1f} | {res.J:.1f} | {res.F:.1f} | 3 | 2 |" in table


def test_worker_processes_match_inline(tmp_path):
    gt, pred = make_davis(tmp_path)
    inline = evaluate_vos(gt, pred, layout="davis", num_workers=0, progress=False)
    parallel = evaluate_vos(gt, pred, layout="davis", num_workers=2, progress=False)
    assert parallel.objects == inline.objects
    assert parallel.videos == inline.videos
    # Errors in a worker reach the caller as that video's failure, and the other videos are still scored.
    write_indexed(pred / "bear" / frame(2), np.zeros((30, SIZE), np.uint8))
    failed = evaluate_vos(gt, pred, layout="davis", num_workers=2, progress=False)
    assert [v for v, _ in failed.failed] == ["bear"] and "00002.png" in failed.failed[0][1]
    assert failed.objects == [o for o in inline.objects if o.video != "bear"]


# ---------------------------------------------------------------------------------------------------------------------
# SA-V layout
#
# Video sav_001, GT annotated every 4th frame (0, 4, ..., 20); predictions exist for every frame 0..20.
# Scored frames per object (first and last annotated frame skipped): 4, 8, 12, 16.
#   000: GT empty at 4, 8; square at 0, 12, 16, 20. Prediction: empty at 4, false positive at 8, perfect at 12, 16.
#        SA-V rule: scoring starts at frame 8, the first scored frame where GT or prediction is non-empty:
#        J = (0 + 1 + 1) / 3, F = (0 + 1 + 1) / 3 -> 66.67 each over 3 frames.
#        Without the rule: frame 4 (both empty) adds J = F = 1 -> 75 over 4 frames.
#   001: perfect -> 100 over 4 frames.
#   002: GT non-empty only at frame 0 (not scored); prediction always empty -> not scored under the SA-V rule
#        (listed in `unscored`); without the rule: both empty on 4 frames -> 100.
# Prediction folder 007 has no GT (extra); unannotated prediction frames (1, 2, 3, 5, ...) are ignored.


def make_sav(root: Path) -> tuple[Path, Path]:
    gt, pred = root / "gt", root / "pred"
    empty = np.zeros((SIZE, SIZE), bool)
    for i in range(0, 21, 4):
        write_grey(gt / "sav_001" / "000" / frame(i), empty if i in (4, 8) else square(12, 12))
        write_indexed(gt / "sav_001" / "001" / frame(i), square(20, 5))
        write_indexed(gt / "sav_001" / "002" / frame(i), square(3, 25) if i == 0 else empty)
    for i in range(21):
        write_grey(pred / "sav_001" / "000" / frame(i), empty if i == 4 else square(12, 12))
        write_indexed(pred / "sav_001" / "001" / frame(i), square(20, 5))
        write_indexed(pred / "sav_001" / "002" / frame(i), empty)
    write_indexed(pred / "sav_001" / "007" / frame(4), square(0, 0))
    return gt, pred


def test_sav_layout_scores(tmp_path):
    gt, pred = make_sav(tmp_path)
    res = evaluate_vos(gt, pred, layout="sav", num_workers=0, progress=False)
    assert res.skip_first_and_last and res.from_first_appearance
    rows = by_key(res)
    assert set(rows) == {("sav_001", "000"), ("sav_001", "001")}
    assert rows["sav_001", "000"] == pytest.approx((200 / 3, 200 / 3, 3))
    assert rows["sav_001", "001"] == pytest.approx((100.0, 100.0, 4))
    assert res.unscored == [("sav_001", "002")]
    assert res.J == pytest.approx((200 / 3 + 100) / 2)
    assert res.F == pytest.approx((200 / 3 + 100) / 2)
    assert res.extra == ["sav_001/007"]
    assert res.missing == [] and res.missing_videos == []


def test_sav_layout_without_first_appearance_rule(tmp_path):
    gt, pred = make_sav(tmp_path)
    res = evaluate_vos(gt, pred, layout="sav", from_first_appearance=False, num_workers=0, progress=False)
    rows = by_key(res)
    assert rows["sav_001", "000"] == pytest.approx((75.0, 75.0, 4))
    assert rows["sav_001", "002"] == pytest.approx((100.0, 100.0, 4))
    assert res.unscored == []


def test_sav_missing_object_folder_and_frame(tmp_path):
    gt, pred = make_sav(tmp_path)
    for name in os.listdir(pred / "sav_001" / "001"):
        os.remove(pred / "sav_001" / "001" / name)
    os.rmdir(pred / "sav_001" / "001")
    os.remove(pred / "sav_001" / "000" / frame(12))
    res = evaluate_vos(gt, pred, layout="sav", num_workers=0, progress=False)
    assert res.missing == [("sav_001", "000/00012.png")] + [("sav_001", f"001/{frame(i)}") for i in (4, 8, 12, 16)]
    rows = by_key(res)
    assert rows["sav_001", "001"] == pytest.approx((0.0, 0.0, 4))  # missing folder = empty masks
    assert rows["sav_001", "000"] == pytest.approx((100 / 3, 100 / 3, 3))  # frame 12 now scores 0
    with pytest.raises(FileNotFoundError, match="00012.png"):
        evaluate_vos(gt, pred, layout="sav", strict=True, num_workers=0, progress=False)
