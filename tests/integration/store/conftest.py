"""Store fixtures: every test runs on SQLite (a temporary file) and, when
``SUANGU_TEST_DATABASE_URL`` is set, on PostgreSQL too.

PostgreSQL runs get a fresh schema per test (``search_path`` set on connect), created by the
migrations and dropped afterwards, so runs are independent and never touch other schemas.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text

from suangu.store.db import Database, make_engine, migrate, sqlite_url

PG_ENV = "SUANGU_TEST_DATABASE_URL"
BACKENDS = ["sqlite", *(["postgresql"] if os.environ.get(PG_ENV) else [])]


def _pg_engine(url: str, schema: str) -> Engine:
    engine = make_engine(url)

    @event.listens_for(engine, "connect")
    def _search_path(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f'SET search_path TO "{schema}"')
        # A test that deadlocks fails in seconds instead of hanging the run.
        cursor.execute("SET lock_timeout = '20s'")
        cursor.execute("SET idle_in_transaction_session_timeout = '60s'")
        cursor.close()
        dbapi_connection.commit()

    return engine


@pytest.fixture(params=BACKENDS)
def engine_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    """A bare (unmigrated) engine on each backend: ``(backend name, engine)``."""
    if request.param == "sqlite":
        engine = make_engine(sqlite_url(tmp_path / "suangu.db"))
        yield "sqlite", engine
        engine.dispose()
        return
    url = os.environ[PG_ENV]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = _pg_engine(url, schema)
    try:
        yield "postgresql", engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def db(engine_url: tuple[str, Engine]) -> Database:
    """A migrated database on each backend."""
    _, engine = engine_url
    migrate(engine)
    return Database(engine)
