"""The clearing model as a flow network, built in bulk from numpy arrays.

The batch market is a min-cost flow::

    S --work_i--> order i --gpus_i--> order-slot (i, t) --gpus_i, -limit_i--> pool-slot (p, t)
      pool-slot (p, t) --offer capacity, +reserve--> T            (one arc per offer and slot)
    S --------------------------------------------------------> T  (bypass: unsold work)

One unit of flow is one GPU for one slot; arc costs are fen per GPU-hour (every slot has the
same length, so the objective is welfare / slot_hours). Filters (GPU class, residency, latency,
window) decide which order-slot -> pool-slot arcs exist; arcs whose limit does not beat the
cheapest reserve of the pool-slot can never carry profitable flow and are not built (except,
for an order with a green minimum, slots greener than its minimum: they can pay for
themselves by making room for cheaper brown slots).

Gang orders are not arcs: each feasible placement (pool, first slot) is a column that a
mixed-integer program picks at most once per order. Green-share minimums are side rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from suangu.core.types import Market, Order, OrderKind, Pool, Site

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

SOURCE = 0
SINK = 1
#: A reserve price no bid beats: marks pool-slots with no capacity offered.
NO_SUPPLY = np.iinfo(np.int64).max // 4

# Arc kinds, for reading results back.
ARC_BYPASS = 0
ARC_WORK = 1  # S -> order
ARC_SLOT = 2  # order -> order-slot
ARC_BID = 3  # order-slot -> pool-slot
ARC_SUPPLY = 4  # pool-slot -> T


@dataclass(frozen=True)
class GangPlacements:
    """Candidate placements of gang orders: one row per (order, pool, first slot)."""

    order: IntArray  # index into ClearingModel.orders
    pool: IntArray  # pool index
    start: IntArray  # first slot, relative to the horizon
    gpus: IntArray
    duration: IntArray
    value: IntArray  # limit per GPU-hour (objective: value * gpus * duration)

    def __len__(self) -> int:
        return int(self.order.shape[0])


@dataclass(frozen=True)
class ClearingModel:
    """Arrays describing one clearing. Node ids: 0 = S, 1 = T, then orders, order-slots,
    pool-slots; ``ps_base + pool * n_slots + k`` is pool ``pool`` in horizon slot ``k``."""

    market: Market
    orders: tuple[Order, ...]  # divisible orders (batch, service), network order nodes
    gangs: tuple[Order, ...]
    pools: tuple[Pool, ...]
    n_slots: int
    n_nodes: int
    ps_base: int
    tail: IntArray
    head: IntArray
    cap: IntArray
    cost: IntArray
    kind: IntArray  # ARC_* per arc
    arc_order: IntArray  # order index for WORK/SLOT/BID arcs, -1 otherwise
    arc_offer: IntArray  # offer index for SUPPLY arcs, -1 otherwise
    arc_slot: IntArray  # horizon slot for SLOT/BID/SUPPLY arcs, -1 otherwise
    green: FloatArray  # green share per pool-slot node (index: node - ps_base)
    min_reserve: IntArray  # cheapest offered reserve per pool-slot, NO_SUPPLY if none
    offered: IntArray  # GPUs offered per pool-slot
    work: IntArray  # most GPU-slots each divisible order can take
    green_rows: tuple[tuple[int, IntArray, FloatArray], ...]  # (order, BID arcs, coefficients)
    placements: GangPlacements
    total_supply: int

    @property
    def n_arcs(self) -> int:
        return int(self.tail.shape[0])

    @property
    def n_pool_slots(self) -> int:
        return len(self.pools) * self.n_slots

    def pool_slot(self, node: int) -> tuple[int, int]:
        rel = node - self.ps_base
        return rel // self.n_slots, rel % self.n_slots


def _eligible_pools(order: Order, pools: tuple[Pool, ...], sites: Mapping[str, Site]) -> IntArray:
    out = []
    for p, pool in enumerate(pools):
        site = sites[pool.site_id]
        if order.gpu_classes and pool.gpu_class not in order.gpu_classes:
            continue
        if order.regions and site.region not in order.regions:
            continue
        if order.provinces and site.province not in order.provinces:
            continue
        if order.max_latency_ms is not None:
            assert order.home is not None
            latency = site.latency_ms.get(order.home)
            if latency is None or latency > order.max_latency_ms:
                continue
        out.append(p)
    return np.asarray(out, dtype=np.int64)


def _filter_key(order: Order) -> tuple[object, ...]:
    return (order.gpu_classes, order.regions, order.provinces, order.home, order.max_latency_ms)


def build_model(market: Market) -> ClearingModel:
    """Build the network and gang placements of ``market``; pure and deterministic."""
    pools = market.pools
    n_slots = market.n_slots
    first = market.first_slot
    sites = {s.id: s for s in market.sites}
    pool_index = {p.id: i for i, p in enumerate(pools)}
    n_ps = len(pools) * n_slots

    # --- supply: one arc per offer and horizon slot with GPUs offered -------------------------
    sup_node, sup_cap, sup_cost, sup_offer, sup_slot = [], [], [], [], []
    for o, offer in enumerate(market.offers):
        lo = max(offer.start_slot, first)
        hi = min(offer.end_slot, first + n_slots)
        if hi <= lo:
            continue
        ks = np.arange(lo - first, hi - first, dtype=np.int64)
        gpus = np.asarray(offer.gpus[lo - offer.start_slot : hi - offer.start_slot], np.int64)
        reserve = np.asarray(
            offer.reserve_fen[lo - offer.start_slot : hi - offer.start_slot], np.int64
        )
        keep = gpus > 0
        sup_node.append(pool_index[offer.pool_id] * n_slots + ks[keep])
        sup_cap.append(gpus[keep])
        sup_cost.append(reserve[keep])
        sup_offer.append(np.full(int(keep.sum()), o, np.int64))
        sup_slot.append(ks[keep])
    s_node = _cat(sup_node)
    s_cap = _cat(sup_cap)
    s_cost = _cat(sup_cost)
    min_reserve = np.full(n_ps, NO_SUPPLY, np.int64)
    np.minimum.at(min_reserve, s_node, s_cost)
    offered = np.bincount(s_node, weights=s_cap, minlength=n_ps).astype(np.int64)

    green = np.zeros(n_ps, np.float64)
    for pool_id, shares in market.green_share.items():
        p = pool_index[pool_id]
        green[p * n_slots : (p + 1) * n_slots] = shares

    divisible = tuple(o for o in market.orders if o.kind is not OrderKind.GANG)
    gangs = tuple(o for o in market.orders if o.kind is OrderKind.GANG)
    eligible_cache: dict[tuple[object, ...], IntArray] = {}

    def eligible(order: Order) -> IntArray:
        key = _filter_key(order)
        if key not in eligible_cache:
            eligible_cache[key] = _eligible_pools(order, pools, sites)
        return eligible_cache[key]

    # --- bids: order-slot -> pool-slot arcs, vectorised over blocks of orders -----------------
    n_orders = len(divisible)
    n_pools = len(pools)
    hours = market.grid.slot_hours
    order_base = 2
    limit = np.asarray([o.limit_fen for o in divisible], np.int64)
    gpus = np.asarray([o.gpus for o in divisible], np.int64)
    work = np.asarray([o.max_gpu_slots(hours) for o in divisible], np.int64)
    w_lo = np.asarray([max(o.release_slot, first) - first for o in divisible], np.int64)
    w_hi = np.asarray([min(o.deadline_slot, first + n_slots) - first for o in divisible], np.int64)
    min_green = np.asarray([o.min_green_share for o in divisible], np.float64)
    mask = np.zeros((n_orders, n_pools), bool)
    for i, order in enumerate(divisible):
        mask[i, eligible(order)] = True
    span = np.where((work > 0) & mask.any(axis=1), np.maximum(w_hi - w_lo, 0), 0)

    # All (order, slot) pairs, then (pair, pool) candidates in blocks to bound memory.
    pair_order = np.repeat(np.arange(n_orders, dtype=np.int64), span)
    pair_k = w_lo[pair_order] + _ranges(span)
    pool_ids = np.arange(n_pools, dtype=np.int64)
    block = max(1, 4_000_000 // max(n_pools, 1))
    kept_pair, kept_pool = [], []
    for b0 in range(0, pair_order.size, block):
        po, pk = pair_order[b0 : b0 + block], pair_k[b0 : b0 + block]
        nodes = pool_ids[None, :] * n_slots + pk[:, None]
        ok = mask[po] & (min_reserve[nodes] < limit[po][:, None])
        wants = min_green[po] > 0
        if wants.any():
            # A slot greener than the order's minimum can pay off below its reserve: it
            # makes room in the green share for cheaper brown slots.
            greener = green[nodes[wants]] > min_green[po][wants][:, None]
            supplied = min_reserve[nodes[wants]] < NO_SUPPLY
            ok[wants] |= mask[po][wants] & greener & supplied
            full = min_green[po] >= 1.0
            ok[full] &= green[nodes[full]] >= 1.0
        rr, pp = np.nonzero(ok)
        kept_pair.append(rr + b0)
        kept_pool.append(pp)
    arc_pair = _cat(kept_pair)
    arc_pool = _cat(kept_pool)
    used_pairs, os_of_arc = np.unique(arc_pair, return_inverse=True)
    os_next = order_base + n_orders
    os_node = os_next + np.arange(used_pairs.size, dtype=np.int64)
    os_next += used_pairs.size
    sl_order = pair_order[used_pairs]
    b_order = pair_order[arc_pair]
    b_slot = pair_k[arc_pair]
    target = arc_pool * n_slots + b_slot
    b_os = os_node[os_of_arc]

    green_rows = []
    wants_green = np.nonzero(min_green > 0)[0]
    if wants_green.size and b_order.size:
        starts = np.searchsorted(b_order, wants_green, side="left")
        ends = np.searchsorted(b_order, wants_green, side="right")
        for g_order, a0, a1 in zip(wants_green, starts, ends, strict=True):
            coef = green[target[a0:a1]] - min_green[g_order]
            if a1 > a0 and bool((coef < 0).any()):
                green_rows.append((int(g_order), np.arange(a0, a1, dtype=np.int64), coef))

    ps_base = os_next
    n_nodes = ps_base + n_ps
    b_ps = target + ps_base
    n_bid = b_os.size
    sl_node = os_node
    active = np.unique(sl_order)

    # Arc order: BID arcs first (so green-row arc indices above are final), then the rest.
    n_slot_arcs, n_work = sl_node.size, active.size
    tail = np.concatenate(
        [b_os, order_base + sl_order, np.full(n_work, SOURCE), [SOURCE], s_node + ps_base]
    )
    head = np.concatenate([b_ps, sl_node, order_base + active, [SINK], np.full(s_node.size, SINK)])
    total_supply = int(work[active].sum())
    cap = np.concatenate([gpus[b_order], gpus[sl_order], work[active], [total_supply], s_cap])
    cost = np.concatenate([-limit[b_order], np.zeros(n_slot_arcs + n_work + 1, np.int64), s_cost])
    kind = np.concatenate(
        [
            np.full(n_bid, ARC_BID),
            np.full(sl_node.size, ARC_SLOT),
            np.full(active.size, ARC_WORK),
            [ARC_BYPASS],
            np.full(s_node.size, ARC_SUPPLY),
        ]
    ).astype(np.int64)
    arc_order = np.concatenate([b_order, sl_order, active, [-1], np.full(s_node.size, -1)]).astype(
        np.int64
    )
    arc_offer = np.concatenate(
        [np.full(n_bid + sl_node.size + active.size + 1, -1), _cat(sup_offer)]
    ).astype(np.int64)
    arc_slot = np.concatenate(
        [b_slot, pair_k[used_pairs], np.full(active.size + 1, -1), _cat(sup_slot)]
    ).astype(np.int64)

    placements = _gang_placements(market, gangs, eligible, min_reserve, offered, green)
    return ClearingModel(
        market=market,
        orders=divisible,
        gangs=gangs,
        pools=pools,
        n_slots=n_slots,
        n_nodes=int(n_nodes),
        ps_base=int(ps_base),
        tail=tail.astype(np.int64),
        head=head.astype(np.int64),
        cap=cap.astype(np.int64),
        cost=cost.astype(np.int64),
        kind=kind,
        arc_order=arc_order,
        arc_offer=arc_offer,
        arc_slot=arc_slot,
        green=green,
        min_reserve=min_reserve,
        offered=offered,
        work=work,
        green_rows=tuple(green_rows),
        placements=placements,
        total_supply=total_supply,
    )


def _gang_placements(
    market: Market,
    gangs: tuple[Order, ...],
    eligible: object,
    min_reserve: IntArray,
    offered: IntArray,
    green: FloatArray,
) -> GangPlacements:
    first, n_slots = market.first_slot, market.n_slots
    rows: list[tuple[int, int, int, int, int, int]] = []
    for g, order in enumerate(gangs):
        lo = max(order.release_slot, first) - first
        hi = min(order.deadline_slot, first + n_slots) - first
        d = order.duration_slots
        for p in eligible(order):  # type: ignore[operator]
            base = int(p) * n_slots
            for k in range(lo, hi - d + 1):
                nodes = np.arange(base + k, base + k + d)
                if (offered[nodes] < order.gpus).any():
                    continue
                if int(min_reserve[nodes].sum()) >= order.limit_fen * d:
                    continue  # cannot beat the cheapest reserves: never profitable
                if float(green[nodes].mean()) < order.min_green_share - 1e-12:
                    continue
                rows.append((g, int(p), k, order.gpus, d, order.limit_fen))
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 6)
    return GangPlacements(*(arr[:, c].copy() for c in range(6)))


def _ranges(counts: IntArray) -> IntArray:
    """``concatenate([arange(c) for c in counts])`` without a Python loop."""
    total = int(counts.sum())
    ends = np.cumsum(counts)
    return np.arange(total, dtype=np.int64) - np.repeat(ends - counts, counts)


def _cat(parts: list[IntArray] | list[FloatArray]) -> IntArray:
    if not parts:
        return np.zeros(0, np.int64)
    return np.concatenate(parts).astype(np.int64)
