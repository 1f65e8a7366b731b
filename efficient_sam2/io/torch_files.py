"""Reading files written by `torch.save`: data only, and one plain sentence when a file is not what it should be.

Every checkpoint, shortcut and training-state file of the package is read here. Files are loaded with
``weights_only=True`` (tensors, dicts, lists, numbers, strings): a file that stores other Python objects is refused,
because unpickling them can run code. Errors never pass on torch's own advice to load such files unsafely.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

__all__ = ["TorchFileError", "read_torch_file"]

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
_PICKLE_MAGIC = b"\x80"  # the legacy format: a pickle stream (protocol 2 or later)


class TorchFileError(ValueError):
    """A file that cannot be read as a PyTorch file of plain data.

    `path` is the file and `reason` the clause that says why ("it is not a PyTorch checkpoint ..."); the message is
    ``"could not read <what> <path>: <reason>"``.
    """

    def __init__(self, path: str, what: str, reason: str) -> None:
        super().__init__(f"could not read {what} {path}: {reason}")
        self.path = path
        self.reason = reason


def read_torch_file(path: str | os.PathLike, what: str = "checkpoint", map_location: Any = "cpu") -> Any:
    """`torch.load(path, map_location, weights_only=True)` with errors that say what is wrong with the file.

    Raises FileNotFoundError for a missing path and `TorchFileError` for a folder, an empty file, a file that is not
    a PyTorch file at all (random bytes, text), a truncated or damaged one, and one that stores Python objects.
    """
    import torch

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    if os.path.isdir(path):
        raise TorchFileError(path, what, "it is a folder, not a file")
    size = os.path.getsize(path)
    if size == 0:
        raise TorchFileError(path, what, f"it is an empty file (0 bytes), not a PyTorch {what}")
    with open(path, "rb") as f:
        head = f.read(len(_ZIP_MAGIC))
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_MAGIC)):
        raise TorchFileError(path, what, f"it is not a PyTorch {what} (its first bytes are not those of a file "
                                         "written by torch.save)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise TorchFileError(path, what, f"it stores Python objects other than tensors ({found.group(1)}), which "
                                             "are not loaded for safety; save the tensors alone (a state_dict)") from exc
        raise TorchFileError(path, what, f"it is not a PyTorch {what} (its contents do not unpickle as tensors and "
                                         "plain data)") from exc
    except (EOFError, RuntimeError, OSError) as exc:  # the header was readable: the rest is cut off or damaged
        raise TorchFileError(path, what, f"it is a truncated or damaged PyTorch file ({size} bytes); download or "
                                         "copy it again") from exc
    except Exception as exc:
        raise TorchFileError(path, what, f"it cannot be read as a PyTorch file ({type(exc).__name__}: "
                                         f"{_first_clause(exc)})") from exc


def _first_clause(exc: BaseException) -> str:
    """The first line of an exception's text, without any advice about unsafe loading."""
    line = (str(exc).strip().splitlines() or [""])[0]
    if "weights_only" in line:
        return "unreadable contents"
    return line[:200]
