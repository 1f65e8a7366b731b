"""Prompt tuning (`train-prompts`): recorded tracking replays exactly, only the heads move, the image loss falls,
resuming is bit-exact, bad input is refused clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from efficient_sam2.build import build_sam2
from efficient_sam2.cli import main
from efficient_sam2.data.images import write_images
from efficient_sam2.data.writer import write_dataset
from efficient_sam2.training.data import TrainingDataError
from efficient_sam2.training.images import image_losses
from efficient_sam2.training.prompting import (PromptTuneConfig, PromptTuner, _trained, distill_loss,
                                               record_tracking, tune_prompting)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("prompt_tune")
    write_dataset(root / "videos", videos=1, split="train", seed=3, frames=4, size=(64, 64), progress=False)
    write_images(root / "images", 3, "train", 0, size=(64, 64), progress=False)
    return str(root / "videos"), str(root / "images")


def _model():
    return build_sam2("micro", image_size=64, click_seed_radius=0.0)


def _config(data, out, **kw):
    base = dict(image_data=data[1], video_data=data[0], out=str(out), steps=4, warmup=1, save_every=2, lr=2e-3,
                image_batch=2, image_instances=3, distill_videos=2, distill_batch=4)
    base.update(kw)
    return PromptTuneConfig(**base)


def test_recorded_tracking_replays_exactly(data):
    model = _model()
    calls = record_tracking(model, data[0], 2, progress=False)
    # tracked frames, and mask-prompted ones (pointer only)
    assert calls and {c.kind for c in calls} >= {(1, False, True, False), (1, True, False, True)}
    assert "decode" not in vars(model)  # the recording hook is gone
    with torch.no_grad():
        assert distill_loss(model, calls).item() < 1e-5
        # of a pointer-only call only the pointer counts; of a tracked call the masks count too
        pointer = [c for c in calls if c.pointer_only]
        tracked = [c for c in calls if not c.pointer_only]
        for c in pointer + tracked:
            c.logits = c.logits + 5.0
        assert distill_loss(model, pointer).item() < 1e-5
        assert distill_loss(model, tracked).item() > 1e-3
        for c in pointer + tracked:
            c.logits = c.logits - 5.0
        pointer[0].obj_ptr = pointer[0].obj_ptr + 1.0
        assert distill_loss(model, pointer).item() > 1e-3
        pointer[0].obj_ptr = pointer[0].obj_ptr - 1.0
        with torch.no_grad():
            model.sam_mask_decoder.iou_prediction_head.layers[0].weight.mul_(1.5)
        assert distill_loss(model, calls).item() > 1e-3  # and it sees a changed decoder


def test_only_the_heads_move_and_the_image_loss_falls(data, tmp_path):
    # from fresh heads, so that 15 steps show the loss falling (the bundled heads are already tuned for images)
    torch.manual_seed(0)
    model = build_sam2("micro", image_size=64, weights="random", click_seed_radius=0.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuner = PromptTuner(model, _config(data, tmp_path / "run", steps=15, lr=3e-3, warmup=0), progress=False)

    def image_loss():
        total = 0.0
        for s in range(3):
            feats, batch = tuner.images.sample(2, 3, 0, 100 + s)
            with torch.no_grad():
                a, b = image_losses(model, batch, np.random.default_rng(s), 0.3, feats=feats)
            total += float(a.total + b.total)
        return total

    start = image_loss()
    for _ in range(15):
        rec = tuner.train_step()
        assert rec.image > 0 and rec.distill >= -1e-6  # a divergence: 0 up to rounding at the start
    assert image_loss() < 0.8 * start
    after = model.state_dict()
    for name, _ in model.named_parameters():
        moved = not torch.equal(before[name], after[name])
        if not _trained(name):
            assert not moved, name
    assert not torch.equal(before["no_mem_embed"], after["no_mem_embed"])
    assert torch.equal(before["sam_mask_decoder.conv_s0.weight"], after["sam_mask_decoder.conv_s0.weight"])


def test_interrupted_run_resumed_equals_uninterrupted(data, tmp_path):
    full = tune_prompting(_model(), _config(data, tmp_path / "full"), progress=False)
    cut = _config(data, tmp_path / "cut", steps=2)
    tune_prompting(_model(), cut, progress=False)
    cut.steps = 4
    resumed = tune_prompting(_model(), cut, resume=True, progress=False)
    assert [(r.loss, r.image, r.distill) for r in full.history] == \
        [(r.loss, r.image, r.distill) for r in resumed.history]
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="image_instances"):  # the run's settings are part of it
        tune_prompting(_model(), _config(data, tmp_path / "cut", steps=4, image_instances=2), resume=True,
                       progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        tune_prompting(_model(), _config(data, tmp_path / "full"), progress=False)


def test_the_command_writes_weights_any_command_loads(data, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["train-prompts", "--image-data", data[1], "--video-data", data[0], "--out", str(out), "--steps", "2",
               "--image-batch", "1", "--image-instances", "2", "--distill-videos", "1", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert "weights in" in capsys.readouterr().out
    for name in ("model.pt", "checkpoint.pt", "loss.csv", "config.json"):
        assert (out / name).is_file()
    build_sam2("micro", checkpoint=str(out / "model.pt"))


def test_bad_input(data, tmp_path, capsys):
    with pytest.raises(ValueError, match="distill"):
        _config(data, tmp_path, video_data=None).check()
    with pytest.raises(ValueError, match="box_prob"):
        _config(data, tmp_path, box_prob=2).check()
    with pytest.raises(TrainingDataError, match="JPEGImages/ and Annotations/"):
        PromptTuner(_model(), _config(data, tmp_path / "o", image_data=str(tmp_path)), progress=False)
    rc = main(["train-prompts", "--image-data", str(tmp_path), "--video-data", data[0], "--out",
               str(tmp_path / "run"), "--no-progress"])
    assert rc == 2 and "JPEGImages/ and Annotations/" in capsys.readouterr().err
    rc = main(["train-prompts", "--image-data", data[1], "--out", str(tmp_path / "run"), "--no-progress"])
    assert rc == 2 and "distill" in capsys.readouterr().err


def test_click_seed_radius_is_checked_recorded_and_kept_on_resume(data, tmp_path, capsys):
    import json

    with pytest.raises(ValueError, match="click_seed_radius"):
        PromptTuner(_model(), _config(data, tmp_path / "o", click_seed_radius=12.0), progress=False)
    seeded = PromptTuner(build_sam2("micro", image_size=64), _config(data, tmp_path / "own", distill_videos=0),
                         progress=False)
    assert seeded.config.click_seed_radius == 12.0  # None: the model's own (the micro config's 12)
    out = tmp_path / "seeded"
    args = ["train-prompts", "--image-data", data[1], "--video-data", data[0], "--out", str(out), "--steps", "2",
            "--image-batch", "1", "--image-instances", "2", "--distill-videos", "1", "--no-progress",
            "--click-seed-radius", "8"]
    assert main(args) == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["click_seed_radius"] == 8.0
    args[args.index("--steps") + 1] = "3"
    rc = main(args[:-1] + ["6", "--resume"])
    assert rc == 2 and "click_seed_radius" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0, capsys.readouterr().err


def test_box_seeds_and_single_output_are_the_models_recorded_and_kept_on_resume(data, tmp_path, capsys):
    import json

    own = PromptTuner(build_sam2("micro", image_size=64), _config(data, tmp_path / "own", distill_videos=0),
                      progress=False)
    assert own.config.box_seeds is True and own.config.single_output_from_best is True  # the micro config's
    assert own.config.seed_mask_prompts is True
    with pytest.raises(ValueError, match="box_seeds"):
        PromptTuner(build_sam2("micro", image_size=64), _config(data, tmp_path / "o", distill_videos=0,
                                                                box_seeds=False), progress=False)
    out = tmp_path / "plain"
    args = ["train-prompts", "--image-data", data[1], "--video-data", data[0], "--out", str(out), "--steps", "2",
            "--image-batch", "1", "--image-instances", "2", "--distill-videos", "0", "--no-progress",
            "--seed-mask-prompts", "off", "--box-seeds", "off", "--single-output", "token"]
    assert main(args) == 0, capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text())
    assert saved["box_seeds"] is False and saved["single_output_from_best"] is False
    assert saved["seed_mask_prompts"] is False
    flipped = list(args)
    flipped[flipped.index("--seed-mask-prompts") + 1] = "on"
    rc = main(flipped + ["--resume"])
    assert rc == 2 and "seed_mask_prompts" in capsys.readouterr().err
    args[args.index("--steps") + 1] = "3"
    rc = main(args[:-1] + ["best", "--resume"])
    assert rc == 2 and "single_output_from_best" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0, capsys.readouterr().err


def test_distill_from_records_the_teachers_tracking(data, tmp_path, capsys):
    """A second stage starts from tuned weights but holds the original model's tracking: the recorded calls are
    the teacher's (they replay exactly on the teacher, not on the start), and a missing teacher file is refused."""
    teacher = _model()
    start = _model()
    with torch.no_grad():
        start.sam_mask_decoder.iou_prediction_head.layers[0].weight.mul_(1.5)
        start.sam_mask_decoder.output_upscaling[0].weight.mul_(1.5)
    teacher_file = tmp_path / "teacher.pt"
    torch.save({"model": teacher.state_dict()}, teacher_file)
    tuner = PromptTuner(start, _config(data, tmp_path / "run", distill_from=str(teacher_file)), progress=False)
    with torch.no_grad():
        assert distill_loss(teacher, tuner.calls).item() < 1e-5
        assert distill_loss(start, tuner.calls).item() > 1e-3
    with pytest.raises(ValueError, match="no such file"):
        _config(data, tmp_path, distill_from=str(tmp_path / "nope.pt")).check()
    with pytest.raises(ValueError, match="distill_videos is 0"):
        _config(data, tmp_path, distill_from=str(teacher_file), distill_videos=0).check()
    rc = main(["train-prompts", "--image-data", data[1], "--video-data", data[0], "--out", str(tmp_path / "cli"),
               "--distill-from", str(tmp_path / "nope.pt"), "--no-progress"])
    assert rc == 2 and "no such file" in capsys.readouterr().err
