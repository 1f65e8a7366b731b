"""Benchmark reports: the ratio arithmetic, JSON, a Markdown table and a bar chart.

`summarize` is pure arithmetic on per-frame samples and FLOP counts, so it can be checked with made-up numbers:
    median_ms[b]          median of the per-frame milliseconds of bucket b
    ratio_to_dense[b]     median_ms(dense)[b] / median_ms(config)[b]        (> 1: faster than dense)
    ideal_ratio[b]        flops(dense)[b] / flops(config)[b]                 (the speed-up the removed work allows)
    fraction_of_ideal[b]  ratio_to_dense[b] / ideal_ratio[b]

Every file is written atomically (`bench.common.atomic_write_bytes`, through `io.atomic.atomic_open`), and an
existing file is replaced only when asked to. This module reads `bench.common` only; the engine (`bench.speed`) and
the sweeps (`bench.scaling`) import it, never the other way round.
"""

from __future__ import annotations

import io
import json
import math
import statistics
from typing import Mapping, Sequence

from .common import BUCKETS, MODULES, atomic_write_bytes, check_output_path

__all__ = [
    "BUCKET_LABELS",
    "summarize",
    "result_to_dict",
    "markdown_report",
    "plot_speedups",
    "check_output_path",
    "atomic_write_bytes",
    "write_json",
    "write_markdown",
    "write_plot",
    "linear_fit",
    "sweep_markdown",
    "plot_sweep",
]

BUCKET_LABELS = {
    "image_encoder": "image encoder",
    "memory_attention": "memory attention",
    "mask_decoder": "mask decoder",
    "memory_encoder": "memory encoder",
    "other": "other",
    "end_to_end": "end-to-end",
}
_RATIO_BUCKETS = MODULES + ("end_to_end",)


# ----------------------------------------------------------------------------------------------------------------
# Arithmetic
# ----------------------------------------------------------------------------------------------------------------


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (q in [0, 1]) of a non-empty sequence."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0 or num < 0:
        return None
    return num / den


def summarize(
    samples_ms: Mapping[str, Mapping[str, Sequence[float]]],
    flops: Mapping[str, Mapping[str, float]],
    baseline: str = "dense",
    buckets: Sequence[str] = BUCKETS,
) -> dict[str, dict]:
    """Medians, quartiles, measured and FLOP-ideal speed-ups of every configuration against `baseline`.

    samples_ms: config -> bucket -> per-frame milliseconds; flops: config -> bucket -> FLOPs per frame.
    Returns config -> {"median_ms", "quartiles_ms", "ratio_to_dense", "ideal_ratio", "fraction_of_ideal",
    "gflops_per_frame"}; entries that cannot be computed (no samples, a zero) are None.
    """
    if baseline not in samples_ms:
        raise ValueError(f"the baseline configuration {baseline!r} has no measurements")
    out: dict[str, dict] = {}
    medians: dict[str, dict[str, float | None]] = {}
    for name, per_bucket in samples_ms.items():
        medians[name] = {b: (statistics.median(per_bucket[b]) if per_bucket.get(b) else None) for b in buckets}
    base_med, base_flops = medians[baseline], flops.get(baseline, {})
    for name, per_bucket in samples_ms.items():
        med = medians[name]
        fl = flops.get(name, {})
        ratio = {b: _ratio(base_med[b], med[b]) for b in buckets}
        ideal = {b: _ratio(base_flops.get(b), fl.get(b)) for b in buckets}
        out[name] = {
            "median_ms": med,
            "quartiles_ms": {b: ([_quantile(per_bucket[b], 0.25), _quantile(per_bucket[b], 0.75)]
                                 if per_bucket.get(b) else None) for b in buckets},
            "ratio_to_dense": ratio,
            "ideal_ratio": ideal,
            "fraction_of_ideal": {b: (ratio[b] / ideal[b] if ratio[b] is not None and ideal[b] else None)
                                  for b in buckets},
            "gflops_per_frame": {b: (fl[b] / 1e9 if b in fl else None) for b in buckets},
        }
    return out


def result_to_dict(result) -> dict:
    """The JSON document of a BenchmarkResult (raw samples included)."""
    summary = result.summary()
    configs = {}
    for name, c in result.configs.items():
        s = summary[name]
        configs[name] = {
            "description": c.description,
            "efficient_config": c.efficient,
            **{k: _rounded(v) for k, v in s.items()},
            "sparsity": c.sparsity,
            "work": c.work,
            "peak_memory_mb": c.peak_memory_mb,
            "samples_ms": {b: [round(x, 4) for x in xs] for b, xs in c.samples_ms.items()},
        }
    return {
        "schema": "efficient-sam2/bench/1",
        "command": result.command,
        "settings": result.settings,
        "environment": result.environment,
        "timed_frames": result.timed_frames,
        "samples_per_config": len(next(iter(result.configs.values())).samples_ms.get("end_to_end", [])),
        "configs": configs,
    }


def _rounded(value, digits: int = 4):
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, float):
        return round(value, digits)
    return value


# ----------------------------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------------------------


def _fmt_ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _fmt_ratio(r: float | None, ideal: float | None) -> str:
    if r is None:
        return "-"
    text = f"{r:.2f}x"
    if ideal is not None:
        text += f" ({ideal:.2f}x, {100 * r / ideal:.0f}%)"
    return text


def _fmt_frac(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def markdown_report(result) -> str:
    """A self-contained Markdown report: settings, the time table and the speed-up table."""
    s, env = result.settings, result.environment
    summary = result.summary()
    frames = result.timed_frames
    n = len(next(iter(result.configs.values())).samples_ms.get("end_to_end", []))
    span = f" {frames[0]}" if len(frames) == 1 else f"s {frames[0]}-{frames[-1]}"
    lines = ["## Efficient-SAM2 speed benchmark", ""]
    if result.command:
        lines += [f"`{result.command}`", ""]
    device = env.get("gpu") or env.get("cpu", "cpu")
    lines += [
        f"- model: {s['model']} ({s['weights']}), {s['image_size']} px, {s['dtype']} on {env['device']} "
        f"({device}, {env['threads']} threads, torch {env['torch']})",
        f"- video: {s['video_description']}; {s['frames']} frames; timed frame{span} "
        f"(memory bank full) x {s['repeats']} repeats after {s['warmup']} warm-up = {n} samples per "
        f"configuration, all configurations interleaved frame by frame",
        "- clock: " + ("process CPU time (robust on a shared machine with --threads 1)"
                       if s.get("clock") == "cpu" else "wall clock" + (", CUDA synchronised around every timed call"
                                                                        if env["device"].startswith("cuda") else "")),
    ]
    if s.get("kept_windows") is not None:
        lines.append(f"- kept windows forced to {s['kept_windows']:g} of the routed stage on routed frames")
    lines += ["", "Median time per frame (ms):", ""]
    head = "| configuration | " + " | ".join(BUCKET_LABELS[b] for b in BUCKETS) + " |"
    lines += [head, "|---|" + "---:|" * len(BUCKETS)]
    for name in result.configs:
        med = summary[name]["median_ms"]
        lines.append(f"| {name} | " + " | ".join(_fmt_ms(med[b]) for b in BUCKETS) + " |")
    lines += ["", "Speed-up over dense: measured (FLOP-ideal, measured / ideal), and the sparsity achieved:", ""]
    cols = [BUCKET_LABELS[b] for b in _RATIO_BUCKETS] + ["kept windows", "kept memory"]
    lines += ["| configuration | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, c in result.configs.items():
        if name == "dense":
            continue
        r, ideal = summary[name]["ratio_to_dense"], summary[name]["ideal_ratio"]
        cells = [_fmt_ratio(r[b], ideal[b]) for b in _RATIO_BUCKETS]
        cells += [_fmt_frac(c.sparsity.get("mean_kept_window_fraction")),
                  _fmt_frac(c.sparsity.get("mean_kept_memory_fraction"))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "reference" in summary:
        ref = summary["reference"]["median_ms"]["end_to_end"]
        dense = summary["dense"]["median_ms"]["end_to_end"]
        if ref and dense:
            lines += ["", f"Our dense path runs at {ref / dense:.2f}x the speed of the reference package's "
                          "(end to end, same weights, same run)."]
    flops = summary["dense"]["gflops_per_frame"]
    lines += ["", "Dense work per timed frame (GFLOP): " + ", ".join(
        f"{BUCKET_LABELS[b]} {flops[b]:.2f}" for b in _RATIO_BUCKETS if flops.get(b) is not None) + "."]
    peaks = {name: c.peak_memory_mb for name, c in result.configs.items() if c.peak_memory_mb is not None}
    if peaks:
        lines += ["", "Peak memory allocated during a frame (MiB): "
                  + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()) + "."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# Plot
# ----------------------------------------------------------------------------------------------------------------

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _plot_data(result) -> tuple[list[str], list[tuple[str, list, list]], str]:
    summary = result.summary()
    series = []
    for name in result.configs:
        if name == "dense":
            continue
        r, ideal = summary[name]["ratio_to_dense"], summary[name]["ideal_ratio"]
        series.append((name, [r[b] for b in _RATIO_BUCKETS], [ideal[b] for b in _RATIO_BUCKETS]))
    s, env = result.settings, result.environment
    title = f"{s['model']} {s['image_size']} px, {s['dtype']} on {env['device']}: speed-up over dense"
    return [BUCKET_LABELS[b] for b in _RATIO_BUCKETS], series, title


def plot_speedups(result, backend: str = "auto") -> bytes:
    """PNG bytes of a grouped bar chart: measured speed-up per module and end to end for every configuration
    (bars), with the FLOP-ideal speed-up as a black tick. backend: "matplotlib", "pil" or "auto" (matplotlib
    when installed, else a plain PIL drawing)."""
    if backend not in ("auto", "matplotlib", "pil"):
        raise ValueError(f"unknown plot backend {backend!r}")
    labels, series, title = _plot_data(result)
    if backend in ("auto", "matplotlib"):
        try:
            return _plot_matplotlib(labels, series, title)
        except ImportError:
            if backend == "matplotlib":
                raise
    return _plot_pil(labels, series, title)


def _plot_matplotlib(labels, series, title) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5.5), dpi=110)
    ax = fig.subplots()
    n = max(1, len(series))
    width = 0.8 / n
    for i, (name, ratios, ideals) in enumerate(series):
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(labels))]
        colour = tuple(c / 255 for c in _COLOURS[i % len(_COLOURS)])
        ax.bar(xs, [r or 0 for r in ratios], width * 0.9, label=name, color=colour)
        ideal_x = [x for x, v in zip(xs, ideals) if v]
        ax.scatter(ideal_x, [v for v in ideals if v], marker="_", s=(width * 400) ** 2 / 60, color="black",
                   linewidths=2, zorder=3)
    ax.axhline(1.0, color="grey", linewidth=1, linestyle="--")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels)
    ax.set_ylabel("speed-up over dense (x); black tick: FLOP-ideal")
    ax.set_title(title)
    values = [v for _, r, i in series for v in list(r) + list(i) if v]
    ax.set_ylim(0, max([1.0] + values) * 1.12)
    if series:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(len(series), 6), fontsize="small",
                  frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _plot_pil(labels, series, title) -> bytes:
    from PIL import Image, ImageDraw

    W, H = 1100, 600
    left, right, top, bottom = 70, 180, 50, 60
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    values = [v for _, r, i in series for v in list(r) + list(i) if v]
    ymax = max([1.0] + values) * 1.15
    plot_w, plot_h = W - left - right, H - top - bottom

    def y_of(v: float) -> float:
        return top + plot_h * (1 - v / ymax)

    d.text((left, 15), title, fill="black")
    d.line([(left, top), (left, top + plot_h), (left + plot_w, top + plot_h)], fill="black", width=1)
    step = 0.5 if ymax <= 4 else 1.0
    tick = 0.0
    while tick <= ymax:
        y = y_of(tick)
        d.line([(left - 4, y), (left, y)], fill="black")
        d.text((left - 40, y - 6), f"{tick:.1f}x", fill="black")
        tick += step
    y1 = y_of(1.0)
    for x in range(left, left + plot_w, 8):
        d.line([(x, y1), (x + 4, y1)], fill=(128, 128, 128))
    group = plot_w / max(1, len(labels))
    n = max(1, len(series))
    bar = group * 0.8 / n
    for j, label in enumerate(labels):
        gx = left + group * j
        d.text((gx + group * 0.1, top + plot_h + 10), label, fill="black")
        for i, (_, ratios, ideals) in enumerate(series):
            x0 = gx + group * 0.1 + bar * i
            if ratios[j]:
                d.rectangle([x0 + 1, y_of(ratios[j]), x0 + bar - 1, top + plot_h], fill=_COLOURS[i % len(_COLOURS)])
            if ideals[j]:
                yi = y_of(ideals[j])
                d.line([(x0, yi), (x0 + bar, yi)], fill="black", width=3)
    for i, (name, _, _) in enumerate(series):
        y = top + 20 * i
        d.rectangle([W - right + 15, y, W - right + 30, y + 12], fill=_COLOURS[i % len(_COLOURS)])
        d.text((W - right + 36, y), name, fill="black")
    d.line([(W - right + 15, top + 20 * n + 10), (W - right + 30, top + 20 * n + 10)], fill="black", width=3)
    d.text((W - right + 36, top + 20 * n + 4), "FLOP-ideal", fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------------------
# Sweeps (objects, video length)
# ----------------------------------------------------------------------------------------------------------------

_SWEEP_UNITS = {"objects": ("objects", "object"), "frames": ("frames", "frame")}


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares (slope, intercept) of ys against xs; None with fewer than two distinct xs."""
    pairs = [(float(x), float(y)) for x, y in zip(xs, ys) if y is not None]
    if len({x for x, _ in pairs}) < 2:
        return None
    mx = sum(x for x, _ in pairs) / len(pairs)
    my = sum(y for _, y in pairs) / len(pairs)
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    slope = sum((x - mx) * (y - my) for x, y in pairs) / sxx
    return slope, my - slope * mx


def _sweep_series(result, config: str, key) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for v in result.values:
        p = result.point(v, config)
        if p is None or p.error is not None:
            continue
        y = key(p)
        if y is not None:
            xs.append(v)
            ys.append(y)
    return xs, ys


def _e2e(p) -> float | None:
    return p.median_ms.get("end_to_end")


def _growth(p) -> float | None:
    return None if p.memory is None else p.memory.get("growth_mb")


def _state(p) -> float | None:
    return None if p.memory is None else p.memory.get("state_mb")


def sweep_markdown(result) -> str:
    """Markdown report of a `--sweep`: a row per (value, configuration) and the fitted growth per unit."""
    s, env, q = result.settings, result.environment, result.quantity
    plural, singular = _SWEEP_UNITS[q]
    fixed = "objects" if q == "frames" else "frames"
    lines = [f"## Efficient-SAM2 scaling: {plural}", ""]
    if result.command:
        lines += [f"`{result.command}`", ""]
    device = env.get("gpu") or env.get("cpu", "cpu")
    memory_kind = next((p.memory.get("kind") for p in result.points if p.memory), "cpu_rss")
    lines += [
        f"- model: {s.get('model')} ({s.get('weights', 'random weights')}), {s.get('image_size')} px, "
        f"{s.get('dtype')} on {env.get('device')} ({device}, {env.get('threads')} threads, torch {env.get('torch')})",
        f"- {plural}: {', '.join(str(v) for v in result.values)}; {fixed}: "
        f"{s.get(fixed) if s.get(fixed) is not None else ('1' if fixed == 'objects' else '-')}; "
        f"frame cache: {s.get('frame_cache')} preprocessed frames",
        "- every (value, configuration) ran in a fresh process of its own, one after the other; time: median "
        "per timed frame (memory bank full)" + (", process CPU time" if s.get("clock") == "cpu" else ", wall clock"),
        "- tracking state: the tensors the predictor's state holds at the end (frame and feature caches, "
        "per-frame outputs and memories; the reference keeps every preprocessed frame)",
        "- memory: " + ("PyTorch's CUDA allocations" if memory_kind == "cuda_allocated" else
                        "resident set size of the process")
        + " when tracking starts (model built, video opened), its peak while tracking, and the growth between them"
        + ("" if memory_kind == "cuda_allocated" else " (includes what the allocator keeps after frees)"),
    ]
    if s.get("stream"):
        lines.append("- streaming tracker (`--stream`): frames generated as they are tracked, none kept; tracking "
                     "state = `StreamingTracker.state_nbytes()`")
    if s.get("kept_windows") is not None:
        lines.append(f"- kept windows forced to {s['kept_windows']:g} of the routed stage on routed frames")
    cols = [q, "configuration", "image encoder (ms)", "memory attention (ms)", "end-to-end (ms/frame)",
            "vs dense", "tracking state (MiB)", "memory at start (MiB)", "peak (MiB)", "growth (MiB)"]
    lines += ["", "| " + " | ".join(cols) + " |", "|---:|---|" + "---:|" * (len(cols) - 2)]
    for v in result.values:
        dense = result.point(v, "dense")
        for name in result.configs:
            p = result.point(v, name)
            if p is None:
                continue
            if p.error is not None:
                lines.append(f"| {v} | {name} | failed: {p.error} |" + " |" * (len(cols) - 3))
                continue
            med, mem = p.median_ms, p.memory or {}
            vs = "-"
            if name != "dense" and dense is not None and dense.error is None and _e2e(dense) and _e2e(p):
                vs = f"{_e2e(dense) / _e2e(p):.2f}x"
            lines.append("| " + " | ".join([
                str(v), name, _fmt_ms(med.get("image_encoder")), _fmt_ms(med.get("memory_attention")),
                _fmt_ms(med.get("end_to_end")), vs, _fmt_state(mem.get("state_mb")), _fmt_mb(mem.get("start_mb")),
                _fmt_mb(mem.get("peak_mb")), _fmt_mb(mem.get("growth_mb")),
            ]) + " |")
    fits = []
    for name in result.configs:
        t = linear_fit(*_sweep_series(result, name, _e2e))
        st = linear_fit(*_sweep_series(result, name, _state))
        m = linear_fit(*_sweep_series(result, name, _growth))
        if t is None and m is None and st is None:
            continue
        parts = []
        if t is not None:
            parts.append(f"{t[0]:+.1f} ms per frame")
        if st is not None:
            parts.append(f"{st[0]:+.2f} MiB of tracking state")
        if m is not None:
            parts.append(f"{m[0]:+.1f} MiB of peak memory growth")
        fits.append(f"- {name}: each extra {singular} adds " + ", ".join(parts) + " (least-squares fit)")
    if fits:
        lines += ["", f"Growth per extra {singular}:", ""] + fits
    return "\n".join(lines) + "\n"


def _fmt_mb(x) -> str:
    return "-" if x is None else f"{x:.0f}"


def _fmt_state(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def plot_sweep(result, backend: str = "auto") -> bytes:
    """PNG bytes of two line charts against the swept quantity: end-to-end time per frame and memory growth,
    one line per configuration (matplotlib when installed, else PIL)."""
    if backend not in ("auto", "matplotlib", "pil"):
        raise ValueError(f"unknown plot backend {backend!r}")
    panels = [("end-to-end time per frame (ms)", _e2e), ("tracking state (MiB)", _state),
              ("peak memory growth while tracking (MiB)", _growth)]
    series = [[(name, *_sweep_series(result, name, key)) for name in result.configs] for _, key in panels]
    s, env = result.settings, result.environment
    title = f"{s.get('model')} {s.get('image_size')} px, {s.get('dtype')} on {env.get('device')}"
    xlabel = _SWEEP_UNITS[result.quantity][0]
    if backend in ("auto", "matplotlib"):
        try:
            return _sweep_matplotlib(panels, series, title, xlabel)
        except ImportError:
            if backend == "matplotlib":
                raise
    return _sweep_pil(panels, series, title, xlabel)


def _sweep_matplotlib(panels, series, title, xlabel) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.5), dpi=110)
    axes = fig.subplots(1, len(panels))
    for ax, (label, _), lines in zip(axes, panels, series):
        for i, (name, xs, ys) in enumerate(lines):
            if xs:
                colour = tuple(c / 255 for c in _COLOURS[i % len(_COLOURS)])
                ax.plot(xs, ys, marker="o", label=name, color=colour)
        ticks = sorted({x for _, xs, _ in lines for x in xs})
        if ticks:
            ax.set_xticks(ticks)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _sweep_pil(panels, series, title, xlabel) -> bytes:
    from PIL import Image, ImageDraw

    pw, ph, top = 380, 380, 60
    W, H = 80 + len(panels) * (pw + 110), 520
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.text((20, 10), title, fill="black")
    for k, ((label, _), lines) in enumerate(zip(panels, series)):
        left = 80 + k * (pw + 110)
        xs_all = [x for _, xs, _ in lines for x in xs] or [0, 1]
        ys_all = [y for _, _, ys in lines for y in ys] or [1.0]
        x0, x1 = min(xs_all), max(xs_all)
        x1 = x1 if x1 > x0 else x0 + 1
        ymax = max(ys_all) * 1.1 or 1.0
        d.text((left, top - 25), label, fill="black")
        d.line([(left, top), (left, top + ph), (left + pw, top + ph)], fill="black")
        d.text((left - 60, top - 6), f"{ymax:.0f}", fill="black")
        d.text((left - 20, top + ph - 6), "0", fill="black")
        d.text((left + pw // 2 - 20, top + ph + 20), xlabel, fill="black")

        def pt(x, y):
            return left + pw * (x - x0) / (x1 - x0), top + ph * (1 - y / ymax)

        for v in sorted(set(xs_all)):
            px, _ = pt(v, 0)
            d.text((px - 4, top + ph + 4), str(v), fill="black")
        for i, (name, xs, ys) in enumerate(lines):
            colour = _COLOURS[i % len(_COLOURS)]
            points = [pt(x, y) for x, y in zip(xs, ys)]
            if len(points) > 1:
                d.line(points, fill=colour, width=2)
            for px, py in points:
                d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
            d.text((left + 10, top + 10 + 16 * i), name, fill=colour)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------


def write_json(result, path: str, overwrite: bool = False) -> None:
    text = json.dumps(result_to_dict(result), indent=2, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"), overwrite)


def write_markdown(result, path: str, overwrite: bool = False) -> None:
    atomic_write_bytes(path, markdown_report(result).encode("utf-8"), overwrite)


def write_plot(result, path: str, overwrite: bool = False, backend: str = "auto") -> None:
    atomic_write_bytes(path, plot_speedups(result, backend), overwrite)
