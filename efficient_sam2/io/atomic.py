"""Atomic output files: written under a temporary name in the target's folder and renamed over the target only
once complete, so an interrupted run never leaves a truncated file behind (the old file, if any, survives).

Output folders follow one rule in every command: `--overwrite` replaces the files the command writes, and nothing
else. `check_output_folder` is the check before a run, `unlisted_files` names what a run leaves alone, and
`move_into` puts a staged set of files into a folder that already holds other files.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import IO, Any, Collection, Iterable, Iterator

__all__ = ["atomic_open", "atomic_torch_save", "check_output_folder", "move_into", "unlisted_files"]


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


def check_output_folder(path: str | os.PathLike, overwrite: bool, what: str = "output folder") -> list[str]:
    """Check a folder a command is about to write into; return the names already in it ([] if it is missing).

    Raises FileExistsError for a path that exists and is not a folder, and, without `overwrite`, for a folder that
    is not empty. With `overwrite` the command replaces the files it writes and leaves every other file alone.
    """
    path = os.fspath(path)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{what} {path!r} exists and is not a folder")
    if not os.path.isdir(path):
        return []
    names = sorted(os.listdir(path))
    if names and not overwrite:
        raise FileExistsError(
            f"{what} {path!r} is not empty; use --overwrite to replace the files this command writes there (other "
            "files are left as they are) or choose another folder"
        )
    return names


def unlisted_files(folder: str | os.PathLike, files: Collection[str]) -> list[str]:
    """Files under `folder` (relative paths, '/'-separated, sorted) that are not in `files` (relative paths)."""
    folder = os.fspath(folder)
    own = {f.replace(os.sep, "/") for f in files}
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        rel_root = os.path.relpath(root, folder)
        for name in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            rel = name if rel_root == "." else f"{rel_root.replace(os.sep, '/')}/{name}"
            if rel not in own:
                found.append(rel)
    return sorted(found)


def move_into(staged: str | os.PathLike, folder: str | os.PathLike, files: Iterable[str]) -> None:
    """Move `files` (relative paths) from the folder `staged` into `folder`, each by one rename that replaces a file
    of the same name; nothing else in `folder` is touched. Both folders must be on one file system."""
    staged, folder = os.fspath(staged), os.fspath(folder)
    for rel in files:
        dst = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.replace(os.path.join(staged, rel), dst)
