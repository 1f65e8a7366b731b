"""What every part of the benchmark shares: its error type, the reported buckets, the benchmarked configurations,
the settings of a run, the environment record and the way result files are written.

The bench modules import one way, so that none needs a lazy import to break a circle:

    common  <-  report (formats results)  <-  speed (the engine)  <-  scaling (sweeps), stream
    memory (process memory, tracking-state bytes)  <-  speed, scaling
"""

from __future__ import annotations

import os
import platform
import uuid
from dataclasses import dataclass
from typing import Sequence

import torch

from ..configs import get_config, resolve_model_name
from ..devices import resolve_device
from ..efficient.config import SHORTCUT_VARIANTS, EfficientConfig
from ..io.atomic import atomic_open

__all__ = [
    "MODULES",
    "BUCKETS",
    "BenchError",
    "BenchConfig",
    "BENCH_CONFIGS",
    "BenchmarkSettings",
    "reference_available",
    "environment",
    "check_output_path",
    "atomic_write_bytes",
]

MODULES = ("image_encoder", "memory_attention", "mask_decoder", "memory_encoder")
"""The timed modules (the prompt encoder is timed with the mask decoder)."""
BUCKETS = MODULES + ("other", "end_to_end")
"""Reported per-frame quantities: the modules, the rest of the frame, and the whole frame."""


class BenchError(ValueError):
    """Benchmark settings or inputs that cannot be used."""


@dataclass(frozen=True)
class BenchConfig:
    """One benchmarked configuration: a description and the EfficientConfig changes (None = plain predictor),
    made to `EfficientConfig.paper()` when `paper`, else to the package's defaults."""

    description: str
    efficient: dict | None = None
    reference: bool = False
    paper: bool = False


BENCH_CONFIGS: dict[str, BenchConfig] = {
    "dense": BenchConfig("plain VideoPredictor (no SWR, no SMR)"),
    "swr": BenchConfig("Sparse Window Routing only (the paper's)", dict(smr=False), paper=True),
    "smr": BenchConfig("Sparse Memory Retrieval only (the paper's top-k)", dict(swr=False), paper=True),
    "paper": BenchConfig("SWR + SMR as in the paper (EfficientConfig.paper())", dict(), paper=True),
    "efficient": BenchConfig("SWR + SMR with this package's defaults (EfficientConfig())", dict()),
    "mempool": BenchConfig("MemPool baseline (2x2 pooled memory)", dict(swr=False, memory_selection="mempool"),
                           paper=True),
    "smr-random": BenchConfig("SMR with random token selection", dict(swr=False, memory_selection="random"),
                              paper=True),
    "smr-uniform": BenchConfig("SMR with uniform token selection", dict(swr=False, memory_selection="uniform"),
                               paper=True),
    "efficient-off": BenchConfig("EfficientVideoPredictor with SWR and SMR off (its overhead)",
                                 dict(swr=False, smr=False)),
    "reference": BenchConfig("reference package sam2 SAM2VideoPredictor (dense), same weights", reference=True),
}


def reference_available() -> bool:
    """Whether the reference package (`sam2`, with hydra-core) can be imported."""
    try:
        import sam2.build_sam  # noqa: F401
    except Exception:
        return False
    return True


# ----------------------------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class BenchmarkSettings:
    """What to benchmark. See `efficient-sam2 bench --help` for the meaning of every field.

    `configs` names entries of BENCH_CONFIGS ("dense" is always added: every ratio is taken against it).
    A synthetic video of `frames` frames with `objects` moving objects is used unless `video` and `mask` name a
    real video and its first-frame object-id PNG. `kept_windows` forces the kept fraction of windows on routed
    frames (EfficientConfig(kept_windows=...)); otherwise the router decides.
    """

    model: str = "tiny"
    checkpoint: str | None = None
    image_size: int | None = None
    frames: int = 12
    objects: int | None = None
    dtype: str = "fp32"
    device: str = "cpu"
    configs: tuple[str, ...] = ("dense", "swr", "smr", "efficient")
    kept_windows: float | None = None
    video: str | None = None
    mask: str | None = None
    warmup: int = 1
    repeats: int = 3
    seed: int = 0
    threads: int | None = None
    sparsity: float | None = None
    tau: float | None = None
    shortcut: str | None = None
    shortcut_checkpoint: str | None = None
    clock: str = "wall"
    include_dense: bool = True
    frame_cache: int | None = None

    def validate(self) -> "BenchmarkSettings":
        """Check every field; raises BenchError with a readable message. Returns self (normalised)."""
        try:
            self.model = resolve_model_name(self.model)
        except (ValueError, TypeError) as exc:
            raise BenchError(str(exc)) from None
        if self.image_size is not None and (self.image_size <= 0 or self.image_size % 32):
            raise BenchError(f"--image-size must be a positive multiple of 32, got {self.image_size}")
        cfg = get_config(self.model, **({"image_size": self.image_size} if self.image_size else {}))
        first = cfg.num_maskmem
        if self.frames < first + 1:
            raise BenchError(
                f"--frames must be at least {first + 1}: frames {first} onwards are timed, once the memory bank is "
                f"full ({cfg.num_maskmem} memory frames); got {self.frames}"
            )
        if self.objects is not None and self.objects < 1:
            raise BenchError(f"--objects must be at least 1, got {self.objects}")
        if self.dtype not in ("fp32", "bf16"):
            raise BenchError(f"--dtype must be fp32 or bf16, got {self.dtype!r}")
        try:
            device = resolve_device(self.device, allowed=("cpu", "cuda"))
        except (ValueError, RuntimeError) as exc:
            raise BenchError(f"--device: {exc}") from None
        names = []
        for name in self.configs:
            name = name.strip()
            if not name:
                continue
            if name not in BENCH_CONFIGS:
                raise BenchError(f"unknown configuration {name!r}; choose from: {', '.join(BENCH_CONFIGS)}")
            if name not in names:
                names.append(name)
        if not names:
            raise BenchError("--configs names no configuration")
        if self.include_dense and "dense" not in names:
            names.insert(0, "dense")
        if "reference" in names and not reference_available():
            raise BenchError("configuration 'reference' needs the reference package: pip install sam2==1.1.0 "
                             "hydra-core (or leave 'reference' out of --configs)")
        self.configs = tuple(names)
        if self.kept_windows is not None and not 0.0 < self.kept_windows <= 1.0:
            raise BenchError(f"--kept-windows must be in (0, 1], got {self.kept_windows}")
        if self.kept_windows is not None and self.video is not None:
            raise BenchError("use either --kept-windows (synthetic video) or --video/--mask (the router decides), "
                             "not both")
        if (self.video is None) != (self.mask is None):
            raise BenchError("--video and --mask go together: --mask is the first frame's object-id PNG of --video")
        if self.video is not None and not os.path.exists(self.video):
            raise BenchError(f"video not found: {self.video}")
        if self.mask is not None and not os.path.isfile(self.mask):
            raise BenchError(f"mask file not found: {self.mask}")
        if self.checkpoint is not None and not os.path.isfile(self.checkpoint):
            raise BenchError(f"checkpoint file not found: {self.checkpoint}")
        if self.shortcut_checkpoint is not None and not os.path.isfile(self.shortcut_checkpoint):
            raise BenchError(f"shortcut checkpoint not found: {self.shortcut_checkpoint}")
        if self.clock not in ("wall", "cpu"):
            raise BenchError(f"--clock must be wall or cpu, got {self.clock!r}")
        if self.clock == "cpu" and device.type == "cuda":
            raise BenchError("--clock cpu measures this process's CPU time: use the wall clock on CUDA")
        if self.warmup < 0:
            raise BenchError(f"--warmup must be >= 0, got {self.warmup}")
        if self.repeats < 1:
            raise BenchError(f"--repeats must be >= 1, got {self.repeats}")
        if self.frame_cache is not None and self.frame_cache < 0:
            raise BenchError(f"frame_cache must be >= 0, got {self.frame_cache}")
        if self.threads is not None and self.threads < 1:
            raise BenchError(f"--threads must be >= 1, got {self.threads}")
        if self.shortcut is not None and self.shortcut not in SHORTCUT_VARIANTS:
            raise BenchError(f"--shortcut must be one of {', '.join(SHORTCUT_VARIANTS)}, got {self.shortcut!r}")
        try:
            for name in self.configs:
                if BENCH_CONFIGS[name].efficient is not None:
                    self.efficient_config(name)
        except ValueError as exc:
            raise BenchError(str(exc)) from None
        return self

    def efficient_config(self, name: str) -> EfficientConfig | None:
        """The EfficientConfig of configuration `name` with this run's options (None for plain predictors)."""
        spec = BENCH_CONFIGS[name]
        if spec.efficient is None:
            return None
        options = dict(spec.efficient)
        if self.kept_windows is not None:
            options["kept_windows"] = self.kept_windows
        for key in ("sparsity", "tau", "shortcut"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        return EfficientConfig.paper(**options) if spec.paper else EfficientConfig(**options)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


# ----------------------------------------------------------------------------------------------------------------
# Environment
# ----------------------------------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict:
    """The machine and versions a measurement was taken with (recorded in every result)."""
    from .. import __version__

    env = {
        "efficient_sam2": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    try:
        from importlib.metadata import version

        env["reference_sam2"] = version("sam2")
    except Exception:
        env["reference_sam2"] = None
    return env


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------


def check_output_path(path: str, overwrite: bool = False, what: str = "output",
                      suffixes: Sequence[str] | None = None) -> str:
    """Make sure `path` can be written before any long work starts; returns its absolute path.

    Refuses a folder, an existing file (unless `overwrite`), a wrong extension and a folder that cannot be
    created or written to. Missing parent folders are created.
    """
    if not path:
        raise BenchError(f"empty {what} path")
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(full):
        raise BenchError(f"{what} {path} is a folder; give a file name")
    if suffixes and not full.lower().endswith(tuple(suffixes)):
        raise BenchError(f"{what} {path} must end with {' or '.join(suffixes)}")
    if os.path.exists(full) and not overwrite:
        raise BenchError(f"{what} {path} already exists; pass --overwrite to replace it")
    folder = os.path.dirname(full)
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".{os.path.basename(full)}.{uuid.uuid4().hex[:8]}.probe")
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise BenchError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    return full


def atomic_write_bytes(path: str, data: bytes, overwrite: bool = False) -> None:
    """Write `data` to `path` atomically (`io.atomic.atomic_open`); an existing file only with `overwrite`."""
    if os.path.exists(os.path.abspath(path)) and not overwrite:
        raise BenchError(f"{path} already exists; pass --overwrite to replace it")
    with atomic_open(path, "wb") as f:
        f.write(data)
