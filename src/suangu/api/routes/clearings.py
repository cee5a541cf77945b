"""Clearing rounds: an operator runs one now; operators and auditors read them in full."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suangu.api import pagination, schemas
from suangu.api.auth import Operator, Reader
from suangu.api.context import ApiContext
from suangu.api.idempotency import fingerprint, replayed, run_write
from suangu.api.routes._common import Ctx, Cursor, IdemKey, Limit
from suangu.api.scheduler import leadership
from suangu.api.services import (
    PreparedClearing,
    clearing_round,
    new_clearing_id,
    save_clearing,
)
from suangu.core.errors import ValidationError
from suangu.store.errors import NotFound, RetryExhausted
from suangu.store.models import ClearingRow, LeaseRow
from suangu.store.repositories import ClearingRecord, Clearings

router = APIRouter(tags=["clearings"])
#: How long ``POST /clearings`` waits for a running clearing (the loop's or another's).
CLEARING_LOCK_WAIT_S = 60.0


def _summary(
    row: ClearingRow, n_allocations: int, excluded: list[str], n_planned: int = 0
) -> dict[str, Any]:
    return {
        "id": row.id,
        "run_at": row.run_at,
        "first_slot": row.first_slot,
        "n_slots": row.n_slots,
        "status": row.status,
        "method": row.method,
        "welfare_fen": row.welfare_fen,
        "n_allocations": n_allocations,
        "excluded_orders": excluded,
        "n_planned": n_planned,
    }


def _full(rec: ClearingRecord) -> dict[str, Any]:
    r = rec.result
    return {
        "id": rec.id,
        "run_at": rec.run_at,
        "first_slot": rec.first_slot,
        "n_slots": rec.n_slots,
        "status": str(r.status),
        "method": r.method,
        "welfare_fen": r.welfare_fen,
        "n_allocations": len(r.allocations),
        "excluded_orders": [],
        "gap": r.gap,
        "message": r.message,
        "rejected_gangs": list(r.rejected_gangs),
        "allocations": [
            {
                "order_id": a.order_id,
                "buyer_id": a.buyer_id,
                "pool_id": a.pool_id,
                "slot": a.slot,
                "gpus": a.gpus,
                "price_fen": a.price_fen,
            }
            for a in r.allocations
        ],
        "prices": [
            {
                "pool_id": p.pool_id,
                "slot": p.slot,
                "price_fen": p.price_fen,
                "cleared_gpus": p.cleared_gpus,
            }
            for p in r.prices
        ],
        "link_prices": [
            {
                "from_region": p.from_region,
                "to_region": p.to_region,
                "congestion_fen_per_gb": p.congestion_fen_per_gb,
                "transfer_fen_per_gb": p.transfer_fen_per_gb,
                "gb": p.gb,
                "capacity_gb": p.capacity_gb,
            }
            for p in r.link_prices
        ],
        "transfers": [
            {
                "order_id": t.order_id,
                "buyer_id": t.buyer_id,
                "from_region": t.from_region,
                "to_region": t.to_region,
                "gb": t.gb,
                "transfer_fen_per_gb": t.transfer_fen_per_gb,
                "congestion_fen_per_gb": t.congestion_fen_per_gb,
                "carrier_fen": t.carrier_fen,
                "congestion_fen": t.congestion_fen,
            }
            for t in r.transfers
        ],
    }


@router.post("/clearings", status_code=201, response_model=schemas.ClearingSummaryOut)
def run_clearing(
    request: Request,
    who: Operator,
    ctx: Ctx,
    body: schemas.ClearingIn | None = None,
    key: IdemKey = None,
) -> JSONResponse:
    """Clear the open orders and offers now, hold the buyers' money, store the leases.

    Orders whose buyer cannot fund their maximum cost are left out (``excluded_orders``: the
    funding rule of :func:`suangu.core.billing.funded_orders`) before the market is solved,
    so it is solved once. Partly filled batch and service orders bid again for the
    rest of their work; sites with energy data get modelled green shares.
    """
    spec = body or schemas.ClearingIn()
    digest = fingerprint("POST", request.url.path, spec)
    again = replayed(ctx, who, key, digest)
    if again is not None:
        return again
    now = ctx.now()
    current = ctx.current_slot()
    first = current if spec.first_slot is None else spec.first_slot
    if first < current:
        raise ValidationError(
            f"slot {first} is in the past (the current slot is {current})",
            field="body.first_slot",
            fix=f"clear from slot {current} on, or leave first_slot out",
        )
    n_slots = spec.n_slots or ctx.settings.horizon_slots
    clearing_id = spec.id or new_clearing_id(now)
    # One clearing at a time, with the clearing loops of every worker too: wait for the lock.
    with leadership(ctx.db, wait_s=CLEARING_LOCK_WAIT_S) as got:
        if not got:
            raise RetryExhausted(
                f"another clearing has been running for over {CLEARING_LOCK_WAIT_S:g} s",
                field="clearings",
                fix="retry later",
            )
        return clearing_round(
            ctx.db,
            ctx.ledger,
            ctx.settings,
            now,
            clearing_id,
            first,
            n_slots,
            lambda prepared: run_write(ctx, who, key, digest, partial(_save, ctx, prepared, now)),
            request.app.state.market_hook,
        )


def _save(
    ctx: ApiContext, prepared: PreparedClearing, now: int, s: Session
) -> tuple[int, dict[str, Any]]:
    leases = save_clearing(s, ctx.ledger, prepared, now, ctx.settings.default_fee_bp)
    row = s.get(ClearingRow, prepared.id)
    assert row is not None
    return 201, _summary(row, len(leases), prepared.excluded, len(prepared.planned))


@router.get("/clearings", response_model=schemas.PageOut[schemas.ClearingSummaryOut])
def list_clearings(
    request: Request, who: Reader, ctx: Ctx, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    """Clearing rounds, newest first."""
    q = select(ClearingRow).order_by(ClearingRow.run_at.desc(), ClearingRow.id)
    with ctx.db.session_scope(write=False) as s:
        rows, nxt = pagination.page_query(s, q, limit, cursor)
        counts = {
            cid: int(n)
            for cid, n in s.execute(
                select(LeaseRow.clearing_id, func.count())
                .where(LeaseRow.clearing_id.in_([r.id for r in rows]))
                .group_by(LeaseRow.clearing_id)
            )
        }
        items = [_summary(r, int(counts.get(r.id, 0)), []) for r in rows]
    return pagination.body(request, items, nxt)


@router.get("/clearings/{clearing_id}", response_model=schemas.ClearingOut)
def get_clearing(clearing_id: str, who: Reader, ctx: Ctx) -> dict[str, Any]:
    """A clearing with its allocations and prices."""
    with ctx.db.session_scope(write=False) as s:
        try:
            return _full(Clearings(s).get(clearing_id))
        except NotFound as err:
            raise NotFound(err.message, field="path.clearing_id", fix=err.fix) from None
