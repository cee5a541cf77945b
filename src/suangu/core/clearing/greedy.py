"""Pay-as-bid greedy clearing: the baseline the welfare-maximising clearing is measured against.

The rule, as a simple exchange or a first-come scheduler would run it:

1. Orders are served one at a time, highest limit price first (ties by order id).
2. A batch or service order takes the cheapest remaining capacity it may use: every
   (pool, slot, offer) cell that passes the same filters as the clearing (GPU class, regions,
   provinces, latency bound, release/deadline window inside the horizon) and whose reserve is
   strictly below the order's limit, cheapest reserve first (ties: earlier slot, then pool
   order, then the cheaper/earlier offer of the pool-slot), at most ``gpus`` GPUs per slot and
   at most its work (:meth:`~suangu.core.types.Order.max_gpu_slots`) in total.
3. A gang order takes the cheapest placement (one pool, ``duration_slots`` contiguous slots,
   ``gpus`` GPUs in each, cheapest offers of each pool-slot first) that fits the remaining
   capacity, or nothing. Ties: earlier start, then pool order.
4. Green minimums are enforced cell by cell, which is stricter than the clearing's
   order-level average: an order with ``min_green_share`` only uses pool-slots whose green
   share is at least that minimum.
5. Networks and speeds follow :mod:`suangu.core.network`: latency through links, a data
   link to every region away from home, the transfer delay before the start, work in
   reference GPU-hours (a GPU-slot on class ``c`` does ``speed(c) * slot_hours``) and a value
   of ``limit * speed(c)`` per GPU-hour less the transfer cost. A link is used only while it
   has room for the order's whole data (so no link ever carries more than its bandwidth);
   the carrier's price is billed in ``ClearingResult.transfers``, with no congestion price.

Pricing is pay-as-bid, so there is no uniform price:

* every :class:`~suangu.core.types.Allocation` is priced at the buyer's limit;
* every :class:`~suangu.core.types.OfferFill` is priced at the provider's reserve;
* :class:`~suangu.core.types.PoolPrice` rows are *quotes*, not clearing prices: the cheapest
  reserve offered in the pool-slot (as the clearing engine quotes a pool-slot where nothing
  trades), with the GPUs sold and offered there. The buyer-provider spread (limit - reserve)
  is the surplus the exchange would keep; money does not balance as in a uniform-price
  clearing, and :func:`~suangu.core.clearing.checks.check_clearing` reports "price differs
  from pool" for allocations whose limit differs from the pool quote: that line does not apply
  to pay-as-bid. Every other check holds.

``welfare_fen`` uses the engine's definition: sum of limit x GPU-hours over allocations minus
sum of reserve x GPU-hours over fills.

Cost: one vectorised numpy pass per order over its (pool, slot, offer) cells; the supply is a
dense (pool, slot, offer rank) table, so 10,000 orders over 20 pools x 24 slots take about a
second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from suangu.core.clearing.complete import served_in_full
from suangu.core.network import PoolTerms, links_by_key, pool_terms
from suangu.core.types import (
    Allocation,
    ClearingResult,
    ClearingStatus,
    Link,
    LinkPrice,
    Market,
    OfferFill,
    Order,
    OrderKind,
    PoolPrice,
    Transfer,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Reserve of an empty supply cell: no limit beats it.
NO_OFFER = np.iinfo(np.int64).max // 4
METHOD = "greedy-pay-as-bid"


@dataclass(frozen=True)
class SupplyTable:
    """The offers of a market as dense arrays over (pool, horizon slot, offer rank).

    Rank 0 is the cheapest offer of the pool-slot (ties by offer order); empty cells have
    reserve :data:`NO_OFFER`, capacity 0 and offer -1.
    """

    reserve: IntArray  # (pools, slots, ranks) fen per GPU-hour
    cap: IntArray  # (pools, slots, ranks) GPUs
    offer: IntArray  # (pools, slots, ranks) index into market.offers

    @property
    def min_reserve(self) -> IntArray:
        """Cheapest reserve per (pool, slot), :data:`NO_OFFER` where nothing is offered."""
        return self.reserve[:, :, 0]

    @property
    def offered(self) -> IntArray:
        """GPUs offered per (pool, slot)."""
        offered: IntArray = self.cap.sum(axis=2)
        return offered


def supply_table(market: Market) -> SupplyTable:
    """The market's offers, clipped to the horizon, as a :class:`SupplyTable`."""
    n_pools, n_slots, first = len(market.pools), market.n_slots, market.first_slot
    pool_index = {p.id: i for i, p in enumerate(market.pools)}
    cells, reserves, caps, offers = [], [], [], []
    for o, offer in enumerate(market.offers):
        lo = max(offer.start_slot, first)
        hi = min(offer.end_slot, first + n_slots)
        if hi <= lo:
            continue
        gpus = np.asarray(offer.gpus[lo - offer.start_slot : hi - offer.start_slot], np.int64)
        res = np.asarray(offer.reserve_fen[lo - offer.start_slot : hi - offer.start_slot], np.int64)
        keep = gpus > 0
        ks = np.arange(lo - first, hi - first, dtype=np.int64)[keep]
        cells.append(pool_index[offer.pool_id] * n_slots + ks)
        reserves.append(res[keep])
        caps.append(gpus[keep])
        offers.append(np.full(ks.size, o, np.int64))
    cell = _cat(cells)
    reserve = _cat(reserves)
    cap = _cat(caps)
    offer_ix = _cat(offers)
    order = np.lexsort((offer_ix, reserve, cell))
    cell, reserve, cap, offer_ix = cell[order], reserve[order], cap[order], offer_ix[order]
    rank = np.arange(cell.size) - np.searchsorted(cell, cell, side="left")
    n_ranks = int(rank.max()) + 1 if rank.size else 1
    shape = (n_pools * n_slots, n_ranks)
    t_res = np.full(shape, NO_OFFER, np.int64)
    t_cap = np.zeros(shape, np.int64)
    t_off = np.full(shape, -1, np.int64)
    t_res[cell, rank] = reserve
    t_cap[cell, rank] = cap
    t_off[cell, rank] = offer_ix
    cube = (n_pools, n_slots, n_ranks)
    return SupplyTable(t_res.reshape(cube), t_cap.reshape(cube), t_off.reshape(cube))


def eligible_pools(market: Market, order: Order) -> IntArray:
    """Indices of the pools ``order`` may use: GPU class, residency, latency (through the
    market's links) and a data link away from home (:func:`~suangu.core.network.pool_terms`)."""
    sites = {s.id: s for s in market.sites}
    links = links_by_key(market)
    return np.asarray(
        [
            p
            for p, pool in enumerate(market.pools)
            if pool_terms(market, order, pool, sites[pool.site_id], links) is not None
        ],
        dtype=np.int64,
    )


class EligibilityCache:
    """:func:`eligible_pools` memoised on the order's filters (orders often share them)."""

    def __init__(self, market: Market) -> None:
        self._market = market
        self._pools = market.pools
        self._sites = {s.id: s for s in market.sites}
        self._links = links_by_key(market)
        self._cache: dict[tuple[object, ...], IntArray] = {}
        self._terms: dict[str, list[PoolTerms]] = {}

    def __call__(self, order: Order) -> IntArray:
        plain = order.data_gb == 0 and order.reference_class is None and not order.speed
        key: tuple[object, ...] = (
            order.gpu_classes,
            order.regions,
            order.provinces,
            order.home,
            order.max_latency_ms,
            order.avoid_pools,
        )
        if not plain:
            key = (*key, order.data_gb)
        found = self._cache.get(key)
        if found is None:
            found = eligible_pools(self._market, order)
            self._cache[key] = found
        return found

    def terms(self, order: Order) -> list[PoolTerms]:
        """Terms of ``order`` in each of its eligible pools, in the order of ``self(order)``."""
        found = self._terms.get(order.id)
        if found is None:
            found = []
            for p in self(order).tolist():
                pool = self._pools[p]
                terms = pool_terms(
                    self._market, order, pool, self._sites[pool.site_id], self._links
                )
                assert terms is not None
                found.append(terms)
            self._terms[order.id] = found
        return found


def green_table(market: Market) -> FloatArray:
    """Green share per (pool, horizon slot); pools without a profile count as 0."""
    green = np.zeros((len(market.pools), market.n_slots), np.float64)
    for p, pool in enumerate(market.pools):
        shares = market.green_share.get(pool.id)
        if shares is not None:
            green[p] = shares
    return green


class _Book:
    """What the greedy pass took, as growing lists of arrays."""

    def __init__(self) -> None:
        self.order: list[IntArray] = []
        self.pool: list[IntArray] = []
        self.slot: list[IntArray] = []
        self.rank: list[IntArray] = []
        self.gpus: list[IntArray] = []

    def add(self, i: int, pool: IntArray, slot: IntArray, rank: IntArray, gpus: IntArray) -> None:
        self.order.append(np.full(gpus.size, i, np.int64))
        self.pool.append(pool)
        self.slot.append(slot)
        self.rank.append(rank)
        self.gpus.append(gpus)


def greedy_clear(market: Market) -> ClearingResult:
    """Clear ``market`` greedily, pay-as-bid (see the module docstring for the rules)."""
    t0 = time.perf_counter()
    table = supply_table(market)
    reserve, offer_of = table.reserve, table.offer
    cap = table.cap.copy()  # remaining capacity, consumed as orders are served
    green = green_table(market)
    eligible = EligibilityCache(market)
    hours = market.grid.slot_hours
    first, end = market.first_slot, market.end_slot
    timings = {"build_s": time.perf_counter() - t0}

    t1 = time.perf_counter()
    book = _Book()
    queue = sorted(
        range(len(market.orders)), key=lambda i: (-market.orders[i].limit_fen, market.orders[i].id)
    )
    link_index = {link.key: k for k, link in enumerate(market.links)}
    link_room = np.asarray(
        [link.gb_per_slot(market.grid.slot_seconds) * market.n_slots for link in market.links]
    )
    for i in queue:
        order = market.orders[i]
        lo = max(order.release_slot, first) - first
        hi = min(order.deadline_slot, end) - first
        if hi <= lo:
            continue
        pools = eligible(order)
        if pools.size == 0:
            continue
        plain = order.data_gb == 0 and order.reference_class is None and not order.speed
        if plain:
            if order.kind is OrderKind.GANG:
                _place_gang(i, order, pools, lo, hi, reserve, cap, green, book)
            else:
                n_before = len(book.gpus)
                _fill_divisible(i, order, pools, lo, hi, hours, reserve, cap, green, book)
                _all_or_nothing(market, order, n_before, cap, book)
            continue
        terms = eligible.terms(order)
        room = [
            t.link is None or link_room[link_index[t.link.key]] >= order.data_gb - 1e-9
            for t in terms
        ]
        pools = pools[np.asarray(room, bool)]
        terms = [t for t, ok in zip(terms, room, strict=True) if ok]
        if not terms:
            continue
        n_before = len(book.gpus)
        if order.kind is OrderKind.GANG:
            # One pass per group of pools with the same duration and delay; cheapest wins.
            groups: dict[tuple[int, int], list[int]] = {}
            for k, t in enumerate(terms):
                groups.setdefault((t.duration_slots, t.delay_slots), []).append(k)
            best: _GangPick | None = None
            for (d, delay), ks in sorted(groups.items()):
                values = np.asarray([_gang_value(order, terms[k], hours) for k in ks])
                pick = _best_gang(
                    order.gpus,
                    d,
                    pools[ks],
                    lo + delay,
                    hi,
                    reserve,
                    cap,
                    green,
                    order.min_green_share,
                    values,
                )
                if pick is not None and (best is None or pick.cost < best.cost):
                    best = pick
            if best is not None:
                best.book(i, cap, book)
        else:
            _fill_divisible(i, order, pools, lo, hi, hours, reserve, cap, green, book, terms=terms)
            _all_or_nothing(market, order, n_before, cap, book)
        for k in range(n_before, len(book.gpus)):
            for p, n in zip(book.pool[k].tolist(), book.gpus[k].tolist(), strict=True):
                t = terms[int(np.searchsorted(pools, p))]
                if t.link is not None:
                    link_room[link_index[t.link.key]] -= n * t.gb_per_gpu_slot
    timings["solve_s"] = time.perf_counter() - t1
    result = _result(market, table, offer_of, book, timings, eligible)
    return result


def _all_or_nothing(
    market: Market, order: Order, n_before: int, cap: IntArray, book: _Book
) -> None:
    """A complete-or-nothing order that the pass served only in part gives its cells back
    (:mod:`suangu.core.clearing.complete`): all of its work, or nothing."""
    if not order.complete_or_nothing or len(book.gpus) == n_before:
        return
    got: dict[str, int] = {}
    for k in range(n_before, len(book.gpus)):
        for p, n in zip(book.pool[k].tolist(), book.gpus[k].tolist(), strict=True):
            c = market.pools[p].gpu_class
            got[c] = got.get(c, 0) + n
    classes = sorted({p.gpu_class for p in market.pools})
    full, _ = served_in_full(order, got.items(), classes, market.grid.slot_hours)
    if full:
        return
    for k in range(n_before, len(book.gpus)):
        cap[book.pool[k], book.slot[k], book.rank[k]] += book.gpus[k]
    for part in (book.order, book.pool, book.slot, book.rank, book.gpus):
        del part[n_before:]


def _gang_value(order: Order, terms: PoolTerms, hours: int) -> float:
    """Value per GPU-hour of a gang in a pool: its work's worth less the transfer cost, over
    the GPU-hours it books there."""
    transfer = 0 if terms.link is None else order.data_gb * terms.link.price_fen_per_gb
    worth = order.limit_fen * order.gpus * order.duration_slots * hours - transfer
    return worth / (order.gpus * terms.duration_slots * hours)


def _value(order: Order, terms: PoolTerms, hours: int) -> float:
    """Value per GPU-hour of ``order`` in a pool: limit x speed less the transfer cost."""
    return order.limit_fen * terms.speed - terms.transfer_fen_per_gpu_slot / hours


def _fill_divisible(
    i: int,
    order: Order,
    pools: IntArray,
    lo: int,
    hi: int,
    hours: int,
    reserve: IntArray,
    cap: IntArray,
    green: FloatArray,
    book: _Book,
    terms: list[PoolTerms] | None = None,
) -> None:
    work = order.max_gpu_slots(hours)
    if terms is None:
        speed = np.ones(pools.size)
        limit = np.full(pools.size, float(order.limit_fen))
        delay = np.zeros(pools.size, np.int64)
    else:
        speed = np.asarray([t.speed for t in terms])
        limit = np.asarray([_value(order, t, hours) for t in terms])
        delay = np.asarray([t.delay_slots for t in terms], np.int64)
    full_service = order.kind is OrderKind.SERVICE and order.gpu_hours == 0
    if terms is not None and not full_service:
        work = order.gpus * (hi - lo)  # bounded below by the reference work
    if work <= 0:
        return
    r = reserve[pools, lo:hi]  # (eligible pools, window, ranks)
    c = cap[pools, lo:hi]
    ok = (c > 0) & (r < limit[:, None, None])
    ok &= (np.arange(hi - lo)[None, :] >= delay[:, None])[:, :, None]
    if order.min_green_share > 0:
        ok &= (green[pools, lo:hi] >= order.min_green_share)[:, :, None]
    flat = np.flatnonzero(ok)
    if flat.size == 0:
        return
    n_pools, width, n_ranks = ok.shape
    pe, w, j = np.unravel_index(flat, ok.shape)
    rv = r.reshape(-1)[flat]
    cv = c.reshape(-1)[flat]
    # Cheapest first; ties: earlier slot, then pool order, then offer rank.
    key = rv * (width * n_pools * n_ranks) + (w * n_pools + pe) * n_ranks + j
    by_price = np.argsort(key)
    cv_p = cv[by_price]
    w_p = w[by_price]
    # At most order.gpus per slot: cheapest cells of each slot first (segmented cumsum).
    by_slot = np.argsort(w_p, kind="stable")
    cs = cv_p[by_slot]
    ws = w_p[by_slot]
    before = np.cumsum(cs) - cs
    new_slot = np.empty(ws.size, np.bool_)
    new_slot[0] = True
    np.not_equal(ws[1:], ws[:-1], out=new_slot[1:])
    group = np.cumsum(new_slot) - 1
    before -= before[new_slot][group]
    take_s = np.minimum(np.maximum(order.gpus - before, 0), cs)
    take = np.empty_like(take_s)
    take[by_slot] = take_s
    # At most the order's work in total, cheapest first.
    done = np.cumsum(take) - take
    take = np.minimum(np.maximum(work - done, 0), take)
    if terms is not None and not full_service:
        # Work in reference GPU-hours: a GPU-slot on pool p does speed[p] * hours of it.
        per = speed[pe[by_price]] * hours
        done_ref = np.cumsum(take * per) - take * per
        left = np.floor((float(order.gpu_hours) - done_ref) / per + 1e-9).astype(np.int64)
        take = np.minimum(np.maximum(left, 0), take)
    sel = np.flatnonzero(take > 0)
    if sel.size == 0:
        return
    cells = by_price[sel]
    amount = take[sel]
    pool = pools[pe[cells]]
    slot = lo + w[cells]
    rank = j[cells]
    cap[pool, slot, rank] -= amount
    book.add(i, pool, slot, rank, amount)


def _place_gang(
    i: int,
    order: Order,
    pools: IntArray,
    lo: int,
    hi: int,
    reserve: IntArray,
    cap: IntArray,
    green: FloatArray,
    book: _Book,
) -> None:
    values = np.full(pools.size, float(order.limit_fen))
    pick = _best_gang(
        order.gpus,
        order.duration_slots,
        pools,
        lo,
        hi,
        reserve,
        cap,
        green,
        order.min_green_share,
        values,
    )
    if pick is not None:
        pick.book(i, cap, book)


@dataclass(frozen=True)
class _GangPick:
    cost: int
    pool: IntArray
    slot: IntArray
    rank: IntArray
    amount: IntArray

    def book(self, i: int, cap: IntArray, book: _Book) -> None:
        cap[self.pool, self.slot, self.rank] -= self.amount
        book.add(i, self.pool, self.slot, self.rank, self.amount)


def _best_gang(
    g: int,
    d: int,
    pools: IntArray,
    lo: int,
    hi: int,
    reserve: IntArray,
    cap: IntArray,
    green: FloatArray,
    min_green: float,
    values: FloatArray,
) -> _GangPick | None:
    """The cheapest placement of ``g`` GPUs for ``d`` contiguous slots in one of ``pools``
    within ``[lo, hi)``, using cells whose reserve is below the pool's value per GPU-hour."""
    if hi - lo < d or d <= 0:
        return None
    r = reserve[pools, lo:hi]
    usable = (cap[pools, lo:hi] > 0) & (r < values[:, None, None])
    c = np.where(usable, cap[pools, lo:hi], 0)
    cum = np.cumsum(c, axis=2)
    take = np.clip(g - (cum - c), 0, c)  # cheapest offers of each pool-slot first
    cell_ok = cum[:, :, -1] >= g
    if min_green > 0:
        cell_ok &= green[pools, lo:hi] >= min_green
    cell_cost = (take * np.where(usable, r, 0)).sum(axis=2)
    zero = np.zeros((len(pools), 1), np.int64)
    bad = np.concatenate([zero, np.cumsum(~cell_ok, axis=1)], axis=1)
    cost = np.concatenate([zero, np.cumsum(np.where(cell_ok, cell_cost, 0), axis=1)], axis=1)
    fits = (bad[:, d:] - bad[:, :-d]) == 0  # (pools, starts)
    if not fits.any():
        return None
    total = np.where(fits, cost[:, d:] - cost[:, :-d], np.iinfo(np.int64).max)
    # Cheapest; ties: earlier start, then pool order (argmin of start-major order).
    best = int(np.argmin(total.T))
    start, pe = divmod(best, len(pools))
    cells = take[pe, start : start + d]  # (d, ranks)
    k, rank = np.nonzero(cells)
    return _GangPick(
        int(total[pe, start]),
        np.full(k.size, pools[pe], np.int64),
        (lo + start + k).astype(np.int64),
        rank.astype(np.int64),
        cells[k, rank].astype(np.int64),
    )


def _result(
    market: Market,
    table: SupplyTable,
    offer_of: IntArray,
    book: _Book,
    timings: dict[str, float],
    eligible: EligibilityCache,
) -> ClearingResult:
    t0 = time.perf_counter()
    hours = market.grid.slot_hours
    first = market.first_slot
    n_pools, n_slots, _ = table.reserve.shape
    order, pool, slot = _cat(book.order), _cat(book.pool), _cat(book.slot)
    rank, gpus = _cat(book.rank), _cat(book.gpus)
    orders, pools = market.orders, market.pools

    # Allocations: one per (order, pool, slot), priced at the buyer's limit.
    a_key = (order * n_pools + pool) * n_slots + slot
    a_keys, a_inv = np.unique(a_key, return_inverse=True)
    a_gpus = np.bincount(a_inv, weights=gpus, minlength=a_keys.size).astype(np.int64)
    a_order, rest = np.divmod(a_keys, n_pools * n_slots)
    a_pool, a_slot = np.divmod(rest, n_slots)
    allocations = []
    moved: dict[tuple[int, Link], float] = {}
    for oi, p, k, n in zip(
        a_order.tolist(), a_pool.tolist(), a_slot.tolist(), a_gpus.tolist(), strict=True
    ):
        o = orders[oi]
        price = o.limit_fen
        if o.data_gb or o.reference_class is not None or o.speed:
            eligible_pools_ = eligible(o)
            t = eligible.terms(o)[int(np.searchsorted(eligible_pools_, p))]
            gang = o.kind is OrderKind.GANG
            price = int(np.floor((_gang_value if gang else _value)(o, t, hours) + 1e-9))
            if t.link is not None:
                gb = float(o.data_gb) if gang else n * t.gb_per_gpu_slot
                moved[(oi, t.link)] = moved.get((oi, t.link), 0.0) + gb
        allocations.append(Allocation(o.id, o.buyer_id, pools[p].id, first + k, n, price))
    allocations.sort(key=lambda a: (a.order_id, a.slot, a.pool_id))
    transfers = []
    per_link: dict[tuple[str, str], float] = {}
    for (oi, link), gb in moved.items():
        o = orders[oi]
        if o.kind is OrderKind.GANG:
            gb = float(o.data_gb)  # the whole data, once
        per_link[link.key] = per_link.get(link.key, 0.0) + gb
        carrier = int(np.floor(gb * link.price_fen_per_gb + 1e-9))
        transfers.append(
            Transfer(
                o.id,
                o.buyer_id,
                link.from_region,
                link.to_region,
                gb,
                link.price_fen_per_gb,
                0,
                carrier,
                0,
            )
        )
    transfers.sort(key=lambda t: (t.order_id, t.from_region, t.to_region))
    link_prices = tuple(
        LinkPrice(
            link.from_region,
            link.to_region,
            0,
            link.price_fen_per_gb,
            per_link.get(link.key, 0.0),
            link.gb_per_slot(market.grid.slot_seconds) * market.n_slots,
        )
        for link in market.links
    )

    # Fills: one per (offer, slot), priced at the provider's reserve.
    f_offer = offer_of[pool, slot, rank]
    f_reserve = table.reserve[pool, slot, rank]
    f_key = f_offer * n_slots + slot
    f_keys, f_first, f_inv = np.unique(f_key, return_index=True, return_inverse=True)
    f_gpus = np.bincount(f_inv, weights=gpus, minlength=f_keys.size).astype(np.int64)
    fills = []
    for fi, n in zip(f_first.tolist(), f_gpus.tolist(), strict=True):
        offer = market.offers[int(f_offer[fi])]
        fills.append(
            OfferFill(
                offer.id,
                offer.provider_id,
                offer.pool_id,
                first + int(slot[fi]),
                n,
                int(f_reserve[fi]),
                int(f_reserve[fi]),
            )
        )
    fills.sort(key=lambda f: (f.offer_id, f.slot))

    # Price rows: quotes (cheapest reserve offered), with volumes sold and offered.
    sold = np.bincount(pool * n_slots + slot, weights=gpus, minlength=n_pools * n_slots)
    offered = table.offered.reshape(-1)
    quote = table.min_reserve.reshape(-1)
    prices = [
        PoolPrice(
            pools[c // n_slots].id,
            first + c % n_slots,
            int(quote[c]),
            int(sold[c]),
            int(offered[c]),
        )
        for c in np.flatnonzero(offered > 0).tolist()
    ]

    # Welfare: what buyers pay (their value, pay-as-bid) less reserves; transfer costs are
    # already out of the non-plain orders' prices.
    value = sum(a.price_fen * a.gpus for a in allocations)
    cost = sum(f.reserve_fen * f.gpus for f in fills)
    timings["result_s"] = time.perf_counter() - t0
    return ClearingResult(
        status=ClearingStatus.HEURISTIC if allocations else ClearingStatus.EMPTY,
        method=METHOD,
        allocations=tuple(allocations),
        fills=tuple(fills),
        prices=tuple(prices),
        welfare_fen=(value - cost) * hours,
        timings=timings,
        message="pay-as-bid: allocations at the buyer's limit, fills at the reserve",
        slot_hours=hours,
        link_prices=link_prices,
        transfers=tuple(transfers),
    )


def _cat(parts: list[IntArray]) -> IntArray:
    if not parts:
        return np.zeros(0, np.int64)
    return np.concatenate(parts).astype(np.int64)


__all__ = [
    "NO_OFFER",
    "EligibilityCache",
    "SupplyTable",
    "eligible_pools",
    "greedy_clear",
    "green_table",
    "supply_table",
]
