"""Data objects: upload and download throughput (MB/s) of the embedded store and of S3.

    .venv/bin/python bench/bench_data.py [--sizes 1,16,64] [--repeat 3]
                                         [--backends embedded,s3] [--label note]

For each backend it measures two layers, each size ``--repeat`` times with fresh random bytes:

* ``store``: :class:`suangu.store.objects.ObjectStore` alone: ``put`` (sha256 + AES-GCM with a
  new data key + key wrap + write the blob) and ``get`` (read the blob + check its content
  address + unwrap + decrypt + check the plaintext's sha256);
* ``http``: the API on uvicorn on a free loopback port (a temporary SQLite database, a buyer
  with a key): ``POST /api/v1/data`` with the bytes and ``GET /api/v1/data/{id}/content``,
  through one httpx client, so the figures include HTTP, the body read and the database row.

``embedded`` is a temporary directory (the default store, next to the database); ``s3`` is
moto's standalone S3 server started as a separate process on a free loopback port (an S3
endpoint in the same machine: it measures the client path and the server's cost, not a
network). MB are 10^6 bytes; the table shows the median of the runs and the range. One JSON
line per run is appended to ``bench/results/data.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from suangu.store.objects import (  # noqa: E402
    DirectoryBackend,
    ObjectStore,
    S3Backend,
    sha256_hex,
)

RESULTS = ROOT / "bench" / "results" / "data.jsonl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("the server exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing answered on port {port} in 30 s") from None
            time.sleep(0.05)


@contextmanager
def moto_s3() -> Iterator[str]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def backend_store(kind: str) -> Iterator[ObjectStore]:
    key = secrets.token_bytes(32)
    if kind == "embedded":
        with tempfile.TemporaryDirectory(prefix="suangu-bench-data-") as d:
            yield ObjectStore(DirectoryBackend(Path(d)), key)
        return
    import boto3

    with moto_s3() as endpoint:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        yield ObjectStore(S3Backend("bench", "b/", endpoint_url=endpoint), key)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench_store(store: ObjectStore, size: int, n: int) -> dict[str, str | float]:
    data = secrets.token_bytes(size)
    oid = f"do_bench{n}"
    sha_s, sha = _timed(lambda: sha256_hex(data))
    put_s, sealed = _timed(lambda: store.put(oid, data))
    get_s, back = _timed(
        lambda: store.get(oid, sealed.blob_name, sealed.wrapped_key, sealed.key_id, sha)
    )
    assert back == data
    return {"upload_s": sha_s + put_s, "download_s": get_s}


@contextmanager
def served(store: ObjectStore) -> Iterator[tuple[str, str]]:
    """The API on uvicorn in a thread: (base URL, a buyer's key)."""
    import uvicorn

    from suangu.api.app import create_app
    from suangu.api.clock import WallClock
    from suangu.api.settings import ApiSettings
    from suangu.store.db import open_database, sqlite_url
    from suangu.store.models import Role
    from suangu.store.repositories import Members

    with tempfile.TemporaryDirectory(prefix="suangu-bench-db-") as d:
        db = open_database(sqlite_url(Path(d) / "bench.db"))
        now = int(time.time())
        with db.session_scope() as s:
            Members(s).create("bench-buyer", "Bench", Role.BUYER, now)
            token = Members(s).create_key("bench-buyer", now).token
        # Objects up to 512 MiB: the body limit raised to the data routes' own bound.
        settings = ApiSettings(max_body_bytes=1 << 30, rate_limit=False)
        app = create_app(db, WallClock(), settings, energy=False, dashboard=False, objects=store)
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            _wait_port(port)
            yield f"http://127.0.0.1:{port}/api/v1", token
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            db.dispose()


def bench_http(client: Any, size: int, n: int) -> dict[str, str | float]:
    data = secrets.token_bytes(size)
    up_s, r = _timed(
        lambda: client.post(
            "/data",
            params={"name": f"bench-{n}-{size}"},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
    )
    r.raise_for_status()
    oid = r.json()["id"]
    down_s, got = _timed(lambda: client.get(f"/data/{oid}/content"))
    got.raise_for_status()
    assert got.content == data
    return {"upload_s": up_s, "download_s": down_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,16,64", help="object sizes in MiB")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backends", default="embedded,s3")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    sizes = [int(float(x) * 1024 * 1024) for x in args.sizes.split(",")]
    import httpx

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for kind in args.backends.split(","):
        with backend_store(kind) as store, served(store) as (url, token):
            client = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=600
            )
            for layer in ("store", "http"):
                for size in sizes:
                    runs = []
                    for n in range(args.repeat):
                        if layer == "store":
                            runs.append(bench_store(store, size, n))
                        else:
                            runs.append(bench_http(client, size, n))
                    row = {
                        "backend": kind,
                        "layer": layer,
                        "size_bytes": size,
                        "upload_mb_s": [size / 1e6 / r["upload_s"] for r in runs],
                        "download_mb_s": [size / 1e6 / r["download_s"] for r in runs],
                        "label": args.label,
                        "python": platform.python_version(),
                        "cpus": os.cpu_count(),
                        "at": int(time.time()),
                    }
                    rows.append(row)
                    with RESULTS.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    _print_row(row)
            client.close()


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f} ({min(values):.0f}-{max(values):.0f})"


def _print_row(row: dict[str, Any]) -> None:
    mib = row["size_bytes"] / 1024 / 1024
    print(
        f"{row['backend']:9} {row['layer']:6} {mib:6.0f} MiB  "
        f"upload {_fmt(row['upload_mb_s'])} MB/s   download {_fmt(row['download_mb_s'])} MB/s",
        flush=True,
    )


if __name__ == "__main__":
    main()
