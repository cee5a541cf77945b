"""Complete-or-nothing batch orders: served in full, in any shape, or not at all.

A batch order with ``complete_or_nothing`` says that partial work is worthless to it (a job
that misses its deadline is wasted). The clearing serves it as any batch order (any pools,
any slots of its window, at most ``gpus`` GPUs in a slot: no shape is imposed), and then
holds it to the rule:

1. Clear the market with every complete-or-nothing order as a plain batch order.
2. If some of them got part of their work but not all of it (:func:`served_in_full`, the
   lifecycle's rule of a filled order), leave out the one with the smallest share served
   (ties: the lower limit, then the id) and clear again; repeat until each of them is served
   in full or not at all. Each round leaves one order out, so at most one round per such
   order; when less than a tenth of the time limit is left, every partly served one is left
   out at once.
3. The last clearing is the result: its allocations, prices and welfare are those of a
   market without the orders left out (``message`` names them).

Prices follow: every order that trades, complete-or-nothing ones included, is a plain batch
order of the final clearing, so it pays the clearing price of each GPU-slot it gets, which
is at most its limit (the clearing's dual prices; checked by the property tests), and
providers get at least their reserve. Like gangs in the pricing rule, complete-or-nothing
orders may be left out although a different choice would have served them (a heuristic, not
an optimum over the choices), never served in part.

"In full" is within one clearing: an order whose window reaches past the clearing's horizon
must be served in full inside the horizon (the rest of its window is not on sale yet).
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from suangu.core import lifecycle
from suangu.core.types import Allocation, ClearingResult, Market, Order

#: When less than this share of the time limit is left, every partly served order goes at once.
LAST_ROUND_SHARE = 0.1


def served_in_full(
    order: Order, got: Iterable[tuple[str, int]], classes: Iterable[str], slot_hours: int
) -> tuple[bool, float]:
    """Whether ``order`` is filled by ``got`` (``(GPU class, GPU-slots)`` pairs) under the
    lifecycle's rule (:func:`suangu.core.lifecycle.is_filled`), and the share of its work
    done (0..1)."""
    pairs = list(got)
    slots = sum(n for _, n in pairs)
    done = lifecycle.work_done(order, pairs, slot_hours)
    steps = lifecycle.steps(order, classes, slot_hours)
    full = lifecycle.is_filled(order, done, slots, steps, slot_hours)
    return full, min(1.0, done / order.gpu_hours) if order.gpu_hours else 1.0


def partly_served(
    market: Market, allocations: Iterable[Allocation]
) -> list[tuple[float, int, str]]:
    """``(share served, limit, id)`` of the complete-or-nothing orders of ``market`` that got
    some but not all of their work, in the order they are left out."""
    cls = {p.id: p.gpu_class for p in market.pools}
    classes = sorted(set(cls.values()))
    got: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for a in allocations:
        got[a.order_id][cls[a.pool_id]] += a.gpus
    out = []
    for o in market.orders:
        if o.complete_or_nothing and o.id in got:
            full, share = served_in_full(o, got[o.id].items(), classes, market.grid.slot_hours)
            if not full:
                out.append((share, o.limit_fen, o.id))
    return sorted(out)


def clear_complete(
    market: Market, options: Any, clear: Callable[[Market, Any], ClearingResult]
) -> ClearingResult:
    """Clear ``market`` holding its complete-or-nothing orders to their rule (module docs);
    ``clear`` clears a market without such orders under ``options`` (a
    :class:`~suangu.core.clearing.ClearingOptions`, whose time limit covers every round)."""
    start = time.perf_counter()
    limit = float(options.time_limit_s)
    wanted = {o.id: o for o in market.orders if o.complete_or_nothing}
    plain = tuple(
        dataclasses.replace(o, complete_or_nothing=False) if o.complete_or_nothing else o
        for o in market.orders
    )
    left_out: list[str] = []
    rounds = 0
    while True:
        rounds += 1
        remaining = max(0.05 * limit, limit - (time.perf_counter() - start))
        orders = tuple(o for o in plain if o.id not in left_out)
        result = clear(
            dataclasses.replace(market, orders=orders),
            dataclasses.replace(options, time_limit_s=remaining),
        )
        short = partly_served(
            dataclasses.replace(
                market, orders=tuple(wanted[o.id] for o in orders if o.id in wanted)
            ),
            result.allocations,
        )
        if not short:
            break
        if limit - (time.perf_counter() - start) < LAST_ROUND_SHARE * limit:
            left_out += [oid for _, _, oid in short]
        else:
            left_out.append(short[0][2])
    timings = dict(result.timings)
    timings["complete_s"] = time.perf_counter() - start
    note = (
        f"{len(left_out)} complete-or-nothing order(s) left out, served only in part: "
        + ", ".join(sorted(left_out))
        if left_out
        else ""
    )
    message = "; ".join(x for x in (result.message, note) if x)
    if rounds > 1:
        message += f" ({rounds} rounds)"
    return dataclasses.replace(result, timings=timings, message=message)
