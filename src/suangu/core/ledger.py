"""The double-entry ledger of Suangu, modelled on TigerBeetle: pure and in memory.

Accounts are never deleted and transfers are immutable. Each transfer debits one account and
credits another on the same ledger, carries a reason code and an integer amount in the
ledger's smallest unit. The store persists what this module decides; the rules live here.

Units (one ledger per :class:`Asset`; amounts are always integers of the unit)
    * ``CNY``: fen (1 yuan = 100 fen).
    * ``kWh-green``: watt-hours of certified green electricity (1 kWh = 1000 Wh), so that
      metered energy stays exact without fractions of a kWh.
    * ``gCO2``: grams of CO2-equivalent.

Sign convention
    The ledger stores four totals per account and never a signed balance.
    :attr:`Account.balance` is ``credits_posted - debits_posted``: positive for what a member
    holds (a buyer's deposit, a provider's earnings, the exchange's fees) and negative for the
    external accounts through which value enters the system (bank, certificate issuance).

Rules (see :meth:`Ledger.create_transfers` for the order in which they are checked)
    * **Idempotency.** Every transfer carries a client-generated ``id``. Resubmitting a
      transfer whose id is already recorded with identical fields (the ``timestamp`` is
      ignored) answers ``exists`` and changes nothing; the same id with any other field changed
      answers ``exists_with_different_fields``. Accounts behave the same way.
    * **Failed ids are not reserved.** A transfer that fails (any code other than ``ok`` or
      ``exists``, including ``linked_event_failed``) is not recorded, so a corrected retry may
      reuse its id. Only recorded transfers make an id permanent.
    * **Two-phase transfers.** A ``pending`` transfer adds its amount to ``debits_pending`` of
      the debit account and ``credits_pending`` of the credit account (pending debits count
      against a ``debits_must_not_exceed_credits`` limit). A ``post_pending_transfer`` moves
      ``amount`` (at most the pending amount) to the posted totals and removes the *whole*
      pending amount from the pending totals: a partial post releases the remainder. A
      ``void_pending_transfer`` releases everything. A pending transfer resolves once: posted,
      voided or expired.
    * **Post/void amounts.** ``amount=None`` on a post means "the full pending amount"; an
      explicit amount must be between 1 and the pending amount (to settle nothing, void). A
      void's amount must be ``None`` or exactly the pending amount. Amount 0 is never valid:
      ordinary and pending transfers need an amount >= 1.
    * **Post/void fields.** A post or void may leave ``debit_account_id``,
      ``credit_account_id`` (``""``) and ``ledger`` (``None``) empty: they are taken from the
      pending transfer. Given values must match it. The recorded transfer carries the resolved
      accounts, ledger and amount; a retry is compared after the same resolution.
    * **Expiry.** A pending transfer with ``timeout_s > 0`` expires at
      ``timestamp + timeout_s``: from that instant on it can no longer be posted or voided
      (``pending_transfer_expired``) and its pending amounts are released. Expiry happens in
      :meth:`Ledger.expire_pending` and, lazily, at the start of every
      :meth:`Ledger.create_transfers` call for its ``now``. ``timeout_s=0`` never expires.
    * **Linked chains.** Transfers (or accounts) flagged ``linked`` form a chain with the next
      event; the chain ends with the first unflagged event. A chain succeeds or fails as a
      whole: if one member fails, nothing of the chain is applied, that member gets its own
      code and every other member gets ``linked_event_failed``. ``exists`` counts as success
      inside a chain, so resubmitting a committed chain answers ``exists`` for every member.
      A chain still open at the end of a batch fails: its last member gets
      ``linked_event_chain_open``, the others ``linked_event_failed``.
    * **Time.** The ledger never reads a clock: ``now`` (Unix seconds) is passed in and becomes
      the ``timestamp`` of every transfer recorded by that call. ``now`` must not go backwards.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from enum import IntFlag, StrEnum
from typing import TypeVar

from suangu.core.errors import SuanguError, ValidationError

#: The largest total any account may reach (PostgreSQL BIGINT), in the ledger's unit.
AMOUNT_MAX = 2**63 - 1


class LedgerInvariantError(SuanguError):
    """The ledger's books do not balance: a bug in the ledger or its persistence."""

    code = "ledger_invariant"


class Asset(StrEnum):
    """One ledger per asset; the value names the ledger."""

    CNY = "CNY"  # unit: fen
    KWH_GREEN = "kWh-green"  # unit: Wh of certified green electricity
    GCO2 = "gCO2"  # unit: gram of CO2-equivalent

    @property
    def unit(self) -> str:
        """The smallest unit in which amounts of this asset are counted."""
        if self is Asset.CNY:
            return "fen"
        if self is Asset.KWH_GREEN:
            return "Wh"
        return "g"


class AccountKind(StrEnum):
    """What an account is for (the reason-code of accounts)."""

    BUYER = "buyer"
    PROVIDER = "provider"
    EXCHANGE_FEES = "exchange_fees"
    EXCHANGE_CLEARING = "exchange_clearing"  # escrow / clearing house
    EXCHANGE_NETWORK = "exchange_network"  # data transfer charges: carriers' fees, link rent
    EXTERNAL = "external"  # bank, cash in and out, certificate issuance, the atmosphere


class AccountFlags(IntFlag):
    """Account options (bit values as in TigerBeetle)."""

    NONE = 0
    LINKED = 1 << 0
    #: ``debits_pending + debits_posted <= credits_posted``: cannot spend more than received.
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1
    #: ``credits_pending + credits_posted <= debits_posted``.
    CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2


class TransferFlags(IntFlag):
    """Transfer options (bit values as in TigerBeetle)."""

    NONE = 0
    LINKED = 1 << 0
    PENDING = 1 << 1
    POST_PENDING_TRANSFER = 1 << 2
    VOID_PENDING_TRANSFER = 1 << 3


_ACCOUNT_FLAGS_ALL = int(
    AccountFlags.LINKED
    | AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
)
_ACCOUNT_LIMITS = int(
    AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
)
_TRANSFER_KINDS = int(
    TransferFlags.PENDING
    | TransferFlags.POST_PENDING_TRANSFER
    | TransferFlags.VOID_PENDING_TRANSFER
)
_TRANSFER_FLAGS_ALL = _TRANSFER_KINDS | int(TransferFlags.LINKED)
_RESOLVING = int(TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER)


class TransferCode(StrEnum):
    """Why a transfer happened."""

    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    ORDER_HOLD = "order_hold"
    LEASE_PAYMENT = "lease_payment"
    HOLD_RELEASE = "hold_release"
    PROVIDER_PAYOUT = "provider_payout"
    EXCHANGE_FEE = "exchange_fee"
    DATA_TRANSFER = "data_transfer"  # a buyer's charges for moving its input data over links
    REFUND = "refund"
    GREEN_CERTIFICATE_ISSUE = "green_certificate_issue"
    GREEN_CERTIFICATE_RETIRE = "green_certificate_retire"
    CARBON_RECORD = "carbon_record"
    ADJUSTMENT = "adjustment"


class CreateResult(StrEnum):
    """The answer to one event of :meth:`Ledger.create_accounts` / ``create_transfers``."""

    OK = "ok"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    INVALID_FLAGS = "invalid_flags"
    ID_REQUIRED = "id_required"
    # accounts
    BALANCES_MUST_BE_ZERO = "balances_must_be_zero"
    # transfers
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    ACCOUNT_NOT_FOUND = "account_not_found"
    LEDGER_REQUIRED = "ledger_required"
    LEDGER_MISMATCH = "ledger_mismatch"
    AMOUNT_MUST_BE_POSITIVE = "amount_must_be_positive"
    INVALID_TIMEOUT = "invalid_timeout"
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = "timeout_reserved_for_pending_transfer"
    PENDING_ID_MUST_BE_EMPTY = "pending_id_must_be_empty"
    PENDING_ID_REQUIRED = "pending_id_required"
    OVERFLOW = "overflow"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS = "pending_transfer_has_different_accounts"
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = "pending_transfer_has_different_amount"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    EXCEEDS_PENDING_TRANSFER_AMOUNT = "exceeds_pending_transfer_amount"

    @property
    def succeeded(self) -> bool:
        """True for ``ok`` and ``exists``: the event is (now) recorded as submitted."""
        return self in (CreateResult.OK, CreateResult.EXISTS)


class PendingStatus(StrEnum):
    """Where a pending transfer stands."""

    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """An account on one ledger, with its four running totals (in the ledger's unit).

    To create one, leave the totals at zero; ``timestamp`` is assigned by the ledger.
    """

    id: str
    ledger: Asset
    kind: AccountKind
    owner: str
    flags: AccountFlags = AccountFlags.NONE
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    timestamp: int = 0

    @property
    def balance(self) -> int:
        """``credits_posted - debits_posted`` (what a member holds; see the module docs)."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """The posted balance less pending debits (what a buyer can still spend or hold)."""
        return self.credits_posted - self.debits_posted - self.debits_pending

    def _identity(self) -> tuple[object, ...]:
        return (self.id, self.ledger, self.kind, self.owner, int(self.flags))


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    """A movement of ``amount`` from ``debit_account_id`` to ``credit_account_id``.

    ``id`` is the client's idempotency key. ``amount``, the accounts and ``ledger`` may be left
    empty (``None`` / ``""``) only on a post or void (taken from the pending transfer).
    ``timeout_s`` applies to pending transfers only (0 = never expires). ``user_data`` is free
    text for the caller (an order or lease id). ``timestamp`` is set by the ledger.
    """

    id: str
    code: TransferCode
    debit_account_id: str = ""
    credit_account_id: str = ""
    amount: int | None = None
    ledger: Asset | None = None
    flags: TransferFlags = TransferFlags.NONE
    pending_id: str = ""
    timeout_s: int = 0
    user_data: str = ""
    timestamp: int = 0

    @property
    def is_pending(self) -> bool:
        return bool(self.flags & TransferFlags.PENDING)

    @property
    def is_post(self) -> bool:
        return bool(self.flags & TransferFlags.POST_PENDING_TRANSFER)

    @property
    def is_void(self) -> bool:
        return bool(self.flags & TransferFlags.VOID_PENDING_TRANSFER)

    @property
    def is_linked(self) -> bool:
        return bool(self.flags & TransferFlags.LINKED)

    @property
    def expires_at(self) -> int | None:
        """When a pending transfer expires (Unix s), or ``None`` if it never does."""
        if not self.is_pending or self.timeout_s <= 0:
            return None
        return self.timestamp + self.timeout_s


# ---------------------------------------------------------------------------------------------
# Helper constructors


def _flags(base: TransferFlags, linked: bool) -> TransferFlags:
    return base | TransferFlags.LINKED if linked else base


def transfer(
    id: str,
    debit_account_id: str,
    credit_account_id: str,
    amount: int,
    ledger: Asset,
    code: TransferCode,
    *,
    linked: bool = False,
    user_data: str = "",
) -> Transfer:
    """An ordinary (single-phase) transfer."""
    return Transfer(
        id=id,
        code=code,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        ledger=ledger,
        flags=_flags(TransferFlags.NONE, linked),
        user_data=user_data,
    )


def hold(
    id: str,
    debit_account_id: str,
    credit_account_id: str,
    amount: int,
    ledger: Asset,
    code: TransferCode = TransferCode.ORDER_HOLD,
    *,
    timeout_s: int = 0,
    linked: bool = False,
    user_data: str = "",
) -> Transfer:
    """A pending transfer (phase one): reserves ``amount`` until posted, voided or expired."""
    return Transfer(
        id=id,
        code=code,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        ledger=ledger,
        flags=_flags(TransferFlags.PENDING, linked),
        timeout_s=timeout_s,
        user_data=user_data,
    )


def post(
    id: str,
    pending_id: str,
    amount: int | None = None,
    code: TransferCode = TransferCode.LEASE_PAYMENT,
    *,
    debit_account_id: str = "",
    credit_account_id: str = "",
    ledger: Asset | None = None,
    linked: bool = False,
    user_data: str = "",
) -> Transfer:
    """Post a pending transfer: ``amount`` (``None`` = all of it) moves, the rest is released."""
    return Transfer(
        id=id,
        code=code,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        ledger=ledger,
        flags=_flags(TransferFlags.POST_PENDING_TRANSFER, linked),
        pending_id=pending_id,
        user_data=user_data,
    )


def void(
    id: str,
    pending_id: str,
    code: TransferCode = TransferCode.HOLD_RELEASE,
    *,
    debit_account_id: str = "",
    credit_account_id: str = "",
    ledger: Asset | None = None,
    linked: bool = False,
    user_data: str = "",
) -> Transfer:
    """Void a pending transfer: release all of it."""
    return Transfer(
        id=id,
        code=code,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        ledger=ledger,
        flags=_flags(TransferFlags.VOID_PENDING_TRANSFER, linked),
        pending_id=pending_id,
        user_data=user_data,
    )


def linked(transfers: Iterable[Transfer]) -> list[Transfer]:
    """The transfers as one linked chain: ``linked`` on every member but the last."""
    items = list(transfers)
    out = []
    for k, t in enumerate(items):
        flags = int(t.flags) & ~int(TransferFlags.LINKED)
        if k < len(items) - 1:
            flags |= int(TransferFlags.LINKED)
        out.append(replace(t, flags=TransferFlags(flags)))
    return out


# ---------------------------------------------------------------------------------------------
# The ledger

_E = TypeVar("_E")
_Undo = list[Callable[[], None]]


class Ledger:
    """An in-memory ledger for every :class:`Asset`: the reference semantics of the store."""

    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        self._transfers: dict[str, Transfer] = {}  # in the order recorded
        self._by_account: dict[str, list[str]] = defaultdict(list)
        self._status: dict[str, PendingStatus] = {}
        self._expiry: list[tuple[int, str]] = []  # heap of (expires_at, pending id)
        self._now = 0

    @classmethod
    def from_state(
        cls,
        accounts: Sequence[Account],
        transfers: Sequence[tuple[Transfer, PendingStatus | None]],
        due: Sequence[Transfer] = (),
    ) -> Ledger:
        """A ledger holding given state: accounts, recorded transfers (with the status of the
        pending ones) and the pending transfers whose expiry it should watch.

        A persistent store loads the slice of its state that a batch touches, lets these
        rules decide, and writes back what changed."""
        led = cls()
        led._accounts = {a.id: a for a in accounts}
        for t, status in transfers:
            led._transfers[t.id] = t
            led._by_account[t.debit_account_id].append(t.id)
            led._by_account[t.credit_account_id].append(t.id)
            if status is not None:
                led._status[t.id] = status
        led._expiry = [(t.expires_at, t.id) for t in due if t.expires_at is not None]
        heapq.heapify(led._expiry)
        return led

    # -- writes ---------------------------------------------------------------------------------

    def create_accounts(self, accounts: Sequence[Account], now: int = 0) -> list[CreateResult]:
        """Create accounts; one result per account, in order (linked chains allowed).

        An account must be submitted with zero totals. An id already in use answers ``exists``
        if ledger, kind, owner and flags are identical, else ``exists_with_different_fields``.
        """
        return self._run_chains(
            accounts,
            lambda a: bool(a.flags & AccountFlags.LINKED),
            lambda a, undo: self._create_account(a, now, undo),
        )

    def create_transfers(self, transfers: Sequence[Transfer], now: int) -> list[CreateResult]:
        """Record transfers at time ``now``; one result per transfer, in order.

        Pending transfers due at ``now`` expire first. Each transfer is then checked in this
        order: id, flags, idempotency (``exists``), then for a post or void the pending
        transfer (found, pending, accounts, ledger, status, amount), otherwise pending id,
        timeout, amount, accounts (different, found), ledger, overflow and account limits.
        """
        self.expire_pending(now)
        return self._run_chains(
            transfers,
            lambda t: bool(t.flags & TransferFlags.LINKED),
            lambda t, undo: self._create_transfer(t, now, undo),
        )

    def expire_pending(self, now: int) -> list[str]:
        """Expire every pending transfer due at ``now``; return their ids in expiry order."""
        self._advance(now)
        expired: list[str] = []
        while self._expiry and self._expiry[0][0] <= now:
            due, pending_id = heapq.heappop(self._expiry)
            t = self._transfers.get(pending_id)
            # The heap is never cleaned when a chain rolls back: skip stale entries.
            if t is None or t.expires_at != due:
                continue
            if self._status.get(pending_id) is not PendingStatus.PENDING:
                continue
            amount = _amount(t)
            debit = self._accounts[t.debit_account_id]
            credit = self._accounts[t.credit_account_id]
            self._accounts[debit.id] = replace(debit, debits_pending=debit.debits_pending - amount)
            self._accounts[credit.id] = replace(
                credit, credits_pending=credit.credits_pending - amount
            )
            self._status[pending_id] = PendingStatus.EXPIRED
            expired.append(pending_id)
        return expired

    # -- reads ----------------------------------------------------------------------------------

    def lookup_account(self, account_id: str) -> Account | None:
        return self._accounts.get(account_id)

    def lookup_transfer(self, transfer_id: str) -> Transfer | None:
        return self._transfers.get(transfer_id)

    def pending_status(self, transfer_id: str) -> PendingStatus | None:
        """The status of a pending transfer, or ``None`` if ``transfer_id`` is not one."""
        return self._status.get(transfer_id)

    def account_transfers(self, account_id: str) -> list[Transfer]:
        """Every recorded transfer that debits or credits the account, oldest first."""
        return [self._transfers[tid] for tid in self._by_account.get(account_id, [])]

    def accounts(self, asset: Asset | None = None) -> list[Account]:
        """All accounts (of one asset), in creation order."""
        return [a for a in self._accounts.values() if asset is None or a.ledger == asset]

    def transfers(self) -> list[Transfer]:
        """All recorded transfers, in the order recorded."""
        return list(self._transfers.values())

    def balances(self, asset: Asset) -> dict[str, int]:
        """``credits_posted - debits_posted`` of every account on the ``asset`` ledger."""
        return {a.id: a.balance for a in self.accounts(asset)}

    def check_invariants(self) -> None:
        """Raise :class:`LedgerInvariantError` unless the books balance.

        Checks, per ledger, that debits equal credits for pending and posted totals, that no
        total is negative or above :data:`AMOUNT_MAX`, that every flag-limited account is within
        its limit, and that every account's totals equal a replay of the recorded transfers.
        """
        sums: dict[Asset, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for a in self._accounts.values():
            totals = (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
            if any(not 0 <= x <= AMOUNT_MAX for x in totals):
                raise LedgerInvariantError(f"account {a.id!r} has a total out of range: {a}")
            s = sums[a.ledger]
            for k, x in enumerate(totals):
                s[k] += x
            if a.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and (
                a.debits_pending + a.debits_posted > a.credits_posted
            ):
                raise LedgerInvariantError(f"account {a.id!r} debits exceed credits: {a}")
            if a.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and (
                a.credits_pending + a.credits_posted > a.debits_posted
            ):
                raise LedgerInvariantError(f"account {a.id!r} credits exceed debits: {a}")
        for asset, (dp, dpo, cp, cpo) in sums.items():
            if dp != cp:
                raise LedgerInvariantError(
                    f"ledger {asset}: debits_pending {dp} != credits_pending {cp}"
                )
            if dpo != cpo:
                raise LedgerInvariantError(
                    f"ledger {asset}: debits_posted {dpo} != credits_posted {cpo}"
                )
        self._check_replay()

    # -- internals ------------------------------------------------------------------------------

    def _advance(self, now: int) -> None:
        if now < self._now:
            raise ValidationError(
                f"went backwards from {self._now} to {now}",
                field="now",
                fix="pass a clock that never goes backwards",
            )
        self._now = now

    def _run_chains(
        self,
        events: Sequence[_E],
        is_linked: Callable[[_E], bool],
        apply: Callable[[_E, _Undo], CreateResult],
    ) -> list[CreateResult]:
        results: list[CreateResult] = []
        n = len(events)
        i = 0
        while i < n:
            j = i
            while j < n - 1 and is_linked(events[j]):
                j += 1
            if is_linked(events[j]):  # the batch ends inside a chain
                results.extend([CreateResult.LINKED_EVENT_FAILED] * (j - i))
                results.append(CreateResult.LINKED_EVENT_CHAIN_OPEN)
                break
            undo: _Undo = []
            chain: list[CreateResult] = []
            for k in range(i, j + 1):
                result = apply(events[k], undo)
                chain.append(result)
                if not result.succeeded:
                    for fn in reversed(undo):
                        fn()
                    chain = [CreateResult.LINKED_EVENT_FAILED] * (j - i + 1)
                    chain[k - i] = result
                    break
            results.extend(chain)
            i = j + 1
        return results

    def _create_account(self, a: Account, now: int, undo: _Undo) -> CreateResult:
        if not a.id:
            return CreateResult.ID_REQUIRED
        flags = int(a.flags)
        if flags & ~_ACCOUNT_FLAGS_ALL or (flags & _ACCOUNT_LIMITS) == _ACCOUNT_LIMITS:
            return CreateResult.INVALID_FLAGS
        if a.debits_pending or a.debits_posted or a.credits_pending or a.credits_posted:
            return CreateResult.BALANCES_MUST_BE_ZERO
        existing = self._accounts.get(a.id)
        if existing is not None:
            if existing._identity() == a._identity():
                return CreateResult.EXISTS
            return CreateResult.EXISTS_WITH_DIFFERENT_FIELDS
        self._accounts[a.id] = replace(a, timestamp=now)

        def _undo() -> None:
            del self._accounts[a.id]

        undo.append(_undo)
        return CreateResult.OK

    def _resolve(self, t: Transfer) -> Transfer:
        """A post or void with the fields it inherits from its pending transfer filled in."""
        if not t.flags & _RESOLVING:
            return t
        p = self._transfers.get(t.pending_id)
        if p is None or not p.is_pending:
            return t
        amount = t.amount
        if amount is None:
            amount = p.amount
        return replace(
            t,
            debit_account_id=t.debit_account_id or p.debit_account_id,
            credit_account_id=t.credit_account_id or p.credit_account_id,
            ledger=p.ledger if t.ledger is None else t.ledger,
            amount=amount,
        )

    def _create_transfer(self, t: Transfer, now: int, undo: _Undo) -> CreateResult:
        if not t.id:
            return CreateResult.ID_REQUIRED
        flags = int(t.flags)
        if flags & ~_TRANSFER_FLAGS_ALL or (flags & _TRANSFER_KINDS).bit_count() > 1:
            return CreateResult.INVALID_FLAGS
        existing = self._transfers.get(t.id)
        if existing is not None:
            resolved = replace(self._resolve(t), timestamp=existing.timestamp)
            if resolved == existing:
                return CreateResult.EXISTS
            return CreateResult.EXISTS_WITH_DIFFERENT_FIELDS
        if flags & _RESOLVING:
            return self._resolve_pending(t, now, undo)
        if t.pending_id:
            return CreateResult.PENDING_ID_MUST_BE_EMPTY
        if t.timeout_s < 0:
            return CreateResult.INVALID_TIMEOUT
        if t.timeout_s and not t.is_pending:
            return CreateResult.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
        amount = t.amount
        if amount is None or amount <= 0:
            return CreateResult.AMOUNT_MUST_BE_POSITIVE
        if t.debit_account_id == t.credit_account_id:
            return CreateResult.ACCOUNTS_MUST_BE_DIFFERENT
        debit = self._accounts.get(t.debit_account_id)
        credit = self._accounts.get(t.credit_account_id)
        if debit is None or credit is None:
            return CreateResult.ACCOUNT_NOT_FOUND
        if t.ledger is None:
            return CreateResult.LEDGER_REQUIRED
        if debit.ledger != t.ledger or credit.ledger != t.ledger:
            return CreateResult.LEDGER_MISMATCH
        if t.is_pending:
            new_debit = replace(debit, debits_pending=debit.debits_pending + amount)
            new_credit = replace(credit, credits_pending=credit.credits_pending + amount)
        else:
            new_debit = replace(debit, debits_posted=debit.debits_posted + amount)
            new_credit = replace(credit, credits_posted=credit.credits_posted + amount)
        if _overflows(new_debit) or _overflows(new_credit):
            return CreateResult.OVERFLOW
        if debit.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and (
            new_debit.debits_pending + new_debit.debits_posted > new_debit.credits_posted
        ):
            return CreateResult.EXCEEDS_CREDITS
        if credit.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and (
            new_credit.credits_pending + new_credit.credits_posted > new_credit.debits_posted
        ):
            return CreateResult.EXCEEDS_DEBITS
        recorded = replace(t, timestamp=now)
        self._set_account(new_debit, undo)
        self._set_account(new_credit, undo)
        self._record(recorded, undo)
        if recorded.is_pending:
            self._set_status(recorded.id, PendingStatus.PENDING, undo)
            due = recorded.expires_at
            if due is not None:
                heapq.heappush(self._expiry, (due, recorded.id))
        return CreateResult.OK

    def _resolve_pending(self, t: Transfer, now: int, undo: _Undo) -> CreateResult:
        if not t.pending_id:
            return CreateResult.PENDING_ID_REQUIRED
        if t.timeout_s:
            return CreateResult.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
        p = self._transfers.get(t.pending_id)
        if p is None:
            return CreateResult.PENDING_TRANSFER_NOT_FOUND
        if not p.is_pending:
            return CreateResult.PENDING_TRANSFER_NOT_PENDING
        if (t.debit_account_id and t.debit_account_id != p.debit_account_id) or (
            t.credit_account_id and t.credit_account_id != p.credit_account_id
        ):
            return CreateResult.PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS
        if t.ledger is not None and t.ledger != p.ledger:
            return CreateResult.LEDGER_MISMATCH
        status = self._status[p.id]
        if status is PendingStatus.POSTED:
            return CreateResult.PENDING_TRANSFER_ALREADY_POSTED
        if status is PendingStatus.VOIDED:
            return CreateResult.PENDING_TRANSFER_ALREADY_VOIDED
        if status is PendingStatus.EXPIRED:
            return CreateResult.PENDING_TRANSFER_EXPIRED
        held = _amount(p)
        if t.is_post:
            amount = held if t.amount is None else t.amount
            if amount <= 0:
                return CreateResult.AMOUNT_MUST_BE_POSITIVE
            if amount > held:
                return CreateResult.EXCEEDS_PENDING_TRANSFER_AMOUNT
        else:
            if t.amount is not None and t.amount != held:
                return CreateResult.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
            amount = 0
        debit = self._accounts[p.debit_account_id]
        credit = self._accounts[p.credit_account_id]
        new_debit = replace(
            debit,
            debits_pending=debit.debits_pending - held,
            debits_posted=debit.debits_posted + amount,
        )
        new_credit = replace(
            credit,
            credits_pending=credit.credits_pending - held,
            credits_posted=credit.credits_posted + amount,
        )
        if _overflows(new_debit) or _overflows(new_credit):
            return CreateResult.OVERFLOW
        recorded = replace(
            t,
            debit_account_id=p.debit_account_id,
            credit_account_id=p.credit_account_id,
            ledger=p.ledger,
            amount=held if t.is_void else amount,
            timestamp=now,
        )
        self._set_account(new_debit, undo)
        self._set_account(new_credit, undo)
        self._record(recorded, undo)
        status = PendingStatus.POSTED if t.is_post else PendingStatus.VOIDED
        self._set_status(p.id, status, undo)
        return CreateResult.OK

    def _set_account(self, account: Account, undo: _Undo) -> None:
        old = self._accounts[account.id]
        self._accounts[account.id] = account
        undo.append(lambda: self._accounts.__setitem__(old.id, old))

    def _record(self, t: Transfer, undo: _Undo) -> None:
        self._transfers[t.id] = t
        self._by_account[t.debit_account_id].append(t.id)
        self._by_account[t.credit_account_id].append(t.id)

        def _undo() -> None:
            del self._transfers[t.id]
            self._by_account[t.debit_account_id].pop()
            self._by_account[t.credit_account_id].pop()

        undo.append(_undo)

    def _set_status(self, transfer_id: str, status: PendingStatus, undo: _Undo) -> None:
        old = self._status.get(transfer_id)

        def _undo() -> None:
            if old is None:
                del self._status[transfer_id]
            else:
                self._status[transfer_id] = old

        self._status[transfer_id] = status
        undo.append(_undo)

    def _check_replay(self) -> None:
        """Recompute every account's totals from the recorded transfers and compare."""
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for t in self._transfers.values():
            amount = _amount(t)
            debit = self._accounts.get(t.debit_account_id)
            credit = self._accounts.get(t.credit_account_id)
            if debit is None or credit is None:
                raise LedgerInvariantError(f"transfer {t.id!r} names an unknown account")
            if not debit.ledger == credit.ledger == t.ledger:
                raise LedgerInvariantError(f"transfer {t.id!r} crosses ledgers")
            if t.is_pending:
                if self._status.get(t.id) is PendingStatus.PENDING:
                    totals[debit.id][0] += amount
                    totals[credit.id][2] += amount
            elif not t.is_void:
                totals[debit.id][1] += amount
                totals[credit.id][3] += amount
        for a in self._accounts.values():
            got = [a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted]
            want = totals.get(a.id, [0, 0, 0, 0])
            if got != want:
                raise LedgerInvariantError(
                    f"account {a.id!r} totals {got} differ from the replay of its transfers {want}"
                )


def _amount(t: Transfer) -> int:
    """The amount of a recorded transfer (always resolved to an int when recorded)."""
    if t.amount is None:  # pragma: no cover - recorded transfers always carry an amount
        raise LedgerInvariantError(f"recorded transfer {t.id!r} has no amount")
    return t.amount


def _overflows(a: Account) -> bool:
    return max(a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted) > AMOUNT_MAX
