"""Atomic output files: written under a temporary name in the target's folder and renamed over the target only
once complete, so an interrupted run never leaves a truncated file behind (the old file, if any, survives)."""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import IO, Any, Iterator

__all__ = ["atomic_open", "atomic_torch_save"]


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", fsync: bool = False, **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file next to `path` for writing ("w" or "wb"); on success it replaces `path`, on error it
    is removed. Missing parent folders are created; permissions follow the umask like a plain open()."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save(obj, path)`, atomically and synced to disk (checkpoints)."""
    import torch

    with atomic_open(path, "wb", fsync=True) as f:
        torch.save(obj, f)
