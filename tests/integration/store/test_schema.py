"""The migrations build exactly the schema of the models, on every backend."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from suangu.store.db import Database, alembic_config, database_url, migrate, sqlite_url
from suangu.store.models import Base

#: The newest migration.
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_migrations_build_the_models_schema(engine_url: tuple[str, Engine]) -> None:
    backend, engine = engine_url
    migrate(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)
        tables = set(inspect(conn).get_table_names())
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert diffs == []
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
    assert version == HEAD
    migrate(engine)  # running it again is a no-op
    if backend == "sqlite":
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_check_constraints_are_in_the_migration(engine_url: tuple[str, Engine]) -> None:
    """compare_metadata does not compare CHECK constraints: compare their names."""
    _, engine = engine_url
    migrate(engine)
    insp = inspect(engine)
    for table in Base.metadata.sorted_tables:
        want = {c.name for c in table.constraints if c.__class__.__name__ == "CheckConstraint"}
        got = {c["name"] for c in insp.get_check_constraints(table.name)}
        assert want <= got, table.name


def test_settings_and_urls(tmp_path: object) -> None:
    assert database_url({}) == "sqlite:///suangu.db"
    assert database_url({"SUANGU_DATABASE_URL": "postgresql://x/y"}) == "postgresql://x/y"
    assert sqlite_url("/tmp/a.db") == "sqlite:////tmp/a.db"


def test_migrate_from_a_url(tmp_path: object) -> None:
    from pathlib import Path

    url = sqlite_url(Path(str(tmp_path)) / "fresh.db")
    migrate(url)
    db = Database.from_url(url)
    with db.session_scope(write=False) as s:
        assert s.execute(text("SELECT count(*) FROM members")).scalar_one() == 0
    db.dispose()


def test_transaction_retries_duplicates_not_broken_rows(db: Database) -> None:
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import Session

    from suangu.store.models import MemberRow

    calls: list[int] = []

    def duplicate_once(s: Session) -> str:
        calls.append(1)
        if len(calls) == 1:  # a concurrent writer got there first
            with db.session_scope() as other:
                other.add(MemberRow(id="m", name="first", role="buyer", created_at=0))
            s.add(MemberRow(id="m", name="second", role="buyer", created_at=0))
            s.flush()
        row = s.get(MemberRow, "m")
        assert row is not None
        return row.name

    assert db.transaction(duplicate_once, retry_integrity=True) == "first"
    assert len(calls) == 2

    def broken(s: Session) -> None:
        calls.append(1)
        s.add(MemberRow(id="n", name="x", role="emperor", created_at=0))
        s.flush()

    calls.clear()
    with pytest.raises(IntegrityError):
        db.transaction(broken, retry_integrity=True)
    assert len(calls) == 1


def test_concurrent_migrations_queue(engine_url: tuple[str, Engine]) -> None:
    """Several workers starting at once: one migrates, the others find nothing to do."""
    import threading

    _, engine = engine_url
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate(engine)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert context.get_current_revision() == HEAD
        assert compare_metadata(context, Base.metadata) == []


def test_0004_upgrades_a_ledger_in_use(engine_url: tuple[str, Engine]) -> None:
    """0004 widens the ledger's account kinds and transfer codes while rows refer to the
    ledger tables (SQLite edits the CHECK in place: copying the tables would break those
    references), and the database then takes the new values and still refuses others."""
    from sqlalchemy.exc import IntegrityError

    _, engine = engine_url
    migrate(engine, "0003")
    account = "INSERT INTO ledger_accounts VALUES (:id, 'CNY', :kind, 'x', 0, 0, 0, 0, 0, 0)"
    with engine.begin() as conn:
        for acc in ("a", "b"):
            conn.execute(text(account), {"id": acc, "kind": "external"})
        conn.execute(
            text(
                "INSERT INTO ledger_transfers (id, code, debit_account_id, credit_account_id, "
                "amount, ledger, flags, timeout_s, user_data, timestamp) "
                "VALUES ('t1', 'deposit', 'a', 'b', 5, 'CNY', 0, 0, '', 0)"
            )
        )
    migrate(engine)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        conn.execute(text(account), {"id": "net", "kind": "exchange_network"})
        conn.execute(
            text(
                "INSERT INTO ledger_transfers (id, code, debit_account_id, credit_account_id, "
                "amount, ledger, flags, timeout_s, user_data, timestamp) "
                "VALUES ('t2', 'data_transfer', 'a', 'net', 5, 'CNY', 0, 0, '', 0)"
            )
        )
        assert conn.execute(text("SELECT count(*) FROM ledger_transfers")).scalar() == 2
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text(account), {"id": "bad", "kind": "bogus"})
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrading_takes_api_keys_out_of_idempotency_records(
    engine_url: tuple[str, Engine],
) -> None:
    """Records of key creations made before 0008 held the token: the upgrade replaces them
    with the 409 problem that a replay now answers, and leaves other records alone."""
    import json

    from sqlalchemy import insert, select

    from suangu.store.models import IdempotencyRow, MemberRow

    _, engine = engine_url
    migrate(engine, "0004")
    token = "sg_abcdef012345_" + "s" * 43
    key_body = {"id": "key_abcdef012345", "member_id": "team", "token": token, "role": "buyer"}
    order_body = {"id": "o-1", "status": "open"}
    with engine.begin() as conn:
        conn.execute(
            insert(MemberRow), [{"id": "op", "name": "Op", "role": "operator", "created_at": 1}]
        )
        conn.execute(
            insert(IdempotencyRow),
            [
                {
                    "member_id": "op",
                    "key": "k-key",
                    "request_hash": "h",
                    "status": 201,
                    "body": key_body,
                    "created_at": 1,
                },
                {
                    "member_id": "op",
                    "key": "k-order",
                    "request_hash": "h",
                    "status": 201,
                    "body": order_body,
                    "created_at": 1,
                },
            ],
        )
    migrate(engine)
    with engine.connect() as conn:
        rows = {r.key: r for r in conn.execute(select(IdempotencyRow.__table__))}
    assert token not in json.dumps(rows["k-key"].body)
    assert rows["k-key"].status == 409
    assert rows["k-key"].body["code"] == "secret_not_replayable"
    assert "key_abcdef012345" in rows["k-key"].body["fix"]
    assert rows["k-order"].body == order_body and rows["k-order"].status == 201
