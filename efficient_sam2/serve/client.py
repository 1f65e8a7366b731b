"""A small client of the HTTP API (standard library only), for scripts, the benchmark and the tests.

    from efficient_sam2.serve.client import ApiClient
    api = ApiClient("http://127.0.0.1:8000", token="...")
    video = api.upload("clip.mp4")
    api.prompt(video["video_id"], frame_idx=0, obj_id=1, points=[[120, 80]], labels=[1])
    api.propagate(video["video_id"], efficient=True, direction="both")
    ids = api.mask(video["video_id"], 10)          # (H, W) uint8 object ids
"""

from __future__ import annotations

import io
import json
import os
import urllib.error
import urllib.request
import uuid

import numpy as np


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class ApiClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    # ------------------------------------------------------------------ raw
    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                headers: dict | None = None) -> tuple[int, dict, bytes]:
        """(status, headers, body) of one request; never raises for an HTTP status."""
        req = urllib.request.Request(self.base_url + path, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def call(self, method: str, path: str, payload: dict | None = None) -> dict | None:
        """A JSON request; the decoded answer (None for 204). ApiError for an error status."""
        body = json.dumps(payload).encode() if payload is not None else None
        status, _, data = self.request(method, path, body, "application/json" if body is not None else None)
        return self._answer(status, data)

    @staticmethod
    def _answer(status: int, data: bytes):
        if status >= 400:
            try:
                message = json.loads(data).get("error", "")
            except ValueError:
                message = data[:200].decode("utf-8", "replace")
            raise ApiError(status, message)
        return json.loads(data) if data else None

    def _get_bytes(self, path: str) -> bytes:
        status, _, data = self.request("GET", path)
        if status >= 400:
            self._answer(status, data)
        return data

    # ------------------------------------------------------------------ routes
    def health(self) -> dict:
        return self.call("GET", "/api/health")

    def upload(self, video: str | os.PathLike | bytes, filename: str = "video") -> dict:
        """Upload a video file (a path) or its bytes; returns {"video_id", "num_frames", "width", "height"}."""
        data = video if isinstance(video, bytes) else open(video, "rb").read()
        body, ctype = multipart_body(data, filename)
        status, _, answer = self.request("POST", "/api/videos", body, ctype)
        return self._answer(status, answer)

    def info(self, video_id: str) -> dict:
        return self.call("GET", f"/api/videos/{video_id}")

    def prompt(self, video_id: str, frame_idx: int, obj_id: int, points=None, labels=None, box=None,
               clear_old_points: bool | None = None) -> dict:
        payload: dict = {"frame_idx": frame_idx, "obj_id": obj_id}
        if points is not None:
            payload["points"] = [[float(x), float(y)] for x, y in points]
            payload["labels"] = [int(v) for v in labels]
        if box is not None:
            payload["box"] = [float(v) for v in box]
        if clear_old_points is not None:
            payload["clear_old_points"] = clear_old_points
        return self.call("POST", f"/api/videos/{video_id}/prompts", payload)

    def add_mask(self, video_id: str, frame_idx: int, obj_id: int, mask: np.ndarray) -> dict:
        """Add an object from its (H, W) mask on a frame (sent as COCO RLE)."""
        from ..io.masks import encode_rle

        return self.call("POST", f"/api/videos/{video_id}/objects",
                         {"frame_idx": frame_idx, "obj_id": obj_id, "mask": encode_rle(np.asarray(mask) > 0)})

    def propagate(self, video_id: str, efficient: bool = True, direction: str = "forward",
                  start_frame_idx: int | None = None) -> dict:
        payload: dict = {"efficient": efficient, "direction": direction}
        if start_frame_idx is not None:
            payload["start_frame_idx"] = start_frame_idx
        return self.call("POST", f"/api/videos/{video_id}/propagate", payload)

    def mask(self, video_id: str, frame_idx: int) -> np.ndarray:
        """The frame's object ids (H, W) uint8, read from the palette PNG."""
        from PIL import Image

        with Image.open(io.BytesIO(self._get_bytes(f"/api/videos/{video_id}/masks/{frame_idx}.png"))) as img:
            return np.asarray(img)

    def frame(self, video_id: str, frame_idx: int) -> bytes:
        return self._get_bytes(f"/api/videos/{video_id}/frames/{frame_idx}.jpg")

    def export(self, video_id: str, fmt: str) -> bytes:
        return self._get_bytes(f"/api/videos/{video_id}/export?format={fmt}")

    def remove_object(self, video_id: str, obj_id: int) -> None:
        self.call("DELETE", f"/api/videos/{video_id}/objects/{obj_id}")

    def delete(self, video_id: str) -> None:
        self.call("DELETE", f"/api/videos/{video_id}")


def multipart_body(data: bytes, filename: str = "video", field: str = "file") -> tuple[bytes, str]:
    """A multipart/form-data body with one file field; returns (body, content type)."""
    boundary = uuid.uuid4().hex
    safe = "".join(c for c in filename if c.isalnum() or c in "._-") or "video"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{safe}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
