"""SqlLedger against the core Ledger: same results, same state; atomic; concurrent-safe."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from suangu.core import billing
from suangu.core.errors import ValidationError
from suangu.core.ledger import (
    AMOUNT_MAX,
    Account,
    AccountFlags,
    AccountKind,
    Asset,
    CreateResult,
    Ledger,
    Transfer,
    TransferCode,
    TransferFlags,
    hold,
    linked,
    post,
    transfer,
    void,
)
from suangu.store.db import Database
from suangu.store.ledger import SqlLedger
from suangu.store.models import LedgerAccountRow, LedgerTransferRow

R = CreateResult
CNY = Asset.CNY
DMNEC = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
CMNED = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
T0 = 1_700_000_000


def accounts(prefix: str = "") -> list[Account]:
    p = prefix
    return [
        Account(id=f"{p}bank", ledger=CNY, kind=AccountKind.EXTERNAL, owner="external"),
        Account(id=f"{p}alice", ledger=CNY, kind=AccountKind.BUYER, owner="alice", flags=DMNEC),
        Account(id=f"{p}bob", ledger=CNY, kind=AccountKind.BUYER, owner="bob", flags=DMNEC),
        Account(
            id=f"{p}clearing", ledger=CNY, kind=AccountKind.EXCHANGE_CLEARING, owner="exchange"
        ),
        Account(id=f"{p}prov", ledger=CNY, kind=AccountKind.PROVIDER, owner="prov"),
        Account(
            id=f"{p}capped", ledger=CNY, kind=AccountKind.EXCHANGE_FEES, owner="ex", flags=CMNED
        ),
        Account(id=f"{p}co2", ledger=Asset.GCO2, kind=AccountKind.EXTERNAL, owner="x"),
    ]


def pay(id: str, debit: str, credit: str, amount: int | None, *, link: bool = False) -> Transfer:
    return Transfer(
        id=id,
        code=TransferCode.ADJUSTMENT,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        ledger=CNY,
        flags=TransferFlags.LINKED if link else TransferFlags.NONE,
    )


def state(led: Ledger | SqlLedger) -> tuple[object, ...]:
    """Everything observable: accounts, transfers (by id) and pending statuses."""
    transfers = sorted(led.transfers(), key=lambda t: t.id)
    return (
        sorted(led.accounts(), key=lambda a: a.id),
        transfers,
        {t.id: led.pending_status(t.id) for t in transfers},
    )


def replace_flags(t: Transfer, flags: int, *, timeout_s: int = 0) -> Transfer:
    return replace(t, flags=TransferFlags(flags), timeout_s=timeout_s)


#: (now, accounts to create, transfers to create): a script through every rule.
SCRIPT: list[tuple[int, list[Account], list[Transfer]]] = [
    (T0, accounts(), []),
    (
        T0,
        [
            accounts()[0],  # exists
            Account(id="bank", ledger=CNY, kind=AccountKind.BUYER, owner="external"),  # different
            Account(id="x", ledger=CNY, kind=AccountKind.BUYER, owner="x", flags=DMNEC | CMNED),
            Account(id="", ledger=CNY, kind=AccountKind.BUYER, owner="x"),
            Account(id="y", ledger=CNY, kind=AccountKind.BUYER, owner="y", debits_posted=1),
            Account(id="l1", ledger=CNY, kind=AccountKind.BUYER, owner="l", flags=AccountFlags(1)),
            Account(id="bank", ledger=CNY, kind=AccountKind.BUYER, owner="changed"),
        ],
        [],
    ),
    (
        T0 + 1,
        [],
        [
            pay("dep-a", "bank", "alice", 1000),
            pay("dep-b", "bank", "bob", 500),
            pay("dep-a", "bank", "alice", 1000),  # exists
            pay("dep-b", "bank", "bob", 501),  # exists with different fields
            pay("", "bank", "bob", 1),
            pay("self", "bob", "bob", 1),
            pay("zero", "bank", "bob", 0),
            pay("none", "bank", "bob", None),
            pay("ghost", "bank", "nobody", 5),
            pay("cross", "bank", "co2", 5),
            pay("broke", "bob", "prov", 10_000),
            pay("capped", "bank", "capped", 1),
            Transfer(
                id="noledger",
                code=TransferCode.ADJUSTMENT,
                debit_account_id="bank",
                credit_account_id="bob",
                amount=1,
            ),
            pay("big", "prov", "bank", AMOUNT_MAX),
            pay("big2", "prov", "bank", 1),  # overflow
            replace_flags(pay("flags", "bank", "bob", 1), 0b110),
            replace_flags(pay("to", "bank", "bob", 1), 0, timeout_s=5),
            Transfer(
                id="pid",
                code=TransferCode.ADJUSTMENT,
                debit_account_id="bank",
                credit_account_id="bob",
                amount=1,
                ledger=CNY,
                pending_id="dep-a",
            ),
        ],
    ),
    (
        T0 + 2,
        [],
        [
            hold("h1", "alice", "clearing", 600, CNY, timeout_s=100),
            hold("h2", "alice", "clearing", 500, CNY),  # exceeds credits with h1 pending
            hold("h3", "bob", "clearing", 200, CNY, timeout_s=10),
            hold("h4", "bob", "clearing", 100, CNY),
            hold("h5", "bob", "clearing", 50, CNY, timeout_s=-1),
        ],
    ),
    (
        T0 + 3,
        [],
        [
            post("p1", "h1", 250),
            post("p1", "h1", 250),  # exists
            post("p1b", "h1", 10),  # already posted
            void("v4", "h4"),
            void("v4b", "h4"),  # already voided
            post("p-missing", "nope"),
            post("p-notpending", "dep-a"),
            post("p-too-much", "h3", 201),
            post("p-zero", "h3", 0),
            post("p-accts", "h3", 5, debit_account_id="alice"),
            Transfer(
                id="v-amt",
                code=TransferCode.HOLD_RELEASE,
                amount=7,
                pending_id="h3",
                flags=TransferFlags.VOID_PENDING_TRANSFER,
            ),
            Transfer(
                id="p-nopid",
                code=TransferCode.LEASE_PAYMENT,
                flags=TransferFlags.POST_PENDING_TRANSFER,
            ),
        ],
    ),
    (
        T0 + 12,  # h3 expires (T0 + 2 + 10)
        [],
        [
            post("p3", "h3", 10),
            # a linked chain with one bad member: nothing of it is written
            *linked(
                [
                    pay("c1", "bank", "bob", 5),
                    hold("c2", "bob", "clearing", 5, CNY),
                    pay("c3", "bob", "prov", 1_000_000),
                ]
            ),
            # a good chain
            *linked([pay("g1", "bank", "bob", 5), hold("g2", "bob", "clearing", 5, CNY)]),
            post("g3", "g2"),
            pay("c1", "bank", "prov", 7),  # the failed chain's id is reusable
            pay("open", "bank", "bob", 5, link=True),  # chain left open
        ],
    ),
    (T0 + 500, [], [post("late", "h1"), pay("after", "bank", "bob", 1)]),
]


def test_scripted_parity_with_the_core(db: Database) -> None:
    core, sql = Ledger(), SqlLedger(db)
    for now, accts, transfers in SCRIPT:
        if accts:
            assert sql.create_accounts(accts, now) == core.create_accounts(accts, now)
        if transfers:
            assert sql.create_transfers(transfers, now) == core.create_transfers(transfers, now)
        assert state(sql) == state(core)
        assert sql.balances(CNY) == core.balances(CNY)
        sql.check_invariants()
    assert sql.lookup_transfer("p1") == core.lookup_transfer("p1")
    assert sql.lookup_account("alice") == core.lookup_account("alice")
    assert sql.lookup_account("nope") is None and sql.lookup_transfer("nope") is None
    assert sql.account_transfers("alice") == sorted(
        core.account_transfers("alice"), key=lambda t: (t.timestamp, t.id)
    )


def test_expire_pending_and_clock(db: Database) -> None:
    core, sql = Ledger(), SqlLedger(db)
    for led in (core, sql):
        led.create_accounts(accounts(), T0)
        led.create_transfers([pay("d", "bank", "alice", 100)], T0)
        led.create_transfers([hold("h", "alice", "clearing", 40, CNY, timeout_s=5)], T0)
    assert sql.expire_pending(T0 + 4) == core.expire_pending(T0 + 4) == []
    assert sql.expire_pending(T0 + 5) == core.expire_pending(T0 + 5) == ["h"]
    assert state(sql) == state(core)
    with pytest.raises(ValidationError) as err:
        sql.create_transfers([pay("x", "bank", "alice", 1)], T0)
    assert err.value.field == "now"
    assert sql.lookup_transfer("x") is None
    lenient = SqlLedger(db, clamp_clock=True)
    assert lenient.create_transfers([pay("x", "bank", "alice", 1)], T0) == [R.OK]
    x = lenient.lookup_transfer("x")
    assert x is not None and x.timestamp == T0 + 5


def test_failed_chain_writes_nothing(db: Database) -> None:
    sql = SqlLedger(db)
    sql.create_accounts(accounts(), T0)
    sql.create_transfers([pay("d", "bank", "alice", 100)], T0)
    before = state(sql)
    chain = linked(
        [
            pay("a", "bank", "bob", 5),
            hold("b", "alice", "clearing", 50, CNY),
            post("c", "b", 20),
            pay("d2", "alice", "prov", 1_000),  # exceeds alice's credits
        ]
    )
    assert sql.create_transfers(chain, T0 + 1) == [
        R.LINKED_EVENT_FAILED,
        R.LINKED_EVENT_FAILED,
        R.LINKED_EVENT_FAILED,
        R.EXCEEDS_CREDITS,
    ]
    assert state(sql) == before
    bad_accounts = [
        Account(id="n1", ledger=CNY, kind=AccountKind.BUYER, owner="n", flags=AccountFlags(1)),
        Account(id="n2", ledger=CNY, kind=AccountKind.BUYER, owner="n", credits_posted=5),
    ]
    assert sql.create_accounts(bad_accounts, T0 + 1) == [
        R.LINKED_EVENT_FAILED,
        R.BALANCES_MUST_BE_ZERO,
    ]
    assert sql.lookup_account("n1") is None
    too_long = [pay("ok", "bank", "bob", 1), pay("x" * 256, "bank", "bob", 1)]
    with pytest.raises(ValidationError) as err:
        sql.create_transfers(too_long, T0 + 1)
    assert err.value.field == "transfers[1].id"
    assert state(sql) == before


def test_database_constraints_back_the_rules(db: Database) -> None:
    """The schema itself refuses what the rules forbid, whatever code writes to it."""
    sql = SqlLedger(db)
    sql.create_accounts(accounts(), T0)
    sql.create_transfers([pay("d", "bank", "alice", 100)], T0)
    sql.create_transfers([hold("h", "alice", "clearing", 40, CNY), post("p", "h", 10)], T0)
    row = {
        "id": "p2",
        "code": "lease_payment",
        "debit_account_id": "alice",
        "credit_account_id": "clearing",
        "amount": 10,
        "ledger": "CNY",
        "flags": int(TransferFlags.POST_PENDING_TRANSFER),
        "pending_id": "h",
        "timeout_s": 0,
        "user_data": "",
        "timestamp": T0,
        "expires_at": None,
        "pending_status": None,
    }
    bad_writes = [
        insert(LedgerTransferRow).values(**row),  # h resolved twice
        insert(LedgerTransferRow).values(**{**row, "pending_id": None, "id": "d"}),  # dup id
        insert(LedgerTransferRow).values(**{**row, "pending_id": None, "amount": -1}),
        update(LedgerAccountRow).where(LedgerAccountRow.id == "alice").values(debits_posted=10**6),
        update(LedgerAccountRow).where(LedgerAccountRow.id == "bob").values(credits_posted=-1),
    ]
    for stmt in bad_writes:
        with pytest.raises(IntegrityError), db.session_scope() as s:
            s.execute(stmt)
    sql.check_invariants()


# -- a shorter random comparison ----------------------------------------------------------------

IDS = [f"t{k}" for k in range(6)]
NAMES = ["bank", "alice", "bob", "clearing", "prov", "capped", "co2"]


@st.composite
def transfers_st(draw: st.DrawFn) -> Transfer:
    kind = draw(st.sampled_from(["pay", "hold", "post", "void"]))
    tid = draw(st.sampled_from(IDS))
    link = draw(st.booleans()) and draw(st.booleans())
    if kind in ("pay", "hold"):
        debit, credit = draw(st.sampled_from(NAMES)), draw(st.sampled_from(NAMES))
        amount = draw(st.integers(0, 700))
        if kind == "pay":
            return transfer(tid, debit, credit, amount, CNY, TransferCode.ADJUSTMENT, linked=link)
        timeout = draw(st.sampled_from([0, 0, 3]))
        return hold(tid, debit, credit, amount, CNY, timeout_s=timeout, linked=link)
    pid = draw(st.sampled_from(IDS))
    if kind == "post":
        return post(tid, pid, draw(st.none() | st.integers(0, 700)), linked=link)
    return void(tid, pid, linked=link)


def _prefixed(t: Transfer, p: str) -> Transfer:
    return replace(
        t,
        id=p + t.id,
        debit_account_id=p + t.debit_account_id if t.debit_account_id else "",
        credit_account_id=p + t.credit_account_id if t.credit_account_id else "",
        pending_id=p + t.pending_id if t.pending_id else "",
    )


_examples = itertools.count()


def test_random_batches_match_the_core(db: Database) -> None:
    sql = SqlLedger(db)

    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(st.lists(transfers_st(), min_size=1, max_size=5), min_size=1, max_size=4))
    def check(batches: Sequence[Sequence[Transfer]]) -> None:
        # Each example gets its own accounts and ids (a prefix); the SQL clock only moves on.
        n = next(_examples)
        p = f"e{n}:"
        core = Ledger()
        start = T0 + 10 * n
        accts = accounts(p)
        assert sql.create_accounts(accts, start) == core.create_accounts(accts, start)
        seed = [pay(p + "seed", p + "bank", p + "alice", 1000)]
        assert sql.create_transfers(seed, start) == core.create_transfers(seed, start)
        for k, batch in enumerate(batches):
            now = start + 2 * k
            items = [_prefixed(t, p) for t in batch]
            assert sql.create_transfers(items, now) == core.create_transfers(items, now)
        for a in core.accounts():
            assert sql.lookup_account(a.id) == a
        for t in core.transfers():
            assert sql.lookup_transfer(t.id) == t
            assert sql.pending_status(t.id) == core.pending_status(t.id)
        sql.check_invariants()

    check()


# -- concurrency ----------------------------------------------------------------------------------

THREADS = 8
BUYERS = 4
HOLDS = 6  # per buyer


def _run_threads(work: list[list[list[Transfer]]], sql: SqlLedger, now: int) -> list[CreateResult]:
    """Each thread submits its batches in order (twice: a client retrying); all results."""
    results: list[CreateResult] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(work))

    def run(batches: list[list[Transfer]]) -> None:
        try:
            barrier.wait()
            for batch in batches:
                for _ in range(2):
                    got = sql.create_transfers(batch, now)
                    with lock:
                        results.extend(got)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(b,)) for b in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_concurrent_retries_and_settlements(db: Database) -> None:
    sql = SqlLedger(db)
    buyers = [f"b{k}" for k in range(BUYERS)]
    setup = [billing.new_buyer_account(b) for b in buyers]
    setup += [billing.new_provider_account("p"), *billing.new_exchange_accounts()]
    assert set(sql.create_accounts(setup, T0)) == {R.OK}
    clearing = billing.exchange_clearing_account()

    # Phase 1: every thread deposits and holds for every buyer, with the same ids.
    phase1: list[list[list[Transfer]]] = []
    for k in range(THREADS):
        batches = [[billing.deposit(f"dep:{b}", b, 10_000)] for b in buyers]
        holds = [
            hold(f"hold:{b}:{j}", billing.buyer_account(b), clearing, 1_000, CNY)
            for b in buyers
            for j in range(HOLDS)
        ]
        holds = holds[k % 3 :] + holds[: k % 3]  # different orders per thread
        batches += [[h] for h in holds]
        # two threads reuse one id with other accounts: exactly one row survives
        batches.append([pay("clash", "external:bank:CNY", billing.buyer_account(buyers[k % 2]), 1)])
        phase1.append(batches)
    r1 = Counter(_run_threads(phase1, sql, T0 + 1))
    assert set(r1) <= {R.OK, R.EXISTS, R.EXISTS_WITH_DIFFERENT_FIELDS}
    assert r1[R.OK] == BUYERS + BUYERS * HOLDS + 1

    # Phase 2: settle every hold at once from all threads: each posts 400 with a linked payout
    # under a shared id; half the threads also try a competing post under their own id.
    phase2: list[list[list[Transfer]]] = []
    for k in range(THREADS):
        batches = []
        for b in buyers:
            for j in range(HOLDS):
                h = f"hold:{b}:{j}"
                chain = linked(
                    [
                        post(f"post:{h}", h, 400),
                        transfer(
                            f"payout:{h}",
                            clearing,
                            billing.provider_account("p"),
                            400,
                            CNY,
                            TransferCode.PROVIDER_PAYOUT,
                        ),
                    ]
                )
                batches.append(chain)
                if k % 2:
                    batches.append([post(f"rival:{h}:{k}", h, 400)])
        batches = batches[k:] + batches[:k]
        phase2.append(batches)
    r2 = Counter(_run_threads(phase2, sql, T0 + 2))
    assert set(r2) <= {
        R.OK,
        R.EXISTS,
        R.PENDING_TRANSFER_ALREADY_POSTED,
        R.LINKED_EVENT_FAILED,
        R.EXCEEDS_CREDITS,  # a rival post won, so the payout's chain fails on the clearing account
    }

    with db.session_scope(write=False) as s:
        ids = s.scalars(select(LedgerTransferRow.id)).all()
        posts = s.scalars(
            select(func.count()).where(LedgerTransferRow.pending_id.is_not(None))
        ).one()
    assert len(ids) == len(set(ids))
    assert posts == BUYERS * HOLDS  # every hold posted exactly once
    balances = sql.balances(CNY)
    winner = _clash_winner(sql)
    for b in buyers:
        clash = 1 if winner == b else 0
        assert balances[billing.buyer_account(b)] == 10_000 - 400 * HOLDS + clash
        account = sql.lookup_account(billing.buyer_account(b))
        assert account is not None and account.debits_pending == 0
    paid = sum(1 for t in sql.transfers() if t.id.startswith("payout:"))
    assert balances[billing.provider_account("p")] == 400 * paid
    assert balances[clearing] == 400 * (BUYERS * HOLDS - paid)
    sql.check_invariants()


def _clash_winner(sql: SqlLedger) -> str:
    t = sql.lookup_transfer("clash")
    assert t is not None
    return t.credit_account_id.split(":")[1]


def test_rows_cached_in_the_callers_session_are_reread(
    db: Database, engine_url: tuple[str, object]
) -> None:
    """create_transfers_in decides on the rows as locked, not on what the session cached."""
    if engine_url[0] == "sqlite":
        pytest.skip("SQLite has one writer at a time: the interleaving cannot happen")
    sql = SqlLedger(db)
    sql.create_accounts(accounts(), T0)
    sql.create_transfers([pay("d", "bank", "alice", 100)], T0)
    sql.create_transfers([hold("h", "alice", "clearing", 40, CNY)], T0)
    with db.session_scope() as s:
        # held in variables: the session's identity map only keeps referenced rows
        cached = (s.get(LedgerAccountRow, "alice"), s.get(LedgerTransferRow, "h"))
        assert all(cached)  # alice with 40 pending, h pending
        # meanwhile another request posts the hold and deposits more
        others = sql.create_transfers([post("p", "h", 10), pay("d2", "bank", "alice", 5)], T0 + 1)
        assert others == [R.OK, R.OK]
        mine = sql.create_transfers_in(s, [void("v", "h"), pay("x", "alice", "prov", 95)], T0 + 1)
        assert mine == [R.PENDING_TRANSFER_ALREADY_POSTED, R.OK]
    assert sql.balances(CNY)["alice"] == 100 - 10 + 5 - 95
    assert cached[1] is not None and cached[1].pending_status == "posted"
    sql.check_invariants()
