"""`efficient-sam2 track`, the overlay writer, and the command line as a whole (help of every subcommand)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from efficient_sam2 import build_sam2_video_predictor
from efficient_sam2.cli import build_parser, main
from efficient_sam2.io.masks import DAVIS_PALETTE, write_palette_mask
from efficient_sam2.io.overlay import OverlayError, OverlayWriter, overlay_ids, write_overlay_video
from reference_oracle import randomize_

SIZE = 128
H, W = 40, 56
N = 2


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    m = build_sam2_video_predictor("tiny", weights="random", image_size=SIZE)
    randomize_(m.model, 1)
    path = tmp_path_factory.mktemp("ckpt") / "tiny128.pt"
    torch.save({"model": m.model.state_dict()}, path)
    return str(path)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """N JPEG frames with two moving objects, and the palette mask of frame 0 (ids 1 and 3)."""
    root = tmp_path_factory.mktemp("video")
    (root / "frames").mkdir()
    yy, xx = np.mgrid[:H, :W]
    base = np.random.default_rng(0).integers(0, 60, (H, W, 3)).astype(np.uint8)
    for t in range(N):
        img = base.copy()
        img[(yy - 20) ** 2 + (xx - (14 + 3 * t)) ** 2 < 8**2] = (230, 40, 40)
        img[4 + 2 * t : 16 + 2 * t, 36:50] = (40, 220, 80)
        Image.fromarray(img).save(root / "frames" / f"{t:05d}.jpg", quality=95)
    ids = np.zeros((H, W), np.uint8)
    ids[4:16, 36:50] = 3
    ids[(yy - 20) ** 2 + (xx - 14) ** 2 < 8**2] = 1
    write_palette_mask(root / "mask.png", ids)
    return root


def _model(ckpt):
    return ["--model", "tiny", "--checkpoint", ckpt, "--image-size", str(SIZE)]


def _png(path):
    with Image.open(path) as im:
        return im.mode, np.array(im), bytes(im.getpalette()[:768])


def _assert_predictor_masks(p, video, got) -> None:
    """got[t] (the id map written for frame t) equals the predictor's own non-overlapping logits from mask.png's
    objects 1 and 3 on frame 0, thresholded and painted lowest id last (wins)."""
    state = p.init_state(str(video / "frames"))
    mask = _png(video / "mask.png")[1]
    p.add_new_mask(state, 0, 1, mask == 1)
    p.add_new_mask(state, 0, 3, mask == 3)
    for t, obj_ids, logits in p.propagate_in_video(state, progress=False):
        expected = np.zeros((H, W), np.uint8)
        for k in reversed(range(len(obj_ids))):
            expected[(logits[k, 0] > 0).numpy()] = obj_ids[k]
        np.testing.assert_array_equal(got[t], expected)


def test_track_mask_prompt_with_overlay(tmp_path, ckpt, video, capsys):
    out, mp4 = tmp_path / "masks", tmp_path / "overlay.mp4"
    rc = main(["track", str(video / "frames"), *_model(ckpt), "--mask", str(video / "mask.png"), "--dense",
               "--output", str(out), "--overlay", str(mp4), "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "tracked 2 object(s) [1, 3] over 2 frames" in printed and "frames/s" in printed
    got = []
    for t in range(N):
        mode, ids, pal = _png(out / f"{t:05d}.png")
        assert mode == "P" and ids.shape == (H, W) and pal == DAVIS_PALETTE
        assert set(np.unique(ids)) <= {0, 1, 3}
        got.append(ids)
    assert sorted(os.listdir(out)) == [f"{t:05d}.png" for t in range(N)]

    # Independent: the predictor's own masks
    _assert_predictor_masks(build_sam2_video_predictor("tiny", ckpt, image_size=SIZE, non_overlap_masks=True),
                            video, got)

    cap = cv2.VideoCapture(str(mp4))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    cap.release()
    assert len(frames) == N and frames[0].shape == (H, W, 3)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp.mp4")]


def test_track_points_box_backward_and_overwrite(tmp_path, ckpt, video, capsys):
    out = tmp_path / "masks"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    args = ["track", str(video / "frames"), *_model(ckpt), "--points", "20,20", "30,10,0", "--box", "5,5,40,35",
            "--frame", "1", "--obj-id", "7", "--output", str(out), "--no-progress"]
    assert main(args) == 2  # not empty: refused before anything is loaded
    assert "--overwrite" in capsys.readouterr().err and (out / "keep.txt").read_text() == "user data"

    assert main(args + ["--overwrite"]) == 0
    captured = capsys.readouterr()
    assert "efficient: kept-window fraction" in captured.out  # efficient by default
    # --overwrite writes the frame PNGs and leaves the user's file alone (named in a note)
    assert sorted(os.listdir(out)) == [f"{t:05d}.png" for t in range(N)] + ["keep.txt"]  # backward pass: frame 0
    assert (out / "keep.txt").read_text() == "user data"
    assert "note:" in captured.err and "keep.txt" in captured.err
    assert all(set(np.unique(_png(out / f"{t:05d}.png")[1])) <= {0, 7} for t in range(N))


def test_track_bad_inputs(tmp_path, ckpt, video, capsys):
    frames = str(video / "frames")
    out = str(tmp_path / "o")

    def err(argv, code):
        assert main(argv) == code
        msg = capsys.readouterr().err
        assert "Traceback" not in msg
        return msg

    assert "give a prompt" in err(["track", frames, *_model(ckpt), "--output", out], 2)
    assert "cannot be combined" in err(["track", frames, *_model(ckpt), "--mask", str(video / "mask.png"),
                                        "--points", "1,1", "--output", out], 2)
    with pytest.raises(SystemExit):
        main(["track", frames, *_model(ckpt), "--points", "1,2,3,4", "--output", out])
    assert "expected 2 or 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["track", frames, *_model(ckpt), "--box", "10,10,5,5", "--output", out])
    assert "X1 >= X0" in capsys.readouterr().err
    small = tmp_path / "small.png"
    write_palette_mask(small, np.ones((H // 2, W), np.uint8))
    assert "56x20 (WxH) but the video's frames are 56x40" in err(
        ["track", frames, *_model(ckpt), "--mask", str(small), "--output", out], 1)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(rgb)
    assert "RGB colour image" in err(["track", frames, *_model(ckpt), "--mask", str(rgb), "--output", out], 1)
    assert "outside the video" in err(["track", frames, *_model(ckpt), "--points", "3,3", "--frame", "9",
                                       "--output", out], 1)
    assert "not found" in err(["track", str(tmp_path / "nope"), *_model(ckpt), "--points", "3,3",
                               "--output", out], 1)
    assert "checkpoint file not found" in err(["track", frames, "--model", "tiny", "--checkpoint",
                                               str(tmp_path / "missing.pt"), "--points", "3,3", "--output", out], 1)
    assert "several objects" in err(["track", frames, *_model(ckpt), "--mask", str(video / "mask.png"),
                                     "--obj-id", "2", "--output", out], 1)
    assert not os.path.exists(out)


def test_track_defaults_to_the_bundled_micro_model(tmp_path, video, capsys):
    parser = build_parser()
    args = parser.parse_args(["track", str(video / "frames"), "--points", "20,20", "--output", str(tmp_path / "o")])
    assert args.model == "micro" and args.checkpoint is None and not args.random_weights

    out = tmp_path / "masks"
    rc = main(["track", str(video / "frames"), "--mask", str(video / "mask.png"), "--dense", "--output", str(out),
               "--no-progress", "--no-postprocessing"])
    assert rc == 0, capsys.readouterr().err
    assert "tracked 2 object(s) [1, 3] over 2 frames" in capsys.readouterr().out

    # the same run through the Python API with the bundled micro weights gives the same masks
    _assert_predictor_masks(build_sam2_video_predictor("micro", non_overlap_masks=True, apply_postprocessing=False),
                            video, [_png(out / f"{t:05d}.png")[1] for t in range(N)])


def test_track_from_a_prompt_file(tmp_path, ckpt, video, capsys):
    # a prompt file with the mask PNG gives what --mask gives
    (video / "mask.prompts").write_text("# both objects of the palette PNG\nmask 0 mask.png\n")
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["track", str(video / "frames"), *_model(ckpt), "--mask", str(video / "mask.png"), "--dense",
                 "--output", str(a), "--no-progress"]) == 0
    assert main(["track", str(video / "frames"), *_model(ckpt), "--prompts", str(video / "mask.prompts"), "--dense",
                 "--output", str(b), "--no-progress"]) == 0
    assert "tracked 2 object(s) [1, 3] over 2 frames" in capsys.readouterr().out
    for t in range(N):
        np.testing.assert_array_equal(_png(a / f"{t:05d}.png")[1], _png(b / f"{t:05d}.png")[1])
    # clicks on frame 1 for two objects: tracked from frame 1, and backward to frame 0
    (tmp_path / "clicks.prompts").write_text("point 2 1 20 20\npoint 5 1 40 10\npoint 5 1 45 30 0\n")
    c = tmp_path / "c"
    assert main(["track", str(video / "frames"), *_model(ckpt), "--prompts", str(tmp_path / "clicks.prompts"),
                 "--output", str(c), "--no-progress"]) == 0
    assert "tracked 2 object(s) [2, 5] over 2 frames (3 frame steps)" in capsys.readouterr().out
    assert sorted(os.listdir(c)) == [f"{t:05d}.png" for t in range(N)]
    # a bad line is named; a click outside the frame too; --prompts takes no other prompt option
    (tmp_path / "bad.prompts").write_text("point 1 0 3 3\npoint 1 0 3\n")
    assert main(["track", str(video / "frames"), *_model(ckpt), "--prompts", str(tmp_path / "bad.prompts"),
                 "--output", str(tmp_path / "d"), "--no-progress"]) == 1
    assert f"{tmp_path / 'bad.prompts'}:2: point takes 4 or 5 values" in capsys.readouterr().err
    (tmp_path / "out.prompts").write_text("point 1 0 3 3\npoint 1 0 300 3\n")
    assert main(["track", str(video / "frames"), *_model(ckpt), "--prompts", str(tmp_path / "out.prompts"),
                 "--output", str(tmp_path / "d"), "--no-progress"]) == 1
    assert "out.prompts:2: object 1: click (300, 3) is outside the 56x40 (WxH) frame" in capsys.readouterr().err
    assert main(["track", str(video / "frames"), *_model(ckpt), "--prompts", str(tmp_path / "clicks.prompts"),
                 "--points", "3,3", "--output", str(tmp_path / "d"), "--no-progress"]) == 2
    assert "--prompts names its objects and frames" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_overlay_colours_by_hand(tmp_path):
    rgb = np.full((20, 30, 3), 100, np.uint8)
    ids = np.zeros((20, 30), np.uint8)
    ids[5:15, 5:15] = 2
    got = overlay_ids(rgb, ids, alpha=0.25, contour=False)
    colour = np.frombuffer(DAVIS_PALETTE, np.uint8).reshape(256, 3)[2]  # (0, 128, 0)
    np.testing.assert_array_equal(got[10, 10], np.round(0.75 * 100 + 0.25 * colour.astype(float)).astype(np.uint8))
    np.testing.assert_array_equal(got[0, 0], rgb[0, 0])
    outlined = overlay_ids(rgb, ids, alpha=0.25, contour=True)
    np.testing.assert_array_equal(outlined[5, 10], colour)  # outline in the object's own colour
    with pytest.raises(OverlayError, match="mask is"):
        overlay_ids(rgb, ids[:10])

    path = tmp_path / "o.mp4"
    write_overlay_video(path, [(rgb, ids)] * 4, fps=10)
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10)
    cap.release()
    with pytest.raises(FileExistsError, match="--overwrite"):
        OverlayWriter(path, 10)
    with pytest.raises(OverlayError, match="unsupported extension"):
        OverlayWriter(tmp_path / "o.gif", 10)


# ---------------------------------------------------------------------------------------------------------------------
# The command line as a whole


def test_every_option_of_every_subcommand_is_explained(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("track", "vos", "eval", "download"):
        assert name in sub.choices
    for name, p in sub.choices.items():
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"{name}: {action.option_strings or action.dest}"
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        for action in p._actions:
            for opt in action.option_strings:
                assert opt in text, f"{name} --help does not show {opt}"


def test_module_entry_point_in_a_subprocess():
    r = subprocess.run([sys.executable, "-m", "efficient_sam2", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    for name in ("track", "vos", "eval", "download"):
        assert name in r.stdout
