"""Errors the sync server answers with: a stable code, a message, an HTTP status."""

from __future__ import annotations

from typing import Any

from pharmacy.errors import PharmosError


class SyncError(PharmosError):
    """A refused request. ``status`` is the HTTP status; nothing was written."""

    code = "SYNC_ERROR"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 **details: Any) -> None:
        super().__init__(message, code=code, **details)
        if status is not None:
            self.status = status


class BadRequest(SyncError):
    code = "BAD_REQUEST"
    status = 400


class Unauthorized(SyncError):
    code = "BAD_TOKEN"
    status = 401


class Forbidden(SyncError):
    code = "SCOPE_VIOLATION"
    status = 403


class NotFoundError(SyncError):
    code = "NOT_FOUND"
    status = 404


class Conflict(SyncError):
    code = "CONFLICT"
    status = 409

