"""Operators' and auditors' commands: ``suangu audit ...`` and ``suangu admin ...``.

Registered in :mod:`suangu.cli`. Errors print as one line ``error: ...`` with exit code 2;
``suangu audit verify`` exits 1 when the chain is broken.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from suangu.core.errors import SuanguError, ValidationError

audit_app = typer.Typer(help="The audit trail: verify it.", no_args_is_help=True)

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="SUANGU_DATABASE_URL",
        help="Read the exchange's database directly (SQLAlchemy URL). Default, when no "
        "--url is given either: the SQLite file suangu.db here.",
        show_default=False,
    ),
]


def _fail(err: SuanguError) -> NoReturn:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(err))}")
    raise typer.Exit(2)


def _anchors(expect: list[str]) -> dict[int, str]:
    out: dict[int, str] = {}
    for text in expect:
        seq, sep, digest = text.partition(":")
        if not sep or not seq.isdigit() or len(digest) != 64:
            _fail(
                ValidationError(
                    f"{text!r} is not SEQ:HASH",
                    field="expect",
                    fix="pass the seq and hash that `suangu audit verify` printed, e.g. 42:9f...",
                )
            )
        out[int(seq)] = digest.lower()
    return out


def _verify_database(url: str, anchors: dict[int, str]) -> object:
    from sqlalchemy import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from suangu.store import audit
    from suangu.store.db import Database

    try:
        parsed = make_url(url)
        file = parsed.database if parsed.get_backend_name() == "sqlite" else None
        if file and file != ":memory:" and not Path(file).is_file():  # never create one
            raise ValidationError(
                f"no database file {file}",
                field="database_url",
                fix="point --database-url or SUANGU_DATABASE_URL at the exchange's database",
            )
        db = Database.from_url(url)
    except SuanguError as err:
        _fail(err)
    except Exception as err:  # a bad URL: one line
        _fail(ValidationError(str(err).splitlines()[0], field="database_url", fix="check it"))
    try:
        with db.session_scope(write=False) as s:
            return audit.verify_session(s, anchors)
    except SQLAlchemyError as err:
        _fail(
            ValidationError(
                f"cannot read the audit trail: {str(err).splitlines()[0]}",
                field="database_url",
                fix="point it at an exchange database migrated by `suangu serve` (0006 or later)",
            )
        )
    finally:
        db.dispose()


def _verify_api(ctx: typer.Context, url: str, key: str | None, anchors: dict[int, str]) -> object:
    from suangu.client import PAGE, SuanguClient
    from suangu.store import audit

    transport = (ctx.obj or {}).get("transport") if isinstance(ctx.obj, dict) else None
    try:
        with SuanguClient(url, key, transport=transport) as client:
            head = client.get("/audit/head")

            def entries() -> Iterator[audit.Record]:
                cursor: str | None = None
                while True:
                    page = client.get("/audit", limit=PAGE, cursor=cursor)
                    for item in page["items"]:
                        yield audit.Record.from_dict(item)
                    cursor = page.get("next_cursor")
                    if not cursor:
                        return

            return audit.verify(entries(), (int(head["seq"]), str(head["hash"])), anchors)
    except SuanguError as err:
        _fail(err)


@audit_app.command("verify")
def verify_command(
    ctx: typer.Context,
    database_url: DatabaseUrlOption = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Read the trail through a server's API instead (needs an auditor's or "
            "operator's --key); it is checked here, not by the server.",
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", envvar="SUANGU_KEY", help="API key, with --url.", show_default=False),
    ] = None,
    expect: Annotated[
        list[str] | None,
        typer.Option(
            "--expect",
            help="SEQ:HASH printed by an earlier verify (or GET /api/v1/audit/head): that "
            "entry must still have that hash. Repeatable.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Check the audit trail's hash chain: names every edited, deleted or reordered entry.

    Exit code 0: intact; 1: broken; 2: could not read it.
    """
    from suangu.store.audit import Verdict
    from suangu.store.db import DEFAULT_URL

    anchors = _anchors(expect or [])
    if url is not None and database_url is None:
        verdict = _verify_api(ctx, url, key, anchors)
    else:
        verdict = _verify_database(database_url or DEFAULT_URL, anchors)
    assert isinstance(verdict, Verdict)
    if as_json:
        doc = {
            "ok": verdict.ok,
            "entries": verdict.entries,
            "head": {"seq": verdict.head_seq, "hash": verdict.head_hash},
            "problems": [
                {"seq": p.seq, "kind": p.kind, "message": p.message} for p in verdict.problems
            ],
        }
        typer.echo(json.dumps(doc, indent=2))
    else:
        console = Console(soft_wrap=True, highlight=False)
        for p in verdict.problems:
            console.print(f"[bold red]{p.kind}:[/] {escape(p.message)}")
        head = f"{verdict.head_seq}:{verdict.head_hash}"
        if verdict.ok:
            console.print(f"[bold green]ok:[/] {verdict.entries} entries, head {head}")
        else:
            console.print(
                f"[bold red]broken:[/] {len(verdict.problems)} problem(s) in "
                f"{verdict.entries} entries (head {head})"
            )
    if not verdict.ok:
        raise typer.Exit(1)


# -- admin -----------------------------------------------------------------------------------

admin_app = typer.Typer(help="Set up an exchange: the first operator.", no_args_is_help=True)


def create_first_operator(url: str, member_id: str, name: str, now: int) -> str:
    """Migrate the database at ``url``, create the operator ``member_id`` with a key, and
    return the key's token; a :class:`~suangu.store.errors.Conflict` if any operator
    exists. One at a time: on PostgreSQL under an advisory lock, on SQLite under the write
    lock, so two concurrent runs make one operator."""
    from sqlalchemy import select, text
    from sqlalchemy.orm import Session

    from suangu.store import audit
    from suangu.store.db import open_database
    from suangu.store.errors import Conflict
    from suangu.store.models import MemberRow, Role
    from suangu.store.repositories import Members

    db = open_database(url)

    def work(s: Session) -> str:
        if db.dialect == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _INIT_LOCK})
        existing = s.scalars(
            select(MemberRow.id).where(MemberRow.role == str(Role.OPERATOR)).limit(1)
        ).first()
        if existing is not None:
            raise Conflict(
                f"the exchange has an operator already ({existing!r})",
                field="operator",
                fix="ask an operator for a key (POST /api/v1/members/{id}/keys); "
                "admin init only starts an empty exchange",
            )
        members = Members(s)
        members.create(member_id, name, Role.OPERATOR, now)
        new = members.create_key(member_id, now, label="admin init")
        by = "suangu admin init"
        audit.note(
            s,
            audit.Entry(
                now,
                None,
                audit.SYSTEM,
                "member.create",
                f"member:{member_id}",
                None,
                {"role": "operator", "by": by},
            ),
            audit.Entry(
                now,
                None,
                audit.SYSTEM,
                "key.create",
                f"key:{new.key.id}",
                None,
                {"member_id": member_id, "by": by},
            ),
        )
        return new.token

    try:
        return db.transaction(work)
    finally:
        db.dispose()


#: PostgreSQL advisory lock key of ``admin init`` ("init" in ASCII).
_INIT_LOCK = 0x696E6974


@admin_app.command("init")
def init_command(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="SUANGU_DATABASE_URL",
            help="SQLAlchemy URL; default: the SQLite file suangu.db here.",
            show_default=False,
        ),
    ] = None,
    member_id: Annotated[str, typer.Option("--id", help="The operator's member id.")] = "ops",
    name: Annotated[str, typer.Option("--name", help="The operator's name.")] = "Exchange operator",
) -> None:
    """Create the exchange's first operator and print its API key, once.

    Migrates the database first. Refuses when an operator exists: operators then create
    members and keys through the API. The key is printed on stdout only (nothing else is),
    so that `KEY=$(suangu admin init)` keeps it; it is stored as a hash and cannot be shown
    again.
    """
    import time

    from suangu.store.db import DEFAULT_URL

    url = database_url or DEFAULT_URL
    try:
        token = create_first_operator(url, member_id, name, int(time.time()))
    except SuanguError as err:
        _fail(err)
    except Exception as err:  # a bad URL or a database that is down: one line, no trace
        _fail(
            ValidationError(
                str(err).splitlines()[0],
                field="database_url",
                fix="check SUANGU_DATABASE_URL or --database-url",
            )
        )
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold green]Created[/] operator {escape(member_id)!r}. Its API key, shown this once "
        "(keep it secret; it is stored only as a hash):"
    )
    typer.echo(token)
