"""A horizon longer than a year of hourly slots: a small market builds and clears."""

from __future__ import annotations

from collections import Counter

from suangu.core.clearing import clear
from suangu.core.clearing.checks import check_clearing
from suangu.core.clearing.model import build_model
from suangu.core.settlement import check_settlement, settle
from suangu.core.types import (
    ClearingStatus,
    Market,
    Offer,
    Order,
    OrderKind,
    Pool,
    Site,
    TimeGrid,
)

YEAR = 8784  # a leap year of hours


def _market(*orders: Order) -> Market:
    site = Site("s", "S", "Gansu", "gansu", 36.0, 104.0, 1.2, {})
    pools = (Pool("p", "s", "H100"), Pool("q", "s", "A800"))
    offers = (
        Offer.over("o", "prov", "p", 0, YEAR, 8, 1000),
        Offer.over("o2", "prov", "q", 0, YEAR, 4, 700),
    )
    return Market(TimeGrid(0), 0, YEAR, (site,), pools, offers, orders)


def test_a_year_of_slots_builds_and_clears() -> None:
    orders = (
        Order("a", "b", OrderKind.BATCH, gpus=8, release_slot=0, deadline_slot=YEAR,
              limit_fen=3000, gpu_hours=50_000),
        Order("c", "b", OrderKind.BATCH, gpus=4, release_slot=8000, deadline_slot=YEAR,
              limit_fen=2000, gpu_hours=3000, complete_or_nothing=True),
        Order("g", "b", OrderKind.GANG, gpus=4, release_slot=100, deadline_slot=900,
              limit_fen=2500, duration_slots=500),
        Order("s", "b", OrderKind.SERVICE, gpus=2, release_slot=4000, deadline_slot=4100,
              limit_fen=1500),
    )  # fmt: skip
    market = _market(*orders)
    model = build_model(market)
    assert model.n_slots == YEAR and model.n_pool_slots == 2 * YEAR
    result = clear(market)
    assert result.status is ClearingStatus.OPTIMAL, result.message
    assert check_clearing(market, result) == []
    assert check_settlement(market, result, settle(result)) == []
    got: Counter[str] = Counter()
    for a in result.allocations:
        got[a.order_id] += a.gpus
    # Capacity (12 GPUs a slot for a year) exceeds every order: each gets all it asks for.
    assert got == {"a": 50_000, "c": 3000, "g": 4 * 500, "s": 2 * 100}
    assert max(a.slot for a in result.allocations) < YEAR
    # Between the pool's reserve and the buyer's limit, GPU-slot by GPU-slot.
    limit = {o.id: o.limit_fen for o in orders}
    reserve = {"p": 1000, "q": 700}
    assert all(reserve[a.pool_id] <= a.price_fen <= limit[a.order_id] for a in result.allocations)
