"""Settlement under concurrent transactions: an order whose last leases finish at the same
time in two transactions is settled exactly once, and the sweeper settles any order left
with all its leases final."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from suangu.api.services import settle_if_done, settle_stuck_orders, stuck_orders
from suangu.store.models import LeaseRow, LeaseState
from suangu.store.repositories import Clearings, Lease

from .conftest import Api, build_world


def _leases(api: Api, order_id: str) -> list[Lease]:
    with api.db.session_scope(write=False) as s:
        return Clearings(s).leases(clearing_id="clr-world", order_id=order_id)


def _pending(api: Api) -> int:
    ledger = api.client.app.state.ctx.ledger
    return sum(a.debits_pending for a in ledger.accounts() if a.id.startswith("buyer:"))


def test_the_last_leases_finishing_together_settle_the_order(api: Api) -> None:
    if api.backend != "postgresql":
        pytest.skip("SQLite has one writer at a time: the race needs PostgreSQL")
    build_world(api)
    leases = _leases(api, "ord-buy-a")
    assert len(leases) >= 2, leases
    ledger = api.client.app.state.ctx.ledger
    now = api.clock.now()
    # Every lease but the last two finishes first, alone.
    for x in leases[:-2]:
        api.db.transaction(lambda s, x=x: Clearings(s).move_lease(x.id, LeaseState.FAILED))
    barrier = threading.Barrier(2, timeout=20)
    settled: list[bool] = []
    errors: list[BaseException] = []

    def finish(x: Lease, to: LeaseState) -> None:
        calls = 0

        def work(s: Session) -> bool:
            nonlocal calls
            calls += 1
            current = Clearings(s).move_lease(x.id, LeaseState.RUNNING)
            current = Clearings(s).move_lease(x.id, to)
            if calls == 1:
                barrier.wait()  # both leases have moved, neither transaction committed
            return settle_if_done(s, ledger, current, 300, now)

        try:
            settled.append(api.db.transaction(work))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [
        threading.Thread(target=finish, args=(leases[-2], LeaseState.COMPLETED)),
        threading.Thread(target=finish, args=(leases[-1], LeaseState.FAILED)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(settled) == [False, True]
    assert {x.state for x in _leases(api, "ord-buy-a")} == {LeaseState.SETTLED}
    ledger.check_invariants()


def test_the_sweeper_settles_orders_left_with_all_leases_final(api: Api) -> None:
    build_world(api)
    pending = _pending(api)
    assert pending > 0
    leases = _leases(api, "ord-buy-b")
    # A crash (or any path) left every lease of the order final without settling it.
    with api.db.session_scope() as s:
        s.execute(
            update(LeaseRow)
            .where(LeaseRow.id.in_([x.id for x in leases]))
            .values(state=str(LeaseState.FAILED))
        )
    with api.db.session_scope(write=False) as s:
        assert stuck_orders(s) == [("clr-world", "ord-buy-b")]
    ledger = api.client.app.state.ctx.ledger
    assert settle_stuck_orders(api.db, ledger, 300, api.clock.now()) == 1
    assert {x.state for x in _leases(api, "ord-buy-b")} == {LeaseState.SETTLED}
    # Nothing was delivered: the whole hold of ord-buy-b is released, ord-buy-a's stays.
    assert 0 < _pending(api) < pending
    with api.db.session_scope(write=False) as s:
        assert stuck_orders(s) == []
    assert settle_stuck_orders(api.db, ledger, 300, api.clock.now()) == 0
    ledger.check_invariants()


def test_the_clearing_loop_sweeps(api: Api) -> None:
    from suangu.api.scheduler import ClearingLoop

    build_world(api)
    leases = _leases(api, "ord-buy-b")
    with api.db.session_scope() as s:
        s.execute(
            update(LeaseRow)
            .where(LeaseRow.id.in_([x.id for x in leases]))
            .values(state=str(LeaseState.FAILED))
        )
    ctx = api.client.app.state.ctx
    loop = ClearingLoop(api.db, ctx.ledger, api.clock, ctx.settings)
    report = loop.tick()
    assert report.settled >= 1
    assert {x.state for x in _leases(api, "ord-buy-b")} == {LeaseState.SETTLED}
