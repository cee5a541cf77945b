"""Time-of-use grid tariffs: each local hour of the day is sharp (尖峰), peak, flat or valley.

A tariff is a 24-hour pattern of periods and a price per period, yuan/kWh, with the source of
both (a public tariff document, or "estimate" with the reasoning). Seasonal patterns are not
modelled: one pattern applies all year.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

import numpy as np

from suangu.core.energy._common import FloatArray, IntArray, check_range, require
from suangu.core.errors import ValidationError

_PERIODS = "use sharp, peak, flat or valley"


class Period(StrEnum):
    SHARP = "sharp"
    PEAK = "peak"
    FLAT = "flat"
    VALLEY = "valley"


@dataclass(frozen=True, slots=True)
class TouTariff:
    """A time-of-use tariff: ``hours[h]`` is the period of local hour ``h`` (0..23)."""

    name: str
    hours: tuple[Period, ...]
    prices: Mapping[Period, float] = field(hash=False)
    source: str = ""

    def __post_init__(self) -> None:
        require(bool(self.name), "tariff.name", "must not be empty", "name the tariff")
        hours_list = []
        for k, h in enumerate(self.hours):
            try:
                hours_list.append(Period(h))
            except ValueError:
                raise ValidationError(
                    f"unknown period {h!r}", field=f"tariff.hours[{k}]", fix=_PERIODS
                ) from None
        hours = tuple(hours_list)
        require(len(hours) == 24, "tariff.hours", f"needs 24 values, got {len(hours)}", "0..23")
        prices = {Period(k): float(v) for k, v in self.prices.items()}
        for period in set(hours):
            require(
                period in prices,
                f"tariff.prices.{period}",
                "is missing for a period the hours use",
                "give a price per period",
            )
        for period, price in prices.items():
            check_range(price, f"tariff.prices.{period}", 0.0, 10.0, "yuan/kWh")
        object.__setattr__(self, "hours", hours)
        object.__setattr__(self, "prices", MappingProxyType(prices))

    def daily_prices(self) -> FloatArray:
        """Price of each local hour of the day, yuan/kWh."""
        return np.array([self.prices[p] for p in self.hours], dtype=np.float64)

    def price_at(self, hour_of_day: IntArray) -> FloatArray:
        """Price at each local hour of day (0..23), yuan/kWh."""
        out: FloatArray = self.daily_prices()[np.asarray(hour_of_day) % 24]
        return out

    def mean_price(self) -> float:
        """The unweighted mean of the 24 hourly prices, yuan/kWh."""
        return float(self.daily_prices().mean())
