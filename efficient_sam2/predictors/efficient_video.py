"""The Efficient-SAM2 video predictor: Sparse Window Routing in the image encoder and Sparse Memory Retrieval in
memory attention, on top of the reference-compatible `VideoPredictor`.

The model stays stateless: after every frame the router turns all objects' outputs into the next frame's
`WindowPlan`, and the saliency cache turns each object's memory bank into a `MemoryPlan`. Statistics of what was
skipped are kept per video (`predictor.statistics(state)`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch

from ..efficient.config import EfficientConfig
from ..efficient.memory_retrieval import MemorySlot, SaliencyCache, build_memory_plan, select_tokens
from ..efficient.router import RouteDecision, WindowGrid, WindowRouter
from ..modeling.hiera import WindowPlan
from ..modeling.memory_attention import MemoryPlan
from ..modeling.sam2 import MemoryFrame, SAM2Model, StepOutput
from .video import InferenceState, ObjectState, VideoPredictor

__all__ = ["EfficientVideoPredictor", "EfficiencyStats"]


@dataclass
class EfficiencyStats:
    """What the accelerated predictor skipped on one video.

    kept_windows: frame -> fraction of the routed stage's windows computed (1.0 for dense frames);
    kept_memory: frame -> fraction of memory tokens read by cross-attention (averaged over object groups);
    saliency_fallbacks: frames on which the saliency fallback (W_saliency) fired.
    """

    kept_windows: dict[int, float] = field(default_factory=dict)
    kept_memory: dict[int, float] = field(default_factory=dict)
    saliency_fallbacks: list[int] = field(default_factory=list)
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
        }


@dataclass
class _VideoExtras:
    stats: EfficiencyStats = field(default_factory=EfficiencyStats)
    cache: SaliencyCache | None = None
    propagating: bool = False
    reverse: bool = False
    processed: int = 0
    next_plan: tuple[int, RouteDecision] | None = None
    plan_used: dict[int, float] = field(default_factory=dict)
    frame_outputs: list = field(default_factory=list)  # (mask logits, scores, saliency) of this frame's steps
    memory_fractions: list = field(default_factory=list)
    generator: torch.Generator | None = None


class EfficientVideoPredictor(VideoPredictor):
    """VideoPredictor with SWR and SMR. `efficient=EfficientConfig()` gives the paper's defaults."""

    def __init__(
        self,
        model: SAM2Model,
        efficient: EfficientConfig | None = None,
        shortcut_checkpoint=None,
        fill_hole_area: int = 0,
        non_overlap_masks: bool = False,
        shortcut: torch.nn.Module | None = None,
    ) -> None:
        super().__init__(model, fill_hole_area=fill_hole_area, non_overlap_masks=non_overlap_masks)
        self.efficient = efficient if efficient is not None else EfficientConfig()
        trunk = model.image_encoder.trunk
        self.grid = WindowGrid(model.cfg.embed_size, trunk.routed_window)
        self.router = WindowRouter(self.grid, self.efficient)
        self.shortcut_info: dict = {}
        if shortcut is None:
            shortcut = self._make_shortcut(shortcut_checkpoint, trunk.routed_dim)
        self.shortcut = shortcut.to(model.device).eval() if shortcut is not None else None

    def _make_shortcut(self, checkpoint, dim: int):
        from ..efficient.shortcut import build_shortcut, load_shortcut

        cfg = self.efficient
        if checkpoint is not None:
            variant = None if cfg.shortcut == "bottleneck" else cfg.shortcut
            module, info = load_shortcut(checkpoint, dim=dim, variant=variant, model_name=self.model.cfg.name)
            self.shortcut_info = info
            if info.get("variant") and info["variant"] != cfg.shortcut:
                self.efficient = cfg = cfg.replace(shortcut=info["variant"])
                self.router = WindowRouter(self.grid, cfg)
            return module
        if cfg.swr and cfg.shortcut != "identity":
            warnings.warn(
                f"no shortcut checkpoint given: the {cfg.shortcut} shortcut is untrained (close to identity). "
                "Train one with `efficient-sam2 train-shortcut` or load the official file with "
                "shortcut_checkpoint=...",
                stacklevel=3,
            )
        self.shortcut_info = {"variant": cfg.shortcut, "source": "untrained"}
        return build_shortcut(cfg.shortcut, dim)

    # ------------------------------------------------------------------ per-video state
    def _extras(self, state: InferenceState) -> _VideoExtras:
        ex = state.extras.get("efficient")
        if ex is None:
            ex = _VideoExtras(cache=SaliencyCache(max(0, self.model.cfg.num_maskmem - 2)))
            ex.generator = torch.Generator().manual_seed(self.efficient.seed)
            state.extras["efficient"] = ex
        return ex

    def _new_video(self, state: InferenceState) -> None:
        state.extras.pop("efficient", None)
        self._extras(state)

    def statistics(self, state: InferenceState) -> EfficiencyStats:
        """Kept-window and kept-memory fractions and saliency fallbacks of the video so far."""
        return self._extras(state).stats

    def propagate_in_video(self, state, start_frame_idx=None, max_frame_num_to_track=None, reverse=False,
                           progress: bool = True):
        ex = self._extras(state)
        ex.propagating, ex.reverse, ex.processed, ex.next_plan = True, reverse, 0, None
        ex.frame_outputs.clear()
        ex.cache.clear()  # memories may be re-computed by this run: start the saliency FIFO afresh
        try:
            yield from super().propagate_in_video(state, start_frame_idx, max_frame_num_to_track, reverse,
                                                  progress=progress)
        finally:
            ex.propagating = False
            ex.next_plan = None

    # ------------------------------------------------------------------ SWR
    def _window_plan(self, state: InferenceState, frame_idx: int):
        ex = self._extras(state)
        plan = None
        if self.efficient.swr and ex.propagating and ex.next_plan is not None and ex.next_plan[0] == frame_idx:
            decision = ex.next_plan[1]
            plan = WindowPlan(keep=decision.keep, shortcut=self.shortcut, padding=self.efficient.padding)
            ex.plan_used[frame_idx] = decision.kept_fraction
        else:
            ex.plan_used[frame_idx] = 1.0
        return plan

    def _wants_saliency(self, state: InferenceState, frame_idx: int) -> bool:
        ex = self._extras(state)
        return self.efficient.swr and ex.propagating

    def _step_done(self, state, objs, frame_idx, step: StepOutput, memories) -> None:
        ex = self._extras(state)
        if not ex.propagating:
            return
        dec = step.decoder
        if self.efficient.swr and dec is not None:
            masks = dec.multimask_logits if self.efficient.all_masks else dec.low_res
            ex.frame_outputs.append((masks, dec.object_score_logits, dec.saliency))
        if step.memory_saliency is not None and self.efficient.smr:
            prev = frame_idx + 1 if ex.reverse else frame_idx - 1
            idx = select_tokens("topk", len(step.memory_saliency), step.memory_saliency[0].shape[1],
                                self.efficient.sparsity, saliency=step.memory_saliency)
            for b, obj in enumerate(objs):
                ex.cache.put(obj.obj_id, prev, idx[b])

    def _frame_done(self, state: InferenceState, frame_idx: int, objs: list[ObjectState]) -> None:
        ex = self._extras(state)
        if not ex.propagating:
            return
        stats = ex.stats
        stats.kept_windows[frame_idx] = ex.plan_used.get(frame_idx, 1.0)
        if ex.memory_fractions:
            stats.kept_memory[frame_idx] = sum(ex.memory_fractions) / len(ex.memory_fractions)
        ex.memory_fractions.clear()
        ex.processed += 1
        outputs, ex.frame_outputs = ex.frame_outputs, []
        ex.next_plan = None
        if not self.efficient.swr or ex.processed < self.efficient.dense_frames:
            return
        # objects whose frame was a prompted (conditioning) frame contribute their stored mask
        tracked = {id(o) for o in objs if frame_idx not in o.cond_outputs}
        for obj in objs:
            if id(obj) not in tracked:
                out = obj.cond_outputs[frame_idx]
                outputs.append((out.pred_masks.to(state.device), out.object_score_logits.to(state.device), None))
        if not outputs:
            return
        masks = torch.cat([m for m, _, _ in outputs], 0) if len({m.shape[1] for m, _, _ in outputs}) == 1 \
            else torch.cat([m.amax(dim=1, keepdim=True) for m, _, _ in outputs], 0)
        scores = torch.cat([s.reshape(-1) for _, s, _ in outputs])
        maps = [sal for _, _, sal in outputs]
        saliency = torch.cat(maps, 0) if all(m is not None for m in maps) else None
        decision = self.router.route(masks, scores, saliency)
        nxt = frame_idx - 1 if ex.reverse else frame_idx + 1
        ex.next_plan = (nxt, decision)
        stats.routed_frames += 1
        if decision.saliency_fired:
            stats.saliency_fallbacks.append(nxt)

    # ------------------------------------------------------------------ SMR
    def _group_extra(self, state, obj, frame_idx, selection) -> tuple:
        if not self.efficient.smr:
            return ()
        cache = self._extras(state).cache
        return tuple(cache.get(obj.obj_id, t) is not None for _, t, _ in selection[0])

    def _memory_plan(self, state, objs, frame_idx, memories: list[MemoryFrame], num_ptr_tokens: int):
        cfg = self.efficient
        ex = self._extras(state)
        if not cfg.smr or not ex.propagating:
            return None
        E = self.model.cfg.embed_size
        tokens = E * E
        num_layers = len(self.model.memory_attention.layers)
        num_ptr = num_ptr_tokens * (self.model.hidden_dim // self.model.mem_dim)
        total = len(memories) * tokens + num_ptr
        if cfg.memory_selection == "mempool":
            k = cfg.mempool_kernel
            kept = len(memories) * math.ceil(E / k) ** 2 + num_ptr
            ex.memory_fractions.append(kept / total)
            return MemoryPlan(pool=k)
        last_slot = self.model.num_maskmem - 1
        prev = frame_idx + 1 if ex.reverse else frame_idx - 1
        stride = self.model.cfg.memory_temporal_stride
        device = state.device
        slots = []
        for m in memories:
            slot = MemorySlot(m.frame_idx)
            if m.t_pos == last_slot and m.frame_idx == prev:
                # first recollection of frame t-1: rank its tokens if it stays in the bank as a strided memory
                if m.frame_idx % stride == 0 and any(ex.cache.get(o.obj_id, prev) is None for o in objs):
                    if cfg.memory_selection == "topk":
                        slot.first_recollection = True
                    else:
                        idx = select_tokens(cfg.memory_selection, num_layers, tokens, cfg.sparsity,
                                            generator=ex.generator, batch=len(objs), device=device)
                        for b, o in enumerate(objs):
                            ex.cache.put(o.obj_id, prev, idx[b])
            elif m.t_pos != 0:
                cached = [ex.cache.get(o.obj_id, m.frame_idx) for o in objs]
                if all(c is not None for c in cached):
                    slot.dense = False
                    slot.indices = torch.stack(cached, 0)
            slots.append(slot)
        plan, kept = build_memory_plan(slots, tokens, num_ptr, num_layers, len(objs), device)
        ex.memory_fractions.append(kept / total)
        return plan
