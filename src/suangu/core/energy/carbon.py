"""Grid emission factors, location- and market-based carbon, and avoided CO2 by named method.

Units: a factor in tCO2/MWh is numerically the same as kgCO2/kWh and gCO2/Wh, so grams of CO2
are ``Wh * t_per_mwh`` (rounded half up to whole grams where the ledger needs integers).

Methods (every number Suangu reports says which one it uses)

* **location-based**: electricity imported from the grid x the grid-average factor of the
  province where it is used. Green power supplied directly by the site's own wind and solar
  (a direct line, not through the grid) counts as zero.
* **market-based**: all the energy of a lease, less the green certificates (kWh-green)
  retired to the buyer for it, x a residual factor. China publishes no provincial residual
  mix, so the residual factor defaults to the provincial grid average (the national 2022
  average excluding market-traded green power, 0.5856, is the closest published figure); a
  lease whose green kWh are all covered by retired certificates has market-based = location-
  based, and green kWh without certificates count at the residual factor (no double counting).
* **avoided CO2** of green generation (or of moving a job): energy x a baseline factor,
  less the actual emissions, where the baseline is named: ``grid_average`` (the provincial
  grid average, what the grid mix would have emitted) or ``coal_displacement`` (what coal-fired
  generation would have emitted, the usual basis of Chinese project claims), or the buyer's
  home grid for a job moved west.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from suangu.core.energy._common import check_range, require
from suangu.core.errors import UnknownReferenceError


class CarbonMethod(StrEnum):
    LOCATION = "location-based"
    MARKET = "market-based"


def grams(wh: float, t_per_mwh: float) -> int:
    """Whole grams of CO2 for ``wh`` watt-hours at ``t_per_mwh`` (rounded half up)."""
    return math.floor(wh * t_per_mwh + 0.5)


@dataclass(frozen=True, slots=True)
class EmissionFactor:
    """A published grid emission factor."""

    region: str
    year: int
    t_per_mwh: float
    level: str = "province"
    source: str = ""

    def __post_init__(self) -> None:
        require(bool(self.region), "region", "must not be empty", "name the province or grid")
        check_range(self.t_per_mwh, f"factor.{self.region}", 0.0, 2.0, "tCO2/MWh")

    @property
    def label(self) -> str:
        return f"{self.region} {self.level} grid average {self.year}, {self.t_per_mwh:.4f} t/MWh"


@dataclass(frozen=True, slots=True)
class FactorTable:
    """Emission factors by region name (English or Chinese, case-insensitive) and year."""

    factors: tuple[EmissionFactor, ...]
    _index: Mapping[tuple[str, int], EmissionFactor] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        index = {(f.region.casefold(), f.year): f for f in self.factors}
        object.__setattr__(self, "_index", MappingProxyType(index))

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, str]], source: str) -> FactorTable:
        """Rows of ``cn_grid_emission_factors.csv`` (level, name_cn, name_en, factor_<year>...)."""
        out = []
        for row in rows:
            for key, value in row.items():
                if not key.startswith("factor_") or not value:
                    continue
                year = int(key.removeprefix("factor_"))
                for name in (row["name_en"], row["name_cn"]):
                    out.append(EmissionFactor(name, year, float(value), row["level"], source))
        return cls(tuple(out))

    @property
    def regions(self) -> list[str]:
        return sorted({f.region for f in self.factors})

    def get(self, region: str, year: int | None = None) -> EmissionFactor:
        """The factor of ``region`` for ``year``, or the latest published before it.

        ``year=None`` gives the latest. A year before the first published one gives the first.
        """
        years = sorted(y for (r, y) in self._index if r == region.casefold())
        if not years:
            raise UnknownReferenceError(
                f"no emission factor for {region!r}",
                field="province",
                fix=f"use one of {', '.join(r for r in self.regions if r.isascii())}",
            )
        usable = [y for y in years if year is None or y <= year] or years[:1]
        return self._index[(region.casefold(), usable[-1])]


@dataclass(frozen=True, slots=True)
class AvoidanceMethod:
    """A named baseline for avoided CO2: what the same energy would have emitted otherwise."""

    name: str
    t_per_mwh: float
    description: str
    source: str

    def __post_init__(self) -> None:
        require(bool(self.name), "method.name", "must not be empty", "name the method")
        check_range(self.t_per_mwh, f"method.{self.name}", 0.0, 2.0, "tCO2/MWh")

    @property
    def label(self) -> str:
        return f"{self.name} ({self.description}, {self.t_per_mwh:.4f} t/MWh)"


def grid_average_method(factor: EmissionFactor) -> AvoidanceMethod:
    """Avoided CO2 against the grid average of ``factor``'s region."""
    return AvoidanceMethod(
        "grid_average",
        factor.t_per_mwh,
        f"{factor.region} {factor.level} grid average {factor.year}",
        factor.source,
    )


@dataclass(frozen=True, slots=True)
class AvoidedCO2:
    """Avoided CO2, with the method that produced it."""

    tonnes: float
    energy_mwh: float
    method: AvoidanceMethod
    actual_tonnes: float = 0.0

    @property
    def label(self) -> str:
        return (
            f"{self.tonnes:,.0f} t CO2 avoided = {self.energy_mwh:,.0f} MWh x "
            f"{self.method.t_per_mwh:.4f} t/MWh ({self.method.name}: {self.method.description})"
            + (f" - {self.actual_tonnes:,.0f} t actual" if self.actual_tonnes else "")
        )


def avoided_co2(
    energy_mwh: float, method: AvoidanceMethod, actual_tonnes: float = 0.0
) -> AvoidedCO2:
    """``energy_mwh * method.t_per_mwh - actual_tonnes``, labelled with the method."""
    check_range(energy_mwh, "energy_mwh", 0.0, 1e12, "MWh")
    check_range(actual_tonnes, "actual_tonnes", 0.0, 1e12, "t")
    return AvoidedCO2(
        energy_mwh * method.t_per_mwh - actual_tonnes, energy_mwh, method, actual_tonnes
    )


def location_based_g(grid_wh: int, factor: EmissionFactor) -> int:
    """Location-based grams: grid-imported Wh x the grid average (direct green counts 0)."""
    return grams(grid_wh, factor.t_per_mwh)


def market_based_g(energy_wh: int, certificates_wh: int, residual_t_per_mwh: float) -> int:
    """Market-based grams: energy not covered by retired certificates x the residual factor."""
    require(certificates_wh >= 0, "certificates_wh", "must be >= 0", "Wh of certificates")
    return grams(max(0, energy_wh - certificates_wh), residual_t_per_mwh)
