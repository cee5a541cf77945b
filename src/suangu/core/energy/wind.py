"""Wind output: a seeded hub-height wind-speed process through a turbine power curve.

The speed process (vectorised, one year of hours):

* **Persistence**: a stationary Gaussian AR(1) series ``z`` with lag-one correlation
  ``persistence`` (0.96 per hour keeps calm and windy spells for a day or two).
* **Weibull marginal**: ``u = Phi(z)`` is uniform, and ``(-ln(1 - u)) ** (1 / k)`` is Weibull
  with shape ``k`` and unit scale (a Gaussian copula: the marginal is exactly Weibull while
  the autocorrelation comes from ``z``).
* **Seasonal and diurnal shape**: the Weibull scale is
  ``c * (1 + a_s cos(2 pi (day - peak_day) / 365)) * (1 + a_d cos(2 pi (hour - peak_hour) / 24))``
  with ``c = mean_speed / Gamma(1 + 1/k)``, so the annual mean speed is ``mean_speed``.

The power curve is the usual idealised one: zero below cut-in and above cut-out, cubic in
speed between cut-in and rated, and rated power between rated speed and cut-out. Output is
``capacity * curve(v) * (1 - losses)`` (wake, availability and electrical losses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from suangu.core.energy._common import FloatArray, ar1, calendar, check_range, require


@dataclass(frozen=True, slots=True)
class TurbineCurve:
    """An idealised turbine power curve (per unit of rated power)."""

    cut_in_ms: float = 3.0
    rated_ms: float = 11.5
    cut_out_ms: float = 25.0

    def __post_init__(self) -> None:
        check_range(self.cut_in_ms, "turbine.cut_in_ms", 0.0, 10.0, "m/s, typically 3")
        check_range(self.rated_ms, "turbine.rated_ms", 1.0, 30.0, "m/s, typically 10-13")
        check_range(self.cut_out_ms, "turbine.cut_out_ms", 1.0, 50.0, "m/s, typically 20-25")
        require(
            self.cut_in_ms < self.rated_ms < self.cut_out_ms,
            "turbine",
            "needs cut_in < rated < cut_out",
            "e.g. 3, 11.5, 25 m/s",
        )


@dataclass(frozen=True, slots=True)
class WindParams:
    """A wind farm and the wind regime at its hub height."""

    capacity_mw: float
    mean_speed_ms: float = 7.0
    weibull_k: float = 2.0
    persistence: float = 0.96
    seasonal_amplitude: float = 0.1
    peak_day: int = 105
    diurnal_amplitude: float = 0.08
    peak_hour: float = 22.0
    losses: float = 0.12
    turbine: TurbineCurve = TurbineCurve()

    def __post_init__(self) -> None:
        check_range(self.capacity_mw, "wind.capacity_mw", 0.0, 1e6, "MW")
        check_range(self.mean_speed_ms, "wind.mean_speed_ms", 0.5, 20.0, "m/s at hub height")
        check_range(self.weibull_k, "wind.weibull_k", 1.0, 5.0, "typically 1.8-2.4")
        check_range(self.persistence, "wind.persistence", 0.0, 0.999, "hourly lag-1, ~0.96")
        check_range(self.seasonal_amplitude, "wind.seasonal_amplitude", 0.0, 0.9, "e.g. 0.1")
        check_range(self.peak_day, "wind.peak_day", 0, 365, "day of year, 0 = 1 January")
        check_range(self.diurnal_amplitude, "wind.diurnal_amplitude", 0.0, 0.9, "e.g. 0.08")
        check_range(self.peak_hour, "wind.peak_hour", 0.0, 24.0, "local hour")
        check_range(self.losses, "wind.losses", 0.0, 0.9, "wake + availability, e.g. 0.12")


def power_curve(speed_ms: FloatArray, turbine: TurbineCurve) -> FloatArray:
    """Output per unit of rated power at hub-height wind speeds ``speed_ms``."""
    v = np.asarray(speed_ms, dtype=np.float64)
    ci3, r3 = turbine.cut_in_ms**3, turbine.rated_ms**3
    partial = (v**3 - ci3) / (r3 - ci3)
    out = np.where(v < turbine.cut_in_ms, 0.0, np.where(v < turbine.rated_ms, partial, 1.0))
    result: FloatArray = np.where(v >= turbine.cut_out_ms, 0.0, out)
    return result


def wind_speed(params: WindParams, year: int, rng: np.random.Generator) -> FloatArray:
    """Hourly hub-height wind speed, m/s, over ``year`` (local hours)."""
    from scipy.special import ndtr

    _, day, hour = calendar(year)
    n = len(day)
    z = ar1(rng, n, params.persistence)
    u = np.clip(ndtr(z), 1e-12, 1.0 - 1e-12)
    unit = (-np.log1p(-u)) ** (1.0 / params.weibull_k)
    scale = params.mean_speed_ms / math.gamma(1.0 + 1.0 / params.weibull_k)
    seasonal = 1.0 + params.seasonal_amplitude * np.cos(
        2.0 * np.pi * (day - params.peak_day) / 365.0
    )
    diurnal = 1.0 + params.diurnal_amplitude * np.cos(
        2.0 * np.pi * (hour - params.peak_hour) / 24.0
    )
    out: FloatArray = scale * seasonal * diurnal * unit
    return out


def wind_output(params: WindParams, year: int, rng: np.random.Generator) -> FloatArray:
    """Hourly output, MW (= MWh per hour), of the wind farm over ``year``."""
    speed = wind_speed(params, year, rng)
    out: FloatArray = (
        params.capacity_mw * (1.0 - params.losses) * power_curve(speed, params.turbine)
    )
    return out
