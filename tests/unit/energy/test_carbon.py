"""Emission factors, grams, location/market-based carbon and avoided CO2."""

from __future__ import annotations

import pytest

from suangu.core.energy.carbon import (
    AvoidanceMethod,
    EmissionFactor,
    FactorTable,
    avoided_co2,
    grams,
    grid_average_method,
    location_based_g,
    market_based_g,
)
from suangu.core.errors import UnknownReferenceError, ValidationError
from suangu.sim.energy import EnergyData

ROWS = [
    {"level": "province", "name_cn": "内蒙古", "name_en": "Inner Mongolia",
     "factor_2021": "0.7025", "factor_2022": "0.6849"},
    {"level": "province", "name_cn": "北京", "name_en": "Beijing",
     "factor_2021": "0.5688", "factor_2022": "0.558"},
]  # fmt: skip


def test_factor_table_lookup() -> None:
    table = FactorTable.from_rows(ROWS, "test")
    assert table.get("Inner Mongolia", 2022).t_per_mwh == 0.6849
    assert table.get("内蒙古", 2021).t_per_mwh == 0.7025
    assert table.get("inner mongolia").year == 2022  # latest
    assert table.get("Beijing", 2030).year == 2022  # latest before
    assert table.get("Beijing", 2000).year == 2021  # first published
    with pytest.raises(UnknownReferenceError, match="Mars"):
        table.get("Mars")


def test_packaged_factors(energy_data: EnergyData) -> None:
    f = energy_data.factors
    assert f.get("Inner Mongolia", 2022).t_per_mwh == 0.6849
    assert f.get("Sichuan", 2022).t_per_mwh == 0.1404
    assert "MEE" in f.get("Beijing").source


def test_grams_and_methods() -> None:
    factor = EmissionFactor("Inner Mongolia", 2022, 0.6849)
    assert grams(1000, 0.6849) == 685  # 1 kWh = 684.9 g, half up
    assert location_based_g(1_000_000, factor) == 684_900  # 1 MWh = 0.6849 t
    assert market_based_g(1000, 1000, 0.6849) == 0
    assert market_based_g(1000, 400, 0.6849) == grams(600, 0.6849)
    assert market_based_g(1000, 5000, 0.6849) == 0
    with pytest.raises(ValidationError):
        market_based_g(1000, -1, 0.6849)
    assert "Inner Mongolia province grid average 2022, 0.6849 t/MWh" in factor.label


def test_avoided_co2_labels() -> None:
    grid = grid_average_method(EmissionFactor("Inner Mongolia", 2022, 0.6849))
    coal = AvoidanceMethod("coal_displacement", 0.836, "coal-fired generation displaced", "x")
    a = avoided_co2(760_000, grid)
    b = avoided_co2(760_000, coal)
    assert a.tonnes == pytest.approx(520_524)
    assert b.tonnes == pytest.approx(635_360)
    assert "grid_average" in a.label and "0.6849" in a.label
    assert "coal_displacement" in b.label
    c = avoided_co2(10.0, coal, actual_tonnes=1.0)
    assert c.tonnes == pytest.approx(7.36) and "actual" in c.label
    with pytest.raises(ValidationError):
        AvoidanceMethod("", 0.5, "d", "s")
