"""Meter readings: what a provider may claim for a lease, and how it was measured.

A reading says that a lease used ``gpu_seconds`` GPU-seconds and ``energy_wh`` Wh over
``[interval_start, interval_end)`` (Unix seconds). The exchange pays providers and books
energy and carbon from readings, so a reading is accepted only when it is physically possible
for the lease it names:

* **inside the lease's slot**: ``slot_start <= interval_start < interval_end <= slot_end``;
* **not in the future**: ``interval_end <= now + tolerance_s``, where ``now`` is the market
  clock (the wall clock in production, the simulated clock in the demo) and the tolerance
  (:data:`CLOCK_TOLERANCE_S` by default) absorbs clock skew between agent and exchange;
* **no overlap** with another reading of the same lease (intervals are half-open, so
  back-to-back readings are fine);
* **GPU time** at most ``gpus x (interval_end - interval_start)``;
* **energy** at most ``gpus x board power x PUE bound x interval / 3600`` Wh, rounded up:
  the most the lease's GPUs can draw at full board power, with the site's cooling and
  distribution losses. The PUE bound is the larger of the site's declared PUE and the
  operator's ``max_pue`` setting (hourly modelled PUE rises above the declared yearly value
  on hot days).

Every reading also says how it was measured (:class:`ReadingSource`): ``nvml`` (the GPUs'
own energy counters), ``slurm`` (the cluster's job accounting), or ``nominal`` (no meter:
board power x time, an estimate). Carbon statements carry the share of energy that was
measured, so a buyer can tell a metered footprint from an estimated one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from suangu.core.errors import ValidationError

#: Seconds a reading may end after the market clock's now (clock skew between an agent and
#: the exchange).
CLOCK_TOLERANCE_S = 60
#: PUE the energy bound allows at least, whatever a site declares (see the module docs).
DEFAULT_MAX_PUE = 2.0


class ReadingSource(StrEnum):
    """How a reading's figures were obtained."""

    #: The GPUs' energy counters, read through NVML.
    NVML = "nvml"
    #: The cluster's job accounting (Slurm ``sacct`` energy and elapsed time).
    SLURM = "slurm"
    #: Not measured: board power x time, an estimate.
    NOMINAL = "nominal"

    @property
    def measured(self) -> bool:
        return self is not ReadingSource.NOMINAL


@dataclass(frozen=True, slots=True)
class LeaseWindow:
    """What bounds the readings of one lease."""

    #: The lease's slot, ``[start, end)`` in Unix seconds.
    start: int
    end: int
    gpus: int
    #: Board power of the pool's GPU class, watts.
    board_power_w: int
    #: The PUE bound: max(site PUE, the operator's max_pue).
    pue: float

    def max_energy_wh(self, seconds: int) -> int:
        """The most energy the lease's GPUs can use in ``seconds``, in whole Wh (rounded up)."""
        return math.ceil(self.gpus * self.board_power_w * self.pue * seconds / 3600)


def check_reading(
    interval_start: int,
    interval_end: int,
    gpu_seconds: int,
    energy_wh: int,
    window: LeaseWindow,
    now: int,
    others: Iterable[tuple[int, int]] = (),
    *,
    tolerance_s: int = CLOCK_TOLERANCE_S,
    prefix: str = "",
) -> None:
    """Raise :class:`ValidationError` (naming the field and the fix) unless the reading is
    possible for the lease (see the module docs). ``others`` are the ``(start, end)``
    intervals of the lease's other readings; ``prefix`` goes in front of the field names."""

    def fail(message: str, field: str, fix: str) -> ValidationError:
        return ValidationError(message, field=f"{prefix}{field}", fix=fix)

    if interval_end <= interval_start:
        raise fail("must be after interval_start", "interval_end", "send the interval as metered")
    if interval_start < window.start or interval_end > window.end:
        raise fail(
            f"[{interval_start}, {interval_end}) is not inside the lease's slot "
            f"[{window.start}, {window.end})",
            "interval_start" if interval_start < window.start else "interval_end",
            "meter only the lease's own slot, in Unix seconds",
        )
    if interval_end > now + tolerance_s:
        raise fail(
            f"ends at {interval_end}, after the market clock's now ({now}) by more than "
            f"{tolerance_s} s",
            "interval_end",
            "send a reading once its interval has passed; check the agent's clock",
        )
    for start, end in others:
        if interval_start < end and start < interval_end:
            raise fail(
                f"[{interval_start}, {interval_end}) overlaps the lease's reading [{start}, {end})",
                "interval_start",
                "meter each second of the lease once: start where the last reading ended",
            )
    seconds = interval_end - interval_start
    if gpu_seconds < 0:
        raise fail("must be zero or more", "gpu_seconds", "send the GPU-seconds metered")
    most = window.gpus * seconds
    if gpu_seconds > most:
        raise fail(
            f"{gpu_seconds} GPU-seconds exceed the lease's {most} in the interval",
            "gpu_seconds",
            "meter at most gpus x interval seconds",
        )
    if energy_wh < 0:
        raise fail("must be zero or more", "energy_wh", "send the energy metered, in Wh")
    bound = window.max_energy_wh(seconds)
    if energy_wh > bound:
        raise fail(
            f"{energy_wh} Wh exceed what {window.gpus} GPU(s) of {window.board_power_w} W can "
            f"use in {seconds} s at PUE {window.pue:g} ({bound} Wh)",
            "energy_wh",
            "send the energy metered over the interval, in Wh (not mWh or J)",
        )
