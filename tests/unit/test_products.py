"""The interruptible tier (:mod:`suangu.core.products`): a worked example and properties."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suangu.core.clearing import clear
from suangu.core.errors import ValidationError
from suangu.core.products import (
    HeldSlot,
    Resale,
    assign_resold,
    check_tiers,
    clear_tiers,
    is_preemptible_offer,
    preempt,
    preemptible_offers,
)
from suangu.core.settlement import settle
from suangu.core.types import Market, Offer, Order, OrderKind, Pool, Site, TimeGrid
from tests.unit.markets import markets


def _market(orders: list[Order], offers: list[Offer] | None = None) -> Market:
    site = Site("s1", "West", "Gansu", "west")
    pool = Pool("p1", "s1", "H100-SXM-80GB")
    offers = offers or [
        Offer.over("cheap", "prov", "p1", 0, 4, 2, 100),
        Offer.over("dear", "prov", "p1", 0, 4, 2, 300),
    ]
    return Market(TimeGrid(), 0, 4, (site,), (pool,), tuple(offers), tuple(orders))


def _batch(id: str, limit: int, gpus: int = 2, hours: int = 2, *, spot: bool = False) -> Order:
    return Order(
        id, "buyer", OrderKind.BATCH, gpus, 0, 1, limit, gpu_hours=hours, interruptible=spot
    )


def test_interruptible_gang_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        Order("g", "b", OrderKind.GANG, 1, 0, 2, 100, duration_slots=1, interruptible=True)
    assert err.value.field == "interruptible"


def test_worked_example_firm_demand_first_then_interruptible() -> None:
    """docs/market.md's example: 4 GPUs in slot 0, two at 1 yuan and two at 3 yuan. A firm
    order for 2 GPUs at 5 yuan and an interruptible one for 2 GPUs at 4 yuan. Jointly both
    would pay 3 yuan; in tiers the firm order pays 1 yuan (the cheap GPUs, the dear ones
    left unsold) and the interruptible one 2.10 yuan: what firm demand left, at its
    interruptible reserve (3 yuan less 30%)."""
    market = _market([_batch("firm", 500), _batch("spot", 400, spot=True)])
    joint = clear(
        replace(market, orders=tuple(replace(o, interruptible=False) for o in market.orders))
    )
    assert {a.order_id: a.price_fen for a in joint.allocations} == {"firm": 300, "spot": 300}
    tiers = clear_tiers(market, clear)
    got = {a.order_id: a.price_fen for a in tiers.result.allocations}
    assert got == {"firm": 100, "spot": 210}
    assert check_tiers(tiers) == []
    assert settle(tiers.result).balanced
    assert tiers.result.welfare_fen == joint.welfare_fen  # the same GPU-slots trade


def test_firm_demand_preempts_with_notice_and_pays_above_the_interruptible_price() -> None:
    # Earlier, an interruptible lease took 2 GPUs at 120 in slots 1 and 2 (leases l1, l2);
    # the pool's offer has nothing else left there. A firm order now wants them.
    held = [
        HeldSlot("l1", "spot", "p1", 1, 2, 120, 150.0),
        HeldSlot("l2", "spot", "p1", 2, 2, 120, 150.0),
    ]
    offers = [Offer.over("o", "prov", "p1", 0, 4, (2, 0, 0, 2), 100)]
    firm = Order("firm", "b2", OrderKind.BATCH, 2, 0, 3, 500, gpu_hours=6)
    market = _market([firm], offers)
    tiers = clear_tiers(market, clear, held, {"p1": "prov"}, notice_slots=2)
    # Slot 0 is free capacity; slot 1 is inside the notice; slot 2's lease is preempted.
    slots = sorted((a.slot, a.gpus, a.price_fen) for a in tiers.result.allocations)
    assert slots == [(0, 2, 100), (2, 2, 121)]
    assert [(p.lease_id, p.gpus) for p in tiers.preemptions] == [("l2", 2)]
    assert all(not is_preemptible_offer(f.offer_id) for f in tiers.result.fills)
    assert check_tiers(tiers) == []
    # Welfare: firm value of 4 GPU-hours less the reserves of slot 0, less the lost value.
    assert tiers.result.welfare_fen == 500 * 4 - 100 * 2 - 150 * 2


def test_preempt_takes_the_lowest_paying_lease_first_and_only_what_is_needed() -> None:
    held = [
        HeldSlot("a", "x", "p", 3, 2, 200),
        HeldSlot("b", "y", "p", 3, 3, 150),
        HeldSlot("c", "z", "p", 3, 1, 150),
    ]
    got = preempt(held, {("p", 3): 2})
    assert [(p.lease_id, p.gpus) for p in got] == [("c", 1), ("b", 1)]
    with pytest.raises(ValidationError):
        preempt(held, {("p", 3): 7})


def test_preemptible_offers_respect_notice_and_price() -> None:
    held = [HeldSlot("a", "x", "p", 3, 2, 200), HeldSlot("b", "y", "p", 3, 1, 250)]
    assert preemptible_offers(held, {"p": "prov"}, 2, 6, notice_slots=2) == ()
    (offer,) = preemptible_offers(held, {"p": "prov"}, 2, 6, notice_slots=1)
    assert offer.gpus == (3,) and offer.reserve_fen == (251,) and offer.start_slot == 3
    held.append(HeldSlot("c", "z", "p", 3, 1, 100, 0.0, 400))  # the provider's firm reserve
    (offer,) = preemptible_offers(held, {"p": "prov"}, 2, 6)
    assert offer.reserve_fen == (401,)


def test_worked_example_resale() -> None:
    """docs/market.md's example: the pool's 4 GPUs of slot 1 are sold (nothing is offered
    there); a buyer who holds 2 of them offers them back at 2 yuan. A new firm order for 2
    GPUs at up to 5 yuan buys them at the seller's reserve, the lowest supporting price."""
    offers = [Offer.over("o", "prov", "p1", 0, 4, (2, 0, 0, 0), 100)]
    new = Order("new", "b2", OrderKind.BATCH, 2, 1, 2, 500, gpu_hours=2)
    market = _market([new], offers)
    resale = Resale("r1", "b1", "lease-1", "p1", 1, 2, 200)
    tiers = clear_tiers(market, clear, resales=[resale])
    assert [(a.order_id, a.slot, a.gpus, a.price_fen) for a in tiers.result.allocations] == [
        ("new", 1, 2, 200)
    ]
    assert [(r.resale_id, r.gpus, r.price_fen) for r in tiers.resold] == [("r1", 2, 200)]
    assert tiers.result.fills == ()  # the seller's GPU-slot was sold once, to the seller
    assert check_tiers(tiers) == []
    assert assign_resold(tiers.resold, tiers.result.allocations) == {("new", "p1", 1): [("r1", 2)]}
    # Within the notice, or beyond the horizon, it is not offered.
    late = clear_tiers(market, clear, resales=[replace(resale, slot=0)])
    assert late.resold == () and late.result.allocations == ()


@st.composite
def tiered(draw: st.DrawFn) -> tuple[Market, list[HeldSlot], list[Resale]]:
    market = draw(markets(max_orders=6, max_slots=4))
    flags = [draw(st.booleans()) for _ in market.orders]
    orders = tuple(replace(o, interruptible=f) for o, f in zip(market.orders, flags, strict=True))
    held = []
    for k in range(draw(st.integers(0, 4))):
        pool = draw(st.sampled_from(market.pools))
        slot = draw(st.integers(market.first_slot, market.first_slot + market.n_slots - 1))
        held.append(
            HeldSlot(
                f"l{k}",
                f"old{k}",
                pool.id,
                slot,
                draw(st.integers(1, 4)),
                draw(st.integers(40, 400)),
                1000.0,
            )
        )
    resales = []
    for k in range(draw(st.integers(0, 3))):
        pool = draw(st.sampled_from(market.pools))
        slot = draw(st.integers(market.first_slot, market.first_slot + market.n_slots - 1))
        resales.append(
            Resale(
                f"r{k}",
                f"seller{k}",
                f"x{k}",
                pool.id,
                slot,
                draw(st.integers(1, 3)),
                draw(st.integers(0, 500)),
            )
        )
    return replace(market, orders=orders), held, resales


@settings(max_examples=300, deadline=None)
@given(tiered(), st.integers(0, 2))
def test_tiers_obey_every_rule(
    case: tuple[Market, list[HeldSlot], list[Resale]], notice: int
) -> None:
    """With interruptible orders, preemptible leases and resales: nobody pays above their
    limit or receives below their reserve, money balances to the fen in each tier, no offer's
    GPU-slot is sold twice, firm demand never takes more of a pool-slot than interruptible
    leases hold there, nor within the notice, and never more of a resale than it offers."""
    market, held, resales = case
    providers = {p.id: "prov0" for p in market.pools}
    tiers = clear_tiers(market, clear, held, providers, notice_slots=notice, resales=resales)
    assert check_tiers(tiers) == []
    assert settle(tiers.firm).balanced
    if tiers.interruptible is not None:
        assert settle(tiers.interruptible).balanced
    spot = {o.id for o in market.orders if o.interruptible}
    assert (
        all(
            a.order_id in spot
            for a in tiers.interruptible.allocations  # type: ignore[union-attr]
        )
        if tiers.interruptible
        else True
    )
    hold: dict[tuple[str, int], int] = defaultdict(int)
    for h in held:
        hold[(h.pool_id, h.slot)] += h.gpus
    took: dict[tuple[str, int], int] = defaultdict(int)
    for p in tiers.preemptions:
        took[(p.pool_id, p.slot)] += p.gpus
        assert p.slot >= market.first_slot + notice
    assert all(g <= hold[c] for c, g in took.items())
    # Interruptible prices: a preempting firm allocation pays above every held price there.
    for a in tiers.firm.allocations:
        if took.get((a.pool_id, a.slot)):
            top = max(h.price_fen for h in held if (h.pool_id, h.slot) == (a.pool_id, a.slot))
            assert a.price_fen > top
    # Resales: sold at most what is offered, never below the seller's reserve, never within
    # the notice, and every resold GPU-slot goes to one firm allocation of its pool-slot.
    by_id = {r.id: r for r in resales}
    for r in tiers.resold:
        assert r.gpus <= by_id[r.resale_id].gpus
        assert r.price_fen >= by_id[r.resale_id].reserve_fen
        assert r.slot >= market.first_slot + notice
    assigned = assign_resold(tiers.resold, tiers.firm.allocations)
    assert sum(g for parts in assigned.values() for _, g in parts) == sum(
        r.gpus for r in tiers.resold
    )
    firm_gpus = {(a.order_id, a.pool_id, a.slot): a.gpus for a in tiers.firm.allocations}
    assert all(sum(g for _, g in parts) <= firm_gpus[k] for k, parts in assigned.items())
