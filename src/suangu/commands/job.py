"""``suangu job logs ORDER [-f]``: follow the output of an order's payload."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from suangu.commands.common import DEFAULT_SERVER, KeyOption, UrlOption, calling, url_part

app = typer.Typer(help="Buyers' jobs (orders with a workload) on a Suangu server.")

#: Lease states after which no more output comes.
_DONE = {"settled", "failed", "completed"}


@app.command("logs")
def logs_command(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="The order whose output to show.")],
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing until the order's leases end.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, max=60, help="Seconds between polls (-f).")
    ] = 2.0,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
) -> None:
    """Print the output of the order's payload as its providers' agents ship it (secret
    values appear as ***)."""

    cursor: str | None = None
    with calling(ctx, url, key) as c:
        while True:
            page: dict[str, Any] = c.get(f"/orders/{url_part(order_id)}/logs", cursor=cursor)
            for item in page["items"]:
                sys.stdout.write(item["text"])
            sys.stdout.flush()
            cursor = page.get("resume") or cursor
            if page.get("next_cursor"):
                continue
            if not follow:
                return
            leases = c.all_pages("/leases", order_id=order_id)
            if leases and all(x["state"] in _DONE for x in leases):
                last = c.get(f"/orders/{url_part(order_id)}/logs", cursor=cursor)
                for item in last["items"]:
                    sys.stdout.write(item["text"])
                sys.stdout.flush()
                return
            time.sleep(interval)
