"""The baseline scheduling policies (suangu.sim.policies) on markets with known answers, and
property tests that no policy breaks a market rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suangu.core.clearing import clear
from suangu.core.clearing.checks import check_clearing
from suangu.core.settlement import check_settlement, settle
from suangu.core.types import Link, Market, Offer, Order, OrderKind, Pool, Site, TimeGrid
from suangu.sim.policies import POLICIES, Policy, parse_policy, place
from tests.unit.markets import markets

BASELINES = [p for p in POLICIES if p is not Policy.SUANGU]


def _market(orders: list[Order], *, links: tuple[Link, ...] = (), slots: int = 4) -> Market:
    """Two regions: east (home, dear, dirty) and west (cheap, green)."""
    sites = (
        Site("e", "East", "Hebei", "east", latency_ms={"beijing": 1.0}),
        Site("w", "West", "Gansu", "west", latency_ms={"beijing": 8.0}),
    )
    pools = (Pool("e-a800", "e", "A800"), Pool("w-a800", "w", "A800"), Pool("w-h100", "w", "H100"))
    offers = (
        Offer.over("oe", "pe", "e-a800", 0, slots, 2, 1000),
        Offer.over("ow", "pw", "w-a800", 0, slots, 4, 800),
        Offer.over("oh", "pw", "w-h100", 0, slots, 1, 2000),
    )
    green = {"e-a800": (0.1, 0.5, 0.2, 0.1)[:slots], "w-a800": (0.9,) * slots}
    return Market(TimeGrid(), 0, slots, sites, pools, offers, tuple(orders), green, links=links)


def _order(oid: str, **kw: object) -> Order:
    base: dict[str, object] = {
        "buyer_id": "b",
        "kind": OrderKind.BATCH,
        "gpus": 2,
        "release_slot": 0,
        "deadline_slot": 4,
        "limit_fen": 1200,
        "gpu_hours": 4,
        "home": "east",
    }
    base.update(kw)
    return Order(oid, **base)  # type: ignore[arg-type]


def _cells(result: object) -> list[tuple[str, str, int, int, int]]:
    return [(a.order_id, a.pool_id, a.slot, a.gpus, a.price_fen) for a in result.allocations]  # type: ignore[attr-defined]


def test_fifo_home_runs_at_home_as_early_as_possible() -> None:
    m = _market([_order("a"), _order("b")])
    r = place(m, Policy.FIFO_HOME)
    # a takes both home GPUs in slots 0-1, b (second in line) slots 2-3; at the listed price
    assert _cells(r) == [
        ("a", "e-a800", 0, 2, 1000),
        ("a", "e-a800", 1, 2, 1000),
        ("b", "e-a800", 2, 2, 1000),
        ("b", "e-a800", 3, 2, 1000),
    ]
    assert [(f.offer_id, f.price_fen) for f in r.fills] == [("oe", 1000)] * 4
    assert not check_clearing(m, r, uniform_prices=False)


def test_carbon_shift_picks_the_lowest_carbon_home_slots() -> None:
    m = _market([_order("a", gpu_hours=2, gpus=1)])
    carbon = {"e-a800": [500.0, 200.0, 300.0, 600.0], "w-a800": [10.0] * 4}
    r = place(m, Policy.CARBON_SHIFT, carbon=carbon)
    assert _cells(r) == [("a", "e-a800", 1, 1, 1000), ("a", "e-a800", 2, 1, 1000)]
    # without carbon data: the greenest slots
    r = place(m, Policy.CARBON_SHIFT)
    assert _cells(r) == [("a", "e-a800", 1, 1, 1000), ("a", "e-a800", 2, 1, 1000)]


def test_cheapest_now_moves_work_west_and_pays_for_the_data() -> None:
    link = Link("east", "west", 7.0, 10.0, 10)  # 10 fen per GB
    m = _market([_order("a", data_gb=20)], links=(link,))
    r = place(m, Policy.CHEAPEST_NOW)
    # west A800 at 800 + 20 GB x 10 fen / 4 GPU-slots = 850 per GPU-hour < east 1000; the
    # data takes 16 s, a whole slot of delay
    assert _cells(r) == [("a", "w-a800", 1, 2, 800), ("a", "w-a800", 2, 2, 800)]
    [t] = r.transfers
    assert (t.from_region, t.to_region, t.gb, t.carrier_fen) == ("east", "west", 20.0, 200)
    assert not check_clearing(m, r, uniform_prices=False)
    # a dear link makes home cheaper
    dear = _market([_order("a", data_gb=20)], links=(Link("east", "west", 7.0, 10.0, 100),))
    assert {a.pool_id for a in place(dear, Policy.CHEAPEST_NOW).allocations} == {"e-a800"}
    # no link: the data cannot leave home
    assert {
        a.pool_id
        for a in place(_market([_order("a", data_gb=20)]), Policy.CHEAPEST_NOW).allocations
    } == {"e-a800"}


def test_transfer_delay_and_bandwidth_hold_for_baselines() -> None:
    # 4,500 GB at 10 Gbit/s = 3,600 s: one slot of delay; 4 slots carry 18,000 GB
    link = Link("east", "west", 7.0, 10.0, 0)
    m = _market([_order("a", data_gb=4500, limit_fen=2000)], links=(link,))
    r = place(m, Policy.CHEAPEST_NOW)
    assert min(a.slot for a in r.allocations if a.pool_id.startswith("w")) == 1
    narrow = Link("east", "west", 7.0, 0.01, 0)  # 4.5 GB per slot, 18 GB over the horizon
    m = _market([_order("a", data_gb=36)], links=(narrow,))
    r = place(m, Policy.CHEAPEST_NOW)
    moved = sum(t.gb for t in r.transfers)
    assert moved <= 18.0 + 1e-9
    assert not check_clearing(m, r, uniform_prices=False)


def test_speed_counts_work_in_reference_hours() -> None:
    # 6 reference GPU-hours: the H100 (speed 989.4/312 = 3.17 x A800) does 3.17 per GPU-slot
    order = _order("a", gpu_hours=6, gpus=1, reference_class="A800", limit_fen=900)
    m = _market([order])
    r = place(m, Policy.CHEAPEST_NOW)
    # H100 costs 2000 / 3.17 = 631 per unit of work, west A800 800: the H100 once (3.17),
    # then 2 A800 GPU-slots; never more work than asked
    pools = sorted((a.pool_id, a.gpus) for a in r.allocations)
    assert pools[0] == ("w-a800", 1) and ("w-h100", 1) in pools
    assert not check_clearing(m, r, uniform_prices=False)


def test_no_baseline_buys_above_value() -> None:
    m = _market([_order("a", limit_fen=900)])  # east costs 1000: fifo-home cannot buy
    assert place(m, Policy.FIFO_HOME).allocations == ()
    assert {a.pool_id for a in place(m, Policy.CHEAPEST_NOW).allocations} == {"w-a800"}


def test_policy_names() -> None:
    assert parse_policy(" Fifo-Home ") is Policy.FIFO_HOME
    with pytest.raises(ValueError, match=r"unknown policy 'lifo'.*fifo-home"):
        parse_policy("lifo")
    with pytest.raises(ValueError, match="clearing engine"):
        place(_market([]), Policy.SUANGU)


@given(market=markets(network=True, green=True), policy=st.sampled_from(BASELINES))
@settings(max_examples=150)
def test_no_baseline_breaks_a_market_rule(market: Market, policy: Policy) -> None:
    carbon = {
        p.id: [float((k * 37 + i * 11) % 500) for k in range(market.n_slots)]
        for i, p in enumerate(market.pools)
    }
    result = place(market, policy, carbon=carbon)
    assert check_clearing(market, result, uniform_prices=False) == []
    assert check_settlement(market, result, settle(result)) == []
    assert result == place(market, policy, carbon=carbon)  # deterministic


@given(market=markets(network=True))
@settings(max_examples=40)
def test_the_clearing_beats_every_baseline_on_welfare(market: Market) -> None:
    """On one clearing the engine's welfare (value - reserve - transfer) is at least each
    greedy baseline's (the baselines' own welfare counts the same terms)."""
    best = clear(market)
    for policy in BASELINES:
        assert place(market, policy).welfare_fen <= best.welfare_fen + 1 + 1e-6 * abs(
            best.welfare_fen
        )
