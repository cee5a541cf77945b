"""Ambient temperature per site-hour and the PUE it gives.

Temperature: an annual cosine (coldest around ``coldest_day``), a diurnal cosine (warmest at
``warmest_hour`` local time) and seeded synoptic noise (AR(1), weather that lasts a few days),
from climate normals given per site (mean, January and July means are enough to set them).

PUE: facility power / IT power. Below ``free_cooling_c`` the data centre cools with outside
air and its overhead is the constant ``floor`` (fans, power conversion, lighting); above it,
mechanical cooling adds ``slope_per_c`` per degree, up to ``ceiling``::

    PUE(T) = min(ceiling, floor + slope_per_c * max(0, T - free_cooling_c))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from suangu.core.energy._common import FloatArray, ar1, calendar, check_range, require


@dataclass(frozen=True, slots=True)
class ClimateParams:
    """Climate normals of a site, °C."""

    mean_c: float
    annual_amplitude_c: float
    diurnal_amplitude_c: float = 6.0
    coldest_day: int = 15
    warmest_hour: float = 15.0
    noise_sd_c: float = 3.0
    noise_persistence: float = 0.97

    def __post_init__(self) -> None:
        check_range(self.mean_c, "climate.mean_c", -40.0, 40.0, "annual mean, °C")
        check_range(self.annual_amplitude_c, "climate.annual_amplitude_c", 0.0, 40.0, "°C")
        check_range(self.diurnal_amplitude_c, "climate.diurnal_amplitude_c", 0.0, 20.0, "°C")
        check_range(self.coldest_day, "climate.coldest_day", 0, 365, "day of year")
        check_range(self.warmest_hour, "climate.warmest_hour", 0.0, 24.0, "local hour")
        check_range(self.noise_sd_c, "climate.noise_sd_c", 0.0, 15.0, "°C")
        check_range(self.noise_persistence, "climate.noise_persistence", 0.0, 0.999, "lag-1")


@dataclass(frozen=True, slots=True)
class PueModel:
    """PUE as a function of ambient temperature (see the module docs)."""

    floor: float = 1.15
    free_cooling_c: float = 12.0
    slope_per_c: float = 0.008
    ceiling: float = 1.6

    def __post_init__(self) -> None:
        check_range(self.floor, "pue.floor", 1.0, 3.0, "PUE with free cooling, e.g. 1.15")
        check_range(self.free_cooling_c, "pue.free_cooling_c", -20.0, 40.0, "°C")
        check_range(self.slope_per_c, "pue.slope_per_c", 0.0, 0.2, "PUE per °C, e.g. 0.008")
        check_range(self.ceiling, "pue.ceiling", 1.0, 3.0, "the worst PUE")
        require(self.ceiling >= self.floor, "pue.ceiling", "must be >= floor", "raise it")


def temperature(params: ClimateParams, year: int, rng: np.random.Generator) -> FloatArray:
    """Hourly ambient temperature, °C, over ``year`` (local hours)."""
    _, day, hour = calendar(year)
    annual = -params.annual_amplitude_c * np.cos(2.0 * np.pi * (day - params.coldest_day) / 365.0)
    diurnal = params.diurnal_amplitude_c * np.cos(2.0 * np.pi * (hour - params.warmest_hour) / 24.0)
    noise = params.noise_sd_c * ar1(rng, len(day), params.noise_persistence)
    out: FloatArray = params.mean_c + annual + diurnal + noise
    return out


def pue(temperature_c: FloatArray, model: PueModel) -> FloatArray:
    """PUE at each ambient temperature."""
    t = np.asarray(temperature_c, dtype=np.float64)
    out: FloatArray = np.minimum(
        model.ceiling, model.floor + model.slope_per_c * np.maximum(0.0, t - model.free_cooling_c)
    )
    return out
