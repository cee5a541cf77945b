"""Property tests: every clearing of a random market obeys every market rule."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from random import Random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from suangu.core.clearing import ClearingOptions, clear
from suangu.core.clearing.checks import check_clearing
from suangu.core.clearing.lp import solve_lp
from suangu.core.clearing.model import build_model
from suangu.core.settlement import check_settlement, settle
from suangu.core.types import ClearingStatus, Market, OrderKind
from tests.unit.markets import eligible_cells, markets, network_markets, reference_welfare


def examples(n: int) -> settings:
    """At least ``n`` examples, more under a profile that asks for more."""
    return settings(max_examples=max(n, settings.default.max_examples))


FAST = examples(150)


def _assert_sound(market: Market) -> None:
    result = clear(market)
    assert result.status is not ClearingStatus.FAILED, result.message
    if not market.green_share:  # green minimums round an LP: feasible, with a proven gap
        assert result.status in (ClearingStatus.OPTIMAL, ClearingStatus.EMPTY)
    assert check_clearing(market, result) == []
    settlement = settle(result)
    assert check_settlement(market, result, settlement) == []
    assert settlement.balanced
    assert result.welfare_fen >= 0


@FAST
@given(markets())
def test_batch_clearing_obeys_every_rule(market: Market) -> None:
    _assert_sound(market)


@FAST
@given(markets(gangs=True, max_orders=5, max_slots=3))
def test_gang_clearing_obeys_every_rule(market: Market) -> None:
    _assert_sound(market)


@FAST
@given(markets(green=True))
def test_green_clearing_obeys_every_rule(market: Market) -> None:
    _assert_sound(market)


@FAST
@given(markets())
def test_batch_welfare_equals_independent_optimum(market: Market) -> None:
    result = clear(market)
    assert abs(result.welfare_fen - reference_welfare(market)) < 1e-6


@examples(80)
@given(markets(gangs=True, max_orders=4, max_slots=3))
def test_gang_welfare_is_optimal_unless_paradoxically_rejected(market: Market) -> None:
    result = clear(market)
    best = reference_welfare(market)
    assert result.welfare_fen <= best + 1e-6
    if not result.rejected_gangs:
        assert abs(result.welfare_fen - best) <= result.gap * best + 1e-6


@examples(80)
@given(markets(green=True))
def test_green_welfare_never_beats_the_lp_bound(market: Market) -> None:
    result = clear(market)
    assert result.welfare_fen <= reference_welfare(market) + 1e-6


@FAST
@given(markets(gangs=True, green=True, max_orders=5, max_slots=3))
def test_clearing_is_deterministic(market: Market) -> None:
    assert clear(market).allocations == clear(market).allocations
    assert clear(market).prices == clear(market).prices


@FAST
@given(markets())
def test_prices_form_a_competitive_equilibrium(market: Market) -> None:
    """At the clearing prices nobody wants to trade differently: offers priced above their
    reserve are sold out, offers below it are unsold, and no buyer with work left sees an
    eligible free cell priced below its limit or a cheaper cell it could move to."""
    result = clear(market)
    price = {(p.pool_id, p.slot): p.price_fen for p in result.prices}
    sold: dict[tuple[str, int], int] = defaultdict(int)
    for f in result.fills:
        sold[(f.offer_id, f.slot)] += f.gpus
    for offer in market.offers:
        for k, (cap, reserve) in enumerate(zip(offer.gpus, offer.reserve_fen, strict=True)):
            t = offer.start_slot + k
            if not (market.first_slot <= t < market.end_slot) or cap == 0:
                continue
            p = price[(offer.pool_id, t)]
            if reserve < p:
                assert sold[(offer.id, t)] == cap, (offer.id, t, p, reserve)
            if reserve > p:
                assert sold[(offer.id, t)] == 0, (offer.id, t, p, reserve)
    hours = market.grid.slot_hours
    for order in market.orders:
        got = [a for a in result.allocations if a.order_id == order.id]
        per_slot: dict[int, int] = defaultdict(int)
        for a in got:
            per_slot[a.slot] += a.gpus
            assert a.price_fen <= order.limit_fen
        work_left = order.max_gpu_slots(hours) - sum(a.gpus for a in got)
        dearest = max((a.price_fen for a in got), default=None)
        for cell in eligible_cells(market, order):
            if cell not in price or per_slot[cell[1]] >= order.gpus:
                continue
            if work_left > 0:
                assert price[cell] >= order.limit_fen, (order.id, cell)
            elif dearest is not None:
                assert price[cell] >= dearest, (order.id, cell)


@examples(60)
@given(markets(gangs=True, max_orders=5, max_slots=3), st.data())
def test_accepted_gangs_are_whole_and_within_limit(market: Market, data: st.DataObject) -> None:
    result = clear(market)
    for order in market.orders:
        if order.kind is not OrderKind.GANG:
            continue
        got = [a for a in result.allocations if a.order_id == order.id]
        if got:
            bill = sum(a.price_fen * a.gpus for a in got) * market.grid.slot_hours
            assert bill <= order.limit_fen * order.gpus * order.duration_slots
            assert sum(a.gpus for a in got) == order.gpus * order.duration_slots


@examples(60)
@given(markets(green=True))
def test_lagrangian_green_path_is_sound_and_bounded(market: Market) -> None:
    """Force the large-market path (Lagrangian pricing of green rows) on small markets."""
    result = clear(market, ClearingOptions(exact_green_columns=0))
    assert result.status is not ClearingStatus.FAILED, result.message
    assert check_clearing(market, result) == []
    assert check_settlement(market, result, settle(result)) == []
    best = reference_welfare(market)
    assert result.welfare_fen <= best + 1e-6
    assert result.gap >= 0
    if best > 0 and result.status is ClearingStatus.OPTIMAL:
        assert abs(result.welfare_fen - best) <= 1e-6 * best + 1e-6


@examples(100)
@given(markets(green=True))
def test_green_lp_over_built_columns_equals_the_independent_lp(market: Market) -> None:
    """Pruning columns never changes the LP optimum: the model keeps every column that can
    pay off, including green slots below reserve that make room for cheap brown ones."""
    model = build_model(market)
    lp = solve_lp(model, integer=False).objective if model.n_arcs else 0.0
    assert abs(lp * market.grid.slot_hours - reference_welfare(market)) < 1e-6 * (1 + abs(lp))


@FAST
@given(network_markets(gangs=True, max_orders=5), st.randoms(use_true_random=False))
def test_input_order_does_not_matter(market: Market, rnd: Random) -> None:
    """The same market read in another order (from a database, a file) clears the same."""

    def shuffled(items: tuple[Any, ...]) -> tuple[Any, ...]:
        out = list(items)
        rnd.shuffle(out)
        return tuple(out)

    other = replace(
        market,
        sites=shuffled(market.sites),
        pools=shuffled(market.pools),
        offers=shuffled(market.offers),
        orders=shuffled(market.orders),
        links=shuffled(market.links),
    )
    a, b = clear(market), clear(other)
    assert a.allocations == b.allocations and a.prices == b.prices
    assert a.welfare_fen == b.welfare_fen and a.transfers == b.transfers
