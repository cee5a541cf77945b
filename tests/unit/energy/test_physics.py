"""Solar, wind, climate/PUE and tariff modules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from suangu.core.energy._common import calendar, hours_in_year, rng_for, year_start_unix
from suangu.core.energy.climate import ClimateParams, PueModel, pue, temperature
from suangu.core.energy.solar import (
    SolarParams,
    calibrate_output,
    clear_sky_poa,
    solar_output,
)
from suangu.core.energy.tariff import Period, TouTariff
from suangu.core.energy.wind import TurbineCurve, WindParams, power_curve, wind_speed
from suangu.core.errors import ValidationError


def rng(seed: int = 0) -> np.random.Generator:
    return rng_for(seed, "test", 2024, "x")


# --- calendar ---------------------------------------------------------------------------------


def test_calendar() -> None:
    assert hours_in_year(2024) == 8784
    assert hours_in_year(2023) == 8760
    month, day, hour = calendar(2023)
    assert month[0] == 1 and month[-1] == 12 and (month == 2).sum() == 28 * 24
    assert day[-1] == 364 and hour[:25].tolist() == [*range(24), 0]
    # local midnight 2024-01-01 at UTC+8 is 2023-12-31T16:00Z
    assert year_start_unix(2024, 8) == 1704038400
    with pytest.raises(ValidationError, match="year"):
        hours_in_year(1900)


# --- solar ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def poa() -> np.ndarray:
    return clear_sky_poa(40.55, 111.85, 1100.0, 2024, 8, SolarParams(60.0))


def test_clear_sky_poa_is_physical(poa: np.ndarray) -> None:
    _, _, hour = calendar(2024)
    assert poa.shape == (8784,)
    assert (poa >= 0).all()
    assert (poa[(hour <= 3) | (hour >= 22)] == 0).all()  # night
    assert 900 < poa.max() < 1300  # W/m2 on a tilted array under clear sky
    # solar noon at 111.85 E in UTC+8 is about 12:33 local: 12:00-13:00 is the brightest hour
    assert np.argmax([poa[hour == h].mean() for h in range(24)]) == 12


def test_solar_capacity_factor_is_exact_and_capped() -> None:
    params = SolarParams(60.0, capacity_factor=0.17)
    out = solar_output(40.55, 111.85, 1100.0, 2024, 8, params, rng())
    assert out.mean() / 60.0 == pytest.approx(0.17, rel=1e-6)
    assert out.max() <= 60.0 + 1e-9 and out.min() >= 0
    again = solar_output(40.55, 111.85, 1100.0, 2024, 8, params, rng())
    assert np.array_equal(out, again)  # seeded
    other = solar_output(40.55, 111.85, 1100.0, 2024, 8, params, rng(1))
    assert not np.array_equal(out, other)
    assert other.mean() / 60.0 == pytest.approx(0.17, rel=1e-6)


def test_solar_calibration_limits() -> None:
    shape = np.array([0.0, 1.0, 2.0, 0.0])
    out = calibrate_output(shape, 10.0, 0.3)
    assert out.mean() == pytest.approx(3.0)
    assert out.max() <= 10.0
    with pytest.raises(ValidationError, match="unreachable"):
        calibrate_output(shape, 10.0, 0.6)
    assert (calibrate_output(shape, 0.0, 0.3) == 0).all()


def test_solar_params_validated() -> None:
    with pytest.raises(ValidationError, match="linke_turbidity"):
        SolarParams(10.0, linke_turbidity=(3.0,) * 11)
    with pytest.raises(ValidationError, match="capacity_factor"):
        SolarParams(10.0, capacity_factor=0.9)


# --- wind -------------------------------------------------------------------------------------


def test_power_curve() -> None:
    t = TurbineCurve(3.0, 12.0, 25.0)
    v = np.array([0.0, 2.99, 3.0, 7.5, 12.0, 20.0, 24.99, 25.0, 30.0])
    p = power_curve(v, t)
    assert p.tolist()[:3] == [0.0, 0.0, 0.0]
    assert 0 < p[3] < 1
    assert p[4:7].tolist() == [1.0, 1.0, 1.0]
    assert p[7:].tolist() == [0.0, 0.0]
    grid = np.linspace(3, 12, 50)
    assert (np.diff(power_curve(grid, t)) >= 0).all()
    with pytest.raises(ValidationError, match="cut_in"):
        TurbineCurve(5.0, 4.0, 25.0)


def test_wind_speed_marginal_is_weibull() -> None:
    params = WindParams(1.0, 7.0, 2.2, persistence=0.0, seasonal_amplitude=0, diurnal_amplitude=0)
    v = wind_speed(params, 2023, rng())
    c = 7.0 / math.gamma(1 + 1 / 2.2)
    ks = stats.kstest(v, stats.weibull_min(2.2, scale=c).cdf)
    assert ks.pvalue > 0.01
    assert v.mean() == pytest.approx(7.0, rel=0.03)


def test_wind_speed_persistence_and_shape() -> None:
    params = WindParams(300.0, 6.5, persistence=0.96, seasonal_amplitude=0.2, peak_day=105)
    v = np.concatenate([wind_speed(params, 2023, rng(s)) for s in range(3)])
    lag1 = np.corrcoef(v[:-1], v[1:])[0, 1]
    assert lag1 > 0.9
    assert v.mean() == pytest.approx(6.5, rel=0.08)
    month, _, hour = calendar(2023)
    month3 = np.tile(month, 3)
    spring = v[(month3 >= 3) & (month3 <= 5)].mean()
    autumn = v[(month3 >= 9) & (month3 <= 11)].mean()
    assert spring > autumn  # seasonal peak in April
    hour3 = np.tile(hour, 3)
    assert v[hour3 == 22].mean() > v[hour3 == 10].mean()  # diurnal peak at night


# --- climate and PUE --------------------------------------------------------------------------


def test_temperature_normals() -> None:
    c = ClimateParams(mean_c=6.7, annual_amplitude_c=17.0, diurnal_amplitude_c=6.5)
    t = temperature(c, 2023, rng())
    month, _, hour = calendar(2023)
    assert t.mean() == pytest.approx(6.7, abs=1.5)
    assert t[month == 1].mean() == pytest.approx(6.7 - 17.0, abs=3.0)
    assert t[month == 7].mean() == pytest.approx(6.7 + 17.0 * 0.97, abs=3.0)
    assert t[hour == 15].mean() - t[hour == 3].mean() == pytest.approx(2 * 6.5, abs=1.5)


def test_pue_model() -> None:
    m = PueModel(floor=1.15, free_cooling_c=12.0, slope_per_c=0.01, ceiling=1.3)
    got = pue(np.array([-20.0, 12.0, 22.0, 40.0]), m)
    assert got.tolist() == pytest.approx([1.15, 1.15, 1.25, 1.3])
    with pytest.raises(ValidationError, match="ceiling"):
        PueModel(floor=1.4, ceiling=1.3)


# --- tariff -----------------------------------------------------------------------------------


def test_tariff() -> None:
    hours = [Period.VALLEY] * 8 + [Period.PEAK] * 4 + [Period.FLAT] * 12
    t = TouTariff("t", tuple(hours), {Period.VALLEY: 0.2, Period.PEAK: 0.6, "flat": 0.4})
    assert t.price_at(np.array([0, 8, 12, 23, 24])).tolist() == [0.2, 0.6, 0.4, 0.4, 0.2]
    assert t.mean_price() == pytest.approx((8 * 0.2 + 4 * 0.6 + 12 * 0.4) / 24)
    with pytest.raises(ValidationError, match="24"):
        TouTariff("t", tuple(hours[:23]), {"valley": 0.2, "peak": 0.6, "flat": 0.4})
    with pytest.raises(ValidationError, match=r"prices\.flat"):
        TouTariff("t", tuple(hours), {"valley": 0.2, "peak": 0.6})
    with pytest.raises(ValidationError, match="unknown period"):
        TouTariff("t", ("noon",) * 24, {"flat": 0.4})  # type: ignore[arg-type]
