"""Group commit of ``POST /orders``: the orders that arrive together share one transaction.

A request validates its order on the event loop and queues it; one writer thread per process
takes everything queued (up to :data:`MAX_BATCH`) and writes it in one transaction of a few
statements, however many orders it holds:

1. one ``SELECT``: are the callers' API keys still active (a key revoked in any process never
   writes, as in :func:`suangu.api.idempotency.run_write`), and the records of the batch's
   ``Idempotency-Key``s: a recorded request is replayed, the same key with another request
   is the key's 409;
2. the new orders: one multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING id``; an id
   that exists (a retry, another buyer's id, or twice in the batch) goes the slow way of
   :meth:`suangu.store.repositories.Orders.submit` (read and compare) for that order only;
3. the records of the keyed orders written (one multi-row ``INSERT``).

Each request then gets its own answer, exactly as :func:`run_write` would have given it
(201 and the order, a replay, a 401, a 409 naming the field). A queued request whose
``Idempotency-Key`` is already in the batch waits for the next batch (it is then replayed).
A concurrent writer of the same key in another process makes the record insert fail: the
batch's transaction is rolled back and run again, and finds the record. Any other failure of
the batch's transaction is not the others' fault: each order of it is then written on its own
with :func:`run_write`, so one bad order fails alone.

Under a light load a batch holds one order and costs what one request did; under a heavy
load the per-order cost of the database (round trips, ``COMMIT`` and its WAL flush) and of
the thread hand-offs is shared by the batch. Expired idempotency records are purged (see
:mod:`suangu.api.idempotency`) in a thread of its own, after the batch was answered. The
writer thread stops after :data:`IDLE_S` seconds without orders and starts again with the
next one.
``SUANGU_ORDER_BATCH=0`` turns group commit off (each order in its own transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from fastapi.encoders import jsonable_encoder
from sqlalchemy import Table, and_, select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from suangu.api.audit import record_write
from suangu.api.auth import Principal
from suangu.api.context import ApiContext
from suangu.api.idempotency import check_key, key_conflict, key_revoked, purger, run_write
from suangu.api.services import order_out
from suangu.core.errors import SuanguError
from suangu.core.types import Order
from suangu.store.errors import Unauthorized
from suangu.store.models import ApiKeyRow, IdempotencyRow, OrderRow, OrderStatus
from suangu.store.repositories import OrderRecord, Orders, insert_new, order_values

#: Most orders one transaction writes.
MAX_BATCH = 64
#: Seconds the writer thread waits for work before it stops.
IDLE_S = 1.0
#: ``0`` / ``false`` / ``no`` turns group commit off.
BATCH_ENV = "SUANGU_ORDER_BATCH"

_KEYS = cast(Table, ApiKeyRow.__table__)
_IDEM = cast(Table, IdempotencyRow.__table__)
_ORDERS = cast(Table, OrderRow.__table__)
_INSERT_ORDERS = insert_new(_ORDERS)


def enabled(env: dict[str, str] | None = None) -> bool:
    value = (os.environ if env is None else env).get(BATCH_ENV, "1")
    return value.strip().lower() not in ("0", "false", "no")


#: What a request gets back: ``(status, body, replayed)``, or the error to raise.
Outcome = tuple[int, Any, bool] | BaseException


@dataclass(eq=False)
class _Item:
    who: Principal
    key: str | None
    digest: str
    order: Order
    now: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[tuple[int, Any, bool]]
    #: Maps the store's error fields to the request's (``id`` -> ``body.id``).
    rename: dict[str, str] = field(default_factory=dict)
    #: The request's context (its id and route, for the audit trail).
    context: contextvars.Context = field(default_factory=contextvars.copy_context)

    def done(self, outcome: Outcome) -> None:
        # A loop that closed meanwhile has no one waiting on it.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, self.future, outcome)


def _settle(future: asyncio.Future[tuple[int, Any, bool]], outcome: Outcome) -> None:
    if future.done():  # the request went away (cancelled)
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _renamed(err: SuanguError, names: dict[str, str]) -> SuanguError:
    if err.field in names:
        return type(err)(err.message, field=names[err.field], fix=err.fix)
    return err


class OrderBatcher:
    """The queue and writer thread of one app (see the module docs)."""

    def __init__(self, ctx: ApiContext, max_batch: int = MAX_BATCH) -> None:
        self.ctx = ctx
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = False
        #: Orders and transactions written (for tests and curiosity).
        self.orders = 0
        self.batches = 0

    async def submit(
        self,
        who: Principal,
        key: str | None,
        digest: str,
        order: Order,
        now: int,
        rename: dict[str, str],
    ) -> tuple[int, Any, bool]:
        """Queue one order; its ``(status, body, replayed)`` once its batch committed."""
        key = check_key(key)
        loop = asyncio.get_running_loop()
        item = _Item(who, key, digest, order, now, loop, loop.create_future(), rename)
        self._queue.put(item)
        with self._lock:
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="suangu-orders", daemon=True).start()
        return await item.future

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        pending: list[_Item] = []
        while True:
            if not pending:
                try:
                    pending.append(self._queue.get(timeout=IDLE_S))
                except queue.Empty:
                    with self._lock:
                        if self._queue.empty():
                            self._running = False
                            return
                    continue
            while len(pending) < self.max_batch:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            batch, pending = self._split(pending)
            try:
                self._write(batch)
            except BaseException as err:  # pragma: no cover - a bug: fail these, go on
                for item in batch:
                    item.done(err)

    @staticmethod
    def _split(items: list[_Item]) -> tuple[list[_Item], list[_Item]]:
        """The batch (one item per member and key) and what waits for the next one."""
        batch: list[_Item] = []
        later: list[_Item] = []
        keys: set[tuple[str, str]] = set()
        for item in items:
            if item.key is not None:
                pair = (item.who.member_id, item.key)
                if pair in keys:
                    later.append(item)
                    continue
                keys.add(pair)
            batch.append(item)
        return batch, later

    def _write(self, batch: list[_Item]) -> None:
        ctx = self.ctx
        try:
            outcomes = ctx.db.transaction(lambda s: _work(s, batch), retry_integrity=True)
        except Exception:
            # Not the batch's fault as a whole: each order on its own, failing alone.
            for item in batch:
                item.done(self._alone(item))
            return
        self.batches += 1
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if isinstance(outcome, SuanguError):
                    outcome = _renamed(outcome, item.rename)
                    if isinstance(outcome, Unauthorized):
                        ctx.keys.forget(item.who.key_id)
            else:
                self.orders += 0 if outcome[2] else 1
            item.done(outcome)
        now = ctx.now()
        if any(i.key is not None for i in batch) and purger(ctx.db).due(now):
            # In a thread of its own: the next batch does not wait for the purge.
            threading.Thread(target=_purge, args=(ctx, now), daemon=True).start()

    def _alone(self, item: _Item) -> Outcome:
        try:
            resp = item.context.run(
                run_write,
                self.ctx,
                item.who,
                item.key,
                item.digest,
                _one(item),
                rename=item.rename,
            )
        except Exception as err:
            return err
        replayed = resp.headers.get("Idempotent-Replayed") == "true"
        return resp.status_code, json.loads(bytes(resp.body)), replayed


def _purge(ctx: ApiContext, now: int) -> None:
    with contextlib.suppress(Exception):  # upkeep never fails a write
        purger(ctx.db).maybe_purge(ctx.db, now)


def _one(item: _Item) -> Callable[[Session], tuple[int, Any]]:
    def fn(s: Session) -> tuple[int, Any]:
        return 201, order_out(Orders(s).submit(item.order, item.now, buyer_checked=True))

    return fn


def _work(s: Session, batch: list[_Item]) -> list[Outcome]:
    """The batch's transaction; one outcome per item (errors of single orders included)."""
    conn = s.connection()
    active, records = _guard(conn, batch)
    outcomes: list[Outcome | None] = [None] * len(batch)
    new: list[int] = []
    for n, item in enumerate(batch):
        if item.who.key_id not in active:
            outcomes[n] = key_revoked()
        elif item.key is not None and (item.who.member_id, item.key) in records:
            digest, status, body = records[(item.who.member_id, item.key)]
            outcomes[n] = (status, body, True) if digest == item.digest else key_conflict()
        else:
            new.append(n)
    if new:
        values = [order_values(batch[n].order, batch[n].now) for n in new]
        added = {r[0] for r in conn.execute(_INSERT_ORDERS[conn.dialect.name], values)}
        orders = Orders(s)
        for n in new:
            item = batch[n]
            if item.order.id in added:
                added.discard(item.order.id)  # the first of the batch with this id
                out = _new_order_out(item)
                outcomes[n] = (201, out, False)
                record_write(s, item.who, 201, out, item.digest, item.now, item.context)
                continue
            try:  # the id exists: read and compare (a retry, or a conflict)
                record = orders.submit(item.order, item.now, buyer_checked=True)
                out = jsonable_encoder(order_out(record))
                outcomes[n] = (201, out, False)
                record_write(s, item.who, 201, out, item.digest, item.now, item.context)
            except SuanguError as err:
                outcomes[n] = _late_record(conn, item) or err
    rows = [
        {
            "member_id": item.who.member_id,
            "key": item.key,
            "request_hash": item.digest,
            "status": out[0],
            "body": out[1],
            "created_at": item.now,
        }
        for item, out in zip(batch, outcomes, strict=True)
        if item.key is not None and isinstance(out, tuple) and not out[2]
    ]
    if rows:
        conn.execute(_IDEM.insert(), rows)
    return [cast(Outcome, out) for out in outcomes]


def _new_order_out(item: _Item) -> dict[str, Any]:
    body: dict[str, Any] = jsonable_encoder(
        order_out(OrderRecord(item.order, OrderStatus.OPEN, item.now))
    )
    return body


def _guard(
    conn: Connection, batch: list[_Item]
) -> tuple[set[str], dict[tuple[str, str], tuple[str, int, Any]]]:
    """One statement: the batch's API keys that are active, and the records of its
    ``Idempotency-Key``s (``(member, key) -> (request hash, status, body)``)."""
    key_ids = sorted({i.who.key_id for i in batch})
    pairs = sorted({(i.who.member_id, i.key) for i in batch if i.key is not None})
    cols = [_KEYS.c.id, _KEYS.c.revoked_at, _KEYS.c.member_id]
    if not pairs:
        q = select(*cols).where(_KEYS.c.id.in_(key_ids))
        return {kid for kid, revoked, _ in conn.execute(q) if revoked is None}, {}
    q = (
        select(*cols, _IDEM.c.key, _IDEM.c.request_hash, _IDEM.c.status, _IDEM.c.body)
        .select_from(
            _KEYS.outerjoin(
                _IDEM,
                and_(
                    _IDEM.c.member_id == _KEYS.c.member_id,
                    tuple_(_IDEM.c.member_id, _IDEM.c.key).in_(pairs),
                ),
            )
        )
        .where(_KEYS.c.id.in_(key_ids))
    )
    active: set[str] = set()
    records: dict[tuple[str, str], tuple[str, int, Any]] = {}
    for kid, revoked, member, key, digest, status, body in conn.execute(q):
        if revoked is None:
            active.add(kid)
        if key is not None:
            records[(member, key)] = (digest, status, body)
    return active, records


def _records(
    conn: Connection, pairs: list[tuple[str, str | None]]
) -> dict[tuple[str, str], tuple[str, int, Any]]:
    q = select(
        _IDEM.c.member_id, _IDEM.c.key, _IDEM.c.request_hash, _IDEM.c.status, _IDEM.c.body
    ).where(tuple_(_IDEM.c.member_id, _IDEM.c.key).in_(pairs))
    return {(m, k): (h, st, b) for m, k, h, st, b in conn.execute(q)}


def _late_record(conn: Connection, item: _Item) -> Outcome | None:
    """A record of the item's key committed by another process since the batch began: its
    answer (or the key's 409) beats the order's own error, as in ``run_write``."""
    if item.key is None:
        return None
    found = _records(conn, [(item.who.member_id, item.key)]).get((item.who.member_id, item.key))
    if found is None:
        return None
    digest, status, body = found
    return (status, body, True) if digest == item.digest else key_conflict()


_BATCHERS_LOCK = threading.Lock()


def batcher(app_state: Any, ctx: ApiContext) -> OrderBatcher:
    """The app's batcher (created on first use)."""
    found: OrderBatcher | None = getattr(app_state, "order_batcher", None)
    if found is None:
        with _BATCHERS_LOCK:
            found = getattr(app_state, "order_batcher", None)
            if found is None:
                found = OrderBatcher(ctx)
                app_state.order_batcher = found
    return found
