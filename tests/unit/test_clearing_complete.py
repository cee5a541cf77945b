"""Complete-or-nothing batch orders (:mod:`suangu.core.clearing.complete`): served in full or
not at all, never above their limit; worked examples and property tests on random markets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suangu.core.clearing import clear
from suangu.core.clearing.checks import check_clearing
from suangu.core.clearing.complete import partly_served
from suangu.core.clearing.greedy import greedy_clear
from suangu.core.errors import ValidationError
from suangu.core.settlement import check_settlement, settle
from suangu.core.types import (
    ClearingStatus,
    Market,
    Offer,
    Order,
    OrderKind,
    Pool,
    Site,
    TimeGrid,
)
from tests.unit.markets import markets

SITE = Site("s", "S", "Gansu", "gansu", 36.0, 104.0, 1.2, {})
POOL = Pool("p", "s", "H100")


def _market(slots: int, *orders: Order) -> Market:
    offer = Offer.over("o", "prov", "p", 0, slots, 4, 1000)
    return Market(TimeGrid(0), 0, slots, (SITE,), (POOL,), (offer,), orders)


def _batch(oid: str, work: int, limit: int, *, con: bool = False, window: int = 3) -> Order:
    return Order(
        oid, "b", OrderKind.BATCH, gpus=4, release_slot=0, deadline_slot=window,
        limit_fen=limit, gpu_hours=work, complete_or_nothing=con,
    )  # fmt: skip


def _hours(market: Market, oid: str) -> int:
    return sum(a.gpus for a in clear(market).allocations if a.order_id == oid)


def test_worked_example_left_out_rather_than_served_in_part() -> None:
    # 4 GPUs x 2 slots at 10 yuan. B (40 yuan) wants 4 GPU-hours, A (30 yuan) 6 that are
    # worth nothing in part. As a plain order A would take the 4 left at 30 yuan each.
    plain = _market(2, _batch("a", 6, 3000, window=2), _batch("b", 4, 4000, window=2))
    got = clear(plain)
    assert _hours(plain, "a") == 4 and {a.price_fen for a in got.allocations} == {3000}
    con = _market(2, _batch("a", 6, 3000, con=True, window=2), _batch("b", 4, 4000, window=2))
    result = clear(con)
    assert [a.order_id for a in result.allocations] == ["b"] * len(result.allocations)
    assert sum(a.gpus for a in result.allocations) == 4
    assert {p.price_fen for p in result.prices} == {1000}  # A left out: supply exceeds demand
    assert "left out" in result.message and "a" in result.message
    assert check_clearing(con, result) == []
    # With a third slot there is room for all of A's work: served in full.
    roomy = _market(3, _batch("a", 6, 3000, con=True), _batch("b", 4, 4000))
    assert _hours(roomy, "a") == 6 and _hours(roomy, "b") == 4
    # The greedy baseline keeps the rule too.
    g = greedy_clear(con)
    assert partly_served(con, g.allocations) == []
    assert {a.order_id for a in g.allocations} == {"b"}


def test_only_batch_orders_may_be_complete_or_nothing() -> None:
    with pytest.raises(ValidationError) as err:
        Order(
            "g", "b", OrderKind.GANG, gpus=1, release_slot=0, deadline_slot=2, limit_fen=1,
            duration_slots=1, complete_or_nothing=True,
        )  # fmt: skip
    assert err.value.field == "complete_or_nothing"


@st.composite
def con_markets(draw: st.DrawFn, gangs: bool = False) -> Market:
    market = draw(markets(gangs=gangs, max_orders=6, max_slots=4))
    flags = draw(st.lists(st.booleans(), min_size=len(market.orders), max_size=len(market.orders)))
    orders = tuple(
        replace(o, complete_or_nothing=True) if f and o.kind is OrderKind.BATCH else o
        for o, f in zip(market.orders, flags, strict=True)
    )
    return replace(market, orders=orders)


FAST = settings(max_examples=max(120, settings.default.max_examples), deadline=None)


@FAST
@given(con_markets())
def test_complete_or_nothing_holds_and_nobody_pays_above_limit(market: Market) -> None:
    result = clear(market)
    assert result.status is not ClearingStatus.FAILED, result.message
    # check_clearing: capacity, windows, filters, no buyer above its value, all or nothing.
    assert check_clearing(market, result) == []
    assert partly_served(market, result.allocations) == []
    settlement = settle(result)
    assert check_settlement(market, result, settlement) == []
    assert settlement.balanced
    for o in market.orders:
        its = [a for a in result.allocations if a.order_id == o.id]
        paid = sum(a.price_fen * a.gpus * market.grid.slot_hours for a in its)
        assert paid <= o.limit_fen * sum(a.gpus for a in its) * market.grid.slot_hours
    # Never worse than leaving every complete-or-nothing order out, never better than
    # serving them in part (the relaxation); and the same market clears the same way.
    without = replace(market, orders=tuple(o for o in market.orders if not o.complete_or_nothing))
    relaxed = replace(
        market, orders=tuple(replace(o, complete_or_nothing=False) for o in market.orders)
    )
    assert clear(without).welfare_fen <= result.welfare_fen <= clear(relaxed).welfare_fen
    assert clear(market) == result


@FAST
@given(con_markets(gangs=True))
def test_with_gangs_too_and_in_the_greedy_baseline(market: Market) -> None:
    result = clear(market)
    assert check_clearing(market, result) == []
    g = greedy_clear(market)
    assert partly_served(market, g.allocations) == []
    assert check_clearing(market, g, uniform_prices=False) == []


def test_order_files_carry_the_flag(tmp_path: Path) -> None:
    from importlib import resources

    from suangu.sim.scenario import (
        OrderStream,
        StreamOrder,
        load_orders,
        load_scenario,
        write_orders,
    )

    package = resources.files("suangu") / "data" / "scenarios"
    sc = load_scenario(Path(str(package / "east_west.yaml")))
    stream = load_orders(Path(str(package / "east_west_orders.csv")), sc)
    first = stream.orders[0]
    batch = next(s for s in stream.orders if s.order.kind is OrderKind.BATCH)
    flagged = StreamOrder(replace(batch.order, complete_or_nothing=True), batch.submit_slot)
    mine = OrderStream("t", (first, flagged) if first is not batch else (flagged,))
    back = load_orders(write_orders(mine, tmp_path / "o.csv", sc), sc)
    assert [s.order for s in back.orders] == [s.order for s in mine.orders]
    assert any(s.order.complete_or_nothing for s in back.orders)
