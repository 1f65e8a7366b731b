"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from typing import Iterator

from ..configs import available_models
from ..efficient.config import MEMORY_SELECTIONS, PADDING_MODES, SHORTCUT_VARIANTS, EfficientConfig


def add_model_args(p: argparse.ArgumentParser, checkpoint_required: bool = True,
                   default_model: str | None = None) -> None:
    """--model (required, or `default_model` when given), --checkpoint, --random-weights, --device, --image-size."""
    default = f" (default: {default_model})" if default_model else ""
    p.add_argument("--model", required=default_model is None, default=default_model,
                   help=f"model name: {', '.join(available_models())}, or the aliases tiny, small, base_plus, "
                        f"large, micro (SAM 2.1){default}")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint file (e.g. Meta's sam2.1_hiera_large.pt, or model.pt of `efficient-sam2 train`); "
                        "not needed for micro, whose trained weights ship with the package")
    p.add_argument("--random-weights", action="store_true",
                   help="use an untrained, randomly initialised model (benchmarks, tests) instead of a checkpoint")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)")
    p.add_argument("--image-size", type=int, default=None,
                   help="model input size (default: the model's, 1024; 256 for micro)")


SWITCHES = {
    "guard_sparse_memory": "a frame run dense by a guard computes every window but keeps SMR's memory plan",
    "guard_memory_only": "a frame run dense by a guard reads every memory token but keeps SWR's windows",
    "reuse_residuals": "a window SWR skips takes its own features carried over from the last frame that computed it "
                       "(input + that frame's residual) instead of the shortcut",
    "global_context": "the routed span's global blocks let kept tokens attend to the background tokens too",
    "memory_object_tokens": "SMR also keeps every memory token under the object's mask in that memory frame",
    "guard_per_object": "a guard makes only the objects whose mask changed read every memory token (not all)",
    "dense_fallback": "run the next frame dense where the saliency fallback would fire",
}
"""The on/off options beyond the paper: EfficientConfig field -> what `--<field> on` does."""


def add_efficient_args(p: argparse.ArgumentParser) -> None:
    """Options of Sparse Window Routing / Sparse Memory Retrieval (paper symbols in brackets)."""
    d = EfficientConfig()
    g = p.add_argument_group("Efficient-SAM2 (default: on, with this package's defaults; --paper: exactly the "
                             "paper's method; --dense turns it off)")
    g.add_argument("--dense", action="store_true", help="run the dense SAM 2 model (no SWR, no SMR)")
    g.add_argument("--paper", action="store_true",
                   help="the paper's method exactly (EfficientConfig.paper()): every option beyond it off unless "
                        "given below")
    g.add_argument("--no-swr", action="store_true", help="turn Sparse Window Routing off")
    g.add_argument("--no-smr", action="store_true", help="turn Sparse Memory Retrieval off")
    g.add_argument("--tau", type=float, default=d.tau, help=f"[tau] saliency mass of fallback windows ({d.tau})")
    g.add_argument("--theta-obj", type=float, default=d.theta_obj,
                   help=f"[theta_obj] object-score threshold firing the saliency fallback ({d.theta_obj})")
    g.add_argument("--dilation", type=int, default=d.dilation,
                   help=f"dilation of previous masks, pixels at 256x256 ({d.dilation}; 1 = none)")
    g.add_argument("--chosen-mask-only", action="store_true",
                   help="route from the chosen mask only instead of all three multimask outputs")
    g.add_argument("--kept-windows", type=float, default=None,
                   help="keep exactly this fraction of windows on routed frames (ablation/benchmark)")
    g.add_argument("--shortcut", choices=SHORTCUT_VARIANTS, default=d.shortcut,
                   help=f"shortcut branch for background windows ({d.shortcut})")
    g.add_argument("--shortcut-checkpoint", default=None,
                   help="trained shortcut (ours, or the official bypass_bottleneck_{base,large}.pth)")
    g.add_argument("--padding", choices=PADDING_MODES, default=d.padding,
                   help="window padding: zero (dense-equivalent) or official (for the official base_plus "
                        "shortcut weights)")
    g.add_argument("--sparsity", type=float, default=d.sparsity,
                   help=f"[s] fraction of each pruned memory frame's tokens dropped ({d.sparsity})")
    g.add_argument("--memory-selection", choices=MEMORY_SELECTIONS, default=d.memory_selection,
                   help=f"SMR token selection: topk (paper), random, uniform, or the mempool baseline "
                        f"({d.memory_selection})")
    b = p.add_argument_group("beyond the paper (default: this package's defaults, off with --paper; 0 turns one off)")
    b.add_argument("--memory-mass", type=float, default=None,
                   help=f"SMR keeps each memory frame's tokens up to this attention mass, never fewer than "
                        f"floor((1-s)K) ({d.memory_mass})")
    b.add_argument("--change-threshold", type=float, default=None,
                   help=f"SWR also computes windows whose pooled image changed by more than this "
                        f"({d.change_threshold})")
    b.add_argument("--scene-cut", type=float, default=None,
                   help=f"a frame whose mean change exceeds this many times the recent median is a scene cut, run "
                        f"dense ({d.scene_cut})")
    b.add_argument("--theta-relative", type=float, default=None,
                   help=f"fallback threshold relative to each object's first scores ({d.theta_relative})")
    b.add_argument("--guard", type=float, default=None,
                   help=f"run the next frame dense when a mask changed by more than this (1 - IoU) ({d.guard})")
    b.add_argument("--drift-guard", type=float, default=None,
                   help=f"run the next frame dense when a mask changed by more than this since the last dense frame "
                        f"({d.drift_guard})")
    b.add_argument("--guard-tolerance", type=int, default=None,
                   help=f"the guards ignore mask changes within this many low-resolution mask pixels of the other "
                        f"mask (boundary jitter) ({d.guard_tolerance})")
    b.add_argument("--memory-summary", type=int, default=None,
                   help=f"SMR also reads, per memory frame, the tokens it leaves out of every N x N block of token "
                        f"cells as one count-weighted mean token (0: off) ({d.memory_summary})")
    b.add_argument("--backoff", type=float, default=None,
                   help=f"when at least this share of the last 10 routed frames were guarded, run the next 30 frames "
                        f"dense ({d.backoff})")
    for name, text in SWITCHES.items():
        b.add_argument("--" + name.replace("_", "-"), choices=("on", "off"), default=None,
                       help=f"{text} ({'on' if getattr(d, name) else 'off'})")


def weights_from_args(args) -> str | None:
    """The builders' `weights=` for the model options: "random" with --random-weights, else None (checkpoint or
    bundled weights)."""
    return "random" if getattr(args, "random_weights", False) else None


def efficient_config_from_args(args, paper: bool = False) -> EfficientConfig | None:
    """The EfficientConfig the arguments ask for, or None for the dense model; `paper` (or --paper) builds on
    `EfficientConfig.paper()` instead of the defaults."""
    if getattr(args, "dense", False):
        return None
    beyond = {}
    for name in ("memory_mass", "change_threshold", "scene_cut", "theta_relative", "guard", "drift_guard",
                 "guard_tolerance", "backoff", "memory_summary"):
        value = getattr(args, name, None)
        if value is not None:
            beyond[name] = None if value == 0 else value
    for name in SWITCHES:
        if getattr(args, name, None) is not None:
            beyond[name] = getattr(args, name) == "on"
    if beyond.get("guard_sparse_memory") and "guard_memory_only" not in beyond:
        beyond["guard_memory_only"] = False  # the opposite choice to the defaults' memory-only guards
    preset = EfficientConfig.paper if paper or getattr(args, "paper", False) else EfficientConfig
    return preset(
        **beyond,
        swr=not args.no_swr,
        smr=not args.no_smr,
        tau=args.tau,
        theta_obj=args.theta_obj,
        dilation=args.dilation,
        all_masks=not args.chosen_mask_only,
        kept_windows=args.kept_windows,
        shortcut=args.shortcut,
        padding=args.padding,
        sparsity=args.sparsity,
        memory_selection=args.memory_selection,
    )


def note(message: str) -> None:
    """Print `message` as one line ``note: ...`` on stderr, above any progress bar."""
    from tqdm import tqdm

    tqdm.write(f"note: {' '.join(str(message).split())}", file=sys.stderr)


@contextlib.contextmanager
def warnings_as_notes() -> Iterator[None]:
    """Within: Python warnings are printed as one-line notes (`note`), without the file, line number and source
    line of a raw warning. The library keeps `warnings.warn` for the Python API; the command line shows them here."""

    def show(message, category, filename, lineno, file=None, line=None):
        note(str(message))

    previous = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous
