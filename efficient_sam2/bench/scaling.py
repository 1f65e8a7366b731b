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

The memory readings are `bench.memory`'s (`MemoryProbe`, `tensor_megabytes`, importable from here as well).
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

from . import common
from .common import BenchError, BenchmarkSettings, atomic_write_bytes
from .memory import MemoryProbe, tensor_megabytes
from .report import plot_sweep, sweep_markdown
from .speed import run_benchmark
from .stream import run_stream

__all__ = ["SWEEPABLE", "MemoryProbe", "SweepPoint", "SweepResult", "parse_sweep", "run_sweep", "tensor_megabytes"]

SWEEPABLE = ("objects", "frames")
"""The quantities `--sweep` can vary."""


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
        return sweep_markdown(self)


def _child(settings: dict, conn, progress: bool = False, desc: str = "bench", stream: bool = False) -> None:
    """Runs in a fresh process: one configuration, memory probed; sends a dict back through `conn`."""
    try:
        s = BenchmarkSettings(**settings)
        s.configs = tuple(s.configs)
        device = torch.device(s.device)
        if stream:  # the streaming tracker over a long stream (bench/stream.py)
            conn.send(run_stream(s, progress, MemoryProbe(device), desc))
            return
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


def _run_child(settings: dict, progress: bool = False, desc: str = "bench", stream: bool = False) -> dict:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(settings, child, progress, desc, stream), daemon=True)
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
              command: str | None = None, stream: bool = False) -> SweepResult:
    """Run `settings` once per value of `quantity` ("objects" or "frames") and per configuration, each in a
    process of its own; returns every point (failed ones carry their error instead of measurements). With
    `stream`, each point runs the streaming tracker over a synthetic stream (`bench.stream.run_stream`)."""
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
            message = _run_child(dataclasses.asdict(child_settings), progress, desc, stream)
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
    if stream:
        settings_dict.update(stream=True, frame_cache=0)
    if not environment:
        environment = common.environment(torch.device(settings.device))
    return SweepResult(settings_dict, quantity, values, configs, points, environment, command)


def write_sweep_json(result: SweepResult, path: str, overwrite: bool = False) -> None:
    text = json.dumps(result.to_dict(), indent=2, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"), overwrite)


def write_sweep_markdown(result: SweepResult, path: str, overwrite: bool = False) -> None:
    atomic_write_bytes(path, result.markdown().encode("utf-8"), overwrite)


def write_sweep_plot(result: SweepResult, path: str, overwrite: bool = False, backend: str = "auto") -> None:
    atomic_write_bytes(path, plot_sweep(result, backend), overwrite)
