"""``suangu resale offer|list|show|withdraw``: buyers sell back leases they hold
(:mod:`suangu.core.products`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from suangu.commands.common import (
    DEFAULT_SERVER,
    KeyOption,
    UrlOption,
    calling,
    print_json,
    url_part,
)

app = typer.Typer(help="Resale: offer back leases you hold as supply in the next clearings.")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _table(items: list[dict[str, Any]]) -> Table:
    table = Table(title="Resales", title_justify="left")
    for col in ("id", "lease", "pool", "slot", "GPUs", "reserve ¥", "status", "resold"):
        table.add_column(col, justify="right" if col in ("slot", "GPUs", "reserve ¥") else "left")
    for r in items:
        sold = ", ".join(f"{x['gpus']} @ {x['price_fen'] / 100:.2f}" for x in r["sales"])
        table.add_row(
            r["id"],
            r["lease_id"],
            str(r["pool_id"]),
            str(r["slot"]),
            str(r["gpus"]),
            f"{r['reserve_fen'] / 100:.2f}",
            r["status"],
            sold or "-",
        )
    return table


def _show(items: list[dict[str, Any]], as_json: bool) -> None:

    if as_json:
        print_json(items)
    else:
        Console().print(_table(items))


@app.command("offer")
def offer_command(
    ctx: typer.Context,
    lease_id: Annotated[str, typer.Argument(help="The lease to sell back (a scheduled one).")],
    reserve: Annotated[
        float, typer.Option("--reserve", min=0, help="The least you take, yuan per GPU-hour.")
    ],
    resale_id: Annotated[
        str | None, typer.Option("--id", help="The resale's id (default: from the lease).")
    ] = None,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
) -> None:
    """Offer back a lease you hold with the least you take; proceeds less the exchange fee
    come to you as the new buyer's use is settled."""

    rid = resale_id or "rs-" + "".join(c if c.isalnum() else "-" for c in lease_id)[-60:]
    body = {"id": rid, "lease_id": lease_id, "reserve_fen": round(reserve * 100)}
    with calling(ctx, url, key) as c:
        out = c.post("/resales", json=body)
    _show([out], as_json)


@app.command("list")
def list_command(
    ctx: typer.Context,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
) -> None:
    """Your resales and what sold of them."""

    with calling(ctx, url, key) as c:
        items = c.all_pages("/resales")
    _show(items, as_json)


@app.command("withdraw")
def withdraw_command(
    ctx: typer.Context,
    resale_id: Annotated[str, typer.Argument(help="The resale to withdraw.")],
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
) -> None:
    """Withdraw an open resale (what sold stays sold)."""

    with calling(ctx, url, key) as c:
        out = c.post(f"/resales/{url_part(resale_id)}/withdraw")
    _show([out], as_json)
