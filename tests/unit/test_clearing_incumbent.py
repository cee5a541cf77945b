"""The clearing always returns the best clearing it found: greedy is the incumbent from the
start, the time limit covers the whole call, and the status says how good the result is."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from suangu.core.clearing import ClearingOptions, clear, engine
from suangu.core.clearing.checks import check_clearing
from suangu.core.clearing.dual import GangDual
from suangu.core.clearing.engine import OPTIMAL_GAP, canonical
from suangu.core.clearing.greedy import greedy_clear
from suangu.core.clearing.lp import solve_lp
from suangu.core.clearing.model import build_model
from suangu.core.clearing.network import solve_min_cost_flow
from suangu.core.settlement import check_settlement, settle
from suangu.core.types import ClearingResult, ClearingStatus, Market, OrderKind
from suangu.sim.generator import generate_market
from tests.unit.markets import markets, network_markets, reference_welfare
from tests.unit.test_clearing_bruteforce import brute_force_welfare, tiny_markets

#: A limit no exact method can meet: only the incumbent and one bound evaluation run.
NO_TIME = ClearingOptions(time_limit_s=1e-9)


def _assert_rules(market: Market, result: ClearingResult) -> None:
    assert result.status is not ClearingStatus.FAILED, result.message
    assert check_clearing(market, result) == []
    settlement = settle(result)
    assert check_settlement(market, result, settlement) == []
    assert settlement.balanced
    for a in result.allocations:  # integer fen, individually rational
        assert isinstance(a.price_fen, int)
    for f in result.fills:
        assert f.price_fen >= f.reserve_fen


def _gang_market() -> Market:
    return generate_market(150, 3, 8, 3, gang_share=0.3)


def test_a_time_limit_too_short_still_returns_the_incumbent() -> None:
    market = _gang_market()
    greedy = greedy_clear(market)
    result = clear(market, NO_TIME)
    full = clear(market)
    assert result.status is ClearingStatus.TIME_LIMIT, result.message
    assert "time limit" in result.message
    assert result.method == "greedy"
    assert result.allocations and result.welfare_fen > 0
    # The incumbent is greedy's placements with the rest cleared optimally around them.
    if not result.rejected_gangs:
        assert result.welfare_fen >= greedy.welfare_fen
    # Its gap is certified by the Lagrangian bound at the incumbent's prices.
    assert 0 < result.gap < 1 and math.isfinite(result.gap)
    assert full.welfare_fen <= result.welfare_fen / (1 - result.gap) + 1
    _assert_rules(market, result)
    # The full search does at least as well, and proves more.
    assert full.welfare_fen >= result.welfare_fen
    assert full.gap <= result.gap


def test_the_time_limit_covers_the_whole_call() -> None:
    market = _gang_market()
    result = clear(market, ClearingOptions(time_limit_s=0.5, mip_rel_gap=0.0))
    # Greedy and the pricing always run; every search after them stops at the limit (how
    # far past it the call ends is measured by bench/bench_clearing.py --time-limit, not
    # asserted here: see the slow-solver tests below for what may start).
    if result.status is ClearingStatus.TIME_LIMIT:
        assert "time limit" in result.message and result.gap > 0
    else:
        assert result.status in (ClearingStatus.OPTIMAL, ClearingStatus.FEASIBLE), result.message
    _assert_rules(market, result)


def test_a_proven_gap_within_the_tolerance_is_optimal() -> None:
    market = _gang_market()
    result = clear(market)
    assert result.status in (ClearingStatus.OPTIMAL, ClearingStatus.FEASIBLE)
    if result.status is ClearingStatus.OPTIMAL:
        assert result.gap <= OPTIMAL_GAP
    else:
        assert OPTIMAL_GAP < result.gap <= ClearingOptions().mip_rel_gap
    assert result.message


def test_results_compare_equal_whatever_their_timings() -> None:
    market = _gang_market()
    a, b = clear(market), clear(market)
    assert a == b
    assert a == dataclasses.replace(a, timings={"solve_s": 1e9})
    assert a != dataclasses.replace(a, welfare_fen=a.welfare_fen + 1)


def test_the_lagrangian_bound_is_above_the_lp_relaxation_and_reaches_it() -> None:
    """Any prices give an upper bound on the LP relaxation (so on every clearing), and the
    subgradient search brings it close to the relaxation's optimum."""
    market = canonical(generate_market(60, 3, 6, 5, gang_share=0.3))
    model = build_model(market)
    dual = GangDual(model)
    lp = solve_lp(model, integer=False).objective
    rng = np.random.default_rng(0)
    for pi in (np.zeros(model.n_pool_slots), rng.uniform(0, 5000, model.n_pool_slots)):
        assert dual.evaluate(pi).bound >= lp - 1e-6 * abs(lp)
    bound, _, share = dual.minimise(
        np.zeros(model.n_pool_slots), 0.0, time.perf_counter() + 30, iterations=2000
    )
    assert lp - 1e-6 * abs(lp) <= bound <= lp * 1.01
    assert ((share >= 0) & (share <= 1)).all()


# --- properties on random small markets with gangs ------------------------------------------


@settings(max_examples=150, deadline=None)
@given(markets(gangs=True, max_orders=6, max_slots=3), st.sampled_from([None, NO_TIME]))
def test_gang_clearing_is_never_worse_than_greedy(
    market: Market, options: ClearingOptions | None
) -> None:
    result = clear(market, options)
    _assert_rules(market, result)
    assert result.gap >= 0
    if not result.rejected_gangs:
        # Greedy's placements with the rest cleared optimally: never below greedy.
        assert result.welfare_fen >= greedy_clear(market).welfare_fen
    assert result.welfare_fen <= reference_welfare(market) + 1e-6
    if any(o.kind is OrderKind.GANG for o in market.orders) and result.allocations:
        assert result.status is not ClearingStatus.HEURISTIC


@settings(max_examples=120, deadline=None)
@given(tiny_markets())
def test_gang_clearing_equals_brute_force_and_is_bounded(market: Market) -> None:
    result = clear(market)
    best = brute_force_welfare(market)
    if not result.rejected_gangs:
        assert result.welfare_fen == best
    assert result.welfare_fen <= best
    # Whatever the time limit, the gap is certified: the optimum is within it.
    hurried = clear(market, NO_TIME)
    _assert_rules(market, hurried)
    assert 0 <= hurried.gap <= 1
    if not hurried.rejected_gangs and hurried.gap < 1:  # gap 1: nothing traded yet
        assert best <= hurried.welfare_fen / (1 - hurried.gap) + 1


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(
        network_markets(gangs=True, max_orders=5),
        markets(gangs=True, green=True, max_orders=5, max_slots=3),
    )
)
def test_gangs_with_side_rows_out_of_time_fall_back_to_greedy(market: Market) -> None:
    """Links, speeds or green minimums beside gangs, and no time for the exact method:
    greedy's clearing, priced, keeps every rule; never a failure."""
    result = clear(market, NO_TIME)
    _assert_rules(market, result)
    model = build_model(canonical(market))
    if len(model.placements) and len(model.side):
        assert result.status is ClearingStatus.HEURISTIC, result.message
        assert result.method == "greedy" and "exact method" in result.message
        event("greedy fallback")


# --- the limit holds for the whole call: nothing starts that cannot end in time -------------

#: Every min-cost flow takes this long in the tests below, longer than their time limit.
SLOW_FLOW_S = 0.3


def _slow_solvers(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Make every min-cost flow of the engine take ``SLOW_FLOW_S``; record which function
    called each min-cost flow, each LP/MIP solve and each Lagrangian search."""
    calls: dict[str, list[str]] = {"flow": [], "lp": [], "dual": []}

    def slow_flow(*args: Any, **kw: Any) -> Any:
        calls["flow"].append(sys._getframe(1).f_code.co_name)
        time.sleep(SLOW_FLOW_S)
        return solve_min_cost_flow(*args, **kw)

    def lp(*args: Any, **kw: Any) -> Any:
        calls["lp"].append(sys._getframe(1).f_code.co_name)
        return solve_lp(*args, **kw)

    def minimise(self: GangDual, *args: Any, **kw: Any) -> Any:
        calls["dual"].append("minimise")
        return minimise_(self, *args, **kw)

    minimise_ = GangDual.minimise
    monkeypatch.setattr(engine, "solve_min_cost_flow", slow_flow)
    monkeypatch.setattr(engine, "solve_lp", lp)
    monkeypatch.setattr(GangDual, "minimise", minimise)
    return calls


def test_a_gang_search_that_cannot_end_in_time_is_not_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The incumbent's own network solve outlasts the limit: the incumbent is returned,
    priced, with status ``time_limit``; no Lagrangian search, no other candidate and no
    LP or MIP solve is started after it (the overrun is bounded by the incumbent's cost,
    measured by bench/bench_clearing.py --time-limit)."""
    calls = _slow_solvers(monkeypatch)
    market = _gang_market()
    result = clear(market, ClearingOptions(time_limit_s=SLOW_FLOW_S / 3))
    assert result.status is ClearingStatus.TIME_LIMIT, result.message
    assert result.method == "greedy"
    assert result.allocations and 0 < result.gap < 1
    assert calls["dual"] == [] and calls["lp"] == []
    # The incumbent's settlement only: one solve, plus one per round of the pricing rule.
    assert set(calls["flow"]) == {"_clear_network"}
    assert len(calls["flow"]) <= 1 + len(result.rejected_gangs)
    _assert_rules(market, result)


@pytest.mark.parametrize("exact_columns", [0, 50_000])
def test_a_side_row_search_that_cannot_end_in_time_is_not_started(
    monkeypatch: pytest.MonkeyPatch, exact_columns: int
) -> None:
    """Green minimums break at the network optimum, whose solve outlasts the limit: the
    Lagrangian path starts no further network solve (status ``time_limit``), the exact path
    gets no time for its LP and returns greedy's clearing priced (``heuristic``); neither
    fails, and both keep every rule."""
    calls = _slow_solvers(monkeypatch)
    market = generate_market(200, 3, 8, 3, green=True)
    options = ClearingOptions(time_limit_s=SLOW_FLOW_S / 3, exact_green_columns=exact_columns)
    result = clear(market, options)
    assert "_side_lagrangian" not in calls["flow"]
    if exact_columns:
        assert result.status is ClearingStatus.HEURISTIC, result.message
        assert result.method == "greedy"
    else:
        assert result.status is ClearingStatus.TIME_LIMIT, result.message
        assert 0 < result.gap < 1
    assert result.allocations
    _assert_rules(market, result)
    # With time, the same market is cleared exactly (and never worse than in a hurry).
    monkeypatch.undo()
    full = clear(market)
    assert full.status is ClearingStatus.OPTIMAL
    assert full.welfare_fen >= result.welfare_fen
