"""Solar output: pvlib clear-sky irradiance on the array, times a seeded clearness process.

1. Sun position (pvlib SPA, ``nrel_numpy``) at the middle of every local hour of the year.
2. Clear-sky irradiance with the Ineichen-Perez model (:func:`pvlib.clearsky.ineichen`), with
   monthly Linke turbidity values passed in as parameters (the packaged site data holds the
   values pvlib's own climatology gives at the site; the core reads no file).
3. Plane-of-array clear-sky irradiance on a fixed south-facing array (isotropic sky,
   :func:`pvlib.irradiance.get_total_irradiance`).
4. A seeded clearness process multiplies it: a daily clearness index (AR(1) across days, so
   cloudy spells last) times a small hourly variation, in ``[clearness_min, 1]``.
5. Output ``P = min(capacity, c * clearness * POA_clear)``: the constant ``c`` (system
   efficiency and irradiance-to-power scale) is calibrated so that the annual capacity factor
   equals the scenario's ``capacity_factor`` exactly (``min`` is the inverter limit).

The all-sky irradiance on the array is approximated by scaling clear-sky POA by the clearness
index (no separate diffuse split under clouds): good enough for hourly energy, not for
intra-hour ramps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from suangu.core.energy._common import (
    FloatArray,
    ar1,
    calendar,
    check_range,
    hours_in_year,
    require,
)


@dataclass(frozen=True, slots=True)
class SolarParams:
    """A fixed-tilt PV plant.

    ``capacity_mw``: AC capacity (inverter limit). ``capacity_factor``: annual mean output /
    capacity, which the model reproduces exactly. ``linke_turbidity``: 12 monthly values.
    """

    capacity_mw: float
    capacity_factor: float = 0.17
    tilt_deg: float = 35.0
    azimuth_deg: float = 180.0
    linke_turbidity: tuple[float, ...] = (3.0,) * 12
    clearness_mean: float = 0.72
    clearness_sd: float = 0.2
    clearness_min: float = 0.08
    day_persistence: float = 0.5
    hour_sd: float = 0.05

    def __post_init__(self) -> None:
        check_range(self.capacity_mw, "solar.capacity_mw", 0.0, 1e6, "MW (AC)")
        check_range(self.capacity_factor, "solar.capacity_factor", 0.0, 0.5, "e.g. 0.17")
        check_range(self.tilt_deg, "solar.tilt_deg", 0.0, 90.0, "degrees from horizontal")
        check_range(self.azimuth_deg, "solar.azimuth_deg", 0.0, 360.0, "180 = south")
        turbidity = tuple(float(v) for v in self.linke_turbidity)
        require(
            len(turbidity) == 12,
            "solar.linke_turbidity",
            f"needs 12 monthly values, got {len(turbidity)}",
            "one Linke turbidity per month",
        )
        for k, v in enumerate(turbidity):
            check_range(v, f"solar.linke_turbidity[{k}]", 1.0, 10.0, "typically 2-7")
        object.__setattr__(self, "linke_turbidity", turbidity)
        check_range(self.clearness_mean, "solar.clearness_mean", 0.1, 1.0, "mean daily index")
        check_range(self.clearness_sd, "solar.clearness_sd", 0.0, 1.0, "spread of daily index")
        check_range(self.clearness_min, "solar.clearness_min", 0.0, 1.0, "overcast floor")
        check_range(self.day_persistence, "solar.day_persistence", 0.0, 0.99, "lag-1 (days)")
        check_range(self.hour_sd, "solar.hour_sd", 0.0, 0.5, "hourly variation")


def clear_sky_poa(
    lat: float,
    lon: float,
    altitude_m: float,
    year: int,
    utc_offset_hours: float,
    params: SolarParams,
) -> FloatArray:
    """Clear-sky plane-of-array irradiance, W/m2, at the middle of every local hour."""
    import pandas as pd
    import pvlib

    n = hours_in_year(year)
    tz = (
        f"Etc/GMT{-int(utc_offset_hours):+d}" if utc_offset_hours == int(utc_offset_hours) else None
    )
    require(tz is not None, "utc_offset_hours", "must be whole hours", "e.g. 8 for China")
    times = pd.date_range(
        f"{year}-01-01 00:30", periods=n, freq="h", tz=tz
    )  # hour centres, local standard time
    with warnings.catch_warnings():  # pvlib 0.16 uses pandas' deprecated dayofyear
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        sun = pvlib.solarposition.get_solarposition(times, lat, lon, altitude=altitude_m)
        dni_extra = pvlib.irradiance.get_extra_radiation(times).to_numpy()
    zenith = sun["apparent_zenith"].to_numpy()
    azimuth = sun["azimuth"].to_numpy()
    months, _, _ = calendar(year)
    turbidity = np.asarray(params.linke_turbidity)[months - 1]
    airmass = pvlib.atmosphere.get_relative_airmass(zenith)
    pressure = pvlib.atmosphere.alt2pres(altitude_m)
    airmass_abs = pvlib.atmosphere.get_absolute_airmass(airmass, pressure)
    with np.errstate(divide="ignore", invalid="ignore"):  # night hours: airmass is NaN
        cs = pvlib.clearsky.ineichen(zenith, airmass_abs, turbidity, altitude_m, dni_extra)
    poa = pvlib.irradiance.get_total_irradiance(
        params.tilt_deg,
        params.azimuth_deg,
        zenith,
        azimuth,
        np.nan_to_num(np.asarray(cs["dni"], dtype=np.float64)),
        np.nan_to_num(np.asarray(cs["ghi"], dtype=np.float64)),
        np.nan_to_num(np.asarray(cs["dhi"], dtype=np.float64)),
        model="isotropic",
    )
    out: FloatArray = np.clip(np.nan_to_num(np.asarray(poa["poa_global"])), 0.0, None)
    return out


def clearness(params: SolarParams, n: int, rng: np.random.Generator) -> FloatArray:
    """Seeded clearness index per hour in ``[clearness_min, 1]``: daily AR(1) + hourly noise."""
    days = (n + 23) // 24
    daily = params.clearness_mean + params.clearness_sd * ar1(rng, days, params.day_persistence)
    hourly = np.repeat(daily, 24)[:n] + params.hour_sd * rng.standard_normal(n)
    out: FloatArray = np.clip(hourly, params.clearness_min, 1.0)
    return out


def calibrate_output(shape: FloatArray, capacity_mw: float, capacity_factor: float) -> FloatArray:
    """``min(capacity, c * shape)`` with ``c`` chosen so that the mean is ``cf * capacity``.

    The mean of ``min(cap, c * shape)`` increases with ``c``; bisection on ``c`` finds it to
    within 1e-9 relative. A target above what clipping allows (``shape > 0`` in too few hours)
    raises :class:`ValidationError`.
    """
    if capacity_mw == 0.0 or capacity_factor == 0.0:
        return np.zeros_like(shape)
    target = capacity_factor * capacity_mw
    positive = float(np.mean(shape > 0))
    require(
        positive > capacity_factor,
        "solar.capacity_factor",
        f"{capacity_factor:g} is unreachable: the sun is up in only {positive:.0%} of hours",
        "lower the capacity factor",
    )
    lo, hi = 0.0, capacity_mw / float(np.min(shape[shape > 0]))
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if float(np.minimum(capacity_mw, mid * shape).mean()) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    out: FloatArray = np.minimum(capacity_mw, hi * shape)
    return out


def solar_output(
    lat: float,
    lon: float,
    altitude_m: float,
    year: int,
    utc_offset_hours: float,
    params: SolarParams,
    rng: np.random.Generator,
) -> FloatArray:
    """Hourly AC output, MW (= MWh per hour), of the plant over ``year``."""
    n = hours_in_year(year)
    if params.capacity_mw == 0.0:
        return np.zeros(n)
    poa = clear_sky_poa(lat, lon, altitude_m, year, utc_offset_hours, params)
    shape = poa * clearness(params, n, rng)
    return calibrate_output(shape, params.capacity_mw, params.capacity_factor)
