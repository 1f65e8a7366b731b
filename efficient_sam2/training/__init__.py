"""Training the Sparse Window Routing shortcut branch by feature reconstruction (`efficient-sam2 train-shortcut`)."""

from .data import LAYOUTS, TrainingDataError, TrainingVideo, find_videos, read_video_list, scan_training_videos
from .loss_curve import moving_average, plot_loss_curve, read_loss_csv, write_loss_csv
from .shortcut_trainer import (
    ReconstructionReport,
    ShortcutTrainer,
    ShortcutTrainingError,
    TrainConfig,
    TrainEvent,
    TrainResult,
    default_frame_stride,
    evaluate_reconstruction,
    prompt_masks,
    train_shortcut,
)

__all__ = [
    "LAYOUTS",
    "TrainingDataError",
    "TrainingVideo",
    "find_videos",
    "read_video_list",
    "scan_training_videos",
    "moving_average",
    "plot_loss_curve",
    "read_loss_csv",
    "write_loss_csv",
    "ReconstructionReport",
    "ShortcutTrainer",
    "ShortcutTrainingError",
    "TrainConfig",
    "TrainEvent",
    "TrainResult",
    "default_frame_stride",
    "evaluate_reconstruction",
    "prompt_masks",
    "train_shortcut",
]
