"""``Idempotency-Key`` on every write.

A write runs in one transaction with the record of its response. Its first statement checks
that the caller's API key is still active (a key revoked in another worker process never
writes; see :mod:`suangu.api.auth`) and, in the same round trip, looks up the
``Idempotency-Key``: the same member, key and request (method, path and canonical body)
gets the first response again (``Idempotent-Replayed: true``); the same key with another
request is a 409 problem naming the header. Failed writes are not recorded (they changed
nothing), so a retry runs again.

Concurrent first uses of one key race on the primary key of
:class:`suangu.store.models.IdempotencyRow` (member, key): the loser's insert fails (on
PostgreSQL it waits for the winner's commit), its transaction is rolled back and run again,
and finds the winner's record. So one key writes once, whatever the number of retries.

Records are kept :data:`RETENTION_S` seconds (24 hours) of the app's clock; a key reused
after that runs the write again (object ids, such as an order's, still make the write itself
idempotent). Writes purge expired records as they go: at most once every :data:`PURGE_EVERY_S`
seconds per process, up to :data:`PURGE_BATCH` records, in a transaction of their own after
the write committed (:func:`purge_expired`).
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, cast

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Row, Table, and_, bindparam, insert, select
from sqlalchemy.orm import Session

from suangu.api.audit import record_write, remember_request
from suangu.api.auth import Principal
from suangu.api.context import ApiContext
from suangu.api.errors import PROBLEM_JSON, IdempotencyConflict, problem
from suangu.core.errors import SuanguError, ValidationError
from suangu.store.db import Database
from suangu.store.errors import Unauthorized
from suangu.store.models import MAX_IDEMPOTENCY_KEY as MAX_KEY
from suangu.store.models import ApiKeyRow, IdempotencyRow
from suangu.store.repositories import IdempotencyRecords

HEADER = "Idempotency-Key"
FIELD = f"header.{HEADER}"
#: How long a write's response is kept for replays, seconds.
RETENTION_S = 24 * 3600
#: Least time between two purges of expired records by one process, seconds.
PURGE_EVERY_S = 60
#: Most records one purge deletes (a purge that deletes this many runs again on the next
#: write, not a minute later).
PURGE_BATCH = 5_000

_KEYS = cast(Table, ApiKeyRow.__table__)
_IDEM = cast(Table, IdempotencyRow.__table__)
# Built once (executed with parameters): the guard of a write without and with a key, the
# record of a response.
_GUARD = select(_KEYS.c.revoked_at).where(_KEYS.c.id == bindparam("key_id"))
_GUARD_KEY = (
    select(_KEYS.c.revoked_at, _IDEM.c.request_hash, _IDEM.c.status, _IDEM.c.body)
    .select_from(
        _KEYS.outerjoin(
            _IDEM,
            and_(_IDEM.c.member_id == bindparam("member_id"), _IDEM.c.key == bindparam("key")),
        )
    )
    .where(_KEYS.c.id == bindparam("key_id"))
)
_RECORD = insert(_IDEM)


def fingerprint(method: str, path: str, body: Any) -> str:
    """sha256 of the request as the API understood it (canonical JSON of the parsed body)."""
    if isinstance(body, BaseModel):  # what jsonable_encoder gives, without its slow walk
        data = body.model_dump(mode="json", by_alias=True)
    else:
        data = jsonable_encoder(body)
    remember_request(data)  # for the write's audit entry
    text = json.dumps([method.upper(), path, data], sort_keys=True, separators=(",", ":"))
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


def respond(status: int, body: Any, replayed: bool) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    media = PROBLEM_JSON if status >= 400 else None
    return JSONResponse(body, status_code=status, headers=headers, media_type=media)


def secret_issued(what: str, fix: str) -> Callable[[int, Any], tuple[int, Any]]:
    """What to record for a write whose response holds a secret (an API key's token): never
    the response itself, but a 409 problem that a replay answers with, naming the object
    that the first request created (``what`` and the response's ``id``) and how to go on
    (``fix``, where ``{id}`` stands for the object's id)."""

    def record(_status: int, body: Any) -> tuple[int, Any]:
        object_id = str(body.get("id", "")) if isinstance(body, dict) else ""
        detail = (
            f"this Idempotency-Key already created {what} {object_id!r}; its secret was in "
            "the first response only and is not kept, so it cannot be shown again"
        )
        body = problem(
            409,
            "Conflict",
            detail,
            code="secret_not_replayable",
            field=FIELD,
            fix=fix.replace("{id}", object_id),
        ).body
        return 409, json.loads(body)

    return record


def key_conflict() -> IdempotencyConflict:
    return IdempotencyConflict(
        "this Idempotency-Key was used with another request",
        field=FIELD,
        fix="use a new key for a new request; resend the first request exactly to retry",
    )


def key_revoked() -> Unauthorized:
    return Unauthorized(
        "unknown or revoked API key", field="header.Authorization", fix="create a new key"
    )


def _guard(s: Session, who: Principal, key: str | None, digest: str) -> Row[Any] | None:
    """One statement: the caller's key must still be active; the record of ``key``, if any
    (:class:`IdempotencyConflict` if it was another request)."""
    conn = s.connection()
    if key is None:
        row = conn.execute(_GUARD, {"key_id": who.key_id}).first()
    else:
        params = {"key_id": who.key_id, "member_id": who.member_id, "key": key}
        row = conn.execute(_GUARD_KEY, params).first()
    if row is None or row.revoked_at is not None:
        raise key_revoked()
    if key is None or row.request_hash is None:
        return None
    if row.request_hash != digest:
        raise key_conflict()
    return row


def replayed(ctx: ApiContext, who: Principal, key: str | None, digest: str) -> JSONResponse | None:
    """The recorded response of an earlier identical write, if any (409 if it differed)."""
    key = check_key(key)
    if key is None:
        return None
    s: Session
    with ctx.db.session_scope(write=False) as s:
        row = s.execute(
            select(_IDEM.c.request_hash, _IDEM.c.status, _IDEM.c.body).where(
                _IDEM.c.member_id == who.member_id, _IDEM.c.key == key
            )
        ).first()
    if row is None:
        return None
    if row.request_hash != digest:
        raise key_conflict()
    return respond(row.status, row.body, True)


def run_write(
    ctx: ApiContext,
    who: Principal,
    key: str | None,
    digest: str,
    fn: Callable[[Session], tuple[int, Any]],
    *,
    rename: Mapping[str, str] | None = None,
    record: Callable[[int, Any], tuple[int, Any]] | None = None,
) -> JSONResponse:
    """Run ``fn(session) -> (status, body)`` in one transaction, recorded under ``key``.

    ``rename`` maps the field names of the store's errors to the request's (``id`` ->
    ``body.id``), so that a problem names what the client sent. A revoked key is a 401 (and
    is dropped from this process's key cache). ``record(status, body)``: what to
    keep for replays instead of the response (:func:`secret_issued` for a response that
    holds a secret: a replay gets a 409 problem instead of the secret).
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
        row = _guard(s, who, key, digest)
        if row is not None:
            return row.status, row.body, True
        try:
            status, body = call(s)
        except SuanguError:
            # A concurrent first use of the key may have committed meanwhile (PostgreSQL: this
            # statement sees it): its answer, or the key's 409, beats the write's own error.
            row = None if key is None else _guard(s, who, key, digest)
            if row is None:
                raise
            return row.status, row.body, True
        encoded = jsonable_encoder(body)
        record_write(s, who, status, encoded, digest, ctx.now())  # the audit trail
        if key is not None:
            kept_status, kept = (status, encoded) if record is None else record(status, encoded)
            s.connection().execute(
                _RECORD,
                {
                    "member_id": who.member_id,
                    "key": key,
                    "request_hash": digest,
                    "status": kept_status,
                    "body": jsonable_encoder(kept),
                    "created_at": ctx.now(),
                },
            )
        return status, encoded, False

    try:
        status, body, again = ctx.db.transaction(work, retry_integrity=True)
    except Unauthorized:
        ctx.keys.forget(who.key_id)
        raise
    if key is not None and not again:
        purger(ctx.db).maybe_purge(ctx.db, ctx.now())
    return respond(status, body, again)


# -- expiry ------------------------------------------------------------------------------------


def purge_expired(db: Database, now: int, *, limit: int = PURGE_BATCH) -> int:
    """Delete up to ``limit`` records older than :data:`RETENTION_S`; how many."""
    return db.transaction(lambda s: IdempotencyRecords(s).purge(now - RETENTION_S, limit))


class _Purger:
    """When this process last purged (per database), so that writes purge now and then."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0

    def due(self, now: int) -> bool:
        with self._lock:
            return now >= self._next

    def maybe_purge(self, db: Database, now: int) -> None:
        with self._lock:
            if now < self._next:
                return
            self._next = now + PURGE_EVERY_S
        done = purge_expired(db, now)
        if done >= PURGE_BATCH:  # more to do: let the next write go on
            with self._lock:
                self._next = now


_PURGERS: weakref.WeakKeyDictionary[Database, _Purger] = weakref.WeakKeyDictionary()
_PURGERS_LOCK = threading.Lock()


def purger(db: Database) -> _Purger:
    """The process's purger of expired records for ``db``."""
    with _PURGERS_LOCK:
        purger = _PURGERS.get(db)
        if purger is None:
            purger = _PURGERS[db] = _Purger()
        return purger
