"""Settlement rules: integer fen, limits, reserves and budget balance."""

from __future__ import annotations

from hypothesis import given

from suangu.core.clearing import clear
from suangu.core.settlement import LineKind, check_settlement, settle
from suangu.core.types import Market, Offer, Order, Pool, Site, TimeGrid
from tests.unit.markets import markets


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
