"""Speed benchmark: configurations timed side by side, per module and end to end, against their FLOP-ideal.

    from efficient_sam2.bench import BenchmarkSettings, run_benchmark, write_json

    result = run_benchmark(BenchmarkSettings(model="tiny", image_size=512, kept_windows=0.2))
    print(result.markdown())
    write_json(result, "bench.json")

    # how time and memory grow with the number of objects (one process per point and configuration)
    sweep = run_sweep(BenchmarkSettings(model="tiny", image_size=512, kept_windows=0.2), "objects", [1, 2, 4])
    print(sweep.markdown())

Modules, imported one way: `common` (settings, shared types, file writing) and `memory` <- `flops`, `report` <-
`speed` (the engine) <- `scaling` (sweeps).
"""

from .common import (
    BENCH_CONFIGS,
    BUCKETS,
    MODULES,
    BenchError,
    BenchmarkSettings,
    atomic_write_bytes,
    check_output_path,
    reference_available,
)
from .flops import FlopModel, hiera_flops, image_encoder_flops, mask_decoder_flops, memory_attention_flops, \
    memory_encoder_flops
from .memory import MemoryProbe, tensor_megabytes
from .report import markdown_report, plot_speedups, result_to_dict, summarize, write_json, write_markdown, write_plot
from .scaling import SweepPoint, SweepResult, parse_sweep, run_sweep
from .speed import BenchmarkResult, ConfigResult, random_weights_, run_benchmark, synthetic_video

__all__ = [
    "BENCH_CONFIGS",
    "BUCKETS",
    "MODULES",
    "BenchError",
    "BenchmarkResult",
    "BenchmarkSettings",
    "ConfigResult",
    "atomic_write_bytes",
    "FlopModel",
    "MemoryProbe",
    "SweepPoint",
    "SweepResult",
    "check_output_path",
    "hiera_flops",
    "image_encoder_flops",
    "mask_decoder_flops",
    "markdown_report",
    "parse_sweep",
    "memory_attention_flops",
    "memory_encoder_flops",
    "plot_speedups",
    "random_weights_",
    "reference_available",
    "result_to_dict",
    "run_benchmark",
    "run_sweep",
    "summarize",
    "synthetic_video",
    "tensor_megabytes",
    "write_json",
    "write_markdown",
    "write_plot",
]
