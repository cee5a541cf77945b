"""Engines, sessions, transactions with retries, and migrations.

* :func:`database_url` is the only place that reads ``SUANGU_DATABASE_URL``.
* :func:`make_engine` sets SQLite up for one process with many threads: WAL journal, foreign
  keys on, a busy timeout, and driver-level autocommit so that SQLAlchemy's ``begin`` emits our
  own ``BEGIN``: ``BEGIN IMMEDIATE`` for write transactions (one writer at a time, taken at the
  start, so a read never has to be upgraded to a write mid-transaction, which SQLite refuses
  with ``database is locked``) and a deferred ``BEGIN`` for reads (readers never wait in WAL).
* :meth:`Database.transaction` runs a function in one transaction and retries it, from the
  start, on the transient errors of concurrent writers (PostgreSQL deadlocks and serialization
  failures, SQLite busy, a connection the server dropped, and, when asked, a concurrent insert
  of the same unique key).
* SQLite has one writer at a time: the threads of a process take turns on a lock before
  ``BEGIN IMMEDIATE`` (see :meth:`Database.session_scope`), so that they queue instead of
  polling SQLite's busy handler, whose growing sleeps (up to 100 ms each) made the slowest
  writes wait for seconds under load. Other processes still meet the busy timeout.
* PostgreSQL engines keep a pool of :data:`PG_POOL_SIZE` connections (plus
  :data:`PG_MAX_OVERFLOW` for bursts) and do not ping a connection on each checkout (a round
  trip per transaction); a connection the server dropped is detected when used, the pool is
  refreshed, and :meth:`Database.transaction` runs the function again.
* :func:`migrate` runs Alembic ``upgrade head`` from the migrations shipped in this package.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from suangu.store.errors import RetryExhausted

#: The environment variable naming the database; read only by :func:`database_url`.
DATABASE_URL_ENV = "SUANGU_DATABASE_URL"
#: The embedded default: one SQLite file in the working directory.
DEFAULT_URL = "sqlite:///suangu.db"
#: How long a SQLite writer waits for the write lock before giving up, milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE_OPTION = "suangu_write"
_MIGRATIONS = Path(__file__).with_name("migrations")
#: PostgreSQL advisory lock key held while migrating ("suangu" in ASCII).
_LOCK_KEY = 0x7375616E6775
#: Connections a PostgreSQL engine keeps open (per process), and how many more it may open
#: for a burst (closed again when returned). API request threads are bounded to the pool
#: size (see ``suangu.api.routes.orders``), so the overflow is for the rest.
PG_POOL_SIZE = 10
PG_MAX_OVERFLOW = 10

T = TypeVar("T")
_BEFORE_COMMIT = "suangu_before_commit"


def before_commit(session: Session, hook: Callable[[Session], None]) -> None:
    """Run ``hook(session)`` at the end of the session's unit of work
    (:meth:`Database.session_scope`), in its transaction, just before the commit; not if
    the block raised (:mod:`suangu.store.audit` appends its entries this way)."""
    session.info.setdefault(_BEFORE_COMMIT, []).append(hook)


class TransientConflict(Exception):
    """Raised inside :meth:`Database.transaction` to roll back and run the function again."""


def database_url(env: Mapping[str, str] | None = None, default: str = DEFAULT_URL) -> str:
    """``SUANGU_DATABASE_URL`` from ``env`` (the process environment by default), else
    ``default``."""
    source = os.environ if env is None else env
    return source.get(DATABASE_URL_ENV) or default


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{Path(path)}"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url``; SQLite files get WAL, foreign keys, a busy timeout and
    ``BEGIN IMMEDIATE`` for write transactions (see the module docs)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(
            url,
            echo=echo,
            pool_size=PG_POOL_SIZE,
            max_overflow=PG_MAX_OVERFLOW,
            pool_use_lifo=True,
        )
    engine = create_engine(
        url,
        echo=echo,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (the pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if parsed.database and parsed.database != ":memory:":
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(_WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def _is_transient(err: DBAPIError) -> bool:
    """A PostgreSQL deadlock / serialization failure or a SQLite busy database."""
    sqlstate = getattr(err.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in ("40001", "40P01")
    text = str(err.orig).lower()
    return isinstance(err, OperationalError) and ("is locked" in text or "busy" in text)


def is_unique_violation(err: IntegrityError) -> bool:
    """A duplicate key (not a CHECK or foreign-key failure, which retrying cannot cure)."""
    if getattr(err.orig, "sqlstate", None) == "23505":
        return True
    text = str(err.orig)
    return "UNIQUE constraint failed" in text


class Database:
    """An engine with a session factory for reads and one for writes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(
            engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False
        )
        # SQLite: the writers of this process queue here (re-entrant: a nested write scope in
        # the same thread meets SQLite's busy timeout as it would without the lock).
        self._writer: threading.RLock | None = threading.RLock() if is_sqlite(engine) else None

    @classmethod
    def from_url(cls, url: str, *, echo: bool = False) -> Database:
        return cls(make_engine(url, echo=echo))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session_scope(self, *, write: bool = True) -> Iterator[Session]:
        """One unit of work: commit at the end of the block, roll back on any exception.

        On SQLite a write scope first takes this process's writer lock (see the module docs).
        """
        lock = self._writer if write else None
        if lock is not None:
            lock.acquire()
        session = (self._write if write else self._read)()
        try:
            with session.begin():
                yield session
                for hook in session.info.pop(_BEFORE_COMMIT, ()):
                    hook(session)  # last in the transaction (the audit trail's append)
        finally:
            session.close()
            if lock is not None:
                lock.release()

    def transaction(
        self,
        fn: Callable[[Session], T],
        *,
        write: bool = True,
        retry_integrity: bool = False,
        attempts: int = 20,
    ) -> T:
        """``fn(session)`` in one transaction, retried from the start on transient errors.

        A connection that the server closed (a restart) is retried on a fresh one: the
        transaction did not commit, except in the rare case of a connection lost during the
        ``COMMIT`` itself, where the retry meets the first run's unique keys (idempotent
        writes find their row; see ``retry_integrity``).

        ``retry_integrity`` also retries on a unique-key violation: for functions that
        check for an existing row first, a violation means a concurrent writer inserted the
        same key, and the retry sees it. ``fn`` may raise :class:`TransientConflict` to ask
        for a retry itself.
        """
        for attempt in range(attempts):
            try:
                with self.session_scope(write=write) as session:
                    return fn(session)
            except TransientConflict:
                if attempt == attempts - 1:
                    raise RetryExhausted(
                        "the transaction kept conflicting with concurrent writers",
                        fix="retry later",
                    ) from None
            except IntegrityError as err:
                if not (retry_integrity and is_unique_violation(err)) or attempt == attempts - 1:
                    raise
            except DBAPIError as err:
                retry = _is_transient(err) or err.connection_invalidated
                if not retry or attempt == attempts - 1:
                    raise
            time.sleep(random.uniform(0, 0.002 * (2 ** min(attempt, 6))))
        raise RetryExhausted(  # pragma: no cover - the loop always returns or raises
            "the transaction kept conflicting", fix="retry later"
        )

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(url: str | None = None, *, migrate_schema: bool = True) -> Database:
    """The database at ``url`` (default: :func:`database_url`), migrated to head."""
    db = Database.from_url(url or database_url())
    if migrate_schema:
        migrate(db.engine)
    return db


def alembic_config(engine: Engine | None = None) -> Any:
    """An Alembic ``Config`` pointing at the packaged migrations (no ``alembic.ini`` needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    if engine is not None:
        url = engine.url.render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        config.attributes["engine"] = engine
    return config


def migrate(target: str | Engine, revision: str = "head") -> None:
    """Run Alembic ``upgrade`` to ``revision`` on ``target`` (a URL or an engine).

    One transaction, under a lock (an advisory lock on PostgreSQL, the write lock on SQLite),
    so that several workers starting at once migrate one after the other (the later ones
    find nothing to do).
    """
    from alembic import command

    engine = make_engine(target) if isinstance(target, str) else target
    try:
        config = alembic_config(engine)
        # SQLite: BEGIN IMMEDIATE, so concurrent migrations queue instead of failing.
        with engine.execution_options(**{_WRITE_OPTION: True}).begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        if isinstance(target, str):
            engine.dispose()
