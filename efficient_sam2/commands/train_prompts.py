"""`efficient-sam2 train-prompts`: teach a tracker's heads to segment from clicks and boxes, tracking held fixed."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Prompt tuning: fine-tune the prompt encoder, the mask decoder and the no-memory embedding of a SAM 2 / 2.1 model
so that it segments an object from a click or a box on a single image (the image predictor, click-prompted
tracking, automatic masks), while its tracking stays what it was.

The image encoder, memory attention, memory encoder and pointer projection are frozen, so every training image is
encoded once and its features cached; a step decodes --image-batch x --image-instances instances (SAM's recipe:
one click anywhere on the instance with three outputs and the min-over-outputs loss, or a jittered box; then a
correction click in the error; the IoU head towards the true IoU). Tracking is held by distillation: the starting
model tracks --distill-videos of --video-data densely from their first-frame masks once, its decoder calls are
recorded, and every step the tuned decoder is pulled towards the recorded outputs on --distill-batch of them.

--image-data is a `synth --images` folder (JPEGImages/<subset>/*.jpg, Annotations/<subset>/*.png: every segment
an instance); --video-data a video folder in the layout `synth` writes. Writes to --out: model.pt (pass it as
--checkpoint to any command), checkpoint.pt (resumable), loss.csv, validation.csv (dense J&F on --val-data),
config.json.
"""


def register(subparsers) -> None:
    from ..configs import available_models
    from ..training.prompting import PromptTuneConfig

    d = PromptTuneConfig(image_data="", video_data="", out="")
    p = subparsers.add_parser("train-prompts", help="fine-tune the heads to segment from clicks and boxes "
                                                    "(tracking held by distillation)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="micro",
                   help=f"model name: {', '.join(available_models())} or an alias (default micro)")
    p.add_argument("--checkpoint", default=None, help="weights to start from (default: the bundled micro weights)")
    p.add_argument("--image-data", required=True, help="single images with every segment annotated (synth --images)")
    p.add_argument("--video-data", default=None,
                   help="training videos whose tracking is held by distillation (needed unless --distill-videos 0)")
    p.add_argument("--val-data", default=None, help="validation videos: dense J&F every --val-every steps")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run where --out holds one (only the files this command writes are replaced)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps ({d.steps})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate ({d.lr})")
    p.add_argument("--warmup", type=int, default=d.warmup, help=f"warm-up steps ({d.warmup})")
    p.add_argument("--image-batch", type=int, default=d.image_batch, help=f"images per step ({d.image_batch})")
    p.add_argument("--image-instances", type=int, default=d.image_instances,
                   help=f"instances decoded per image ({d.image_instances})")
    p.add_argument("--box-prob", type=float, default=d.box_prob,
                   help=f"chance that a step's first prompts are boxes ({d.box_prob})")
    p.add_argument("--distill-videos", type=int, default=d.distill_videos,
                   help=f"videos whose tracking is recorded and held (0 = none) ({d.distill_videos})")
    p.add_argument("--distill-batch", type=int, default=d.distill_batch,
                   help=f"recorded decoder calls per step ({d.distill_batch})")
    p.add_argument("--distill-weight", type=float, default=d.distill_weight,
                   help=f"weight of the distillation loss ({d.distill_weight})")
    p.add_argument("--distill-from", default=None,
                   help="teacher weights whose tracking is recorded and held (default: the starting weights); for "
                        "a second stage that restores the original tracking after a stage without distillation")
    p.add_argument("--val-every", type=int, default=d.val_every, help="steps between validations (0 = none)")
    p.add_argument("--val-videos", type=int, default=d.val_videos, help=f"validation videos (0 = all) ({d.val_videos})")
    p.add_argument("--save-every", type=int, default=d.save_every, help=f"steps between checkpoints ({d.save_every})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of sampling and prompts ({d.seed})")
    p.add_argument("--threads", type=int, default=d.threads, help=f"torch CPU threads, 0 = torch's choice ({d.threads})")
    p.add_argument("--click-seed-radius", type=float, default=None,
                   help="draw every positive click into the mask prompt as a disk of this radius (input pixels) "
                        "when no mask prompt is given (default: the model's own: 12 for micro, 0 = off for Meta's models); "
                        "models tuned with it must be built with it (build_sam2(..., click_seed_radius=R))")
    p.add_argument("--box-seeds", choices=("on", "off"), default=None,
                   help="draw a box prompt into the seeds as the filled box (default: the model's own: on for micro, "
                        "off for Meta's models; models tuned with it must be built with it)")
    p.add_argument("--single-output", choices=("token", "best"), default=None,
                   help="one-mask decoder calls on clicks or a box (the box and correction rounds): SAM 2's "
                        "single-mask token, or the best-scored multimask output (default: the model's own: best for "
                        "micro, token for Meta's models)")
    p.add_argument("--seed-mask-prompts", choices=("on", "off"), default=None,
                   help="give the correction round's previous mask to the decoder in the seeds' form (mask minus "
                        "negative-click disks plus positive-click disks) instead of as logits (default: the model's "
                        "own: on for micro, off for Meta's models)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..build import CheckpointError, build_sam2
    from ..training.data import TrainingDataError
    from ..training.prompting import PromptTuneConfig, tune_prompting

    try:
        config = PromptTuneConfig(
            image_data=args.image_data, video_data=args.video_data, out=args.out, steps=args.steps, lr=args.lr,
            warmup=args.warmup, image_batch=args.image_batch, image_instances=args.image_instances,
            box_prob=args.box_prob, distill_videos=args.distill_videos, distill_batch=args.distill_batch,
            distill_weight=args.distill_weight, distill_from=args.distill_from, val_data=args.val_data,
            val_every=args.val_every, val_videos=args.val_videos, save_every=args.save_every, seed=args.seed, threads=args.threads)
        config.check()
        overrides = {} if args.click_seed_radius is None else {"click_seed_radius": args.click_seed_radius}
        if args.box_seeds is not None:
            overrides["box_seeds"] = args.box_seeds == "on"
        if args.single_output is not None:
            overrides["single_output_from_best"] = args.single_output == "best"
        if args.seed_mask_prompts is not None:
            overrides["seed_mask_prompts"] = args.seed_mask_prompts == "on"
        model = build_sam2(args.model, checkpoint=args.checkpoint, **overrides)
        config.click_seed_radius = model.cfg.click_seed_radius
        print(f"prompt tuning {args.model} ({model.weights_source} weights); writing to {args.out}", file=sys.stderr)
        tuner = tune_prompting(model, config, resume=args.resume, overwrite=args.overwrite,
                               progress=not args.no_progress)
    except (TrainingDataError, CheckpointError, ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    last = tuner.history[-1] if tuner.history else None
    if last is not None:
        print(f"done: {tuner.step} steps, last loss {last.loss:.4f} (image {last.image:.4f}, distillation "
              f"{last.distill:.5f}); weights in {tuner.paths()['weights']}")
    if tuner.validation:
        v = tuner.validation[-1]
        print(f"validation J&F {v['J&F']:.1f} (J {v['J']:.1f}, F {v['F']:.1f}) on {v['videos']} videos")
    return 0
