"""Public market data: the time grid, and cleared prices and volumes per pool and slot.

No key needed. Only what a clearing published: the price and the GPUs cleared in each
pool-slot; never an order, a limit price or an offer's reserve.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from suangu.api import pagination, schemas
from suangu.api.routes._common import Ctx, Cursor, Limit
from suangu.core.errors import ValidationError
from suangu.store.models import PoolRow
from suangu.store.repositories import Clearings

router = APIRouter(prefix="/market", tags=["market"])
MAX_SPAN = 24 * 31


@router.get("/grid", response_model=schemas.GridOut)
def grid(ctx: Ctx) -> dict[str, Any]:
    """The market's time grid and the current slot."""
    g = ctx.settings.grid
    return {
        "epoch": g.epoch,
        "slot_seconds": g.slot_seconds,
        "current_slot": ctx.current_slot(),
        "now": ctx.now(),
    }


@router.get("/prices", response_model=schemas.PageOut[schemas.PriceOut])
def prices(
    request: Request,
    ctx: Ctx,
    pool_id: str | None = None,
    first_slot: Annotated[int | None, Query(ge=0, le=schemas.MAX_SLOT)] = None,
    end_slot: Annotated[int | None, Query(ge=1, le=schemas.MAX_SLOT)] = None,
    limit: Limit = 200,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The latest clearing's price and cleared GPUs of each pool and slot.

    Default range: the day before the current slot to the clearing horizon after it.
    """
    current = ctx.current_slot()
    first = max(0, current - 24) if first_slot is None else first_slot
    end = current + ctx.settings.horizon_slots if end_slot is None else end_slot
    if end <= first:
        raise ValidationError(
            f"must be after first_slot ({end} <= {first})", field="query.end_slot", fix="widen"
        )
    if end - first > MAX_SPAN:
        raise ValidationError(
            f"spans {end - first} slots; at most {MAX_SPAN}",
            field="query.end_slot",
            fix="ask for a month at a time",
        )
    rows: list[dict[str, Any]] = []
    with ctx.db.session_scope(write=False) as s:
        q = select(PoolRow.id).order_by(PoolRow.id)
        if pool_id is not None:
            q = q.where(PoolRow.id == pool_id)
        for pid in s.scalars(q):
            rows += [
                {
                    "pool_id": p.pool_id,
                    "slot": p.slot,
                    "price_fen": p.price_fen,
                    "cleared_gpus": p.cleared_gpus,
                }
                for p in Clearings(s).prices(pid, first, end)
            ]
    items, nxt = pagination.page(rows, limit, cursor)
    return pagination.body(request, items, nxt)
