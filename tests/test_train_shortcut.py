"""Shortcut training (`efficient-sam2 train-shortcut`) on synthetic videos with a tiny random-weight model.

At image_size 256 the routed stride-16 stage of tiny is a 16 x 16 map cut into 2 x 2 windows of 14 tokens; with
EfficientConfig(kept_windows=0.25) every routed frame computes one window and sends three through the shortcut.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from efficient_sam2.build import build_sam2_video_predictor
from efficient_sam2.cli import main as cli_main
from efficient_sam2.data import dataset_layout, write_dataset
from efficient_sam2.efficient.config import EfficientConfig
from efficient_sam2.efficient.shortcut import BottleneckShortcut, IdentityShortcut, build_shortcut, load_shortcut
from efficient_sam2.io.masks import write_object_mask, write_palette_mask
from efficient_sam2.training import (
    ShortcutTrainer,
    ShortcutTrainingError,
    TrainConfig,
    TrainingDataError,
    evaluate_reconstruction,
    moving_average,
    plot_loss_curve,
    read_loss_csv,
    read_video_list,
    scan_training_videos,
    train_shortcut,
)
from efficient_sam2.predictors.efficient_video import EfficientVideoPredictor
from efficient_sam2.tracking import TrackingLoop
from efficient_sam2.training.shortcut_trainer import (
    STATE_FILE,
    _efficient_method,
    _per_object_mse,
    _rollout,
    default_frame_stride,
    prompt_masks,
)

sys.path.insert(0, os.path.dirname(__file__))
from reference_oracle import randomize_  # noqa: E402

SIZE = 256
ROUTING = EfficientConfig.paper(kept_windows=0.25, dense_frames=1)


def _write_video(root, name, n, seed, h=96, w=128, sav=False):
    """A textured background, a disc (object 1) moving right and a square (object 2) moving; frame-0 mask only."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 90, size=(h, w, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    cx, cy = rng.integers(25, 60), rng.integers(25, 60)
    vx, vy = rng.integers(3, 7), rng.integers(-3, 4)
    colour = rng.integers(150, 255, 3)
    folder = root / "JPEGImages" / name
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(n):
        img = base.copy()
        disc = (yy - cy - vy * t) ** 2 + (xx - cx - vx * t) ** 2 < 14**2
        square = np.zeros((h, w), bool)
        square[10 + 2 * t : 34 + 2 * t, 90 - 3 * t : 112 - 3 * t] = True
        img[disc] = colour
        img[square] = (40, 200, 90)
        Image.fromarray(img).save(folder / f"{t:05d}.jpg", quality=95)
        if t == 0:
            ids = np.zeros((h, w), np.uint8)
            ids[disc] = 1
            ids[square & ~disc] = 2
            if sav:
                for obj in (1, 2):
                    write_object_mask(root / "sav" / name / f"{obj:03d}" / "00000.png", ids == obj)
            else:
                write_palette_mask(root / "Annotations" / name / "00000.png", ids)
    return ids


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    for i in range(3):
        _write_video(root, f"vid{i}", 5, seed=i)
    (root / "train.txt").write_text("# training videos\nvid0\nvid1\n")
    torch.manual_seed(0)
    predictor = build_sam2_video_predictor("tiny", weights="random", image_size=SIZE)
    randomize_(predictor.model, 0)
    ckpt = root / "tiny_random.pt"
    torch.save({"model": predictor.model.state_dict()}, ckpt)
    return root, ckpt


def _config(data, out, **kw):
    root, ckpt = data
    base = dict(model="tiny", checkpoint=str(ckpt), video_dir=str(root / "JPEGImages"),
                mask_dir=str(root / "Annotations"), output_dir=str(out), video_list=str(root / "train.txt"),
                image_size=SIZE, efficient=ROUTING, frame_stride=1, memory_strides=(1,), update_stride=2,
                save_every=1, progress=False)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """2 videos x 4 routed frames x 2 epochs = 16 loss terms, 8 updates."""
    out = tmp_path_factory.mktemp("run") / "out"
    config = _config(data, out, epochs=2, lr=2e-3)
    return config, train_shortcut(config)


# ---------------------------------------------------------------------------------------------------------------------
# training works


def test_loss_falls_and_is_recorded(trained):
    config, result = trained
    # every frame after frame 0 is routed with 3 background windows: 4 terms per video and epoch
    assert result.terms == 2 * 4 * 2
    assert result.updates == result.terms // config.update_stride
    assert result.epochs == 2
    losses = result.losses
    first, last = np.mean(losses[:8]), np.mean(losses[8:])
    avg = moving_average(losses, 4)
    print(f"\nmean loss epoch 1 {first:.5f} -> epoch 2 {last:.5f} ({100 * (1 - last / first):.0f}% lower); "
          f"moving average (4 terms) {avg[3]:.5f} -> {avg[-1]:.5f}")
    assert last < 0.75 * first
    assert avg[-1] < 0.6 * avg[3]

    rows = read_loss_csv(result.loss_csv)
    assert [r["term"] for r in rows] == list(range(1, 17))
    assert [r["loss"] for r in rows] == losses  # exact round trip (repr)
    assert np.allclose([r["moving_average"] for r in rows], moving_average(losses, config.update_stride))
    assert [r["update"] for r in rows] == [1 + i // 2 for i in range(16)]
    assert {r["video"] for r in rows} == {"vid0", "vid1"}
    assert {r["object"] for r in rows} == {1} and {r["frame"] for r in rows} == {1, 2, 3, 4}
    with Image.open(result.loss_plot) as img:
        assert img.size[0] >= 400 and len(set(np.asarray(img.convert("L")).ravel().tolist())) > 2
    for epoch in (1, 2):
        assert os.path.isfile(os.path.join(config.output_dir, f"shortcut_epoch{epoch}.pth"))


def test_trained_shortcut_reconstructs_held_out_video_better_than_identity(data, trained):
    root, ckpt = data
    config, result = trained
    model = build_sam2_video_predictor("tiny", ckpt, image_size=SIZE).model
    # held-out video, both objects (a batch of 2 through the roll-out)
    held_out = scan_training_videos(root / "JPEGImages", root / "Annotations", video_list=["vid2"], max_objects=2)
    assert held_out[0].object_ids == (1, 2)
    shortcut, _ = load_shortcut(result.shortcut_path, model_name="tiny")
    identity = evaluate_reconstruction(model, IdentityShortcut(), held_out, ROUTING)
    learned = evaluate_reconstruction(model, shortcut, held_out, ROUTING)
    print(f"\nheld-out MSE of memory-conditioned features: identity {identity.mse:.5f}, "
          f"trained {learned.mse:.5f} ({100 * (1 - learned.mse / identity.mse):.0f}% lower)")
    assert identity.terms == learned.terms == 2 * 4
    assert learned.mse < 0.7 * identity.mse


def test_saved_shortcut_loads_for_inference(data, trained):
    root, ckpt = data
    config, result = trained
    state = torch.load(result.state_path, weights_only=True)
    module, info = load_shortcut(result.shortcut_path, model_name="sam2.1_hiera_tiny")
    assert isinstance(module, BottleneckShortcut) and info["variant"] == "bottleneck" and info["dim"] == 384
    assert info["model"] == "sam2.1_hiera_tiny" and info["config"]["updates"] == result.updates
    assert info["config"]["efficient"]["kept_windows"] == 0.25
    for k, v in module.state_dict().items():
        assert torch.equal(v, state["shortcut"][k])

    predictor = build_sam2_video_predictor("tiny", ckpt, image_size=SIZE, efficient=ROUTING,
                                           shortcut_checkpoint=result.shortcut_path)
    for k, v in predictor.shortcut.state_dict().items():
        assert torch.equal(v, state["shortcut"][k])
    video = root / "JPEGImages" / "vid2"
    mask = np.asarray(Image.open(root / "Annotations" / "vid2" / "00000.png")) == 1
    st = predictor.init_state(str(video))
    predictor.add_new_mask(st, 0, 1, mask)
    frames = [t for t, _, _ in predictor.propagate_in_video(st, max_frame_num_to_track=2, progress=False)]
    assert frames == [0, 1, 2]
    assert predictor.statistics(st).kept_windows[2] == 0.25


def test_resume_continues_exactly(data, tmp_path):
    """Interrupt in the second video (after a checkpoint holding a partial accumulation), resume, compare."""
    kw = dict(epochs=1, lr=2e-3, max_frames=4)  # 2 videos x 3 routed frames
    full = train_shortcut(_config(data, tmp_path / "full", **kw))
    assert full.terms == 6 and full.updates == 3

    def interrupt(event):
        if event.term == 5:
            raise KeyboardInterrupt

    config = _config(data, tmp_path / "cut", **kw)
    with pytest.raises(KeyboardInterrupt):
        train_shortcut(config, callback=interrupt)
    saved = torch.load(tmp_path / "cut" / STATE_FILE, weights_only=True)
    # the checkpoint after the first video: terms 1-2 made update 1, term 3 waits in the accumulated gradients
    assert (saved["epoch"], saved["position"], saved["updates"], saved["accumulated"]) == (0, 1, 1, 1)
    assert len(saved["losses"]) == 3 and all(g is not None for g in saved["grads"])

    trainer = ShortcutTrainer(config.replace(resume=True))
    assert (trainer.epoch, trainer.position, trainer.updates, trainer.accumulated) == (0, 1, 1, 1)
    opt = trainer.optimizer.state_dict()
    for i, st in saved["optimizer"]["state"].items():
        for key, value in st.items():
            assert torch.equal(opt["state"][i][key].cpu(), value)
    for p, g in zip(trainer.params, saved["grads"]):
        assert torch.equal(p.grad, g)
    resumed = trainer.train()

    assert resumed.terms == full.terms and resumed.updates == full.updates
    assert resumed.losses == full.losses
    a = torch.load(full.state_path, weights_only=True)
    b = torch.load(resumed.state_path, weights_only=True)
    diff = max((a["shortcut"][k] - b["shortcut"][k]).abs().max().item() for k in a["shortcut"])
    print(f"\nresumed vs uninterrupted: max |weight difference| {diff:g}")
    assert diff <= 1e-6
    for i, st in a["optimizer"]["state"].items():
        for key, value in st.items():
            assert torch.allclose(value, b["optimizer"]["state"][i][key], atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# the roll-out is the tracking loop


def _micro_video(folder, n):
    write_dataset(folder, videos=1, split="val", seed=0, frames=n, progress=False)
    layout = dataset_layout(folder, "val")
    video = scan_training_videos(layout.video_dir, layout.mask_dir, max_objects=2)[0]
    assert video.object_ids == (1, 2)
    model = build_sam2_video_predictor("micro", weights="random", image_size=128).model  # 16 routed windows
    randomize_(model, 0)
    return video, model


def test_rollout_without_training_frames_is_the_predictors_propagation(tmp_path):
    """With no training frame the roll-out is Efficient-SAM2 inference: the one tracking loop with the same routing,
    the same memory bank and the same masks as `EfficientVideoPredictor` (random micro model, 2 objects; adaptive
    routing, through the saliency fallback, keeps most but not all windows on every tracked frame)."""
    n = 8
    video, model = _micro_video(tmp_path, n)
    efficient = EfficientConfig.paper(dense_frames=1, smr=False, all_masks=False)
    torch.manual_seed(0)
    shortcut = build_shortcut("bottleneck", model.image_encoder.trunk.routed_dim)
    steps = []
    track_step = model.track_step

    def recording(feats, memories, pointers, *args, **kwargs):
        out = track_step(feats, memories, pointers, *args, **kwargs)
        if memories:  # tracked frames: (memory frames, pointer frames, masks)
            steps.append(([m.frame_idx for m in memories], [q.frame_idx for q in pointers], out.pred_masks.clone()))
        return out

    model.track_step = recording
    predictor = EfficientVideoPredictor(model, efficient, shortcut=shortcut, fill_hole_area=8)
    state = predictor.init_state(str(video.frames))
    for obj, mask in video.load_prompts().items():
        predictor.add_new_mask(state, 0, obj, mask)
    for _ in predictor.propagate_in_video(state, progress=False):
        pass
    expected, steps = steps, []

    def no_term(*_):
        raise AssertionError("no frame is a training frame with frame_stride > num_frames")

    seen = []
    with video.open_frames(model.image_size) as frames:
        stats = _rollout(TrackingLoop(model, 8), _efficient_method(model, efficient, shortcut), frames,
                         prompt_masks(list(video.load_prompts().values()), model.image_size, model.device),
                         n + 1, no_term, False, contextlib.nullcontext, n, on_frame=seen.append)
    assert seen == list(range(n))
    routed = predictor.statistics(state).kept_windows
    print(f"\nkept windows per frame: {[round(routed[t], 3) for t in range(n)]}")
    assert stats.kept_windows == routed and all(routed[t] < 1.0 for t in range(1, n))
    assert len(steps) == len(expected) == n - 1
    for (mem, ptr, masks), (mem_p, ptr_p, masks_p) in zip(steps, expected):
        assert (mem, ptr) == (mem_p, ptr_p)
        assert torch.allclose(masks, masks_p, atol=1e-4, rtol=0)  # prompts: batched here, one by one there


def test_training_frames_read_the_loops_memory_with_the_epochs_stride(tmp_path):
    """Teacher and student are conditioned on the memory the loop selects, with the loop's stride (3 here, the
    model's config says 1), on routed frames that are multiples of the frame stride."""
    n = 8
    video, model = _micro_video(tmp_path, n)
    efficient = EfficientConfig.paper(kept_windows=0.25, dense_frames=1, smr=False)
    shortcut = build_shortcut("bottleneck", model.image_encoder.trunk.routed_dim)
    read = []
    condition = model.condition_on_memory

    def recording(feats, memories, pointers, *args, **kwargs):
        read.append(([m.frame_idx for m in memories], [q.frame_idx for q in pointers]))
        return condition(feats, memories, pointers, *args, **kwargs)

    model.condition_on_memory = recording
    terms = []

    def on_term(t, student, teacher):
        terms.append((t, read[-2:], _per_object_mse(student, teacher)))

    loop = TrackingLoop(model, 8, memory_stride=3)
    with video.open_frames(model.image_size) as frames:
        _rollout(loop, _efficient_method(model, efficient, shortcut), frames,
                 prompt_masks(list(video.load_prompts().values()), model.image_size, model.device),
                 2, on_term, False, contextlib.nullcontext, n)
    assert model.cfg.memory_temporal_stride == 1 and not shortcut.training
    assert [t for t, _, _ in terms] == [2, 4, 6]
    t, (teacher, student), mse = terms[-1]
    assert teacher == student == ([0, 3, 5], [0, 5, 4, 3, 2, 1])  # frame 6: the prompt, strided frame 3, frame 5
    assert mse.shape == (2,) and bool((mse > 0).all())


# ---------------------------------------------------------------------------------------------------------------------
# accumulation


def test_update_boundary_inside_an_object_batch_and_partial_update(data, tmp_path):
    """Terms of one batch that straddle an update are split; a partial update is the mean over its terms."""
    trainer = ShortcutTrainer(_config(data, tmp_path / "acc", update_stride=4))
    w = trainer.params[0]
    stepped = []
    trainer.optimizer.step = lambda: stepped.append([None if p.grad is None else p.grad.clone()
                                                      for p in trainer.params])
    coeff = torch.tensor([1.0, 2.0, 3.0])
    trainer.accumulated = 3
    base = [torch.full_like(p, 0.5) for p in trainer.params]
    for p, g in zip(trainer.params, base):
        p.grad = g.clone()
    per_object = torch.stack([c * w.sum() for c in coeff])  # d(term_b)/dw = c_b everywhere
    trainer._add_terms(per_object, [("v", 1, b, 1) for b in range(3)], None)
    # update 1: the 3 earlier terms + object 0 (1/4 each); objects 1, 2 start the next accumulation
    assert len(stepped) == 1 and trainer.updates == 1 and trainer.accumulated == 2
    assert torch.allclose(stepped[0][0], base[0] + 1.0 / 4)
    assert torch.allclose(w.grad, torch.full_like(w, (2.0 + 3.0) / 4))
    trainer._step()  # the end of an epoch: 2 of 4 terms, rescaled to their mean
    assert len(stepped) == 2 and trainer.accumulated == 0 and trainer.updates == 2
    assert torch.allclose(stepped[1][0], torch.full_like(w, (2.0 + 3.0) / 2))
    assert [r[1] for r in trainer.losses] == [1, 2, 2]


# ---------------------------------------------------------------------------------------------------------------------
# data


def test_scan_layouts_lists_and_objects(tmp_path):
    ids = _write_video(tmp_path, "a", 3, seed=5, sav=True)
    _write_video(tmp_path, "b", 3, seed=6, sav=True)
    (tmp_path / "Annotations").mkdir()
    write_palette_mask(tmp_path / "Annotations" / "a" / "00000.png", ids)
    write_palette_mask(tmp_path / "Annotations" / "b" / "0.png", ids)  # integer-valued name also matches
    davis = scan_training_videos(tmp_path / "JPEGImages", tmp_path / "Annotations", "davis", max_objects=0)
    sav = scan_training_videos(tmp_path / "JPEGImages", tmp_path / "sav", "sav", max_objects=0)
    assert [v.name for v in davis] == [v.name for v in sav] == ["a", "b"]
    assert davis[0].object_ids == sav[0].object_ids == (1, 2)
    for obj in (1, 2):
        assert np.array_equal(davis[0].load_prompts()[obj], sav[0].load_prompts()[obj])
        assert np.array_equal(sav[0].load_prompts()[obj], ids == obj)
    one = scan_training_videos(tmp_path / "JPEGImages", tmp_path / "sav", "sav", max_objects=1)
    assert one[0].object_ids == (1,) and list(one[0].load_prompts()) == [1]
    (tmp_path / "list.txt").write_text("\n# comment\nb.mp4\nb\n\n")
    assert read_video_list(tmp_path / "list.txt") == ["b"]
    assert [v.name for v in scan_training_videos(tmp_path / "JPEGImages", tmp_path / "sav", "sav",
                                                 tmp_path / "list.txt")] == ["b"]


def test_videos_without_masks_are_all_listed(data, tmp_path):
    root, _ = data
    for name, seed in (("m1", 1), ("m2", 2), ("ok", 3)):
        _write_video(tmp_path, name, 3, seed)
    os.remove(tmp_path / "Annotations" / "m1" / "00000.png")
    os.rmdir(tmp_path / "Annotations" / "m1")
    write_palette_mask(tmp_path / "Annotations" / "m2" / "00000.png", np.zeros((96, 128), np.uint8))
    with pytest.raises(TrainingDataError) as err:
        scan_training_videos(tmp_path / "JPEGImages", tmp_path / "Annotations")
    msg = str(err.value)
    assert "m1" in msg and "no first-frame mask" in msg and "m2" in msg and "empty" in msg and "\n  ok" not in msg
    out = tmp_path / "out"
    with pytest.raises(ShortcutTrainingError, match="m1"):
        ShortcutTrainer(_config(data, out, video_dir=str(tmp_path / "JPEGImages"),
                                mask_dir=str(tmp_path / "Annotations"), video_list=None))
    assert not out.exists()


def test_mask_size_mismatch_and_missing_list_entries(data, tmp_path):
    root, _ = data
    _write_video(tmp_path, "a", 3, seed=1)
    write_palette_mask(tmp_path / "Annotations" / "a" / "00000.png", np.ones((50, 60), np.uint8))
    with pytest.raises(TrainingDataError, match="60x50 .* 128x96"):
        scan_training_videos(tmp_path / "JPEGImages", tmp_path / "Annotations")
    (tmp_path / "list.txt").write_text("vid0\nghost1\nvid1\nghost2\n")
    with pytest.raises(TrainingDataError) as err:
        scan_training_videos(root / "JPEGImages", root / "Annotations", video_list=tmp_path / "list.txt")
    assert "ghost1, ghost2" in str(err.value) and "2 video(s)" in str(err.value)


# ---------------------------------------------------------------------------------------------------------------------
# bad runs


def test_existing_run_is_never_overwritten(data, trained):
    config, result = trained
    before = {f: os.path.getmtime(os.path.join(config.output_dir, f)) for f in os.listdir(config.output_dir)}
    with pytest.raises(ShortcutTrainingError, match="already holds a training run.*--resume"):
        ShortcutTrainer(config.replace(resume=False))
    after = {f: os.path.getmtime(os.path.join(config.output_dir, f)) for f in os.listdir(config.output_dir)}
    assert before == after


def test_resume_refuses_another_model_variant_or_settings(data, trained, tmp_path):
    config, _ = trained
    with pytest.raises(ShortcutTrainingError, match="bottleneck.*sam2.1_hiera_tiny.*sam2.1_hiera_small"):
        ShortcutTrainer(config.replace(model="small", resume=True))
    with pytest.raises(ShortcutTrainingError, match="'ffn'"):
        ShortcutTrainer(config.replace(variant="ffn", resume=True))
    with pytest.raises(ShortcutTrainingError, match=r"lr: run has 0.002, given 0.001"):
        ShortcutTrainer(config.replace(lr=1e-3, resume=True))
    with pytest.raises(ShortcutTrainingError, match="already completed 2 epochs"):
        ShortcutTrainer(config.replace(epochs=1, resume=True))
    with pytest.raises(ShortcutTrainingError, match="nothing to resume"):
        ShortcutTrainer(config.replace(output_dir=str(tmp_path / "empty"), resume=True))


def test_bad_settings_have_clear_messages(data, tmp_path):
    with pytest.raises(ShortcutTrainingError, match="identity shortcut has no parameters"):
        _config(data, tmp_path, variant="identity")
    with pytest.raises(ShortcutTrainingError, match="needs Sparse Window Routing"):
        _config(data, tmp_path, efficient=EfficientConfig(swr=False))
    with pytest.raises(ShortcutTrainingError, match="unknown model name"):
        _config(data, tmp_path, model="huge")
    with pytest.raises(ShortcutTrainingError, match="memory_strides"):
        _config(data, tmp_path, memory_strides=(1, 0))
    if not torch.cuda.is_available():
        with pytest.raises(ShortcutTrainingError, match="CUDA is not available"):
            _config(data, tmp_path, device="cuda")
    with pytest.raises(ShortcutTrainingError, match="checkpoint not found"):
        ShortcutTrainer(_config(data, tmp_path / "o", checkpoint=str(tmp_path / "missing.pt")))
    assert default_frame_stride("large") == 4 and default_frame_stride("base_plus") == 3


# ---------------------------------------------------------------------------------------------------------------------
# loss curve


def test_moving_average_and_plots(tmp_path, monkeypatch):
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert moving_average([4.0, 2.0], 5) == [4.0, 3.0]
    losses = [1.0 / (1 + i) + 0.05 * math.sin(i) for i in range(40)]
    pytest.importorskip("matplotlib")
    assert plot_loss_curve(tmp_path / "mpl.png", losses, 8) == "matplotlib"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    assert plot_loss_curve(tmp_path / "pil.png", losses, 8) == "pil"
    with pytest.raises(ImportError):
        plot_loss_curve(tmp_path / "x.png", losses, 8, backend="matplotlib")
    assert plot_loss_curve(tmp_path / "empty.png", [], 8, backend="pil") == "pil"
    for name in ("mpl.png", "pil.png", "empty.png"):
        with Image.open(tmp_path / name) as img:
            px = np.asarray(img.convert("RGB"))
        assert px.shape[0] > 100 and (px < 128).any() and (px > 200).any()
    with Image.open(tmp_path / "pil.png") as img:
        px = np.asarray(img.convert("RGB")).astype(int)
    blue = (abs(px[..., 0] - 31) < 10) & (abs(px[..., 1] - 119) < 10) & (abs(px[..., 2] - 180) < 10)
    assert blue.sum() > 200  # the moving-average curve was drawn
    assert not any(f.endswith(".tmp") for f in os.listdir(tmp_path))


# ---------------------------------------------------------------------------------------------------------------------
# command line


def test_cli_help_and_errors(data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["train-shortcut", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--model", "--checkpoint", "--video-dir", "--mask-dir", "--layout", "--video-list",
                   "--max-objects", "--output", "--variant", "--epochs", "--lr", "--update-stride",
                   "--frame-stride", "--memory-strides", "--save-every", "--resume", "--bf16", "--device",
                   "--image-size", "--tau", "--kept-windows", "--dense-frames"):
        assert option in text
    root, ckpt = data
    common = ["train-shortcut", "--model", "tiny", "--checkpoint", str(ckpt), "--video-dir",
              str(root / "JPEGImages"), "--image-size", str(SIZE), "--no-progress"]
    (tmp_path / "list.txt").write_text("vid0\nnope\n")
    code = cli_main(common + ["--mask-dir", str(root / "Annotations"), "--output", str(tmp_path / "o"),
                              "--video-list", str(tmp_path / "list.txt")])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and "Traceback" not in err
    code = cli_main(common + ["--mask-dir", str(root / "Annotations"), "--output", str(tmp_path / "o"),
                              "--variant", "ffn", "--shortcut", "attention"])
    assert code == 2 and "contradicts" in capsys.readouterr().err
    code = cli_main(common + ["--mask-dir", str(root / "Annotations"), "--output", str(tmp_path / "o"),
                              "--dense"])
    assert code == 2 and "Sparse Window Routing" in capsys.readouterr().err


def test_cli_trains_and_refuses_to_overwrite(data, tmp_path, capsys):
    root, ckpt = data
    (tmp_path / "one.txt").write_text("vid1\n")
    args = ["train-shortcut", "--model", "tiny", "--checkpoint", str(ckpt), "--video-dir", str(root / "JPEGImages"),
            "--mask-dir", str(root / "Annotations"), "--video-list", str(tmp_path / "one.txt"),
            "--output", str(tmp_path / "run"), "--image-size", str(SIZE), "--epochs", "1", "--max-frames", "3",
            "--frame-stride", "1", "--dense-frames", "1", "--kept-windows", "0.25", "--update-stride", "2",
            "--memory-strides", "1", "--no-progress"]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("user data")  # not a run: the folder is accepted, the file kept
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "2 loss terms" in out and "1 updates" in out
    module, info = load_shortcut(tmp_path / "run" / "shortcut.pth", model_name="tiny")
    assert info["config"]["memory_strides"] == [1] and info["config"]["update_stride"] == 2
    with open(tmp_path / "run" / "loss.csv") as f:
        assert len(list(csv.reader(f))) == 3
    assert cli_main(args) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert cli_main(args + ["--resume"]) == 0  # a finished run: nothing left to do
    assert (tmp_path / "run" / "keep.txt").read_text() == "user data"


@pytest.mark.slow
def test_bf16_autocast_training_and_evaluation(data, tmp_path):
    """bf16 autocast (meant for CUDA; run here on the CPU): training works and the features stay close to fp32."""
    root, ckpt = data
    device = "cuda" if torch.cuda.is_available() else "cpu"
    (tmp_path / "one.txt").write_text("vid0\n")
    config = _config(data, tmp_path / "bf16", video_list=str(tmp_path / "one.txt"), epochs=1, max_frames=3,
                     bf16=True, device=device)
    result = train_shortcut(config)
    assert result.terms == 2 and all(math.isfinite(v) for v in result.losses)
    model = build_sam2_video_predictor("tiny", ckpt, image_size=SIZE, device=device).model
    videos = scan_training_videos(root / "JPEGImages", root / "Annotations", video_list=["vid2"])
    fp32 = evaluate_reconstruction(model, IdentityShortcut(), videos, ROUTING, max_frames=3)
    bf16 = evaluate_reconstruction(model, IdentityShortcut(), videos, ROUTING, max_frames=3, bf16=True)
    assert fp32.terms == bf16.terms == 2
    assert abs(bf16.mse - fp32.mse) < 0.05 * fp32.mse
