"""``suangu ledger``: accounts and statements on a running server."""

from __future__ import annotations

from typing import Annotated

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
    print_json,
    url_part,
    utc,
    yuan,
)

app = typer.Typer(help="Accounts and statements on a Suangu server.", no_args_is_help=True)


@app.command("balance")
def ledger_balance_command(
    ctx: typer.Context,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Your accounts' balances (every account for operators and auditors)."""
    with calling(ctx, url, key) as c:
        items = c.all_pages("/accounts")
    if as_json:
        print_json(items)
        return
    table = Table(title="Accounts", title_justify="left")
    table.add_column("account")
    table.add_column("unit")
    for col in ("balance", "held", "debits posted", "credits posted"):
        table.add_column(col, justify="right")
    for a in items:
        money = a["ledger"] == "CNY"

        def amount(v: int, money: bool = money) -> str:
            return yuan(v) if money else f"{v:,}"

        table.add_row(
            escape(a["id"]),
            "yuan" if money else escape(a["ledger"]),
            amount(a["balance"]),
            amount(a["debits_pending"]),
            amount(a["debits_posted"]),
            amount(a["credits_posted"]),
        )
    Console().print(table)


@app.command("statement")
def ledger_statement_command(
    ctx: typer.Context,
    account_id: Annotated[str, typer.Argument(help="Account id, e.g. buyer:team-a:CNY.")],
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """The transfers of one account, oldest first."""
    with calling(ctx, url, key) as c:
        items = c.all_pages(f"/accounts/{url_part(account_id)}/transfers")
    if as_json:
        print_json(items)
        return
    table = Table(title=f"Statement of {escape(account_id)}", title_justify="left")
    for col in ("time (UTC)", "id", "code", "in / out", "amount", "other account"):
        table.add_column(col, justify="right" if col == "amount" else "left")
    for t in items:
        incoming = t["credit_account_id"] == account_id
        other = t["debit_account_id"] if incoming else t["credit_account_id"]
        amount = t["amount"]
        table.add_row(
            utc(t["timestamp"]),
            escape(t["id"]),
            t["code"],
            "in" if incoming else "out",
            "-" if amount is None else yuan(amount),
            escape(other or "-"),
        )
    Console().print(table)
