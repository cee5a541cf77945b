"""``suangu market quote|depth|index``: pre-trade information from a Suangu server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from suangu.commands.common import DEFAULT_SERVER, KeyOption, UrlOption, calling, fail, print_json
from suangu.core.errors import ValidationError

app = typer.Typer(
    help="Market information: quotes, depth and the price index.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON answer.")]


def _yuan(fen: Any) -> str:
    return "-" if fen is None else f"{int(fen) / 100:,.2f}"


@app.command("quote")
def quote_command(
    ctx: typer.Context,
    deadline: Annotated[
        int | None, typer.Option("--deadline", help="Deadline slot (first slot not usable).")
    ] = None,
    limit_fen: Annotated[
        int | None, typer.Option("--limit-fen", help="Limit price, fen per GPU-hour.")
    ] = None,
    kind: Annotated[str, typer.Option("--kind", help="batch, gang or service.")] = "batch",
    gpus: Annotated[int, typer.Option("--gpus", help="GPUs per slot (at most).")] = 1,
    gpu_hours: Annotated[
        int | None, typer.Option("--gpu-hours", help="Work of a batch order.")
    ] = None,
    duration: Annotated[int | None, typer.Option("--duration", help="Slots a gang runs.")] = None,
    release: Annotated[
        int | None, typer.Option("--release", help="Release slot (default: now).")
    ] = None,
    gpu_class: Annotated[
        list[str] | None, typer.Option("--class", help="Allowed GPU class (repeat).")
    ] = None,
    region: Annotated[
        list[str] | None, typer.Option("--region", help="Allowed region (repeat).")
    ] = None,
    complete: Annotated[
        bool,
        typer.Option("--complete-or-nothing", help="Batch work worth nothing in part."),
    ] = False,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="A JSON order spec (the fields of POST /orders) instead."),
    ] = None,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """What an order would get and pay if the market cleared now (indicative: nothing is
    submitted or held)."""

    with calling(ctx, url, key) as c:
        if file is not None:
            try:
                spec = json.loads(file.read_text())
            except (OSError, ValueError) as err:
                fail(ValidationError(f"cannot read it: {err}", field=str(file), fix="give JSON"))
            got = c.request("GET", "/market/quote", json=spec, rename=str(file))
        else:
            if deadline is None or limit_fen is None:
                fail(
                    ValidationError(
                        "--deadline and --limit-fen are needed",
                        field="--deadline",
                        fix="give the order's deadline slot and limit, or --file",
                    )
                )
            params: dict[str, Any] = {
                "kind": kind,
                "gpus": gpus,
                "deadline_slot": deadline,
                "limit_fen": limit_fen,
                "gpu_hours": gpu_hours,
                "duration_slots": duration,
                "release_slot": release,
                "gpu_classes": gpu_class or None,
                "regions": region or None,
                "complete_or_nothing": "true" if complete else None,
            }
            got = c.get("/market/quote", **params)
    if as_json:
        print_json(got)
        return
    console = Console()
    console.print(
        f"[bold]Indicative[/bold] quote, slots {got['first_slot']}-"
        f"{got['first_slot'] + got['n_slots']} ({got['status']}): "
        f"{got['gpu_hours']} GPU-h for {_yuan(got['total_fen'])} yuan "
        f"(mean {_yuan(got['mean_price_fen'])} yuan/GPU-h"
        f"{'' if got['funded'] else '; NOT funded: the clearing would leave it out'})"
    )
    table = Table(title="Allocations", title_justify="left")
    for col in ("pool", "site", "class", "slot", "GPUs", "price (yuan/GPU-h)"):
        table.add_column(col)
    for a in got["allocations"]:
        table.add_row(
            escape(a["pool_id"]), escape(a["site_id"]), a["gpu_class"], str(a["slot"]),
            str(a["gpus"]), _yuan(a["price_fen"]),
        )  # fmt: skip
    console.print(table)
    console.print(escape(got["note"]))


@app.command("depth")
def depth_command(
    ctx: typer.Context,
    pool: Annotated[str | None, typer.Option("--pool", help="One pool (default: all).")] = None,
    slot: Annotated[int | None, typer.Option("--slot", help="First slot (default: now).")] = None,
    n_slots: Annotated[int, typer.Option("--slots", min=1, help="Slots to show.")] = 1,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """The supply curve: GPUs still offered at each reserve price, per pool and slot."""

    with calling(ctx, url, key) as c:
        got = c.get("/market/depth", pool=pool, slot=slot, n_slots=n_slots)
    if as_json:
        print_json(got)
        return
    table = Table(title="Depth (open GPUs by reserve price)", title_justify="left")
    for col in ("pool", "slot", "reserve (yuan/GPU-h)", "GPUs", "cumulative"):
        table.add_column(col)
    for item in got["items"]:
        for lv in item["levels"]:
            table.add_row(
                escape(item["pool_id"]), str(item["slot"]), _yuan(lv["reserve_fen"]),
                str(lv["gpus"]), str(lv["cumulative_gpus"]),
            )  # fmt: skip
    Console().print(table)


@app.command("index")
def index_command(
    ctx: typer.Context,
    site: Annotated[str | None, typer.Option("--site", help="One site.")] = None,
    gpu_class: Annotated[str | None, typer.Option("--class", help="One GPU class.")] = None,
    first: Annotated[
        str | None, typer.Option("--from", help="First day, YYYY-MM-DD (UTC).")
    ] = None,
    last: Annotated[str | None, typer.Option("--to", help="Last day, inclusive.")] = None,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """The daily price index per site and GPU class (no key needed)."""

    with calling(ctx, url, key) as c:
        got = c.request(
            "GET",
            "/market/index",
            params={"site": site, "gpu_class": gpu_class, "from": first, "to": last},
            needs_key=False,
        )
    if as_json:
        print_json(got)
        return
    table = Table(title=f"Price index {got['from_date']} to {got['to_date']}", title_justify="left")
    for col in ("date", "site", "class", "index (yuan/GPU-h)", "GPU-h", "low", "high"):
        table.add_column(col)
    for r in got["items"]:
        table.add_row(
            r["date"], escape(r["site_id"]), r["gpu_class"], _yuan(r["index_fen"]),
            str(r["gpu_hours"]), _yuan(r["low_fen"]), _yuan(r["high_fen"]),
        )  # fmt: skip
    console = Console()
    console.print(table)
    console.print(f"Rule: {escape(got['rule'])}")
