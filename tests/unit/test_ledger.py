"""Tests of the in-memory double-entry ledger (suangu.core.ledger)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from suangu.core.errors import ValidationError
from suangu.core.ledger import (
    AMOUNT_MAX,
    Account,
    AccountFlags,
    AccountKind,
    Asset,
    CreateResult,
    Ledger,
    LedgerInvariantError,
    PendingStatus,
    Transfer,
    TransferCode,
    TransferFlags,
    hold,
    linked,
    post,
    transfer,
    void,
)

R = CreateResult
CNY = Asset.CNY
DMNEC = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
CMNED = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
T0 = 1_700_000_000

ACCOUNTS = {
    "bank": Account(id="bank", ledger=CNY, kind=AccountKind.EXTERNAL, owner="external"),
    "alice": Account(id="alice", ledger=CNY, kind=AccountKind.BUYER, owner="alice", flags=DMNEC),
    "bob": Account(id="bob", ledger=CNY, kind=AccountKind.BUYER, owner="bob", flags=DMNEC),
    "clearing": Account(
        id="clearing", ledger=CNY, kind=AccountKind.EXCHANGE_CLEARING, owner="exchange"
    ),
    "prov": Account(id="prov", ledger=CNY, kind=AccountKind.PROVIDER, owner="prov"),
    "capped": Account(
        id="capped", ledger=CNY, kind=AccountKind.EXCHANGE_FEES, owner="exchange", flags=CMNED
    ),
    "co2-src": Account(id="co2-src", ledger=Asset.GCO2, kind=AccountKind.EXTERNAL, owner="x"),
    "co2-sink": Account(id="co2-sink", ledger=Asset.GCO2, kind=AccountKind.BUYER, owner="alice"),
}


def pay(
    id: str, debit: str, credit: str, amount: int, *, linked: bool = False, user_data: str = ""
) -> Transfer:
    return transfer(
        id, debit, credit, amount, CNY, TransferCode.ADJUSTMENT, linked=linked, user_data=user_data
    )


@pytest.fixture
def ledger() -> Ledger:
    led = Ledger()
    assert led.create_accounts(list(ACCOUNTS.values()), now=T0) == [R.OK] * len(ACCOUNTS)
    assert led.create_transfers([pay("dep-alice", "bank", "alice", 1000)], T0) == [R.OK]
    return led


def acct(led: Ledger, account_id: str) -> Account:
    a = led.lookup_account(account_id)
    assert a is not None
    return a


def totals(led: Ledger) -> dict[str, tuple[int, int, int, int]]:
    return {
        a.id: (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        for a in led.accounts()
    }


# ---------------------------------------------------------------------------------------------
# Accounts


def test_account_results() -> None:
    led = Ledger()
    a = ACCOUNTS["alice"]
    assert led.create_accounts([a], now=5) == [R.OK]
    assert acct(led, "alice").timestamp == 5
    assert led.create_accounts([a]) == [R.EXISTS]
    assert led.create_accounts([replace(a, owner="mallory")]) == [R.EXISTS_WITH_DIFFERENT_FIELDS]
    assert led.create_accounts([replace(a, flags=AccountFlags.NONE)]) == [
        R.EXISTS_WITH_DIFFERENT_FIELDS
    ]
    assert led.create_accounts([replace(a, id="")]) == [R.ID_REQUIRED]
    assert led.create_accounts([replace(a, id="x", flags=DMNEC | CMNED)]) == [R.INVALID_FLAGS]
    assert led.create_accounts([replace(a, id="x", flags=AccountFlags(1 << 7))]) == [
        R.INVALID_FLAGS
    ]
    assert led.create_accounts([replace(a, id="x", credits_posted=5)]) == [R.BALANCES_MUST_BE_ZERO]
    assert led.lookup_account("x") is None
    led.check_invariants()


def test_linked_accounts_all_or_nothing() -> None:
    led = Ledger()
    a = replace(ACCOUNTS["alice"], flags=DMNEC | AccountFlags.LINKED)
    bad = replace(ACCOUNTS["bob"], flags=DMNEC | CMNED)
    assert led.create_accounts([a, bad]) == [R.LINKED_EVENT_FAILED, R.INVALID_FLAGS]
    assert led.lookup_account("alice") is None
    assert led.create_accounts([a, ACCOUNTS["bob"]]) == [R.OK, R.OK]
    c = replace(ACCOUNTS["prov"], flags=AccountFlags.LINKED)
    assert led.create_accounts([c]) == [R.LINKED_EVENT_CHAIN_OPEN]
    assert led.lookup_account("prov") is None


# ---------------------------------------------------------------------------------------------
# Every transfer result code


def test_ok_and_balances(ledger: Ledger) -> None:
    assert ledger.create_transfers([pay("t1", "alice", "prov", 300)], T0 + 1) == [R.OK]
    assert acct(ledger, "alice").balance == 700
    assert acct(ledger, "prov").balance == 300
    assert acct(ledger, "bank").balance == -1000
    assert ledger.balances(CNY) == {
        "bank": -1000,
        "alice": 700,
        "bob": 0,
        "clearing": 0,
        "prov": 300,
        "capped": 0,
    }
    t = ledger.lookup_transfer("t1")
    assert t is not None and t.timestamp == T0 + 1
    assert [x.id for x in ledger.account_transfers("alice")] == ["dep-alice", "t1"]
    ledger.check_invariants()


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (pay("", "alice", "prov", 1), R.ID_REQUIRED),
        (pay("x", "alice", "alice", 1), R.ACCOUNTS_MUST_BE_DIFFERENT),
        (pay("x", "alice", "ghost", 1), R.ACCOUNT_NOT_FOUND),
        (pay("x", "ghost", "alice", 1), R.ACCOUNT_NOT_FOUND),
        (pay("x", "alice", "co2-sink", 1), R.LEDGER_MISMATCH),
        (
            transfer("x", "co2-src", "co2-sink", 1, CNY, TransferCode.CARBON_RECORD),
            R.LEDGER_MISMATCH,
        ),
        (replace(pay("x", "alice", "prov", 1), ledger=None), R.LEDGER_REQUIRED),
        (pay("x", "alice", "prov", 0), R.AMOUNT_MUST_BE_POSITIVE),
        (pay("x", "alice", "prov", -5), R.AMOUNT_MUST_BE_POSITIVE),
        (replace(pay("x", "alice", "prov", 1), amount=None), R.AMOUNT_MUST_BE_POSITIVE),
        (pay("x", "alice", "prov", 1001), R.EXCEEDS_CREDITS),
        (pay("x", "prov", "capped", 1), R.EXCEEDS_DEBITS),
        (pay("x", "bank", "prov", AMOUNT_MAX), R.OVERFLOW),
        (replace(pay("x", "alice", "prov", 1), pending_id="h"), R.PENDING_ID_MUST_BE_EMPTY),
        (
            replace(pay("x", "alice", "prov", 1), timeout_s=10),
            R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER,
        ),
        (hold("x", "alice", "prov", 1, CNY, timeout_s=-1), R.INVALID_TIMEOUT),
        (
            replace(
                pay("x", "alice", "prov", 1),
                flags=TransferFlags.PENDING | TransferFlags.POST_PENDING_TRANSFER,
            ),
            R.INVALID_FLAGS,
        ),
        (replace(pay("x", "alice", "prov", 1), flags=TransferFlags(1 << 9)), R.INVALID_FLAGS),
        (post("x", ""), R.PENDING_ID_REQUIRED),
        (void("x", ""), R.PENDING_ID_REQUIRED),
        (post("x", "ghost"), R.PENDING_TRANSFER_NOT_FOUND),
        (post("x", "dep-alice"), R.PENDING_TRANSFER_NOT_PENDING),
    ],
)
def test_transfer_rejections(ledger: Ledger, bad: Transfer, code: CreateResult) -> None:
    before = totals(ledger)
    assert ledger.create_transfers([bad], T0 + 1) == [code]
    assert totals(ledger) == before
    assert bad.id == "" or ledger.lookup_transfer(bad.id) is None
    ledger.check_invariants()


def test_pending_counts_against_the_limit(ledger: Ledger) -> None:
    assert ledger.create_transfers([hold("h", "alice", "clearing", 800, CNY)], T0) == [R.OK]
    assert acct(ledger, "alice").available == 200
    assert ledger.create_transfers([pay("x", "alice", "prov", 201)], T0) == [R.EXCEEDS_CREDITS]
    assert ledger.create_transfers([hold("h2", "alice", "clearing", 201, CNY)], T0) == [
        R.EXCEEDS_CREDITS
    ]
    assert ledger.create_transfers([pay("x", "alice", "prov", 200)], T0) == [R.OK]
    ledger.check_invariants()


def test_credits_must_not_exceed_debits(ledger: Ledger) -> None:
    assert ledger.create_transfers([pay("out", "capped", "prov", 50)], T0) == [R.OK]
    assert ledger.create_transfers([pay("x", "alice", "capped", 51)], T0) == [R.EXCEEDS_DEBITS]
    assert ledger.create_transfers([pay("x", "alice", "capped", 50)], T0) == [R.OK]
    ledger.check_invariants()


# ---------------------------------------------------------------------------------------------
# Two-phase transfers


def test_partial_post_releases_the_rest(ledger: Ledger) -> None:
    assert ledger.create_transfers([hold("h", "alice", "clearing", 600, CNY)], T0) == [R.OK]
    a = acct(ledger, "alice")
    assert (a.debits_pending, a.debits_posted, a.available) == (600, 0, 400)
    assert ledger.pending_status("h") is PendingStatus.PENDING
    assert ledger.create_transfers([post("p", "h", 601)], T0) == [R.EXCEEDS_PENDING_TRANSFER_AMOUNT]
    assert ledger.create_transfers([post("p", "h", 0)], T0) == [R.AMOUNT_MUST_BE_POSITIVE]
    assert ledger.create_transfers([post("p", "h", 250)], T0 + 1) == [R.OK]
    a = acct(ledger, "alice")
    assert (a.debits_pending, a.debits_posted, a.balance, a.available) == (0, 250, 750, 750)
    c = acct(ledger, "clearing")
    assert (c.credits_pending, c.credits_posted) == (0, 250)
    assert ledger.pending_status("h") is PendingStatus.POSTED
    recorded = ledger.lookup_transfer("p")
    assert recorded is not None
    assert (recorded.debit_account_id, recorded.credit_account_id, recorded.amount) == (
        "alice",
        "clearing",
        250,
    )
    assert recorded.ledger is CNY
    assert ledger.create_transfers([post("p2", "h", 1)], T0 + 1) == [
        R.PENDING_TRANSFER_ALREADY_POSTED
    ]
    assert ledger.create_transfers([void("v", "h")], T0 + 1) == [R.PENDING_TRANSFER_ALREADY_POSTED]
    ledger.check_invariants()


def test_post_full_amount_with_none(ledger: Ledger) -> None:
    assert ledger.create_transfers([hold("h", "alice", "clearing", 600, CNY)], T0) == [R.OK]
    assert ledger.create_transfers([post("p", "h")], T0) == [R.OK]
    assert acct(ledger, "clearing").credits_posted == 600
    # The retry is compared after resolution: None and the explicit full amount are the same.
    assert ledger.create_transfers([post("p", "h")], T0) == [R.EXISTS]
    assert ledger.create_transfers([post("p", "h", 600)], T0) == [R.EXISTS]
    assert ledger.create_transfers([post("p", "h", 599)], T0) == [R.EXISTS_WITH_DIFFERENT_FIELDS]
    ledger.check_invariants()


def test_void_releases_everything(ledger: Ledger) -> None:
    assert ledger.create_transfers([hold("h", "alice", "clearing", 600, CNY)], T0) == [R.OK]
    assert ledger.create_transfers([void("v", "h")], T0) == [R.OK]
    a = acct(ledger, "alice")
    assert (a.debits_pending, a.debits_posted, a.available) == (0, 0, 1000)
    assert acct(ledger, "clearing").credits_pending == 0
    assert ledger.pending_status("h") is PendingStatus.VOIDED
    assert ledger.create_transfers([void("v2", "h")], T0) == [R.PENDING_TRANSFER_ALREADY_VOIDED]
    assert ledger.create_transfers([post("p", "h")], T0) == [R.PENDING_TRANSFER_ALREADY_VOIDED]
    ledger.check_invariants()


def test_void_amount_and_accounts_must_match(ledger: Ledger) -> None:
    assert ledger.create_transfers([hold("h", "alice", "clearing", 600, CNY)], T0) == [R.OK]
    assert ledger.create_transfers([replace(void("v", "h"), amount=5)], T0) == [
        R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
    ]
    assert ledger.create_transfers([void("v", "h", debit_account_id="bob")], T0) == [
        R.PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS
    ]
    assert ledger.create_transfers([post("v", "h", credit_account_id="prov")], T0) == [
        R.PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS
    ]
    assert ledger.create_transfers([void("v", "h", ledger=Asset.GCO2)], T0) == [R.LEDGER_MISMATCH]
    assert ledger.create_transfers([replace(void("v", "h"), timeout_s=3)], T0) == [
        R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    ]
    assert ledger.create_transfers([replace(void("v", "h"), amount=600)], T0) == [R.OK]
    ledger.check_invariants()


def test_expiry(ledger: Ledger) -> None:
    holds = [
        hold("h1", "alice", "clearing", 300, CNY, timeout_s=60),
        hold("h2", "alice", "clearing", 300, CNY, timeout_s=120),
        hold("h3", "alice", "clearing", 300, CNY),  # never expires
    ]
    assert ledger.create_transfers(holds, T0) == [R.OK] * 3
    assert acct(ledger, "alice").available == 100
    assert ledger.expire_pending(T0 + 59) == []
    assert ledger.expire_pending(T0 + 60) == ["h1"]
    assert ledger.pending_status("h1") is PendingStatus.EXPIRED
    assert acct(ledger, "alice").available == 400
    ledger.check_invariants()
    assert ledger.create_transfers([post("p1", "h1")], T0 + 61) == [R.PENDING_TRANSFER_EXPIRED]
    assert ledger.create_transfers([void("v1", "h1")], T0 + 61) == [R.PENDING_TRANSFER_EXPIRED]
    # Lazy expiry: h2 is due at T0+120 and expires when a write arrives at that time.
    assert ledger.pending_status("h2") is PendingStatus.PENDING
    assert ledger.create_transfers([post("p2", "h2")], T0 + 120) == [R.PENDING_TRANSFER_EXPIRED]
    assert ledger.pending_status("h2") is PendingStatus.EXPIRED
    assert ledger.expire_pending(T0 + 10**6) == []
    assert ledger.create_transfers([post("p3", "h3", 100)], T0 + 10**6) == [R.OK]
    # A retry of the expired hold itself answers exists and changes nothing.
    before = totals(ledger)
    assert ledger.create_transfers([holds[0]], T0 + 10**6) == [R.EXISTS]
    assert totals(ledger) == before
    ledger.check_invariants()


def test_rolled_back_hold_does_not_expire_its_reused_id(ledger: Ledger) -> None:
    short = hold("h", "alice", "clearing", 100, CNY, timeout_s=10)
    chain = linked([short, pay("x", "alice", "ghost", 1)])
    assert ledger.create_transfers(chain, T0) == [R.LINKED_EVENT_FAILED, R.ACCOUNT_NOT_FOUND]
    long = hold("h", "alice", "clearing", 100, CNY, timeout_s=1000)
    assert ledger.create_transfers([long], T0) == [R.OK]
    assert ledger.expire_pending(T0 + 10) == []
    assert ledger.pending_status("h") is PendingStatus.PENDING
    assert ledger.expire_pending(T0 + 1000) == ["h"]
    ledger.check_invariants()


def test_post_just_before_expiry(ledger: Ledger) -> None:
    h = hold("h", "alice", "clearing", 300, CNY, timeout_s=60)
    assert ledger.create_transfers([h], T0) == [R.OK]
    assert ledger.create_transfers([post("p", "h", 10)], T0 + 59) == [R.OK]
    assert ledger.expire_pending(T0 + 60) == []
    ledger.check_invariants()


def test_clock_must_not_go_backwards(ledger: Ledger) -> None:
    ledger.create_transfers([], T0 + 10)
    with pytest.raises(ValidationError):
        ledger.create_transfers([], T0 + 9)
    with pytest.raises(ValidationError):
        ledger.expire_pending(T0)


# ---------------------------------------------------------------------------------------------
# Idempotency


def test_retry_returns_exists_and_changes_nothing(ledger: Ledger) -> None:
    t = pay("t1", "alice", "prov", 300, user_data="order-1")
    assert ledger.create_transfers([t], T0) == [R.OK]
    before = totals(ledger)
    assert ledger.create_transfers([t], T0 + 5) == [R.EXISTS]
    assert ledger.create_transfers([replace(t, timestamp=123)], T0 + 5) == [R.EXISTS]
    assert totals(ledger) == before
    recorded = ledger.lookup_transfer("t1")
    assert recorded is not None and recorded.timestamp == T0
    for changed in (
        replace(t, amount=301),
        replace(t, credit_account_id="bob"),
        replace(t, code=TransferCode.REFUND),
        replace(t, user_data="order-2"),
        replace(t, flags=TransferFlags.PENDING),
    ):
        assert ledger.create_transfers([changed], T0 + 5) == [R.EXISTS_WITH_DIFFERENT_FIELDS]
    assert totals(ledger) == before
    # Within one batch, the second copy of a new transfer answers exists.
    t2 = pay("t2", "alice", "prov", 1)
    assert ledger.create_transfers([t2, t2], T0 + 5) == [R.OK, R.EXISTS]
    ledger.check_invariants()


def test_failed_id_is_not_reserved(ledger: Ledger) -> None:
    assert ledger.create_transfers([pay("t", "alice", "prov", 5000)], T0) == [R.EXCEEDS_CREDITS]
    assert ledger.lookup_transfer("t") is None
    assert ledger.create_transfers([pay("t", "alice", "prov", 500)], T0) == [R.OK]


# ---------------------------------------------------------------------------------------------
# Linked chains


def test_linked_chain_all_or_nothing(ledger: Ledger) -> None:
    chain = linked(
        [
            pay("a", "alice", "clearing", 400),
            pay("b", "clearing", "prov", 300),
            pay("c", "clearing", "bob", 200),  # clearing has no limit: it may go negative
            pay("d", "bob", "prov", 150),  # bob has 200 because c came first; 50 left
        ]
    )
    assert [t.is_linked for t in chain] == [True, True, True, False]
    assert ledger.create_transfers(chain, T0) == [R.OK] * 4
    before = totals(ledger)
    failing = linked(
        [
            pay("e", "alice", "prov", 100),
            pay("f", "bob", "prov", 51),  # bob has 50
            pay("g", "alice", "prov", 100),
        ]
    )
    assert ledger.create_transfers(failing, T0) == [
        R.LINKED_EVENT_FAILED,
        R.EXCEEDS_CREDITS,
        R.LINKED_EVENT_FAILED,
    ]
    assert totals(ledger) == before
    assert all(ledger.lookup_transfer(i) is None for i in "efg")
    assert [t.id for t in ledger.account_transfers("alice")] == ["dep-alice", "a"]
    ledger.check_invariants()


def test_linked_chain_with_holds_rolls_back_status(ledger: Ledger) -> None:
    assert ledger.create_transfers([hold("h", "alice", "clearing", 500, CNY)], T0) == [R.OK]
    chain = linked(
        [post("p", "h", 200), hold("h2", "alice", "clearing", 5, CNY), pay("x", "a", "b", 1)]
    )
    assert ledger.create_transfers(chain, T0) == [
        R.LINKED_EVENT_FAILED,
        R.LINKED_EVENT_FAILED,
        R.ACCOUNT_NOT_FOUND,
    ]
    assert ledger.pending_status("h") is PendingStatus.PENDING
    assert ledger.pending_status("h2") is None
    assert acct(ledger, "alice").debits_pending == 500
    ledger.check_invariants()


def test_linked_chain_open_and_independent_chains(ledger: Ledger) -> None:
    ok = pay("ok", "alice", "prov", 1)
    open_chain = [
        pay("o1", "alice", "prov", 1, linked=True),
        pay("o2", "alice", "prov", 1, linked=True),
    ]
    assert ledger.create_transfers([ok, *open_chain], T0) == [
        R.OK,
        R.LINKED_EVENT_FAILED,
        R.LINKED_EVENT_CHAIN_OPEN,
    ]
    assert ledger.lookup_transfer("o1") is None
    assert ledger.create_transfers([open_chain[1]], T0) == [R.LINKED_EVENT_CHAIN_OPEN]


def test_retried_chain_answers_exists(ledger: Ledger) -> None:
    chain = linked([pay("a", "alice", "clearing", 400), pay("b", "clearing", "prov", 400)])
    assert ledger.create_transfers(chain, T0) == [R.OK, R.OK]
    before = totals(ledger)
    assert ledger.create_transfers(chain, T0) == [R.EXISTS, R.EXISTS]
    assert totals(ledger) == before


def test_failed_linked_member_id_is_reusable(ledger: Ledger) -> None:
    chain = linked([pay("a", "alice", "prov", 1), pay("b", "alice", "ghost", 1)])
    assert ledger.create_transfers(chain, T0) == [R.LINKED_EVENT_FAILED, R.ACCOUNT_NOT_FOUND]
    assert ledger.create_transfers([pay("a", "alice", "prov", 7)], T0) == [R.OK]


# ---------------------------------------------------------------------------------------------
# Invariants


def test_check_invariants_detects_corruption(ledger: Ledger) -> None:
    ledger.check_invariants()
    a = acct(ledger, "alice")
    ledger._accounts["alice"] = replace(a, credits_posted=a.credits_posted + 1)
    with pytest.raises(LedgerInvariantError):
        ledger.check_invariants()
    ledger._accounts["alice"] = replace(a, debits_posted=a.credits_posted + 1)
    ledger._accounts["bank"] = replace(acct(ledger, "bank"), credits_posted=1001)
    with pytest.raises(LedgerInvariantError, match="debits exceed credits"):
        ledger.check_invariants()
    ledger._accounts["alice"] = a
    ledger._accounts["bank"] = replace(acct(ledger, "bank"), credits_posted=0)
    ledger._accounts["prov"] = replace(acct(ledger, "prov"), credits_posted=5)
    ledger._accounts["clearing"] = replace(acct(ledger, "clearing"), debits_posted=5)
    with pytest.raises(LedgerInvariantError, match="replay"):
        ledger.check_invariants()


def test_asset_units() -> None:
    assert [a.unit for a in Asset] == ["fen", "Wh", "g"]
    assert str(Asset.KWH_GREEN) == "kWh-green"


# ---------------------------------------------------------------------------------------------
# Stateful property test against a reference model


IDS = [*ACCOUNTS, "ghost"]
CODES = list(TransferCode)


class Model:
    """An independent reference model of the ledger: predicts every result and every total."""

    def __init__(self) -> None:
        self.totals: dict[str, list[int]] = {}
        self.transfers: dict[str, Transfer] = {}  # resolved, timestamp 0
        self.pending: dict[str, tuple[str, str, int, int | None]] = {}  # d, c, amount, due
        self.status: dict[str, PendingStatus] = {}

    def copy(self) -> Model:
        m = Model()
        m.totals = {k: list(v) for k, v in self.totals.items()}
        m.transfers = dict(self.transfers)
        m.pending = dict(self.pending)
        m.status = dict(self.status)
        return m

    def expire(self, now: int) -> set[str]:
        out = set()
        for pid, (d, c, amount, due) in self.pending.items():
            if due is not None and due <= now and self.status[pid] is PendingStatus.PENDING:
                self.status[pid] = PendingStatus.EXPIRED
                self.totals[d][0] -= amount
                self.totals[c][2] -= amount
                out.add(pid)
        return out

    def resolve(self, t: Transfer) -> Transfer:
        t = replace(t, timestamp=0)
        p = self.transfers.get(t.pending_id)
        if not (t.is_post or t.is_void) or p is None or not p.is_pending:
            return t
        return replace(
            t,
            debit_account_id=t.debit_account_id or p.debit_account_id,
            credit_account_id=t.credit_account_id or p.credit_account_id,
            ledger=t.ledger or p.ledger,
            amount=p.amount if t.amount is None else t.amount,
        )

    def check(self, t: Transfer) -> CreateResult:
        kinds = [t.is_pending, t.is_post, t.is_void]
        if not t.id:
            return R.ID_REQUIRED
        if sum(kinds) > 1 or int(t.flags) >= 16:
            return R.INVALID_FLAGS
        if t.id in self.transfers:
            same = self.resolve(t) == self.transfers[t.id]
            return R.EXISTS if same else R.EXISTS_WITH_DIFFERENT_FIELDS
        if t.is_post or t.is_void:
            if not t.pending_id:
                return R.PENDING_ID_REQUIRED
            if t.timeout_s:
                return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
            if t.pending_id not in self.transfers:
                return R.PENDING_TRANSFER_NOT_FOUND
            if t.pending_id not in self.pending:
                return R.PENDING_TRANSFER_NOT_PENDING
            d, c, held, _ = self.pending[t.pending_id]
            if t.debit_account_id not in ("", d) or t.credit_account_id not in ("", c):
                return R.PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS
            if t.ledger not in (None, ACCOUNTS[d].ledger):
                return R.LEDGER_MISMATCH
            status = self.status[t.pending_id]
            if status is not PendingStatus.PENDING:
                return {
                    PendingStatus.POSTED: R.PENDING_TRANSFER_ALREADY_POSTED,
                    PendingStatus.VOIDED: R.PENDING_TRANSFER_ALREADY_VOIDED,
                    PendingStatus.EXPIRED: R.PENDING_TRANSFER_EXPIRED,
                }[status]
            if t.is_post and t.amount is not None and t.amount <= 0:
                return R.AMOUNT_MUST_BE_POSITIVE
            if t.is_post and t.amount is not None and t.amount > held:
                return R.EXCEEDS_PENDING_TRANSFER_AMOUNT
            if t.is_void and t.amount not in (None, held):
                return R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
            return R.OK
        if t.pending_id:
            return R.PENDING_ID_MUST_BE_EMPTY
        if t.timeout_s < 0:
            return R.INVALID_TIMEOUT
        if t.timeout_s and not t.is_pending:
            return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
        if t.amount is None or t.amount <= 0:
            return R.AMOUNT_MUST_BE_POSITIVE
        if t.debit_account_id == t.credit_account_id:
            return R.ACCOUNTS_MUST_BE_DIFFERENT
        if t.debit_account_id not in self.totals or t.credit_account_id not in self.totals:
            return R.ACCOUNT_NOT_FOUND
        if t.ledger is None:
            return R.LEDGER_REQUIRED
        debit, credit = ACCOUNTS[t.debit_account_id], ACCOUNTS[t.credit_account_id]
        if not debit.ledger == credit.ledger == t.ledger:
            return R.LEDGER_MISMATCH
        dp, dpo, _, cpo = self.totals[debit.id]
        if debit.flags & DMNEC and dp + dpo + t.amount > cpo:
            return R.EXCEEDS_CREDITS
        _, dpo, cp, cpo = self.totals[credit.id]
        if credit.flags & CMNED and cp + cpo + t.amount > dpo:
            return R.EXCEEDS_DEBITS
        return R.OK

    def apply(self, t: Transfer, now: int) -> None:
        t = self.resolve(t)
        if t.is_post or t.is_void:
            d, c, held, _ = self.pending[t.pending_id]
            amount = 0 if t.is_void else (held if t.amount is None else t.amount)
            self.totals[d][0] -= held
            self.totals[c][2] -= held
            self.totals[d][1] += amount
            self.totals[c][3] += amount
            self.status[t.pending_id] = PendingStatus.VOIDED if t.is_void else PendingStatus.POSTED
        else:
            assert t.amount is not None
            k = 0 if t.is_pending else 1
            self.totals[t.debit_account_id][k] += t.amount
            self.totals[t.credit_account_id][k + 2] += t.amount
            if t.is_pending:
                due = now + t.timeout_s if t.timeout_s else None
                self.pending[t.id] = (t.debit_account_id, t.credit_account_id, t.amount, due)
                self.status[t.id] = PendingStatus.PENDING
        self.transfers[t.id] = t

    def run(self, batch: list[Transfer], now: int) -> tuple[Model, list[CreateResult]]:
        """The expected results of a batch, and the model after it."""
        model = self.copy()
        model.expire(now)
        results: list[CreateResult] = []
        start = 0
        while start < len(batch):
            end = start
            while end < len(batch) - 1 and batch[end].is_linked:
                end += 1
            chain = batch[start : end + 1]
            if chain[-1].is_linked:
                results += [R.LINKED_EVENT_FAILED] * (len(chain) - 1)
                results.append(R.LINKED_EVENT_CHAIN_OPEN)
                break
            trial = model.copy()
            got: list[CreateResult] = []
            for k, t in enumerate(chain):
                r = trial.check(t)
                got.append(r)
                if r is R.OK:
                    trial.apply(t, now)
                elif r is not R.EXISTS:
                    got = [R.LINKED_EVENT_FAILED] * len(chain)
                    got[k] = r
                    break
            else:
                model = trial
            results += got
            start = end + 1
        return model, results


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger()
        self.model = Model()
        self.now = T0
        self.batches: list[tuple[list[Transfer], list[CreateResult]]] = []
        self.serial = 0

    # -- helpers --

    def fresh_id(self, data: st.DataObject) -> str:
        known = list(self.model.transfers) + [t.id for b, _ in self.batches for t in b]
        if known and data.draw(st.integers(0, 9), label="reuse") == 0:
            return data.draw(st.sampled_from(known), label="reused id")
        self.serial += 1
        return f"t{self.serial}"

    def draw_transfer(self, data: st.DataObject) -> Transfer:
        kind = data.draw(st.sampled_from(["plain", "plain", "pending", "pending", "post", "void"]))
        tid = self.fresh_id(data)
        code = data.draw(st.sampled_from(CODES))
        wild = data.draw(st.integers(0, 4), label="wild") == 0
        if kind in ("plain", "pending"):
            created = sorted(self.model.totals)
            if wild or len(created) < 2:
                debit = data.draw(st.sampled_from(IDS), label="debit")
                credit = data.draw(st.sampled_from(IDS), label="credit")
                amount = data.draw(st.integers(-1, 400) | st.none(), label="amount")
                ledger = data.draw(st.sampled_from([CNY, Asset.GCO2, None]))
            else:
                debit = data.draw(st.sampled_from(created), label="debit")
                credit = data.draw(st.sampled_from([a for a in created if a != debit]))
                amount = data.draw(st.integers(1, 300), label="amount")
                ledger = ACCOUNTS[debit].ledger
            flags = TransferFlags.PENDING if kind == "pending" else TransferFlags.NONE
            timeouts = [0, 0, 5, 30, -1] if wild else [0, 5, 30]
            timeout = data.draw(st.sampled_from(timeouts)) if kind == "pending" else 0
            return Transfer(
                id=tid,
                code=code,
                debit_account_id=debit,
                credit_account_id=credit,
                amount=amount,
                ledger=ledger,
                flags=flags,
                timeout_s=timeout,
            )
        if wild or not self.model.pending:
            choices = [*self.model.pending, "nope", *list(self.model.transfers)[:3]]
        else:
            open_ = [p for p, s in self.model.status.items() if s is PendingStatus.PENDING]
            choices = open_ or list(self.model.pending)
        pid = data.draw(st.sampled_from(choices), label="pending_id")
        if kind == "post":
            held = self.model.pending[pid][2] if pid in self.model.pending else 100
            amounts = st.none() | st.integers(0, 450) if wild else st.none() | st.integers(1, held)
            return post(tid, pid, data.draw(amounts, label="post amount"), code)
        amount = data.draw(st.none() | st.integers(0, 450), label="void amount") if wild else None
        return replace(void(tid, pid, code), amount=amount)

    def submit(self, batch: list[Transfer]) -> list[CreateResult]:
        model, want = self.model.run(batch, self.now)
        results = self.ledger.create_transfers(batch, self.now)
        for r in results:
            event(f"result {r}")
        assert results == want
        self.model = model
        self.check_chains(batch, results)
        self.batches.append((batch, results))
        return results

    def check_chains(self, batch: list[Transfer], results: list[CreateResult]) -> None:
        chain: list[CreateResult] = []
        for t, r in zip(batch, results, strict=True):
            chain.append(r)
            if t.is_linked:
                continue
            if not all(x.succeeded for x in chain):
                assert not any(x.succeeded for x in chain), chain
                assert sum(x is not R.LINKED_EVENT_FAILED for x in chain) == 1, chain
            chain = []
        if chain:  # open chain at the end of the batch
            assert chain[-1] is R.LINKED_EVENT_CHAIN_OPEN
            assert all(x is R.LINKED_EVENT_FAILED for x in chain[:-1])

    # -- rules --

    @initialize(data=st.data())
    def open_accounts(self, data: st.DataObject) -> None:
        ids = data.draw(st.sets(st.sampled_from(list(ACCOUNTS)), min_size=2), label="open")
        specs = [ACCOUNTS[i] for i in ACCOUNTS if i in ids]
        assert self.ledger.create_accounts(specs, now=self.now) == [R.OK] * len(specs)
        for a in specs:
            self.model.totals[a.id] = [0, 0, 0, 0]

    @rule(data=st.data())
    def create_account(self, data: st.DataObject) -> None:
        spec = ACCOUNTS[data.draw(st.sampled_from(list(ACCOUNTS)))]
        if data.draw(st.booleans(), label="perturb"):
            spec = replace(spec, owner="someone-else")
        existing = self.ledger.lookup_account(spec.id)
        (result,) = self.ledger.create_accounts([spec], now=self.now)
        if existing is None:
            assert result is R.OK
            self.model.totals[spec.id] = [0, 0, 0, 0]
        elif existing.owner == spec.owner:
            assert result is R.EXISTS
        else:
            assert result is R.EXISTS_WITH_DIFFERENT_FIELDS

    @rule(debit=st.sampled_from(["bank", "co2-src"]), data=st.data())
    def deposit(self, debit: str, data: st.DataObject) -> None:
        credit = data.draw(st.sampled_from(IDS), label="deposit to")
        amount = data.draw(st.integers(1, 1000), label="deposit")
        ledger = Asset.GCO2 if debit == "co2-src" else CNY
        self.serial += 1
        t = transfer(f"d{self.serial}", debit, credit, amount, ledger, TransferCode.DEPOSIT)
        self.submit([t])

    @rule(data=st.data())
    def single(self, data: st.DataObject) -> None:
        self.submit([self.draw_transfer(data)])

    @rule(data=st.data(), n=st.integers(2, 4), close=st.booleans())
    def chain(self, data: st.DataObject, n: int, close: bool) -> None:
        batch = linked(self.draw_transfer(data) for _ in range(n))
        if not close:
            batch[-1] = replace(batch[-1], flags=batch[-1].flags | TransferFlags.LINKED)
        self.submit(batch)

    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        if not self.batches:
            return
        batch, first = data.draw(st.sampled_from(self.batches), label="batch")
        assert set(self.ledger.expire_pending(self.now)) == self.model.expire(self.now)
        before = totals(self.ledger)
        again = self.submit(batch)
        if all(r.succeeded for r in first):
            assert again == [R.EXISTS] * len(batch)
            assert totals(self.ledger) == before

    @rule(dt=st.sampled_from([0, 1, 4, 5, 10, 31]), sweep=st.booleans())
    def advance(self, dt: int, sweep: bool) -> None:
        self.now += dt
        if sweep:  # otherwise the next write expires lazily
            want = self.model.expire(self.now)
            assert set(self.ledger.expire_pending(self.now)) == want

    # -- invariants --

    @invariant()
    def books_balance(self) -> None:
        self.ledger.check_invariants()
        got = {k: list(v) for k, v in totals(self.ledger).items()}
        assert got == self.model.totals
        for a in self.ledger.accounts():
            if a.flags & DMNEC:
                assert a.available >= 0, a
        for pid, status in self.model.status.items():
            assert self.ledger.pending_status(pid) is status


LedgerMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerMachine = LedgerMachine.TestCase
