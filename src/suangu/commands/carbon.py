"""``suangu carbon statement`` and ``suangu carbon certificates``: a buyer's carbon statement
and a provider's green certificates, from a Suangu server."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from suangu.commands.common import DEFAULT_SERVER, KeyOption, UrlOption, calling, print_json, utc

app = typer.Typer(
    help="Carbon statements and green certificates on a Suangu server.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
FromOption = Annotated[
    str | None,
    typer.Option(
        "--from", help="Start: a date (2026-01-01), ISO time or Unix seconds (default: the start)."
    ),
]
ToOption = Annotated[
    str | None, typer.Option("--to", help="End, exclusive (default: now).", show_default=False)
]


def _kwh(wh: int) -> str:
    return f"{wh / 1000:,.3f}"


def _kg(g: int) -> str:
    return f"{g / 1000:,.3f}"


def _params(start: str | None, end: str | None) -> dict[str, str]:
    out = {}
    if start is not None:
        out["from"] = start
    if end is not None:
        out["to"] = end
    return out


_COLUMNS = (
    ("leases", "leases"),
    ("energy kWh", "energy_wh"),
    ("measured kWh", "measured_wh"),
    ("nominal kWh", "nominal_wh"),
    ("green kWh", "green_wh"),
    ("certificates kWh", "certificates_wh"),
    ("CO2 location kg", "co2_location_g"),
    ("CO2 market kg", "co2_market_g"),
)


def _cell(key: str, value: int) -> str:
    if key == "leases":
        return str(value)
    return _kg(value) if key.startswith("co2") else _kwh(value)


def statement_tables(st: dict[str, Any]) -> list[Table]:
    """The statement as rich tables: totals, then per site and per month."""
    total = Table(
        title=f"Carbon statement of {escape(st['buyer_id'])}: "
        f"{utc(st['from'])} to {utc(st['to'])} (UTC)",
        title_justify="left",
    )
    total.add_column("what")
    total.add_column("value", justify="right")
    rows = [
        ("leases metered", str(st["leases"])),
        ("GPU-hours", f"{st['gpu_hours']:,.2f}"),
        ("energy (facility), kWh", _kwh(st["energy_wh"])),
        ("  measured (NVML, Slurm), kWh", _kwh(st["measured_wh"])),
        ("  nominal (board power x time), kWh", _kwh(st["nominal_wh"])),
        ("green (site's own supply), kWh", _kwh(st["green_wh"])),
        ("green certificates retired, kWh", _kwh(st["certificates_wh"])),
        ("CO2 location-based (grid average), kg", _kg(st["co2_location_g"])),
        ("CO2 market-based (after certificates), kg", _kg(st["co2_market_g"])),
    ]
    for what, value in rows:
        total.add_row(what, value)
    out = [total]
    for name, key, items in (
        ("site", "site_id", st["sites"]),
        ("month", "month", st["months"]),
    ):
        if not items:
            continue
        table = Table(title=f"By {name}", title_justify="left")
        table.add_column(name)
        for label, _ in _COLUMNS:
            table.add_column(label, justify="right")
        for item in items:
            table.add_row(escape(str(item[key])), *(_cell(k, item[k]) for _, k in _COLUMNS))
        out.append(table)
    return out


@app.command("statement")
def statement_command(
    ctx: typer.Context,
    buyer: Annotated[str, typer.Argument(help="The buyer (yours, or any for operators).")],
    start: FromOption = None,
    end: ToOption = None,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """A buyer's carbon statement: energy metered (measured and nominal), CO2 location- and
    market-based, green certificates retired; per site and per month."""
    with calling(ctx, url, key) as c:
        st = c.get(f"/buyers/{buyer}/carbon-statement", **_params(start, end))
    if as_json:
        print_json(st)
        return
    console = Console()
    for table in statement_tables(st):
        console.print(table)
    for method in st["methods"]:
        console.print(f"[dim]{escape(method)}[/dim]")


@app.command("certificates")
def certificates_command(
    ctx: typer.Context,
    provider: Annotated[str, typer.Argument(help="The provider (yours, or any for operators).")],
    start: FromOption = None,
    end: ToOption = None,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Green certificates issued to a provider for its metered leases, per site and month."""
    with calling(ctx, url, key) as c:
        st = c.get(f"/providers/{provider}/certificates", **_params(start, end))
    if as_json:
        print_json(st)
        return
    table = Table(
        title=f"Green certificates of {escape(st['provider_id'])}: "
        f"{utc(st['from'])} to {utc(st['to'])} (UTC)",
        title_justify="left",
    )
    cols = (
        ("leases", "leases"),
        ("energy kWh", "energy_wh"),
        ("measured kWh", "measured_wh"),
        ("green kWh", "green_wh"),
        ("issued kWh", "certificates_issued_wh"),
    )
    table.add_column("site")
    for label, _ in cols:
        table.add_column(label, justify="right")
    for item in [*st["sites"], {"site_id": "total", **st}]:
        table.add_row(
            escape(item["site_id"]),
            *(str(item[k]) if k == "leases" else _kwh(item[k]) for _, k in cols),
        )
    Console().print(table)
