"""Issue 13, rough edges a new user hit: --overwrite never deletes what a command did not write, truncated video
files are announced, `vos --redo`, readable errors for files that are not checkpoints, warnings as one-line notes
on the command line, and consistent options and exports.

A random-weight tiny model at image size 128 keeps every command run to a few seconds.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from efficient_sam2 import CheckpointError, build_sam2_video_predictor
from efficient_sam2.build import read_state_dict
from efficient_sam2.cli import build_parser, main
from efficient_sam2.commands.common import warnings_as_notes
from efficient_sam2.efficient.shortcut import ShortcutCheckpointError, load_shortcut
from efficient_sam2.io.atomic import check_output_folder, move_into, unlisted_files
from efficient_sam2.io.frames import FrameCountError, FrameCountWarning, VideoFrames
from efficient_sam2.io.masks import read_palette_mask, write_palette_mask
from efficient_sam2.io.torch_files import TorchFileError, read_torch_file
from reference_oracle import randomize_

SIZE = 128
H, W = 40, 56
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    m = build_sam2_video_predictor("tiny", weights="random", image_size=SIZE)
    randomize_(m.model, 3)
    path = tmp_path_factory.mktemp("ckpt") / "tiny128.pt"
    torch.save({"model": m.model.state_dict()}, path)
    return str(path)


def _model(ckpt):
    return ["--model", "tiny", "--checkpoint", ckpt, "--image-size", str(SIZE)]


def _frame(t, seed=0):
    yy, xx = np.mgrid[:H, :W]
    img = np.random.default_rng(seed).integers(0, 60, (H, W, 3)).astype(np.uint8)
    img[(yy - 20) ** 2 + (xx - (14 + 3 * t)) ** 2 < 8**2] = (230, 40, 40)
    return img


def _frames_folder(folder, n=2, seed=0):
    folder.mkdir(parents=True)
    for t in range(n):
        Image.fromarray(_frame(t, seed)).save(folder / f"{t:05d}.jpg", quality=95)
    return folder


def _first_mask():
    yy, xx = np.mgrid[:H, :W]
    return ((yy - 20) ** 2 + (xx - 14) ** 2 < 8**2).astype(np.uint8)


def _mark_garbage(path):
    path.write_bytes(b"old output of an earlier run")


def _is_png(path):
    with Image.open(path) as im:
        return im.format == "PNG"


# ---------------------------------------------------------------------------------------------------------------------
# 1. --overwrite replaces what the command writes, and nothing else


def test_output_folder_helpers(tmp_path):
    with pytest.raises(FileExistsError, match="not a folder"):
        (tmp_path / "f").write_text("x")
        check_output_folder(tmp_path / "f", True)
    assert check_output_folder(tmp_path / "new", False) == []
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("user")
    with pytest.raises(FileExistsError, match="--overwrite"):
        check_output_folder(tmp_path / "d", False)
    assert check_output_folder(tmp_path / "d", True) == ["keep.txt"]

    staged, final = tmp_path / "staged", tmp_path / "d"
    (staged / "obj").mkdir(parents=True)
    (staged / "a.png").write_text("new a")
    (staged / "obj" / "b.png").write_text("new b")
    (final / "a.png").write_text("old a")
    (final / "obj").mkdir()
    (final / "obj" / "c.png").write_text("other")
    assert unlisted_files(final, ["a.png", os.path.join("obj", "b.png")]) == ["keep.txt", "obj/c.png"]
    move_into(staged, final, ["a.png", os.path.join("obj", "b.png")])
    assert (final / "a.png").read_text() == "new a" and (final / "obj" / "b.png").read_text() == "new b"
    assert (final / "keep.txt").read_text() == "user" and (final / "obj" / "c.png").read_text() == "other"


def test_track_overwrite_replaces_its_pngs_and_keeps_other_files(tmp_path, ckpt, capsys):
    frames = _frames_folder(tmp_path / "frames")
    out = tmp_path / "masks"
    args = ["track", str(frames), *_model(ckpt), "--dense", "--points", "14,20", "--output", str(out),
            "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    first = {n: read_palette_mask(out / n)[0] for n in ("00000.png", "00001.png")}
    _mark_garbage(out / "00000.png")
    (out / "keep.txt").write_text("user data")
    (out / "notes").mkdir()
    (out / "notes" / "a.md").write_text("more user data")

    assert main(args) == 2  # not empty: refused without --overwrite, nothing touched
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "00000.png").read_bytes() == b"old output of an earlier run"

    assert main(args + ["--overwrite"]) == 0
    err = capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "user data"
    assert (out / "notes" / "a.md").read_text() == "more user data"
    for name, ids in first.items():  # its own outputs are replaced (the same deterministic masks again)
        assert _is_png(out / name)
        np.testing.assert_array_equal(read_palette_mask(out / name)[0], ids)
    assert re.search(r"note: .*2 file\(s\) this run did not write.*keep\.txt, notes/a\.md", err)


def _dataset(root, videos=("v0", "v1"), n=2):
    fdir, mdir = root / "JPEGImages", root / "Annotations"
    for i, v in enumerate(videos):
        _frames_folder(fdir / v, n, seed=i)
        write_palette_mask(mdir / v / "00000.png", _first_mask())
    return fdir, mdir


def _vos_args(fdir, mdir, out, ckpt):
    return ["vos", "--layout", "davis", "--video-dir", str(fdir), "--mask-dir", str(mdir), "--output-dir", str(out),
            *_model(ckpt), "--dense", "--no-progress"]


def test_vos_overwrite_keeps_other_files_and_redo_redoes_named_videos(tmp_path, ckpt, capsys):
    fdir, mdir = _dataset(tmp_path / "data")
    out = tmp_path / "pred"
    args = _vos_args(fdir, mdir, out, ckpt)
    assert main(args) == 0
    capsys.readouterr()
    reference = {p.relative_to(out).as_posix(): read_palette_mask(p)[0] for p in out.rglob("*.png")}
    assert len(reference) == 4

    # An incomplete video: the hint names --redo for that video
    (out / "v0" / "00001.png").unlink()
    (out / "v0" / "keep.txt").write_text("inside a video folder")
    (out / "keep.txt").write_text("next to the videos")
    assert main(args) == 1
    printed = capsys.readouterr().out
    assert "--redo v0" in printed and "--overwrite redoes every video" in printed

    # --redo v0 recomputes v0 only: v1 is skipped, the user's files stay, its own PNGs are back
    _mark_garbage(out / "v1" / "00001.png")  # not redone: left as it is
    assert main(args + ["--redo", "v0"]) == 0
    printed = capsys.readouterr().out
    assert "done v0" in printed and "skipped v1" in printed
    assert (out / "v0" / "keep.txt").read_text() == "inside a video folder"
    assert (out / "keep.txt").read_text() == "next to the videos"
    assert "did not write, left as they were: keep.txt" in printed
    for t in ("00000.png", "00001.png"):
        np.testing.assert_array_equal(read_palette_mask(out / "v0" / t)[0], reference[f"v0/{t}"])
    assert (out / "v1" / "00001.png").read_bytes() == b"old output of an earlier run"

    # --overwrite recomputes every video, replacing its own files only
    _mark_garbage(out / "v0" / "00000.png")
    assert main(args + ["--overwrite"]) == 0
    printed = capsys.readouterr().out
    assert "done v0" in printed and "done v1" in printed
    for rel, ids in reference.items():
        np.testing.assert_array_equal(read_palette_mask(out / rel)[0], ids)
    assert (out / "v0" / "keep.txt").read_text() == "inside a video folder"
    assert (out / "keep.txt").read_text() == "next to the videos"

    # --redo with a name the dataset does not have
    assert main(args + ["--redo", "v0,nope"]) == 2
    assert "--redo names video(s) that are not in the dataset: nope" in capsys.readouterr().err


def test_vos_reports_evaluation_results_of_earlier_predictions(tmp_path, ckpt, capsys):
    fdir, mdir = _dataset(tmp_path / "data", videos=("v0",))
    out = tmp_path / "pred"
    args = _vos_args(fdir, mdir, out, ckpt)
    assert main(args) == 0
    capsys.readouterr()
    assert main(["eval", "--gt-dir", str(mdir), "--pred-dir", str(out), "--workers", "0", "--all-frames",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert (out / "summary.csv").is_file()

    assert main(args) == 0  # everything skipped: the scores still describe the predictions, nothing to say
    assert "summary.csv" not in capsys.readouterr().out
    assert main(args + ["--redo", "v0"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"note: per_object\.csv, per_video\.csv, summary\.csv in .* hold the scores of earlier "
                     r"predictions, not of the 1 video\(s\) computed in this run", printed)
    summary = json.loads((out / ".logs" / "summary.json").read_text())
    assert any("summary.csv" in n for n in summary["notes"])


def test_eval_overwrite_replaces_its_csv_files_only(tmp_path, capsys):
    gt, pred, res = tmp_path / "gt", tmp_path / "pred", tmp_path / "res"
    for t in range(3):
        write_palette_mask(gt / "v" / f"{t:05d}.png", _first_mask())
        write_palette_mask(pred / "v" / f"{t:05d}.png", _first_mask())
    res.mkdir()
    (res / "keep.txt").write_text("user data")
    (res / "summary.csv").write_text("stale")
    (res / "missing.csv").write_text("stale report of an earlier evaluation")
    args = ["eval", "--gt-dir", str(gt), "--pred-dir", str(pred), "--output", str(res), "--workers", "0",
            "--no-progress"]
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    assert (res / "summary.csv").read_text().startswith("J&F,")
    assert not (res / "missing.csv").exists()  # its own stale report: nothing is missing now
    assert (res / "keep.txt").read_text() == "user data"


def test_bench_overwrite_replaces_its_files_only(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    (out / "r.json").write_text("{}")
    args = ["bench", "--model", "tiny", "--image-size", "128", "--frames", "8", "--configs", "dense", "--warmup",
            "0", "--repeats", "1", "--threads", "1", "--no-progress", "--json", str(out / "r.json")]
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    capsys.readouterr()
    assert "dense" in json.loads((out / "r.json").read_text())["configs"]
    assert sorted(os.listdir(out)) == ["keep.txt", "r.json"] and (out / "keep.txt").read_text() == "user data"


def _images(folder):
    folder.mkdir()
    for i in range(2):
        Image.fromarray(_frame(i, seed=i)).save(folder / f"img{i}.png")


def test_automask_overwrite_replaces_its_files_only_and_takes_no_progress(tmp_path, ckpt, capsys):
    images, out = tmp_path / "images", tmp_path / "out"
    _images(images)
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    _mark_garbage(out / "img0.json")
    args = ["automask", str(images), *_model(ckpt), "--output", str(out), "--points-per-side", "2",
            "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--no-progress"]
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "img/s" not in err and "automask:" not in err  # --no-progress: no bar
    assert json.loads((out / "img0.json").read_text())["num_prompts"] == 4
    assert sorted(os.listdir(out)) == ["img0.json", "img0.png", "img1.json", "img1.png", "keep.txt", "summary.json"]
    assert (out / "keep.txt").read_text() == "user data"


def test_train_shortcut_refuses_any_file_of_an_earlier_run_and_leaves_other_files(tmp_path):
    from efficient_sam2.training import ShortcutTrainer, ShortcutTrainingError, TrainConfig

    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    (out / "loss.png").write_bytes(b"plot of an earlier run")
    (out / "shortcut_epoch2.pth").write_bytes(b"checkpoint of an earlier run")
    config = TrainConfig(model="tiny", checkpoint=str(tmp_path / "missing.pt"), video_dir=str(tmp_path),
                         mask_dir=str(tmp_path), output_dir=str(out), progress=False)
    with pytest.raises(ShortcutTrainingError, match=r"already holds a training run \(loss\.png, "
                                                    r"shortcut_epoch2\.pth\).*nothing was overwritten"):
        ShortcutTrainer(config)
    (out / "loss.png").unlink()
    (out / "shortcut_epoch2.pth").unlink()
    with pytest.raises(ShortcutTrainingError, match="SAM 2 checkpoint not found"):  # keep.txt is no run: accepted
        ShortcutTrainer(config)
    assert sorted(os.listdir(out)) == ["keep.txt"]


# ---------------------------------------------------------------------------------------------------------------------
# 2. truncated video files; 5. warnings as notes on the command line


@pytest.fixture(scope="module")
def avi(tmp_path_factory):
    """A 12-frame MJPG .avi and a copy cut after half of its bytes."""
    root = tmp_path_factory.mktemp("avi")
    full = root / "full.avi"
    writer = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    assert writer.isOpened()
    for t in range(12):
        writer.write(cv2.cvtColor(_frame(t % 6), cv2.COLOR_RGB2BGR))
    writer.release()
    data = full.read_bytes()
    half = root / "half.avi"
    half.write_bytes(data[: len(data) // 2])
    return full, half


def test_truncated_video_file_is_announced_and_strict_refuses_it(avi):
    full, half = avi
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(VideoFrames(full, image_size=32)) == 12
        assert not [w for w in caught if issubclass(w.category, FrameCountWarning)]
        frames = VideoFrames(half, image_size=32)
    n = len(frames)
    assert 0 < n < 12
    found = [w for w in caught if issubclass(w.category, FrameCountWarning)]
    assert len(found) == 1 and f"its header says 12 frames but {n} decode" in str(found[0].message)
    assert found[0].filename == __file__  # points at the caller, not at the library
    frames.get_rgb(n - 1)  # the frames it reports all decode
    with pytest.raises(FrameCountError, match=f"header says 12 frames but {n} decode"):
        VideoFrames(half, image_size=32, strict=True)
    assert len(VideoFrames(full, image_size=32, strict=True)) == 12


def test_cli_prints_warnings_as_one_line_notes(avi, ckpt, tmp_path, capsys):
    _, half = avi
    with pytest.warns(FrameCountWarning):
        n = len(VideoFrames(half, image_size=32))
    before = warnings.showwarning
    args = ["track", str(half), *_model(ckpt), "--dense", "--points", "14,20", "--no-progress"]
    assert main(args + ["--output", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and f"header says 12 frames but {n} decode" in notes[0]
    assert "Warning" not in err and ".py:" not in err and "warnings.warn" not in err
    assert len(os.listdir(tmp_path / "a")) == n
    assert warnings.showwarning is before  # restored after the command

    assert main(args + ["--output", str(tmp_path / "b"), "--strict"]) == 1
    err = capsys.readouterr().err
    assert f"error: video file {str(half)!r}: its header says 12 frames but {n} decode" in err
    assert not os.path.exists(tmp_path / "b")


def test_warnings_as_notes_in_one_line(capsys):
    previous = warnings.showwarning
    with warnings_as_notes(), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("first line\n   second  line", UserWarning)
    assert capsys.readouterr().err == "note: first line second line\n"
    assert warnings.showwarning is previous


# ---------------------------------------------------------------------------------------------------------------------
# 4. files that are not checkpoints


@pytest.fixture
def bad_files(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.zeros(4000)}}, good)
    data = good.read_bytes()
    files = {
        "random": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "empty": b"",
        "truncated": data[: len(data) // 2],
    }
    for name, payload in files.items():
        (tmp_path / f"{name}.pt").write_bytes(payload)
    return {name: tmp_path / f"{name}.pt" for name in files}


EXPECTED = {
    "random": "it is not a PyTorch {what} (its first bytes are not those of a file written by torch.save)",
    "empty": "it is an empty file (0 bytes), not a PyTorch {what}",
    "truncated": "it is a truncated or damaged PyTorch file",
}


def _one_sentence(text):
    assert "\n" not in text and "weights_only" not in text and "trust" not in text
    assert text.count(". ") == 0  # a single sentence


def test_checkpoints_that_are_not_pytorch_files(bad_files):
    for name, path in bad_files.items():
        with pytest.raises(CheckpointError) as exc:
            read_state_dict(path)
        text = str(exc.value)
        assert text.startswith(f"could not read checkpoint {path}: {EXPECTED[name].format(what='checkpoint')}")
        _one_sentence(text)
        with pytest.raises(ShortcutCheckpointError) as exc:
            load_shortcut(path)
        assert f"could not read it as a shortcut checkpoint: {EXPECTED[name].format(what='shortcut checkpoint')}" \
            in str(exc.value)
        _one_sentence(str(exc.value))


def test_objects_are_refused_without_advice_to_load_them_unsafely(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "hook": torch.nn.ReLU()}, path)
    with pytest.raises(TorchFileError) as exc:
        read_torch_file(path)
    assert "stores Python objects other than tensors (torch.nn.modules.activation.ReLU)" in str(exc.value)
    _one_sentence(str(exc.value))
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        read_torch_file(tmp_path / "nope.pt")


def test_training_state_that_is_not_a_pytorch_file(tmp_path, bad_files):
    from efficient_sam2.training import ShortcutTrainer, ShortcutTrainingError, TrainConfig

    out = tmp_path / "run"
    out.mkdir()
    (out / "training_state.pt").write_bytes(bad_files["random"].read_bytes())
    config = TrainConfig(model="tiny", checkpoint=str(tmp_path / "x.pt"), video_dir=str(tmp_path),
                         mask_dir=str(tmp_path), output_dir=str(out), resume=True, progress=False)
    with pytest.raises(ShortcutTrainingError, match="cannot resume: could not read training state .*: it is not a "
                                                    "PyTorch training state"):
        ShortcutTrainer(config)


def test_cli_error_for_a_random_bytes_checkpoint(tmp_path, bad_files, capsys):
    frames = _frames_folder(tmp_path / "frames")
    code = main(["track", str(frames), "--model", "tiny", "--checkpoint", str(bad_files["random"]), "--points",
                 "3,3", "--output", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert (f"error: could not read checkpoint {bad_files['random']}: it is not a PyTorch checkpoint (its first "
            "bytes are not those of a file written by torch.save)") in err.splitlines()
    assert "weights_only" not in err and "Traceback" not in err


def test_every_torch_load_goes_through_the_shared_reader():
    root = os.path.join(os.path.dirname(README), "efficient_sam2")
    calls = []
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
                calls += [os.path.relpath(os.path.join(folder, name), root) for node in ast.walk(tree)
                          if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                          and node.func.attr == "load" and isinstance(node.func.value, ast.Name)
                          and node.func.value.id == "torch"]
    assert calls == [os.path.join("io", "torch_files.py")]


# ---------------------------------------------------------------------------------------------------------------------
# 6. consistency


def test_automask_takes_no_progress_and_errors_show_the_subcommand_usage(capsys):
    args = build_parser().parse_args(["automask", "x.jpg", "--model", "tiny", "--checkpoint", "c.pt", "--output",
                                      "o", "--no-progress"])
    assert args.no_progress is True
    with pytest.raises(SystemExit) as exc:
        main(["automask", "x.jpg", "--model", "tiny", "--checkpoint", "c.pt", "--output", "o", "--bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: efficient-sam2 automask" in err and "efficient-sam2 automask: error: unrecognized arguments: " \
        "--bogus" in err
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("track", "vos", "eval", "download", "bench", "train-shortcut", "automask"):  # all take it
        assert "--no-progress" in sub.choices[name]._option_string_actions, name


def test_automatic_mask_generator_is_exported_lazily():
    from efficient_sam2 import AutomaticMaskGenerator
    from efficient_sam2.automask import AutomaticMaskGenerator as direct

    assert AutomaticMaskGenerator is direct
    code = ("import sys, efficient_sam2\n"
            "print('efficient_sam2.automask' in sys.modules, 'AutomaticMaskGenerator' in efficient_sam2.__all__)\n"
            "from efficient_sam2 import AutomaticMaskGenerator\n"
            "print('efficient_sam2.automask' in sys.modules, 'sklearn' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True", "True", "False"]


def test_train_config_lists_its_fields_for_an_unknown_keyword():
    from efficient_sam2.training import TrainConfig

    base = dict(model="tiny", checkpoint="c.pt", video_dir="v", mask_dir="m", output_dir="o")
    with pytest.raises(TypeError) as exc:
        TrainConfig(**base, kept_windows=0.3)
    text = str(exc.value)
    assert "unknown field(s) 'kept_windows'" in text
    assert "model, checkpoint, video_dir, mask_dir, output_dir, layout" in text and "efficient" in text
    assert "efficient=EfficientConfig(kept_windows=...)" in text
    with pytest.raises(TypeError, match="unknown field.*'epoch'.*epochs"):
        TrainConfig(**base, epoch=2)
    assert TrainConfig(**base).replace(epochs=2).epochs == 2


def test_readme_examples_are_self_contained():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    assert text.index("first_frame_mask =") < text.index("mask=first_frame_mask")
    assert 'pip install "efficient-sam2[automask]"' not in text and "efficient-sam2[automask]" not in text
    assert 'pip install -e ".[automask]"' in text
    assert "TrainConfig(" in text and "efficient=EfficientConfig(tau=" in text
    assert "EfficientConfig(kept_windows=0.25, dense_frames=1)" in text
