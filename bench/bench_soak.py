"""Soak: minutes of mixed traffic against the served API on PostgreSQL with two workers, then
the invariants.

    .venv/bin/python bench/bench_soak.py [--minutes 30] [--workers 2] [--rate 40]
                                         [--concurrency 16] [--speed 120] [--buyers 20]
                                         [--pg-url URL] [--label L]

It creates a fresh PostgreSQL database (``suangu_soak_<pid>`` through ``--pg-url``, dropped at
the end), migrates it and creates through the store an operator, a provider with one site and
four 512-GPU H100 pools offered for the whole run, and ``--buyers`` funded buyers with a key
each. Then it serves the API with ``suangu.api.serving.serve`` (the code behind ``suangu
serve``: the listening socket, uvicorn's supervisor and ``--workers`` worker processes) on a
free port, with the app of :func:`build`: ``create_app`` as ``suangu serve`` builds it (energy
model and dashboard on), except

* the market clock runs ``--speed`` times faster than the wall clock (120: a one-hour slot
  every 30 s), the same in every worker, so that slots end, leases start and end, readings
  for past slots can be sent and the grace period passes within a run of minutes;
* each worker ticks its clearing loop every 0.5 s of wall time (the served loop sleeps up to
  a minute between ticks, too long at this speed); one leader clears per slot boundary and
  moves leases on, as in production;
* rate limits are off (one load process sends everything from one address), a clearing
  covers 6 slots (orders ask for work within 4), and the loop waits one slot (not 15
  minutes) for a lease's final reading: at x120 15 minutes are 7.5 s of wall time.

A separate load process sends ``--rate`` buyers' requests per second from ``--concurrency``
asyncio tasks (the provider's agent comes on top): buyers' orders (batch, 1-4 GPUs, 1-8
GPU-hours, released next slot, due four slots later, limits around the reserve so that some
do not fill), buyers reading their orders and the market prices, and the provider's agent:
every second it lists its running leases and, for each whose slot has ended, sends a final
meter reading (80%), a partial reading and then a failure (10%), or nothing (10%: the loop
completes it after the grace period), 16 leases at a time. Clearings
are the loop's, one per slot.

At the end it waits two seconds (a last sweep), stops the server, and reports: requests and
2xx per second, latency p50/p99/max per kind of request, errors by status, clearings (count,
status, allocations), leases by state, holds pending (count, amount, oldest age on the market
clock) and holds overdue (pending past their order's deadline plus the grace period), and the
invariants: every ledger account equals the sum of its transfers
(``SqlLedger.check_invariants``), no order stuck with all its leases final
(``services.stuck_orders``), and the audit chain verifies. It appends one JSON line to
``bench/results/soak.jsonl``. The exit status is 1 when an invariant fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from bench_api import BenchDatabase, _percentile, free_port  # noqa: E402

RESULTS = ROOT / "results" / "soak.jsonl"
HOST = "127.0.0.1"
API = "/api/v1"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
WALL0_ENV, MARKET0_ENV, SPEED_ENV = "SOAK_WALL0", "SOAK_MARKET0", "SOAK_SPEED"
POOLS = 4
POOL_GPUS = 512
HORIZON = 6
TICK_S = 0.5
#: The loop's grace after a lease's slot, market seconds (one slot: 30 s of wall time at x120;
#: the default 900 s is 7.5 s there, less than the agent takes to report the ~700 leases
#: that end at one boundary, which the loop would then complete first).
GRACE_S = 3600


# -- the clock and the served app -------------------------------------------------------------


class FastClock:
    """The market clock: ``market0 + (wall - wall0) x speed``, integer seconds; every worker
    computes the same from the same three numbers."""

    def __init__(self, wall0: float, market0: int, speed: float) -> None:
        self.wall0, self.market0, self.speed = wall0, market0, speed

    def now(self) -> int:
        return self.market0 + int((time.time() - self.wall0) * self.speed)

    @classmethod
    def from_env(cls) -> FastClock:
        return cls(
            float(os.environ[WALL0_ENV]), int(os.environ[MARKET0_ENV]), float(os.environ[SPEED_ENV])
        )


def build() -> FastAPI:
    """The served app (see the module docs): ``SUANGU_DATABASE_URL``, the fast clock, the
    clearing loop ticked every :data:`TICK_S` seconds in this worker."""
    from suangu.api.app import create_app
    from suangu.api.settings import ApiSettings
    from suangu.store.db import open_database

    settings = ApiSettings(
        clearing_loop=False, rate_limit=False, horizon_slots=HORIZON, lease_grace_s=GRACE_S
    )
    app: FastAPI = create_app(open_database(), FastClock.from_env(), settings)
    loop = app.state.clearing_loop

    def ticker() -> None:
        while True:
            try:
                loop.tick()
            except Exception:  # the served loop logs a failed tick and goes on too
                import logging

                logging.getLogger("suangu.soak").exception("tick failed")
            time.sleep(TICK_S)

    threading.Thread(target=ticker, name="soak-ticker", daemon=True).start()
    return app


def serve_main(port: int, workers: int) -> None:
    from suangu.api.serving import serve

    serve(HOST, port, workers, access_log=False, app="bench_soak:build", log_format="text")


# -- the load process ---------------------------------------------------------------------------


def _order_body(tag: str, current: int, i: int, rng: random.Random) -> dict[str, Any]:
    return {
        "id": f"{tag}-{i}",
        "kind": "batch",
        "gpus": rng.randint(1, 4),
        "release_slot": current + 1,
        "deadline_slot": current + 5,
        "limit_fen": rng.randint(900, 2500),
        "gpu_hours": rng.randint(1, 8),
        "regions": ["inner-mongolia"],
    }


async def _drive(cfg: dict[str, Any]) -> dict[str, Any]:
    import httpx

    clock = FastClock(cfg["wall0"], cfg["market0"], cfg["speed"])
    epoch, slot_s = cfg["grid_epoch"], cfg["slot_seconds"]
    rng = random.Random(cfg["seed"])
    buyers: list[str] = cfg["buyer_tokens"]
    prov = {"Authorization": f"Bearer {cfg['provider_token']}"}
    lat: dict[str, list[float]] = defaultdict(list)
    status: Counter[str] = Counter()
    samples: dict[str, str] = {}  # the first error body of each kind and status
    orders: list[tuple[int, str]] = []  # (buyer index, order id)
    done_leases: set[str] = set()
    outcomes: Counter[str] = Counter()
    stop_at = time.monotonic() + cfg["seconds"]
    interval = cfg["concurrency"] / cfg["rate"]  # each task's pace
    counter = 0

    def current() -> int:
        return int((clock.now() - epoch) // slot_s)

    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{cfg['port']}{API}",
        limits=httpx.Limits(max_connections=cfg["concurrency"] + 2),
        timeout=httpx.Timeout(60.0),
    ) as client:

        async def call(
            kind: str, method: str, path: str, headers: dict[str, str], **kw: Any
        ) -> Any:
            t0 = time.perf_counter()
            try:
                r = await client.request(method, path, headers=headers, **kw)
                code = str(r.status_code)
            except httpx.HTTPError as err:
                r, code = None, type(err).__name__
            lat[kind].append((time.perf_counter() - t0) * 1000)
            status[f"{kind} {code}"] += 1
            if r is not None and r.status_code >= 400 and f"{kind} {code}" not in samples:
                samples[f"{kind} {code}"] = r.text[:300]
            return r

        async def buyer_task() -> None:
            nonlocal counter
            while time.monotonic() < stop_at:
                t0 = time.monotonic()
                i = counter
                counter += 1
                b = i % len(buyers)
                auth = {"Authorization": f"Bearer {buyers[b]}"}
                roll = rng.random()
                if roll < 0.5 or not orders:
                    body = _order_body(cfg["tag"], current(), i, rng)
                    hdr = {**auth, "Idempotency-Key": uuid.uuid4().hex}
                    r = await call("order", "POST", "/orders", hdr, json=body)
                    if r is not None and r.status_code == 201:
                        orders.append((b, body["id"]))
                elif roll < 0.8:
                    ob, oid = rng.choice(orders[-500:])
                    hdr = {"Authorization": f"Bearer {buyers[ob]}"}
                    await call("get order", "GET", f"/orders/{oid}", hdr)
                else:
                    await call("prices", "GET", "/market/prices", auth)
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - t0)))

        async def provider_agent() -> None:
            gate = asyncio.Semaphore(16)  # the agent reports 16 leases at a time
            while time.monotonic() < stop_at:
                t0 = time.monotonic()
                now = clock.now()
                cursor: str | None = None
                due: list[dict[str, Any]] = []
                while True:
                    params: dict[str, Any] = {"state": "running", "limit": 500}
                    if cursor:
                        params["cursor"] = cursor
                    r = await call("list leases", "GET", "/leases", prov, params=params)
                    if r is None or r.status_code != 200:
                        break
                    page = r.json()
                    for x in page["items"]:
                        end = epoch + (x["slot"] + 1) * slot_s
                        if end <= now and x["id"] not in done_leases:
                            due.append(x)
                    nxt = page.get("next")
                    if not nxt or not page["items"] or page["items"][-1]["slot"] >= current():
                        break
                    cursor = str(httpx.URL(nxt).params.get("cursor") or "") or None
                    if cursor is None:
                        break

                async def report(x: dict[str, Any]) -> None:
                    async with gate:
                        done_leases.add(x["id"])
                        start = epoch + x["slot"] * slot_s
                        roll = rng.random()
                        path = f"/leases/{x['id']}"
                        rid = f"r-{uuid.uuid4().hex}"
                        if roll < 0.8:
                            outcomes["final reading"] += 1
                            await call(
                                "reading",
                                "POST",
                                path + "/readings",
                                prov,
                                json={
                                    "id": rid,
                                    "interval_start": start,
                                    "interval_end": start + slot_s,
                                    "gpu_seconds": x["gpus"] * slot_s * 9 // 10,
                                    "energy_wh": x["gpus"] * 600,
                                    "source": "nvml",
                                    "final": True,
                                },
                            )
                        elif roll < 0.9:
                            outcomes["partial reading, then failure"] += 1
                            half = start + slot_s // 2
                            await call(
                                "reading",
                                "POST",
                                path + "/readings",
                                prov,
                                json={
                                    "id": rid,
                                    "interval_start": start,
                                    "interval_end": half,
                                    "gpu_seconds": x["gpus"] * (half - start) // 2,
                                    "energy_wh": x["gpus"] * 150,
                                    "source": "slurm",
                                },
                            )
                            await call("fail", "POST", path + "/fail", prov)
                        else:
                            outcomes["no final reading"] += 1

                await asyncio.gather(*(report(x) for x in due))
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))

        t0 = time.perf_counter()
        await asyncio.gather(provider_agent(), *(buyer_task() for _ in range(cfg["concurrency"])))
        wall = time.perf_counter() - t0

    every = sorted(x for xs in lat.values() for x in xs)
    ok = sum(v for k, v in status.items() if k.rsplit(" ", 1)[1].startswith("2"))
    kinds = {}
    for kind, xs in sorted(lat.items()):
        xs.sort()
        kinds[kind] = {
            "n": len(xs),
            "p50_ms": round(_percentile(xs, 0.5), 1),
            "p99_ms": round(_percentile(xs, 0.99), 1),
            "max_ms": round(xs[-1], 1),
        }
    return {
        "wall_s": round(wall, 1),
        "requests": len(every),
        "ok": ok,
        "requests_per_s": round(len(every) / wall, 1),
        "ok_per_s": round(ok / wall, 1),
        "orders_accepted": len(orders),
        "p50_ms": round(_percentile(every, 0.5), 1),
        "p99_ms": round(_percentile(every, 0.99), 1),
        "max_ms": round(every[-1], 1) if every else None,
        "by_kind": kinds,
        "errors": {
            k: v for k, v in sorted(status.items()) if not k.rsplit(" ", 1)[1].startswith("2")
        },
        "lease_outcomes": dict(outcomes),
        "error_samples": samples,
    }


def load_main() -> None:
    cfg = json.loads(sys.stdin.read())
    sys.stdout.write(json.dumps(asyncio.run(_drive(cfg))) + "\n")


# -- set-up and the end state --------------------------------------------------------------------


def populate(url: str, n_buyers: int, market0: int, n_slots: int) -> tuple[str, list[str]]:
    """Migrate; an operator, a provider with four pools offered for ``n_slots``, funded
    buyers; the provider's and the buyers' tokens."""
    from suangu.api.settings import ApiSettings
    from suangu.core import billing
    from suangu.core.types import Offer, Pool, Site
    from suangu.store.db import open_database
    from suangu.store.ledger import SqlLedger
    from suangu.store.models import Role
    from suangu.store.repositories import Capacity, Members

    slot = ApiSettings().grid.slot_at(market0)
    db = open_database(url)
    try:
        with db.session_scope() as s:
            m = Members(s)
            m.create("op", "Operator", Role.OPERATOR, market0)
            m.create("prov", "Provider", Role.PROVIDER, market0)
            prov = m.create_key("prov", market0).token
            cap = Capacity(s)
            cap.add_site(
                Site("site-a", "Horinger", "Inner Mongolia", "inner-mongolia", 40.5, 111.8, 1.15),
                "prov",
            )
            for p in range(POOLS):
                cap.add_pool(Pool(f"site-a-h100-{p}", "site-a", "H100"))
                cap.add_offer(
                    Offer.over(
                        f"offer-{p}",
                        "prov",
                        f"site-a-h100-{p}",
                        slot,
                        slot + n_slots,
                        POOL_GPUS,
                        1000 + 100 * p,
                    ),
                    market0,
                )
            buyers = [f"buyer-{b:03d}" for b in range(n_buyers)]
            tokens = []
            for b in buyers:
                m.create(b, b, Role.BUYER, market0)
                tokens.append(m.create_key(b, market0).token)
        ledger = SqlLedger(db)
        ledger.create_accounts(billing.new_exchange_accounts(), market0)
        ledger.create_accounts([billing.new_buyer_account(b) for b in buyers], market0)
        ledger.create_transfers(
            [billing.deposit(f"deposit:{b}", b, 10**11) for b in buyers], market0
        )
    finally:
        db.dispose()
    return prov, tokens


def end_state(url: str, now: int) -> dict[str, Any]:
    """What the database holds after the run, and the invariants."""
    from sqlalchemy import func, select

    from suangu.api.services import stuck_orders
    from suangu.api.settings import ApiSettings
    from suangu.store.audit import verify_session
    from suangu.store.db import open_database
    from suangu.store.ledger import SqlLedger
    from suangu.store.models import ClearingRow, LeaseRow, LedgerTransferRow, OrderRow

    settings = ApiSettings()
    grid, grace = settings.grid, GRACE_S
    db = open_database(url, migrate_schema=False)
    out: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        try:
            SqlLedger(db).check_invariants()
            out["ledger_balanced"] = True
        except Exception as err:  # report it, with what failed
            out["ledger_balanced"] = False
            out["ledger_error"] = str(err)[:500]
        out["check_invariants_s"] = round(time.perf_counter() - t0, 2)
        with db.session_scope(write=False) as s:
            stuck = stuck_orders(s)
            out["stuck_orders"] = len(stuck)
            out["clearings"] = dict(
                s.execute(
                    select(ClearingRow.status, func.count()).group_by(ClearingRow.status)
                ).all()
            )
            out["leases_by_state"] = dict(
                s.execute(select(LeaseRow.state, func.count()).group_by(LeaseRow.state)).all()
            )
            out["orders_by_state"] = dict(
                s.execute(select(OrderRow.status, func.count()).group_by(OrderRow.status)).all()
            )
            pending = s.execute(
                select(LedgerTransferRow.amount, LedgerTransferRow.timestamp).where(
                    LedgerTransferRow.pending_status == "pending"
                )
            ).all()
            out["holds_pending"] = len(pending)
            out["holds_pending_fen"] = sum(int(a) for a, _ in pending)
            out["oldest_hold_age_market_s"] = (
                now - min(int(t) for _, t in pending) if pending else 0
            )
            deadlines = s.execute(
                select(LeaseRow.hold_transfer_id, func.max(OrderRow.deadline_slot))
                .join(OrderRow, OrderRow.id == LeaseRow.order_id)
                .join(LedgerTransferRow, LedgerTransferRow.id == LeaseRow.hold_transfer_id)
                .where(LedgerTransferRow.pending_status == "pending")
                .group_by(LeaseRow.hold_transfer_id)
            ).all()
            out["holds_overdue"] = sum(
                1 for _, d in deadlines if grid.slot_start(int(d)) + grace <= now
            )
            t0 = time.perf_counter()
            out["audit_chain_ok"] = verify_session(s).ok
            out["audit_verify_s"] = round(time.perf_counter() - t0, 2)
    finally:
        db.dispose()
    out["invariants_ok"] = bool(
        out["ledger_balanced"]
        and out["stuck_orders"] == 0
        and out["holds_overdue"] == 0
        and out["audit_chain_ok"]
    )
    return out


# -- the driver ---------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rate", type=float, default=40.0, help="buyers' requests per second")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--speed", type=float, default=120.0, help="market seconds per wall second")
    ap.add_argument("--buyers", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pg-url", default=os.environ.get("SUANGU_TEST_DATABASE_URL", DEFAULT_PG))
    ap.add_argument("--label", default="")
    ap.add_argument("--load-process", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_process:
        load_main()
        return 0
    if args.serve:
        serve_main(args.serve, args.workers)
        return 0

    import httpx

    from suangu.api.settings import ApiSettings

    grid = ApiSettings().grid
    seconds = args.minutes * 60
    wall0 = time.time()
    market0 = grid.slot_start(grid.slot_at(int(wall0))) + 60
    n_slots = int((seconds + 120) * args.speed / grid.slot_seconds) + 12
    clock = FastClock(wall0, market0, args.speed)
    workdir = Path(tempfile.mkdtemp(prefix="suangu-soak-"))
    log = workdir / "server.log"
    with BenchDatabase("postgresql", args.pg_url, workdir) as bdb:
        prov, buyers = populate(bdb.url, args.buyers, market0, n_slots)
        port = free_port()
        env = {
            **os.environ,
            "SUANGU_DATABASE_URL": bdb.url,
            WALL0_ENV: repr(wall0),
            MARKET0_ENV: str(market0),
            SPEED_ENV: str(args.speed),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", str(port)]
        cmd += ["--workers", str(args.workers)]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the server exited; see {log}")
                try:
                    if (
                        httpx.get(f"http://{HOST}:{port}{API}/market/grid", timeout=1).status_code
                        == 200
                    ):
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not answer in 60 s; see {log}")
                time.sleep(0.2)
            time.sleep(1.0 + 0.5 * args.workers)
            cfg = {
                "port": port,
                "wall0": wall0,
                "market0": market0,
                "speed": args.speed,
                "grid_epoch": grid.epoch,
                "slot_seconds": grid.slot_seconds,
                "seconds": seconds,
                "rate": args.rate,
                "concurrency": args.concurrency,
                "seed": args.seed,
                "tag": f"s{uuid.uuid4().hex[:8]}",
                "buyer_tokens": buyers,
                "provider_token": prov,
            }
            print(
                f"soak: {args.minutes:g} min, {args.workers} workers, {args.rate:g} req/s offered, "
                f"market clock x{args.speed:g}; server log {log}",
                flush=True,
            )
            load_before = round(os.getloadavg()[0], 2)
            res = subprocess.run(
                [sys.executable, __file__, "--load-process"],
                input=json.dumps(cfg).encode(),
                capture_output=True,
                check=True,
                timeout=seconds + 600,
            )
            load = json.loads(res.stdout.decode().strip().splitlines()[-1])
            load["loadavg_before"] = load_before
            load["loadavg_after"] = round(os.getloadavg()[0], 2)
            time.sleep(2.0)  # a last tick: the sweeper
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        now = clock.now()
        state = end_state(bdb.url, now)
    tracebacks = log.read_text(errors="replace").count("Traceback")
    record = {
        "bench": "soak",
        "label": args.label,
        "at": int(time.time()),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "minutes": args.minutes,
        "workers": args.workers,
        "rate_offered": args.rate,
        "concurrency": args.concurrency,
        "speed": args.speed,
        "market_slots_passed": (now - market0) // grid.slot_seconds,
        "server_tracebacks": tracebacks,
        **load,
        **state,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=2))
    return 0 if state["invariants_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
