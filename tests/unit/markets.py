"""Random small markets for property tests, and an independent reference optimum."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import strategies as st
from scipy.optimize import linprog

from suangu.core.types import Market, Offer, Order, OrderKind, Pool, Site, TimeGrid

CLASSES = ("H100-SXM-80GB", "A800-SXM-80GB", "Ascend-910B")
REGIONS = ("west", "north", "east")


@st.composite
def markets(
    draw: st.DrawFn,
    *,
    gangs: bool = False,
    green: bool = False,
    max_orders: int = 6,
    max_slots: int = 4,
) -> Market:
    n_sites = draw(st.integers(1, 3))
    sites = [
        Site(f"s{k}", f"Site {k}", f"P{k % 2}", REGIONS[k], latency_ms={"home": 5.0 * (k + 1)})
        for k in range(n_sites)
    ]
    n_pools = draw(st.integers(1, 4))
    pools = [
        Pool(f"p{k}", f"s{draw(st.integers(0, n_sites - 1))}", draw(st.sampled_from(CLASSES)))
        for k in range(n_pools)
    ]
    n_slots = draw(st.integers(1, max_slots))
    first = draw(st.integers(0, 2))
    offers = []
    for k in range(draw(st.integers(0, 5))):
        start = draw(st.integers(0, first + n_slots))
        length = draw(st.integers(1, n_slots + 1))
        offers.append(
            Offer(
                f"f{k}",
                f"prov{k % 2}",
                f"p{draw(st.integers(0, n_pools - 1))}",
                start,
                tuple(draw(st.integers(0, 5)) for _ in range(length)),
                tuple(draw(st.integers(50, 1000)) for _ in range(length)),
            )
        )
    orders = []
    kinds = [OrderKind.BATCH, OrderKind.SERVICE] + ([OrderKind.GANG] if gangs else [])
    for k in range(draw(st.integers(0, max_orders))):
        kind = draw(st.sampled_from(kinds))
        release = draw(st.integers(0, first + n_slots))
        window = draw(st.integers(1, n_slots + 1))
        gpus = draw(st.integers(1, 4))
        classes = draw(st.sets(st.sampled_from(CLASSES), max_size=2))
        regions = draw(st.sets(st.sampled_from(REGIONS[:n_sites]), max_size=2))
        latency = draw(st.sampled_from([None, None, 6.0, 12.0]))
        orders.append(
            Order(
                f"o{k}",
                f"b{k % 3}",
                kind,
                gpus,
                release,
                release + window,
                draw(st.integers(50, 1500)),
                gpu_hours=draw(st.integers(1, gpus * window)) if kind is OrderKind.BATCH else 0,
                duration_slots=draw(st.integers(1, window)) if kind is OrderKind.GANG else 0,
                gpu_classes=frozenset(classes),
                regions=frozenset(regions),
                home="home" if latency else None,
                max_latency_ms=latency,
                min_green_share=(draw(st.sampled_from([0.0, 0.0, 0.3, 0.6])) if green else 0.0),
            )
        )
    share = {}
    if green:
        for pool in pools:
            share[pool.id] = tuple(
                draw(st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0])) for _ in range(n_slots)
            )
    return Market(TimeGrid(), first, n_slots, sites, pools, offers, orders, green_share=share)


def eligible_cells(market: Market, order: Order) -> list[tuple[str, int]]:
    """(pool, slot) cells an order may use, from the rules, independently of the engine."""
    sites = {s.id: s for s in market.sites}
    out = []
    for pool in market.pools:
        site = sites[pool.site_id]
        if order.gpu_classes and pool.gpu_class not in order.gpu_classes:
            continue
        if order.regions and site.region not in order.regions:
            continue
        if order.provinces and site.province not in order.provinces:
            continue
        if order.max_latency_ms is not None and (
            site.latency_ms.get(order.home or "", float("inf")) > order.max_latency_ms
        ):
            continue
        for t in range(
            max(order.release_slot, market.first_slot), min(order.deadline_slot, market.end_slot)
        ):
            out.append((pool.id, t))
    return out


def reference_welfare(market: Market) -> float:
    """Optimum welfare by an independent route: every gang choice enumerated, and for each an
    LP over (order, pool, slot) columns solved with scipy (integral: the batch part is a
    network, green rows aside)."""
    hours = market.grid.slot_hours
    cells: dict[tuple[str, int], int] = {}
    supply: list[tuple[tuple[str, int], int, int]] = []  # cell, cap, reserve
    for offer in market.offers:
        for k, (g, r) in enumerate(zip(offer.gpus, offer.reserve_fen, strict=True)):
            t = offer.start_slot + k
            if market.first_slot <= t < market.end_slot and g > 0:
                supply.append(((offer.pool_id, t), g, r))
    for cell, _, _ in supply:
        cells.setdefault(cell, len(cells))
    gang_options = []
    divisible = []
    for order in market.orders:
        if order.kind is OrderKind.GANG:
            opts: list[tuple[tuple[str, int], ...] | None] = [None]
            by_pool: dict[str, list[int]] = {}
            for pool_id, t in eligible_cells(market, order):
                by_pool.setdefault(pool_id, []).append(t)
            for pool_id, ts in sorted(by_pool.items()):
                for t0 in ts:
                    run = tuple((pool_id, t0 + d) for d in range(order.duration_slots))
                    if all(c[1] in ts for c in run):
                        opts.append(run)
            gang_options.append((order, opts))
        else:
            divisible.append(order)
    green = market.green_share
    best = -np.inf
    for choice in itertools.product(*[opts for _, opts in gang_options]):
        used: dict[tuple[str, int], int] = {}
        value = 0.0
        for (order, _), run in zip(gang_options, choice, strict=True):
            if run is None:
                continue
            value += order.limit_fen * order.gpus * order.duration_slots * hours
            for c in run:
                used[c] = used.get(c, 0) + order.gpus
        w = _batch_lp(market, divisible, supply, used, green)
        if w is None:
            continue
        best = max(best, value + w)
    return float(best)


def _batch_lp(market, orders, supply, used, green):  # type: ignore[no-untyped-def]
    hours = market.grid.slot_hours
    cols: list[tuple[str, object, float]] = []
    for i, order in enumerate(orders):
        for cell in eligible_cells(market, order):
            cols.append(("x", (i, cell), order.limit_fen))
    for s, (cell, _, r) in enumerate(supply):
        cols.append(("y", (s, cell), -r))
    n = len(cols)
    cell_ids = sorted(
        {c for c, _, _ in supply} | set(used) | {key[1] for _, key, _ in cols}  # type: ignore[index]
    )
    a_ub, b_ub, a_eq, b_eq = [], [], [], []
    for cell in cell_ids:
        row = np.zeros(n)
        for j, (kind, key, _) in enumerate(cols):
            c = key[1]  # type: ignore[index]
            if c == cell:
                row[j] = 1.0 if kind == "x" else -1.0
        a_eq.append(row)
        b_eq.append(-used.get(cell, 0))
    for i, order in enumerate(orders):
        row = np.zeros(n)
        for j, (kind, key, _) in enumerate(cols):
            if kind == "x" and key[0] == i:  # type: ignore[index]
                row[j] = 1.0
        a_ub.append(row)
        b_ub.append(order.max_gpu_slots(hours))
        for t in range(market.first_slot, market.end_slot):
            row = np.zeros(n)
            for j, (kind, key, _) in enumerate(cols):
                if kind == "x" and key[0] == i and key[1][1] == t:  # type: ignore[index]
                    row[j] = 1.0
            if row.any():
                a_ub.append(row)
                b_ub.append(order.gpus)
        if order.min_green_share > 0:
            row = np.zeros(n)
            for j, (kind, key, _) in enumerate(cols):
                if kind == "x" and key[0] == i:  # type: ignore[index]
                    pool_id, t = key[1]  # type: ignore[index]
                    g = green.get(pool_id, (0.0,) * market.n_slots)[t - market.first_slot]
                    row[j] = order.min_green_share - g
            a_ub.append(row)
            b_ub.append(0.0)
    bounds = [(0, None)] * n
    for j, (kind, key, _) in enumerate(cols):
        if kind == "y":
            bounds[j] = (0, supply[key[0]][1])  # type: ignore[index]
    if n == 0:
        return 0.0 if not any(used.values()) else None
    res = linprog(
        -np.array([c for _, _, c in cols]),
        A_ub=np.array(a_ub) if a_ub else None,
        b_ub=np.array(b_ub) if b_ub else None,
        A_eq=np.array(a_eq) if a_eq else None,
        b_eq=np.array(b_eq) if b_eq else None,
        bounds=bounds,
        method="highs",
    )
    if res.status == 2:
        return None
    assert res.status == 0, res.message
    return -res.fun * hours
