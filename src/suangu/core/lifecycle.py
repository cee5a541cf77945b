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
* a batch or service order of some GPU-hours: when the work left is less than one GPU-slot
  of its slowest eligible class does, or less than one GPU-hour (:func:`work_left` is None);
* a whole-window service order: when every GPU-slot of its window is allocated.

**Reopening** (:func:`reopened`): a partly served batch or service order bids again for the
work it has left, from the slot after the last one it holds (a core order allows ``gpus``
GPUs in every slot, so the slots it holds are not bid for again); a gang never reopens; an
order whose window has closed or that is filled does not reopen.

**Capacity** (:func:`remaining`): what an offer still has for a horizon, less what earlier
clearings sold of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from enum import StrEnum

from suangu.core.types import Offer, Order, OrderKind, speed_of


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


def work_left(order: Order, done: float, step: float) -> int | None:
    """The whole reference GPU-hours of work an order still bids for after ``done``, or None
    when what is left is less than one GPU-slot does (``step``, the slowest class's) or one
    GPU-hour."""
    rest = order.gpu_hours - done
    left = math.floor(rest + _EPS)
    if rest < step - _EPS or left < 1:
        return None
    return left


def is_filled(order: Order, done: float, gpu_slots: int, step: float, slot_hours: int) -> bool:
    """Whether an order that has ``gpu_slots`` GPU-slots allocated, doing ``done`` reference
    GPU-hours of work, is filled (see the module docs); ``step`` is :func:`steps`'s least."""
    if gpu_slots <= 0:
        return False
    if order.kind is OrderKind.GANG:
        return True
    if order.kind is OrderKind.SERVICE and order.gpu_hours == 0:
        return gpu_slots >= order.max_gpu_slots(slot_hours)
    if weighted(order):
        return work_left(order, done, step) is None
    return gpu_slots >= order.max_gpu_slots(slot_hours)


def reopened(
    order: Order,
    done: float,
    last_slot: int,
    first: int,
    step: float,
    *,
    release: int | None = None,
    gpus: int | None = None,
) -> Order | None:
    """What is left of a partly served order for a clearing from slot ``first`` on, or None
    (see the module docs). ``done`` is the work allocated so far in reference GPU-hours,
    ``last_slot`` the last slot it holds (-1: none), ``step`` the least work one GPU-slot does
    for it (:func:`steps`). ``release`` and ``gpus`` override where it bids from and how wide
    (firm-order protection gives back slots an order may already hold in part)."""
    start = max(order.release_slot, first, last_slot + 1) if release is None else release
    if order.kind is OrderKind.GANG:  # all or nothing: it bids whole until it is served
        if last_slot >= 0 or order.deadline_slot - start < order.duration_slots:
            return None
        return replace(order, release_slot=start)
    if start >= order.deadline_slot:
        return None
    width = order.gpus if gpus is None else gpus
    if order.kind is OrderKind.SERVICE and order.gpu_hours == 0:
        return replace(order, release_slot=start, gpus=width)
    left = work_left(order, done, step)
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
