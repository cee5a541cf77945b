"""``suangu order``, ``suangu offer`` and ``suangu clear``: buyers' orders, providers'
offers and the operator's clearing on a running server."""

from __future__ import annotations

from pathlib import Path
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
    fail,
    fen,
    fields_table,
    print_json,
    read_file,
    url_part,
    yuan,
)
from suangu.commands.render import orders_table
from suangu.core.errors import ValidationError

order_app = typer.Typer(help="Buyers' orders on a Suangu server.", no_args_is_help=True)
offer_app = typer.Typer(help="Providers' offers on a Suangu server.", no_args_is_help=True)


@order_app.command("submit")
def order_submit_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Job spec YAML: one order, or orders: [...].")],
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit the orders of a YAML job spec (all of them, or none)."""
    raw = read_file(file)
    with calling(ctx, url, key) as c:
        got = c.post(
            "/orders/yaml",
            content=raw,
            headers={"Content-Type": "application/yaml"},
            rename=str(file),
        )
    if as_json:
        print_json(got)
        return
    Console().print(orders_table(got["items"], f"Submitted from {escape(str(file))}"))


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
    with calling(ctx, url, key) as c:
        items = c.all_pages("/orders", status=status)
    if as_json:
        print_json(items)
        return
    Console().print(orders_table(items, f"Orders ({len(items)})"))


@order_app.command("show")
def order_show_command(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="The order's id.")],
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """One order with its leases."""
    with calling(ctx, url, key) as c:
        got = c.get(f"/orders/{url_part(order_id)}")
        leases = c.all_pages("/leases", order_id=order_id)
    if as_json:
        print_json({**got, "leases": leases})
        return
    console = Console()
    console.print(fields_table(got, f"Order {escape(order_id)}"))
    if leases:
        table = Table(title="Leases", title_justify="left")
        for col in ("pool", "slot", "GPUs", "price (yuan/GPU-h)", "state"):
            table.add_column(col)
        for x in leases:
            table.add_row(
                escape(x["pool_id"]), str(x["slot"]), str(x["gpus"]), fen(x["price_fen"]),
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
    with calling(ctx, url, key) as c:
        got = c.post(f"/orders/{url_part(order_id)}/cancel")
    if as_json:
        print_json(got)
        return
    Console().print(orders_table([got], f"Order {escape(order_id)} cancelled"))


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
            fen(low) if low == high else f"{fen(low)}-{fen(high)}",
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
    with calling(ctx, url, key) as c:
        items = c.all_pages("/offers")
    if as_json:
        print_json(items)
        return
    Console().print(_offers_table(items, f"Offers ({len(items)})"))


def _offer_bodies(file: Path, raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    import yaml

    try:
        data = yaml.safe_load(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        fail(
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
            fail(ValidationError("must be a non-empty list", field=f"{file}: offers", fix=shape))
        places = [f"{file}: offers[{i}]" for i in range(len(offers))]
    elif isinstance(data, dict):
        offers, places = [data], [str(file)]
    else:
        fail(ValidationError("must be a YAML mapping", field=str(file), fix=shape))
    for at, o in zip(places, offers, strict=True):
        if not isinstance(o, dict):
            fail(ValidationError("must be a mapping", field=at, fix=shape))
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
    bodies = _offer_bodies(file, read_file(file))
    out = []
    with calling(ctx, url, key) as c:
        for at, body in bodies:
            out.append(c.post("/offers", json=body, rename=at))
    if as_json:
        print_json(out)
        return
    Console().print(_offers_table(out, f"Offered from {escape(str(file))}"))


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
    with calling(ctx, url, key) as c:
        summary = c.post("/clearings", json={k: v for k, v in body.items() if v is not None})
        full = c.get(f"/clearings/{url_part(summary['id'])}")
    if as_json:
        print_json({**full, "excluded_orders": summary["excluded_orders"]})
        return
    console = Console()
    end = summary["first_slot"] + summary["n_slots"]
    console.print(
        f"clearing [bold]{escape(summary['id'])}[/]: slots {summary['first_slot']}-{end}, "
        f"{summary['status']} ({escape(summary['method'])}), {summary['n_allocations']} "
        f"allocations, welfare {yuan(summary['welfare_fen'])} yuan",
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
            yuan(min(values)),
            yuan(max(values)),
            str(sum(p["cleared_gpus"] for p in prices)),
        )
    console.print(table)
