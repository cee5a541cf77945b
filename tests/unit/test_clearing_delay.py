"""The time preference (``Market.delay_fen``): among equally good slots the earliest wins,
welfare leaves the preference out, and every clearing rule still holds."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suangu.core.clearing import clear
from suangu.core.clearing.checks import check_clearing
from suangu.core.errors import ValidationError
from suangu.core.settlement import check_settlement, settle
from suangu.core.types import ClearingStatus, Market, Offer, Order, Pool, Site, TimeGrid
from tests.unit.markets import markets

SITES = (Site("hor", "Horinger", "Inner Mongolia", "west"),)
POOLS = (Pool("hor-h100", "hor", "H100"),)


def _market(orders: list[Order], delay_fen: int, reserve: int | list[int] = 900) -> Market:
    offer = Offer.over("f", "p1", "hor-h100", 0, 6, 2, reserve)
    return Market(TimeGrid(), 0, 6, SITES, POOLS, (offer,), tuple(orders), delay_fen=delay_fen)


def _ok(m: Market) -> None:
    r = clear(m)
    assert check_clearing(m, r) == []
    assert check_settlement(m, r, settle(r)) == []


def test_equal_slots_go_to_the_earliest_and_welfare_is_unchanged() -> None:
    order = Order("a", "b1", "batch", 2, 1, 6, 1500, gpu_hours=4)
    plain = clear(_market([order], 0))
    early = clear(_market([order], 3))
    assert sorted({a.slot for a in early.allocations}) == [1, 2]
    assert sum(a.gpus for a in early.allocations) == 4
    assert early.welfare_fen == plain.welfare_fen == 4 * (1500 - 900)
    _ok(_market([order], 3))


def test_a_cheaper_later_slot_still_wins_when_the_saving_beats_the_preference() -> None:
    order = Order("a", "b1", "batch", 1, 0, 6, 1500, gpu_hours=1)
    reserves = [900, 900, 900, 880, 900, 900]
    r = clear(_market([order], 5, reserves))  # 20 fen cheaper 3 slots later > 3 x 5 fen
    assert [a.slot for a in r.allocations] == [3]
    r = clear(_market([order], 10, reserves))  # 3 x 10 fen > 20 fen: now wins
    assert [a.slot for a in r.allocations] == [0]
    assert r.welfare_fen == 1500 - 900


def test_gangs_start_early_too() -> None:
    gang = Order("g", "b1", "gang", 2, 0, 6, 1500, duration_slots=2)
    r = clear(_market([gang], 1))
    assert sorted({a.slot for a in r.allocations}) == [0, 1]
    assert r.welfare_fen == 2 * 2 * (1500 - 900)
    _ok(_market([gang], 1))


def test_delay_is_measured_from_the_order_release() -> None:
    late = Order("a", "b1", "batch", 1, 4, 6, 1500, gpu_hours=1)
    r = clear(_market([late], 50))
    assert [a.slot for a in r.allocations] == [4]


def test_bad_delay_names_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        _market([], -1)
    assert err.value.field == "delay_fen"


@settings(max_examples=max(100, settings.default.max_examples))
@given(markets(gangs=True, max_orders=5, max_slots=3), st.integers(1, 200))
def test_every_rule_holds_with_a_time_preference(market: Market, delay: int) -> None:
    m = replace(market, delay_fen=delay)
    r = clear(m)
    assert r.status is not ClearingStatus.FAILED, r.message
    assert check_clearing(m, r) == []
    s = settle(r)
    assert check_settlement(m, r, s) == [] and s.balanced
    # The preference only reorders equally good work: welfare can fall, never rise (up to
    # the gang MIP's proven gap; a paradoxically rejected gang changes the comparison).
    base = clear(market)
    if not base.rejected_gangs and not r.rejected_gangs:
        assert 0 <= r.welfare_fen <= base.welfare_fen * (1 + base.gap + r.gap) + 1
