"""The memory bank rules: which stored frames and object pointers a frame attends to, and what can be forgotten.

These follow the reference SAM 2 predictor exactly (tested against hand-computed tables and the reference package).
Outputs are opaque here: the rules only read the frame indices of the per-object `cond` (prompted) and `non_cond`
(tracked) dictionaries.
"""

from __future__ import annotations

__all__ = ["select_memory_frames", "select_object_pointers", "select_closest_cond_frames", "frames_to_keep"]


def select_memory_frames(
    frame_idx: int,
    cond_outputs: dict[int, object],
    non_cond_outputs: dict[int, object],
    num_maskmem: int,
    stride: int,
    max_cond_frames: int = -1,
    reverse: bool = False,
) -> tuple[list[tuple[int, int, object]], dict[int, object], dict[int, object]]:
    """Which stored frames frame `frame_idx` attends to, following the reference memory bank rules.

    Returns ([(t_pos, frame, output), ...] with conditioning frames first (t_pos 0), then recent frames from the
    most distant (t_pos 1) to frame t-1 (t_pos num_maskmem-1); the selected and unselected conditioning outputs.
    Missing frames are skipped.
    """
    selected, unselected = select_closest_cond_frames(frame_idx, cond_outputs, max_cond_frames)
    chosen: list[tuple[int, int, object]] = [(0, t, out) for t, out in selected.items()]
    for t_pos in range(1, num_maskmem):
        t_rel = num_maskmem - t_pos
        if t_rel == 1:
            prev = frame_idx + 1 if reverse else frame_idx - 1
        elif not reverse:
            prev = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
        else:
            prev = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
        out = non_cond_outputs.get(prev)
        if out is None:
            out = unselected.get(prev)
        if out is not None:
            chosen.append((t_pos, prev, out))
    return chosen, selected, unselected


def select_object_pointers(
    frame_idx: int,
    selected_cond: dict[int, object],
    unselected_cond: dict[int, object],
    non_cond_outputs: dict[int, object],
    num_frames: int,
    max_obj_ptrs: int,
    signed: bool,
    reverse: bool = False,
) -> list[tuple[int, int, object]]:
    """[(distance, frame, output), ...]: past conditioning frames, then up to max_ptrs-1 recent frames."""
    max_ptrs = min(num_frames, max_obj_ptrs)
    sign = -1 if reverse else 1
    chosen = []
    for t, out in selected_cond.items():
        if (t >= frame_idx) if reverse else (t <= frame_idx):
            d = (frame_idx - t) * sign if signed else abs(frame_idx - t)
            chosen.append((d, t, out))
    for d in range(1, max_ptrs):
        t = frame_idx + d if reverse else frame_idx - d
        if t < 0 or t >= num_frames:
            break
        out = non_cond_outputs.get(t, unselected_cond.get(t))
        if out is not None:
            chosen.append((d, t, out))
    return chosen


def select_closest_cond_frames(frame_idx: int, cond_outputs: dict[int, object], max_cond_frames: int):
    """Split conditioning frames into (selected, unselected); all are selected when max_cond_frames is -1.

    Otherwise keep the closest one before `frame_idx`, the closest at-or-after, then the rest by |distance|.
    """
    if max_cond_frames == -1 or len(cond_outputs) <= max_cond_frames:
        return dict(cond_outputs), {}
    if max_cond_frames < 2:
        raise ValueError("max_cond_frames must be -1 or at least 2")
    selected = {}
    before = max((t for t in cond_outputs if t < frame_idx), default=None)
    if before is not None:
        selected[before] = cond_outputs[before]
    after = min((t for t in cond_outputs if t >= frame_idx), default=None)
    if after is not None:
        selected[after] = cond_outputs[after]
    rest = max_cond_frames - len(selected)
    for t in sorted((t for t in cond_outputs if t not in selected), key=lambda t: abs(t - frame_idx))[:rest]:
        selected[t] = cond_outputs[t]
    unselected = {t: v for t, v in cond_outputs.items() if t not in selected}
    return selected, unselected


def frames_to_keep(
    last_frame: int, num_maskmem: int, stride: int, max_obj_ptrs: int
) -> tuple[callable, callable]:
    """What a forward stream that has just tracked `last_frame` must still hold for any later frame.

    Returns two predicates on a tracked (non-conditioning) frame index: `needs_memory(f)` (its spatial memory can
    still be selected: frame t-1 of the next frame, or a strided recent frame of any later one) and
    `needs_pointer(f)` (its object pointer is within `max_obj_ptrs - 1` frames of a later frame). Every other
    tracked frame can be forgotten; later frames never select it (same rules as `select_memory_frames` /
    `select_object_pointers` in the forward direction).
    """
    lowest = last_frame + 1
    if num_maskmem >= 3:
        lowest = ((last_frame - 1) // stride) * stride - (num_maskmem - 3) * stride

    def needs_memory(f: int) -> bool:
        return num_maskmem >= 2 and (f == last_frame or (f % stride == 0 and lowest <= f <= last_frame))

    def needs_pointer(f: int) -> bool:
        return last_frame - max_obj_ptrs + 2 <= f <= last_frame

    return needs_memory, needs_pointer
