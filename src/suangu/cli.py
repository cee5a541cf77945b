"""The ``suangu`` command line: the local runs (simulate, bench, demo, serve, report) here,
the client commands that talk to a running server in :mod:`suangu.commands`, and how reports
print in :mod:`suangu.commands.render`.

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
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from suangu import __version__, ops_cli
from suangu.commands import agent as agent_commands
from suangu.commands import carbon as carbon_commands
from suangu.commands import data as data_commands
from suangu.commands import job as job_commands
from suangu.commands import leases as leases_commands
from suangu.commands import ledger as ledger_commands
from suangu.commands import market as market_commands
from suangu.commands import orders
from suangu.commands import resale as resale_commands
from suangu.commands.common import JsonOption, fail, yuan
from suangu.commands.render import demo_header, print_demo, print_report
from suangu.core.errors import SuanguError, ValidationError

if TYPE_CHECKING:  # the solver stack loads on first use: --help and --version stay instant
    from suangu.sim.scenario import Scenario

app = typer.Typer(
    name="suangu",
    help="Suangu (算谷): an open exchange for green GPU compute.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
        fail(err)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print_report(report, scenario)
    if not report.ledger_balanced:
        raise typer.Exit(1)


HoursOption = Annotated[
    int | None,
    typer.Option("--hours", min=1, help="Simulate this many slots instead of the file's span."),
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
        fail(err)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print_report(report, sc)
        Console().print(
            f"Placed by [bold]{report.policy}[/]: a greedy baseline, first come first served, "
            "at the providers' listed prices (docs/scheduling.md). Welfare (value - listed "
            f"reserves - transfer cost): {yuan(report.net_welfare_fen)} yuan; fill rate "
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
    products: Annotated[
        bool,
        typer.Option(
            "--products",
            help="Compare the market products (the interruptible tier) with the hourly "
            "market alone; saves products.json.",
        ),
    ] = False,
    interruptible_share: Annotated[
        float,
        typer.Option(
            "--interruptible-share",
            min=0.0,
            max=1.0,
            help="With --products: share made interruptible.",
        ),
    ] = 0.3,
) -> None:
    """Run every scheduling policy on a scenario and trace; print one table, save CSV + PNG."""
    from suangu.sim.bench import bench_inputs, bench_table, run_bench, write_chart, write_csv

    if products:
        from suangu.commands.products import bench_products

        bench_products(scenario, orders, trace, days, load, hours, seed, interruptible_share, out)
        return

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
        fail(err)
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
    carbon_price: Annotated[
        float | None,
        typer.Option(
            "--carbon-price",
            min=0,
            max=100_000,
            help="Set the carbon price, yuan per tonne of CO2, added to the reserves of "
            "modelled sites (stored: it stays after a restart; PUT /market/carbon-price "
            "changes it). Default: the stored one.",
            show_default=False,
        ),
    ] = None,
    protect_firm_hours: Annotated[
        int,
        typer.Option(
            "--protect-firm-hours",
            min=0,
            max=24 * 366,
            help="Firm-order protection: hold GPUs back for firm orders that only one or two "
            "pools can serve, from the captive firm demand of this many past hours (0: off).",
        ),
    ] = 0,
) -> None:
    """Serve the exchange's HTTP API (OpenAPI at /docs) on the given database."""
    import os
    import time

    from suangu.api.serving import serve
    from suangu.store.db import DEFAULT_URL, open_database

    if (ssl_certfile is None) != (ssl_keyfile is None):
        fail(
            ValidationError(
                "HTTPS needs both a certificate and its key",
                field="ssl_keyfile" if ssl_keyfile is None else "ssl_certfile",
                fix="pass --ssl-certfile and --ssl-keyfile together",
            )
        )
    url = database_url or DEFAULT_URL
    try:
        db = open_database(url)  # migrate once, before the workers start
        if carbon_price is not None:
            from suangu.api.carbon_price import set_at_start

            set_at_start(db, carbon_price, int(time.time()))
        db.dispose()
    except SuanguError as err:
        fail(err)
    except Exception as err:  # a bad URL or a database that is down: one line, no trace
        fail(
            ValidationError(
                str(err).splitlines()[0],
                field="database_url",
                fix="check SUANGU_DATABASE_URL or --database-url",
            )
        )
    os.environ["SUANGU_DATABASE_URL"] = url
    os.environ["SUANGU_CLEARING_LOOP"] = "1" if clearing_loop else "0"
    os.environ["SUANGU_PROTECT_FIRM_HOURS"] = str(protect_firm_hours)
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
        fail(err)


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
            demo_header(sc, sum(1 for o in stream.orders if o.submit_slot < sc.hours), path)
        with _progress(not as_json, f"exchange {sc.name}") as progress:
            served, report = run_demo(
                database, sc, stream, progress=progress, shortfall=shortfall, seed=seed
            )
    except SuanguError as err:
        fail(err)
    if as_json:
        typer.echo(json.dumps({**report.to_dict(), "db": str(path)}, indent=2, ensure_ascii=False))
    else:
        print_demo(report, path)
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
            fail(
                ValidationError(
                    f"127.0.0.1:{port} is not free ({err.strerror or err})",
                    field="port",
                    fix="pass --port with a free port, or --no-serve",
                )
            )


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
        fail(err)
    target = png or Path(f"energy-{site}-{year}.png")
    try:
        path = render_chart(report, target)
    except OSError as err:
        fail(ValidationError(f"cannot write {target}: {err}", field="png", fix="a writable path"))
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


app.add_typer(orders.order_app, name="order")
app.add_typer(orders.offer_app, name="offer")
app.command("clear")(orders.clear_command)
app.add_typer(ledger_commands.app, name="ledger")
app.command("agent")(agent_commands.agent_command)
app.add_typer(leases_commands.app, name="lease")
app.add_typer(data_commands.app, name="data")
app.add_typer(job_commands.app, name="job")
app.add_typer(carbon_commands.app, name="carbon")
app.add_typer(resale_commands.app, name="resale")
app.add_typer(market_commands.app, name="market")

if __name__ == "__main__":  # pragma: no cover
    app()
