"""`efficient-sam2 bench`: time dense SAM 2, SWR, SMR, Efficient-SAM2, baselines and the reference side by side."""

from __future__ import annotations

import argparse
import sys

from ..configs import available_models
from ..efficient.config import SHORTCUT_VARIANTS

DESCRIPTION = """\
Time several predictor configurations side by side in one process, on the same video and weights: image
encoder, memory attention, mask decoder (with the prompt encoder), memory encoder and the whole frame. The
configurations advance frame by frame in turn; after the warm-up, every frame whose memory bank is full (frames
7 onwards) is timed. The report gives medians, the speed-up over dense, the FLOP-ideal speed-up of the windows
and memory tokens actually computed, and the sparsity achieved.

Weights: --checkpoint if given, else the bundled ones with their trained shortcut (micro: so the router decides
the sparsity from real masks), else random (speed does not depend on the weights). The video is a
synthetic one with moving objects, unless --video and --mask name a real one.

configurations:
  dense          plain VideoPredictor (no SWR, no SMR); always included, every ratio is taken against it
  swr            Sparse Window Routing only              EfficientConfig.paper(smr=False)
  smr            Sparse Memory Retrieval only            EfficientConfig.paper(swr=False)
  paper          SWR + SMR as in the paper               EfficientConfig.paper()
  efficient      SWR + SMR, this package's defaults      EfficientConfig()
  mempool        MemPool baseline                        EfficientConfig.paper(swr=False, memory_selection="mempool")
  smr-random     SMR, random tokens                      EfficientConfig.paper(swr=False, memory_selection="random")
  smr-uniform    SMR, uniformly spaced tokens            EfficientConfig.paper(swr=False, memory_selection="uniform")
  efficient-off  EfficientVideoPredictor with both off   (its bookkeeping overhead)
  reference      the reference package's dense SAM2VideoPredictor with the same weights (needs sam2 + hydra-core)

accuracy (--accuracy): J&F of the configurations below on held-out videos with ground truth (e.g. written by
`efficient-sam2 synth --split val`), per stress subset, with the kept-window / kept-memory fractions, the
saliency-fallback rate and the speed-up over dense measured in the same run (tracking time only, configurations
interleaved per video). Predictions are written as `vos` writes them and scored by `eval`'s evaluator; the report
goes to OUTPUT/accuracy.json and OUTPUT/accuracy.md. --warmup N runs every configuration N times on the first
video first, untimed; precision is that of `vos` (bf16 autocast on CUDA; --dtype bf16 forces it). On a busy CPU use
--threads 1 --clock cpu. Every configuration is also scored against dense SAM 2's masks (fidelity J&F, worst
video), with the FLOP-ideal speed-up its kept fractions give on SAM 2.1 large and base_plus at 1024 px.
Configurations (default: dense, swr, smr, paper, paper+mass, paper+change, paper+cut, paper+relative,
paper+guard, paper+dense-fallback, efficient):
  the paper's rows (on EfficientConfig.paper()): swr-identity, swr (trained shortcut), swr-chosen-mask,
  swr-no-dilation (SMR off), smr, smr-random, smr-uniform, mempool (SWR off), paper (SWR + SMR);
  paper+mass, paper+change, paper+cut, paper+relative, paper+guard, paper+dense-fallback: the paper plus one option
  beyond it, at its default value; paper+guard-tolerant, paper+guard-sparse-memory: paper+guard with
  guard_tolerance 1 or guard_sparse_memory (on request);
  efficient: this package's defaults (EfficientConfig()); efficient+backoff: the defaults with backoff 0.5 (on
  request).

fidelity (--fidelity VIDEO... --prompts FILE...): no ground truth needed. Each configuration tracks each video
(a file or a frame folder) from the same prompts (one prompt file per video, or a folder of <video>.prompts files:
clicks, boxes or a first-frame mask PNG; see efficient_sam2.io.prompts), and its masks are scored against dense
SAM 2's: fidelity J&F, J, F, mean and worst IoU, worst video, beside kept windows, kept memory, fallback rate,
scene cuts, the measured speed-up and the FLOP-ideal speed-ups on large and base_plus at 1024 px. Check the
method on your own footage before trusting it. Configurations as for --accuracy.

examples:
  efficient-sam2 bench --fidelity clips/vtest.avi --prompts docs/clips/vtest.prompts --max-frames 100 --threads 1
  efficient-sam2 bench --accuracy --data data/val --videos-per-subset 3 --output acc --threads 1
  efficient-sam2 bench --model base_plus --image-size 1024 --kept-windows 0.2 --configs dense,swr,smr,efficient,reference --json bench.json --markdown bench.md --plot bench.png
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="speed benchmark (--accuracy: J&F) of dense vs SWR / SMR / Efficient-SAM2 / baselines / reference",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=None,
                   help=f"model name: {', '.join(available_models())}, or tiny, small, base_plus, large (SAM 2.1); "
                        "required for timing, default micro with --accuracy")
    p.add_argument("--checkpoint", default=None,
                   help="official SAM 2 / 2.1 checkpoint (default: seeded random weights, fine for speed)")
    p.add_argument("--image-size", type=int, default=None,
                   help="model input size, a multiple of 32 (default: the model's 1024)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames to process (default 12); frames 7.. are timed, once the memory bank is full")
    p.add_argument("--objects", type=int, default=None,
                   help="objects tracked together (synthetic video: default 1; --video: the first N ids of --mask, "
                        "default all)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                   help="fp32, or bf16 autocast (default fp32, as in the paper's speed tables)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice; use 1 on a busy machine)")
    p.add_argument("--configs", default=None,
                   help="comma-separated configurations to compare (default dense,swr,smr,efficient; with "
                        "--accuracy all of its configurations; see above)")
    source = p.add_argument_group("what sets the sparsity (choose one)")
    source.add_argument("--kept-windows", type=float, default=None, metavar="F",
                        help="keep exactly this fraction of the routed stage's windows on routed frames, in (0, 1] "
                             "(e.g. 0.2, as in the paper's appendix); default: the router decides")
    source.add_argument("--video", default=None, metavar="DIR",
                        help="a real video (folder of frames or a video file) instead of the synthetic one")
    source.add_argument("--mask", default=None, metavar="PNG",
                        help="object-id PNG (indexed or greyscale) of --video's first frame; needed with --video")
    eff = p.add_argument_group("Efficient-SAM2 options (default: the paper's)")
    eff.add_argument("--sparsity", type=float, default=None,
                     help="[s] fraction of each pruned memory frame's tokens dropped by SMR (default 0.95)")
    eff.add_argument("--tau", type=float, default=None,
                     help="[tau] saliency mass of the router's fallback windows (default 0.7)")
    eff.add_argument("--shortcut", choices=SHORTCUT_VARIANTS, default=None,
                     help="shortcut branch of background windows (default bottleneck)")
    eff.add_argument("--shortcut-checkpoint", default=None,
                     help="trained shortcut weights (default: untrained; its cost is the same)")
    acc = p.add_argument_group("accuracy")
    acc.add_argument("--accuracy", action="store_true",
                     help="measure J&F per configuration and stress subset on --data (see above) instead of timing")
    acc.add_argument("--data", default=None, metavar="DIR",
                     help="DAVIS-layout dataset root with annotations (JPEGImages/<res>, Annotations/<res>)")
    acc.add_argument("--output", default=None, metavar="DIR",
                     help="new or empty folder for accuracy.json, accuracy.md, predictions/ and ground_truth/ "
                          "(with --fidelity: fidelity.json and fidelity.md; optional)")
    acc.add_argument("--videos-per-subset", type=int, default=None, metavar="N",
                     help="the first N videos of each subset (default all)")
    acc.add_argument("--subsets", default=None, metavar="S1,S2",
                     help="comma-separated stress subsets (default: every subset in --data)")
    acc.add_argument("--resolution", default=None, metavar="RES",
                     help="the <res> folder, e.g. 480p (default: meta.json's, or the only one)")
    fid = p.add_argument_group("fidelity (no ground truth needed)")
    fid.add_argument("--fidelity", nargs="+", default=None, metavar="VIDEO",
                     help="score each configuration's masks against dense SAM 2's on these videos (files or frame "
                          "folders), tracked from --prompts; see above")
    fid.add_argument("--prompts", nargs="+", default=None, metavar="FILE",
                     help="one prompt file per video (clicks, boxes or a mask PNG; format: efficient_sam2.io.prompts), "
                          "or one folder of <video>.prompts files")
    fid.add_argument("--max-frames", type=int, default=None, metavar="N",
                     help="track at most N frames from the first prompted frame (default: the whole video)")
    fid.add_argument("--postprocessing", choices=("on", "off"), default=None,
                     help="the predictors' post-processing: on (default: as `track`, `stream` and `serve` run them) "
                          "or off (as VOS evaluation and `bench --accuracy` run them)")
    sweep = p.add_argument_group("scaling")
    sweep.add_argument("--sweep", default=None, metavar="QUANTITY=V1,V2,...",
                       help="how time and peak memory grow: objects=1,2,4,8 or frames=12,24,48. Every (value, "
                            "configuration) runs in a fresh process of its own, so its peak memory is its own; "
                            "the report gives ms per frame, the tensors the tracking state holds, memory at start, "
                            "its peak and growth, and the growth per extra object or frame")
    sweep.add_argument("--stream", action="store_true",
                       help="with --sweep: run the streaming tracker over a synthetic stream of that many frames "
                            "(e.g. --sweep frames=200,2000 --stream) and report its peak memory and state bytes")
    timing = p.add_argument_group("timing")
    timing.add_argument("--warmup", type=int, default=1, help="untimed passes over the video first (default 1)")
    timing.add_argument("--repeats", type=int, default=3, help="timed passes over the video (default 3)")
    timing.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time (default); cpu: this process's CPU time, which a busy shared machine "
                             "disturbs much less (use it with --threads 1; CPU only)")
    timing.add_argument("--seed", type=int, default=0, help="seed of the random weights and the synthetic video (0)")
    out = p.add_argument_group("output (the Markdown table is always printed)")
    out.add_argument("--json", default=None, metavar="OUT", help="write every measurement and ratio as JSON")
    out.add_argument("--markdown", default=None, metavar="OUT", help="write the Markdown report")
    out.add_argument("--plot", default=None, metavar="OUT.png",
                     help="bar chart of the speed-ups and their FLOP-ideal (matplotlib if installed, else PIL)")
    out.add_argument("--overwrite", action="store_true", help="replace existing output files")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


_FLAGS = ("model", "checkpoint", "image_size", "frames", "objects", "dtype", "device", "threads", "configs",
          "kept_windows", "video", "mask", "sparsity", "tau", "shortcut", "shortcut_checkpoint", "warmup", "repeats",
          "seed", "clock", "sweep")
_DEFAULTS = { "dtype": "fp32", "device": "cpu", "configs": "dense,swr,smr,paper,efficient", "warmup": 1,
             "repeats": 3, "seed": 0, "clock": "wall"}


def command_line(args) -> str:
    """The `efficient-sam2 bench` command reproducing these measurements (options left at default omitted)."""
    import shlex

    words = ["efficient-sam2", "bench"]
    for name in _FLAGS:
        value = getattr(args, name, None)
        if value is None or _DEFAULTS.get(name) == value:
            continue
        words += ["--" + name.replace("_", "-"), str(value)]
    return " ".join(shlex.quote(w) for w in words)


def run(args) -> int:
    from ..build import CheckpointError
    from ..bench.report import check_output_path, write_json, write_markdown, write_plot
    from ..bench.speed import BenchError, BenchmarkSettings, run_benchmark

    if getattr(args, "fidelity", None) is not None:
        return _run_fidelity(args)
    if any(getattr(args, n, None) is not None for n in ("prompts", "max_frames", "postprocessing")):
        print("error: --prompts, --max-frames and --postprocessing go with --fidelity", file=sys.stderr)
        return 2
    if getattr(args, "accuracy", False):
        return _run_accuracy(args)
    given = [f for f in _ACCURACY_ONLY if getattr(args, f.lstrip("-").replace("-", "_"), None) is not None]
    if given or args.model is None:
        what = f"{', '.join(given)} go(es) with --accuracy" if given else "--model is required (e.g. --model tiny)"
        print(f"error: {what}", file=sys.stderr)
        return 2
    if args.configs is None:
        args.configs = "dense,swr,smr,paper,efficient"
    sweep = None
    try:
        if args.sweep is not None:
            from ..bench.scaling import parse_sweep

            sweep = parse_sweep(args.sweep)
            if getattr(args, sweep[0]) is not None:
                raise BenchError(f"--sweep {sweep[0]}=... sets the number of {sweep[0]}: leave out --{sweep[0]}")
        if getattr(args, "stream", False) and sweep is None:
            raise BenchError("--stream goes with --sweep, e.g. --sweep frames=200,2000 --stream")
        settings = BenchmarkSettings(
            model=args.model, checkpoint=args.checkpoint, image_size=args.image_size,
            frames=12 if args.frames is None else args.frames,
            objects=args.objects, dtype=args.dtype, device=args.device,
            configs=tuple(c for c in args.configs.split(",")), kept_windows=args.kept_windows,
            video=args.video, mask=args.mask, warmup=args.warmup, repeats=args.repeats, seed=args.seed,
            threads=args.threads, sparsity=args.sparsity, tau=args.tau, shortcut=args.shortcut,
            shortcut_checkpoint=args.shortcut_checkpoint, clock=args.clock,
        ).validate()
        outputs = [(args.json, "--json", (".json",)), (args.markdown, "--markdown", None),
                   (args.plot, "--plot", (".png",))]
        seen = {}
        for path, what, suffixes in outputs:
            if path is None:
                continue
            full = check_output_path(path, args.overwrite, what, suffixes)
            if full in seen:
                raise BenchError(f"{what} and {seen[full]} name the same file {path}")
            seen[full] = what
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if sweep is not None:
        return _run_sweep(args, settings, sweep)
    if "reference" not in settings.configs and args.configs == "dense,swr,smr,paper,efficient":
        from ..bench.speed import reference_available

        if reference_available():
            print("note: add 'reference' to --configs to time the reference package's dense predictor as well",
                  file=sys.stderr)
    try:
        result = run_benchmark(settings, progress=not args.no_progress, command=command_line(args))
    except (BenchError, CheckpointError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # shortcut checkpoints, video decoding, ...
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.markdown())
    return _write_outputs(args, result, write_json, write_markdown, write_plot)


def _write_outputs(args, result, write_json, write_markdown, write_plot) -> int:
    """Write --json / --markdown / --plot with the given writers; 1 (and a message) when a file cannot be written."""
    from ..bench.speed import BenchError

    try:
        for path, write in ((args.json, write_json), (args.markdown, write_markdown), (args.plot, write_plot)):
            if path:
                write(result, path, args.overwrite)
    except (BenchError, OSError) as exc:
        print(f"error: could not write the results: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_sweep(args, settings, sweep) -> int:
    from ..build import CheckpointError
    from ..bench.scaling import run_sweep, write_sweep_json, write_sweep_markdown, write_sweep_plot
    from ..bench.speed import BenchError

    quantity, values = sweep
    try:
        stream = getattr(args, "stream", False)
        result = run_sweep(settings, quantity, values, progress=not args.no_progress,
                           command=command_line(args) + (" --stream" if stream else ""), stream=stream)
    except (BenchError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.markdown())
    if _write_outputs(args, result, write_sweep_json, write_sweep_markdown, write_sweep_plot):
        return 1
    failed = [p for p in result.points if p.error is not None]
    if failed:
        print(f"error: {len(failed)} of {len(result.points)} runs failed (see the table)", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------------------------------------------
# --accuracy
_ACCURACY_ONLY = ("--data", "--output", "--videos-per-subset", "--subsets", "--resolution")
_TIMING_ONLY = {"frames": "--frames", "objects": "--objects", "video": "--video", "mask": "--mask",
                "sweep": "--sweep", "json": "--json", "markdown": "--markdown", "plot": "--plot"}


def accuracy_command_line(args) -> str:
    """The `efficient-sam2 bench --accuracy` command reproducing this report (options left at default omitted)."""
    words = ["efficient-sam2", "bench", "--accuracy"]
    return _command(args, words, ("data", "model", "checkpoint", "shortcut_checkpoint", "image_size", "device",
                                  "configs", "subsets", "videos_per_subset", "resolution", "kept_windows", "sparsity",
                                  "tau", "shortcut", "threads", "output"),
                    (("dtype", "fp32"), ("clock", "wall"), ("warmup", 1), ("seed", 0)))


def _command(args, words: list[str], options, defaults) -> str:
    """`words` followed by --option value for every given option and every one not at its default, quoted."""
    import shlex

    for name in options:
        value = getattr(args, name, None)
        if value is not None:
            words += ["--" + name.replace("_", "-"), str(value)]
    for name, default in defaults:
        if getattr(args, name) != default:
            words += ["--" + name, str(getattr(args, name))]
    return " ".join(shlex.quote(w) for w in words)


def _run_accuracy(args) -> int:
    from ..bench.accuracy import AccuracyError, AccuracySettings, run_accuracy
    from ..build import CheckpointError
    from .common import warnings_as_notes

    try:
        bad = [flag for name, flag in _TIMING_ONLY.items() if getattr(args, name, None) is not None]
        bad += ["--stream"] * bool(getattr(args, "stream", False)) + ["--repeats"] * (args.repeats != 3)
        if bad:
            raise AccuracyError(f"{', '.join(bad)} time(s) the speed benchmark and cannot go with --accuracy")
        if args.data is None or args.output is None:
            raise AccuracyError("--accuracy needs --data DIR (held-out videos with annotations) and --output DIR")
        settings = AccuracySettings(
            data=args.data, output=args.output, model=args.model or "micro", checkpoint=args.checkpoint,
            shortcut_checkpoint=args.shortcut_checkpoint, image_size=args.image_size, device=args.device,
            precision="bf16" if args.dtype == "bf16" else "auto",
            configs=tuple(args.configs.split(",")) if args.configs else AccuracySettings.configs,
            subsets=tuple(s.strip() for s in args.subsets.split(",") if s.strip()) if args.subsets else None,
            videos_per_subset=args.videos_per_subset, resolution=args.resolution, kept_windows=args.kept_windows,
            sparsity=args.sparsity, tau=args.tau, shortcut=args.shortcut, seed=args.seed, threads=args.threads,
            clock=args.clock, warmup=args.warmup, overwrite=args.overwrite, eval_workers=args.threads,
        ).validate()
        with warnings_as_notes():
            result = run_accuracy(settings, progress=not args.no_progress, command=accuracy_command_line(args))
    except (AccuracyError, CheckpointError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: could not write the results: {exc}", file=sys.stderr)
        return 1
    print(result.markdown())
    print(f"written: {', '.join(result.files.values())}", file=sys.stderr)
    if result.failures:
        print(f"error: {len(result.failures)} run(s) failed; their videos are left out of every score (see the "
              "report)", file=sys.stderr)
    return result.exit_code


# ----------------------------------------------------------------------------------------------------------------
# --fidelity


def fidelity_command_line(args) -> str:
    """The `efficient-sam2 bench --fidelity` command reproducing this report."""
    words = ["efficient-sam2", "bench", "--fidelity", *args.fidelity, "--prompts", *args.prompts]
    return _command(args, words, ("max_frames", "postprocessing", "model", "checkpoint", "shortcut_checkpoint", "image_size",
                                  "device", "configs", "kept_windows", "sparsity", "tau", "shortcut", "threads",
                                  "output"), (("clock", "wall"), ("seed", 0)))


def _run_fidelity(args) -> int:
    from ..bench.fidelity import FidelityError, FidelitySettings, run_fidelity
    from ..build import CheckpointError
    from .common import warnings_as_notes

    try:
        bad = [flag for name, flag in _TIMING_ONLY.items() if getattr(args, name, None) is not None]
        bad += [f for f in _ACCURACY_ONLY if f != "--output"
                and getattr(args, f.lstrip("-").replace("-", "_"), None) is not None]
        bad += ["--accuracy"] * bool(args.accuracy) + ["--stream"] * bool(getattr(args, "stream", False))
        if bad:
            raise FidelityError(f"{', '.join(bad)} cannot go with --fidelity")
        if not args.prompts:
            raise FidelityError("--fidelity needs --prompts: one prompt file per video, or a folder of them")
        settings = FidelitySettings(
            videos=tuple(args.fidelity), prompts=tuple(args.prompts), output=args.output,
            model=args.model or "micro", checkpoint=args.checkpoint, shortcut_checkpoint=args.shortcut_checkpoint,
            image_size=args.image_size, device=args.device,
            configs=tuple(args.configs.split(",")) if args.configs else FidelitySettings.configs,
            max_frames=args.max_frames, postprocessing=args.postprocessing != "off", kept_windows=args.kept_windows, sparsity=args.sparsity, tau=args.tau,
            shortcut=args.shortcut, seed=args.seed, threads=args.threads, clock=args.clock, overwrite=args.overwrite,
        )
        with warnings_as_notes():
            result = run_fidelity(settings, progress=not args.no_progress, command=fidelity_command_line(args))
    except (FidelityError, CheckpointError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: could not write the results: {exc}", file=sys.stderr)
        return 1
    print(result.markdown())
    if result.files:
        print(f"written: {', '.join(result.files.values())}", file=sys.stderr)
    return 0
