"""A test-only stand-in for the few torchvision pieces the reference package imports.

torchvision's compiled ops do not load with the CPU torch used here, and the reference's image predictor and
automatic mask generator import it at module level. This shim provides the documented behaviour of those pieces
(ToTensor, antialiased bilinear Resize on tensors, Normalize, box_area, batched_nms) written from their
documentation, and is installed only when the real torchvision cannot be imported.
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ToTensor:
    def __call__(self, pic):
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
        return t.float().div(255.0) if t.dtype == torch.uint8 else t.float()


class Resize(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.size = [int(s) for s in size]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.unsqueeze(0), size=self.size, mode="bilinear", align_corners=False,
                             antialias=True).squeeze(0)


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (box_area(a)[:, None] + box_area(b)[None, :] - inter)


def batched_nms(boxes, scores, idxs, iou_threshold):
    keep = []
    for c in torch.unique(idxs):
        sel = torch.nonzero(idxs == c).flatten()
        order = sel[torch.argsort(scores[sel], descending=True)]
        ious = _iou(boxes[order], boxes[order])
        removed = torch.zeros(len(order), dtype=torch.bool)
        for i in range(len(order)):
            if removed[i]:
                continue
            keep.append(order[i])
            removed |= ious[i] > iou_threshold
    if not keep:
        return torch.zeros(0, dtype=torch.long)
    keep = torch.stack(keep)
    return keep[torch.argsort(scores[keep], descending=True)]


def install() -> None:
    try:
        importlib.import_module("torchvision.transforms")
        return
    except Exception:
        pass
    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    transforms.ToTensor, transforms.Resize, transforms.Normalize = ToTensor, Resize, Normalize
    ops = types.ModuleType("torchvision.ops")
    boxes = types.ModuleType("torchvision.ops.boxes")
    boxes.box_area, boxes.batched_nms = box_area, batched_nms
    ops.boxes = boxes
    tv.transforms, tv.ops = transforms, ops
    sys.modules.update({"torchvision": tv, "torchvision.transforms": transforms, "torchvision.ops": ops,
                        "torchvision.ops.boxes": boxes})
