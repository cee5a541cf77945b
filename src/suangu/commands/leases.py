"""``suangu lease``: leases (cleared allocations) on a running server."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from suangu.commands.common import (
    DEFAULT_SERVER,
    JsonOption,
    KeyOption,
    UrlOption,
    calling,
    fen,
    fields_table,
    print_json,
    url_part,
    utc,
)

app = typer.Typer(help="Leases (cleared allocations) on a Suangu server.", no_args_is_help=True)


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
            fen(x["price_fen"]),
            x["state"],
        )
    return table


@app.command("list")
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
    with calling(ctx, url, key) as c:
        items = c.all_pages("/leases", state=state, order_id=order_id)
    if as_json:
        print_json(items)
        return
    Console().print(_leases_table(items, f"Leases ({len(items)})"))


@app.command("show")
def lease_show_command(
    ctx: typer.Context,
    lease_id: Annotated[str, typer.Argument(help="The lease's id.")],
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """One lease with its meter readings."""
    with calling(ctx, url, key) as c:
        got = c.get(f"/leases/{url_part(lease_id)}")
        readings = c.all_pages(f"/leases/{url_part(lease_id)}/readings")
    if as_json:
        print_json({**got, "readings": readings})
        return
    console = Console()
    console.print(fields_table(got, f"Lease {escape(lease_id)}"))
    if readings:
        table = Table(title="Meter readings", title_justify="left")
        for col in ("id", "from (UTC)", "to (UTC)", "GPU-hours", "kWh"):
            table.add_column(col, justify="left" if col == "id" else "right")
        for r in readings:
            table.add_row(
                escape(r["id"]),
                utc(r["interval_start"]),
                utc(r["interval_end"]),
                f"{r['gpu_seconds'] / 3600:,.2f}",
                f"{r['energy_wh'] / 1000:,.3f}",
            )
        console.print(table)
