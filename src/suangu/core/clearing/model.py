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
mixed-integer program picks at most once per order.

Networks and speeds (see :mod:`suangu.core.network`): an arc's value per GPU-hour is
``limit * speed(class) - transfer cost per GPU-hour`` away from home, and the order-slot ->
pool-slot arcs of a pool start only after the order's data transfer delay. Values that are not
whole fen are scaled by :data:`FINE_SCALE` (costs in 1/100 fen, rounded down so that no buyer
is ever priced above its value); ``ClearingModel.scale`` says which. A market with reserves
finer than a fen (``Market.reserve_mfen``, a carbon price's) is costed in milli-fen divided by
the horizon's slots (:func:`cost_scale`): its supply arcs cost their exact milli-fen, and its
time preference is one such unit per slot of delay (per placement for a gang), so that the
whole preference over the horizon stays below one milli-fen, under any difference in reserves.

Side rows (``coef @ x <= rhs`` over BID arcs and gang placements), each checked against the
network optimum first and only solved as rows when it breaks one:

* green-share minimums: ``sum (min_green - green[p,t]) * x <= 0``;
* work of an order whose eligible classes differ in speed: ``sum speed * slot_hours * x <=
  work_hours`` (its network work arc allows the most GPU-slots at its slowest class);
* link bandwidth: GB moved per GPU-slot over each link ``<= bandwidth x horizon``, built only
  when the orders that could use the link hold more data than it can carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from suangu.core.network import PoolTerms, latency_ms, links_by_key, pool_terms, work_hours
from suangu.core.types import MILLI, Link, Market, Order, OrderKind, Pool, Site

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

#: Cost scale of markets with speeds or transfer costs (1/100 fen); 1 elsewhere.
FINE_SCALE = 100

# Side-row kinds.
ROW_GREEN = 0
ROW_WORK = 1
ROW_LINK = 2


@dataclass(frozen=True)
class GangPlacements:
    """Candidate placements of gang orders: one row per (order, pool, first slot)."""

    order: IntArray  # index into ClearingModel.orders
    pool: IntArray  # pool index
    start: IntArray  # first slot, relative to the horizon
    gpus: IntArray
    duration: IntArray
    value: IntArray  # objective value of the whole placement (scaled, net of transfer cost)
    link: IntArray  # index into market.links of the data's link, -1 at home
    gb: FloatArray  # GB the placement moves over its link
    #: The time-preference charge already taken off ``value`` (scaled; not welfare).
    delay: IntArray

    def __len__(self) -> int:
        return int(self.order.shape[0])


@dataclass(frozen=True)
class SideRows:
    """Rows ``matrix @ bids + pl_matrix @ placements <= rhs`` beside the network."""

    matrix: sp.csr_matrix  # rows x BID arcs
    pl_matrix: sp.csr_matrix  # rows x gang placements
    rhs: FloatArray
    kind: IntArray  # ROW_*
    link: IntArray  # link index of ROW_LINK rows, -1 otherwise
    order: IntArray  # divisible order of ROW_GREEN / ROW_WORK rows, -1 otherwise

    def __len__(self) -> int:
        return int(self.rhs.shape[0])


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
    side: SideRows
    held: IntArray  # divisible orders with a BID arc in some side row (sorted)
    arc_link: IntArray  # per BID arc: link index of the data it moves, -1 at home
    arc_gb: FloatArray  # per BID arc: GB moved per GPU-slot
    arc_speed: FloatArray  # per BID arc: reference GPU-hours per GPU-hour
    #: per BID arc: the time-preference charge in its cost (scaled; ``Market.delay_fen``),
    #: added back when welfare is reported.
    arc_delay: IntArray
    placements: GangPlacements
    total_supply: int
    scale: int  # arc costs are fen per GPU-hour times this

    @property
    def n_arcs(self) -> int:
        return int(self.tail.shape[0])

    @property
    def n_pool_slots(self) -> int:
        return len(self.pools) * self.n_slots

    def pool_slot(self, node: int) -> tuple[int, int]:
        rel = node - self.ps_base
        return rel // self.n_slots, rel % self.n_slots


def _plain(order: Order) -> bool:
    """No data, no reference class, no speed overrides: today's order."""
    return order.data_gb == 0 and order.reference_class is None and not order.speed


@dataclass(frozen=True)
class _Eligible:
    """Pools an order may use (indices) and its terms in each."""

    pools: IntArray
    terms: tuple[PoolTerms, ...]


def _eligible_pools(
    market: Market,
    order: Order,
    pools: tuple[Pool, ...],
    sites: Mapping[str, Site],
    links: Mapping[tuple[str, str], Link],
) -> _Eligible:
    if _plain(order):  # today's filters only: no data, speed 1 (fast path)
        plain = PoolTerms(1.0, 0, None, 0.0, order.duration_slots)
        out = [
            p for p, pool in enumerate(pools) if _passes(order, pool, sites[pool.site_id], links)
        ]
        return _Eligible(np.asarray(out, np.int64), (plain,) * len(out))
    found = []
    for p, pool in enumerate(pools):
        terms = pool_terms(market, order, pool, sites[pool.site_id], links)
        if terms is not None:
            found.append((p, terms))
    return _Eligible(np.asarray([p for p, _ in found], np.int64), tuple(t for _, t in found))


def _passes(order: Order, pool: Pool, site: Site, links: Mapping[tuple[str, str], Link]) -> bool:
    """GPU class, residency and latency (what a plain order's eligibility depends on)."""
    if order.gpu_classes and pool.gpu_class not in order.gpu_classes:
        return False
    if pool.id in order.avoid_pools:
        return False
    if order.regions and site.region not in order.regions:
        return False
    if order.provinces and site.province not in order.provinces:
        return False
    if order.max_latency_ms is not None:
        lat = latency_ms(site, order.home or "", links)
        return lat is not None and lat <= order.max_latency_ms
    return True


def _filter_key(order: Order) -> tuple[object, ...]:
    key = (
        order.gpu_classes,
        order.regions,
        order.provinces,
        order.home,
        order.max_latency_ms,
        order.duration_slots,  # a gang's duration on each class
        order.avoid_pools,
    )
    if _plain(order):
        return key
    # Terms also depend on data, speeds and the work's shape.
    shape = (order.kind, order.gpus, order.gpu_hours, order.window, order.duration_slots)
    speeds = tuple(sorted(order.speed.items()))
    return (*key, order.data_gb, order.reference_class, speeds, shape)


def cost_scale(market: Market) -> int:
    """Cost units per fen of ``market``'s model: 1 (whole fen), :data:`FINE_SCALE` (speeds
    or transfer costs), or with milli-fen reserves ``MILLI * n_slots`` (a time preference of
    one unit per slot stays below a milli-fen over the whole horizon)."""
    if market.reserve_mfen:
        return MILLI * market.n_slots
    return 1 if all(_plain(o) for o in market.orders) else FINE_SCALE


def build_model(market: Market) -> ClearingModel:
    """Build the network and gang placements of ``market``; pure and deterministic."""
    pools = market.pools
    n_slots = market.n_slots
    first = market.first_slot
    sites = {s.id: s for s in market.sites}
    pool_index = {p.id: i for i, p in enumerate(pools)}
    n_ps = len(pools) * n_slots
    scale = cost_scale(market)
    fine = bool(market.reserve_mfen)
    #: the time preference per slot of delay, in cost units
    tie = (1 if market.delay_fen else 0) if fine else market.delay_fen * scale
    link_index = {link.key: k for k, link in enumerate(market.links)}
    links = links_by_key(market)

    # --- supply: one arc per offer and horizon slot with GPUs offered -------------------------
    sup_node, sup_cap, sup_cost, sup_offer, sup_slot = [], [], [], [], []
    sup_fine = []  # supply arc costs in cost units (exact milli-fen where given)
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
        mfen = market.reserve_mfen.get(offer.id)
        if mfen is None:
            sup_fine.append(reserve[keep] * scale)
        else:
            exact = np.asarray(mfen[lo - offer.start_slot : hi - offer.start_slot], np.int64)
            sup_fine.append(exact[keep] * (scale // MILLI))
        sup_offer.append(np.full(int(keep.sum()), o, np.int64))
        sup_slot.append(ks[keep])
    s_node = _cat(sup_node)
    s_cap = _cat(sup_cap)
    s_cost = _cat(sup_cost)
    min_reserve = np.full(n_ps, NO_SUPPLY, np.int64)
    np.minimum.at(min_reserve, s_node, s_cost)
    offered = np.bincount(s_node, weights=s_cap, minlength=n_ps).astype(np.int64)
    scaled_reserve = np.where(min_reserve >= NO_SUPPLY, NO_SUPPLY, min_reserve * scale)

    green = np.zeros(n_ps, np.float64)
    for pool_id, shares in market.green_share.items():
        p = pool_index[pool_id]
        green[p * n_slots : (p + 1) * n_slots] = shares

    divisible = tuple(o for o in market.orders if o.kind is not OrderKind.GANG)
    gangs = tuple(o for o in market.orders if o.kind is OrderKind.GANG)
    eligible_cache: dict[tuple[object, ...], _Eligible] = {}

    def eligible(order: Order) -> _Eligible:
        key = _filter_key(order)
        if key not in eligible_cache:
            eligible_cache[key] = _eligible_pools(market, order, pools, sites, links)
        return eligible_cache[key]

    # --- per (order, pool): eligibility, earliest slot, value, data moved ----------------------
    n_orders = len(divisible)
    n_pools = len(pools)
    hours = market.grid.slot_hours
    order_base = 2
    limit = np.asarray([o.limit_fen for o in divisible], np.int64)
    gpus = np.asarray([o.gpus for o in divisible], np.int64)
    w_lo = np.asarray([max(o.release_slot, first) - first for o in divisible], np.int64)
    w_hi = np.asarray([min(o.deadline_slot, first + n_slots) - first for o in divisible], np.int64)
    min_green = np.asarray([o.min_green_share for o in divisible], np.float64)
    mask = np.zeros((n_orders, n_pools), bool)
    earliest = np.repeat(w_lo[:, None], n_pools, axis=1)
    value = np.repeat((limit * scale)[:, None], n_pools, axis=1)
    gb_m = np.zeros((n_orders, n_pools), np.float64)
    link_m = np.full((n_orders, n_pools), -1, np.int64)
    speed_m = np.ones((n_orders, n_pools), np.float64)
    work = np.zeros(n_orders, np.int64)
    work_rows: list[tuple[int, float]] = []  # (order, work in reference GPU-hours)
    for i, order in enumerate(divisible):
        el = eligible(order)
        if not el.pools.size:
            continue
        ps_ = el.pools
        mask[i, ps_] = True
        if _plain(order):
            work[i] = order.max_gpu_slots(hours)
            continue
        speeds = np.asarray([t.speed for t in el.terms])
        earliest[i, ps_] += np.asarray([t.delay_slots for t in el.terms], np.int64)
        speed_m[i, ps_] = speeds
        gb_m[i, ps_] = [t.gb_per_gpu_slot for t in el.terms]
        link_m[i, ps_] = [-1 if t.link is None else link_index[t.link.key] for t in el.terms]
        transfer = np.asarray([t.transfer_fen_per_gpu_slot for t in el.terms]) / hours
        fen = order.limit_fen * speeds - transfer  # value per GPU-hour
        value[i, ps_] = np.floor(fen * scale + 1e-9).astype(np.int64)
        full = order.gpus * order.window
        if order.kind is OrderKind.SERVICE and order.gpu_hours == 0:
            work[i] = full
            continue
        w_ref = work_hours(order, hours)
        most = int(np.floor(w_ref / (float(speeds.min()) * hours) + 1e-9))
        if order.kind is OrderKind.SERVICE:
            most = min(most, full)
        work[i] = most
        if float(speeds.max()) * hours * most > w_ref + 1e-9:
            work_rows.append((i, w_ref))
    mask &= earliest < w_hi[:, None]
    mask &= value > 0
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
        started = mask[po] & (earliest[po] <= pk[:, None])
        ok = started & (scaled_reserve[nodes] < value[po])
        wants = min_green[po] > 0
        if wants.any():
            # A slot greener than the order's minimum can pay off below its reserve: it
            # makes room in the green share for cheaper brown slots.
            greener = green[nodes[wants]] > min_green[po][wants][:, None]
            supplied = min_reserve[nodes[wants]] < NO_SUPPLY
            ok[wants] |= started[wants] & greener & supplied
            full_green = min_green[po] >= 1.0
            ok[full_green] &= green[nodes[full_green]] >= 1.0
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
    # Time preference: each slot after the order's first possible one costs delay_fen per
    # GPU-hour, so equally good slots go to the earliest (work-conserving over the horizon).
    b_delay = tie * (b_slot - w_lo[b_order])
    b_value = value[b_order, arc_pool] - b_delay
    arc_link = link_m[b_order, arc_pool]
    arc_gb = gb_m[b_order, arc_pool]
    arc_speed = speed_m[b_order, arc_pool]

    ps_base = os_next
    n_nodes = ps_base + n_ps
    b_ps = target + ps_base
    n_bid = b_os.size
    sl_node = os_node
    active = np.unique(sl_order)

    # Arc order: BID arcs first (so side-row arc indices are final), then the rest.
    n_slot_arcs, n_work = sl_node.size, active.size
    tail = np.concatenate(
        [b_os, order_base + sl_order, np.full(n_work, SOURCE), [SOURCE], s_node + ps_base]
    )
    head = np.concatenate([b_ps, sl_node, order_base + active, [SINK], np.full(s_node.size, SINK)])
    total_supply = int(work[active].sum())
    cap = np.concatenate(
        [gpus[b_order], gpus[sl_order], work[active], np.asarray([total_supply]), s_cap]
    )
    s_fine = _cat(sup_fine)
    cost = np.concatenate([-b_value, np.zeros(n_slot_arcs + n_work + 1, np.int64), s_fine])
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

    placements = _gang_placements(
        market, gangs, eligible, min_reserve, offered, green, scale, link_index
    )
    side = _side_rows(
        market,
        divisible,
        b_order,
        target,
        arc_link,
        arc_gb,
        arc_speed,
        min_green,
        green,
        work_rows,
        placements,
    )
    held_arcs = np.unique(side.matrix.indices) if len(side) else np.zeros(0, np.int64)
    held = np.unique(b_order[held_arcs]).astype(np.int64)
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
        side=side,
        held=held,
        arc_link=arc_link.astype(np.int64),
        arc_gb=arc_gb.astype(np.float64),
        arc_speed=arc_speed.astype(np.float64),
        arc_delay=b_delay.astype(np.int64),
        placements=placements,
        total_supply=total_supply,
        scale=scale,
    )


def _side_rows(
    market: Market,
    divisible: tuple[Order, ...],
    b_order: IntArray,
    target: IntArray,
    arc_link: IntArray,
    arc_gb: FloatArray,
    arc_speed: FloatArray,
    min_green: FloatArray,
    green: FloatArray,
    work_rows: list[tuple[int, float]],
    placements: GangPlacements,
) -> SideRows:
    """Green, work and link rows (``<=`` form); see the module docstring."""
    hours = market.grid.slot_hours
    rows: list[tuple[IntArray, FloatArray, IntArray, FloatArray, float, int, int, int]] = []
    no_pl = np.zeros(0, np.int64)
    no_coef = np.zeros(0, np.float64)

    def arcs_of(i: int) -> IntArray:
        a0 = int(np.searchsorted(b_order, i, side="left"))
        a1 = int(np.searchsorted(b_order, i, side="right"))
        return np.arange(a0, a1, dtype=np.int64)

    for g_order in np.nonzero(min_green > 0)[0].tolist():
        arcs = arcs_of(g_order)
        coef = min_green[g_order] - green[target[arcs]]
        if arcs.size and bool((coef > 0).any()):
            rows.append((arcs, coef, no_pl, no_coef, 0.0, ROW_GREEN, -1, g_order))
    for i, w_ref in work_rows:
        arcs = arcs_of(i)
        if arcs.size:
            coef = arc_speed[arcs] * hours
            rows.append((arcs, coef, no_pl, no_coef, w_ref, ROW_WORK, -1, i))
    data = np.asarray([o.data_gb for o in divisible], np.float64)
    for k, link in enumerate(market.links):
        arcs = np.nonzero(arc_link == k)[0]
        pls = np.nonzero(placements.link == k)[0]
        if not arcs.size and not pls.size:
            continue
        capacity = link.gb_per_slot(market.grid.slot_seconds) * market.n_slots
        possible = float(data[np.unique(b_order[arcs])].sum()) if arcs.size else 0.0
        if pls.size:
            gang_gb = dict(
                zip(placements.order[pls].tolist(), placements.gb[pls].tolist(), strict=True)
            )
            possible += float(sum(gang_gb.values()))
        if possible <= capacity + 1e-9:
            continue  # the link cannot be congested in this clearing
        rows.append((arcs, arc_gb[arcs], pls, placements.gb[pls], capacity, ROW_LINK, k, -1))
    n_rows, n_bid, n_pl = len(rows), int(b_order.size), len(placements)

    def matrix(parts: list[tuple[IntArray, FloatArray]], n_cols: int) -> sp.csr_matrix:
        r = np.concatenate(
            [np.full(c.size, k, np.int64) for k, (c, _) in enumerate(parts)] or [no_pl]
        )
        c = np.concatenate([c for c, _ in parts] or [no_pl])
        v = np.concatenate([v for _, v in parts] or [no_coef])
        return sp.csr_matrix((v, (r, c)), shape=(n_rows, n_cols))

    return SideRows(
        matrix=matrix([(r[0], r[1]) for r in rows], n_bid),
        pl_matrix=matrix([(r[2], r[3]) for r in rows], n_pl),
        rhs=np.asarray([r[4] for r in rows], np.float64),
        kind=np.asarray([r[5] for r in rows], np.int64),
        link=np.asarray([r[6] for r in rows], np.int64),
        order=np.asarray([r[7] for r in rows], np.int64),
    )


def _gang_placements(
    market: Market,
    gangs: tuple[Order, ...],
    eligible: object,
    min_reserve: IntArray,
    offered: IntArray,
    green: FloatArray,
    scale: int,
    link_index: Mapping[tuple[str, str], int],
) -> GangPlacements:
    first, n_slots = market.first_slot, market.n_slots
    hours = market.grid.slot_hours
    n_pools = offered.size // max(n_slots, 1)
    # One row per (gang, pool) with a window: its scalars; then every first slot at once.
    pair: list[tuple[int, int, int, int, int, int, int, int]] = []
    pair_gb: list[float] = []
    for g, order in enumerate(gangs):
        lo = max(order.release_slot, first) - first
        hi = min(order.deadline_slot, first + n_slots) - first
        found = eligible(order)  # type: ignore[operator]
        for p, terms in zip(found.pools.tolist(), found.terms, strict=True):
            d = terms.duration_slots
            transfer = 0 if terms.link is None else order.data_gb * terms.link.price_fen_per_gb
            total = order.limit_fen * order.gpus * order.duration_slots * hours - transfer
            value = (total * scale) // hours
            k0, k1 = lo + terms.delay_slots, hi - d + 1
            if value <= 0 or k1 <= k0 or d <= 0:
                continue
            link = -1 if terms.link is None else link_index[terms.link.key]
            pair.append((g, int(p), k0, k1, d, order.gpus, int(value), link))
            pair_gb.append(float(order.data_gb) if link >= 0 else 0.0)
    if not pair:
        empty = np.zeros(0, np.int64)
        return GangPlacements(empty, empty, empty, empty, empty, empty, empty, np.zeros(0), empty)
    cols = np.asarray(pair, np.int64).T
    g_, p_, k0_, k1_, d_, gpus_, value_, link_ = cols
    min_green = np.asarray([gangs[g].min_green_share for g in g_.tolist()], np.float64)
    count = k1_ - k0_
    row_pair = np.repeat(np.arange(g_.size), count)
    k = k0_[row_pair] + _ranges(count)
    d = d_[row_pair]
    # Windowed figures per (pool, first slot, duration) from the pool-slot arrays.
    off = offered.reshape(n_pools, n_slots)
    # Cells with nothing offered fail ``fits`` anyway: 0 keeps the sums exact.
    res = np.where(min_reserve >= NO_SUPPLY, 0, min_reserve).reshape(n_pools, n_slots)
    grn = green.reshape(n_pools, n_slots)
    fits = np.zeros(k.size, bool)
    reserve = np.zeros(k.size, np.int64)
    share = np.zeros(k.size)
    pool = p_[row_pair]
    gpus = gpus_[row_pair]
    csum = np.concatenate([np.zeros((n_pools, 1), np.int64), np.cumsum(res, axis=1)], axis=1)
    gsum = np.concatenate([np.zeros((n_pools, 1)), np.cumsum(grn, axis=1)], axis=1)
    for dur in np.unique(d).tolist():
        sel = np.flatnonzero(d == dur)
        low = np.lib.stride_tricks.sliding_window_view(off, dur, axis=1).min(axis=2)
        pk, kk = pool[sel], k[sel]
        fits[sel] = low[pk, kk] >= gpus[sel]
        reserve[sel] = csum[pk, kk + dur] - csum[pk, kk]
        share[sel] = (gsum[pk, kk + dur] - gsum[pk, kk]) / dur
    value = value_[row_pair]
    if market.reserve_mfen:  # a tie-break: one cost unit per slot of delay, per placement
        late = (k - k0_[row_pair]) * (1 if market.delay_fen else 0)
    else:
        late = market.delay_fen * scale * gpus * d * (k - k0_[row_pair])
    keep = (
        fits
        # cannot beat the cheapest reserves: never profitable
        & (reserve * gpus * scale < value)
        & (share >= min_green[row_pair] - 1e-12)
        & (value - late > 0)
    )
    rows = np.stack([g_[row_pair], pool, k, gpus, d, value - late, link_[row_pair], late], axis=1)[
        keep
    ]
    gbs = np.asarray(pair_gb)[row_pair][keep]
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 8)
    return GangPlacements(
        order=arr[:, 0].copy(),
        pool=arr[:, 1].copy(),
        start=arr[:, 2].copy(),
        gpus=arr[:, 3].copy(),
        duration=arr[:, 4].copy(),
        value=arr[:, 5].copy(),
        link=arr[:, 6].copy(),
        gb=np.asarray(gbs, np.float64),
        delay=arr[:, 7].copy(),
    )


def _ranges(counts: IntArray) -> IntArray:
    """``concatenate([arange(c) for c in counts])`` without a Python loop."""
    total = int(counts.sum())
    ends = np.cumsum(counts)
    return np.arange(total, dtype=np.int64) - np.repeat(ends - counts, counts)


def _cat(parts: list[IntArray] | list[FloatArray]) -> IntArray:
    if not parts:
        return np.zeros(0, np.int64)
    return np.concatenate(parts).astype(np.int64)
