"""One check of a device argument, used wherever a user names a device (builders, commands, benchmark, trainers).

    device = resolve_device("cuda:1")     # torch.device("cuda", 1), or a readable error

A string that is no device raises ValueError; a device this machine does not have (no CUDA, no MPS, a GPU index
past the last one) raises RuntimeError, each naming the device as it was given.
"""

from __future__ import annotations

from typing import Collection

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device, allowed: Collection[str] | None = None) -> torch.device:
    """The torch.device named by `device` ("cpu", "cuda", "cuda:1", "mps", or a torch.device), checked against
    this machine. `allowed`: the device types the caller supports (e.g. ("cpu", "cuda")); None accepts any."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"invalid device {device!r}: expected e.g. 'cpu', 'cuda', 'cuda:1' or 'mps'") from None
    if allowed is not None and dev.type not in allowed:
        raise ValueError(f"device {device!r} is not supported here: use {' or '.join(allowed)}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} was asked for, but CUDA is not available on this machine; "
                               "use 'cpu'")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise RuntimeError(f"device {device!r} does not exist: this machine has {count} CUDA device(s)")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise RuntimeError(f"device {device!r} was asked for, but MPS is not available on this machine; use 'cpu'")
    return dev
