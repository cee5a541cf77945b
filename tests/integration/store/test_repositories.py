"""Round trips of every entity through the repositories, and what bad input leaves behind."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suangu.core import billing
from suangu.core.clearing import clear
from suangu.core.errors import ValidationError
from suangu.core.ledger import CreateResult, PendingStatus
from suangu.core.metering import LeaseWindow
from suangu.core.types import Market, Offer, Order, OrderKind, Pool, Site, TimeGrid
from suangu.store.db import Database
from suangu.store.errors import Conflict, InvalidState, NotFound, Unauthorized
from suangu.store.ledger import SqlLedger
from suangu.store.models import (
    ApiKeyRow,
    ClearingRow,
    LeaseRow,
    LeaseState,
    LedgerTransferRow,
    MeterReadingRow,
    OfferStatus,
    OrderStatus,
    Role,
)
from suangu.store.repositories import (
    Capacity,
    Clearings,
    Members,
    MeterReading,
    Meters,
    Orders,
)

T0 = 1_700_000_000
SITE = Site(
    "hor", "Horinger", "Inner Mongolia", "inner-mongolia", 40.3, 111.8, 1.15, {"beijing": 12.5}
)
POOL = Pool("hor-h100", "hor", "h100")
OFFER = Offer.over(
    "f1", "prov", "hor-h100", 0, 4, gpus=[8, 8, 4, 4], reserve_fen=[900, 900, 1200, 1000]
)
ORDERS = [
    Order(
        "o1",
        "buy",
        OrderKind.BATCH,
        gpus=4,
        release_slot=0,
        deadline_slot=4,
        limit_fen=1500,
        gpu_hours=8,
        gpu_classes=frozenset({"H100"}),
        regions=frozenset({"inner-mongolia"}),
        home="beijing",
        max_latency_ms=30.0,
        min_green_share=0.0,
    ),
    Order(
        "o2",
        "buy",
        OrderKind.GANG,
        gpus=4,
        release_slot=0,
        deadline_slot=4,
        limit_fen=2000,
        duration_slots=2,
        provinces=frozenset({"Inner Mongolia"}),
    ),
    Order("o3", "buy", OrderKind.SERVICE, gpus=1, release_slot=1, deadline_slot=3, limit_fen=1100),
]


def seed(db: Database) -> None:
    with db.session_scope() as s:
        m = Members(s)
        m.create("op", "The exchange", Role.OPERATOR, T0)
        m.create("prov", "Horinger DC", Role.PROVIDER, T0)
        m.create("buy", "AI team", Role.BUYER, T0)
        m.create("buy2", "Other team", "buyer", T0)
        cap = Capacity(s)
        cap.add_site(SITE, provider_id="prov")
        cap.add_pool(POOL)
        cap.add_offer(OFFER, T0)


def test_members_and_keys(db: Database) -> None:
    seed(db)
    with db.session_scope() as s:
        m = Members(s)
        assert m.create("buy", "AI team", Role.BUYER, T0 + 5).created_at == T0  # idempotent
        with pytest.raises(Conflict):
            m.create("buy", "AI team", Role.PROVIDER, T0)
        with pytest.raises(ValidationError) as err:
            m.create("x", "X", "admin", T0)
        assert err.value.field == "role"
        assert [x.id for x in m.all(Role.BUYER)] == ["buy", "buy2"]
        new = m.create_key("buy", T0, label="laptop")
    assert new.key.role is Role.BUYER and new.token.startswith("sg_")
    with db.session_scope() as s:
        row = s.get(ApiKeyRow, new.key.id)
        assert row is not None and new.token not in (row.secret_hash, row.prefix, row.id)
        key, member = Members(s).verify_key(new.token)
        assert key == new.key and member.id == "buy"
        for bad in ("", "sg_x", new.token + "x", new.token.replace("sg_", "xx_"), "sg_a_b"):
            with pytest.raises(Unauthorized):
                Members(s).verify_key(bad)
        Members(s).revoke_key(new.key.id, T0 + 10)
        with pytest.raises(Unauthorized):
            Members(s).verify_key(new.token)
        assert Members(s).keys("buy")[0].revoked_at == T0 + 10
        with pytest.raises(NotFound):
            Members(s).create_key("ghost", T0)


def test_sites_pools_offers(db: Database) -> None:
    seed(db)
    with db.session_scope() as s:
        cap = Capacity(s)
        assert cap.site("hor") == SITE and cap.sites() == [SITE]
        assert cap.pool("hor-h100") == POOL and cap.pools("hor") == [POOL]
        record = cap.offer("f1")
        assert record.offer == OFFER and record.status is OfferStatus.OPEN
        assert cap.add_offer(OFFER, T0 + 1).created_at == T0  # idempotent retry
        with pytest.raises(Conflict):
            cap.add_offer(Offer.over("f1", "prov", "hor-h100", 0, 2, 1, 1), T0)
        with pytest.raises(NotFound) as nf:
            cap.add_offer(Offer.over("f2", "prov", "nope", 0, 2, 1, 1), T0)
        assert nf.value.field == "pool_id"
        with pytest.raises(InvalidState):
            cap.add_offer(Offer.over("f2", "buy", "hor-h100", 0, 2, 1, 1), T0)
        with pytest.raises(NotFound):
            cap.add_pool(Pool("p2", "nowhere", "H100"))
        assert [o.id for o in cap.open_offers(3, 10)] == ["f1"]
        assert cap.open_offers(4, 10) == []
        assert cap.withdraw_offer("f1", "prov").status is OfferStatus.WITHDRAWN
        assert cap.open_offers(0, 10) == []


def test_orders(db: Database) -> None:
    seed(db)
    with db.session_scope() as s:
        orders = Orders(s)
        for k, o in enumerate(ORDERS):
            orders.submit(o, T0 + k)
        for o in ORDERS:
            got = orders.get(o.id, "buy")
            assert got.order == o and got.status is OrderStatus.OPEN
        assert orders.submit(ORDERS[0], T0 + 99).submitted_at == T0
        with pytest.raises(Conflict):
            orders.submit(Order("o1", "buy", "batch", 1, 0, 2, 100, gpu_hours=1), T0)
        with pytest.raises(NotFound):
            orders.get("o1", "buy2")  # another buyer sees nothing
        with pytest.raises(InvalidState):
            orders.submit(Order("o9", "prov", "batch", 1, 0, 2, 100, gpu_hours=1), T0)
        assert orders.cancel("o3", "buy").status is OrderStatus.CANCELLED
        assert orders.cancel("o3", "buy").status is OrderStatus.CANCELLED
        with pytest.raises(NotFound):
            orders.cancel("o1", "buy2")
        assert [o.id for o in orders.open_orders(0, 24)] == ["o1", "o2"]
        assert orders.expire(4) == 2
        with pytest.raises(InvalidState):
            orders.cancel("o1", "buy")


def _setup_money(db: Database, ledger: SqlLedger) -> None:
    accounts = [billing.new_buyer_account("buy"), billing.new_provider_account("prov")]
    assert set(ledger.create_accounts([*accounts, *billing.new_exchange_accounts()], T0)) == {
        CreateResult.OK
    }
    assert ledger.create_transfers([billing.deposit("dep1", "buy", 1_000_000)], T0) == [
        CreateResult.OK
    ]


def _market(db: Database) -> Market:
    with db.session_scope(write=False) as s:
        cap, orders = Capacity(s), Orders(s)
        return Market(
            TimeGrid(),
            0,
            4,
            cap.sites(),
            cap.pools(),
            cap.open_offers(0, 4),
            orders.open_orders(0, 4),
        )


def test_clearing_holds_and_leases_in_one_transaction(db: Database) -> None:
    seed(db)
    ledger = SqlLedger(db)
    _setup_money(db, ledger)
    with db.session_scope() as s:
        for o in ORDERS:
            Orders(s).submit(o, T0)
    result = clear(_market(db))
    assert result.allocations

    def commit_clearing(s: Session) -> list[CreateResult]:
        holds = billing.holds_for_clearing(result, "c1", timeout_s=3600)
        results = ledger.create_transfers_in(s, holds, T0 + 1)
        ok = {h.user_data: h.id for h, r in zip(holds, results, strict=True) if r.succeeded}
        Clearings(s).save("c1", T0 + 1, 0, 4, result, hold_ids=ok)
        return results

    results = db.transaction(commit_clearing, retry_integrity=True)
    assert set(results) == {CreateResult.OK}
    with db.session_scope() as s:
        stored = Clearings(s).get("c1")
        got = stored.result
        assert (stored.first_slot, stored.n_slots, stored.run_at) == (0, 4, T0 + 1)
        assert sorted(got.allocations, key=repr) == sorted(result.allocations, key=repr)
        assert sorted(got.prices, key=repr) == sorted(result.prices, key=repr)
        assert sorted(got.fills, key=repr) == sorted(result.fills, key=repr)
        assert (got.status, got.method, got.welfare_fen, got.gap) == (
            result.status,
            result.method,
            result.welfare_fen,
            result.gap,
        )
        assert dict(got.timings) == pytest.approx(dict(result.timings))
        assert Clearings(s).latest() == stored
        leases = Clearings(s).leases(buyer_id="buy")
        assert len(leases) == len(result.allocations)
        assert {x.provider_id for x in leases} == {"prov"}
        assert all(x.hold_transfer_id == f"hold:c1:{x.allocation.order_id}" for x in leases)
        statuses = {o.id: Orders(s).get(o.id).status for o in ORDERS}
        assert set(statuses.values()) <= {
            OrderStatus.CLEARED,
            OrderStatus.PARTIALLY,
            OrderStatus.OPEN,
        }
        assert statuses["o1"] is OrderStatus.CLEARED
        p = Clearings(s).prices("hor-h100", 0, 4)
        assert [x.slot for x in p] == [0, 1, 2, 3]
        lease = leases[0].id
        assert Clearings(s).move_lease(lease, LeaseState.RUNNING).state is LeaseState.RUNNING
        with pytest.raises(InvalidState):
            Clearings(s).move_lease(lease, LeaseState.SETTLED)
        with pytest.raises(Conflict):
            Clearings(s).save("c1", T0 + 2, 0, 4, result)
    for hold in billing.holds_for_clearing(result, "c1", timeout_s=3600):
        assert ledger.pending_status(hold.id) is PendingStatus.PENDING
    ledger.check_invariants()


def test_failed_clearing_writes_nothing(db: Database) -> None:
    """A clearing whose save fails half-way leaves neither its rows nor its holds."""
    seed(db)
    ledger = SqlLedger(db)
    _setup_money(db, ledger)
    with db.session_scope() as s:
        Orders(s).submit(ORDERS[0], T0)
    result = clear(_market(db))
    before = ledger.balances(billing.Asset.CNY)

    def commit(s: Session) -> None:
        holds = billing.holds_for_clearing(result, "c2", timeout_s=0)
        assert ledger.create_transfers_in(s, holds, T0 + 1) == [CreateResult.OK]
        Clearings(s).save("c2", T0 + 1, 0, 4, result, providers={"hor-h100": "ghost"})

    with pytest.raises(Exception, match=r"(?i)foreign key|violates|constraint"):
        db.transaction(commit)
    with db.session_scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(ClearingRow)) == 0
        assert s.scalar(select(func.count()).select_from(LeaseRow)) == 0
        assert s.scalar(select(func.count()).select_from(LedgerTransferRow)) == 1  # the deposit
        assert Orders(s).get("o1").status is OrderStatus.OPEN
    assert ledger.balances(billing.Asset.CNY) == before
    ledger.check_invariants()


def test_meter_readings_are_idempotent(db: Database) -> None:
    seed(db)
    with db.session_scope() as s:
        Orders(s).submit(ORDERS[0], T0)
    result = clear(_market(db))
    with db.session_scope() as s:
        lease = Clearings(s).save("c1", T0, 0, 4, result)[0]
    gpus = lease.allocation.gpus
    window = LeaseWindow(T0, T0 + 3600, gpus, 700, 1.2)
    reading = MeterReading("agent-1:r1", lease.id, T0, T0 + 600, 600 * gpus, 234, T0 + 601)
    with db.session_scope() as s:
        meters = Meters(s)
        assert meters.record(reading, window) == (reading, True)
        again = MeterReading("agent-1:r1", lease.id, T0, T0 + 600, 600 * gpus, 234, T0 + 999)
        assert meters.record(again, window) == (reading, False)
        with pytest.raises(Conflict):
            meters.record(MeterReading("agent-1:r1", lease.id, T0, T0 + 600, 1, 234, T0), window)
        with pytest.raises(ValidationError) as err:
            meters.record(
                MeterReading("k2", lease.id, T0 + 600, T0 + 610, 10 * gpus + 1, 0, T0 + 610),
                window,
            )
        assert err.value.field == "gpu_seconds"
        with pytest.raises(ValidationError):
            meters.record(MeterReading("k3", lease.id, T0, T0, 0, 0, T0), window)
        with pytest.raises(NotFound):
            meters.record(MeterReading("k4", "nope", T0, T0 + 1, 0, 0, T0), window)

    # Eight agents retry the same readings at once: each is stored exactly once.
    def submit(k: int) -> None:
        for j in range(1, 6):
            r = MeterReading(
                f"agent-2:r{j}", lease.id, T0 + 600 * j, T0 + 600 * (j + 1), 60, 5, T0 + 3600
            )
            db.transaction(lambda s, r=r: Meters(s).record(r, window), retry_integrity=True)

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.session_scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(MeterReadingRow)) == 6
        assert Meters(s).totals([lease.id]) == {lease.id: (600 * gpus + 5 * 60, 234 + 25)}
        assert len(Meters(s).readings(lease.id)) == 6


@pytest.mark.parametrize(
    ("start", "end", "gpu_s", "wh", "now", "field"),
    [
        (T0 - 3600, T0 - 3000, 0, 0, T0, "interval_start"),  # before the lease's slot
        (T0 + 3000, T0 + 4000, 0, 0, T0 + 4000, "interval_end"),  # past the slot's end
        (T0, T0 + 600, 0, 0, T0 + 100, "interval_end"),  # in the future
        (0, 1, 0, 0, T0, "interval_start"),  # dated 1970
        (T0 + 300, T0 + 900, 60, 5, T0 + 900, "interval_start"),  # overlaps [T0, T0 + 600)
        (T0 + 600, T0 + 1200, 0, 3 * 10**12, T0 + 1200, "energy_wh"),  # physically impossible
    ],
)
def test_readings_must_be_possible_for_their_lease(
    db: Database, start: int, end: int, gpu_s: int, wh: int, now: int, field: str
) -> None:
    seed(db)
    with db.session_scope() as s:
        Orders(s).submit(ORDERS[0], T0)
    result = clear(_market(db))
    with db.session_scope() as s:
        lease = Clearings(s).save("c1", T0, 0, 4, result)[0]
    gpus = lease.allocation.gpus
    window = LeaseWindow(T0, T0 + 3600, gpus, 700, 1.2)
    first = MeterReading("a:r1", lease.id, T0, T0 + 600, 600 * gpus, 100, T0 + 600)
    with db.session_scope() as s:
        Meters(s).record(first, window)
        with pytest.raises(ValidationError) as err:
            Meters(s).record(MeterReading("a:r2", lease.id, start, end, gpu_s, wh, now), window)
    assert err.value.field == field
    assert err.value.fix
    with db.session_scope(write=False) as s:
        assert Meters(s).readings(lease.id) == [first]
    # The most the GPUs can use at full board power and the PUE bound is accepted.
    most = window.max_energy_wh(600)
    assert most == -(-gpus * 700 * 1.2 * 600 // 3600)
    ok = MeterReading("a:r3", lease.id, T0 + 600, T0 + 1200, 600 * gpus, most, T0 + 1200)
    with db.session_scope() as s:
        assert Meters(s).record(ok, window) == (ok, True)


def test_clearing_refuses_an_order_cancelled_meanwhile(db: Database) -> None:
    seed(db)
    with db.session_scope() as s:
        Orders(s).submit(ORDERS[0], T0)
    result = clear(_market(db))
    with db.session_scope() as s:
        Orders(s).cancel("o1", "buy")
    with pytest.raises(Conflict) as err, db.session_scope() as s:
        Clearings(s).save("c3", T0 + 1, 0, 4, result)
    assert err.value.field == "allocations.order_id"
    with db.session_scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(ClearingRow)) == 0
        assert Orders(s).get("o1").status is OrderStatus.CANCELLED
