"""Members and their API keys (operators manage them; everyone sees their own)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from suangu.api import pagination, schemas
from suangu.api.auth import Anyone, Operator, Principal, Reader, allow, forget_key
from suangu.api.idempotency import fingerprint, run_write, secret_issued
from suangu.api.routes._common import Ctx, Cursor, IdemKey, IdemKeyRequired, Limit
from suangu.api.services import ensure_accounts, key_out, member_accounts, member_out
from suangu.store.errors import NotFound
from suangu.store.models import ApiKeyRow, MemberRow, Role
from suangu.store.repositories import Members, to_key, to_member

router = APIRouter(tags=["members"])
KeyOwner = Annotated[Principal, Depends(allow(Role.OPERATOR, Role.BUYER, Role.PROVIDER))]


def _visible(who: Principal, member_id: str) -> None:
    if not who.may_see(member_id):
        raise NotFound(f"no member {member_id!r}", field="path.member_id", fix="check the id")


def _member(s: Any, member_id: str) -> Any:
    try:
        return Members(s).get(member_id)
    except NotFound as err:
        raise NotFound(err.message, field="path.member_id", fix=err.fix) from None


@router.get("/me", response_model=schemas.MeOut)
def me(who: Anyone, ctx: Ctx) -> dict[str, Any]:
    """The member and role behind the API key."""
    with ctx.db.session_scope(write=False) as s:
        m = Members(s).get(who.member_id)
    return {"member": member_out(m), "key_id": who.key_id, "role": str(who.role)}


@router.post("/members", status_code=201, response_model=schemas.MemberOut)
def create_member(
    body: schemas.MemberIn, request: Request, who: Operator, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    now = ctx.now()
    resp = run_write(
        ctx,
        who,
        key,
        fingerprint("POST", request.url.path, body),
        lambda s: (201, member_out(Members(s).create(body.id, body.name, body.role, now))),
        rename={"id": "body.id", "role": "body.role", "name": "body.name"},
    )
    if resp.status_code == 201:
        ensure_accounts(ctx.ledger, member_accounts(body.id, body.role), now)
    return resp


@router.get("/members", response_model=schemas.PageOut[schemas.MemberOut])
def list_members(
    request: Request,
    who: Reader,
    ctx: Ctx,
    role: Role | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    q = select(MemberRow).order_by(MemberRow.id)
    if role is not None:
        q = q.where(MemberRow.role == str(role))
    with ctx.db.session_scope(write=False) as s:
        rows, nxt = pagination.page_query(s, q, limit, cursor)
        items = [member_out(to_member(r)) for r in rows]
    return pagination.body(request, items, nxt)


@router.get("/members/{member_id}", response_model=schemas.MemberOut)
def get_member(member_id: str, who: Anyone, ctx: Ctx) -> dict[str, Any]:
    _visible(who, member_id)
    with ctx.db.session_scope(write=False) as s:
        return member_out(_member(s, member_id))


@router.post("/members/{member_id}/keys", status_code=201, response_model=schemas.NewKeyOut)
def create_key(
    member_id: str,
    request: Request,
    who: Operator,
    ctx: Ctx,
    key: IdemKeyRequired,
    body: schemas.KeyIn | None = None,
) -> JSONResponse:
    """A new API key for the member; the token is in this response only.

    Needs an ``Idempotency-Key``: a retry with the same key (the first response was lost)
    mints no second key; it answers 409 naming the key the first request created, whose
    token is not kept anywhere (revoke it and create another)."""
    label = body.label if body is not None else ""
    now = ctx.now()

    def work(s: Any) -> tuple[int, dict[str, Any]]:
        try:
            new = Members(s).create_key(member_id, now, label=label)
        except NotFound as err:
            raise NotFound(err.message, field="path.member_id", fix=err.fix) from None
        return 201, {**key_out(new.key), "token": new.token}

    return run_write(
        ctx,
        who,
        key,
        fingerprint("POST", request.url.path, body),
        work,
        record=secret_issued(
            "the API key",
            "use the token of the first response; if it was lost, revoke {id} "
            f"(DELETE /members/{member_id}/keys/{{id}}) and create a new key with a new "
            "Idempotency-Key",
        ),
    )


@router.get("/members/{member_id}/keys", response_model=schemas.PageOut[schemas.KeyOut])
def list_keys(
    member_id: str,
    request: Request,
    who: Anyone,
    ctx: Ctx,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    _visible(who, member_id)
    q = select(ApiKeyRow).where(ApiKeyRow.member_id == member_id).order_by(ApiKeyRow.id)
    with ctx.db.session_scope(write=False) as s:
        _member(s, member_id)
        rows, nxt = pagination.page_query(s, q, limit, cursor)
        items = [key_out(to_key(r)) for r in rows]
    return pagination.body(request, items, nxt)


@router.delete("/members/{member_id}/keys/{key_id}", response_model=schemas.KeyOut)
def revoke_key(
    member_id: str, key_id: str, request: Request, who: KeyOwner, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """Revoke a key (operators: any; buyers and providers: their own)."""
    _visible(who, member_id)
    now = ctx.now()

    def work(s: Any) -> tuple[int, dict[str, Any]]:
        members = Members(s)
        if all(k.id != key_id for k in members.keys(member_id)):
            raise NotFound(f"no API key {key_id!r}", field="path.key_id", fix="list the keys")
        return 200, key_out(members.revoke_key(key_id, now))

    resp = run_write(ctx, who, key, fingerprint("DELETE", request.url.path, None), work)
    forget_key(ctx, key_id)  # this process refuses it at once (other workers: see auth)
    return resp
