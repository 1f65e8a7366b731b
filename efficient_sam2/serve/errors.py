"""Errors the HTTP API turns into responses: each carries its status code and a message for the person."""

from __future__ import annotations


class ServeError(Exception):
    """An error answered as `{"error": message}` with `status`."""

    status = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(ServeError):
    status = 400


class Unauthorized(ServeError):
    status = 401


class NotFound(ServeError):
    status = 404


class Busy(ServeError):
    """Every session is busy and no idle one can be evicted."""

    status = 503


class TooLarge(ServeError):
    status = 413
