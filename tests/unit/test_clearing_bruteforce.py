"""Exact optima on tiny markets, checked against plain enumeration of every allocation."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from suangu.core.clearing import clear
from suangu.core.clearing.checks import check_clearing
from suangu.core.types import (
    ClearingStatus,
    Link,
    Market,
    Offer,
    Order,
    OrderKind,
    Pool,
    Site,
    TimeGrid,
)
from tests.unit.markets import eligible_cells, route, speed


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


# --- with a network: data over a thin link, transfer costs and delays, class speeds -----


@st.composite
def tiny_network_markets(draw: st.DrawFn) -> Market:
    sites = (Site("a", "A", "P", "west"), Site("b", "B", "Q", "east"))
    pools = (Pool("pa", "a", "H100"), Pool("pb", "b", "A800"))
    n_slots = draw(st.integers(2, 3))
    link = Link("east", "west", 5.0, 0.1, draw(st.sampled_from([0, 3])))  # 45 GB per slot
    offers = tuple(
        Offer(
            f"f{k}",
            f"prov{k}",
            pool.id,
            0,
            tuple(draw(st.integers(0, 2)) for _ in range(n_slots)),
            tuple(draw(st.integers(100, 900)) for _ in range(n_slots)),
        )
        for k, pool in enumerate(pools)
    )
    orders = []
    for k in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from([OrderKind.BATCH, OrderKind.BATCH, OrderKind.GANG]))
        gpus = draw(st.integers(1, 2))
        fast = draw(st.booleans())
        orders.append(
            Order(
                f"o{k}",
                f"b{k}",
                kind,
                gpus,
                0,
                n_slots,
                draw(st.integers(100, 1200)),
                gpu_hours=draw(st.integers(1, 2 * gpus * n_slots))
                if kind is OrderKind.BATCH
                else 0,
                duration_slots=draw(st.integers(1, n_slots - 1)) if kind is OrderKind.GANG else 0,
                home="east",
                data_gb=draw(st.sampled_from([0, 20, 40, 70])),
                reference_class="A800" if fast else None,
                speed={"H100": 2.0} if fast else {},
            )
        )
    return Market(TimeGrid(), 0, n_slots, sites, pools, offers, tuple(orders), links=(link,))


def brute_force_network_welfare(market: Market) -> float:
    """Every whole-GPU allocation that keeps every rule, by enumeration (float welfare)."""
    pools = {p.id: p for p in market.pools}
    (link,) = market.links
    capacity = link.bandwidth_gbps * 3600 / 8 * market.n_slots
    supply: dict[tuple[str, int], list[int]] = {}
    for offer in market.offers:
        for k, (g, r) in enumerate(zip(offer.gpus, offer.reserve_fen, strict=True)):
            supply.setdefault((offer.pool_id, offer.start_slot + k), []).extend([r] * g)
    choices = []
    for order in market.orders:
        cells = eligible_cells(market, order)
        options: list[tuple[dict[tuple[str, int], int], float, float]] = []  # alloc, value, GB
        if order.kind is OrderKind.GANG:
            options.append(({}, 0.0, 0.0))
            for pool in market.pools:
                _, via, _ = route(market, order, pool)
                d = max(1, math.ceil(order.duration_slots / speed(market, order, pool.gpu_class)))
                gb = float(order.data_gb) if via else 0.0
                worth = (
                    order.limit_fen * order.gpus * order.duration_slots - gb * link.price_fen_per_gb
                )
                for t0 in range(market.n_slots):
                    run = [(pool.id, t0 + j) for j in range(d)]
                    if all(c in cells for c in run):
                        options.append(({c: order.gpus for c in run}, worth, gb))
        else:
            for amounts in itertools.product(range(order.gpus + 1), repeat=len(cells)):
                alloc = {c: a for c, a in zip(cells, amounts, strict=True) if a}
                per_slot: dict[int, int] = {}
                work = value = gb = 0.0
                for (pool_id, t), a in alloc.items():
                    per_slot[t] = per_slot.get(t, 0) + a
                    s = speed(market, order, pools[pool_id].gpu_class)
                    _, via, _ = route(market, order, pools[pool_id])
                    moved = order.data_gb * s / order.gpu_hours if via else 0.0
                    work += s * a
                    value += (order.limit_fen * s - moved * link.price_fen_per_gb) * a
                    gb += moved * a
                if work <= order.gpu_hours + 1e-9 and all(
                    v <= order.gpus for v in per_slot.values()
                ):
                    options.append((alloc, value, gb))
        choices.append(options)
    best = 0.0
    for combo in itertools.product(*choices):
        used: dict[tuple[str, int], int] = {}
        value = sum(v for _, v, _ in combo)
        if sum(g for _, _, g in combo) > capacity + 1e-9:
            continue
        for alloc, _, _ in combo:
            for cell, a in alloc.items():
                used[cell] = used.get(cell, 0) + a
        cost = 0
        for cell, a in used.items():
            reserves = sorted(supply.get(cell, []))
            if a > len(reserves):
                break
            cost += sum(reserves[:a])
        else:
            best = max(best, value - cost)
    return best


@settings(max_examples=120, deadline=None)
@given(tiny_network_markets())
def test_network_clearing_against_brute_force(market: Market) -> None:
    result = clear(market)
    assert check_clearing(market, result) == []
    best = brute_force_network_welfare(market)
    # Values are kept to 1/100 fen per GPU-hour, rounded down, and welfare to whole fen.
    slack = 0.01 * sum(o.gpus * market.n_slots for o in market.orders) + 1.0
    assert result.welfare_fen <= best + 1e-6
    exact = result.method == "network" or (result.method == "mip" and result.gap == 0.0)
    if exact and not result.rejected_gangs and result.status is ClearingStatus.OPTIMAL:
        assert result.welfare_fen >= best - slack
