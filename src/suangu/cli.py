"""The ``suangu`` command line.

Errors Suangu raises on purpose (:class:`~suangu.core.errors.SuanguError`) are caught here,
at the edge, and printed as one red line ``error: <message>`` with exit code 2: never a stack
trace.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from suangu import __version__
from suangu.core.errors import SuanguError, ValidationError
from suangu.core.gpus import ALIASES

if TYPE_CHECKING:  # the solver stack loads on first use: --help and --version stay instant
    from suangu.sim.scenario import Scenario
    from suangu.sim.simulate import EnergySummary, SimulationReport

app = typer.Typer(
    name="suangu",
    help="Suangu (算谷): an open exchange for green GPU compute.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: The packaged example: six East-Data-West-Compute hub sites, three days, ~300 orders.
DEMO_SCENARIO = "data/scenarios/east_west.yaml"
DEMO_ORDERS = "data/scenarios/east_west_orders.csv"


def _fail(err: SuanguError) -> NoReturn:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(err))}")
    raise typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"suangu {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Suangu (算谷): an open exchange for green GPU compute."""


@contextmanager
def _progress(enabled: bool, label: str) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("hours"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _run(
    scenario_path: Path | str,
    orders_path: Path | str,
    hours: int | None,
    as_json: bool,
    shortfall: float,
    seed: int,
    header: Callable[[Scenario, int], None] | None = None,
) -> None:
    from suangu.sim.scenario import load_orders, load_scenario
    from suangu.sim.simulate import simulate

    try:
        scenario = load_scenario(scenario_path, hours=hours)
        stream = load_orders(orders_path, scenario)
        if header is not None:
            header(scenario, len(stream.orders))
        with _progress(not as_json, f"clearing {scenario.name}") as progress:
            report = simulate(scenario, stream, progress=progress, shortfall=shortfall, seed=seed)
    except SuanguError as err:
        _fail(err)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_report(report, scenario)
    if not report.ledger_balanced:
        raise typer.Exit(1)


HoursOption = Annotated[
    int | None,
    typer.Option("--hours", min=1, help="Simulate this many slots instead of the file's span."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the report as JSON (no table, no progress bar).")
]
ShortfallOption = Annotated[
    float,
    typer.Option(
        "--shortfall",
        min=0.0,
        max=1.0,
        help="Probability that a lease meters less than full use in a slot (50-100% of it).",
    ),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the metering shortfall.")]


@app.command("simulate")
def simulate_command(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML: sites, pools, offers.")],
    orders: Annotated[Path, typer.Argument(help="Order stream: .csv with a header, or .yaml.")],
    hours: HoursOption = None,
    as_json: JsonOption = False,
    shortfall: ShortfallOption = 0.0,
    seed: SeedOption = 0,
) -> None:
    """Replay ORDERS against SCENARIO hour by hour: clear, hold, meter, settle, report."""
    _run(scenario, orders, hours, as_json, shortfall, seed)


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="API worker processes.")
    ] = 1,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="SUANGU_DATABASE_URL",
            help="SQLAlchemy URL; default: the SQLite file suangu.db here.",
        ),
    ] = None,
) -> None:
    """Serve the exchange's HTTP API (OpenAPI at /docs) on the given database."""
    import os

    import uvicorn

    from suangu.store.db import DEFAULT_URL, open_database

    url = database_url or DEFAULT_URL
    try:
        open_database(url).dispose()  # migrate once, before the workers start
    except SuanguError as err:
        _fail(err)
    except Exception as err:  # a bad URL or a database that is down: one line, no trace
        _fail(
            ValidationError(
                str(err).splitlines()[0],
                field="database_url",
                fix="check SUANGU_DATABASE_URL or --database-url",
            )
        )
    os.environ["SUANGU_DATABASE_URL"] = url
    uvicorn.run("suangu.api.app:app_from_env", factory=True, host=host, port=port, workers=workers)


@app.command("demo")
def demo_command(
    hours: HoursOption = None,
    as_json: JsonOption = False,
    shortfall: ShortfallOption = 0.0,
    seed: SeedOption = 0,
) -> None:
    """Run the built-in East-Data-West-Compute market simulation and print a summary."""
    package = resources.files("suangu")
    with (
        resources.as_file(package / DEMO_SCENARIO) as scenario_path,
        resources.as_file(package / DEMO_ORDERS) as orders_path,
    ):
        _run(
            scenario_path,
            orders_path,
            hours,
            as_json,
            shortfall,
            seed,
            header=None if as_json else _demo_header,
        )


def _demo_header(scenario: Scenario, n_orders: int) -> None:
    sites = ", ".join(s.name.split(" ")[0] for s in scenario.sites)
    providers = len(set(scenario.providers.values()))
    text = (
        f"[bold]Suangu demo[/]: a simulated East-Data-West-Compute (东数西算) GPU market.\n\n"
        f"{len(scenario.sites)} hub sites ({escape(sites)}), {len(scenario.pools)} GPU pools from "
        f"{providers} providers, and {n_orders} orders (batch jobs, all-or-nothing gang jobs "
        f"and latency-bound services) over {scenario.hours} simulated hours.\n"
        f"Every hour the exchange clears the next {scenario.lookahead} hours (welfare-maximising "
        "allocation, one price per pool and hour), holds the buyers' money, and after each "
        "hour meters the leases and settles them on a double-entry ledger.\n"
        + _energy_header(scenario)
        + "\n[dim]This demo is the market simulation only: the API server, provider agents and "
        "dashboard are not part of it yet. Sites and latencies come from public data; "
        "providers, prices and orders are made up."
        + (
            " Horinger's energy assets are the published project's, the other sites' are "
            "illustrative, and the weather is modelled, not measured."
            if scenario.energy is not None
            else ""
        )
        + "[/]"
    )
    Console().print(Panel(text, border_style="blue", expand=False))


def _energy_header(scenario: Scenario) -> str:
    energy = scenario.energy
    if energy is None:
        return ""
    return (
        "Green shares come from the energy model: each site's wind, solar, storage, PUE and "
        "grid import simulated hour by hour (seeded weather), so orders' minimum green shares "
        "meet modelled supply. Every lease gets an energy and carbon record; green "
        "certificates (kWh-green) and CO2 (g) are booked on the same ledger as the money.\n"
    )


def _yuan(fen: int | float) -> str:
    return f"{fen / 100:,.2f}"


def _print_report(report: SimulationReport, scenario: Scenario) -> None:
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
            _yuan(s.avg_price_fen),
            _yuan(s.value_fen),
        )
    sites.add_row(
        "[bold]all sites[/]",
        "",
        f"[bold]{report.gpu_hours_traded:,}[/]",
        f"[bold]{_yuan(report.avg_price_fen)}[/]",
        f"[bold]{_yuan(report.traded_value_fen)}[/]",
    )
    console.print(sites)

    money = Table(title="Money (yuan) and checks", title_justify="left", show_header=False)
    money.add_column("what")
    money.add_column("value", justify="right")
    money.add_row("welfare (value to buyers - sellers' reserves)", _yuan(report.welfare_fen))
    money.add_row("buyer deposits", _yuan(report.buyer_deposits_fen))
    money.add_row("buyer spend (metered)", _yuan(report.buyer_spend_fen))
    if report.released_fen:
        money.add_row("held but released (unused)", _yuan(report.released_fen))
    money.add_row("provider revenue (after fee)", _yuan(report.provider_revenue_fen))
    money.add_row(f"exchange fees ({scenario.fee_bp / 100:g}%)", _yuan(report.exchange_fees_fen))
    money.add_row("congestion rent", _yuan(report.congestion_rent_fen))
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
        _print_energy(console, report.energy)
    if not report.ledger_balanced:
        console.print(f"[bold red]ledger check failed:[/] {escape(report.ledger_message)}")


def _t(grams: int | float) -> str:
    return f"{grams / 1e6:,.3f}"


def _print_energy(console: Console, e: EnergySummary) -> None:
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
    table.add_row("CO2 location-based [1]", f"{_t(e.location_g)} t")
    table.add_row("CO2 market-based [2]", f"{_t(e.market_g)} t")
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
            _t(b.location_g),
            _t(b.market_g),
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


report_app = typer.Typer(help="Reports: energy and carbon of a site.", no_args_is_help=True)
app.add_typer(report_app, name="report")


@report_app.command("energy")
def report_energy_command(
    site: Annotated[str, typer.Option("--site", help="Hub site id, e.g. horinger.")],
    year: Annotated[int, typer.Option("--year", help="Calendar year to model.")] = 2024,
    png: Annotated[
        Path | None,
        typer.Option("--png", help="Write the chart here (default energy-SITE-YEAR.png)."),
    ] = None,
    as_json: JsonOption = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the modelled weather.")] = 0,
) -> None:
    """Model a site's green supply, load, grid import, cost and CO2 by month; chart it."""
    from suangu.sim.energy import energy_report, render_chart

    try:
        report = energy_report(site, year, seed)
    except SuanguError as err:
        _fail(err)
    target = png or Path(f"energy-{site}-{year}.png")
    try:
        path = render_chart(report, target)
    except OSError as err:
        _fail(ValidationError(f"cannot write {target}: {err}", field="png", fix="a writable path"))
    if as_json:
        typer.echo(json.dumps({**report.to_dict(), "png": str(path)}, indent=2, ensure_ascii=False))
        return
    t = report.total
    table = Table(
        title=f"{escape(report.site.name)} {year}, GWh by month (green = used on site)",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    cols = ("month", "wind", "solar", "load", "green", "share", "grid", "surplus", "M yuan")
    for col in (*cols, "CO2 kt"):
        table.add_column(col, justify="right")
    for m in (*report.months, t):
        table.add_row(
            str(m.month) if m.month else "[bold]year[/]",
            f"{m.wind_mwh / 1e3:,.1f}",
            f"{m.solar_mwh / 1e3:,.1f}",
            f"{m.load_mwh / 1e3:,.1f}",
            f"{m.green_used_mwh / 1e3:,.1f}",
            f"{m.green_share:.1%}",
            f"{m.grid_mwh / 1e3:,.1f}",
            f"{m.curtailed_mwh / 1e3:,.1f}",
            f"{m.cost_yuan / 1e6:,.2f}",
            f"{m.co2_t / 1e3:,.2f}",
        )
    console = Console()
    console.print(table)
    console.print(
        f"PUE {t.pue:.3f}; CO2 is location-based: {escape(report.site.grid_factor.label)}"
    )
    for a in report.avoided:
        console.print(f"avoided: {escape(a.label)}", highlight=False)
    for note in report.notes:
        console.print(f"[dim]{escape(note)}[/]")
    console.print(f"chart: {path}")


if __name__ == "__main__":  # pragma: no cover
    app()
