"""`efficient-sam2 train`: train SAM 2 on annotated videos, from scratch or from a checkpoint."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Train a SAM 2 / 2.1 model on videos whose every frame is annotated (DAVIS layout: DATA/JPEGImages/<res>/<video>/
and DATA/Annotations/<res>/<video>/, palette PNGs of object ids; `efficient-sam2 synth` writes such folders).
With --checkpoint the model is fine-tuned from that file (Meta's checkpoints load unchanged); without it, training
starts from a fresh initialisation (from scratch).

The recipe is SAM 2's: clips of --clip-len frames of one object each; a prompt on the first frame drawn among a
mask, clicks and a box (--prompt-probs); with --correction-prob one later frame gets a correction click sampled
from the error; memory is carried through the clip by the same tracking step inference runs, gradients on. Loss:
focal (x20) + dice on the best multimask output, BCE on the predicted IoU (SAM 2: L1, which saturates when
training from scratch), BCE on the object score. AdamW with
linear warm-up and cosine decay, gradient clipping (--grad-clip), frozen parts (--freeze image_encoder,...).

Writes to --out: model.pt (weights; pass it as --checkpoint to any command), checkpoint.pt (resumable: model,
optimiser, step), loss.csv, loss.png, validation.csv (J&F on --val-data every --val-every steps and at the end),
config.json. Checkpoints are written atomically every --save-every steps; an interrupted run continues with
--resume and gives the same weights as an uninterrupted one.
"""


def _probs(text: str) -> tuple[float, float, float]:
    parts = dict.fromkeys(("mask", "clicks", "box"), 0.0)
    try:
        for item in text.split(","):
            key, value = item.split("=")
            if key.strip() not in parts:
                raise ValueError
            parts[key.strip()] = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. mask=0.5,clicks=0.25,box=0.25; got {text!r}")
    return (parts["mask"], parts["clicks"], parts["box"])


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def register(subparsers) -> None:
    from ..configs import available_models
    from ..training.sam2_trainer import FREEZABLE, SAM2TrainConfig

    d = SAM2TrainConfig(model="micro", data="", out="")
    p = subparsers.add_parser("train", help="train or fine-tune SAM 2 on annotated videos",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=f"model name: {', '.join(available_models())} or an alias "
                                                   "(micro, tiny, small, base_plus, large)")
    p.add_argument("--checkpoint", default=None, help="weights to fine-tune (default: train from scratch)")
    p.add_argument("--data", required=True, help="training data folder (DAVIS layout, every frame annotated)")
    p.add_argument("--val-data", default=None, help="validation data folder (scored with J&F)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a non-empty --out (only the files training writes are replaced)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps ({d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"clips per step ({d.batch_size})")
    p.add_argument("--clip-len", type=int, default=d.clip_len, help=f"frames per clip ({d.clip_len})")
    p.add_argument("--max-stride", type=int, default=d.max_stride,
                   help=f"clips take every k-th frame, k drawn in 1..N ({d.max_stride})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate ({d.lr})")
    p.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio,
                   help=f"cosine decay ends at lr x this ({d.min_lr_ratio})")
    p.add_argument("--warmup", type=int, default=d.warmup_steps, help=f"warm-up steps ({d.warmup_steps})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"AdamW weight decay ({d.weight_decay})")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help=f"max gradient norm, 0 = off ({d.grad_clip})")
    p.add_argument("--freeze", type=_names, default=(),
                   help=f"comma-separated parts to freeze: {', '.join(FREEZABLE)}")
    p.add_argument("--prompt-probs", type=_probs, default=d.prompt_probs,
                   help="first-frame prompt weights (default mask=0.5,clicks=0.25,box=0.25)")
    p.add_argument("--iou-loss", choices=("bce", "l1"), default=d.iou_loss,
                   help="loss of the IoU head: bce (default) or l1 (SAM 2's; saturates when training from scratch)")
    p.add_argument("--all-outputs-weight", type=float, default=d.all_outputs_weight,
                   help="weight of the mask loss on every multimask output, added to the best one's (default 0: "
                        "SAM 2's min over outputs)")
    p.add_argument("--max-clicks", type=int, default=d.max_clicks, help=f"first-frame clicks, 1..N ({d.max_clicks})")
    p.add_argument("--correction-prob", type=float, default=d.correction_prob,
                   help=f"chance of a correction click on a later frame of a clip ({d.correction_prob})")
    p.add_argument("--val-every", type=int, default=d.val_every, help="steps between validations (0 = at the end)")
    p.add_argument("--val-videos", type=int, default=d.val_videos, help="validation videos to use (0 = all)")
    p.add_argument("--save-every", type=int, default=d.save_every, help=f"steps between checkpoints ({d.save_every})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of data sampling and prompts ({d.seed})")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--image-size", type=int, default=None, help="model input size (default: the model's)")
    p.add_argument("--image-data", default=None,
                   help="also train on single images (`synth --images` layout) every step: one click anywhere on "
                        "an instance (3 outputs, min-over-outputs loss) or its box, then a correction click")
    p.add_argument("--image-batch", type=int, default=d.image_batch, help=f"images per step ({d.image_batch})")
    p.add_argument("--image-instances", type=int, default=d.image_instances,
                   help=f"instances decoded per image ({d.image_instances})")
    p.add_argument("--image-weight", type=float, default=d.image_weight,
                   help=f"weight of the image loss added to the video loss ({d.image_weight})")
    p.add_argument("--image-box-prob", type=float, default=d.image_box_prob,
                   help=f"chance that a step's image prompts are boxes ({d.image_box_prob})")
    p.add_argument("--decoder-lr-scale", type=float, default=d.decoder_lr_scale,
                   help="learning rate of the prompt encoder and mask decoder = --lr x this (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..build import CheckpointError
    from ..training.data import TrainingDataError
    from ..training.sam2_trainer import SAM2TrainConfig, SAM2Trainer, SAM2TrainingError

    try:
        config = SAM2TrainConfig(
            model=args.model, data=args.data, out=args.out, checkpoint=args.checkpoint, val_data=args.val_data,
            steps=args.steps, batch_size=args.batch_size, clip_len=args.clip_len, max_stride=args.max_stride,
            lr=args.lr, min_lr_ratio=args.min_lr_ratio, warmup_steps=args.warmup, weight_decay=args.weight_decay,
            grad_clip=args.grad_clip, freeze=args.freeze, bf16=args.bf16, device=args.device,
            prompt_probs=args.prompt_probs, iou_loss=args.iou_loss, all_outputs_weight=args.all_outputs_weight,
            max_clicks=args.max_clicks, correction_prob=args.correction_prob,
            val_every=args.val_every, val_videos=args.val_videos, save_every=args.save_every, seed=args.seed,
            threads=args.threads, image_size=args.image_size, image_data=args.image_data,
            image_batch=args.image_batch, image_instances=args.image_instances, image_weight=args.image_weight,
            image_box_prob=args.image_box_prob, decoder_lr_scale=args.decoder_lr_scale,
        )
        trainer = SAM2Trainer(config, resume=args.resume, overwrite=args.overwrite,
                              progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr))
    except (SAM2TrainingError, TrainingDataError, CheckpointError, ValueError, FileNotFoundError,
            RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    where = "from scratch" if args.checkpoint is None else f"from {args.checkpoint}"
    if trainer.resumed_from is not None:
        where = f"resumed at step {trainer.resumed_from}"
    n = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    print(f"training {trainer.model_config.name} ({n / 1e6:.2f} M trainable parameters) {where} on "
          f"{len(trainer.data)} videos; writing to {args.out}", file=sys.stderr)
    summary = trainer.train()
    last = summary.history[-1] if summary.history else None
    if last is not None:
        print(f"done: {summary.steps} steps, last loss {last.loss:.4f}; weights in {summary.files['weights']}")
    if summary.validation:
        v = summary.validation[-1]
        print(f"validation J&F {v['J&F']:.1f} (J {v['J']:.1f}, F {v['F']:.1f}) on {v['videos']} videos")
    return 0
