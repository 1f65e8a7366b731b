"""The streaming tracker's memory over long streams (`efficient-sam2 bench --sweep frames=... --stream`).

One run tracks `frames` frames of a synthetic stream with the `StreamingTracker` (one configuration, one process,
as every sweep point) and reports the median time per frame once the memory bank is full, the tensors the tracker
holds at the end (`state_nbytes`) and the process's memory when the stream starts and at its peak. The stream is
generated frame by frame (a ping-pong loop over a short synthetic video), so nothing in the process grows with its
length but what the tracker keeps: the peak stays flat when the tracker is bounded.
"""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from ..build import bundled_weights
from ..configs import get_config
from .common import BENCH_CONFIGS, BenchError, BenchmarkSettings, environment
from .speed import random_weights_, synthetic_video

__all__ = ["run_stream", "stream_frames"]

_LOOP = 48  # frames of the synthetic video the stream loops over


def stream_frames(num_frames: int, height: int, width: int, num_objects: int = 1, seed: int = 0):
    """(frames, first-frame masks): an iterator of `num_frames` RGB frames that plays a short synthetic video
    forwards and backwards (no jumps), generated on the fly, and {obj_id: mask} of its first frame."""
    loop, masks = synthetic_video(min(num_frames, _LOOP), height, width, num_objects, seed)

    def frames() -> Iterator[np.ndarray]:
        n = len(loop)
        period = max(1, 2 * n - 2)
        for t in range(num_frames):
            k = t % period
            yield loop[k if k < n else period - k]

    return frames(), masks


def run_stream(settings: BenchmarkSettings, progress: bool = False, memory_probe=None, desc: str = "stream") -> dict:
    """Track `settings.frames` frames with the streaming tracker in the single configuration `settings.configs`;
    returns the sweep child's message (median_ms, samples, sparsity, memory with state_mb / state_bytes, ...)."""
    from ..build import build_sam2_stream_tracker

    settings.validate()
    (name,) = settings.configs
    if BENCH_CONFIGS[name].reference:
        raise BenchError("--stream times our streaming tracker: leave 'reference' out of --configs")
    if settings.video is not None:
        raise BenchError("--stream runs on the synthetic stream: leave out --video / --mask")
    threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        device = torch.device(settings.device)
        overrides = {"image_size": settings.image_size} if settings.image_size else {}
        cfg = get_config(settings.model, **overrides)
        height, width = max(32, (cfg.image_size * 9 // 16) // 2 * 2), cfg.image_size
        frames, masks = stream_frames(settings.frames, height, width, settings.objects or 1, settings.seed)
        # weights as the speed benchmark's: the checkpoint, else the bundled ones (micro), else random
        random_init = settings.checkpoint is None and bundled_weights(settings.model) is None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="no shortcut checkpoint given")
            tracker = build_sam2_stream_tracker(settings.model, settings.checkpoint, device="cpu",
                                                efficient=settings.efficient_config(name),
                                                shortcut_checkpoint=settings.shortcut_checkpoint,
                                                weights="random" if random_init else None, **overrides)
        if random_init:
            random_weights_(tracker.model, settings.seed)
        tracker.model.to(device)
        for obj_id, mask in masks.items():
            tracker.add_object(obj_id, mask=mask)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if settings.dtype == "bf16" else None
        timed_from = cfg.num_maskmem
        samples: list[float] = []
        if memory_probe is not None:
            memory_probe.start()
        bar = tqdm(total=settings.frames, desc=desc, unit="frame", disable=not progress)
        try:
            for t, frame in enumerate(frames):
                t0 = time.perf_counter()
                if autocast is None:
                    tracker.track(frame)
                else:
                    with autocast:
                        tracker.track(frame)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if t >= timed_from:
                    samples.append((time.perf_counter() - t0) * 1000)
                bar.update()
        finally:
            bar.close()
        memory = memory_probe.stop() if memory_probe is not None else {}
        state = tracker.state_nbytes()
        stats = tracker.statistics()
        median = statistics.median(samples) if samples else None
        return {
            "median_ms": {"end_to_end": None if median is None else round(median, 3)},
            "gflops_per_frame": {},
            "samples": len(samples),
            "sparsity": stats.summary() if stats is not None else {},
            "memory": {**memory, "state_mb": round(state / 2**20, 4), "state_bytes": state},
            "environment": environment(device),
            "settings": {**settings.to_dict(), "model": cfg.name, "image_size": cfg.image_size,
                         "objects": len(masks), "stream": True, "frame_cache": 0,
                         "video_description": f"synthetic stream, {width}x{height}, {len(masks)} moving object(s)",
                         "weights": settings.checkpoint or ("bundled" if not random_init
                                                            else f"random (seed {settings.seed})")},
        }
    finally:
        torch.set_num_threads(threads)
