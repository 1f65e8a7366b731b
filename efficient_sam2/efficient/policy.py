"""The Efficient-SAM2 frame policy: window router (SWR) and saliency cache (SMR) driving the tracking loop.

`EfficientSAM2` holds what is shared by every video (the configuration, the window grid and router, the shortcut
branch); `new_video()` gives an `EfficientPolicy` that owns one video's or stream's state: the next frame's window
plan, the saliency FIFO of first recollections, the SMR-random generator and the statistics of what was skipped.
After every frame the router turns all objects' outputs into the next frame's `WindowPlan`; before memory attention
the saliency cache turns each object group's memory bank into a `MemoryPlan`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..modeling.window_plan import WindowPlan, WindowResiduals
from ..modeling.memory_attention import MemoryPlan
from ..modeling.sam2 import MemoryFrame, SAM2Model, StepOutput
from ..tracking.policy import FramePolicy, FrameResult
from .config import EfficientConfig
from .memory_retrieval import MemorySlot, SaliencyCache, build_memory_plan, select_tokens, summary_count
from .router import RouteDecision, WindowGrid, WindowRouter, change_windows, frame_change, pooled_frame

__all__ = ["EfficientSAM2", "EfficientPolicy", "EfficiencyStats"]

CUT_HISTORY = 8
"""Frames of mean-change history a scene cut is judged against."""
CUT_FLOOR = 0.15
"""A frame whose mean pooled change (normalised pixels) is below this is never a scene cut."""
CUT_FIRST = 0.4
"""With no history yet (the first frames of a propagation), a change above this is a cut."""


def is_scene_cut(change: float, history: Sequence[float], ratio: float) -> bool:
    """Whether a frame whose mean pooled change is `change` is a scene cut, after frames whose changes were
    `history`: above CUT_FLOOR and `ratio` times their median (above CUT_FIRST with no history): a camera that
    shakes all the time changes every frame a lot, a cut changes one frame far more than the frames before it."""
    if change <= CUT_FLOOR:
        return False
    if not history:
        return change > CUT_FIRST
    ordered = sorted(history)
    return change > ratio * ordered[len(ordered) // 2]


BACKOFF_WINDOW = 10
"""Routed frames over which `backoff` counts the guarded ones."""
BACKOFF_FRAMES = 30
"""Frames run dense once `backoff` fires, before routing resumes."""

REFERENCE_FRAMES = 3
"""Stepped frames of an object whose score logits set its relative fallback threshold (theta_relative)."""


@dataclass
class EfficiencyStats:
    """What the accelerated path skipped on one video.

    kept_windows: frame -> fraction of the routed stage's windows computed (1.0 for dense frames);
    kept_memory: frame -> fraction of memory tokens read by cross-attention (averaged over object groups);
    saliency_fallbacks: frames on which the saliency fallback (W_saliency) fired;
    scene_cuts: frames taken for scene cuts (run dense; `EfficientConfig.scene_cut`);
    guarded_frames: frames run dense because an object's mask changed fast or its score fell (`guard`,
    `dense_fallback`); backoff_frames: frames run dense because recent frames were guarded too often (`backoff`).
    """

    kept_windows: dict[int, float] = field(default_factory=dict)
    kept_memory: dict[int, float] = field(default_factory=dict)
    saliency_fallbacks: list[int] = field(default_factory=list)
    scene_cuts: list[int] = field(default_factory=list)
    guarded_frames: list[int] = field(default_factory=list)
    backoff_frames: list[int] = field(default_factory=list)
    routed_frames: int = 0

    @property
    def mean_kept_windows(self) -> float:
        return sum(self.kept_windows.values()) / max(1, len(self.kept_windows))

    @property
    def mean_kept_memory(self) -> float:
        return sum(self.kept_memory.values()) / max(1, len(self.kept_memory))

    @property
    def fallback_rate(self) -> float:
        return len(self.saliency_fallbacks) / max(1, self.routed_frames)

    def summary(self) -> dict:
        return {
            "frames": len(self.kept_windows),
            "mean_kept_window_fraction": round(self.mean_kept_windows, 4),
            "mean_kept_memory_fraction": round(self.mean_kept_memory, 4) if self.kept_memory else None,
            "routed_frames": self.routed_frames,
            "saliency_fallbacks": len(self.saliency_fallbacks),
            "saliency_fallback_rate": round(self.fallback_rate, 4),
            "scene_cuts": len(self.scene_cuts),
            "guarded_frames": len(self.guarded_frames),
            "backoff_frames": len(self.backoff_frames),
        }


class EfficientSAM2:
    """The method for one model: configuration, router and shortcut; `new_video()` makes per-video policies.

    Args:
        model: the SAM2Model the policy plans for.
        efficient: EfficientConfig (paper defaults when None).
        shortcut_checkpoint: a shortcut file (ours or the official `.pth`); its variant wins over the config's.
        shortcut: an already built shortcut module (takes precedence over the checkpoint).
        bundled_shortcut: the shortcut shipped with the model (used, without a warning, when nothing is given).
    """

    def __init__(self, model: SAM2Model, efficient: EfficientConfig | None = None, shortcut_checkpoint=None,
                 shortcut: torch.nn.Module | None = None) -> None:
        self.model = model
        self.config = efficient if efficient is not None else EfficientConfig()
        trunk = model.image_encoder.trunk
        self.grid = WindowGrid(model.cfg.embed_size, trunk.routed_window)
        self.shortcut_info: dict = {}
        if shortcut is None:
            shortcut = self._make_shortcut(shortcut_checkpoint, trunk.routed_dim)
        self.shortcut = shortcut.to(model.device).eval() if shortcut is not None else None
        self.router = WindowRouter(self.grid, self.config)

    def _make_shortcut(self, checkpoint, dim: int):
        from .shortcut import build_shortcut, load_shortcut

        cfg = self.config
        if checkpoint is not None:
            variant = None if cfg.shortcut == "bottleneck" else cfg.shortcut
            module, info = load_shortcut(checkpoint, dim=dim, variant=variant, model_name=self.model.cfg.name)
            self.shortcut_info = info
            if info.get("variant") and info["variant"] != cfg.shortcut:
                self.config = cfg.replace(shortcut=info["variant"])
            return module
        if cfg.swr and cfg.shortcut != "identity":
            warnings.warn(
                f"no shortcut checkpoint given: the {cfg.shortcut} shortcut is untrained (close to identity). "
                "Train one with `efficient-sam2 train-shortcut` or load the official file with "
                "shortcut_checkpoint=...",
                stacklevel=4,
            )
        self.shortcut_info = {"variant": cfg.shortcut, "source": "untrained"}
        return build_shortcut(cfg.shortcut, dim)

    def new_video(self) -> "EfficientPolicy":
        return EfficientPolicy(self)


class EfficientPolicy(FramePolicy):
    """One video's (or stream's) Efficient-SAM2 state; see the module docstring."""

    def __init__(self, method: EfficientSAM2) -> None:
        self.method = method
        self.config = method.config
        model = method.model
        self.stats = EfficiencyStats()
        self.cache = SaliencyCache(max(0, model.cfg.num_maskmem - 2))
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.reverse = False
        self.processed = 0  # frames of the current propagation
        self.next_plan: tuple[int, RouteDecision] | None = None
        self.plan_used: dict[int, float] = {}
        self.frame_outputs: list[tuple] = []  # (mask logits, scores, saliency, obj ids) of this frame's steps
        self.memory_fractions: list[tuple[float, int]] = []  # (kept fraction, objects) of this frame's groups
        self.previous_frame: tuple[int, torch.Tensor] | None = None  # (frame, pooled image) for W_change / cuts
        self.change_history: list[float] = []  # mean pooled changes of the last frames (scene cuts)
        self.previous_masks: dict[int, torch.Tensor] = {}  # each object's last chosen mask (guard)
        self.anchor_areas: dict[int, tuple[int, int]] = {}  # (area, boundary pixels) of its mask on the last
        # frame run dense (drift_guard)
        self.dense_memory_frame: int | None = None  # a frame that reads every memory token (guard, cuts)
        # with guard_per_object: the objects that read every memory token on dense_memory_frame (None: all)
        self.dense_memory_objects: set[int] | None = None
        self.last_masks: tuple[int, dict] | None = None  # the last frame's masks (memory_object_tokens)
        self.reference_scores: dict[int, list[float]] = {}  # first stepped score logits per object (theta_relative)
        self.recent_guarded: list[bool] = []  # whether each of the last routed frames was guarded (backoff)
        self.backoff_left = 0  # frames still to run dense because of `backoff`
        # what the routed blocks added to each window when last computed (reuse_residuals)
        self.residuals = WindowResiduals() if self.config.reuse_residuals else None

    # ------------------------------------------------------------------ propagation
    def start(self, reverse: bool) -> None:
        self.reverse, self.processed, self.next_plan = reverse, 0, None
        self.frame_outputs.clear()
        self.previous_frame = None
        self.change_history = []
        self.previous_masks.clear()
        self.anchor_areas.clear()
        self.dense_memory_frame = self.last_masks = self.dense_memory_objects = None
        self.recent_guarded, self.backoff_left = [], 0
        self.cache.clear()  # memories may be re-computed by this run: start the saliency FIFO afresh
        if self.residuals is not None:
            self.residuals.clear()

    def stop(self) -> None:
        self.next_plan = None

    # ------------------------------------------------------------------ SWR
    def window_plan(self, frame_idx: int, image: torch.Tensor | None = None) -> WindowPlan | None:
        cfg = self.config
        change = self._frame_change(frame_idx, image)
        if cfg.swr and self.next_plan is not None and self.next_plan[0] == frame_idx:
            decision = self.next_plan[1]
            keep = decision.keep
            if change is not None and cfg.change_threshold is not None:
                grid = self.method.grid
                chosen = change_windows(change, grid, cfg.change_threshold).to(keep.device)
                chosen[keep] = True
                keep = chosen.nonzero().flatten()
            self.plan_used[frame_idx] = keep.numel() / self.method.grid.num_windows
            return WindowPlan(keep=keep, shortcut=self.method.shortcut, padding=cfg.padding,
                              residuals=self.residuals, context=cfg.global_context)
        self.plan_used[frame_idx] = 1.0
        if self.residuals is not None and cfg.swr:
            # every window computed (the dense result exactly), and every window's residual remembered
            keep = torch.arange(self.method.grid.num_windows)
            return WindowPlan(keep=keep, shortcut=self.method.shortcut, padding=cfg.padding, residuals=self.residuals,
                              context=cfg.global_context)
        return None

    def _frame_change(self, frame_idx: int, image: torch.Tensor | None) -> torch.Tensor | None:
        """The per-token change since the previous frame of this propagation (None when unknown); takes a scene
        cut (dense frames, memories read densely) when the mean change exceeds `scene_cut`."""
        cfg = self.config
        if image is None or (cfg.change_threshold is None and cfg.scene_cut is None):
            return None
        pooled = pooled_frame(image, self.method.grid)
        previous, self.previous_frame = self.previous_frame, (frame_idx, pooled)
        expected = frame_idx + 1 if self.reverse else frame_idx - 1
        if previous is None or previous[0] != expected:
            return None
        change, mean_change = frame_change(previous[1].to(pooled.device), pooled)
        history, self.change_history = self.change_history, (self.change_history + [mean_change])[-CUT_HISTORY:]
        if cfg.scene_cut is not None and is_scene_cut(mean_change, history, cfg.scene_cut):
            self.next_plan = None
            self.processed = 0  # this frame and the next run dense, as at the start of a propagation
            self.cache.clear()  # memory frames are read densely until they are recalled again
            if self.residuals is not None:
                self.residuals.clear()
            self.stats.scene_cuts.append(frame_idx)
            return None
        return change

    def wants_saliency(self, frame_idx: int) -> bool:
        return self.config.swr

    def observe_step(self, frame_idx: int, obj_ids: Sequence[int], step: StepOutput) -> None:
        dec = step.decoder
        if self.config.swr and dec is not None:
            masks = dec.multimask_logits if self.config.all_masks else dec.low_res
            self.frame_outputs.append((masks, dec.object_score_logits, dec.saliency, list(obj_ids)))
            if self.config.theta_relative is not None:
                for obj_id, score in zip(obj_ids, dec.object_score_logits.reshape(-1).tolist()):
                    first = self.reference_scores.setdefault(obj_id, [])
                    if len(first) < REFERENCE_FRAMES:
                        first.append(score)
        if step.memory_saliency is not None and self.config.smr:
            prev = frame_idx + 1 if self.reverse else frame_idx - 1
            required = self._object_tokens(prev, obj_ids, step.memory_saliency[0].shape[1])
            idx = select_tokens("topk", len(step.memory_saliency), step.memory_saliency[0].shape[1],
                                self.config.sparsity, saliency=step.memory_saliency, mass=self.config.memory_mass,
                                required=required)
            for b, obj_id in enumerate(obj_ids):
                self.cache.put(obj_id, prev, idx[b])

    def observe_frame(self, frame_idx: int, results: Sequence[FrameResult], device: torch.device) -> None:
        stats = self.stats
        if self.config.memory_object_tokens and self.config.smr:
            self.last_masks = (frame_idx, {r.obj_id: r.output.pred_masks for r in results
                                           if r.output.pred_masks is not None})
        stats.kept_windows[frame_idx] = self.plan_used.pop(frame_idx, 1.0)
        if self.memory_fractions:
            stats.kept_memory[frame_idx] = (sum(f * n for f, n in self.memory_fractions)
                                            / sum(n for _, n in self.memory_fractions))
        self.memory_fractions.clear()
        self.processed += 1
        outputs, self.frame_outputs = self.frame_outputs, []
        self.next_plan = None
        nxt = frame_idx - 1 if self.reverse else frame_idx + 1
        guarded = self._mask_changed(results, stats.kept_windows[frame_idx] == 1.0)
        if self.backoff_left > 0:
            self.backoff_left -= 1
            self.next_plan, self.dense_memory_frame, self.dense_memory_objects = None, nxt, None
            stats.backoff_frames.append(nxt)
            return
        if not self.config.swr or self.processed < self.config.dense_frames:
            if guarded:
                self._run_dense(nxt)
            return
        # objects prompted on this frame contribute their stored mask
        for r in results:
            if r.prompted:
                outputs.append((r.output.pred_masks.to(device), r.output.object_score_logits.to(device), None,
                                [r.obj_id]))
        if not outputs:
            return
        if len({m.shape[1] for m, _, _, _ in outputs}) == 1:
            masks = torch.cat([m for m, _, _, _ in outputs], 0)
        else:
            masks = torch.cat([m.amax(dim=1, keepdim=True) for m, _, _, _ in outputs], 0)
        scores = torch.cat([s.reshape(-1) for _, s, _, _ in outputs])
        maps = [sal for _, _, sal, _ in outputs]
        saliency = torch.cat(maps, 0) if all(m is not None for m in maps) else None
        thresholds = None
        if self.config.theta_relative is not None:
            thresholds = torch.tensor([self.fallback_threshold(o) for _, _, _, ids in outputs for o in ids])
        decision = self.method.router.route(masks, scores, saliency, thresholds)
        if (guarded and not self.config.guard_memory_only) or (self.config.dense_fallback and decision.saliency_fired):
            self._run_dense(nxt)
            self._note_guarded(True)
            return
        if guarded:  # guard_memory_only: every memory token read, the windows routed
            self.dense_memory_frame = nxt
            self.dense_memory_objects = set(guarded) if self.config.guard_per_object else None
            self.stats.guarded_frames.append(nxt)
        self._note_guarded(bool(guarded))
        self.next_plan = (nxt, decision)
        stats.routed_frames += 1
        if decision.saliency_fired:
            stats.saliency_fallbacks.append(nxt)

    def _object_tokens(self, frame_idx: int, obj_ids: Sequence[int], num_tokens: int) -> torch.Tensor | None:
        """(B, K) bool: the memory tokens of `frame_idx` that its mask of each object covers, grown by one token
        (`memory_object_tokens`), or None."""
        if not self.config.memory_object_tokens or self.last_masks is None or self.last_masks[0] != frame_idx:
            return None
        masks = [self.last_masks[1].get(o) for o in obj_ids]
        shapes = {m.shape[-2:] for m in masks if m is not None}
        if len(shapes) != 1:
            return None
        hw = shapes.pop()
        device = next(m.device for m in masks if m is not None)
        stacked = torch.stack([torch.zeros(hw, device=device) if m is None else (m.reshape(hw) > 0).float()
                               for m in masks])[:, None]  # (B, 1, h, w): one pooling for every object
        side = int(round(num_tokens ** 0.5))
        if side * side != num_tokens:  # memory tokens on a square grid (the model's square input)
            return None
        cells = torch.nn.functional.adaptive_max_pool2d(stacked, side)
        cells = torch.nn.functional.max_pool2d(cells, 3, stride=1, padding=1)
        return cells.flatten(1) > 0

    def _mask_changed(self, results: Sequence[FrameResult], dense: bool) -> set[int]:
        """The objects whose chosen mask changed by more than `guard` (1 - IoU) since the previous frame, or its
        area by more than `drift_guard` (relative) since the last frame that ran dense (`dense`: this one did);
        with `guard_tolerance`, pixels within the tolerance of the other mask and the area a boundary shift of
        the tolerance explains do not count; remembers the masks. All objects are compared in one batch (one host
        synchronisation)."""
        cfg = self.config
        if cfg.guard is None and cfg.drift_guard is None:
            return set()
        ids, masks = [], []
        for r in results:
            if r.output.pred_masks is None:
                continue
            if r.prompted:  # a given mask, not the model's: the next frame's output starts the comparison
                self.previous_masks.pop(r.obj_id, None)
                self.anchor_areas.pop(r.obj_id, None)
                continue
            ids.append(r.obj_id)
            masks.append(r.output.pred_masks.reshape(r.output.pred_masks.shape[-2:]) > 0)
        if not ids or len({m.shape for m in masks}) != 1:
            return set()
        mask = torch.stack(masks)  # (N, h, w)
        before = [self.previous_masks.get(o) for o in ids]
        before = [p if p is not None and p.shape == m.shape else None for p, m in zip(before, masks)]
        prev = torch.stack([m.new_zeros(m.shape) if p is None else p.to(m.device) for p, m in zip(before, masks)])
        union = mask | prev
        tol = cfg.guard_tolerance
        if tol is None:
            changed_px, perimeter = mask ^ prev, torch.zeros_like(mask)
        else:
            both = torch.cat([mask, prev]).float()[:, None]  # (2N, 1, h, w): one pooling for every mask
            grown = torch.nn.functional.max_pool2d(both, 2 * tol + 1, stride=1, padding=tol)[:, 0] > 0
            inner = -torch.nn.functional.max_pool2d(-both, 3, stride=1, padding=1)[:, 0] > 0  # eroded by 1 px
            n = mask.shape[0]
            # changed: in one mask and more than `tol` pixels from the other
            changed_px = (mask & ~grown[n:]) | (prev & ~grown[:n])
            perimeter = mask & ~inner[:n]  # boundary pixels of this frame's masks
        counts = torch.stack([changed_px.flatten(1).sum(1), union.flatten(1).sum(1), mask.flatten(1).sum(1),
                              perimeter.flatten(1).sum(1)]).tolist()
        changed = set()
        for k, o in enumerate(ids):
            moved, joint, area, boundary = counts[0][k], counts[1][k], counts[2][k], counts[3][k]
            anchor, anchor_boundary = self.anchor_areas.get(o, (None, 0))
            if cfg.guard is not None and before[k] is not None and joint and \
                    1.0 - (joint - moved) / joint > cfg.guard:  # without tolerance: 1 - IoU
                changed.add(o)
            if cfg.drift_guard is not None and anchor is not None and max(area, anchor) > 0:
                # the area a shift of either mask's boundary by the tolerance explains does not count
                slack = max(boundary, anchor_boundary) * tol if tol is not None else 0
                if max(0, abs(area - anchor) - slack) / max(area, anchor) > cfg.drift_guard:
                    changed.add(o)
            self.previous_masks[o] = masks[k]
            if dense or anchor is None:
                self.anchor_areas[o] = (area, boundary)
        return changed

    def _note_guarded(self, guarded: bool) -> None:
        """Count a routed frame for `backoff`: when at least that share of the last BACKOFF_WINDOW ones were guarded,
        the next BACKOFF_FRAMES frames run dense."""
        if self.config.backoff is None:
            return
        self.recent_guarded = (self.recent_guarded + [guarded])[-BACKOFF_WINDOW:]
        if len(self.recent_guarded) == BACKOFF_WINDOW and \
                sum(self.recent_guarded) >= self.config.backoff * BACKOFF_WINDOW:
            self.recent_guarded, self.backoff_left = [], BACKOFF_FRAMES

    def _run_dense(self, frame_idx: int) -> None:
        """The next frame computes every window and, unless `guard_sparse_memory`, reads every memory token."""
        self.next_plan = None
        if not self.config.guard_sparse_memory:
            self.dense_memory_frame, self.dense_memory_objects = frame_idx, None
        self.stats.guarded_frames.append(frame_idx)

    def fallback_threshold(self, obj_id: int) -> float:
        """The score logit below which the saliency fallback fires for `obj_id`: theta_obj, or with
        theta_relative, min(theta_obj, theta_relative x the mean of its first stepped scores, at least 0)."""
        cfg = self.config
        first = self.reference_scores.get(obj_id)
        if cfg.theta_relative is None or not first:
            return cfg.theta_obj
        return min(cfg.theta_obj, cfg.theta_relative * max(0.0, sum(first) / len(first)))

    def forget_object(self, obj_id: int) -> None:
        self.cache.drop_object(obj_id)
        self.reference_scores.pop(obj_id, None)
        self.previous_masks.pop(obj_id, None)
        self.anchor_areas.pop(obj_id, None)

    def nbytes(self) -> int:
        return self.cache.nbytes() + (self.residuals.nbytes() if self.residuals is not None else 0)

    # ------------------------------------------------------------------ SMR
    def group_key(self, obj_id: int, memory_frames: Sequence[int]) -> tuple:
        if not self.config.smr:
            return ()
        # the kept-token count of each cached frame (0: read densely): objects batched together need equal counts
        # (their index rows are stacked), which objects ranked in different batches need not have
        key = tuple(0 if (c := self.cache.get(obj_id, t)) is None else c.shape[-1] for t in memory_frames)
        if self.dense_memory_objects is not None:  # objects guarded on their own read densely: their own batch
            key += (obj_id in self.dense_memory_objects,)
        return key

    def memory_plan(self, frame_idx: int, obj_ids: Sequence[int], memories: Sequence[MemoryFrame],
                    num_ptr_tokens: int) -> MemoryPlan | None:
        cfg = self.config
        if not cfg.smr:
            return None
        model = self.method.model
        E = model.cfg.embed_size
        tokens = E * E
        num_layers = len(model.memory_attention.layers)
        num_ptr = num_ptr_tokens * (model.hidden_dim // model.mem_dim)
        total = len(memories) * tokens + num_ptr
        if cfg.memory_selection == "mempool":
            k = cfg.mempool_kernel
            kept = len(memories) * math.ceil(E / k) ** 2 + num_ptr
            self.memory_fractions.append((kept / total, len(obj_ids)))
            return MemoryPlan(pool=k)
        last_slot = model.num_maskmem - 1
        prev = frame_idx + 1 if self.reverse else frame_idx - 1
        read_all = self.dense_memory_frame == frame_idx and (
            self.dense_memory_objects is None or all(o in self.dense_memory_objects for o in obj_ids))
        stride = model.cfg.memory_temporal_stride
        device = memories[0].features.device if memories else model.device
        slots = []
        for m in memories:
            slot = MemorySlot(m.frame_idx)
            if m.t_pos == last_slot and m.frame_idx == prev:
                # first recollection of frame t-1: rank its tokens if it stays in the bank as a strided memory
                if m.frame_idx % stride == 0 and any(self.cache.get(o, prev) is None for o in obj_ids):
                    if cfg.memory_selection == "topk":
                        slot.first_recollection = True
                    else:
                        idx = select_tokens(cfg.memory_selection, num_layers, tokens, cfg.sparsity,
                                            generator=self.generator, batch=len(obj_ids), device=device)
                        for b, o in enumerate(obj_ids):
                            self.cache.put(o, prev, idx[b])
            elif m.t_pos != 0 and not read_all:
                cached = [self.cache.get(o, m.frame_idx) for o in obj_ids]
                if all(c is not None for c in cached):
                    slot.dense = False
                    slot.indices = torch.stack(cached, 0)
            slots.append(slot)
        plan, kept = build_memory_plan(slots, tokens, num_ptr, num_layers, len(obj_ids), device)
        if plan is not None and plan.keep is not None and cfg.memory_summary:
            plan.summary = cfg.memory_summary
            # one summary token per block of a pruned frame that leaves a token out
            kept += sum(summary_count(s.indices, E, cfg.memory_summary) for s in slots if not s.dense)
        self.memory_fractions.append((kept / total, len(obj_ids)))
        return plan
