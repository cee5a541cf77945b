"""The clearing loop: a clearing every market interval and the leases' lifecycle, on the
app's injected clock.

:meth:`ClearingLoop.tick` does one step at the clock's time ``now``, as the leader only:

0. fail the scheduled and running leases of the pools that only agents (``POST
   /agents/heartbeat``, one or several per provider) silent longer than ``agent_grace_s``
   serve; their undelivered work goes back into the market, and those pools' offers sit the
   clearings out until an agent serving them is heard again
   (:func:`~suangu.api.services.fail_lease`);
1. if an interval boundary (``grid_epoch + k * interval``) has passed since the last
   clearing, clear the market once with :func:`~suangu.api.services.clearing_round` (the
   function behind ``POST /clearings``) from the current slot over ``horizon_slots``, under
   the id ``clr-auto-<boundary>``, with the loop's ``adjust`` hook (the energy model of
   :mod:`suangu.api.market_energy`) applied to the market as in ``POST /clearings``.
   Intervals missed while no loop ran are not cleared after the fact (their slots are
   past); an interval whose clearing exists (another worker, an earlier start) is skipped;
2. move leases on: ``scheduled -> running`` once their slot starts; ``running -> completed``
   when their slot ended ``lease_grace_s`` ago without a final reading, settling the order
   on the ledger when that was its last open lease (the metered use is posted, the rest of
   the hold voided, the fee to the exchange);
3. sweep: settle every order whose leases are all final but which no transaction settled
   (:func:`~suangu.api.services.settle_stuck_orders`), so no hold stays pending for an order
   that is done.

Tests with a :class:`~suangu.api.clock.ManualClock` advance the clock and call ``tick()``;
with the wall clock, :meth:`ClearingLoop.start` runs a thread that sleeps until the next
boundary (waking at least every ``max_sleep_s`` for the leases) and ticks.

Leader election: each tick takes a PostgreSQL *session-level* advisory lock with
``pg_try_advisory_lock`` on a connection of its own and releases it when the tick ends (or
PostgreSQL does, when that connection dies). A worker that does not get it skips the tick:
only one clearing runs at a time across all the API workers on a database; the key is
per schema, so that schemas sharing a database do not block each other. On SQLite one
process serves (the default); the loops of one process share a lock, and the write lock
and the unique clearing id keep even a second process from clearing an interval twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from suangu.api.audit import record_system
from suangu.api.clock import Clock
from suangu.api.green import SiteEnergyModel, book_all
from suangu.api.services import (
    MarketHook,
    PreparedClearing,
    clearing_round,
    ensure_accounts,
    fail_lease,
    fee_bp,
    leases_due,
    provider_ids,
    save_clearing,
    settle_if_done,
    settle_stuck_orders,
    start_leases,
)
from suangu.api.settings import ApiSettings
from suangu.core import billing
from suangu.store.db import Database
from suangu.store.errors import Conflict, InvalidState
from suangu.store.ledger import SqlLedger
from suangu.store.models import ClearingRow, LeaseRow, LeaseState
from suangu.store.repositories import Clearings, Heartbeats, Lease

log = logging.getLogger(__name__)

#: First half of the advisory lock key ("su"); the second is a hash of the schema.
LOCK_CLASS = 0x7375
_LOCK_SQL = "SELECT pg_try_advisory_lock(:k, hashtext(current_schema()))"
_UNLOCK_SQL = "SELECT pg_advisory_unlock(:k, hashtext(current_schema()))"
_LOCK_POLL_S = 0.05
#: Seconds a worker that did not get the lock (or whose tick failed) waits before trying again.
FOLLOWER_RETRY_S = 5.0
_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def _process_lock(db: Database) -> threading.Lock:
    key = db.engine.url.render_as_string(hide_password=True)
    with _process_locks_guard:
        return _process_locks.setdefault(key, threading.Lock())


@contextmanager
def leadership(db: Database, wait_s: float = 0.0) -> Iterator[bool]:
    """Whether this caller holds the clearing lock for the duration of the block, waiting
    for it up to ``wait_s`` seconds (0: never waits)."""
    deadline = time.monotonic() + wait_s
    if db.dialect != "postgresql":
        lock = _process_lock(db)
        got = lock.acquire(timeout=wait_s) if wait_s > 0 else lock.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                lock.release()
        return
    conn = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        got = bool(conn.execute(text(_LOCK_SQL), {"k": LOCK_CLASS}).scalar())
        while not got and time.monotonic() < deadline:
            time.sleep(_LOCK_POLL_S)
            got = bool(conn.execute(text(_LOCK_SQL), {"k": LOCK_CLASS}).scalar())
        try:
            yield got
        finally:
            if got:
                try:
                    conn.execute(text(_UNLOCK_SQL), {"k": LOCK_CLASS})
                except Exception:  # pragma: no cover - a dead connection has no lock left
                    conn.invalidate()
    finally:
        conn.close()


@dataclass(frozen=True)
class TickReport:
    """What one tick did."""

    now: int
    #: False: another worker led this tick (nothing was done here).
    led: bool = True
    #: The clearing run on this tick, if one was.
    clearing_id: str | None = None
    #: Why no clearing ran although one was due ("exists"), or the error it raised.
    skipped: str | None = None
    started: int = 0
    completed: int = 0
    settled: int = 0
    #: Leases failed because their provider's agent fell silent.
    lost: int = 0


class ClearingLoop:
    """Clears every ``settings.interval_s`` and moves leases on (see the module docs)."""

    def __init__(
        self,
        db: Database,
        ledger: SqlLedger,
        clock: Clock,
        settings: ApiSettings,
        *,
        max_sleep_s: float = 60.0,
        adjust: MarketHook | None = None,
        energy_model: SiteEnergyModel | None = None,
    ) -> None:
        self.db = db
        #: Books the certificates and carbon of settled leases (:func:`suangu.api.green.book_all`).
        self.energy_model = energy_model
        #: Applied to every market before clearing it (the energy model).
        self.adjust = adjust
        self.ledger = ledger
        self.clock = clock
        self.settings = settings
        self.max_sleep_s = max_sleep_s
        self._next_due: int | None = None
        self._tick_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- time --------------------------------------------------------------------------------

    def boundary(self, now: int) -> int:
        """The last interval boundary at or before ``now``."""
        epoch, step = self.settings.grid_epoch, self.settings.interval_s
        return epoch + (now - epoch) // step * step

    def next_due(self) -> int:
        """When the next clearing is due (the current boundary before the first tick)."""
        if self._next_due is None:
            return self.boundary(self.clock.now())
        return self._next_due

    def seconds_to_next(self) -> float:
        return max(0.2, min(self.max_sleep_s, float(self.next_due() - self.clock.now())))

    # -- one step ------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """Clear if an interval boundary has passed, then move leases on; as the leader only."""
        with self._tick_lock, leadership(self.db) as leader:
            now = self.clock.now()
            if not leader:
                return TickReport(now, led=False)
            lost = self._fail_silent_agents(now)
            clearing_id, skipped = None, None
            due = self.next_due()
            if now >= due:
                boundary = self.boundary(now)
                self._next_due = boundary + self.settings.interval_s
                clearing_id, skipped = self._clear(f"clr-auto-{boundary}", now)
            started, completed, settled = self._advance_leases(now)
            if self.energy_model is not None:
                book_all(self.db, self.ledger, self.energy_model, self.settings.grid, now)
            return TickReport(now, True, clearing_id, skipped, started, completed, settled, lost)

    def _fail_silent_agents(self, now: int) -> int:
        """Fail the scheduled and running leases of the pools that only agents silent longer
        than ``agent_grace_s`` serve (:func:`~suangu.api.services.fail_lease`: metered use
        paid, the undelivered work back into this tick's clearing); how many failed."""
        with self.db.session_scope(write=False) as s:
            beats = Heartbeats(s)
            lost_pools = beats.lost_pools(now, self.settings.agent_grace_s)
            silent = sorted(lost_pools)
            lost = beats.open_leases(silent, set().union(*lost_pools.values()))
            if not lost:
                return 0
            clearings = Clearings(s)
            providers = provider_ids(
                x
                for order_id in sorted({x.allocation.order_id for x in lost})
                for x in clearings.leases(order_id=order_id)
            )
        log.warning("agents of %s silent: failing %d leases", silent, len(lost))
        ensure_accounts(self.ledger, billing.new_exchange_accounts(), now)
        ensure_accounts(self.ledger, [billing.new_provider_account(p) for p in providers], now)
        current = max(0, self.settings.grid.slot_at(now))
        failed = 0
        for lease in lost:

            def work(s: Session, lease_id: str = lease.id) -> int:
                found = Clearings(s).lease(lease_id)
                if found.state not in (LeaseState.SCHEDULED, LeaseState.RUNNING):
                    return 0  # failed with its gang, or finished meanwhile
                fee = fee_bp(s, self.settings.default_fee_bp)
                fail_lease(s, self.ledger, found, fee, now, current)
                record_system(s, now, "lease.fail", f"lease:{lease_id}", reason="agent silent")
                return 1

            try:
                failed += self.db.transaction(work)
            except (Conflict, InvalidState) as err:  # changed meanwhile: the next tick sees
                log.warning("failing lease %s of a silent agent: %s", lease.id, err)
        return failed

    def _clear(self, clearing_id: str, now: int) -> tuple[str | None, str | None]:
        with self.db.session_scope(write=False) as s:
            if s.get(ClearingRow, clearing_id) is not None:
                return None, "exists"
        first = max(0, self.settings.grid.slot_at(now))
        try:
            clearing_round(
                self.db,
                self.ledger,
                self.settings,
                now,
                clearing_id,
                first,
                self.settings.horizon_slots,
                lambda prepared: self.db.transaction(
                    partial(self._save, prepared=prepared, now=now), retry_integrity=True
                ),
                self.adjust,
            )
        except Conflict as err:
            log.warning("clearing %s not stored: %s", clearing_id, err)
            return None, str(err)
        log.info("clearing %s stored", clearing_id)
        return clearing_id, None

    def _save(self, s: Session, *, prepared: PreparedClearing, now: int) -> list[Lease]:
        leases = save_clearing(s, self.ledger, prepared, now, self.settings.default_fee_bp)
        if prepared.firm_step is not None:  # firm-order protection's first step
            step = prepared.firm_step
            record_system(
                s,
                now,
                "clearing.run",
                f"clearing:{step.id}",
                status=str(step.result.status),
                welfare_fen=step.result.welfare_fen,
                n_allocations=len(step.result.allocations),
            )
        result = prepared.result
        record_system(
            s,
            now,
            "clearing.run",
            f"clearing:{prepared.id}",
            status=str(result.status),
            welfare_fen=result.welfare_fen,
            n_allocations=len(leases),
        )
        return leases

    def _start_due(self, s: Session, now: int) -> int:
        """Start every lease whose slot has started: one statement, however many leases
        (their ids first, locked, for the audit trail)."""
        ids = s.scalars(
            select(LeaseRow.id)
            .where(
                LeaseRow.state == str(LeaseState.SCHEDULED),
                LeaseRow.slot <= self.settings.grid.slot_at(now),
            )
            .order_by(LeaseRow.id)
            .with_for_update()
        ).all()
        started = start_leases(s, self.settings.grid, now)
        record_system(s, now, "lease.start", *(f"lease:{i}" for i in ids))
        return started

    def _advance_leases(self, now: int) -> tuple[int, int, int]:
        completed = settled = 0
        started = self.db.transaction(lambda s: self._start_due(s, now))
        with self.db.session_scope(write=False) as s:
            due = leases_due(s, self.settings.grid, self.settings.lease_grace_s, now)
        ended = self.settings.grid.slot_at(now - self.settings.lease_grace_s) - 1
        for lease_id, state in due:
            try:
                if state is LeaseState.SCHEDULED:  # its slot started since the statement above
                    slot = self.db.transaction(partial(self._start, lease_id=lease_id, now=now))
                    started += 1
                    if slot > ended:
                        continue
                done = self._complete(lease_id, now)
                completed += 1
                settled += done
            except (Conflict, InvalidState):
                continue  # a reading or a failure moved it meanwhile
        try:
            settled += settle_stuck_orders(self.db, self.ledger, self.settings.default_fee_bp, now)
        except Conflict as err:  # a concurrent settlement got there first: next tick
            log.warning("sweeping settled orders: %s", err)
        return started, completed, settled

    @staticmethod
    def _start(s: Session, *, lease_id: str, now: int) -> int:
        record_system(s, now, "lease.start", f"lease:{lease_id}")
        return Clearings(s).move_lease(lease_id, LeaseState.RUNNING).allocation.slot

    def _complete(self, lease_id: str, now: int) -> bool:
        with self.db.session_scope(write=False) as s:
            lease = Clearings(s).lease(lease_id)
            siblings = Clearings(s).leases(
                clearing_id=lease.clearing_id, order_id=lease.allocation.order_id
            )
        ensure_accounts(self.ledger, billing.new_exchange_accounts(), now)
        ensure_accounts(
            self.ledger, [billing.new_provider_account(p) for p in provider_ids(siblings)], now
        )

        def work(s: Session) -> bool:
            clearings = Clearings(s)
            current = clearings.move_lease(lease_id, LeaseState.COMPLETED)
            fee = fee_bp(s, self.settings.default_fee_bp)
            done = settle_if_done(s, self.ledger, current, fee, now)
            record_system(s, now, "lease.complete", f"lease:{lease_id}", settled=done)
            return done

        return self.db.transaction(work)

    # -- the thread ------------------------------------------------------------------------------

    def start(self) -> None:
        """Tick in a background thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="suangu-clearing-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = None
            try:
                if not self.tick().led:
                    # Another worker is clearing: look again in a while (it stores the
                    # interval's clearing, and this loop then skips it).
                    wait = max(self.seconds_to_next(), FOLLOWER_RETRY_S)
            except Exception:  # keep the loop alive; the next tick tries again
                log.exception("clearing loop tick failed")
                wait = FOLLOWER_RETRY_S
            self._stop.wait(self.seconds_to_next() if wait is None else wait)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
