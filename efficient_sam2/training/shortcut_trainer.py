"""Training the shortcut branch of Sparse Window Routing by feature reconstruction (paper section 3.2, Eq. 14).

Teacher and student are the same frozen SAM 2 model: the teacher encodes a frame densely, the student routes the
stride-16 Hiera stage with the router's `WindowPlan` and sends the background windows through the trainable
shortcut. The loss is the MSE between their memory-conditioned features (B, 256, E, E), computed for every object
with the same memory bank:

    L = || condition_on_memory(student(x_t)) - condition_on_memory(teacher(x_t)) ||^2      (mean over elements)

Only the shortcut trains; everything else is frozen (requires_grad False, eval mode). Gradients flow from the loss
through memory attention, the neck, stage 4 and the last stride-16 block into the shortcut.

The roll-out over a video is the semi-supervised VOS protocol of the efficient predictor, driven through the same
`tracking.TrackingLoop` (one `ObjectTrack` per object as the memory bank) with an `EfficientPolicy` as the router
(the predictors run under inference mode, so the trainer drives the loop itself):

* frame 0 is a conditioning frame for every object (its first-frame mask is the prompt; as in the predictor, the
  stored mask, holes filled, is encoded into memory and routes frame 1);
* every later frame is tracked with the memory bank chosen by the reference rules, with the epoch's memory stride
  (the loop's `memory_stride`); memories are stored in bf16 and frames no later frame can read are forgotten;
* the policy's router turns each frame's outputs (all objects' multimask logits, object scores, decoder saliency)
  into the next frame's window plan, with the same `EfficientConfig` as inference (first `dense_frames` frames
  dense);
* a frame is a **training frame** when its index is a multiple of the frame stride and it is routed with at least
  one background window (a frame with every window kept has student == teacher and no gradient).

Which pass drives the roll-out (the paper does not say; this follows the official code): on training frames the
memory entry, the object pointer and the routing signals come from the **teacher**, so the video's memory stays
clean and every loss term sees teacher-quality memory; on all other frames they come from the **student** with the
current shortcut (in eval mode, i.e. without dropout), as at inference. Memory tokens are stored detached, so
gradients never reach earlier frames. Sparse Memory Retrieval plays no part: both passes read the full memory.

Optimisation: AdamW (lr 1e-4, PyTorch's other defaults) with gradient accumulation: every loss term (one object on
one training frame) contributes loss / update_stride and the optimizer steps after `update_stride` terms. The
partial accumulation left at the end of an epoch is stepped too, its gradient rescaled by update_stride / k for
its k terms, so that it is the mean over its terms like a full update (the official code steps it at 1/32 scale).

Checkpoints (all written atomically) go to the output folder at the end of the first video that completes
`save_every` updates since the last checkpoint, and at the end of every epoch: `shortcut.pth` (our shortcut format,
loadable with `build_sam2_video_predictor(..., shortcut_checkpoint=...)`), `shortcut_epoch<N>.pth` at the end of
epoch N, `loss.csv`, `loss.png`, and `training_state.pt` (shortcut weights, optimizer state, epoch, position in the
epoch's video order, accumulation counter and gradients, RNG states, loss history), which `resume=True` continues
from. Checkpoints fall on video boundaries, so a resumed run repeats exactly what an uninterrupted one does; an
interruption loses at most the work since the last checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..configs import resolve_model_name
from ..efficient.config import EfficientConfig
from ..efficient.policy import EfficiencyStats, EfficientSAM2
from ..efficient.shortcut import build_shortcut, load_shortcut, save_shortcut
from ..io.frames import VideoFrames
from ..modeling.sam2 import SAM2Model
from ..tracking.loop import TrackingLoop
from ..tracking.memory_bank import frames_to_keep
from ..tracking.state import ObjectTrack
from .data import LAYOUTS, TrainingDataError, TrainingVideo, scan_training_videos
from .files import atomic_open, atomic_torch_save
from ..io.torch_files import TorchFileError, read_torch_file
from .loss_curve import plot_loss_curve, write_loss_csv

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainEvent",
    "ShortcutTrainer",
    "ShortcutTrainingError",
    "ReconstructionReport",
    "train_shortcut",
    "evaluate_reconstruction",
    "default_frame_stride",
    "prompt_masks",
    "SHORTCUT_FILE",
    "STATE_FILE",
    "LOSS_CSV",
    "LOSS_PLOT",
    "CONFIG_FILE",
]

SHORTCUT_FILE = "shortcut.pth"
STATE_FILE = "training_state.pt"
LOSS_CSV = "loss.csv"
LOSS_PLOT = "loss.png"
CONFIG_FILE = "train_config.json"
_RUN_FILES = (SHORTCUT_FILE, STATE_FILE, LOSS_CSV, LOSS_PLOT, CONFIG_FILE)  # and shortcut_epoch<N>.pth
_STATE_FORMAT = "efficient-sam2-shortcut-training"
_STATE_VERSION = 1
_TRAINABLE = ("bottleneck", "ffn", "attention")


class ShortcutTrainingError(ValueError):
    """A training run that cannot start or resume as asked; the message says why and what to do."""


def default_frame_stride(model: str) -> int:
    """The paper's training-frame stride: 4 for large, 3 otherwise (Appendix F: 3 for base+, 4 for Large)."""
    return 4 if resolve_model_name(model).endswith("_large") else 3


@dataclass(frozen=True)
class TrainConfig:
    """Everything a shortcut-training run needs.

    Data: video_dir (frame folders / video files), mask_dir (first-frame masks in `layout`: "davis", "mose" or
        "sav"), video_list (optional list file choosing the videos), max_objects (per video; 0 = all).
    Model: model (name or alias), checkpoint (official SAM 2 / 2.1 file), image_size (None = 1024),
        efficient (the router settings; the inference defaults unless overridden; SMR options are not used),
        device, bf16 (autocast the forward passes to bfloat16; meant for CUDA, allowed but slow on CPU).
    Shortcut: variant ("bottleneck", "ffn", "attention"), init_shortcut (optional shortcut file to start from).
    Schedule: epochs, lr, weight_decay (AdamW's default 0.01), update_stride (loss terms per optimizer update),
        frame_stride (None = 4 for large, 3 otherwise), memory_strides (epoch e uses memory_strides[e % len]),
        max_frames (only the first max_frames frames of each video; None = all), shuffle (a new seeded video
        order every epoch), seed (a new run seeds torch's global generator with it: the shortcut's initialisation
        and dropout; a resumed run restores the generator's saved state instead).
    Output: output_dir, save_every (updates between checkpoints), resume (continue the run in output_dir),
        progress (tqdm bar).
    """

    model: str
    checkpoint: str
    video_dir: str
    mask_dir: str
    output_dir: str
    layout: str = "davis"
    video_list: str | None = None
    max_objects: int = 1
    variant: str = "bottleneck"
    epochs: int = 3
    lr: float = 1e-4
    weight_decay: float = 0.01
    update_stride: int = 32
    frame_stride: int | None = None
    memory_strides: tuple[int, ...] = (1, 3, 5)
    save_every: int = 10
    resume: bool = False
    bf16: bool = False
    device: str = "cpu"
    image_size: int | None = None
    efficient: EfficientConfig = field(default_factory=EfficientConfig.paper)  # the routing the shortcut learns on
    max_frames: int | None = None
    shuffle: bool = True
    seed: int = 0
    init_shortcut: str | None = None
    progress: bool = True

    def __new__(cls, *args, **kwargs):
        # A guessed keyword gets the list of real fields, not only the generated __init__'s bare TypeError.
        unknown = [k for k in kwargs if k not in cls.__dataclass_fields__]
        if unknown:
            router = [k for k in unknown if k in EfficientConfig.__dataclass_fields__]
            hint = (f" Router settings ({', '.join(router)}) belong to EfficientConfig: "
                    f"TrainConfig(..., efficient=EfficientConfig({router[0]}=...))." if router else "")
            raise TypeError(f"TrainConfig got unknown field(s) {', '.join(map(repr, unknown))}. Its fields are: "
                            f"{', '.join(cls.__dataclass_fields__)}.{hint}")
        return super().__new__(cls)

    def __post_init__(self) -> None:
        def fail(msg: str) -> None:
            raise ShortcutTrainingError(msg)

        try:
            object.__setattr__(self, "model", resolve_model_name(self.model))
        except (ValueError, TypeError) as exc:
            fail(str(exc))
        for name in ("checkpoint", "video_dir", "mask_dir", "output_dir"):
            value = getattr(self, name)
            if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
                fail(f"{name} must be a path, got {value!r}")
            object.__setattr__(self, name, os.fspath(value))
        for name in ("video_list", "init_shortcut"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, os.fspath(value))
        if self.layout not in LAYOUTS:
            fail(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.variant not in _TRAINABLE:
            extra = " (the identity shortcut has no parameters to train)" if self.variant == "identity" else ""
            fail(f"variant must be one of {', '.join(_TRAINABLE)}, got {self.variant!r}{extra}")

        def positive_int(name: str, allow_zero: bool = False, allow_none: bool = False) -> None:
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if allow_zero else 1):
                fail(f"{name} must be an integer >= {0 if allow_zero else 1}, got {v!r}")
            object.__setattr__(self, name, int(v))

        positive_int("max_objects", allow_zero=True)
        positive_int("epochs")
        positive_int("update_stride")
        positive_int("frame_stride", allow_none=True)
        positive_int("save_every")
        positive_int("image_size", allow_none=True)
        positive_int("max_frames", allow_none=True)
        positive_int("seed", allow_zero=True)
        if self.max_frames is not None and self.max_frames < 2:
            fail(f"max_frames must be at least 2 (frame 0 is the prompt), got {self.max_frames}")
        if self.image_size is not None and self.image_size % 32:
            fail(f"image_size must be a multiple of 32, got {self.image_size}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            fail(f"lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            fail(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        strides = self.memory_strides
        if isinstance(strides, int):
            strides = (strides,)
        try:
            strides = tuple(int(s) for s in strides)
        except (TypeError, ValueError):
            fail(f"memory_strides must be a list of positive integers, got {self.memory_strides!r}")
        if not strides or any(s < 1 for s in strides):
            fail(f"memory_strides must be a non-empty list of positive integers, got {self.memory_strides!r}")
        object.__setattr__(self, "memory_strides", strides)
        if not isinstance(self.efficient, EfficientConfig):
            fail(f"efficient must be an EfficientConfig, got {type(self.efficient).__name__}")
        if not self.efficient.swr:
            fail("shortcut training needs Sparse Window Routing: efficient.swr is False (the shortcut would never "
                 "be used)")
        if self.efficient.shortcut != self.variant:
            object.__setattr__(self, "efficient", self.efficient.replace(shortcut=self.variant))
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            fail(f"invalid device {self.device!r}: {exc}")
        if device.type == "cuda" and not torch.cuda.is_available():
            fail(f"device {self.device!r} asked for, but CUDA is not available on this machine (use --device cpu)")
        object.__setattr__(self, "device", str(self.device))

    @property
    def resolved_frame_stride(self) -> int:
        return self.frame_stride if self.frame_stride is not None else default_frame_stride(self.model)

    def memory_stride(self, epoch: int) -> int:
        return self.memory_strides[epoch % len(self.memory_strides)]

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def record(self) -> dict:
        """Plain-data description of the run (stored in the checkpoints and train_config.json)."""
        return {
            "model": self.model,
            "checkpoint": self.checkpoint,
            "video_dir": self.video_dir,
            "mask_dir": self.mask_dir,
            "layout": self.layout,
            "video_list": self.video_list,
            "max_objects": self.max_objects,
            "variant": self.variant,
            "epochs": self.epochs,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "update_stride": self.update_stride,
            "frame_stride": self.resolved_frame_stride,
            "memory_strides": list(self.memory_strides),
            "save_every": self.save_every,
            "bf16": self.bf16,
            "image_size": self.image_size,
            "efficient": self.efficient.to_dict(),
            "max_frames": self.max_frames,
            "shuffle": self.shuffle,
            "seed": self.seed,
            "init_shortcut": self.init_shortcut,
        }


# Settings that change what a run computes: a resumed run must use the same values.
_RESUME_FIXED = ("model", "variant", "layout", "max_objects", "lr", "weight_decay", "update_stride", "frame_stride",
                 "memory_strides", "bf16", "image_size", "efficient", "max_frames", "shuffle", "seed")


@dataclass(frozen=True)
class TrainEvent:
    """Passed to the training callback after every loss term: where it was measured and the run's progress."""

    epoch: int
    video: str
    frame: int
    object_id: int
    loss: float
    term: int
    updates: int
    accumulated: int


@dataclass
class TrainResult:
    """Outcome of a training run.

    shortcut_path: the final shortcut (our format); state_path: the resumable training state; loss_csv,
    loss_plot: the loss curve; updates: optimizer updates done; terms: loss terms; epochs: epochs completed;
    losses: the per-term losses in order; plot_backend: "matplotlib" or "pil".
    """

    shortcut_path: str
    state_path: str
    loss_csv: str
    loss_plot: str
    updates: int
    terms: int
    epochs: int
    losses: list[float]
    plot_backend: str = ""

    def moving_average(self, window: int) -> list[float]:
        from .loss_curve import moving_average

        return moving_average(self.losses, window)


# ---------------------------------------------------------------------------------------------------------------------
# The roll-out


def prompt_masks(masks: Sequence[np.ndarray], image_size: int, device) -> torch.Tensor:
    """First-frame masks (H, W) -> (B, 1, S, S) binary model-input prompts, resized as the video predictor's
    `add_new_mask` does (antialiased bilinear, then >= 0.5)."""
    out = []
    for m in masks:
        mt = torch.from_numpy(np.asarray(m) > 0).float()[None, None]
        if tuple(mt.shape[-2:]) != (image_size, image_size):
            mt = F.interpolate(mt, size=(image_size, image_size), mode="bilinear", align_corners=False,
                               antialias=True)
            mt = (mt >= 0.5).float()
        out.append(mt)
    return torch.cat(out, 0).to(device)


def _rollout(
    loop: TrackingLoop,
    method: EfficientSAM2,
    frames: VideoFrames,
    prompts: torch.Tensor,
    frame_stride: int,
    on_term: Callable[[int, torch.Tensor, torch.Tensor], None],
    train: bool,
    autocast: Callable[[], contextlib.AbstractContextManager],
    num_frames: int,
    on_frame: Callable[[int], None] | None = None,
) -> EfficiencyStats:
    """Track every prompted object through `num_frames` frames with the tracking loop and an Efficient-SAM2 policy
    of `method` (whose shortcut is the one trained); call on_term(frame, student, teacher) with the (B, C, E, E)
    memory-conditioned features of both passes on every training frame. With `train` the student pass records
    gradients (shortcut in train mode); otherwise everything runs without gradients. Returns what was routed."""
    model = loop.model
    device = model.device
    B = prompts.shape[0]
    shortcut = method.shortcut
    tracks = [ObjectTrack(obj_id=b) for b in range(B)]
    policy = method.new_video()
    policy.start(reverse=False)
    cfg = model.cfg
    shortcut.eval()
    try:
        for t in range(num_frames):
            image = frames.get_tensor(t).to(device).float().unsqueeze(0)
            if t == 0:
                with torch.no_grad(), autocast():
                    feats = loop.encode(image, t, policy)  # nothing observed yet: dense
                    # the mask prompt; as the predictor, its stored mask (holes filled) is encoded into memory
                    prompted = loop.step(feats, tracks, t, num_frames, is_init=True, mask=prompts,
                                         run_mem_encoder=False).outputs
                    memories = loop.encode_memories(feats, prompted)
                    for b, (track, out) in enumerate(zip(tracks, prompted)):
                        out.maskmem_features = memories[b:b + 1]
                        track.cond_outputs[t] = out
                    loop.track_frame(lambda: feats, tracks, t, num_frames, policy=policy)  # routes frame 1
            else:
                # the router's plan for this frame (decided when frame t-1 was observed); None = dense
                plan = policy.window_plan(t)
                is_term = (plan is not None and plan.keep.numel() < method.grid.num_windows
                           and t % frame_stride == 0)
                with torch.no_grad(), autocast():
                    if is_term:
                        feats = loop.encode(image, t)  # teacher: dense
                        memories, pointers = loop.memory(tracks, t, num_frames)
                        teacher, _ = model.condition_on_memory(feats.expand(B), memories, pointers, num_frames)
                    else:
                        feats = loop.encode(image, t, policy)  # routed, shortcut in eval mode (as at inference)
                if is_term:
                    grad = torch.enable_grad() if train else torch.no_grad()
                    if train:
                        shortcut.train()
                    try:
                        with grad, autocast():
                            student_feats = loop.encode(image, t, policy).expand(B)
                            student, _ = model.condition_on_memory(student_feats, memories, pointers, num_frames)
                    finally:
                        shortcut.eval()
                    on_term(t, student, teacher)
                    del student, student_feats, teacher, memories, pointers
                with torch.no_grad(), autocast():
                    # the step stores each object's output and memory; the policy routes frame t+1 from it
                    loop.track_frame(lambda: feats, tracks, t, num_frames, policy=policy)
            # forget what no later frame can read
            needs_memory, needs_pointer = frames_to_keep(t, cfg.num_maskmem, loop.memory_stride,
                                                         cfg.max_obj_ptrs_in_encoder)
            for track in tracks:
                for f in [f for f in track.non_cond_outputs if not (needs_memory(f) or needs_pointer(f))]:
                    del track.non_cond_outputs[f]
                track.frames_tracked.pop(t - 1, None)
            if on_frame is not None:
                on_frame(t)
    finally:
        policy.stop()
    return policy.stats


def _efficient_method(model: SAM2Model, efficient: EfficientConfig, shortcut: nn.Module) -> EfficientSAM2:
    """The Efficient-SAM2 method that routes the roll-out: SWR with `shortcut`; SMR off (both passes read the
    full memory)."""
    return EfficientSAM2(model, efficient.replace(smr=False), shortcut=shortcut)


def _autocast_factory(device: torch.device, bf16: bool) -> Callable[[], contextlib.AbstractContextManager]:
    if bf16:
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _per_object_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """(B,) mean squared error of each object's features (Eq. 14 with mean reduction), in float32."""
    return (student.float() - teacher.float()).pow(2).flatten(1).mean(dim=1)


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation


@dataclass
class ReconstructionReport:
    """Mean per-object MSE between student and teacher memory-conditioned features over `terms` loss terms."""

    mse: float
    terms: int
    per_term: list[tuple[str, int, int, float]] = field(default_factory=list, repr=False)  # video, frame, obj, mse


def evaluate_reconstruction(
    model: SAM2Model,
    shortcut: nn.Module,
    videos: Sequence[TrainingVideo],
    efficient: EfficientConfig | None = None,
    memory_stride: int = 1,
    frame_stride: int = 1,
    max_frames: int | None = None,
    fill_hole_area: int = 8,
    bf16: bool = False,
    progress: bool = False,
) -> ReconstructionReport:
    """How close a shortcut brings the student's memory-conditioned features to the teacher's, without training.

    Runs the training roll-out (no gradients, shortcut in eval mode) and averages the per-object MSE over every
    routed frame whose index is a multiple of `frame_stride` (1: all of them). With frame_stride 1 every routed
    frame takes its memory from the teacher, so each term measures one frame's reconstruction under clean memory.
    Compare `IdentityShortcut()` (the untrained baseline of Table 3) with a trained shortcut.
    """
    efficient = efficient if efficient is not None else EfficientConfig.paper()
    autocast = _autocast_factory(model.device, bf16)
    was_training = shortcut.training
    loop = TrackingLoop(model, fill_hole_area, memory_stride=memory_stride)
    method = _efficient_method(model, efficient, shortcut)
    per_term: list[tuple[str, int, int, float]] = []
    bar = tqdm(videos, desc="evaluate shortcut", disable=not progress)
    try:
        for video in bar:
            prompts = video.load_prompts()
            with video.open_frames(model.image_size) as frames:
                n = len(frames) if max_frames is None else min(len(frames), max_frames)
                obj_ids = list(prompts)

                def on_term(t, student, teacher, _name=video.name, _ids=obj_ids):
                    for obj, v in zip(_ids, _per_object_mse(student, teacher).tolist()):
                        per_term.append((_name, t, obj, v))

                _rollout(loop, method, frames, prompt_masks(list(prompts.values()), model.image_size, model.device),
                         frame_stride, on_term, False, autocast, n)
    finally:
        shortcut.train(was_training)
        bar.close()
    mse = sum(v for *_, v in per_term) / len(per_term) if per_term else float("nan")
    return ReconstructionReport(mse, len(per_term), per_term)


# ---------------------------------------------------------------------------------------------------------------------
# Training


def _describe_value(v) -> str:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else repr(v)


def _run_files_in(folder: str) -> list[str]:
    """The files of a training run that `folder` holds (every name a run writes there), sorted."""
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder)
                  if n in _RUN_FILES or (n.startswith("shortcut_epoch") and n.endswith(".pth")))


class ShortcutTrainer:
    """One training run: checks the data, builds the frozen model and the shortcut, resumes if asked.

    Construction does all checks (bad data, an existing run without resume, a resume state for another model or
    variant) before any training; `train()` runs the remaining epochs.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = cfg = config
        self.output_dir = os.path.abspath(cfg.output_dir)
        self.state_path = os.path.join(self.output_dir, STATE_FILE)
        self.shortcut_path = os.path.join(self.output_dir, SHORTCUT_FILE)
        self.loss_csv = os.path.join(self.output_dir, LOSS_CSV)
        self.loss_plot = os.path.join(self.output_dir, LOSS_PLOT)
        self.plot_backend = ""

        saved = self._check_output_dir()
        if not os.path.isfile(cfg.checkpoint):
            raise ShortcutTrainingError(f"SAM 2 checkpoint not found: {cfg.checkpoint!r}")
        if cfg.init_shortcut is not None and not cfg.resume and not os.path.isfile(cfg.init_shortcut):
            raise ShortcutTrainingError(f"initial shortcut file not found: {cfg.init_shortcut!r}")
        try:
            self.videos = scan_training_videos(cfg.video_dir, cfg.mask_dir, cfg.layout, cfg.video_list,
                                               cfg.max_objects)
        except TrainingDataError as exc:
            raise ShortcutTrainingError(str(exc)) from exc
        if saved is not None:
            self._check_resume(saved)

        from ..build import build_sam2_video_predictor

        overrides = {} if cfg.image_size is None else {"image_size": cfg.image_size}
        try:
            predictor = build_sam2_video_predictor(cfg.model, cfg.checkpoint, device=cfg.device, **overrides)
        except (ValueError, FileNotFoundError) as exc:
            raise ShortcutTrainingError(str(exc)) from exc
        self.model = model = predictor.model
        self.fill_hole_area = predictor.fill_hole_area
        model.eval()
        model.requires_grad_(False)
        self.device = model.device
        trunk = model.image_encoder.trunk
        self.dim = trunk.routed_dim
        self.autocast = _autocast_factory(self.device, cfg.bf16)

        torch.manual_seed(cfg.seed)
        if cfg.init_shortcut is not None and saved is None:
            try:
                shortcut, info = load_shortcut(cfg.init_shortcut, dim=self.dim, variant=cfg.variant)
            except (ValueError, FileNotFoundError) as exc:
                raise ShortcutTrainingError(f"cannot start from {cfg.init_shortcut!r}: {exc}") from exc
        else:
            shortcut = build_shortcut(cfg.variant, self.dim)
        self.shortcut = shortcut.to(self.device)
        self.shortcut.requires_grad_(True)
        self.shortcut.eval()
        self.method = _efficient_method(model, cfg.efficient, self.shortcut)  # routes the roll-outs
        self.params = [p for p in self.shortcut.parameters()]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)

        # progress
        self.epoch = 0
        self.position = 0
        self.updates = 0
        self.accumulated = 0
        self.losses: list[list] = []
        self.saved_updates = 0
        if saved is not None:
            self._load_state(saved)

    # ------------------------------------------------------------------ output folder and resume
    def _check_output_dir(self) -> dict | None:
        cfg = self.config
        out = self.output_dir
        if os.path.exists(out) and not os.path.isdir(out):
            raise ShortcutTrainingError(f"output path {out!r} exists and is not a folder")
        existing = _run_files_in(out)
        if not cfg.resume:
            if existing:
                raise ShortcutTrainingError(
                    f"{out!r} already holds a training run ({', '.join(existing)}). Continue it with --resume "
                    "(resume=True) or choose another output folder; nothing was overwritten."
                )
            return None  # other files in the folder are never touched
        if not os.path.isfile(self.state_path):
            raise ShortcutTrainingError(
                f"nothing to resume: {self.state_path!r} does not exist (start a new run without --resume)"
            )
        try:
            saved = read_torch_file(self.state_path, "training state")
        except (TorchFileError, OSError) as exc:
            raise ShortcutTrainingError(f"cannot resume: {exc}") from exc
        if not isinstance(saved, dict) or saved.get("format") != _STATE_FORMAT:
            raise ShortcutTrainingError(f"{self.state_path!r} is not a shortcut training state")
        if saved.get("version") != _STATE_VERSION:
            raise ShortcutTrainingError(
                f"{self.state_path!r} has training-state version {saved.get('version')!r}; this library reads "
                f"version {_STATE_VERSION}"
            )
        return saved

    def _check_resume(self, saved: dict) -> None:
        cfg = self.config
        old = saved["config"]
        new = cfg.record()
        if old["model"] != new["model"] or old["variant"] != new["variant"]:
            raise ShortcutTrainingError(
                f"cannot resume: the run in {self.output_dir!r} trains a {old['variant']!r} shortcut for "
                f"{old['model']}, but a {new['variant']!r} shortcut for {new['model']} was asked for. Use the same "
                "--model and --variant, or another output folder."
            )
        diffs = [f"  {k}: run has {_describe_value(old.get(k))}, given {_describe_value(new.get(k))}"
                 for k in _RESUME_FIXED if old.get(k) != new.get(k)]
        if diffs:
            raise ShortcutTrainingError(
                "cannot resume with different settings (a resumed run must compute what the original would):\n"
                + "\n".join(diffs)
            )
        size = os.path.getsize(cfg.checkpoint)
        if saved.get("checkpoint_size") not in (None, size):
            raise ShortcutTrainingError(
                f"cannot resume: the SAM 2 checkpoint {cfg.checkpoint!r} ({size} bytes) is not the file the run "
                f"started with ({old['checkpoint']!r}, {saved['checkpoint_size']} bytes)"
            )
        now = {v.name: list(v.object_ids) for v in self.videos}
        then = dict(saved["videos"])
        if list(now.items()) != list(then.items()):
            added = sorted(set(now) - set(then))
            gone = sorted(set(then) - set(now))
            changed = sorted(k for k in set(now) & set(then) if now[k] != then[k])
            parts = ([f"new videos {added}"] if added else []) + ([f"missing videos {gone}"] if gone else []) \
                + ([f"other objects in {changed}"] if changed else [])
            if not parts:
                parts = ["a different video order"]
            raise ShortcutTrainingError(f"cannot resume: the training data changed since the run started: "
                                        f"{'; '.join(parts)}")
        if saved["epoch"] > cfg.epochs:
            raise ShortcutTrainingError(
                f"cannot resume with epochs={cfg.epochs}: the run has already completed {saved['epoch']} epochs"
            )

    def _load_state(self, saved: dict) -> None:
        self.shortcut.load_state_dict(saved["shortcut"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.epoch = int(saved["epoch"])
        self.position = int(saved["position"])
        self.updates = self.saved_updates = int(saved["updates"])
        self.accumulated = int(saved["accumulated"])
        grads = saved.get("grads")
        for p, g in zip(self.params, grads or [None] * len(self.params)):
            p.grad = None if g is None else g.to(p.device, p.dtype).clone()
        self.losses = [list(r) for r in saved["losses"]]
        # last, so that nothing consumes random numbers between here and the next training step
        torch.set_rng_state(saved["rng"]["torch"])
        cuda_states = saved["rng"].get("cuda")
        if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": _STATE_FORMAT,
            "version": _STATE_VERSION,
            "config": self.config.record(),
            "checkpoint_size": os.path.getsize(self.config.checkpoint),
            "videos": {v.name: list(v.object_ids) for v in self.videos},
            "epoch": self.epoch,
            "position": self.position,
            "updates": self.updates,
            "accumulated": self.accumulated,
            "grads": [None if p.grad is None else p.grad.detach().cpu().clone() for p in self.params]
            if self.accumulated else None,
            "shortcut": {k: v.detach().cpu().clone() for k, v in self.shortcut.state_dict().items()},
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "rng": rng,
            "losses": [list(r) for r in self.losses],
        }

    def _shortcut_config(self) -> dict:
        record = self.config.record()
        record.update({"updates": self.updates, "terms": len(self.losses), "epochs_completed": self.epoch})
        return record

    def save(self, epoch_end: bool = False) -> None:
        """Write the shortcut, the loss curve and the training state (in that order; each atomically)."""
        os.makedirs(self.output_dir, exist_ok=True)
        cfg = self.config
        save_shortcut(self.shortcut_path, self.shortcut, cfg.variant, cfg.model, config=self._shortcut_config())
        if epoch_end:
            path = os.path.join(self.output_dir, f"shortcut_epoch{self.epoch}.pth")
            save_shortcut(path, self.shortcut, cfg.variant, cfg.model, config=self._shortcut_config())
        with atomic_open(os.path.join(self.output_dir, CONFIG_FILE), "w") as f:
            json.dump(cfg.record(), f, indent=2)
        write_loss_csv(self.loss_csv, self.losses, cfg.update_stride)
        title = f"{cfg.variant} shortcut, {cfg.model}: {self.updates} updates, {len(self.losses)} terms"
        self.plot_backend = plot_loss_curve(self.loss_plot, [r[7] for r in self.losses], cfg.update_stride, title)
        atomic_torch_save(self._state(), self.state_path)
        self.saved_updates = self.updates

    # ------------------------------------------------------------------ optimisation
    def _epoch_order(self, epoch: int) -> list[int]:
        n = len(self.videos)
        if not self.config.shuffle:
            return list(range(n))
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=g).tolist()

    def _step(self) -> None:
        k, stride = self.accumulated, self.config.update_stride
        if k == 0:
            return
        if k < stride:  # partial accumulation: make it the mean over its k terms, like a full update
            for p in self.params:
                if p.grad is not None:
                    p.grad.mul_(stride / k)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.updates += 1
        self.accumulated = 0

    def _add_terms(self, per_object: torch.Tensor, meta: list[tuple], callback) -> None:
        """Back-propagate per-object losses (B,) as loss terms; step whenever update_stride terms are in."""
        stride = self.config.update_stride
        B = per_object.shape[0]
        # split the batch where an update falls; all parts are differentiated at the weights of this forward
        parts, i, room = [], 0, stride - self.accumulated
        while i < B:
            j = min(B, i + room)
            parts.append((i, j))
            i, room = j, stride
        grads = []
        for n, (i, j) in enumerate(parts):
            loss = per_object[i:j].sum() / stride
            grads.append(torch.autograd.grad(loss, self.params, retain_graph=n + 1 < len(parts),
                                             allow_unused=True))
        values = per_object.detach().float().cpu().tolist()
        for (i, j), g in zip(parts, grads):
            for p, gp in zip(self.params, g):
                if gp is None:
                    continue
                if p.grad is None:
                    p.grad = gp.detach().clone()
                else:
                    p.grad.add_(gp)
            for b in range(i, j):
                video, frame, obj, mem_stride = meta[b]
                self.losses.append([len(self.losses) + 1, self.updates + 1, self.epoch, video, frame, obj,
                                    mem_stride, values[b]])
                self.accumulated += 1
                if self.accumulated == stride:
                    self._step()
                if callback is not None:
                    callback(TrainEvent(self.epoch, video, frame, obj, values[b], len(self.losses), self.updates,
                                        self.accumulated))

    def _train_video(self, video: TrainingVideo, memory_stride: int, bar, callback) -> None:
        cfg = self.config
        prompts = video.load_prompts()
        obj_ids = list(prompts)
        window = cfg.update_stride

        def on_term(t: int, student: torch.Tensor, teacher: torch.Tensor) -> None:
            per_object = _per_object_mse(student, teacher)
            if not per_object.requires_grad:
                raise RuntimeError("the student features do not depend on the shortcut (internal error)")
            if not bool(torch.isfinite(per_object).all()):
                raise ShortcutTrainingError(
                    f"non-finite loss on video {video.name!r}, frame {t} ({per_object.tolist()}); training stopped "
                    f"before using it. The last checkpoint ({self.saved_updates} updates) is intact; try a lower "
                    "--lr or training without --bf16."
                )
            self._add_terms(per_object, [(video.name, t, o, memory_stride) for o in obj_ids], callback)
            recent = [r[7] for r in self.losses[-window:]]
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.4g}", updates=self.updates, refresh=False)

        with video.open_frames(self.model.image_size) as frames:
            n = len(frames) if cfg.max_frames is None else min(len(frames), cfg.max_frames)
            loop = TrackingLoop(self.model, self.fill_hole_area, memory_stride=memory_stride)
            _rollout(loop, self.method, frames,
                     prompt_masks(list(prompts.values()), self.model.image_size, self.device),
                     cfg.resolved_frame_stride, on_term, True, self.autocast, n, on_frame=lambda t: bar.update(1))

    def _frames(self, video: TrainingVideo) -> int:
        m = self.config.max_frames
        return video.num_frames if m is None else min(video.num_frames, m)

    def train(self, callback: Callable[[TrainEvent], None] | None = None) -> TrainResult:
        """Run the remaining epochs; `callback(TrainEvent)` is called after every loss term."""
        cfg = self.config
        per_epoch = sum(self._frames(v) for v in self.videos)
        done = self.epoch * per_epoch
        if self.epoch < cfg.epochs:
            order = self._epoch_order(self.epoch)
            done += sum(self._frames(self.videos[i]) for i in order[: self.position])
        bar = tqdm(total=cfg.epochs * per_epoch, initial=done, desc="train shortcut", unit="frame",
                   disable=not cfg.progress)
        try:
            while self.epoch < cfg.epochs:
                order = self._epoch_order(self.epoch)
                memory_stride = cfg.memory_stride(self.epoch)
                while self.position < len(order):
                    video = self.videos[order[self.position]]
                    bar.set_description(f"train shortcut (epoch {self.epoch + 1}/{cfg.epochs}, {video.name})")
                    self._train_video(video, memory_stride, bar, callback)
                    self.position += 1
                    if self.position < len(order) and self.updates - self.saved_updates >= cfg.save_every:
                        self.save()
                self._step()  # the partial accumulation of the epoch
                self.epoch += 1
                self.position = 0
                self.save(epoch_end=True)
            if not os.path.isfile(self.state_path):  # nothing left to do on a finished run: still write outputs
                self.save()
        finally:
            bar.close()
        if not self.losses:
            warnings.warn(
                "no loss term was computed: no frame was routed with background windows (videos too short for "
                f"dense_frames={cfg.efficient.dense_frames} and frame stride {cfg.resolved_frame_stride}, or every "
                "window kept). The shortcut is unchanged.",
                stacklevel=2,
            )
        return TrainResult(
            shortcut_path=self.shortcut_path,
            state_path=self.state_path,
            loss_csv=self.loss_csv,
            loss_plot=self.loss_plot,
            updates=self.updates,
            terms=len(self.losses),
            epochs=self.epoch,
            losses=[r[7] for r in self.losses],
            plot_backend=self.plot_backend,
        )


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def train_shortcut(config: TrainConfig, callback: Callable[[TrainEvent], None] | None = None) -> TrainResult:
    """Train (or resume training) a shortcut branch as `config` says; see the module docstring.

    Raises ShortcutTrainingError (a ValueError) for bad data, an existing run in the output folder without
    `resume`, or a resume that does not match the run; KeyboardInterrupt propagates (the last checkpoint stays).
    """
    return ShortcutTrainer(config).train(callback)
