"""Prompt files (efficient_sam2.io.prompts): a good file, every kind of bad line, masks, applying them.
(The prompt files of the opencv-doc clips are checked in test_clips.py.)"""

import numpy as np
import pytest

from efficient_sam2.io.masks import write_palette_mask
from efficient_sam2.io.prompts import (ObjectPrompt, PromptError, VideoPrompts, apply_prompts, load_prompts,
                                       parse_prompts)

GOOD = """\
# two objects on frame 0, one more on frame 3
point 1 0 266 250            # positive (the default label)
point 1 0 268.5 285 1
point 1 0 240 250 0          # negative
box   2 0 480 150 550 240
point 2 0 515 183

POINT 7 3 10 20
"""


def test_a_good_file(tmp_path):
    path = tmp_path / "clip.prompts"
    path.write_text(GOOD)
    prompts = load_prompts(path)
    assert isinstance(prompts, VideoPrompts) and prompts.source == str(path)
    assert prompts.obj_ids == [1, 2, 7] and prompts.frames == [0, 3]
    one, two, seven = prompts.prompts
    assert (one.obj_id, one.frame, one.line) == (1, 0, 2) and one.box is None and one.mask is None
    np.testing.assert_array_equal(one.points, np.array([[266, 250], [268.5, 285], [240, 250]], np.float32))
    assert one.points.dtype == np.float32 and one.labels.dtype == np.int32
    np.testing.assert_array_equal(one.labels, [1, 1, 0])
    assert two.box == (480, 150, 550, 240) and two.points.tolist() == [[515, 183]] and two.labels.tolist() == [1]
    assert (seven.obj_id, seven.frame) == (7, 3)
    assert [p.obj_id for p in prompts.on_frame(0)] == [1, 2]
    prompts.check_video(num_frames=4, size=(576, 768))


@pytest.mark.parametrize("line, message", [
    ("pointt 1 0 3 4", "unknown prompt 'pointt'; a line is one of: point OBJ FRAME X Y [LABEL]"),
    ("point 1 0 3", "point takes 4 or 5 values (point OBJ FRAME X Y [LABEL]); got 3"),
    ("point 1 0 3 4 1 9", "point takes 4 or 5 values"),
    ("point one 0 3 4", "the object id must be a whole number; got 'one'"),
    ("point 0 0 3 4", "the object id must be 1..255; got 0"),
    ("point 256 0 3 4", "the object id must be 1..255; got 256"),
    ("point 1 -1 3 4", "the frame must be >= 0; got -1"),
    ("point 1 0.5 3 4", "the frame must be a whole number; got '0.5'"),
    ("point 1 0 x 4", "x must be a number; got 'x'"),
    ("point 1 0 3 nan", "y must be a finite number; got 'nan'"),
    ("point 1 0 3 4 2", "the label (1 positive, 0 negative) must be 0..1; got 2"),
    ("box 1 0 10 10 20", "box takes 6 values (box OBJ FRAME X0 Y0 X1 Y1); got 5"),
    ("box 1 0 30 10 20 40", "must have x1 > x0 and y1 > y0"),
    ("mask 0", "mask takes 2 values (mask FRAME PNG); got 1"),
    ("mask 0 missing.png", "mask file not found"),
])
def test_each_bad_line_is_named(tmp_path, line, message):
    path = tmp_path / "bad.prompts"
    path.write_text(f"# a comment\npoint 3 0 1 1\n\n{line}\n")
    with pytest.raises(PromptError) as exc:
        load_prompts(path)
    assert str(exc.value).startswith(f"{path}:4: ") and message in str(exc.value)
    assert exc.value.line == 4 and exc.value.path == str(path)


def test_bad_combinations_are_named():
    with pytest.raises(PromptError, match=r"^f:3: object 1 on frame 0 already has a box \(line 1\)"):
        parse_prompts("box 1 0 0 0 5 5\npoint 1 0 2 2\nbox 1 0 1 1 4 4", source="f")
    with pytest.raises(PromptError, match=r"^f:2: object 4 on frame 2 has only negative clicks"):
        parse_prompts("point 1 0 2 2\npoint 4 2 2 2 0\npoint 4 2 3 3 0", source="f")
    parse_prompts("point 4 2 2 2 0\nbox 4 2 0 0 9 9", source="f")  # negative clicks with a box are fine
    with pytest.raises(PromptError, match=r"^f: holds no prompt"):
        parse_prompts("# nothing\n\n   # at all\n", source="f")


def test_masks_in_a_prompt_file_and_as_the_file(tmp_path):
    ids = np.zeros((30, 40), np.uint8)
    ids[2:10, 3:12] = 1
    ids[15:25, 20:35] = 4
    write_palette_mask(tmp_path / "00005.png", ids)
    (tmp_path / "p.prompts").write_text("mask 5 00005.png\npoint 2 5 30 3\n")
    prompts = load_prompts(tmp_path / "p.prompts")
    assert prompts.obj_ids == [1, 2, 4]
    masks = {p.obj_id: p.mask for p in prompts.prompts if p.mask is not None}
    assert set(masks) == {1, 4} and masks[4].dtype == bool and np.array_equal(masks[4], ids == 4)
    assert all(p.frame == 5 and p.line in (1, 2) for p in prompts.prompts)
    prompts.check_video(6, (30, 40))
    with pytest.raises(PromptError, match=r"p.prompts:1: mask of object 1 is 40x30 \(WxH\) but the video's frames "
                                          r"are 50x30"):
        prompts.check_video(6, (30, 50))
    # the PNG alone: its objects on the frame its name gives
    alone = load_prompts(tmp_path / "00005.png")
    assert alone.obj_ids == [1, 4] and alone.frames == [5]
    write_palette_mask(tmp_path / "first.png", ids)
    assert load_prompts(tmp_path / "first.png").frames == [0]
    # a mask and clicks for the same object and frame: refused, naming both lines
    (tmp_path / "q.prompts").write_text("point 4 5 3 3\nmask 5 00005.png\n")
    with pytest.raises(PromptError, match=r"q.prompts:2: object 4 on frame 5 is already prompted \(line 1\)"):
        load_prompts(tmp_path / "q.prompts")
    (tmp_path / "r.prompts").write_text("mask 5 00005.png\npoint 4 5 3 3\n")
    with pytest.raises(PromptError, match=r"r.prompts:2: object 4 on frame 5 already has a mask \(line 1\)"):
        load_prompts(tmp_path / "r.prompts")
    write_palette_mask(tmp_path / "empty.png", np.zeros((30, 40), np.uint8))
    with pytest.raises(PromptError, match=r"empty.png:1: mask .* is empty"):
        load_prompts(tmp_path / "empty.png")
    (tmp_path / "binary.prompts").write_bytes(b"\xff\xfe\x00point")
    with pytest.raises(PromptError, match="is not UTF-8 text"):
        load_prompts(tmp_path / "binary.prompts")
    with pytest.raises(FileNotFoundError, match="prompt file not found"):
        load_prompts(tmp_path / "nope.prompts")


def test_check_video_names_the_line():
    prompts = parse_prompts("point 1 0 5 5\n\npoint 2 3 100 5\nbox 3 0 500 500 600 600", source="v.prompts")
    with pytest.raises(PromptError, match=r"^v.prompts:3: object 2: click \(100, 5\) is outside the 64x48"):
        prompts.check_video(10, (48, 64))
    with pytest.raises(PromptError, match=r"^v.prompts:3: frame 3 is past the end of the video \(frames 0..2\)"):
        prompts.check_video(3, (480, 640))
    with pytest.raises(PromptError, match=r"^v.prompts:4: object 3: box \(500, 500, 600, 600\) is outside the 400x300"):
        prompts.check_video(10, (300, 400))


def test_apply_prompts_calls_the_predictor():
    calls = []

    class Recorder:
        def add_new_points_or_box(self, state, frame, obj_id, points=None, labels=None, box=None):
            calls.append(("points", state, frame, obj_id, None if points is None else points.tolist(),
                          None if labels is None else labels.tolist(), box))

        def add_new_mask(self, state, frame, obj_id, mask):
            calls.append(("mask", state, frame, obj_id, int(mask.sum())))

    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    prompts = [ObjectPrompt(2, 0, box=(0, 0, 3, 3)), ObjectPrompt(5, 1, mask=mask),
               ObjectPrompt(1, 0, np.array([[1, 2]], np.float32), np.array([1], np.int32))]
    apply_prompts(Recorder(), "S", prompts)
    assert calls == [("points", "S", 0, 2, None, None, (0, 0, 3, 3)), ("mask", "S", 1, 5, 4),
                     ("points", "S", 0, 1, [[1.0, 2.0]], [1], None)]

