"""Tests of the pay-as-bid greedy baseline (suangu.core.clearing.greedy)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from suangu.core.clearing import clear
from suangu.core.clearing.checks import check_clearing
from suangu.core.clearing.greedy import greedy_clear
from suangu.core.clearing.lp import solve_lp
from suangu.core.clearing.model import build_model
from suangu.core.types import (
    ClearingResult,
    ClearingStatus,
    Market,
    Offer,
    Order,
    OrderKind,
    Pool,
    Site,
    TimeGrid,
)
from suangu.sim.generator import generate_market


def _problems(market: Market, result: ClearingResult) -> list[str]:
    return check_clearing(market, result, uniform_prices=False)


def _welfare(market: Market, result: ClearingResult) -> int:
    limits = {o.id: o.limit_fen for o in market.orders}
    value = sum(limits[a.order_id] * a.gpus for a in result.allocations)
    cost = sum(f.reserve_fen * f.gpus for f in result.fills)
    return int(value - cost) * market.grid.slot_hours


def _tiny(orders: list[Order], green: Mapping[str, tuple[float, ...]] | None = None) -> Market:
    sites = (Site("s1", "one", "Inner Mongolia", "r1"), Site("s2", "two", "Gansu", "r2"))
    pools = (Pool("A", "s1", "H100"), Pool("B", "s2", "A800"))
    offers = (
        Offer.over("a1", "p1", "A", 0, 2, 4, 1000),
        Offer.over("a2", "p2", "A", 0, 2, 4, 1200),
        Offer.over("b1", "p3", "B", 0, 2, 2, 500),
    )
    return Market(TimeGrid(), 0, 2, sites, pools, offers, tuple(orders), green or {})


def _batch(id: str, limit: int, gpus: int, work: int, **kw: object) -> Order:
    return Order(id, "buyer", OrderKind.BATCH, gpus, 0, 2, limit, gpu_hours=work, **kw)  # type: ignore[arg-type]


def test_tiny_market_known_answer() -> None:
    market = _tiny(
        [
            _batch("o1", 2000, 4, 6),
            _batch("o2", 1100, 8, 16, regions=frozenset({"r1"})),
            Order(
                "o3",
                "buyer",
                OrderKind.GANG,
                4,
                0,
                2,
                1300,
                duration_slots=2,
                gpu_classes=frozenset({"H100"}),
            ),
            _batch("o4", 400, 4, 8),
        ]
    )
    result = greedy_clear(market)
    # o1 (2000) first: cheapest cells B/0, B/1 (500), then A/0 at 1000; work 6 is then done.
    # o3 (1300, gang 4 x 2 slots in A): A/0 takes a1's last 2 and 2 of a2; A/1 4 of a1.
    # o2 (1100, region r1 = pool A): only a2 at 1200 >= 1100 is left: nothing.
    # o4 (400): below every reserve: nothing.
    got = {(a.order_id, a.pool_id, a.slot, a.gpus, a.price_fen) for a in result.allocations}
    assert got == {
        ("o1", "B", 0, 2, 2000),
        ("o1", "B", 1, 2, 2000),
        ("o1", "A", 0, 2, 2000),
        ("o3", "A", 0, 4, 1300),
        ("o3", "A", 1, 4, 1300),
    }
    fills = {(f.offer_id, f.slot, f.gpus, f.price_fen) for f in result.fills}
    assert fills == {
        ("a1", 0, 4, 1000),
        ("a2", 0, 2, 1200),
        ("a1", 1, 4, 1000),
        ("b1", 0, 2, 500),
        ("b1", 1, 2, 500),
    }
    assert result.welfare_fen == 22_400 - 12_400
    assert result.status is ClearingStatus.HEURISTIC
    assert _problems(market, result) == []
    quotes = {
        (p.pool_id, p.slot): (p.price_fen, p.cleared_gpus, p.offered_gpus) for p in result.prices
    }
    assert quotes[("A", 0)] == (1000, 6, 8)
    assert quotes[("B", 1)] == (500, 2, 2)


def test_tiny_green_minimum_is_per_cell() -> None:
    green = {"A": (0.2, 0.9), "B": (0.6, 0.4)}
    market = _tiny([_batch("o1", 2000, 4, 8, min_green_share=0.5)], green)
    result = greedy_clear(market)
    got = {(a.pool_id, a.slot, a.gpus) for a in result.allocations}
    # B/0 (500, green 0.6) then A/1 (1000, green 0.9); A/0 and B/1 are too brown.
    assert got == {("B", 0, 2), ("A", 1, 4)}
    assert _problems(market, result) == []


def test_tiny_gang_takes_cheapest_placement_or_nothing() -> None:
    gang = Order("g", "buyer", OrderKind.GANG, 2, 0, 2, 900, duration_slots=1)
    result = greedy_clear(_tiny([gang]))
    assert [(a.pool_id, a.slot, a.gpus) for a in result.allocations] == [("B", 0, 2)]
    too_big = Order("g", "buyer", OrderKind.GANG, 6, 0, 2, 1100, duration_slots=2)
    empty = greedy_clear(_tiny([too_big]))  # a1 has 4 GPUs below 1100 per slot: no fit
    assert empty.allocations == () and empty.status is ClearingStatus.EMPTY
    assert empty.welfare_fen == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batch_markets_feasible_and_below_the_optimum(seed: int) -> None:
    market = generate_market(200, 5, 12, seed)
    greedy = greedy_clear(market)
    assert _problems(market, greedy) == []
    assert greedy.welfare_fen == _welfare(market, greedy) > 0
    limits = {o.id: o.limit_fen for o in market.orders}
    assert all(a.price_fen == limits[a.order_id] for a in greedy.allocations)
    assert all(f.price_fen == f.reserve_fen for f in greedy.fills)
    engine = clear(market)
    assert engine.status is ClearingStatus.OPTIMAL
    assert greedy.welfare_fen <= engine.welfare_fen
    assert greedy.welfare_fen > 0.8 * engine.welfare_fen  # a sane baseline, not a strawman


@pytest.mark.parametrize(
    ("seed", "green", "gang_share"), [(4, True, 0.0), (5, False, 0.2), (6, True, 0.2)]
)
def test_side_constraint_markets_below_the_lp_bound(
    seed: int, green: bool, gang_share: float
) -> None:
    market = generate_market(200, 5, 12, seed, green=green, gang_share=gang_share)
    greedy = greedy_clear(market)
    assert _problems(market, greedy) == []
    assert greedy.welfare_fen == _welfare(market, greedy) > 0
    bound = solve_lp(build_model(market), integer=False).objective * market.grid.slot_hours
    assert greedy.welfare_fen <= bound + 1e-6 * abs(bound)
    green_of = dict(market.green_share)
    orders = {o.id: o for o in market.orders}
    for a in greedy.allocations:
        need = orders[a.order_id].min_green_share
        if need > 0:
            assert green_of[a.pool_id][a.slot] >= need


def test_deterministic() -> None:
    market = generate_market(200, 5, 12, 9, gang_share=0.1)
    a, b = greedy_clear(market), greedy_clear(market)
    assert (a.allocations, a.fills, a.prices, a.welfare_fen) == (
        b.allocations,
        b.fills,
        b.prices,
        b.welfare_fen,
    )
