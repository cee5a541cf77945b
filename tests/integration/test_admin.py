"""Starting for real: ``suangu admin init`` makes the first operator and prints its key
once; the API docs are served without a CDN."""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from suangu.api.app import create_app
from suangu.api.clock import ManualClock
from suangu.cli import app as cli
from suangu.ops_cli import create_first_operator
from suangu.store import audit
from suangu.store.db import Database, sqlite_url
from suangu.store.errors import Conflict

PG_ENV = "SUANGU_TEST_DATABASE_URL"
BACKENDS = ["sqlite", *(["postgresql"] if os.environ.get(PG_ENV) else [])]
runner = CliRunner(env={"SUANGU_DATABASE_URL": None})
NOW = 1_767_225_600


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database's URL (PostgreSQL: a fresh schema, by the search_path option)."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "suangu.db")
        return
    base = os.environ[PG_ENV]
    schema = f"adm_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_admin_init_prints_the_key_once(url: str) -> None:
    first = runner.invoke(cli, ["admin", "init", "--database-url", url, "--id", "op-1"])
    assert first.exit_code == 0, first.output
    token = first.stdout.strip()
    assert re.fullmatch(r"sg_\w+_[\w-]+", token), first.stdout  # stdout: the key alone
    assert "shown this once" in first.stderr
    again = runner.invoke(cli, ["admin", "init", "--database-url", url, "--id", "op-2"])
    assert again.exit_code == 2
    assert "has an operator already ('op-1')" in again.stderr and "sg_" not in again.output
    db = Database.from_url(url)
    try:
        client = TestClient(create_app(db, ManualClock(NOW), dashboard=False))
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["role"] == "operator", me.text
        # The operator can now make members; all of it is in the audit trail.
        r = client.post(
            "/api/v1/members",
            json={"id": "buyer-1", "name": "B", "role": "buyer"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 201, r.text
        with db.session_scope(write=False) as s:
            records = list(audit.records(s))
            verdict = audit.verify_session(s)
        assert [(r.member_id, r.role, r.action) for r in records] == [
            (None, "system", "member.create"),
            (None, "system", "key.create"),
            ("op-1", "operator", "member.create"),
        ]
        assert verdict.ok
    finally:
        db.dispose()


def test_concurrent_inits_make_one_operator(url: str) -> None:
    create_first_operator(url, "warm", "W", NOW) if False else None
    outcomes: list[object] = []

    def run(k: int) -> None:
        try:
            outcomes.append(create_first_operator(url, f"op-{k}", "Op", NOW))
        except Conflict as err:
            outcomes.append(err)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(o, str) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, Conflict) for o in outcomes) == 3


def test_docs_are_served_offline(tmp_path: Path) -> None:
    db = Database.from_url(sqlite_url(tmp_path / "docs.db"))
    from suangu.store.db import migrate

    migrate(db.engine)
    client = TestClient(create_app(db, ManualClock(NOW), dashboard=False))
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        urls = re.findall(r'(?:src|href|url)\s*[=:]\s*["\']([^"\']+)["\']', html.text)
        assert urls, html.text
        for found in urls:
            assert found.startswith("/"), (page, found)  # nothing from another host
            if found != "/openapi.json":
                asset = client.get(found)
                assert asset.status_code == 200 and len(asset.content) > 1000, found
        assert "cdn" not in html.text and "fonts.googleapis" not in html.text
    assert client.get("/openapi.json").json()["openapi"].startswith("3.")
    db.dispose()


def test_admin_init_works_with_its_defaults(url: str) -> None:
    """The README's `KEY=$(suangu admin init)`: the default id is one a member may have."""
    first = runner.invoke(cli, ["admin", "init", "--database-url", url])
    assert first.exit_code == 0, first.output
    assert re.fullmatch(r"sg_\w+_[\w-]+", first.stdout.strip()), first.stdout
