"""Training clips for SAM 2: short runs of frames with every frame's ground-truth masks (DAVIS layout).

A data folder is either a DAVIS-style root (``JPEGImages/<res>/<video>/`` and ``Annotations/<res>/<video>/``, as
`efficient-sam2 synth` writes and DAVIS ships) or a pair of folders (``frames/<video>/``, ``masks/<video>/``).
Every frame used for training needs its palette PNG (object ids, 0 background, 255 void), named like the frame.

Sampling is a pure function of (seed, step): the clips, objects, flips and prompts of step k are the same whether
training ran through step k or was resumed just before it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..io.frames import IMAGE_EXTENSIONS, preprocess_frame, sort_frame_names
from ..io.masks import read_palette_mask
from .data import TrainingDataError

__all__ = ["ClipDataset", "Clip", "find_data_folders"]

VOID = 255


def find_data_folders(data: str | os.PathLike) -> tuple[str, str]:
    """(frames folder, annotations folder) of a data folder; TrainingDataError when it has no annotations."""
    data = os.fspath(data)
    if not os.path.isdir(data):
        raise TrainingDataError(f"data folder not found: {data!r}")
    for frames_name, masks_name in (("JPEGImages", "Annotations"), ("frames", "masks")):
        frames, masks = os.path.join(data, frames_name), os.path.join(data, masks_name)
        if os.path.isdir(frames):
            if not os.path.isdir(masks):
                raise TrainingDataError(
                    f"data folder {data!r} has {frames_name}/ but no {masks_name}/: training needs the ground-truth "
                    "masks of every frame"
                )
            # DAVIS keeps one more level for the resolution (JPEGImages/480p/<video>/)
            subs = sorted(d for d in os.listdir(masks) if os.path.isdir(os.path.join(masks, d)))
            if subs and all(os.path.isdir(os.path.join(frames, s)) for s in subs) and _holds_only_folders(
                    os.path.join(masks, subs[0])) and len(subs) == 1:
                return os.path.join(frames, subs[0]), os.path.join(masks, subs[0])
            return frames, masks
    raise TrainingDataError(
        f"data folder {data!r} has no JPEGImages/ + Annotations/ (DAVIS layout) or frames/ + masks/ folders; make one "
        "with `efficient-sam2 synth --out DIR ...`"
    )


def _holds_only_folders(path: str) -> bool:
    entries = [e for e in os.scandir(path) if not e.name.startswith(".")]
    return bool(entries) and all(e.is_dir() for e in entries)


@dataclass(frozen=True)
class _Video:
    name: str
    frames: tuple[str, ...]  # frame file paths
    masks: tuple[str, ...]  # the matching annotation PNG paths


@dataclass
class Clip:
    """A batch of B clips of T frames, one object each.

    images (B, T, 3, S, S) normalised; masks (B, T, 1, S, S) float {0, 1} ground truth of the object;
    videos / obj_ids / starts name what was sampled.
    """

    images: torch.Tensor
    masks: torch.Tensor
    videos: list[str]
    obj_ids: list[int]
    starts: list[int]


class ClipDataset:
    """Videos with every frame annotated, sampled as clips of `clip_len` frames.

    Args:
        data: a data folder (see the module docstring).
        clip_len: frames per clip; every video must have at least this many annotated frames.
        image_size: model input size S.
        max_stride: clips take every k-th frame, k drawn in 1..max_stride where the video is long enough.
    """

    def __init__(self, data: str | os.PathLike, clip_len: int, image_size: int, max_stride: int = 2) -> None:
        if clip_len < 1:
            raise TrainingDataError(f"clip length must be >= 1, got {clip_len}")
        self.frames_dir, self.masks_dir = find_data_folders(data)
        self.clip_len = clip_len
        self.image_size = image_size
        self.max_stride = max(1, max_stride)
        self.videos: list[_Video] = []
        problems = []
        for name in sort_frame_names([d for d in os.listdir(self.frames_dir)
                                      if os.path.isdir(os.path.join(self.frames_dir, d)) and not d.startswith(".")]):
            folder = os.path.join(self.frames_dir, name)
            frames = sort_frame_names([f for f in os.listdir(folder) if not f.startswith(".")
                                       and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS])
            mask_folder = os.path.join(self.masks_dir, name)
            if not os.path.isdir(mask_folder):
                problems.append(f"{name}: no annotation folder {mask_folder!r}")
                continue
            pairs = [(os.path.join(folder, f), os.path.join(mask_folder, os.path.splitext(f)[0] + ".png"))
                     for f in frames]
            pairs = [(f, m) for f, m in pairs if os.path.isfile(m)]
            if len(pairs) < clip_len:
                problems.append(f"{name}: {len(pairs)} annotated frame(s), shorter than the clip length {clip_len}")
                continue
            self.videos.append(_Video(name, tuple(f for f, _ in pairs), tuple(m for _, m in pairs)))
        if problems:
            shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} in all)" if len(problems) > 5 else "")
            raise TrainingDataError(f"cannot train on {os.fspath(data)!r}: {shown}")
        if not self.videos:
            raise TrainingDataError(f"no videos with frames found in {self.frames_dir!r}")

    def __len__(self) -> int:
        return len(self.videos)

    def sample(self, batch: int, seed: int, step: int) -> Clip:
        """The clips of training step `step` (a pure function of seed and step)."""
        rng = np.random.default_rng([seed, step, 1])
        images, masks, names, ids, starts = [], [], [], [], []
        for _ in range(batch):
            for _attempt in range(20):
                video = self.videos[int(rng.integers(len(self.videos)))]
                n = len(video.frames)
                stride = int(rng.integers(1, self.max_stride + 1))
                while stride > 1 and (self.clip_len - 1) * stride >= n:
                    stride -= 1
                start = int(rng.integers(0, n - (self.clip_len - 1) * stride))
                index = [start + k * stride for k in range(self.clip_len)]
                labels = [read_palette_mask(video.masks[i])[0] for i in index]
                present = [int(v) for v in np.unique(labels[0]) if v not in (0, VOID)
                           and np.count_nonzero(labels[0] == v) >= 16]
                if present:
                    break
            else:
                raise TrainingDataError(f"could not find a clip with an object on its first frame (last tried "
                                        f"{video.name!r})")
            obj = present[int(rng.integers(len(present)))]
            flip = bool(rng.integers(2))
            imgs, objm = [], []
            for i, lab in zip(index, labels):
                rgb = np.array(Image.open(video.frames[i]).convert("RGB"))
                m = (lab == obj).astype(np.float32)
                if flip:
                    rgb, m = rgb[:, ::-1].copy(), m[:, ::-1].copy()
                imgs.append(preprocess_frame(rgb, self.image_size))
                mt = torch.from_numpy(m)[None, None]
                if mt.shape[-2:] != (self.image_size, self.image_size):
                    mt = (F.interpolate(mt, size=(self.image_size,) * 2, mode="bilinear", align_corners=False,
                                        antialias=True) >= 0.5).float()
                objm.append(mt[0])
            images.append(torch.stack(imgs))
            masks.append(torch.stack(objm))
            names.append(video.name)
            ids.append(obj)
            starts.append(index[0])
        return Clip(torch.stack(images), torch.stack(masks), names, ids, starts)

    def video_names(self) -> list[str]:
        return [v.name for v in self.videos]

    def video(self, name: str) -> _Video:
        for v in self.videos:
            if v.name == name:
                return v
        raise KeyError(name)
