"""How far a carbon price moves work in time: one scenario simulated at two carbon prices.

:func:`carbon_shift` runs the same scenario and orders with the energy model at each price
(everything else equal) and reports, per slot of the span, the GPU-hours metered and the
location-based gCO2 of one GPU-hour of each pool there (the energy model's, as the clearing
priced it), plus the totals: **GPU-hours shifted** (half the sum over slots of the absolute
difference between the two hourly profiles: work that ran in another hour) and the
location-based CO2 of the metered leases at each price. On a one-region scenario
(``one_region.yaml``) the difference is pure timing: the same work, the same site.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from suangu.core.errors import ValidationError
from suangu.sim.scenario import OrderStream, Scenario
from suangu.sim.simulate import SimulationReport, _Simulation


@dataclass(frozen=True)
class PriceRun:
    """One simulation at one carbon price."""

    yuan_per_t: float
    report: SimulationReport
    #: GPU-hours metered in each slot of the span (index: slot)
    gpu_hours: tuple[float, ...]
    location_g: int  # location-based CO2 of every metered lease


@dataclass(frozen=True)
class CarbonShift:
    """Two runs of one scenario at two carbon prices (``low`` first)."""

    low: PriceRun
    high: PriceRun
    #: location-based gCO2 of one GPU-hour per pool and slot of the span (energy model)
    carbon_g: dict[str, tuple[float, ...]]

    @property
    def gpu_hours_shifted(self) -> float:
        return (
            sum(abs(a - b) for a, b in zip(self.low.gpu_hours, self.high.gpu_hours, strict=True))
            / 2
        )

    @property
    def co2_saved_g(self) -> int:
        return self.low.location_g - self.high.location_g

    def to_dict(self) -> dict[str, object]:
        return {
            "carbon_prices_yuan_per_t": [self.low.yuan_per_t, self.high.yuan_per_t],
            "gpu_hours": [sum(self.low.gpu_hours), sum(self.high.gpu_hours)],
            "gpu_hours_shifted": round(self.gpu_hours_shifted, 3),
            "co2_location_g": [self.low.location_g, self.high.location_g],
            "co2_saved_g": self.co2_saved_g,
            "co2_saved_share": round(self.co2_saved_g / self.low.location_g, 4)
            if self.low.location_g
            else 0.0,
            "spend_fen": [self.low.report.buyer_spend_fen, self.high.report.buyer_spend_fen],
            "hourly_gpu_hours": [list(self.low.gpu_hours), list(self.high.gpu_hours)],
        }


def _run(
    scenario: Scenario, stream: OrderStream, yuan_per_t: float
) -> tuple[PriceRun, _Simulation]:
    assert scenario.energy is not None
    priced = replace(scenario, energy=replace(scenario.energy, carbon_price_yuan_per_t=yuan_per_t))
    sim = _Simulation(priced, stream, 0.0, 0, None)
    report = sim.run()
    hours = [0.0] * (scenario.hours + scenario.lookahead)
    for r in sim.records:
        hours[r.slot] += r.gpu_seconds / 3600
    while hours and hours[-1] == 0:
        hours.pop()
    run = PriceRun(yuan_per_t, report, tuple(hours), sum(r.location_g for r in sim.records))
    return run, sim


def carbon_shift(
    scenario: Scenario, stream: OrderStream, low: float = 0.0, high: float = 100.0
) -> CarbonShift:
    """Simulate ``stream`` on ``scenario`` at carbon prices ``low`` and ``high`` (yuan/t)."""
    if scenario.energy is None:
        raise ValidationError(
            "has no energy model: no carbon to price",
            field="energy",
            fix="add energy: {model: true} to the scenario",
        )
    a, _ = _run(scenario, stream, low)
    b, sim = _run(scenario, stream, high)
    n = max(len(a.gpu_hours), len(b.gpu_hours))
    a = replace(a, gpu_hours=a.gpu_hours + (0.0,) * (n - len(a.gpu_hours)))
    b = replace(b, gpu_hours=b.gpu_hours + (0.0,) * (n - len(b.gpu_hours)))
    carbon: dict[str, list[float]] = defaultdict(list)
    for pool_id, values in sim.span_carbon.items():
        carbon[pool_id] = list(values[:n])
    return CarbonShift(a, b, {p: tuple(v) for p, v in carbon.items()})
