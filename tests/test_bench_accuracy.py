"""`efficient-sam2 bench --accuracy`: J&F per configuration and stress subset, checked against `vos` + `eval`."""

import filecmp
import json
import os

import pytest
import torch

from efficient_sam2.bench.accuracy import (
    ACCURACY_CONFIGS,
    DEFAULT_CONFIGS,
    AccuracyError,
    AccuracySettings,
    run_accuracy,
)
from efficient_sam2.cli import main
from efficient_sam2.configs import get_config
from efficient_sam2.data import SUBSET_NAMES, write_dataset
from efficient_sam2.evaluation.vos import evaluate_vos
from efficient_sam2.modeling.sam2 import SAM2Model

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 64  # micro at 64 px: 4 x 4 tokens, one routed window


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """One video per subset, 4 frames long (2 scored); 'reappearance' needs 10 and comes from a second dataset,
    so its subset is read from the video name, the others' from meta.json."""
    root = tmp_path_factory.mktemp("acc_data") / "val"
    short = [s for s in SUBSET_NAMES if s != "reappearance"]
    write_dataset(root, videos=1, split="val", seed=0, subsets=short, frames=4, size=(64, 64), progress=False)
    other = root.parent / "long"
    write_dataset(other, videos=1, split="val", seed=0, subsets=["reappearance"], frames=10, size=(64, 64),
                  progress=False)
    for part in ("JPEGImages", "Annotations"):
        os.rename(other / part / "64p" / "reappearance_0000", root / part / "64p" / "reappearance_0000")
    return root


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = SAM2Model(get_config("micro", image_size=SIZE))
    path = tmp_path_factory.mktemp("acc_ckpt") / "micro.pt"
    torch.save({"model": model.state_dict()}, path)
    return str(path)


def _settings(data, out, ckpt, **kw):
    return AccuracySettings(data=str(data), output=str(out), checkpoint=ckpt, image_size=SIZE, eval_workers=0, **kw)


def test_cli_report_has_every_config_and_subset_and_dense_equals_vos_then_eval(tmp_path, data, ckpt, capsys):
    out = tmp_path / "acc"
    rc = main(["bench", "--accuracy", "--data", str(data), "--output", str(out), "--checkpoint", ckpt,
               "--image-size", str(SIZE), "--threads", "1", "--warmup", "0", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    report = json.loads((out / "accuracy.json").read_text())
    md = (out / "accuracy.md").read_text()
    assert printed == md + "\n"
    assert list(report["configs"]) == list(DEFAULT_CONFIGS)
    assert report["command"].startswith("efficient-sam2 bench --accuracy --data")
    for name, c in report["configs"].items():
        assert f"`{name}`" in md
        assert list(c["subsets"]) == list(SUBSET_NAMES)
        for part in [c["overall"], *c["subsets"].values()]:
            for key in ("JF", "J", "F", "delta_JF", "kept_window_fraction", "kept_memory_fraction", "speedup",
                        "ms_per_frame"):
                assert part[key] is not None, (name, key)
        assert c["overall"]["videos"] == len(SUBSET_NAMES) and c["overall"]["frames"] == 4 * 6 + 10
    dense = report["configs"]["dense"]["overall"]
    assert dense["delta_JF"] == 0 and dense["speedup"] == 1 and dense["saliency_fallback_rate"] is None
    assert report["configs"]["smr"]["overall"]["kept_memory_fraction"] < 1
    # fidelity: every configuration's masks scored against dense's, independently recomputed with evaluate_vos
    assert dense["fidelity"]["JF"] == 100 and dense["ideal_speedup"]["sam2.1_hiera_large"] == 1.0
    assert "fidelity J&F" in md and "ideal large" in md
    for name in ("smr", "paper", "efficient"):
        c = report["configs"][name]["overall"]
        ev = evaluate_vos(out / "predictions" / "dense", out / "predictions" / name, num_workers=0, progress=False)
        assert c["fidelity"]["JF"] == pytest.approx(ev.JF, abs=1e-9)
        assert c["fidelity_worst_video_JF"] <= c["fidelity"]["JF"] + 1e-9
        if name != "efficient":
            assert c["ideal_speedup"]["sam2.1_hiera_large"] > 1.0  # something was skipped
        else:  # random weights on a few small frames: the guards and change windows may keep everything, and the
            # routed path's bookkeeping (residuals, context) costs FLOPs of its own
            assert 0.5 < c["ideal_speedup"]["sam2.1_hiera_large"] < 3.0
    assert report["configs"]["swr"]["overall"]["saliency_fallback_rate"] is not None
    assert any("untrained shortcut" in n for n in report["notes"])
    eff = report["configs"]["efficient"]
    assert eff["overall"]["delta_JF"] == pytest.approx(eff["overall"]["JF"] - dense["JF"])
    # the overall score is the mean over objects of the subsets' objects
    subs = eff["subsets"].values()
    assert eff["overall"]["J"] == pytest.approx(sum(s["J"] * s["objects"] for s in subs) /
                                                sum(s["objects"] for s in subs))

    # independent: `vos --dense` on the same data, then `evaluate_vos`
    vos_out = tmp_path / "vos"
    rc = main(["vos", "--layout", "davis", "--video-dir", str(data / "JPEGImages" / "64p"), "--mask-dir",
               str(data / "Annotations" / "64p"), "--output-dir", str(vos_out), "--model", "micro", "--checkpoint",
               ckpt, "--image-size", str(SIZE), "--dense", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    ev = evaluate_vos(data / "Annotations" / "64p", vos_out, num_workers=0, progress=False)
    assert ev.JF == pytest.approx(dense["JF"], abs=1e-9)
    assert ev.J == pytest.approx(dense["J"], abs=1e-9) and ev.F == pytest.approx(dense["F"], abs=1e-9)
    for video in os.listdir(out / "ground_truth"):
        cmp = filecmp.dircmp(out / "predictions" / "dense" / video, vos_out / video)
        assert cmp.left_only == cmp.right_only == [] and not cmp.diff_files
        assert sorted(cmp.same_files) == sorted(os.listdir(vos_out / video))
        # (filecmp compares file contents only when sizes and times differ: compare bytes outright)
        for f in cmp.same_files:
            assert (out / "predictions" / "dense" / video / f).read_bytes() == (vos_out / video / f).read_bytes()
    # `eval` on the report's own ground-truth folder gives the dense row again
    again = evaluate_vos(out / "ground_truth", out / "predictions" / "dense", num_workers=0, progress=False)
    assert again.JF == pytest.approx(dense["JF"], abs=1e-9)


def test_keeping_everything_equals_dense_exactly(tmp_path, data, ckpt):
    result = run_accuracy(_settings(data, tmp_path / "acc", ckpt, configs=("efficient", "swr"),
                                    subsets=("standard", "occlusion"), kept_windows=1.0, sparsity=0.0, warmup=0),
                          progress=False)
    assert list(result.configs) == ["dense", "efficient", "swr"]
    assert list(result.data["subsets"]) == ["standard", "occlusion"]
    for name in ("efficient", "swr"):
        overall = result.configs[name]["overall"]
        assert overall["delta_JF"] == 0 and overall["kept_window_fraction"] == 1.0
        for video in ("standard_0000", "occlusion_0000"):
            a, b = tmp_path / "acc" / "predictions" / "dense" / video, tmp_path / "acc" / "predictions" / name / video
            assert sorted(os.listdir(a)) == sorted(os.listdir(b))
            assert all((a / f).read_bytes() == (b / f).read_bytes() for f in os.listdir(a))
    assert result.configs["efficient"]["overall"]["kept_memory_fraction"] == 1.0
    assert result.configs["efficient"]["overall"]["fidelity"]["JF"] == 100


def test_every_configuration_runs(tmp_path, data, ckpt):
    """The rows not run by default (the paper's ablations) still run when asked for."""
    others = tuple(c for c in ACCURACY_CONFIGS if c not in DEFAULT_CONFIGS)
    result = run_accuracy(_settings(data, tmp_path / "acc", ckpt, configs=others, subsets=("standard",), warmup=0),
                          progress=False)
    assert list(result.configs) == ["dense", *others]
    assert result.configs["mempool"]["overall"]["kept_memory_fraction"] < 1


def test_output_folder_overwrite_and_videos_per_subset(tmp_path, data, ckpt):
    out = tmp_path / "acc"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(AccuracyError, match="not empty.*--overwrite"):
        _settings(data, out, ckpt, configs=("dense",)).validate()
    result = run_accuracy(_settings(data, out, ckpt, configs=("dense", "smr"), subsets=("scene_cut",),
                                    videos_per_subset=1, overwrite=True, warmup=0), progress=False)
    assert (out / "mine.txt").read_text() == "keep me"
    assert os.listdir(out / "ground_truth") == ["scene_cut_0000"]
    assert result.data["num_videos"] == 1 and result.exit_code == 0
    assert sorted(os.listdir(out / "predictions")) == ["dense", "smr"]


def test_bad_inputs_are_explained(tmp_path, data, ckpt, capsys):
    with pytest.raises(AccuracyError, match="unknown configuration 'fast'.*valid configurations: dense, swr-identity"):
        _settings(data, tmp_path / "o1", ckpt, configs=("dense", "fast")).validate()
    with pytest.raises(AccuracyError, match="subset.*nope.*its subsets: standard"):
        run_accuracy(_settings(data, tmp_path / "o2", ckpt, subsets=("nope",)), progress=False)
    with pytest.raises(AccuracyError, match="--videos-per-subset must be at least 1"):
        _settings(data, tmp_path / "o3", ckpt, videos_per_subset=0).validate()
    with pytest.raises(AccuracyError, match="data folder not found"):
        run_accuracy(_settings(tmp_path / "missing", tmp_path / "o4", ckpt), progress=False)
    # a dataset without annotations, and one annotated on its first frame only (DAVIS / MOSE validation style)
    bare = tmp_path / "bare"
    (bare / "JPEGImages" / "64p" / "v").mkdir(parents=True)
    with pytest.raises(AccuracyError, match="has no annotations.*Annotations"):
        run_accuracy(_settings(bare, tmp_path / "o5", ckpt), progress=False)
    ann = bare / "Annotations" / "64p" / "v"
    ann.mkdir(parents=True)
    (ann / "00000.png").write_bytes(b"")
    with pytest.raises(AccuracyError, match="1 annotated frame.*at least 3"):
        run_accuracy(_settings(bare, tmp_path / "o6", ckpt), progress=False)
    assert not (tmp_path / "o5").exists() and not (tmp_path / "o6").exists()

    def cli(*extra):
        rc = main(["bench", *extra])
        return rc, capsys.readouterr().err

    rc, err = cli("--accuracy", "--output", str(tmp_path / "o7"))
    assert rc == 2 and "--accuracy needs --data" in err
    rc, err = cli("--accuracy", "--data", str(data), "--output", str(tmp_path / "o8"), "--json", "x.json")
    assert rc == 2 and "--json" in err and "cannot go with --accuracy" in err
    rc, err = cli("--accuracy", "--data", str(data), "--output", str(tmp_path / "o9"), "--configs", "dense,bogus")
    assert rc == 2 and "unknown configuration 'bogus'" in err and "mempool" in err
    rc, err = cli("--data", str(data))
    assert rc == 2 and "--data go(es) with --accuracy" in err
    rc, err = cli("--frames", "12")
    assert rc == 2 and "--model is required" in err


def test_a_failing_video_is_left_out_of_every_score(tmp_path, data, ckpt):
    import shutil

    import numpy as np

    from efficient_sam2.io.masks import read_palette_mask, write_palette_mask

    root = tmp_path / "data"
    for part in ("JPEGImages", "Annotations"):
        for video in ("standard_0000", "scene_cut_0000"):
            shutil.copytree(data / part / "64p" / video, root / part / "64p" / video)
    first = root / "Annotations" / "64p" / "scene_cut_0000" / "00000.png"
    ids, palette = read_palette_mask(str(first))
    write_palette_mask(str(first), np.zeros_like(ids), palette)  # its objects now "appear later": vos refuses it
    result = run_accuracy(_settings(root, tmp_path / "acc", ckpt, configs=("dense", "smr"), warmup=0),
                          progress=False)
    assert result.exit_code == 1 and {f["video"] for f in result.failures} == {"scene_cut_0000"}
    assert {f["config"] for f in result.failures} == {"dense", "smr"}
    assert list(result.data["subsets"]) == ["standard"] and result.configs["smr"]["overall"]["videos"] == 1
    assert os.listdir(tmp_path / "acc" / "ground_truth") == ["standard_0000"]
    assert "scene_cut_0000 (dense)" in result.markdown() and "appear later" in result.markdown()
