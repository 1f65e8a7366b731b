"""Synthetic VOS data: determinism, exact ground truth, the stress subsets, the DAVIS-layout writer and the CLI."""

import json
import os

import cv2
import numpy as np
import pytest

from efficient_sam2.data import (
    DEFAULT_RESOLUTION,
    MIN_FIRST_FRAME_AREA,
    SUBSET_NAMES,
    Layer,
    SyntheticConfig,
    dataset_layout,
    generate_video,
    render_frame,
    video_seed,
    write_dataset,
)
from efficient_sam2.io.masks import read_palette_mask

SMALL = dict(frames=12, size=(96, 128))


@pytest.fixture(scope="module")
def videos():
    """One default-size (24 x 256 x 256) video per subset."""
    return {s: generate_video(7, s) for s in SUBSET_NAMES}


def _synth(*argv):
    from efficient_sam2.cli import main

    return main(["synth", *map(str, argv)])


# ---------------------------------------------------------------------------------------------------------------------
# Generation


def test_deterministic_for_a_seed():
    a, b = generate_video(3, "standard", **SMALL), generate_video(3, "standard", **SMALL)
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))
    assert all(np.array_equal(x, y) for x, y in zip(a.masks, b.masks))
    assert np.array_equal(a.visible, b.visible) and np.array_equal(a.camera, b.camera)
    c = generate_video(4, "standard", **SMALL)
    assert not all(np.array_equal(x, y) for x, y in zip(a.frames, c.frames))
    d = generate_video(3, "occlusion", **SMALL)  # the subset is part of the seed
    assert not np.array_equal(a.frames[0], d.frames[0])


def test_shapes_and_prompt_frame(videos):
    for subset, v in videos.items():
        assert v.num_frames == 24 and len(v.masks) == 24 and v.config.subset == subset
        assert 1 <= v.num_objects <= 4
        for frame, mask in zip(v.frames, v.masks):
            assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8
            assert mask.shape == (256, 256) and mask.dtype == np.uint8 and mask.max() <= v.num_objects
        # frame 0 is the prompt: every object clearly visible
        area = np.bincount(v.masks[0].ravel(), minlength=v.num_objects + 1)[1:]
        assert (area >= MIN_FIRST_FRAME_AREA * 256 * 256).all(), (subset, area)


def test_non_square_size():
    v = generate_video(1, "scene_cut", frames=10, size=(120, 200))
    assert v.frames[0].shape == (120, 200, 3) and v.masks[-1].shape == (120, 200)
    assert v.cut_frame is not None and 2 <= v.cut_frame <= 8


def test_visibility_bookkeeping(videos):
    for subset, v in videos.items():
        n = v.num_objects
        for t, (mask, others) in enumerate(zip(v.masks, v.non_target_maps)):
            counts = np.bincount(mask.ravel(), minlength=n + 1)
            assert np.array_equal(counts[1:], v.visible[t]), subset
            assert counts.sum() == mask.size  # one label per pixel: objects never share a pixel
            assert not (others[mask > 0]).any()  # a pixel shows a target or a non-target, never both
        assert (v.visible <= v.unoccluded).all()
        assert np.array_equal(v.occluded, v.visible < v.unoccluded)


def test_render_frame_is_the_ground_truth():
    h, w = 40, 50
    background = np.full((h, w, 3), 10, np.uint8)

    def layer(y0, y1, x0, x1, colour, label):
        mask = np.zeros((h, w), bool)
        mask[y0:y1, x0:x1] = True
        return Layer(mask, np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)).copy(), label)

    back = layer(5, 25, 5, 25, (200, 0, 0), 1)     # object 1, behind
    front = layer(15, 35, 15, 35, (0, 200, 0), 2)  # object 2, in front, overlapping 10 x 10
    other = layer(0, 8, 40, 50, (0, 0, 200), 0)    # a non-target
    out = render_frame(background, [back, front, other])
    assert out.labels[20, 20] == 2 and tuple(out.image[20, 20]) == (0, 200, 0)  # overlap: object 2 wins
    assert out.labels[8, 8] == 1 and tuple(out.image[8, 8]) == (200, 0, 0)
    assert out.labels[2, 45] == 0 and tuple(out.image[2, 45]) == (0, 0, 200) and out.owner[2, 45] == 3
    assert out.labels[38, 2] == 0 and tuple(out.image[38, 2]) == (10, 10, 10)
    # the object behind loses exactly the overlap; counts add up
    assert (out.labels == 1).sum() == back.mask.sum() - 100
    assert (out.labels == 2).sum() == front.mask.sum()
    assert not ((out.labels == 1) & front.mask).any()
    assert np.bincount(out.labels.ravel()).sum() == h * w
    # the label of every pixel is the object whose colour it shows
    for label, colour in ((1, (200, 0, 0)), (2, (0, 200, 0))):
        assert (out.image[out.labels == label] == colour).all()
    # reversed depth order: object 1 wins the overlap
    out2 = render_frame(background, [front, back])
    assert out2.labels[20, 20] == 1 and (out2.labels == 2).sum() == front.mask.sum() - 100


def test_render_frame_rejects_bad_layers():
    bg = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="mask must be"):
        render_frame(bg, [Layer(np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.uint8), 1)])
    with pytest.raises(ValueError, match="background"):
        render_frame(np.zeros((8, 8), np.uint8), [])


def test_occlusion_subset(videos):
    v = videos["occlusion"]
    frac = 1 - v.visible / np.maximum(v.unoccluded, 1)
    big = v.unoccluded >= MIN_FIRST_FRAME_AREA * 256 * 256
    assert ((frac >= 0.5) & big).any()  # some object at least half hidden behind something


def test_reappearance_subset(videos):
    v = videos["reappearance"]
    found = False
    for k in range(v.num_objects):
        gone = [t for t in range(v.num_frames) if not (v.masks[t] == k + 1).any()]
        runs = np.split(np.array(gone), np.flatnonzero(np.diff(gone) > 1) + 1) if gone else []
        for run in runs:
            if len(run) >= 3 and v.visible[run[-1] + 1:, k].max(initial=0) > 0:
                found = True
    assert found


def test_scene_cut_subset(videos):
    v = videos["scene_cut"]
    c = v.cut_frame
    diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() for a, b in zip(v.frames[:-1], v.frames[1:])]
    assert diffs[c - 1] >= 30 and diffs[c - 1] > 3 * max(np.delete(diffs, c - 1))
    assert (v.visible[c] >= MIN_FIRST_FRAME_AREA * 256 * 256).all()  # the objects are there again, elsewhere


def _background_residual(v, t, use_camera: bool) -> float:
    """Mean abs difference of frame t's background and frame t-1 moved by the camera (or not moved)."""
    h, w = v.config.size
    rel = np.eye(3)[:2]
    if use_camera:
        a, b = np.vstack([v.camera[t], [0, 0, 1]]), np.vstack([v.camera[t - 1], [0, 0, 1]])
        rel = (a @ np.linalg.inv(b))[:2]
    prev = cv2.warpAffine(v.frames[t - 1], rel, (w, h), flags=cv2.INTER_LINEAR)
    bg = (v.masks[t] == 0) & (v.masks[t - 1] == 0) & (v.non_target_maps[t] == 0) & (v.non_target_maps[t - 1] == 0)
    bg[:24], bg[-24:], bg[:, :24], bg[:, -24:] = False, False, False, False
    return float(np.abs(prev.astype(np.int16) - v.frames[t].astype(np.int16))[bg].mean())


def test_camera_shake_subset(videos):
    v = videos["camera_shake"]
    centre = v.camera @ np.array([127.5, 127.5, 1.0])
    shift = np.linalg.norm(np.diff(centre, axis=0), axis=1)
    assert np.median(shift) > 4  # the background jumps by several pixels from frame to frame
    calm = np.linalg.norm(np.diff(videos["standard"].camera @ np.array([127.5, 127.5, 1.0]), axis=0), axis=1)
    assert np.median(calm) < 2
    # the pixels agree: frame t-1 moved by the recorded camera motion matches frame t far better than unmoved
    moved = np.mean([_background_residual(v, t, True) for t in range(1, v.num_frames)])
    still = np.mean([_background_residual(v, t, False) for t in range(1, v.num_frames)])
    assert moved < 0.6 * still, (moved, still)


def test_distractors_subset(videos):
    v = videos["distractors"]
    kinds = [nt.kind for nt in v.non_targets]
    assert kinds and set(kinds) == {"distractor"}
    for j, nt in enumerate(v.non_targets):
        px = np.concatenate([f[m == j + 1] for f, m in zip(v.frames, v.non_target_maps)])
        assert len(px) >= MIN_FIRST_FRAME_AREA * 256 * 256
        assert all(not (mask[others == j + 1]).any() for mask, others in zip(v.masks, v.non_target_maps))
        target = np.concatenate([f[m == nt.looks_like] for f, m in zip(v.frames, v.masks)])
        bg = np.concatenate([f[(m == 0) & (o == 0)] for f, m, o in zip(v.frames, v.masks, v.non_target_maps)])
        # object-textured: its colours are the target's, not the background's
        assert np.linalg.norm(px.mean(0) - target.mean(0)) < 0.5 * np.linalg.norm(px.mean(0) - bg.mean(0))


def _median_speed(v) -> float:
    speeds = []
    for k in range(1, v.num_objects + 1):
        centres = []
        for m in v.masks:
            ys, xs = np.nonzero(m == k)
            centres.append((xs.mean(), ys.mean()) if len(xs) else (np.nan, np.nan))
        speeds.append(np.nanmedian(np.linalg.norm(np.diff(np.array(centres), axis=0), axis=1)))
    return float(np.mean(speeds))


def test_fast_motion_subset(videos):
    assert _median_speed(videos["fast_motion"]) > 2 * _median_speed(videos["standard"])


def test_config_errors():
    with pytest.raises(ValueError, match="valid subsets: standard, fast_motion"):
        SyntheticConfig(subset="nope")
    with pytest.raises(ValueError, match="between 32 and 4096"):
        SyntheticConfig(size=(16, 256))
    with pytest.raises(ValueError, match="at least 10 frames"):
        SyntheticConfig(subset="reappearance", frames=6)
    with pytest.raises(ValueError, match="num_objects"):
        SyntheticConfig(num_objects=5)
    with pytest.raises(ValueError, match="non-negative"):
        generate_video(-1)


# ---------------------------------------------------------------------------------------------------------------------
# Writing


def test_splits_never_share_a_seed():
    train = {video_seed(0, "train", s, i) for s in SUBSET_NAMES for i in range(50)}
    val = {video_seed(0, "val", s, i) for s in SUBSET_NAMES for i in range(50)}
    assert len(train) == len(val) == 50 * len(SUBSET_NAMES) and not train & val


def test_write_dataset_davis_layout(tmp_path):
    from efficient_sam2.evaluation.vos import evaluate_vos
    from efficient_sam2.io.datasets import VOSDataset

    size, frames = (64, 96), 10
    names = write_dataset(tmp_path / "train", 2, "train", 5, subsets=("standard", "reappearance"), frames=frames,
                          size=size, progress=False)
    assert names == ["standard_0000", "standard_0001", "reappearance_0000", "reappearance_0001"]
    layout = dataset_layout(tmp_path / "train", "train", size)
    assert layout.video_dir.endswith(os.path.join("JPEGImages", "64p"))
    assert DEFAULT_RESOLUTION == "256p"
    with open(layout.video_list) as f:
        assert f.read().split() == names
    with open(layout.meta) as f:
        meta = json.load(f)
    assert meta["complete"] and meta["split"] == "train" and meta["counts"]["videos"] == 4
    assert meta["counts"]["frames"] == 4 * frames and meta["resolution"] == "64p"

    ds = VOSDataset("davis", layout.video_dir, layout.mask_dir, layout.video_list)
    assert ds.videos == sorted(names)
    for entry in meta["videos"]:
        name = entry["name"]
        assert ds.frame_names(name) == [f"{t:05d}" for t in range(frames)]
        ann = ds.annotations(name)
        assert ann.annotated == list(range(frames)) and ann.size == size
        assert all(obj.first_frame == 0 for obj in ann.objects.values())
        # meta.json's seed rebuilds the video; the PNGs are its exact label maps, the JPEGs its frames
        v = generate_video(entry["seed"], entry["subset"], frames=frames, size=size)
        for t in range(frames):
            ids, palette = read_palette_mask(os.path.join(layout.mask_dir, name, f"{t:05d}.png"))
            assert palette is not None and np.array_equal(ids, v.masks[t])
        jpg = cv2.cvtColor(cv2.imread(os.path.join(layout.video_dir, name, "00003.jpg")), cv2.COLOR_BGR2RGB)
        assert np.abs(jpg.astype(np.int16) - v.frames[3]).mean() < 6

    # val with the same --seed: different videos under the same names
    write_dataset(tmp_path / "val", 1, "val", 5, subsets=("standard",), frames=frames, size=size, progress=False)
    a = cv2.imread(os.path.join(layout.video_dir, "standard_0000", "00000.jpg"))
    b = cv2.imread(os.path.join(dataset_layout(tmp_path / "val", "val", size).video_dir, "standard_0000", "00000.jpg"))
    assert np.abs(a.astype(np.int16) - b).mean() > 10

    # ground truth scored against itself: J&F 100
    result = evaluate_vos(layout.mask_dir, layout.mask_dir, num_workers=0, progress=False)
    assert result.JF == pytest.approx(100.0)


def test_refuses_a_non_empty_folder(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_dataset(out, 1, "train", 0, frames=4, size=(64, 64), progress=False)
    assert _synth("--out", out, "--videos", 1, "--split", "train", "--seed", 0, "--frames", 4, "--size", 64,
                  "--no-progress") == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["notes.txt"]


def test_overwrite_keeps_other_files(tmp_path):
    out, size = tmp_path / "data", (64, 64)
    write_dataset(out, 2, "train", 0, frames=6, size=size, progress=False)
    layout = dataset_layout(out, "train", size)
    (out / "notes.txt").write_text("mine")
    (out / "JPEGImages" / "64p" / "standard_0000" / "notes.txt").write_text("mine too")
    os.makedirs(out / "JPEGImages" / "64p" / "my_video")
    (out / "JPEGImages" / "64p" / "my_video" / "00000.jpg").write_bytes(b"not ours")

    names = write_dataset(out, 1, "val", 1, frames=4, size=size, overwrite=True, progress=False)
    assert names == ["standard_0000"]
    assert (out / "notes.txt").read_text() == "mine"
    video_dir = out / "JPEGImages" / "64p" / "standard_0000"
    assert sorted(os.listdir(video_dir)) == ["00000.jpg", "00001.jpg", "00002.jpg", "00003.jpg", "notes.txt"]
    assert sorted(os.listdir(out / "Annotations" / "64p" / "standard_0000")) == [f"{t:05d}.png" for t in range(4)]
    assert not (out / "JPEGImages" / "64p" / "standard_0001").exists()  # the old run's video, removed
    assert (out / "JPEGImages" / "64p" / "my_video" / "00000.jpg").read_bytes() == b"not ours"
    assert not os.path.exists(layout.video_list) and (out / "ImageSets" / "val.txt").exists()
    assert not [e for e in os.listdir(out / "JPEGImages" / "64p") if e.startswith(".")]  # no temporary folders


def test_interrupted_run_leaves_no_half_video(tmp_path, monkeypatch):
    import efficient_sam2.data.writer as writer

    out, size, calls = tmp_path / "data", (64, 64), {"n": 0}
    real = writer.write_palette_mask

    def interrupted(path, ids):
        calls["n"] += 1
        if calls["n"] == 9:  # frame 3 of the second video
            raise KeyboardInterrupt
        real(path, ids)

    monkeypatch.setattr(writer, "write_palette_mask", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(out, 2, "train", 0, frames=6, size=size, progress=False)
    for tree in ("JPEGImages", "Annotations"):
        assert os.listdir(out / tree / "64p") == ["standard_0000"]  # no partial video, no temporary folder
    with open(out / "meta.json") as f:
        assert json.load(f)["complete"] is False
    monkeypatch.undo()
    write_dataset(out, 2, "train", 0, frames=6, size=size, overwrite=True, progress=False)
    assert sorted(os.listdir(out / "Annotations" / "64p")) == ["standard_0000", "standard_0001"]


def test_cli_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "synth"
    assert _synth("--out", out, "--videos", 1, "--split", "val", "--seed", 1, "--subset", "standard,occlusion",
                  "--frames", 5, "--size", "64x96", "--no-progress") == 0
    stdout = capsys.readouterr().out
    assert "wrote 2 val videos (10 frames, 64x96" in stdout and "JPEGImages/64p" in stdout
    assert sorted(os.listdir(out / "Annotations" / "64p")) == ["occlusion_0000", "standard_0000"]


@pytest.mark.parametrize("args, message", [
    (["--subset", "standard,bogus"], "unknown subset 'bogus'; valid subsets: standard, fast_motion"),
    (["--videos", 0], "--videos must be >= 1"),
    (["--size", "12x"], "--size must be N or HxW"),
    (["--size", 16], "between 32 and 4096"),
    (["--subset", "reappearance", "--frames", 5], "needs at least 10 frames"),
])
def test_cli_errors(tmp_path, capsys, args, message):
    base = {"--out": tmp_path / "o", "--videos": 1, "--split": "train", "--seed": 0, "--frames": 4}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = [x for kv in base.items() for x in kv] + ["--no-progress"]
    assert _synth(*argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
