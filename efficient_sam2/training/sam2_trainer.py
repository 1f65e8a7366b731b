"""Training SAM 2 on videos (`efficient-sam2 train`): from scratch or fine-tuning any named model.

The recipe follows SAM 2's video training: clips of T frames (default 8) of one object each; a prompt on the
first frame drawn among a mask, clicks and a box; optional correction clicks on a later frame, sampled from the
current error; memory carried through the clip by the same tracking step that inference runs
(`tracking.TrackingLoop`), with gradients on. Losses per prompted or tracked frame: focal (x20) + dice on the best
of the multimask outputs, a loss between the predicted and the actual IoU of every output, and binary
cross-entropy on the object score; mask losses only where the object is present. The IoU loss is binary
cross-entropy where SAM 2 uses L1: through the IoU head's sigmoid an L1 loss stops learning once the head
saturates, which happened here training from scratch (the head predicted ~0 for every output, and inference then
chose the all-foreground one); cross-entropy gives the head's logit the gradient (p - IoU) and never saturates.
AdamW with linear warm-up and cosine decay, gradient clipping, frozen parameter groups, optional bf16 autocast.

Checkpoints are written atomically every `save_every` steps and at the end (`checkpoint.pt`: model, optimiser,
step; `model.pt`: weights only, loadable by every builder with `checkpoint=`). Data sampling is a pure function of
(seed, step), so an interrupted run resumed from its checkpoint equals the uninterrupted run. A loss CSV and PNG,
and a validation J&F CSV (every `val_every` steps) are written next to the checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..build import load_checkpoint
from ..configs import get_config, resolve_model_name
from ..devices import resolve_device
from ..io.atomic import atomic_open, atomic_torch_save
from ..modeling.sam2 import DecoderOutput, PointPrompt, SAM2Model
from ..tracking.loop import TrackingLoop
from ..tracking.state import ObjectTrack
from .clips import ClipDataset
from .files import write_csv
from .loss_curve import plot_loss_curve

__all__ = ["SAM2TrainConfig", "SAM2Trainer", "SAM2TrainingError", "FREEZABLE", "mask_losses", "train_sam2",
           "warmup_cosine_lr"]

FREEZABLE: dict[str, str] = {
    "image_encoder": "image_encoder",
    "trunk": "image_encoder.trunk",
    "neck": "image_encoder.neck",
    "memory_attention": "memory_attention",
    "memory_encoder": "memory_encoder",
    "prompt_encoder": "sam_prompt_encoder",
    "mask_decoder": "sam_mask_decoder",
}
"""Names accepted by `freeze` -> the module (prefix of parameter names) they freeze."""

PROMPTS = ("mask", "clicks", "box")
IOU_LOSSES = ("bce", "l1")
LOSS_COLUMNS = ["step", "loss", "focal", "dice", "iou", "score", "lr", "seconds", "image"]
VAL_COLUMNS = ["step", "J&F", "J", "F", "videos"]


class SAM2TrainingError(ValueError):
    """The training run cannot start as configured (bad option, output folder, checkpoint)."""


@dataclass(frozen=True)
class SAM2TrainConfig:
    """Everything a training run depends on (saved in the checkpoint; a resumed run must match it).

    model: a registry name ("micro", "tiny", "sam2.1_hiera_large", ...); checkpoint: weights to fine-tune (None:
    a fresh initialisation, i.e. training from scratch); data / val_data: data folders (DAVIS layout, every frame
    annotated); out: output folder; steps: optimiser steps; batch_size: clips per step (one object each);
    clip_len: frames per clip; max_stride: clips take every k-th frame, k in 1..max_stride; lr, min_lr_ratio
    (cosine decay to lr * min_lr_ratio), warmup_steps, weight_decay, grad_clip (max global norm; 0 = off);
    freeze: module names from FREEZABLE; bf16: autocast in bfloat16; device; prompt_probs: probabilities of a
    mask, clicks and a box on the first frame; iou_loss: "bce" (default) or "l1" (SAM 2's, see the module
    docstring); all_outputs_weight: weight of the mask loss averaged over every multimask output, added to the
    best output's (0 = SAM 2's min-over-outputs only; > 0 keeps the other outputs plausible masks of the object,
    which routing from all three outputs relies on); max_clicks: clicks drawn on the first frame (1..max_clicks);
    correction_prob: chance that one later frame of a clip gets a correction click; val_every: steps between
    validations (0 = only at the end); val_videos: validation videos used (0 = all); save_every: steps between
    checkpoints; seed; threads: torch intra-op threads (0 = torch's default); image_size: model input size (None =
    the model's). Image mode (`training.images`, mixed into every step when image_data is set): image_data: a
    folder of `synth --images` data; image_batch: images per step; image_instances: instances decoded per image;
    image_weight: weight of the image loss added to the video loss; image_box_prob: chance that a step's image
    prompts are boxes instead of single clicks. decoder_lr_scale: the prompt encoder's and mask decoder's
    learning rate is lr x this (teaching a video-trained model to follow clicks needs a faster decoder than the
    image encoder and memory can take without forgetting how to track).
    """

    model: str
    data: str
    out: str
    checkpoint: str | None = None
    val_data: str | None = None
    steps: int = 1000
    batch_size: int = 4
    clip_len: int = 8
    max_stride: int = 2
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    freeze: tuple[str, ...] = ()
    bf16: bool = False
    device: str = "cpu"
    prompt_probs: tuple[float, float, float] = (0.5, 0.25, 0.25)
    iou_loss: str = "bce"
    all_outputs_weight: float = 0.0
    max_clicks: int = 2
    correction_prob: float = 0.25
    val_every: int = 0
    val_videos: int = 0
    save_every: int = 100
    seed: int = 0
    threads: int = 0
    image_size: int | None = None
    image_data: str | None = None
    image_batch: int = 4
    image_instances: int = 8
    image_weight: float = 1.0
    image_box_prob: float = 0.3
    decoder_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        def fail(msg: str):
            raise SAM2TrainingError(msg)

        resolve_model_name(self.model)
        for name in ("steps", "batch_size", "clip_len", "max_stride", "max_clicks", "save_every", "image_batch",
                     "image_instances"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                fail(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("warmup_steps", "val_every", "val_videos", "threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                fail(f"{name} must be an integer >= 0, got {v!r}")
        for name in ("lr", "weight_decay", "grad_clip", "min_lr_ratio", "correction_prob", "all_outputs_weight",
                     "image_weight", "image_box_prob", "decoder_lr_scale"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                fail(f"{name} must be a finite number >= 0, got {v!r}")
        if self.lr <= 0:
            fail(f"lr must be > 0, got {self.lr}")
        if self.correction_prob > 1 or self.min_lr_ratio > 1 or self.image_box_prob > 1:
            fail("correction_prob, min_lr_ratio and image_box_prob must be at most 1")
        probs = tuple(float(p) for p in self.prompt_probs)
        if len(probs) != 3 or any(p < 0 for p in probs) or sum(probs) <= 0:
            fail(f"prompt_probs must be three non-negative weights (mask, clicks, box), got {self.prompt_probs!r}")
        if self.iou_loss not in IOU_LOSSES:
            fail(f"iou_loss must be one of {', '.join(IOU_LOSSES)}, got {self.iou_loss!r}")
        unknown = [f for f in self.freeze if f not in FREEZABLE]
        if unknown:
            fail(f"cannot freeze {', '.join(map(repr, unknown))}: not a part of the model; choose from "
                 f"{', '.join(FREEZABLE)}")

    def replace(self, **changes) -> "SAM2TrainConfig":
        return dataclasses.replace(self, **changes)

    def record(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ---------------------------------------------------------------------------------------------------------------------
# Losses


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Mean focal loss over the last two dims: (..., H, W) -> (...)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice over the last two dims: (..., H, W) -> (...)."""
    prob = logits.sigmoid().flatten(-2)
    t = targets.flatten(-2)
    return 1 - (2 * (prob * t).sum(-1) + 1) / (prob.sum(-1) + t.sum(-1) + 1)


@dataclass
class LossTerms:
    focal: torch.Tensor
    dice: torch.Tensor
    iou: torch.Tensor
    score: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return 20.0 * self.focal + self.dice + self.iou + self.score


def warmup_cosine_lr(step: int, lr: float, warmup: int, steps: int, min_ratio: float = 0.0) -> float:
    """The learning rate of step `step`: linear warm-up over `warmup` steps, then cosine decay to lr x `min_ratio`
    at step `steps`."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def mask_losses(dec: DecoderOutput, gt: torch.Tensor, iou_loss: str = "bce",
                all_outputs_weight: float = 0.0) -> LossTerms:
    """SAM 2's losses for B objects on one frame; gt (B, 1, S, S) in {0, 1}.

    The multimask output with the lowest focal x 20 + dice is supervised; the IoU head is supervised on every
    output (binary cross-entropy between the predicted and the actual IoU, see the module docstring); mask terms
    count only for objects present in the ground truth. With `all_outputs_weight` w > 0, w times the mask loss
    averaged over all outputs is added, so that no output drifts to an arbitrary mask.
    """
    S = gt.shape[-1]
    logits = dec.multimask_logits.float()
    logits = F.interpolate(logits, size=(S, S), mode="bilinear", align_corners=False)  # (B, M, S, S)
    target = gt.expand_as(logits)
    focal = sigmoid_focal_loss(logits, target)
    dice = dice_loss(logits, target)
    best = (20.0 * focal + dice).argmin(dim=1)
    rows = torch.arange(logits.shape[0], device=logits.device)
    present = (gt.flatten(1).sum(1) > 0).float()  # (B,)
    with torch.no_grad():
        pred = logits > 0
        inter = (pred & (target > 0)).flatten(2).sum(-1).float()
        union = (pred | (target > 0)).flatten(2).sum(-1).float()
        actual_iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    if iou_loss == "l1":
        iou = (dec.ious.float() - actual_iou).abs().mean(1)
    else:
        iou = F.binary_cross_entropy(dec.ious.float(), actual_iou, reduction="none").mean(1)
    score = F.binary_cross_entropy_with_logits(dec.object_score_logits.float().reshape(-1), present,
                                               reduction="none")
    denom = present.sum().clamp(min=1)
    focal_b, dice_b = focal[rows, best], dice[rows, best]
    if all_outputs_weight > 0:
        focal_b = focal_b + all_outputs_weight * focal.mean(1)
        dice_b = dice_b + all_outputs_weight * dice.mean(1)
    return LossTerms(
        focal=(focal_b * present).sum() / denom,
        dice=(dice_b * present).sum() / denom,
        iou=(iou * present).sum() / denom,
        score=score.mean(),
    )


# ---------------------------------------------------------------------------------------------------------------------
# Prompts


def sample_clicks(gt: torch.Tensor, count: int, rng: np.random.Generator) -> PointPrompt:
    """`count` positive clicks inside each object's mask; gt (B, 1, S, S). Coordinates in model pixels."""
    coords, labels = [], []
    for m in gt[:, 0].cpu().numpy() > 0:
        ys, xs = np.nonzero(m)
        pick = rng.integers(len(ys), size=count)
        coords.append(np.stack([xs[pick] + 0.5, ys[pick] + 0.5], 1))
        labels.append(np.ones(count))
    return _points(coords, labels, gt.device)


def sample_box(gt: torch.Tensor, rng: np.random.Generator, noise: float = 0.1) -> PointPrompt:
    """Each object's bounding box, every side moved by up to `noise` of the box size (at most 20 px)."""
    S = gt.shape[-1]
    coords, labels = [], []
    for m in gt[:, 0].cpu().numpy() > 0:
        ys, xs = np.nonzero(m)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        w, h = x1 - x0, y1 - y0
        jitter = rng.uniform(-1, 1, 4) * np.minimum(noise * np.array([w, h, w, h]), 20)
        box = np.clip(np.array([x0, y0, x1, y1], np.float64) + jitter, 0, S)
        coords.append(box.reshape(2, 2))
        labels.append(np.array([2, 3]))
    return _points(coords, labels, gt.device)


def sample_correction(pred_logits: torch.Tensor, gt: torch.Tensor, rng: np.random.Generator) -> PointPrompt:
    """One click per object in its error region: positive on a missed pixel, negative on a false one.

    pred_logits (B, 1, h, w) at any size (compared at the ground truth's); objects without error get a padding
    point (label -1).
    """
    S = gt.shape[-1]
    pred = F.interpolate(pred_logits.float(), size=(S, S), mode="bilinear", align_corners=False)[:, 0] > 0
    g = gt[:, 0] > 0
    coords, labels = [], []
    for p, t in zip(pred.cpu().numpy(), g.cpu().numpy()):
        missed, false = t & ~p, p & ~t
        err = missed | false
        if not err.any():
            coords.append(np.zeros((1, 2)))
            labels.append(np.array([-1]))
            continue
        ys, xs = np.nonzero(err)
        k = int(rng.integers(len(ys)))
        coords.append(np.array([[xs[k] + 0.5, ys[k] + 0.5]]))
        labels.append(np.array([1 if missed[ys[k], xs[k]] else 0]))
    return _points(coords, labels, gt.device)


def _points(coords: Sequence[np.ndarray], labels: Sequence[np.ndarray], device) -> PointPrompt:
    c = torch.as_tensor(np.stack(coords), dtype=torch.float32, device=device)
    lab = torch.as_tensor(np.stack(labels), dtype=torch.int32, device=device)
    return PointPrompt(c, lab)


# ---------------------------------------------------------------------------------------------------------------------
# The trainer


@dataclass
class StepRecord:
    step: int
    loss: float
    focal: float
    dice: float
    iou: float
    score: float
    lr: float
    seconds: float
    image: float = 0.0  # image-mode loss (0 without image data)

    def row(self) -> list:
        return [self.step, *(repr(float(getattr(self, k))) for k in LOSS_COLUMNS[1:])]


@dataclass
class TrainSummary:
    """What a finished (or interrupted) run did: steps, the loss history, validation rows and output files."""

    steps: int
    history: list[StepRecord] = field(default_factory=list)
    validation: list[dict] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


class SAM2Trainer:
    """Runs one training run; `train()` starts it or resumes it from `out/checkpoint.pt` (with `resume`)."""

    def __init__(self, config: SAM2TrainConfig, resume: bool = False, overwrite: bool = False,
                 progress: bool = True, log: Callable[[str], None] | None = None) -> None:
        self.config = cfg = config
        self.progress = progress
        self.log = log or (lambda msg: None)
        self.out = os.fspath(cfg.out)
        self._check_output(resume, overwrite)
        self.device = resolve_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        overrides = {"dynamic_multimask_via_stability": True, "binarize_mask_from_pts_for_mem_enc": True}
        if cfg.image_size is not None:
            overrides["image_size"] = cfg.image_size
        self.model_config = get_config(cfg.model, **overrides)
        torch.manual_seed(cfg.seed)
        self.model = SAM2Model(self.model_config)
        if cfg.checkpoint is not None:
            load_checkpoint(self.model, cfg.checkpoint)
        self.model.to(self.device).train()
        self.data = ClipDataset(cfg.data, cfg.clip_len, self.model.image_size, cfg.max_stride)
        self.val = None
        if cfg.val_data is not None:
            self.val = ClipDataset(cfg.val_data, 2, self.model.image_size, 1)
        self.images = None
        if cfg.image_data is not None:
            from .images import ImageDataset

            self.images = ImageDataset(cfg.image_data, self.model.image_size)
        self._freeze(cfg.freeze)
        # (decay?, decoder?) -> parameters in model order; without a decoder scale the decoder's parameters stay
        # in the plain groups, so that the groups (and resumed optimiser states) are those of older runs
        heads = ("sam_mask_decoder.", "sam_prompt_encoder.")
        groups: dict[tuple[bool, bool], list] = {}
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                own = cfg.decoder_lr_scale != 1.0 and name.startswith(heads)
                groups.setdefault((p.ndim >= 2, own), []).append(p)
        if not groups:
            raise SAM2TrainingError("every parameter is frozen: nothing to train")
        order = [(True, False), (False, False), (True, True), (False, True)]
        self.optimizer = torch.optim.AdamW(
            [{"params": groups[k], "weight_decay": cfg.weight_decay if k[0] else 0.0,
              "lr_scale": cfg.decoder_lr_scale if k[1] else 1.0} for k in order if k in groups],
            lr=cfg.lr,
        )
        self.loop = TrackingLoop(self.model, fill_hole_area=0, memory_dtype=torch.float32, detach=False)
        self.step = 0
        self.history: list[StepRecord] = []
        self.validation: list[dict] = []
        self.resumed_from: int | None = None
        if resume:
            self._resume()

    # ------------------------------------------------------------------ set-up
    def _paths(self) -> dict[str, str]:
        names = {"checkpoint": "checkpoint.pt", "weights": "model.pt", "loss_csv": "loss.csv",
                 "loss_png": "loss.png", "val_csv": "validation.csv", "config": "config.json"}
        return {k: os.path.join(self.out, v) for k, v in names.items()}

    def _check_output(self, resume: bool, overwrite: bool) -> None:
        out = self.out
        if os.path.lexists(out) and not os.path.isdir(out):
            raise SAM2TrainingError(f"output {out!r} exists and is not a folder")
        if not os.path.isdir(out) or not os.listdir(out):
            if resume:
                raise SAM2TrainingError(f"nothing to resume: {out!r} holds no checkpoint.pt")
            return
        if resume:
            if not os.path.isfile(os.path.join(out, "checkpoint.pt")):
                raise SAM2TrainingError(f"nothing to resume: {out!r} holds no checkpoint.pt")
            return
        if not overwrite:
            raise SAM2TrainingError(
                f"output folder {out!r} exists and is not empty: use --resume to continue its run, --overwrite to "
                "start again (only the files training writes are replaced), or choose another folder"
            )

    def _freeze(self, names: Sequence[str]) -> None:
        for name in names:
            module = self.model.get_submodule(FREEZABLE[name])
            for p in module.parameters():
                p.requires_grad_(False)

    def _resume(self) -> None:
        from ..io.torch_files import read_torch_file

        saved = read_torch_file(self._paths()["checkpoint"], "training checkpoint")
        if not isinstance(saved, dict) or "trainer" not in saved:
            raise SAM2TrainingError(f"{self._paths()['checkpoint']} is not a checkpoint of `efficient-sam2 train`")
        old = saved["trainer"]["config"]
        new = self.config.record()
        ignore = {"steps", "val_every", "val_videos", "save_every", "threads", "device", "out"}
        defaults = SAM2TrainConfig(model=self.config.model, data="", out="").record()  # fields added since
        diff = sorted(k for k in new if k not in ignore and old.get(k, defaults[k]) != new[k])
        if diff:
            raise SAM2TrainingError(
                "cannot resume: the run was started with other settings for " + ", ".join(
                    f"{k} ({old.get(k)!r} then, {new[k]!r} now)" for k in diff)
            )
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["trainer"]["optimizer"])
        self.step = int(saved["trainer"]["step"])
        self.history = [StepRecord(**r) for r in saved["trainer"]["history"]]
        self.validation = list(saved["trainer"]["validation"])
        self.resumed_from = self.step

    # ------------------------------------------------------------------ schedule
    def lr_at(self, step: int) -> float:
        cfg = self.config
        return warmup_cosine_lr(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)

    def _autocast(self):
        if self.config.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ one step
    def clip_loss(self, step: int) -> LossTerms:
        """Forward one batch of clips through the tracking loop (gradients on); the summed frame losses."""
        cfg = self.config
        clip = self.data.sample(cfg.batch_size, cfg.seed, step)
        rng = np.random.default_rng([cfg.seed, step, 2])
        images = clip.images.to(self.device)
        gts = clip.masks.to(self.device)
        B, T = images.shape[:2]
        probs = np.asarray(cfg.prompt_probs, dtype=np.float64)
        prompt = PROMPTS[int(rng.choice(3, p=probs / probs.sum()))]
        correct_at = int(rng.integers(1, T)) if T > 1 and rng.random() < cfg.correction_prob else -1
        tracks = [ObjectTrack(i) for i in range(B)]
        terms: list[LossTerms] = []
        loop = self.loop
        for t in range(T):
            gt = gts[:, t]
            with self._autocast():
                feats = loop.encode(images[:, t], t)
                if t == 0:
                    if prompt == "mask":
                        group = loop.step(feats, tracks, 0, T, is_init=True, mask=gt)
                    else:
                        points = sample_clicks(gt, int(rng.integers(1, cfg.max_clicks + 1)), rng) \
                            if prompt == "clicks" else sample_box(gt, rng)
                        group = loop.step(feats, tracks, 0, T, is_init=True, points=points)
                        terms.append(mask_losses(group.step.decoder, gt, cfg.iou_loss, cfg.all_outputs_weight))
                    for track, out in zip(tracks, group.outputs):
                        track.cond_outputs[0] = out
                    continue
                group = loop.step(feats, tracks, t, T)
                terms.append(mask_losses(group.step.decoder, gt, cfg.iou_loss, cfg.all_outputs_weight))
                store = "non_cond_outputs"
                if t == correct_at:
                    points = sample_correction(group.step.pred_masks.detach(), gt, rng)
                    group = loop.step(feats, tracks, t, T, points=points,
                                      prev_mask_logits=group.step.pred_masks.detach().clamp(-32, 32))
                    terms.append(mask_losses(group.step.decoder, gt, cfg.iou_loss, cfg.all_outputs_weight))
                    store = "cond_outputs"
                for track, out in zip(tracks, group.outputs):
                    getattr(track, store)[t] = out
        n = max(1, len(terms))
        return LossTerms(*(sum(getattr(x, k) for x in terms) / n for k in ("focal", "dice", "iou", "score")))

    def image_loss(self, step: int) -> torch.Tensor:
        """The image-mode loss of step `step` (first prompt and correction round averaged); see training.images."""
        from .images import image_losses

        cfg = self.config
        batch = self.images.sample(cfg.image_batch, cfg.image_instances, cfg.seed, step)
        rng = np.random.default_rng([cfg.seed, step, 4])
        with self._autocast():
            first, second = image_losses(self.model, batch, rng, cfg.image_box_prob, cfg.iou_loss)
        return 0.5 * (first.total + second.total)

    def train_step(self) -> StepRecord:
        start = time.perf_counter()
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.clip_loss(self.step)
        loss = terms.total
        image = torch.zeros(())
        if self.images is not None:
            image = self.image_loss(self.step)
            loss = loss + self.config.image_weight * image
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at step {self.step}; lower --lr")
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad],
                                           self.config.grad_clip)
        self.optimizer.step()
        self.step += 1
        rec = StepRecord(self.step, loss.item(), terms.focal.item(), terms.dice.item(), terms.iou.item(),
                         terms.score.item(), lr, time.perf_counter() - start, image.item())
        self.history.append(rec)
        return rec

    # ------------------------------------------------------------------ validation
    @torch.inference_mode()
    def validate(self) -> dict | None:
        """Dense J&F of the current weights on the validation videos (first-frame masks as prompts)."""
        if self.val is None:
            return None
        from .validation import validation_row

        self.model.eval()
        row = validation_row(self.model, self.val, self.config.val_videos, self.step)
        self.model.train()
        self.validation.append(row)
        return row

    # ------------------------------------------------------------------ files
    def save(self) -> None:
        paths = self._paths()
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        atomic_torch_save({
            "model": state,
            "trainer": {
                "config": self.config.record(),
                "step": self.step,
                "optimizer": self.optimizer.state_dict(),
                "history": [dataclasses.asdict(r) for r in self.history],
                "validation": self.validation,
                "model_name": self.model_config.name,
            },
        }, paths["checkpoint"])
        atomic_torch_save({"model": state}, paths["weights"])
        write_csv(paths["loss_csv"], LOSS_COLUMNS, (r.row() for r in self.history))
        if self.validation:
            write_csv(paths["val_csv"], VAL_COLUMNS, ([r[k] for k in VAL_COLUMNS] for r in self.validation))
        with atomic_open(paths["config"], "w") as f:
            json.dump({"config": self.config.record(), "model_config": dataclasses.asdict(self.model_config),
                       "step": self.step}, f, indent=2)
        if self.history:
            plot_loss_curve(paths["loss_png"], [r.loss for r in self.history],
                            window=max(1, min(50, len(self.history) // 10 or 1)),
                            title=f"{self.model_config.name} training loss")

    # ------------------------------------------------------------------ run
    def train(self, callback: Callable[[StepRecord], None] | None = None) -> TrainSummary:
        cfg = self.config
        os.makedirs(self.out, exist_ok=True)
        if self.step >= cfg.steps:
            self.log(f"already trained for {self.step} steps (asked for {cfg.steps}); nothing to do")
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", disable=not self.progress,
                   dynamic_ncols=True)
        try:
            while self.step < cfg.steps:
                rec = self.train_step()
                window = self.history[-20:]
                bar.set_postfix(loss=f"{sum(r.loss for r in window) / len(window):.3f}", lr=f"{rec.lr:.2e}")
                bar.update(1)
                if callback is not None:
                    callback(rec)
                if cfg.val_every and self.step % cfg.val_every == 0 and self.step < cfg.steps:
                    row = self.validate()
                    if row is not None:
                        bar.write(f"step {self.step}: validation J&F {row['J&F']:.1f} (J {row['J']:.1f}, "
                                  f"F {row['F']:.1f}) on {row['videos']} videos")
                if self.step % cfg.save_every == 0:
                    self.save()
        finally:
            bar.close()
            if self.history:
                self.save()
        if self.val is not None and (not self.validation or self.validation[-1]["step"] != self.step):
            row = self.validate()
            self.log(f"step {self.step}: validation J&F {row['J&F']:.1f} (J {row['J']:.1f}, F {row['F']:.1f}) "
                     f"on {row['videos']} videos")
            self.save()
        return TrainSummary(self.step, self.history, self.validation, self._paths())


def train_sam2(config: SAM2TrainConfig, resume: bool = False, overwrite: bool = False,
               progress: bool = True) -> TrainSummary:
    """Run (or resume) a training run; see `SAM2TrainConfig`."""
    return SAM2Trainer(config, resume=resume, overwrite=overwrite, progress=progress).train()
