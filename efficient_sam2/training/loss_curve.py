"""The loss curve of shortcut training: a CSV table with one row per loss term and a PNG plot.

The plot uses matplotlib when it is installed and otherwise draws the same chart with PIL, so matplotlib is never a
requirement.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Sequence

from .files import atomic_open

__all__ = ["LOSS_COLUMNS", "moving_average", "write_loss_csv", "read_loss_csv", "plot_loss_curve"]

LOSS_COLUMNS = ("term", "update", "epoch", "video", "frame", "object", "memory_stride", "loss", "moving_average")
"""term: 1-based index of the loss term; update: the optimizer update it contributes to (1-based); epoch: 0-based;
video, frame, object: where it was measured; memory_stride: the epoch's memory stride; loss: the per-object MSE
between the student's and the teacher's memory-conditioned features; moving_average: trailing mean of `loss` over
the last `window` terms (the update stride)."""


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over the last `window` values (fewer at the start)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def write_loss_csv(path: str | os.PathLike, rows: Sequence[Sequence], window: int) -> None:
    """Write the loss history (rows of term, update, epoch, video, frame, object, memory_stride, loss) atomically,
    adding the moving-average column."""
    avg = moving_average([float(r[7]) for r in rows], window)
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LOSS_COLUMNS)
        for r, a in zip(rows, avg):
            writer.writerow([*r[:7], repr(float(r[7])), repr(a)])


def read_loss_csv(path: str | os.PathLike) -> list[dict]:
    """The rows of a loss CSV as dicts (numbers converted)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    ints = ("term", "update", "epoch", "frame", "object", "memory_stride")
    for r in rows:
        for k in ints:
            r[k] = int(r[k])
        r["loss"] = float(r["loss"])
        r["moving_average"] = float(r["moving_average"])
    return rows


def plot_loss_curve(
    path: str | os.PathLike,
    losses: Sequence[float],
    window: int,
    title: str = "shortcut training loss",
    backend: str = "auto",
) -> str:
    """Plot the per-term losses and their moving average to a PNG, atomically.

    backend: "matplotlib", "pil", or "auto" (matplotlib if importable, else PIL). Returns the backend used.
    """
    if backend not in ("auto", "matplotlib", "pil"):
        raise ValueError(f"backend must be 'auto', 'matplotlib' or 'pil', got {backend!r}")
    avg = moving_average(list(losses), window) if losses else []
    if backend in ("auto", "matplotlib"):
        try:
            _plot_matplotlib(path, losses, avg, window, title)
            return "matplotlib"
        except ImportError:
            if backend == "matplotlib":
                raise
    _plot_pil(path, losses, avg, window, title)
    return "pil"


def _plot_matplotlib(path, losses, avg, window, title) -> None:
    # the object-oriented API with an Agg canvas: no pyplot global state, no display needed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = list(range(1, len(losses) + 1))
    if losses:
        ax.plot(x, losses, color="0.7", linewidth=0.8, marker=".", markersize=3, label="loss per term")
        ax.plot(x, avg, color="tab:blue", linewidth=2.0, label=f"moving average ({window} terms)")
        ax.legend(loc="upper right")
    else:
        ax.text(0.5, 0.5, "no loss term yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("loss term")
    ax.set_ylabel("MSE of memory-conditioned features")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.ceil(lo / step) * step
    ticks, v = [], start
    while v <= hi + 1e-12 * abs(hi):
        ticks.append(v)
        v += step
    return ticks


def _plot_pil(path, losses, avg, window, title) -> None:
    from PIL import Image, ImageDraw

    W, H = 800, 480
    left, right, top, bottom = 80, 20, 40, 50
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    pw, ph = W - left - right, H - top - bottom
    d.rectangle([left, top, left + pw, top + ph], outline=(0, 0, 0))
    d.text((left, 12), title, fill=(0, 0, 0))
    d.text((left + pw // 2 - 30, H - 22), "loss term", fill=(0, 0, 0))
    d.text((4, top - 16), "MSE", fill=(0, 0, 0))
    if not losses:
        d.text((left + pw // 2 - 50, top + ph // 2), "no loss term yet", fill=(0, 0, 0))
    else:
        finite = [v for v in list(losses) + list(avg) if math.isfinite(v)]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5 * (abs(lo) or 1.0), hi + 0.5 * (abs(hi) or 1.0)
        pad = 0.05 * (hi - lo)
        lo, hi = lo - pad, hi + pad
        n = len(losses)

        def xy(i: int, v: float) -> tuple[float, float]:
            x = left + (pw * (i / (n - 1)) if n > 1 else pw / 2)
            y = top + ph * (1 - (v - lo) / (hi - lo))
            return x, y

        for t in _nice_ticks(lo, hi):
            _, y = xy(0, t)
            d.line([left - 4, y, left, y], fill=(0, 0, 0))
            d.line([left + 1, y, left + pw - 1, y], fill=(230, 230, 230))
            d.text((4, y - 6), f"{t:.3g}", fill=(0, 0, 0))
        for t in _nice_ticks(1, n):
            if n > 1:
                x, _ = xy(int(round(t)) - 1, lo)
                d.line([x, top + ph, x, top + ph + 4], fill=(0, 0, 0))
                d.text((x - 8, top + ph + 8), f"{int(round(t))}", fill=(0, 0, 0))
        raw = [xy(i, v) for i, v in enumerate(losses) if math.isfinite(v)]
        if len(raw) > 1:
            d.line(raw, fill=(180, 180, 180), width=1)
        for x, y in raw:
            d.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(150, 150, 150))
        curve = [xy(i, v) for i, v in enumerate(avg) if math.isfinite(v)]
        if len(curve) > 1:
            d.line(curve, fill=(31, 119, 180), width=3)
        d.line([left + pw - 210, top + 14, left + pw - 190, top + 14], fill=(31, 119, 180), width=3)
        d.text((left + pw - 185, top + 8), f"moving average ({window} terms)", fill=(0, 0, 0))
        d.line([left + pw - 210, top + 30, left + pw - 190, top + 30], fill=(180, 180, 180), width=1)
        d.text((left + pw - 185, top + 24), "loss per term", fill=(0, 0, 0))
    with atomic_open(path, "wb") as f:
        img.save(f, format="PNG")
