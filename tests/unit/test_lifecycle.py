"""The lifecycle rules the service and the simulator share (:mod:`suangu.core.lifecycle`)."""

from __future__ import annotations

from typing import Any

import pytest

from suangu.core import lifecycle
from suangu.core.lifecycle import LEASE_TRANSITIONS, LeaseState
from suangu.core.types import Offer, Order, OrderKind

H100, A800 = "H100-SXM-80GB", "A800-SXM-80GB"
FAST = 989.4 / 312.0


def test_reopened_counts_work_in_reference_hours() -> None:
    plain = Order("o", "b", OrderKind.BATCH, 2, 0, 10, 100, gpu_hours=8)
    one = (1.0, 1.0)
    assert lifecycle.steps(plain, [H100], 1) == one
    rest = lifecycle.reopened(plain, 6.0, 6, 2, 3, one, 1)
    assert rest is not None and (rest.gpu_hours, rest.release_slot) == (2, 3)
    assert lifecycle.reopened(plain, 8.0, 8, 2, 3, one, 1) is None  # all of it
    fast = Order("o", "b", OrderKind.BATCH, 2, 0, 10, 100, gpu_hours=8, reference_class="A800")
    both = lifecycle.steps(fast, [H100, A800], 1)
    assert both == (pytest.approx(1.0), pytest.approx(FAST))
    only_h100 = lifecycle.steps(fast, [H100], 1)
    assert only_h100 == (pytest.approx(FAST), pytest.approx(FAST))
    # 3.5 left: more than an H100 slot does, so not filled; bids for 3 whole hours.
    rest = lifecycle.reopened(fast, 8 - 3.5, 2, 2, 3, only_h100, 1)
    assert rest is not None and rest.gpu_hours == 3
    # 2.5 left: less than an H100 slot does, the rounding of the grid: filled.
    assert lifecycle.reopened(fast, 8 - 2.5, 2, 2, 3, both, 1) is None


def test_one_fill_rule() -> None:
    one = (1.0, 1.0)
    plain = Order("o", "b", OrderKind.BATCH, 2, 0, 10, 100, gpu_hours=8)
    assert not lifecycle.is_filled(plain, 0.0, 0, one, 1)
    assert not lifecycle.is_filled(plain, 7.0, 7, one, 1)
    assert lifecycle.is_filled(plain, 8.0, 8, one, 1)
    fast = Order("o", "b", OrderKind.BATCH, 2, 0, 10, 100, gpu_hours=8, reference_class="A800")
    both = (1.0, FAST)
    # 2 H100 slots do 6.34 reference hours: 1.66 left, less than an H100 slot: filled.
    assert lifecycle.is_filled(fast, 2 * FAST, 2, both, 1)
    assert not lifecycle.is_filled(fast, FAST, 1, both, 1)  # 4.83 left
    # A filled order never reopens.
    for done in (0.0, 2.0, 4.0, 5.0, 6.9, 7.5, 8.0):
        if lifecycle.is_filled(fast, done, 1, both, 1):
            assert lifecycle.reopened(fast, done, 1, 0, 1, both, 1) is None
    for done in (0.0, 2.0, 7.0, 8.0):
        filled = lifecycle.is_filled(plain, done, int(done), one, 1)
        assert filled == (lifecycle.reopened(plain, done, int(done), 0, 1, one, 1) is None)
    gang = Order("g", "b", OrderKind.GANG, 8, 0, 10, 100, duration_slots=3)
    assert lifecycle.is_filled(gang, 0.0, 24, one, 1)
    service = Order("s", "b", OrderKind.SERVICE, 2, 0, 4, 100)
    assert not lifecycle.is_filled(service, 0.0, 7, one, 1)
    assert lifecycle.is_filled(service, 0.0, 8, one, 1)


def test_gangs_bid_whole_until_served() -> None:
    gang = Order("g", "b", OrderKind.GANG, 8, 0, 10, 100, duration_slots=3)
    again = lifecycle.reopened(gang, 0.0, 0, -1, 5, (1.0, 1.0), 1)
    assert again is not None and again.release_slot == 5 and again.gpus == 8
    assert lifecycle.reopened(gang, 0.0, 0, -1, 8, (1.0, 1.0), 1) is None  # its run no longer fits
    assert lifecycle.reopened(gang, 24.0, 24, 4, 5, (1.0, 1.0), 1) is None  # served: never again


def test_remaining_capacity() -> None:
    offer = Offer("f", "p", "pool", 2, (4, 4, 4, 4), (10, 11, 12, 13))
    left = lifecycle.remaining(offer, {3: 4, 4: 1}, 3, 10)
    assert left == Offer("f", "p", "pool", 3, (0, 3, 4), (11, 12, 13))
    assert lifecycle.remaining(offer, {2: 4, 3: 4}, 0, 4) is None
    assert lifecycle.remaining(offer, {}, 6, 9) is None


def test_lease_transitions_end_in_settled() -> None:
    assert LEASE_TRANSITIONS[LeaseState.SETTLED] == frozenset()
    for state in LeaseState:
        seen, todo = set(), [state]
        while todo:
            s = todo.pop()
            seen.add(s)
            todo += [t for t in LEASE_TRANSITIONS[s] if t not in seen]
        assert LeaseState.SETTLED in seen


def test_failed_leases_count_what_they_delivered_and_requeue_the_order() -> None:
    from suangu.core.lifecycle import OrderStatus

    assert lifecycle.delivered_slots(2, 3600, 0) == 0
    assert lifecycle.delivered_slots(2, 3600, 3599) == 0
    assert lifecycle.delivered_slots(2, 3600, 3600) == 1
    assert lifecycle.delivered_slots(2, 3600, 99_999) == 2  # never more than its GPUs
    batch = Order(
        "b",
        "u",
        OrderKind.BATCH,
        gpus=2,
        release_slot=10,
        deadline_slot=14,
        limit_fen=100,
        gpu_hours=4,
    )
    gang = Order(
        "g",
        "u",
        OrderKind.GANG,
        gpus=2,
        release_slot=10,
        deadline_slot=14,
        limit_fen=100,
        duration_slots=2,
    )
    assert lifecycle.requeued_status(batch, OrderStatus.CLEARED, 11) is OrderStatus.PARTIALLY
    assert lifecycle.requeued_status(batch, OrderStatus.PARTIALLY, 11) is None  # bids already
    assert lifecycle.requeued_status(batch, OrderStatus.CLEARED, 14) is None  # past deadline
    assert lifecycle.requeued_status(batch, OrderStatus.CANCELLED, 11) is None
    assert lifecycle.requeued_status(gang, OrderStatus.CLEARED, 12) is OrderStatus.OPEN
    assert lifecycle.requeued_status(gang, OrderStatus.CLEARED, 13) is None  # run won't fit
    assert lifecycle.requeued_status(gang, OrderStatus.EXPIRED, 11) is None


def test_firm_order_protection_levels() -> None:
    assert lifecycle.captive(True, ("a",)) == ("a",)
    assert lifecycle.captive(True, ("a", "b")) == ("a", "b")
    assert lifecycle.captive(True, ("a", "b", "c")) == ()  # three pools: not captive
    assert lifecycle.captive(False, ("a",)) == ()  # flexible
    assert lifecycle.captive(True, ()) == ()  # no pool at all: nothing to protect
    firm = Order("f", "b", OrderKind.BATCH, 4, 2, 8, 100, gpu_hours=8, firm=True)
    assert lifecycle.from_submission(firm, 5).release_slot == 5
    assert lifecycle.from_submission(firm, 1) is firm
    demand: dict[str, Any] = {}
    lifecycle.add_firm_demand(demand, firm, ("a",), 3, size=10)  # asks 4 GPUs in [3, 8)
    two = Order("t", "b", OrderKind.BATCH, 2, 0, 6, 100, gpu_hours=2, firm=True)
    lifecycle.add_firm_demand(demand, two, ("a", "b"), 0, size=10)  # 1 GPU at a and b, [0, 6)
    assert list(demand["a"]) == [1, 1, 1, 5, 5, 5, 4, 4, 0, 0]
    # At slot 2, looking back 2 slots: peak 1 at a and b; at slot 4: 5 at a.
    assert lifecycle.protection_levels(demand, {}, 2, 4, 2) == {("a", 3): 1, ("b", 3): 1}
    held = lifecycle.protection_levels(demand, {("a", 5): 2, ("a", 6): 9}, 4, 7, 2)
    assert held == {("a", 5): 3, ("b", 5): 1, ("b", 6): 1}  # what captive orders hold counts
    # An offset array (the service keeps only the look-back): the same levels.
    window: dict[str, Any] = {}
    lifecycle.add_firm_demand(window, firm, ("a",), 3, size=3, offset=2)
    lifecycle.add_firm_demand(window, two, ("a", "b"), 0, size=3, offset=2)
    assert (
        lifecycle.protection_levels(window, {("a", 5): 2, ("a", 6): 9}, 4, 7, 2, offset=2) == held
    )


def test_hold_back_takes_the_cheapest_offers_first() -> None:
    cheap = Offer.over("c", "p", "a", 0, 4, 3, [900, 900, 950, 900])
    dear = Offer.over("d", "p", "a", 1, 4, 2, 920)
    other = Offer.over("o", "p", "b", 0, 4, 1, 100)
    out = lifecycle.hold_back([cheap, dear, other], {("a", 1): 4, ("a", 2): 1, ("b", 0): 1})
    by_id = {o.id: o for o in out}
    assert by_id["c"].gpus == (3, 0, 3, 3)  # slot 1: all 3 of the cheapest, then 1 of d
    assert by_id["d"].gpus == (1, 1, 2)  # slot 2: d (920) is cheaper than c (950) there
    assert by_id["o"].gpus == (0, 1, 1, 1)
    assert [o.id for o in out] == ["c", "d", "o"]
    gone = lifecycle.hold_back([other], {("b", k): 1 for k in range(4)})
    assert gone == []


def _two_providers(b_gpus: tuple[int, ...]) -> tuple[object, ...]:
    from suangu.core.types import Pool, Site, TimeGrid

    sites = (Site("sa", "A", "P", "r"), Site("sb", "B", "P", "r"))
    pools = (Pool("pa", "sa", "H100"), Pool("pb", "sb", "H100"))
    offers = (
        Offer("oa", "prov-a", "pa", 10, (4,) * 6, (100,) * 6),
        Offer("ob", "prov-b", "pb", 10, b_gpus, (200,) * len(b_gpus)),
    )
    return TimeGrid(), sites, pools, offers


@pytest.mark.parametrize(
    ("order", "b_gpus", "avoided"),
    [
        # batch: 2 GPUs x 4 GPU-hours; prov-b offers 2 GPUs over 6 slots: enough.
        (Order("o", "b", OrderKind.BATCH, 2, 10, 16, 500, gpu_hours=4), (2,) * 6, True),
        # ... 1 GPU over 3 slots: 3 GPU-slots for 4 asked: prov-a stays eligible.
        (Order("o", "b", OrderKind.BATCH, 2, 10, 16, 500, gpu_hours=4), (1, 1, 1), False),
        # gang of 2 GPUs x 3 slots: prov-b has 2 GPUs in 3 consecutive slots, or not.
        (Order("o", "b", OrderKind.GANG, 2, 10, 16, 500, duration_slots=3), (2, 2, 2), True),
        (Order("o", "b", OrderKind.GANG, 2, 10, 16, 500, duration_slots=3), (2, 0, 2, 2), False),
        # whole-window service: every slot of the window needs 2 GPUs elsewhere.
        (Order("o", "b", OrderKind.SERVICE, 2, 10, 13, 500), (2, 2, 2), True),
        (Order("o", "b", OrderKind.SERVICE, 2, 10, 13, 500), (2, 1, 2), False),
    ],
)
def test_requeued_work_avoids_the_failed_provider_where_others_can_serve_it(
    order: Order, b_gpus: tuple[int, ...], avoided: bool
) -> None:
    from suangu.core.types import Market

    grid, sites, pools, offers = _two_providers(b_gpus)
    market = Market(grid, 10, 6, sites, pools, offers, (order,))  # type: ignore[arg-type]
    steered = lifecycle.avoid_failed_providers(market, {"o": {"prov-a"}})
    assert steered.orders[0].avoid_pools == (frozenset({"pa"}) if avoided else frozenset())
    assert lifecycle.avoid_failed_providers(market, {}) is market
    assert lifecycle.avoid_failed_providers(market, {"other": {"prov-a"}}).orders == (order,)
    if avoided:  # and the clearing keeps to it
        from suangu.core.clearing import clear

        result = clear(steered)
        assert result.allocations and {a.pool_id for a in result.allocations} == {"pb"}
