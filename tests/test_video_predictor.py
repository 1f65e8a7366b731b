"""Video predictor: bad inputs get clear errors; behaviour checked against hand-computed values and invariants.

A random-weight tiny model at 128 px and synthetic videos of 4-12 small frames keep this file fast.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from efficient_sam2 import build_sam2_video_predictor
from efficient_sam2.io.frames import FrameDecodeError, VideoError, VideoNotFoundError
from efficient_sam2.modeling.sam2 import NO_OBJ_SCORE
from efficient_sam2.tracking import DensePolicy, select_memory_frames, select_object_pointers
from efficient_sam2.predictors import InferenceState, PromptError, VideoPredictor
from efficient_sam2.tracking.postprocess import fill_holes, non_overlap
from reference_oracle import randomize_

IMAGE_SIZE = 128
H, W = 48, 64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def predictor():
    p = build_sam2_video_predictor("tiny", weights="random", image_size=IMAGE_SIZE, fill_hole_area=0)
    randomize_(p.model, 0)
    return p


def _frames(n=6, seed=0):
    """RGB frames: a disc moving right and a square moving down over textured noise."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 70, size=(H, W, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:H, :W]
    out = []
    for t in range(n):
        img = base.copy()
        img[(yy - 20) ** 2 + (xx - (15 + 2 * t)) ** 2 < 8**2] = (230, 50, 40)
        img[10 + 2 * t : 24 + 2 * t, 40:54] = (40, 210, 90)
        out.append(img)
    return out


def _write_folder(folder, frames, ext="png"):
    folder.mkdir(parents=True, exist_ok=True)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{t:05d}.{ext}")
    return folder


def _disc_mask(t=0):
    yy, xx = np.mgrid[:H, :W]
    return (yy - 20) ** 2 + (xx - (15 + 2 * t)) ** 2 < 8**2


def _collect(gen):
    return {t: (list(ids), m.clone()) for t, ids, m in gen}


# ============================================================================================ bad inputs


def test_bad_video_paths(predictor, tmp_path):
    missing = tmp_path / "no_such_video"
    with pytest.raises(VideoNotFoundError, match=re.escape(f"video path not found: {str(missing)!r}")) as err:
        predictor.init_state(str(missing))
    assert isinstance(err.value, FileNotFoundError)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError, match="no image frames found in folder"):
        predictor.init_state(str(empty))

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hello")
    (other / "meta.json").write_text("{}")
    (other / "sub.jpg").mkdir()  # a folder named like a frame is not a frame
    with pytest.raises(VideoError, match=r"no image frames found in folder .*other.*\.jpg, \.jpeg, \.png"):
        predictor.init_state(str(other))

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01 definitely not a video" * 50)
    with pytest.raises(VideoError, match=r"cv2 cannot open video file .*broken\.mp4"):
        predictor.init_state(str(broken))

    single = _write_folder(tmp_path / "one", _frames(1)) / "00000.png"
    with pytest.raises(VideoError, match="is a single image; pass the folder"):
        predictor.init_state(str(single))

    with pytest.raises(ValueError, match="frame_cache_size must be an integer >= 0"):
        predictor.init_state(_frames(2), frame_cache_size=-1)


def test_corrupt_frames(predictor, tmp_path):
    folder = _write_folder(tmp_path / "video", _frames(6), ext="jpg")
    (folder / "00003.jpg").write_bytes(b"garbage, not a jpeg" * 20)
    state = predictor.init_state(str(folder))  # lazy: frame 3 is not read yet
    assert state.num_frames == 6

    # a prompt on the corrupt frame fails cleanly and leaves no half-made object behind
    with pytest.raises(FrameDecodeError, match=r"cannot decode frame 3 \(.*00003\.jpg"):
        predictor.add_new_points_or_box(state, 3, 1, points=[[20, 20]], labels=[1])
    assert state.obj_ids == []

    predictor.add_new_points_or_box(state, 0, 1, points=[[15, 20]], labels=[1])
    seen = []
    with pytest.raises(FrameDecodeError) as err:
        for t, _, _ in predictor.propagate_in_video(state, progress=False):
            seen.append(t)
    assert seen == [0, 1, 2]
    assert err.value.index == 3 and err.value.source.endswith("00003.jpg")
    assert "00003.jpg" in str(err.value)
    # the frames before the broken one stay tracked and the state is still usable
    assert sorted(state.objects[1].frames_tracked) == [0, 1, 2]
    assert [t for t, _, _ in predictor.propagate_in_video(state, max_frame_num_to_track=2, progress=False)] == [0, 1, 2]

    # a truncated first frame is reported when the video is opened
    folder2 = _write_folder(tmp_path / "video2", _frames(3), ext="jpg")
    data = (folder2 / "00000.jpg").read_bytes()
    (folder2 / "00000.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(FrameDecodeError, match=r"cannot decode frame 0 \(.*00000\.jpg"):
        predictor.init_state(str(folder2))


def test_bad_prompts(predictor):
    state = predictor.init_state(_frames(4))
    add = predictor.add_new_points_or_box
    cases = [
        (dict(frame_idx=4, points=[[5, 5]], labels=[1]), r"frame index 4 is outside the video \(frames 0\.\.3\)"),
        (dict(frame_idx=-1, points=[[5, 5]], labels=[1]), r"frame index -1 is outside the video \(frames 0\.\.3\)"),
        (dict(frame_idx=1.0, points=[[5, 5]], labels=[1]), "frame index must be an integer, got 1.0"),
        (dict(frame_idx="2", points=[[5, 5]], labels=[1]), "frame index must be an integer, got '2'"),
        (dict(frame_idx=0, points=[[70, 5]], labels=[1]),
         r"point \(70, 5\) is outside the frame \(x in \[0, 64\], y in \[0, 48\]\)"),
        (dict(frame_idx=0, points=[[5, -1]], labels=[1]), r"point \(5, -1\) is outside the frame"),
        (dict(frame_idx=0, points=[[0.5, 0.5], [1.2, 0.1]], labels=[1, 1], normalize_coords=False),
         r"point \(1.2, 0.1\) is outside the frame \(x in \[0, 1\], y in \[0, 1\]\)"),
        (dict(frame_idx=0, points=[[np.nan, 5]], labels=[1]), "point coordinates must be finite numbers"),
        (dict(frame_idx=0, points=[[5, 5], [6, 6]], labels=[1]), "got 2 points but 1 labels"),
        (dict(frame_idx=0, points=[[5, 5]]), "points and labels must be given together"),
        (dict(frame_idx=0), "empty prompt: give at least one point"),
        (dict(frame_idx=0, points=[], labels=[]), "empty prompt"),
        (dict(frame_idx=0, points=[5, 5, 6], labels=[1]), r"points must be an \(N, 2\) array of \(x, y\), got shape"),
        (dict(frame_idx=0, points=[[5, 5]], labels=[0.5]), "labels must be integers"),
        (dict(frame_idx=0, points=[[5, 5]], labels=[7]), r"point labels must be 1 \(positive\) or 0 \(negative\)"),
        (dict(frame_idx=0, box=[30, 10, 20, 40]), "has x1 < x0 or y1 < y0"),
        (dict(frame_idx=0, box=[10, 10, 20]), r"a box is four numbers \(x0, y0, x1, y1\), got 3"),
        (dict(frame_idx=0, box=[10, 10, 80, 20]), r"box corner \(80, 20\) is outside the frame"),
        (dict(frame_idx=0, box=[10, 10, 20, 20], clear_old_points=False), "use clear_old_points=True with a box"),
        (dict(frame_idx=0, obj_id="car", points=[[5, 5]], labels=[1]), "object id must be an integer, got 'car'"),
    ]
    for kwargs, message in cases:
        kwargs.setdefault("obj_id", 1)
        with pytest.raises(PromptError, match=message):
            add(state, **kwargs)
    assert state.obj_ids == [], "a rejected prompt must not create an object"

    with pytest.raises(PromptError, match=r"mask size 32x16 \(WxH\) differs from the video's 64x48"):
        predictor.add_new_mask(state, 0, 1, np.ones((16, 32), bool))
    with pytest.raises(PromptError, match=r"a mask must be 2-D \(H, W\), got shape \(2, 48, 64\)"):
        predictor.add_new_mask(state, 0, 1, np.ones((2, H, W), bool))
    with pytest.raises(PromptError, match=r"frame index 9 is outside the video"):
        predictor.add_new_mask(state, 9, 1, np.ones((H, W), bool))
    with pytest.raises(PromptError, match="no object has been prompted yet"):
        next(predictor.propagate_in_video(state, progress=False))
    assert state.obj_ids == []

    predictor.add_new_points_or_box(state, 0, 1, points=[[15, 20]], labels=[1])
    with pytest.raises(PromptError, match=r"frame index 7 is outside the video"):
        next(predictor.propagate_in_video(state, start_frame_idx=7, progress=False))
    with pytest.raises(ValueError, match="max_frame_num_to_track must be None or an integer >= 0, got -1"):
        next(predictor.propagate_in_video(state, max_frame_num_to_track=-1, progress=False))
    with pytest.raises(PromptError, match=r"unknown object id 5; known ids: \[1\]"):
        predictor.clear_all_prompts_in_frame(state, 0, 5)
    with pytest.raises(PromptError, match=r"cannot remove unknown object id 5; known ids: \[1\]"):
        predictor.remove_object(state, 5, strict=True)
    assert predictor.remove_object(state, 5) == ([1], [])

    # an object whose only prompt was cleared has no prompt: tracking it is refused with its id
    predictor.clear_all_prompts_in_frame(state, 0, 1)
    with pytest.raises(PromptError, match="object 1 has no prompt yet: add points, a box or a mask for it"):
        next(predictor.propagate_in_video(state, progress=False))


# ============================================================================================ behaviour


def test_lazy_decoding_and_bounded_frame_cache(predictor, tmp_path):
    folder = _write_folder(tmp_path / "video", _frames(12), ext="jpg")
    state = predictor.init_state(str(folder), frame_cache_size=3)
    frames = state.frames
    assert frames.num_decoded == 1 and frames.cached_indices() == [0]  # only the warm-up frame
    predictor.add_new_points_or_box(state, 0, 1, points=[[15, 20]], labels=[1])
    assert frames.num_decoded == 1
    for t, _, _ in predictor.propagate_in_video(state, progress=False):
        cached = frames.cached_indices()
        assert len(cached) <= 3 and len(frames._cache) <= 3
        assert cached == list(range(max(0, t - 2), t + 1))  # the last three frames, least recent first
        assert frames.num_decoded == t + 1  # every frame decoded exactly once, when reached
    assert frames.num_decoded == 12
    # reverse: frames 11, 10, 9 are still cached; 8..1 were evicted and are decoded again; frame 0 is the
    # prompted frame, whose stored mask is returned without running the model
    for t, _, _ in predictor.propagate_in_video(state, start_frame_idx=11, reverse=True, progress=False):
        assert len(frames.cached_indices()) <= 3
    assert frames.num_decoded == 12 + 8


def test_propagation_visits_the_expected_frames(predictor):
    state = predictor.init_state(_frames(8))
    predictor.add_new_points_or_box(state, 2, 1, points=[[19, 20]], labels=[1])

    def visited(**kw):
        return [t for t, _, _ in predictor.propagate_in_video(state, progress=False, **kw)]

    # reference semantics: start = earliest prompted frame; forward start..min(start+max, N-1);
    # reverse start..max(start-max, 0), nothing at all when starting from frame 0
    assert visited() == [2, 3, 4, 5, 6, 7]
    assert visited(start_frame_idx=3, max_frame_num_to_track=2) == [3, 4, 5]
    assert visited(start_frame_idx=7, max_frame_num_to_track=5) == [7]
    assert visited(max_frame_num_to_track=0) == [2]
    assert visited(reverse=True) == [2, 1, 0]
    assert visited(start_frame_idx=6, max_frame_num_to_track=3, reverse=True) == [6, 5, 4, 3]
    assert visited(start_frame_idx=2, max_frame_num_to_track=10, reverse=True) == [2, 1, 0]
    assert visited(start_frame_idx=0, reverse=True) == []
    obj = state.objects[1]
    assert list(obj.cond_outputs) == [2]
    # direction of the last visit is recorded per frame (True = reverse)
    assert obj.frames_tracked == {0: True, 1: True, 2: True, 3: True, 4: True, 5: True, 6: True, 7: False}


def test_new_object_after_tracking_leaves_other_objects_unchanged(predictor):
    state = predictor.init_state(_frames(6))
    predictor.add_new_mask(state, 0, 1, _disc_mask(0))
    first = _collect(predictor.propagate_in_video(state, progress=False))
    assert all(ids == [1] for ids, _ in first.values())
    assert any((m > 0).any() for t, (_, m) in first.items() if t > 0)  # tracking is not vacuous

    _, ids, masks = predictor.add_new_points_or_box(state, 3, 2, points=[[47, 20]], labels=[1])
    assert ids == [1, 2] and masks.shape == (2, 1, H, W)
    # the new object's prompt does not touch object 1's result on that frame
    assert torch.equal(masks[0], first[3][1][0])
    second = _collect(predictor.propagate_in_video(state, progress=False))
    assert sorted(second) == list(range(6))
    for t in range(6):
        assert second[t][0] == [1, 2]
        assert torch.equal(second[t][1][0], first[t][1][0]), f"object 1 changed on frame {t}"
    assert list(state.objects[1].cond_outputs) == [0]
    assert list(state.objects[2].cond_outputs) == [3]  # its own conditioning frame
    assert sorted(state.objects[2].non_cond_outputs) == [0, 1, 2, 4, 5]


def test_reset_state_clears_everything(predictor):
    state = predictor.init_state(_frames(4))
    _, _, m0 = predictor.add_new_points_or_box(state, 0, 1, points=[[15, 20]], labels=[1])
    predictor.add_new_mask(state, 1, 2, _disc_mask(1))
    _collect(predictor.propagate_in_video(state, progress=False))
    predictor.reset_state(state)
    assert state.obj_ids == [] and not state.objects
    with pytest.raises(PromptError, match="no object has been prompted yet"):
        next(predictor.propagate_in_video(state, progress=False))
    # prompting again starts from scratch: the first prompt gives the same masks as on a fresh video
    _, ids, m1 = predictor.add_new_points_or_box(state, 0, 7, points=[[15, 20]], labels=[1])
    assert ids == [7] and torch.equal(m1, m0)
    assert list(state.objects[7].temp_cond_outputs) == [0] and not state.objects[7].non_cond_outputs


def test_remove_object(predictor):
    state = predictor.init_state(_frames(5))
    predictor.add_new_mask(state, 0, 1, _disc_mask(0))
    predictor.add_new_points_or_box(state, 0, 2, points=[[47, 16]], labels=[1])
    predictor.add_new_points_or_box(state, 2, 2, points=[[47, 20]], labels=[1])
    both = _collect(predictor.propagate_in_video(state, progress=False))

    ids, updated = predictor.remove_object(state, 1)
    assert ids == [2] and state.obj_ids == [2]
    assert [t for t, _ in updated] == [0]  # object 1 had a prompt on frame 0 only
    assert torch.equal(updated[0][1], both[0][1][1:2])  # object 2's mask there, now alone
    alone = _collect(predictor.propagate_in_video(state, progress=False))
    for t in range(5):
        assert alone[t][0] == [2]
        torch.testing.assert_close(alone[t][1], both[t][1][1:2], atol=1e-4, rtol=0)
    assert predictor.remove_object(state, 2) == ([], [])
    assert not state.objects


def test_clear_all_prompts_in_frame(predictor):
    state = predictor.init_state(_frames(6))
    predictor.add_new_points_or_box(state, 0, 1, points=[[15, 20]], labels=[1])
    predictor.add_new_points_or_box(state, 4, 1, points=[[23, 20]], labels=[1])
    before = _collect(predictor.propagate_in_video(state, progress=False))
    obj = state.objects[1]
    stored = obj.cond_outputs[4]

    t, ids, masks = predictor.clear_all_prompts_in_frame(state, 4, 1)
    assert (t, ids) == (4, [1])
    assert 4 not in obj.point_inputs and list(obj.cond_outputs) == [0]
    assert obj.non_cond_outputs[4] is stored and 4 not in obj.frames_tracked  # downgraded, not lost
    assert torch.equal(masks, before[4][1])
    # frame 4 is now tracked from memory like any other frame
    after = _collect(predictor.propagate_in_video(state, progress=False))
    assert sorted(after) == list(range(6))
    assert obj.non_cond_outputs[4] is not stored and list(obj.cond_outputs) == [0]
    assert obj.frames_tracked[4] is False

    # clearing a prompt that was never propagated leaves no output: the object reads as absent there
    predictor.add_new_points_or_box(state, 1, 2, points=[[47, 16]], labels=[1])
    _, ids, masks = predictor.clear_all_prompts_in_frame(state, 1, 2)
    assert ids == [1, 2] and bool((masks[1] == NO_OBJ_SCORE).all())
    assert predictor.clear_all_prompts_in_frame(state, 1, 2, need_output=False) is None


def test_non_overlap_hand_computed():
    logits = torch.tensor([
        [[[2.0, -1.0], [5.0, -20.0]]],
        [[[3.0, 4.0], [-3.0, -30.0]]],
        [[[1.0, -5.0], [0.5, -25.0]]],
    ])
    expected = torch.tensor([
        [[[-10.0, -10.0], [5.0, -20.0]]],   # wins bottom-left and bottom-right (-20 is the max there)
        [[[3.0, 4.0], [-10.0, -30.0]]],     # wins the top row
        [[[-10.0, -10.0], [-10.0, -25.0]]],  # wins nowhere
    ])
    assert torch.equal(non_overlap(logits), expected)
    assert torch.equal(non_overlap(logits[:1]), logits[:1])


def test_non_overlap_in_the_predictor(predictor):
    video = _frames(3)
    results = []
    for flag in (False, True):
        p = VideoPredictor(predictor.model, non_overlap_masks=flag)
        state = p.init_state(video)
        p.add_new_mask(state, 0, 1, _disc_mask(0))
        p.add_new_points_or_box(state, 0, 2, box=[5, 8, 30, 34])  # a box over the disc: overlapping objects
        results.append(_collect(p.propagate_in_video(state, progress=False)))
    overlapped = 0
    for t in range(3):
        raw, clean = results[0][t][1], results[1][t][1]
        overlapped += int(((raw > 0).sum(0) > 1).sum())
        assert int(((clean > 0).sum(0) > 1).sum()) == 0
        best = raw.argmax(0, keepdim=True)
        winner = torch.zeros_like(raw, dtype=torch.bool).scatter_(0, best, True)
        assert torch.equal(clean[winner], raw[winner])
        assert torch.equal(clean[~winner], torch.minimum(raw[~winner], torch.tensor(-10.0)))
    assert overlapped > 0, "the two objects never overlap: the check is vacuous"


def test_fill_holes_hand_made():
    logits = torch.full((2, 1, 24, 24), 5.0)
    logits[0, 0, 3, 3:6] = -2.0  # a 3-px hole
    logits[0, 0, 10:14, 10:15] = -3.0  # a 20-px hole
    logits[1, 0, 5, 5] = -1.0  # two diagonal pixels: one 8-connected 2-px component
    logits[1, 0, 6, 6] = -1.0
    logits[1, 0, 18:, 18:] = -4.0  # 36 background pixels in the corner
    out = fill_holes(logits, 8)
    expected = logits.clone()
    expected[0, 0, 3, 3:6] = 0.1
    expected[1, 0, 5, 5] = expected[1, 0, 6, 6] = 0.1
    assert torch.equal(out, expected)
    assert torch.equal(fill_holes(logits, 1), logits)  # the diagonal pair counts as one 2-px region
    assert torch.equal(fill_holes(logits, 0), logits)
    assert torch.equal(fill_holes(logits, 20)[0, 0, 10:14, 10:15], torch.full((4, 5), 0.1))
    with pytest.raises(ValueError, match=r"fill_holes expects \(N, 1, H, W\) mask logits, got shape \(24, 24\)"):
        fill_holes(logits[0, 0], 8)


def test_fill_hole_area_applies_to_predictor_masks(predictor):
    mask = np.zeros((H, W), bool)
    mask[5:40, 5:60] = True
    mask[12:16, 12:16] = False  # becomes a hole of a few low-res pixels
    mask[25:31, 40:46] = False  # becomes a hole of more than 8 low-res pixels
    stored = {}
    for area in (0, 8):
        p = VideoPredictor(predictor.model, fill_hole_area=area)
        state = p.init_state(_frames(2))
        p.add_new_mask(state, 0, 1, mask)
        stored[area] = state.objects[1].temp_cond_outputs[0].pred_masks[0, 0]

    def holes(logits):
        n, _, stats, _ = cv2.connectedComponentsWithStats((logits <= 0).numpy().astype(np.uint8), connectivity=8)
        return sorted(stats[1:n, cv2.CC_STAT_AREA].tolist())

    before, after = holes(stored[0]), holes(stored[8])
    assert any(a <= 8 for a in before) and sum(a > 8 for a in before) >= 2, before  # small hole, big hole, outside
    assert after == [a for a in before if a > 8]
    changed = stored[0] != stored[8]
    assert int(changed.sum()) == sum(a for a in before if a <= 8)
    assert bool((stored[8][changed] == 0.1).all()) and bool((stored[0][changed] <= 0).all())


def test_batched_objects_match_objects_tracked_alone(predictor):
    video = _frames(5)
    prompts = {1: [[15, 20]], 2: [[47, 16]]}
    batch_sizes = []

    class Recording(DensePolicy):
        def observe_step(self, frame_idx, obj_ids, step):
            batch_sizes.append(len(obj_ids))

    class Factory:
        def new_video(self):
            return Recording()

    p = VideoPredictor(predictor.model, policy=Factory())
    state = p.init_state(video)
    for obj_id, pts in prompts.items():
        p.add_new_points_or_box(state, 0, obj_id, points=pts, labels=[1])
    together = _collect(p.propagate_in_video(state, progress=False))
    assert 2 in batch_sizes, "objects with identical memory layouts were not batched"
    for i, (obj_id, pts) in enumerate(prompts.items()):
        single = p.init_state(video)
        p.add_new_points_or_box(single, 0, obj_id, points=pts, labels=[1])
        alone = _collect(p.propagate_in_video(single, progress=False))
        for t in range(5):
            torch.testing.assert_close(together[t][1][i : i + 1], alone[t][1], atol=1e-5, rtol=0)


def _table(chosen):
    return [(a, b) for a, b, _ in chosen]


def test_select_memory_frames_hand_computed():
    # t = 10, 7 memory slots. t_pos 6 is frame t-1 (t+1 reversed); t_pos k < 6 is, with stride r,
    # floor((t-2)/r)*r - (6-k-1)*r (reversed: ceil((t+2)/r)*r + (6-k-1)*r); missing frames are skipped.
    fwd_cond = {0: "c0"}
    fwd_non = {t: f"n{t}" for t in range(1, 10)}
    chosen, sel, unsel = select_memory_frames(10, fwd_cond, fwd_non, 7, 1)
    assert _table(chosen) == [(0, 0), (1, 4), (2, 5), (3, 6), (4, 7), (5, 8), (6, 9)]
    assert [o for _, _, o in chosen] == ["c0", "n4", "n5", "n6", "n7", "n8", "n9"]
    assert sel == fwd_cond and unsel == {}
    # stride 3: base 6 -> slots 1..5 hold -6, -3, 0 (a selected conditioning frame: not repeated), 3, 6
    assert _table(select_memory_frames(10, fwd_cond, fwd_non, 7, 3)[0]) == [(0, 0), (4, 3), (5, 6), (6, 9)]

    rev_cond = {19: "c19"}
    rev_non = {t: f"n{t}" for t in range(11, 19)}
    assert _table(select_memory_frames(10, rev_cond, rev_non, 7, 1, reverse=True)[0]) == [
        (0, 19), (1, 16), (2, 15), (3, 14), (4, 13), (5, 12), (6, 11)]
    # stride 3 reversed: base 12 -> slots 1..5 hold 24, 21 (absent), 18, 15, 12
    assert _table(select_memory_frames(10, rev_cond, rev_non, 7, 3, reverse=True)[0]) == [
        (0, 19), (3, 18), (4, 15), (5, 12), (6, 11)]

    # two conditioning frames with max_cond_frames_in_attn=2: both are used
    two = {0: "c0", 15: "c15"}
    non = {t: f"n{t}" for t in range(1, 10)}
    assert _table(select_memory_frames(10, two, non, 7, 1, max_cond_frames=2)[0]) == [
        (0, 0), (0, 15), (1, 4), (2, 5), (3, 6), (4, 7), (5, 8), (6, 9)]
    # three conditioning frames, at most 2 attended: the closest before (4) and at-or-after (15) are selected;
    # frame 0 is unselected and can still serve as an ordinary strided memory
    three = {0: "c0", 4: "c4", 15: "c15"}
    non = {t: f"n{t}" for t in (1, 2, 3, 5, 6, 7, 8, 9)}
    chosen, sel, unsel = select_memory_frames(10, three, non, 7, 3, max_cond_frames=2)
    assert sorted(sel) == [4, 15] and unsel == {0: "c0"}
    assert _table(chosen) == [(0, 4), (0, 15), (3, 0), (4, 3), (5, 6), (6, 9)]
    assert chosen[2][2] == "c0"
    assert _table(select_memory_frames(10, three, non, 7, 1, max_cond_frames=2)[0]) == [
        (0, 4), (0, 15), (2, 5), (3, 6), (4, 7), (5, 8), (6, 9)]


def test_select_object_pointers_hand_computed():
    sel = {4: "c4", 15: "c15"}
    unsel = {0: "c0"}
    non = {t: f"n{t}" for t in (1, 2, 3, 5, 6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19)}
    # forward: past conditioning frames (distance t - t'), then t-1, t-2, ... down to frame 0 (16 - 1 at most)
    ptrs = select_object_pointers(10, sel, unsel, non, 20, 16, signed=True)
    assert _table(ptrs) == [(6, 4), (1, 9), (2, 8), (3, 7), (4, 6), (5, 5), (7, 3), (8, 2), (9, 1), (10, 0)]
    assert ptrs[-1][2] == "c0"
    # at most max_obj_ptrs - 1 recent pointers
    assert _table(select_object_pointers(10, sel, unsel, non, 20, 4, signed=True)) == [(6, 4), (1, 9), (2, 8), (3, 7)]
    # the walk back stops at frame 0; frame 4 is a selected conditioning frame, so it is not repeated
    assert _table(select_object_pointers(5, sel, unsel, non, 6, 16, signed=True)) == [
        (1, 4), (2, 3), (3, 2), (4, 1), (5, 0)]
    # reverse: conditioning frames at or after t, then t+1, t+2, ... up to the last frame
    assert _table(select_object_pointers(10, sel, unsel, non, 20, 16, signed=True, reverse=True)) == [
        (5, 15), (1, 11), (2, 12), (3, 13), (4, 14), (6, 16), (7, 17), (8, 18), (9, 19)]


def test_memory_stride_3_in_the_predictor(predictor):
    p = build_sam2_video_predictor("tiny", weights="random", image_size=IMAGE_SIZE, fill_hole_area=0, memory_temporal_stride=3)
    p.model.load_state_dict(predictor.model.state_dict())
    used = {}
    track_step = p.model.track_step

    def recording(feats, memories, pointers, *args, **kwargs):
        if memories:
            used.setdefault(len(used), ([m.frame_idx for m in memories], [q.frame_idx for q in pointers]))
        return track_step(feats, memories, pointers, *args, **kwargs)

    p.model.track_step = recording
    state = p.init_state(_frames(8))
    p.add_new_points_or_box(state, 0, 1, points=[[15, 20]], labels=[1])
    _collect(p.propagate_in_video(state, progress=False))
    # frame t (1..7): conditioning frame 0, then strided frames floor((t-2)/3)*3 - k*3 and frame t-1
    expected = {1: [0], 2: [0, 1], 3: [0, 2], 4: [0, 3], 5: [0, 3, 4], 6: [0, 3, 5], 7: [0, 3, 6]}
    assert {t + 1: mem for t, (mem, _) in used.items()} == expected
    assert used[6][1] == [0, 6, 5, 4, 3, 2, 1]  # pointers are not strided


def test_in_memory_frames_folders_and_mp4_agree(predictor, tmp_path):
    video = _frames(4)

    def run(source):
        state = predictor.init_state(source)
        assert (state.num_frames, state.video_height, state.video_width) == (4, H, W)
        predictor.add_new_mask(state, 0, 1, _disc_mask(0))
        predictor.add_new_points_or_box(state, 0, 2, points=[[47, 16]], labels=[1])
        return _collect(predictor.propagate_in_video(state, progress=False))

    from_list = run(video)
    from_folder = run(str(_write_folder(tmp_path / "png", video)))  # PNG is lossless: identical pixels
    assert all(torch.equal(from_list[t][1], from_folder[t][1]) for t in range(4))
    from_array = run(np.stack(video))
    assert all(torch.equal(from_list[t][1], from_array[t][1]) for t in range(4))

    path = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (W, H))
    assert writer.isOpened()
    for f in video:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    cap, decoded = cv2.VideoCapture(path), []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    from_mp4, from_decoded = run(path), run(decoded)
    assert all(torch.equal(from_mp4[t][1], from_decoded[t][1]) for t in range(4))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
def test_offload_state_to_cpu(predictor, device):
    model = predictor.model.to(device)
    try:
        p = VideoPredictor(model)
        video = _frames(4)
        runs = []
        for offload in (False, True):
            state = p.init_state(video, offload_state_to_cpu=offload, offload_video_to_cpu=True)
            assert state.storage_device.type == ("cpu" if offload else device)
            p.add_new_points_or_box(state, 0, 1, points=[[15, 20]], labels=[1])
            runs.append(_collect(p.propagate_in_video(state, progress=False)))
            for out in list(state.objects[1].cond_outputs.values()) + list(state.objects[1].non_cond_outputs.values()):
                assert out.maskmem_features.device.type == state.storage_device.type
                assert out.maskmem_features.dtype == torch.bfloat16
                assert out.pred_masks.device.type == state.storage_device.type
        for t in range(4):
            assert runs[0][t][1].device.type == device
            torch.testing.assert_close(runs[0][t][1].cpu(), runs[1][t][1].cpu(), atol=1e-5, rtol=0)
    finally:
        predictor.model.to("cpu")


def test_inference_state_is_exported():
    assert InferenceState.__name__ == "InferenceState"
    assert issubclass(PromptError, ValueError) and issubclass(VideoError, ValueError)


@pytest.mark.parametrize("num_maskmem,stride,max_ptrs", [(7, 1, 16), (7, 3, 16), (3, 2, 4), (2, 1, 5), (1, 1, 16)])
def test_frames_to_keep_holds_everything_later_frames_read(num_maskmem, stride, max_ptrs):
    """Brute force: after frame `last`, every tracked frame any later frame selects is kept, and nothing more."""
    from efficient_sam2.tracking import frames_to_keep

    for last in range(1, 40):
        cond = {0: "c"}
        non = {t: "n" for t in range(1, last + 1)}
        needs_memory, needs_pointer = frames_to_keep(last, num_maskmem, stride, max_ptrs)
        read_mem, read_ptr = set(), set()
        for later in range(last + 1, last + 3 * stride * num_maskmem + max_ptrs + 3):
            # frames after `last` are not tracked yet; they only add newer frames, which are never dropped
            chosen, sel, unsel = select_memory_frames(later, cond, non, num_maskmem, stride)
            read_mem |= {t for _, t, _ in chosen if 0 < t <= last}
            ptrs = select_object_pointers(later, sel, unsel, non, 10**6, max_ptrs, signed=True)
            read_ptr |= {t for _, t, _ in ptrs if 0 < t <= last}
        kept_mem = {t for t in non if needs_memory(t)}
        kept_ptr = {t for t in non if needs_pointer(t)}
        assert read_mem <= kept_mem and read_ptr <= kept_ptr, (last, read_mem - kept_mem, read_ptr - kept_ptr)
        assert kept_mem - read_mem <= {last}, (last, kept_mem - read_mem)  # at most frame t-1 of the next frame
        assert kept_ptr == read_ptr, (last, kept_ptr ^ read_ptr)
