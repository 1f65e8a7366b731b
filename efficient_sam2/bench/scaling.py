"""How time and memory grow with the number of objects or the length of the video (`efficient-sam2 bench --sweep`).

A process's peak memory cannot be split between configurations that run interleaved in it, so a sweep runs every
(value, configuration) pair in a fresh process of its own (multiprocessing "spawn"), one after the other. Each
child runs the ordinary benchmark engine on one configuration and reports:

- the median time per timed frame (end to end and per module) and the FLOPs of that work;
- memory when tracking starts (model built, video opened), the peak while it runs and the growth between the two:
  on the CPU the resident set size (Linux: `VmRSS` / `VmHWM`, the high-water mark reset through
  `/proc/self/clear_refs` when tracking starts), on CUDA the bytes allocated by PyTorch.

Ratios between configurations at one value come from consecutive processes, not from one interleaved run: for
speed-ups, use the ordinary (interleaved) benchmark; the sweep shows how each configuration grows.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import statistics
import sys
import traceback
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .speed import BenchError, BenchmarkSettings

__all__ = ["SWEEPABLE", "MemoryProbe", "SweepPoint", "SweepResult", "parse_sweep", "run_sweep", "tensor_megabytes"]

SWEEPABLE = ("objects", "frames")
"""The quantities `--sweep` can vary."""


# ----------------------------------------------------------------------------------------------------------------
# Reading a process's memory
# ----------------------------------------------------------------------------------------------------------------


def _proc_status_mb(field_name: str) -> float | None:
    """A `kB` field of /proc/self/status (Linux) in MiB, or None where there is no such file."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the process's resident-set high-water mark (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _lifetime_peak_rss_mb() -> float:
    """The process's peak resident set size since it started, from getrusage (kB on Linux, bytes on macOS)."""
    import resource  # (Unix only)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class MemoryProbe:
    """Measures the memory a tracking run adds on top of what was there when it started.

    `start()` is called with the model built and the video opened; `stop()` returns
    {"kind", "start_mb", "peak_mb", "growth_mb", "setup_peak_mb"}: on CUDA the bytes PyTorch allocated on the
    device (start, peak during tracking), on the CPU the resident set size of the process. Where the RSS
    high-water mark cannot be reset (not Linux), "peak_mb" is the process's lifetime peak, which may have been
    reached while the model was built; "peak_is_tracking" says which it is.
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self._start: float | None = None
        self._setup_peak: float | None = None
        self._reset = False

    def start(self) -> None:
        import gc

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._setup_peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device) / 2**20
            return
        self._setup_peak = _proc_status_mb("VmHWM") or _lifetime_peak_rss_mb()
        self._start = _proc_status_mb("VmRSS")
        self._reset = _reset_peak_rss()

    def stop(self) -> dict:
        if self._start is None and self._setup_peak is None:
            raise RuntimeError("MemoryProbe.stop() called before start()")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            kind, tracking = "cuda_allocated", True
        else:
            peak = _proc_status_mb("VmHWM") if self._reset else None
            tracking = peak is not None
            if peak is None:
                peak = _lifetime_peak_rss_mb()
            kind = "cpu_rss"
        start = self._start
        return {
            "kind": kind,
            "start_mb": None if start is None else round(start, 1),
            "peak_mb": round(peak, 1),
            "growth_mb": None if start is None or not tracking else round(max(0.0, peak - start), 1),
            "setup_peak_mb": None if self._setup_peak is None else round(self._setup_peak, 1),
            "peak_is_tracking": tracking,
        }


def tensor_megabytes(obj) -> float:
    """MiB of tensor storage reachable from `obj` (dicts, lists, tuples, dataclasses and plain objects are
    followed; each storage counted once): what a tracking state holds, independent of the allocator."""
    seen_objects: set[int] = set()
    seen_storages: set[tuple] = set()
    total = 0
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            key = (storage.data_ptr(), item.device.type, storage.nbytes())
            if key not in seen_storages:
                seen_storages.add(key)
                total += storage.nbytes()
            continue
        if item is None or isinstance(item, (str, bytes, int, float, bool, torch.nn.Module)) or id(item) in seen_objects:
            continue
        seen_objects.add(id(item))
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif hasattr(item, "__dict__"):
            stack.extend(vars(item).values())
        elif hasattr(item, "__slots__"):
            stack.extend(getattr(item, name) for name in item.__slots__ if hasattr(item, name))
    return total / 2**20


# ----------------------------------------------------------------------------------------------------------------
# The sweep
# ----------------------------------------------------------------------------------------------------------------


def parse_sweep(text: str) -> tuple[str, list[int]]:
    """'objects=1,2,4,8' -> ("objects", [1, 2, 4, 8]); raises BenchError with a readable message."""
    if not text or "=" not in text:
        raise BenchError(f"--sweep must look like objects=1,2,4 or frames=12,24,48; got {text!r}")
    name, _, values = text.partition("=")
    name = name.strip()
    if name not in SWEEPABLE:
        raise BenchError(f"--sweep can vary {' or '.join(SWEEPABLE)}, not {name!r}")
    out: list[int] = []
    for word in values.split(","):
        word = word.strip()
        if not word:
            continue
        try:
            v = int(word)
        except ValueError:
            raise BenchError(f"--sweep {name}: {word!r} is not a whole number") from None
        if v < 1:
            raise BenchError(f"--sweep {name}: values must be at least 1, got {v}")
        if v not in out:
            out.append(v)
    if not out:
        raise BenchError(f"--sweep {name}= lists no values")
    return name, sorted(out)


@dataclass
class SweepPoint:
    """One (value, configuration) child process: its medians, FLOPs, sparsity and memory, or its error."""

    value: int
    config: str
    median_ms: dict = field(default_factory=dict)
    gflops_per_frame: dict = field(default_factory=dict)
    samples: int = 0
    sparsity: dict = field(default_factory=dict)
    memory: dict | None = None
    error: str | None = None


@dataclass
class SweepResult:
    """A whole sweep: the settings shared by every point, the swept quantity, and the points in run order."""

    settings: dict
    quantity: str
    values: list[int]
    configs: list[str]
    points: list[SweepPoint]
    environment: dict
    command: str | None = None

    def point(self, value: int, config: str) -> SweepPoint | None:
        for p in self.points:
            if p.value == value and p.config == config:
                return p
        return None

    def to_dict(self) -> dict:
        return {
            "schema": "efficient-sam2/bench-sweep/1",
            "command": self.command,
            "quantity": self.quantity,
            "values": self.values,
            "configs": self.configs,
            "settings": self.settings,
            "environment": self.environment,
            "points": [dataclasses.asdict(p) for p in self.points],
        }

    def markdown(self) -> str:
        from .report import sweep_markdown

        return sweep_markdown(self)


def _child(settings: dict, conn, progress: bool = False, desc: str = "bench") -> None:
    """Runs in a fresh process: one configuration, memory probed; sends a dict back through `conn`."""
    try:
        from .speed import run_benchmark

        s = BenchmarkSettings(**settings)
        s.configs = tuple(s.configs)
        device = torch.device(s.device)
        result = run_benchmark(s, progress=progress, memory_probe=MemoryProbe(device), desc=desc)
        (name, res), = result.configs.items()
        medians = {b: (statistics.median(xs) if xs else None) for b, xs in res.samples_ms.items()}
        conn.send({
            "median_ms": {b: (None if v is None else round(v, 3)) for b, v in medians.items()},
            "gflops_per_frame": {b: round(v / 1e9, 6) for b, v in res.flops.items()},
            "samples": len(res.samples_ms.get("end_to_end", [])),
            "sparsity": res.sparsity,
            "memory": {**(result.memory or {}), "state_mb": res.state_mb},
            "environment": result.environment,
            "settings": result.settings,
        })
    except BaseException as exc:  # reported to the parent, which carries on with the next point
        conn.send({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
    finally:
        conn.close()


def _run_child(settings: dict, progress: bool = False, desc: str = "bench") -> dict:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(settings, child, progress, desc), daemon=True)
    proc.start()
    child.close()
    try:
        message = parent.recv()
    except EOFError:
        message = None
    proc.join()
    if message is None:
        code = proc.exitcode
        why = "killed (out of memory?)" if code is not None and code < 0 else f"exit code {code}"
        return {"error": f"the benchmark process ended without a result: {why}"}
    return message


def run_sweep(settings: BenchmarkSettings, quantity: str, values: Sequence[int], progress: bool = True,
              command: str | None = None) -> SweepResult:
    """Run `settings` once per value of `quantity` ("objects" or "frames") and per configuration, each in a
    process of its own; returns every point (failed ones carry their error instead of measurements)."""
    if quantity not in SWEEPABLE:
        raise BenchError(f"cannot sweep {quantity!r}; choose {' or '.join(SWEEPABLE)}")
    values = sorted({int(v) for v in values})
    if not values or values[0] < 1:
        raise BenchError("sweep values must be whole numbers >= 1")
    settings.validate()
    for v in values:  # every value must be valid before the first (long) process starts
        dataclasses.replace(settings, **{quantity: v}).validate()
    if quantity == "objects" and settings.video is not None:
        raise BenchError("--sweep objects needs the synthetic video (its object count is set per point); "
                         "with --video, --objects picks the first N ids of --mask")
    configs = list(settings.configs)
    points: list[SweepPoint] = []
    environment: dict = {}
    shared: dict = {}
    total = len(values) * len(configs)
    for v in values:
        for name in configs:
            # each child draws its own progress bar (the frames of its run), labelled with its place in the sweep
            desc = f"[{len(points) + 1}/{total}] {quantity}={v} {name}"
            child_settings = dataclasses.replace(
                settings, configs=(name,), include_dense=False, **{quantity: v},
                # what a user's tracking keeps: the predictor's own bounded frame cache, not every frame
                frame_cache=16 if settings.frame_cache is None else settings.frame_cache,
            )
            message = _run_child(dataclasses.asdict(child_settings), progress, desc)
            point = SweepPoint(v, name)
            if "error" in message:
                point.error = message["error"]
                if progress:
                    print(f"{desc}: failed: {message['error']}", file=sys.stderr)
            else:
                point.median_ms = message["median_ms"]
                point.gflops_per_frame = message["gflops_per_frame"]
                point.samples = message["samples"]
                point.sparsity = message["sparsity"]
                point.memory = message["memory"]
                environment = environment or message["environment"]
                shared = shared or message["settings"]
            points.append(point)
    settings_dict = dict(shared) if shared else settings.to_dict()
    settings_dict.update({"configs": configs, quantity: None, "frame_cache": 16 if settings.frame_cache is None
                          else settings.frame_cache})
    settings_dict.pop("include_dense", None)
    if not environment:
        from .speed import _environment

        environment = _environment(torch.device(settings.device))
    return SweepResult(settings_dict, quantity, values, configs, points, environment, command)


def write_sweep_json(result: SweepResult, path: str, overwrite: bool = False) -> None:
    from .report import atomic_write_bytes

    text = json.dumps(result.to_dict(), indent=2, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"), overwrite)


def write_sweep_markdown(result: SweepResult, path: str, overwrite: bool = False) -> None:
    from .report import atomic_write_bytes

    atomic_write_bytes(path, result.markdown().encode("utf-8"), overwrite)


def write_sweep_plot(result: SweepResult, path: str, overwrite: bool = False, backend: str = "auto") -> None:
    from .report import atomic_write_bytes, plot_sweep

    atomic_write_bytes(path, plot_sweep(result, backend), overwrite)
