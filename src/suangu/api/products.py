"""The interruptible tier in the exchange service (the rule: :mod:`suangu.core.products`).

A clearing reads the capacity that interruptible leases hold (:func:`held_interruptible`),
clears both tiers, and, in the transaction that saves it, preempts the interruptible GPUs
that firm demand took (:func:`apply_preemptions`) through the recovery path: a lease
preempted whole fails (``failed``; its order bids again for the work it lost,
:func:`suangu.core.lifecycle.requeued_status`), a lease preempted in part keeps the rest of
its GPUs; either way ``leases.preempted_gpus`` counts what firm demand took, the buyer pays
only metered GPU-hours, and no GPU-slot is sold twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from suangu.core import lifecycle
from suangu.core.lifecycle import LeaseState
from suangu.core.products import HeldSlot, Preemption
from suangu.core.types import speed_of
from suangu.store.errors import Conflict
from suangu.store.ledger import SqlLedger
from suangu.store.models import LeaseRow, OfferRow, OfferSlotRow, OrderRow, PoolRow, SiteRow
from suangu.store.repositories import Clearings, Orders, order_record, rowcount

log = logging.getLogger(__name__)


def held_interruptible(s: Session, first: int, end: int) -> list[HeldSlot]:
    """The scheduled, unfailed leases of interruptible orders in ``[first, end)``, each with
    the highest listed reserve of its pool-slot (the firm reserve preemption must beat)."""
    out = []
    q = (
        select(LeaseRow, OrderRow, PoolRow.gpu_class)
        .join(OrderRow, OrderRow.id == LeaseRow.order_id)
        .join(PoolRow, PoolRow.id == LeaseRow.pool_id)
        .where(
            OrderRow.interruptible.is_(True),
            LeaseRow.state == str(LeaseState.SCHEDULED),
            LeaseRow.failed.is_(False),
            LeaseRow.slot >= first,
            LeaseRow.slot < end,
        )
        .order_by(LeaseRow.id)
    )
    rows = list(s.execute(q))
    reserves: dict[tuple[str, int], int] = {}
    if rows:
        for pool_id, slot, reserve in s.execute(
            select(OfferRow.pool_id, OfferSlotRow.slot, func.max(OfferSlotRow.reserve_fen))
            .join(OfferSlotRow, OfferSlotRow.offer_id == OfferRow.id)
            .where(
                OfferRow.pool_id.in_(sorted({lease.pool_id for lease, _, _ in rows})),
                OfferSlotRow.slot >= first,
                OfferSlotRow.slot < end,
            )
            .group_by(OfferRow.pool_id, OfferSlotRow.slot)
        ):
            reserves[(pool_id, slot)] = int(reserve)
    for lease, order, gpu_class in rows:
        o = order_record(order).order
        value = o.limit_fen * speed_of(o, gpu_class)
        out.append(
            HeldSlot(
                lease.id,
                lease.order_id,
                lease.pool_id,
                lease.slot,
                lease.gpus,
                lease.price_fen,
                value,
                reserves.get((lease.pool_id, lease.slot), 0),
            )
        )
    return out


def pool_providers(s: Session) -> dict[str, str]:
    """Pool id -> the provider of its site."""
    return {
        p: prov
        for p, prov in s.execute(
            select(PoolRow.id, SiteRow.provider_id).join(SiteRow, SiteRow.id == PoolRow.site_id)
        )
        if prov
    }


def apply_preemptions(
    s: Session,
    ledger: SqlLedger,
    preemptions: Sequence[Preemption],
    fee: int,
    now: int,
    current_slot: int,
) -> int:
    """Preempt the interruptible GPUs a clearing's firm demand took, in the caller's
    transaction; how many leases changed. A lease that is no longer scheduled, or holds
    fewer GPUs than the clearing saw, is a :class:`Conflict` (the clearing is run again)."""
    from suangu.api.services import fail_lease  # the service imports this module

    if not preemptions:
        return 0
    clearings = Clearings(s)
    ids = sorted({p.lease_id for p in preemptions})
    rows = {
        r.id: r
        for r in s.scalars(
            select(LeaseRow).where(LeaseRow.id.in_(ids)).order_by(LeaseRow.id).with_for_update()
        )
    }
    changed = 0
    for p in sorted(preemptions, key=lambda p: p.lease_id):
        row = rows.get(p.lease_id)
        if row is None or row.state != str(LeaseState.SCHEDULED) or row.gpus < p.gpus:
            raise Conflict(
                f"lease {p.lease_id!r} changed since the clearing read it",
                field="lease",
                fix="run the clearing again",
            )
        values: dict[str, Any] = {"preempted_gpus": LeaseRow.preempted_gpus + p.gpus}
        whole = row.gpus == p.gpus
        if not whole:
            values["gpus"] = LeaseRow.gpus - p.gpus
        done = s.execute(
            update(LeaseRow)
            .where(LeaseRow.id == p.lease_id, LeaseRow.state == str(LeaseState.SCHEDULED))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if rowcount(done) != 1:
            raise Conflict(f"lease {p.lease_id!r} changed", field="lease", fix="run it again")
        s.expire(row)
        if whole:
            fail_lease(s, ledger, clearings.lease(p.lease_id), fee, now, current_slot)
        else:
            record = Orders(s).get(p.order_id)
            status = lifecycle.requeued_status(record.order, record.status, current_slot)
            if status is not None:
                Orders(s).requeue(p.order_id, status)
        log.info("lease %s: %d GPUs preempted by firm demand", p.lease_id, p.gpus)
        changed += 1
    return changed


def preemption_stats(s: Session, buyer_id: str | None = None) -> dict[str, int]:
    """Leases preempted and GPU-hours taken (per slot hour), over all or one buyer's leases."""
    q = select(func.count(), func.coalesce(func.sum(LeaseRow.preempted_gpus), 0)).where(
        LeaseRow.preempted_gpus > 0
    )
    if buyer_id is not None:
        q = q.where(LeaseRow.buyer_id == buyer_id)
    n, gpus = s.execute(q).one()
    return {"leases_preempted": int(n), "gpu_slots_preempted": int(gpus)}
