"""Exports of a session's tracked masks: palette PNGs in a zip, COCO RLE JSON per frame, the overlay video.

Frames that were never tracked are exported as background. Files are written into a private folder of the
server and sent from there (the caller removes it once sent).
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from ..io.masks import encode_rle
from ..io.overlay import write_overlay_video
from .session import VideoSession

FORMATS = {
    "zip": ("masks.zip", "application/zip"),
    "coco": ("masks_coco.json", "application/json"),
    "mp4": ("overlay.mp4", "video/mp4"),
}


def export(session: VideoSession, fmt: str, folder: str) -> tuple[str, str, str]:
    """Write the export `fmt` into `folder`; returns (path, download name, media type)."""
    name, media = FORMATS[fmt]
    path = os.path.join(folder, name)
    {"zip": _zip, "coco": _coco, "mp4": _mp4}[fmt](session, path)
    return path, name, media


def _zip(session: VideoSession, path: str) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
        for t in range(session.num_frames):
            zf.writestr(f"{t:05d}.png", session.mask_png(t))


def coco_frames(session: VideoSession) -> dict:
    """{"video": ..., "frames": [{"frame_idx", "file_name", "objects": [{"obj_id", "segmentation" (COCO RLE),
    "area", "bbox" [x, y, w, h]}]}]}: every frame, objects absent from a frame left out of it."""
    frames = []
    for t, ids in session.tracked_ids():
        objects = []
        for oid in (int(v) for v in np.unique(ids) if v != 0):
            m = ids == oid
            ys, xs = np.nonzero(m)
            objects.append({"obj_id": oid, "segmentation": encode_rle(m), "area": int(m.sum()),
                            "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                     int(ys.max() - ys.min() + 1)]})
        frames.append({"frame_idx": t, "file_name": f"{t:05d}.png", "objects": objects})
    return {"video": {"width": session.width, "height": session.height, "num_frames": session.num_frames,
                      "obj_ids": list(session.state.obj_ids)},
            "frames": frames}


def _coco(session: VideoSession, path: str) -> None:
    with open(path, "w") as f:
        json.dump(coco_frames(session), f, separators=(",", ":"))


def _mp4(session: VideoSession, path: str) -> None:
    write_overlay_video(path, ((session.frame_rgb(t), ids) for t, ids in session.tracked_ids()), session.fps,
                        overwrite=True)
