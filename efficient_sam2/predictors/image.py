"""Image predictor: embed an image once, then predict masks from points, boxes and low-res mask inputs."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..io.frames import load_image
from ..modeling.sam2 import SAM2Model
from .video import PromptError, _as_box, _as_labels, _as_points

__all__ = ["ImagePredictor"]

_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


class ImagePredictor:
    """SAM 2 on single images (the reference image predictor's behaviour, without torchvision).

    Preprocessing: RGB uint8 -> [0, 1] -> antialiased bilinear resize to S x S -> ImageNet normalisation.
    """

    def __init__(self, model: SAM2Model, mask_threshold: float = 0.0) -> None:
        self.model = model
        self.mask_threshold = mask_threshold
        self._features: dict | None = None
        self._orig_hw: tuple[int, int] | None = None

    @property
    def device(self) -> torch.device:
        return self.model.device

    def preprocess(self, image) -> torch.Tensor:
        """(1, 3, S, S) normalised tensor for an RGB image (HxWx3 uint8 array, PIL image or path)."""
        rgb = load_image(image)
        # np.array copies: arrays viewed from PIL images are read-only
        x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float().div(255.0)
        S = self.model.image_size
        x = F.interpolate(x[None], size=(S, S), mode="bilinear", align_corners=False, antialias=True)[0]
        x = (x - _MEAN) / _STD
        return x[None].to(self.device)

    @torch.inference_mode()
    def set_image(self, image) -> None:
        """Compute and keep the image embedding of `image`.

        `image`: an (H, W, 3) uint8 RGB array, a PIL image (grey, palette and RGBA images are converted to RGB) or
        an image file path. Raises ImageError (a ValueError) for anything else; the previous image is forgotten
        first, so a failed call never leaves predictions running on the old image.
        """
        self.reset_predictor()
        rgb = load_image(image)
        self._orig_hw = rgb.shape[:2]
        feats = self.model.forward_image(self.preprocess(rgb))
        C = self.model.hidden_dim
        embed = feats.vision + self.model.no_mem_embed.reshape(1, C, 1, 1)
        self._features = {"image_embed": embed, "high_res_feats": feats.high_res}

    def reset_predictor(self) -> None:
        self._features = None
        self._orig_hw = None

    @property
    def is_image_set(self) -> bool:
        return self._features is not None

    def get_image_embedding(self) -> torch.Tensor:
        """(1, C, E, E) embedding of the current image."""
        self._require_image()
        return self._features["image_embed"]

    def _require_image(self) -> None:
        if self._features is None:
            raise RuntimeError("no image is set: call predictor.set_image(image) before predict() or "
                               "get_image_embedding()")

    def _to_model_coords(self, xy: np.ndarray, normalize_coords: bool) -> np.ndarray:
        h, w = self._orig_hw
        S = self.model.image_size
        if normalize_coords:
            return xy / np.array([w, h], np.float32) * S
        return xy * S

    @torch.inference_mode()
    def predict(
        self,
        point_coords=None,
        point_labels=None,
        box=None,
        mask_input=None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ):
        """Masks for one prompt set on the current image.

        point_coords (N, 2) (x, y) in image pixels (or [0, 1] with normalize_coords=False), point_labels (N,)
        1 = positive, 0 = negative; box (4,) x0 y0 x1 y1; mask_input (1, 4E, 4E) low-res logits from an earlier
        call. Returns masks (C, H, W) bool (logits with return_logits), scores (C,), low-res logits (C, 4E, 4E) as
        numpy arrays; C = 3 with multimask_output, else 1.
        """
        self._require_image()
        h, w = self._orig_hw
        lim_w, lim_h = (w, h) if normalize_coords else (1.0, 1.0)
        coords, labels = [], []
        if (point_coords is None) != (point_labels is None):
            raise PromptError("point_coords and point_labels must be given together")
        if box is not None:
            b = _as_box(box)
            self._check_inside(b.reshape(2, 2), lim_w, lim_h, "box corner")
            coords.append(b.reshape(2, 2))
            labels.append(np.array([2, 3]))
        if point_coords is not None:
            p = _as_points(point_coords)
            lab = _as_labels(point_labels)
            if p.shape[0] != lab.shape[0]:
                raise PromptError(f"got {p.shape[0]} points but {lab.shape[0]} labels; give one label per point")
            if lab.size and not np.isin(lab, (-1, 0, 1)).all():
                raise PromptError(f"point labels must be 1 (positive) or 0 (negative), got {sorted(set(lab.tolist()))}")
            self._check_inside(p, lim_w, lim_h, "point")
            coords.append(p)
            labels.append(lab)
        points = None
        if coords and sum(len(c) for c in coords) > 0:
            xy = self._to_model_coords(np.concatenate(coords, 0), normalize_coords).astype(np.float32)
            points = (torch.from_numpy(xy)[None].to(self.device),
                      torch.from_numpy(np.concatenate(labels).astype(np.int32))[None].to(self.device))
        mask = None
        if mask_input is not None:
            mask = self._mask_input(mask_input)
        if points is None and mask is None:
            raise PromptError("empty prompt: give points (with labels), a box, or a mask_input")

        out = self.model.run_sam_heads(self._features["image_embed"], self._features["high_res_feats"], points, mask,
                                       multimask_output)
        low_res, ious = out.masks.float(), out.ious
        masks = F.interpolate(low_res, size=(h, w), mode="bilinear", align_corners=False)
        low_res = low_res.clamp(-32.0, 32.0)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks[0].cpu().numpy(), ious[0].float().cpu().numpy(), low_res[0].cpu().numpy()

    def _mask_input(self, mask_input) -> torch.Tensor:
        """(1, 1, 4E, 4E) float logits from a (4E, 4E), (1, 4E, 4E) or (1, 1, 4E, 4E) array."""
        m = mask_input.detach().cpu().numpy() if isinstance(mask_input, torch.Tensor) else mask_input
        try:
            m = np.asarray(m, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise PromptError(f"mask_input must be an array of low-res mask logits, got {type(mask_input).__name__}") \
                from exc
        L = self.model.cfg.low_res_mask_size
        shape = tuple(m.shape)
        while m.ndim < 4:
            m = m[None]
        if m.ndim != 4 or m.shape[:2] != (1, 1) or m.shape[2:] != (L, L):
            raise PromptError(
                f"mask_input must be the (1, {L}, {L}) low-res logits returned by an earlier predict() on this model "
                f"(image_size {self.model.image_size}), got shape {shape}"
            )
        if not np.isfinite(m).all():
            raise PromptError("mask_input must hold finite logits (got NaN or infinity)")
        return torch.from_numpy(np.ascontiguousarray(m)).to(self.device)

    @staticmethod
    def _check_inside(pts: np.ndarray, w: float, h: float, what: str) -> None:
        if not np.isfinite(pts).all():
            raise PromptError(f"{what} coordinates must be finite numbers")
        bad = (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)
        if bad.any():
            x, y = pts[bad][0].tolist()
            raise PromptError(f"{what} ({x:g}, {y:g}) is outside the image (x in [0, {w:g}], y in [0, {h:g}])")
