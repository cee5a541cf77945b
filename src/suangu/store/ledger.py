"""The persistent ledger: :class:`SqlLedger`, the store side of :mod:`suangu.core.ledger`.

The rules are the core's. Each write call runs in **one database transaction**:

1. find the rows the call can touch: the accounts named by the batch, the transfers whose ids
   the batch uses (idempotency), the pending transfers it posts or voids, and the pending
   transfers due to expire at ``now``;
2. lock those accounts (``SELECT ... ORDER BY id FOR UPDATE`` on PostgreSQL, in id order so
   that two callers never deadlock; on SQLite the write transaction began with
   ``BEGIN IMMEDIATE`` and is the only writer), then read the transfers again: any change to a
   pending transfer's status needs the locks of its accounts, so what is read now is stable;
3. load that slice into a scratch :class:`suangu.core.ledger.Ledger` and let it decide
   (``create_transfers``: expiry, idempotency, two-phase rules, linked chains, limits);
4. write what changed (account totals, new transfers, pending statuses) and commit.

Concurrency and idempotency: two callers that submit the same transfer id lock the same
accounts, so the second one waits and then answers ``exists`` (or
``exists_with_different_fields``). If the same id is reused on other accounts, both callers
may pass step 3; the primary key on the transfer id then refuses the second insert, the
transaction is rolled back and retried from step 1, and the retry sees the first row. A
pending transfer is resolved at most once also in the database (``UNIQUE (pending_id)``), and
``CHECK`` constraints refuse negative totals and broken account limits.

Time: ``now`` must not go backwards; the latest ``now`` is kept in ``ledger_clock`` (one row)
and advanced in its own short transaction, as the core advances its clock even when a call's
transfers fail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy import ColumnElement, and_, insert, or_, select, update
from sqlalchemy.orm import Session

from suangu.core.errors import ValidationError
from suangu.core.ledger import (
    Account,
    AccountFlags,
    AccountKind,
    Asset,
    CreateResult,
    Ledger,
    PendingStatus,
    Transfer,
    TransferCode,
    TransferFlags,
)
from suangu.store.db import Database, TransientConflict
from suangu.store.models import (
    ID,
    LEDGER_ID,
    LedgerAccountRow,
    LedgerClockRow,
    LedgerTransferRow,
)

T = TypeVar("T")


class _SliceChanged(TransientConflict):
    """The rows to lock grew between the first read and the lock: start again."""


# -- conversions (the one place rows become core objects and back) ------------------------------


def account_from_row(row: LedgerAccountRow) -> Account:
    return Account(
        id=row.id,
        ledger=Asset(row.ledger),
        kind=AccountKind(row.kind),
        owner=row.owner,
        flags=AccountFlags(row.flags),
        debits_pending=row.debits_pending,
        debits_posted=row.debits_posted,
        credits_pending=row.credits_pending,
        credits_posted=row.credits_posted,
        timestamp=row.timestamp,
    )


def account_values(a: Account) -> dict[str, object]:
    return {
        "id": a.id,
        "ledger": str(a.ledger),
        "kind": str(a.kind),
        "owner": a.owner,
        "flags": int(a.flags),
        "debits_pending": a.debits_pending,
        "debits_posted": a.debits_posted,
        "credits_pending": a.credits_pending,
        "credits_posted": a.credits_posted,
        "timestamp": a.timestamp,
    }


def transfer_from_row(row: LedgerTransferRow) -> Transfer:
    return Transfer(
        id=row.id,
        code=TransferCode(row.code),
        debit_account_id=row.debit_account_id,
        credit_account_id=row.credit_account_id,
        amount=row.amount,
        ledger=Asset(row.ledger),
        flags=TransferFlags(row.flags),
        pending_id=row.pending_id or "",
        timeout_s=row.timeout_s,
        user_data=row.user_data,
        timestamp=row.timestamp,
    )


def transfer_values(t: Transfer, status: PendingStatus | None) -> dict[str, object]:
    if t.amount is None or t.ledger is None:  # pragma: no cover - the core resolves both
        raise ValidationError("a recorded transfer needs an amount and a ledger", field=t.id)
    return {
        "id": t.id,
        "code": str(t.code),
        "debit_account_id": t.debit_account_id,
        "credit_account_id": t.credit_account_id,
        "amount": t.amount,
        "ledger": str(t.ledger),
        "flags": int(t.flags),
        "pending_id": t.pending_id or None,
        "timeout_s": t.timeout_s,
        "user_data": t.user_data,
        "timestamp": t.timestamp,
        "expires_at": t.expires_at,
        "pending_status": None if status is None else str(status),
    }


def scratch_ledger(
    accounts: Sequence[Account],
    transfers: Sequence[tuple[Transfer, PendingStatus | None]],
    due: Sequence[Transfer] = (),
) -> Ledger:
    """A core :class:`Ledger` holding a slice of the stored state."""
    return Ledger.from_state(accounts, transfers, due)


# -- the ledger ---------------------------------------------------------------------------------


class SqlLedger:
    """The ledger persisted in the database, with the behaviour of the core :class:`Ledger`.

    ``clamp_clock=True`` (for API workers whose wall clocks differ by a little) treats a
    ``now`` before the ledger's clock as the clock's time instead of refusing it; the default
    refuses it, as the core does.
    """

    def __init__(self, db: Database, *, clamp_clock: bool = False) -> None:
        self.db = db
        self.clamp_clock = clamp_clock

    # -- writes -----------------------------------------------------------------------------------

    def create_accounts(self, accounts: Sequence[Account], now: int = 0) -> list[CreateResult]:
        """Create accounts (linked chains allowed); one result per account, in order."""
        batch = list(accounts)
        for k, a in enumerate(batch):
            _check_length(a.id, f"accounts[{k}].id", LEDGER_ID)
            _check_length(a.owner, f"accounts[{k}].owner", ID)

        return self.db.transaction(
            lambda s: self.create_accounts_in(s, batch, now), retry_integrity=True
        )

    def create_accounts_in(
        self, s: Session, accounts: Sequence[Account], now: int = 0
    ) -> list[CreateResult]:
        """:meth:`create_accounts` inside the caller's transaction (run it with
        ``retry_integrity=True``: two transactions creating one account race on its key)."""
        batch = list(accounts)
        for k, a in enumerate(batch):
            _check_length(a.id, f"accounts[{k}].id", LEDGER_ID)
            _check_length(a.owner, f"accounts[{k}].owner", ID)
        ids = {a.id for a in batch if a.id}
        rows = s.scalars(
            select(LedgerAccountRow)
            .where(LedgerAccountRow.id.in_(ids))
            .execution_options(populate_existing=True)
        ).all()
        known = {r.id for r in rows}
        led = scratch_ledger([account_from_row(r) for r in rows], [])
        results = led.create_accounts(batch, now)
        new = [account_values(a) for a in led._accounts.values() if a.id not in known]
        if new:
            s.execute(insert(LedgerAccountRow), new)
        return results

    def create_transfers(self, transfers: Sequence[Transfer], now: int) -> list[CreateResult]:
        """Record transfers at ``now`` in one transaction; one result per transfer, in order.

        Same rules and result codes as :meth:`suangu.core.ledger.Ledger.create_transfers`.
        """
        batch = _checked(transfers)
        at = self._advance(now)
        return self._apply(batch, at, lambda led: led.create_transfers(batch, at))

    def create_transfers_in(
        self, session: Session, transfers: Sequence[Transfer], now: int
    ) -> list[CreateResult]:
        """:meth:`create_transfers` inside the caller's transaction (with other writes).

        Run the caller's function with :meth:`Database.transaction` and ``retry_integrity=True``:
        it may raise :class:`~suangu.store.db.TransientConflict` or a unique violation, after
        which the whole function must run again. The clock is advanced in the same transaction.
        """
        batch = _checked(transfers)
        at = _advance_in(session, now, self.clamp_clock)
        return self._apply_in(session, batch, at, lambda led: led.create_transfers(batch, at))

    def expire_pending(self, now: int) -> list[str]:
        """Expire every pending transfer due at ``now``; return their ids."""
        at = self._advance(now)
        return self._apply([], at, lambda led: led.expire_pending(at))

    # -- reads ------------------------------------------------------------------------------------

    def lookup_account(self, account_id: str) -> Account | None:
        with self.db.session_scope(write=False) as s:
            row = s.get(LedgerAccountRow, account_id)
            return None if row is None else account_from_row(row)

    def lookup_transfer(self, transfer_id: str) -> Transfer | None:
        with self.db.session_scope(write=False) as s:
            row = s.get(LedgerTransferRow, transfer_id)
            return None if row is None else transfer_from_row(row)

    def pending_status(self, transfer_id: str) -> PendingStatus | None:
        with self.db.session_scope(write=False) as s:
            row = s.get(LedgerTransferRow, transfer_id)
            if row is None or row.pending_status is None:
                return None
            return PendingStatus(row.pending_status)

    def accounts(self, asset: Asset | None = None) -> list[Account]:
        """All accounts (of one asset), oldest first."""
        q = select(LedgerAccountRow).order_by(LedgerAccountRow.timestamp, LedgerAccountRow.id)
        if asset is not None:
            q = q.where(LedgerAccountRow.ledger == str(asset))
        with self.db.session_scope(write=False) as s:
            return [account_from_row(r) for r in s.scalars(q)]

    def transfers(self) -> list[Transfer]:
        """All recorded transfers, oldest first (ties by id)."""
        q = select(LedgerTransferRow).order_by(LedgerTransferRow.timestamp, LedgerTransferRow.id)
        with self.db.session_scope(write=False) as s:
            return [transfer_from_row(r) for r in s.scalars(q)]

    def account_transfers(self, account_id: str) -> list[Transfer]:
        """Every recorded transfer that debits or credits the account, oldest first."""
        q = (
            select(LedgerTransferRow)
            .where(
                or_(
                    LedgerTransferRow.debit_account_id == account_id,
                    LedgerTransferRow.credit_account_id == account_id,
                )
            )
            .order_by(LedgerTransferRow.timestamp, LedgerTransferRow.id)
        )
        with self.db.session_scope(write=False) as s:
            return [transfer_from_row(r) for r in s.scalars(q)]

    def balances(self, asset: Asset) -> dict[str, int]:
        """``credits_posted - debits_posted`` of every account on the ``asset`` ledger."""
        return {a.id: a.balance for a in self.accounts(asset)}

    def check_invariants(self) -> None:
        """The core's checks (per-ledger sums, limits, replay of every transfer) on all rows.

        Reads everything in one transaction: for tests and audits, not for every request.
        """
        with self.db.session_scope(write=False) as s:
            accounts = [account_from_row(r) for r in s.scalars(select(LedgerAccountRow))]
            transfers = [
                (transfer_from_row(r), _status(r)) for r in s.scalars(select(LedgerTransferRow))
            ]
        scratch_ledger(accounts, transfers).check_invariants()

    # -- internals --------------------------------------------------------------------------------

    def _advance(self, now: int) -> int:
        return self.db.transaction(
            lambda s: _advance_in(s, now, self.clamp_clock), retry_integrity=True
        )

    def _apply(self, batch: list[Transfer], now: int, op: Callable[[Ledger], T]) -> T:
        return self.db.transaction(
            lambda s: self._apply_in(s, batch, now, op), retry_integrity=True
        )

    def _apply_in(
        self,
        s: Session,
        batch: list[Transfer],
        now: int,
        op: Callable[[Ledger], T],
    ) -> T:
        transfer_ids = {t.id for t in batch if t.id} | {t.pending_id for t in batch if t.pending_id}
        account_ids = {x for t in batch for x in (t.debit_account_id, t.credit_account_id) if x}

        # populate_existing: rows already in the session (the caller's, or the first read
        # below) must be overwritten with what the database holds now, after the locks.
        def read_transfers() -> tuple[list[LedgerTransferRow], list[LedgerTransferRow]]:
            known = list(
                s.scalars(
                    select(LedgerTransferRow)
                    .where(LedgerTransferRow.id.in_(transfer_ids))
                    .execution_options(populate_existing=True)
                )
            )
            due = list(
                s.scalars(
                    select(LedgerTransferRow)
                    .where(_due(now))
                    .execution_options(populate_existing=True)
                )
            )
            return known, due

        known, due = read_transfers()
        wanted = account_ids | {x for r in (*known, *due) for x in _accounts_of(r)}
        locked_rows = list(
            s.scalars(
                select(LedgerAccountRow)
                .where(LedgerAccountRow.id.in_(wanted))
                .order_by(LedgerAccountRow.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        )
        locked = {r.id: r for r in locked_rows}
        known, due = read_transfers()
        for r in (*known, *due):
            if not set(_accounts_of(r)) <= locked.keys():
                raise _SliceChanged
        before_accounts = {r.id: account_from_row(r) for r in locked_rows}
        slice_rows = {r.id: r for r in (*known, *due)}
        before_status = {r.id: _status(r) for r in slice_rows.values()}
        led = scratch_ledger(
            list(before_accounts.values()),
            [(transfer_from_row(r), before_status[r.id]) for r in slice_rows.values()],
            [transfer_from_row(r) for r in due],
        )
        out = op(led)
        # Persist the difference, in the order the core recorded it.
        for account_id, account in led._accounts.items():
            if account != before_accounts[account_id]:
                row = locked[account_id]
                row.debits_pending = account.debits_pending
                row.debits_posted = account.debits_posted
                row.credits_pending = account.credits_pending
                row.credits_posted = account.credits_posted
        for transfer_id, status in led._status.items():
            if transfer_id in slice_rows and status != before_status[transfer_id]:
                slice_rows[transfer_id].pending_status = str(status)
        new = [
            transfer_values(t, led._status.get(t.id))
            for t in led._transfers.values()
            if t.id not in slice_rows
        ]
        s.flush()
        if new:
            s.execute(insert(LedgerTransferRow), new)
        return out


def _check_length(value: str, field: str, most: int) -> None:
    if len(value) > most:
        raise ValidationError(
            f"is {len(value)} characters long; the store keeps at most {most}",
            field=field,
            fix="use a shorter id",
        )


def _checked(transfers: Sequence[Transfer]) -> list[Transfer]:
    """The batch, refused whole if an id is longer than the store keeps (nothing written)."""
    batch = list(transfers)
    for k, t in enumerate(batch):
        for name in ("id", "debit_account_id", "credit_account_id", "pending_id"):
            _check_length(getattr(t, name), f"transfers[{k}].{name}", LEDGER_ID)
    return batch


def _advance_in(s: Session, now: int, clamp: bool) -> int:
    """Move the ledger clock to ``now`` and return the time to use: ``now``, or with
    ``clamp`` the clock's time if ``now`` is before it (refused without ``clamp``)."""
    clock = s.get(LedgerClockRow, 1, populate_existing=True)
    if clock is None:
        s.add(LedgerClockRow(id=1, now=now))
        s.flush()
        return now
    if now > clock.now:
        s.execute(
            update(LedgerClockRow)
            .where(LedgerClockRow.id == 1, LedgerClockRow.now < now)
            .values(now=now)
        )
        s.refresh(clock)
    if now < clock.now:
        if clamp:
            return clock.now
        raise ValidationError(
            f"went backwards from {clock.now} to {now}",
            field="now",
            fix="pass a clock that never goes backwards",
        )
    return now


def _status(row: LedgerTransferRow) -> PendingStatus | None:
    return None if row.pending_status is None else PendingStatus(row.pending_status)


def _accounts_of(row: LedgerTransferRow) -> tuple[str, str]:
    return row.debit_account_id, row.credit_account_id


def _due(now: int) -> ColumnElement[bool]:
    """Pending transfers that expire at or before ``now``."""
    return and_(
        LedgerTransferRow.pending_status == str(PendingStatus.PENDING),
        LedgerTransferRow.expires_at <= now,
    )
