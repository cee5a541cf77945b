"""The lifecycle of a market round: order, offer and lease states, and what a clearing does
to an order that it serves in part.

One rule, one place: the exchange service (:mod:`suangu.api.services`, over the store) and
the simulator (:mod:`suangu.sim.simulate`, on a simulated clock) both call these functions,
so they fill, reopen and count capacity alike.

**States.** An order is ``open`` until a clearing serves it; then ``cleared`` (filled) or
``partially`` (it bids again for the rest in later clearings); ``cancelled`` by its buyer or
``expired`` past its deadline. An offer is ``open`` or ``withdrawn``. A lease goes
``scheduled -> running -> completed | failed -> settled`` (:data:`LEASE_TRANSITIONS`).

**Work.** A batch or service order asks for ``gpu_hours`` of work. With a reference class or
speed overrides (:func:`weighted`) the work is counted in reference GPU-hours: a GPU-hour of
class ``c`` does ``speed_of(order, c)`` of it. One GPU-slot of the order's slowest eligible
class does ``min_step`` of work (:func:`steps`); the clearing never allocates a GPU-slot
that does more than the work left (its work row is ``sum speed x slot_hours x x <= work``).

**Filled** (:func:`is_filled`): an order is filled when no further GPU-slot can serve it:

* a gang order: once allocated (it is all-or-nothing);
* a batch or service order of some GPU-hours: when what is left is less than one GPU-slot of
  its *fastest* eligible class does, or less than one GPU-hour (whole GPU-slots cannot do
  less: the rest is the rounding of the hourly grid; without speeds, every GPU-slot it asked
  for is allocated);
* a whole-window service order: when every GPU-slot of its window is allocated.

**Reopening** (:func:`reopened`): a partly served batch or service order that is not filled
bids again for the whole GPU-hours of work it has left, while one GPU-slot of its slowest
eligible class still fits in them, from the slot after the last one it holds (a core order
allows ``gpus`` GPUs in every slot, so the slots it holds are not bid for again); a gang
never reopens; an order whose window has closed or that is filled does not reopen.

**Failure** (:func:`delivered_slots`, :func:`requeued_status`): work a failed lease did not
deliver is not done. A failed lease counts only the whole GPU-slots its readings metered (none
without readings) and holds no slot, so the rest of its work is bid for again: a failed batch
or service order goes back to ``partially`` and its rest reopens from the next clearing's first
slot, before its deadline; a gang stays all or nothing: a failed lease fails the whole gang,
which goes back to ``open`` whole while its run still fits in its window. The buyer pays only
the metered use of a failed lease; every clearing takes its own hold for what it allocates.

**Elsewhere** (:func:`avoid_failed_providers`): re-queued work avoids the providers that
failed it in the next clearings, where the other capacity it may use can serve it.

**Capacity** (:func:`remaining`): what an offer still has for a horizon, less what earlier
clearings sold of it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from suangu.core.types import (
    Allocation,
    ClearingResult,
    Market,
    Offer,
    OfferFill,
    Order,
    OrderKind,
    Transfer,
    speed_of,
    transfer_slots,
)


class OrderStatus(StrEnum):
    OPEN = "open"
    CLEARED = "cleared"
    PARTIALLY = "partially"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class OfferStatus(StrEnum):
    OPEN = "open"
    WITHDRAWN = "withdrawn"


class LeaseState(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SETTLED = "settled"


#: Order statuses a clearing may allocate to.
CLEARABLE: frozenset[OrderStatus] = frozenset({OrderStatus.OPEN, OrderStatus.PARTIALLY})

#: Lease states a lease may move to from each state.
LEASE_TRANSITIONS: Mapping[LeaseState, frozenset[LeaseState]] = {
    LeaseState.SCHEDULED: frozenset({LeaseState.RUNNING, LeaseState.FAILED}),
    LeaseState.RUNNING: frozenset({LeaseState.COMPLETED, LeaseState.FAILED}),
    LeaseState.COMPLETED: frozenset({LeaseState.SETTLED}),
    LeaseState.FAILED: frozenset({LeaseState.SETTLED}),
    LeaseState.SETTLED: frozenset(),
}

#: Lease states whose metered use is final (the order settles once all its leases are).
FINAL_LEASE_STATES: frozenset[LeaseState] = frozenset({LeaseState.COMPLETED, LeaseState.FAILED})

_EPS = 1e-9


def weighted(order: Order) -> bool:
    """Whether ``order``'s work is counted in reference GPU-hours (a batch or service order
    of some GPU-hours with a reference class or speeds)."""
    return bool(order.reference_class or order.speed) and (
        order.kind is OrderKind.BATCH or (order.kind is OrderKind.SERVICE and order.gpu_hours > 0)
    )


def steps(order: Order, classes: Iterable[str], slot_hours: int) -> tuple[float, float]:
    """The least and most work one GPU-slot does for ``order``: slot hours x the speed of the
    slowest and fastest of ``classes`` (the market's GPU classes) it may use."""
    if not (order.reference_class or order.speed):
        return float(slot_hours), float(slot_hours)
    eligible = set(classes)
    if order.gpu_classes:
        eligible &= order.gpu_classes
    speeds = [speed_of(order, c) for c in sorted(eligible)] or [1.0]
    return min(speeds) * slot_hours, max(speeds) * slot_hours


def work_done(order: Order, got: Iterable[tuple[str, int]], slot_hours: int) -> float:
    """Reference GPU-hours done by ``got``: ``(GPU class, GPU-slots)`` pairs."""
    return sum(speed_of(order, c) * n * slot_hours for c, n in got)


def delivered_slots(gpus: int, slot_seconds: int, metered_gpu_seconds: int) -> int:
    """The whole GPU-slots a failed lease of ``gpus`` GPUs delivered: its metered GPU-seconds
    in whole slots of ``slot_seconds``, at most ``gpus``."""
    if slot_seconds <= 0 or metered_gpu_seconds <= 0:
        return 0
    return min(gpus, metered_gpu_seconds // slot_seconds)


def requeued_status(order: Order, status: OrderStatus, current_slot: int) -> OrderStatus | None:
    """The status an order takes when one of its leases fails at ``current_slot``, or None
    when it keeps its own (see the module docs): a cleared or partly filled batch or service
    order whose window is still open bids again (``partially``); a gang whose whole run still
    fits in what is left of its window bids again whole (``open``). A cancelled, expired or
    open order, or one past its deadline, is left as it is."""
    if status not in (OrderStatus.CLEARED, OrderStatus.PARTIALLY):
        return None
    start = max(order.release_slot, current_slot)
    if order.kind is OrderKind.GANG:
        return OrderStatus.OPEN if order.deadline_slot - start >= order.duration_slots else None
    if start >= order.deadline_slot or status is OrderStatus.PARTIALLY:
        return None
    return OrderStatus.PARTIALLY


def avoid_failed_providers(market: Market, failed: Mapping[str, Iterable[str]]) -> Market:
    """The market with each re-queued order steered away from the providers that failed it
    (``failed``: order id -> provider ids whose leases of it failed): the order avoids those
    providers' pools (:attr:`Order.avoid_pools`) when the capacity offered in the other pools
    it may use could serve it inside its window and the horizon, and stays as it is when it
    could not (a failed provider is better than missing the deadline).

    "Could serve" counts offered capacity, not what other orders will take of it: for a
    batch order, the GPU-slots (at most ``gpus`` per slot) reach the GPU-slots it asks for;
    for a service order, every slot has ``gpus``; for a gang, one pool has ``gpus`` in
    ``duration_slots`` consecutive slots."""
    if not failed:
        return market
    from suangu.core.network import links_by_key, pool_terms

    first, end = market.first_slot, market.end_slot
    pools_of: dict[str, set[str]] = defaultdict(set)
    cap: dict[str, list[int]] = {}
    for offer in market.offers:
        pools_of[offer.provider_id].add(offer.pool_id)
        row = cap.setdefault(offer.pool_id, [0] * market.n_slots)
        for t in range(max(offer.start_slot, first), min(offer.end_slot, end)):
            row[t - first] += offer.gpus[t - offer.start_slot]
    sites = {x.id: x for x in market.sites}
    links = links_by_key(market)
    hours = market.grid.slot_hours
    orders = []
    for order in market.orders:
        avoid = frozenset(p for who in failed.get(order.id, ()) for p in pools_of.get(who, ()))
        if avoid:
            steered = replace(order, avoid_pools=order.avoid_pools | avoid)
            lo, hi = max(order.release_slot, first) - first, min(order.deadline_slot, end) - first
            usable = [
                cap[p.id][lo:hi]
                for p in market.pools
                if p.id in cap and pool_terms(market, steered, p, sites[p.site_id], links)
            ]
            per_slot = [sum(col) for col in zip(*usable, strict=True)] if usable else []
            if order.kind is OrderKind.GANG:
                ok = any(_run_of(row, order.gpus) >= order.duration_slots for row in usable)
            elif order.kind is OrderKind.SERVICE and order.gpu_hours == 0:
                ok = len(per_slot) == hi - lo > 0 and min(per_slot) >= order.gpus
            else:
                need = order.max_gpu_slots(hours)
                ok = sum(min(n, order.gpus) for n in per_slot) >= need
            if ok:
                order = steered
        orders.append(order)
    return replace(market, orders=tuple(orders))


def _run_of(row: list[int], gpus: int) -> int:
    """The longest run of consecutive slots with at least ``gpus`` GPUs."""
    best = run = 0
    for n in row:
        run = run + 1 if n >= gpus else 0
        best = max(best, run)
    return best


def work_left(order: Order, done: float, step: float) -> int | None:
    """The whole GPU-hours of work an order still bids for after ``done``, or None when what
    is left is less than one GPU-slot of its slowest eligible class does (``step``), or less
    than one GPU-hour: no GPU-slot can serve it any more."""
    rest = order.gpu_hours - done
    left = math.floor(rest + _EPS)
    if rest < step - _EPS or left < 1:
        return None
    return left


def is_filled(
    order: Order, done: float, gpu_slots: int, steps: tuple[float, float], slot_hours: int
) -> bool:
    """Whether an order that has ``gpu_slots`` GPU-slots allocated, doing ``done`` reference
    GPU-hours of work, is filled (see the module docs); ``steps`` is :func:`steps`'s pair."""
    if gpu_slots <= 0:
        return False
    if order.kind is OrderKind.GANG:
        return True
    if order.kind is OrderKind.SERVICE and order.gpu_hours == 0:
        return gpu_slots >= order.max_gpu_slots(slot_hours)
    if weighted(order):
        rest = order.gpu_hours - done
        return rest < steps[1] - _EPS or math.floor(rest + _EPS) < 1
    return gpu_slots >= order.max_gpu_slots(slot_hours)


def reopened(
    order: Order,
    done: float,
    gpu_slots: int,
    last_slot: int,
    first: int,
    steps: tuple[float, float],
    slot_hours: int,
    *,
    release: int | None = None,
    gpus: int | None = None,
) -> Order | None:
    """What is left of a partly served order for a clearing from slot ``first`` on, or None
    (see the module docs). ``done`` is the work allocated so far in reference GPU-hours and
    ``gpu_slots`` the GPU-slots, ``last_slot`` the last slot it holds (-1: none), ``steps``
    the least and most work one GPU-slot does for it (:func:`steps`). ``release`` and
    ``gpus`` override where it bids from and how wide (firm-order protection gives back
    slots an order may already hold in part)."""
    start = max(order.release_slot, first, last_slot + 1) if release is None else release
    if order.kind is OrderKind.GANG:  # all or nothing: it bids whole until it is served
        if last_slot >= 0 or order.deadline_slot - start < order.duration_slots:
            return None
        return replace(order, release_slot=start)
    if start >= order.deadline_slot or is_filled(order, done, gpu_slots, steps, slot_hours):
        return None
    width = order.gpus if gpus is None else gpus
    if order.kind is OrderKind.SERVICE and order.gpu_hours == 0:
        return replace(order, release_slot=start, gpus=width)
    left = work_left(order, done, steps[0])
    if left is None:
        return None
    return replace(order, release_slot=start, gpus=width, gpu_hours=left)


def remaining(offer: Offer, sold: Mapping[int, int], first: int, end: int) -> Offer | None:
    """``offer`` over ``[first, end)`` less the GPUs earlier clearings sold of it in each slot
    (``sold``: slot -> GPUs), or None when nothing of it is left there."""
    lo, hi = max(offer.start_slot, first), min(offer.end_slot, end)
    if hi <= lo:
        return None
    free = tuple(max(0, offer.gpus[s - offer.start_slot] - sold.get(s, 0)) for s in range(lo, hi))
    if not any(free):
        return None
    reserve = offer.reserve_fen[lo - offer.start_slot : hi - offer.start_slot]
    return Offer(offer.id, offer.provider_id, offer.pool_id, lo, free, reserve)


# -- commit late, plan early ----------------------------------------------------------------------

#: The default firmness horizon: every allocation is firm when it clears. Planning late
#: (``firm_slots: 1``, the slot about to start) is the operator's choice: on the ten-hub week
#: at load 1.2 it met 98.7% of deadlines against 99.5% at once, at 0.43 s against 0.06 s per
#: clearing (``bench/bench_commitment.py``), so it is not the default yet.
DEFAULT_FIRM_SLOTS: int | None = None


@dataclass(frozen=True, slots=True)
class Commitment:
    """A clearing split by the firmness rule (:func:`commit`)."""

    #: What becomes firm now (leases, sold capacity, held money): the clearing's allocations
    #: inside the firmness horizon and every started gang's whole run, with the offer fills
    #: and data transfers that serve them and their welfare; prices as cleared.
    firm: ClearingResult
    #: The rest: the buyers' planned schedule at this clearing's prices, which the next
    #: clearing plans again with whatever orders have arrived meanwhile.
    planned: tuple[Allocation, ...]


def commit(result: ClearingResult, market: Market, firm_slots: int | None) -> Commitment:
    """Commit late, plan early: split ``result`` (a clearing of ``market``) into what is firm
    now and what stays a plan.

    An allocation is firm when its slot is within ``firm_slots`` slots of the market's first
    slot (the operator's firmness horizon; None: everything is firm, the commit-at-once rule),
    plus the slots its input data takes to reach the pool's region: work planned right after
    its data arrives is firm, because the transfer starts when the clearing decides (left
    as a plan, every later clearing would restart the transfer and push the work back).
    A gang whose run starts inside the horizon is firm whole (a started gang keeps its run);
    one that starts later stays planned whole. An order with a minimum green share is served
    whole the same way: its share, and the prices that make its payment individually
    rational, hold over all of its slots together. The firm part carries:

    * the offer fills that serve its allocations: every fill of a slot inside the horizon,
      and beyond it the firm gangs' GPUs of each pool-slot, taken from the pool's cheapest
      offers first (by reserve, then offer id);
    * each order's data transfers in proportion to its firm work in the far region (GB and
      charges scaled, charges rounded down to whole fen as the clearing rounds them);
    * its welfare: ``sum limit x speed x GPU-hours - reserves of its fills - carrier charges``
      (the clearing's definition, restricted to the firm part).

    Prices, link prices and rejected gangs are the clearing's own.
    """
    if firm_slots is None:
        return Commitment(result, ())
    cutoff = market.first_slot + firm_slots
    hours = result.slot_hours
    orders = {o.id: o for o in market.orders}
    by_order: dict[str, list[Allocation]] = defaultdict(list)
    for a in result.allocations:
        by_order[a.order_id].append(a)
    region = {s.id: s.region for s in market.sites}
    pool_region = {p.id: region.get(p.site_id, "") for p in market.pools}
    links = {link.key: link for link in market.links}
    slot_seconds = market.grid.slot_seconds

    def delay(order: Order | None, pool_id: str) -> int:
        """Slots its data takes to reach the pool: a transfer that must start now to serve a
        planned slot makes that slot firm (the data leaves home when the clearing decides)."""
        if order is None or not order.data_gb or not order.home:
            return 0
        far = pool_region[pool_id]
        if far == order.home:
            return 0
        return transfer_slots(order, links.get((order.home, far)), slot_seconds)

    # Served whole: a gang's run, work whose green share is an average over all of its
    # slots (its prices are individually rational only in total), or complete-or-nothing
    # work (a planned rest might not fit the next clearing): firm when it starts inside
    # the horizon (its data's delay counted), planned otherwise.
    whole: dict[str, bool] = {}
    for order_id, its in by_order.items():
        order = orders.get(order_id)
        if order is not None and (
            order.kind is OrderKind.GANG or order.min_green_share > 0 or order.complete_or_nothing
        ):
            whole[order_id] = min(x.slot - delay(order, x.pool_id) for x in its) < cutoff

    def is_firm(a: Allocation) -> bool:
        if a.order_id in whole:
            return whole[a.order_id]
        return a.slot < cutoff + delay(orders.get(a.order_id), a.pool_id)

    split: dict[bool, list[Allocation]] = {True: [], False: []}
    for a in result.allocations:
        split[is_firm(a)].append(a)
    firm, planned = tuple(split[True]), tuple(split[False])
    if not planned:
        return Commitment(result, ())
    # Fills: all of a slot inside the horizon; beyond it, the firm gangs' GPUs per pool-slot.
    late: dict[tuple[str, int], int] = defaultdict(int)
    for a in firm:
        if a.slot >= cutoff:
            late[(a.pool_id, a.slot)] += a.gpus
    fills: list[OfferFill] = [f for f in result.fills if f.slot < cutoff]
    by_cell: dict[tuple[str, int], list[OfferFill]] = defaultdict(list)
    for f in result.fills:
        if f.slot >= cutoff and (f.pool_id, f.slot) in late:
            by_cell[(f.pool_id, f.slot)].append(f)
    for cell, need in sorted(late.items()):
        for f in sorted(by_cell[cell], key=lambda f: (f.reserve_fen, f.offer_id)):
            take = min(need, f.gpus)
            if take > 0:
                fills.append(replace(f, gpus=take))
                need -= take
    fills.sort(key=lambda f: (f.offer_id, f.slot))
    # Transfers, in proportion to the firm work at the far end.
    pool_class = {p.id: p.gpu_class for p in market.pools}

    def work(allocations: Iterable[Allocation]) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = defaultdict(float)
        for a in allocations:
            order = orders.get(a.order_id)
            speed = speed_of(order, pool_class[a.pool_id], market.catalogue) if order else 1.0
            out[(a.order_id, pool_region[a.pool_id])] += speed * a.gpus
        return out

    all_work, firm_work = work(result.allocations), work(firm)
    transfers: list[Transfer] = []
    for t in result.transfers:
        total = all_work.get((t.order_id, t.to_region), 0.0)
        mine = firm_work.get((t.order_id, t.to_region), 0.0)
        if mine <= 0 or total <= 0:
            continue
        if mine >= total:
            transfers.append(t)
            continue
        gb = t.gb * mine / total
        transfers.append(
            replace(
                t,
                gb=gb,
                carrier_fen=math.floor(gb * t.transfer_fen_per_gb + 1e-9),
                congestion_fen=math.floor(gb * t.congestion_fen_per_gb + 1e-9),
            )
        )
    value = 0.0
    for a in firm:
        order = orders.get(a.order_id)
        limit = order.limit_fen if order else a.price_fen
        speed = speed_of(order, pool_class[a.pool_id], market.catalogue) if order else 1.0
        value += limit * speed * a.gpus * hours
    reserves = sum(f.reserve_fen * f.gpus for f in fills) * hours
    carriers = sum(t.carrier_fen for t in transfers)
    welfare = math.floor(value + 1e-6) - reserves - carriers
    return Commitment(
        replace(
            result,
            allocations=firm,
            fills=tuple(fills),
            transfers=tuple(transfers),
            welfare_fen=welfare,
        ),
        planned,
    )


# -- firm-order protection --------------------------------------------------------------------

#: A firm order is captive when at most this many pools can serve it.
CAPTIVE_POOLS = 2


def captive(firm: bool, feasible: Sequence[str]) -> tuple[str, ...]:
    """The pools an order is captive to: ``feasible`` (the pools that could serve it alone,
    :func:`suangu.core.network.feasible_pools` from its submission on,
    :func:`from_submission`) when the order is ``firm`` and at most :data:`CAPTIVE_POOLS` of
    them; otherwise none."""
    if not firm or not 0 < len(feasible) <= CAPTIVE_POOLS:
        return ()
    return tuple(feasible)


def from_submission(order: Order, submit_slot: int) -> Order:
    """``order`` as it stands when it is submitted at ``submit_slot``: its window starts no
    earlier (what :func:`captive` and the demand count from)."""
    if submit_slot <= order.release_slot:
        return order
    return replace(order, release_slot=min(submit_slot, order.deadline_slot))


def add_firm_demand(
    demand: dict[str, npt.NDArray[np.float64]],
    order: Order,
    pools: Sequence[str],
    submit_slot: int,
    *,
    size: int,
    offset: int = 0,
) -> None:
    """Count a captive firm order in ``demand`` (in place): pool id -> GPUs that captive firm
    orders ask for in each slot ``offset + k`` (arrays of ``size``), its GPUs shared evenly
    among its ``pools``, over its window from its submission on. Count orders in the order
    they were submitted (then by id), so that the sums are the same wherever they are made."""
    for pool_id in pools:
        row = demand.get(pool_id)
        if row is None:
            row = np.zeros(size, np.float64)
            demand[pool_id] = row
        lo = min(max(max(order.release_slot, submit_slot) - offset, 0), size)
        hi = min(max(order.deadline_slot - offset, 0), size)
        row[lo:hi] += order.gpus / len(pools)


def protection_levels(
    demand: Mapping[str, npt.NDArray[np.float64]],
    sold: Mapping[tuple[str, int], int],
    now: int,
    end: int,
    lookback: int,
    *,
    offset: int = 0,
) -> dict[tuple[str, int], int]:
    """GPUs held back for captive firm orders per (pool, slot) in ``(now, end)``.

    At each pool: the peak GPUs that captive firm orders asked for at once over the last
    ``lookback`` slots up to ``now`` (``demand`` from :func:`add_firm_demand`, its slot
    ``offset + k`` at index ``k``), rounded up, less what captive firm orders already hold in
    the slot (``sold``: (pool, slot) -> GPUs). The slot about to start (``now``) holds nothing
    back: what is left of it goes to whatever work can use it."""
    held: dict[tuple[str, int], int] = {}
    for pool_id, row in demand.items():
        lo, hi = max(0, now - lookback - offset), now + 1 - offset
        window = row[lo:hi]
        if window.size == 0:
            continue
        peak = math.ceil(float(window.max()) - 1e-9)
        for s in range(now + 1, end):
            gpus = peak - sold.get((pool_id, s), 0)
            if gpus > 0:
                held[(pool_id, s)] = gpus
    return held


def hold_back(offers: Sequence[Offer], held: Mapping[tuple[str, int], int]) -> list[Offer]:
    """``offers`` (what is left of them for a clearing) less ``held`` GPUs per (pool, slot),
    taken from the pool's cheapest offers in that slot first (by reserve, then offer id);
    offers with nothing left are dropped, the rest keep their order."""
    left = {o.id: list(o.gpus) for o in offers}
    of_pool: dict[str, list[Offer]] = defaultdict(list)
    for o in offers:
        of_pool[o.pool_id].append(o)
    for (pool_id, s), gpus in sorted(held.items()):
        cheapest = sorted(
            (o for o in of_pool.get(pool_id, ()) if o.start_slot <= s < o.end_slot),
            key=lambda o: (o.reserve_fen[s - o.start_slot], o.id),
        )
        for o in cheapest:
            row = left[o.id]
            k = s - o.start_slot
            take = min(gpus, row[k])
            row[k] -= take
            gpus -= take
    return [
        replace(o, gpus=tuple(left[o.id])) if tuple(left[o.id]) != o.gpus else o
        for o in offers
        if any(left[o.id])
    ]
