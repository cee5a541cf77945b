"""The ``suangu`` command line.

Errors Suangu raises on purpose (:class:`~suangu.core.errors.SuanguError`) are caught here,
at the edge, and printed as one red line ``error: <message>`` with exit code 2: never a stack
trace.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from suangu import __version__, ops_cli
from suangu.commands import data as data_commands
from suangu.commands import job as job_commands
from suangu.core.errors import SuanguError, ValidationError
from suangu.core.gpus import ALIASES

if TYPE_CHECKING:  # the solver stack loads on first use: --help and --version stay instant
    from suangu.client import SuanguClient
    from suangu.demo import DemoReport
    from suangu.sim.scenario import Scenario
    from suangu.sim.simulate import EnergySummary, SimulationReport

app = typer.Typer(
    name="suangu",
    help="Suangu (算谷): an open exchange for green GPU compute.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            help="Who places the work: suangu (the clearing), fifo-home, cheapest-now or "
            "carbon-shift (greedy baselines at listed prices).",
        ),
    ] = "suangu",
) -> None:
    """Replay ORDERS against SCENARIO hour by hour: clear, hold, meter, settle, report."""
    if policy.strip().lower() == "suangu":
        _run(scenario, orders, hours, as_json, shortfall, seed)
        return
    from suangu.sim.scenario import load_orders, load_scenario
    from suangu.sim.simulate import simulate

    try:
        sc = load_scenario(scenario, hours=hours)
        stream = load_orders(orders, sc)
        with _progress(not as_json, f"{policy}: {sc.name}") as progress:
            report = simulate(
                sc, stream, progress=progress, shortfall=shortfall, seed=seed, policy=policy
            )
    except SuanguError as err:
        _fail(err)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_report(report, sc)
        Console().print(
            f"Placed by [bold]{report.policy}[/]: a greedy baseline, first come first served, "
            "at the providers' listed prices (docs/scheduling.md). Welfare (value - listed "
            f"reserves - transfer cost): {_yuan(report.net_welfare_fen)} yuan; fill rate "
            f"{report.fill_rate:.1%}."
        )
    if not report.ledger_balanced:
        raise typer.Exit(1)


@app.command("bench")
def bench_command(
    scenario: Annotated[
        Path | None,
        typer.Argument(help="Scenario YAML (default: the packaged ten-hub scenario)."),
    ] = None,
    orders: Annotated[
        Path | None,
        typer.Option("--orders", help="Order stream (.csv/.yaml) instead of the trace."),
    ] = None,
    trace: Annotated[
        Path | None,
        typer.Option("--trace", help="Alibaba GPU trace pod list (default: the packaged sample)."),
    ] = None,
    days: Annotated[
        int, typer.Option("--days", min=1, max=366, help="Days of trace-derived orders.")
    ] = 7,
    load: Annotated[
        float,
        typer.Option("--load", min=0.01, max=10.0, help="Trace work / home regions' capacity."),
    ] = 0.9,
    hours: HoursOption = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the trace-derived orders.")] = 0,
    policies: Annotated[
        list[str] | None,
        typer.Option("--policy", help="Run only these policies (repeat the option)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for bench.csv and bench.png.")] = Path(
        "bench-results"
    ),
) -> None:
    """Run every scheduling policy on a scenario and trace; print one table, save CSV + PNG."""
    from suangu.sim.bench import bench_inputs, bench_table, run_bench, write_chart, write_csv

    try:
        sc, stream, chosen = bench_inputs(
            scenario,
            orders,
            trace,
            days=days,
            load=load,
            hours=hours,
            seed=seed,
            policies=policies,
        )
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
            tasks = {p.value: bar.add_task(p.value, total=sc.hours) for p in chosen}

            def update(name: str, done: int, total: int) -> None:
                bar.update(tasks[name], completed=done, total=total)

            result = run_bench(sc, stream, policies=chosen, progress=update)
    except SuanguError as err:
        _fail(err)
    table_console = Console()
    if not table_console.is_terminal:  # piped or captured: the whole table, unwrapped
        table_console = Console(width=max(table_console.width, 160))
    table_console.print(bench_table(result))
    csv_path = write_csv(result, out / "bench.csv")
    png_path = write_chart(result, out / "bench.png")
    Console().print(f"wrote {csv_path} and {png_path}")
    if not all(r.ledger_balanced for r in result.rows):
        raise typer.Exit(1)


class LogFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


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
    clearing_loop: Annotated[
        bool,
        typer.Option(
            "--clearing-loop/--no-clearing-loop",
            help="Clear the market every slot and move leases on the clock (one leader "
            "among the workers on PostgreSQL).",
        ),
    ] = True,
    access_log: Annotated[
        bool,
        typer.Option("--access-log/--no-access-log", help="Log one line per request."),
    ] = True,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            help="json: one JSON object per line, with the request id; text: plain lines.",
        ),
    ] = LogFormat.JSON,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(
            "--ssl-certfile",
            help="Serve HTTPS with this certificate (PEM; the chain after it).",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option(
            "--ssl-keyfile",
            help="The certificate's private key (PEM).",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the exchange's HTTP API (OpenAPI at /docs) on the given database."""
    import os

    from suangu.api.serving import serve
    from suangu.store.db import DEFAULT_URL, open_database

    if (ssl_certfile is None) != (ssl_keyfile is None):
        _fail(
            ValidationError(
                "HTTPS needs both a certificate and its key",
                field="ssl_keyfile" if ssl_keyfile is None else "ssl_certfile",
                fix="pass --ssl-certfile and --ssl-keyfile together",
            )
        )
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
    os.environ["SUANGU_CLEARING_LOOP"] = "1" if clearing_loop else "0"
    scheme = "https" if ssl_certfile else "http"
    shown = f"[{host}]" if ":" in host else host
    where = f"{scheme}://{shown}:{port}"
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold green]Serving[/] Suangu at {where}/ (API {where}/api/v1, docs {where}/docs, "
        f"metrics {where}/metrics) on {escape(_safe_url(url))}, {workers} worker(s). "
        "Ctrl+C stops."
    )
    try:
        serve(  # TCP_NODELAY: see serving
            host,
            port,
            workers,
            access_log=access_log,
            log_format=log_format.value,
            ssl_certfile=None if ssl_certfile is None else str(ssl_certfile),
            ssl_keyfile=None if ssl_keyfile is None else str(ssl_keyfile),
        )
    except SuanguError as err:
        _fail(err)


def _safe_url(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # pragma: no cover - validated by open_database before
        return "the database"


@app.command("demo")
def demo_command(
    hours: HoursOption = None,
    as_json: JsonOption = False,
    shortfall: ShortfallOption = 0.0,
    seed: SeedOption = 0,
    scenario: Annotated[
        str,
        typer.Option(
            "--scenario",
            help="hubs: the ten hub sites and a trace-derived week; east-west: six sites, "
            "three days.",
        ),
    ] = "hubs",
    db: Annotated[
        Path,
        typer.Option("--db", help="The demo's SQLite file (replaced if an earlier demo's)."),
    ] = Path("suangu-demo.db"),
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Serve on 127.0.0.1 at this port.")
    ] = 8000,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve/--no-serve", help="Keep serving the API and the dashboard after the run."
        ),
    ] = True,
) -> None:
    """Run the exchange as a service on a simulated week, print a summary, keep serving it.

    Members and keys, sites, pools, offers, deposits and orders go through the HTTP API; the
    server's clearing loop clears every simulated hour; the providers' agents meter every
    lease over HTTP, which settles it. Then the API and the dashboard are served at
    http://127.0.0.1:PORT on the clock stopped at the end of the run (see docs/demo.md).
    """
    from suangu.demo import demo_inputs, fresh_sqlite, run_demo
    from suangu.store.db import open_database, sqlite_url

    path = db.expanduser().resolve()
    if serve:
        _check_port(port)
    try:
        sc, stream = demo_inputs(scenario, hours)
        fresh_sqlite(path)
        database = open_database(sqlite_url(path))
        if not as_json:
            _demo_header(sc, sum(1 for o in stream.orders if o.submit_slot < sc.hours), path)
        with _progress(not as_json, f"exchange {sc.name}") as progress:
            served, report = run_demo(
                database, sc, stream, progress=progress, shortfall=shortfall, seed=seed
            )
    except SuanguError as err:
        _fail(err)
    if as_json:
        typer.echo(json.dumps({**report.to_dict(), "db": str(path)}, indent=2, ensure_ascii=False))
    else:
        _print_demo(report, path)
    if not report.ledger_balanced:
        raise typer.Exit(1)
    if serve:
        import uvicorn

        Console(stderr=True).print(
            f"[bold green]Serving[/] the dashboard at http://127.0.0.1:{port}/ (?lang=zh for "
            f"Chinese), the API at http://127.0.0.1:{port}/api/v1 (docs at /docs), on the "
            "market clock stopped at the end of the run. Ctrl+C stops.",
            highlight=False,
        )
        uvicorn.run(served, host="127.0.0.1", port=port, log_level="warning")


def _check_port(port: int) -> None:
    """Fail before the run, not after it, when the port to serve on is taken."""
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as err:
            _fail(
                ValidationError(
                    f"127.0.0.1:{port} is not free ({err.strerror or err})",
                    field="port",
                    fix="pass --port with a free port, or --no-serve",
                )
            )


def _demo_header(scenario: Scenario, n_orders: int, path: Path) -> None:
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


def _print_demo(report: DemoReport, path: Path) -> None:
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
            _yuan(v.avg_price_fen),
            _yuan(v.value_fen),
        )
    avg = st.value_fen / st.gpu_hours if st.gpu_hours else 0
    sites.add_row(
        "[bold]all sites[/]",
        f"[bold]{st.gpu_hours:,}[/]",
        f"[bold]{_yuan(avg)}[/]",
        f"[bold]{_yuan(st.value_fen)}[/]",
    )
    console.print(sites)
    money = Table(title="Money (yuan), energy and checks", title_justify="left", show_header=False)
    money.add_column("what")
    money.add_column("value", justify="right")
    money.add_row("welfare (value to buyers - sellers' reserves)", _yuan(report.welfare_fen))
    money.add_row("buyer deposits", _yuan(st.money.get("deposit", 0)))
    # The dashboard's figures under its labels (suangu.web.stats.MarketStats).
    money.add_row("buyer spend (metered)", _yuan(st.buyer_spend_fen))
    money.add_row("provider revenue (after fee)", _yuan(st.money.get("provider_payout", 0)))
    money.add_row("exchange fees", _yuan(st.money.get("exchange_fee", 0)))
    if report.transfer_charged_fen:
        money.add_row(
            f"data transfer charges ({report.transfer_gb:,.0f} GB over links; on top of spend)",
            _yuan(report.transfer_charged_fen),
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
app.add_typer(ops_cli.audit_app, name="audit")
app.add_typer(ops_cli.admin_app, name="admin")


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


# -- client commands: talk to a running server (suangu serve) -------------------------------

UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="SUANGU_URL", help="The Suangu server.", rich_help_panel="Server"),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="SUANGU_KEY",
        help="Your API key (sg_...).",
        show_default=False,
        rich_help_panel="Server",
    ),
]
DEFAULT_SERVER = "http://127.0.0.1:8000"


def _client(ctx: typer.Context, url: str, key: str | None) -> SuanguClient:
    """A client of ``url``; tests pass an httpx transport as ``obj={"transport": ...}``."""
    from suangu.client import SuanguClient

    transport = (ctx.obj or {}).get("transport") if isinstance(ctx.obj, dict) else None
    try:
        return SuanguClient(url, key, transport=transport)
    except SuanguError as err:
        _fail(err)


@contextmanager
def _calling(ctx: typer.Context, url: str, key: str | None) -> Iterator[SuanguClient]:
    """A client whose errors print as one line with exit code 2."""
    client = _client(ctx, url, key)
    try:
        yield client
    except SuanguError as err:
        _fail(err)
    finally:
        client.close()


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _fen(value: object) -> str:
    return _yuan(int(value)) if isinstance(value, int) else "-"


def _orders_table(items: list[dict[str, Any]], title: str) -> Table:
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
            _fen(o["limit_fen"]),
            o["status"],
        )
    return table


def _fields_table(obj: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field")
    table.add_column("value")
    for k, v in obj.items():
        shown = ", ".join(map(str, v)) if isinstance(v, list) else ("-" if v is None else str(v))
        table.add_row(k, escape(shown))
    return table


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        _fail(
            ValidationError(
                f"cannot read it: {err.strerror or err}", field=str(path), fix="check the path"
            )
        )


order_app = typer.Typer(help="Buyers' orders on a Suangu server.", no_args_is_help=True)
offer_app = typer.Typer(help="Providers' offers on a Suangu server.", no_args_is_help=True)
ledger_app = typer.Typer(help="Accounts and statements on a Suangu server.", no_args_is_help=True)
app.add_typer(order_app, name="order")
app.add_typer(offer_app, name="offer")
app.add_typer(ledger_app, name="ledger")


@order_app.command("submit")
def order_submit_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Job spec YAML: one order, or orders: [...].")],
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit the orders of a YAML job spec (all of them, or none)."""
    raw = _read_file(file)
    with _calling(ctx, url, key) as c:
        got = c.post(
            "/orders/yaml",
            content=raw,
            headers={"Content-Type": "application/yaml"},
            rename=str(file),
        )
    if as_json:
        _print_json(got)
        return
    Console().print(_orders_table(got["items"], f"Submitted from {escape(str(file))}"))


@order_app.command("list")
def order_list_command(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only orders in this state (open, cleared, ...)."),
    ] = None,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Your orders (all orders for operators and auditors), oldest first."""
    with _calling(ctx, url, key) as c:
        items = c.all_pages("/orders", status=status)
    if as_json:
        _print_json(items)
        return
    Console().print(_orders_table(items, f"Orders ({len(items)})"))


@order_app.command("show")
def order_show_command(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="The order's id.")],
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """One order with its leases."""
    with _calling(ctx, url, key) as c:
        got = c.get(f"/orders/{_path(order_id)}")
        leases = c.all_pages("/leases", order_id=order_id)
    if as_json:
        _print_json({**got, "leases": leases})
        return
    console = Console()
    console.print(_fields_table(got, f"Order {escape(order_id)}"))
    if leases:
        table = Table(title="Leases", title_justify="left")
        for col in ("pool", "slot", "GPUs", "price (yuan/GPU-h)", "state"):
            table.add_column(col)
        for x in leases:
            table.add_row(
                escape(x["pool_id"]), str(x["slot"]), str(x["gpus"]), _fen(x["price_fen"]),
                x["state"],
            )  # fmt: skip
        console.print(table)


@order_app.command("cancel")
def order_cancel_command(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="The open order to cancel.")],
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel an open order (a cleared one can no longer be)."""
    with _calling(ctx, url, key) as c:
        got = c.post(f"/orders/{_path(order_id)}/cancel")
    if as_json:
        _print_json(got)
        return
    Console().print(_orders_table([got], f"Order {escape(order_id)} cancelled"))


def _offers_table(items: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("id", "pool", "slots", "GPUs (max)", "reserve (yuan/GPU-h)", "status"):
        table.add_column(col)
    for o in items:
        n = len(o["gpus"])
        reserves = o["reserve_fen"]
        low, high = min(reserves), max(reserves)
        table.add_row(
            escape(o["id"]),
            escape(o["pool_id"]),
            f"{o['start_slot']}-{o['start_slot'] + n}",
            str(max(o["gpus"])),
            _fen(low) if low == high else f"{_fen(low)}-{_fen(high)}",
            o["status"],
        )
    return table


@offer_app.command("list")
def offer_list_command(
    ctx: typer.Context,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Your offers (all offers for operators and auditors)."""
    with _calling(ctx, url, key) as c:
        items = c.all_pages("/offers")
    if as_json:
        _print_json(items)
        return
    Console().print(_offers_table(items, f"Offers ({len(items)})"))


def _offer_bodies(file: Path, raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    import yaml

    try:
        data = yaml.safe_load(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        _fail(
            ValidationError(
                f"is not valid YAML{where}",
                field=str(file),
                fix="check the indentation and the ':' after each key",
            )
        )
    shape = "id:, pool_id:, start_slot:, gpus: [...], reserve_fen: [...], or offers: [...]"
    offers: list[Any]
    places: list[str]
    if isinstance(data, dict) and "offers" in data:
        offers = data["offers"]
        if not isinstance(offers, list) or not offers:
            _fail(ValidationError("must be a non-empty list", field=f"{file}: offers", fix=shape))
        places = [f"{file}: offers[{i}]" for i in range(len(offers))]
    elif isinstance(data, dict):
        offers, places = [data], [str(file)]
    else:
        _fail(ValidationError("must be a YAML mapping", field=str(file), fix=shape))
    for at, o in zip(places, offers, strict=True):
        if not isinstance(o, dict):
            _fail(ValidationError("must be a mapping", field=at, fix=shape))
    return list(zip(places, offers, strict=True))


@offer_app.command("submit")
def offer_submit_command(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="Offer YAML: id, pool_id, start_slot, gpus (per slot), reserve_fen (per "
            "slot, fen per GPU-hour); or offers: with a list."
        ),
    ],
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Offer capacity of your pools, one offer after the other (resending one is harmless)."""
    bodies = _offer_bodies(file, _read_file(file))
    out = []
    with _calling(ctx, url, key) as c:
        for at, body in bodies:
            out.append(c.post("/offers", json=body, rename=at))
    if as_json:
        _print_json(out)
        return
    Console().print(_offers_table(out, f"Offered from {escape(str(file))}"))


@app.command("clear")
def clear_command(
    ctx: typer.Context,
    slots: Annotated[
        int | None, typer.Option("--slots", min=1, help="Slots to clear (default: the server's).")
    ] = None,
    first_slot: Annotated[
        int | None, typer.Option("--first-slot", min=0, help="First slot (default: now).")
    ] = None,
    clearing_id: Annotated[str | None, typer.Option("--id", help="The clearing's id.")] = None,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Operator: clear the market now and print the prices."""
    body = {"id": clearing_id, "n_slots": slots, "first_slot": first_slot}
    with _calling(ctx, url, key) as c:
        summary = c.post("/clearings", json={k: v for k, v in body.items() if v is not None})
        full = c.get(f"/clearings/{_path(summary['id'])}")
    if as_json:
        _print_json({**full, "excluded_orders": summary["excluded_orders"]})
        return
    console = Console()
    end = summary["first_slot"] + summary["n_slots"]
    console.print(
        f"clearing [bold]{escape(summary['id'])}[/]: slots {summary['first_slot']}-{end}, "
        f"{summary['status']} ({escape(summary['method'])}), {summary['n_allocations']} "
        f"allocations, welfare {_yuan(summary['welfare_fen'])} yuan",
        highlight=False,
    )
    if summary["excluded_orders"]:
        console.print(
            "left out (buyer could not fund the hold): "
            + escape(", ".join(summary["excluded_orders"])),
            highlight=False,
        )
    by_pool: dict[str, list[dict[str, Any]]] = {}
    for p in full["prices"]:
        by_pool.setdefault(p["pool_id"], []).append(p)
    table = Table(title="Prices (yuan per GPU-hour)", title_justify="left")
    for col, right in (("pool", False), ("slots", False), ("min", True), ("max", True)):
        table.add_column(col, justify="right" if right else "left")
    table.add_column("GPU-slots cleared", justify="right")
    for pool, prices in sorted(by_pool.items()):
        values = [p["price_fen"] for p in prices]
        table.add_row(
            escape(pool),
            f"{min(p['slot'] for p in prices)}-{max(p['slot'] for p in prices) + 1}",
            _yuan(min(values)),
            _yuan(max(values)),
            str(sum(p["cleared_gpus"] for p in prices)),
        )
    console.print(table)


@ledger_app.command("balance")
def ledger_balance_command(
    ctx: typer.Context,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Your accounts' balances (every account for operators and auditors)."""
    with _calling(ctx, url, key) as c:
        items = c.all_pages("/accounts")
    if as_json:
        _print_json(items)
        return
    table = Table(title="Accounts", title_justify="left")
    table.add_column("account")
    table.add_column("unit")
    for col in ("balance", "held", "debits posted", "credits posted"):
        table.add_column(col, justify="right")
    for a in items:
        money = a["ledger"] == "CNY"

        def amount(v: int, money: bool = money) -> str:
            return _yuan(v) if money else f"{v:,}"

        table.add_row(
            escape(a["id"]),
            "yuan" if money else escape(a["ledger"]),
            amount(a["balance"]),
            amount(a["debits_pending"]),
            amount(a["debits_posted"]),
            amount(a["credits_posted"]),
        )
    Console().print(table)


@ledger_app.command("statement")
def ledger_statement_command(
    ctx: typer.Context,
    account_id: Annotated[str, typer.Argument(help="Account id, e.g. buyer:team-a:CNY.")],
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """The transfers of one account, oldest first."""
    with _calling(ctx, url, key) as c:
        items = c.all_pages(f"/accounts/{_path(account_id)}/transfers")
    if as_json:
        _print_json(items)
        return
    table = Table(title=f"Statement of {escape(account_id)}", title_justify="left")
    for col in ("time (UTC)", "id", "code", "in / out", "amount", "other account"):
        table.add_column(col, justify="right" if col == "amount" else "left")
    for t in items:
        incoming = t["credit_account_id"] == account_id
        other = t["debit_account_id"] if incoming else t["credit_account_id"]
        amount = t["amount"]
        table.add_row(
            _utc(t["timestamp"]),
            escape(t["id"]),
            t["code"],
            "in" if incoming else "out",
            "-" if amount is None else _yuan(amount),
            escape(other or "-"),
        )
    Console().print(table)


@app.command("agent")
def agent_command(
    config: Annotated[Path, typer.Argument(help="Agent configuration (YAML).")],
    key: Annotated[str | None, typer.Option(help="Provider API key (default: key_env).")] = None,
    once: Annotated[bool, typer.Option(help="Run one tick and exit.")] = False,
) -> None:
    """Run a provider agent: start leases on local GPUs or Slurm, meter and report them."""
    import logging
    import time

    from suangu.agent.config import api_key, build_executor, build_meter, load_config
    from suangu.agent.runner import ProviderAgent
    from suangu.client import SuanguClient

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        spec = load_config(config)
        meter = build_meter(spec.meter)
        client = SuanguClient(spec.url, api_key(spec, key))
        executor = build_executor(spec.executor, meter, client)
        agent = ProviderAgent(
            client,
            executor,
            meter,
            time.time,
            reading_interval_s=spec.reading_interval_s,
            pools=set(spec.pools) if spec.pools is not None else None,
        )
        client.get("/me")  # a bad key or a server that is down fails here, clearly
    except SuanguError as err:
        _fail(err)
    console = Console(stderr=True)
    console.print(f"agent {agent.instance}: {spec.executor.kind} executor, {spec.meter.kind} meter")
    try:
        while True:
            s = agent.tick()
            for line in s.errors:
                console.print(f"[yellow]warning:[/] {escape(line)}")
            if once:
                break
            time.sleep(spec.poll_s)
    except KeyboardInterrupt:
        agent.stop()
    finally:
        client.close()


lease_app = typer.Typer(
    help="Leases (cleared allocations) on a Suangu server.", no_args_is_help=True
)
app.add_typer(lease_app, name="lease")
app.add_typer(data_commands.app, name="data")
app.add_typer(job_commands.app, name="job")


def _leases_table(items: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("id", "order", "pool", "slot", "GPUs", "price (yuan/GPU-h)", "state"):
        table.add_column(col, justify="right" if col in ("slot", "GPUs") else "left")
    for x in items:
        table.add_row(
            escape(x["id"]),
            escape(x["order_id"]),
            escape(x["pool_id"]),
            str(x["slot"]),
            str(x["gpus"]),
            _fen(x["price_fen"]),
            x["state"],
        )
    return table


@lease_app.command("list")
def lease_list_command(
    ctx: typer.Context,
    state: Annotated[
        str | None,
        typer.Option("--state", help="Only leases in this state (scheduled, running, ...)."),
    ] = None,
    order_id: Annotated[str | None, typer.Option("--order", help="Only this order's.")] = None,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Your leases: as a buyer, what you bought; as a provider, what runs on your pools."""
    with _calling(ctx, url, key) as c:
        items = c.all_pages("/leases", state=state, order_id=order_id)
    if as_json:
        _print_json(items)
        return
    Console().print(_leases_table(items, f"Leases ({len(items)})"))


@lease_app.command("show")
def lease_show_command(
    ctx: typer.Context,
    lease_id: Annotated[str, typer.Argument(help="The lease's id.")],
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """One lease with its meter readings."""
    with _calling(ctx, url, key) as c:
        got = c.get(f"/leases/{_path(lease_id)}")
        readings = c.all_pages(f"/leases/{_path(lease_id)}/readings")
    if as_json:
        _print_json({**got, "readings": readings})
        return
    console = Console()
    console.print(_fields_table(got, f"Lease {escape(lease_id)}"))
    if readings:
        table = Table(title="Meter readings", title_justify="left")
        for col in ("id", "from (UTC)", "to (UTC)", "GPU-hours", "kWh"):
            table.add_column(col, justify="left" if col == "id" else "right")
        for r in readings:
            table.add_row(
                escape(r["id"]),
                _utc(r["interval_start"]),
                _utc(r["interval_end"]),
                f"{r['gpu_seconds'] / 3600:,.2f}",
                f"{r['energy_wh'] / 1000:,.3f}",
            )
        console.print(table)


def _utc(unix_seconds: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _path(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")


if __name__ == "__main__":  # pragma: no cover
    app()
