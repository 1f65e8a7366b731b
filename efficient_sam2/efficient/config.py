"""EfficientConfig: every option of Sparse Window Routing (SWR) and Sparse Memory Retrieval (SMR).

`EfficientConfig.paper()` is the paper's method exactly (Efficient-SAM2, ICLR 2026, section 3 and 4.1); the
defaults add the options beyond the paper that measurement chose (BENCHMARKS.md, "Fidelity"). The paper's symbol
is given for each paper option.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = [
    "EfficientConfig", "PAPER_OPTIONS", "BEYOND_PAPER", "SHORTCUT_VARIANTS", "MEMORY_SELECTIONS", "PADDING_MODES",
]

SHORTCUT_VARIANTS = ("bottleneck", "ffn", "attention", "identity")
MEMORY_SELECTIONS = ("topk", "random", "uniform", "mempool")
PADDING_MODES = ("zero", "official")


@dataclass(frozen=True)
class EfficientConfig:
    """Options of the accelerated video predictor.

    Sparse Window Routing (image encoder):
        swr: route the windowed blocks of the stride-16 Hiera stage (SWR on/off).
        tau: cumulative decoder-attention mass of the saliency fallback windows (tau, 0.7).
        theta_obj: object-score threshold below which the saliency fallback fires (theta_obj, 5).
        dilation: side of the square dilation applied to the previous masks, in pixels at 256 x 256 mask
            resolution (scaled with the image size); 1 = no dilation (5).
        all_masks: take the union of all three multimask outputs (the paper's "All Pred."); False uses the
            chosen mask only.
        dense_frames: the first `dense_frames` frames of every propagation keep every window (2: frames 0 and 1).
        shortcut: the branch that processes background windows: "bottleneck" (paper, Eq. 13), "ffn",
            "attention" or "identity" (Table 3).
        padding: "zero" re-zeroes window padding as the dense model does, so keeping every window equals the
            dense model; "official" keeps padded tokens alive between routed blocks like the official code
            (base_plus only differs), for its shipped shortcut weights.
    Sparse Memory Retrieval (memory attention):
        smr: prune the memory frames t-m .. t-2 in every memory-attention layer's cross-attention.
        sparsity: fraction of a memory frame's K tokens dropped (s, 0.95); floor((1 - s) K) are kept.
        memory_selection: "topk" (paper: by query-averaged attention at the frame's first recollection),
            "random" (SMR-random), "uniform" (SMR-uniform), or "mempool" (2x2 average pooling of the memory
            keys and values of every spatial memory frame, the MemPool baseline).
        mempool_kernel: pooling kernel of the MemPool baseline (2).
        seed: seed of SMR-random.
    Beyond the paper (each None = the paper's behaviour; `EfficientConfig.paper()` sets them all to None):
        memory_mass: SMR keeps, per memory frame, the smallest set of tokens (in descending first-recollection
            saliency, in every layer) whose mass reaches this fraction, and never fewer than floor((1 - s) K): flat
            attention keeps more tokens, peaked attention as few as the paper. Only with memory_selection "topk".
        change_threshold: SWR also computes the windows whose image changed since the previous frame: the
            frame is average-pooled to the routed stage's token grid (normalised pixels), the global mean change
            is subtracted (lighting drift), and a window is kept when any of its tokens changed by more than this
            (in normalised-pixel units, mean over the colour channels). Catches objects moving into windows the
            previous mask did not reach.
        scene_cut: a frame whose mean pooled change (as for change_threshold) exceeds this many times the median
            of the previous frames' (and 0.15) is a scene cut: it and the next frame run dense (every window), and
            every memory frame is read densely until it is recalled again.
        theta_relative: the saliency fallback fires for an object when its score logit falls below
            min(theta_obj, theta_relative x its mean score on the propagation's first frames): a threshold
            relative to the object's own scores instead of the absolute theta_obj, which only suits models whose
            confident scores are as high as Meta's.
        guard: the next frame reads every memory token (and, without `guard_memory_only`, computes every window:
            it runs dense) when any object's chosen mask changed by more than this since the previous frame (1 -
            IoU of the two masks): where the object moves fast, deforms or is lost, the sparse path would drift
            from dense SAM 2.
        drift_guard: the same when any object's mask area changed by more than this fraction
            since the last frame that ran dense (|a - a0| / max(a, a0)): catches slow changes that no single frame
            shows (an object sliding behind an occluder, shrinking or growing), while plain motion, which keeps
            the area, does not fire it.
        guard_tolerance: `guard` and `drift_guard` compare masks with a boundary tolerance of this many pixels of
            the low-resolution mask the guards compare (the decoder's output grid, 1/4 of the image side; square
            neighbourhood): a pixel counts as changed only when it is in one mask and farther than this from the
            other, and `guard` measures the changed pixels over the union. An area change counts for
            `drift_guard` only beyond what a boundary shift of this many pixels can explain (the larger of the two
            masks' boundary pixel counts x the tolerance). One-pixel boundary jitter of a small object, which alone
            moves 1 - IoU past `guard`, then trips nothing; a real move, deformation or loss still does. Off by
            default: the jitter is real (dense SAM 2's own masks trip guard 0.2 on 25 % of the object-frames of the
            10 standard tuning videos, 8.5 % with tolerance 1), but the dense frames those trips buy are what holds
            fidelity: tolerance 1 on the defaults of 2026-12-07 (whole-frame guards 0.2) took kept windows
            0.73 -> 0.46 and fidelity mean IoU 96.2 -> 91.2 (the paper: 89.2).
        guard_sparse_memory: a frame run dense by `guard`, `drift_guard` or `dense_fallback` computes every window
            but keeps SMR's memory plan (True); False (off): it also reads every memory token. Off by default: on
            the defaults of 2026-12-07 it read 0.50 of the memory instead of 0.83 on the 10 standard tuning videos,
            but fidelity fell from 96.2 to 92.7 (and to 84 on the distractors subset of `data/tune`). Cannot be
            combined with `guard_memory_only`.
        guard_memory_only: a frame guarded by `guard` or `drift_guard` reads every memory token but keeps SWR's
            window plan (True); False (off): it also computes every window. With `global_context` and
            `reuse_residuals` SWR's windows are nearly dense SAM 2's, and what drifts is the sparse memory
            (10 standard tuning videos: fidelity mean IoU 97.6 at kept windows 0.32 / memory 0.77 against 95.9 at
            0.57 / 0.69 with whole dense frames, guards 0.3; BENCHMARKS.md "Carried-over residuals").
        backoff: when at least this share of the last `BACKOFF_WINDOW` (10) frames of a propagation were guarded
            (`guard`, `drift_guard`, `dense_fallback`: the sparse path kept drifting), the next `BACKOFF_FRAMES`
            (30) frames run dense (every window, every memory token), then routing resumes: footage on which the
            sparse path cannot keep up is tracked as dense SAM 2 tracks it instead of paying sparse and dense
            frames by turns.
        dense_fallback: when the saliency fallback fires, run the next frame dense instead of adding the
            attention-mass windows (an unsure object is followed as dense SAM 2 follows it).
        reuse_residuals: a window SWR does not compute takes its input plus the residual that the routed blocks
            added to it on the last frame of this propagation that computed it (its own features, carried over:
            exact for a window whose input did not change), and the shortcut only when it has none yet (False:
            the shortcut for every background window, as the paper). Reset at scene cuts.
        memory_object_tokens: SMR also keeps, of each pruned memory frame, every token that frame's mask of the
            object covers, grown by one token on every side (the mask pooled to the memory's token grid), ranked
            above the attention-selected ones: the memory of the object itself is never dropped, however its
            first-recollection attention fell. Only with memory_selection "topk". On the 10 standard tuning videos
            (fidelity mean IoU, worst video, kept memory): without guards 96.8 (91.0) at 0.51 against 94.5 (76.3)
            at 0.50; with guards 0.3 98.0 (94.2) at 0.78 against 97.6 (91.3) at 0.77; guards 0.5 97.9 (94.1) at
            0.65. The border is what counts: the mask's own tokens alone, without guards, 94.4 (79.4).
        global_context: the global attention blocks of the routed span let the kept windows' tokens attend to
            every token, not only to each other (the paper): to the background tokens as the span receives them
            (the current frame, exact for a global block at the span's start, as on the micro model) and, for a
            global block deeper in the span, with `reuse_residuals`, to each background window's input plus its
            carried-over residual to that depth (windows without one are left out). Keys and values only: the
            background tokens get no output.
        memory_summary: SMR also reads, of every pruned memory frame and in every layer, the tokens it leaves out of
            each block of memory_summary x memory_summary token cells as one token: their mean key and value (not
            rotated), its logit raised by log(count) so that it weighs in the softmax about as much as the tokens it
            stands for. Dropped tokens then still take their share of the attention (the paper's pruning hands it
            to the kept tokens). Off by default: on the tuning videos it helps where nothing else catches the drift
            (without guards, stress fidelity 93.6 -> 95.6: fast motion 88.0 -> 96.6, occlusion 89.7 -> 94.0), but
            beside the guards it adds 0.1-0.2 fidelity for 0.5-1.6 % more memory (BENCHMARKS.md "Memory
            summaries").
        guard_per_object: `guard` and `drift_guard` make only the objects whose mask changed read every memory token
            (the others keep their sparse memory) instead of every object. Off by default: on the tuning videos it
            read 0.577 instead of 0.695 of the memory on `standard` (fidelity 98.2 -> 97.8, same worst video), but
            on the distractors subset fidelity fell 97.1 -> 91.0 (worst video 95.5 -> 77.8): another object's trip
            had been what protected a drifting object whose own mask did not change fast (BENCHMARKS.md
            "Per-object guards").
    """

    swr: bool = True
    tau: float = 0.7
    theta_obj: float = 5.0
    dilation: int = 5
    all_masks: bool = True
    dense_frames: int = 2
    shortcut: str = "bottleneck"
    padding: str = "zero"
    kept_windows: float | None = None
    smr: bool = True
    sparsity: float = 0.95
    memory_selection: str = "topk"
    mempool_kernel: int = 2
    seed: int = 0
    memory_mass: float | None = 0.3
    change_threshold: float | None = 0.3
    scene_cut: float | None = 4.0
    theta_relative: float | None = None
    guard: float | None = 0.4
    drift_guard: float | None = 0.4
    guard_tolerance: int | None = None
    guard_sparse_memory: bool = False
    guard_memory_only: bool = True
    memory_object_tokens: bool = True
    dense_fallback: bool = False
    backoff: float | None = None
    reuse_residuals: bool = True
    global_context: bool = True
    memory_summary: int | None = None
    guard_per_object: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.dilation < 1:
            raise ValueError(f"dilation must be >= 1 (1 = none), got {self.dilation}")
        if self.dense_frames < 1:
            raise ValueError(f"dense_frames must be >= 1, got {self.dense_frames}")
        if self.kept_windows is not None and not 0.0 < self.kept_windows <= 1.0:
            raise ValueError(f"kept_windows must be in (0, 1], got {self.kept_windows}")
        if self.shortcut not in SHORTCUT_VARIANTS:
            raise ValueError(f"shortcut must be one of {SHORTCUT_VARIANTS}, got {self.shortcut!r}")
        if self.padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {PADDING_MODES}, got {self.padding!r}")
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.memory_selection not in MEMORY_SELECTIONS:
            raise ValueError(f"memory_selection must be one of {MEMORY_SELECTIONS}, got {self.memory_selection!r}")
        if self.memory_mass is not None and not 0.0 < self.memory_mass <= 1.0:
            raise ValueError(f"memory_mass must be in (0, 1], got {self.memory_mass}")
        for name in ("guard", "drift_guard", "backoff"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1] (or None: off), got {value}")
        if self.guard_tolerance is not None and (isinstance(self.guard_tolerance, (bool, str))
                                                 or int(self.guard_tolerance) != self.guard_tolerance
                                                 or self.guard_tolerance < 1):
            raise ValueError(f"guard_tolerance must be an integer >= 1 (or None: off), got {self.guard_tolerance}")
        if self.guard_sparse_memory and self.guard_memory_only:
            raise ValueError("guard_sparse_memory and guard_memory_only together would leave a guarded frame as "
                             "sparse as any other: choose one")
        for name in ("change_threshold", "scene_cut", "theta_relative"):
            value = getattr(self, name)
            if value is not None and not value > 0.0:
                raise ValueError(f"{name} must be > 0 (or None: off), got {value}")
        if self.memory_summary is not None and (isinstance(self.memory_summary, (bool, str))
                                                or int(self.memory_summary) != self.memory_summary
                                                or self.memory_summary < 1):
            raise ValueError(f"memory_summary must be an integer >= 1 (or None: off), got {self.memory_summary}")
        if self.mempool_kernel < 1:
            raise ValueError(f"mempool_kernel must be >= 1, got {self.mempool_kernel}")

    def replace(self, **changes) -> "EfficientConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def paper(cls, **changes) -> "EfficientConfig":
        """The paper's method exactly (Efficient-SAM2, ICLR 2026): every option beyond it off."""
        return cls(**{**PAPER_OPTIONS, **changes})

    @property
    def is_paper(self) -> bool:
        """Whether every option beyond the paper is off."""
        return all(getattr(self, k) == v for k, v in PAPER_OPTIONS.items() if k in BEYOND_PAPER)

    @classmethod
    def dense(cls) -> "EfficientConfig":
        """Both mechanisms off (the efficient predictor then computes exactly the dense model)."""
        return cls(swr=False, smr=False)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


BEYOND_PAPER = ("memory_mass", "change_threshold", "scene_cut", "theta_relative", "guard", "drift_guard",
                "guard_tolerance", "guard_sparse_memory", "guard_memory_only", "dense_fallback", "backoff",
                "reuse_residuals", "global_context", "memory_object_tokens", "memory_summary", "guard_per_object")
"""Options that are not in the paper; None (False) turns each off."""

PAPER_OPTIONS: dict = dict(
    swr=True, tau=0.7, theta_obj=5.0, dilation=5, all_masks=True, dense_frames=2, shortcut="bottleneck",
    padding="zero", kept_windows=None, smr=True, sparsity=0.95, memory_selection="topk", mempool_kernel=2,
    memory_mass=None, change_threshold=None, scene_cut=None, theta_relative=None, guard=None, drift_guard=None,
    guard_tolerance=None, guard_sparse_memory=False, guard_memory_only=False, dense_fallback=False, backoff=None,
    reuse_residuals=False, global_context=False, memory_object_tokens=False, memory_summary=None,
    guard_per_object=False,
)
"""The paper's settings (section 3 and 4.1), as `EfficientConfig.paper()` builds them."""
