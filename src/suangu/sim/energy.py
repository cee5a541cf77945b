"""Packaged energy data and the site energy report (the edge around ``suangu.core.energy``).

* :func:`load_energy_data` reads ``suangu/data/energy/`` (``sites.yaml``, the hub-site and
  emission-factor CSVs; provenance in that folder's README) into core parameter objects.
  Every number in ``sites.yaml`` is ``{value: ..., source: ...}``; a number without a source
  is refused. The sources are kept in :attr:`SiteEnergyParams.sources` by dotted path.
* :func:`energy_report` simulates one site-year and summarises it by month, with avoided CO2
  under every named method.
* :func:`render_chart` writes the report as a PNG (matplotlib, Agg backend).
* :func:`site_years_for_span` simulates the calendar years an interval covers, in each site's
  own local time, joined into one :class:`SiteYear` per site (what the simulation's market
  hooks and lease accounting read).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import yaml

from suangu.core.energy._common import FloatArray
from suangu.core.energy.carbon import (
    AvoidanceMethod,
    AvoidedCO2,
    FactorTable,
    avoided_co2,
    grid_average_method,
)
from suangu.core.energy.climate import ClimateParams, PueModel
from suangu.core.energy.model import MonthRow, SiteEnergyParams, SiteYear, simulate_site_year
from suangu.core.energy.solar import SolarParams
from suangu.core.energy.storage import Dispatch, StorageParams
from suangu.core.energy.tariff import Period, TouTariff
from suangu.core.energy.wind import TurbineCurve, WindParams
from suangu.core.errors import UnknownReferenceError, ValidationError
from suangu.sim.errors import ScenarioError

DATA = "data/energy"
SITES_FILE = "sites.yaml"
FACTORS_FILE = "cn_grid_emission_factors.csv"
HUBS_FILE = "cn_hub_sites.csv"
FACTORS_SOURCE = (
    "cn_grid_emission_factors.csv: MEE/NBS announcements (2024-04-12 for 2021, 2024-12-26 for 2022)"
)

_TURBINE_KEYS = ("cut_in_ms", "rated_ms", "cut_out_ms")


@dataclass(frozen=True)
class EnergyData:
    """The packaged defaults: sites' energy parameters, emission factors, avoidance methods."""

    sites: Mapping[str, SiteEnergyParams]
    factors: FactorTable
    methods: Mapping[str, AvoidanceMethod] = field(default_factory=dict)

    def site(self, site_id: str) -> SiteEnergyParams:
        try:
            return self.sites[site_id]
        except KeyError:
            raise UnknownReferenceError(
                f"unknown site {site_id!r}",
                field="site",
                fix=f"use one of {', '.join(sorted(self.sites))}",
            ) from None

    def avoidance_methods(self, province: str, year: int | None = None) -> list[AvoidanceMethod]:
        """``grid_average`` of ``province`` first, then the packaged named methods."""
        return [grid_average_method(self.factors.get(province, year)), *self.methods.values()]


def _text(name: str) -> str:
    return (resources.files("suangu") / DATA / name).read_text(encoding="utf-8")


def _value(node: Any, path: str, sources: dict[str, str], file: str) -> Any:
    """``{value, source}`` -> value (recording the source under ``path``)."""
    if not (isinstance(node, dict) and "value" in node and node.get("source")):
        raise ScenarioError(
            f"needs a value and a source, got {node!r}",
            file=file,
            field=path,
            fix="write {value: ..., source: '...'} (a document, a published figure or 'estimate')",
        )
    sources[path] = str(node["source"])
    return node["value"]


def _group(
    defaults: Mapping[str, Any],
    site: Mapping[str, Any],
    name: str,
    prefix: str,
    sources: dict[str, str],
    file: str,
) -> dict[str, Any]:
    merged = {**defaults.get(name, {}), **site.get(name, {})}
    return {k: _value(v, f"{prefix}.{name}.{k}", sources, file) for k, v in merged.items()}


def parse_energy_data(sites_yaml: str, factors_csv: str, hubs_csv: str) -> EnergyData:
    """Build :class:`EnergyData` from the texts of the three packaged files."""
    file = SITES_FILE
    doc = yaml.safe_load(sites_yaml)
    factors = FactorTable.from_rows(csv.DictReader(io.StringIO(factors_csv)), FACTORS_SOURCE)
    hubs = {row["site"]: row for row in csv.DictReader(io.StringIO(hubs_csv))}
    methods = {}
    for name, spec in doc.get("avoidance_methods", {}).items():
        src: dict[str, str] = {}
        t = float(_value(spec["t_per_mwh"], f"avoidance_methods.{name}", src, file))
        methods[name] = AvoidanceMethod(name, t, spec["description"], src.popitem()[1])
    defaults = doc["defaults"]
    ratios_src: dict[str, str] = {}
    ratios = {
        k: float(_value(v, f"tariff_ratios.{k}", ratios_src, file))
        for k, v in doc["tariff_ratios"].items()
    }
    sites: dict[str, SiteEnergyParams] = {}
    for site_id, spec in doc["sites"].items():
        if site_id not in hubs:
            raise ScenarioError(
                f"site {site_id!r} is not in {HUBS_FILE}",
                file=file,
                field=f"sites.{site_id}",
                fix="add its coordinates there",
            )
        hub = hubs[site_id]
        src = {
            "lat": f"{HUBS_FILE} (approximate)",
            "lon": f"{HUBS_FILE} (approximate)",
            "province": HUBS_FILE,
            **ratios_src,
        }
        p = site_id

        def val(node: Any, path: str, src: dict[str, str] = src) -> Any:
            return _value(node, path, src, file)

        try:
            province = hub["province"]
            tariff_spec = doc["tariffs"][province]
            pattern = doc["tariff_patterns"][tariff_spec["pattern"]]
            flat = float(val(tariff_spec["flat"], f"{p}.tariff.flat"))
            src[f"{p}.tariff.hours"] = str(pattern["source"])
            tariff = TouTariff(
                f"{province} TOU ({tariff_spec['pattern']})",
                tuple(Period(h) for h in pattern["hours"]),
                {
                    Period.PEAK: round(flat * ratios["peak"], 4),
                    Period.FLAT: flat,
                    Period.VALLEY: round(flat * ratios["valley"], 4),
                },
                source=f"hours: {pattern['source']}; flat: {src[f'{p}.tariff.flat']}",
            )
            wind = _group(defaults, spec, "wind", p, src, file)
            turbine = TurbineCurve(**{k: float(wind.pop(k)) for k in _TURBINE_KEYS if k in wind})
            solar = _group(defaults, spec, "solar", p, src, file)
            solar["linke_turbidity"] = tuple(val(spec["linke_turbidity"], f"{p}.linke_turbidity"))
            year = int(val(defaults["factor_year"], "factor_year"))
            sites[site_id] = SiteEnergyParams(
                site_id=site_id,
                name=f"{site_id.replace('_', ' ').title()} ({hub['name_cn']})",
                province=province,
                lat=float(hub["lat"]),
                lon=float(hub["lon"]),
                altitude_m=float(val(spec["altitude_m"], f"{p}.altitude_m")),
                it_load_mw=float(val(spec["it_load_mw"], f"{p}.it_load_mw")),
                solar=SolarParams(**solar),
                wind=WindParams(**wind, turbine=turbine),
                storage=StorageParams(**_group(defaults, spec, "storage", p, src, file)),
                climate=ClimateParams(**_group(defaults, spec, "climate", p, src, file)),
                pue_model=PueModel(**_group(defaults, spec, "pue_model", p, src, file)),
                tariff=tariff,
                green_price_yuan_per_kwh=float(
                    val(spec["green_price_yuan_per_kwh"], f"{p}.green_price_yuan_per_kwh")
                ),
                grid_factor=factors.get(province, year),
                utc_offset_hours=int(val(defaults["utc_offset_hours"], "utc_offset_hours")),
                gpu_utilisation=float(val(defaults["gpu_utilisation"], "gpu_utilisation")),
                sources=MappingProxyType(src),
            )
        except ValidationError as err:
            raise ScenarioError(
                err.message, file=file, field=f"sites.{site_id}.{err.field}", fix=err.fix
            ) from None
        except (KeyError, TypeError) as err:
            raise ScenarioError(
                f"is missing or malformed: {err}",
                file=file,
                field=f"sites.{site_id}",
                fix="see the other sites for the expected fields",
            ) from None
    return EnergyData(MappingProxyType(sites), factors, MappingProxyType(methods))


@cache
def load_energy_data() -> EnergyData:
    """The packaged energy data (parsed once per process)."""
    return parse_energy_data(_text(SITES_FILE), _text(FACTORS_FILE), _text(HUBS_FILE))


# --- the site energy report ------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyReport:
    """A site-year summarised by month, with avoided CO2 under every named method."""

    site: SiteEnergyParams
    year: int
    seed: int
    months: tuple[MonthRow, ...]
    total: MonthRow
    avoided: tuple[AvoidedCO2, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        p = self.site
        return {
            "site": p.site_id,
            "name": p.name,
            "province": p.province,
            "year": self.year,
            "seed": self.seed,
            "assets": {
                "wind_mw": p.wind.capacity_mw,
                "solar_mw": p.solar.capacity_mw,
                "storage_mw": p.storage.power_mw,
                "storage_mwh": p.storage.energy_mwh,
                "it_load_mw": p.it_load_mw,
            },
            "co2_method": (
                f"location-based: grid import x {p.grid_factor.label} "
                "(direct green supply counts 0)"
            ),
            "months": [m.to_dict() for m in self.months],
            "total": self.total.to_dict(),
            "avoided_co2": [
                {
                    "method": a.method.name,
                    "description": a.method.description,
                    "t_per_mwh": a.method.t_per_mwh,
                    "energy_mwh": a.energy_mwh,
                    "tonnes": a.tonnes,
                    "source": a.method.source,
                    "label": a.label,
                }
                for a in self.avoided
            ],
            "notes": list(self.notes),
            "tariff": {"name": p.tariff.name, "prices": dict(p.tariff.prices)},
            "sources": dict(p.sources),
        }


def energy_report(
    site_id: str, year: int, seed: int = 0, data: EnergyData | None = None
) -> EnergyReport:
    """Simulate ``site_id`` over ``year`` and summarise it (see :class:`EnergyReport`)."""
    data = data or load_energy_data()
    params = data.site(site_id)
    result: SiteYear = simulate_site_year(params, year, seed)
    total = result.annual()
    avoided = tuple(
        avoided_co2(total.generation_mwh, m)
        for m in data.avoidance_methods(params.province, params.grid_factor.year)
    )
    notes = (
        "Avoided CO2 = all wind and solar generation (used on site, stored, or surplus) x the "
        "named factor. coal_displacement's 0.836 t/MWh is the factor implied by the published "
        "Horinger claim (635 kt/yr on 760 GWh); the Inner Mongolia grid average (0.6849) "
        "gives ~521 kt on the same energy.",
        "Green share is matched hour by hour (green used / load); surplus is curtailed or sold.",
        f"CO2 column: location-based, grid import x {params.grid_factor.label}.",
        f"Seeded weather (seed {seed}): a modelled year, not the measured {year}.",
    )
    return EnergyReport(params, year, seed, result.monthly(), total, avoided, notes)


def render_chart(report: EnergyReport, path: str | Path) -> Path:
    """Monthly generation by source, load and green share as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(path)
    months = [m.month for m in report.months]
    solar = [m.solar_mwh / 1000 for m in report.months]
    wind = [m.wind_mwh / 1000 for m in report.months]
    load = [m.load_mwh / 1000 for m in report.months]
    grid = [m.grid_mwh / 1000 for m in report.months]
    share = [m.green_share * 100 for m in report.months]
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    ax.bar(months, wind, label="wind", color="#4c8bd6")
    ax.bar(months, solar, bottom=wind, label="solar", color="#f2b233")
    ax.plot(months, load, "k-o", label="data-centre load", linewidth=1.5)
    ax.plot(months, grid, "--", color="#a33", label="grid import")
    ax.set_xticks(months)
    ax.set_xlabel("month")
    ax.set_ylabel("GWh")
    ax2 = ax.twinx()
    ax2.plot(months, share, "-s", color="#2a9d50", label="green share (hourly matched)")
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("green share, %")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(
        lines[0] + lines2[0],
        lines[1] + lines2[1],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.13),
        ncol=5,
        fontsize=8,
        frameon=False,
    )
    t = report.total
    ax.set_title(
        f"{report.site.site_id} {report.year}: {t.generation_mwh / 1000:,.0f} GWh green, "
        f"load {t.load_mwh / 1000:,.0f} GWh, green share {t.green_share:.1%}",
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


# --- site-years over a simulated span ----------------------------------------------------------


def local_year(unix_seconds: int, utc_offset_hours: int) -> int:
    """The calendar year, at ``utc_offset_hours``, of the instant ``unix_seconds``."""
    return (datetime.fromtimestamp(unix_seconds, UTC) + timedelta(hours=utc_offset_hours)).year


class SpanSiteYear(SiteYear):
    """A :class:`SiteYear` whose derived hourly arrays are computed once, not on every read.

    ``SiteYear.green_share`` and ``green_used`` are properties that rebuild a whole year's array
    each time; the simulation reads them for every lease and every clearing. Same values.
    """

    @cached_property
    def green_share(self) -> FloatArray:  # type: ignore[override]
        out: FloatArray = SiteYear.green_share.fget(self)  # type: ignore[attr-defined]
        return out

    @cached_property
    def green_used(self) -> FloatArray:  # type: ignore[override]
        return self.flows.green_used


def join_years(parts: list[SiteYear]) -> SiteYear:
    """Consecutive site-years of one site as one :class:`SiteYear` starting with the first.

    The result's ``year`` is the first year and its arrays run over all of them, so
    ``hour_index`` (and with it the market hooks and :func:`~suangu.core.energy.accounting.
    lease_energy`) reach any hour of the span. Each year keeps its own seeded weather; the
    storage starts each year at its initial charge (as a separate simulation would). The
    result is a :class:`SpanSiteYear` (derived arrays cached), also for one year.
    """
    first = parts[0]
    for a, b in itertools.pairwise(parts):
        if b.year != a.year + 1 or b.params != a.params:
            raise ValueError("join consecutive years of one site")

    def cat(name: str, objs: list[Any]) -> Any:
        return np.concatenate([getattr(o, name) for o in objs])

    flows = [p.flows for p in parts]
    joined_flows = Dispatch(
        **{
            f.name: cat(f.name, flows)
            for f in dataclasses.fields(Dispatch)
            if f.name != "soc_initial"
        },
        soc_initial=flows[0].soc_initial,
    )
    arrays = ("month", "hour_of_day", "solar", "wind", "temperature_c", "pue", "it_load", "load")
    values = {f.name: getattr(first, f.name) for f in dataclasses.fields(SiteYear)}
    values.update({name: cat(name, parts) for name in arrays}, tariff=cat("tariff", parts))
    return SpanSiteYear(**{**values, "flows": joined_flows})


def site_years_for_span(
    sites: Mapping[str, str],
    start_unix: int,
    end_unix: int,
    seed: int = 0,
    data: EnergyData | None = None,
) -> dict[str, SiteYear]:
    """Site-years covering ``[start_unix, end_unix)`` for each key of ``sites``.

    ``sites`` maps a market site id to a packaged energy-data site id; each energy site is
    simulated once per calendar year the interval touches in its own local time
    (``utc_offset_hours`` of the energy data, UTC+8 for the packaged sites), and the years are
    joined (:func:`join_years`). Keys are the market's site ids, as the hooks expect.
    """
    data = data or load_energy_data()
    if end_unix <= start_unix:
        raise ValidationError("must be after start_unix", field="end_unix", fix="a period")
    models: dict[str, SiteYear] = {}
    for energy_id in sorted(set(sites.values())):
        params = data.site(energy_id)
        first = local_year(start_unix, params.utc_offset_hours)
        last = local_year(end_unix - 1, params.utc_offset_hours)
        models[energy_id] = join_years(
            [simulate_site_year(params, year, seed) for year in range(first, last + 1)]
        )
    return {site_id: models[energy_id] for site_id, energy_id in sites.items()}
