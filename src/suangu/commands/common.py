"""What every client command shares: server and key options, one client whose errors print
as one line, JSON output and the small formatters of money, times and ids.

Errors Suangu raises on purpose (:class:`~suangu.core.errors.SuanguError`) print as one red
line ``error: <message>`` with exit code 2: never a stack trace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from suangu.core.errors import SuanguError, ValidationError

if TYPE_CHECKING:
    from suangu.client import SuanguClient


def fail(err: SuanguError) -> NoReturn:
    """Print ``err`` as one red line and exit with code 2."""
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(err))}")
    raise typer.Exit(2)


JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the report as JSON (no table, no progress bar).")
]
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


def client(ctx: typer.Context, url: str, key: str | None) -> SuanguClient:
    """A client of ``url``; tests pass an httpx transport as ``obj={"transport": ...}``."""
    from suangu.client import SuanguClient

    transport = (ctx.obj or {}).get("transport") if isinstance(ctx.obj, dict) else None
    try:
        return SuanguClient(url, key, transport=transport)
    except SuanguError as err:
        fail(err)


@contextmanager
def calling(ctx: typer.Context, url: str, key: str | None) -> Iterator[SuanguClient]:
    """A client whose errors print as one line with exit code 2."""
    c = client(ctx, url, key)
    try:
        yield c
    except SuanguError as err:
        fail(err)
    finally:
        c.close()


def print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def fen(value: object) -> str:
    return yuan(int(value)) if isinstance(value, int) else "-"


def fields_table(obj: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field")
    table.add_column("value")
    for k, v in obj.items():
        shown = ", ".join(map(str, v)) if isinstance(v, list) else ("-" if v is None else str(v))
        table.add_row(k, escape(shown))
    return table


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        fail(
            ValidationError(
                f"cannot read it: {err.strerror or err}", field=str(path), fix="check the path"
            )
        )


def yuan(fen: int | float) -> str:
    return f"{fen / 100:,.2f}"


def utc(unix_seconds: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def url_part(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")
