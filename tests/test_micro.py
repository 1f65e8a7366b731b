"""The bundled micro SAM 2.1 really segments: an accuracy regression test on held-out synthetic videos.

The videos come from the validation split of the generator (a split no training video comes from, by
construction of the seeds), so this measures generalisation, not memorisation. Thresholds are set a margin below
what the shipped weights score (see README "The micro model"): a change that breaks the model, the tracking loop,
the memory bank or the bundled files fails them; noise from another torch build does not.
"""

from __future__ import annotations

import warnings

import pytest

from efficient_sam2 import EfficientConfig, build_sam2_video_predictor
from efficient_sam2.configs import MICRO
from efficient_sam2.data.writer import write_dataset
from efficient_sam2.training.clips import ClipDataset
from efficient_sam2.training.validation import track_and_score

pytestmark = pytest.mark.usefixtures("one_thread")

# The shipped weights (click-seeded, 2026-12-07) score J&F 73.9 (dense) on these four videos (10 objects, 16
# frames, 256 px) and Efficient-SAM2 73.4 (defaults, bundled shortcut); they score 80.1 on the 30 held-out standard
# videos of BENCHMARKS.md, so these four are harder than average (stage G, before click seeds: 73.6, Efficient-SAM2
# 71.8 with the then paper defaults, 80.8). A model that does not track scores far below (random
# weights: 0-4; the first training stage, whose IoU head picked the all-foreground output: below 15; the weights
# trained at 128 px: 58.0 there; earlier shipped weights: stage E 66.3, stage F 70.7), so 64 leaves room for
# numerical noise across torch builds and still catches a real regression of the weights, the tracking loop or
# the memory bank.
DENSE_MIN_JF = 64.0
EFFICIENT_MAX_DROP = 3.0


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("micro_val")
    write_dataset(root, videos=4, split="val", seed=11, frames=16, progress=False)
    data = ClipDataset(root, clip_len=2, image_size=MICRO.image_size)
    return [data.video(n) for n in data.video_names()]


def test_bundled_weights_load_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dense = build_sam2_video_predictor("micro")
        eff = build_sam2_video_predictor("micro", efficient=EfficientConfig())
    assert dense.model.weights_source == "bundled" and eff.model.weights_source == "bundled"
    assert eff.shortcut_info.get("source") != "untrained"


def test_bundled_micro_tracks_held_out_videos(held_out):
    dense = build_sam2_video_predictor("micro")
    score = track_and_score(dense.model, held_out, predictor=dense)
    assert score.objects >= 4
    assert score.jf >= DENSE_MIN_JF, score
    eff = build_sam2_video_predictor("micro", efficient=EfficientConfig())
    eff_score = track_and_score(eff.model, held_out, predictor=eff)
    assert eff_score.jf >= score.jf - EFFICIENT_MAX_DROP, (score, eff_score)
