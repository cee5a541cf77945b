"""Synthetic but realistic markets for tests and benchmarks (fully deterministic per seed).

:func:`generate_market` draws an East-Data-West-Compute market on an hourly grid (slot ``k`` is
hour ``k % 24`` of a simulated day, Beijing time):

Sites and pools
    ``ceil(n_pools / 2)`` sites, each hosting two pools of different GPU classes (the last one
    a single pool when ``n_pools`` is odd). Sites are drawn from the national computing hubs
    (Horinger and Ulanqab in Inner Mongolia, Qingyang in Gansu, Zhongwei in Ningxia, Gui'an in
    Guizhou, Chengdu-Chongqing, Zhangjiakou, the Yangtze River Delta, Shaoguan); each site has
    its own ``region`` string (``<hub>-<n>``), so residency rules pick sites; provinces repeat.
    GPU classes come from :data:`~suangu.core.gpus.CATALOGUE`, common ones (A800, 910B, H800,
    L40S, 4090) more often than rare ones.

Offers (asks)
    1-3 offers per pool, each from a different provider, over the whole horizon. The reserve
    (fen per GPU-hour) is the class's reference rental price (:data:`REFERENCE_FEN`: H100
    1,300, H800 1,250, A100 950, A800 900, 910B 800, H20 600, L40S 450, RTX 4090 300) times
    the site's level (about 0.85-0.92 in the west, 1.05-1.15 in the east: cheap power and
    land), times a provider factor (0.92-1.10), times a diurnal shape (evening peak +/- 8%,
    and in the solar-rich west up to 6% cheaper at midday). Capacity per offer is constant
    over the horizon except for maintenance dips (3% of slots at half capacity). The total
    capacity is calibrated to the demand drawn: in the hottest hours (90th percentile of the
    slots) the work of all orders, spread evenly over their windows, is
    :data:`HOT_HOUR_CONGESTION` (1.7) times the capacity. With the benchmark sizes that gives
    offers of about 30-600 GPUs.

Orders (bids), all batch unless ``gang_share > 0``
    * window: log-uniform in ``[4, n_slots]`` slots (many short jobs, a few long ones),
      release uniform so the window lies inside the horizon;
    * GPUs per slot: 85% a power of two (1, 2, 4, 8, 16), otherwise 1-16;
    * work: ``gpus x e`` GPU-hours with ``e`` log-uniform in ``[window / 4, window]`` slots, so
      a job needs 25-100% of its window (never more than ``gpus x window``); a few to a few
      hundred GPU-hours (up to a few thousand on a week horizon);
    * a reference class, drawn in proportion to the pools of each class; the limit price is
      the class's reference price times a lognormal factor (median 1.1, sigma 0.35), so about
      a third of the bids are below the reserves they face;
    * GPU-class restriction: none for 50% of orders, the reference class's tier (top: H100,
      H800; mid: A100, A800, 910B, H20; low: L40S, 4090) for 30%, the reference class alone
      for 20%;
    * residency: 30-70% of the sites (their regions) allowed, at least one of them hosting an
      allowed class.

``green=True``
    Every pool gets its site's green share per slot: a base (0.35-0.6 in the west, 0.6 for
    hydro in Guizhou, 0.1-0.25 in the east) plus solar (a midday bell scaled by a daily
    cloud factor) plus wind (a smooth random walk), clipped to [0, 1]; ~20% of orders get a
    ``min_green_share`` in 0.3-0.8 (steps of 0.05).

``gang_share > 0``
    That share of orders become gang orders: 8, 16 or 32 GPUs for 2-6 contiguous slots.

The random streams of sites, orders, offers, green attributes and gang conversion are
independent (one :class:`numpy.random.SeedSequence` child each): the ``green=True`` and
``gang_share`` variants are the same base market plus green data or gang conversion.
:data:`GENERATOR_VERSION` changes whenever the output for a seed changes (benchmark caches key
on it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from suangu.core.clearing.greedy import EligibilityCache, supply_table
from suangu.core.errors import ValidationError
from suangu.core.gpus import CATALOGUE
from suangu.core.types import Market, Offer, Order, OrderKind, Pool, Site, TimeGrid

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Bump when the markets generated for a given seed change.
GENERATOR_VERSION = 1
#: Raw demand / capacity in the hottest hours (90th percentile of slots).
HOT_HOUR_CONGESTION = 1.7

#: Reference rental prices, fen per GPU-hour (about what a GPU-hour rents for in China).
REFERENCE_FEN: dict[str, int] = {
    "H100-SXM-80GB": 1300,
    "H800-SXM-80GB": 1250,
    "A100-SXM-80GB": 950,
    "A800-SXM-80GB": 900,
    "Ascend-910B": 800,
    "H20-96GB": 600,
    "L40S": 450,
    "RTX-4090": 300,
}
#: How often each class is installed, relative.
_CLASS_WEIGHT: dict[str, float] = {
    "H100-SXM-80GB": 0.6,
    "H800-SXM-80GB": 1.0,
    "A100-SXM-80GB": 0.6,
    "A800-SXM-80GB": 1.2,
    "Ascend-910B": 1.2,
    "H20-96GB": 0.6,
    "L40S": 0.9,
    "RTX-4090": 0.9,
}
_TIER: dict[str, str] = {
    "H100-SXM-80GB": "top",
    "H800-SXM-80GB": "top",
    "A100-SXM-80GB": "mid",
    "A800-SXM-80GB": "mid",
    "Ascend-910B": "mid",
    "H20-96GB": "mid",
    "L40S": "low",
    "RTX-4090": "low",
}


@dataclass(frozen=True)
class _Hub:
    slug: str
    name: str
    province: str
    lon: float
    lat: float
    level: float  # price level relative to the national reference
    pue: float
    green_base: float
    solar: float  # solar amplitude in the green share
    wind: float  # wind amplitude in the green share

    @property
    def west(self) -> bool:
        return self.level < 1.0


_HUBS: tuple[_Hub, ...] = (
    _Hub("horinger", "Horinger", "Inner Mongolia", 111.8, 40.4, 0.86, 1.15, 0.45, 0.30, 0.35),
    _Hub("ulanqab", "Ulanqab", "Inner Mongolia", 113.1, 41.0, 0.87, 1.15, 0.40, 0.25, 0.40),
    _Hub("qingyang", "Qingyang", "Gansu", 107.6, 35.7, 0.85, 1.18, 0.40, 0.40, 0.25),
    _Hub("zhongwei", "Zhongwei", "Ningxia", 105.2, 37.5, 0.88, 1.16, 0.35, 0.45, 0.20),
    _Hub("guian", "Gui'an", "Guizhou", 106.6, 26.4, 0.92, 1.20, 0.60, 0.10, 0.05),
    _Hub("chengyu", "Chengdu-Chongqing", "Sichuan", 104.1, 30.6, 0.97, 1.25, 0.50, 0.10, 0.05),
    _Hub("zhangjiakou", "Zhangjiakou", "Hebei", 114.9, 40.8, 1.05, 1.22, 0.25, 0.20, 0.30),
    _Hub("yangtze", "Yangtze River Delta", "Anhui", 118.4, 31.3, 1.12, 1.28, 0.15, 0.10, 0.05),
    _Hub("qingpu", "Qingpu", "Shanghai", 121.1, 31.1, 1.15, 1.30, 0.10, 0.10, 0.05),
    _Hub("shaoguan", "Shaoguan", "Guangdong", 113.6, 24.8, 1.10, 1.28, 0.20, 0.15, 0.05),
)


def generate_market(
    n_orders: int,
    n_pools: int,
    n_slots: int,
    seed: int,
    *,
    green: bool = False,
    gang_share: float = 0.0,
) -> Market:
    """A random market of ``n_orders`` orders, ``n_pools`` pools and ``n_slots`` hourly slots.

    Deterministic for ``(n_orders, n_pools, n_slots, seed, green, gang_share)``; see the
    module docstring for how every field is drawn.
    """
    if not (isinstance(n_orders, int) and n_orders >= 0):
        raise ValidationError(f"must be >= 0, got {n_orders!r}", field="n_orders")
    if not (isinstance(n_pools, int) and n_pools >= 1):
        raise ValidationError(f"must be >= 1, got {n_pools!r}", field="n_pools")
    if not (isinstance(n_slots, int) and 1 <= n_slots <= 24 * 366):
        raise ValidationError(f"must be in 1..8784, got {n_slots!r}", field="n_slots")
    if not (0.0 <= gang_share <= 1.0):
        raise ValidationError(f"must be in [0, 1], got {gang_share!r}", field="gang_share")
    streams = np.random.SeedSequence(seed).spawn(5)
    rng_sites, rng_orders, rng_offers, rng_green, rng_gang = (
        np.random.default_rng(s) for s in streams
    )
    hour = np.arange(n_slots) % 24
    solar = np.clip(np.sin(np.pi * (hour - 6) / 12), 0.0, None)  # 06:00-18:00 bell

    # --- sites and pools -------------------------------------------------------------------
    n_sites = (n_pools + 1) // 2
    hub_order = rng_sites.permutation(len(_HUBS))
    hubs = [_HUBS[int(hub_order[s % len(_HUBS)])] for s in range(n_sites)]
    site_level = np.array([h.level for h in hubs]) * rng_sites.uniform(0.96, 1.04, n_sites)
    sites = tuple(
        Site(
            id=f"site-{s + 1:02d}",
            name=f"{h.name} DC {s // len(_HUBS) + 1}",
            province=h.province,
            region=f"{h.slug}-{s + 1:02d}",
            lat=h.lat,
            lon=h.lon,
            pue=h.pue,
        )
        for s, h in enumerate(hubs)
    )
    names = list(REFERENCE_FEN)
    weights = np.array([_CLASS_WEIGHT[n] for n in names])
    weights /= weights.sum()
    pool_site = np.arange(n_pools) // 2
    pool_class: list[str] = []
    for s in range(n_sites):
        k = min(2, n_pools - 2 * s)
        pool_class += [names[int(c)] for c in rng_sites.choice(len(names), k, False, weights)]
    pools = tuple(
        Pool(f"pool-{p + 1:03d}", sites[int(pool_site[p])].id, pool_class[p])
        for p in range(n_pools)
    )
    pool_level = (
        np.array([REFERENCE_FEN[c] for c in pool_class])
        * site_level[pool_site]
        * rng_sites.uniform(0.97, 1.03, n_pools)
    )

    # --- orders (batch) ----------------------------------------------------------------------
    orders_spec = _draw_orders(rng_orders, n_orders, n_slots, hubs, pool_site, pool_class)

    # --- offers, capacity calibrated to the demand ---------------------------------------------
    window = orders_spec["deadline"] - orders_spec["release"]
    per_slot = np.zeros(n_slots + 1)
    np.add.at(per_slot, orders_spec["release"], orders_spec["work"] / window)
    np.add.at(per_slot, orders_spec["deadline"], -orders_spec["work"] / window)
    demand = np.cumsum(per_slot)[:n_slots]
    hot = float(np.quantile(demand, 0.9)) if n_orders else 0.0
    capacity = max(hot / HOT_HOUR_CONGESTION, 8.0 * n_pools)
    n_offers = rng_offers.integers(1, 4, n_pools)
    pool_weight = rng_offers.lognormal(0.0, 0.4, n_pools)
    n_providers = max(3, n_sites)
    offers: list[Offer] = []
    diurnal = 1.0 + 0.08 * np.cos(2 * np.pi * (hour - 20) / 24)
    for p in range(n_pools):
        hub = hubs[int(pool_site[p])]
        shape = diurnal - (0.06 * solar if hub.west else 0.0)
        providers = rng_offers.choice(n_providers, int(n_offers[p]), replace=False)
        split = rng_offers.dirichlet(np.full(int(n_offers[p]), 2.0))
        factor = rng_offers.uniform(0.92, 1.10, int(n_offers[p]))
        for q in range(int(n_offers[p])):
            base = capacity * pool_weight[p] / pool_weight.sum() * split[q]
            gpus = np.full(n_slots, max(4, round(base)), np.int64)
            dip = rng_offers.random(n_slots) < 0.03
            gpus[dip] //= 2
            noise = rng_offers.normal(0.0, 0.01, n_slots)
            reserve = np.rint(pool_level[p] * factor[q] * shape * (1 + noise)).astype(np.int64)
            offers.append(
                Offer(
                    id=f"offer-{p + 1:03d}-{q + 1}",
                    provider_id=f"provider-{int(providers[q]) + 1:02d}",
                    pool_id=pools[p].id,
                    start_slot=0,
                    gpus=tuple(gpus.tolist()),
                    reserve_fen=tuple(np.maximum(reserve, 1).tolist()),
                )
            )

    # --- green shares and minimums -------------------------------------------------------------
    green_share: dict[str, tuple[float, ...]] = {}
    min_green = np.zeros(n_orders)
    if green:
        n_days = (n_slots + 23) // 24
        for s, hub in enumerate(hubs):
            cloud = rng_green.uniform(0.4, 1.0, n_days)[np.arange(n_slots) // 24]
            walk = np.cumsum(rng_green.normal(0.0, 0.15, n_slots))
            wind = 1 / (1 + np.exp(-(walk - walk.mean())))  # smooth, in (0, 1)
            base = hub.green_base * rng_green.uniform(0.9, 1.1)
            share = base + hub.solar * solar * cloud + hub.wind * (wind - 0.5)
            profile = tuple(np.round(np.clip(share, 0.0, 1.0), 4).tolist())
            for at_site in np.flatnonzero(pool_site == s).tolist():
                green_share[pools[at_site].id] = profile
        wants = rng_green.random(n_orders) < 0.2
        level = np.round(rng_green.uniform(0.3, 0.8, n_orders) * 20) / 20
        min_green = np.where(wants, level, 0.0)

    # --- gang conversion -------------------------------------------------------------------------
    is_gang = np.zeros(n_orders, bool)
    gang_gpus = np.zeros(n_orders, np.int64)
    gang_len = np.zeros(n_orders, np.int64)
    if gang_share > 0:
        is_gang = rng_gang.random(n_orders) < gang_share
        gang_gpus = rng_gang.choice(np.array([8, 16, 32]), n_orders)
        gang_len = np.minimum(rng_gang.integers(2, 7, n_orders), n_slots)

    orders = []
    spec = orders_spec
    for i in range(n_orders):
        release, deadline = int(spec["release"][i]), int(spec["deadline"][i])
        common: dict[str, Any] = {
            "id": f"order-{i + 1:06d}",
            "buyer_id": f"buyer-{int(spec['buyer'][i]) + 1:04d}",
            "limit_fen": int(spec["limit"][i]),
            "gpu_classes": spec["classes"][i],
            "regions": frozenset(sites[s].region for s in spec["sites"][i]),
            "min_green_share": float(min_green[i]),
        }
        if is_gang[i]:
            d = int(gang_len[i])
            if deadline - release < d:  # widen the window to fit the gang
                release = min(release, n_slots - d)
                deadline = release + d
            orders.append(
                Order(
                    kind=OrderKind.GANG,
                    gpus=int(gang_gpus[i]),
                    release_slot=release,
                    deadline_slot=deadline,
                    duration_slots=d,
                    **common,
                )
            )
        else:
            orders.append(
                Order(
                    kind=OrderKind.BATCH,
                    gpus=int(spec["gpus"][i]),
                    release_slot=release,
                    deadline_slot=deadline,
                    gpu_hours=int(spec["work"][i]),
                    **common,
                )
            )

    return Market(
        grid=TimeGrid(),
        first_slot=0,
        n_slots=n_slots,
        sites=sites,
        pools=pools,
        offers=tuple(offers),
        orders=tuple(orders),
        green_share=green_share,
    )


def _draw_orders(
    rng: np.random.Generator,
    n: int,
    n_slots: int,
    hubs: list[_Hub],
    pool_site: IntArray,
    pool_class: list[str],
) -> dict[str, Any]:
    """Vectorised draws of the batch orders' fields (see the module docstring)."""
    w_min = min(4, n_slots)
    window = np.rint(np.exp(rng.uniform(math.log(w_min), math.log(n_slots), n))).astype(np.int64)
    window = np.clip(window, w_min, n_slots)
    release = np.floor(rng.random(n) * (n_slots - window + 1)).astype(np.int64)
    release = np.minimum(release, n_slots - window)
    powers = rng.choice(np.array([1, 2, 4, 8, 16]), n, p=[0.25, 0.25, 0.2, 0.2, 0.1])
    gpus = np.where(rng.random(n) < 0.85, powers, rng.integers(1, 17, n)).astype(np.int64)
    e_lo = np.log(np.maximum(1.0, window / 4))
    effective = np.exp(e_lo + rng.random(n) * (np.log(window) - e_lo))
    work = np.clip(np.rint(gpus * effective), 1, gpus * window).astype(np.int64)

    present = sorted(set(pool_class), key=list(REFERENCE_FEN).index)
    counts = np.array([pool_class.count(c) for c in present], np.float64)
    ref = rng.choice(len(present), n, p=counts / counts.sum())
    factor = rng.lognormal(math.log(1.1), 0.35, n)
    ref_fen = np.array([REFERENCE_FEN[c] for c in present])[ref]
    limit = np.clip(np.rint(ref_fen * factor), 1, 10_000_000).astype(np.int64)
    restrict = rng.random(n)
    share = rng.uniform(0.3, 0.7, n)
    n_sites = len(hubs)
    site_classes = [{pool_class[p] for p in np.flatnonzero(pool_site == s)} for s in range(n_sites)]
    classes: list[frozenset[str]] = []
    allowed_sites: list[list[int]] = []
    for i in range(n):
        ref_class = present[int(ref[i])]
        if restrict[i] < 0.5:
            allowed = frozenset[str]()
        elif restrict[i] < 0.8:
            allowed = frozenset(c for c in CATALOGUE if _TIER.get(c) == _TIER[ref_class])
        else:
            allowed = frozenset({ref_class})
        k = max(1, round(share[i] * n_sites))
        chosen = [int(s) for s in rng.choice(n_sites, k, replace=False)]
        if allowed and not any(site_classes[s] & allowed for s in chosen):
            hosts = [s for s in range(n_sites) if site_classes[s] & allowed]
            chosen[int(rng.integers(k))] = hosts[int(rng.integers(len(hosts)))]
        classes.append(allowed)
        allowed_sites.append(sorted(set(chosen)))
    return {
        "release": release,
        "deadline": release + window,
        "gpus": gpus,
        "work": work,
        "limit": limit,
        "classes": classes,
        "sites": allowed_sites,
        "buyer": rng.integers(0, max(1, n // 25), n),
    }


def market_stats(market: Market) -> dict[str, Any]:
    """Sizes of a market for reports.

    ``candidate_columns``: (order, pool, slot) triples of the batch and service orders that
    pass the filters (class, residency, provinces, latency, window inside the horizon);
    ``profitable_columns``: those whose limit beats the cheapest reserve of the pool-slot (what
    the clearing keeps); ``gang_placements``: (gang, pool, first slot) candidates;
    ``hot_hour_ratio``: 90th percentile over slots of (work spread evenly over windows) /
    GPUs offered; ``bids_below_reserve``: share of orders whose limit is at or below the
    cheapest reserve of every cell they may use.
    """
    table = supply_table(market)
    min_res = table.min_reserve
    offered = table.offered
    eligible = EligibilityCache(market)
    first, end, n_slots = market.first_slot, market.end_slot, market.n_slots
    hours = market.grid.slot_hours
    candidates = profitable = placements = below = 0
    demand = np.zeros(n_slots + 1)
    kinds = {k: 0 for k in OrderKind}
    for order in market.orders:
        kinds[order.kind] += 1
        lo = max(order.release_slot, first) - first
        hi = min(order.deadline_slot, end) - first
        if hi <= lo:
            below += 1
            continue
        ps = eligible(order)
        cells = min_res[ps, lo:hi]
        beats = int((cells < order.limit_fen).sum())
        below += int(beats == 0)
        gpu_slots = order.max_gpu_slots(hours)
        demand[lo] += gpu_slots / (hi - lo)
        demand[hi] -= gpu_slots / (hi - lo)
        if order.kind is OrderKind.GANG:
            placements += ps.size * max(0, hi - lo - order.duration_slots + 1)
        else:
            candidates += ps.size * (hi - lo)
            profitable += beats
    per_slot_demand = np.cumsum(demand)[:n_slots]
    per_slot_cap = offered.sum(axis=0).astype(np.float64)
    ratio = per_slot_demand / np.maximum(per_slot_cap, 1.0)
    return {
        "orders": len(market.orders),
        "batch_orders": kinds[OrderKind.BATCH],
        "gang_orders": kinds[OrderKind.GANG],
        "service_orders": kinds[OrderKind.SERVICE],
        "green_orders": sum(o.min_green_share > 0 for o in market.orders),
        "sites": len(market.sites),
        "pools": len(market.pools),
        "offers": len(market.offers),
        "slots": n_slots,
        "candidate_columns": candidates,
        "profitable_columns": profitable,
        "gang_placements": placements,
        "capacity_gpu_slots": int(offered.sum()),
        "demand_gpu_slots": int(sum(o.max_gpu_slots(hours) for o in market.orders)),
        "hot_hour_ratio": float(np.quantile(ratio, 0.9)) if n_slots else 0.0,
        "bids_below_reserve": below / max(1, len(market.orders)),
    }


__all__ = ["GENERATOR_VERSION", "REFERENCE_FEN", "generate_market", "market_stats"]
