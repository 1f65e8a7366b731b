"""Accuracy benchmark: J&F of dense SAM 2 and of every Efficient-SAM2 configuration on the same held-out videos.

    from efficient_sam2.bench.accuracy import AccuracySettings, run_accuracy

    result = run_accuracy(AccuracySettings(data="data/val", output="acc", videos_per_subset=3))
    print(result.markdown())        # also written to acc/accuracy.md and acc/accuracy.json

For every selected video, every configuration tracks the objects of the first annotated frame (the `vos` protocol:
`inference.vos.segment_video`, no interactive post-processing) and writes the palette PNGs `vos` writes into
``<output>/predictions/<config>/``. The configurations take turns video by video, in an order rotated from one video
to the next, so that a busy machine slows them all alike. Only tracking is timed (opening the video state, the mask
prompt and propagation, including frame decoding, which is the same for every configuration; not the PNG writing),
with the wall clock and this process's CPU time. Then `evaluation.vos.evaluate_vos` (what `eval` computes) scores
every configuration against ``<output>/ground_truth/`` (links to the annotations of the scored videos), so that

    efficient-sam2 eval --gt-dir OUT/ground_truth --pred-dir OUT/predictions/dense

gives the dense row again. Per configuration, overall and per stress subset (from the synthetic data's meta.json or
the video name ``<subset>_<index>``): J&F, J, F (means over objects, as `eval`), the difference to dense, the mean
kept-window fraction (over tracked frames; dense frames count 1), the mean kept memory fraction (over frames with
memory attention), the saliency-fallback rate (fallbacks per routed frame), ms per tracked frame and the speed-up
over dense (dense tracking time / the configuration's, summed over the same videos).

A video on which any configuration fails is left out of every configuration's scores (and listed), so that every
row is measured on the same videos.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..efficient.config import SHORTCUT_VARIANTS, EfficientConfig
from ..io.atomic import atomic_open, check_output_folder
from .common import BenchError, environment
from .flops import IDEAL_MODELS, ideal_speedups

__all__ = [
    "ACCURACY_CONFIGS",
    "AccuracyConfig",
    "AccuracyError",
    "AccuracySettings",
    "AccuracyResult",
    "find_dataset",
    "run_accuracy",
]

RESULT_FILES = ("accuracy.json", "accuracy.md")
PREDICTIONS = "predictions"
GROUND_TRUTH = "ground_truth"
OTHER_SUBSET = "other"


class AccuracyError(BenchError):
    """Settings, data or outputs of the accuracy benchmark that cannot be used."""


@dataclass(frozen=True)
class AccuracyConfig:
    """One configuration: what it is, the EfficientConfig changes (None = dense `VideoPredictor`), whether its SWR
    shortcut is the trained one (the given or bundled shortcut file) and where the paper reports it.

    base: "paper" builds on `EfficientConfig.paper()`, "default" on today's defaults; beyond: options beyond the
    paper taken at their default values (so that a row shows what one of them adds to the paper)."""

    description: str
    efficient: dict | None = None
    trained_shortcut: bool = True
    paper: str = ""
    base: str = "paper"
    beyond: tuple[str, ...] = ()


ACCURACY_CONFIGS: dict[str, AccuracyConfig] = {
    "dense": AccuracyConfig("dense SAM 2 (VideoPredictor)", None, paper="Table 1 'Original'"),
    "swr-identity": AccuracyConfig("SWR, identity shortcut, SMR off", dict(smr=False, shortcut="identity"),
                                   trained_shortcut=False, paper="Table 3 'Identity'"),
    "swr": AccuracyConfig("SWR, trained shortcut, SMR off", dict(smr=False), paper="Table 1 'SWR'"),
    "swr-chosen-mask": AccuracyConfig("SWR routed from the chosen mask only (not all 3 outputs), SMR off",
                                      dict(smr=False, all_masks=False), paper="Table 4, All Pred. off"),
    "swr-no-dilation": AccuracyConfig("SWR without mask dilation, SMR off", dict(smr=False, dilation=1),
                                      paper="Table 4, Dilation off"),
    "smr": AccuracyConfig("SMR top-k (first-recollection saliency), SWR off", dict(swr=False),
                          paper="Table 1 'SMR'"),
    "smr-random": AccuracyConfig("SMR, random tokens, SWR off", dict(swr=False, memory_selection="random"),
                                 paper="Table 1 'SMR-random'"),
    "smr-uniform": AccuracyConfig("SMR, uniformly spaced tokens, SWR off", dict(swr=False, memory_selection="uniform"),
                                  paper="Table 1 'SMR-uniform'"),
    "mempool": AccuracyConfig("MemPool baseline (2x2 pooled memory), SWR off",
                              dict(swr=False, memory_selection="mempool"), paper="Table 1 'MemPool'"),
    "paper": AccuracyConfig("Efficient-SAM2 as in the paper (EfficientConfig.paper()): SWR + SMR top-k", dict(),
                            paper="Table 1 'Efficient-SAM2'"),
    "paper+mass": AccuracyConfig("the paper + SMR keeping tokens by attention mass (memory_mass)", dict(),
                                 beyond=("memory_mass",)),
    "paper+change": AccuracyConfig("the paper + SWR change windows (change_threshold)", dict(),
                                   beyond=("change_threshold",)),
    "paper+cut": AccuracyConfig("the paper + dense frames at scene cuts (scene_cut)", dict(), beyond=("scene_cut",)),
    "paper+relative": AccuracyConfig("the paper + a fallback threshold relative to the object's scores "
                                     "(theta_relative)", dict(), beyond=("theta_relative",)),
    "paper+guard": AccuracyConfig("the paper + a dense frame after a fast or accumulated mask change (guard, "
                                  "drift_guard)", dict(), beyond=("guard", "drift_guard")),
    "efficient+backoff": AccuracyConfig("the defaults + dense stretches where the guards keep firing (backoff 0.5)",
                                        dict(backoff=0.5), base="default"),
    "paper+guard-tolerant": AccuracyConfig("the paper + the guards, blind to 1-pixel boundary jitter of the masks "
                                           "(guard, drift_guard, guard_tolerance 1)", dict(guard_tolerance=1),
                                           beyond=("guard", "drift_guard")),
    "paper+guard-sparse-memory": AccuracyConfig("the paper + the guards, their dense frames keeping SMR (guard, "
                                                "drift_guard, guard_sparse_memory)",
                                                dict(guard_sparse_memory=True), beyond=("guard", "drift_guard")),
    "paper+dense-fallback": AccuracyConfig("the paper + dense frames instead of the saliency fallback "
                                           "(dense_fallback, theta_relative)", dict(),
                                           beyond=("dense_fallback", "theta_relative")),
    "efficient-1207": AccuracyConfig("the defaults of 2026-12-07 (guards 0.2 running whole frames dense, no "
                                     "carried-over residuals, no global context)",
                                     dict(reuse_residuals=False, global_context=False, guard_memory_only=False,
                                          guard=0.2, drift_guard=0.2), base="default"),
    "paper+reuse": AccuracyConfig("the paper + background windows from their own carried-over residual "
                                  "(reuse_residuals)", dict(), beyond=("reuse_residuals",)),
    "paper+context": AccuracyConfig("the paper + carried-over residuals + kept windows attending to the "
                                    "background (reuse_residuals, global_context)", dict(),
                                    beyond=("reuse_residuals", "global_context")),
    "paper+object-tokens": AccuracyConfig("the paper + SMR keeping every memory token under the object's mask "
                                          "(memory_object_tokens)", dict(), beyond=("memory_object_tokens",)),
    "efficient-1208": AccuracyConfig("the defaults of the late night of 2026-12-07 (memory-only guards 0.3, no "
                                     "object tokens, no change windows)",
                                     dict(memory_object_tokens=False, change_threshold=None, guard=0.3,
                                          drift_guard=0.3), base="default"),
    "efficient": AccuracyConfig("Efficient-SAM2 with this package's defaults (EfficientConfig())", dict(),
                                base="default"),
    "efficient+summary": AccuracyConfig("the defaults + SMR reading the tokens it leaves out of every 4 x 4 block "
                                        "of a memory frame as one count-weighted mean (memory_summary 4)",
                                        dict(memory_summary=4), base="default"),
    "efficient-no-guards+summary": AccuracyConfig(
        "the defaults without guards + memory summaries of 4 x 4 blocks",
        dict(guard=None, drift_guard=None, guard_memory_only=False, memory_summary=4), base="default"),
    "efficient+per-object-guards": AccuracyConfig(
        "the defaults with guards per object: only the objects whose mask changed read every memory token "
        "(guard_per_object)", dict(guard_per_object=True), base="default"),
    "efficient-no-guards": AccuracyConfig("the defaults without guards",
                                          dict(guard=None, drift_guard=None, guard_memory_only=False),
                                          base="default"),
}


DEFAULT_CONFIGS = ("dense", "swr", "smr", "paper", "paper+mass", "paper+change", "paper+cut", "paper+relative",
                   "paper+guard", "paper+dense-fallback", "efficient")
"""What `bench --accuracy` and `bench --fidelity` run without --configs (the other rows of ACCURACY_CONFIGS on
request)."""


def check_configs(configs, error: type[Exception]) -> tuple[str, ...]:
    """The names of ACCURACY_CONFIGS asked for, in order, blanks and repeats dropped, "dense" (the reference of
    every comparison) first; raises `error` naming the valid ones for an unknown name."""
    names = []
    for name in (c.strip() for c in configs):
        if not name:
            continue
        if name not in ACCURACY_CONFIGS:
            raise error(f"unknown configuration {name!r}; valid configurations: {', '.join(ACCURACY_CONFIGS)}")
        if name not in names:
            names.append(name)
    if "dense" not in names:
        names.insert(0, "dense")
    return tuple(names)


def efficient_config_of(name: str, seed: int = 0, kept_windows: float | None = None, tau: float | None = None,
                        sparsity: float | None = None, shortcut: str | None = None) -> EfficientConfig | None:
    """The EfficientConfig of ACCURACY_CONFIGS[`name`] with a run's overrides (None: dense)."""
    spec = ACCURACY_CONFIGS[name]
    if spec.efficient is None:
        return None
    defaults = EfficientConfig()
    options = {k: getattr(defaults, k) for k in spec.beyond}
    options.update(spec.efficient, seed=seed)
    swr, smr = options.get("swr", True), options.get("smr", True)
    if swr and kept_windows is not None:
        options["kept_windows"] = kept_windows
    if swr and tau is not None:
        options["tau"] = tau
    if smr and sparsity is not None:
        options["sparsity"] = sparsity
    if swr and spec.trained_shortcut and shortcut is not None:
        options["shortcut"] = shortcut
    return EfficientConfig.paper(**options) if spec.base == "paper" else EfficientConfig(**options)


# ----------------------------------------------------------------------------------------------------------------
# Settings and data
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AccuracySettings:
    """What to measure. See `efficient-sam2 bench --accuracy --help`.

    data: a DAVIS-layout dataset root (``JPEGImages/<res>/<video>/``, ``Annotations/<res>/<video>/``), e.g. the
    output of `efficient-sam2 synth`; output: a new (or empty) folder. configs: names of ACCURACY_CONFIGS ("dense"
    is always added). subsets: None = every subset of the data; videos_per_subset: None = all, else the first N
    of each subset by name. kept_windows / sparsity / tau / shortcut override the paper's settings of the
    configurations they apply to (kept_windows forces the kept fraction on routed frames; shortcut: the variant of
    the trained shortcut). weights: passed to the builder when given ("random", "bundled"). precision: as `vos`.
    """

    data: str
    output: str
    model: str = "micro"
    checkpoint: str | None = None
    weights: str | None = None
    shortcut_checkpoint: str | None = None
    image_size: int | None = None
    device: str = "cpu"
    precision: str = "auto"
    configs: tuple[str, ...] = DEFAULT_CONFIGS
    subsets: tuple[str, ...] | None = None
    videos_per_subset: int | None = None
    resolution: str | None = None
    kept_windows: float | None = None
    sparsity: float | None = None
    tau: float | None = None
    shortcut: str | None = None
    seed: int = 0
    threads: int | None = None
    clock: str = "wall"
    warmup: int = 1
    overwrite: bool = False
    eval_workers: int | None = None

    def validate(self) -> "AccuracySettings":
        """Check everything that can be checked before the model is built; returns self (configs normalised)."""
        self.configs = check_configs(self.configs, AccuracyError)
        if self.videos_per_subset is not None and self.videos_per_subset < 1:
            raise AccuracyError(f"--videos-per-subset must be at least 1, got {self.videos_per_subset}")
        if self.clock not in ("wall", "cpu"):
            raise AccuracyError(f"--clock must be wall or cpu, got {self.clock!r}")
        if self.warmup < 0:
            raise AccuracyError(f"--warmup must be >= 0, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise AccuracyError(f"--threads must be >= 1, got {self.threads}")
        if self.shortcut is not None and self.shortcut not in SHORTCUT_VARIANTS:
            raise AccuracyError(f"--shortcut must be one of {', '.join(SHORTCUT_VARIANTS)}, got {self.shortcut!r}")
        for what, path in (("checkpoint", self.checkpoint), ("shortcut checkpoint", self.shortcut_checkpoint)):
            if path is not None and not os.path.isfile(path):
                raise AccuracyError(f"{what} file not found: {path}")
        from ..configs import resolve_model_name
        from ..inference.common import PRECISIONS

        try:
            resolve_model_name(self.model)
        except (TypeError, ValueError) as exc:
            raise AccuracyError(str(exc)) from None
        if self.precision not in PRECISIONS:
            raise AccuracyError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        try:
            for name in self.configs:
                self.efficient_config(name)
        except ValueError as exc:
            raise AccuracyError(str(exc)) from None
        try:
            check_output_folder(self.output, self.overwrite, "output folder")
        except FileExistsError as exc:
            raise AccuracyError(str(exc)) from None
        return self

    def efficient_config(self, name: str) -> EfficientConfig | None:
        """The EfficientConfig of configuration `name` with this run's overrides (None: dense)."""
        return efficient_config_of(name, self.seed, self.kept_windows, self.tau, self.sparsity, self.shortcut)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class DatasetSelection:
    """The videos measured: where they are, and the stress subset of each (in the order they are run)."""

    root: str
    video_dir: str
    mask_dir: str
    videos: list[str]
    subset_of: dict[str, str]

    @property
    def subsets(self) -> list[str]:
        return list(dict.fromkeys(self.subset_of[v] for v in self.videos))


def _subset_names() -> tuple[str, ...]:
    from ..data import SUBSET_NAMES

    return SUBSET_NAMES


def _subset_from_name(video: str) -> str:
    match = re.fullmatch(r"(.+)_\d+", video)
    return match.group(1) if match and match.group(1) in _subset_names() else OTHER_SUBSET


def find_dataset(data: str, resolution: str | None = None, subsets=None,
                 videos_per_subset: int | None = None) -> DatasetSelection:
    """The videos of a DAVIS-layout dataset root to measure (see AccuracySettings); clear errors for folders that
    cannot be used (no frames, no annotations, annotations of the first frame only, unknown subsets)."""
    root = os.fspath(data)
    if not os.path.isdir(root):
        raise AccuracyError(f"data folder not found: {root}")
    meta = {}
    try:
        with open(os.path.join(root, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        pass
    layout = meta.get("layout") if isinstance(meta.get("layout"), dict) else {}
    frames_root = os.path.join(root, "JPEGImages")
    if not os.path.isdir(frames_root):
        raise AccuracyError(f"{root} is not a DAVIS-layout dataset: no JPEGImages folder (write one with "
                            "`efficient-sam2 synth --out DIR --split val ...`)")
    if resolution is None and layout.get("frames"):
        resolution = os.path.basename(os.path.normpath(layout["frames"]))
    if resolution is None:
        found = sorted(e.name for e in os.scandir(frames_root) if e.is_dir() and not e.name.startswith("."))
        if len(found) == 1:
            resolution = found[0]
        elif "480p" in found:
            resolution = "480p"
        else:
            raise AccuracyError(f"{frames_root} holds {', '.join(found) or 'no resolution folder'}: choose one with "
                                "--resolution")
    video_dir = os.path.join(frames_root, resolution)
    mask_dir = os.path.join(root, "Annotations", resolution)
    if not os.path.isdir(video_dir):
        raise AccuracyError(f"no frames folder {video_dir}")
    if not os.path.isdir(mask_dir):
        raise AccuracyError(f"{root} has no annotations: {mask_dir} is missing. The accuracy benchmark scores "
                            "predictions against ground truth, so it needs annotated frames beyond the first")
    videos = sorted(e.name for e in os.scandir(video_dir) if e.is_dir() and not e.name.startswith("."))
    if not videos:
        raise AccuracyError(f"no video folders in {video_dir}")
    subset_of = {v["name"]: v["subset"] for v in meta.get("videos", []) if isinstance(v, dict)
                 and "name" in v and "subset" in v}
    subset_of = {v: subset_of.get(v) or _subset_from_name(v) for v in videos}
    present = list(dict.fromkeys(s for s in _subset_names() if s in subset_of.values()))
    present += sorted(set(subset_of.values()) - set(present))
    if subsets is None:
        chosen = present
    else:
        chosen = list(dict.fromkeys(subsets))
        unknown = [s for s in chosen if s not in present]
        if unknown:
            raise AccuracyError(f"subset(s) {', '.join(unknown)} have no video in {video_dir}; its subsets: "
                                f"{', '.join(present)}")
    selected = []
    for s in chosen:
        of_subset = [v for v in videos if subset_of[v] == s]
        selected += of_subset[:videos_per_subset] if videos_per_subset else of_subset
    for v in selected:
        folder = os.path.join(mask_dir, v)
        pngs = [n for n in os.listdir(folder) if n.lower().endswith(".png")] if os.path.isdir(folder) else []
        if not pngs:
            raise AccuracyError(f"video {v!r} has no annotations in {folder}")
        if len(pngs) < 3:
            raise AccuracyError(
                f"video {v!r} has {len(pngs)} annotated frame(s) in {folder}: J&F skips the first and the last "
                "annotated frame (the DAVIS protocol), so at least 3 are needed; validation sets that annotate "
                "only the first frame cannot be scored")
    return DatasetSelection(root, video_dir, mask_dir, selected, {v: subset_of[v] for v in selected})


# ----------------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------------


class _TimedPredictor:
    """A video predictor seen through a stopwatch: the tracking calls `segment_video` makes are timed (wall and
    this process's CPU time), what it does with the results (PNG writing) is not; the efficiency statistics of
    every propagation are kept."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self.sync = predictor.device.type == "cuda"
        self.wall = self.cpu = 0.0
        self.stats: list[dict] = []
        if getattr(predictor, "efficient", None) is not None:  # dense predictors report no statistics
            self.statistics = self._statistics

    @property
    def image_size(self) -> int:
        return self.predictor.image_size

    @property
    def device(self):
        return self.predictor.device

    def _start(self) -> tuple[float, float]:
        if self.sync:
            torch.cuda.synchronize(self.device)
        return time.perf_counter(), time.process_time()

    def _stop(self, start: tuple[float, float]) -> None:
        if self.sync:
            torch.cuda.synchronize(self.device)
        self.wall += time.perf_counter() - start[0]
        self.cpu += time.process_time() - start[1]

    def _timed(self, fn, *args, **kwargs):
        start = self._start()
        try:
            return fn(*args, **kwargs)
        finally:
            self._stop(start)

    def init_state(self, frames, **kwargs):
        return self._timed(self.predictor.init_state, frames, **kwargs)

    def reset_state(self, state):
        return self._timed(self.predictor.reset_state, state)

    def add_new_mask(self, state, frame_idx, obj_id, mask):
        return self._timed(self.predictor.add_new_mask, state, frame_idx, obj_id, mask)

    def propagate_in_video(self, state, **kwargs):
        steps = self.predictor.propagate_in_video(state, **kwargs)
        try:
            while True:
                start = self._start()
                try:
                    item = next(steps)
                except StopIteration:
                    return
                finally:
                    self._stop(start)
                yield item
        finally:
            steps.close()

    def _statistics(self, state):
        stats = self.predictor.statistics(state)
        if stats is not None:
            self.stats.append({"kept_windows": list(stats.kept_windows.values()),
                               "kept_memory": list(stats.kept_memory.values()),
                               "fallbacks": len(stats.saliency_fallbacks), "routed_frames": stats.routed_frames})
        return stats


# ----------------------------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AccuracyResult:
    """Everything measured. `configs[name]["overall"]` and `configs[name]["subsets"][subset]` hold J&F, J, F,
    delta_JF (to dense), objects, videos, frames, kept_window_fraction, kept_memory_fraction,
    saliency_fallback_rate, ms_per_frame (of `clock`), wall_s, cpu_s and speedup (over dense); `videos[name][video]`
    the same per video."""

    settings: dict
    command: str | None
    environment: dict
    model: dict
    data: dict
    configs: dict[str, dict]
    videos: dict[str, dict[str, dict]]
    failures: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    clock: str = "wall"
    files: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def to_dict(self) -> dict:
        return {"command": self.command, "settings": self.settings, "environment": self.environment,
                "model": self.model, "data": self.data, "clock": self.clock, "configs": self.configs,
                "videos": self.videos, "failures": self.failures, "notes": self.notes, "files": self.files}

    def markdown(self) -> str:
        return _markdown(self)


def _fmt(x, spec: str = ".1f", signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return format(x, ("+" if signed else "") + spec)


def _row(name: str, s: dict, first: str | None = None) -> str:
    cells = [first if first is not None else f"`{name}`", _fmt(s["JF"]),
             "" if name == "dense" else _fmt(s["delta_JF"], signed=True), _fmt(s["J"]), _fmt(s["F"]),
             _fmt(s["kept_window_fraction"], ".3f"), _fmt(s["kept_memory_fraction"], ".3f"),
             _fmt(s["saliency_fallback_rate"], ".3f"), _fmt(s["ms_per_frame"]), _fmt(s["speedup"], ".2f") + "×"]
    if "fidelity" in s:
        ideal = s["ideal_speedup"]
        cells[5:5] = [_fmt(s["fidelity"]["JF"]), _fmt(s["fidelity_worst_video_JF"])]
        cells += [_fmt(ideal.get(m), ".2f") + "×" for m in IDEAL_MODELS]
    return "| " + " | ".join(cells) + " |"


_HEADER = ("| {first} | J&F | ΔJ&F | J | F | fidelity J&F | worst video fidelity | kept windows | kept memory | "
           "fallback rate | ms/frame | speed-up | ideal large | ideal base+ |\n"
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def _markdown(r: AccuracyResult) -> str:
    m, d = r.model, r.data
    lines = [
        f"### Accuracy: {m['name']} at {m['image_size']} px, {d['num_videos']} video{'s' * (d['num_videos'] != 1)} "
        f"({', '.join(f'{s} {len(v)}' for s, v in d['subsets'].items())})",
        "",
        f"Weights: {m['weights']}; trained shortcut: {m['shortcut']}. J&F, J, F in percent (`eval`'s protocol); "
        f"ΔJ&F = configuration - dense; kept windows / memory = mean fraction computed / read; fallback rate = "
        f"saliency fallbacks per routed frame; ms/frame and speed-up over dense: {r.clock} time of tracking only, "
        f"configurations interleaved per video. Fidelity J&F = J&F of the configuration's masks against dense SAM "
        f"2's masks (100 = the same masks), overall and of the worst video; ideal large / base+ = FLOP-ideal "
        f"end-to-end speed-up of a tracked frame of SAM 2.1 large / base_plus at 1024 px at the kept fractions "
        f"measured here.",
        "",
        _HEADER.format(first="configuration"),
    ]
    lines += [_row(name, c["overall"]) for name, c in r.configs.items()]
    subsets = list(d["subsets"])
    lines += ["", "J&F (ΔJ&F) per stress subset:", "",
              "| configuration | " + " | ".join(subsets) + " |", "|---|" + "---:|" * len(subsets)]
    for name, c in r.configs.items():
        cells = []
        for s in subsets:
            x = c["subsets"][s]
            cells.append(_fmt(x["JF"]) + ("" if name == "dense" else f" ({_fmt(x['delta_JF'], signed=True)})"))
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += ["", "Fidelity J&F to dense SAM 2 (worst video) per subset:", "",
              "| configuration | " + " | ".join(subsets) + " |", "|---|" + "---:|" * len(subsets)]
    for name, c in r.configs.items():
        cells = [f"{_fmt(c['subsets'][s]['fidelity']['JF'])} ({_fmt(c['subsets'][s]['fidelity_worst_video_JF'])})"
                 for s in subsets]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += ["", "Per subset and configuration:", "", _HEADER.format(first="subset / configuration")]
    for s in subsets:
        lines += [_row(name, c["subsets"][s], f"{s} / `{name}`") for name, c in r.configs.items()]
    if r.failures:
        lines += ["", f"Left out of every score ({len(r.failures)} failure(s)):"]
        lines += [f"- {f['video']} ({f['config']}): {f['error']}" for f in r.failures]
    if r.notes:
        lines += [""] + [f"Note: {n}" for n in r.notes]
    if r.command:
        lines += ["", f"Command: `{r.command}`"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------


def _build(settings: AccuracySettings, notes: list[str]) -> tuple[dict, dict]:
    """{config: predictor} sharing one model (it is stateless), and the model's description."""
    from .. import build as builder
    from ..predictors.efficient_video import EfficientVideoPredictor

    # VOS evaluation (accuracy) runs without post-processing, as Meta's vos_inference does; fidelity defaults to
    # the settings `track`, `stream` and `serve` use (post-processing on: stability fallback, holes filled)
    post = bool(getattr(settings, "postprocessing", False))
    kwargs = dict(apply_postprocessing=post, non_overlap_masks=False)
    if settings.image_size is not None:
        kwargs["image_size"] = int(settings.image_size)
    if settings.weights is not None:
        kwargs["weights"] = settings.weights
    dense = builder.build_sam2_video_predictor(settings.model, settings.checkpoint, device=settings.device, **kwargs)
    model = dense.model
    source = getattr(model, "weights_source", "checkpoint" if settings.checkpoint else "random")
    shortcut = settings.shortcut_checkpoint
    if shortcut is None and source == "bundled" and getattr(builder, "bundled_shortcut", None) is not None:
        path = builder.bundled_shortcut(settings.model)
        shortcut = path if path and os.path.isfile(path) else None
    predictors, untrained = {}, []
    for name in settings.configs:
        eff = settings.efficient_config(name)
        if eff is None:
            predictors[name] = dense
            continue
        trained = ACCURACY_CONFIGS[name].trained_shortcut and eff.swr
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="no shortcut checkpoint given")
            predictors[name] = EfficientVideoPredictor(model, efficient=eff, fill_hole_area=dense.fill_hole_area,
                                                       shortcut_checkpoint=shortcut if trained else None)
        if trained and predictors[name].shortcut_info.get("source") == "untrained":
            untrained.append(name)
    if untrained:
        notes.append(f"no trained shortcut (give --shortcut-checkpoint): {', '.join(untrained)} ran with an untrained "
                     "shortcut, which starts close to identity")
    described = {"name": model.cfg.name, "image_size": model.image_size, "checkpoint": settings.checkpoint,
                 "weights": settings.checkpoint or source, "weights_source": source,
                 "shortcut": shortcut or ("none (untrained)" if untrained else "not used"),
                 "parameters": sum(p.numel() for p in model.parameters())}
    return predictors, described


def _ground_truth(selection: DatasetSelection, videos: list[str], folder: str) -> None:
    """`folder`/<video> for each scored video: a link to its annotation folder (a copy where links fail); entries
    this function made earlier for other videos are removed."""
    os.makedirs(folder, exist_ok=True)
    for e in os.scandir(folder):
        if e.is_symlink():
            os.remove(e.path)
        elif e.is_dir() and os.path.isdir(os.path.join(selection.mask_dir, e.name)):  # a copy made earlier
            shutil.rmtree(e.path)
    for v in videos:
        src, dst = os.path.abspath(os.path.join(selection.mask_dir, v)), os.path.join(folder, v)
        try:
            os.symlink(src, dst, target_is_directory=True)
        except OSError:
            shutil.copytree(src, dst)


def _score(objects) -> dict:
    """J, F, J&F of object rows, as `evaluate_vos` computes its global scores (means over objects)."""
    if not objects:
        return {"JF": math.nan, "J": math.nan, "F": math.nan, "objects": 0}
    J, F = float(np.mean([o.J for o in objects])), float(np.mean([o.F for o in objects]))
    return {"JF": (J + F) / 2, "J": J, "F": F, "objects": len(objects)}


def _efficiency(runs: list[dict], efficient: bool) -> dict:
    """Kept fractions and fallback rate over the runs (dicts of `_TimedPredictor.stats` lists merged per video)."""
    if not efficient:
        return {"kept_window_fraction": 1.0, "kept_memory_fraction": 1.0, "saliency_fallback_rate": None}
    kw = [x for r in runs for x in r["kept_windows"]]
    km = [x for r in runs for x in r["kept_memory"]]
    routed = sum(r["routed_frames"] for r in runs)
    return {"kept_window_fraction": float(np.mean(kw)) if kw else 1.0,
            "kept_memory_fraction": float(np.mean(km)) if km else 1.0,
            "saliency_fallback_rate": sum(r["fallbacks"] for r in runs) / routed if routed else None}


def _summary(videos: list[str], name: str, scores: dict, runs: dict, clock: str, efficient: EfficientConfig | None,
             fidelity: dict | None = None) -> dict:
    """The scores, efficiency and timing of configuration `name` over `videos`; with `fidelity`, the J&F of its
    masks against dense SAM 2's (overall and of the worst video) and the FLOP-ideal speed-ups its kept fractions
    give on the real models at 1024 px."""
    objects = [o for v in videos for o in scores[name].get(v, [])]
    mine = [runs[name][v] for v in videos]
    frames = sum(r["frames"] for r in mine)
    wall, cpu = sum(r["wall_s"] for r in mine), sum(r["cpu_s"] for r in mine)
    dense = {k: sum(runs["dense"][v][f"{k}_s"] for v in videos) for k in ("wall", "cpu")}
    own = {"wall": wall, "cpu": cpu}
    eff = _efficiency(mine, efficient)
    out = {**_score(objects), "videos": len(videos), "frames": frames, **eff,
           "wall_s": wall, "cpu_s": cpu, "ms_per_frame": 1000 * own[clock] / frames if frames else None,
           "speedup": dense[clock] / own[clock] if own[clock] > 0 else None}
    if fidelity is not None:
        fid = [o for v in videos for o in fidelity[name].get(v, [])]
        per_video = [_score(fidelity[name].get(v, []))["JF"] for v in videos]
        per_video = [x for x in per_video if math.isfinite(x)]
        out["fidelity"] = _score(fid)
        out["fidelity_worst_video_JF"] = min(per_video) if per_video else math.nan
        out["ideal_speedup"] = (ideal_speedups(eff["kept_window_fraction"], eff["kept_memory_fraction"],
                                               context=efficient.global_context, reuse=efficient.reuse_residuals)
                                if efficient is not None else {m: 1.0 for m in IDEAL_MODELS})
    return out


def _track(settings: AccuracySettings, selection: DatasetSelection, predictors: dict, out: str,
           progress: bool) -> tuple[dict[str, dict[str, dict]], list[dict]]:
    """Every configuration on every video, in turns (warm-up runs first, on the first video, untimed and thrown
    away). Returns ({config: {video: timing and efficiency}}, failures)."""
    from ..inference.vos import VOSProtocol, segment_video
    from ..io.datasets import VOSDataset

    dataset = VOSDataset("davis", selection.video_dir, selection.mask_dir, selection.videos)
    names = list(settings.configs)
    warm = selection.videos[:1] * settings.warmup
    runs: dict[str, dict[str, dict]] = {n: {} for n in names}
    failures: list[dict] = []
    bar = tqdm(total=(len(warm) + len(selection.videos)) * len(names), unit="run", desc="accuracy",
               disable=not progress)
    scratch = tempfile.mkdtemp(prefix=".warmup-", dir=out)
    try:
        for i, video in enumerate(warm + selection.videos):
            timed = i >= len(warm)
            for name in names[i % len(names):] + names[:i % len(names)]:  # the order rotates from video to video
                bar.set_postfix_str(f"{video} {name}", refresh=False)
                proxy = _TimedPredictor(predictors[name])
                target = os.path.join(out, PREDICTIONS, name) if timed else os.path.join(scratch, f"{name}-{i}")
                try:
                    res = segment_video(proxy, dataset, video, target, VOSProtocol(), overwrite=settings.overwrite,
                                        precision=settings.precision, progress=False)
                except Exception as exc:  # noqa: BLE001 - recorded; the video is left out of every score
                    if not timed:
                        raise AccuracyError(f"warm-up on {video!r} failed with {name!r}: {exc}") from exc
                    failures.append({"video": video, "config": name, "error": f"{type(exc).__name__}: {exc}",
                                     "traceback": traceback.format_exc()})
                else:
                    if timed:
                        runs[name][video] = {
                            "frames": res.frames, "wall_s": proxy.wall, "cpu_s": proxy.cpu,
                            "kept_windows": [x for st in proxy.stats for x in st["kept_windows"]],
                            "kept_memory": [x for st in proxy.stats for x in st["kept_memory"]],
                            "fallbacks": sum(st["fallbacks"] for st in proxy.stats),
                            "routed_frames": sum(st["routed_frames"] for st in proxy.stats),
                        }
                bar.update()
    finally:
        bar.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return runs, failures


def _evaluate(settings: AccuracySettings, gt: str, out: str) -> dict[str, dict[str, list]]:
    """{config: {video: [ObjectScore]}} from `evaluate_vos`, the evaluator of `eval`."""
    from ..evaluation.vos import evaluate_vos

    scores = {}
    for name in settings.configs:
        ev = evaluate_vos(gt, os.path.join(out, PREDICTIONS, name), layout="davis", progress=False,
                          num_workers=settings.eval_workers)
        if ev.failed or ev.missing or ev.missing_videos:
            raise AccuracyError(f"evaluating {name!r}: failed {ev.failed[:3]}, missing {ev.missing[:3]} "
                                f"{ev.missing_videos[:3]}")
        scores[name] = {}
        for o in ev.objects:
            scores[name].setdefault(o.video, []).append(o)
    return scores


def _fidelity(settings: AccuracySettings, out: str) -> dict[str, dict[str, list]]:
    """{config: {video: [ObjectScore]}}: every configuration's masks scored against dense SAM 2's masks."""
    from ..evaluation.vos import evaluate_vos

    dense = os.path.join(out, PREDICTIONS, "dense")
    scores = {}
    for name in settings.configs:
        ev = evaluate_vos(dense, os.path.join(out, PREDICTIONS, name), layout="davis", progress=False,
                          num_workers=settings.eval_workers)
        scores[name] = {}
        for o in ev.objects:
            scores[name].setdefault(o.video, []).append(o)
    return scores


def _tabulate(settings: AccuracySettings, predictors: dict, selection: DatasetSelection, scored: list[str],
              subsets: dict[str, list[str]], scores: dict, runs: dict, fidelity: dict) -> tuple[dict, dict]:
    """(configs, per-video) tables of the result, with the differences to dense on the same videos."""
    configs, per_video = {}, {}
    for name in settings.configs:
        eff = settings.efficient_config(name)
        args = (name, scores, runs, settings.clock, eff, fidelity)
        configs[name] = {"description": ACCURACY_CONFIGS[name].description, "paper": ACCURACY_CONFIGS[name].paper,
                         "efficient_config": eff.to_dict() if eff is not None else None,
                         "shortcut": getattr(predictors[name], "shortcut_info", None),
                         "overall": _summary(scored, *args),
                         "subsets": {s: _summary(vs, *args) for s, vs in subsets.items()}}
        per_video[name] = {v: {**_summary([v], *args), "subset": selection.subset_of[v]} for v in scored}
    dense, dense_videos = configs["dense"], per_video["dense"]
    for name in settings.configs:
        c = configs[name]
        c["overall"]["delta_JF"] = c["overall"]["JF"] - dense["overall"]["JF"]
        for s in subsets:
            c["subsets"][s]["delta_JF"] = c["subsets"][s]["JF"] - dense["subsets"][s]["JF"]
        for v in scored:
            per_video[name][v]["delta_JF"] = per_video[name][v]["JF"] - dense_videos[v]["JF"]
    return configs, per_video


def run_accuracy(settings: AccuracySettings, progress: bool = True, command: str | None = None) -> AccuracyResult:
    """Run every configuration on the selected videos, score them and write ``accuracy.json`` / ``accuracy.md``
    into `settings.output` (see the module docstring). Raises AccuracyError for unusable settings or data."""
    settings.validate()
    selection = find_dataset(settings.data, settings.resolution, settings.subsets, settings.videos_per_subset)
    out = os.path.abspath(settings.output)
    os.makedirs(out, exist_ok=True)
    threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    notes: list[str] = []
    try:
        predictors, model_info = _build(settings, notes)
        runs, failures = _track(settings, selection, predictors, out, progress)
        env = environment(torch.device(settings.device))  # (with the threads it ran with)
    finally:
        torch.set_num_threads(threads)
    failed = {f["video"] for f in failures}
    scored = [v for v in selection.videos if v not in failed]
    if not scored:
        raise AccuracyError("every video failed; first error: " + failures[0]["error"])
    gt = os.path.join(out, GROUND_TRUTH)
    _ground_truth(selection, scored, gt)
    scores = _evaluate(settings, gt, out)
    subsets = {s: [v for v in scored if selection.subset_of[v] == s] for s in selection.subsets}
    subsets = {s: vs for s, vs in subsets.items() if vs}
    fidelity = _fidelity(settings, out)
    configs, per_video = _tabulate(settings, predictors, selection, scored, subsets, scores, runs, fidelity)
    result = AccuracyResult(
        settings=settings.to_dict(), command=command, environment=env, model=model_info,
        data={"root": selection.root, "video_dir": selection.video_dir, "mask_dir": selection.mask_dir,
              "num_videos": len(scored), "subsets": subsets, "ground_truth": gt,
              "predictions": os.path.join(out, PREDICTIONS)},
        configs=configs, videos=per_video, failures=failures, notes=notes, clock=settings.clock,
    )
    _write(result, out)
    return result


def json_safe(x):
    """`x` with non-finite floats as None (JSON has no NaN), dict keys as strings."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def _write(result: AccuracyResult, out: str) -> None:
    paths = {name: os.path.join(out, name) for name in RESULT_FILES}
    result.files = dict(paths)
    with atomic_open(paths["accuracy.json"], "w", encoding="utf-8") as f:
        json.dump(json_safe(result.to_dict()), f, indent=1, default=str)
        f.write("\n")
    with atomic_open(paths["accuracy.md"], "w", encoding="utf-8") as f:
        f.write(result.markdown())
