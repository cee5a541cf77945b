"""Public market data: the time grid, the carbon price, and cleared prices and volumes per
pool and slot.

No key needed to read. Only what a clearing published: the price and the GPUs cleared in
each pool-slot; never an order, a limit price or an offer's reserve. The operator sets the
carbon price (``PUT /market/carbon-price``, audited).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from suangu.api import carbon_price, pagination, schemas
from suangu.api.auth import Operator
from suangu.api.idempotency import fingerprint, run_write
from suangu.api.routes._common import Ctx, Cursor, IdemKey, Limit
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


@router.get("/carbon-price", response_model=schemas.CarbonPriceOut)
def get_carbon_price(request: Request, ctx: Ctx) -> dict[str, Any]:
    """The operator's carbon price, yuan per tonne of CO2, that every clearing adds to the
    reserves of the modelled sites' pool-slots."""
    with ctx.db.session_scope(write=False) as s:
        found = carbon_price.stored(s)
        yuan = carbon_price.effective(s, request.app.state.market_hook)
    return {
        "yuan_per_t": yuan,
        "fen_per_t": round(yuan * 100),
        "updated_at": None if found is None else found[1],
    }


@router.put("/carbon-price", response_model=schemas.CarbonPriceOut)
def put_carbon_price(
    body: schemas.CarbonPriceIn, request: Request, who: Operator, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """Set the carbon price; clearings from now on apply it (it survives restarts)."""
    fen = carbon_price.fen_per_t(body.yuan_per_t)
    now = ctx.now()

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        carbon_price.store(s, fen, now)
        return 200, {"yuan_per_t": fen / 100, "fen_per_t": fen, "updated_at": now}

    return run_write(ctx, who, key, fingerprint("PUT", request.url.path, body), work)


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
