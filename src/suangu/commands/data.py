"""``suangu data put/get/ls``: a buyer's data objects on a Suangu server."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from suangu.commands.common import (
    DEFAULT_SERVER,
    KeyOption,
    UrlOption,
    calling,
    fail,
    print_json,
    read_file,
    url_part,
    utc,
)
from suangu.core.errors import SuanguError, ValidationError

app = typer.Typer(help="Data objects (inputs and outputs of jobs) on a Suangu server.")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _table(items: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("id", "name", "size (bytes)", "sha256", "created (UTC)", "lease"):
        table.add_column(col, justify="right" if col.startswith("size") else "left")
    for o in items:
        table.add_row(
            escape(o["id"]),
            escape(o["name"]),
            f"{o['size']:,}",
            o["sha256"][:16] + "...",
            utc(o["created_at"]),
            escape(o.get("lease_id") or "-"),
        )
    return table


@app.command("put")
def put_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The file to upload.")],
    name: Annotated[
        str | None, typer.Option("--name", help="The object's name (default: the file's).")
    ] = None,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload a file as a data object (encrypted at rest; the server checks its sha256)."""
    raw = read_file(file)
    sha = hashlib.sha256(raw).hexdigest()
    with calling(ctx, url, key) as c:
        got = c.request(
            "POST",
            "/data",
            content=raw,
            headers={"Content-Type": "application/octet-stream"},
            params={"name": name or file.name, "sha256": sha},
        )
    if as_json:
        print_json(got)
        return
    Console().print(_table([got], f"Stored {escape(str(file))}"))


@app.command("get")
def get_command(
    ctx: typer.Context,
    object_id: Annotated[str, typer.Argument(help="The object's id (do_...).")],
    out: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write here (default: its name; - for stdout)."),
    ] = None,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
) -> None:
    """Download a data object and check its sha256."""
    with calling(ctx, url, key) as c:
        meta = c.get(f"/data/{url_part(object_id)}")
        data, _headers = c.download(f"/data/{url_part(object_id)}/content")
    got = hashlib.sha256(data).hexdigest()
    if got != meta["sha256"]:
        fail(
            ValidationError(
                f"the bytes received hash to {got}, not {meta['sha256']}",
                field=object_id,
                fix="download it again",
            )
        )
    if out is not None and str(out) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    target = out or Path(Path(meta["name"]).name or object_id)
    try:
        target.write_bytes(data)
    except OSError as err:
        fail(SuanguError(f"cannot write it: {err.strerror or err}", field=str(target)))
    Console(stderr=True).print(f"{escape(str(target))}: {len(data):,} bytes, sha256 {got}")


@app.command("ls")
def ls_command(
    ctx: typer.Context,
    url: UrlOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Your data objects (every member's for operators and auditors), oldest first."""
    with calling(ctx, url, key) as c:
        items = c.all_pages("/data")
    if as_json:
        print_json(items)
        return
    Console().print(_table(items, f"Data objects ({len(items)})"))
