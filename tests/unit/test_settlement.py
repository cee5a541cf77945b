"""Settlement rules: integer fen, limits, reserves and budget balance."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings

from suangu.core.clearing import clear
from suangu.core.settlement import LineKind, check_settlement, settle
from suangu.core.types import Link, Market, Offer, Order, Pool, Site, TimeGrid, Transfer
from tests.unit.markets import markets, network_markets


def test_two_providers_one_price() -> None:
    sites = (Site("a", "A", "Gansu", "west"),)
    pools = (Pool("p", "a", "A800"),)
    offers = (
        Offer.over("cheap", "prov1", "p", 0, 1, 2, 600),
        Offer.over("dear", "prov2", "p", 0, 1, 2, 800),
    )
    orders = (Order("o", "buyer", "batch", 3, 0, 1, 1000, gpu_hours=3),)
    m = Market(TimeGrid(), 0, 1, sites, pools, offers, orders)
    s = settle(clear(m))
    assert check_settlement(m, clear(m), s) == []
    receipts = {x.member_id: x.amount_fen for x in s.lines if x.kind is LineKind.PROVIDER_RECEIPT}
    assert receipts == {"prov1": 2 * 800, "prov2": 1 * 800}
    assert s.payments_fen == 3 * 800 and s.balanced and s.congestion_rent_fen == 0
    assert s.by_member == {"buyer": 2400, "prov1": -1600, "prov2": -800}


@given(markets(gangs=True, green=True, max_orders=5, max_slots=3))
def test_money_balances_in_integer_fen(market: Market) -> None:
    result = clear(market)
    s = settle(result)
    assert all(isinstance(x.amount_fen, int) for x in s.lines)
    assert s.payments_fen == s.receipts_fen + s.congestion_rent_fen
    assert sum(s.by_member.values()) == s.congestion_rent_fen
    assert check_settlement(market, result, s) == []


def test_transfers_are_billed_and_balance() -> None:
    """A buyer moving data pays the carrier's price and the congestion price per GB; the
    carriers' part is link rent, the congestion part the exchange's rent."""
    sites = (Site("e", "E", "Shanghai", "east"), Site("w", "W", "Gansu", "west"))
    pools = (Pool("pw", "w", "A800"),)
    offers = (Offer.over("f", "prov", "pw", 0, 2, 2, 100),)
    order = Order("o", "buyer", "batch", 2, 0, 2, 1000, gpu_hours=2, home="east", data_gb=40)
    m = Market(
        TimeGrid(), 0, 2, sites, pools, offers, (order,), links=(Link("east", "west", 9, 10, 3),)
    )
    result = clear(m)
    fake = dataclasses.replace(
        result,
        transfers=(Transfer("o", "buyer", "east", "west", 40.0, 3, 2, 120, 80),),
    )
    s = settle(fake)
    kinds = {x.kind: x.amount_fen for x in s.lines}
    assert kinds[LineKind.TRANSFER_PAYMENT] == 120 and kinds[LineKind.LINK_CONGESTION] == 80
    assert kinds[LineKind.LINK_RENT] == 120 and s.link_rent_fen == 120
    assert s.payments_fen == 2 * 100 + 120 + 80
    assert s.congestion_rent_fen == 80 and s.balanced
    assert s.by_member == {"buyer": 400, "prov": -200}
    # The real clearing: 40 GB moved at 3 fen, no congestion (the link has room).
    real = settle(result)
    assert real.link_rent_fen == 120 and real.congestion_rent_fen == 0 and real.balanced
    assert check_settlement(m, result, real) == []


@settings(deadline=None)
@given(network_markets(gangs=True))
def test_money_balances_with_transfers(market: Market) -> None:
    result = clear(market)
    s = settle(result)
    assert all(isinstance(x.amount_fen, int) for x in s.lines)
    assert s.payments_fen == s.receipts_fen + s.congestion_rent_fen + s.link_rent_fen
    assert s.link_rent_fen == sum(t.carrier_fen for t in result.transfers)
    assert s.congestion_rent_fen >= sum(t.congestion_fen for t in result.transfers)
    assert check_settlement(market, result, s) == []
