"""`efficient-sam2 demo` (the README's main command): what it writes, what it prints, and its bad input."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from PIL import Image

from efficient_sam2.cli import main
from efficient_sam2.commands.demo import DEMO_SEED
from efficient_sam2.data.synthetic import generate_video
from efficient_sam2.evaluation.metrics import boundary_f_measure, region_similarity
from efficient_sam2.io.masks import read_palette_mask

pytestmark = pytest.mark.usefixtures("one_thread")

FRAMES = 5


def _jf(gt: list, pred: list, ids: list[int]) -> float:
    """J&F by hand from the written PNGs: per object over frames 1..n-2 (DAVIS protocol), mean over objects."""
    js, fs = [], []
    for i in ids:
        g = np.stack([m == i for m in gt[1:-1]])
        p = np.stack([m == i for m in pred[1:-1]])
        js.append(np.mean(region_similarity(g, p)))
        fs.append(np.mean(boundary_f_measure(g, p)))
    return 100 * (np.mean(js) + np.mean(fs)) / 2


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(["demo", "--out", str(out), "--videos", "2", "--frames", str(FRAMES), "--no-progress",
                     "--threads", "1"])
    return code, buf.getvalue(), out


def _read(folder, sub) -> list:
    return [read_palette_mask(str(folder / sub / f"{t:05d}.png"))[0] for t in range(FRAMES)]


def test_demo_writes_every_run_and_prints_their_scores(demo_run):
    code, printed, out = demo_run
    assert code == 0, printed
    names = ["standard_0", "occlusion_1"]  # the default subsets, in turn
    assert sorted(os.listdir(out)) == sorted(names)
    assert "bundled weights" in printed
    rows = {}
    for i, name in enumerate(names):
        folder = out / name
        assert sorted(os.listdir(folder)) == ["dense", "efficient", "frames", "ground_truth", "overlay.mp4", "paper"]
        for sub, ext in (("frames", ".jpg"), ("ground_truth", ".png"), ("dense", ".png"), ("paper", ".png"),
                         ("efficient", ".png")):
            assert sorted(os.listdir(folder / sub)) == [f"{t:05d}{ext}" for t in range(FRAMES)]
        assert os.path.getsize(folder / "overlay.mp4") > 0

        # the ground truth is the generator's, for the held-out demo seeds
        video = generate_video(DEMO_SEED + i, name.rsplit("_", 1)[0], frames=FRAMES)
        gt = _read(folder, "ground_truth")
        assert all(np.array_equal(a, b) for a, b in zip(gt, video.masks))
        ids = [int(k) for k in np.unique(gt[0]) if k != 0]
        assert Image.open(folder / "frames" / "00000.jpg").size == gt[0].shape[::-1]
        dense = _read(folder, "dense")
        # the per-video line: J&F dense / paper / efficient (fidelity paper / efficient), recomputed from the PNGs
        line = next(x for x in printed.splitlines() if x.strip().startswith(name))
        numbers = [float(x) for x in re.findall(r"-?\d+\.\d", line[line.index(name) + len(name):])]
        assert len(numbers) == 5, line
        for k, sub in enumerate(("dense", "paper", "efficient")):
            pred = _read(folder, sub)
            # the prompt frame is the given mask, resampled through the model's low-res mask as SAM 2 does
            assert all(np.mean(region_similarity(gt[0] == k_, pred[0] == k_)) > 0.8 for k_ in ids)
            assert numbers[k] == pytest.approx(_jf(gt, pred, ids), abs=0.051), (name, sub, printed)
            rows.setdefault(sub, []).append(numbers[k])
        for k, sub in ((3, "paper"), (4, "efficient")):
            assert numbers[k] == pytest.approx(_jf(dense, _read(folder, sub), ids), abs=0.051), (name, sub)
    # the mean rows are the means of the per-video lines
    for label, sub in (("dense SAM 2", "dense"), ("Efficient-SAM2 (paper)", "paper"), ("Efficient-SAM2", "efficient")):
        line = next(x for x in printed.splitlines() if re.match(re.escape(label) + r"\s+\d", x))
        assert float(line[len(label):].split()[0]) == pytest.approx(np.mean(rows[sub]), abs=0.051)
    assert re.search(r"speed-up \d+\.\d\dx end to end", printed)


def test_demo_refuses_an_existing_folder_and_overwrites_only_its_files(demo_run, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(out), "--videos", "1", "--frames", "3", "--no-progress"]) == 2
    assert "is not empty; use --overwrite" in capsys.readouterr().err
    assert os.listdir(out) == ["notes.txt"]

    assert main(["demo", "--out", str(out), "--videos", "1", "--frames", "3", "--no-progress", "--threads", "1",
                 "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(out / "standard_0" / "dense")) == [f"{t:05d}.png" for t in range(3)]


@pytest.mark.parametrize("args, message", [
    (["--frames", "2"], "--frames must be at least 3"),
    (["--subset", "no_such_subset"], "no_such_subset"),
    (["--subsets", "standard,nope"], "nope"),
    (["--videos", "0"], "--videos must be at least 1"),
    (["--model", "large"], "checkpoint"),
])
def test_demo_bad_input(tmp_path, capsys, args, message):
    out = tmp_path / "o"
    assert main(["demo", "--out", str(out), "--no-progress", *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
