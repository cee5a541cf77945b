"""Buyers' orders: sealed bids. A buyer sees and cancels only its own; operators and auditors
see all; nobody else learns that an order exists (404)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from suangu.api import pagination, schemas
from suangu.api.auth import Buyer, BuyerOrReader, Principal
from suangu.api.errors import PayloadTooLarge, UnsupportedMediaType
from suangu.api.idempotency import fingerprint, run_write
from suangu.api.routes._common import Ctx, Cursor, IdemKey, Limit
from suangu.api.services import MAX_YAML_BYTES, order_from_json, order_out, orders_from_yaml
from suangu.core.errors import ValidationError
from suangu.core.types import Order
from suangu.store.errors import NotFound
from suangu.store.models import OrderRow, OrderStatus
from suangu.store.repositories import OrderRecord, Orders

router = APIRouter(tags=["orders"])
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


async def _yaml_body(request: Request) -> bytes:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in YAML_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {kind or '(none)'!r} is not YAML",
            field="header.Content-Type",
            fix="send Content-Type: application/yaml",
        )
    size = request.headers.get("content-length", "")
    if size.isdigit() and int(size) > MAX_YAML_BYTES:
        raise PayloadTooLarge(
            f"{size} bytes", field="body", fix=f"send at most {MAX_YAML_BYTES} bytes"
        )
    return await request.body()


def _submit(s: Session, orders: list[Order], now: int) -> list[OrderRecord]:
    repo = Orders(s)
    return [repo.submit(order, now) for order in orders]


@router.post("/orders", status_code=201, response_model=schemas.OrderOut)
def create_order(
    body: schemas.OrderIn, request: Request, who: Buyer, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """Submit a bid (JSON). Resubmitting the same order id with the same fields returns it."""
    order = order_from_json(body, who.member_id, ctx.current_slot())
    now = ctx.now()
    return run_write(
        ctx,
        who,
        key,
        fingerprint("POST", request.url.path, body),
        lambda s: (201, order_out(_submit(s, [order], now)[0])),
        rename={"id": "body.id"},
    )


@router.post(
    "/orders/yaml",
    status_code=201,
    response_model=schemas.OrdersOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/yaml": {"schema": {"type": "string"}}},
            "description": "A job spec as the CLI reads it: one order mapping (id, buyer, "
            "kind, gpus, gpu_hours, duration, release, deadline, limit in yuan, ...), or "
            "`orders:` with a list. Times are hours from the grid epoch or ISO date-times; "
            "release defaults to now and submit is ignored (the order is submitted now).",
        }
    },
)
def create_orders_yaml(
    request: Request,
    who: Buyer,
    ctx: Ctx,
    raw: Annotated[bytes, Depends(_yaml_body)],
    key: IdemKey = None,
) -> JSONResponse:
    """Submit orders from a YAML job spec: all of them, or none."""
    orders = orders_from_yaml(raw, who.member_id, ctx.settings.grid, ctx.current_slot())
    now = ctx.now()
    return run_write(
        ctx,
        who,
        key,
        fingerprint("POST", request.url.path, raw.decode("utf-8-sig")),
        lambda s: (201, {"items": [order_out(r) for r in _submit(s, orders, now)]}),
        rename={"id": "body", "body.id": "body"},
    )


@router.get("/orders", response_model=schemas.PageOut[schemas.OrderOut])
def list_orders(
    request: Request,
    who: BuyerOrReader,
    ctx: Ctx,
    status: OrderStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """A buyer's own orders, oldest first; operators and auditors see every order."""
    with ctx.db.session_scope(write=False) as s:
        if not who.sees_all:
            try:
                pg = Orders(s).page(who.member_id, limit=limit, cursor=cursor, status=status)
            except ValidationError as err:
                raise ValidationError(
                    err.message, field=f"query.{err.field}", fix=err.fix
                ) from None
            return pagination.body(request, [order_out(r) for r in pg.items], pg.next_cursor)
        q = select(OrderRow.id).order_by(OrderRow.submitted_at, OrderRow.id)
        if status is not None:
            q = q.where(OrderRow.status == str(status))
        ids, nxt = pagination.page_query(s, q, limit, cursor)
        items = [order_out(Orders(s).get(i)) for i in ids]
    return pagination.body(request, items, nxt)


def _get(s: Session, who: Principal, order_id: str) -> OrderRecord:
    try:
        return Orders(s).get(order_id, None if who.sees_all else who.member_id)
    except NotFound as err:
        raise NotFound(err.message, field="path.order_id", fix="list your orders") from None


@router.get("/orders/{order_id}", response_model=schemas.OrderOut)
def get_order(order_id: str, who: BuyerOrReader, ctx: Ctx) -> dict[str, Any]:
    with ctx.db.session_scope(write=False) as s:
        return order_out(_get(s, who, order_id))


@router.post("/orders/{order_id}/cancel", response_model=schemas.OrderOut)
def cancel_order(
    order_id: str, request: Request, who: Buyer, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """Cancel an open order; once a clearing has allocated to it, it can no longer be."""

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        _get(s, who, order_id)
        return 200, order_out(Orders(s).cancel(order_id, who.member_id))

    return run_write(ctx, who, key, fingerprint("POST", request.url.path, None), work)
