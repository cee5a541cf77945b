"""The network rules in one place: latency, data links, delays, speeds and data moved."""

from __future__ import annotations

import pytest

from suangu.core.network import (
    feasible_pools,
    latency_ms,
    links_by_key,
    pool_terms,
    work_hours,
    work_share,
)
from suangu.core.types import Link, Market, Offer, Order, Pool, Site, TimeGrid

EAST = Site("E", "East", "Shanghai", "east")
WEST = Site("W", "West", "Gansu", "west", latency_ms={"beijing": 30.0})
POOLS = (Pool("e", "E", "A100"), Pool("w", "W", "H100"))
LINK = Link("east", "west", 25.0, 10.0, 3)


def market(*orders: Order, links: tuple[Link, ...] = (LINK,)) -> Market:
    return Market(TimeGrid(), 0, 4, (EAST, WEST), POOLS, (), orders, links=links)


def order(**kw: object) -> Order:
    base: dict[str, object] = {"home": "east", "limit_fen": 1000, "gpu_hours": 8}
    base.update(kw)
    return Order("o", "b", "batch", 2, 0, 4, **base)  # type: ignore[arg-type]


def test_latency_prefers_the_sites_table_then_home_region_then_link() -> None:
    links = links_by_key(market())
    assert latency_ms(WEST, "beijing", links) == 30.0  # the site's own entry
    assert latency_ms(EAST, "east", links) == 0.0  # home region
    assert latency_ms(WEST, "east", links) == 25.0  # the link
    assert latency_ms(EAST, "west", links) is None  # no entry, no link back


def test_terms_at_home_and_away() -> None:
    o = order(data_gb=9000, reference_class="A100")
    m = market(o)
    links = links_by_key(m)
    home = pool_terms(m, o, POOLS[0], EAST, links)
    away = pool_terms(m, o, POOLS[1], WEST, links)
    assert home is not None and away is not None
    assert (home.speed, home.delay_slots, home.link, home.gb_per_gpu_slot) == (1.0, 0, None, 0.0)
    assert away.link == LINK and away.delay_slots == 2  # 9,000 GB at 10 Gbit/s = 7,200 s
    assert away.speed == pytest.approx(989.4 / 312.0)
    # One H100 GPU-slot does speed/8 of the 8 reference GPU-hours: that share of the data.
    assert away.gb_per_gpu_slot == pytest.approx(9000 * away.speed / 8)
    assert away.transfer_fen_per_gpu_slot == pytest.approx(3 * away.gb_per_gpu_slot)


def test_data_needs_a_link_and_latency_bounds_use_it() -> None:
    o = order(data_gb=1)
    m = market(o, links=())
    assert pool_terms(m, o, POOLS[1], WEST, {}) is None  # data cannot reach the west
    bound = order(max_latency_ms=20.0)
    m = market(bound)
    assert pool_terms(m, bound, POOLS[1], WEST, links_by_key(m)) is None  # 25 ms > 20
    assert pool_terms(m, bound, POOLS[0], EAST, links_by_key(m)) is not None  # 0 ms at home


def test_gang_duration_and_whole_data_per_placement() -> None:
    gang = Order(
        "g", "b", "gang", 2, 0, 4, 1000, duration_slots=3, home="east", data_gb=60,
        reference_class="A100", speed={"H100": 2.0},
    )  # fmt: skip
    m = market(gang)
    t = pool_terms(m, gang, POOLS[1], WEST, links_by_key(m))
    assert t is not None and t.duration_slots == 2  # ceil(3 / 2)
    assert t.gb_per_gpu_slot * 2 * 2 == pytest.approx(60.0)  # all its data, once


def test_work_of_each_kind() -> None:
    assert work_hours(order(), 1) == 8.0
    service = Order("s", "b", "service", 3, 0, 4, 1000)
    assert work_hours(service, 1) == 12.0 and work_share(service, 5.0, 1) == pytest.approx(1 / 12)
    assert work_share(order(), 2.0, 1) == pytest.approx(2 / 8)


def test_feasible_pools_need_rules_time_and_price() -> None:
    """Order: 2 GPUs, window [0, 4), 8 GPU-hours (the whole window at full width), 10.00
    yuan per GPU-hour; asks 9.00 in the east, 12.00 in the west."""
    offers = (Offer.over("oe", "p", "e", 0, 4, 8, 900), Offer.over("ow", "p", "w", 0, 4, 8, 1200))
    m = market()
    assert feasible_pools(m, order(), offers) == ("e",)  # the west asks more than it is worth
    assert feasible_pools(m, order(limit_fen=1300), offers) == ("e", "w")
    # 9,000 GB of data wait 2 slots for the (free) link to the west: 2 slots of work then
    # just fit in the window, 3 do not.
    free = market(links=(Link("east", "west", 25.0, 10.0, 0),))
    two = order(limit_fen=1300, data_gb=9000, gpu_hours=4)
    three = order(limit_fen=1300, data_gb=9000, gpu_hours=6)
    assert feasible_pools(free, two, offers) == ("e", "w")
    assert feasible_pools(free, three, offers) == ("e",)
    # Class rules, asks below value only outside the window, or no offer at all: none.
    assert feasible_pools(m, order(gpu_classes=frozenset({"H100"})), offers) == ()
    assert feasible_pools(m, order(), (Offer.over("oe", "p", "e", 4, 8, 8, 100),)) == ()
    assert feasible_pools(m, order(), ()) == ()


def test_feasible_pools_gangs_services_and_empty_slots() -> None:
    m = market()
    # A gang of 8 needs all 8 GPUs of a pool in a slot; the east offers 4.
    gang = Order("g", "b", "gang", 8, 0, 4, 1300, duration_slots=2, home="east")
    offers = (Offer.over("oe", "p", "e", 0, 4, 4, 900), Offer.over("ow", "p", "w", 0, 4, 8, 900))
    assert feasible_pools(m, gang, offers) == ("w",)
    # A service for its whole window cannot wait for data: away from home it is ruled out.
    free = market(links=(Link("east", "west", 25.0, 10.0, 0),))
    service = Order("s", "b", "service", 1, 0, 4, 1300, home="east", data_gb=9000)
    assert feasible_pools(free, service, offers) == ("e",)
    # Slots where nothing is offered do not count, whatever their reserve.
    empty = (Offer.over("oe", "p", "e", 0, 4, [0, 0, 0, 0], 100),)
    assert feasible_pools(m, order(), empty) == ()
