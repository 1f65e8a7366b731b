"""Fidelity to dense SAM 2 on any footage, without ground truth (`efficient-sam2 bench --fidelity`).

Efficient-SAM2 promises dense SAM 2's masks, faster. This benchmark checks that promise on the user's own videos:
every configuration tracks each video from the same prompts (a prompt file per video: clicks, boxes or masks,
`efficient_sam2.io.prompts`), and its masks are scored against dense SAM 2's masks of the same run, frame by frame:

    fidelity J, F, J&F   DAVIS region similarity and boundary F of the configuration's mask with dense SAM 2's
                         mask as the reference (100 = the same masks), averaged per object over its tracked frames
                         (the frames it was prompted on left out), then over the objects;
    mean IoU             IoU averaged over every (object, frame); worst frame IoU, worst video J&F;
    kept windows / memory, fallback rate, scene cuts: what the accelerated path computed;
    ms/frame, speed-up   tracking time (wall or this process's CPU); dense runs first on each video, the other
                         configurations follow in an order that rotates from video to video;
    ideal large / base+  the FLOP-ideal end-to-end speed-up of a tracked frame of SAM 2.1 large / base_plus at
                         1024 px at the kept fractions measured here (`flops.ideal_speedups`), i.e. what this
                         sparsity would buy on the real models.

Where ground truth exists, `bench --accuracy` reports the same fidelity beside J&F against the ground truth.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..evaluation.metrics import boundary_f_measure, region_similarity
from ..io.atomic import atomic_open, check_output_folder
from ..io.prompts import PromptError, VideoPrompts, apply_prompts, load_prompts
from .accuracy import (
    ACCURACY_CONFIGS,
    DEFAULT_CONFIGS,
    _build,
    _fmt,
    check_configs,
    efficient_config_of,
    json_safe,
)
from ..efficient.config import EfficientConfig
from .common import BenchError, environment
from .flops import IDEAL_MODELS, ideal_speedups

__all__ = ["FidelityError", "FidelitySettings", "FidelityResult", "run_fidelity", "pair_prompts", "mask_fidelity"]

PROMPT_SUFFIX = ".prompts"


class FidelityError(BenchError):
    """Settings, videos or prompt files of the fidelity benchmark that cannot be used."""


def _video_name(path: str) -> str:
    base = os.path.basename(os.path.normpath(path))
    return base if os.path.isdir(path) else os.path.splitext(base)[0]


def pair_prompts(videos: list[str], prompts: list[str]) -> list[str]:
    """The prompt file of each video: one file per video (same order), or a folder holding `<video>.prompts`
    (the video file's name without extension, or the frame folder's name) or `<video>.png` (first-frame masks)."""
    if len(prompts) == 1 and os.path.isdir(prompts[0]):
        folder, out = prompts[0], []
        for v in videos:
            name = _video_name(v)
            found = [os.path.join(folder, name + s) for s in (PROMPT_SUFFIX, ".png")
                     if os.path.isfile(os.path.join(folder, name + s))]
            if not found:
                raise FidelityError(f"no prompt file for video {v!r} in {folder!r} (expected {name}{PROMPT_SUFFIX} "
                                    f"or {name}.png)")
            out.append(found[0])
        return out
    if len(prompts) != len(videos):
        raise FidelityError(f"give one prompt file per video ({len(videos)} video(s), {len(prompts)} prompt "
                            f"file(s)), or one folder of <video>{PROMPT_SUFFIX} files")
    return list(prompts)


@dataclass
class FidelitySettings:
    """What to measure; see `efficient-sam2 bench --fidelity --help`.

    videos: video files or folders of frames; prompts: one prompt file per video, or one folder of them
    (`pair_prompts`); output: a new (or empty) folder for fidelity.json / fidelity.md, or None; configs: names of
    `ACCURACY_CONFIGS` ("dense" is the reference and always runs); max_frames: track at most this many frames
    from the first prompted frame; postprocessing: the predictors' post-processing as `track` runs them (True, the
    default: the decoder's stability fallback, memory of clicked frames from binarised masks, holes up to 8 px
    filled) or as VOS evaluation runs them (False, what `bench --accuracy` does); the other fields as
    `AccuracySettings`.
    """

    videos: tuple[str, ...]
    prompts: tuple[str, ...]
    output: str | None = None
    model: str = "micro"
    checkpoint: str | None = None
    weights: str | None = None
    shortcut_checkpoint: str | None = None
    image_size: int | None = None
    device: str = "cpu"
    configs: tuple[str, ...] = DEFAULT_CONFIGS
    max_frames: int | None = None
    postprocessing: bool = True
    kept_windows: float | None = None
    sparsity: float | None = None
    tau: float | None = None
    shortcut: str | None = None
    seed: int = 0
    threads: int | None = None
    clock: str = "wall"
    overwrite: bool = False

    def validate(self) -> list[VideoPrompts]:
        """Check the settings and read every prompt file; returns the prompts of each video."""
        self.configs = check_configs(self.configs, FidelityError)
        if not self.videos:
            raise FidelityError("give at least one video")
        for v in self.videos:
            if not os.path.exists(v):
                raise FidelityError(f"video not found: {v}")
        if self.max_frames is not None and self.max_frames < 2:
            raise FidelityError(f"--max-frames must be at least 2, got {self.max_frames}")
        if self.clock not in ("wall", "cpu"):
            raise FidelityError(f"--clock must be wall or cpu, got {self.clock!r}")
        if self.threads is not None and self.threads < 1:
            raise FidelityError(f"--threads must be >= 1, got {self.threads}")
        for what, path in (("checkpoint", self.checkpoint), ("shortcut checkpoint", self.shortcut_checkpoint)):
            if path is not None and not os.path.isfile(path):
                raise FidelityError(f"{what} file not found: {path}")
        try:
            for name in self.configs:
                self.efficient_config(name)
        except ValueError as exc:
            raise FidelityError(str(exc)) from None
        files = pair_prompts(list(self.videos), list(self.prompts))
        prompts = []
        for f in files:
            try:
                prompts.append(load_prompts(f))
            except (PromptError, FileNotFoundError) as exc:
                raise FidelityError(str(exc)) from None
        if self.output is not None:
            try:
                check_output_folder(self.output, self.overwrite, "output folder")
            except FileExistsError as exc:
                raise FidelityError(str(exc)) from None
        return prompts

    def efficient_config(self, name: str):
        return efficient_config_of(name, self.seed, self.kept_windows, self.tau, self.sparsity, self.shortcut)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


# ----------------------------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------------------------


def mask_fidelity(reference: dict[int, dict[int, np.ndarray]], masks: dict[int, dict[int, np.ndarray]],
                  skip: dict[int, set[int]] | None = None) -> dict:
    """Scores of `masks` against `reference` ({frame: {obj_id: (H, W) bool}}); frames in skip[obj_id] (its
    prompted frames) are left out. A frame or object missing from `masks` counts as an empty mask.

    Returns {"JF", "J", "F", "mean_iou", "worst_frame_iou", "objects": {obj_id: {"J", "F", "JF", "frames"}}}, in
    percent except the IoUs (fractions); NaN when nothing was scored."""
    skip = skip or {}
    per_obj: dict[int, list[tuple[float, float]]] = {}
    for frame in sorted(reference):
        for obj_id, ref in reference[frame].items():
            if frame in skip.get(obj_id, ()):
                continue
            pred = masks.get(frame, {}).get(obj_id)
            if pred is None:
                pred = np.zeros_like(ref)
            per_obj.setdefault(obj_id, []).append((float(region_similarity(ref, pred)),
                                                   float(boundary_f_measure(ref, pred))))
    objects = {}
    for obj_id, rows in sorted(per_obj.items()):
        J, F = 100 * float(np.mean([r[0] for r in rows])), 100 * float(np.mean([r[1] for r in rows]))
        objects[obj_id] = {"J": J, "F": F, "JF": (J + F) / 2, "frames": len(rows)}
    ious = [r[0] for rows in per_obj.values() for r in rows]
    if not objects:
        return {"JF": math.nan, "J": math.nan, "F": math.nan, "mean_iou": math.nan, "worst_frame_iou": math.nan,
                "objects": {}}
    J = float(np.mean([o["J"] for o in objects.values()]))
    F = float(np.mean([o["F"] for o in objects.values()]))
    return {"JF": (J + F) / 2, "J": J, "F": F, "mean_iou": float(np.mean(ious)), "worst_frame_iou": float(min(ious)),
            "objects": objects}


# ----------------------------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class FidelityResult:
    """`configs[name]` holds the scores over every video, `videos[name][video]` each video's; see the module
    docstring for the fields."""

    settings: dict
    command: str | None
    environment: dict
    model: dict
    configs: dict
    videos: dict
    notes: list[str] = field(default_factory=list)
    files: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}

    def markdown(self) -> str:
        m = self.model
        n = len(next(iter(self.videos.values()), {}))
        lines = [
            f"### Fidelity to dense SAM 2: {m['name']} at {m['image_size']} px, {n} video{'s' * (n != 1)}",
            "",
            f"Weights: {m['weights']}; trained shortcut: {m['shortcut']}. Post-processing "
            f"{'on (as `track` runs)' if self.settings.get('postprocessing', True) else 'off (as VOS evaluation runs)'}"
            ". Fidelity J&F, J, F: DAVIS scores (percent) "
            "of each configuration's masks with dense SAM 2's masks as the reference (prompted frames left out); "
            "mean / worst IoU over every (object, frame); ms/frame and speed-up: "
            f"{self.settings['clock']} time of tracking, dense first on each video, the others in a rotating "
            "order; ideal large / base+: "
            "FLOP-ideal end-to-end speed-up of a tracked frame of SAM 2.1 large / base_plus at 1024 px at the kept "
            "fractions measured here.",
            "",
            "| configuration | fidelity J&F | J | F | mean IoU | worst video J&F | worst frame IoU | kept windows | "
            "kept memory | fallback rate | scene cuts | ms/frame | speed-up | ideal large | ideal base+ |",
            "|---|" + "---:|" * 14,
        ]
        for name, c in self.configs.items():
            ideal = c["ideal_speedup"]
            cells = [f"`{name}`", _fmt(c["JF"]), _fmt(c["J"]), _fmt(c["F"]), _fmt(c["mean_iou"], ".3f"),
                     _fmt(c["worst_video_JF"]), _fmt(c["worst_frame_iou"], ".3f"),
                     _fmt(c["kept_window_fraction"], ".3f"), _fmt(c["kept_memory_fraction"], ".3f"),
                     _fmt(c["saliency_fallback_rate"], ".3f"), str(c["scene_cuts"]), _fmt(c["ms_per_frame"]),
                     _fmt(c["speedup"], ".2f") + "×"] + [_fmt(ideal.get(x), ".2f") + "×" for x in IDEAL_MODELS]
            lines.append("| " + " | ".join(cells) + " |")
        names = [c for c in self.configs if c != "dense"]
        header = "| video | frames | objects | " + " | ".join(f"`{c}`" for c in names) + " |"
        lines += ["", "Fidelity J&F per video:", "", header, "|---|---:|---:|" + "---:|" * len(names)]
        for video, row in self.videos["dense"].items():
            cells = [_fmt(self.videos[c][video]["JF"]) for c in names]
            lines.append(f"| {video} | {row['frames']} | {row['objects']} | " + " | ".join(cells) + " |")
        if self.notes:
            lines += [""] + [f"Note: {x}" for x in self.notes]
        if self.command:
            lines += ["", f"Command: `{self.command}`"]
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _track(predictor, video: str, prompts: VideoPrompts, max_frames: int | None) -> tuple[dict, dict, float, float]:
    """({frame: {obj: mask}}, efficiency statistics, wall s, cpu s) of one configuration on one video: forward
    from the first prompted frame, then backward from it when it is not frame 0."""
    start = _clock()
    state = predictor.init_state(video)
    prompts.check_video(state.num_frames, (state.video_height, state.video_width))
    apply_prompts(predictor, state, prompts)
    first = min(prompts.frames)
    limit = None if max_frames is None else max_frames - 1
    masks: dict[int, dict[int, np.ndarray]] = {}
    for reverse in ((False, True) if first > 0 else (False,)):
        for frame, obj_ids, logits in predictor.propagate_in_video(state, start_frame_idx=first,
                                                                   max_frame_num_to_track=limit, reverse=reverse,
                                                                   progress=False):
            binary = (logits[:, 0] > 0).cpu().numpy()
            masks[frame] = {int(o): binary[i] for i, o in enumerate(obj_ids)}
    stop = _clock()
    wall, cpu = stop[0] - start[0], stop[1] - start[1]
    stats = predictor.statistics(state) if getattr(predictor, "efficient", None) is not None else None
    return masks, _stats(stats), wall, cpu


def _stats(stats) -> dict:
    if stats is None:
        return {"kept_windows": [], "kept_memory": [], "fallbacks": 0, "routed_frames": 0, "scene_cuts": 0}
    return {"kept_windows": list(stats.kept_windows.values()), "kept_memory": list(stats.kept_memory.values()),
            "fallbacks": len(stats.saliency_fallbacks), "routed_frames": stats.routed_frames,
            "scene_cuts": len(getattr(stats, "scene_cuts", ()))}


def _combine(rows: list[dict], dense_rows: list[dict], clock: str, efficient: EfficientConfig | None) -> dict:
    """One configuration's summary over video rows (and dense's rows of the same videos, for the speed-up)."""
    objects = [o for r in rows for o in r["scores"]["objects"].values()]
    J = float(np.mean([o["J"] for o in objects])) if objects else math.nan
    F = float(np.mean([o["F"] for o in objects])) if objects else math.nan
    weights = [r["scored_frames"] for r in rows]
    ious = [r["scores"]["mean_iou"] for r in rows]
    kw = [x for r in rows for x in r["stats"]["kept_windows"]]
    km = [x for r in rows for x in r["stats"]["kept_memory"]]
    routed = sum(r["stats"]["routed_frames"] for r in rows)
    kept_w = float(np.mean(kw)) if efficient and kw else 1.0
    kept_m = float(np.mean(km)) if efficient and km else 1.0
    key = f"{clock}_s"
    own, dense = sum(r[key] for r in rows), sum(r[key] for r in dense_rows)
    frames = sum(r["frames"] for r in rows)
    return {
        "JF": (J + F) / 2, "J": J, "F": F,
        "mean_iou": float(np.average(ious, weights=weights)) if sum(weights) else math.nan,
        "worst_video_JF": min((r["JF"] for r in rows if math.isfinite(r["JF"])), default=math.nan),
        "worst_frame_iou": min((r["scores"]["worst_frame_iou"] for r in rows
                                if math.isfinite(r["scores"]["worst_frame_iou"])), default=math.nan),
        "videos": len(rows), "frames": frames, "objects": len(objects),
        "kept_window_fraction": kept_w, "kept_memory_fraction": kept_m,
        "saliency_fallback_rate": (sum(r["stats"]["fallbacks"] for r in rows) / routed) if routed else None,
        "scene_cuts": sum(r["stats"]["scene_cuts"] for r in rows),
        "wall_s": sum(r["wall_s"] for r in rows), "cpu_s": sum(r["cpu_s"] for r in rows),
        "ms_per_frame": 1000 * own / frames if frames else None,
        "speedup": dense / own if own > 0 else None,
        "ideal_speedup": (ideal_speedups(kept_w, kept_m, context=efficient.global_context,
                                         reuse=efficient.reuse_residuals)
                          if efficient is not None else {m: 1.0 for m in IDEAL_MODELS}),
    }


def run_fidelity(settings: FidelitySettings, progress: bool = True, command: str | None = None) -> FidelityResult:
    """Track every video with every configuration from its prompts and score each configuration's masks against
    dense SAM 2's (see the module docstring); writes fidelity.json / fidelity.md when `settings.output` is set.
    Raises FidelityError for unusable settings, videos or prompt files (naming the file and line)."""
    all_prompts = settings.validate()
    threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    notes: list[str] = []
    names = list(settings.configs)
    rows: dict[str, dict[str, dict]] = {n: {} for n in names}
    try:
        predictors, model_info = _build(settings, notes)
        bar = tqdm(total=len(settings.videos) * len(names), unit="run", desc="fidelity", disable=not progress)
        try:
            for i, (video, prompts) in enumerate(zip(settings.videos, all_prompts)):
                label = _video_name(video)
                if label in rows["dense"]:
                    label = f"{label} ({i})"
                # dense first (the reference), then the others in an order that rotates from video to video; each
                # run is scored as soon as it ends, so only two runs' masks are held at a time
                others = [n for n in names if n != "dense"]
                order = ["dense"] + others[i % max(1, len(others)):] + others[:i % max(1, len(others))]
                skip: dict[int, set[int]] = {}
                for p in prompts.prompts:
                    skip.setdefault(p.obj_id, set()).add(p.frame)
                reference = None
                for name in order:
                    bar.set_postfix_str(f"{label} {name}", refresh=False)
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", category=UserWarning)
                            masks, stats, wall, cpu = _track(predictors[name], video, prompts, settings.max_frames)
                    except (PromptError, ValueError) as exc:
                        raise FidelityError(f"{video}: {exc}") from None
                    if reference is None:
                        reference = masks
                    scores = mask_fidelity(reference, masks, skip)
                    scored = sum(o["frames"] for o in scores["objects"].values())
                    rows[name][label] = {"JF": scores["JF"], "J": scores["J"], "F": scores["F"],
                                         "mean_iou": scores["mean_iou"], "scores": scores, "scored_frames": scored,
                                         "frames": len(masks), "objects": len(prompts.obj_ids), "stats": stats,
                                         "wall_s": wall, "cpu_s": cpu, "prompts": prompts.source}
                    bar.update()
                del reference
        finally:
            bar.close()
        env = environment(torch.device(settings.device))
    finally:
        torch.set_num_threads(threads)
    configs = {}
    for name in names:
        eff = settings.efficient_config(name)
        configs[name] = {"description": ACCURACY_CONFIGS[name].description,
                         "efficient_config": eff.to_dict() if eff is not None else None,
                         **_combine(list(rows[name].values()), list(rows["dense"].values()), settings.clock, eff)}
    videos = {n: {v: {k: x for k, x in r.items() if k != "scores"} | {"objects_scores": r["scores"]["objects"]}
                  for v, r in rows[n].items()} for n in names}
    result = FidelityResult(settings=settings.to_dict(), command=command, environment=env, model=model_info,
                            configs=configs, videos=videos, notes=notes)
    if settings.output is not None:
        _write(result, settings.output)
    return result


def _write(result: FidelityResult, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    paths = {"json": os.path.join(out, "fidelity.json"), "markdown": os.path.join(out, "fidelity.md")}
    result.files = dict(paths)
    with atomic_open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(json_safe(result.to_dict()), f, indent=1, default=str)
        f.write("\n")
    with atomic_open(paths["markdown"], "w", encoding="utf-8") as f:
        f.write(result.markdown())
