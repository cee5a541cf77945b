"""Market hooks: energy-cost reserves, carbon price, modelled green share into a clearing."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from suangu.core.clearing import clear
from suangu.core.energy._common import year_start_unix
from suangu.core.energy.hooks import (
    apply_carbon_price,
    carbon_cost_fen,
    carbon_for_market,
    energy_cost_fen,
    green_share_for_market,
    reserve_from_energy,
    reserves_from_energy,
)
from suangu.core.energy.model import SiteYear
from suangu.core.errors import UnknownReferenceError, ValidationError
from suangu.core.types import ClearingStatus, Market, Offer, Order, OrderKind, Pool, Site, TimeGrid

GRID = TimeGrid(epoch=year_start_unix(2024, 8))
FIRST = 24 * 200  # a July day
N = 24


def market(min_green: float = 0.0) -> Market:
    sites = (
        Site("horinger", "Horinger", "Inner Mongolia", "inner_mongolia"),
        Site("zhongwei", "Zhongwei", "Ningxia", "ningxia"),
    )
    pools = (Pool("h-h100", "horinger", "H100"), Pool("z-a800", "zhongwei", "A800"))
    offers = (
        Offer.over("oh", "cloudvalley", "h-h100", FIRST, FIRST + N, 40, 800),
        Offer.over("oz", "westdc", "z-a800", FIRST, FIRST + N, 40, 500),
    )
    orders = tuple(
        Order(
            f"b{k}",
            f"buyer{k % 2}",
            OrderKind.BATCH,
            gpus=20,
            release_slot=FIRST,
            deadline_slot=FIRST + N,
            limit_fen=1500 + 100 * k,
            gpu_hours=200,
            min_green_share=min_green,
        )
        for k in range(4)
    )
    return Market(GRID, FIRST, N, sites, pools, offers, orders)


@pytest.fixture(scope="module")
def site_years(horinger: SiteYear, zhongwei: SiteYear) -> dict[str, SiteYear]:
    return {"horinger": horinger, "zhongwei": zhongwei}


def test_reserve_from_energy(horinger: SiteYear) -> None:
    m = market()
    offer, pool = m.offers[0], m.pools[0]
    cost = energy_cost_fen(horinger, "H100", GRID, range(FIRST, FIRST + N))
    hourly = horinger.energy_cost_per_gpu_hour("H100")[FIRST : FIRST + N] * 100
    assert np.allclose(cost, hourly)
    priced = reserve_from_energy(offer, pool, horinger, GRID, margin_fen=50, markup=0.1)
    assert priced.gpus == offer.gpus
    for r, c in zip(priced.reserve_fen, cost, strict=True):
        assert r == math.ceil(c * 1.1 - 1e-9) + 50
        assert r >= c * 1.1 + 50 - 1e-6  # never below cost plus margin
    plain = reserve_from_energy(offer, pool, horinger, GRID)
    assert 10 < max(plain.reserve_fen) < 40  # 0.49 kWh x PUE x ~0.32-0.63 yuan, in fen
    with pytest.raises(ValidationError, match="pool"):
        reserve_from_energy(offer, m.pools[1], horinger, GRID)


def test_reserves_from_energy_only_opted_in(site_years: dict[str, SiteYear]) -> None:
    m = market()
    out = reserves_from_energy(m, site_years, {"oz"}, margin_fen=100)
    assert out.offers[0] == m.offers[0]
    assert out.offers[1].reserve_fen != m.offers[1].reserve_fen
    with pytest.raises(UnknownReferenceError, match="site"):
        reserves_from_energy(m, {}, {"oh"})


def test_slot_outside_year(horinger: SiteYear) -> None:
    m = market()
    late = Offer.over("late", "p", "h-h100", 8784 - 2, 8784 + 2, 1, 1)
    with pytest.raises(ValidationError, match="outside 2024"):
        reserve_from_energy(late, m.pools[0], horinger, GRID)


def test_carbon_price_raises_reserves_by_exactly_the_carbon_cost(
    site_years: dict[str, SiteYear],
) -> None:
    m = market()
    carbon = carbon_for_market(m, site_years)
    assert set(carbon) == {"h-h100", "z-a800"} and len(carbon["h-h100"]) == N
    hourly = site_years["horinger"].carbon_g_per_gpu_hour("H100")[FIRST : FIRST + N]
    assert np.allclose(carbon["h-h100"], hourly)
    priced = apply_carbon_price(m, carbon, 100.0)
    for before, after in zip(m.offers, priced.offers, strict=True):
        for k, (r0, r1) in enumerate(zip(before.reserve_fen, after.reserve_fen, strict=True)):
            assert r1 - r0 == carbon_cost_fen(carbon[before.pool_id][k], 100.0)
    # 1 t at 100 yuan/t is 10,000 fen; 500 g is 5 fen
    assert carbon_cost_fen(1_000_000, 100.0) == 10_000
    assert carbon_cost_fen(500, 100.0) == 5
    assert apply_carbon_price(m, carbon, 0.0).offers == m.offers
    with pytest.raises(UnknownReferenceError):
        apply_carbon_price(m, {"h-h100": carbon["h-h100"]}, 100.0)
    with pytest.raises(ValidationError, match="yuan_per_t"):
        apply_carbon_price(m, carbon, -5.0)


def test_carbon_price_is_a_cost_in_the_clearing(site_years: dict[str, SiteYear]) -> None:
    m = reserves_from_energy(market(), site_years, {"oh", "oz"})
    carbon = carbon_for_market(m, site_years)
    priced = apply_carbon_price(m, carbon, 2000.0)
    before, after = clear(m), clear(priced)
    assert after.status is ClearingStatus.OPTIMAL
    assert after.welfare_fen <= before.welfare_fen  # carbon is a cost
    reserve = {(o.pool_id, o.start_slot + k): r for o in priced.offers
               for k, r in enumerate(o.reserve_fen)}  # fmt: skip
    for fill in after.fills:  # sellers are paid at least energy + carbon cost
        if fill.gpus:
            assert fill.price_fen >= reserve[(fill.pool_id, fill.slot)]


def test_green_share_feeds_the_clearing(site_years: dict[str, SiteYear]) -> None:
    m = green_share_for_market(market(min_green=0.9), site_years)
    share = {p: np.array(v) for p, v in m.green_share.items()}
    hourly = site_years["horinger"].green_share[FIRST : FIRST + N]
    assert np.allclose(share["h-h100"], hourly)
    result = clear(m)
    assert result.status in (ClearingStatus.OPTIMAL, ClearingStatus.FEASIBLE)
    assert result.allocations  # something clears
    for order in m.orders:
        mine = [a for a in result.allocations if a.order_id == order.id]
        gpu_slots = sum(a.gpus for a in mine)
        green = sum(a.gpus * share[a.pool_id][a.slot - FIRST] for a in mine)
        assert green >= order.min_green_share * gpu_slots - 1e-9
    # without green minimums the clearing sells more
    plain = clear(dataclasses.replace(m, orders=tuple(market().orders)))
    assert sum(a.gpus for a in plain.allocations) >= sum(a.gpus for a in result.allocations)


def test_green_share_keeps_pools_without_model(horinger: SiteYear) -> None:
    m = dataclasses.replace(market(), green_share={"z-a800": (0.5,) * N})
    out = green_share_for_market(m, {"horinger": horinger})
    assert out.green_share["z-a800"] == (0.5,) * N
    assert len(out.green_share["h-h100"]) == N
