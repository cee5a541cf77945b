"""The site-year simulation: hourly green supply, storage, load, grid import, cost and carbon.

``simulate_site_year(params, year, seed)`` returns a :class:`SiteYear` of numpy arrays, one
value per local hour of the year (MW over one hour = MWh). Everything is seeded: the same
parameters, year and seed give the same arrays. No clock, no file: parameters come in.

Per hour ``t``::

    generation = solar + wind
    load       = it_load * PUE(temperature)
    direct     = min(generation, load)
    generation = direct + charge + curtailed          (storage.dispatch)
    load       = direct + discharge + grid            (green used = direct + discharge)
    green share = green used / load

Energy of one GPU-hour of class ``g`` in hour ``t`` (facility kWh)::

    kWh = board_power_w(g) / 1000 * gpu_utilisation * PUE[t]

where ``gpu_utilisation`` is the average draw as a share of board power (default 0.7: GPUs
running training jobs draw 60-80% of their board power on average; an estimate, override it
per site). Host CPUs, memory and network are not counted (a known under-estimate).

Its cost (yuan) is ``kWh * (share[t] * green_price + (1 - share[t]) * tariff[t])`` and its
location-based carbon ``kWh * (1 - share[t]) * grid factor``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from suangu.core.energy._common import (
    FloatArray,
    IntArray,
    calendar,
    check_range,
    check_year,
    require,
    rng_for,
    year_start_unix,
)
from suangu.core.energy.carbon import EmissionFactor
from suangu.core.energy.climate import ClimateParams, PueModel, pue, temperature
from suangu.core.energy.solar import SolarParams, solar_output
from suangu.core.energy.storage import Dispatch, StorageParams, dispatch
from suangu.core.energy.tariff import TouTariff
from suangu.core.energy.wind import WindParams, wind_output
from suangu.core.gpus import CATALOGUE, GpuClass, gpu_class

#: Average GPU power draw as a share of board power (estimate, see the module docs).
DEFAULT_GPU_UTILISATION = 0.7


@dataclass(frozen=True, slots=True)
class SiteEnergyParams:
    """Everything the energy model needs about one site (all values carry a source upstream)."""

    site_id: str
    name: str
    province: str
    lat: float
    lon: float
    altitude_m: float
    it_load_mw: float
    solar: SolarParams
    wind: WindParams
    storage: StorageParams
    climate: ClimateParams
    pue_model: PueModel
    tariff: TouTariff
    green_price_yuan_per_kwh: float
    grid_factor: EmissionFactor
    utc_offset_hours: int = 8
    gpu_utilisation: float = DEFAULT_GPU_UTILISATION
    sources: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        require(bool(self.site_id), "site_id", "must not be empty", "name the site")
        check_range(self.lat, "lat", -90.0, 90.0, "degrees")
        check_range(self.lon, "lon", -180.0, 180.0, "degrees")
        check_range(self.altitude_m, "altitude_m", -500.0, 6000.0, "metres")
        check_range(self.it_load_mw, "it_load_mw", 0.0, 1e5, "MW of IT load")
        check_range(self.green_price_yuan_per_kwh, "green_price_yuan_per_kwh", 0.0, 10.0, "yuan")
        check_range(self.utc_offset_hours, "utc_offset_hours", -12, 14, "8 for China")
        check_range(self.gpu_utilisation, "gpu_utilisation", 0.05, 1.0, "e.g. 0.7")


def gpu_it_kw(gpu: str | GpuClass, utilisation: float = DEFAULT_GPU_UTILISATION) -> float:
    """Average IT power of one GPU, kW: board power x utilisation."""
    g = gpu if isinstance(gpu, GpuClass) else gpu_class(gpu, CATALOGUE)
    check_range(utilisation, "gpu_utilisation", 0.05, 1.0, "e.g. 0.7")
    return g.board_power_w / 1000.0 * utilisation


@dataclass(frozen=True, slots=True)
class MonthRow:
    """Monthly (or annual, ``month = 0``) totals of a site: energy in MWh, cost in yuan."""

    month: int
    solar_mwh: float
    wind_mwh: float
    generation_mwh: float
    load_mwh: float
    it_mwh: float
    green_used_mwh: float
    charge_mwh: float
    discharge_mwh: float
    curtailed_mwh: float
    grid_mwh: float
    cost_yuan: float
    co2_t: float

    @property
    def green_share(self) -> float:
        return self.green_used_mwh / self.load_mwh if self.load_mwh > 0 else 0.0

    @property
    def pue(self) -> float:
        return self.load_mwh / self.it_mwh if self.it_mwh > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        out = {k: getattr(self, k) for k in self.__slots__}
        out["green_share"] = self.green_share
        out["pue"] = self.pue
        return out


@dataclass(frozen=True, slots=True)
class SiteYear:
    """The hourly result of one site over one year (arrays of ``hours`` values, MWh/h)."""

    params: SiteEnergyParams
    year: int
    seed: int
    month: IntArray
    hour_of_day: IntArray
    solar: FloatArray
    wind: FloatArray
    temperature_c: FloatArray
    pue: FloatArray
    it_load: FloatArray
    load: FloatArray
    flows: Dispatch
    tariff: FloatArray

    @property
    def hours(self) -> int:
        return len(self.solar)

    @property
    def start_unix(self) -> int:
        """Unix seconds at the start of hour 0 (local midnight, 1 January)."""
        return year_start_unix(self.year, self.params.utc_offset_hours)

    @property
    def generation(self) -> FloatArray:
        out: FloatArray = self.solar + self.wind
        return out

    @property
    def green_used(self) -> FloatArray:
        return self.flows.green_used

    @property
    def grid(self) -> FloatArray:
        return self.flows.grid

    @property
    def green_share(self) -> FloatArray:
        """Green used / load per hour (1 where the load is zero: nothing is imported)."""
        load = self.load
        out: FloatArray = np.where(load > 0, self.green_used / np.where(load > 0, load, 1.0), 1.0)
        return np.clip(out, 0.0, 1.0)

    def blended_price(self) -> FloatArray:
        """Energy price per hour, yuan/kWh: green at the supply price, the rest at the tariff."""
        share = self.green_share
        out: FloatArray = share * self.params.green_price_yuan_per_kwh + (1.0 - share) * self.tariff
        return out

    def gpu_kwh(self, gpu: str | GpuClass) -> FloatArray:
        """Facility kWh of one GPU-hour of ``gpu`` in each hour (IT kW x PUE)."""
        out: FloatArray = gpu_it_kw(gpu, self.params.gpu_utilisation) * self.pue
        return out

    def energy_cost_per_gpu_hour(self, gpu: str | GpuClass) -> FloatArray:
        """Energy cost of one GPU-hour of ``gpu`` in each hour, yuan."""
        out: FloatArray = self.gpu_kwh(gpu) * self.blended_price()
        return out

    def carbon_g_per_gpu_hour(self, gpu: str | GpuClass) -> FloatArray:
        """Location-based gCO2 of one GPU-hour of ``gpu`` in each hour (grid share only)."""
        factor_g_per_kwh = self.params.grid_factor.t_per_mwh * 1000.0
        out: FloatArray = self.gpu_kwh(gpu) * (1.0 - self.green_share) * factor_g_per_kwh
        return out

    def hour_index(self, unix_seconds: int) -> int:
        """The hour of this year containing ``unix_seconds``; ValidationError if outside."""
        k = (unix_seconds - self.start_unix) // 3600
        require(
            0 <= k < self.hours,
            "slot",
            f"instant {unix_seconds} is outside {self.year} at {self.params.site_id}",
            "simulate the year the market's slots fall in",
        )
        return int(k)

    def _row(self, month: int, mask: FloatArray | None) -> MonthRow:
        def total(a: FloatArray) -> float:
            return float(a.sum() if mask is None else a[mask.astype(bool)].sum())

        grid_cost = self.grid * self.tariff * 1000.0
        green_cost = self.green_used * self.params.green_price_yuan_per_kwh * 1000.0
        return MonthRow(
            month=month,
            solar_mwh=total(self.solar),
            wind_mwh=total(self.wind),
            generation_mwh=total(self.generation),
            load_mwh=total(self.load),
            it_mwh=total(self.it_load),
            green_used_mwh=total(self.green_used),
            charge_mwh=total(self.flows.charge),
            discharge_mwh=total(self.flows.discharge),
            curtailed_mwh=total(self.flows.curtailed),
            grid_mwh=total(self.grid),
            cost_yuan=total(grid_cost + green_cost),
            co2_t=total(self.grid) * self.params.grid_factor.t_per_mwh,
        )

    def monthly(self) -> tuple[MonthRow, ...]:
        """One row per calendar month (location-based CO2)."""
        return tuple(self._row(m, (self.month == m).astype(np.float64)) for m in range(1, 13))

    def annual(self) -> MonthRow:
        """Totals over the year (``month = 0``)."""
        return self._row(0, None)


def simulate_site_year(params: SiteEnergyParams, year: int, seed: int = 0) -> SiteYear:
    """Simulate ``params`` hour by hour over ``year`` (see the module docs)."""
    check_year(year)
    sid = params.site_id
    month, _, hour = calendar(year)
    solar = solar_output(
        params.lat,
        params.lon,
        params.altitude_m,
        year,
        params.utc_offset_hours,
        params.solar,
        rng_for(seed, sid, year, "solar"),
    )
    wind = wind_output(params.wind, year, rng_for(seed, sid, year, "wind"))
    temp = temperature(params.climate, year, rng_for(seed, sid, year, "climate"))
    site_pue = pue(temp, params.pue_model)
    it_load = np.full(len(month), params.it_load_mw)
    load = it_load * site_pue
    flows = dispatch(solar + wind, load, params.storage)
    return SiteYear(
        params=params,
        year=year,
        seed=seed,
        month=month,
        hour_of_day=hour,
        solar=solar,
        wind=wind,
        temperature_c=temp,
        pue=site_pue,
        it_load=it_load,
        load=load,
        flows=flows,
        tariff=params.tariff.price_at(hour),
    )


def simulate_sites(
    sites: Sequence[SiteEnergyParams], year: int, seed: int = 0
) -> dict[str, SiteYear]:
    """:func:`simulate_site_year` for every site, keyed by site id."""
    return {p.site_id: simulate_site_year(p, year, seed) for p in sites}
