"""`suangu serve` starts the API on a database and answers on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_public_market_data(tmp_path: Path) -> None:
    port = _free_port()
    url = f"sqlite:///{tmp_path / 'suangu.db'}"
    env = {**os.environ, "SUANGU_DATABASE_URL": url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "suangu.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/market/grid", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "server did not start in 30 s"
                time.sleep(0.2)
        assert r.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/me", timeout=2).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_with_a_bad_database_url_says_so() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "suangu.cli", "serve", "--database-url", "nosuchdb://x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "database_url" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr + out.stdout
