"""Benchmark of the web app's API against `efficient-sam2 track` on the same clip (BENCHMARKS.md "Web app").

    python -m efficient_sam2.serve.bench --frames 48 --size 480x360 --sessions 8 --threads 1 --json serve_bench.json

1. Propagation speed: `efficient-sam2 track` (its printed frames/s: open, click, track, write PNGs) and the API
   (upload, click, propagate; the server's frames/s of propagation and the client's wall time of the three calls),
   dense and Efficient-SAM2, on one synthetic clip (a folder of JPEG frames for `track`, the same JPEGs zipped for
   the API, so both decode the same pixels). Best of --repeats runs each, interleaved.
2. Click latency: the round trip of a click on a frame already embedded (frame 0 is embedded when the video
   opens), clicks of 1 to 3 points; and the first click on a frame not embedded yet.
3. --sessions users at once on one server (upload, click, track, fetch every mask): every mask compared with a
   single-session run, and the process's peak resident memory (sampled every 10 ms) before and during.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import zipfile

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


class PeakMemory:
    """Samples the resident set size every `interval` seconds while in use."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> "PeakMemory":
        self.start = _rss_mb()
        self.peak = self.start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def make_clip(folder: str, frames: int, size: tuple[int, int], seed: int) -> tuple[str, tuple[int, int]]:
    """Write a synthetic clip as JPEG frames into `folder` and zip them; returns (zip path, click (x, y))."""
    import cv2
    from PIL import Image

    from ..data import generate_video

    w, h = size
    video = generate_video(seed, "standard", frames=frames, size=(h, w), num_objects=1)
    os.makedirs(folder, exist_ok=True)
    for t, f in enumerate(video.frames):
        Image.fromarray(f).save(os.path.join(folder, f"{t:05d}.jpg"), quality=95)
    path = folder.rstrip("/") + ".zip"
    with zipfile.ZipFile(path, "w") as zf:
        for t in range(frames):
            zf.write(os.path.join(folder, f"{t:05d}.jpg"), f"{t:05d}.jpg")
    dist = cv2.distanceTransform((video.masks[0] == 1).astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(dist.argmax()), dist.shape)
    return path, (int(x), int(y))


def run_track(folder: str, click: tuple[int, int], out: str, dense: bool) -> float:
    """`efficient-sam2 track` in this process; returns its printed frames/s."""
    from ..cli import main

    args = ["track", folder, "--points", f"{click[0]},{click[1]}", "--output", out, "--overwrite", "--no-progress",
            "--model", "micro"] + (["--dense"] if dense else [])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(args)
    if code != 0:
        raise RuntimeError(f"track failed ({code}): {buf.getvalue()}")
    return float(re.search(r"([\d.]+) frames/s", buf.getvalue()).group(1))


def run_api(api, clip: str, click: tuple[int, int], efficient: bool) -> dict:
    t0 = time.perf_counter()
    vid = api.upload(clip, "clip.zip")["video_id"]
    t1 = time.perf_counter()
    api.prompt(vid, 0, 1, points=[click], labels=[1])
    t2 = time.perf_counter()
    res = api.propagate(vid, efficient=efficient, direction="forward")
    t3 = time.perf_counter()
    api.delete(vid)
    n = res["frames"]
    return {"propagate_frames_per_s": res["frames_per_s"], "end_to_end_frames_per_s": n / (t3 - t0),
            "propagate_call_frames_per_s": n / (t3 - t2), "open_s": t1 - t0, "click_s": t2 - t1,
            "statistics": res["statistics"]}


def click_latency(api, clip: str, click: tuple[int, int], num_frames: int, clicks: int = 15) -> dict:
    vid = api.upload(clip, "clip.zip")["video_id"]
    x, y = click
    times = []
    for k in range(clicks):
        pts = [(x, y), (x + 3, y - 2), (x - 2, y + 3)][: 1 + k % 3]
        t0 = time.perf_counter()
        api.prompt(vid, 0, 1, points=pts, labels=[1] * len(pts))
        times.append(time.perf_counter() - t0)
    cold = []
    for t in (num_frames // 3, 2 * num_frames // 3):
        t0 = time.perf_counter()
        api.prompt(vid, t, 2, points=[click], labels=[1])
        cold.append(time.perf_counter() - t0)
    api.delete(vid)
    times_ms = sorted(1000 * v for v in times)
    return {"embedded_median_ms": statistics.median(times_ms), "embedded_max_ms": times_ms[-1],
            "embedded_p90_ms": times_ms[int(0.9 * (len(times_ms) - 1))], "clicks": clicks,
            "not_embedded_ms": [round(1000 * v, 1) for v in cold]}


def concurrent_sessions(api_factory, clip: str, click: tuple[int, int], sessions: int, num_frames: int,
                        reference: list[np.ndarray]) -> dict:
    results: dict[int, object] = {}
    times: dict[int, float] = {}

    def user(k: int) -> None:
        api = api_factory()
        t0 = time.perf_counter()
        try:
            vid = api.upload(clip, "clip.zip")["video_id"]
            api.prompt(vid, 0, 1, points=[click], labels=[1])
            api.propagate(vid, efficient=True, direction="forward")
            masks = [api.mask(vid, t) for t in range(num_frames)]
            api.delete(vid)
            results[k] = all(np.array_equal(m, r) for m, r in zip(masks, reference))
        except Exception as exc:
            results[k] = exc
        times[k] = time.perf_counter() - t0

    threads = [threading.Thread(target=user, args=(k,)) for k in range(sessions)]
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
    errors = [f"{k}: {v}" for k, v in results.items() if isinstance(v, Exception)]
    return {"sessions": sessions, "all_masks_equal": all(v is True for v in results.values()) and not errors,
            "errors": errors, "wall_s": wall, "slowest_session_s": max(times.values()),
            "rss_before_mb": mem.start, "rss_peak_mb": mem.peak,
            "frames_per_s_total": sessions * num_frames / wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--size", default="480x360", help="WxH of the clip (default 480x360)")
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    import torch

    from .app import create_app
    from .client import ApiClient
    from .engine import Engine
    from .server import ServerThread
    from .settings import ServeSettings

    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    work = tempfile.mkdtemp(prefix="serve-bench-")
    clip, click = make_clip(os.path.join(work, "frames"), args.frames, (w, h), args.seed)
    token = "bench"
    app = create_app(Engine.build("micro"), ServeSettings(token=token, max_sessions=max(8, args.sessions)))
    report: dict = {"frames": args.frames, "size": [w, h], "threads": args.threads, "model": "sam2.1_hiera_micro",
                    "image_size": 256, "torch": torch.__version__}
    with ServerThread(app) as url:
        api = ApiClient(url, token)
        speed: dict = {}
        for mode in ("dense", "efficient"):
            speed[mode] = {"track": [], "api": []}
        for _ in range(args.repeats):
            for mode in ("dense", "efficient"):  # interleaved: machine noise hits both alike
                speed[mode]["track"].append(run_track(os.path.join(work, "frames"), click,
                                                      os.path.join(work, f"out_{mode}"), mode == "dense"))
                speed[mode]["api"].append(run_api(api, clip, click, mode == "efficient"))
        report["speed"] = {}
        for mode, runs in speed.items():
            best = max(runs["api"], key=lambda r: r["end_to_end_frames_per_s"])
            report["speed"][mode] = {
                "track_frames_per_s": max(runs["track"]),
                "api_end_to_end_frames_per_s": best["end_to_end_frames_per_s"],
                "api_propagate_frames_per_s": max(r["propagate_frames_per_s"] for r in runs["api"]),
                "api_open_s": best["open_s"], "api_click_s": best["click_s"],
                "statistics": best["statistics"],
                "all_track": runs["track"], "all_api_end_to_end": [r["end_to_end_frames_per_s"] for r in runs["api"]],
            }
            s = report["speed"][mode]
            s["api_vs_track"] = s["api_end_to_end_frames_per_s"] / s["track_frames_per_s"]
        report["click"] = click_latency(api, clip, click, args.frames)
        # the reference masks: one session alone
        vid = api.upload(clip, "clip.zip")["video_id"]
        api.prompt(vid, 0, 1, points=[click], labels=[1])
        api.propagate(vid, efficient=True, direction="forward")
        reference = [api.mask(vid, t) for t in range(args.frames)]
        api.delete(vid)
        report["concurrent"] = concurrent_sessions(lambda: ApiClient(url, token), clip, click, args.sessions,
                                                   args.frames, reference)
    text = json.dumps(report, indent=2, default=float)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0 if report["concurrent"]["all_masks_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
