"""``Idempotency-Key`` on every write.

A write with a key runs in one transaction with the record of its response: the same member,
key and request (method, path and canonical body) later gets the first response again
(``Idempotent-Replayed: true``); the same key with another request is a 409 problem naming
the header. Failed writes are not recorded (they changed nothing), so a retry runs again.

The keys are kept in :class:`suangu.store.models.IdempotencyRow`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from suangu.api.auth import Principal
from suangu.api.context import ApiContext
from suangu.api.errors import IdempotencyConflict
from suangu.core.errors import SuanguError, ValidationError
from suangu.store.models import MAX_IDEMPOTENCY_KEY as MAX_KEY
from suangu.store.models import IdempotencyRow

HEADER = "Idempotency-Key"
FIELD = f"header.{HEADER}"


def fingerprint(method: str, path: str, body: Any) -> str:
    """sha256 of the request as the API understood it (canonical JSON of the parsed body)."""
    text = json.dumps(
        [method.upper(), path, jsonable_encoder(body)], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY or not key.isprintable() or key != key.strip():
        raise ValidationError(
            f"must be 1 to {MAX_KEY} printable characters without surrounding spaces",
            field=FIELD,
            fix="use a fresh UUID per logical write",
        )
    return key


def _respond(status: int, body: Any, replayed: bool) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(body, status_code=status, headers=headers)


def _lookup(s: Session, who: Principal, key: str, digest: str) -> IdempotencyRow | None:
    row = s.get(IdempotencyRow, (who.member_id, key), populate_existing=True)
    if row is not None and row.request_hash != digest:
        raise IdempotencyConflict(
            "this Idempotency-Key was used with another request",
            field=FIELD,
            fix="use a new key for a new request; resend the first request exactly to retry",
        )
    return row


def replayed(ctx: ApiContext, who: Principal, key: str | None, digest: str) -> JSONResponse | None:
    """The recorded response of an earlier identical write, if any (409 if it differed)."""
    key = check_key(key)
    if key is None:
        return None
    with ctx.db.session_scope(write=False) as s:
        row = _lookup(s, who, key, digest)
        return None if row is None else _respond(row.status, row.body, True)


def run_write(
    ctx: ApiContext,
    who: Principal,
    key: str | None,
    digest: str,
    fn: Callable[[Session], tuple[int, Any]],
    *,
    rename: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Run ``fn(session) -> (status, body)`` in one transaction, recorded under ``key``.

    ``rename`` maps the field names of the store's errors to the request's (``id`` ->
    ``body.id``), so that a problem names what the client sent.
    """
    key = check_key(key)
    names = dict(rename or {})

    def call(s: Session) -> tuple[int, Any]:
        try:
            return fn(s)
        except SuanguError as err:
            if err.field in names:
                raise type(err)(err.message, field=names[err.field], fix=err.fix) from None
            raise

    def work(s: Session) -> tuple[int, Any, bool]:
        if key is not None:
            row = _lookup(s, who, key, digest)
            if row is not None:
                return row.status, row.body, True
        status, body = call(s)
        encoded = jsonable_encoder(body)
        if key is not None:
            s.add(
                IdempotencyRow(
                    member_id=who.member_id,
                    key=key,
                    request_hash=digest,
                    status=status,
                    body=encoded,
                    created_at=ctx.now(),
                )
            )
            s.flush()
        return status, encoded, False

    status, body, again = ctx.db.transaction(work, retry_integrity=True)
    return _respond(status, body, again)
