"""Payloads' logs: the agent ships its payload's output as it runs; the buyer follows it.

* ``POST /leases/{id}/logs?offset=N`` (the lease's provider): the next chunk of the
  payload's output, UTF-8 text, at most :data:`MAX_CHUNK` bytes; ``offset`` and ``size`` say
  which raw bytes of the output it covers (the agent redacts secret values, so the text may
  be shorter). Chunks come in order: a chunk at an offset already stored is the same chunk
  again (200) or a 409; one that leaves a gap is a 409 naming the offset expected.
* ``GET /orders/{id}/logs?cursor=`` (the order's buyer, operators, auditors): the chunks of
  every lease of the order, in the order they arrived; ``suangu job logs ORDER -f`` follows it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suangu.api import ids, pagination
from suangu.api.auth import BuyerOrReader, Provider
from suangu.api.idempotency import fingerprint, run_write
from suangu.api.routes._common import Ctx, Cursor, IdemKey, Limit
from suangu.api.routes.data import read_body
from suangu.api.routes.grants import _held
from suangu.core.errors import ValidationError
from suangu.store.errors import Conflict, NotFound
from suangu.store.models import LeaseLogRow
from suangu.store.repositories import Orders

router = APIRouter(tags=["logs"])

#: Largest chunk one request carries (bytes of text).
MAX_CHUNK = 256 * 1024


def log_out(row: LeaseLogRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "lease_id": row.lease_id,
        "offset": row.start_byte,
        "size": row.size,
        "text": row.text,
        "at": row.at,
    }


@router.post("/leases/{lease_id}/logs", status_code=201)
async def post_log(
    lease_id: str,
    request: Request,
    who: Provider,
    ctx: Ctx,
    offset: Annotated[int, Query(ge=0, le=2**50, description="Where the chunk starts")],
    size: Annotated[int, Query(ge=1, le=2**30, description="Raw output bytes it covers")],
    key: IdemKey = None,
) -> JSONResponse:
    """Append the next chunk of a lease's payload output."""
    raw = await read_body(request, MAX_CHUNK)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(
            "is not UTF-8 text", field="body", fix="send the output as UTF-8 (replace bad bytes)"
        ) from None
    now = ctx.now()

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        lease = _held(s, who, lease_id)
        same = s.scalars(
            select(LeaseLogRow).where(
                LeaseLogRow.lease_id == lease.id, LeaseLogRow.start_byte == offset
            )
        ).first()
        if same is not None:
            if (same.size, same.text) != (size, text):
                raise Conflict(
                    f"the chunk at offset {offset} was sent with other text",
                    field="query.offset",
                    fix="resend the chunk exactly, or send the next one",
                )
            return 200, log_out(same)
        end = s.scalar(
            select(func.max(LeaseLogRow.start_byte + LeaseLogRow.size)).where(
                LeaseLogRow.lease_id == lease.id
            )
        )
        expected = int(end or 0)
        if offset != expected:
            raise Conflict(
                f"the log of lease {lease.id!r} continues at offset {expected}, not {offset}",
                field="query.offset",
                fix=f"send the chunk that starts at {expected}",
            )
        row = LeaseLogRow(
            lease_id=lease.id,
            order_id=lease.allocation.order_id,
            start_byte=offset,
            size=size,
            text=text,
            at=now,
        )
        s.add(row)
        s.flush()
        return 201, log_out(row)

    digest = fingerprint("POST", request.url.path, {"offset": offset, "size": size, "t": text})
    return run_write(ctx, who, key, digest, work)


@router.get("/orders/{order_id}/logs")
def get_logs(
    order_id: str,
    request: Request,
    who: BuyerOrReader,
    ctx: Ctx,
    limit: Limit = 200,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The payload output of an order's leases, in the order it arrived."""
    if cursor is not None and not cursor.isdigit():
        raise ValidationError(
            f"malformed cursor {cursor!r}", field="query.cursor", fix="pass next_cursor back"
        )
    with ctx.db.session_scope(write=False) as s:
        try:
            owner = None if who.sees_all else who.member_id
            order_id = Orders(s).get(ids.order_id(s, who, order_id), owner).order.id
        except NotFound:
            raise NotFound(
                f"no order {order_id!r}", field="path.order_id", fix="list your orders"
            ) from None
        q = select(LeaseLogRow).where(LeaseLogRow.order_id == order_id)
        if cursor:
            q = q.where(LeaseLogRow.id > int(cursor))
        rows = list(s.scalars(q.order_by(LeaseLogRow.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = str(rows[-1].id) if rows else cursor
    return {
        **pagination.body(request, [log_out(r) for r in rows], str(rows[-1].id) if more else None),
        #: Where to resume following the log (also on the last page).
        "resume": nxt,
    }
