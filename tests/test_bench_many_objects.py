"""The benchmark's synthetic video shows every object on the first frame, however many are asked for."""

import numpy as np
import pytest

from efficient_sam2.bench.speed import MIN_VISIBLE, synthetic_video


@pytest.mark.parametrize("count, size", [(16, (144, 256)), (64, (144, 256)), (64, (96, 128))])
def test_every_object_shows_on_the_first_frame(count, size):
    h, w = size
    frames, masks = synthetic_video(3, h, w, count, seed=0)
    assert len(frames) == 3 and frames[0].shape == (h, w, 3)
    assert sorted(masks) == list(range(1, count + 1))
    first = np.zeros((h, w), np.int64)
    for obj_id, m in masks.items():
        assert m.shape == (h, w) and m.dtype == bool and m.any(), obj_id
        first[m] += 1
    assert first.max() == 1  # one owner per pixel (the later object on top)
    # each object shows at least MIN_VISIBLE of its ellipse: its colour region on frame 0 is that large
    sizes = np.array([m.sum() for m in masks.values()])
    assert sizes.min() >= MIN_VISIBLE * np.pi * (h * 0.08) * (w * 0.06) * (8 / count)
    # the same seed gives the same video
    again, masks2 = synthetic_video(3, h, w, count, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(frames, again))
    assert all(np.array_equal(masks[k], masks2[k]) for k in masks)

