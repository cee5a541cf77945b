"""The site-year model against the published Horinger direct-supply project."""

from __future__ import annotations

import numpy as np
import pytest

from suangu.core.energy.carbon import avoided_co2
from suangu.core.energy.model import SiteYear, gpu_it_kw, simulate_site_year
from suangu.core.gpus import CATALOGUE
from suangu.sim.energy import EnergyData

PUBLISHED_GWH = 760.0
PUBLISHED_AVOIDED_T = 635_000.0


def test_published_assets(energy_data: EnergyData) -> None:
    p = energy_data.site("horinger")
    assert (p.wind.capacity_mw, p.solar.capacity_mw) == (300, 60)
    assert (p.storage.power_mw, p.storage.energy_mwh) == (64.8, 259.2)
    assert p.grid_factor.t_per_mwh == 0.6849 and p.grid_factor.year == 2022
    assert p.green_price_yuan_per_kwh == 0.32


def test_annual_generation_about_760_gwh(horinger: SiteYear) -> None:
    gwh = horinger.generation.sum() / 1000
    assert gwh == pytest.approx(PUBLISHED_GWH, rel=0.10)


def test_annual_generation_over_weather_years(energy_data: EnergyData) -> None:
    """The mean over eight modelled weather years is within 5%; each year varies (wind)."""
    p = energy_data.site("horinger")
    years = [simulate_site_year(p, 2023, seed).generation.sum() / 1000 for seed in range(8)]
    assert np.mean(years) == pytest.approx(PUBLISHED_GWH, rel=0.05)
    assert 0.03 < np.std(years) / np.mean(years) < 0.12  # interannual variability


def test_green_share_and_pue(horinger: SiteYear) -> None:
    total = horinger.annual()
    assert total.green_share > 0.80
    assert total.pue == pytest.approx(1.2, abs=0.03)
    assert horinger.pue.min() >= 1.15 and horinger.pue.max() < 1.4


def test_avoided_co2_named_methods(horinger: SiteYear, energy_data: EnergyData) -> None:
    methods = {m.name: m for m in energy_data.avoidance_methods("Inner Mongolia", 2022)}
    assert set(methods) >= {"grid_average", "coal_displacement"}
    assert methods["grid_average"].t_per_mwh == 0.6849
    # the published claim is reproduced by coal displacement on the published generation ...
    coal = avoided_co2(PUBLISHED_GWH * 1000, methods["coal_displacement"])
    assert coal.tonnes == pytest.approx(PUBLISHED_AVOIDED_T, rel=0.005)
    assert "coal_displacement" in coal.label and "0.8360" in coal.label
    # ... and not by the grid average (about 521 kt)
    grid = avoided_co2(PUBLISHED_GWH * 1000, methods["grid_average"])
    assert grid.tonnes == pytest.approx(520_524, rel=0.001)
    # with the modelled generation, within the model's 10%
    modelled = avoided_co2(horinger.generation.sum(), methods["coal_displacement"])
    assert modelled.tonnes == pytest.approx(PUBLISHED_AVOIDED_T, rel=0.10)


def test_conservation_every_hour(horinger: SiteYear) -> None:
    f = horinger.flows
    assert np.allclose(horinger.generation, f.direct + f.charge + f.curtailed, atol=1e-9)
    assert np.allclose(horinger.load, f.direct + f.discharge + f.grid, atol=1e-9)
    assert np.allclose(horinger.load, horinger.it_load * horinger.pue)
    share = horinger.green_share
    assert ((share >= 0) & (share <= 1)).all()
    rows = horinger.monthly()
    assert sum(r.generation_mwh for r in rows) == pytest.approx(horinger.annual().generation_mwh)
    assert sum(r.co2_t for r in rows) == pytest.approx(horinger.annual().co2_t)
    a = horinger.annual()
    assert a.generation_mwh == pytest.approx(
        a.green_used_mwh - a.discharge_mwh + a.charge_mwh + a.curtailed_mwh
    )


def test_deterministic(energy_data: EnergyData, horinger: SiteYear) -> None:
    again = simulate_site_year(energy_data.site("horinger"), 2024, seed=0)
    assert np.array_equal(again.generation, horinger.generation)
    assert np.array_equal(again.load, horinger.load)


def test_gpu_hour_cost_and_carbon(horinger: SiteYear) -> None:
    h100 = CATALOGUE["H100-SXM-80GB"]
    assert gpu_it_kw(h100, 0.7) == pytest.approx(0.49)
    kwh = horinger.gpu_kwh("H100")
    assert np.allclose(kwh, 0.49 * horinger.pue)
    cost = horinger.energy_cost_per_gpu_hour("H100")
    price = horinger.blended_price()
    assert np.allclose(cost, kwh * price)
    # blended price lies between the green price and the tariff
    lo = np.minimum(0.32, horinger.tariff) - 1e-12
    hi = np.maximum(0.32, horinger.tariff) + 1e-12
    assert ((price >= lo) & (price <= hi)).all()
    carbon = horinger.carbon_g_per_gpu_hour("H100")
    assert np.allclose(carbon, kwh * (1 - horinger.green_share) * 684.9)
    full_green = horinger.green_share == 1.0
    assert full_green.any() and (carbon[full_green] == 0).all()
    # a smaller GPU costs proportionally less
    a800 = horinger.energy_cost_per_gpu_hour("A800")
    assert np.allclose(a800 / cost, 400 / 700)


def test_other_hubs_run(zhongwei: SiteYear) -> None:
    assert zhongwei.hours == 8784
    assert 0 < zhongwei.annual().green_share < 1
