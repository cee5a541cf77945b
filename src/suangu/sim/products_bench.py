"""What the market products change against the hourly market alone (``suangu bench
--products``): the same scenario and orders simulated twice, once with every order firm (the
hourly market alone) and once with a share of the batch and service orders in the
interruptible tier (:mod:`suangu.core.products`). The orders chosen are those whose deadline
is not firm (a job that can wait), drawn with a seeded generator.

Reported per run: welfare, the average price of a GPU-hour (all, firm orders, the
interruptible orders), fill, deadlines met, and preemptions; and what the interruptible
orders saved: what the same GPU-hours would have cost at the price those orders paid in the
hourly market alone, less what they paid.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rich.table import Table

from suangu.core.errors import ValidationError
from suangu.core.types import OrderKind
from suangu.sim.scenario import OrderStream, Scenario
from suangu.sim.simulate import Progress, SimulationReport, simulate

#: The default share of eligible orders that go interruptible.
DEFAULT_INTERRUPTIBLE_SHARE = 0.3


@dataclass(frozen=True)
class ProductRow:
    """One run of the products bench."""

    market: str
    welfare_fen: int
    avg_price_fen: float
    firm_avg_price_fen: float
    interruptible_avg_price_fen: float
    fill_rate: float
    deadline_share: float
    gpu_hours: int
    interruptible_orders: int
    interruptible_gpu_hours: int
    preemptions: int
    orders_preempted: int
    preempted_gpu_hours: int
    ledger_balanced: bool

    @classmethod
    def of(cls, name: str, r: SimulationReport) -> ProductRow:
        firm_hours = r.gpu_hours_traded - r.interruptible_gpu_hours
        firm_paid = r.traded_value_fen - r.interruptible_paid_fen
        return cls(
            market=name,
            welfare_fen=r.net_welfare_fen,
            avg_price_fen=round(r.avg_price_fen, 2),
            firm_avg_price_fen=round(firm_paid / firm_hours, 2) if firm_hours else 0.0,
            interruptible_avg_price_fen=round(
                r.interruptible_paid_fen / r.interruptible_gpu_hours, 2
            )
            if r.interruptible_gpu_hours
            else 0.0,
            fill_rate=round(r.fill_rate, 4),
            deadline_share=round(r.deadline_share, 4),
            gpu_hours=r.gpu_hours_traded,
            interruptible_orders=r.interruptible_orders,
            interruptible_gpu_hours=r.interruptible_gpu_hours,
            preemptions=r.preemptions,
            orders_preempted=r.orders_preempted,
            preempted_gpu_hours=r.preempted_gpu_hours,
            ledger_balanced=r.ledger_balanced,
        )


@dataclass(frozen=True)
class ProductsResult:
    scenario: str
    orders_source: str
    hours: int
    share: float
    baseline: ProductRow
    products: ProductRow
    reports: tuple[SimulationReport, SimulationReport]

    @property
    def saved_fen(self) -> int:
        """What the interruptible orders saved: their GPU-hours at the price the same orders
        paid in the hourly market alone, less what they paid."""
        p = self.products
        return round(p.interruptible_gpu_hours * self.baseline.interruptible_avg_price_fen) - (
            self.reports[1].interruptible_paid_fen
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "orders": self.orders_source,
            "hours": self.hours,
            "interruptible_share": self.share,
            "hourly_only": asdict(self.baseline),
            "with_products": asdict(self.products),
            "interruptible_saved_fen": self.saved_fen,
            "welfare_change_fen": self.products.welfare_fen - self.baseline.welfare_fen,
        }


def interruptible_stream(
    stream: OrderStream, share: float, seed: int
) -> tuple[OrderStream, set[str]]:
    """``stream`` with ``share`` of its batch and service orders whose deadline is not firm
    made interruptible (drawn with ``seed``), and their ids."""
    if not 0.0 <= share <= 1.0:
        raise ValidationError(
            f"must be between 0 and 1, got {share}", field="interruptible_share", fix="e.g. 0.3"
        )
    rng = random.Random(seed)
    chosen: set[str] = set()
    out = []
    for s in stream.orders:
        o = s.order
        if o.kind is not OrderKind.GANG and o.id not in stream.firm and rng.random() < share:
            chosen.add(o.id)
            s = replace(s, order=replace(o, interruptible=True))
        out.append(s)
    return replace(stream, orders=tuple(out)), chosen


def run_products_bench(
    scenario: Scenario,
    stream: OrderStream,
    *,
    share: float = DEFAULT_INTERRUPTIBLE_SHARE,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> ProductsResult:
    """Simulate ``stream`` on the hourly market alone and with the interruptible tier."""
    tiered, chosen = interruptible_stream(stream, share, seed)

    def step(name: str) -> Progress | None:
        if progress is None:
            return None
        return lambda done, total: progress(name, done, total)

    base = simulate(scenario, stream, track=chosen, progress=step("hourly only"))
    prod = simulate(scenario, tiered, progress=step("with products"))
    return ProductsResult(
        scenario.name,
        stream.source,
        scenario.hours,
        share,
        ProductRow.of("hourly only", base),
        ProductRow.of("with products", prod),
        (base, prod),
    )


def products_table(result: ProductsResult) -> Table:
    """The products bench as one rich table, a row per market."""
    table = Table(
        title=f"{result.scenario}: {result.hours} h, interruptible share "
        f"{result.share:.0%} of the orders that can wait",
        caption=f"orders: {result.orders_source}; interruptible orders saved "
        f"¥{result.saved_fen / 100:,.0f} against their price in the hourly market alone",
        title_justify="left",
        caption_justify="left",
    )
    heads = (
        "market",
        "welfare ¥",
        "GPU-h",
        "avg ¥/GPU-h",
        "firm ¥/GPU-h",
        "interr. ¥/GPU-h",
        "interr. orders",
        "preemptions (orders)",
        "preempted GPU-h",
        "fill",
        "deadlines met",
    )
    for i, h in enumerate(heads):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in (result.baseline, result.products):
        table.add_row(
            r.market,
            f"{r.welfare_fen / 100:,.0f}",
            f"{r.gpu_hours:,}",
            f"{r.avg_price_fen / 100:.2f}",
            f"{r.firm_avg_price_fen / 100:.2f}",
            f"{r.interruptible_avg_price_fen / 100:.2f}",
            f"{r.interruptible_orders}",
            f"{r.preemptions} ({r.orders_preempted})",
            f"{r.preempted_gpu_hours:,}",
            f"{r.fill_rate:.1%}",
            f"{r.deadline_share:.1%}",
        )
    return table


def write_json(result: ProductsResult, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    return out
