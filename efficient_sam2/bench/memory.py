"""Memory of a benchmark run: what the process holds while tracking (`MemoryProbe`) and the tensor bytes a tracking
state keeps (`tensor_megabytes`).
"""

from __future__ import annotations

import sys

import torch

__all__ = ["MemoryProbe", "tensor_megabytes"]


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
