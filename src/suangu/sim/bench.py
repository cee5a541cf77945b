"""``suangu bench``: every scheduling policy on the same scenario and order stream.

Each policy of :mod:`suangu.sim.policies` runs the whole simulation
(:func:`suangu.sim.simulate.simulate`: hourly clearings over the rolling horizon, holds,
metering, settlement, energy and carbon accounting); one row per policy:

====================  ========================================================================
column                meaning
====================  ========================================================================
buyer cost            what buyers paid on the ledger (metered leases) + data transfer charges
provider revenue      what providers were paid on the ledger (after the exchange fee)
welfare               buyers' value - providers' listed reserves - transfer cost, the same
                      for every policy: value = limit x speed x GPU-hours; reserves are the
                      offers' listed prices (without the operator's carbon price)
energy                facility energy of the metered leases, MWh (energy model)
green share           share of that energy from the sites' own green supply
tCO2                  location-based: grid import x the site province's grid average
wait mean / p95       first slot run - submit slot, hours, over orders that ran
firm misses           firm orders (deadline within the span) not filled by their deadline; in
                      brackets those no single pool could serve alone at their limit
deadlines met         orders (deadline within the span) filled by their deadline, all kinds
wasted GPU-h          GPU-hours allocated to orders that then missed their deadline
fill rate             reference GPU-hours allocated / asked, orders submitted in the span
clear mean / max      seconds per hourly clearing (the policy's placement or the engine)
====================  ========================================================================

:func:`write_csv` and :func:`write_chart` save the table (one CSV row per policy) and a PNG
with one bar panel per headline figure.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.table import Table

from suangu.core.errors import ValidationError
from suangu.sim.policies import POLICIES, Policy, parse_policy
from suangu.sim.scenario import OrderStream, Scenario, load_orders, load_scenario
from suangu.sim.simulate import Progress, SimulationReport, simulate
from suangu.sim.trace import DEFAULT_LOAD, load_hub_scenario, trace_orders

#: ``progress(policy, done, total)`` after each simulated slot of each policy.
BenchProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BenchRow:
    """One policy's figures (money in fen, energy in kWh, CO2 in tonnes, time in hours/s)."""

    policy: str
    orders: int
    buyer_cost_fen: int
    provider_revenue_fen: int
    welfare_fen: int
    transfer_fen: int
    energy_kwh: float
    green_share: float
    co2_location_t: float
    co2_market_t: float
    wait_mean_h: float
    wait_p95_h: float
    firm_orders: int
    firm_missed: int
    firm_unservable: int
    deadline_orders: int
    deadlines_met: int
    wasted_gpu_hours: float
    fill_rate: float
    gpu_hours: int
    clear_mean_s: float
    clear_max_s: float
    ledger_balanced: bool

    @classmethod
    def of(cls, report: SimulationReport) -> BenchRow:
        e = report.energy
        return cls(
            policy=report.policy,
            orders=report.orders_total,
            buyer_cost_fen=report.buyer_spend_fen + report.transfer_charged_fen,
            provider_revenue_fen=report.provider_revenue_fen,
            welfare_fen=report.net_welfare_fen,
            transfer_fen=report.transfer_fen,
            energy_kwh=e.energy_wh / 1000 if e else 0.0,
            green_share=e.green_share if e else report.green_share,
            co2_location_t=e.location_g / 1e6 if e else 0.0,
            co2_market_t=e.market_g / 1e6 if e else 0.0,
            wait_mean_h=report.wait_mean_h,
            wait_p95_h=report.wait_p95_h,
            firm_orders=report.firm_orders,
            firm_missed=report.firm_missed,
            firm_unservable=report.firm_unservable,
            deadline_orders=report.deadline_orders,
            deadlines_met=report.deadlines_met,
            wasted_gpu_hours=report.wasted_gpu_hours,
            fill_rate=report.fill_rate,
            gpu_hours=report.gpu_hours_traded,
            clear_mean_s=report.clear_mean_s,
            clear_max_s=report.clear_max_s,
            ledger_balanced=report.ledger_balanced,
        )


@dataclass(frozen=True)
class BenchResult:
    scenario: str
    orders_source: str
    hours: int
    rows: tuple[BenchRow, ...]
    reports: tuple[SimulationReport, ...]

    def row(self, policy: Policy | str) -> BenchRow:
        return next(r for r in self.rows if r.policy == str(policy))


def bench_inputs(
    scenario: str | Path | None = None,
    orders: str | Path | None = None,
    trace: str | Path | None = None,
    *,
    days: int = 7,
    load: float = DEFAULT_LOAD,
    hours: int | None = None,
    seed: int = 0,
    policies: Sequence[str] | None = None,
) -> tuple[Scenario, OrderStream, tuple[Policy, ...]]:
    """What ``suangu bench`` runs: the scenario (default: the packaged ten-hub one), the
    orders (a stream file, else trace-derived: ``trace`` or the packaged sample) and the
    policies (default: all)."""
    if orders is not None and trace is not None:
        raise ValidationError(
            "give either an order stream or a trace, not both",
            field="orders",
            fix="drop --orders or --trace",
        )
    sc = load_hub_scenario(hours) if scenario is None else load_scenario(scenario, hours=hours)
    if orders is not None:
        stream = load_orders(orders, sc)
    else:
        stream = trace_orders(sc, path=trace, seed=seed, days=days, load=load)
    chosen: list[Policy] = []
    for name in policies or [p.value for p in POLICIES]:
        try:
            policy = parse_policy(name)
        except ValueError as err:
            raise ValidationError(
                str(err), field="policy", fix="fifo-home, cheapest-now, carbon-shift or suangu"
            ) from None
        if policy not in chosen:
            chosen.append(policy)
    return sc, stream, tuple(chosen)


def run_bench(
    scenario: Scenario,
    stream: OrderStream,
    *,
    policies: Sequence[Policy] = POLICIES,
    progress: BenchProgress | None = None,
) -> BenchResult:
    """Simulate ``stream`` on ``scenario`` once per policy (deterministic)."""
    reports = []
    for policy in policies:
        step = None if progress is None else _progress_of(progress, policy.value)
        reports.append(simulate(scenario, stream, policy=policy, progress=step))
    return BenchResult(
        scenario=scenario.name,
        orders_source=stream.source,
        hours=scenario.hours,
        rows=tuple(BenchRow.of(r) for r in reports),
        reports=tuple(reports),
    )


def _progress_of(progress: BenchProgress, name: str) -> Progress:
    def step(done: int, total: int) -> None:
        progress(name, done, total)

    return step


def write_csv(result: BenchResult, path: str | Path) -> Path:
    """The table as CSV, one row per policy (raw units: fen, kWh, t, h, s)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fields = list(asdict(result.rows[0])) if result.rows else ["policy"]
    with p.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["scenario", "hours", *fields])
        writer.writeheader()
        for row in result.rows:
            writer.writerow({"scenario": result.scenario, "hours": result.hours, **asdict(row)})
    return p


#: (title, value of a row) of the chart's panels.
_PANELS: tuple[tuple[str, Callable[[BenchRow], float]], ...] = (
    ("welfare, k yuan", lambda r: r.welfare_fen / 1e5),
    ("buyer cost, k yuan", lambda r: r.buyer_cost_fen / 1e5),
    ("t CO2 (location-based)", lambda r: r.co2_location_t),
    ("green share, %", lambda r: 100 * r.green_share),
    ("mean wait, h", lambda r: r.wait_mean_h),
    ("firm deadline misses", lambda r: float(r.firm_missed)),
    ("fill rate, %", lambda r: 100 * r.fill_rate),
    ("clearing mean, s", lambda r: r.clear_mean_s),
)


def write_chart(result: BenchResult, path: str | Path) -> Path:
    """A PNG with one bar panel per headline figure, a bar per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    names = [r.policy for r in result.rows]
    colours = ["#8c8c8c", "#d4a017", "#4c9f70", "#1f5fa8", "#a04c9f"]
    fig, axes = plt.subplots(2, 4, figsize=(14, 6.5))
    for ax, (title, value) in zip(axes.flat, _PANELS, strict=True):
        values = [value(r) for r in result.rows]
        ax.bar(names, values, color=[colours[i % len(colours)] for i in range(len(names))])
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.tick_params(axis="y", labelsize=8)
        for i, v in enumerate(values):
            label = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
            ax.annotate(label, (i, v), ha="center", va="bottom", fontsize=7)
    orders = result.rows[0].orders if result.rows else 0
    fig.suptitle(f"suangu bench: {result.scenario}, {result.hours} h, {orders} orders", fontsize=12)
    fig.tight_layout()
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def bench_table(result: BenchResult) -> Table:
    """The bench as one rich table, a row per policy."""
    table = Table(
        title=f"{result.scenario}: {result.hours} h, "
        f"{result.rows[0].orders if result.rows else 0} orders",
        caption=f"orders: {result.orders_source}",
        title_justify="left",
        caption_justify="left",
    )
    heads = (
        "policy",
        "buyer cost ¥",
        "provider rev. ¥",
        "welfare ¥",
        "energy MWh",
        "green",
        "tCO2",
        "wait h mean/p95",
        "firm misses (unservable)",
        "deadlines met",
        "wasted GPU-h",
        "fill",
        "clear s mean/max",
    )
    for i, h in enumerate(heads):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in result.rows:
        table.add_row(
            r.policy,
            f"{r.buyer_cost_fen / 100:,.0f}",
            f"{r.provider_revenue_fen / 100:,.0f}",
            f"{r.welfare_fen / 100:,.0f}",
            f"{r.energy_kwh / 1000:,.1f}",
            f"{r.green_share:.1%}",
            f"{r.co2_location_t:,.1f}",
            f"{r.wait_mean_h:.1f} / {r.wait_p95_h:.0f}",
            f"{r.firm_missed} ({r.firm_unservable}) / {r.firm_orders}",
            f"{r.deadlines_met / r.deadline_orders:.1%}" if r.deadline_orders else "-",
            f"{r.wasted_gpu_hours:,.0f}",
            f"{r.fill_rate:.1%}",
            f"{r.clear_mean_s:.2f} / {r.clear_max_s:.2f}",
        )
    return table


__all__ = [
    "BenchResult",
    "BenchRow",
    "bench_inputs",
    "run_bench",
    "write_chart",
    "write_csv",
]
