"""Firm-order protection in the service: what the store says about captive firm orders.

The rule is :mod:`suangu.core.lifecycle`'s (the simulator's too): which firm orders are
captive (:func:`~suangu.core.lifecycle.captive`), what they asked for
(:func:`~suangu.core.lifecycle.add_firm_demand`) and how many GPUs to hold back
(:func:`~suangu.core.lifecycle.protection_levels`). These functions read their inputs from
the stored orders and leases for :func:`suangu.api.services.prepare_clearing`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suangu.core import lifecycle
from suangu.core.network import feasible_pools
from suangu.core.types import Market, Offer, TimeGrid
from suangu.store.models import LeaseRow, OrderRow
from suangu.store.repositories import order_record


def captive_firm_orders(
    s: Session,
    grid: TimeGrid,
    now: int,
    lookback: int,
    bare: Market,
    listed: Callable[[int, int], Sequence[Offer]],
) -> dict[str, tuple[str, ...]]:
    """Firm orders submitted by slot ``now`` whose window reaches past ``now - lookback``
    and that are captive to a pool or two (:func:`suangu.core.lifecycle.captive`, from
    :func:`~suangu.core.network.feasible_pools` on ``bare``, the market's sites, pools and
    links, against the offers ``listed(first, end)`` over their windows): order id -> those
    pools, in the order they were submitted (then by id)."""
    rows = list(
        s.scalars(
            select(OrderRow)
            .where(
                OrderRow.firm.is_(True),
                OrderRow.deadline_slot > now - lookback,
                OrderRow.submitted_at < grid.slot_start(now + 1),
            )
            .order_by(OrderRow.submitted_at, OrderRow.id)
        )
    )
    if not rows:
        return {}
    found = [
        lifecycle.from_submission(order_record(r).order, max(0, grid.slot_at(r.submitted_at)))
        for r in rows
    ]
    offers = listed(min(o.release_slot for o in found), max(o.deadline_slot for o in found))
    out: dict[str, tuple[str, ...]] = {}
    for order in found:
        pools = lifecycle.captive(order.firm, feasible_pools(bare, order, offers))
        if pools:
            out[order.id] = pools
    return out


def firm_demand(
    s: Session,
    grid: TimeGrid,
    now: int,
    end: int,
    lookback: int,
    captive: Mapping[str, tuple[str, ...]],
) -> tuple[dict[str, npt.NDArray[np.float64]], dict[tuple[str, int], int]]:
    """What the ``captive`` firm orders asked for over ``[now - lookback, now]`` (pool id ->
    GPUs per slot from ``now - lookback``: :func:`suangu.core.lifecycle.add_firm_demand`, in
    the order they were submitted) and what their leases hold in ``(now, end)`` ((pool, slot)
    -> GPUs; failed leases hold nothing)."""
    demand: dict[str, npt.NDArray[np.float64]] = {}
    rows = s.scalars(select(OrderRow).where(OrderRow.id.in_(sorted(captive)))).all()
    submitted = sorted(
        ((max(0, grid.slot_at(r.submitted_at)), r.id, order_record(r).order) for r in rows),
        key=lambda x: (x[0], x[1]),
    )
    for submit, order_id, order in submitted:
        lifecycle.add_firm_demand(
            demand, order, captive[order_id], submit, size=lookback + 1, offset=now - lookback
        )
    sold: dict[tuple[str, int], int] = defaultdict(int)
    for pool_id, slot, gpus in s.execute(
        select(LeaseRow.pool_id, LeaseRow.slot, func.sum(LeaseRow.gpus))
        .where(
            LeaseRow.order_id.in_(sorted(captive)),
            LeaseRow.slot > now,
            LeaseRow.slot < end,
            LeaseRow.failed.is_(False),
        )
        .group_by(LeaseRow.pool_id, LeaseRow.slot)
    ):
        sold[(pool_id, int(slot))] = int(gpus)
    return demand, sold
