"""How the command line prints reports: the demo's summary, a simulation's report and its
energy and carbon tables, and the order tables the client commands share."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from suangu.commands.common import fen, yuan
from suangu.core.gpus import ALIASES

if TYPE_CHECKING:
    from suangu.demo import DemoReport
    from suangu.sim.scenario import Scenario
    from suangu.sim.simulate import EnergySummary, SimulationReport


def demo_header(scenario: Scenario, n_orders: int, path: Path) -> None:
    sites = ", ".join(s.name.split(" ")[0] for s in scenario.sites)
    providers = len(set(scenario.providers.values()))
    days = f" ({scenario.hours / 24:g} days)" if scenario.hours >= 24 else ""
    text = (
        f"[bold]Suangu demo[/]: the East-Data-West-Compute (东数西算) GPU exchange as a "
        f"service, on a simulated clock.\n\n"
        f"{len(scenario.sites)} hub sites ({escape(sites)}), {len(scenario.pools)} GPU pools "
        f"from {providers} providers, and {n_orders} buyer orders over {scenario.hours} "
        f"simulated hours{days}.\n"
        "Everything goes through the exchange's HTTP API: the operator onboards members and "
        "gives them API keys, providers list sites, pools and offers, buyers deposit money and "
        "submit orders as they come. Every hour the server's clearing loop clears the next "
        f"{scenario.lookahead} hours (one price per pool and hour) and holds the buyers' money; "
        "each provider's agent talks to the API like a real one: it runs its leases on a "
        "simulated executor, sends their meter readings when their hour ends, and the ledger "
        "settles them (payment, provider payout, exchange fee) with green certificates and CO2.\n"
        f"[dim]Database: {escape(str(path))} (SQLite). Sites and latencies come from public "
        "data; providers, capacities and prices are made up; orders are derived from a real "
        "GPU cluster trace (hubs) or hand-made (east-west); the weather is modelled.[/]"
    )
    Console().print(Panel(text, border_style="blue", expand=False))


def print_demo(report: DemoReport, path: Path) -> None:
    console = Console()
    console.print("[bold]Members and their API keys[/] (shown once; role, member, key):")
    for m in report.members:
        console.print(
            f"  {m.role:<9} {escape(m.id):<20} {m.token}", highlight=False, soft_wrap=True
        )
    st = report.stats
    orders = Table(title=f"Orders ({report.scenario}, {report.hours} h)", title_justify="left")
    orders.add_column("kind")
    for col in ("orders", "filled", "partly", "not filled"):
        orders.add_column(col, justify="right")
    for kind, by in st.orders.items():
        total = sum(by.values())
        full, part = by.get("cleared", 0), by.get("partially", 0)
        orders.add_row(kind, f"{total:,}", f"{full:,}", f"{part:,}", f"{total - full - part:,}")
    full, part = st.orders_with("cleared"), st.orders_with("partially")
    orders.add_row(
        "[bold]all[/]",
        f"[bold]{st.orders_total:,}[/]",
        f"[bold]{full:,}[/]",
        f"[bold]{part:,}[/]",
        f"[bold]{st.orders_total - full - part:,}[/]",
    )
    console.print(orders)
    console.print(
        f"fill rate: {st.fill_rate:.1%} of orders filled in full; {st.volume_fill_rate:.1%} "
        f"of the work asked for allocated (reference GPU-hours). {report.clearings} clearings, "
        f"{report.readings:,} leases metered"
        + (
            f"; {report.orders_after_span} orders due after the span not submitted"
            if report.orders_after_span
            else ""
        ),
        highlight=False,
    )
    if st.deadline_orders:
        console.print(
            f"Deadlines: {st.deadlines_met:,} of {st.deadline_orders:,} met "
            f"({st.deadlines_met / st.deadline_orders:.1%}); {st.wasted_gpu_hours:,.0f} "
            "GPU-hours went to orders that then missed.",
            highlight=False,
        )
    names = {s.id: s.name for s in st.sites}
    sites = Table(title="Volume by site (prices in yuan per GPU-hour)", title_justify="left")
    for col in ("site", "GPU-hours", "avg price", "value (yuan)"):
        sites.add_column(col, justify="left" if col == "site" else "right")
    for v in sorted(st.volumes, key=lambda v: -v.gpu_hours):
        sites.add_row(
            escape(names.get(v.site_id, v.site_id)),
            f"{v.gpu_hours:,}",
            yuan(v.avg_price_fen),
            yuan(v.value_fen),
        )
    avg = st.value_fen / st.gpu_hours if st.gpu_hours else 0
    sites.add_row(
        "[bold]all sites[/]",
        f"[bold]{st.gpu_hours:,}[/]",
        f"[bold]{yuan(avg)}[/]",
        f"[bold]{yuan(st.value_fen)}[/]",
    )
    console.print(sites)
    money = Table(title="Money (yuan), energy and checks", title_justify="left", show_header=False)
    money.add_column("what")
    money.add_column("value", justify="right")
    money.add_row("welfare (value to buyers - sellers' reserves)", yuan(report.welfare_fen))
    money.add_row("buyer deposits", yuan(st.money.get("deposit", 0)))
    # The dashboard's figures under its labels (suangu.web.stats.MarketStats).
    money.add_row("buyer spend (metered)", yuan(st.buyer_spend_fen))
    money.add_row("provider revenue (after fee)", yuan(st.money.get("provider_payout", 0)))
    money.add_row("exchange fees", yuan(st.money.get("exchange_fee", 0)))
    if report.transfer_charged_fen:
        money.add_row(
            f"data transfer charges ({report.transfer_gb:,.0f} GB over links; on top of spend)",
            yuan(report.transfer_charged_fen),
        )
    e = report.energy
    if e.leases:
        money.add_row("energy metered (GPU power x PUE)", f"{e.energy_wh / 1000:,.0f} kWh")
        money.add_row("green share (own wind and solar, hourly)", f"{e.green_share:.1%}")
        money.add_row(
            "green certificates retired to buyers", f"{e.certificates_wh / 1000:,.0f} kWh"
        )
        money.add_row("CO2 location-based", f"{e.location_g / 1e6:,.3f} t")
        money.add_row("CO2 market-based", f"{e.market_g / 1e6:,.3f} t")
    balanced = "[green]yes[/]" if report.ledger_balanced else "[bold red]NO[/]"
    money.add_row("ledger balanced", balanced)
    t = report.timings
    money.add_row(
        "run time, CPU (setup / orders / clearing / metering)",
        f"{t.get('total_s', 0):.1f} s, {t.get('cpu_s', 0):.1f} s CPU "
        f"({t.get('setup_cpu_s', 0) + t.get('energy_model_cpu_s', 0):.1f}"
        f" / {t.get('orders_cpu_s', 0):.1f} / {t.get('clearing_cpu_s', 0):.1f} / "
        f"{t.get('metering_cpu_s', 0):.1f})",
    )
    console.print(money)
    if not report.ledger_balanced:
        console.print(f"[bold red]ledger check failed:[/] {escape(report.ledger_message)}")
    console.print(
        f"[dim]Database: {escape(str(path))}. Try: SUANGU_KEY=<a buyer's key> suangu lease list; "
        "SUANGU_KEY=<the operator's key> suangu ledger balance.[/]",
        highlight=False,
    )


def print_report(report: SimulationReport, scenario: Scenario) -> None:
    console = Console()
    title = f"{report.scenario}: {report.hours} h, {report.clearings} clearings"
    orders = Table(title=f"Orders ({title})", title_justify="left")
    orders.add_column("kind")
    for col in ("orders", "filled", "partly", "unfilled"):
        orders.add_column(col, justify="right")
    for kind, row in report.orders_by_kind.items():
        if row["total"]:
            orders.add_row(
                kind,
                str(row["total"]),
                str(row["filled"]),
                str(row["partial"]),
                str(row["unfilled"]),
            )
    orders.add_row(
        "[bold]all[/]",
        f"[bold]{report.orders_total}[/]",
        f"[bold]{report.orders_filled}[/]",
        f"[bold]{report.orders_partial}[/]",
        f"[bold]{report.orders_unfilled}[/]",
    )
    console.print(orders)
    if report.deadline_orders:
        rule = (
            "every allocation firm when it clears"
            if report.firm_slots is None
            else f"firm {report.firm_slots} slot(s) ahead, the rest planned again each hour"
        )
        console.print(
            f"Deadlines: {report.deadlines_met:,} of {report.deadline_orders:,} met "
            f"({report.deadline_share:.1%}); {report.wasted_gpu_hours:,.0f} GPU-hours went "
            f"to orders that then missed ({rule}).",
            highlight=False,
        )
    if report.firm_orders:
        console.print(
            f"Firm deadlines: {report.firm_missed} of {report.firm_orders} missed "
            f"({report.firm_unservable} of them unservable: no single pool could serve them "
            "at their limit).",
            highlight=False,
        )
    if report.orders_after_span:
        console.print(
            f"[dim]Not counted: {report.orders_after_span} orders of the file that are "
            f"submitted after these {report.hours} hours.[/]",
            highlight=False,
        )

    sites = Table(title="Volume by site (prices in yuan per GPU-hour)", title_justify="left")
    sites.add_column("site")
    sites.add_column("GPUs")
    sites.add_column("GPU-hours", justify="right")
    sites.add_column("avg price", justify="right")
    sites.add_column("value (yuan)", justify="right")
    short = {full: alias for alias, full in ALIASES.items()}
    classes: dict[str, list[str]] = {}
    for pool in scenario.pools:
        classes.setdefault(pool.site_id, []).append(short.get(pool.gpu_class, pool.gpu_class))
    for s in report.sites:
        sites.add_row(
            escape(s.name),
            " ".join(classes.get(s.site_id, [])),
            f"{s.gpu_hours:,}",
            yuan(s.avg_price_fen),
            yuan(s.value_fen),
        )
    sites.add_row(
        "[bold]all sites[/]",
        "",
        f"[bold]{report.gpu_hours_traded:,}[/]",
        f"[bold]{yuan(report.avg_price_fen)}[/]",
        f"[bold]{yuan(report.traded_value_fen)}[/]",
    )
    console.print(sites)

    money = Table(title="Money (yuan) and checks", title_justify="left", show_header=False)
    money.add_column("what")
    money.add_column("value", justify="right")
    money.add_row("welfare (value to buyers - sellers' reserves)", yuan(report.welfare_fen))
    money.add_row("buyer deposits", yuan(report.buyer_deposits_fen))
    money.add_row("buyer spend (metered)", yuan(report.buyer_spend_fen))
    if report.released_fen:
        money.add_row("held but released (unused)", yuan(report.released_fen))
    money.add_row("provider revenue (after fee)", yuan(report.provider_revenue_fen))
    money.add_row(f"exchange fees ({scenario.fee_bp / 100:g}%)", yuan(report.exchange_fees_fen))
    money.add_row("congestion rent", yuan(report.congestion_rent_fen))
    modelled = " (energy model, hourly)" if report.energy is not None else " (scenario file)"
    money.add_row(f"green share of traded GPU-hours{modelled}", f"{report.green_share:.1%}")
    balanced = "[green]yes[/]" if report.ledger_balanced else "[bold red]NO[/]"
    money.add_row("ledger balanced", balanced)
    money.add_row(
        "clearing time (mean / max)",
        f"{report.clear_mean_s * 1000:.0f} / {report.clear_max_s * 1000:.0f} ms",
    )
    console.print(money)
    if report.energy is not None:
        print_energy(console, report.energy)
    if not report.ledger_balanced:
        console.print(f"[bold red]ledger check failed:[/] {escape(report.ledger_message)}")


def tonnes(grams: int | float) -> str:
    return f"{grams / 1e6:,.3f}"


def print_energy(console: Console, e: EnergySummary) -> None:
    years = ", ".join(str(y) for y in e.years)
    table = Table(
        title=f"Energy and carbon (energy model, weather seed {e.seed}, {years})",
        title_justify="left",
        show_header=False,
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("leases metered", f"{e.leases:,} ({e.gpu_hours:,.0f} GPU-h)")
    table.add_row("energy (facility: GPU power x PUE)", f"{e.energy_wh / 1000:,.0f} kWh")
    table.add_row(
        "green (own wind and solar, hourly)",
        f"{e.green_wh / 1000:,.0f} kWh, {e.green_share:.1%}",
    )
    table.add_row("grid import", f"{e.grid_wh / 1000:,.0f} kWh")
    table.add_row("green certificates retired to buyers", f"{e.certificates_wh / 1000:,.0f} kWh")
    table.add_row("CO2 location-based [1]", f"{tonnes(e.location_g)} t")
    table.add_row("CO2 market-based [2]", f"{tonnes(e.market_g)} t")
    for a in e.avoided:
        factor = "" if a.t_per_mwh is None else f", {a.t_per_mwh:.4f} t/MWh"
        table.add_row(f"CO2 avoided vs {a.method}{factor} [3]", f"{a.tonnes:,.3f} t")
    if e.carbon_price_yuan_per_t:
        table.add_row("carbon price (added to reserves)", f"{e.carbon_price_yuan_per_t:,g} yuan/t")
    console.print(table)
    buyers = Table(title="CO2 per buyer (t)", title_justify="left")
    buyers.add_column("buyer", no_wrap=True)
    for col in ("GPU-h", "kWh", "green", "location", "market"):
        buyers.add_column(col, justify="right")
    if e.home_grid is not None:
        buyers.add_column("avoided [3]", justify="right")
    for b in e.buyers:
        row = [
            escape(b.buyer_id),
            f"{b.gpu_hours:,.0f}",
            f"{b.energy_wh / 1000:,.0f}",
            f"{b.green_share:.1%}",
            tonnes(b.location_g),
            tonnes(b.market_g),
        ]
        if b.avoided is not None:
            row.append(f"{b.avoided.tonnes:,.3f}")
        buyers.add_row(*row)
    console.print(buyers)
    factors = ", ".join(f"{region} {f:.4f}" for region, f in e.grid_factors.items())
    years = "/".join(str(y) for y in e.grid_factor_years)
    notes = [
        f"[1] grid import x the site province's grid average {years}, t/MWh: "
        + (factors or "none")
        + " (direct green supply counts 0)",
        "[2] energy not covered by green certificates retired to the buyer x a residual "
        "factor = the provincial grid average (China publishes no residual mix)",
        "[3] energy x the named baseline factor - market-based actual; grid_average: each "
        "site's own provincial average"
        + (f"; home_grid (energy.home_grid): {e.home_grid}" if e.home_grid else ""),
    ]
    for note in notes:
        console.print(f"[dim]{escape(note)}[/]", highlight=False)


def orders_table(items: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col, right in (
        ("id", False),
        ("kind", False),
        ("GPUs", True),
        ("GPU-h / slots", True),
        ("window (slots)", False),
        ("limit (yuan/GPU-h)", True),
        ("status", False),
    ):
        table.add_column(col, justify="right" if right else "left")
    for o in items:
        size = o["gpu_hours"] if o["kind"] == "batch" else o["duration_slots"]
        table.add_row(
            escape(o["id"]),
            o["kind"],
            str(o["gpus"]),
            str(size),
            f"{o['release_slot']}-{o['deadline_slot']}",
            fen(o["limit_fen"]),
            o["status"],
        )
    return table
