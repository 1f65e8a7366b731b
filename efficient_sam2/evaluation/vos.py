"""Dataset-level semi-supervised VOS evaluation: J, F and J&F over DAVIS, MOSE and SA-V style folders.

Layouts (ground truth and predictions use the same one):

* ``"davis"`` / ``"mose"``: ``<root>/<video>/<frame>.png``, one indexed PNG per frame whose pixel values are object
  ids (0 = background; 255 is DAVIS' "void" label and is never an object).
* ``"sav"``: ``<root>/<video>/<obj_id>/<frame>.png``, one binary PNG per object per frame (pixel > 0 = object).

Protocol. Only frames with a ground-truth PNG are scored (SA-V GT is annotated at 6 fps, predictions usually cover
every frame; unannotated prediction frames are simply not read).

* ``skip_first_and_last`` (default True for every layout): the first and the last annotated frame are not scored.
  The DAVIS 2017 semi-supervised toolkit scores frames ``[1:-1]`` (the first frame's mask is given as input), and the
  SA-V evaluator does the same per object folder; MOSE results are conventionally scored with the DAVIS 2017 toolkit.
  In the SA-V layout the annotated frames are those of each object folder; in the DAVIS layout those of the video.
* ``from_first_appearance`` (default True for ``"sav"``, False otherwise), the SA-V evaluator's rule: an object is
  only scored from the first scored frame in which it is non-empty in the GT *or* the prediction, and an object
  whose GT is empty on every scored frame is not scored at all (it is listed in ``EvalResult.unscored``). With it
  off (DAVIS 2017), an object is scored on every scored frame of its video, a frame where GT and prediction are both
  empty counting as J = F = 1.
* Objects: SA-V = the GT object folders; DAVIS/MOSE = the ids > 0 (except 255) appearing in any GT frame of the video,
  including the unscored first frame (DAVIS 2017 takes the ids of the first frame, which is the same set for
  DAVIS 2017 and MOSE). Objects present only in predictions are ignored.
* Per object: J and F are the means over its scored frames, x100; J&F = (J + F) / 2. Per video: the mean over its
  scored objects. Global J and F: the mean over **all scored objects of all videos** (not over videos).

Missing predictions (a whole video folder, an SA-V object folder, or a frame that would be scored) count as empty
masks and are reported in ``EvalResult.missing`` / ``missing_videos``; ``strict=True`` raises instead, listing all of
them. Prediction videos or SA-V object folders without a GT counterpart are listed in ``EvalResult.extra``.

Videos are scored in parallel worker processes (``fork`` on Linux, where workers need nothing but numpy and OpenCV;
``spawn`` elsewhere, so scripts calling `evaluate_vos` must use the usual ``if __name__ == "__main__":`` guard).
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Literal, Optional, Sequence, Union

import numpy as np
from tqdm import tqdm

from ..io.frames import sort_frame_names
from ..io.masks import read_palette_mask
from .metrics import DEFAULT_BOUND_TH, boundary_f_measure, region_similarity
from ..io.atomic import atomic_open

PathLike = Union[str, os.PathLike]
Layout = Literal["davis", "sav", "mose"]
LAYOUTS: tuple[str, ...] = ("davis", "sav", "mose")

VOID_LABEL = 255
"""DAVIS marks ambiguous pixels with 255 in its ground truth; they are treated as background, never as an object."""

_CHUNK = 8  # frames decoded and scored together; bounds memory to a few frames per object at a time
RESULT_FILES: tuple[str, ...] = ("per_object.csv", "per_video.csv", "summary.csv", "missing.csv")
"""The files an evaluation writes into its output folder (missing.csv only when something is missing or extra)."""


# ---------------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ObjectScore:
    """Scores of one object of one video, in percent."""

    video: str
    object: str
    J: float
    F: float
    JF: float
    num_frames: int


@dataclass(frozen=True)
class VideoScore:
    """Mean scores over the scored objects of one video, in percent (NaN when no object was scored)."""

    video: str
    J: float
    F: float
    JF: float
    num_objects: int


@dataclass
class EvalResult:
    """Outcome of `evaluate_vos`.

    Attributes:
        objects: one row per scored object, ordered by video then object.
        videos: one row per GT video, ordered by name.
        J, F, JF: global means over all scored objects, in percent (NaN when nothing was scored).
        missing: (video, frame) for every prediction PNG that would have been scored but does not exist (frame is
            ``"<obj>/<frame>.png"`` in the SA-V layout); videos missing entirely are in `missing_videos` instead.
        missing_videos: GT videos without a prediction folder.
        extra: prediction videos (``"<video>"``) and SA-V object folders (``"<video>/<obj>"``) absent from the GT.
        unscored: (video, object) of GT objects with no scored frame (see the module docstring).
        failed: (video, error) of videos that could not be evaluated (e.g. predictions of the wrong size); the
            other videos are still scored (with strict=True such a failure raises instead).
    """

    objects: list[ObjectScore]
    videos: list[VideoScore]
    J: float
    F: float
    JF: float
    missing: list[tuple[str, str]] = field(default_factory=list, repr=False)
    missing_videos: list[str] = field(default_factory=list, repr=False)
    extra: list[str] = field(default_factory=list, repr=False)
    unscored: list[tuple[str, str]] = field(default_factory=list, repr=False)
    failed: list[tuple[str, str]] = field(default_factory=list, repr=False)
    layout: str = "davis"
    skip_first_and_last: bool = True
    from_first_appearance: bool = False
    bound_th: float = DEFAULT_BOUND_TH

    def write_csv(self, out_dir: PathLike) -> dict[str, Path]:
        """Write per_object.csv, per_video.csv and summary.csv into `out_dir` (created if needed).

        Each file is written to a temporary file in `out_dir` first and then renamed, so a reader never sees a
        half-written table. Returns {file name: path}.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tables = {
            "per_object.csv": (
                ["video", "object", "J", "F", "J&F", "num_frames"],
                [[o.video, o.object, o.J, o.F, o.JF, o.num_frames] for o in self.objects],
            ),
            "per_video.csv": (
                ["video", "J", "F", "J&F", "num_objects"],
                [[v.video, v.J, v.F, v.JF, v.num_objects] for v in self.videos],
            ),
            "summary.csv": (
                ["J&F", "J", "F", "num_objects", "num_videos", "num_missing_frames", "num_missing_videos",
                 "num_extra", "num_unscored", "num_failed", "layout", "skip_first_and_last", "from_first_appearance", "bound_th"],
                [[self.JF, self.J, self.F, len(self.objects), len(self.videos), len(self.missing),
                  len(self.missing_videos), len(self.extra), len(self.unscored), len(self.failed), self.layout,
                  self.skip_first_and_last, self.from_first_appearance, self.bound_th]],
            ),
        }
        written = {}
        for name, (header, rows) in tables.items():
            written[name] = _write_csv_atomic(out / name, header, rows)
        return written

    def summary_table(self) -> str:
        """The global scores as a Markdown table (percent, one decimal)."""
        return (
            "| J&F | J | F | objects | videos |\n"
            "|---:|---:|---:|---:|---:|\n"
            f"| {self.JF:.1f} | {self.J:.1f} | {self.F:.1f} | {len(self.objects)} | {len(self.videos)} |"
        )


def _write_csv_atomic(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Scanning the folders (parent process)


@dataclass(frozen=True)
class _Track:
    """Frames scored together: one object folder (SA-V) or every object of a video (DAVIS / MOSE).

    `frames` are all GT frame files in order, `scored` the subset that is scored, `available` the scored frames that
    have a prediction file.
    """

    object: Optional[str]  # SA-V object folder name; None in the DAVIS layout (ids come from the PNGs)
    gt_dir: str
    pred_dir: str
    frames: tuple[str, ...]
    scored: tuple[str, ...]
    available: frozenset[str]


@dataclass(frozen=True)
class _VideoJob:
    video: str
    layout: str
    tracks: tuple[_Track, ...]
    from_first_appearance: bool
    bound_th: float


@dataclass(frozen=True)
class _VideoOutcome:
    video: str
    objects: list[ObjectScore]
    unscored: list[tuple[str, str]]
    error: str | None = None


def _list_dir(path: str) -> tuple[list[str], list[str]]:
    """(PNG file names, sub-folder names) of a folder; hidden entries (e.g. macOS '._*' files) are skipped."""
    pngs, dirs = [], []
    with os.scandir(path) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                dirs.append(entry.name)
            elif entry.name.lower().endswith(".png"):
                pngs.append(entry.name)
    return pngs, dirs


def _sort_names(names: Iterable[str]) -> list[str]:
    names = list(names)
    return sort_frame_names(names) if names else []


def _scored_frames(frames: Sequence[str], skip_first_and_last: bool) -> tuple[str, ...]:
    return tuple(frames[1:-1]) if skip_first_and_last else tuple(frames)


def _scan(
    gt_root: str, pred_root: str, layout: str, skip_first_and_last: bool, from_first_appearance: bool, bound_th: float
) -> tuple[list[_VideoJob], list[tuple[str, str]], list[str], list[str]]:
    """Pair GT and prediction files. Returns (jobs, missing, missing_videos, extra)."""
    _, gt_videos = _list_dir(gt_root)
    if not gt_videos:
        raise ValueError(f"no video folders found in the ground-truth folder {gt_root!r}")
    _, pred_videos = _list_dir(pred_root)
    gt_videos = _sort_names(gt_videos)
    extra = _sort_names(set(pred_videos) - set(gt_videos))
    missing: list[tuple[str, str]] = []
    missing_videos: list[str] = []
    jobs = []
    for video in gt_videos:
        gt_dir = os.path.join(gt_root, video)
        pred_dir = os.path.join(pred_root, video)
        gt_pngs, gt_dirs = _list_dir(gt_dir)
        has_prediction = os.path.isdir(pred_dir)
        pred_pngs, pred_dirs = _list_dir(pred_dir) if has_prediction else ([], [])
        if not has_prediction:
            missing_videos.append(video)  # its frames are not repeated in `missing`
        tracks = []
        if layout == "sav":
            if gt_pngs and not gt_dirs:
                raise ValueError(
                    f"{gt_dir!r} holds PNG files directly, which is the DAVIS/MOSE layout (one indexed PNG per frame); "
                    "use layout='davis', or give SA-V style folders <video>/<obj_id>/<frame>.png"
                )
            extra += [f"{video}/{obj}" for obj in _sort_names(set(pred_dirs) - set(gt_dirs))]
            for obj in _sort_names(gt_dirs):
                frames = _sort_names(_list_dir(os.path.join(gt_dir, obj))[0])
                scored = _scored_frames(frames, skip_first_and_last)
                obj_pred_dir = os.path.join(pred_dir, obj)
                present = set(_list_dir(obj_pred_dir)[0]) if obj in pred_dirs else set()
                available = frozenset(f for f in scored if f in present)
                if has_prediction:
                    missing += [(video, f"{obj}/{f}") for f in scored if f not in available]
                tracks.append(_Track(obj, os.path.join(gt_dir, obj), obj_pred_dir, tuple(frames), scored, available))
        else:
            if gt_dirs and not gt_pngs:
                raise ValueError(
                    f"{gt_dir!r} holds sub-folders but no PNG files, which looks like the SA-V layout "
                    "(<video>/<obj_id>/<frame>.png); use layout='sav'"
                )
            frames = _sort_names(gt_pngs)
            scored = _scored_frames(frames, skip_first_and_last)
            present = set(pred_pngs)
            available = frozenset(f for f in scored if f in present)
            if has_prediction:
                missing += [(video, f) for f in scored if f not in available]
            tracks.append(_Track(None, gt_dir, pred_dir, tuple(frames), scored, available))
        jobs.append(_VideoJob(video, layout, tuple(tracks), from_first_appearance, bound_th))
    return jobs, missing, missing_videos, extra


# ---------------------------------------------------------------------------------------------------------------------
# Scoring one video (worker process)


def _read_ids(path: str) -> np.ndarray:
    """(H, W) uint8 pixel values of an indexed ('P'), greyscale ('L') or 1-bit PNG; colour PNGs raise."""
    return read_palette_mask(path)[0]


def _read_prediction(track: _Track, frame: str, gt_shape: tuple[int, int]) -> np.ndarray:
    if frame not in track.available:
        return np.zeros(gt_shape, dtype=np.uint8)  # missing prediction = empty masks
    path = os.path.join(track.pred_dir, frame)
    pred = _read_ids(path)
    if pred.shape != gt_shape:
        gt_path = os.path.join(track.gt_dir, frame)
        raise ValueError(
            f"prediction {path!r} is {pred.shape[1]}x{pred.shape[0]} (WxH) but its ground truth {gt_path!r} is "
            f"{gt_shape[1]}x{gt_shape[0]}; predictions must be saved at the original video resolution"
        )
    return pred


def _chunks(arrays: Sequence[np.ndarray], size: int = _CHUNK) -> Iterator[slice]:
    """Consecutive index ranges of at most `size` arrays that all have the same shape (so they can be stacked)."""
    start = 0
    for i in range(1, len(arrays) + 1):
        if i == len(arrays) or i - start == size or arrays[i].shape != arrays[start].shape:
            yield slice(start, i)
            start = i


class _FrameScores:
    """Per-frame J, F and non-emptiness flags of one object, accumulated chunk by chunk."""

    def __init__(self) -> None:
        self.j: list[np.ndarray] = []
        self.f: list[np.ndarray] = []
        self.in_gt: list[np.ndarray] = []
        self.in_pred: list[np.ndarray] = []

    def add(self, gt: np.ndarray, pred: np.ndarray, bound_th: float) -> None:
        """gt, pred: (n, H, W) bool."""
        self.j.append(np.atleast_1d(region_similarity(gt, pred)))
        self.f.append(np.atleast_1d(boundary_f_measure(gt, pred, bound_th)))
        self.in_gt.append(gt.any(axis=(1, 2)))
        self.in_pred.append(pred.any(axis=(1, 2)))

    def conclude(self, video: str, obj: str, from_first_appearance: bool) -> Optional[ObjectScore]:
        """The object's score, or None when it has no scored frame."""
        if not self.j:
            return None
        j, f = np.concatenate(self.j), np.concatenate(self.f)
        if from_first_appearance:
            in_gt = np.concatenate(self.in_gt)
            if not in_gt.any():
                return None
            start = int(np.argmax(in_gt | np.concatenate(self.in_pred)))
            j, f = j[start:], f[start:]
        J, F = float(j.mean()) * 100, float(f.mean()) * 100
        return ObjectScore(video, obj, J, F, (J + F) / 2, len(j))


def _score_id_map_track(job: _VideoJob, track: _Track) -> dict[str, _FrameScores]:
    # DAVIS / MOSE: read every GT frame once (1 byte per pixel), collect the object ids, score the scored frames.
    scored = set(track.scored)
    gt_scored: list[np.ndarray] = []
    labels: set[int] = set()
    for frame in track.frames:
        ids = _read_ids(os.path.join(track.gt_dir, frame))
        labels.update(np.flatnonzero(np.bincount(ids.ravel(), minlength=256)).tolist())
        if frame in scored:
            gt_scored.append(ids)
    labels = sorted(labels - {0, VOID_LABEL})
    scores = {str(label): _FrameScores() for label in labels}
    if not labels:
        return scores
    for part in _chunks(gt_scored):
        gt = np.stack(gt_scored[part])
        pred = np.stack([_read_prediction(track, f, gt.shape[1:]) for f in track.scored[part]])
        for label in labels:
            scores[str(label)].add(gt == label, pred == label, job.bound_th)
    return scores


def _score_object_track(job: _VideoJob, track: _Track) -> _FrameScores:
    # SA-V: binary PNGs of one object; > 0 is foreground in both GT and prediction.
    scores = _FrameScores()
    gts = [_read_ids(os.path.join(track.gt_dir, f)) for f in track.scored]
    for part in _chunks(gts):
        gt = np.stack(gts[part]) > 0
        pred = np.stack([_read_prediction(track, f, gt.shape[1:]) for f in track.scored[part]]) > 0
        scores.add(gt, pred, job.bound_th)
    return scores


def _evaluate_video(job: _VideoJob) -> _VideoOutcome:
    """Scores of one video; an error (e.g. a prediction of the wrong size) is reported, not raised, so that the
    other videos' results are kept."""
    try:
        return _evaluate_video_or_raise(job)
    except Exception as exc:  # noqa: BLE001 - reported per video in EvalResult.failed
        return _VideoOutcome(job.video, [], [], error=f"{type(exc).__name__}: {exc}")


def _evaluate_video_or_raise(job: _VideoJob) -> _VideoOutcome:
    per_object: dict[str, _FrameScores] = {}
    for track in job.tracks:
        if track.object is None:
            per_object.update(_score_id_map_track(job, track))
        else:
            per_object[track.object] = _score_object_track(job, track)
    objects, unscored = [], []
    for obj, scores in per_object.items():
        row = scores.conclude(job.video, obj, job.from_first_appearance)
        if row is None:
            unscored.append((job.video, obj))
        else:
            objects.append(row)
    return _VideoOutcome(job.video, objects, unscored)


# ---------------------------------------------------------------------------------------------------------------------
# Driver


def _default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def _mp_context():
    # Workers only run numpy / OpenCV / PIL code, so forking is safe and avoids re-importing the package (and torch)
    # in every worker. fork is unsafe on macOS and absent on Windows.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method)


def _run(jobs: list[_VideoJob], num_workers: int, progress: bool) -> list[_VideoOutcome]:
    if num_workers == 0 or len(jobs) <= 1:
        with tqdm(total=len(jobs), unit="video", desc="J&F", disable=not progress) as bar:
            outcomes = []
            for job in jobs:
                outcomes.append(_evaluate_video(job))
                bar.update()
            return outcomes
    outcomes = []
    with ProcessPoolExecutor(max_workers=min(num_workers, len(jobs)), mp_context=_mp_context()) as pool:
        futures = [pool.submit(_evaluate_video, job) for job in jobs]
        try:
            with tqdm(total=len(jobs), unit="video", desc="J&F", disable=not progress) as bar:
                for future in as_completed(futures):
                    outcomes.append(future.result())
                    bar.update()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return outcomes


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def evaluate_vos(
    gt_dir: PathLike,
    pred_dir: PathLike,
    layout: Layout = "davis",
    skip_first_and_last: Optional[bool] = None,
    num_workers: Optional[int] = None,
    strict: bool = False,
    progress: bool = True,
    *,
    from_first_appearance: Optional[bool] = None,
    bound_th: float = DEFAULT_BOUND_TH,
) -> EvalResult:
    """Score predicted masks against ground truth with J, F and J&F (see the module docstring for the protocol).

    Args:
        gt_dir: folder with one sub-folder per video, in `layout`.
        pred_dir: predictions in the same layout and with the same file names, at the GT resolution.
        layout: "davis" / "mose" (one indexed PNG per frame) or "sav" (one binary PNG per object per frame).
        skip_first_and_last: do not score the first and last annotated frame. None = True (the DAVIS 2017 and SA-V
            semi-supervised protocols; pass False for unsupervised-style scoring of every annotated frame).
        num_workers: worker processes scoring videos in parallel; None = min(4, CPU count); 0 = in this process.
        strict: raise FileNotFoundError listing every missing prediction instead of scoring it as empty.
        progress: show a tqdm progress bar.
        from_first_appearance: the SA-V evaluator's rule of scoring an object from its first appearance in GT or
            prediction only. None = True for "sav", False for "davis" / "mose".
        bound_th: boundary tolerance of F (fraction of the image diagonal if < 1, else pixels).
    Returns:
        an `EvalResult`. Raises ValueError when a prediction's size differs from its GT (naming both files) or a
        mask PNG is not an indexed / greyscale image.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    gt_root, pred_root = os.fspath(gt_dir), os.fspath(pred_dir)
    for what, folder in (("ground-truth", gt_root), ("prediction", pred_root)):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{what} folder not found: {folder!r}")
    skip = True if skip_first_and_last is None else bool(skip_first_and_last)
    first_appearance = (layout == "sav") if from_first_appearance is None else bool(from_first_appearance)
    workers = _default_workers() if num_workers is None else int(num_workers)
    if workers < 0:
        raise ValueError(f"num_workers must be >= 0; got {num_workers}")

    jobs, missing, missing_videos, extra = _scan(gt_root, pred_root, layout, skip, first_appearance, bound_th)
    if strict and (missing or missing_videos):
        lines = [f"  video {v!r}: no prediction folder {os.path.join(pred_root, v)!r}" for v in missing_videos]
        lines += [f"  video {v!r}: {os.path.join(pred_root, v, f)!r}" for v, f in missing]
        raise FileNotFoundError(
            f"{len(missing_videos)} prediction video(s) and {len(missing)} prediction frame(s) are missing "
            f"(strict=True):\n" + "\n".join(lines)
        )

    order = {job.video: i for i, job in enumerate(jobs)}
    outcomes = sorted(_run(jobs, workers, progress), key=lambda o: order[o.video])
    failed = [(o.video, o.error) for o in outcomes if o.error is not None]
    if failed and strict:
        raise ValueError(f"{len(failed)} video(s) could not be evaluated:\n" +
                         "\n".join(f"  {v}: {e}" for v, e in failed))
    outcomes = [o for o in outcomes if o.error is None]
    objects = [row for o in outcomes for row in o.objects]
    unscored = [u for o in outcomes for u in o.unscored]
    videos = []
    for o in outcomes:
        J, F = _mean([r.J for r in o.objects]), _mean([r.F for r in o.objects])
        videos.append(VideoScore(o.video, J, F, (J + F) / 2, len(o.objects)))
    J, F = _mean([r.J for r in objects]), _mean([r.F for r in objects])
    return EvalResult(
        objects=objects,
        videos=videos,
        J=J,
        F=F,
        JF=(J + F) / 2,
        missing=missing,
        missing_videos=missing_videos,
        extra=extra,
        unscored=unscored,
        failed=failed,
        layout=layout,
        skip_first_and_last=skip,
        from_first_appearance=first_appearance,
        bound_th=bound_th,
    )
