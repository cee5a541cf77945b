"""Errors of the store: every one names the field at fault and how to fix it."""

from __future__ import annotations

from suangu.core.errors import SuanguError


class StoreError(SuanguError):
    """Base of the errors the store raises on purpose."""

    code = "store_error"


class NotFound(StoreError):
    """The object asked for does not exist."""

    code = "not_found"


class Conflict(StoreError):
    """The write clashes with what is stored (an id reused with other fields, a wrong state)."""

    code = "conflict"


class InvalidState(Conflict):
    """The object exists but is in a state that does not allow the operation."""

    code = "invalid_state"


class Unauthorized(StoreError):
    """An API key is unknown, malformed or revoked."""

    code = "unauthorized"


class RetryExhausted(StoreError):
    """A transaction kept failing on lock contention or a concurrent duplicate."""

    code = "retry_exhausted"
