"""Prompt files: the clicks, boxes or masks that start tracking in a video, kept beside it in a small text file.

A prompt file (UTF-8 text, conventionally ``<video>.prompts``) has one prompt per line; blank lines and everything
after a ``#`` are ignored::

    # kind   object  frame  values
    point    1       0      266 250        # a positive click at x = 266, y = 250 (pixels of the video's frames)
    point    1       0      262 300 0      # a negative click (label 0; 1, the default, is positive)
    box      2       0      480 150 550 240   # x0 y0 x1 y1
    mask     0      first_frame.png        # a palette PNG: every non-zero value is an object id (path relative
                                            # to the prompt file)

Clicks and a box of the same object on the same frame form one prompt; a mask line gives every object of its PNG a
mask prompt, which cannot be combined with clicks or a box of that object on that frame. Object ids are 1..255 (the
palette index of the masks written for them), frames count from 0.

An Annotations-style palette PNG can be used in place of a prompt file: its objects are mask prompts on frame 0, or
on the frame its name gives (``00012.png``: frame 12).

    prompts = load_prompts("docs/clips/vtest.prompts")
    prompts.check_video(num_frames=len(frames), size=(frames.height, frames.width))
    apply_prompts(predictor, state, prompts)         # VideoPredictor: add_new_points_or_box / add_new_mask

A bad file raises `PromptError` whose message starts with ``file:line:`` and says what is wrong with that line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

from .masks import MaskError, read_palette_mask

__all__ = ["ObjectPrompt", "PromptError", "VideoPrompts", "apply_prompts", "load_prompts", "parse_prompts"]

PathLike = Union[str, os.PathLike]
KINDS = ("point", "box", "mask")
_FIELDS = {"point": "point OBJ FRAME X Y [LABEL]", "box": "box OBJ FRAME X0 Y0 X1 Y1", "mask": "mask FRAME PNG"}


class PromptError(ValueError):
    """A prompt file that cannot be used; `path` and `line` (1-based, None for the file as a whole) say where."""

    def __init__(self, path: str, line: Optional[int], message: str) -> None:
        self.path, self.line = path, line
        super().__init__(f"{path}:{line}: {message}" if line is not None else f"{path}: {message}")


@dataclass(frozen=True)
class ObjectPrompt:
    """The prompt of one object on one frame: clicks (`points` (N, 2) float32 x, y in pixels, `labels` (N,) int32,
    1 positive / 0 negative), a `box` (x0, y0, x1, y1), both, or a `mask` ((H, W) bool) alone. `line`: where it
    starts in its file; `point_lines` (one per click) and `box_line`: where those are (for messages)."""

    obj_id: int
    frame: int
    points: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    box: Optional[tuple[float, float, float, float]] = None
    mask: Optional[np.ndarray] = None
    line: Optional[int] = None
    point_lines: Optional[tuple[int, ...]] = None
    box_line: Optional[int] = None


@dataclass(frozen=True)
class VideoPrompts:
    """Every prompt of one prompt file, ordered by frame, then object id. `source`: the file they came from."""

    source: str
    prompts: tuple[ObjectPrompt, ...]

    @property
    def obj_ids(self) -> list[int]:
        """The object ids, in increasing order."""
        return sorted({p.obj_id for p in self.prompts})

    @property
    def frames(self) -> list[int]:
        """The prompted frames, in increasing order."""
        return sorted({p.frame for p in self.prompts})

    def on_frame(self, frame: int) -> list[ObjectPrompt]:
        return [p for p in self.prompts if p.frame == frame]

    def check_video(self, num_frames: int, size: tuple[int, int]) -> None:
        """Raise PromptError (naming the line) for a prompt outside a video of `num_frames` frames of `size` (H, W):
        a frame past its end, a click or box outside the frame, a mask of another size."""
        h, w = size
        problems = []  # (line, message): the first bad line of the file is named
        for p in self.prompts:
            if p.frame >= num_frames:
                problems.append((p.line, f"frame {p.frame} is past the end of the video (frames 0..{num_frames - 1})"))
            if p.points is not None:
                lines = p.point_lines or (p.line,) * len(p.points)
                for (x, y), line in zip(p.points, lines):
                    if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
                        problems.append((line, f"object {p.obj_id}: click ({x:g}, {y:g}) is outside the {w}x{h} "
                                               "(WxH) frame"))
            if p.box is not None:
                x0, y0, x1, y1 = p.box
                if x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
                    problems.append((p.box_line or p.line, f"object {p.obj_id}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) "
                                                           f"is outside the {w}x{h} (WxH) frame"))
            if p.mask is not None and p.mask.shape != (h, w):
                problems.append((p.line, f"mask of object {p.obj_id} is {p.mask.shape[1]}x{p.mask.shape[0]} (WxH) "
                                         f"but the video's frames are {w}x{h}"))
        if problems:
            line, message = min(problems, key=lambda item: item[0] or 0)
            raise PromptError(self.source, line, message)


# ---------------------------------------------------------------------------------------------------------------------
# Reading


def _int(path: str, line: int, text: str, what: str, lo: int, hi: Optional[int] = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise PromptError(path, line, f"{what} must be a whole number; got {text!r}") from None
    if value < lo or (hi is not None and value > hi):
        limits = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise PromptError(path, line, f"{what} must be {limits}; got {value}")
    return value


def _float(path: str, line: int, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PromptError(path, line, f"{what} must be a number; got {text!r}") from None
    if not np.isfinite(value):
        raise PromptError(path, line, f"{what} must be a finite number; got {text!r}")
    return value


class _Builder:
    """Collects the lines of one (object, frame) prompt."""

    def __init__(self, obj_id: int, frame: int, line: int) -> None:
        self.obj_id, self.frame, self.line = obj_id, frame, line
        self.points: list[tuple[float, float]] = []
        self.labels: list[int] = []
        self.point_lines: list[int] = []
        self.box: Optional[tuple[float, float, float, float]] = None
        self.box_line: Optional[int] = None
        self.mask: Optional[np.ndarray] = None
        self.mask_line: Optional[int] = None
        self.click_line: Optional[int] = None

    def build(self, path: str) -> ObjectPrompt:
        if self.points and not any(self.labels) and self.box is None:
            raise PromptError(path, self.click_line, f"object {self.obj_id} on frame {self.frame} has only negative "
                                                     "clicks; give at least one positive click (label 1) or a box")
        points = np.array(self.points, np.float32).reshape(-1, 2) if self.points else None
        labels = np.array(self.labels, np.int32) if self.points else None
        return ObjectPrompt(self.obj_id, self.frame, points, labels, self.box, self.mask, self.line,
                            tuple(self.point_lines) if self.points else None, self.box_line)


def parse_prompts(text: str, source: str = "<prompts>", base_dir: Optional[PathLike] = None) -> VideoPrompts:
    """Parse the text of a prompt file (see the module docstring). `source` names it in messages; mask paths are
    relative to `base_dir` (default: the current folder). Raises PromptError naming the line."""
    builders: dict[tuple[int, int], _Builder] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        kind = words[0].lower()
        if kind not in KINDS:
            raise PromptError(source, number, f"unknown prompt {words[0]!r}; a line is one of: "
                                              + "; ".join(_FIELDS.values()))
        if kind == "mask":
            _mask_line(source, number, words, builders, base_dir)
            continue
        counts = {"point": (5, 6), "box": (7,)}[kind]
        if len(words) not in counts:
            raise PromptError(source, number, f"{kind} takes {' or '.join(str(c - 1) for c in counts)} values "
                                              f"({_FIELDS[kind]}); got {len(words) - 1}")
        obj_id = _int(source, number, words[1], "the object id", 1, 255)
        frame = _int(source, number, words[2], "the frame", 0)
        b = builders.setdefault((obj_id, frame), _Builder(obj_id, frame, number))
        if b.mask is not None:
            raise PromptError(source, number, f"object {obj_id} on frame {frame} already has a mask (line "
                                              f"{b.mask_line}); give a mask or clicks and a box, not both")
        if kind == "point":
            x, y = (_float(source, number, v, c) for v, c in zip(words[3:5], ("x", "y")))
            label = _int(source, number, words[5], "the label (1 positive, 0 negative)", 0, 1) if len(words) == 6 else 1
            b.points.append((x, y))
            b.labels.append(label)
            b.point_lines.append(number)
            b.click_line = b.click_line or number
        else:
            x0, y0, x1, y1 = (_float(source, number, v, c) for v, c in zip(words[3:7], ("x0", "y0", "x1", "y1")))
            if x1 <= x0 or y1 <= y0:
                raise PromptError(source, number, f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) must have x1 > x0 and "
                                                  "y1 > y0 (x0 y0 x1 y1: top-left, then bottom-right corner)")
            if b.box is not None:
                raise PromptError(source, number, f"object {obj_id} on frame {frame} already has a box (line "
                                                  f"{b.box_line}); one box per object and frame")
            b.box, b.box_line = (x0, y0, x1, y1), number
    if not builders:
        raise PromptError(source, None, "holds no prompt (every line is blank or a comment)")
    prompts = sorted((b.build(source) for b in builders.values()), key=lambda p: (p.frame, p.obj_id))
    return VideoPrompts(source, tuple(prompts))


def _mask_line(source: str, number: int, words: list[str], builders: dict, base_dir: Optional[PathLike]) -> None:
    if len(words) != 3:
        raise PromptError(source, number, f"mask takes 2 values ({_FIELDS['mask']}); got {len(words) - 1}")
    frame = _int(source, number, words[1], "the frame", 0)
    path = os.path.join(os.fspath(base_dir), words[2]) if base_dir is not None else words[2]
    try:
        ids, _ = read_palette_mask(path)
    except FileNotFoundError:
        raise PromptError(source, number, f"mask file not found: {path!r}") from None
    except MaskError as exc:
        raise PromptError(source, number, str(exc)) from None
    values = [int(v) for v in np.unique(ids) if v != 0]
    if not values:
        raise PromptError(source, number, f"mask {path!r} is empty (every pixel is 0): it prompts no object")
    for obj_id in values:
        b = builders.setdefault((obj_id, frame), _Builder(obj_id, frame, number))
        if b.mask is not None or b.points or b.box is not None:
            first = b.mask_line or b.click_line or b.box_line
            raise PromptError(source, number, f"object {obj_id} on frame {frame} is already prompted (line {first}); "
                                              "give a mask or clicks and a box, not both")
        b.mask, b.mask_line = ids == obj_id, number


def load_prompts(path: PathLike) -> VideoPrompts:
    """Read a prompt file, or a palette PNG of first-frame masks (Annotations style: every non-zero value is an
    object; frame 0, or the frame its numeric name gives). Raises PromptError naming the line, FileNotFoundError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"prompt file not found: {path!r}")
    if path.lower().endswith(".png"):
        stem = os.path.splitext(os.path.basename(path))[0]
        frame = int(stem) if re.fullmatch(r"\d+", stem) else 0
        return parse_prompts(f"mask {frame} {os.path.basename(path)}", source=path, base_dir=os.path.dirname(path))
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise PromptError(path, None, f"is not UTF-8 text (a prompt file, or a .png mask): {exc.reason}") from None
    return parse_prompts(text, source=path, base_dir=os.path.dirname(path))


# ---------------------------------------------------------------------------------------------------------------------
# Using


def apply_prompts(predictor, state, prompts: Union[VideoPrompts, Sequence[ObjectPrompt]]) -> None:
    """Give every prompt to a video predictor (`VideoPredictor`, or anything with its `add_new_points_or_box` and
    `add_new_mask`) for the video of `state`: masks with add_new_mask, clicks and boxes with add_new_points_or_box."""
    items = prompts.prompts if isinstance(prompts, VideoPrompts) else tuple(prompts)
    for p in items:
        if p.mask is not None:
            predictor.add_new_mask(state, p.frame, p.obj_id, p.mask)
        else:
            predictor.add_new_points_or_box(state, p.frame, p.obj_id, points=p.points, labels=p.labels, box=p.box)
