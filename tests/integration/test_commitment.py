"""Commit late, plan early (``firm_slots``): only the slots about to start become firm; the
rest is a plan that every clearing plans again, so an urgent order that arrives later can
still have them. A started gang keeps its run."""

from __future__ import annotations

from pathlib import Path

import pytest

from suangu.core import lifecycle
from suangu.core.clearing import clear
from suangu.core.types import Market, Offer, Order, OrderKind, Pool, Site, TimeGrid
from suangu.sim.scenario import OrderStream, Scenario, StreamOrder, load_scenario
from suangu.sim.simulate import simulate

SCENARIO = """
name: commit
start: 2025-06-02T00:00:00Z
hours: 8
lookahead: 6
time_preference: 0.01
{firm}
sites:
  - {{id: west, name: West, province: Gansu, region: gansu, lat: 35.6, lon: 107.6, pue: 1.2}}
pools:
  - {{id: west-h800, site: west, gpu_class: H800}}
offers:
  - {{id: w, provider: p1, pool: west-h800, gpus: 2, reserve: 1.00}}
"""


def _scenario(tmp_path: Path, firm_slots: int | None) -> Scenario:
    path = tmp_path / f"commit-{firm_slots}.yaml"
    firm = "firm_slots: null" if firm_slots is None else f"firm_slots: {firm_slots}"
    path.write_text(SCENARIO.format(firm=firm), encoding="utf-8")
    return load_scenario(path)


def _stream() -> OrderStream:
    """A flexible order at hour 0 (4 GPU-hours by hour 6) takes the next two hours when it
    clears; an urgent one at hour 1 wants both GPUs in hours 1 and 2 (deadline 3)."""
    flexible = Order("flex", "b1", OrderKind.BATCH, 2, 0, 6, 200, gpu_hours=4)
    urgent = Order("urgent", "b2", OrderKind.BATCH, 2, 1, 3, 500, gpu_hours=4)
    return OrderStream("test", (StreamOrder(flexible, 0), StreamOrder(urgent, 1)), frozenset())


def test_committing_at_once_books_capacity_ahead_of_the_urgent_order(tmp_path: Path) -> None:
    report = simulate(_scenario(tmp_path, None), _stream())
    assert report.deadline_orders == 2
    assert report.deadlines_met == 1  # the urgent order gets hour 2 only
    assert report.wasted_gpu_hours == 2  # what it got served nothing
    assert report.ledger_balanced, report.ledger_message


def test_planning_late_meets_both_deadlines(tmp_path: Path) -> None:
    report = simulate(_scenario(tmp_path, 1), _stream())
    assert report.firm_slots == 1
    assert report.deadlines_met == 2 and report.deadline_share == 1.0
    assert report.wasted_gpu_hours == 0
    assert report.ledger_balanced, report.ledger_message


def _market(orders: tuple[Order, ...], first: int = 0) -> Market:
    site = Site("west", "West", "Gansu", "gansu")
    pool = Pool("west-h800", "west", "H800")
    offer = Offer.over("w", "p1", pool.id, 0, 24, gpus=8, reserve_fen=100)
    return Market(TimeGrid(), first, 12, (site,), (pool,), (offer,), orders, delay_fen=1)


def test_a_started_gang_is_firm_whole_and_a_later_one_stays_a_plan() -> None:
    now = Order("g1", "b", OrderKind.GANG, 8, 0, 12, 300, duration_slots=4)
    later = Order("g2", "b", OrderKind.GANG, 8, 4, 12, 300, duration_slots=4)
    batch = Order("b1", "b", OrderKind.BATCH, 8, 0, 12, 200, gpu_hours=64)
    market = _market((now, later, batch))
    result = clear(market)
    split = lifecycle.commit(result, market, 1)
    firm = {(a.order_id, a.slot) for a in split.firm.allocations}
    assert {(o, t) for o, t in firm if o == "g1"} == {("g1", t) for t in range(4)}
    assert all(a.order_id != "g2" for a in split.firm.allocations)
    assert {a.order_id for a in split.planned} >= {"g2"}
    # Firm allocations lie in the horizon, except a started gang's run.
    assert all(t < 1 or o == "g1" for o, t in firm)
    # The firm fills serve exactly the firm allocations, pool-slot by pool-slot.
    used: dict[int, int] = {}
    for a in split.firm.allocations:
        used[a.slot] = used.get(a.slot, 0) + a.gpus
    sold: dict[int, int] = {}
    for f in split.firm.fills:
        sold[f.slot] = sold.get(f.slot, 0) + f.gpus
    assert used == sold
    # Nothing is lost or made up: firm + planned = the clearing.
    assert sorted(split.firm.allocations + split.planned, key=repr) == sorted(
        result.allocations, key=repr
    )
    # Welfare of the firm part: value less reserves (no data moved here).
    value = sum(300 * a.gpus for a in split.firm.allocations if a.order_id == "g1")
    value += sum(200 * a.gpus for a in split.firm.allocations if a.order_id == "b1")
    assert split.firm.welfare_fen == value - sum(100 * f.gpus for f in split.firm.fills)


@pytest.mark.parametrize("firm_slots", [None, 12, 20])
def test_a_horizon_covering_the_clearing_commits_everything(firm_slots: int | None) -> None:
    market = _market((Order("b1", "b", OrderKind.BATCH, 8, 0, 12, 200, gpu_hours=64),))
    result = clear(market)
    split = lifecycle.commit(result, market, firm_slots)
    assert split.planned == () and split.firm == result
