"""SAM 2 training (`efficient-sam2 train`): the loss falls, resuming equals not stopping, bad input is refused."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from efficient_sam2.cli import main
from efficient_sam2.data.writer import write_dataset
from efficient_sam2.modeling.sam2 import DecoderOutput
from efficient_sam2.training.clips import ClipDataset
from efficient_sam2.training.data import TrainingDataError
from efficient_sam2.training.sam2_trainer import (
    SAM2TrainConfig,
    SAM2Trainer,
    SAM2TrainingError,
    dice_loss,
    mask_losses,
    sigmoid_focal_loss,
)
from train_resume import full_and_resumed

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    write_dataset(root, videos=2, split="train", seed=3, frames=6, size=(64, 64), progress=False)
    return str(root)


def _config(data, out, **kw):
    base = dict(model="micro", data=data, out=str(out), image_size=64, steps=4, batch_size=2, clip_len=3,
                warmup_steps=1, save_every=2, lr=2e-3)
    base.update(kw)
    return SAM2TrainConfig(**base)


def test_losses_by_hand():
    logits = torch.tensor([[[[0.0, 2.0]]]])
    target = torch.tensor([[[[1.0, 0.0]]]])
    # focal: pixel 0: ce = log 2, p_t = 0.5, alpha_t = 0.25; pixel 1: ce = log(1 + e^2), p_t = 1 - s(2), 0.75
    s2 = torch.sigmoid(torch.tensor(2.0))
    expect = (0.25 * np.log(2) * 0.25 + 0.75 * float(torch.log1p(torch.exp(torch.tensor(2.0)))) * float(s2) ** 2) / 2
    assert float(sigmoid_focal_loss(logits, target)) == pytest.approx(expect, rel=1e-5)
    # dice: p = (0.5, s(2)); 1 - (2*0.5 + 1) / (0.5 + s(2) + 1 + 1)
    assert float(dice_loss(logits, target)) == pytest.approx(1 - 2.0 / (2.5 + float(s2)), rel=1e-5)


def test_mask_losses_pick_the_best_output_and_skip_absent_objects():
    gt = torch.zeros(2, 1, 8, 8)
    gt[0, 0, :4] = 1  # object 0 present (top half); object 1 absent
    good = torch.where(gt[0, 0] > 0, 10.0, -10.0)
    multi = torch.stack([torch.stack([-good, good, -good]), torch.stack([-good, -good, -good])])  # (2, 3, 8, 8)
    dec = DecoderOutput(multi, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), multi[:, 1:2], multi[:, 1:2],
                        torch.zeros(2, 4), torch.tensor([[10.0], [-10.0]]))
    terms = mask_losses(dec, gt)
    assert float(terms.focal) < 1e-3 and float(terms.dice) < 1e-3  # the good output of object 0 was chosen
    # IoU head: object 0's outputs have IoU 0, 1, 0 with the ground truth and predicted 0, 1, 0
    assert float(terms.iou) == pytest.approx(0.0, abs=1e-6)
    # a saturated head (p = 1e-5 where the IoU is 1) still gets the gradient p - IoU at its logit
    p = torch.tensor([1e-5], requires_grad=True)
    logit = torch.logit(p.detach()).requires_grad_()
    torch.nn.functional.binary_cross_entropy(torch.sigmoid(logit), torch.tensor([1.0])).backward()
    assert float(logit.grad) == pytest.approx(1e-5 - 1.0, rel=1e-3)
    assert float(terms.score) < 1e-3


def test_all_outputs_weight_adds_the_mean_over_outputs():
    gt = torch.zeros(1, 1, 8, 8)
    gt[0, 0, :4] = 1
    good = torch.where(gt[0, 0] > 0, 10.0, -10.0)
    multi = torch.stack([good, good, -good])[None]  # two right outputs, one inverted
    dec = DecoderOutput(multi, torch.zeros(1, 3), multi[:, :1], multi[:, :1], torch.zeros(1, 4),
                        torch.tensor([[10.0]]))
    base = mask_losses(dec, gt)
    extra = mask_losses(dec, gt, all_outputs_weight=0.5)
    per_output = dice_loss(torch.nn.functional.interpolate(multi, size=(8, 8)), gt.expand(1, 3, 8, 8))[0]
    assert float(extra.dice - base.dice) == pytest.approx(0.5 * float(per_output.mean()), rel=1e-5)
    assert float(extra.dice) > float(base.dice) + 0.1  # the inverted output is now penalised


def test_clips_are_a_function_of_seed_and_step(data):
    ds = ClipDataset(data, clip_len=3, image_size=64)
    a, b, c = ds.sample(2, 0, 5), ds.sample(2, 0, 5), ds.sample(2, 0, 6)
    assert torch.equal(a.images, b.images) and a.obj_ids == b.obj_ids
    assert not (torch.equal(a.images, c.images) and a.starts == c.starts)
    assert a.images.shape == (2, 3, 3, 64, 64) and a.masks.shape == (2, 3, 1, 64, 64)
    assert all(float(m[0].sum()) > 0 for m in a.masks)  # the object is on the first frame of every clip


def test_a_few_steps_lower_the_loss(data, tmp_path):
    cfg = _config(data, tmp_path / "run", steps=12, batch_size=2, prompt_probs=(1.0, 0.0, 0.0),
                  correction_prob=0.0, lr=3e-3, warmup_steps=0)
    trainer = SAM2Trainer(cfg, progress=False)
    with torch.no_grad():
        before = [float(trainer.clip_loss(s).total) for s in range(3)]
    for _ in range(cfg.steps):
        trainer.train_step()
    with torch.no_grad():
        after = [float(trainer.clip_loss(s).total) for s in range(3)]
    assert sum(after) < 0.8 * sum(before), (before, after)


def test_interrupted_run_resumed_equals_uninterrupted(data, tmp_path):
    full, resumed = full_and_resumed(lambda out: _config(data, out), tmp_path)
    assert [r.loss for r in full.history] == [r.loss for r in resumed.history]
    for name in ("model.pt", "checkpoint.pt", "loss.csv", "loss.png", "config.json"):
        assert os.path.isfile(tmp_path / "cut" / name)


def test_bf16_autocast_matches_fp32_and_trains(data, tmp_path):
    """--bf16 (meant for CUDA, run here with the CPU's autocast): the same clip gives nearly fp32's loss terms, the
    gradients are finite and a bf16 step moves the weights the way an fp32 step does."""
    fp32 = SAM2Trainer(_config(data, tmp_path / "fp32", prompt_probs=(1.0, 0.0, 0.0), correction_prob=0.0),
                       progress=False)
    bf16 = SAM2Trainer(_config(data, tmp_path / "bf16", prompt_probs=(1.0, 0.0, 0.0), correction_prob=0.0,
                               bf16=True), progress=False)
    bf16.model.load_state_dict(fp32.model.state_dict())
    with torch.no_grad():
        a, b = fp32.clip_loss(0), bf16.clip_loss(0)
    for name in ("focal", "dice", "iou", "score"):
        x, y = float(getattr(a, name)), float(getattr(b, name))
        assert np.isfinite(y) and abs(x - y) <= 0.05 * abs(x) + 1e-3, (name, x, y)
    before = {k: v.clone() for k, v in fp32.model.state_dict().items()}
    fp32.train_step()
    bf16.train_step()
    moved = [(fp32.model.state_dict()[k] - before[k]).flatten() for k in before]
    moved_bf16 = [(bf16.model.state_dict()[k] - before[k]).flatten() for k in before]
    u, v = torch.cat(moved), torch.cat(moved_bf16)
    assert torch.isfinite(v).all() and float(v.abs().sum()) > 0
    assert float(torch.nn.functional.cosine_similarity(u, v, dim=0)) > 0.9


def test_resume_with_other_settings_is_refused(data, tmp_path):
    SAM2Trainer(_config(data, tmp_path / "r", steps=1), progress=False).train()
    with pytest.raises(SAM2TrainingError, match="lr"):
        SAM2Trainer(_config(data, tmp_path / "r", steps=2, lr=1e-2), resume=True, progress=False)


def test_freeze_keeps_the_part_fixed(data, tmp_path):
    trainer = SAM2Trainer(_config(data, tmp_path / "f", steps=1, freeze=("image_encoder",)), progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_step()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("image_encoder."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("sam_mask_decoder."))


def test_bad_input(data, tmp_path, capsys):
    # a data folder without annotations
    no_ann = tmp_path / "noann"
    (no_ann / "JPEGImages" / "v").mkdir(parents=True)
    with pytest.raises(TrainingDataError, match="Annotations"):
        ClipDataset(no_ann, 3, 64)
    # a clip longer than the videos
    with pytest.raises(TrainingDataError, match="shorter than the clip length 7"):
        ClipDataset(data, 7, 64)
    # a --freeze name that does not exist
    with pytest.raises(SAM2TrainingError, match="cannot freeze 'decoder'.*mask_decoder"):
        _config(data, tmp_path / "x", freeze=("decoder",))
    # a checkpoint of another model
    other = tmp_path / "tiny.pt"
    from efficient_sam2.configs import get_config
    from efficient_sam2.modeling.sam2 import SAM2Model

    torch.save({"model": SAM2Model(get_config("tiny", image_size=64)).state_dict()}, other)
    code = main(["train", "--model", "micro", "--data", data, "--out", str(tmp_path / "o"), "--checkpoint",
                 str(other), "--image-size", "64", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "error:" in err and "tiny" in err
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")
    # an output folder that exists: refused, nothing overwritten
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = main(["train", "--model", "micro", "--data", data, "--out", str(out), "--image-size", "64",
                 "--steps", "1", "--no-progress"])
    assert code == 2 and "not empty" in capsys.readouterr().err
    assert os.listdir(out) == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


def test_cli_trains_and_writes_its_files(data, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "--model", "micro", "--data", data, "--val-data", data, "--val-videos", "1",
                 "--out", str(out), "--image-size", "64", "--steps", "2", "--batch-size", "1", "--clip-len", "3",
                 "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "validation J&F" in printed
    assert sorted(os.listdir(out)) == ["checkpoint.pt", "config.json", "loss.csv", "loss.png", "model.pt",
                                       "validation.csv"]
    # the weights load into the builder
    from efficient_sam2.build import build_sam2

    build_sam2("micro", str(out / "model.pt"), image_size=64)
