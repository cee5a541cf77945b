"""The server that ``test_crash.py`` kills: ``suangu serve``'s app with a test-only crash hook.

Run as ``python crash_worker.py --port P --workers W`` with ``SUANGU_DATABASE_URL`` set. It
serves :func:`build` with :func:`suangu.api.serving.serve` (the same code as ``suangu
serve``), with three test-only changes read from the environment:

* ``SUANGU_CRASH_CLOCK``: a file holding the market clock's Unix seconds (the test moves
  time by rewriting it; every worker reads it on each ``now()``);
* ``SUANGU_CRASH_TICK_S``: each worker ticks its clearing loop every this many seconds (the
  served loop sleeps up to a minute between ticks on the wall clock);
* ``SUANGU_CRASH_GRACE_S``: the loop's ``lease_grace_s``;
* ``SUANGU_CRASH_ARM``: a path; when a file is there, naming a crash point (``clearing``:
  inside the transaction that stores a clearing and takes its holds, after they are written;
  ``settlement``: inside the transaction that settles an order, after its ledger transfers
  and lease states are written), the first worker to reach that point takes the file
  (renames it, so only one does), flushes the transaction to the database, writes its pid to
  ``<path>.hit`` and waits there for ever: the test then ``kill -9``s it mid-transaction.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.orm import Session

CLOCK_ENV = "SUANGU_CRASH_CLOCK"
TICK_ENV = "SUANGU_CRASH_TICK_S"
ARM_ENV = "SUANGU_CRASH_ARM"
GRACE_ENV = "SUANGU_CRASH_GRACE_S"
POINTS = ("clearing", "settlement")

log = logging.getLogger("suangu.crash_worker")


class FileClock:
    """Integer Unix seconds read from a file (the test writes it)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def now(self) -> int:
        return int(self.path.read_text().strip())


def crash_point(s: Session, point: str) -> None:
    """Hang here, mid-transaction, when the test armed ``point`` (once, in one worker)."""
    arm = os.environ.get(ARM_ENV)
    if not arm:
        return
    armed = Path(arm)
    try:
        if armed.read_text().strip() != point:
            return
        taken = armed.with_name(f"{armed.name}.taken.{os.getpid()}")
        armed.rename(taken)  # atomic: one worker wins
    except OSError:
        return
    s.flush()  # what the transaction wrote is in the database, uncommitted
    hit = armed.with_name(f"{armed.name}.hit")
    tmp = hit.with_name(f"{hit.name}.{os.getpid()}")
    tmp.write_text(f"{os.getpid()} {point}\n")
    tmp.rename(hit)
    while True:  # until kill -9
        time.sleep(3600)


def _install_hooks() -> None:
    from suangu.api import services
    from suangu.store.repositories import Clearings

    save = Clearings.save

    def save_then_crash(self: Clearings, *args: Any, **kwargs: Any) -> Any:
        out = save(self, *args, **kwargs)
        crash_point(self.s, "clearing")
        return out

    settle = services.settle_done_orders

    def settle_then_crash(s: Session, *args: Any, **kwargs: Any) -> int:
        n: int = settle(s, *args, **kwargs)
        if n:
            crash_point(s, "settlement")
        return n

    Clearings.save = save_then_crash  # type: ignore[method-assign]
    services.settle_done_orders = settle_then_crash


def _ticker(app: FastAPI, every_s: float) -> None:
    loop = app.state.clearing_loop
    while True:
        try:
            loop.tick()
        except Exception:  # a tick that fails is retried on the next one, as in the loop
            log.exception("tick failed")
        time.sleep(every_s)


def build() -> FastAPI:
    """The served app on ``SUANGU_DATABASE_URL`` with the file clock, the hooks and the
    ticker (see the module docs); rate limits off, no energy model."""
    from suangu.api.app import create_app
    from suangu.api.settings import ApiSettings
    from suangu.store.db import open_database

    _install_hooks()
    settings = ApiSettings(
        clearing_loop=False,
        rate_limit=False,
        horizon_slots=12,
        lease_grace_s=int(os.environ.get(GRACE_ENV, "900")),
    )
    app: FastAPI = create_app(
        open_database(), FileClock(os.environ[CLOCK_ENV]), settings, energy=False, dashboard=False
    )
    every = float(os.environ.get(TICK_ENV, "0") or 0)
    if every > 0:
        threading.Thread(target=_ticker, args=(app, every), daemon=True).start()
    return app


def main() -> None:
    from suangu.api.serving import serve

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    serve(
        "127.0.0.1",
        args.port,
        args.workers,
        access_log=False,
        app="crash_worker:build",
        log_format="text",
    )


if __name__ == "__main__":
    main()
