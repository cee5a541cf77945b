"""Resale: a buyer offers back a lease it holds, with its own reserve; the next clearings
sell it to firm demand (:mod:`suangu.core.products`). Proceeds, less the exchange fee, go to
the seller as the new buyers' use is settled; the seller's lease still pays its provider."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from suangu.api import products, schemas
from suangu.api.auth import Buyer, BuyerOrReader
from suangu.api.idempotency import fingerprint, run_write
from suangu.api.routes._common import Ctx, IdemKey

router = APIRouter(tags=["resales"])


@router.post("/resales", status_code=201, response_model=schemas.ResaleOut)
def create(
    body: schemas.ResaleIn, request: Request, who: Buyer, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """Offer back a scheduled lease of one of your firm orders, at least the notice
    (``preempt_notice_slots``) before it starts, with the least you take per GPU-hour."""
    now = ctx.now()
    current = max(0, ctx.settings.grid.slot_at(now))

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        out = products.create_resale(
            s,
            who.member_id,
            body.id,
            body.lease_id,
            body.reserve_fen,
            now,
            current,
            ctx.settings.preempt_notice_slots,
        )
        return 201, out

    return run_write(ctx, who, key, fingerprint("POST", request.url.path, body), work)


@router.get("/resales", response_model=schemas.PageOut[schemas.ResaleOut])
def list_all(who: BuyerOrReader, ctx: Ctx) -> dict[str, Any]:
    """Your resales (operators and auditors: all), by id."""
    with ctx.db.session_scope(write=False) as s:
        items = products.list_resales(s, None if who.sees_all else who.member_id)
    return {"items": items, "next_cursor": None, "next": None}


@router.get("/resales/{resale_id}", response_model=schemas.ResaleOut)
def get(resale_id: str, who: BuyerOrReader, ctx: Ctx) -> dict[str, Any]:
    with ctx.db.session_scope(write=False) as s:
        return products.get_resale(s, resale_id, None if who.sees_all else who.member_id)


@router.post("/resales/{resale_id}/withdraw", response_model=schemas.ResaleOut)
def withdraw(
    resale_id: str, request: Request, who: Buyer, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """Withdraw an open resale; what sold stays sold."""

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        return 200, products.withdraw_resale(s, who.member_id, resale_id)

    return run_write(ctx, who, key, fingerprint("POST", request.url.path, None), work)
