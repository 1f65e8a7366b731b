"""Downloading Meta's official SAM 2 / SAM 2.1 checkpoints (standard library only: urllib, hashlib).

Nothing in the model-loading path imports this module: checkpoints are only fetched when asked for, with
`download_checkpoint(...)` or `efficient-sam2 download NAME`.

Downloads are resumable: bytes go to ``<file>.part`` and an interrupted download continues from where it stopped
with an HTTP Range request (on the next call, or automatically up to `retries` times). When complete, the SHA-256 of
the file is checked against the expected hash (given by the caller, or known for the file) and the file is renamed
to its final name; a mismatch deletes the download. The computed hash is always written next to the file as
``<file>.sha256`` (``sha256sum`` format, atomically through `io.atomic.atomic_open`), so it can be checked later
with ``sha256sum -c``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from tqdm.auto import tqdm

from .configs import available_models, resolve_model_name
from .io.atomic import atomic_open

__all__ = ["CHECKPOINTS", "CheckpointInfo", "DownloadError", "checkpoint_info", "download_checkpoint", "sha256sum"]

PathLike = Union[str, os.PathLike]

_SAM21_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"
_SAM2_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/072824"
_CHUNK = 1 << 20
_USER_AGENT = "efficient-sam2-downloader"


@dataclass(frozen=True)
class CheckpointInfo:
    """An official checkpoint: registry model name, file name, public URL and SHA-256 (None when not published)."""

    name: str
    filename: str
    url: str
    sha256: Optional[str] = None


# Meta does not publish SHA-256 digests of these files; none are recorded here rather than unverified guesses.
# The hash of every download is computed, printed and stored next to the file instead.
CHECKPOINTS: dict[str, CheckpointInfo] = {}
for _size in ("tiny", "small", "base_plus", "large"):
    for _prefix, _base in (("sam2.1", _SAM21_BASE), ("sam2", _SAM2_BASE)):
        _name = f"{_prefix}_hiera_{_size}"
        CHECKPOINTS[_name] = CheckpointInfo(_name, f"{_name}.pt", f"{_base}/{_name}.pt", None)


class DownloadError(RuntimeError):
    """A download failed (network, HTTP status, size or hash mismatch); the message says whether it can resume."""


def checkpoint_info(name: str) -> CheckpointInfo:
    """The official checkpoint of `name` (a registry name or an alias such as "large" = SAM 2.1 large)."""
    try:
        canonical = resolve_model_name(name)
    except (ValueError, TypeError) as e:
        raise ValueError(f"unknown checkpoint {name!r}; known: {', '.join(sorted(CHECKPOINTS))} "
                         "(aliases tiny, small, base_plus, large mean SAM 2.1)") from e
    if canonical not in CHECKPOINTS:
        raise ValueError(f"no official checkpoint is known for model {canonical!r}; known: "
                         f"{', '.join(sorted(CHECKPOINTS))}")
    return CHECKPOINTS[canonical]


def sha256sum(path: PathLike, chunk_size: int = _CHUNK) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def _normalise_hash(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    v = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", v):
        raise ValueError(f"--sha256 must be 64 hexadecimal digits; got {value!r}")
    return v


def _total_from_content_range(value: Optional[str]) -> tuple[Optional[int], Optional[int]]:
    """(first byte, total size) from 'bytes START-END/TOTAL' or 'bytes */TOTAL' (None where absent or '*')."""
    if not value:
        return None, None
    m = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value)
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


class _Resumable(Exception):
    """The transfer stopped early; the .part file holds what arrived and the next attempt resumes from it."""


def _fetch_once(url: str, part: Path, timeout: float, progress: bool, desc: str) -> None:
    """One HTTP request appending to `part` from its current size. Returns when the file is complete."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            _, total = _total_from_content_range(e.headers.get("Content-Range"))
            e.close()
            if total is not None and total == offset:
                return  # the .part file already holds the whole file
            part.unlink()  # longer than the remote file, or unknown: start again
            raise _Resumable("the partial download does not match the remote file; restarting") from None
        e.close()
        raise DownloadError(f"HTTP {e.code} {e.reason} for {url}") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise _Resumable(f"cannot reach {url}: {reason}") from None
    with resp:
        status = resp.status
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if offset and status == 206:
            start, total = _total_from_content_range(resp.headers.get("Content-Range"))
            if start is not None and start != offset:
                part.unlink()
                raise _Resumable(f"the server resumed at byte {start} instead of {offset}; restarting")
            if total is None and length is not None:
                total = offset + length
            mode = "ab"
        elif status == 200:
            offset, mode = 0, "wb"  # no range support (or a fresh download): start from the beginning
            total = length
        else:
            raise DownloadError(f"unexpected HTTP status {status} for {url}")
        received = offset
        with open(part, mode) as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                         unit_divisor=1024, desc=desc, disable=not progress) as bar:
            try:
                while True:
                    try:
                        block = resp.read(_CHUNK)
                    except (socket.timeout, ConnectionError, http.client.HTTPException) as e:
                        raise _Resumable(f"connection lost after {received} bytes: {type(e).__name__} {e}") from None
                    if not block:
                        break
                    f.write(block)
                    received += len(block)
                    bar.update(len(block))
            finally:
                f.flush()
                os.fsync(f.fileno())
        if total is not None and received < total:
            raise _Resumable(f"connection closed after {received} of {total} bytes")
        if total is not None and received > total:
            part.unlink()
            raise DownloadError(f"received {received} bytes but the server announced {total}; the download was "
                                "deleted")


def download_checkpoint(
    name: str,
    directory: PathLike = ".",
    *,
    url: Optional[str] = None,
    sha256: Optional[str] = None,
    overwrite: bool = False,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
    retry_wait: float = 2.0,
) -> Path:
    """Download the official checkpoint `name` into `directory`; returns the path of the verified file.

    Args:
        name: model name or alias ("large", "sam2.1_hiera_large", "sam2_hiera_tiny", ...).
        directory: destination folder (created if needed); the file is named like Meta's (e.g. sam2.1_hiera_large.pt).
        url: download from this URL instead of Meta's (mirrors, tests).
        sha256: expected hex digest; default the known one for the file (None: not verified, only recorded).
        overwrite: replace an existing file (only once the new one is complete and verified).
        progress: tqdm progress bar.
        retries: how many times an interrupted transfer is resumed automatically before giving up (the .part file
            is kept, so calling again resumes too).
        timeout: seconds without data before a connection is considered lost.
    Raises:
        ValueError (unknown name, malformed hash), FileExistsError (file exists, no `overwrite`), DownloadError.
    """
    info = checkpoint_info(name)
    expected = _normalise_hash(sha256) if sha256 is not None else info.sha256
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / info.filename
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} already exists; use --overwrite (overwrite=True) to download it again")
    if dest.is_dir():
        raise FileExistsError(f"{dest} is a folder")
    part = folder / (info.filename + ".part")
    source = url or info.url
    attempt = 0
    while True:
        try:
            _fetch_once(source, part, timeout, progress, info.filename)
            break
        except _Resumable as e:
            attempt += 1
            if attempt > retries:
                have = part.stat().st_size if part.exists() else 0
                raise DownloadError(f"download of {info.filename} failed: {e}. {have} bytes are kept in {part}; "
                                    "run the same command again to resume") from None
            time.sleep(retry_wait * attempt)
    digest = sha256sum(part)
    if expected is not None and digest != expected:
        part.unlink()
        raise DownloadError(f"SHA-256 mismatch for {info.filename}: expected {expected}, got {digest}; the "
                            f"download was deleted (corrupted transfer or wrong file at {source})")
    os.replace(part, dest)
    with atomic_open(folder / (info.filename + ".sha256"), "w") as f:
        f.write(f"{digest}  {info.filename}\n")
    return dest


def known_names() -> list[str]:
    """Model names with an official checkpoint (all registry models)."""
    return [n for n in available_models() if n in CHECKPOINTS]
