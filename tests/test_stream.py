"""Streaming tracker, frame sources and `efficient-sam2 stream`.

The micro model at 128 px (64 px where only memory is measured) with seeded random weights keeps this file fast.
"""

from __future__ import annotations

import os
import re
import warnings

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from efficient_sam2 import EfficientConfig, build_sam2_stream_tracker
from efficient_sam2.cli import main
from efficient_sam2.io.frames import ImageError
from efficient_sam2.io.masks import read_palette_mask, write_palette_mask
from efficient_sam2.io.sources import SourceError, SourceStalledError, SourceWarning, open_source
from efficient_sam2.predictors import PromptError, StreamingTracker, VideoPredictor
from reference_oracle import randomize_

H, W = 48, 64

pytestmark = pytest.mark.usefixtures("one_thread")


def _frames(n, seed=0):
    """A red disc moving right and a green square moving down over dark noise."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 70, size=(H, W, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:H, :W]
    out = []
    for t in range(n):
        img = base.copy()
        img[(yy - 20) ** 2 + (xx - (15 + t % 30)) ** 2 < 8**2] = (230, 50, 40)
        img[10 + t % 20 : 24 + t % 20, 42:56] = (40, 210, 90)
        out.append(img)
    return out


def _disc(t=0):
    yy, xx = np.mgrid[:H, :W]
    return (yy - 20) ** 2 + (xx - (15 + t)) ** 2 < 8**2


def _tracker(size=128, efficient=None, seed=1, **kw) -> StreamingTracker:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained shortcut
        tracker = build_sam2_stream_tracker("micro", image_size=size, efficient=efficient, weights="random", **kw)
    randomize_(tracker.model, seed)
    return tracker


# ============================================================================================ equal to offline


@pytest.mark.parametrize("efficient", [None, EfficientConfig(kept_windows=0.5)], ids=["dense", "efficient"])
def test_stream_equals_offline_propagation(efficient):
    """Prompts on frame 0, two objects, 18 frames: the stream's logits are propagate_in_video's (within 1e-4)."""
    tracker = _tracker(efficient=efficient)
    assert tracker.fill_hole_area == 8  # the video builder's post-processing
    offline = VideoPredictor(tracker.model, fill_hole_area=tracker.fill_hole_area, policy=tracker.policy_factory)
    frames = _frames(18)
    state = offline.init_state(frames)
    offline.add_new_mask(state, 0, 1, _disc())
    offline.add_new_points_or_box(state, 0, 2, points=[[49, 17]], labels=[1])
    expected = {t: m[:, 0].clone() for t, _, m in offline.propagate_in_video(state, progress=False)}

    assert tracker.add_object(1, mask=_disc()) is None  # before the first frame: applied to it
    assert tracker.add_object(2, points=[[49, 17]], labels=[1]) is None
    for t, frame in enumerate(frames):
        r = tracker.track(frame)
        assert r.frame_idx == t and r.obj_ids == [1, 2]
        assert r.logits.shape == (2, H, W) and r.masks.dtype == torch.bool and r.object_scores.shape == (2,)
        assert (r.logits - expected[t]).abs().max().item() <= 1e-4, t
        assert torch.equal(r.masks, r.logits > 0)
        assert (expected[t].amax(dim=(1, 2)) > -1000).all(), "an object vanished: the comparison would be vacuous"
    stats = tracker.statistics()
    if efficient is None:
        assert stats is None
    else:
        summary = stats.summary()
        assert summary == offline.statistics(state).summary()
        assert summary["frames"] == 18 and summary["mean_kept_window_fraction"] < 1.0
        assert summary["mean_kept_memory_fraction"] < 1.0
        # the policy's saliency FIFO is part of the state; a removed object's entries go with it
        assert tracker.policy.nbytes() > 0 and tracker.policy.cache.frames(1)
        tracker.remove_object(1)
        assert tracker.policy.cache.frames(1) == [] and tracker.policy.cache.frames(2)


# ============================================================================================ objects


def test_object_added_mid_stream_is_tracked_and_a_removed_one_disappears():
    frames = _frames(16)
    tracker = _tracker()
    tracker.add_object(1, mask=_disc())
    for frame in frames[:11]:
        r = tracker.track(frame)
    assert r.frame_idx == 10 and r.obj_ids == [1]
    square = np.zeros((H, W), bool)
    square[20:34, 42:56] = True  # the square on frame 10
    got = tracker.add_object(2, mask=square)
    assert got.shape == (H, W) and got.dtype == torch.bool and got.sum() > 0.5 * square.sum()

    # a stream that starts at frame 10 with the same prompt tracks the object in the same way
    fresh = _tracker()
    fresh.model.load_state_dict(tracker.model.state_dict())
    fresh.add_object(2, mask=square)
    fresh.track(frames[10])
    for frame in frames[11:14]:
        r, f = tracker.track(frame), fresh.track(frame)
        assert r.obj_ids == [1, 2] and f.obj_ids == [2]
        assert (r.logits[1] - f.logits[0]).abs().max().item() <= 1e-4
        assert r.masks[1].any()

    tracker.remove_object(1)
    for frame in frames[14:]:
        r = tracker.track(frame)
        assert r.obj_ids == [2] and r.logits.shape == (1, H, W)
    assert list(tracker.objects) == [2]
    with pytest.raises(PromptError, match=re.escape("cannot remove unknown object id 1; known ids: [2]")):
        tracker.remove_object(1)


def test_clicks_refine_the_tracked_mask_and_the_correction_becomes_a_conditioning_frame():
    frames = _frames(16)  # offline, a video of at least 16 frames normalises pointer distances as a stream does
    tracker = _tracker()
    tracker.add_object(1, points=[[15, 20]], labels=[1])
    for frame in frames[:4]:
        tracked = tracker.track(frame).logits[0].clone()
    obj = tracker.objects[1]
    first = tracker.add_object(1, points=[[18, 20]], labels=[1])
    # the correction is the offline predictor's on a tracked frame: memory-conditioned, fed the tracked logits
    offline = VideoPredictor(tracker.model, fill_hole_area=tracker.fill_hole_area)
    state = offline.init_state(frames)
    offline.add_new_points_or_box(state, 0, 1, points=[[15, 20]], labels=[1])
    for t, _, m in offline.propagate_in_video(state, max_frame_num_to_track=3, progress=False):
        pass
    assert (m[0, 0] - tracked).abs().max().item() <= 1e-4
    _, _, m = offline.add_new_points_or_box(state, 3, 1, points=[[18, 20]], labels=[1])
    assert torch.equal(first, m[0, 0] > 0)
    # a second call refines the first (its logits are the mask prompt); clicks accumulate on request
    second = tracker.add_object(1, points=[[56, 40]], labels=[0], clear_old_points=False)
    _, _, m = offline.add_new_points_or_box(state, 3, 1, points=[[56, 40]], labels=[0], clear_old_points=False)
    assert torch.equal(second, m[0, 0] > 0)
    assert obj.point_inputs[3].num_points == 2
    r = tracker.track(frames[4])
    assert sorted(obj.cond_outputs) == [0, 3] and 3 not in obj.non_cond_outputs and not obj.temp_cond_outputs
    assert r.obj_ids == [1]


def test_frames_may_change_size_and_come_as_pil_images():
    tracker = _tracker()
    tracker.add_object(1, box=[5, 10, 30, 32])
    assert tracker.track(_frames(1)[0]).masks.shape == (1, H, W)
    big = Image.fromarray(cv2.resize(_frames(2)[1], (96, 72)))
    assert tracker.track(big).masks.shape == (1, 72, 96)
    with pytest.raises(PromptError, match=r"mask size 64x48 \(WxH\) differs from the frame's 96x72"):
        tracker.add_object(2, mask=_disc())


# ============================================================================================ bounded memory


def test_state_is_bounded_and_constant_once_the_memory_bank_is_full():
    tracker = _tracker(size=64)
    frames = _frames(40)
    tracker.add_object(1, mask=_disc())
    cfg = tracker.model.cfg
    sizes = {}
    for t in range(300):
        tracker.track(frames[t % 40])
        if t in (99, 299):
            sizes[t] = tracker.state_nbytes()
    assert sizes[99] == sizes[299] > 0
    obj = tracker.objects[1]
    assert list(obj.cond_outputs) == [0] and obj.cond_outputs[0].pred_masks is None
    # pointers of the last max_obj_ptrs frames, memories of the last num_maskmem (+ the frame a prompt on the
    # current frame reads), mask logits of the current frame only
    assert sorted(obj.non_cond_outputs) == list(range(300 - cfg.max_obj_ptrs_in_encoder, 300))
    with_memory = [t for t, o in obj.non_cond_outputs.items() if o.maskmem_features is not None]
    assert with_memory == list(range(300 - cfg.num_maskmem, 300))
    assert [t for t, o in obj.non_cond_outputs.items() if o.pred_masks is not None] == [299]
    assert list(obj.frames_tracked) == [299]


def test_conditioning_frames_are_capped_keeping_the_first_and_the_most_recent():
    tracker = _tracker(size=64, max_cond_frames=3)
    frames = _frames(8)
    tracker.add_object(1, mask=_disc())
    tracker.track(frames[0])
    for t in range(1, 7):
        tracker.track(frames[t])
        tracker.add_object(1, mask=_disc(t))  # a correction on every frame
    tracker.track(frames[7])
    obj = tracker.objects[1]
    assert sorted(obj.cond_outputs) == [0, 5, 6]
    assert all(o.pred_masks is None for o in obj.cond_outputs.values())
    for bad in (1, 0, -1, "4"):
        with pytest.raises(ValueError, match="max_cond_frames must be an integer >= 2"):
            StreamingTracker(tracker.model, max_cond_frames=bad)


def test_stream_statistics_keep_a_window_of_frames_and_totals_over_all(monkeypatch):
    import efficient_sam2.predictors.stream as stream

    frames = _frames(12)
    summaries = []
    for window in (1000, 4):
        monkeypatch.setattr(stream, "STATS_WINDOW", window)
        tracker = _tracker(size=64, efficient=EfficientConfig(kept_windows=0.5))
        tracker.add_object(1, mask=_disc())
        for frame in frames:
            tracker.track(frame)
        stats = tracker.statistics()
        assert len(stats.kept_windows) == min(window, 12)
        summaries.append(stats.summary())
    assert summaries[0] == summaries[1] and summaries[0]["frames"] == 12


def test_bench_stream_run_reports_state_bytes(monkeypatch):
    import efficient_sam2.bench.stream as bench_stream
    from efficient_sam2.bench.common import BenchmarkSettings
    from efficient_sam2.bench.stream import run_stream, stream_frames

    monkeypatch.setattr(bench_stream, "bundled_weights", lambda name: None)  # random weights, as for Meta's models

    frames, masks = stream_frames(100, 36, 64, 2)
    seen = [f for f in frames]
    assert len(seen) == 100 and seen[48] is seen[46] and list(masks) == [1, 2]  # ping-pong over 48 frames
    msg = run_stream(BenchmarkSettings(model="micro", image_size=64, frames=9, configs=("dense",),
                                       include_dense=False, threads=1))
    assert msg["samples"] == 2 and msg["memory"]["state_bytes"] > 0 and msg["settings"]["stream"] is True
    assert msg["settings"]["weights"] == "random (seed 0)"


# ============================================================================================ bad input


def test_bad_prompts_and_frames_get_clear_errors():
    tracker = _tracker()
    with pytest.raises(PromptError, match="empty prompt: give a mask, points"):
        tracker.add_object(1)
    with pytest.raises(PromptError, match="points and labels must be given together"):
        tracker.add_object(1, points=[[10, 10]])
    with pytest.raises(PromptError, match="either a mask or points"):
        tracker.add_object(1, mask=_disc(), box=[0, 0, 5, 5])
    with pytest.raises(PromptError, match="object id must be an integer"):
        tracker.add_object("a", box=[0, 0, 5, 5])
    with pytest.raises(PromptError, match=re.escape("cannot remove unknown object id 3; known ids: []")):
        tracker.remove_object(3)

    # prompts given before the first frame are checked against it; nothing changes when they do not fit
    tracker.add_object(1, mask=np.ones((10, 10), bool))
    tracker.add_object(2, points=[[500, 10]], labels=[1])
    with pytest.raises(PromptError, match=r"object 1 does not fit it: mask size 10x10 \(WxH\) differs from the "
                                          r"frame's 64x48"):
        tracker.track(_frames(1)[0])
    assert tracker.frame_idx == -1 and not tracker.objects and tracker.obj_ids == [1, 2]
    tracker.remove_object(1)
    with pytest.raises(PromptError, match=r"object 2 does not fit it: point \(500, 10\) is outside the frame"):
        tracker.track(_frames(1)[0])
    tracker.remove_object(2)
    assert tracker.track(_frames(1)[0]).obj_ids == []  # a stream may start before any object exists

    with pytest.raises(PromptError, match=r"mask size 10x10 \(WxH\) differs from the frame's 64x48"):
        tracker.add_object(1, mask=np.ones((10, 10), bool))
    assert not tracker.objects
    with pytest.raises(ImageError, match="frame 1 of the stream: image array has dtype float32"):
        tracker.track(np.zeros((H, W, 3), np.float32))


# ============================================================================================ sources


def _write_avi(path, frames, fps=10):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return str(path)


def _write_folder(folder, frames):
    folder.mkdir(parents=True, exist_ok=True)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"frame{t}.png")
    return str(folder)


def test_sources_read_files_folders_and_iterators(tmp_path):
    frames = _frames(6)
    with open_source(_write_avi(tmp_path / "v.avi", frames)) as src:
        got = list(src.frames())
    assert [f.name for f in got] == [f"{i:05d}" for i in range(6)] and src.declared_frames == 6 and src.fps == 10
    assert got[2].rgb.shape == (H, W, 3) and got[2].rgb.dtype == np.uint8
    assert tuple(got[2].rgb[20, 17] // 64) == (3, 0, 0)  # RGB, not BGR: the red disc

    folder = _write_folder(tmp_path / "f", frames)
    (tmp_path / "f" / "frame3.png").write_bytes(b"not a png")
    with pytest.warns(SourceWarning, match=r"cannot decode frame 3 .*frame3.png.*; skipped"):
        src = open_source(folder)
        names = [f.name for f in src.frames()]
    assert names == ["frame0", "frame1", "frame2", "frame4", "frame5"] and src.skipped == 1

    class Short:  # declares more frames than it delivers
        def __len__(self):
            return 5

        def __iter__(self):
            return iter(frames[:3])

    with pytest.warns(SourceWarning, match="ended after 3 of its 5 declared frames"):
        assert len(list(open_source(Short(), read_ahead=1))) == 3
    arr = np.stack(frames)
    assert len(list(open_source(arr))) == 6


def test_source_errors(tmp_path):
    with pytest.raises(SourceError, match=re.escape(f"source not found: {str(tmp_path / 'none.mp4')!r}")):
        open_source(str(tmp_path / "none.mp4"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SourceError, match="cannot open .*notes.txt' as a video"):
        open_source(str(tmp_path / "notes.txt"))
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="cannot open video file .*broken.mp4"):
        open_source(str(tmp_path / "broken.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no image frames found in folder"):
        open_source(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="read_ahead must be an integer >= 1"):
        open_source([], read_ahead=0)

    def stalls():
        yield _frames(1)[0]
        import time

        time.sleep(1.0)
        yield _frames(1)[0]

    src = open_source(stalls(), timeout=0.2)
    with pytest.raises(SourceStalledError, match=r"delivered no frame for 0.2 s \(after 1 frame\(s\)\)"):
        list(src)

    def interrupted():
        yield _frames(1)[0]
        raise KeyboardInterrupt

    seen = []
    with pytest.raises(KeyboardInterrupt):
        for f in open_source(interrupted()):
            seen.append(f)
    assert len(seen) == 1


# ============================================================================================ command line


def _pngs(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".png"))


def test_cli_on_a_video_file_and_a_frame_folder(tmp_path, capsys):
    frames = _frames(6)
    video = _write_avi(tmp_path / "v.avi", frames)
    out, overlay = tmp_path / "out", tmp_path / "overlay.mp4"
    common = ["--image-size", "64", "--dense", "--no-progress", "--random-weights"]
    assert main(["stream", video, "--points", "15,20;40,40", "--labels", "1,0", "--output", str(out),
                 "--overlay", str(overlay), *common]) == 0
    printed = capsys.readouterr().out
    assert "tracked 1 object(s) [1] over 6 frame(s) of video file" in printed and "frames/s" in printed
    assert _pngs(out) == [f"{i:05d}.png" for i in range(6)]
    ids, _ = read_palette_mask(str(out / "00003.png"))
    assert ids.shape == (H, W) and set(np.unique(ids)) <= {0, 1}
    cap = cv2.VideoCapture(str(overlay))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    cap.release()

    # a folder with an undecodable frame; a two-object mask prompt
    folder = _write_folder(tmp_path / "frames", frames)
    (tmp_path / "frames" / "frame2.png").write_bytes(b"broken")
    ids = np.zeros((H, W), np.uint8)
    ids[_disc()] = 3
    ids[10:24, 42:56] = 7
    write_palette_mask(str(tmp_path / "mask.png"), ids)
    out2 = tmp_path / "out2"
    assert main(["stream", folder, "--mask", str(tmp_path / "mask.png"), "--output", str(out2), *common]) == 0
    captured = capsys.readouterr()
    assert "note: cannot decode frame 2" in captured.err
    assert "tracked 2 object(s) [3, 7] over 5 frame(s)" in captured.out
    assert "1 undecodable frame(s) skipped" in captured.out
    assert _pngs(out2) == ["frame0.png", "frame1.png", "frame3.png", "frame4.png", "frame5.png"]
    assert set(np.unique(read_palette_mask(str(out2 / "frame0.png"))[0])) == {0, 3, 7}

    # a non-empty output folder is refused, and with --overwrite other files are left alone
    (out2 / "keep.txt").write_text("mine")
    assert main(["stream", folder, "--box", "5,10,30,32", "--output", str(out2), *common]) == 2
    assert "is not empty; use --overwrite" in capsys.readouterr().err
    assert main(["stream", folder, "--box", "5,10,30,32", "--output", str(out2), "--overwrite", "--max-frames",
                 "2", *common]) == 0
    assert (out2 / "keep.txt").read_text() == "mine" and len(_pngs(out2)) == 5
    assert "over 2 frame(s)" in capsys.readouterr().out


def test_cli_bad_sources_and_prompts(tmp_path, capsys):
    common = ["--image-size", "64", "--dense", "--no-progress", "--random-weights"]
    assert main(["stream", str(tmp_path / "missing.mp4"), "--points", "1,1", *common]) == 1
    assert "error: source not found" in capsys.readouterr().err
    assert main(["stream", _write_avi(tmp_path / "v.avi", _frames(3)), *common]) == 2
    assert "give a prompt for the first frame" in capsys.readouterr().err
    assert main(["stream", str(tmp_path / "v.avi"), "--points", "1,1", "--labels", "1,0", *common]) == 2
    assert "--labels gives 2 label(s) for 1 point(s)" in capsys.readouterr().err
    big = np.zeros((10, 10), np.uint8)
    big[2:5, 2:5] = 1
    write_palette_mask(str(tmp_path / "small.png"), big)
    assert main(["stream", str(tmp_path / "v.avi"), "--mask", str(tmp_path / "small.png"), "--output",
                 str(tmp_path / "o"), *common]) == 1
    assert re.search(r"mask size 10x10 \(WxH\) differs from the frame's 64x48", capsys.readouterr().err)
    assert not os.path.exists(tmp_path / "o") or not os.listdir(tmp_path / "o")


def test_cli_ctrl_c_leaves_complete_files(tmp_path, monkeypatch, capsys):
    import efficient_sam2.io.sources as sources

    real_open = sources.open_source

    def interrupted_after_four(source, **kw):
        def gen():
            yield from _frames(4)
            raise KeyboardInterrupt  # what Ctrl-C raises

        return real_open(gen(), **kw)

    monkeypatch.setattr(sources, "open_source", interrupted_after_four)
    out, overlay = tmp_path / "out", tmp_path / "ov.avi"
    code = main(["stream", "0", "--points", "15,20", "--output", str(out), "--overlay", str(overlay),
                 "--image-size", "64", "--dense", "--no-progress", "--random-weights"])
    assert code == 130
    assert "interrupted after 4 frame(s); everything written so far is complete" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == [f"{i:05d}.png" for i in range(4)]  # no temporary files left
    for name in os.listdir(out):
        assert read_palette_mask(str(out / name))[0].shape == (H, W)
    assert sorted(os.listdir(tmp_path)) == ["out", "ov.avi"]
    cap = cv2.VideoCapture(str(overlay))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()
