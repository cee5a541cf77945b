"""Leases (allocations as contracts) and their meter readings.

A buyer sees its leases, a provider the leases on its pools, operators and auditors all.
Providers post meter readings for their leases; the final reading of every lease of an
order settles it on the ledger. A provider that cannot run a lease marks it failed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from suangu.api import ids, pagination, schemas
from suangu.api.auth import Anyone, Principal, Provider
from suangu.api.green import book_energy, energy_model
from suangu.api.idempotency import fingerprint, run_write
from suangu.api.routes._common import Ctx, Cursor, IdemKey, Limit
from suangu.api.services import (
    FinalReading,
    ensure_accounts,
    fail_lease,
    fee_bp,
    lease_out,
    meter_final,
    provider_ids,
    record_reading,
    settle_done_orders,
)
from suangu.core import billing
from suangu.core.errors import ValidationError
from suangu.store.errors import NotFound
from suangu.store.models import LeaseRow, LeaseState, Role
from suangu.store.repositories import Clearings, Lease, Meters, lease_record

router = APIRouter(tags=["leases"])


def _visible(who: Principal, lease: Lease) -> bool:
    if who.sees_all:
        return True
    if who.role is Role.BUYER:
        return lease.allocation.buyer_id == who.member_id
    return who.role is Role.PROVIDER and lease.provider_id == who.member_id


def _lease(s: Session, who: Principal, lease_id: str) -> Lease:
    try:
        lease = Clearings(s).lease(lease_id)
    except NotFound:
        lease = None
    if lease is None or not _visible(who, lease):
        raise NotFound(f"no lease {lease_id!r}", field="path.lease_id", fix="list your leases")
    return lease


@router.get("/leases", response_model=schemas.PageOut[schemas.LeaseOut])
def list_leases(
    request: Request,
    who: Anyone,
    ctx: Ctx,
    order_id: str | None = None,
    state: Annotated[list[LeaseState] | None, Query()] = None,
    slot_to: Annotated[int | None, Query(ge=0, le=2**31)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The caller's leases (operators and auditors: all), by slot, one page read from the
    database (keyset pagination: ``limit`` rows, whatever the number of leases). ``state``
    may be given more than once (``?state=scheduled&state=running``: an agent's open
    leases in one call); ``slot_to``: only leases of slots up to it (inclusive), what an
    agent needs to start its next runs."""
    q = select(LeaseRow).order_by(
        LeaseRow.slot, LeaseRow.order_id, LeaseRow.pool_id, LeaseRow.clearing_id
    )
    if who.role is Role.BUYER:
        q = q.where(LeaseRow.buyer_id == who.member_id)
    elif who.role is Role.PROVIDER:
        q = q.where(LeaseRow.provider_id == who.member_id)
    if state:
        q = q.where(LeaseRow.state.in_(sorted({str(x) for x in state})))
    if slot_to is not None:
        q = q.where(LeaseRow.slot <= slot_to)
    with ctx.db.session_scope(write=False) as s:
        if order_id is not None:  # a stored id, or the buyer's plain name of its order
            q = q.where(LeaseRow.order_id == ids.order_id(s, who, order_id))
        rows, nxt = pagination.page_query(s, q, limit, cursor)
        items = [lease_out(lease_record(r)) for r in rows]
    return pagination.body(request, items, nxt)


@router.get("/leases/{lease_id}", response_model=schemas.LeaseOut)
def get_lease(lease_id: str, who: Anyone, ctx: Ctx) -> dict[str, Any]:
    with ctx.db.session_scope(write=False) as s:
        return lease_out(_lease(s, who, lease_id))


@router.get("/leases/{lease_id}/readings", response_model=schemas.PageOut[schemas.ReadingOut])
def list_readings(
    lease_id: str,
    request: Request,
    who: Anyone,
    ctx: Ctx,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    with ctx.db.session_scope(write=False) as s:
        lease = _lease(s, who, lease_id)
        readings = Meters(s).readings(lease_id)
    items, nxt = pagination.page(readings, limit, cursor)
    out = [
        {
            "id": r.idempotency_key.rsplit(":", 1)[-1],
            "lease_id": r.lease_id,
            "interval_start": r.interval_start,
            "interval_end": r.interval_end,
            "gpu_seconds": r.gpu_seconds,
            "energy_wh": r.energy_wh,
            "source": str(r.source),
            "recorded_at": r.recorded_at,
            "new": False,
            "lease_state": str(lease.state),
            "settled": lease.state is LeaseState.SETTLED,
        }
        for r in items
    ]
    return pagination.body(request, out, nxt)


@router.post("/leases/{lease_id}/readings", status_code=201, response_model=schemas.ReadingOut)
def post_reading(
    lease_id: str,
    body: schemas.ReadingIn,
    request: Request,
    who: Provider,
    ctx: Ctx,
    key: IdemKey = None,
) -> JSONResponse:
    """Metered use of one of the provider's leases. Resending a reading id changes nothing
    (the same values) or is a 409 (other values)."""
    now = ctx.now()
    with ctx.db.session_scope(write=False) as s:
        lease = _lease(s, who, lease_id)
        siblings = Clearings(s).leases(
            clearing_id=lease.clearing_id, order_id=lease.allocation.order_id
        )
    ensure_accounts(ctx.ledger, billing.new_exchange_accounts(), now)
    ensure_accounts(
        ctx.ledger, [billing.new_provider_account(p) for p in provider_ids(siblings)], now
    )
    model = energy_model(request)

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        current = _lease(s, who, lease_id)
        fee = fee_bp(s, ctx.settings.default_fee_bp)
        out = record_reading(s, ctx.ledger, current, body, who.member_id, fee, now, ctx.settings)
        if out["settled"]:
            book_energy(s, ctx.ledger, model, ctx.settings.grid, now, [x.id for x in siblings])
        return (201 if out["new"] else 200), out

    return run_write(ctx, who, key, fingerprint("POST", request.url.path, body), work)


#: Most readings in one ``POST /readings``.
MAX_READINGS = 5000


@router.post("/readings", status_code=201, response_model=schemas.ReadingsOut)
def post_readings(
    body: list[schemas.LeaseReadingIn],
    request: Request,
    who: Provider,
    ctx: Ctx,
    key: IdemKey = None,
) -> JSONResponse:
    """Many readings of the provider's leases in one transaction: what an agent that meters
    every lease of a slot sends at the slot's end. The same rules as
    ``POST /leases/{id}/readings`` for each (a reading id sent before is not counted again; a
    final reading completes its lease), then every order whose leases of a clearing are all
    final is settled, in one ledger call. All or nothing: one bad reading refuses the batch
    and the error names it (``body[i]``, counting the final readings apart)."""
    if len(body) > MAX_READINGS:
        raise ValidationError(
            f"{len(body)} readings in one batch", field="body", fix=f"send at most {MAX_READINGS}"
        )
    now = ctx.now()
    ids = sorted({x.lease_id for x in body})
    with ctx.db.session_scope(write=False) as s:
        orders = set(s.scalars(select(LeaseRow.order_id).where(LeaseRow.id.in_(ids))))
        providers: set[str | None] = set(
            s.scalars(
                select(LeaseRow.provider_id).where(LeaseRow.order_id.in_(sorted(orders))).distinct()
            )
        )
        siblings = list(s.scalars(select(LeaseRow.id).where(LeaseRow.order_id.in_(sorted(orders)))))
    model = energy_model(request)
    payees = [billing.new_provider_account(p) for p in sorted(p for p in providers if p)]
    ensure_accounts(ctx.ledger, billing.new_exchange_accounts() + payees, now)

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        fee = fee_bp(s, ctx.settings.default_fee_bp)
        recorded = settled = 0
        for i, x in enumerate(body):
            if x.final:
                continue
            try:
                lease = _lease(s, who, x.lease_id)
            except NotFound:
                raise NotFound(
                    f"no lease {x.lease_id!r}", field=f"body[{i}].lease_id", fix="list your leases"
                ) from None
            out = record_reading(s, ctx.ledger, lease, x, who.member_id, fee, now, ctx.settings)
            recorded += int(out["new"])
        finals = [FinalReading(x.lease_id, x) for x in body if x.final]
        n, groups = meter_final(s, who.member_id, finals, now, ctx.settings)
        recorded += n
        settled += settle_done_orders(s, ctx.ledger, groups, fee, now)
        if settled:  # the settled leases' certificates and carbon, as one reading's route
            book_energy(
                s,
                ctx.ledger,
                model,
                ctx.settings.grid,
                now,
                siblings,
                limit=max(500, len(siblings)),
            )
        return 201, {"recorded": recorded, "settled": settled}

    data = [x.model_dump(mode="json") for x in body]
    return run_write(ctx, who, key, fingerprint("POST", request.url.path, data), work)


@router.post("/leases/{lease_id}/fail", response_model=schemas.LeaseOut)
def fail(
    lease_id: str, request: Request, who: Provider, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """The provider could not run (all of) a scheduled or running lease: it fails. When it
    was its order's last open lease the order is settled: the metered use so far is paid,
    the rest of the hold released. The work it did not deliver goes back into the next
    clearing (a batch or service order: ``partially``); a gang fails whole and is re-queued
    whole (``open``) while its run fits before its deadline. Failing a failed lease again
    changes nothing; a completed or settled lease is a 409."""
    now = ctx.now()
    with ctx.db.session_scope(write=False) as s:
        lease = _lease(s, who, lease_id)
        siblings = Clearings(s).leases(
            clearing_id=lease.clearing_id, order_id=lease.allocation.order_id
        )
    ensure_accounts(ctx.ledger, billing.new_exchange_accounts(), now)
    ensure_accounts(
        ctx.ledger, [billing.new_provider_account(p) for p in provider_ids(siblings)], now
    )
    model = energy_model(request)

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        current = _lease(s, who, lease_id)
        fee = fee_bp(s, ctx.settings.default_fee_bp)
        slot = max(0, ctx.settings.grid.slot_at(now))
        out = lease_out(fail_lease(s, ctx.ledger, current, fee, now, slot))
        book_energy(s, ctx.ledger, model, ctx.settings.grid, now, [x.id for x in siblings])
        return 200, out

    return run_write(ctx, who, key, fingerprint("POST", request.url.path, None), work)
