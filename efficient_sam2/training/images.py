"""Image-mode training for SAM 2 ("segment anything from a prompt"), mixed into the video trainer.

SAM's image recipe on single images whose every segment is annotated (`efficient-sam2 synth --images`): each
step encodes a few images once and decodes several instances per image from their features. The prompt of an
instance is one click anywhere on it (three outputs, the loss of the best one: the min over outputs, so that an
ambiguous click may stand for a part or the whole) or its box, jittered (one output). A correction round follows:
a click sampled in the error of the first prediction, positive on a missed pixel and negative on a false one,
decoded together with the first prompt and the first prediction's logits as the mask prompt (one output). The IoU
head is supervised on every output towards the output's true IoU (binary cross-entropy, see `sam2_trainer`).

Sampling is a pure function of (seed, step) like the clips', so resumed runs equal uninterrupted ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..io.frames import IMAGE_EXTENSIONS, preprocess_frame
from ..io.masks import read_palette_mask
from ..modeling.sam2 import BackboneFeatures, SAM2Model
from .data import TrainingDataError

__all__ = ["ImageBatch", "ImageDataset", "image_losses"]

MIN_INSTANCE_PIXELS = 24


@dataclass
class ImageBatch:
    """images (N, 3, S, S) normalised; masks (N * K, 1, S, S) float {0, 1}, K instances per image, image of row r
    is `image_index[r]`; names: the N image names."""

    images: torch.Tensor
    masks: torch.Tensor
    image_index: torch.Tensor
    names: list[str]


class ImageDataset:
    """Single images with instance-id annotations: ``DATA/JPEGImages/<subset>/<name>.jpg`` and
    ``DATA/Annotations/<subset>/<name>.png`` (the layout `synth --images` writes; a flat ``JPEGImages/`` works too).
    """

    def __init__(self, data: str | os.PathLike, image_size: int) -> None:
        data = os.fspath(data)
        images, annots = os.path.join(data, "JPEGImages"), os.path.join(data, "Annotations")
        if not os.path.isdir(images) or not os.path.isdir(annots):
            raise TrainingDataError(f"image data folder {data!r} needs JPEGImages/ and Annotations/ (write one with "
                                    "`efficient-sam2 synth --images N --out DIR ...`)")
        self.image_size = image_size
        self.items: list[tuple[str, str]] = []
        missing = []
        for root, dirs, files in os.walk(images):
            dirs.sort()
            rel = os.path.relpath(root, images)
            for f in sorted(files):
                if f.startswith(".") or os.path.splitext(f)[1].lower() not in IMAGE_EXTENSIONS:
                    continue
                ann = os.path.normpath(os.path.join(annots, rel, os.path.splitext(f)[0] + ".png"))
                if os.path.isfile(ann):
                    self.items.append((os.path.join(root, f), ann))
                else:
                    missing.append(ann)
        if missing:
            raise TrainingDataError(f"{len(missing)} image(s) in {images!r} have no annotation, e.g. {missing[0]!r}")
        if not self.items:
            raise TrainingDataError(f"no annotated images found in {images!r}")

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, images: int, instances: int, seed: int, step: int) -> ImageBatch:
        """`images` images and `instances` instances of each (drawn with replacement where an image has fewer)."""
        rng = np.random.default_rng([seed, step, 3])
        S = self.image_size
        imgs, masks, index, names = [], [], [], []
        for n in range(images):
            path, ann = self.items[int(rng.integers(len(self.items)))]
            rgb = np.array(Image.open(path).convert("RGB"))
            ids = read_palette_mask(ann)[0]
            if rng.random() < 0.5:
                rgb, ids = rgb[:, ::-1].copy(), ids[:, ::-1].copy()
            counts = np.bincount(ids.ravel())
            present = [int(v) for v in np.flatnonzero(counts >= MIN_INSTANCE_PIXELS) if v not in (0, 255)]
            if not present:
                raise TrainingDataError(f"{ann!r} holds no instance of at least {MIN_INSTANCE_PIXELS} pixels")
            pick = rng.choice(present, size=instances, replace=len(present) < instances)
            imgs.append(preprocess_frame(rgb, S))
            full = torch.from_numpy(np.stack([ids == v for v in pick]).astype(np.float32))[:, None]
            m = full
            if m.shape[-2:] != (S, S):
                m = (F.interpolate(full, size=(S, S), mode="bilinear", align_corners=False, antialias=True)
                     >= 0.5).float()
                empty = m.flatten(1).sum(1) == 0
                if empty.any():  # an instance too thin to survive resizing: use its nearest-neighbour mask
                    m[empty] = F.interpolate(full, size=(S, S), mode="nearest")[empty]
                h, w = ids.shape
                for r in (m.flatten(1).sum(1) == 0).nonzero().flatten().tolist():  # still empty: its centroid
                    ys, xs = np.nonzero(ids == pick[r])
                    m[r, 0, min(S - 1, int(ys.mean() * S / h)), min(S - 1, int(xs.mean() * S / w))] = 1.0
            masks.append(m)
            index += [n] * instances
            names.append(os.path.splitext(os.path.basename(path))[0])
        return ImageBatch(torch.stack(imgs), torch.cat(masks), torch.as_tensor(index), names)


def _rows(feats: BackboneFeatures, index: torch.Tensor) -> BackboneFeatures:
    return BackboneFeatures([f.index_select(0, index) for f in feats.high_res], feats.vision.index_select(0, index),
                            feats.vision_pos.index_select(0, index))


def image_losses(model: SAM2Model, batch: ImageBatch, rng: np.random.Generator, box_prob: float = 0.3,
                 iou_loss: str = "bce", correction: bool = True, feats: BackboneFeatures | None = None):
    """The image-mode loss of one batch: (LossTerms of the first prompt, LossTerms of the correction round or None).

    The first prompt of all instances is one click each (three outputs) or, with probability `box_prob`, a
    jittered box each (one output); the correction round adds one click in each instance's error. `feats`: the
    batch's backbone features, one row per instance, when they are computed elsewhere (frozen, cached encoders).
    """
    from .sam2_trainer import mask_losses, sample_box, sample_clicks, sample_correction

    device = model.device
    gt = batch.masks.to(device)
    if feats is None:
        feats = _rows(model.forward_image(batch.images.to(device)), batch.image_index.to(device))
    pix, _ = model.condition_on_memory(feats, [], [], 1)
    use_box = rng.random() < box_prob
    points = sample_box(gt, rng) if use_box else sample_clicks(gt, 1, rng)
    first = model.decode(pix, feats.high_res, points=points, multimask=not use_box, search_clicks=False)
    terms = mask_losses(first, gt, iou_loss)
    if not correction:
        return terms, None
    prev = first.low_res.detach().clamp(-32, 32)
    fix = sample_correction(prev, gt, rng)
    second = model.decode(pix, feats.high_res, points=points.cat(fix), mask_input=prev, multimask=False,
                          search_clicks=False)
    return terms, mask_losses(second, gt, iou_loss)
