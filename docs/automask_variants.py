"""Score automatic-mask settings side by side on a `synth --images` folder (or any folder in that layout): mIoU,
recall@0.5, prompts and seconds per image of each named setting, per subset, as `automask --benchmark` scores
its fixed rows; for settings the benchmark has no row for.

    python docs/automask_variants.py data/images_val \
        '{"low_latency": {"prompting": "attention", "preset": "low_latency"},
          "low_latency, disks": {"prompting": "attention", "preset": "low_latency", "region_seeds": false}}' \
        [--images-per-subset 40] [--model micro] [--checkpoint FILE] [--output rows.json] [--by-size]

Each setting is a dict of `AutomaticMaskGenerator` keyword arguments (JSON; lists become tuples). With --by-size,
also the mIoU of each setting per ground-truth instance size (share of the image's pixels), where the settings
differ.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from efficient_sam2.automask import benchmark as bm
from efficient_sam2.automask.evaluate import best_match_ious
from efficient_sam2.automask.generator import AutomaticMaskGenerator
from efficient_sam2.build import build_sam2

SIZE_BINS = (0.0, 0.005, 0.02, 0.08, 0.3, 1.0)


def by_size(model, data: dict[str, list], settings: dict[str, dict]) -> None:
    """Print, per subset and instance-size bin, the number of instances and each setting's mIoU."""
    for subset, items in data.items():
        areas, ious = [], {name: [] for name in settings}
        gens = {name: AutomaticMaskGenerator(model, **kw) for name, kw in settings.items()}
        for _, rgb, gt in items:
            gt = np.asarray(gt)
            areas += gt.reshape(gt.shape[0], -1).mean(axis=1).tolist()
            for name, gen in gens.items():
                ious[name] += best_match_ious(gt, gen.generate_result(rgb).boxed_masks).tolist()
        areas = np.asarray(areas)
        for lo, hi in zip(SIZE_BINS[:-1], SIZE_BINS[1:]):
            sel = (areas >= lo) & ((areas < hi) | (hi == SIZE_BINS[-1]))
            if sel.any():
                scores = "  ".join(f"{name} {100 * np.mean(np.asarray(v)[sel]):.1f}" for name, v in ious.items())
                print(f"{subset} instances of {100 * lo:g}-{100 * hi:g} % of the image ({int(sel.sum())}): {scores}",
                      flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("settings", help="JSON: {name: {AutomaticMaskGenerator keyword: value}}")
    ap.add_argument("--images-per-subset", type=int, default=8)
    ap.add_argument("--subsets", default="instances,salient,camouflaged")
    ap.add_argument("--model", default="micro")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--output", default=None, help="write every row as JSON here")
    ap.add_argument("--by-size", action="store_true", help="also mIoU per instance size")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = {name: {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
                for name, kw in json.loads(args.settings).items()}
    model = build_sam2(args.model, args.checkpoint).eval()
    data = {s: bm.load_image_set(args.data, s, args.images_per_subset) for s in args.subsets.split(",")}
    rows = []
    for name, kw in settings.items():
        got = bm.run_methods(model, data, {name: kw})
        rows += [r.as_dict() for r in got]
        print(f"{name}: " + "  ".join(f"{r.subset} mIoU {100 * r.miou:.1f} recall {100 * r.recall50:.1f} "
                                      f"({r.images} images, {r.instances} instances) prompts {r.prompts:.0f} "
                                      f"{r.total:.2f} s" for r in got), flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(rows, f, indent=1)
    if args.by_size:
        by_size(model, data, settings)


if __name__ == "__main__":
    main()
