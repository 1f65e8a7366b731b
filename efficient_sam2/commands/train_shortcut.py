"""`efficient-sam2 train-shortcut`: train the Sparse Window Routing shortcut branch by feature reconstruction."""

from __future__ import annotations

import argparse
import sys

from .common import add_efficient_args, add_model_args, efficient_config_from_args

DESCRIPTION = """\
Train the shortcut branch that carries the background windows of Sparse Window Routing past the routed Hiera
blocks (Efficient-SAM2, section 3.2, Eq. 14). The SAM 2 model is frozen; it is run twice on every training frame:
densely (teacher) and with the router's window plan and the shortcut (student), both with the same memory bank.
The loss is the MSE between their memory-conditioned features, for every prompted object. No labels are needed
beyond the first-frame mask of each object, which is the prompt.

Data: --video-dir holds one frame folder (<video>/<frame>.jpg) or video file (<video>.mp4) per video;
--mask-dir holds the first-frame masks: DAVIS layout <video>/<frame>.png (palette PNG of object ids) or SA-V layout
<video>/<obj_id>/<frame>.png. Every video is checked before training; videos without a first-frame mask and list
entries naming missing videos are all reported at once.

Defaults follow the paper (Appendix F): AdamW, lr 1e-4, update stride 32, 3 epochs with memory strides 1, 3, 5,
training-frame stride 3 (4 for large); the router uses the inference settings of the Efficient-SAM2 group below
(--tau, --theta-obj, --dilation, --chosen-mask-only, --kept-windows, --padding; --shortcut is a synonym of
--variant). The SMR options (--no-smr, --sparsity, --memory-selection) do not affect training: both passes read the
full memory. --dense, --no-swr and --shortcut-checkpoint are refused (use --init-shortcut to start from a file).

Writes to --output: shortcut.pth (load it with --shortcut-checkpoint at inference, or
build_sam2_video_predictor(..., shortcut_checkpoint=...)), shortcut_epoch<N>.pth, loss.csv, loss.png,
train_config.json and training_state.pt. Checkpoints are written atomically every --save-every updates (at the end
of the video in which they fall) and at the end of every epoch. An interrupted run continues with --resume and
loses only the work since its last checkpoint. A folder that already holds a run is never overwritten.
"""


def _strides(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, e.g. 1,3,5; got {text!r}")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, e.g. 1,3,5; got {text!r}")
    return values


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-shortcut", help="train the SWR shortcut branch by feature reconstruction",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(p)
    d = p.add_argument_group("training data")
    d.add_argument("--video-dir", required=True,
                   help="folder with one frame folder or video file (.mp4/.avi/.mov/.mkv) per video")
    d.add_argument("--mask-dir", required=True, help="folder with the first-frame masks, one sub-folder per video")
    d.add_argument("--layout", choices=("davis", "mose", "sav"), default="davis",
                   help="mask layout: davis / mose = <video>/<frame>.png palette PNGs of object ids; sav = "
                        "<video>/<obj_id>/<frame>.png binary PNGs (default davis)")
    d.add_argument("--video-list", default=None,
                   help="text file naming the videos to train on, one per line ('#' comments); default: all")
    d.add_argument("--max-objects", type=int, default=1,
                   help="prompt at most this many objects per video, smallest ids first (default 1, like the "
                        "official training data; 0 = all)")
    d.add_argument("--max-frames", type=int, default=None,
                   help="use only the first N frames of every video (default: all)")

    t = p.add_argument_group("training")
    t.add_argument("--output", required=True,
                   help="output folder for the shortcut, the loss curve and the resumable training state")
    t.add_argument("--variant", choices=("bottleneck", "ffn", "attention"), default=None,
                   help="shortcut variant to train (default bottleneck, the paper's; --shortcut is a synonym)")
    t.add_argument("--epochs", type=int, default=3, help="number of epochs (default 3)")
    t.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    t.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    t.add_argument("--update-stride", type=int, default=32,
                   help="loss terms (object x training frame) accumulated per optimizer update (default 32)")
    t.add_argument("--frame-stride", type=int, default=None,
                   help="train on routed frames whose index is a multiple of N (default 3; 4 for large)")
    t.add_argument("--memory-strides", type=_strides, default=(1, 3, 5),
                   help="memory temporal stride of each epoch, comma-separated, cycled (default 1,3,5)")
    t.add_argument("--save-every", type=int, default=10,
                   help="write a checkpoint after every N optimizer updates, at the end of the video in which "
                        "the N-th falls (default 10); always at the end of every epoch")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --output from its last checkpoint (same settings required; "
                        "--epochs may be raised)")
    t.add_argument("--init-shortcut", default=None,
                   help="start from this shortcut file (ours or the official bypass_*.pth) instead of a fresh one")
    t.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for the forward passes (for CUDA; works on CPU but is much slower "
                        "there); the loss is computed in float32")
    t.add_argument("--seed", type=int, default=0, help="seed of the shortcut's initialisation, dropout and the "
                                                       "video order (default 0)")
    t.add_argument("--no-shuffle", action="store_true", help="visit the videos in list order every epoch")
    t.add_argument("--dense-frames", type=int, default=None,
                   help="the first N frames of every video keep every window (default 2, as at inference)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_efficient_args(p)
    # --shortcut (from the shared Efficient-SAM2 options) names the variant too; None tells whether it was given
    p.set_defaults(shortcut=None, func=run)


def config_from_args(args):
    """The TrainConfig the parsed arguments describe (raises ValueError on contradictions)."""
    from ..training import TrainConfig

    if args.dense or args.no_swr:
        raise ValueError("--dense / --no-swr turn Sparse Window Routing off, but the shortcut is only used by it; "
                         "drop them to train")
    if args.shortcut is not None and args.variant is not None and args.shortcut != args.variant:
        raise ValueError(f"--shortcut {args.shortcut} contradicts --variant {args.variant}; give one of them")
    variant = args.variant or args.shortcut or "bottleneck"
    if variant == "identity":
        raise ValueError("the identity shortcut has no parameters to train; choose bottleneck, ffn or attention")
    if args.shortcut_checkpoint is not None:
        raise ValueError("--shortcut-checkpoint is for inference; to start training from a shortcut file use "
                         "--init-shortcut")
    args.shortcut = variant
    efficient = efficient_config_from_args(args, paper=True)  # trained on the paper's routing (any option given)
    if args.dense_frames is not None:
        efficient = efficient.replace(dense_frames=args.dense_frames)
    return TrainConfig(
        model=args.model,
        checkpoint=args.checkpoint,
        video_dir=args.video_dir,
        mask_dir=args.mask_dir,
        output_dir=args.output,
        layout=args.layout,
        video_list=args.video_list,
        max_objects=args.max_objects,
        variant=variant,
        epochs=args.epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        update_stride=args.update_stride,
        frame_stride=args.frame_stride,
        memory_strides=args.memory_strides,
        save_every=args.save_every,
        resume=args.resume,
        bf16=args.bf16,
        device=args.device,
        image_size=args.image_size,
        efficient=efficient,
        max_frames=args.max_frames,
        shuffle=not args.no_shuffle,
        seed=args.seed,
        init_shortcut=args.init_shortcut,
        progress=not args.no_progress,
    )


def run(args) -> int:
    from ..training import ShortcutTrainer

    try:
        config = config_from_args(args)
        trainer = ShortcutTrainer(config)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = trainer.train()
    except KeyboardInterrupt:
        print(
            f"interrupted: the last checkpoint ({trainer.saved_updates} updates) is in {trainer.output_dir}; "
            "continue with the same command plus --resume",
            file=sys.stderr,
        )
        return 130
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    avg = result.moving_average(config.update_stride)
    print(f"trained {config.variant} shortcut for {config.model}: {result.epochs} epochs, {result.updates} updates, "
          f"{result.terms} loss terms")
    if avg:
        print(f"loss (moving average over {config.update_stride} terms): first {avg[0]:.6g}, last {avg[-1]:.6g}")
    print(f"shortcut: {result.shortcut_path}")
    print(f"loss curve: {result.loss_csv}, {result.loss_plot}")
    return 0
