"""Score automatic-mask settings side by side on a `synth --images` folder (or any folder in that layout): mIoU,
recall@0.5, prompts and seconds per image of each named setting, per subset, as `automask --benchmark` scores
its fixed rows; for settings the benchmark has no row for.

    python docs/automask_variants.py data/images_val \
        '{"low_latency": {"prompting": "attention", "preset": "low_latency"},
          "low_latency, disks": {"prompting": "attention", "preset": "low_latency", "region_seeds": false}}' \
        [--images-per-subset 40] [--model micro] [--checkpoint FILE] [--output rows.json]

Each setting is a dict of `AutomaticMaskGenerator` keyword arguments (JSON; lists become tuples).
"""

from __future__ import annotations

import argparse
import json

import torch

from efficient_sam2.automask import benchmark as bm
from efficient_sam2.build import build_sam2


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


if __name__ == "__main__":
    main()
