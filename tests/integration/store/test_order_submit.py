"""``Orders.submit``: one ``INSERT ... ON CONFLICT DO NOTHING`` for a new order; the stored
order is read only when its id exists (same order: returned; other fields or another buyer's
id: a conflict); concurrent submissions of one order store it once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select

from suangu.core.types import Order
from suangu.store.db import Database
from suangu.store.errors import Conflict, InvalidState
from suangu.store.models import OrderRow, OrderStatus, Role
from suangu.store.repositories import Members, Orders

T0 = 1_700_000_000


def _order(order_id: str, buyer: str = "buy", gpus: int = 1) -> Order:
    return Order(order_id, buyer, "batch", gpus, 10, 20, 100, gpu_hours=1)


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if not sql.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            seen.append(sql)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


@pytest.fixture
def members(db: Database) -> Database:
    with db.session_scope() as s:
        Members(s).create("buy", "Buyer", Role.BUYER, T0)
        Members(s).create("buy2", "Buyer 2", Role.BUYER, T0)
        Members(s).create("prov", "Provider", Role.PROVIDER, T0)
    return db


def test_a_new_order_is_one_statement(members: Database) -> None:
    db = members
    with _statements(db) as seen, db.session_scope() as s:
        record = Orders(s).submit(_order("o1"), T0, buyer_checked=True)
    assert record.status is OrderStatus.OPEN and record.submitted_at == T0
    assert len(seen) == 1 and seen[0].lstrip().upper().startswith("INSERT"), seen
    with _statements(db) as seen, db.session_scope() as s:
        Orders(s).submit(_order("o2"), T0)  # unchecked: the buyer is read first
    assert len(seen) == 2, seen


def test_an_existing_id_is_compared(members: Database) -> None:
    db = members
    with db.session_scope() as s:
        Orders(s).submit(_order("o1"), T0)
    with db.session_scope() as s:
        again = Orders(s).submit(_order("o1"), T0 + 50, buyer_checked=True)
    assert again.submitted_at == T0  # the stored order
    with pytest.raises(Conflict, match="other fields"), db.session_scope() as s:
        Orders(s).submit(_order("o1", gpus=2), T0, buyer_checked=True)
    with pytest.raises(Conflict, match="taken") as err, db.session_scope() as s:
        Orders(s).submit(_order("o1", buyer="buy2"), T0, buyer_checked=True)
    assert "buy" not in err.value.message.replace("buy2", "")  # whose it is stays sealed
    with pytest.raises(InvalidState), db.session_scope() as s:
        Orders(s).submit(_order("o3", buyer="prov"), T0)  # unchecked: the role is checked
    with db.session_scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(OrderRow)) == 1


def test_concurrent_submissions_store_one(members: Database) -> None:
    db = members
    results: list[int] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            r = db.transaction(lambda s: Orders(s).submit(_order("race"), T0, buyer_checked=True))
            results.append(r.submitted_at)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [T0] * 8
    with db.session_scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(OrderRow)) == 1
