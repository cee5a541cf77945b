"""Tests of the billing rules (suangu.core.billing) against the in-memory ledger."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suangu.core import billing as b
from suangu.core.errors import UnknownReferenceError, ValidationError
from suangu.core.ledger import (
    AccountFlags,
    Asset,
    CreateResult,
    Ledger,
    PendingStatus,
    TransferCode,
    TransferFlags,
)
from suangu.core.types import Allocation, ClearingResult, ClearingStatus, OfferFill

R = CreateResult
T0 = 1_700_000_000
CLEARING = "clr-1"


def result_of(allocations: Iterable[Allocation], slot_hours: int = 1) -> ClearingResult:
    return ClearingResult(
        status=ClearingStatus.OPTIMAL,
        method="test",
        allocations=tuple(allocations),
        fills=(),
        prices=(),
        welfare_fen=0,
        slot_hours=slot_hours,
    )


def open_ledger(buyers: dict[str, int], providers: Iterable[str]) -> Ledger:
    led = Ledger()
    accounts = [
        *b.new_exchange_accounts(),
        *(b.new_buyer_account(m) for m in buyers),
        *(b.new_provider_account(p) for p in providers),
    ]
    assert led.create_accounts(accounts, now=T0) == [R.OK] * len(accounts)
    deposits = [b.deposit(f"dep-{m}", m, amount) for m, amount in buyers.items() if amount]
    assert led.create_transfers(deposits, T0) == [R.OK] * len(deposits)
    return led


def balance(led: Ledger, account_id: str) -> int:
    a = led.lookup_account(account_id)
    assert a is not None
    return a.balance


def available(led: Ledger, account_id: str) -> int:
    a = led.lookup_account(account_id)
    assert a is not None
    return a.available


def pending(led: Ledger, account_id: str) -> tuple[int, int]:
    a = led.lookup_account(account_id)
    assert a is not None
    return a.debits_pending, a.credits_pending


A1 = Allocation("o1", "b1", "pool-a", 0, 2, 1000)
A2 = Allocation("o1", "b1", "pool-b", 1, 1, 1500)
A3 = Allocation("o2", "b2", "pool-b", 0, 4, 800)
PROVIDERS = {"pool-a": "p1", "pool-b": "p2"}


def test_account_ids_and_specs() -> None:
    assert b.buyer_account("b1") == "buyer:b1:CNY"
    assert b.provider_account("p1", Asset.KWH_GREEN) == "provider:p1:kWh-green"
    assert b.exchange_fee_account() == "exchange:fees:CNY"
    assert b.exchange_clearing_account(Asset.GCO2) == "exchange:clearing:gCO2"
    assert b.external_account() == "external:bank:CNY"
    assert b.new_buyer_account("b1").flags == AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    assert b.new_buyer_account("b1", Asset.GCO2).flags == AccountFlags.NONE
    assert b.hold_id(CLEARING, "o1") == "hold:clr-1:o1"


def test_holds_for_clearing() -> None:
    holds = b.holds_for_clearing(result_of([A3, A1, A2]), CLEARING, timeout_s=3600)
    assert [h.id for h in holds] == ["hold:clr-1:o1", "hold:clr-1:o2"]
    assert [h.amount for h in holds] == [2 * 1000 + 1500, 4 * 800]
    assert all(h.flags == TransferFlags.PENDING and h.timeout_s == 3600 for h in holds)
    assert [h.debit_account_id for h in holds] == ["buyer:b1:CNY", "buyer:b2:CNY"]
    assert {h.credit_account_id for h in holds} == {"exchange:clearing:CNY"}
    assert [h.user_data for h in holds] == ["o1", "o2"]
    two_hour = b.holds_for_clearing(result_of([A1], slot_hours=2), CLEARING, 0)
    assert [h.amount for h in two_hour] == [2 * 1000 * 2]
    free = Allocation("o3", "b1", "pool-a", 0, 3, 0)
    assert b.holds_for_clearing(result_of([free]), CLEARING, 0) == []
    assert b.settle_lease("hold:clr-1:o3", [free], {free: 3600}, PROVIDERS, 300) == []


def test_clearing_hold_settle_end_to_end() -> None:
    led = open_ledger({"b1": 5000, "b2": 3200}, ["p1", "p2"])
    result = result_of([A1, A2, A3])
    holds = b.holds_for_clearing(result, CLEARING, timeout_s=86_400)
    assert led.create_transfers(holds, T0 + 10) == [R.OK, R.OK]
    assert available(led, "buyer:b1:CNY") == 1500
    assert available(led, "buyer:b2:CNY") == 0
    assert pending(led, "exchange:clearing:CNY") == (0, 6700)

    metered_o1 = {A1: 5400, A2: 1800}  # 1500 + 750 fen
    s1 = b.settle_order(result, CLEARING, "o1", metered_o1, PROVIDERS, fee_bp=300)
    assert [t.id for t in s1] == [
        "post:hold:clr-1:o1",
        "payout:hold:clr-1:o1:p1",
        "payout:hold:clr-1:o1:p2",
        "fee:hold:clr-1:o1",
    ]
    assert [t.amount for t in s1] == [2250, 1455, 728, 45 + 22]
    assert [t.is_linked for t in s1] == [True, True, True, False]
    assert [t.code for t in s1] == [
        TransferCode.LEASE_PAYMENT,
        TransferCode.PROVIDER_PAYOUT,
        TransferCode.PROVIDER_PAYOUT,
        TransferCode.EXCHANGE_FEE,
    ]
    s2 = b.settle_order(result, CLEARING, "o2", {A3: 99_999}, PROVIDERS, fee_bp=300)  # capped
    assert [t.amount for t in s2] == [3200, 3104, 96]
    assert led.create_transfers([*s1, *s2], T0 + 7200) == [R.OK] * 7
    led.check_invariants()

    assert balance(led, "buyer:b1:CNY") == 5000 - 2250
    assert available(led, "buyer:b1:CNY") == 2750
    assert balance(led, "buyer:b2:CNY") == 0
    assert balance(led, "provider:p1:CNY") == 1455
    assert balance(led, "provider:p2:CNY") == 728 + 3104
    assert balance(led, "exchange:fees:CNY") == 67 + 96
    assert balance(led, "exchange:clearing:CNY") == 0
    assert pending(led, "exchange:clearing:CNY") == (0, 0)
    assert balance(led, "external:bank:CNY") == -8200
    assert sum(led.balances(Asset.CNY).values()) == 0
    assert led.pending_status("hold:clr-1:o1") is PendingStatus.POSTED

    # Rebuilding and resubmitting everything is idempotent.
    before = led.balances(Asset.CNY)
    again = [
        *b.holds_for_clearing(result, CLEARING, timeout_s=86_400),
        *b.settle_order(result, CLEARING, "o1", metered_o1, PROVIDERS, fee_bp=300),
        *b.settle_order(result, CLEARING, "o2", {A3: 99_999}, PROVIDERS, fee_bp=300),
    ]
    assert led.create_transfers(again, T0 + 9000) == [R.EXISTS] * 9
    assert led.balances(Asset.CNY) == before
    # A settlement rebuilt from different meter readings is refused as a whole.
    other = b.settle_order(result, CLEARING, "o1", {A1: 3600}, PROVIDERS, fee_bp=300)
    assert led.create_transfers(other, T0 + 9000)[0] is R.EXISTS_WITH_DIFFERENT_FIELDS
    assert led.balances(Asset.CNY) == before
    led.check_invariants()


def test_zero_use_voids_the_hold() -> None:
    led = open_ledger({"b1": 5000}, ["p1", "p2"])
    result = result_of([A1, A2])
    assert led.create_transfers(b.holds_for_clearing(result, CLEARING, 0), T0) == [R.OK]
    settlement = b.settle_order(result, CLEARING, "o1", {A1: 0}, PROVIDERS, fee_bp=300)
    assert [(t.id, t.flags) for t in settlement] == [
        ("void:hold:clr-1:o1", TransferFlags.VOID_PENDING_TRANSFER)
    ]
    assert led.create_transfers(settlement, T0 + 1) == [R.OK]
    assert available(led, "buyer:b1:CNY") == 5000
    assert balance(led, "exchange:clearing:CNY") == 0
    assert pending(led, "exchange:clearing:CNY") == (0, 0)
    assert led.pending_status("hold:clr-1:o1") is PendingStatus.VOIDED
    assert led.create_transfers(settlement, T0 + 2) == [R.EXISTS]
    led.check_invariants()


def test_hold_beyond_deposit_fails() -> None:
    led = open_ledger({"b1": 3499, "b2": 3200}, ["p1", "p2"])
    holds = b.holds_for_clearing(result_of([A1, A2, A3]), CLEARING, 0)
    assert led.create_transfers(holds, T0) == [R.EXCEEDS_CREDITS, R.OK]
    led.check_invariants()


def test_settlement_after_expiry_fails_whole() -> None:
    led = open_ledger({"b1": 5000}, ["p1", "p2"])
    result = result_of([A1, A2])
    assert led.create_transfers(b.holds_for_clearing(result, CLEARING, 3600), T0) == [R.OK]
    settlement = b.settle_order(result, CLEARING, "o1", {A1: 7200}, PROVIDERS, fee_bp=300)
    before = led.balances(Asset.CNY)
    assert led.create_transfers(settlement, T0 + 3600) == [
        R.PENDING_TRANSFER_EXPIRED,
        R.LINKED_EVENT_FAILED,
        R.LINKED_EVENT_FAILED,
    ]
    assert led.balances(Asset.CNY) == before
    assert available(led, "buyer:b1:CNY") == 5000
    led.check_invariants()


def test_fee_split() -> None:
    assert b.fee_split(2250, 300) == (2183, 67)
    assert b.fee_split(750, 300) == (728, 22)
    assert b.fee_split(999, 0) == (999, 0)
    assert b.fee_split(999, 10_000) == (0, 999)
    assert b.fee_split(0, 300) == (0, 0)
    with pytest.raises(ValidationError):
        b.fee_split(10, 10_001)
    with pytest.raises(ValidationError):
        b.fee_split(-1, 300)


def test_fee_extremes() -> None:
    no_fee = b.settle_lease("hold:c:o1", [A1], {A1: 3600}, PROVIDERS, 0)
    assert [t.id for t in no_fee] == ["post:hold:c:o1", "payout:hold:c:o1:p1"]
    all_fee = b.settle_lease("hold:c:o1", [A1], {A1: 3600}, PROVIDERS, 10_000)
    assert [t.id for t in all_fee] == ["post:hold:c:o1", "fee:hold:c:o1"]
    assert [t.amount for t in all_fee] == [1000, 1000]


def test_metered_cost_rounds_down_and_caps() -> None:
    assert b.metered_cost(A1, 1, 1) == 0  # 1000 fen/h for one second: 0.27 fen
    assert b.metered_cost(A1, 3599, 1) == 999
    assert b.metered_cost(A1, 7200, 1) == 2000
    assert b.metered_cost(A1, 10**9, 1) == 2000
    assert b.metered_cost(A1, 10**9, 3) == 6000


def test_validation_errors() -> None:
    with pytest.raises(ValidationError, match="clearing_id"):
        b.holds_for_clearing(result_of([A1]), "bad:id", 0)
    with pytest.raises(ValidationError, match="timeout_s"):
        b.holds_for_clearing(result_of([A1]), CLEARING, -1)
    with pytest.raises(ValidationError, match="several orders"):
        b.settle_lease("h", [A1, A3], {}, PROVIDERS, 300)
    with pytest.raises(ValidationError, match="allocations"):
        b.settle_lease("h", [], {}, PROVIDERS, 300)
    with pytest.raises(ValidationError, match="several buyers"):
        b.settle_lease("h", [A1, Allocation("o1", "b9", "pool-a", 1, 1, 1)], {}, PROVIDERS, 300)
    with pytest.raises(UnknownReferenceError, match="providers"):
        b.settle_lease("h", [A1], {A1: 3600}, {}, 300)
    with pytest.raises(UnknownReferenceError, match="metered"):
        b.settle_lease("h", [A1], {A3: 3600}, PROVIDERS, 300)
    with pytest.raises(ValidationError, match="gpu_seconds"):
        b.settle_lease("h", [A1], {A1: -1}, PROVIDERS, 300)
    with pytest.raises(ValidationError, match="fee_bp"):
        b.settle_lease("h", [A1], {A1: 1}, PROVIDERS, -1)
    with pytest.raises(ValidationError, match="slot_hours"):
        b.settle_lease("h", [A1], {A1: 1}, PROVIDERS, 1, slot_hours=0)
    with pytest.raises(UnknownReferenceError, match="order_id"):
        b.settle_order(result_of([A1]), CLEARING, "o9", {}, PROVIDERS, 300)


def test_pool_providers() -> None:
    def fill(offer: str, provider: str, pool: str, gpus: int = 1) -> OfferFill:
        return OfferFill(offer, provider, pool, 0, gpus, 100, 50)

    base = result_of([A1])
    ok = replace(base, fills=(fill("f1", "p1", "pool-a"), fill("f2", "p2", "pool-b")))
    assert b.pool_providers(ok) == PROVIDERS
    unsold = (fill("f1", "p1", "pool-a"), fill("f3", "p3", "pool-a", gpus=0))
    assert b.pool_providers(replace(base, fills=unsold)) == {"pool-a": "p1"}
    shared = (fill("f1", "p1", "pool-a"), fill("f3", "p3", "pool-a"))
    with pytest.raises(ValidationError, match="sold by"):
        b.pool_providers(replace(base, fills=shared))


def test_withdrawal() -> None:
    led = open_ledger({"b1": 100}, [])
    t = b.withdrawal("w1", b.buyer_account("b1"), 101)
    assert led.create_transfers([t], T0) == [R.EXCEEDS_CREDITS]
    t = b.withdrawal("w1", b.buyer_account("b1"), 100)
    assert led.create_transfers([t], T0) == [R.OK]
    assert balance(led, "buyer:b1:CNY") == 0
    assert balance(led, "external:bank:CNY") == 0


# ---------------------------------------------------------------------------------------------
# Property: random clearings, holds, metered settlements


POOLS = {"pool-a": "p1", "pool-b": "p2", "pool-c": "p1", "pool-d": "p3"}


@st.composite
def markets(draw: st.DrawFn) -> tuple[ClearingResult, dict[str, dict[Allocation, int]], int]:
    slot_hours = draw(st.integers(1, 3))
    allocations = []
    metered: dict[str, dict[Allocation, int]] = {}
    for k in range(draw(st.integers(1, 5))):
        order_id = f"o{k}"
        buyer = draw(st.sampled_from(["b1", "b2", "b3"]))
        metered[order_id] = {}
        for slot in range(draw(st.integers(1, 4))):
            a = Allocation(
                order_id,
                buyer,
                draw(st.sampled_from(sorted(POOLS))),
                slot,
                draw(st.integers(1, 8)),
                draw(st.integers(0, 50_000)),
            )
            allocations.append(a)
            cap = a.gpus * slot_hours * 3600
            metered[order_id][a] = draw(st.integers(0, cap + cap // 5) | st.just(cap))
    fee_bp = draw(st.integers(0, 10_000) | st.sampled_from([0, 300, 10_000]))
    return result_of(allocations, slot_hours), metered, fee_bp


@settings(max_examples=150, deadline=None)
@given(market=markets(), extra=st.integers(0, 10_000))
def test_money_is_conserved(
    market: tuple[ClearingResult, dict[str, dict[Allocation, int]], int], extra: int
) -> None:
    result, metered, fee_bp = market
    cost: dict[str, int] = {}
    for a in result.allocations:
        cost[a.buyer_id] = cost.get(a.buyer_id, 0) + a.price_fen * a.gpus * result.slot_hours
    deposits = {buyer: cost.get(buyer, 0) + extra for buyer in ("b1", "b2", "b3")}
    led = open_ledger(deposits, sorted(set(POOLS.values())))

    holds = b.holds_for_clearing(result, CLEARING, timeout_s=7 * 86_400)
    assert led.create_transfers(holds, T0) == [R.OK] * len(holds)
    led.check_invariants()
    for buyer in deposits:
        acct = led.lookup_account(b.buyer_account(buyer))
        assert acct is not None and acct.available == extra

    paid: dict[str, int] = {}
    earned: dict[str, int] = {}
    fees = 0
    settlements = []
    for order_id in sorted(metered):
        transfers = b.settle_order(result, CLEARING, order_id, metered[order_id], POOLS, fee_bp)
        settlements.append(transfers)
        assert led.create_transfers(transfers, T0 + 3600) == [R.OK] * len(transfers)
        led.check_invariants()
        # Independent arithmetic of what this settlement must move.
        per_provider: dict[str, int] = {}
        for a, seconds in metered[order_id].items():
            used = min(seconds, a.gpus * result.slot_hours * 3600)
            per_provider[POOLS[a.pool_id]] = (
                per_provider.get(POOLS[a.pool_id], 0) + a.price_fen * used // 3600
            )
            buyer = a.buyer_id
        for provider, amount in per_provider.items():
            fee = amount * fee_bp // 10_000
            earned[provider] = earned.get(provider, 0) + amount - fee
            fees += fee
        paid[buyer] = paid.get(buyer, 0) + sum(per_provider.values())
        assert balance(led, b.exchange_clearing_account()) == 0

    for buyer, deposit in deposits.items():
        assert balance(led, b.buyer_account(buyer)) == deposit - paid.get(buyer, 0)
        acct = led.lookup_account(b.buyer_account(buyer))
        assert acct is not None and acct.debits_pending == 0 and acct.available >= 0
    for provider in set(POOLS.values()):
        assert balance(led, b.provider_account(provider)) == earned.get(provider, 0)
    assert balance(led, b.exchange_fee_account()) == fees
    assert sum(paid.values()) == sum(earned.values()) + fees
    assert balance(led, b.exchange_clearing_account()) == 0
    assert pending(led, b.exchange_clearing_account()) == (0, 0)
    assert sum(led.balances(Asset.CNY).values()) == 0

    # Retried settlements (and holds) are idempotent.
    before = led.balances(Asset.CNY)
    for transfers in [holds, *settlements]:
        assert led.create_transfers(transfers, T0 + 7200) == [R.EXISTS] * len(transfers)
    assert led.balances(Asset.CNY) == before
    led.check_invariants()
