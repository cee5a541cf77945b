"""The network in the store: links, orders with data and speeds, and what a clearing decided
about data moved (transfers, link prices), round trip through the repositories; the hold and
settlement of data transfer charges on the SQL ledger."""

from __future__ import annotations

import pytest

from suangu.core import billing
from suangu.core.clearing import clear
from suangu.core.errors import ValidationError
from suangu.core.ledger import CreateResult, PendingStatus
from suangu.core.types import Link, Market, Offer, Order, OrderKind, Pool, Site, TimeGrid
from suangu.store.db import Database
from suangu.store.ledger import SqlLedger
from suangu.store.models import OrderStatus, Role
from suangu.store.repositories import Capacity, Clearings, Links, Members, Orders

T0 = 1_700_000_000
HOR = Site("hor", "Horinger", "Inner Mongolia", "inner-mongolia", 40.5, 111.8, 1.15)
POOL = Pool("hor-h100", "hor", "H100")
LINK = Link("beijing", "inner-mongolia", 12.0, 10.0, 20)


def test_links_round_trip_and_replace(db: Database) -> None:
    with db.session_scope() as s:
        assert Links(s).all() == []
        other = Link("beijing", "gansu", 25.5, 40.0, 8)
        assert Links(s).replace([LINK, other]) == [other, LINK]
    with db.session_scope() as s:
        assert Links(s).get("beijing", "gansu") == other
        faster = Link("beijing", "gansu", 20.0, 100.0, 9)
        assert Links(s).put(faster) == (faster, False)
        new = Link("gansu", "beijing", 25.5, 40.0, 8)
        assert Links(s).put(new) == (new, True)
    with db.session_scope() as s:
        assert Links(s).all() == [faster, LINK, new]
        with pytest.raises(ValidationError, match="duplicate") as err:
            Links(s).replace([LINK, LINK])
        assert err.value.field == "links[1]"
    with db.session_scope() as s:
        assert Links(s).replace([]) == []


def test_orders_keep_data_reference_class_and_speed(db: Database) -> None:
    order = Order(
        "o1",
        "team",
        OrderKind.BATCH,
        gpus=2,
        release_slot=0,
        deadline_slot=4,
        limit_fen=300,
        gpu_hours=8,
        home="beijing",
        data_gb=500,
        reference_class="A800",
        speed={"H100": 3.5, "L40S": 1.2},
    )
    with db.session_scope() as s:
        Members(s).create("team", "Team", Role.BUYER, T0)
        Orders(s).submit(order, T0)
    with db.session_scope() as s:
        got = Orders(s).get("o1").order
        assert got == order
        assert (got.data_gb, got.reference_class, dict(got.speed)) == (
            500,
            "A800-SXM-80GB",
            {"H100-SXM-80GB": 3.5, "L40S": 1.2},
        )
        assert Orders(s).open_orders(0, 4) == [order]


def _world(db: Database) -> Market:
    """A provider in inner-mongolia, a buyer whose 100 GB live in beijing, and the link."""
    order = Order(
        "o1",
        "team",
        OrderKind.BATCH,
        gpus=2,
        release_slot=0,
        deadline_slot=4,
        limit_fen=3000,
        gpu_hours=4,
        home="beijing",
        data_gb=100,
    )
    offer = Offer.over("f1", "dc", POOL.id, 0, 4, 4, 900)
    with db.session_scope() as s:
        Members(s).create("team", "Team", Role.BUYER, T0)
        Members(s).create("dc", "DC", Role.PROVIDER, T0)
        Capacity(s).add_site(HOR, "dc")
        Capacity(s).add_pool(POOL)
        Capacity(s).add_offer(offer, T0)
        Orders(s).submit(order, T0)
        links = tuple(Links(s).replace([LINK]))
    return Market(TimeGrid(), 0, 4, (HOR,), (POOL,), (offer,), (order,), links=links)


def test_a_clearing_keeps_its_transfers_and_link_prices(db: Database) -> None:
    market = _world(db)
    result = clear(market)
    assert result.transfers and result.link_prices
    with db.session_scope() as s:
        Clearings(s).save("c1", T0, 0, 4, result)
    with db.session_scope() as s:
        got = Clearings(s).get("c1").result
        assert got.transfers == result.transfers
        assert got.link_prices == result.link_prices
        assert got.transfer_fen("o1") == result.transfer_fen("o1") == 2000
        assert Clearings(s).transfers(order_id="o1") == list(result.transfers)
        charges = Clearings(s).transfer_charges([("c1", "o1"), ("c1", "nope"), ("c9", "o1")])
        assert charges == {("c1", "o1"): (2000, 0)}
        assert Orders(s).get("o1").status is OrderStatus.CLEARED


def test_transfer_charges_are_held_and_settled_on_the_ledger(db: Database) -> None:
    market = _world(db)
    result = clear(market)
    ledger = SqlLedger(db)
    accounts = [
        *billing.new_exchange_accounts(),
        billing.new_buyer_account("team"),
        billing.new_provider_account("dc"),
    ]
    assert set(ledger.create_accounts(accounts, T0)) == {CreateResult.OK}
    assert ledger.create_transfers([billing.deposit("d1", "team", 100_000)], T0) == [
        CreateResult.OK
    ]
    compute = sum(a.price_fen * a.gpus for a in result.allocations)
    holds = billing.holds_for_clearing(result, "c1", 0, with_transfers=True)
    assert [h.amount for h in holds] == [compute + 2000]
    assert [h.amount for h in billing.holds_for_clearing(result, "c1", 0)] == [compute]
    assert ledger.create_transfers(holds, T0) == [CreateResult.OK]
    # Half of the use metered: half the compute is paid, the data charges in full.
    metered = {a: a.gpus * 1800 for a in result.allocations}
    chain = billing.settle_lease(
        holds[0].id,
        list(result.allocations),
        metered,
        {POOL.id: "dc"},
        300,
        carrier_fen=1500,
        congestion_fen=500,
    )
    assert [t.id for t in chain][-2:] == ["carrier:hold:c1:o1", "congestion:hold:c1:o1"]
    assert set(ledger.create_transfers(chain, T0 + 1)) == {CreateResult.OK}
    half = sum(a.price_fen * a.gpus // 2 for a in result.allocations)
    network = ledger.lookup_account(billing.exchange_network_account())
    buyer = ledger.lookup_account(billing.buyer_account("team"))
    clearing = ledger.lookup_account(billing.exchange_clearing_account())
    assert network is not None and buyer is not None and clearing is not None
    assert network.credits_posted == 2000
    assert buyer.debits_pending == 0 and buyer.debits_posted == half + 2000
    assert clearing.credits_posted == clearing.debits_posted
    assert ledger.pending_status(holds[0].id) is PendingStatus.POSTED
    ledger.check_invariants()
