"""Clearing on hand-made markets with known answers."""

from __future__ import annotations

import pytest

from suangu.core.clearing import clear
from suangu.core.clearing.checks import check_clearing
from suangu.core.settlement import check_settlement, settle
from suangu.core.types import ClearingStatus, Market, Offer, Order, Pool, Site, TimeGrid

SITES = (
    Site("hor", "Horinger", "Inner Mongolia", "west", latency_ms={"beijing": 3.0}),
    Site("sh", "Shanghai", "Shanghai", "east", latency_ms={"beijing": 12.0}),
)
POOLS = (
    Pool("hor-h100", "hor", "H100"),
    Pool("sh-h100", "sh", "H100"),
    Pool("hor-910b", "hor", "910B"),
)


def market(offers: list[Offer], orders: list[Order], n_slots: int = 2, **kw: object) -> Market:
    return Market(TimeGrid(), 0, n_slots, SITES, POOLS, tuple(offers), tuple(orders), **kw)  # type: ignore[arg-type]


def batch(
    id: str, gpus: int, hours: int, limit: int, release: int = 0, deadline: int = 2, **kw: object
) -> Order:
    return Order(id, f"buyer-{id}", "batch", gpus, release, deadline, limit, gpu_hours=hours, **kw)  # type: ignore[arg-type]


def test_empty_market_is_a_result_not_a_crash() -> None:
    result = clear(market([], []))
    assert result.status is ClearingStatus.EMPTY
    assert result.allocations == () and result.welfare_fen == 0


def test_orders_without_offers_clear_nothing() -> None:
    result = clear(market([], [batch("a", 1, 1, 1000)]))
    assert result.status is ClearingStatus.EMPTY and result.allocations == ()


def test_offers_without_orders_quote_the_reserve() -> None:
    result = clear(market([Offer.over("f", "p1", "hor-h100", 0, 2, 4, 900)], []))
    assert result.status is ClearingStatus.EMPTY
    assert {p.price_fen for p in result.prices} == {900}


def test_bids_below_reserve_do_not_trade() -> None:
    result = clear(
        market(
            [Offer.over("f", "p1", "hor-h100", 0, 2, 4, 900)],
            [batch("a", 1, 2, 900), batch("b", 1, 2, 500)],
        )
    )
    assert result.allocations == ()


def test_uncongested_pool_prices_at_the_marginal_reserve() -> None:
    offers = [
        Offer.over("cheap", "p1", "hor-h100", 0, 2, 2, 800),
        Offer.over("dear", "p2", "hor-h100", 0, 2, 4, 1000),
    ]
    result = clear(market(offers, [batch("a", 3, 6, 1500)]))
    assert {a.gpus for a in result.allocations} == {3}
    # The cheap offer is sold out; the third GPU comes from the dear one at its reserve.
    assert {p.price_fen for p in result.prices if p.pool_id == "hor-h100"} == {1000}
    assert result.welfare_fen == (1500 * 6) - (800 * 4 + 1000 * 2)


def test_congested_pool_prices_at_the_highest_losing_bid() -> None:
    offers = [Offer.over("f", "p1", "hor-h100", 0, 1, 2, 500)]
    result = clear(
        market(
            offers,
            [batch("hi", 2, 2, 1500), batch("mid", 2, 2, 1200), batch("lo", 2, 2, 700)],
            n_slots=1,
        )
    )
    assert [a.order_id for a in result.allocations] == ["hi"]
    # Lowest price that keeps "mid" out: its limit.
    assert result.prices[0].price_fen == 1200
    s = settle(result)
    assert s.payments_fen == s.receipts_fen == 1200 * 2


def test_window_class_region_and_latency_filters() -> None:
    offers = [
        Offer.over("f1", "p1", "hor-h100", 0, 4, 8, 500),
        Offer.over("f2", "p2", "sh-h100", 0, 4, 8, 500),
        Offer.over("f3", "p1", "hor-910b", 0, 4, 8, 300),
    ]
    orders = [
        batch("window", 1, 10, 2000, release=1, deadline=3),
        batch("cls", 1, 10, 2000, deadline=4, gpu_classes=frozenset({"910B"})),
        batch("east", 1, 10, 2000, deadline=4, regions=frozenset({"east"})),
        batch(
            "near",
            1,
            10,
            2000,
            deadline=4,
            home="beijing",
            max_latency_ms=5.0,
            gpu_classes=frozenset({"H100"}),
        ),
    ]
    m = market(offers, orders, n_slots=4)
    result = clear(m)
    assert check_clearing(m, result) == []
    got = {(a.order_id, a.pool_id, a.slot) for a in result.allocations}
    assert {s for o, _, s in got if o == "window"} == {1, 2}
    assert {p for o, p, _ in got if o == "cls"} == {"hor-910b"}
    assert {p for o, p, _ in got if o == "east"} == {"sh-h100"}
    assert {p for o, p, _ in got if o == "near"} == {"hor-h100"}


def test_partial_fill_and_per_slot_cap() -> None:
    offers = [Offer.over("f", "p1", "hor-h100", 0, 2, 10, 500)]
    result = clear(market(offers, [batch("a", 3, 100, 900)]))
    assert sorted(a.gpus for a in result.allocations) == [3, 3]  # capped per slot, partial


def test_orders_outside_the_horizon_get_nothing() -> None:
    offers = [Offer.over("f", "p1", "hor-h100", 0, 10, 10, 500)]
    result = clear(market(offers, [batch("late", 1, 1, 900, release=5, deadline=6)]))
    assert result.allocations == ()


def test_gang_is_all_or_nothing_in_one_pool() -> None:
    offers = [
        Offer.over("a", "p1", "hor-h100", 0, 3, 4, 500),
        Offer.over("b", "p2", "sh-h100", 0, 3, 4, 500),
    ]
    gang = Order("g", "buyer", "gang", 6, 0, 3, 2000, duration_slots=2)
    result = clear(market(offers, [gang], n_slots=3))
    assert result.allocations == ()  # 6 GPUs fit in no single pool, even though 8 exist


def test_gang_takes_contiguous_slots_and_pays_clearing_prices() -> None:
    offers = [Offer.over("a", "p1", "hor-h100", 0, 3, 4, 500)]
    gang = Order("g", "buyer", "gang", 4, 0, 3, 2000, duration_slots=2)
    m = market(offers, [gang, batch("b", 4, 4, 900, deadline=3)], n_slots=3)
    result = clear(m)
    assert check_clearing(m, result) == []
    cells = sorted((a.slot, a.gpus) for a in result.allocations if a.order_id == "g")
    assert len(cells) == 2 and cells[1][0] == cells[0][0] + 1
    assert check_settlement(m, result, settle(result)) == []


def test_gang_may_pay_more_than_its_limit_in_one_slot_but_not_in_total() -> None:
    offers = [Offer.over("a", "p1", "hor-h100", 0, 2, 4, 100)]
    gang = Order("g", "buyer", "gang", 4, 0, 2, 1000, duration_slots=2)
    rival = Order("r", "rival", "batch", 1, 0, 1, 1900, gpu_hours=1)
    m = market(offers, [gang, rival])
    result = clear(m)
    assert check_settlement(m, result, settle(result)) == []
    got = {a.slot: a.price_fen for a in result.allocations if a.order_id == "g"}
    assert got == {0: 1900, 1: 100}  # 4 x 1900 + 4 x 100 = 8,000 = the gang's limit x 8


def test_paradoxical_gang_is_rejected_not_accepted_at_a_loss() -> None:
    # The MIP prefers the gang (8 x 900 welfare against 2 x 1800), but at the prices that
    # keep the two rivals out the gang would pay 1900 per GPU-hour: it is rejected instead.
    offers = [Offer.over("a", "p1", "hor-h100", 0, 2, 4, 100)]
    gang = Order("g", "buyer", "gang", 4, 0, 2, 1000, duration_slots=2)
    rivals = [Order(f"r{t}", "rival", "batch", 1, t, t + 1, 1900, gpu_hours=1) for t in (0, 1)]
    m = market(offers, [gang, *rivals])
    result = clear(m)
    assert result.rejected_gangs == ("g",)
    assert {a.order_id for a in result.allocations} == {"r0", "r1"}
    assert check_settlement(m, result, settle(result)) == []


def test_green_minimum_is_met_on_average() -> None:
    offers = [
        Offer.over("a", "p1", "hor-h100", 0, 2, 4, 500),
        Offer.over("b", "p2", "sh-h100", 0, 2, 4, 300),
    ]
    order = batch("g", 4, 8, 1500, min_green_share=0.6)
    m = market(offers, [order], green_share={"hor-h100": (0.9, 0.9), "sh-h100": (0.2, 0.2)})
    result = clear(m)
    assert check_clearing(m, result) == []
    green = {"hor-h100": 0.9, "sh-h100": 0.2}
    total = sum(a.gpus for a in result.allocations)
    share = sum(green[a.pool_id] * a.gpus for a in result.allocations) / total
    assert share >= 0.6 and total == 8


@pytest.mark.parametrize("slot_hours", [1, 2])
def test_welfare_and_money_scale_with_slot_length(slot_hours: int) -> None:
    offers = [Offer.over("f", "p1", "hor-h100", 0, 2, 2, 500)]
    m = Market(
        TimeGrid(slot_seconds=3600 * slot_hours),
        0,
        2,
        SITES,
        POOLS,
        tuple(offers),
        (batch("a", 2, 4 * slot_hours, 900),),
    )
    result = clear(m)
    assert result.welfare_fen == (900 - 500) * 4 * slot_hours
    assert settle(result).payments_fen == 500 * 4 * slot_hours


def test_green_slot_above_the_limit_pays_for_itself() -> None:
    # Green H100 costs 1,100 > the limit of 1,000, but two green GPUs let the order take two
    # brown ones at 500: 2 x (1000 - 1100) + 2 x (1000 - 500) = 800 fen of welfare.
    offers = [
        Offer.over("green", "p1", "hor-h100", 0, 1, 4, 1100),
        Offer.over("brown", "p2", "sh-h100", 0, 1, 4, 500),
    ]
    order = batch("g", 4, 4, 1000, deadline=1, min_green_share=0.5)
    m = market(offers, [order], n_slots=1, green_share={"hor-h100": (1.0,), "sh-h100": (0.0,)})
    result = clear(m)
    assert result.welfare_fen == 800
    assert sorted((a.pool_id, a.gpus) for a in result.allocations) == [
        ("hor-h100", 2),
        ("sh-h100", 2),
    ]
    assert check_settlement(m, result, settle(result)) == []
