"""``suangu job logs ORDER [-f]``: follow the output of an order's payload."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

app = typer.Typer(help="Buyers' jobs (orders with a workload) on a Suangu server.")

UrlOption = Annotated[str, typer.Option("--url", envvar="SUANGU_URL", help="The Suangu server.")]
KeyOption = Annotated[
    str | None,
    typer.Option("--key", envvar="SUANGU_KEY", help="Your API key (sg_...).", show_default=False),
]
DEFAULT_SERVER = "http://127.0.0.1:8000"
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
    from suangu import cli

    cursor: str | None = None
    with cli._calling(ctx, url, key) as c:
        while True:
            page: dict[str, Any] = c.get(f"/orders/{cli._path(order_id)}/logs", cursor=cursor)
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
                last = c.get(f"/orders/{cli._path(order_id)}/logs", cursor=cursor)
                for item in last["items"]:
                    sys.stdout.write(item["text"])
                sys.stdout.flush()
                return
            time.sleep(interval)
