"""The audit trail (:mod:`suangu.store.audit`), for auditors and operators: its entries
oldest first (keyset-paginated), its head, and a check of the whole chain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from suangu.api import pagination
from suangu.api.auth import Reader
from suangu.api.routes._common import Ctx, Cursor, Limit
from suangu.api.schemas import PageOut, Response
from suangu.store import audit
from suangu.store.models import AuditRow

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditEntryOut(Response):
    #: Position in the chain: 1, 2, ... without gaps.
    seq: int
    #: Unix seconds, the exchange's clock.
    at: int
    #: The member who wrote (``null`` for the exchange itself: role ``system``).
    member_id: str | None
    role: str
    #: What was done, such as ``order.submit``, ``deposit``, ``lease.start``.
    action: str
    #: What it was done to, such as ``order:o-17``.
    object: str
    #: The request's ``X-Request-ID``.
    request_id: str | None
    #: Canonical JSON: the HTTP status, the request's sha256 and a few fields.
    detail: str
    prev_hash: str
    #: sha256 of ``prev_hash`` and the entry's canonical JSON.
    hash: str


class AuditHeadOut(Response):
    #: The last entry's ``seq`` (0: no entry yet).
    seq: int
    hash: str


class AuditProblemOut(Response):
    seq: int
    kind: str
    message: str


class AuditVerifyOut(Response):
    ok: bool
    entries: int
    head: AuditHeadOut
    problems: list[AuditProblemOut]


@router.get("", response_model=PageOut[AuditEntryOut])
def list_entries(
    request: Request,
    who: Reader,
    ctx: Ctx,
    member_id: str | None = None,
    action: str | None = None,
    after_seq: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Entries oldest first; filter by member, action, or entries after a ``seq``."""
    q = select(AuditRow).order_by(AuditRow.seq)
    if member_id is not None:
        q = q.where(AuditRow.member_id == member_id)
    if action is not None:
        q = q.where(AuditRow.action == action)
    if after_seq is not None:
        q = q.where(AuditRow.seq > after_seq)
    with ctx.db.session_scope(write=False) as s:
        rows, nxt = pagination.page_query(s, q, limit, cursor)
        items = [audit.to_record(r).to_dict() for r in rows]
    return pagination.body(request, items, nxt)


@router.get("/head", response_model=AuditHeadOut)
def get_head(who: Reader, ctx: Ctx) -> dict[str, Any]:
    """The chain's head: keep it somewhere else now and then, as an anchor for
    ``suangu audit verify --expect SEQ:HASH``."""
    with ctx.db.session_scope(write=False) as s:
        seq, digest = audit.head(s)
    return {"seq": seq, "hash": digest}


@router.get("/verify", response_model=AuditVerifyOut)
def verify_chain(who: Reader, ctx: Ctx) -> dict[str, Any]:
    """Check the whole chain on the server (reads every entry): each entry's hash, the
    links, the numbering and the head. Problems name the entry."""
    with ctx.db.session_scope(write=False) as s:
        verdict = audit.verify_session(s)
    return verdict_out(verdict)


def verdict_out(v: audit.Verdict) -> dict[str, Any]:
    return {
        "ok": v.ok,
        "entries": v.entries,
        "head": {"seq": v.head_seq, "hash": v.head_hash},
        "problems": [{"seq": p.seq, "kind": p.kind, "message": p.message} for p in v.problems],
    }
