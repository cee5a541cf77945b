"""Reserves finer than a fen (``Market.reserve_mfen``, what a carbon price adds): the
clearing prices them to the milli-fen, the time preference stays a tie-break below any
difference in them, and every clearing and settlement rule still holds in whole fen."""

from __future__ import annotations

import pytest

from suangu.core.clearing import clear
from suangu.core.clearing.checks import check_clearing
from suangu.core.energy.hooks import apply_carbon_price, carbon_cost_fen, carbon_cost_mfen
from suangu.core.errors import ValidationError
from suangu.core.settlement import check_settlement, settle
from suangu.core.types import Market, Offer, Order, Pool, Site, TimeGrid

SITES = (Site("hor", "Horinger", "Inner Mongolia", "west"),)
POOLS = (Pool("hor-h100", "hor", "H100"),)
#: gCO2 per GPU-hour in six hours of one region: 1-3 fen apart at 100 yuan/t
CARBON = [300.0, 290.0, 310.0, 268.0, 274.0, 300.0]


def _market(orders: list[Order], delay_fen: int = 1) -> Market:
    offer = Offer.over("f", "p1", "hor-h100", 0, 6, 2, 900)
    return Market(TimeGrid(), 0, 6, SITES, POOLS, (offer,), tuple(orders), delay_fen=delay_fen)


def _priced(orders: list[Order], yuan_per_t: float = 100.0, delay_fen: int = 1) -> Market:
    return apply_carbon_price(_market(orders, delay_fen), {"hor-h100": CARBON}, yuan_per_t)


def _ok(m: Market) -> None:
    r = clear(m)
    assert check_clearing(m, r) == []
    assert check_settlement(m, r, settle(r)) == []


def test_the_carbon_adder_is_exact_to_the_milli_fen_and_rounded_down_in_whole_fen() -> None:
    m = _priced([])
    assert m.reserve_mfen["f"] == tuple(900_000 + round(g * 10) for g in CARBON)
    assert m.offers[0].reserve_fen == (903, 902, 903, 902, 902, 903)
    assert carbon_cost_mfen(268.0, 100.0) == 2680 and carbon_cost_fen(268.0, 100.0) == 2
    assert carbon_cost_mfen(0.05, 100.0) == 1  # 0.5 milli-fen, half up
    assert _priced([], 0.0) == _market([])  # no price: whole fen, nothing added


def test_the_cleanest_hour_wins_over_the_time_preference() -> None:
    order = Order("a", "b1", "batch", 1, 0, 6, 1500, gpu_hours=1)
    r = clear(_priced([order]))
    assert [a.slot for a in r.allocations] == [3]  # 268 g: 0.32 fen below slot 0
    assert r.allocations[0].price_fen == 902  # rounded down, never above the limit
    _ok(_priced([order]))
    # In whole fen the carbon adder is 2 or 3 fen and the 1-fen preference for now wins.
    reserves = [900 + carbon_cost_fen(g, 100.0) for g in CARBON]
    offer = Offer.over("f", "p1", "hor-h100", 0, 6, 2, reserves)
    whole = Market(TimeGrid(), 0, 6, SITES, POOLS, (offer,), (order,), delay_fen=1)
    assert [a.slot for a in clear(whole).allocations] in ([0], [1])


def test_equal_reserves_still_go_to_the_earliest_slot() -> None:
    order = Order("a", "b1", "batch", 2, 0, 6, 1500, gpu_hours=4)
    flat = apply_carbon_price(_market([order]), {"hor-h100": [300.0] * 6}, 100.0)
    r = clear(flat)
    assert sorted({a.slot for a in r.allocations}) == [0, 1]
    assert r.welfare_fen == 4 * (1500 - 903)  # welfare leaves the preference out
    _ok(flat)


def test_the_two_cleanest_hours_in_order_and_gangs_too() -> None:
    order = Order("a", "b1", "batch", 2, 0, 6, 1500, gpu_hours=4)
    assert sorted({a.slot for a in clear(_priced([order])).allocations}) == [3, 4]
    gang = Order("g", "b1", "gang", 2, 0, 6, 1500, duration_slots=2)
    r = clear(_priced([gang]))
    assert sorted({a.slot for a in r.allocations}) == [3, 4]
    _ok(_priced([gang]))
    _ok(_priced([order, gang]))


def test_fine_reserves_must_round_down_to_the_offer_reserves() -> None:
    m = _market([])
    with pytest.raises(ValidationError, match="reserve_mfen"):
        Market(m.grid, 0, 6, SITES, POOLS, m.offers, (), reserve_mfen={"f": (901_000,) * 6})
    with pytest.raises(ValidationError, match="reserve_mfen"):
        Market(m.grid, 0, 6, SITES, POOLS, m.offers, (), reserve_mfen={"nope": (900_000,) * 6})
    ok = Market(m.grid, 0, 6, SITES, POOLS, m.offers, (), reserve_mfen={"f": (900_999,) * 6})
    assert ok.reserve_mfen["f"][0] == 900_999
