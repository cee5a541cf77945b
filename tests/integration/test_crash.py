"""Crash safety on PostgreSQL: ``kill -9`` a served API worker in the middle of a clearing
and in the middle of a settlement (from a meter reading, and from the clearing loop), restart,
and check what must hold after any crash:

* every ledger account equals the sum of its transfers (``SqlLedger.check_invariants``, a
  replay of every transfer) after each kill and at the end;
* no order is stuck with all its leases final (``services.stuck_orders``) once the loop's
  sweeper has run;
* no hold is pending past its order's deadline plus the lease grace period;
* the audit chain verifies, and nothing was stored twice (one clearing per interval, one
  hold per order and clearing).

The server is ``tests/integration/crash_worker.py``: ``suangu serve``'s serving code with two
workers on a fresh PostgreSQL database, a market clock the test moves (a file), a clearing
loop ticking every 0.2 s, and a test-only crash point: the worker that reaches the armed
point (inside the transaction, after its writes reached the database) reports its pid and
waits, and the test kills it there with SIGKILL. So each kill lands at a chosen point, not at
a random time, and the test asserts invariants, never timings.

PostgreSQL only (``SUANGU_TEST_DATABASE_URL``): several worker processes on one database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, make_url, select, text

from suangu.api.services import stuck_orders
from suangu.api.settings import ApiSettings
from suangu.core import billing
from suangu.core.ledger import Asset
from suangu.core.types import Offer, Pool, Site
from suangu.store.audit import verify_session
from suangu.store.db import Database, open_database
from suangu.store.ledger import SqlLedger
from suangu.store.models import ClearingRow, LeaseRow, LedgerTransferRow, OrderRow, Role
from suangu.store.repositories import Capacity, Members

PG_ENV = "SUANGU_TEST_DATABASE_URL"
pytestmark = pytest.mark.skipif(
    not os.environ.get(PG_ENV),
    reason=f"the crash test kills workers of a PostgreSQL-backed server: set {PG_ENV}",
)

HERE = Path(__file__).resolve().parent
API = "/api/v1"
SETTINGS = ApiSettings()
GRID = SETTINGS.grid
#: The loop's grace after a lease's slot (longer than the test's slots, so that no lease is
#: completed by the loop before the test has sent its readings).
GRACE = 4 * 3600
S = 1000  # the slot the test starts in
T0 = GRID.slot_start(S) + 600
N_BUYERS = 4
N_ORDERS = 8  # two per buyer
WAIT_S = 60.0  # generous: CI machines are busy; only a failing run waits this long


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def database_url() -> Iterator[str]:
    """A PostgreSQL database of its own (the served workers' default schema), dropped after."""
    pg = os.environ[PG_ENV]
    name = f"suangu_crash_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _wait(what: str, ready: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = ready()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Exchange:
    """The database, the clock file, the crash switch and the served workers."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url = url
        self.db: Database = open_database(url)  # migrated before any worker starts
        self.ledger = SqlLedger(self.db)
        self.clock = workdir / "clock"
        self.arm = workdir / "crash"
        self.hit = workdir / "crash.hit"
        self.log = workdir / "server.log"
        self.set_time(T0)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.kills = 0

    # -- time and the crash switch --------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock.read_text())

    def set_time(self, now: int) -> None:
        tmp = self.clock.with_name("clock.tmp")
        tmp.write_text(str(now))
        tmp.rename(self.clock)  # the workers never read half a file

    def arm_crash(self, point: str) -> None:
        self.hit.unlink(missing_ok=True)
        self.arm.write_text(point)

    def wait_crash_and_kill(self, point: str) -> int:
        """Wait until a worker reports it is at ``point``, then ``kill -9`` it."""
        text_ = _wait(f"a worker at the {point} crash point", self._hit_text)
        pid_s, at = text_.split()
        assert at == point
        pid = int(pid_s)
        assert pid != self.proc.pid if self.proc else True  # a worker, not the supervisor
        os.kill(pid, signal.SIGKILL)
        self.hit.unlink()
        _wait(f"worker {pid} to die", lambda: not _alive(pid))
        self.kills += 1
        return pid

    def _hit_text(self) -> str:
        try:
            return self.hit.read_text()
        except FileNotFoundError:
            return ""

    # -- the server -----------------------------------------------------------------------------

    def start(self) -> None:
        assert self.proc is None
        self.port = _free_port()
        env = {
            **os.environ,
            "SUANGU_DATABASE_URL": self.url,
            "SUANGU_CRASH_CLOCK": str(self.clock),
            "SUANGU_CRASH_TICK_S": "0.2",
            "SUANGU_CRASH_GRACE_S": str(GRACE),
            "SUANGU_CRASH_ARM": str(self.arm),
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / "crash_worker.py"), "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait("the server to answer", self._answers, timeout=60)

    def _answers(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            return httpx.get(f"{self.base}/market/grid", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        """Stop the server (what is left of it after a kill): SIGTERM, then SIGKILL."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck worker
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:  # pragma: no cover - already gone
            pass
        self.proc = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}{API}"

    def call(
        self, method: str, path: str, token: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
        return httpx.request(method, self.base + path, json=body, headers=headers, timeout=30)

    # -- the database ---------------------------------------------------------------------------

    def scalar(self, q: Any) -> Any:
        with self.db.session_scope(write=False) as s:
            return s.scalar(q)

    def leases(self) -> list[LeaseRow]:
        with self.db.session_scope(write=False) as s:
            rows = list(s.scalars(select(LeaseRow).order_by(LeaseRow.order_id, LeaseRow.id)))
            s.expunge_all()
            return rows

    def check_ledger(self) -> None:
        self.ledger.check_invariants()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie waits for its parent only


def _populate(x: Exchange) -> dict[str, str]:
    """An operator, a provider with 16 GPUs over two days, and buyers; their tokens."""
    tokens = {}
    with x.db.session_scope() as s:
        m = Members(s)
        m.create("op", "Operator", Role.OPERATOR, T0)
        tokens["op"] = m.create_key("op", T0).token
        m.create("prov", "Provider", Role.PROVIDER, T0)
        tokens["prov"] = m.create_key("prov", T0).token
        cap = Capacity(s)
        cap.add_site(
            Site("site-a", "Horinger", "Inner Mongolia", "inner-mongolia", 40.5, 111.8, 1.15),
            "prov",
        )
        cap.add_pool(Pool("site-a-h100", "site-a", "H100"))
        cap.add_offer(Offer.over("offer-a", "prov", "site-a-h100", S, S + 48, 16, 1000), T0)
        for b in range(N_BUYERS):
            m.create(f"buyer-{b}", f"Buyer {b}", Role.BUYER, T0)
            tokens[f"buyer-{b}"] = m.create_key(f"buyer-{b}", T0).token
    return tokens


def _order(i: int) -> dict[str, Any]:
    """Batch orders released in slot S + 1: 2 GPUs for 2 to 4 GPU-hours, done by S + 4."""
    return {
        "id": f"ord-{i}",
        "kind": "batch",
        "gpus": 2,
        "release_slot": S + 1,
        "deadline_slot": S + 4,
        "limit_fen": 2000,
        "gpu_hours": 2 + 2 * (i % 2),
        "regions": ["inner-mongolia"],
    }


def _reading(lease: LeaseRow, *, final: bool, part: int = 1) -> dict[str, Any]:
    """Metered use over the first ``part`` quarters of the lease's slot (a past slot)."""
    start = GRID.slot_start(lease.slot)
    end = start + SETTINGS.slot_seconds * part // 4
    return {
        "id": f"r-{lease.order_id.replace('~', '-')}-{lease.slot}-{part}",
        "interval_start": start,
        "interval_end": end,
        "gpu_seconds": lease.gpus * (end - start) * 9 // 10,
        "energy_wh": lease.gpus * 500 * (end - start) // 3600,
        "source": "nvml",
        "final": final,
    }


def _post_until_crash(x: Exchange, path: str, token: str, body: dict[str, Any]) -> str:
    """Send one request; if a worker reaches the armed crash point meanwhile, kill it.
    ``"crashed"`` when the request died with its worker, else the response's status."""
    with ThreadPoolExecutor(1) as pool:
        fut: Future[httpx.Response] = pool.submit(x.call, "POST", path, token, body)
        while not fut.done():
            if x.hit.exists():
                x.wait_crash_and_kill("settlement")
                try:
                    r = fut.result(timeout=WAIT_S)
                except httpx.TransportError:
                    return "crashed"
                return str(r.status_code)  # pragma: no cover - another request's worker
            time.sleep(0.02)
        r = fut.result()
        assert r.status_code in (200, 201), r.text
        return str(r.status_code)


def _assert_holds_match_leases(x: Exchange) -> None:
    """Before any settlement: each stored (clearing, order) has one pending hold, and every
    pending hold belongs to stored leases (a killed clearing left no hold behind)."""
    with x.db.session_scope(write=False) as s:
        by_group = s.execute(
            select(LeaseRow.clearing_id, LeaseRow.order_id, LeaseRow.hold_transfer_id).distinct()
        ).all()
        pending = set(
            s.scalars(
                select(LedgerTransferRow.id).where(LedgerTransferRow.pending_status == "pending")
            )
        )
    groups = {(c, o) for c, o, _ in by_group}
    assert len(groups) == len(by_group)  # one hold per group
    assert {h for *_, h in by_group} == pending


def _assert_settled_state(x: Exchange) -> None:
    """The end state after the sweeper: invariants, nothing stuck, no overdue hold."""
    x.check_ledger()
    now = x.now()
    with x.db.session_scope(write=False) as s:
        assert stuck_orders(s) == []
        overdue = s.execute(
            select(LedgerTransferRow.id, OrderRow.id, OrderRow.deadline_slot)
            .join(LeaseRow, LeaseRow.hold_transfer_id == LedgerTransferRow.id)
            .join(OrderRow, OrderRow.id == LeaseRow.order_id)
            .where(LedgerTransferRow.pending_status == "pending")
            .distinct()
        ).all()
        overdue = [r for r in overdue if GRID.slot_start(r[2]) + GRACE <= now]
        assert overdue == [], f"holds pending past their order's deadline + grace: {overdue}"
        states = dict(
            s.execute(select(LeaseRow.state, func.count()).group_by(LeaseRow.state)).all()
        )
        assert states == {"settled": sum(states.values())}, states
        # one hold per order and clearing: a crash never took a hold twice
        holds = s.execute(
            select(
                LeaseRow.clearing_id,
                LeaseRow.order_id,
                func.count(LeaseRow.hold_transfer_id.distinct()),
            ).group_by(LeaseRow.clearing_id, LeaseRow.order_id)
        ).all()
        assert all(n == 1 for *_, n in holds), holds
        assert verify_session(s).ok


def test_kill_9_during_clearing_and_settlement(database_url: str, tmp_path: Path) -> None:
    x = Exchange(database_url, tmp_path)
    tokens = _populate(x)
    x.start()
    try:
        # The loop's first tick clears the current interval (an empty book).
        first = f"clr-auto-{GRID.slot_start(S)}"
        _wait(
            "the first clearing",
            lambda: x.scalar(select(ClearingRow.id).where(ClearingRow.id == first)),
        )
        for b in range(N_BUYERS):
            r = x.call(
                "POST",
                "/deposits",
                tokens["op"],
                {"id": f"dep-{b}", "member_id": f"buyer-{b}", "amount_fen": 1_000_000},
            )
            assert r.status_code == 201, r.text
        for i in range(N_ORDERS):
            r = x.call("POST", "/orders", tokens[f"buyer-{i % N_BUYERS}"], _order(i))
            assert r.status_code == 201, r.text

        # 1. kill -9 the leader in the middle of the next interval's clearing: holds and
        # leases written, not committed.
        x.arm_crash("clearing")
        x.set_time(GRID.slot_start(S + 1) + 5)
        x.wait_crash_and_kill("clearing")
        second = f"clr-auto-{GRID.slot_start(S + 1)}"
        # The other worker still serves (and its loop may clear the interval meanwhile).
        assert httpx.get(f"{x.base}/market/grid", timeout=5).status_code == 200
        x.stop()
        x.check_ledger()
        _assert_holds_match_leases(x)

        # Restarted, the loop clears the interval once (unless the other worker did).
        x.start()
        _wait(
            "the clearing after the restart",
            lambda: x.scalar(select(ClearingRow.id).where(ClearingRow.id == second)),
        )
        leases = x.leases()
        orders = sorted({row.order_id for row in leases})
        assert orders == sorted(  # stored per member: <buyer>~<id>
            f"buyer-{i % N_BUYERS}~ord-{i}" for i in range(N_ORDERS)
        ), orders
        assert x.scalar(select(func.count()).select_from(ClearingRow)) == 2
        x.check_ledger()

        # 2. The slots are over (grace not yet): final readings for half the orders, and
        # kill -9 the worker settling the first order, after its transfers were written.
        last_slot = max(row.slot for row in leases)
        x.set_time(GRID.slot_start(last_slot + 1) + 60)
        by_order: dict[str, list[LeaseRow]] = {}
        for row in leases:
            by_order.setdefault(row.order_id, []).append(row)
        read_final = orders[: N_ORDERS // 2]
        x.arm_crash("settlement")
        outcomes = []
        for oid in read_final:
            for row in by_order[oid]:
                path = f"/leases/{row.id}/readings"
                outcomes.append(
                    _post_until_crash(x, path, tokens["prov"], _reading(row, final=True))
                )
        assert "crashed" in outcomes, outcomes
        x.stop()
        x.check_ledger()

        # Restarted, the provider's agent sends every reading again (the same ids): the
        # ones stored are recognised, the lost one is stored; the orders settle.
        x.start()
        for oid in read_final:
            for row in by_order[oid]:
                r = x.call(
                    "POST", f"/leases/{row.id}/readings", tokens["prov"], _reading(row, final=True)
                )
                assert r.status_code in (200, 201), r.text
        # One more order: a partial reading, then the provider fails its leases.
        failed = orders[N_ORDERS // 2]
        for row in by_order[failed]:
            r = x.call(
                "POST", f"/leases/{row.id}/readings", tokens["prov"], _reading(row, final=False)
            )
            assert r.status_code == 201, r.text
            r = x.call("POST", f"/leases/{row.id}/fail", tokens["prov"])
            assert r.status_code == 200, r.text
        # The rest get partial readings only: the loop completes them after the grace.
        for oid in orders[N_ORDERS // 2 + 1 :]:
            for row in by_order[oid]:
                r = x.call(
                    "POST",
                    f"/leases/{row.id}/readings",
                    tokens["prov"],
                    _reading(row, final=False, part=2),
                )
                assert r.status_code == 201, r.text
        x.check_ledger()
        with x.db.session_scope(write=False) as s:
            assert stuck_orders(s) == []

        # 3. Past the grace, the loop completes the rest: kill -9 it mid-settlement.
        x.arm_crash("settlement")
        x.set_time(GRID.slot_start(last_slot + 1) + GRACE + 60)
        x.wait_crash_and_kill("settlement")
        x.stop()  # the other worker may go on settling until it stops
        x.check_ledger()

        # Restarted past every deadline and its grace: the loop and its sweeper finish.
        x.start()
        x.set_time(GRID.slot_start(S + 4) + GRACE + 120)

        def all_settled() -> bool:
            n = x.scalar(select(func.count()).where(LeaseRow.state != "settled"))
            return bool(n == 0)

        _wait("every lease settled", all_settled)
        x.stop()
        _assert_settled_state(x)
        assert x.kills == 3
        # The provider was paid for what it metered; the clearing account is back to zero.
        balances = x.ledger.balances(Asset.CNY)
        assert balances[billing.provider_account("prov")] > 0
        assert balances[billing.exchange_clearing_account()] == 0
    finally:
        x.stop()
        x.db.dispose()
