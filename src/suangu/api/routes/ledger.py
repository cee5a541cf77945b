"""Accounts, statements, deposits and the exchange fee.

Buyers and providers see their own accounts; operators and auditors all. Operators record
deposits (cash in from the bank) and set the fee.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from suangu.api import pagination, schemas
from suangu.api.auth import Anyone, Operator, Principal
from suangu.api.idempotency import fingerprint, run_write
from suangu.api.routes._common import Ctx, Cursor, IdemKey, Limit
from suangu.api.services import (
    account_out,
    ensure_accounts,
    fee_bp,
    set_fee_bp,
    transfer_out,
)
from suangu.core import billing
from suangu.core.errors import ValidationError
from suangu.core.ledger import AccountKind, Asset, CreateResult
from suangu.store.errors import Conflict, NotFound
from suangu.store.ledger import account_from_row
from suangu.store.models import LedgerAccountRow, Role
from suangu.store.repositories import Members

router = APIRouter(tags=["ledger"])


#: The kinds of account a member may own; the exchange's internal accounts are never a
#: member's, whatever their owner is called (member ids that name an internal owner are
#: refused too: :data:`suangu.core.billing.RESERVED_MEMBER_IDS`).
MEMBER_KINDS = (str(AccountKind.BUYER), str(AccountKind.PROVIDER))


def _check_account(ctx: Any, who: Principal, account_id: str) -> None:
    with ctx.db.session_scope(write=False) as s:
        row = s.get(LedgerAccountRow, account_id)
        owner, kind = (None, None) if row is None else (row.owner, row.kind)
    if owner is None or not who.may_see(owner) or (not who.sees_all and kind not in MEMBER_KINDS):
        raise NotFound(
            f"no account {account_id!r}", field="path.account_id", fix="list your accounts"
        )


@router.get("/accounts", response_model=schemas.PageOut[schemas.AccountOut])
def list_accounts(
    request: Request,
    who: Anyone,
    ctx: Ctx,
    ledger: Asset | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Balances: a member's own accounts; operators and auditors see every account."""
    q = select(LedgerAccountRow).order_by(LedgerAccountRow.id)
    if not who.sees_all:
        q = q.where(
            LedgerAccountRow.owner == who.member_id, LedgerAccountRow.kind.in_(MEMBER_KINDS)
        )
    if ledger is not None:
        q = q.where(LedgerAccountRow.ledger == str(ledger))
    with ctx.db.session_scope(write=False) as s:
        rows, nxt = pagination.page_query(s, q, limit, cursor)
        items = [account_out(account_from_row(r)) for r in rows]
    return pagination.body(request, items, nxt)


@router.get("/accounts/{account_id}", response_model=schemas.AccountOut)
def get_account(account_id: str, who: Anyone, ctx: Ctx) -> dict[str, Any]:
    _check_account(ctx, who, account_id)
    account = ctx.ledger.lookup_account(account_id)
    assert account is not None
    return account_out(account)


@router.get("/accounts/{account_id}/transfers", response_model=schemas.PageOut[schemas.TransferOut])
def statement(
    account_id: str,
    request: Request,
    who: Anyone,
    ctx: Ctx,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The account's statement: every transfer debiting or crediting it, oldest first."""
    _check_account(ctx, who, account_id)
    items, nxt = pagination.page(ctx.ledger.account_transfers(account_id), limit, cursor)
    return pagination.body(request, [transfer_out(t) for t in items], nxt)


@router.post("/deposits", status_code=201, response_model=schemas.AccountOut)
def deposit(
    body: schemas.DepositIn, request: Request, who: Operator, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """Cash in from the bank to a buyer's account; ``id`` makes it idempotent."""
    now = ctx.now()
    with ctx.db.session_scope(write=False) as s:
        try:
            member = Members(s).get(body.member_id)
        except NotFound as err:
            raise NotFound(err.message, field="body.member_id", fix=err.fix) from None
    if member.role is not Role.BUYER:
        raise ValidationError(
            f"member {member.id!r} is a {member.role}", field="body.member_id", fix="a buyer"
        )
    ensure_accounts(ctx.ledger, billing.new_exchange_accounts(), now)
    ensure_accounts(ctx.ledger, [billing.new_buyer_account(member.id)], now)
    transfer = billing.deposit(f"deposit:{body.id}", member.id, body.amount_fen)

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        (result,) = ctx.ledger.create_transfers_in(s, [transfer], now)
        if result not in (CreateResult.OK, CreateResult.EXISTS):
            raise Conflict(
                f"the deposit was refused: {result}",
                field="body.id",
                fix="use a new id for a new deposit",
            )
        row = s.get(LedgerAccountRow, billing.buyer_account(member.id), populate_existing=True)
        assert row is not None
        return 201, account_out(account_from_row(row))

    return run_write(ctx, who, key, fingerprint("POST", request.url.path, body), work)


@router.get("/fees", response_model=schemas.FeesOut)
def get_fees(who: Anyone, ctx: Ctx) -> dict[str, Any]:
    """The exchange fee on providers' revenue, basis points."""
    with ctx.db.session_scope(write=False) as s:
        return {"fee_bp": fee_bp(s, ctx.settings.default_fee_bp)}


@router.put("/fees", response_model=schemas.FeesOut)
def put_fees(
    body: schemas.FeesIn, request: Request, who: Operator, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """Set the fee; it applies to orders settled from now on."""
    now = ctx.now()

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        set_fee_bp(s, body.fee_bp, now)
        return 200, {"fee_bp": body.fee_bp}

    return run_write(ctx, who, key, fingerprint("PUT", request.url.path, body), work)
