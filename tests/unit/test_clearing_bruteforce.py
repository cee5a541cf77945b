"""Exact optima on tiny markets, checked against plain enumeration of every allocation."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from suangu.core.clearing import clear
from suangu.core.types import Market, Offer, Order, OrderKind, Pool, Site, TimeGrid
from tests.unit.markets import eligible_cells


@st.composite
def tiny_markets(draw: st.DrawFn) -> Market:
    sites = (Site("a", "A", "P", "west"), Site("b", "B", "Q", "east"))
    pools = (Pool("pa", "a", "H100"), Pool("pb", "b", "A800"))
    n_slots = draw(st.integers(1, 2))
    offers = tuple(
        Offer(
            f"f{k}",
            f"prov{k}",
            draw(st.sampled_from(["pa", "pb"])),
            0,
            tuple(draw(st.integers(0, 2)) for _ in range(n_slots)),
            tuple(draw(st.integers(100, 900)) for _ in range(n_slots)),
        )
        for k in range(draw(st.integers(1, 3)))
    )
    orders = []
    for k in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from([OrderKind.BATCH, OrderKind.GANG]))
        gpus = draw(st.integers(1, 2))
        orders.append(
            Order(
                f"o{k}",
                f"b{k}",
                kind,
                gpus,
                0,
                n_slots,
                draw(st.integers(100, 1200)),
                gpu_hours=draw(st.integers(1, gpus * n_slots)) if kind is OrderKind.BATCH else 0,
                duration_slots=draw(st.integers(1, n_slots)) if kind is OrderKind.GANG else 0,
                regions=frozenset(draw(st.sets(st.sampled_from(["west", "east"]), max_size=1))),
            )
        )
    return Market(TimeGrid(), 0, n_slots, sites, pools, offers, tuple(orders))


def brute_force_welfare(market: Market) -> int:
    """Try every whole-GPU allocation; supply each cell from its cheapest offers."""
    supply: dict[tuple[str, int], list[int]] = {}
    for offer in market.offers:
        for k, (g, r) in enumerate(zip(offer.gpus, offer.reserve_fen, strict=True)):
            supply.setdefault((offer.pool_id, offer.start_slot + k), []).extend([r] * g)
    choices = []
    for order in market.orders:
        cells = eligible_cells(market, order)
        if order.kind is OrderKind.GANG:
            runs: list[dict[tuple[str, int], int]] = [{}]
            for pool in market.pools:
                for t0 in range(market.n_slots - order.duration_slots + 1):
                    run = [(pool.id, t0 + d) for d in range(order.duration_slots)]
                    if all(c in cells for c in run):
                        runs.append({c: order.gpus for c in run})
            choices.append(runs)
        else:
            options = []
            for amounts in itertools.product(range(order.gpus + 1), repeat=len(cells)):
                alloc = {c: a for c, a in zip(cells, amounts, strict=True) if a}
                per_slot: dict[int, int] = {}
                for (_, t), a in alloc.items():
                    per_slot[t] = per_slot.get(t, 0) + a
                if sum(alloc.values()) <= order.gpu_hours and all(
                    v <= order.gpus for v in per_slot.values()
                ):
                    options.append(alloc)
            choices.append(options)
    best = 0
    for combo in itertools.product(*choices):
        used: dict[tuple[str, int], int] = {}
        value = 0
        for order, alloc in zip(market.orders, combo, strict=True):
            for cell, a in alloc.items():
                used[cell] = used.get(cell, 0) + a
                value += order.limit_fen * a
        cost = 0
        for cell, a in used.items():
            reserves = sorted(supply.get(cell, []))
            if a > len(reserves):
                break
            cost += sum(reserves[:a])
        else:
            best = max(best, value - cost)
    return best


@settings(max_examples=120)
@given(tiny_markets())
def test_clearing_finds_the_brute_force_optimum(market: Market) -> None:
    result = clear(market)
    best = brute_force_welfare(market)
    if result.rejected_gangs:  # paradoxical rejection may give up welfare, never gain it
        assert result.welfare_fen <= best
    else:
        assert result.welfare_fen == best
