"""The speed benchmark engine: several predictor configurations timed side by side in one process.

Every configuration tracks the same objects through the same video. The configurations advance frame by frame in
turn (round-robin, with the order rotated on every repeat), so slow drifts of a shared machine hit them alike.
After the warm-up repeats, each frame whose memory bank is full is timed end to end, and so are the calls of the
four modules that matter: image encoder, memory attention, mask decoder (with the prompt encoder) and memory
encoder.

Module timing never touches the model path: the benchmark builds its own copy of the model and replaces those
submodules on it by `TimedModule`, a thin wrapper that times the wrapped module's calls (synchronising CUDA
before and after) and describes the work each call did: windows kept, memory keys read, batch. The FLOP model
(`efficient_sam2.bench.flops`) counts that work afterwards, giving the ideal speed-up of every configuration.

Configurations (`BENCH_CONFIGS`): dense (the plain `VideoPredictor`), swr, smr, efficient, mempool, smr-random,
smr-uniform, efficient-off (the efficient predictor with both mechanisms off: its overhead), and reference (the
reference package's dense `SAM2VideoPredictor` with the same weights, when `sam2` is installed). They, the settings
of a run and the other types the bench modules share live in `efficient_sam2.bench.common`.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import math
import os
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..build import bundled_weights
from ..configs import get_config
from .common import (
    BENCH_CONFIGS,
    BUCKETS,
    MODULES,
    BenchConfig,
    BenchError,
    BenchmarkSettings,
    environment,
    reference_available,
)
from .flops import FlopModel, pooled_key_count
from .memory import MemoryProbe, tensor_megabytes
from .report import markdown_report, result_to_dict, summarize

__all__ = [
    "BENCH_CONFIGS",
    "MODULES",
    "BUCKETS",
    "BenchError",
    "BenchConfig",
    "BenchmarkSettings",
    "ConfigResult",
    "BenchmarkResult",
    "CallRecorder",
    "TimedModule",
    "instrument",
    "synthetic_video",
    "random_weights_",
    "run_benchmark",
    "reference_available",
]

# our registry name -> the reference package's config file
_REFERENCE_CONFIG_FILES = {
    f"{prefix}_hiera_{size}": f"configs/{prefix}/{prefix}_hiera_{short}.yaml"
    for prefix in ("sam2.1", "sam2")
    for size, short in (("tiny", "t"), ("small", "s"), ("base_plus", "b+"), ("large", "l"))
}


# ----------------------------------------------------------------------------------------------------------------
# Timing wrappers
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One timed module call: its report bucket, FLOP-model kind, seconds and work descriptor."""

    bucket: str
    kind: str
    seconds: float
    work: dict


class CallRecorder:
    """Collects the calls of the `TimedModule`s of one model while `active`."""

    def __init__(self, device: torch.device, clock: str = "wall") -> None:
        self.active = False
        self.calls: list[Call] = []
        self.clock: Callable[[], float] = time.process_time if clock == "cpu" else time.perf_counter
        self.synchronize: Callable[[], None] | None = None
        if device.type == "cuda":
            self.synchronize = lambda: torch.cuda.synchronize(device)

    def start(self) -> None:
        self.calls = []
        self.active = True

    def stop(self) -> list[Call]:
        self.active = False
        calls, self.calls = self.calls, []
        return calls


class TimedModule(nn.Module):
    """Wraps a submodule of a benchmark copy of a model and times its calls; attributes of the wrapped module
    stay reachable through the wrapper, so the model's code works unchanged."""

    def __init__(self, inner: nn.Module, bucket: str, kind: str, recorder: CallRecorder,
                 describe: Callable[[nn.Module, tuple, dict], dict]) -> None:
        super().__init__()
        self.inner = inner
        self._bucket, self._kind, self._recorder, self._describe = bucket, kind, recorder, describe

    def forward(self, *args, **kwargs):
        rec = self._recorder
        if not rec.active:
            return self.inner(*args, **kwargs)
        if rec.synchronize is not None:
            rec.synchronize()
        start = rec.clock()
        out = self.inner(*args, **kwargs)
        if rec.synchronize is not None:
            rec.synchronize()
        seconds = rec.clock() - start
        rec.calls.append(Call(self._bucket, self._kind, seconds, self._describe(self.inner, args, kwargs)))
        return out

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)


def _bind(module: nn.Module, args: tuple, kwargs: dict) -> dict:
    bound = inspect.signature(module.forward).bind(*args, **kwargs)
    return dict(bound.arguments)


def _shortcut_variant(module) -> str | None:
    if module is None:
        return None
    from ..efficient.shortcut import SHORTCUT_VARIANTS as CLASSES

    for name, cls in CLASSES.items():
        if type(module) is cls:
            return name
    raise BenchError(f"the FLOP model does not know the shortcut module {type(module).__name__}")


def _describe_image_encoder(module, args, kwargs) -> dict:
    a = _bind(module, args, kwargs)
    images = next(v for v in a.values() if isinstance(v, torch.Tensor))
    plan = a.get("window_plan")
    if plan is None:
        return {"batch": images.shape[0]}
    reuse = plan.residuals is not None and images.shape[0] == 1
    return {"batch": images.shape[0], "keep": [int(k) for k in plan.keep.flatten().tolist()],
            # with carried-over residuals the background windows (all computed once, on the dense first frames)
            # skip the shortcut
            "shortcut": None if reuse else _shortcut_variant(plan.shortcut), "context": bool(plan.context),
            "reuse": reuse}


def _describe_memory_attention(module, args, kwargs) -> dict:
    a = _bind(module, args, kwargs)
    layers = len(module.layers)
    curr, memory = a["curr"], a["memory"]
    num_ptr = int(a.get("num_obj_ptr_tokens", 0) or 0)
    if isinstance(curr, (list, tuple)):  # the reference: sequence-first (L, B, C) tensors
        curr = curr[0]
    if "memory_plan" not in inspect.signature(module.forward).parameters:  # the reference package
        queries, batch, total = curr.shape[0], curr.shape[1], memory.shape[0]
        return {"batch": batch, "queries": queries, "keys": [total] * layers, "memory_tokens": total}
    batch, queries, total = curr.shape[0], curr.shape[1], memory.shape[1]
    plan = a.get("memory_plan")
    keys, projected, saliency = [total] * layers, [total] * layers, [0] * layers
    if plan is not None:
        keeps = list(plan.keep) if plan.keep is not None else [None] * layers
        grid = math.isqrt(queries)
        for i, keep in enumerate(keeps):
            if keep is not None:
                keys[i] = projected[i] = int(keep.shape[-1])
            elif plan.pool > 1:
                keys[i] = pooled_key_count(total - num_ptr, queries, grid, plan.pool, num_ptr)
            if plan.saliency_span is not None:
                saliency[i] = plan.saliency_span[1] - plan.saliency_span[0]
    return {"batch": batch, "queries": queries, "keys": keys, "projected": projected, "saliency": saliency,
            "memory_tokens": total}


def _describe_prompt_encoder(module, args, kwargs) -> dict:
    a = _bind(module, args, kwargs)
    points, boxes, masks = a.get("points"), a.get("boxes"), a.get("masks")
    batch = 1
    for t in (points[0] if points is not None else None, boxes, masks):
        if t is not None:
            batch = t.shape[0]
            break
    return {"batch": batch, "points": points[0].shape[1] if points is not None else 0,
            "boxes": boxes is not None, "mask": masks is not None}


def _describe_mask_decoder(module, args, kwargs) -> dict:
    a = _bind(module, args, kwargs)
    image, sparse = a["image_embeddings"], a["sparse_prompt_embeddings"]
    return {"batch": sparse.shape[0], "prompt_tokens": sparse.shape[1], "embed_size": image.shape[-1],
            "attention_maps": bool(a.get("return_attention", False))}


def _describe_memory_encoder(module, args, kwargs) -> dict:
    a = _bind(module, args, kwargs)
    feats, masks = a["pix_feat"], a["masks"]
    return {"batch": feats.shape[0], "mask_size": masks.shape[-1]}


_TIMED = (  # attribute, report bucket, FLOP-model kind, descriptor
    ("image_encoder", "image_encoder", "image_encoder", _describe_image_encoder),
    ("memory_attention", "memory_attention", "memory_attention", _describe_memory_attention),
    ("sam_prompt_encoder", "mask_decoder", "prompt_encoder", _describe_prompt_encoder),
    ("sam_mask_decoder", "mask_decoder", "mask_decoder", _describe_mask_decoder),
    ("memory_encoder", "memory_encoder", "memory_encoder", _describe_memory_encoder),
)


def instrument(model: nn.Module, recorder: CallRecorder) -> nn.Module:
    """Replace the timed submodules of `model` (ours or the reference's, which use the same names) by
    TimedModules reporting to `recorder`. Only for a model the benchmark built for itself."""
    for attr, bucket, kind, describe in _TIMED:
        inner = getattr(model, attr)
        if isinstance(inner, TimedModule):
            raise BenchError(f"{attr} is already instrumented")
        setattr(model, attr, TimedModule(inner, bucket, kind, recorder, describe))
    return model


# ----------------------------------------------------------------------------------------------------------------
# Inputs: weights and video
# ----------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def random_weights_(model: nn.Module, seed: int) -> nn.Module:
    """Re-draw every floating-point parameter and buffer of `model` from `seed`, at scales that keep activations
    informative: weight matrices N(0, 1/fan_in), norm scales 1 + N(0, 0.1^2), biases N(0, 0.02^2), other vectors
    N(0, 0.1^2). The object-score head is biased towards "object present" so that tracked masks are not empty.
    """
    from ..modeling.common import LayerNorm2d

    g = torch.Generator().manual_seed(seed)
    norm_scales = {id(m.weight) for m in model.modules()
                   if isinstance(m, (nn.LayerNorm, LayerNorm2d)) and getattr(m, "weight", None) is not None}
    for name, t in sorted(model.state_dict(keep_vars=True).items()):
        if not torch.is_floating_point(t):
            continue
        noise = torch.randn(t.shape, generator=g, dtype=torch.float32)
        if id(t) in norm_scales:
            value = 1.0 + 0.1 * noise
        elif t.dim() >= 2:
            value = noise / math.sqrt(max(1, t[0].numel()))
        elif name.endswith("bias"):
            value = 0.02 * noise
        else:
            value = 0.1 * noise
        t.copy_(value.to(t.dtype))
    for name, t in model.named_parameters():
        if name.endswith("pred_obj_score_head.layers.2.bias"):
            t.fill_(4.0)
    return model


def synthetic_video(num_frames: int, height: int, width: int, num_objects: int = 1, seed: int = 0):
    """A video of `num_objects` coloured ellipses moving (and bouncing) over a textured background.

    Returns (frames, masks): a list of (height, width, 3) uint8 RGB frames and {obj_id: (height, width) bool
    first-frame mask} for obj_id 1..num_objects (later objects are drawn on top). Every object shows at least
    MIN_VISIBLE of its area on the first frame, for any count: beyond 8 objects the ellipses shrink with the count
    (to the area of 8), and an object that would be covered is moved (a new start drawn from the same generator) until
    it shows; up to 8 objects, a draw in which every object already shows that much is unchanged by the guarantee.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.integers(30, 120, size=(max(2, height // 32), max(2, width // 32), 3)).astype(np.float32)
    ys = np.linspace(0, coarse.shape[0] - 1, height)
    xs = np.linspace(0, coarse.shape[1] - 1, width)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, coarse.shape[0] - 1), np.minimum(x0 + 1, coarse.shape[1] - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    background = (coarse[y0][:, x0] * (1 - fy) * (1 - fx) + coarse[y1][:, x0] * fy * (1 - fx)
                  + coarse[y0][:, x1] * (1 - fy) * fx + coarse[y1][:, x1] * fy * fx)
    background = np.clip(background + rng.normal(0, 8, size=background.shape), 0, 255)
    yy, xx = np.mgrid[:height, :width]
    objects = []
    shrink = math.sqrt(min(1.0, 8.0 / num_objects))  # crowds: the ellipses of all objects cover as much as 8 would
    for k in range(num_objects):
        ry = height * rng.uniform(0.08, 0.16) * shrink
        rx = width * rng.uniform(0.06, 0.12) * shrink
        cy = rng.uniform(ry, height - ry)
        cx = rng.uniform(rx, width - rx)
        angle = rng.uniform(0, 2 * np.pi)
        speed = 0.02 * min(height, width)
        colour = np.array(rng.integers(140, 255, size=3))
        colour[k % 3] = rng.integers(0, 60)
        objects.append([cy, cx, ry, rx, speed * np.sin(angle), speed * np.cos(angle), colour])
    _uncover_first_frame(objects, rng, yy, xx)
    frames, masks = [], {}
    for t in range(num_frames):
        img = background.copy()
        visible = np.zeros((height, width), np.int32)
        for k, obj in enumerate(objects):
            cy, cx, ry, rx, vy, vx, colour = obj
            inside = _ellipse(obj, yy, xx)
            img[inside] = colour
            visible[inside] = k + 1
            # move, bouncing off the borders
            cy, cx = cy + vy, cx + vx
            if not ry <= cy <= height - ry:
                vy = -vy
                cy = min(max(cy, ry), height - ry)
            if not rx <= cx <= width - rx:
                vx = -vx
                cx = min(max(cx, rx), width - rx)
            obj[:] = [cy, cx, ry, rx, vy, vx, colour]
        if t == 0:
            masks = {k + 1: visible == k + 1 for k in range(num_objects)}
        frames.append(img.astype(np.uint8))
    return frames, masks


def _ellipse(obj: list, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels inside the axis-aligned ellipse of a `synthetic_video` object [cy, cx, ry, rx, ...]."""
    return ((yy - obj[0]) / obj[2]) ** 2 + ((xx - obj[1]) / obj[3]) ** 2 <= 1.0


MIN_VISIBLE = 0.25
"""The fraction of its own ellipse every object of `synthetic_video` shows on the first frame."""


def _uncover_first_frame(objects: list, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> None:
    """Move objects (in place, new centres from `rng`) until each shows MIN_VISIBLE of its ellipse on the first
    frame (objects are painted in order, later ones on top); raises BenchError if the frame is too crowded."""
    height, width = yy.shape
    inside = [_ellipse(o, yy, xx) for o in objects]
    for _ in range(20 * len(objects)):
        ids = np.zeros((height, width), np.int32)
        for k, m in enumerate(inside):
            ids[m] = k + 1
        shown = np.bincount(ids.ravel(), minlength=len(objects) + 1)[1:]
        short = [k for k, m in enumerate(inside) if shown[k] < MIN_VISIBLE * max(int(m.sum()), 1)]
        if not short:
            return
        k = short[0]  # a new start for the first object that does not show enough (it may cover an earlier one)
        o = objects[k]
        o[0], o[1] = rng.uniform(o[2], height - o[2]), rng.uniform(o[3], width - o[3])
        inside[k] = _ellipse(o, yy, xx)
    raise BenchError(f"cannot show {len(objects)} synthetic objects on a {width}x{height} first frame; use fewer "
                     "objects or a larger --image-size")


def _load_real_video(settings: BenchmarkSettings, image_size: int, device: torch.device):
    """(VideoFrames, first-frame masks {obj_id: bool}, number of frames to process) of --video / --mask."""
    from ..io.frames import VideoError, VideoFrames
    from ..io.masks import MaskError, masks_from_ids, read_palette_mask

    try:
        frames = VideoFrames(settings.video, image_size=image_size, cache_size=settings.frames, device=device)
    except (VideoError, OSError, ValueError) as exc:
        raise BenchError(f"cannot open --video {settings.video}: {exc}") from None
    try:
        ids, _ = read_palette_mask(settings.mask)
    except (MaskError, OSError) as exc:
        raise BenchError(str(exc)) from None
    if ids.shape != (frames.height, frames.width):
        raise BenchError(f"--mask is {ids.shape[1]}x{ids.shape[0]} (WxH) but the video's frames are "
                         f"{frames.width}x{frames.height}")
    masks = masks_from_ids(ids)
    masks = {int(k): v for k, v in sorted(masks.items()) if int(k) != 0 and v.any()}
    if not masks:
        raise BenchError(f"--mask {settings.mask} has no object (every pixel is 0)")
    if settings.objects is not None:
        masks = dict(list(masks.items())[: settings.objects])
    num = min(settings.frames, len(frames))
    first = get_config(settings.model, image_size=image_size).num_maskmem
    if num < first + 1:
        raise BenchError(f"--video has {len(frames)} frames; at least {first + 1} are needed (frames {first} "
                         "onwards are timed, once the memory bank is full)")
    return frames, masks, num


# ----------------------------------------------------------------------------------------------------------------
# Runners: one per configuration
# ----------------------------------------------------------------------------------------------------------------


class _Runner:
    """Drives one predictor through the video, one frame per `step()`."""

    def __init__(self, name: str, predictor, state, masks: dict, num_frames: int, recorder: CallRecorder,
                 reference: bool) -> None:
        self.name = name
        self.predictor = predictor
        self.state = state
        self.masks = masks
        self.num_frames = num_frames
        self.recorder = recorder
        self.reference = reference
        self.generator = None
        self.first = None

    def start(self) -> None:
        p, s = self.predictor, self.state
        with torch.inference_mode():
            p.reset_state(s)
            for obj_id, mask in self.masks.items():
                if self.reference:
                    p.add_new_mask(inference_state=s, frame_idx=0, obj_id=obj_id, mask=mask)
                else:
                    p.add_new_mask(s, 0, obj_id, mask)
        if self.reference:
            gen = p.propagate_in_video(s, start_frame_idx=0, max_frame_num_to_track=self.num_frames - 1)
            # the reference draws a progress bar on stderr, created on the first step: point it at /dev/null
            with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
                self.first = next(gen)
        else:
            gen = p.propagate_in_video(s, start_frame_idx=0, max_frame_num_to_track=self.num_frames - 1,
                                       progress=False)
            self.first = next(gen)
        self.generator = gen

    def step(self) -> int:
        frame_idx, _, _ = next(self.generator)
        return frame_idx

    def finish(self) -> None:
        if self.generator is not None:
            self.generator.close()
            self.generator = None

    def statistics(self, frames: list[int]) -> dict | None:
        stats_fn = getattr(self.predictor, "statistics", None)
        if self.reference or stats_fn is None:
            return None
        stats = stats_fn(self.state)
        if stats is None:
            return None
        win = [stats.kept_windows[t] for t in frames if t in stats.kept_windows]
        mem = [stats.kept_memory[t] for t in frames if t in stats.kept_memory]
        fired = sum(1 for t in frames if t in stats.saliency_fallbacks)
        return {"kept_windows": win, "kept_memory": mem, "saliency_fallbacks": fired}


# ----------------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class ConfigResult:
    """Raw measurements of one configuration.

    samples_ms: bucket -> per-frame milliseconds (timed frames of every repeat, in order);
    flops: bucket -> mean FLOPs per timed frame (from the recorded calls);
    work: what was computed on timed frames (windows, memory keys); sparsity: from predictor.statistics;
    peak_memory_mb: CUDA only, the largest per-frame allocation peak above the frame's starting allocation;
    state_mb: with a memory probe, the tensors held by the tracking state at the end (frame and feature caches,
    per-frame outputs).
    """

    name: str
    description: str
    efficient: dict | None
    samples_ms: dict[str, list[float]] = field(default_factory=dict)
    flops: dict[str, float] = field(default_factory=dict)
    work: dict[str, Any] = field(default_factory=dict)
    sparsity: dict[str, Any] = field(default_factory=dict)
    peak_memory_mb: float | None = None
    state_mb: float | None = None


@dataclass
class BenchmarkResult:
    """Everything one benchmark run measured; `summary()` adds medians, ratios and FLOP-ideal ratios."""

    settings: dict
    environment: dict
    configs: dict[str, ConfigResult]
    timed_frames: list[int]
    command: str | None = None
    memory: dict | None = None

    def summary(self) -> dict:
        return summarize({n: c.samples_ms for n, c in self.configs.items()},
                         {n: c.flops for n, c in self.configs.items()}, baseline="dense")

    def to_dict(self) -> dict:
        return result_to_dict(self)

    def markdown(self) -> str:
        return markdown_report(self)


_environment = environment  # the former name, still imported by bench/stream.py


# ----------------------------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------------------------


def _write_jpegs(folder: str, frames) -> None:
    from PIL import Image

    for i, rgb in enumerate(frames):
        Image.fromarray(rgb).save(os.path.join(folder, f"{i:05d}.jpg"), quality=95)


def _build_reference(settings: BenchmarkSettings, state_dict: dict, image_size: int, device: torch.device):
    from sam2.build_sam import build_sam2_video_predictor as build_reference

    config_file = _REFERENCE_CONFIG_FILES[settings.model]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = build_reference(config_file, ckpt_path=None, device=str(device), mode="eval",
                                    hydra_overrides_extra=[f"++model.image_size={image_size}"])
    missing, unexpected = predictor.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise BenchError(f"the reference model does not accept our weights: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    predictor.fill_hole_area = 0  # ours runs without hole filling too (the reference needs CUDA for it)
    return predictor.eval()


def run_benchmark(settings: BenchmarkSettings, progress: bool = True, command: str | None = None,
                  memory_probe: "MemoryProbe | None" = None, desc: str = "bench") -> BenchmarkResult:
    """Build the model once, run every configuration interleaved, and return the raw measurements.

    With a `memory_probe`, the process's memory is read when tracking starts (model built, video opened) and
    its peak during tracking when it ends (`BenchmarkResult.memory`). A process-wide peak mixes every
    configuration of the run: give one configuration per process to attribute it (as `--sweep` does).
    """
    settings.validate()
    threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        return _run(settings, progress, command, memory_probe, desc)
    finally:
        torch.set_num_threads(threads)


def _run(settings: BenchmarkSettings, progress: bool, command: str | None,
         memory_probe: "MemoryProbe | None" = None, desc: str = "bench") -> BenchmarkResult:
    from ..build import build_sam2_video_predictor
    from ..predictors.efficient_video import EfficientVideoPredictor
    from ..io.frames import VideoFrames

    device = torch.device(settings.device)
    overrides = {"image_size": settings.image_size} if settings.image_size else {}
    cfg = get_config(settings.model, **overrides)
    image_size = cfg.image_size
    timed_from = cfg.num_maskmem

    # ---- the video (read first: a bad --video or --mask fails before the model is built)
    if settings.video is None:
        height, width = max(32, (image_size * 9 // 16) // 2 * 2), image_size
        rgb, masks = synthetic_video(settings.frames, height, width, settings.objects or 1, settings.seed)
        num_frames = settings.frames
        cache = num_frames if settings.frame_cache is None else settings.frame_cache
        frames = VideoFrames(rgb, image_size=image_size, cache_size=cache, device=device)
        video_desc = f"synthetic, {width}x{height}, {len(masks)} moving object(s)"
    else:
        frames, masks, num_frames = _load_real_video(settings, image_size, device)
        rgb = None
        video_desc = f"{settings.video} ({frames.width}x{frames.height}), {len(masks)} object(s)"

    # ---- the model: built once, shared by all our configurations (it is stateless)
    # weights: the checkpoint if given, else the bundled ones (micro), else random (speed does not depend on them)
    random_init = settings.checkpoint is None and bundled_weights(settings.model) is None
    base = build_sam2_video_predictor(settings.model, checkpoint=settings.checkpoint, device="cpu",
                                      fill_hole_area=0, weights="random" if random_init else None, **overrides)
    model = base.model
    if random_init:
        random_weights_(model, settings.seed)
    model = model.to(device).eval()
    weights_desc = settings.checkpoint or (f"random (seed {settings.seed})" if random_init else "bundled")
    shortcut_file = settings.shortcut_checkpoint
    if shortcut_file is None and not random_init and settings.checkpoint is None:
        from ..build import bundled_shortcut

        shortcut_file = bundled_shortcut(settings.model)  # the shortcut trained for the bundled weights
    # taken before the timing wrappers rename the submodules; the reference copies the values when it loads them
    state_dict = model.state_dict() if "reference" in settings.configs else None

    with tempfile.TemporaryDirectory(prefix="efficient_sam2_bench_") as tmp, contextlib.closing(frames):
        timed_frames = list(range(timed_from, num_frames))

        recorder = CallRecorder(device, settings.clock)
        runners: list[_Runner] = []
        for name in settings.configs:
            spec = BENCH_CONFIGS[name]
            if spec.reference:
                continue
            eff = settings.efficient_config(name)
            if eff is None:
                from ..predictors.video import VideoPredictor

                predictor = VideoPredictor(model, fill_hole_area=0)
            else:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="no shortcut checkpoint given")
                    predictor = EfficientVideoPredictor(model, efficient=eff, shortcut_checkpoint=shortcut_file,
                                                        fill_hole_area=0)
            runners.append(_Runner(name, predictor, None, masks, num_frames, recorder, reference=False))
        instrument(model, recorder)
        for r in runners:
            r.state = r.predictor.init_state(
                frames, frame_cache_size=num_frames if settings.frame_cache is None else settings.frame_cache)

        ref_recorder = None
        if "reference" in settings.configs:
            ref_recorder = CallRecorder(device, settings.clock)
            ref = _build_reference(settings, state_dict, image_size, device)
            instrument(ref, ref_recorder)
            folder = os.path.join(tmp, "jpeg")
            os.makedirs(folder)
            _write_jpegs(folder, rgb if rgb is not None else (frames.get_rgb(i) for i in range(num_frames)))
            with warnings.catch_warnings(), open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
                warnings.simplefilter("ignore")
                ref_state = ref.init_state(folder)  # (its frame-loading progress bar goes to /dev/null)
            runners.insert(settings.configs.index("reference"),
                           _Runner("reference", ref, ref_state, masks, num_frames, ref_recorder, reference=True))
        if all(r.reference for r in runners):
            # only the reference runs (one configuration per process, as in a sweep): our copy of the model is
            # not used, so its memory is not counted against the reference
            base = model = state_dict = None
            gc.collect()

        flop_model = FlopModel(cfg)
        results = {r.name: ConfigResult(r.name, BENCH_CONFIGS[r.name].description,
                                        (settings.efficient_config(r.name).to_dict()
                                         if BENCH_CONFIGS[r.name].efficient is not None else None))
                   for r in runners}
        per_frame_flops: dict[str, list[dict]] = {r.name: [] for r in runners}
        work: dict[str, list[dict]] = {r.name: [] for r in runners}
        stats_acc: dict[str, list[dict]] = {r.name: [] for r in runners}
        peaks: dict[str, float] = {}
        for r in runners:
            for b in BUCKETS:
                results[r.name].samples_ms[b] = []

        autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if settings.dtype == "bf16" \
            else contextlib.nullcontext
        rounds = settings.warmup + settings.repeats
        steps = num_frames - 1  # frame 0 is the prompted frame, yielded by start()
        bar = tqdm(total=rounds * steps * len(runners), desc=desc, unit="frame", disable=not progress)
        gc_was_enabled = gc.isenabled()
        memory = None
        if memory_probe is not None:
            memory_probe.start()
        try:
            for rnd in range(rounds):
                recording = rnd >= settings.warmup
                shift = rnd % len(runners)
                order = runners[shift:] + runners[:shift]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the reference warns about its missing CUDA extension
                    for r in order:
                        with autocast():
                            r.start()
                gc.collect()
                gc.disable()
                for _ in range(steps):
                    for r in order:
                        rec = r.recorder
                        if device.type == "cuda":
                            torch.cuda.synchronize(device)
                            base_mem = torch.cuda.memory_allocated(device)
                            torch.cuda.reset_peak_memory_stats(device)
                        rec.start()
                        t0 = rec.clock()
                        with autocast():
                            frame_idx = r.step()
                        if rec.synchronize is not None:
                            rec.synchronize()
                        total = rec.clock() - t0
                        calls = rec.stop()
                        bar.update(1)
                        if not recording or frame_idx < timed_from:
                            continue
                        if device.type == "cuda":
                            peak = (torch.cuda.max_memory_allocated(device) - base_mem) / 2**20
                            peaks[r.name] = max(peaks.get(r.name, 0.0), peak)
                        _record_frame(results[r.name], per_frame_flops[r.name], work[r.name], calls, total,
                                      flop_model)
                gc.enable()
                for r in order:
                    if recording:
                        st = r.statistics(timed_frames)
                        if st is not None:
                            stats_acc[r.name].append(st)
                    r.finish()
            if memory_probe is not None:
                memory = memory_probe.stop()

                for r in runners:
                    results[r.name].state_mb = round(tensor_megabytes(r.state), 2)
        finally:
            if gc_was_enabled:
                gc.enable()
            bar.close()
            for r in runners:
                r.finish()

        for r in runners:
            res = results[r.name]
            res.flops = _mean_dicts(per_frame_flops[r.name])
            res.work = _summarise_work(work[r.name], cfg)
            res.sparsity = _summarise_sparsity(stats_acc[r.name], res.work)
            res.peak_memory_mb = round(peaks[r.name], 1) if r.name in peaks else None

    env = environment(device)
    settings_dict = settings.to_dict()
    settings_dict.update({"model": cfg.name, "image_size": image_size, "frames": num_frames,
                          "objects": len(masks), "video_description": video_desc,
                          "weights": weights_desc, "shortcut_checkpoint": shortcut_file})
    return BenchmarkResult(settings_dict, env, results, timed_frames, command=command, memory=memory)


def _record_frame(res: ConfigResult, flops_acc: list, work_acc: list, calls: list[Call], total: float,
                  flop_model: FlopModel) -> None:
    seconds = {b: 0.0 for b in MODULES}
    flops = {b: 0 for b in MODULES}
    image_calls, decoder_batch = 0, 0
    work = {"windows": [], "memory_keys": [], "memory_tokens": []}
    for c in calls:
        seconds[c.bucket] += c.seconds
        flops[c.bucket] += flop_model.count(c.kind, c.work)
        if c.kind == "image_encoder":
            image_calls += c.work["batch"]
            work["windows"].append(len(c.work["keep"]) if "keep" in c.work else None)
        elif c.kind == "mask_decoder":
            decoder_batch += c.work["batch"]
        elif c.kind == "memory_attention":
            work["memory_keys"].append(sum(c.work["keys"]) / len(c.work["keys"]))
            work["memory_tokens"].append(c.work["memory_tokens"])
    flops["other"] = flop_model.outside_modules(image_calls, decoder_batch)
    flops["end_to_end"] = sum(flops.values())
    for b in MODULES:
        res.samples_ms[b].append(seconds[b] * 1e3)
    res.samples_ms["other"].append((total - sum(seconds.values())) * 1e3)
    res.samples_ms["end_to_end"].append(total * 1e3)
    flops_acc.append(flops)
    work_acc.append(work)


def _mean_dicts(rows: list[dict]) -> dict:
    if not rows:
        return {}
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def _summarise_work(rows: list[dict], cfg) -> dict:
    from ..efficient.router import WindowGrid
    from ..modeling.hiera_geometry import HieraGeometry

    grid = WindowGrid(cfg.embed_size, HieraGeometry.of(cfg.hiera).routed_window)
    windows = [w if w is not None else grid.num_windows for r in rows for w in r["windows"]]
    keys = [k for r in rows for k in r["memory_keys"]]
    tokens = [t for r in rows for t in r["memory_tokens"]]
    return {
        "image_encoder_calls_per_frame": len(windows) / max(1, len(rows)),
        "windows_computed": round(statistics.fmean(windows), 3) if windows else None,
        "windows_total": grid.num_windows,
        "computed_window_fraction": round(statistics.fmean(windows) / grid.num_windows, 4) if windows else None,
        "memory_keys_read": round(statistics.fmean(keys), 1) if keys else None,
        "memory_tokens": round(statistics.fmean(tokens), 1) if tokens else None,
        "computed_memory_fraction": round(sum(keys) / sum(tokens), 4) if keys else None,
    }


def _summarise_sparsity(stats: list[dict], work: dict) -> dict:
    """Kept fractions from predictor.statistics on timed frames (1.0 for plain predictors)."""
    if not stats:
        return {"mean_kept_window_fraction": 1.0, "mean_kept_memory_fraction": 1.0, "saliency_fallbacks": 0,
                "source": "dense"}
    win = [x for s in stats for x in s["kept_windows"]]
    mem = [x for s in stats for x in s["kept_memory"]]
    return {
        "mean_kept_window_fraction": round(statistics.fmean(win), 4) if win else None,
        "mean_kept_memory_fraction": round(statistics.fmean(mem), 4) if mem else 1.0,
        "saliency_fallbacks": sum(s["saliency_fallbacks"] for s in stats),
        "source": "predictor.statistics",
    }
