"""Shared helpers of the energy model: validation, calendars and seeded random streams."""

from __future__ import annotations

import math
import zlib
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from suangu.core.errors import ValidationError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: The years the model accepts (a calendar year of hourly values).
MIN_YEAR = 1970
MAX_YEAR = 2100


def require(ok: bool, field: str, message: str, fix: str) -> None:
    """Raise :class:`ValidationError` on ``field`` unless ``ok``."""
    if not ok:
        raise ValidationError(message, field=field, fix=fix)


def check_range(value: float, field: str, lo: float, hi: float, fix: str) -> None:
    """``value`` must be a finite number in ``[lo, hi]``."""
    require(
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
        field,
        f"must be a finite number, got {value!r}",
        fix,
    )
    require(lo <= value <= hi, field, f"must be between {lo:g} and {hi:g}, got {value:g}", fix)


def check_year(year: int) -> None:
    require(
        isinstance(year, int) and not isinstance(year, bool) and MIN_YEAR <= year <= MAX_YEAR,
        "year",
        f"must be a calendar year between {MIN_YEAR} and {MAX_YEAR}, got {year!r}",
        "e.g. 2024",
    )


def hours_in_year(year: int) -> int:
    """8,760, or 8,784 in a leap year."""
    check_year(year)
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return 8784 if leap else 8760


def year_start_unix(year: int, utc_offset_hours: float) -> int:
    """Unix seconds of local midnight, 1 January of ``year``, at ``utc_offset_hours``."""
    check_year(year)
    local = datetime(year, 1, 1, tzinfo=UTC) - timedelta(hours=utc_offset_hours)
    return int(local.timestamp())


def calendar(year: int) -> tuple[IntArray, IntArray, IntArray]:
    """``(month 1..12, day of year 0..365, hour of day 0..23)`` of every local hour of ``year``."""
    n = hours_in_year(year)
    hours = np.datetime64(f"{year}-01-01T00", "h") + np.arange(n)
    months = hours.astype("datetime64[M]").astype(np.int64) % 12 + 1
    idx = np.arange(n, dtype=np.int64)
    return months, idx // 24, idx % 24


def rng_for(seed: int, site_id: str, year: int, stream: str) -> np.random.Generator:
    """An independent, reproducible random stream per (seed, site, year, process)."""
    words = [seed & 0xFFFFFFFF, zlib.crc32(site_id.encode()), year, zlib.crc32(stream.encode())]
    return np.random.default_rng(np.random.SeedSequence(words))


def ar1(rng: np.random.Generator, n: int, phi: float) -> FloatArray:
    """A stationary AR(1) series with unit variance and lag-one correlation ``phi``.

    Vectorised with :func:`scipy.signal.lfilter`; the first value is drawn from the stationary
    distribution, so there is no spin-up.
    """
    from scipy.signal import lfilter

    eps = rng.standard_normal(n)
    eps[1:] *= math.sqrt(max(0.0, 1.0 - phi * phi))
    out: FloatArray = np.asarray(lfilter([1.0], [1.0, -phi], eps), dtype=np.float64)
    return out
