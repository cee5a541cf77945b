"""The interruptible tier and resale in the exchange service (the rules:
:mod:`suangu.core.products`).

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
from suangu.core.products import HeldSlot, Preemption, Resale, Resold, assign_resold
from suangu.core.types import speed_of
from suangu.store.errors import Conflict, InvalidState, NotFound
from suangu.store.ledger import SqlLedger
from suangu.store.models import (
    LeaseRow,
    OfferRow,
    OfferSlotRow,
    OrderRow,
    PoolRow,
    ResaleRow,
    ResaleSaleRow,
    SiteRow,
)
from suangu.store.repositories import Clearings, Lease, Orders, order_record, rowcount

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


# -- resale ---------------------------------------------------------------------------------------


def resale_out(
    row: ResaleRow, lease: LeaseRow | None, sold: Sequence[ResaleSaleRow]
) -> dict[str, Any]:
    return {
        "id": row.id,
        "seller_id": row.seller_id,
        "lease_id": row.lease_id,
        "reserve_fen": row.reserve_fen,
        "status": row.status,
        "created_at": row.created_at,
        "pool_id": lease.pool_id if lease else None,
        "slot": lease.slot if lease else None,
        "gpus": lease.gpus if lease else None,
        "resold_gpus": lease.resold_gpus if lease else 0,
        "sales": [{"lease_id": x.lease_id, "gpus": x.gpus, "price_fen": x.price_fen} for x in sold],
    }


def get_resale(s: Session, resale_id: str, member_id: str | None) -> dict[str, Any]:
    """A resale, seen by its seller (``member_id``) or by everyone (None)."""
    row = s.get(ResaleRow, resale_id)
    if row is None or (member_id is not None and row.seller_id != member_id):
        raise NotFound(f"no resale {resale_id!r}", field="path.resale_id", fix="list your resales")
    sold = list(s.scalars(select(ResaleSaleRow).where(ResaleSaleRow.resale_id == row.id)))
    return resale_out(row, s.get(LeaseRow, row.lease_id), sold)


def list_resales(s: Session, member_id: str | None, limit: int = 500) -> list[dict[str, Any]]:
    q = select(ResaleRow).order_by(ResaleRow.id).limit(limit)
    if member_id is not None:
        q = q.where(ResaleRow.seller_id == member_id)
    return [get_resale(s, r.id, None) for r in s.scalars(q)]


def create_resale(
    s: Session,
    seller_id: str,
    resale_id: str,
    lease_id: str,
    reserve_fen: int,
    now: int,
    current_slot: int,
    notice_slots: int,
) -> dict[str, Any]:
    """Offer back a lease the seller holds: it must be the seller's, scheduled (not started,
    not failed), start at least ``notice_slots`` after the current slot, and not be an
    interruptible order's (firm demand may preempt those anyway)."""
    lease = s.get(LeaseRow, lease_id)
    if lease is None or lease.buyer_id != seller_id:
        raise NotFound(f"no lease {lease_id!r}", field="body.lease_id", fix="list your leases")
    if lease.state != str(LeaseState.SCHEDULED) or lease.failed:
        raise InvalidState(
            f"lease {lease_id!r} is {lease.state}: only a scheduled lease can be resold",
            field="body.lease_id",
            fix="resell a lease whose slot has not started",
        )
    if lease.slot < current_slot + notice_slots:
        raise InvalidState(
            f"lease {lease_id!r} starts at slot {lease.slot}, within the notice of "
            f"{notice_slots} slot(s) from slot {current_slot}",
            field="body.lease_id",
            fix=f"resell leases that start at slot {current_slot + notice_slots} or later",
        )
    order = s.get(OrderRow, lease.order_id)
    if order is not None and order.interruptible:
        raise InvalidState(
            f"lease {lease_id!r} is an interruptible order's",
            field="body.lease_id",
            fix="resell leases of firm orders; interruptible ones may be preempted anyway",
        )
    existing = s.get(ResaleRow, resale_id)
    if existing is not None:
        same = (existing.seller_id, existing.lease_id, existing.reserve_fen) == (
            seller_id,
            lease_id,
            reserve_fen,
        )
        if not same:
            raise Conflict(f"resale {resale_id!r} exists", field="body.id", fix="use a new id")
        return get_resale(s, resale_id, seller_id)
    taken = s.scalar(select(ResaleRow.id).where(ResaleRow.lease_id == lease_id))
    if taken is not None:
        raise Conflict(
            f"lease {lease_id!r} is already offered in resale {taken!r}",
            field="body.lease_id",
            fix=f"withdraw resale {taken!r} first, or leave it",
        )
    s.add(
        ResaleRow(
            id=resale_id,
            seller_id=seller_id,
            lease_id=lease_id,
            reserve_fen=reserve_fen,
            status="open",
            created_at=now,
        )
    )
    s.flush()
    return get_resale(s, resale_id, seller_id)


def withdraw_resale(s: Session, seller_id: str, resale_id: str) -> dict[str, Any]:
    """Withdraw an open resale (what sold stays sold); a sold one is a 409."""
    row = s.get(ResaleRow, resale_id, with_for_update=True)
    if row is None or row.seller_id != seller_id:
        raise NotFound(f"no resale {resale_id!r}", field="path.resale_id", fix="list your resales")
    if row.status == "sold":
        raise InvalidState(
            f"resale {resale_id!r} is sold", field="path.resale_id", fix="nothing to withdraw"
        )
    row.status = "withdrawn"
    s.flush()
    return get_resale(s, resale_id, seller_id)


def open_resales(s: Session, first: int, end: int) -> list[Resale]:
    """Open resales whose lease is scheduled in ``[first, end)``, offering what is left of
    it (its GPUs less those resold already)."""
    out = []
    q = (
        select(ResaleRow, LeaseRow)
        .join(LeaseRow, LeaseRow.id == ResaleRow.lease_id)
        .where(
            ResaleRow.status == "open",
            LeaseRow.state == str(LeaseState.SCHEDULED),
            LeaseRow.failed.is_(False),
            LeaseRow.slot >= first,
            LeaseRow.slot < end,
        )
        .order_by(ResaleRow.id)
    )
    for r, lease in s.execute(q):
        left = lease.gpus - lease.resold_gpus
        if left > 0:
            out.append(
                Resale(r.id, r.seller_id, lease.id, lease.pool_id, lease.slot, left, r.reserve_fen)
            )
    return out


def apply_resales(
    s: Session,
    ledger: SqlLedger,
    resold: Sequence[Resold],
    leases: Sequence[Lease],
    fee: int,
    now: int,
) -> int:
    """Record what a clearing resold, in the caller's transaction, after its leases are
    saved: the seller's lease gives up the GPUs (``resold_gpus``; resold whole, it is
    completed: its provider runs the new buyers' work instead), and each new lease that got
    them is linked to the resale (``resale_sales``) so that its payment goes to the seller.
    A resale whose lease changed meanwhile is a :class:`Conflict` (the clearing runs again).
    Returns the GPUs resold."""
    if not resold:
        return 0
    clearings = Clearings(s)
    allocations = [x.allocation for x in leases]
    assigned = assign_resold(resold, allocations)
    by_key = {(x.allocation.order_id, x.allocation.pool_id, x.allocation.slot): x for x in leases}
    price = {r.resale_id: r.price_fen for r in resold}
    per_resale: dict[str, int] = {}
    rows = []
    for key, parts in sorted(assigned.items()):
        for resale_id, gpus in parts:
            per_resale[resale_id] = per_resale.get(resale_id, 0) + gpus
            rows.append(
                ResaleSaleRow(
                    resale_id=resale_id,
                    lease_id=by_key[key].id,
                    gpus=gpus,
                    price_fen=price[resale_id],
                )
            )
    from suangu.api.services import settle_if_done  # the service imports this module

    total = 0
    for resale_id, gpus in sorted(per_resale.items()):
        r = s.get(ResaleRow, resale_id, with_for_update=True)
        lease = None if r is None else s.get(LeaseRow, r.lease_id, with_for_update=True)
        if (
            r is None
            or lease is None
            or r.status != "open"
            or lease.state != str(LeaseState.SCHEDULED)
            or lease.gpus - lease.resold_gpus < gpus
        ):
            raise Conflict(
                f"resale {resale_id!r} changed since the clearing read it",
                field="resale",
                fix="run the clearing again",
            )
        lease.resold_gpus += gpus
        total += gpus
        if lease.resold_gpus == lease.gpus:
            r.status = "sold"
            s.flush()
            clearings.move_lease(lease.id, LeaseState.RUNNING)
            done = clearings.move_lease(lease.id, LeaseState.COMPLETED)
            s.add_all(rows)
            rows = []
            s.flush()
            settle_if_done(s, ledger, done, fee, now)
        log.info("resale %s: %d GPUs resold", resale_id, gpus)
    s.add_all(rows)
    s.flush()
    return total


def resold_gpus(s: Session, lease_ids: Sequence[str]) -> dict[str, int]:
    """The GPUs of each lease that its buyer resold (paid for as delivered)."""
    out: dict[str, int] = {}
    for chunk in range(0, len(lease_ids), 500):
        for lid, g in s.execute(
            select(LeaseRow.id, LeaseRow.resold_gpus).where(
                LeaseRow.id.in_(lease_ids[chunk : chunk + 500]), LeaseRow.resold_gpus > 0
            )
        ):
            out[lid] = int(g)
    return out


def resale_parts(s: Session, lease_ids: Sequence[str]) -> dict[str, list[tuple[str, int, str]]]:
    """For new buyers' leases that got resold GPUs: ``lease id -> [(seller, GPUs, the
    seller's lease id)]``."""
    out: dict[str, list[tuple[str, int, str]]] = {}
    for chunk in range(0, len(lease_ids), 500):
        for lid, seller, gpus, ref in s.execute(
            select(
                ResaleSaleRow.lease_id, ResaleRow.seller_id, ResaleSaleRow.gpus, ResaleRow.lease_id
            )
            .join(ResaleRow, ResaleRow.id == ResaleSaleRow.resale_id)
            .where(ResaleSaleRow.lease_id.in_(lease_ids[chunk : chunk + 500]))
            .order_by(ResaleSaleRow.lease_id, ResaleSaleRow.resale_id)
        ):
            out.setdefault(lid, []).append((seller, int(gpus), ref))
    return out
