"""Random small markets for property tests, and an independent reference optimum."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import strategies as st
from scipy.optimize import linprog

from suangu.core.gpus import CATALOGUE
from suangu.core.types import Link, Market, Offer, Order, OrderKind, Pool, Site, TimeGrid

CLASSES = ("H100-SXM-80GB", "A800-SXM-80GB", "Ascend-910B")
REGIONS = ("west", "north", "east")


@st.composite
def markets(
    draw: st.DrawFn,
    *,
    gangs: bool = False,
    green: bool = False,
    network: bool = False,
    max_orders: int = 6,
    max_slots: int = 4,
) -> Market:
    """Random markets; ``network=True`` adds links between regions, input data at a home
    region, reference classes and speed overrides."""
    n_sites = draw(st.integers(2 if network else 1, 3))
    sites = [
        Site(f"s{k}", f"Site {k}", f"P{k % 2}", REGIONS[k], latency_ms={"home": 5.0 * (k + 1)})
        for k in range(n_sites)
    ]
    n_pools = draw(st.integers(1, 4))
    pools = [
        Pool(f"p{k}", f"s{draw(st.integers(0, n_sites - 1))}", draw(st.sampled_from(CLASSES)))
        for k in range(n_pools)
    ]
    n_slots = draw(st.integers(2 if network else 1, max_slots))
    first = draw(st.integers(0, 2))
    offers = []
    for k in range(draw(st.integers(2 if network else 0, 5))):
        start = draw(st.integers(first if network else 0, first + n_slots))
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
    for k in range(draw(st.integers(0, max_orders + (3 if network else 0)))):
        kind = draw(st.sampled_from(kinds))
        release = draw(st.integers(first if network else 0, first + n_slots))
        window = draw(st.integers(1, n_slots + 1))
        gpus = draw(st.integers(1, 4))
        classes = draw(st.sets(st.sampled_from(CLASSES), max_size=2))
        regions = draw(st.sets(st.sampled_from(REGIONS[:n_sites]), max_size=2))
        latency = draw(st.sampled_from([None, None, 6.0, 12.0]))
        extra: dict[str, object] = {}
        home = "home" if latency else None
        if network:
            home = draw(st.sampled_from(REGIONS))
            extra = {
                "data_gb": draw(st.sampled_from([0, 5, 5, 10, 40])),
                "reference_class": draw(st.sampled_from([None, None, "A800", "H100"])),
                "speed": draw(
                    st.sampled_from([{}, {}, {"Ascend-910B": 0.5}, {"H100": 2.0, "A800": 1.0}])
                ),
            }
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
                home=home,
                max_latency_ms=latency,
                min_green_share=(draw(st.sampled_from([0.0, 0.0, 0.3, 0.6])) if green else 0.0),
                **extra,  # type: ignore[arg-type]
            )
        )
    links = []
    if network:
        for a, b in itertools.permutations(REGIONS, 2):
            if draw(st.integers(0, 3)) > 0:
                links.append(
                    Link(
                        a,
                        b,
                        draw(st.sampled_from([2.0, 8.0, 15.0])),
                        draw(st.sampled_from([0.02, 0.05, 2.0])),
                        draw(st.sampled_from([0, 1, 5])),
                    )
                )
    share = {}
    if green:
        for pool in pools:
            share[pool.id] = tuple(
                draw(st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0])) for _ in range(n_slots)
            )
    return Market(
        TimeGrid(),
        first,
        n_slots,
        sites,
        pools,
        offers,
        orders,
        green_share=share,
        links=tuple(links),
    )


def _link(market: Market, frm: str, to: str) -> Link | None:
    return next((k for k in market.links if (k.from_region, k.to_region) == (frm, to)), None)


def speed(market: Market, order: Order, gpu_class: str) -> float:
    """Reference GPU-hours per GPU-hour of ``gpu_class``, from the rules."""
    if gpu_class in order.speed:
        return order.speed[gpu_class]
    if order.reference_class is None:
        return 1.0
    tflops = CATALOGUE[gpu_class].fp16_dense_tflops
    return tflops / CATALOGUE[order.reference_class].fp16_dense_tflops


def route(market: Market, order: Order, pool: Pool) -> tuple[bool, Link | None, int]:
    """Whether ``order`` may use ``pool``, the link its data crosses, and the delay in slots,
    from the rules (docs/market.md), independently of the engine."""
    site = next(s for s in market.sites if s.id == pool.site_id)
    if order.gpu_classes and pool.gpu_class not in order.gpu_classes:
        return False, None, 0
    if order.regions and site.region not in order.regions:
        return False, None, 0
    if order.provinces and site.province not in order.provinces:
        return False, None, 0
    home = order.home or ""
    if order.max_latency_ms is not None:
        if home in site.latency_ms:
            latency: float | None = site.latency_ms[home]
        elif home == site.region:
            latency = 0.0
        else:
            found = _link(market, home, site.region)
            latency = None if found is None else found.latency_ms
        if latency is None or latency > order.max_latency_ms:
            return False, None, 0
    if order.data_gb == 0 or home == site.region:
        return True, None, 0
    link = _link(market, home, site.region)
    if link is None:
        return False, None, 0
    seconds = order.data_gb * 8 / link.bandwidth_gbps
    return True, link, math.ceil(seconds / market.grid.slot_seconds - 1e-9)


def eligible_cells(market: Market, order: Order) -> list[tuple[str, int]]:
    """(pool, slot) cells an order may use, from the rules, independently of the engine."""
    out = []
    for pool in market.pools:
        ok, _, delay = route(market, order, pool)
        if not ok:
            continue
        for t in range(
            max(order.release_slot, market.first_slot) + delay,
            min(order.deadline_slot, market.end_slot),
        ):
            out.append((pool.id, t))
    return out


def _work(market: Market, order: Order) -> float | None:
    """Work in reference GPU-hours; None for a full-window service (counted in GPU-slots)."""
    if order.kind is OrderKind.SERVICE and order.gpu_hours == 0:
        return None
    return float(order.gpu_hours)


def reference_welfare(market: Market) -> float:
    """Optimum welfare by an independent route: every gang choice enumerated, and for each an
    LP over (order, pool, slot) columns solved with scipy (integral when the batch part is a
    network: no green rows, no link rows that bind, one speed per order)."""
    hours = market.grid.slot_hours
    pools = {p.id: p for p in market.pools}
    supply: list[tuple[tuple[str, int], int, int]] = []  # cell, cap, reserve
    for offer in market.offers:
        for k, (g, r) in enumerate(zip(offer.gpus, offer.reserve_fen, strict=True)):
            t = offer.start_slot + k
            if market.first_slot <= t < market.end_slot and g > 0:
                supply.append(((offer.pool_id, t), g, r))
    gang_options = []
    divisible = []
    for order in market.orders:
        if order.kind is OrderKind.GANG:
            opts: list[tuple[tuple[tuple[str, int], ...], float, Link | None] | None] = [None]
            by_pool: dict[str, list[int]] = {}
            for pool_id, t in eligible_cells(market, order):
                by_pool.setdefault(pool_id, []).append(t)
            for pool_id, ts in sorted(by_pool.items()):
                _, link, _ = route(market, order, pools[pool_id])
                d = max(
                    1,
                    math.ceil(
                        order.duration_slots / speed(market, order, pools[pool_id].gpu_class) - 1e-9
                    ),
                )
                worth = order.limit_fen * order.gpus * order.duration_slots * hours
                worth -= 0 if link is None else order.data_gb * link.price_fen_per_gb
                for t0 in ts:
                    run = tuple((pool_id, t0 + k) for k in range(d))
                    if all(c[1] in ts for c in run):
                        opts.append((run, float(worth), link))
            gang_options.append((order, opts))
        else:
            divisible.append(order)
    green = market.green_share
    best = -np.inf
    for choice in itertools.product(*[opts for _, opts in gang_options]):
        used: dict[tuple[str, int], int] = {}
        moved: dict[tuple[str, str], float] = {}
        value = 0.0
        for (order, _), option in zip(gang_options, choice, strict=True):
            if option is None:
                continue
            run, worth, link = option
            value += worth
            for c in run:
                used[c] = used.get(c, 0) + order.gpus
            if link is not None:
                key = (link.from_region, link.to_region)
                moved[key] = moved.get(key, 0.0) + order.data_gb
        w = _batch_lp(market, divisible, supply, used, moved, green)
        if w is None:
            continue
        best = max(best, value + w)
    return float(best)


def _batch_lp(market, orders, supply, used, moved, green):  # type: ignore[no-untyped-def]
    hours = market.grid.slot_hours
    pools = {p.id: p for p in market.pools}
    cols: list[tuple[str, object, float]] = []
    info: dict[tuple[int, tuple[str, int]], tuple[float, float, Link | None]] = {}
    for i, order in enumerate(orders):
        work = _work(market, order)
        for cell in eligible_cells(market, order):
            _, link, _ = route(market, order, pools[cell[0]])
            s = speed(market, order, pools[cell[0]].gpu_class)
            share = 1.0 / (order.gpus * order.window) if work is None else s * hours / work
            gb = order.data_gb * share if link is not None else 0.0
            fen = order.limit_fen * s * hours - (
                0.0 if link is None else gb * link.price_fen_per_gb
            )
            info[(i, cell)] = (s, gb, link)
            cols.append(("x", (i, cell), fen))
    for k, (cell, _, r) in enumerate(supply):
        cols.append(("y", (k, cell), -r * hours))
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
        work = _work(market, order)
        for j, (kind, key, _) in enumerate(cols):
            if kind == "x" and key[0] == i:  # type: ignore[index]
                row[j] = 1.0 if work is None else info[key][0] * hours  # type: ignore[index]
        a_ub.append(row)
        b_ub.append(order.max_gpu_slots(hours) if work is None else work)
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
    for link in market.links:
        key_l = (link.from_region, link.to_region)
        capacity = link.bandwidth_gbps * market.grid.slot_seconds / 8 * market.n_slots
        room = capacity - moved.get(key_l, 0.0)
        if room < -1e-9:
            return None
        row = np.zeros(n)
        for j, (kind, key, _) in enumerate(cols):
            if kind == "x":
                _, gb, via = info[key]  # type: ignore[index]
                if via is link:
                    row[j] = gb
        if row.any():
            a_ub.append(row)
            b_ub.append(room)
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
    return -res.fun


@st.composite
def network_markets(draw: st.DrawFn, *, gangs: bool = False, max_orders: int = 8) -> Market:
    """Markets built to exercise the network: buyers at home in the east with data, green
    capacity in the west and north over thin links, GPUs of several speeds."""
    sites = (
        Site("E", "East", "Shanghai", "east"),
        Site("W", "West", "Gansu", "west"),
        Site("N", "North", "Inner Mongolia", "north"),
    )
    pools = (
        Pool("e-a800", "E", "A800"),
        Pool("w-h100", "W", "H100"),
        Pool("w-910b", "W", "910B"),
        Pool("n-a800", "N", "A800"),
    )
    n_slots = draw(st.integers(3, 4))
    links = [
        Link(
            "east",
            "west",
            draw(st.sampled_from([5.0, 15.0])),
            draw(st.sampled_from([0.1, 0.2, 0.2])),
            draw(st.sampled_from([0, 1, 5])),
        )
    ]
    if draw(st.booleans()):
        links.append(Link("east", "north", 8.0, draw(st.sampled_from([0.02, 2.0])), 2))
    offers = [
        Offer(
            f"f-{pool.id}",
            f"prov-{pool.site_id}",
            pool.id,
            0,
            tuple(draw(st.integers(0, 6)) for _ in range(n_slots)),
            tuple(
                draw(st.integers(50, 1000 if pool.site_id == "E" else 400)) for _ in range(n_slots)
            ),
        )
        for pool in pools
    ]
    kinds = [OrderKind.BATCH, OrderKind.BATCH, OrderKind.SERVICE] + (
        [OrderKind.GANG] if gangs else []
    )
    orders = []
    for k in range(draw(st.integers(1, max_orders))):
        kind = draw(st.sampled_from(kinds))
        release = draw(st.sampled_from([0, 0, 1]))
        window = n_slots - release
        gpus = draw(st.integers(1, 3))
        orders.append(
            Order(
                f"o{k}",
                f"b{k % 3}",
                kind,
                gpus,
                release,
                release + window,
                draw(st.integers(100, 1500)),
                gpu_hours=draw(st.integers(1, 2 * gpus * window)) if kind is OrderKind.BATCH else 0,
                duration_slots=draw(st.integers(1, window)) if kind is OrderKind.GANG else 0,
                regions=frozenset(draw(st.sampled_from([(), (), ("east", "west")]))),
                home="east",
                max_latency_ms=draw(st.sampled_from([None, None, 10.0])),
                data_gb=draw(st.sampled_from([0, 40, 60, 80])),
                reference_class=draw(st.sampled_from([None, "A800", "H100"])),
                speed=draw(st.sampled_from([{}, {}, {"Ascend-910B": 0.5}, {"H100": 2.0}])),
            )
        )
    return Market(
        TimeGrid(), 0, n_slots, sites, pools, tuple(offers), tuple(orders), links=tuple(links)
    )
