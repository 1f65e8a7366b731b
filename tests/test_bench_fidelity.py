"""`bench --fidelity`: masks of every configuration scored against dense SAM 2's on footage without ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from efficient_sam2 import EfficientConfig, build_sam2_video_predictor
from efficient_sam2.bench.fidelity import FidelityError, mask_fidelity, pair_prompts
from efficient_sam2.cli import main
from efficient_sam2.data.synthetic import generate_video
from efficient_sam2.evaluation.metrics import boundary_f_measure, region_similarity
from efficient_sam2.io.masks import write_palette_mask

pytestmark = pytest.mark.usefixtures("one_thread")
FRAMES = 6


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 6-frame video as a folder of JPEGs, a click prompt file and a first-frame mask PNG (no other ground
    truth anywhere)."""
    root = tmp_path_factory.mktemp("fid")
    video = generate_video(20261210, "fast_motion", frames=FRAMES)
    folder = root / "clip"
    folder.mkdir()
    for t, rgb in enumerate(video.frames):
        Image.fromarray(rgb).save(folder / f"{t:05d}.jpg", quality=95)
    lines = ["# clicks on frame 0", ""]
    for i in [int(i) for i in np.unique(video.masks[0]) if i]:
        ys, xs = np.nonzero(video.masks[0] == i)
        k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)  # the object's pixel nearest its centroid
        lines.append(f"point {i} 0 {xs[k]} {ys[k]}")
    (root / "clip.prompts").write_text("\n".join(lines) + "\n")
    write_palette_mask(str(root / "first.png"), video.masks[0])
    return root, video


def _by_hand(folder, prompt_file, cfg, post=True):
    """The masks of one configuration through the Python API (no overlap rule, as the benchmarks score them;
    `post`: the builder's post-processing, as `track` runs it, or none, as VOS evaluation runs it)."""
    from efficient_sam2.io.prompts import apply_prompts, load_prompts

    predictor = build_sam2_video_predictor("micro", efficient=cfg, apply_postprocessing=post,
                                           non_overlap_masks=False)
    state = predictor.init_state(str(folder))
    apply_prompts(predictor, state, load_prompts(prompt_file))
    return {t: {o: (m[k, 0] > 0).numpy() for k, o in enumerate(ids)}
            for t, ids, m in predictor.propagate_in_video(state, progress=False)}


def test_fidelity_cli_without_ground_truth(clip, tmp_path, capsys):
    root, video = clip
    out = tmp_path / "fid"
    rc = main(["bench", "--fidelity", str(root / "clip"), "--prompts", str(root / "clip.prompts"),
               "--configs", "paper,efficient", "--threads", "1", "--no-progress", "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    report = json.loads((out / "fidelity.json").read_text())
    assert printed == (out / "fidelity.md").read_text() + "\n"
    assert list(report["configs"]) == ["dense", "paper", "efficient"]
    dense = report["configs"]["dense"]
    assert dense["JF"] == 100 and dense["worst_frame_iou"] == 1 and dense["speedup"] == 1
    assert dense["ideal_speedup"] == {"sam2.1_hiera_large": 1.0, "sam2.1_hiera_base_plus": 1.0}
    assert report["command"].startswith("efficient-sam2 bench --fidelity")
    # independent: DAVIS J and F by hand on the masks the Python API gives for the same prompts
    ref = _by_hand(root / "clip", root / "clip.prompts", None)
    for name, cfg in (("paper", EfficientConfig.paper()), ("efficient", EfficientConfig())):
        got = _by_hand(root / "clip", root / "clip.prompts", cfg)
        c = report["configs"][name]
        js, fs = [], []
        for o in ref[0]:
            js.append(np.mean([region_similarity(ref[t][o], got[t][o]) for t in range(1, FRAMES)]))
            fs.append(np.mean([boundary_f_measure(ref[t][o], got[t][o]) for t in range(1, FRAMES)]))
        assert c["J"] == pytest.approx(100 * np.mean(js), abs=1e-6)
        assert c["JF"] == pytest.approx(50 * (np.mean(js) + np.mean(fs)), abs=1e-6)
        assert c["frames"] == FRAMES and c["objects"] == len(ref[0])
        if name == "paper":  # the router always skips windows; the defaults' guards may run this clip dense
            assert 0 < c["kept_window_fraction"] < 1 and c["ideal_speedup"]["sam2.1_hiera_large"] > 1
        else:
            assert 0 < c["kept_window_fraction"] <= 1 and c["ideal_speedup"]["sam2.1_hiera_large"] > 0
        assert f"`{name}`" in printed
    assert "Post-processing on" in printed
    # --postprocessing off: the masks as VOS evaluation (and `bench --accuracy`) computes them
    out = tmp_path / "fid_off"
    rc = main(["bench", "--fidelity", str(root / "clip"), "--prompts", str(root / "clip.prompts"), "--configs", "paper",
               "--postprocessing", "off", "--threads", "1", "--no-progress", "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "Post-processing off" in capsys.readouterr().out
    c = json.loads((out / "fidelity.json").read_text())["configs"]["paper"]
    ref = _by_hand(root / "clip", root / "clip.prompts", None, post=False)
    got = _by_hand(root / "clip", root / "clip.prompts", EfficientConfig.paper(), post=False)
    js = [np.mean([region_similarity(ref[t][o], got[t][o]) for t in range(1, FRAMES)]) for o in ref[0]]
    assert c["J"] == pytest.approx(100 * np.mean(js), abs=1e-6)


def test_fidelity_with_mask_prompts_and_a_prompt_folder(clip, tmp_path):
    from efficient_sam2.bench.fidelity import FidelitySettings, run_fidelity

    root, video = clip
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "clip.png").write_bytes((root / "first.png").read_bytes())
    settings = FidelitySettings(videos=(str(root / "clip"),), prompts=(str(folder),), configs=("smr",),
                                max_frames=4, threads=1)
    result = run_fidelity(settings, progress=False)
    assert result.configs["dense"]["frames"] == 4  # --max-frames from the prompted frame
    smr = result.configs["smr"]
    assert smr["kept_window_fraction"] == 1.0 and smr["kept_memory_fraction"] < 1.0
    assert 0 <= smr["JF"] <= 100 and smr["objects"] == len(np.unique(video.masks[0])) - 1


def test_mask_fidelity_by_hand():
    a = np.zeros((20, 20), bool)
    a[5:15, 5:15] = True
    b = np.zeros_like(a)
    b[5:15, 5:10] = True  # half of it
    same = mask_fidelity({1: {1: a}, 2: {1: a}}, {1: {1: a}, 2: {1: a}})
    assert same["JF"] == 100 and same["mean_iou"] == 1
    half = mask_fidelity({1: {1: a}, 2: {1: a}}, {1: {1: b}, 2: {}}, skip={1: {1}})  # frame 1 prompted: skipped
    assert half["J"] == 0 and half["objects"][1]["frames"] == 1  # frame 2's missing mask counts as empty
    one = mask_fidelity({1: {1: a}}, {1: {1: b}})
    assert one["mean_iou"] == pytest.approx(0.5) and one["worst_frame_iou"] == pytest.approx(0.5)


def test_prompt_pairing(tmp_path):
    (tmp_path / "a.prompts").write_text("point 1 0 1 1\n")
    assert pair_prompts(["x/a.mp4"], [str(tmp_path)]) == [str(tmp_path / "a.prompts")]
    with pytest.raises(FidelityError, match="no prompt file for video"):
        pair_prompts(["x/b.mp4"], [str(tmp_path)])
    with pytest.raises(FidelityError, match="one prompt file per video"):
        pair_prompts(["a.mp4", "b.mp4"], ["p1"])


@pytest.mark.parametrize("text, message", [
    ("point 1 0 10\n", ":1:"),
    ("# fine\npoint 1 0 10 10\npoint one 0 10 10\n", ":3:"),
    ("point 1 0 5000 10\n", "5000"),  # outside the 256 x 256 frames
])
def test_bad_prompt_files_are_refused_naming_the_line(clip, tmp_path, capsys, text, message):
    root, _ = clip
    bad = tmp_path / "bad.prompts"
    bad.write_text(text)
    out = tmp_path / "never"
    rc = main(["bench", "--fidelity", str(root / "clip"), "--prompts", str(bad), "--configs", "paper",
               "--threads", "1", "--no-progress", "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "bad.prompts" in err, err
    assert not out.exists()


def test_fidelity_flags_are_checked(clip, tmp_path, capsys):
    root, _ = clip
    assert main(["bench", "--fidelity", str(root / "clip"), "--no-progress"]) == 2
    assert "--prompts" in capsys.readouterr().err
    assert main(["bench", "--prompts", str(root / "clip.prompts"), "--model", "micro"]) == 2
    assert "go with --fidelity" in capsys.readouterr().err
    assert main(["bench", "--fidelity", str(tmp_path / "missing.mp4"), "--prompts", str(root / "clip.prompts")]) == 2
    assert "video not found" in capsys.readouterr().err
