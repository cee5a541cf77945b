"""Cross-region clearing on hand-made markets with answers worked out by hand: latency,
residency, transfer delay, transfer cost, link bandwidth (congestion price) and class speed."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings

from suangu.core.clearing import ClearingOptions, clear
from suangu.core.clearing.checks import check_clearing
from suangu.core.clearing.greedy import greedy_clear
from suangu.core.settlement import LineKind, check_settlement, settle
from suangu.core.types import (
    ClearingResult,
    ClearingStatus,
    Link,
    Market,
    Offer,
    Order,
    Pool,
    Site,
    TimeGrid,
)
from tests.unit.markets import (
    eligible_cells,
    markets,
    network_markets,
    reference_welfare,
    speed,
)

# Two regions: the buyers' home "east" (site E) and the green "west" (site W).
SITES = (
    Site("E", "East DC", "Shanghai", "east"),
    Site("W", "West DC", "Gansu", "west"),
)
POOLS = (
    Pool("e-a100", "E", "A100"),
    Pool("w-a100", "W", "A100"),
    Pool("w-h100", "W", "H100"),
)


def link(latency: float = 20.0, gbps: float = 100.0, price: int = 0, frm: str = "east") -> Link:
    return Link(frm, "west" if frm == "east" else "east", latency, gbps, price)


def market(
    orders: list[Order],
    offers: list[Offer],
    links: tuple[Link, ...] = (),
    n_slots: int = 1,
) -> Market:
    return Market(TimeGrid(), 0, n_slots, SITES, POOLS, tuple(offers), tuple(orders), links=links)


def offers(
    e: int = 500, w: int = 100, h100: int | None = None, n: int = 1, start: int = 0
) -> list[Offer]:
    out = [
        Offer.over("fe", "pe", "e-a100", start, n, 4, e),
        Offer.over("fw", "pw", "w-a100", start, n, 4, w),
    ]
    if h100 is not None:
        out.append(Offer.over("fh", "ph", "w-h100", start, n, 4, h100))
    return out


# Any data takes at least one slot to move (whole slots, rounded up): markets with data
# have two slots and sell only in the second.
LATER = {"n": 2, "start": 1}


def batch(id: str, gpus: int = 1, hours: int = 1, limit: int = 1000, **kw: object) -> Order:
    base: dict[str, object] = {"deadline_slot": 1, "home": "east"}
    base.update(kw)
    deadline = base.pop("deadline_slot")
    return Order(id, f"b-{id}", "batch", gpus, 0, deadline, limit, gpu_hours=hours, **base)  # type: ignore[arg-type]


def cleared(m: Market) -> ClearingResult:
    result = clear(m)
    assert check_clearing(m, result) == []
    assert check_settlement(m, result, settle(result)) == []
    assert settle(result).balanced
    again = clear(m)
    assert again.allocations == result.allocations and again.link_prices == result.link_prices
    return result


def cells(result: ClearingResult, order_id: str) -> list[tuple[str, int, int]]:
    return sorted((a.pool_id, a.slot, a.gpus) for a in result.allocations if a.order_id == order_id)


# --- latency ------------------------------------------------------------------------------


@pytest.mark.parametrize(("link_ms", "where"), [(20.0, "e-a100"), (5.0, "w-a100")])
def test_latency_bound_uses_the_link_latency(link_ms: float, where: str) -> None:
    order = Order("s", "b", "service", 1, 0, 1, 1000, home="east", max_latency_ms=10.0)
    for result in (cleared(market([order], offers(), (link(link_ms),))),):
        assert cells(result, "s") == [(where, 0, 1)]
    # The same rule in the greedy baseline.
    m = market([order], offers(), (link(link_ms),))
    g = greedy_clear(m)
    assert [a.pool_id for a in g.allocations] == [where]
    assert check_clearing(m, g, uniform_prices=False) == []


def test_latency_without_entry_or_link_is_not_eligible_but_home_region_is() -> None:
    order = Order("s", "b", "service", 1, 0, 1, 1000, home="east", max_latency_ms=10.0)
    result = cleared(market([order], offers()))  # no link: the west is out of reach
    assert cells(result, "s") == [("e-a100", 0, 1)]
    # The site's own latency table wins over the link.
    near = Site("W", "West DC", "Gansu", "west", latency_ms={"east": 4.0})
    m = Market(TimeGrid(), 0, 1, (SITES[0], near), POOLS, tuple(offers()), (order,))
    assert [a.pool_id for a in clear(m).allocations] == ["w-a100"]


# --- residency ---------------------------------------------------------------------------


def test_residency_keeps_every_kind_of_order_at_home() -> None:
    orders = [
        batch("b", regions=frozenset({"east"})),
        Order("s", "b", "service", 1, 0, 1, 1000, provinces=frozenset({"Shanghai"})),
        Order("g", "b", "gang", 1, 0, 1, 1000, duration_slots=1, regions=frozenset({"east"})),
    ]
    result = cleared(market(orders, offers(), (link(),)))
    for order_id in ("b", "s", "g"):
        assert cells(result, order_id) == [("e-a100", 0, 1)], order_id


# --- transfer delay ----------------------------------------------------------------------


def test_transfer_delay_pushes_the_start_away_from_home() -> None:
    # 4,500 GB over 10 Gbit/s takes one hour: the west can start at slot 1, not 0.
    order = batch("a", gpus=1, hours=2, deadline_slot=3, data_gb=4500)
    m = market([order], offers(n=3), (link(gbps=10.0),), n_slots=3)
    result = cleared(m)
    assert cells(result, "a") == [("w-a100", 1, 1), ("w-a100", 2, 1)]
    g = greedy_clear(m)
    assert sorted((a.pool_id, a.slot) for a in g.allocations) == [("w-a100", 1), ("w-a100", 2)]
    # Without data it starts at once.
    fast = cleared(market([batch("a", gpus=1, hours=2, deadline_slot=3)], offers(n=3), (), 3))
    assert cells(fast, "a") == [("w-a100", 0, 1), ("w-a100", 1, 1)]


def test_data_without_a_link_stays_home() -> None:
    result = cleared(market([batch("a", data_gb=10)], offers()))
    assert cells(result, "a") == [("e-a100", 0, 1)]
    assert result.transfers == ()


def test_transfer_delay_applies_to_gangs() -> None:
    gang = Order("g", "b", "gang", 2, 0, 3, 1000, duration_slots=2, home="east", data_gb=4500)
    result = cleared(market([gang], offers(n=3), (link(gbps=10.0),), n_slots=3))
    assert cells(result, "g") == [("w-a100", 1, 2), ("w-a100", 2, 2)]
    assert [(t.gb, t.carrier_fen) for t in result.transfers] == [(4500.0, 0)]


# --- transfer cost -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "where", "welfare"),
    [
        # 100 GB x 4 fen = 400 fen for the whole job, 200 per GPU-slot: the west nets
        # 1000 - 100 - 200 = 700 per GPU-hour against 1000 - 500 = 500 at home.
        (4, "w-a100", 2 * (1000 - 100) - 400),
        # 100 GB x 8 fen = 800 fen, 400 per GPU-slot: 500 in the west, 600 at home (E at 400).
        (8, "e-a100", 2 * (1000 - 400)),
    ],
)
def test_transfer_cost_enters_welfare(price: int, where: str, welfare: int) -> None:
    order = batch("a", gpus=2, hours=2, data_gb=100, deadline_slot=2)
    result = cleared(market([order], offers(e=400, **LATER), (link(price=price),), n_slots=2))
    assert cells(result, "a") == [(where, 1, 2)]
    assert result.welfare_fen == welfare
    if where == "w-a100":
        (t,) = result.transfers
        assert (t.order_id, t.from_region, t.to_region, t.gb) == ("a", "east", "west", 100.0)
        assert (t.carrier_fen, t.congestion_fen) == (400, 0)
        s = settle(result)
        assert s.link_rent_fen == 400 and s.payments_fen == 2 * 100 + 400
        assert any(line.kind is LineKind.TRANSFER_PAYMENT for line in s.lines)
    else:
        assert result.transfers == ()


def test_partial_move_pays_its_share_of_the_data() -> None:
    # Work 4 GPU-hours, 2 GPUs in the west (the rest at home): half the data moves.
    order = batch("a", gpus=4, hours=4, data_gb=100, deadline_slot=2)
    two_west = [
        Offer.over("fe", "pe", "e-a100", 1, 2, 4, 500),
        Offer.over("fw", "pw", "w-a100", 1, 2, 2, 100),
    ]
    result = cleared(market([order], two_west, (link(price=2),), n_slots=2))
    assert cells(result, "a") == [("e-a100", 1, 2), ("w-a100", 1, 2)]
    (t,) = result.transfers
    assert t.gb == pytest.approx(50.0) and t.carrier_fen == 100


# --- bandwidth ---------------------------------------------------------------------------


def test_congested_link_gets_a_congestion_price() -> None:
    # 0.1 Gbit/s carries 45 GB an hour, 90 GB over the two-slot horizon. Four orders of
    # 30 GB (one slot to move) and 2 GPU-slots of work each: 15 GB per GPU-slot, so only 6 of
    # the 8 GPU-slots can move west. Moving saves 500 fen per GPU-slot (reserve 100 against
    # 600), so the link is worth 500 / 15 = 33.3 fen per GB.
    orders = [batch(f"o{k}", gpus=2, hours=2, data_gb=30, deadline_slot=2) for k in range(4)]
    supply = [
        Offer.over("fe", "pe", "e-a100", 1, 2, 4, 600),
        Offer.over("fw", "pw", "w-a100", 1, 2, 8, 100),
    ]
    m = market(orders, supply, (link(gbps=0.1),), n_slots=2)
    result = cleared(m)
    assert result.status is ClearingStatus.OPTIMAL and result.method == "lp"
    west = sum(a.gpus for a in result.allocations if a.pool_id == "w-a100")
    assert west == 6
    assert result.welfare_fen == 6 * (1000 - 100) + 2 * (1000 - 600)
    (lp,) = result.link_prices
    assert lp.gb == pytest.approx(90.0) and lp.capacity_gb == pytest.approx(90.0)
    assert lp.congestion_fen_per_gb == 33  # 33.3, rounded down
    assert sum(t.gb for t in result.transfers) == pytest.approx(90.0)
    assert sum(t.congestion_fen for t in result.transfers) == 90 * 33
    s = settle(result)
    assert s.congestion_rent_fen == 90 * 33 and s.balanced
    # Movers pay 100 + 15 x 33 = 595 per GPU-hour, at most their 1000: checked above.
    assert all(a.price_fen == 100 for a in result.allocations if a.pool_id == "w-a100")


def test_uncongested_link_has_no_congestion_price() -> None:
    orders = [
        batch("a", gpus=2, hours=2, data_gb=60, deadline_slot=2),
        batch("b", gpus=2, hours=2, data_gb=60, deadline_slot=2),
    ]
    result = cleared(market(orders, offers(e=600, **LATER), (link(gbps=1.0),), n_slots=2))
    assert sum(a.gpus for a in result.allocations if a.pool_id == "w-a100") == 4
    assert result.method == "network"
    (lp,) = result.link_prices
    assert lp.congestion_fen_per_gb == 0 and lp.gb == pytest.approx(120.0)


def test_gangs_share_a_congested_link() -> None:
    # Each gang moves 40 GB; the link carries 90: two gangs go west, the third stays home.
    gangs = [
        Order(f"g{k}", "b", "gang", 2, 0, 2, 1000, duration_slots=1, home="east", data_gb=40)
        for k in range(3)
    ]
    result = cleared(market(gangs, offers(e=600, **LATER), (link(gbps=0.1),), n_slots=2))
    pools = sorted(a.pool_id for a in result.allocations)
    assert pools == ["e-a100", "w-a100", "w-a100"]
    assert sum(t.gb for t in result.transfers) == pytest.approx(80.0)


# --- class speed -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("h100_reserve", "expected"),
    [
        # The H100 is twice as fast here: 2 GPU-slots do the 4 reference GPU-hours and are
        # worth 2000 per GPU-hour. At 1500: 2 x 500 = 1000 < 4 x (1000 - 600) = 1600 on A100s.
        (1500, [("w-a100", 0, 4)]),
        # At 1000: 2 x 1000 = 2000 > 1600.
        (1000, [("w-h100", 0, 2)]),
    ],
)
def test_speed_decides_the_class(h100_reserve: int, expected: list[tuple[str, int, int]]) -> None:
    order = batch("a", gpus=4, hours=4, reference_class="A100", speed={"H100": 2.0})
    result = cleared(market([order], offers(e=900, w=600, h100=h100_reserve)))
    assert cells(result, "a") == expected
    assert result.welfare_fen == max(1600, 2 * (2000 - h100_reserve))
    g = greedy_clear(market([order], offers(e=900, w=600, h100=h100_reserve)))
    assert (
        check_clearing(
            market([order], offers(e=900, w=600, h100=h100_reserve)), g, uniform_prices=False
        )
        == []
    )


def test_default_speed_comes_from_fp16_tflops() -> None:
    # Reference H100 (989.4 TFLOPS) run on A100s (312): 3 reference GPU-hours take
    # floor(3 / 0.3153) = 9 A100 GPU-hours; each is worth 1000 x 0.3153 = 315.3 fen.
    order = batch(
        "a",
        gpus=10,
        hours=3,
        limit=1000,
        reference_class="H100",
        gpu_classes=frozenset({"A100"}),
        regions=frozenset({"west"}),
    )
    result = cleared(market([order], [Offer.over("fw", "pw", "w-a100", 0, 1, 16, 100)]))
    assert cells(result, "a") == [("w-a100", 0, 9)]
    assert result.allocations[0].price_fen == 100
    assert result.welfare_fen == int(9 * (1000 * 312.0 / 989.4 - 100))


def test_mixed_speeds_share_one_work_budget() -> None:
    # 6 reference GPU-hours; the H100 counts 2 per GPU-hour, the A100 1. Two H100s (4 h of
    # work, the cheap ones per unit of work) and then 2 A100 GPU-hours fill the budget.
    order = batch("a", gpus=4, hours=6, reference_class="A100", speed={"H100": 2.0})
    two_h100 = [
        Offer.over("fw", "pw", "w-a100", 0, 1, 4, 600),
        Offer.over("fh", "ph", "w-h100", 0, 1, 2, 800),
    ]
    result = cleared(market([order], two_h100))
    assert cells(result, "a") == [("w-a100", 0, 2), ("w-h100", 0, 2)]
    assert result.welfare_fen == 2 * (2000 - 800) + 2 * (1000 - 600)


def test_gang_duration_scales_with_speed() -> None:
    # Two reference slots of work; on the twice-as-fast H100 the gang needs one slot.
    gang = Order(
        "g",
        "b",
        "gang",
        2,
        0,
        2,
        1000,
        duration_slots=2,
        reference_class="A100",
        speed={"H100": 2.0},
        gpu_classes=frozenset({"H100"}),
    )
    result = cleared(market([gang], offers(h100=300, n=2), n_slots=2))
    ((pool, _, gpus),) = cells(result, "g")  # either slot: they cost the same
    assert (pool, gpus) == ("w-h100", 2)
    # Worth its work: 1000 x 2 GPUs x 2 reference hours, less 300 x 2 GPU-hours.
    assert result.welfare_fen == 1000 * 2 * 2 - 300 * 2


# --- properties on random markets --------------------------------------------------------


def examples(n: int) -> settings:
    return settings(max_examples=max(n, settings.default.max_examples))


def _sound(m: Market, result: ClearingResult) -> None:
    assert result.status is not ClearingStatus.FAILED, result.message
    assert check_clearing(m, result) == []
    s = settle(result)
    assert check_settlement(m, result, s) == []
    assert s.balanced
    assert result.welfare_fen >= 0


def _fine(m: Market) -> float:
    """Welfare the engine may give up to values rounded down to 1/100 fen per GPU-hour."""
    return 0.01 * m.grid.slot_hours * sum(o.gpus * m.n_slots for o in m.orders) + 1.0


@examples(150)
@given(markets(network=True))
def test_network_clearing_obeys_every_rule(m: Market) -> None:
    result = clear(m)
    _sound(m, result)
    assert result.welfare_fen <= reference_welfare(m) + 1e-6
    assert clear(m).allocations == result.allocations


@examples(100)
@given(markets(network=True, gangs=True, green=True, max_orders=5, max_slots=3))
def test_network_gang_green_clearing_obeys_every_rule(m: Market) -> None:
    result = clear(m)
    _sound(m, result)
    assert result.welfare_fen <= reference_welfare(m) + 1e-6


@examples(80)
@given(markets(network=True, green=True))
def test_lagrangian_side_rows_are_sound_and_bounded(m: Market) -> None:
    """Force the large-market path (Lagrangian pricing of side rows) on small markets."""
    result = clear(m, ClearingOptions(exact_green_columns=0))
    _sound(m, result)
    assert result.welfare_fen <= reference_welfare(m) + 1e-6


@examples(100)
@given(markets(network=True))
def test_network_path_is_the_optimum_when_every_speed_is_one(m: Market) -> None:
    """With one speed of 1 per order the reference LP is integral: when no side row binds
    (the network path) the engine's welfare is the optimum, up to values kept to 1/100 fen."""
    pools = {p.id: p for p in m.pools}
    assume(
        all(
            speed(m, o, pools[pool_id].gpu_class) == 1.0
            for o in m.orders
            for pool_id, _ in eligible_cells(m, o)
        )
    )
    result = clear(m)
    best = reference_welfare(m)
    assert result.welfare_fen <= best + 1e-6
    if result.method == "network":
        assert result.welfare_fen >= best - _fine(m)


@examples(60)
@given(markets(network=True))
def test_greedy_baseline_obeys_the_network_rules(m: Market) -> None:
    g = greedy_clear(m)
    assert check_clearing(m, g, uniform_prices=False) == []


@examples(120)
@given(network_markets(gangs=True))
def test_thin_links_and_mixed_speeds_obey_every_rule(m: Market) -> None:
    result = clear(m)
    _sound(m, result)
    assert result.welfare_fen <= reference_welfare(m) + 1e-6


@examples(60)
@given(network_markets())
def test_thin_links_on_the_lagrangian_path(m: Market) -> None:
    result = clear(m, ClearingOptions(exact_green_columns=0))
    _sound(m, result)
    assert result.welfare_fen <= reference_welfare(m) + 1e-6
    assert result.gap >= 0


@examples(60)
@given(network_markets(gangs=True))
def test_greedy_baseline_on_thin_links(m: Market) -> None:
    assert check_clearing(m, greedy_clear(m), uniform_prices=False) == []
