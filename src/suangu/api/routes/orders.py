"""Buyers' orders: sealed bids. A buyer sees and cancels only its own; operators and auditors
see all; nobody else learns that an order exists (404).

``POST /orders`` is the exchange's hot path. It costs one transaction of three statements:
the key-and-``Idempotency-Key`` check of :func:`suangu.api.idempotency.run_write`, one
``INSERT ... ON CONFLICT DO NOTHING`` of the order (:meth:`Orders.submit`; the buyer is not
read again: the key's role says it is one), and the idempotency record; then the audit
trail's two at the commit (:mod:`suangu.store.audit`; three on SQLite). The key itself comes
from the per-process cache of :mod:`suangu.api.auth`, and the dependencies run on the event
loop, so the request takes one hop to a worker thread. At most :data:`ORDER_WRITERS` order
writes of a process hold a database connection at once (the others wait their turn in their
thread), so that bursts do not open and close connections beyond the engine's pool.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from suangu.api import cancel, ids, orderbatch, pagination, schemas, workloads
from suangu.api.auth import BuyerOrReader, BuyerWriting, Principal
from suangu.api.context import ApiContext
from suangu.api.errors import PayloadTooLarge, UnsupportedMediaType
from suangu.api.idempotency import fingerprint, respond, run_write
from suangu.api.routes._common import Ctx, Cursor, IdemKey, Limit
from suangu.api.routes.data import objects
from suangu.api.services import (
    ensure_accounts,
    fee_bp,
    order_from_json,
    order_out,
    orders_from_yaml,
)
from suangu.core import billing
from suangu.core.types import Order, owned_id
from suangu.store.db import PG_POOL_SIZE
from suangu.store.errors import NotFound
from suangu.store.models import OrderRow, OrderStatus
from suangu.store.repositories import Clearings, OrderRecord, Orders, order_record

router = APIRouter(tags=["orders"])
BODY_ID = {"id": "body.id"}
#: Order writes of one process that may run at once (each holds a database connection).
ORDER_WRITERS = max(1, PG_POOL_SIZE - 2)
_WRITERS = threading.BoundedSemaphore(ORDER_WRITERS)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


async def _yaml_body(request: Request) -> bytes:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in YAML_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {kind or '(none)'!r} is not YAML",
            field="header.Content-Type",
            fix="send Content-Type: application/yaml",
        )
    cap = _ctx_of(request).settings.max_yaml_bytes
    size = request.headers.get("content-length", "")
    if size.isdigit() and int(size) > cap:
        raise PayloadTooLarge(f"{size} bytes", field="body", fix=f"send at most {cap} bytes")
    # Chunked (no length): read as it comes, and stop at the limit.
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > cap:
            raise PayloadTooLarge(
                f"more than {cap} bytes", field="body", fix=f"send at most {cap} bytes"
            )
    return bytes(raw)


def _ctx_of(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def _submit(s: Session, orders: list[Order], now: int) -> list[OrderRecord]:
    repo = Orders(s)
    return [repo.submit(order, now, buyer_checked=True) for order in orders]


@router.post("/orders", status_code=201, response_model=schemas.OrderOut)
async def create_order(
    body: schemas.OrderIn, request: Request, who: BuyerWriting, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """Submit a bid (JSON). Resubmitting the same order id with the same fields returns it."""
    order = order_from_json(body, who.member_id, ctx.current_slot())
    now = ctx.now()
    if body.workload is not None:  # its own transaction: the order and its workload
        given = body.data_gb if "data_gb" in body.model_fields_set else None
        order = workloads.with_data_gb(order, body.workload, given, "body")
        store = objects(request, ctx)
        # Secret values count in the fingerprint, keyed by the master key, never in clear.
        secret = store.mac(json.dumps(sorted(body.workload.secrets().items())))
        digest = fingerprint("POST", request.url.path, {"order": body, "secrets": secret})
        spec = body.workload
        return await run_in_threadpool(
            _write_one, ctx, who, key, digest, order, now, lambda s, r: {
                **order_out(r), "workload": workloads.attach(s, store, order, spec, now)
            },
        )  # fmt: skip
    digest = fingerprint("POST", request.url.path, body)
    if orderbatch.enabled():
        batcher = orderbatch.batcher(request.app.state, ctx)
        status, out, again = await batcher.submit(who, key, digest, order, now, BODY_ID)
        return respond(status, out, again)
    return await run_in_threadpool(_write_one, ctx, who, key, digest, order, now)


def _write_one(
    ctx: ApiContext,
    who: Principal,
    key: str | None,
    digest: str,
    order: Order,
    now: int,
    out: Callable[[Session, OrderRecord], dict[str, Any]] | None = None,
) -> JSONResponse:
    """One order in its own transaction (group commit off, or an order with a workload:
    ``out`` stores it and answers the order)."""
    answer = out or (lambda _s, r: order_out(r))
    with _WRITERS:
        return run_write(
            ctx,
            who,
            key,
            digest,
            lambda s: (201, answer(s, _submit(s, [order], now)[0])),
            rename=BODY_ID,
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
            "kind, gpus, gpu_hours, duration, release, deadline, limit in yuan, firm, ...), or "
            "`orders:` with a list. Times are hours from the grid epoch or ISO date-times; "
            "release defaults to now and submit is ignored (the order is submitted now).",
        }
    },
)
def create_orders_yaml(
    request: Request,
    who: BuyerWriting,
    ctx: Ctx,
    raw: Annotated[bytes, Depends(_yaml_body)],
    key: IdemKey = None,
) -> JSONResponse:
    """Submit orders from a YAML job spec: all of them, or none."""
    orders = orders_from_yaml(
        raw,
        who.member_id,
        ctx.settings.grid,
        ctx.current_slot(),
        max_bytes=ctx.settings.max_yaml_bytes,
        max_depth=ctx.settings.max_yaml_depth,
    )
    now = ctx.now()
    specs = {owned_id(k, who.member_id): v for k, v in workloads.from_yaml(raw).items()}
    orders = [
        workloads.with_data_gb(o, specs[o.id][0], specs[o.id][1], specs[o.id][2])
        if o.id in specs
        else o
        for o in orders
    ]
    store = objects(request, ctx) if specs else None

    def work(s: Session) -> tuple[int, Any]:
        items = []
        for r in _submit(s, orders, now):
            item = order_out(r)
            if store is not None and r.order.id in specs:
                spec, _, at = specs[r.order.id]
                item["workload"] = workloads.attach(s, store, r.order, spec, now, at)
            items.append(item)
        return 201, {"items": items}

    return run_write(
        ctx,
        who,
        key,
        fingerprint("POST", request.url.path, raw.decode("utf-8-sig")),
        work,
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
    q = select(OrderRow).order_by(OrderRow.submitted_at, OrderRow.id)
    if not who.sees_all:
        q = q.where(OrderRow.buyer_id == who.member_id)
    if status is not None:
        q = q.where(OrderRow.status == str(status))
    with ctx.db.session_scope(write=False) as s:
        rows, nxt = pagination.page_query(s, q, limit, cursor)
        items = _with_workloads(s, [order_out(order_record(r)) for r in rows])
    return pagination.body(request, items, nxt)


def _with_workloads(s: Session, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = workloads.redacted_for(s, (o["id"] for o in items))
    return [{**o, "workload": found.get(o["id"])} for o in items]


def _get(s: Session, who: Principal, order_id: str) -> OrderRecord:
    """The order ``who`` names ``order_id`` (a stored id, or the owner's plain name)."""
    try:
        return Orders(s).get(
            ids.order_id(s, who, order_id), None if who.sees_all else who.member_id
        )
    except NotFound as err:
        raise NotFound(err.message, field="path.order_id", fix="list your orders") from None


@router.get("/orders/{order_id}", response_model=schemas.OrderDetailOut)
def get_order(order_id: str, who: BuyerOrReader, ctx: Ctx) -> dict[str, Any]:
    """An order, with its planned schedule: what the latest clearing planned for it beyond
    the firmness horizon (indicative; the next clearing plans again)."""
    with ctx.db.session_scope(write=False) as s:
        record = _get(s, who, order_id)
        live = record.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY)
        planned = Clearings(s).planned(record.order.id) if live else []
        return {
            **_with_workloads(s, [order_out(record)])[0],
            "planned": [
                {"pool_id": a.pool_id, "slot": a.slot, "gpus": a.gpus, "price_fen": a.price_fen}
                for a in planned
            ],
        }


@router.post("/orders/{order_id}/cancel", response_model=schemas.OrderOut)
def cancel_order(
    order_id: str, request: Request, who: BuyerWriting, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """Cancel an order. An open order is cancelled; a partly filled one stops its remaining
    work: it is not offered to clearings again, its leases that have not started fail
    (nothing paid for them) and the holds of its clearings whose leases are all done are
    settled, the rest released (:mod:`suangu.api.cancel`). Running leases run and settle as
    usual. A cleared or expired order is a 409."""
    now = ctx.now()
    with ctx.db.session_scope(write=False) as s:
        order_id = _get(s, who, order_id).order.id
        providers = cancel.provider_ids(s, order_id)
    if providers:
        ensure_accounts(ctx.ledger, billing.new_exchange_accounts(), now)
        ensure_accounts(ctx.ledger, [billing.new_provider_account(p) for p in providers], now)

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        _get(s, who, order_id)
        record = cancel.cancel_order(
            s,
            ctx.ledger,
            order_id,
            who.member_id,
            current_slot=ctx.current_slot(),
            fee_bp=fee_bp(s, ctx.settings.default_fee_bp),
            now=now,
        )
        return 200, _with_workloads(s, [order_out(record)])[0]

    return run_write(ctx, who, key, fingerprint("POST", request.url.path, None), work)
