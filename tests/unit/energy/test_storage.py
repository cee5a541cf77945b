"""Storage dispatch: conservation, limits, and optimality of the greedy rule against an LP."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from suangu.core.energy.storage import StorageParams, dispatch
from suangu.core.errors import ValidationError

power = st.floats(0.0, 50.0)
flows = st.lists(st.floats(0.0, 100.0), min_size=1, max_size=48)


@st.composite
def cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, StorageParams]:
    gen = draw(flows)
    load = draw(st.lists(st.floats(0.0, 100.0), min_size=len(gen), max_size=len(gen)))
    params = StorageParams(
        draw(power), draw(st.floats(0.0, 200.0)), draw(st.floats(0.5, 1.0)), draw(st.floats(0, 1))
    )
    return np.array(gen), np.array(load), params


def check_conservation(gen: np.ndarray, load: np.ndarray, params: StorageParams) -> None:
    d = dispatch(gen, load, params)
    tol = 1e-9 * (1 + gen.max() + load.max())
    # generation = used directly + stored + curtailed; load = green used + grid import
    assert np.allclose(d.direct + d.charge + d.curtailed, gen, atol=tol, rtol=0)
    assert np.allclose(d.green_used + d.grid, load, atol=tol, rtol=0)
    for a in (d.direct, d.charge, d.discharge, d.curtailed, d.grid):
        assert (a >= 0).all()
    assert (d.charge <= params.power_mw + tol).all() and (
        d.discharge <= params.power_mw + tol
    ).all()
    assert not ((d.charge > 0) & (d.discharge > 0)).any()
    assert (d.soc >= -tol).all() and (d.soc <= params.energy_mwh + tol).all()
    eta = math.sqrt(params.round_trip_efficiency)
    soc = np.concatenate([[d.soc_initial], d.soc])
    assert np.allclose(np.diff(soc), d.charge * eta - d.discharge / eta, atol=1e-6)


@given(cases())
@settings(max_examples=150, deadline=None)
def test_conservation_per_hour(case: tuple[np.ndarray, np.ndarray, StorageParams]) -> None:
    check_conservation(*case)


def lp_max_discharge(gen: np.ndarray, load: np.ndarray, params: StorageParams) -> float:
    """The most green energy a battery can deliver (LP over charge c_t, discharge d_t)."""
    n = len(gen)
    eta = math.sqrt(params.round_trip_efficiency)
    surplus = np.maximum(0.0, gen - load)
    deficit = np.maximum(0.0, load - gen)
    # soc_t = soc0 + eta * sum c - sum d / eta, 0 <= soc_t <= E
    lower = np.tril(np.ones((n, n)))
    a_ub = np.block([[eta * lower, -lower / eta], [-eta * lower, lower / eta]])
    soc0 = params.energy_mwh * params.initial_soc
    b_ub = np.concatenate([np.full(n, params.energy_mwh - soc0), np.full(n, soc0)])
    bounds = [(0, min(s, params.power_mw)) for s in surplus]
    bounds += [(0, min(x, params.power_mw)) for x in deficit]
    cost = np.concatenate([np.zeros(n), -np.ones(n)])
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    assert res.status == 0
    return float(-res.fun)


@given(cases())
@settings(max_examples=60, deadline=None)
def test_greedy_is_optimal(case: tuple[np.ndarray, np.ndarray, StorageParams]) -> None:
    gen, load, params = case
    d = dispatch(gen, load, params)
    best = lp_max_discharge(gen, load, params)
    assert d.discharge.sum() == pytest.approx(best, rel=1e-6, abs=1e-6)


def test_worked_example() -> None:
    gen = np.array([10.0, 0.0, 10.0, 0.0])
    load = np.array([4.0, 4.0, 4.0, 4.0])
    d = dispatch(gen, load, StorageParams(5.0, 4.0, 1.0, 0.0))
    assert d.charge.tolist() == [4.0, 0.0, 4.0, 0.0]  # limited by the energy room
    assert d.discharge.tolist() == [0.0, 4.0, 0.0, 4.0]
    assert d.curtailed.tolist() == [2.0, 0.0, 2.0, 0.0]
    assert d.grid.tolist() == [0.0, 0.0, 0.0, 0.0]


def test_no_battery() -> None:
    gen = np.array([5.0, 1.0])
    load = np.array([3.0, 3.0])
    d = dispatch(gen, load, StorageParams())
    assert d.direct.tolist() == [3.0, 1.0]
    assert d.grid.tolist() == [0.0, 2.0] and d.curtailed.tolist() == [2.0, 0.0]


def test_bad_input() -> None:
    with pytest.raises(ValidationError, match="load"):
        dispatch(np.ones(3), np.ones(2), StorageParams())
    with pytest.raises(ValidationError, match="generation"):
        dispatch(np.array([-1.0]), np.ones(1), StorageParams())
    with pytest.raises(ValidationError, match="round_trip"):
        StorageParams(1.0, 1.0, 1.5)
