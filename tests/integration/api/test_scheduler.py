"""The clearing loop on a ManualClock: one clearing per interval, one leader at a time, the
leases' lifecycle on the clock, and exact settlement through the ledger."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from suangu.api.app import create_app
from suangu.api.clock import ManualClock
from suangu.api.scheduler import ClearingLoop, TickReport, leadership
from suangu.api.settings import ApiSettings
from suangu.core import billing
from suangu.core.types import Allocation
from suangu.store.db import Database, make_engine
from suangu.store.models import ClearingRow
from suangu.store.repositories import Orders

from .conftest import EPOCH, NOW_SLOT, PG_ENV, Api, _pg_engine, build_world, order

HOUR = 3600
GRACE = 900


def loop_of(api: Api) -> ClearingLoop:
    loop: ClearingLoop = api.client.app.state.clearing_loop
    return loop


def auto_clearings(db: Database) -> list[str]:
    with db.session_scope(write=False) as s:
        ids = s.scalars(select(ClearingRow.id).where(ClearingRow.id.like("clr-auto-%")))
        return sorted(ids)


def leases(api: Api, who: str = "op") -> list[dict[str, Any]]:
    r = api.call("GET", "/leases?limit=500", who)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_one_clearing_per_interval(api: Api) -> None:
    build_world(api)
    loop = loop_of(api)
    start = EPOCH + NOW_SLOT * HOUR
    first = loop.tick()  # the current interval is due at once
    assert first.clearing_id == f"clr-auto-{start}" and first.led
    assert loop.tick().clearing_id is None  # not due again within the interval
    api.clock.advance(HOUR // 2)
    assert loop.tick().clearing_id is None
    api.clock.advance(HOUR // 2)
    assert loop.tick().clearing_id == f"clr-auto-{start + HOUR}"
    assert loop.tick().clearing_id is None
    api.clock.advance(3 * HOUR)  # missed intervals are not cleared after the fact
    assert loop.tick().clearing_id == f"clr-auto-{start + 4 * HOUR}"
    assert auto_clearings(api.db) == [f"clr-auto-{start + k * HOUR}" for k in (0, 1, 4)]
    # A fresh loop (a restarted worker) finds the current interval cleared.
    again = ClearingLoop(api.db, loop.ledger, api.clock, loop.settings).tick()
    assert again.clearing_id is None and again.skipped == "exists"
    assert loop.next_due() == start + 5 * HOUR


def test_new_orders_clear_on_the_next_interval_and_hold_money(api: Api) -> None:
    build_world(api)
    loop = loop_of(api)
    loop.tick()
    with api.db.session_scope() as s:
        Orders(s).submit(order("late", "buy-a", gpus=1, hours=2), api.clock.now())
    assert api.call("GET", "/orders/late", "buy-a").json()["status"] == "open"
    api.clock.advance(HOUR)
    report = loop.tick()
    assert report.clearing_id is not None
    assert api.call("GET", "/orders/late", "buy-a").json()["status"] == "cleared"
    mine = [x for x in leases(api, "buy-a") if x["order_id"] == "late"]
    assert {x["clearing_id"] for x in mine} == {report.clearing_id}
    hold = api.client.app.state.ctx.ledger.lookup_transfer(mine[0]["hold_transfer_id"])
    assert hold.amount == sum(x["price_fen"] * x["gpus"] for x in mine)


def test_leases_run_complete_and_settle_on_the_clock(api: Api) -> None:
    build_world(api)
    loop = loop_of(api)
    api.call("PUT", "/fees", "op", json={"fee_bp": 250})
    before = leases(api)
    assert before and {x["state"] for x in before} == {"scheduled"}
    slots = sorted({x["slot"] for x in before})
    assert slots[0] == NOW_SLOT
    ctx = api.client.app.state.ctx
    buyer_before = {b: ctx.ledger.lookup_account(billing.buyer_account(b)) for b in ("buy-a",)}

    # T0 is in slot NOW_SLOT: its leases start now, the later ones stay scheduled.
    report = loop.tick()
    states = {x["id"]: x["state"] for x in leases(api)}
    for x in before:
        assert states[x["id"]] == ("running" if x["slot"] == NOW_SLOT else "scheduled")
    assert report.started == sum(1 for x in before if x["slot"] == NOW_SLOT)

    # The provider meters half of buy-a's leases; prov-b fails one of buy-b's.
    metered: dict[str, int] = {}
    for x in before:
        if x["buyer_id"] == "buy-a":
            gs = x["gpus"] * HOUR // 2 + 7  # an odd amount: rounding must still balance
            # A reading is sent once its interval has passed.
            api.clock.set(max(api.clock.now(), EPOCH + (x["slot"] + 1) * HOUR))
            r = api.call(
                "POST",
                f"/leases/{x['id']}/readings",
                x["provider_id"],
                json={
                    "id": "r1",
                    "interval_start": EPOCH + x["slot"] * HOUR,
                    "interval_end": EPOCH + (x["slot"] + 1) * HOUR,
                    "gpu_seconds": gs,
                    "energy_wh": 10,
                },
            )
            assert r.status_code == 201, r.text
            metered[x["id"]] = gs
    failing = next(x for x in before if x["buyer_id"] == "buy-b")
    r = api.call("POST", f"/leases/{failing['id']}/fail", failing["provider_id"])
    assert r.status_code == 200 and r.json()["state"] == "failed", r.text
    again = api.call("POST", f"/leases/{failing['id']}/fail", failing["provider_id"])
    assert again.status_code == 200 and again.json()["state"] == "failed"

    # Just before the last slot's end + grace nothing is settled; then everything is.
    last_end = EPOCH + (slots[-1] + 1) * HOUR
    api.clock.set(last_end + GRACE - 1)
    loop.tick()
    assert "settled" not in {x["state"] for x in leases(api)}
    api.clock.set(last_end + GRACE)
    loop.tick()
    after = {x["id"]: x for x in leases(api)}
    assert {x["state"] for x in after.values()} == {"settled"}
    r = api.call("POST", f"/leases/{failing['id']}/fail", failing["provider_id"])
    assert r.status_code == 409, r.text

    # Exact money: each buyer paid its metered cost, providers got it less 2.5%.
    def cost(x: dict[str, Any]) -> int:
        a = Allocation(
            x["order_id"], x["buyer_id"], x["pool_id"], x["slot"], x["gpus"], x["price_fen"]
        )
        return billing.metered_cost(a, metered.get(x["id"], 0), 1)

    paid: dict[str, int] = {}
    got: dict[str, int] = {}
    fees = 0
    for order_id in sorted({x["order_id"] for x in before}):
        mine = [x for x in before if x["order_id"] == order_id]
        per: dict[str, int] = {}
        for x in mine:
            per[x["provider_id"]] = per.get(x["provider_id"], 0) + cost(x)
        total = sum(per.values())
        paid[mine[0]["buyer_id"]] = paid.get(mine[0]["buyer_id"], 0) + total
        if total:
            _, fee = billing.fee_split(total, 250)
            fees += fee
        for p, c in per.items():
            got[p] = got.get(p, 0) + c
    assert paid["buy-b"] == 0  # never metered: the hold is voided in full
    a = ctx.ledger.lookup_account(billing.buyer_account("buy-a"))
    assert a.debits_pending == 0
    assert a.debits_posted - buyer_before["buy-a"].debits_posted == paid["buy-a"] > 0
    b = ctx.ledger.lookup_account(billing.buyer_account("buy-b"))
    assert b.debits_pending == 0 and b.debits_posted == 0
    fee_account = ctx.ledger.lookup_account(billing.exchange_fee_account())
    providers = sum(
        ctx.ledger.lookup_account(billing.provider_account(p)).balance for p in ("prov-a", "prov-b")
    )
    assert fee_account.balance == fees
    assert providers + fees == paid["buy-a"]
    ctx.ledger.check_invariants()


def test_only_providers_fail_their_own_leases(world: Api) -> None:
    lease = next(x for x in leases(world) if x["provider_id"] == "prov-b")
    assert world.call("POST", f"/leases/{lease['id']}/fail", "prov-a").status_code == 404
    assert world.call("POST", f"/leases/{lease['id']}/fail", "buy-b").status_code == 403


def _second_db(api: Api) -> Database:
    """Another engine (another worker's pool) on the same database and schema."""
    if api.backend == "sqlite":
        return Database(make_engine(api.db.engine.url.render_as_string(hide_password=False)))
    with api.db.engine.connect() as conn:
        schema = str(conn.execute(text("SELECT current_schema()")).scalar())
    return Database(_pg_engine(os.environ[PG_ENV], schema))


def test_two_workers_never_clear_at_the_same_time(api: Api) -> None:
    """Two apps (two workers' engines) on one database tick at the same instants: the
    advisory lock (PostgreSQL) lets one lead; every interval is cleared exactly once."""
    if api.backend == "sqlite":
        pytest.skip("SQLite serves from one process: the loops of a process share a lock")
    build_world(api)
    other_db = _second_db(api)
    try:
        settings = api.client.app.state.ctx.settings
        clock_b = ManualClock(api.clock.now())
        app_b = create_app(other_db, clock_b, settings)
        loops = [loop_of(api), app_b.state.clearing_loop]
        active = 0
        most = 0
        guard = threading.Lock()

        def slow(loop: ClearingLoop) -> None:
            real = loop._clear

            def wrapped(clearing_id: str, now: int) -> tuple[str | None, str | None]:
                nonlocal active, most
                with guard:
                    active += 1
                    most = max(most, active)
                try:
                    time.sleep(0.3)
                    return real(clearing_id, now)
                finally:
                    with guard:
                        active -= 1

            loop._clear = wrapped  # type: ignore[method-assign]

        for loop in loops:
            slow(loop)
        reports: list[list[TickReport]] = [[], []]
        for _ in range(3):
            barrier = threading.Barrier(2)

            def run(k: int, b: threading.Barrier = barrier) -> None:
                b.wait()
                reports[k].append(loops[k].tick())

            threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            api.clock.advance(HOUR)
            clock_b.advance(HOUR)
        assert most == 1
        led = [r.led for pair in zip(*reports, strict=True) for r in pair]
        assert led.count(False) >= 1  # the lock was contended and refused
        start = EPOCH + NOW_SLOT * HOUR
        assert auto_clearings(api.db) == [f"clr-auto-{start + k * HOUR}" for k in range(3)]
        TestClient(app_b)  # the second app serves too
    finally:
        other_db.dispose()


def test_the_lifespan_starts_and_stops_the_loop(api: Api) -> None:
    build_world(api)
    settings = ApiSettings(grid_epoch=EPOCH, horizon_slots=6, clearing_loop=True)
    app = create_app(api.db, api.clock, settings)
    loop: ClearingLoop = app.state.clearing_loop
    with TestClient(app):
        assert loop.running
        deadline = time.monotonic() + 10
        while not auto_clearings(api.db) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert auto_clearings(api.db) == [f"clr-auto-{EPOCH + NOW_SLOT * HOUR}"]
    assert not loop.running
    off = create_app(api.db, api.clock, ApiSettings(grid_epoch=EPOCH))
    with TestClient(off):
        assert not off.state.clearing_loop.running


def test_intervals_count_from_the_grid_epoch(world: Api) -> None:
    assert ApiSettings().interval_s == 3600
    settings = ApiSettings(grid_epoch=EPOCH, clearing_interval_s=600)
    clock = ManualClock(EPOCH + 1234)
    loop = ClearingLoop(world.db, loop_of(world).ledger, clock, settings, max_sleep_s=60)
    assert loop.boundary(clock.now()) == EPOCH + 1200
    assert loop.next_due() == EPOCH + 1200  # due at once: the current interval
    assert loop.seconds_to_next() == 0.2
    loop._next_due = EPOCH + 1800
    assert loop.seconds_to_next() == 60  # wakes at least every max_sleep_s
    clock.set(EPOCH + 1790)
    assert loop.seconds_to_next() == 10


def test_a_manual_clearing_waits_for_a_running_one(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from suangu.api.routes import clearings

    build_world(api)
    monkeypatch.setattr(clearings, "CLEARING_LOCK_WAIT_S", 0.3)
    with leadership(api.db) as got:  # as if a loop were clearing
        assert got
        r = api.call("POST", "/clearings", "op", json={"id": "manual"})
    assert r.status_code == 503 and r.json()["field"] == "clearings", r.text
    holder = threading.Thread(target=lambda: _hold(api.db, 0.1))
    holder.start()
    time.sleep(0.02)
    r = api.call("POST", "/clearings", "op", json={"id": "manual"})  # waits, then clears
    holder.join()
    assert r.status_code == 201, r.text


def _hold(db: Database, seconds: float) -> None:
    with leadership(db) as got:
        assert got
        time.sleep(seconds)
