"""What a server is allowed to do: one frozen dataclass, filled from the command line or by a script."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class ServeSettings:
    """Settings of one server.

    token: the secret every `/api` route but `/api/health` asks for (None: no token, loopback only).
    max_upload_mb: largest accepted upload (413 above it); a zip of frames may unpack to 4x this.
    max_sessions: videos open side by side; opening one more evicts the least recently used idle one.
    efficient_default: the page's Dense / Efficient-SAM2 toggle starts on Efficient-SAM2.
    initial_video: a video named on the command line, opened at start (the page shows it).
    automask_max: at most this many automatic masks are offered by "Find objects".
    """

    token: str | None = None
    max_upload_mb: float = 500.0
    max_sessions: int = 8
    efficient_default: bool = True
    initial_video: str | None = None
    automask_max: int = 16

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0:
            raise ValueError(f"max_upload_mb must be > 0, got {self.max_upload_mb}")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {self.max_sessions}")
        if self.token is not None and len(self.token) < 1:
            raise ValueError("the token must not be empty (use token=None for no token)")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
