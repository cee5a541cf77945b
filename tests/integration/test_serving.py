"""``suangu serve``'s listening socket and its workers: TCP_NODELAY on every accepted
connection (also with several workers), a clear error for a busy port, and ``--workers 2``
serving on PostgreSQL (when ``SUANGU_TEST_DATABASE_URL`` is set) or SQLite."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text

from suangu.api.serving import listen
from suangu.core.errors import ValidationError

PG_ENV = "SUANGU_TEST_DATABASE_URL"


def test_accepted_connections_have_tcp_nodelay() -> None:
    server = listen("127.0.0.1", 0)
    try:
        assert server.proto == socket.IPPROTO_TCP
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            conn, _ = server.accept()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
                assert conn.proto == socket.IPPROTO_TCP  # asyncio sets it again from this
    finally:
        server.close()


def test_a_busy_port_is_a_clear_error() -> None:
    first = listen("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(ValidationError) as err:
            listen("127.0.0.1", port)
        assert err.value.field == "port"
    finally:
        first.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh database: a PostgreSQL database of its own (dropped after), else SQLite."""
    pg = os.environ.get(PG_ENV)
    if not pg:
        yield f"sqlite:///{tmp_path / 'suangu.db'}"
        return
    name = f"suangu_serve_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_serve_with_two_workers(database_url: str) -> None:
    port = _free_port()
    env = {**os.environ, "SUANGU_DATABASE_URL": database_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "suangu.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"{base}/market/grid", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "server did not start in 60 s"
                time.sleep(0.2)
        assert r.status_code == 200
        # Fresh connections land on either worker: each answers, and refuses a bad key.
        for _ in range(10):
            with httpx.Client(base_url=base, timeout=5) as client:
                assert client.get("/market/grid").status_code == 200
                me = client.get("/me", headers={"Authorization": "Bearer sg_no_such"})
                assert me.status_code == 401
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck worker
            os.killpg(proc.pid, 9)
            proc.wait()
    assert proc.returncode is not None


def test_the_served_app_freezes_what_it_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``suangu serve``'s factory builds the app, then moves everything alive out of the
    garbage collector's reach (no full collection walks it while serving)."""
    import gc

    from suangu.api.serving import GC_THRESHOLD0, app_from_env

    monkeypatch.setenv("SUANGU_DATABASE_URL", f"sqlite:///{tmp_path / 'suangu.db'}")
    monkeypatch.setenv("SUANGU_CLEARING_LOOP", "0")
    threshold = gc.get_threshold()
    try:
        app = app_from_env()
        assert app.state.ctx is not None
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == GC_THRESHOLD0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
