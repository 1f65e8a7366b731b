"""Semi-supervised video object segmentation over a dataset folder (DAVIS, MOSE, SA-V layouts).

Protocol (that of the reference VOS tooling):

* Each object is given by its mask on its first annotated frame; by default only the video's first annotated frame
  is used (``use_all_masks`` conditions on every annotated frame instead). The predictor is built without the
  interactive post-processing (``apply_postprocessing=False``: no stability fallback, no binarised memory, no hole
  filling), and runs in bfloat16 autocast on CUDA (``precision="auto"``).
* Every object is tracked forward from its first annotated frame. An object absent from the video's first annotated
  frame but annotated later makes the video fail with an explanation, unless ``track_objects_appearing_later``:
  then objects are tracked from their own first annotated frame (objects starting on the same frame share one
  propagation) and the results are merged per frame.
* Output: a PNG for **every** frame at the original resolution. Palette output (DAVIS / MOSE): one indexed PNG per
  frame, non-overlapping (each pixel goes to the object with the highest logit if that logit is above the
  threshold; on ties the lowest id wins), with the input PNG's palette. Per-object output (SA-V, or
  ``per_object=True``): one 0/1 PNG per object per frame in ``<video>/<obj>/``, without the non-overlap constraint.
  Frames before an object's first annotated frame are background.

Robustness: videos whose output folder already holds every file are skipped; each video is written into a hidden
temporary folder and moved into place when complete; nothing is overwritten without ``overwrite=True`` (every video)
or ``redo=[...]`` (the named videos), and then only the files the run writes; a video that fails is recorded with
its error and the run goes on. Several processes launched by ``torchrun`` split the videos (see
`efficient_sam2.inference.distributed`); each writes a JSON-lines log ``<log_dir>/vos-rank<r>.jsonl`` and rank 0
writes the merged ``summary.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from ..io.datasets import (
    DATASET_LAYOUTS,
    DatasetError,
    VideoAnnotations,
    VideoOutput,
    VOSDataset,
    expected_output_files,
    video_output_complete,
)
from ..io.frames import VideoFrames
from .common import EfficiencyTotals, autocast_context, build_predictor, logits_to_ids, merge_into
from ..configs import resolve_model_name
from .distributed import init_distributed, resolve_device
from ..io.atomic import atomic_open

__all__ = ["VOSError", "VOSProtocol", "VideoResult", "VOSSummary", "run_vos", "segment_video"]

PathLike = Union[str, os.PathLike]
_USER_ERRORS = (ValueError, OSError, KeyError)


class VOSError(RuntimeError):
    """A dataset run could not proceed at all (bad dataset folders, a model that cannot be built, ...)."""


@dataclass(frozen=True)
class VOSProtocol:
    """How a video is prompted and written (see the module docstring)."""

    per_object: bool = False
    track_objects_appearing_later: bool = False
    use_all_masks: bool = False
    score_threshold: float = 0.0


@dataclass
class VideoResult:
    """Outcome of one video: status is "done", "skipped" (already complete) or "failed" (see `error`)."""

    video: str
    status: str
    frames: int = 0
    objects: int = 0
    seconds: float = 0.0
    error: Optional[str] = None
    rank: int = 0
    efficiency: Optional[dict] = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VOSSummary:
    """Merged outcome of a dataset run over all processes."""

    results: list[VideoResult]
    output_dir: str
    world_size: int = 1
    fatal: list[str] = field(default_factory=list)
    log_dir: Optional[str] = None
    rank: int = 0  # the process this summary was returned to
    notes: list[str] = field(default_factory=list)  # about the run as a whole (e.g. stale evaluation results)

    def _with(self, status: str) -> list[VideoResult]:
        return [r for r in self.results if r.status == status]

    @property
    def done(self) -> list[VideoResult]:
        return self._with("done")

    @property
    def skipped(self) -> list[VideoResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[VideoResult]:
        return self._with("failed")

    @property
    def exit_code(self) -> int:
        """0 when every video is done or skipped, 1 otherwise."""
        return 1 if self.failed or self.fatal else 0

    def to_dict(self) -> dict:
        done = self.done
        frames = sum(r.frames for r in done)
        seconds = sum(r.seconds for r in done)
        return {
            "output_dir": self.output_dir,
            "world_size": self.world_size,
            "videos": len(self.results),
            "done": [r.video for r in done],
            "skipped": [r.video for r in self.skipped],
            "failed": {r.video: r.error for r in self.failed},
            "fatal": list(self.fatal),
            "frames": frames,
            "seconds": round(seconds, 3),
            "frames_per_second": round(frames / seconds, 3) if seconds > 0 else None,
            "notes": list(self.notes),
            "results": [r.to_dict() for r in self.results],
        }

    def format(self) -> str:
        """A human-readable summary (counts, throughput, every failure with its error)."""
        d = self.to_dict()
        lines = [
            f"VOS summary ({self.world_size} process{'es' if self.world_size > 1 else ''}): "
            f"{len(self.done)} done, {len(self.skipped)} skipped (already complete), {len(self.failed)} failed, "
            f"of {len(self.results)} video(s)",
        ]
        if d["frames"]:
            fps = d["frames_per_second"]
            lines.append(f"  {d['frames']} frames in {d['seconds']:.1f} s of tracking"
                         + (f" ({fps:.2f} frames/s)" if fps else ""))
        eff = [r.efficiency for r in self.done if r.efficiency]
        if eff:
            kw = [e["kept_window_fraction"] for e in eff if e.get("kept_window_fraction") is not None]
            km = [e["kept_memory_fraction"] for e in eff if e.get("kept_memory_fraction") is not None]
            parts = []
            if kw:
                parts.append(f"mean kept-window fraction {np.mean(kw):.3f}")
            if km:
                parts.append(f"mean kept-memory fraction {np.mean(km):.3f}")
            if parts:
                lines.append("  " + ", ".join(parts))
        lines.append(f"  outputs: {self.output_dir}")
        if self.log_dir:
            lines.append(f"  logs: {self.log_dir}")
        for r in self.failed:
            lines.append(f"  FAILED {r.video}: {r.error}")
        for msg in self.fatal:
            lines.append(f"  ERROR {msg}")
        for msg in self.notes:
            lines.append(f"  note: {msg}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# One video


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, _USER_ERRORS) and str(exc):
        return str(exc) if not isinstance(exc, KeyError) else f"KeyError: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _conditioning(ann: VideoAnnotations, protocol: VOSProtocol) -> tuple[dict[int, list[int]], dict[int, list[int]],
                                                                         list[str]]:
    """(start frame -> object ids, object id -> conditioning frames, notes)."""
    objs = ann.objects
    first = ann.first_annotated
    notes = []
    never = [o for o, t in objs.items() if t.first_frame is None]
    if never:
        notes.append(f"object(s) {never} are empty on every annotated frame: their output is empty")
    tracked = {o: t.first_frame for o, t in objs.items() if t.first_frame is not None}
    if not protocol.track_objects_appearing_later:
        later = {o: f for o, f in tracked.items() if f != first}
        if later:
            where = ", ".join(f"{o} (frame {ann.frame_names[f]!r})" for o, f in sorted(later.items()))
            raise DatasetError(
                f"video {ann.video!r}: object(s) absent from the first annotated frame {ann.frame_names[first]!r} "
                f"appear later: {where}. Run with --track-objects-appearing-later (Python: "
                "track_objects_appearing_later=True) to track each from its first annotated frame"
            )
    groups: dict[int, list[int]] = {}
    cond: dict[int, list[int]] = {}
    for o, f in sorted(tracked.items()):
        groups.setdefault(f, []).append(o)
        cond[o] = [f]
    if protocol.use_all_masks:
        for o, f in tracked.items():
            cond[o] = sorted({f} | {t for t in ann.annotated if t > f})
    return dict(sorted(groups.items())), cond, notes


def segment_video(
    predictor,
    dataset: VOSDataset,
    video: str,
    output_dir: PathLike,
    protocol: VOSProtocol = VOSProtocol(),
    overwrite: bool = False,
    precision: str = "auto",
    progress: bool = True,
) -> VideoResult:
    """Track every annotated object of `video` and write its output masks (see the module docstring).

    Raises on any problem (the caller decides whether the run goes on); the output folder is only created, or
    replaced (with `overwrite`), once every file of the video has been written.
    """
    t0 = time.perf_counter()
    per_object = protocol.per_object or dataset.layout == "sav"
    frames = VideoFrames(dataset.frames_dir(video), image_size=predictor.image_size)
    try:
        names = frames.frame_names
        ann = dataset.annotations(video, names, (frames.height, frames.width))
        groups, cond, notes = _conditioning(ann, protocol)
        if not per_object and max(ann.objects) > 255:
            raise DatasetError(f"video {video!r}: object id {max(ann.objects)} does not fit a palette PNG; "
                               "use per-object output")
        obj_names = {o: t.name for o, t in ann.objects.items()}
        expected = expected_output_files(names, list(obj_names.values()) if per_object else None)
        n = len(names)
        total = sum(n - start for start in groups)
        eff = EfficiencyTotals()
        state = predictor.init_state(frames)
        mask_cache: dict[int, dict[int, np.ndarray]] = {}

        def masks_on(t: int) -> dict[int, np.ndarray]:
            if t not in mask_cache:
                mask_cache[t] = ann.masks_on(t)
            return mask_cache[t]

        scratch = None
        acc_best = acc_id = None
        touched = np.zeros(n, dtype=bool)
        with VideoOutput(output_dir, video, overwrite=overwrite, palette=ann.palette) as out, \
                tqdm(total=total, desc=video, unit="frame", leave=False, disable=not progress) as bar:
            try:
                if not per_object and len(groups) > 1:
                    # Several propagations contribute to each frame: keep the per-pixel winner on disk.
                    # (named like a partial output, so that a killed run's scratch is cleaned up by the next one)
                    scratch = tempfile.mkdtemp(prefix=f".{video}.partial-scratch-", dir=os.fspath(output_dir))
                    shape = (n, ann.size[0], ann.size[1])
                    acc_best = np.lib.format.open_memmap(os.path.join(scratch, "best.npy"), "w+", np.float32, shape)
                    acc_id = np.lib.format.open_memmap(os.path.join(scratch, "id.npy"), "w+", np.uint8, shape)
                for start, objs in groups.items():
                    predictor.reset_state(state)
                    with autocast_context(predictor.device, precision):
                        for o in objs:
                            for t in cond[o]:
                                m = masks_on(t).get(o)
                                if m is not None:
                                    predictor.add_new_mask(state, t, o, m)
                        for t, ids, logits in predictor.propagate_in_video(state, start_frame_idx=start,
                                                                           progress=False):
                            ids = [int(i) for i in ids]
                            if per_object:
                                fg = (logits[:, 0].float() > protocol.score_threshold).cpu().numpy()
                                for i, o in enumerate(ids):
                                    out.write_object(obj_names[o], names[t], fg[i])
                            elif acc_best is None:
                                out.write_ids(names[t], logits_to_ids(logits, ids, protocol.score_threshold))
                            else:
                                if not touched[t]:
                                    acc_best[t] = -np.inf
                                    acc_id[t] = 0
                                    touched[t] = True
                                merge_into(acc_best[t], acc_id[t], logits[:, 0].float().cpu().numpy(), ids)
                            bar.update()
                    eff.add(predictor, state)
                # Frames no propagation reached (before an object's first annotated frame) are background.
                empty = np.zeros(ann.size, dtype=np.uint8)
                if per_object:
                    for o, oname in obj_names.items():
                        for name in names:
                            if not out.has(os.path.join(oname, f"{name}.png")):
                                out.write_object(oname, name, empty)
                else:
                    for t, name in enumerate(names):
                        if acc_best is not None and touched[t]:
                            ids_map = np.where(acc_best[t] > protocol.score_threshold, acc_id[t], 0)
                            out.write_ids(name, ids_map.astype(np.uint8))
                        elif not out.has(f"{name}.png"):
                            out.write_ids(name, empty)
                out.commit(expected)
                if out.kept:
                    shown = ", ".join(out.kept[:5]) + (f" (+{len(out.kept) - 5} more)" if len(out.kept) > 5 else "")
                    notes.append(f"its folder also holds {len(out.kept)} file(s) this run did not write, left as "
                                 f"they were: {shown}")
            finally:
                del acc_best, acc_id
                if scratch is not None:
                    shutil.rmtree(scratch, ignore_errors=True)
    finally:
        frames.close()
    tracked = sum(n - start for start in groups)
    return VideoResult(video, "done", frames=n, objects=len(ann.objects), seconds=time.perf_counter() - t0,
                       efficiency=eff.summary(), notes=notes + ([] if tracked else ["nothing to track"]))


def _expected_for_skip(dataset: VOSDataset, video: str, per_object: bool) -> list[str]:
    names = dataset.frame_names(video)
    if not per_object:
        return expected_output_files(names)
    if dataset.layout == "sav":
        if not os.path.isdir(dataset.annotation_dir(video)):
            raise DatasetError(f"video {video!r}: no annotation folder {dataset.annotation_dir(video)!r} "
                               "(the first-frame mask is missing)")
        objs = list(dataset.object_folders(video).values())
    else:
        objs = [t.name for t in dataset.annotations(video, names).objects.values()]
    return expected_output_files(names, objs)


# ---------------------------------------------------------------------------------------------------------------------
# A dataset


class _RankLog:
    """JSON-lines log of one process; truncated at the start of each run."""

    def __init__(self, log_dir: str, rank: int) -> None:
        os.makedirs(log_dir, exist_ok=True)
        self.path = os.path.join(log_dir, f"vos-rank{rank:03d}.jsonl")
        self._f = open(self.path, "w", encoding="utf-8")

    def write(self, **record) -> None:
        record.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%S"))
        self._f.write(json.dumps(record, default=str) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _write_json_atomic(path: str, data) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=str)


def run_vos(
    video_dir: PathLike,
    mask_dir: PathLike,
    output_dir: PathLike,
    layout: str = "davis",
    *,
    model: Optional[str] = None,
    checkpoint: Optional[PathLike] = None,
    weights: Optional[str] = None,
    predictor=None,
    device: str = "cpu",
    image_size: Optional[int] = None,
    efficient=None,
    shortcut_checkpoint: Optional[PathLike] = None,
    memory_stride: Optional[int] = None,
    apply_postprocessing: bool = False,
    video_list: Union[PathLike, Sequence[str], None] = None,
    per_object: bool = False,
    track_objects_appearing_later: bool = False,
    use_all_masks: bool = False,
    score_threshold: float = 0.0,
    overwrite: bool = False,
    redo: Sequence[str] = (),
    precision: str = "auto",
    progress: bool = True,
    log_dir: Optional[PathLike] = None,
    dist_backend: str = "gloo",
    dist_timeout_minutes: float = 24 * 60,
    echo: Optional[Callable[[str], None]] = None,
) -> VOSSummary:
    """Semi-supervised VOS over a dataset folder; returns the merged `VOSSummary` (the same on every process).

    Args:
        video_dir: one folder of frames per video (e.g. DAVIS ``JPEGImages/480p``, SA-V ``JPEGImages_24fps``).
        mask_dir: annotations in `layout` (``Annotations/480p``, SA-V ``Annotations_6fps``).
        output_dir: where ``<video>/...`` outputs go.
        layout: "davis", "mose" or "sav" (see `efficient_sam2.io.datasets`).
        model, checkpoint: model name and official checkpoint, used when `predictor` is None; weights: as for
            `build_sam2` (None: the checkpoint, else the bundled weights (micro); "random": untrained).
        predictor: an already built video predictor (its `non_overlap_masks` is switched off during the run: the
            non-overlap constraint is applied here, for palette output only).
        device: "cpu", "cuda" (each torchrun process then uses cuda:LOCAL_RANK) or "cuda:N".
        image_size, memory_stride: model overrides (input size; temporal stride of the memory frames).
        efficient, shortcut_checkpoint: an EfficientConfig (None = dense) and a trained shortcut file.
        apply_postprocessing: the interactive post-processing (off in the VOS protocol).
        video_list: a text file or a sequence of video names (default: every video folder).
        per_object: write per-object PNGs (always on for "sav").
        track_objects_appearing_later: track objects absent from the first annotated frame from their first
            annotation (otherwise such a video fails with an explanation).
        use_all_masks: condition on every annotated frame, not only each object's first.
        score_threshold: logit threshold of the output masks.
        overwrite: recompute every video, complete or not, replacing the files this run writes (other files in a
            video's folder are kept and named in the video's notes).
        redo: names of videos to recompute as with `overwrite`; the other videos are resumed as usual.
        precision: "auto" (bf16 autocast on CUDA), "fp32", "bf16" or "fp16".
        progress: tqdm progress bars.
        log_dir: per-process logs and summary.json (default ``<output_dir>/.logs``; the leading dot keeps it out of
            evaluations).
        dist_backend, dist_timeout_minutes: process group used under torchrun (only for coordination).
        echo: called with one line per video (default: printed to stdout without breaking the progress bars).
    Raises:
        VOSError when the run cannot start (after every process reached the end) and nothing could be done.
    """
    if layout not in DATASET_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(DATASET_LAYOUTS)}; got {layout!r}")
    if predictor is None and model is None:
        raise ValueError("give a model name (and checkpoint) or a built predictor")
    output_dir = os.fspath(output_dir)
    log_dir = os.fspath(log_dir) if log_dir is not None else os.path.join(output_dir, ".logs")
    protocol = VOSProtocol(per_object=per_object or layout == "sav",
                           track_objects_appearing_later=track_objects_appearing_later,
                           use_all_masks=use_all_masks, score_threshold=float(score_threshold))
    ctx = init_distributed(dist_backend, dist_timeout_minutes)
    prefix = f"[rank {ctx.rank}] " if ctx.world_size > 1 else ""
    say = echo or (lambda msg: tqdm.write(msg, file=sys.stdout))
    results: list[VideoResult] = []
    fatal: Optional[str] = None
    fatal_exc: Optional[BaseException] = None
    log: Optional[_RankLog] = None
    restore_overlap = None
    stale_results: list[str] = []
    try:
        try:
            dataset = VOSDataset(layout, video_dir, mask_dir, video_list)
            redo = _check_redo(redo, dataset.videos)
            stale_results = _evaluation_files(output_dir)
            os.makedirs(output_dir, exist_ok=True)
            mine = ctx.shard(dataset.videos)
            log = _RankLog(log_dir, ctx.rank)
            log.write(event="start", rank=ctx.rank, world_size=ctx.world_size, videos=mine,
                      total_videos=len(dataset.videos), output_dir=output_dir)
            built: list = [predictor]
            if predictor is None:
                # Cheap checks now; the model itself is only built once a video needs it (a resumed run whose
                # videos are all complete never loads it).
                dev = resolve_device(device, ctx.local_rank, ctx.world_size)
                resolve_model_name(model)
                if checkpoint is not None and not os.path.isfile(os.fspath(checkpoint)):
                    raise FileNotFoundError(f"checkpoint file not found: {os.fspath(checkpoint)!r}")
            else:
                dev = str(predictor.device)

            def get_predictor():
                nonlocal restore_overlap
                if built[0] is None:
                    try:
                        built[0] = build_predictor(model, checkpoint, dev, image_size=image_size, efficient=efficient,
                                                   shortcut_checkpoint=shortcut_checkpoint,
                                                   memory_stride=memory_stride, weights=weights,
                                                   apply_postprocessing=apply_postprocessing, non_overlap_masks=False)
                    except Exception as exc:
                        raise _Fatal(exc) from exc
                if restore_overlap is None:
                    restore_overlap = bool(getattr(built[0], "non_overlap_masks", False))
                    if restore_overlap:
                        built[0].non_overlap_masks = False
                return built[0]

            say(f"{prefix}{len(mine)} of {len(dataset.videos)} video(s) on {dev}")
            for video in tqdm(mine, desc=f"VOS{' rank ' + str(ctx.rank) if ctx.world_size > 1 else ''}",
                              unit="video", disable=not progress, position=ctx.local_rank if ctx.world_size > 1
                              else None):
                result = _process_video(get_predictor, dataset, video, output_dir, protocol,
                                        overwrite or video in redo, precision, progress and ctx.world_size == 1,
                                        ctx.rank, log)
                results.append(result)
                say(prefix + _result_line(result))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # the run of this process cannot go on
            if isinstance(exc, _Fatal):
                exc = exc.__cause__
            fatal = f"{prefix}{_error_text(exc)}"
            fatal_exc = exc
            if log is not None:
                log.write(event="fatal", rank=ctx.rank, error=_error_text(exc), traceback=traceback.format_exc())
        finally:
            if restore_overlap:
                built[0].non_overlap_masks = True
        reports = ctx.all_gather({"rank": ctx.rank, "results": [r.to_dict() for r in results], "fatal": fatal})
        merged = [VideoResult(**r) for rep in reports for r in rep["results"]]
        merged.sort(key=lambda r: r.video)
        summary = VOSSummary(merged, output_dir, ctx.world_size, [rep["fatal"] for rep in reports if rep["fatal"]],
                             log_dir, ctx.rank)
        done = [r.video for r in merged if r.status == "done"]
        if stale_results and done:
            summary.notes.append(
                f"{', '.join(stale_results)} in {output_dir} hold the scores of earlier predictions, not of the "
                f"{len(done)} video(s) computed in this run; evaluate again (efficient-sam2 eval ... --overwrite) to "
                "replace them")
        if ctx.is_main and (merged or log is not None):
            _write_json_atomic(os.path.join(log_dir, "summary.json"), summary.to_dict())
        if log is not None:
            log.write(event="end", rank=ctx.rank, done=sum(r.status == "done" for r in results),
                      skipped=sum(r.status == "skipped" for r in results),
                      failed=sum(r.status == "failed" for r in results))
        ctx.barrier()
    finally:
        if log is not None:
            log.close()
        ctx.close()
    if summary.fatal and not summary.results:
        if fatal_exc is not None and ctx.world_size == 1:
            raise fatal_exc
        raise VOSError("\n".join(summary.fatal))
    return summary


def _check_redo(redo: Union[str, Sequence[str]], videos: Sequence[str]) -> frozenset:
    """The set of video names to redo; every name must be a video of the dataset."""
    names = [redo] if isinstance(redo, str) else list(redo)
    unknown = sorted(set(names) - set(videos))
    if unknown:
        shown = ", ".join(videos[:10]) + (", ..." if len(videos) > 10 else "")
        raise DatasetError(f"--redo names video(s) that are not in the dataset: {', '.join(unknown)} (its videos: "
                           f"{shown})")
    return frozenset(names)


def _evaluation_files(output_dir: str) -> list[str]:
    """Evaluation results (of `efficient-sam2 eval`, whose default output is the prediction folder) already there."""
    from ..evaluation.vos import RESULT_FILES

    return [f for f in RESULT_FILES if os.path.isfile(os.path.join(output_dir, f))]


class _Fatal(Exception):
    """Wraps an error that stops the whole run of a process (the model cannot be built)."""


def _process_video(get_predictor, dataset, video, output_dir, protocol, overwrite, precision, progress, rank,
                   log: _RankLog) -> VideoResult:
    t0 = time.perf_counter()
    try:
        expected = _expected_for_skip(dataset, video, protocol.per_object)
        complete, present = video_output_complete(output_dir, video, expected)
        if complete and not overwrite:
            result = VideoResult(video, "skipped", frames=len(expected), rank=rank)
        else:
            if os.path.lexists(os.path.join(output_dir, video)) and not overwrite:
                raise FileExistsError(
                    f"output folder {os.path.join(output_dir, video)!r} exists but holds only {present} of the "
                    f"{len(expected)} expected files (from another run or another dataset?); use --redo {video} "
                    f"(Python: redo=[{video!r}]) to redo this video (--overwrite redoes every video)"
                )
            result = segment_video(get_predictor(), dataset, video, output_dir, protocol, overwrite, precision,
                                   progress)
            result.rank = rank
        log.write(event="video", **result.to_dict())
        return result
    except (KeyboardInterrupt, _Fatal):
        raise
    except Exception as exc:
        result = VideoResult(video, "failed", seconds=time.perf_counter() - t0, error=_error_text(exc), rank=rank)
        log.write(event="video", traceback=traceback.format_exc(), **result.to_dict())
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return result


def _result_line(r: VideoResult) -> str:
    if r.status == "skipped":
        return f"skipped {r.video}: already complete"
    if r.status == "failed":
        return f"FAILED {r.video}: {r.error}"
    fps = r.frames / r.seconds if r.seconds > 0 else float("nan")
    line = f"done {r.video}: {r.frames} frames, {r.objects} object(s), {r.seconds:.1f} s ({fps:.2f} frames/s)"
    if r.efficiency:
        e = r.efficiency
        if e.get("kept_window_fraction") is not None:
            line += f", kept windows {e['kept_window_fraction']:.3f}"
        if e.get("kept_memory_fraction") is not None:
            line += f", kept memory {e['kept_memory_fraction']:.3f}"
    for note in r.notes:
        line += f" [{note}]"
    return line
