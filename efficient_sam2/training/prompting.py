"""Prompt tuning: teach a SAM 2's heads to segment from points and boxes on single images, tracking held fixed.

A model trained on videos alone (the bundled micro model) learns its mask decoder on memory-conditioned features:
tracked frames, and first frames given as masks (which skip the decoder's prompt path). Its decoder then hardly
reads a click on a frame without memory, the "segment anything" case of the image predictor, of click-prompted
tracking and of automatic masks. Prompt tuning trains only what that case needs:

- trained: the prompt encoder, the mask decoder (its two skip-feature projections excepted) and `no_mem_embed`
  (the embedding added to a frame without memory); everything else is frozen, so the image encoder's features
  are computed once per training image and cached, which makes a step cost a few decoder passes;
- image loss: SAM's recipe from `training.images` (one click anywhere on an instance with three outputs and the
  min-over-outputs loss, or a jittered box; a correction click in the error; the IoU head towards the true IoU);
- tracking held: the decoder calls of the frozen starting model while it tracks training videos densely from
  their first-frame masks (tracked frames on memory-conditioned features, and the mask-prompted frames' pointer
  calls) are recorded once; every step the tuned decoder is distilled towards the recorded outputs on a sample
  of them (mask logits as soft targets, predicted IoUs, object score, object pointer), so tracking keeps the
  behaviour it had.

Sampling is a pure function of (seed, step), so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ..io.atomic import atomic_open, atomic_torch_save
from ..io.frames import preprocess_frame
from ..io.masks import read_palette_mask
from ..modeling.sam2 import BackboneFeatures, PointPrompt, SAM2Model
from .data import TrainingDataError
from .files import write_csv
from .images import MIN_INSTANCE_PIXELS, ImageBatch, ImageDataset, image_losses
from .sam2_trainer import VAL_COLUMNS, warmup_cosine_lr

__all__ = ["PromptTuneConfig", "PromptTuner", "TRAINED_PREFIXES", "tune_prompting"]

TRAINED_PREFIXES = ("sam_prompt_encoder.", "sam_mask_decoder.", "no_mem_embed")
"""Parameters prompt tuning trains (name prefixes); `FROZEN_INSIDE` are excluded from them."""
FROZEN_INSIDE = ("sam_mask_decoder.conv_s0.", "sam_mask_decoder.conv_s1.")
LOSS_COLUMNS = ["step", "loss", "image", "distill", "lr", "seconds"]
RESUMABLE_CHANGES = ("steps", "val_data", "val_every", "val_videos", "save_every", "threads", "out")
"""Settings a resumed run may change; any other change is refused."""


@dataclass
class PromptTuneConfig:
    """image_data: a `synth --images` folder (JPEGImages/, Annotations/); video_data: training videos whose
    dense tracking the tuned model must keep (JPEGImages/<res>/<video>/, Annotations/...; the layout `synth`
    writes); out: run folder. steps, lr (AdamW, cosine after a linear warm-up), weight_decay; image_batch images x
    image_instances instances per step; box_prob: chance that a step's first prompts are boxes; distill_videos:
    videos recorded for distillation (0 = none: tracking is then not held); distill_batch: recorded decoder calls
    per step; distill_weight: weight of the distillation loss; val_data / val_every: validation J&F of dense
    tracking (videos) every that many steps; save_every; seed; threads (0 = torch's default); click_seed_radius:
    the model's `SAM2Config.click_seed_radius` (None = the model's; its clicks' seed disks; checked against the
    model, and recorded so that a resume and a user of the weights know it); distill_from: weights of the teacher
    whose tracking is recorded and held (a file; None = the starting weights), for a second stage that restores
    the tracking of the original model after a first stage tuned without distillation; box_seeds,
    single_output_from_best, seed_mask_prompts: the model's `SAM2Config` switches of the same names (recorded
    from the model: with them a box is drawn into the seeds, a prompted single-mask call, the box and correction
    rounds of the image loss, is answered and supervised on the best-scored multimask output, and the correction
    round's previous mask is given in the seeds' form)."""

    image_data: str
    video_data: str | None
    out: str
    steps: int = 3000
    lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.01
    image_batch: int = 8
    image_instances: int = 8
    box_prob: float = 0.3
    distill_videos: int = 40
    distill_batch: int = 24
    distill_weight: float = 1.0
    val_data: str | None = None
    val_every: int = 0
    val_videos: int = 8
    save_every: int = 250
    seed: int = 0
    threads: int = 1
    grad_clip: float = 1.0
    click_seed_radius: float | None = None
    distill_from: str | None = None
    box_seeds: bool | None = None
    single_output_from_best: bool | None = None
    seed_mask_prompts: bool | None = None

    def check(self) -> None:
        def fail(msg):
            raise ValueError(msg)
        for name in ("steps", "image_batch", "image_instances", "save_every"):
            if getattr(self, name) < 1:
                fail(f"{name} must be at least 1 (got {getattr(self, name)})")
        for name in ("warmup", "distill_videos", "distill_batch", "val_every", "val_videos", "threads"):
            if getattr(self, name) < 0:
                fail(f"{name} must be >= 0 (got {getattr(self, name)})")
        if not self.lr > 0:
            fail(f"lr must be positive (got {self.lr})")
        if not 0 <= self.box_prob <= 1:
            fail(f"box_prob must be in [0, 1] (got {self.box_prob})")
        if self.distill_weight < 0:
            fail(f"distill_weight must be >= 0 (got {self.distill_weight})")
        if self.distill_videos and not self.video_data:
            fail("distillation needs training videos (video_data), or set distill_videos to 0")
        if self.distill_from is not None:
            if not self.distill_videos:
                fail("distill_from names a teacher but distill_videos is 0")
            if not os.path.isfile(self.distill_from):
                fail(f"distill_from: no such file {self.distill_from!r}")


def _trained(name: str) -> bool:
    return name.startswith(TRAINED_PREFIXES) and not name.startswith(FROZEN_INSIDE)


# ---------------------------------------------------------------------------------------------------------------------
# Cached image features


class CachedImages:
    """The frozen encoder's features and the id maps of every training image, sampled like `ImageDataset`."""

    def __init__(self, model: SAM2Model, data: str, batch: int = 16, progress: bool = True) -> None:
        items = ImageDataset(data, model.image_size).items
        S = model.image_size
        vision, high0, high1, ids, present = [], [], [], [], []
        with torch.inference_mode():
            for start in tqdm(range(0, len(items), batch), desc="encode images", disable=not progress):
                chunk = items[start:start + batch]
                imgs = []
                for path, ann in chunk:
                    imgs.append(preprocess_frame(np.array(Image.open(path).convert("RGB")), S))
                    lab = read_palette_mask(ann)[0]
                    if lab.shape != (S, S):
                        lab = np.array(Image.fromarray(lab).resize((S, S), Image.NEAREST))
                    counts = np.bincount(lab.ravel(), minlength=256)
                    keep = [int(v) for v in np.flatnonzero(counts >= MIN_INSTANCE_PIXELS) if v not in (0, 255)]
                    if not keep:
                        raise TrainingDataError(f"{ann!r} holds no instance of at least {MIN_INSTANCE_PIXELS} "
                                                "pixels at the model's input size")
                    ids.append(lab)
                    present.append(keep)
                feats = model.forward_image(torch.stack(imgs).to(model.device))
                vision.append(feats.vision.float().cpu())
                high0.append(feats.high_res[0].float().cpu())
                high1.append(feats.high_res[1].float().cpu())
        self.vision, self.high = torch.cat(vision), [torch.cat(high0), torch.cat(high1)]
        self.ids = np.stack(ids)
        self.present = present
        self.names = [os.path.splitext(os.path.basename(p))[0] for p, _ in items]

    def __len__(self) -> int:
        return len(self.names)

    def sample(self, images: int, instances: int, seed: int, step: int) -> tuple[BackboneFeatures, ImageBatch]:
        """Features repeated per instance and the batch's masks: `images` images x `instances` instances."""
        rng = np.random.default_rng([seed, step, 5])
        rows, masks, index, names = [], [], [], []
        for n in range(images):
            i = int(rng.integers(len(self)))
            pick = rng.choice(self.present[i], size=instances, replace=len(self.present[i]) < instances)
            masks.append(torch.from_numpy(np.stack([self.ids[i] == v for v in pick]).astype(np.float32))[:, None])
            rows += [i] * instances
            index += [n] * instances
            names.append(self.names[i])
        r = torch.as_tensor(rows)
        feats = BackboneFeatures([h.index_select(0, r) for h in self.high], self.vision.index_select(0, r),
                                 self.vision.index_select(0, r))  # vision_pos is unused by the decoder
        return feats, ImageBatch(torch.empty(0), torch.cat(masks), torch.as_tensor(index), names)


# ---------------------------------------------------------------------------------------------------------------------
# Recorded tracking


@dataclass
class DecoderCall:
    """One decoder call of the starting model while it tracked (B objects) and what it returned."""

    image_embed: torch.Tensor
    high_res: list[torch.Tensor]
    coords: torch.Tensor
    labels: torch.Tensor
    mask_input: torch.Tensor | None
    multimask: bool
    logits: torch.Tensor
    ious: torch.Tensor
    scores: torch.Tensor
    obj_ptr: torch.Tensor

    @property
    def kind(self) -> tuple:
        return (self.coords.shape[1], self.mask_input is not None, self.multimask, self.pointer_only)

    @property
    def pointer_only(self) -> bool:
        """A mask prompt and no point: in tracking, the call that turns a given mask into the frame's output
        (`SAM2Model.mask_as_output`), of which only the object pointer is used."""
        return self.mask_input is not None and bool((self.labels == -1).all())


def record_tracking(model: SAM2Model, video_data: str, videos: int, progress: bool = True) -> list[DecoderCall]:
    """Track the first `videos` videos of `video_data` densely from their first-frame masks and record every
    decoder call, one record per object."""
    from ..predictors.video import VideoPredictor
    from .data import scan_training_videos

    found = scan_training_videos(*_video_dirs(video_data), max_objects=0)
    if not found:
        raise TrainingDataError(f"no training videos with first-frame masks found in {video_data!r}")
    # evenly spread over the name-ordered videos (synth names start with their subset)
    pick = sorted({int(i) for i in np.linspace(0, len(found) - 1, min(videos, len(found)))})
    chosen = [found[i] for i in pick]
    calls: list[DecoderCall] = []
    original = model.decode

    def recording(image_embed, high_res, points=None, mask_input=None, multimask=False, return_saliency=False,
                  search_clicks=True):
        out = original(image_embed, high_res, points=points, mask_input=mask_input, multimask=multimask,
                       return_saliency=return_saliency, search_clicks=search_clicks)
        B = image_embed.shape[0]
        for b in range(B):
            calls.append(DecoderCall(
                image_embed[b:b + 1].float().clone(), [h[b:b + 1].float().clone() for h in high_res],
                points.coords[b:b + 1].clone() if points is not None else torch.zeros(1, 1, 2),
                points.labels[b:b + 1].clone() if points is not None else -torch.ones(1, 1, dtype=torch.int32),
                None if mask_input is None else mask_input[b:b + 1].float().clone(), bool(multimask),
                out.multimask_logits[b:b + 1].float().clone(), out.ious[b:b + 1].float().clone(),
                out.object_score_logits[b:b + 1].float().clone(), out.obj_ptr[b:b + 1].float().clone()))
        return out

    predictor = VideoPredictor(model)
    model.decode = recording
    try:
        with torch.inference_mode():
            for video in tqdm(chosen, desc="record tracking", disable=not progress):
                state = predictor.init_state(video.frames)
                for obj_id, mask in video.load_prompts().items():
                    predictor.add_new_mask(state, 0, obj_id, mask)
                for _ in predictor.propagate_in_video(state, progress=False):
                    pass
    finally:
        del model.decode  # back to the class's method
    return calls


def _video_dirs(data: str) -> tuple[str, str]:
    """JPEGImages/<res> and Annotations/<res> of a `synth`-layout folder (the only resolution folder, if any)."""
    frames, masks = os.path.join(data, "JPEGImages"), os.path.join(data, "Annotations")
    if not os.path.isdir(frames) or not os.path.isdir(masks):
        raise TrainingDataError(f"video folder {data!r} needs JPEGImages/ and Annotations/")
    subs = sorted(d for d in os.listdir(frames) if d.endswith("p") and os.path.isdir(os.path.join(frames, d)))
    if len(subs) == 1 and os.path.isdir(os.path.join(masks, subs[0])):
        return os.path.join(frames, subs[0]), os.path.join(masks, subs[0])
    return frames, masks


def distill_loss(model: SAM2Model, calls: list[DecoderCall]) -> torch.Tensor:
    """How far the decoder's outputs on recorded calls are from the recorded ones (calls grouped into batches of
    one kind; 0 when they agree): soft-target BCE less the target's entropy on the mask logits of objects the record
    saw, MSE on predicted IoUs, object scores (clamped to +-10) and pointers. Of a pointer-only call (a given mask
    as the frame's output) only the pointer is compared: tracking uses nothing else of it, and holding its masks
    would pin the mask-prompt path that click seeds go through."""
    groups: dict[tuple, list[DecoderCall]] = {}
    for c in calls:
        groups.setdefault(c.kind, []).append(c)
    total, n = 0.0, 0
    device = model.device
    for group in groups.values():
        cat = lambda get: torch.cat([get(c) for c in group]).to(device)  # noqa: E731
        points = PointPrompt(cat(lambda c: c.coords), cat(lambda c: c.labels))
        mask_input = cat(lambda c: c.mask_input) if group[0].mask_input is not None else None
        out = model.decode(cat(lambda c: c.image_embed), [cat(lambda c, i=i: c.high_res[i]) for i in range(2)],
                           points=points, mask_input=mask_input, multimask=group[0].multimask, search_clicks=False)
        t_logits, t_scores = cat(lambda c: c.logits), cat(lambda c: c.scores)
        seen = (t_scores > 0).float().reshape(-1, 1, 1, 1)
        s_logits = out.multimask_logits.float().clamp(-32, 32)
        target = torch.sigmoid(t_logits.clamp(-32, 32))
        # soft-target BCE minus the target's own entropy: zero when the logits agree
        bce = (F.binary_cross_entropy_with_logits(s_logits, target, reduction="none")
               - F.binary_cross_entropy(target, target, reduction="none"))
        mask_term = (bce * seen).sum() / (seen.sum() * bce[0].numel()).clamp(min=1)
        iou_term = F.mse_loss(out.ious.float(), cat(lambda c: c.ious))
        score_term = F.mse_loss(out.object_score_logits.float().clamp(-10, 10), t_scores.clamp(-10, 10)) / 10
        ptr_term = F.mse_loss(out.obj_ptr.float(), cat(lambda c: c.obj_ptr))
        if group[0].pointer_only:
            total = total + len(group) * ptr_term
        else:
            total = total + len(group) * (10 * mask_term + iou_term + score_term + ptr_term)
        n += len(group)
    return total / max(n, 1)


# ---------------------------------------------------------------------------------------------------------------------
# The tuner


@dataclass
class TuneRecord:
    step: int
    loss: float
    image: float
    distill: float
    lr: float
    seconds: float


@dataclass
class PromptTuner:
    model: SAM2Model
    config: PromptTuneConfig
    progress: bool = True
    step: int = 0
    history: list = field(default_factory=list)
    validation: list = field(default_factory=list)

    def __post_init__(self) -> None:
        cfg = self.config
        cfg.check()
        if cfg.click_seed_radius is None:  # the model's own (12 for micro, 0 for Meta's models)
            cfg.click_seed_radius = float(self.model.cfg.click_seed_radius)
        if self.model.cfg.click_seed_radius != cfg.click_seed_radius:
            raise ValueError(f"the model's click_seed_radius is {self.model.cfg.click_seed_radius}, the run's "
                             f"{cfg.click_seed_radius}: build the model with the run's")
        for name in ("box_seeds", "single_output_from_best", "seed_mask_prompts"):
            if getattr(cfg, name) is None:
                setattr(cfg, name, bool(getattr(self.model.cfg, name)))
            if bool(getattr(self.model.cfg, name)) != getattr(cfg, name):
                raise ValueError(f"the model's {name} is {getattr(self.model.cfg, name)}, the run's "
                                 f"{getattr(cfg, name)}: build the model with the run's")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.model.eval()  # no dropout / batch statistics anywhere in SAM 2; eval keeps inference paths
        for name, p in self.model.named_parameters():
            p.requires_grad_(_trained(name))
        self.images = CachedImages(self.model, cfg.image_data, progress=self.progress)
        self.calls = []
        if cfg.distill_videos:
            teacher = self.model
            if cfg.distill_from is not None:
                from ..build import load_checkpoint

                teacher = copy.deepcopy(self.model)
                load_checkpoint(teacher, cfg.distill_from)
            self.calls = record_tracking(teacher, cfg.video_data, cfg.distill_videos, self.progress)
            del teacher
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_at(self, step: int) -> float:
        return warmup_cosine_lr(step, self.config.lr, self.config.warmup, self.config.steps)

    def train_step(self) -> TuneRecord:
        cfg = self.config
        start = time.perf_counter()
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        feats, batch = self.images.sample(cfg.image_batch, cfg.image_instances, cfg.seed, self.step)
        rng = np.random.default_rng([cfg.seed, self.step, 6])
        first, second = image_losses(self.model, batch, rng, cfg.box_prob, feats=feats)
        image = 0.5 * (first.total + second.total)
        distill = torch.zeros(())
        if self.calls and cfg.distill_weight > 0:
            pick = np.random.default_rng([cfg.seed, self.step, 7]).choice(
                len(self.calls), size=min(cfg.distill_batch, len(self.calls)), replace=False)
            distill = distill_loss(self.model, [self.calls[i] for i in pick])
        loss = image + cfg.distill_weight * distill
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at step {self.step}; lower --lr")
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        rec = TuneRecord(self.step, loss.item(), image.item(), distill.item(), lr, time.perf_counter() - start)
        self.history.append(rec)
        return rec

    @torch.inference_mode()
    def validate(self) -> dict | None:
        cfg = self.config
        if not cfg.val_data:
            return None
        from .clips import ClipDataset
        from .validation import validation_row

        row = validation_row(self.model, ClipDataset(cfg.val_data, 2, self.model.image_size, 1), cfg.val_videos,
                             self.step)
        self.validation.append(row)
        return row

    # ------------------------------------------------------------------ files
    def paths(self) -> dict[str, str]:
        out = self.config.out
        return {"checkpoint": os.path.join(out, "checkpoint.pt"), "weights": os.path.join(out, "model.pt"),
                "loss": os.path.join(out, "loss.csv"), "validation": os.path.join(out, "validation.csv"),
                "config": os.path.join(out, "config.json")}

    def save(self) -> None:
        p = self.paths()
        os.makedirs(self.config.out, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        atomic_torch_save({"model": state, "optimizer": self.optimizer.state_dict(), "step": self.step,
                           "history": [asdict(r) for r in self.history], "validation": self.validation,
                           "config": asdict(self.config)}, p["checkpoint"])
        atomic_torch_save({"model": state}, p["weights"])
        write_csv(p["loss"], LOSS_COLUMNS, ([getattr(r, k) for k in LOSS_COLUMNS] for r in self.history))
        if self.validation:
            write_csv(p["validation"], VAL_COLUMNS, ([r[k] for k in VAL_COLUMNS] for r in self.validation))
        with atomic_open(p["config"], "w") as f:
            json.dump(asdict(self.config), f, indent=1)

    def resume(self) -> None:
        from ..io.torch_files import read_torch_file

        ckpt = read_torch_file(self.paths()["checkpoint"], "prompt-tuning checkpoint")
        saved, now = ckpt.get("config", {}), asdict(self.config)
        changed = [k for k in now if k not in RESUMABLE_CHANGES and k in saved and saved[k] != now[k]]
        if changed:
            raise ValueError(f"cannot resume with other settings than the saved run's: {', '.join(changed)} "
                             f"(saved: {', '.join(f'{k}={saved[k]!r}' for k in changed)})")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step = int(ckpt["step"])
        self.history = [TuneRecord(**r) for r in ckpt["history"]]
        self.validation = list(ckpt["validation"])

    def run(self) -> None:
        cfg = self.config
        bar = tqdm(total=cfg.steps, initial=self.step, desc="prompt tuning", disable=not self.progress)
        if cfg.val_every and self.step == 0:
            self._report(self.validate())
        while self.step < cfg.steps:
            rec = self.train_step()
            bar.update(1)
            bar.set_postfix(loss=f"{rec.loss:.3f}", image=f"{rec.image:.3f}", distill=f"{rec.distill:.4f}")
            if cfg.val_every and self.step % cfg.val_every == 0:
                self._report(self.validate())
            if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                self.save()
        bar.close()

    def _report(self, row) -> None:
        if row and self.progress:
            tqdm.write(f"step {row['step']}: validation J&F {row['J&F']:.1f} on {row['videos']} videos")


def tune_prompting(model: SAM2Model, config: PromptTuneConfig, resume: bool = False, overwrite: bool = False,
                   progress: bool = True) -> PromptTuner:
    """Prompt-tune `model` in place (see the module docstring); writes config.json, loss.csv, validation.csv,
    checkpoint.pt and model.pt under `config.out`."""
    ckpt = os.path.join(config.out, "checkpoint.pt")
    if os.path.exists(ckpt) and not resume and not overwrite:
        raise FileExistsError(f"{config.out!r} already holds a run: pass --resume to continue it or --overwrite "
                              "to start again")
    tuner = PromptTuner(model, config, progress=progress)
    if resume:
        if not os.path.exists(ckpt):
            raise FileNotFoundError(f"nothing to resume: {ckpt!r} does not exist")
        tuner.resume()
    tuner.run()
    return tuner
