"""Order submission against ``suangu serve``: throughput and latency on loopback.

    .venv/bin/python bench/bench_api.py [--db sqlite,postgresql] [--workers 1,2]
                                        [--concurrency 8,32,64] [--requests 5000]
                                        [--repeat 3] [--time-cap 60] [--buyers 50]
                                        [--pg-url URL] [--serve-arg=--no-access-log]
                                        [--label after]

For each database it creates a fresh one (a temporary SQLite file, or a PostgreSQL database
``suangu_bench_<pid>`` created through ``--pg-url`` and dropped at the end), migrates it,
and creates through the store an operator, a provider with a site, a pool and an offer, and
``--buyers`` buyers with a key each. For each worker count it starts ``suangu serve --host
127.0.0.1 --port <free> --workers W`` as a subprocess (its own process group), waits until it
answers, and for each concurrency level runs a separate load process: ``C`` asyncio tasks on
one ``httpx.AsyncClient`` (at most ``C`` connections, all to 127.0.0.1) sending ``POST
/api/v1/orders`` with a unique order id and a unique ``Idempotency-Key``, round-robin over
the buyers, until ``--requests`` have been sent or ``--time-cap`` seconds have passed, after
``--warmup`` unmeasured requests. Each level reports requests, errors by status, throughput
(2xx orders per second of wall time), latency p50/p90/p99/max in ms (every request, errors
included) and the CPU seconds the server's processes and the load process used. With
``--repeat N`` each level runs N times on the same server (the machine is shared: other jobs
move the figures), and the table shows the median and the range (min-max) of the runs. It
appends one JSON line per run to ``bench/results/api.jsonl`` (with ``--label``, to tell
before from after). The server and the
database are removed at the end, also on an error or Ctrl-C.

The load process shares the machine with the server: on a small machine it takes a large
part of the CPU (the ``load CPU`` column says how much), so the figures are those of the
whole loop, client included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "api.jsonl"
HOST = "127.0.0.1"
API = "/api/v1"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# -- the load process -------------------------------------------------------------------------


def _percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    k = min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))
    return sorted_ms[k]


def _order_body(tag: str, slot: int, i: int) -> dict[str, Any]:
    return {
        "id": f"{tag}-{i}",
        "kind": "batch",
        "gpus": 1 + i % 8,
        "release_slot": slot + 1,
        "deadline_slot": slot + 25,
        "limit_fen": 1500 + i % 500,
        "gpu_hours": 4 + i % 16,
        "regions": ["inner-mongolia"],
    }


class _Raw:
    """A minimal HTTP/1.1 keep-alive client on one asyncio connection (a few tens of
    microseconds of CPU a request, where httpx takes milliseconds: on a 2-core machine the
    client's CPU is taken from the server's)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            await self.reader.readexactly(length)
        except Exception:
            await self.close()
            raise
        if close:
            await self.close()
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def _drive(cfg: dict[str, Any]) -> dict[str, Any]:
    import httpx

    port = cfg["port"]
    tokens: list[str] = cfg["tokens"]
    tag, slot, conc, target = cfg["tag"], cfg["slot"], cfg["concurrency"], cfg["target"]
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    counter = 0

    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{port}", limits=limits, timeout=httpx.Timeout(30.0)
    ) as client:

        async def one(conn: _Raw | None, i: int) -> str:
            if target == "grid":
                method, path, headers, body = "GET", f"{API}/market/grid", {}, b""
            else:
                method, path = "POST", f"{API}/orders"
                headers = {
                    "Authorization": f"Bearer {tokens[i % len(tokens)]}",
                    "Idempotency-Key": uuid.uuid4().hex,
                }
                body = json.dumps(_order_body(tag, slot, i)).encode()
            try:
                if conn is None:
                    if body:
                        headers["Content-Type"] = "application/json"
                    r = await client.request(method, path, content=body, headers=headers)
                    return str(r.status_code)
                return str(await asyncio.wait_for(conn.request(method, path, headers, body), 30))
            except (TimeoutError, OSError, EOFError, ValueError, httpx.HTTPError) as err:
                return type(err).__name__

        async def run(n: int, cap: float) -> tuple[list[float], Counter[str], float]:
            nonlocal counter
            lat: list[float] = []
            status: Counter[str] = Counter()
            stop = time.perf_counter() + cap
            end = counter + n

            async def task() -> None:
                nonlocal counter
                conn = _Raw(port) if cfg["client"] == "raw" else None
                try:
                    while counter < end and time.perf_counter() < stop:
                        i = counter
                        counter += 1
                        t0 = time.perf_counter()
                        code = await one(conn, i)
                        lat.append((time.perf_counter() - t0) * 1000)
                        status[code] += 1
                finally:
                    if conn is not None:
                        await conn.close()

            t0 = time.perf_counter()
            await asyncio.gather(*(task() for _ in range(conc)))
            return lat, status, time.perf_counter() - t0

        await run(cfg["warmup"], cfg["time_cap"])
        cpu0 = time.process_time()
        lat, status, wall = await run(cfg["requests"], cfg["time_cap"])
        cpu = time.process_time() - cpu0
    lat.sort()
    ok = sum(v for k, v in status.items() if k.startswith("2"))
    return {
        "requests": len(lat),
        "ok": ok,
        "errors": {k: v for k, v in sorted(status.items()) if not k.startswith("2")},
        "wall_s": round(wall, 3),
        "orders_per_s": round(ok / wall, 1) if wall > 0 else 0.0,
        "p50_ms": round(_percentile(lat, 0.50), 2),
        "p90_ms": round(_percentile(lat, 0.90), 2),
        "p99_ms": round(_percentile(lat, 0.99), 2),
        "max_ms": round(lat[-1], 2) if lat else float("nan"),
        "load_cpu_s": round(cpu, 2),
        "capped": len(lat) < cfg["requests"],
    }


def load_main() -> None:
    cfg = json.loads(sys.stdin.read())
    out = asyncio.run(_drive(cfg))
    sys.stdout.write(json.dumps(out) + "\n")


# -- databases --------------------------------------------------------------------------------


class BenchDatabase:
    """A fresh database: created on enter, removed on exit (also on errors)."""

    def __init__(self, kind: str, pg_url: str, workdir: Path) -> None:
        self.kind = kind
        self.pg_url = pg_url
        self.workdir = workdir
        self.url = ""
        self._pg_name = ""

    def __enter__(self) -> BenchDatabase:
        if self.kind == "sqlite":
            self.url = f"sqlite:///{self.workdir / 'bench.db'}"
            return self
        from sqlalchemy import create_engine, make_url, text

        self._pg_name = f"suangu_bench_{os.getpid()}"
        admin = create_engine(self.pg_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self._pg_name}"'))
                conn.execute(text(f'CREATE DATABASE "{self._pg_name}"'))
        finally:
            admin.dispose()
        url = make_url(self.pg_url).set(database=self._pg_name)
        self.url = url.render_as_string(hide_password=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.workdir / 'bench.db'}{suffix}").unlink(missing_ok=True)
            return
        from sqlalchemy import create_engine, text

        admin = create_engine(self.pg_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)'))
        finally:
            admin.dispose()


def populate(url: str, n_buyers: int) -> list[str]:
    """Migrate, then an operator, a provider with capacity, and buyers; their tokens."""
    from suangu.core.types import Offer, Pool, Site
    from suangu.store.db import open_database
    from suangu.store.models import Role
    from suangu.store.repositories import Capacity, Members

    now = int(time.time())
    slot = current_slot(now)
    db = open_database(url)
    tokens = []
    try:
        with db.session_scope() as s:
            m = Members(s)
            m.create("op", "Operator", Role.OPERATOR, now)
            m.create_key("op", now)
            m.create("prov", "Provider", Role.PROVIDER, now)
            m.create_key("prov", now)
            cap = Capacity(s)
            cap.add_site(
                Site("site-a", "Horinger", "Inner Mongolia", "inner-mongolia", 40.5, 111.8, 1.15),
                "prov",
            )
            cap.add_pool(Pool("site-a-h100", "site-a", "H100"))
            cap.add_offer(
                Offer.over("offer-a", "prov", "site-a-h100", slot, slot + 48, 64, 1000), now
            )
            for b in range(n_buyers):
                bid = f"buyer-{b:03d}"
                m.create(bid, f"Buyer {b}", Role.BUYER, now)
                tokens.append(m.create_key(bid, now).token)
    finally:
        db.dispose()
    return tokens


def current_slot(now: int) -> int:
    from suangu.api.settings import ApiSettings

    slot: int = ApiSettings().grid.slot_at(now)
    return max(0, slot)


# -- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _cpu_s(pgid: int | None = None, comm: str | None = None) -> float:
    """CPU seconds of the live processes of a process group, or of those named ``comm``:
    utime + stime, plus cutime + cstime (their reaped children: PostgreSQL backends that
    closed, once the postmaster has waited for them)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if (pgid is not None and int(fields[2]) == pgid) or (comm is not None and name == comm):
            total += sum(int(x) for x in fields[11:15])
    return total / tick


class Server:
    def __init__(
        self,
        kind: str,
        url: str,
        workers: int,
        log: Path,
        exe: str | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self.kind, self.url, self.workers, self.log = kind, url, workers, log
        self.exe = exe
        self.extra = list(extra or [])
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        env = {**os.environ, "SUANGU_DATABASE_URL": self.url}
        exe = self.exe or Path(sys.executable).with_name("suangu")
        cmd = [str(exe), "serve", "--host", HOST, "--port", str(self.port)]
        cmd += ["--workers", str(self.workers), *self.extra]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 60.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"suangu serve exited ({self.proc.returncode}); see {self.log}")
            try:
                r = httpx.get(f"http://{HOST}:{self.port}{API}/market/grid", timeout=1)
                if r.status_code == 200:
                    # every worker starts on its own: give the others a moment
                    time.sleep(1.0 + 0.5 * self.workers)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"suangu serve did not answer in {timeout:.0f} s; see {self.log}")

    def cpu_s(self) -> float:
        assert self.proc is not None
        return _cpu_s(pgid=self.proc.pid)

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


# -- the driver -------------------------------------------------------------------------------


def run_level(
    server: Server, tokens: list[str], conc: int, args: argparse.Namespace, target: str = "orders"
) -> dict[str, Any]:
    cfg = {
        "target": target,
        "client": args.client,
        "port": server.port,
        "tokens": tokens,
        "tag": f"o{uuid.uuid4().hex[:10]}",
        "slot": current_slot(int(time.time())),
        "concurrency": conc,
        "requests": args.requests,
        "warmup": args.warmup,
        "time_cap": args.time_cap,
    }
    # the server's CPU over the level includes the warm-up requests
    cpu0, pg0 = server.cpu_s(), _cpu_s(comm="postgres")
    out = subprocess.run(
        [sys.executable, __file__, "--load-process"],
        input=json.dumps(cfg).encode(),
        capture_output=True,
        check=True,
        timeout=2 * args.time_cap + 60,
    )
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    n = result["requests"] + args.warmup
    # every postgres process on the machine (other jobs' too): an upper bound
    pg_ms = (_cpu_s(comm="postgres") - pg0) * 1000 / max(n, 1)
    result["postgres_cpu_ms_per_req"] = round(pg_ms, 2) if server.kind == "postgresql" else None
    result["server_cpu_ms_per_req"] = round((server.cpu_s() - cpu0) * 1000 / max(n, 1), 2)
    result["load_cpu_ms_per_req"] = round(
        result["load_cpu_s"] * 1000 / max(result["requests"], 1), 2
    )
    result["server_cpu_s"] = round(server.cpu_s() - cpu0, 2)
    return result


def _level(
    console: Any, server: Server, tokens: list[str], c: int, args: argparse.Namespace, target: str
) -> dict[str, Any]:
    load0 = _loadavg()
    r = run_level(server, tokens, c, args, target)
    r.update(
        db=server.kind,
        workers=server.workers,
        concurrency=c,
        loadavg_before=load0,
        target=target,
        client=args.client,
    )
    console.print(
        f"{server.kind} {target} w={server.workers} c={c}: {r['orders_per_s']:.0f} 2xx/s "
        f"p50 {r['p50_ms']:.1f} p99 {r['p99_ms']:.1f} ms errors {r['errors'] or 0} "
        f"server CPU {r['server_cpu_ms_per_req']:.2f} ms/req, load CPU "
        f"{r['load_cpu_ms_per_req']:.2f} ms/req (loadavg {load0})"
    )
    return r


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _spread(xs: list[float], fmt: str) -> str:
    """``median`` alone, or ``median (min-max)`` for several runs."""
    if len(xs) == 1:
        return fmt.format(xs[0])
    return f"{fmt.format(_median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def _groups(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The runs of each level, in the order the levels ran."""
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((r["db"], r["target"], r["workers"], r["concurrency"]), []).append(r)
    return list(out.values())


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both")
    p.add_argument("--workers", default="2", help="worker counts, comma-separated")
    p.add_argument("--concurrency", default="8,32,64", help="connection counts, comma-separated")
    p.add_argument("--requests", type=int, default=5000, help="measured requests per level")
    p.add_argument("--warmup", type=int, default=300, help="unmeasured requests first")
    p.add_argument("--repeat", type=int, default=1, help="runs of each level (median, range)")
    p.add_argument("--time-cap", type=float, default=60.0, help="seconds per level at most")
    p.add_argument("--buyers", type=int, default=50)
    p.add_argument(
        "--pg-url",
        default=os.environ.get("SUANGU_BENCH_PG_URL", DEFAULT_PG),
        help="an existing PostgreSQL database to connect to for CREATE/DROP DATABASE",
    )
    p.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="raw: a minimal asyncio HTTP/1.1 client (default); httpx.AsyncClient",
    )
    p.add_argument(
        "--floor",
        action="store_true",
        help="also drive GET /api/v1/market/grid (no key, no database) at each level",
    )
    p.add_argument("--serve-exe", help=argparse.SUPPRESS)  # A/B experiments: a patched `suangu`
    p.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="an extra argument of `suangu serve` (repeatable), e.g. --serve-arg=--no-access-log",
    )
    p.add_argument("--label", default="", help="a tag stored with the results (before, after)")
    p.add_argument("--no-save", action="store_true", help="do not append to api.jsonl")
    p.add_argument("--load-process", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.load_process:
        load_main()
        return 0

    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)
    kinds = [k.strip() for k in args.db.split(",") if k.strip()]
    workers = [int(w) for w in args.workers.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]
    targets = ("orders", "grid") if args.floor else ("orders",)
    rows: list[dict[str, Any]] = []
    # SIGTERM -> the same clean-up as Ctrl-C
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="suangu-bench-api-") as tmp:
        work = Path(tmp)
        try:
            for kind in kinds:
                with BenchDatabase(kind, args.pg_url, work) as bdb:
                    tokens = populate(bdb.url, args.buyers)
                    for w in workers:
                        log = work / f"serve-{kind}-w{w}.log"
                        with Server(
                            kind, bdb.url, w, log, args.serve_exe, args.serve_arg
                        ) as server:
                            for c in levels:
                                for target in targets:
                                    for k in range(args.repeat):
                                        r = _level(console, server, tokens, c, args, target)
                                        rows.append({**r, "run": k})
        except KeyboardInterrupt:
            console.print("[red]interrupted: server stopped, database dropped[/]")
        except Exception:
            for log in sorted(work.glob("serve-*.log")):
                sys.stderr.write(f"--- {log.name} (tail) ---\n")
                sys.stderr.write(
                    "\n".join(log.read_text(errors="replace").splitlines()[-30:]) + "\n"
                )
            raise
    if not rows:
        return 1
    table = Table(
        title=f"suangu serve on loopback ({os.cpu_count()} CPUs, {args.client} load process on "
        f"the same machine, {args.repeat} run(s) per line: median, and min-max in brackets; "
        "loadavg: 1-min load average before the runs)",
        title_justify="left",
        caption="W: suangu serve --workers; conc: connections; CPU ms/req: CPU time of the "
        "server's processes, of every postgres process on the machine (other jobs' too) and of "
        "the load process, per request",
        caption_justify="left",
    )
    for col in (
        "db",
        "request",
        "W",
        "conc",
        "requests",
        "errors",
        "2xx/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "CPU ms/req: server",
        "postgres",
        "load",
        "loadavg",
    ):
        table.add_column(col, justify="left" if col in ("db", "request") else "right", no_wrap=True)
    for group in _groups(rows):
        first = group[0]
        errors: Counter[str] = Counter()
        for r in group:
            errors.update(r["errors"])
        errs = ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "0"
        what = "POST /orders" if first["target"] == "orders" else "GET /grid"
        pg = [r["postgres_cpu_ms_per_req"] for r in group]
        table.add_row(
            "pg" if first["db"] == "postgresql" else first["db"],
            what,
            str(first["workers"]),
            str(first["concurrency"]),
            f"{sum(r['requests'] for r in group):,}"
            + (" (capped)" if any(r["capped"] for r in group) else ""),
            errs,
            _spread([r["orders_per_s"] for r in group], "{:,.0f}"),
            f"{_median([r['p50_ms'] for r in group]):.1f}",
            f"{_median([r['p90_ms'] for r in group]):.1f}",
            _spread([r["p99_ms"] for r in group], "{:,.1f}"),
            f"{max(r['max_ms'] for r in group):,.1f}",
            f"{_median([r['server_cpu_ms_per_req'] for r in group]):.2f}",
            "-" if pg[0] is None else f"{_median(pg):.2f}",
            f"{_median([r['load_cpu_ms_per_req'] for r in group]):.2f}",
            _spread([r["loadavg_before"] for r in group], "{:.1f}"),
        )
    console.print(table)
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with RESULTS.open("a") as f:
            for r in rows:
                f.write(
                    json.dumps(
                        {
                            "bench": "api",
                            "at": stamp,
                            "host": platform.node(),
                            "cpus": os.cpu_count(),
                            "warmup": args.warmup,
                            "label": args.label,
                            "serve_args": args.serve_arg,
                            **r,
                        }
                    )
                    + "\n"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
