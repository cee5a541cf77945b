"""Scheduling policies compared on the same simulation loop (``suangu simulate --policy``).

Every policy answers the same question at each hourly clearing: given the open orders and the
capacity not yet sold over the horizon ``[h, h + lookahead)``, which order runs in which pool
and slot, at what price. Its answer is a :class:`~suangu.core.types.ClearingResult`; the
simulation then holds, meters, settles and accounts energy and carbon the same way for all,
so their figures compare.

``suangu``
    The exchange's clearing (:func:`suangu.core.clearing.clear`): welfare-maximising over
    sites, slots, classes and links jointly, with the operator's carbon price added to every
    reserve; buyers pay and providers receive the pool-slot's clearing price.

The baselines are greedy and pay-as-offer: each placement pays the provider's listed reserve
(no carbon price), never more than the buyer's value (``reserve + transfer per GPU-hour <=
limit x speed``: a buyer does not rent a GPU worth less to it than it costs). Orders are
served first come, first served (submit slot, then id). All rules of the market hold for
them as for the clearing: GPU class, residency, latency to home, window, the data's transfer
delay, link bandwidth over the horizon, minimum green share (only pool-slots at or above it),
at most ``gpus`` GPUs per slot and never more work than asked (whole GPUs: a remainder smaller
than one GPU-slot stays open).

``fifo-home``
    The status quo: each job in its home region, as early as capacity allows (earliest slot
    first, the cheapest pool of its home in that slot first). An order whose ``home`` is not a
    region of the market (or that has none) may use every region, for this policy and for
    ``carbon-shift``.
``cheapest-now``
    SkyPilot-style: each job to the feasible pools in order of cost per unit of work
    (``(reserve + transfer per GPU-hour) / speed``, mean reserve over the visible window),
    as early as possible in each.
``carbon-shift``
    Let's Wait Awhile-style temporal shifting: each job in its home region, in the
    lowest-carbon slots of its window that the horizon shows (location-based gCO2 per unit
    of work of the pool-slot, from the energy model; without it, highest green share first).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from suangu.core.network import PoolTerms, links_by_key, pool_terms
from suangu.core.types import (
    Allocation,
    ClearingResult,
    ClearingStatus,
    Market,
    OfferFill,
    Order,
    OrderKind,
    Transfer,
)


class Policy(StrEnum):
    FIFO_HOME = "fifo-home"
    CHEAPEST_NOW = "cheapest-now"
    CARBON_SHIFT = "carbon-shift"
    SUANGU = "suangu"


#: The policies in the order the bench shows them.
POLICIES: tuple[Policy, ...] = (
    Policy.FIFO_HOME,
    Policy.CHEAPEST_NOW,
    Policy.CARBON_SHIFT,
    Policy.SUANGU,
)

_EPS = 1e-9


def parse_policy(name: str) -> Policy:
    """The policy called ``name``; a :class:`ValueError` lists the valid names."""
    try:
        return Policy(name.strip().lower())
    except ValueError:
        raise ValueError(
            f"unknown policy {name!r}: use one of {', '.join(p.value for p in POLICIES)}"
        ) from None


@dataclass
class _Cell:
    """What is left of one offer in one slot."""

    offer_id: str
    provider_id: str
    reserve_fen: int
    free: int


def place(
    market: Market,
    policy: Policy,
    *,
    carbon: Mapping[str, Sequence[float]] | None = None,
    queue: Sequence[str] | None = None,
) -> ClearingResult:
    """The baseline ``policy``'s placement of ``market``'s orders (see the module docs).

    ``carbon[pool_id][k]``: gCO2 per GPU-hour of the pool in slot ``first_slot + k`` (for
    ``carbon-shift``; missing: green share decides). ``queue``: order ids in service order
    (default: the market's order). Pure: the same input gives the same result.
    """
    if policy is Policy.SUANGU:
        raise ValueError("the suangu policy is the clearing engine: call clear()")
    hours = market.grid.slot_hours
    first, end = market.first_slot, market.end_slot
    sites = {s.id: s for s in market.sites}
    links = links_by_key(market)
    cells: dict[tuple[str, int], list[_Cell]] = defaultdict(list)
    for offer in market.offers:
        for k, g in enumerate(offer.gpus):
            slot = offer.start_slot + k
            if g > 0 and first <= slot < end:
                cells[(offer.pool_id, slot)].append(
                    _Cell(offer.id, offer.provider_id, offer.reserve_fen[k], g)
                )
    for stack in cells.values():
        stack.sort(key=lambda c: (c.reserve_fen, c.offer_id))
    link_room = {
        key: link.gb_per_slot(market.grid.slot_seconds) * market.n_slots
        for key, link in links.items()
    }
    regions = {s.region for s in market.sites}
    by_id = {o.id: o for o in market.orders}
    ids = list(queue) if queue is not None else [o.id for o in market.orders]
    allocs: dict[tuple[str, str, int, int], int] = defaultdict(int)
    fills: dict[tuple[str, int], list[int | str]] = {}
    moved: dict[tuple[str, str, str], float] = defaultdict(float)  # (order, from, to) -> GB
    value = 0.0
    cost = 0.0
    for order_id in ids:
        order = by_id[order_id]
        if order.kind is OrderKind.GANG:
            continue  # the baselines serve divisible work only
        terms: dict[str, PoolTerms] = {}
        for pool in market.pools:
            site = sites[pool.site_id]
            home_only = policy is not Policy.CHEAPEST_NOW and order.home in regions
            if home_only and site.region != order.home:
                continue
            t = pool_terms(market, order, pool, site, links)
            if t is not None:
                terms[pool.id] = t
        if not terms:
            continue
        lo = max(order.release_slot, first)
        hi = min(order.deadline_slot, end)
        candidates: list[tuple[float, int, str]] = []  # (rank, slot, pool)
        green = market.green_share
        for pool_id, t in terms.items():
            start = max(lo, order.release_slot + t.delay_slots)
            for slot in range(start, hi):
                if (pool_id, slot) not in cells:
                    continue
                shares = green.get(pool_id)
                share = shares[slot - first] if shares else 0.0
                if share + _EPS < order.min_green_share:
                    continue
                rank = _rank(
                    policy, order, pool_id, slot, t, first, carbon, share, cells, lo, hi, hours
                )
                candidates.append((rank, slot, pool_id))
        candidates.sort()
        left = _work_left(order, hours)
        per_slot: dict[int, int] = defaultdict(int)
        for _, slot, pool_id in candidates:
            if left <= _EPS:
                break
            t = terms[pool_id]
            room = order.gpus - per_slot[slot]
            if room <= 0:
                continue
            most = math.floor(left / (t.speed * hours) + _EPS)
            if most <= 0:
                continue
            worth = order.limit_fen * t.speed - t.transfer_fen_per_gpu_slot / hours
            for cell in cells[(pool_id, slot)]:
                want = min(room, most)
                if want <= 0:
                    break
                if cell.free <= 0 or cell.reserve_fen > worth + _EPS:
                    continue
                g = min(want, cell.free)
                if t.link is not None and t.gb_per_gpu_slot > 0:
                    g = min(g, math.floor(link_room[t.link.key] / t.gb_per_gpu_slot + _EPS))
                    if g <= 0:
                        break
                    link_room[t.link.key] -= g * t.gb_per_gpu_slot
                    moved[(order.id, t.link.from_region, t.link.to_region)] += g * t.gb_per_gpu_slot
                cell.free -= g
                room -= g
                most -= g
                per_slot[slot] += g
                left -= g * t.speed * hours
                allocs[(order.id, pool_id, slot, cell.reserve_fen)] += g
                key = (cell.offer_id, slot)
                if key in fills:
                    fills[key][0] = int(fills[key][0]) + g
                else:
                    fills[key] = [g, cell.provider_id, pool_id, cell.reserve_fen]
                value += g * hours * order.limit_fen * t.speed
                cost += g * (hours * cell.reserve_fen + t.transfer_fen_per_gpu_slot)
    allocations = tuple(
        Allocation(oid, by_id[oid].buyer_id, pool_id, slot, g, price)
        for (oid, pool_id, slot, price), g in sorted(allocs.items())
    )
    offer_fills = tuple(
        OfferFill(offer_id, str(f[1]), str(f[2]), slot, int(f[0]), int(f[3]), int(f[3]))
        for (offer_id, slot), f in sorted(fills.items())
    )
    prices = {link.key: link.price_fen_per_gb for link in market.links}
    transfers = tuple(
        Transfer(
            order_id=oid,
            buyer_id=by_id[oid].buyer_id,
            from_region=frm,
            to_region=to,
            gb=gb,
            transfer_fen_per_gb=prices[(frm, to)],
            congestion_fen_per_gb=0,
            carrier_fen=math.floor(gb * prices[(frm, to)] + _EPS),
            congestion_fen=0,
        )
        for (oid, frm, to), gb in sorted(moved.items())
    )
    return ClearingResult(
        status=ClearingStatus.OPTIMAL if allocations else ClearingStatus.EMPTY,
        method=policy.value,
        allocations=allocations,
        fills=offer_fills,
        prices=(),
        welfare_fen=round(value - cost),
        slot_hours=hours,
        message=f"{policy.value}: greedy placement at listed reserves",
        transfers=transfers,
    )


def _work_left(order: Order, hours: int) -> float:
    if order.kind is OrderKind.SERVICE and order.gpu_hours == 0:
        return float(order.gpus * order.window * hours)
    return float(order.gpu_hours)


def _rank(
    policy: Policy,
    order: Order,
    pool_id: str,
    slot: int,
    t: PoolTerms,
    first: int,
    carbon: Mapping[str, Sequence[float]] | None,
    share: float,
    cells: Mapping[tuple[str, int], list[_Cell]],
    lo: int,
    hi: int,
    hours: int,
) -> float:
    """Sort key of a pool-slot for ``order`` under ``policy`` (lower first; ties: slot)."""
    hours_to = float(slot - first)
    if policy is Policy.FIFO_HOME:
        cheapest = min((c.reserve_fen for c in cells[(pool_id, slot)]), default=0)
        return hours_to * 1e9 + cheapest / t.speed
    if policy is Policy.CHEAPEST_NOW:
        reserves = [
            min(c.reserve_fen for c in cells[(pool_id, s)])
            for s in range(lo, hi)
            if (pool_id, s) in cells
        ]
        mean = sum(reserves) / len(reserves) if reserves else 0.0
        per_work = (mean + t.transfer_fen_per_gpu_slot / hours) / t.speed
        return per_work * 1e6 + hours_to
    # carbon-shift
    if carbon is not None and pool_id in carbon:
        return carbon[pool_id][slot - first] / t.speed * 1e3 + hours_to * 1e-3
    return (1.0 - share) * 1e3 + hours_to * 1e-3


__all__ = ["POLICIES", "Policy", "parse_policy", "place"]
