"""Recovery time: from a provider agent's death to its work running at another provider.

    .venv/bin/python bench/bench_recovery.py [--grace 900,60] [--interval 3600,300]
                                             [--deaths 5] [--step 10] [--delay-fen 0]

For each agent grace period (``agent_grace_s``) and clearing interval
(``clearing_interval_s``), and for deaths spread evenly over one clearing interval: a fresh
exchange (the API app in process, a temporary SQLite database, a manual market clock) with two
providers in one region: ``prov-a`` cheap, ``prov-b`` dearer, each with its own agent
(:class:`~suangu.agent.runner.ProviderAgent`, a local executor whose job is ``sleep``), both
talking HTTP to the app. A batch order of 2 GPUs x 6 GPU-hours clears at ``prov-a``; its agent
runs it, then dies (stops ticking and its job ends with it). The clearing loop and
``prov-b``'s agent then tick every ``--step`` seconds of market time until ``prov-b`` runs the
order's re-queued work. Reported, in market seconds after the death (median, min-max):

* ``failed``: the loop failed the dead agent's leases (after ``agent_grace_s`` of silence);
* ``cleared``: a clearing gave the undelivered work to ``prov-b``;
* ``running``: ``prov-b``'s agent started it;
* ``clearings``: clearings from the failure (the tick that failed the leases, if it cleared
  too) to ``running``, that one included (goal: 1, the next clearing);

and the wall-clock time of the loop's tick that failed the leases and of the one that cleared
the work again (this machine's cost; the market times come from the settings). One JSON line
per configuration is appended to ``bench/results/recovery.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from suangu.agent.executors import LocalExecutor  # noqa: E402
from suangu.agent.meters import NominalMeter  # noqa: E402
from suangu.agent.runner import ProviderAgent  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "recovery.jsonl"
EPOCH = 1_767_225_600
SLOT = 100
HOUR = 3600
REGION = "inner-mongolia"


def one_death(
    grace: int, interval: int, offset: int, step: int, tmp: Path, delay_fen: int = 0
) -> dict[str, Any]:
    """One exchange, one death ``offset`` seconds into a clearing interval; the times."""
    from fastapi.testclient import TestClient

    from suangu.api.app import create_app
    from suangu.api.clock import ManualClock
    from suangu.api.services import ensure_accounts
    from suangu.api.settings import ApiSettings
    from suangu.client import SuanguClient
    from suangu.core import billing
    from suangu.core.types import Offer, Order, OrderKind, Pool, Site
    from suangu.store.db import open_database, sqlite_url
    from suangu.store.models import Role
    from suangu.store.repositories import Capacity, Members, Orders

    db = open_database(sqlite_url(tmp / f"recovery-{grace}-{interval}-{offset}.db"))
    clock = ManualClock(EPOCH + SLOT * HOUR)
    now = clock.now()
    settings = ApiSettings(
        grid_epoch=EPOCH,
        agent_grace_s=grace,
        clearing_interval_s=interval,
        delay_fen=delay_fen,
        rate_limit=False,
    )
    tokens = {}
    with db.session_scope() as s:
        for m, role in (
            ("op", Role.OPERATOR),
            ("prov-a", Role.PROVIDER),
            ("prov-b", Role.PROVIDER),
            ("buy", Role.BUYER),
        ):
            Members(s).create(m, m, role, now)
            tokens[m] = Members(s).create_key(m, now).token
        cap = Capacity(s)
        for prov, reserve in (("prov-a", 500), ("prov-b", 900)):
            site = Site(f"site-{prov}", prov, "Inner Mongolia", REGION, pue=1.1)
            cap.add_site(site, prov)
            cap.add_pool(Pool(f"pool-{prov}", site.id, "H100"))
            cap.add_offer(
                Offer.over(f"offer-{prov}", prov, f"pool-{prov}", SLOT, SLOT + 48, 2, reserve),
                now,
            )
        order = Order(
            "job", "buy", OrderKind.BATCH, gpus=2, release_slot=SLOT, deadline_slot=SLOT + 12,
            limit_fen=2000, gpu_hours=6, regions=frozenset({REGION}),
        )  # fmt: skip
        Orders(s).submit(order, now)
    app = create_app(db, clock, settings, energy=False, dashboard=False)
    ledger = app.state.ctx.ledger
    ensure_accounts(ledger, [billing.new_provider_account(p) for p in ("prov-a", "prov-b")], now)
    loop = app.state.clearing_loop
    with TestClient(app) as tc:
        clients = {
            m: SuanguClient("http://testserver", tokens[m], transport=tc._transport) for m in tokens
        }
        clients["op"].post("/deposits", json={"id": "d", "member_id": "buy", "amount_fen": 10**9})

        def agent(who: str) -> ProviderAgent:
            ex = LocalExecutor(["sleep", "{seconds}"], [0, 1], clock.now)
            return ProviderAgent(
                clients[who], ex, NominalMeter("H100", 0.8), clock.now, instance=who
            )

        a, b = agent("prov-a"), agent("prov-b")
        loop.tick()  # the first clearing: the job at prov-a
        death = EPOCH + SLOT * HOUR + offset
        while clock.now() < death:  # prov-a runs the job until its agent dies
            for x in (a, b):
                x.tick()
            loop.tick()
            clock.set(min(death, clock.now() + step))
        a.stop()  # its job dies with it; it sends nothing more

        def n_clearings() -> int:
            return len(clients["op"].get("/clearings", limit=500)["items"])

        fail_count = 0
        times: dict[str, float] = {}
        walls: dict[str, float] = {}
        while "running" not in times:
            clock.advance(step)
            t0 = time.perf_counter()
            report = loop.tick()
            wall = time.perf_counter() - t0
            if report.lost and "failed" not in times:
                times["failed"] = clock.now() - death
                walls["fail_tick_s"] = wall
                # The failing tick also clears when an interval boundary is due: that
                # clearing is the first after the failure.
                fail_count = n_clearings() - (report.clearing_id is not None)
            leases = clients["op"].get("/leases", order_id="job", limit=500)["items"]
            if "cleared" not in times and any(x["provider_id"] == "prov-b" for x in leases):
                times["cleared"] = clock.now() - death
                walls["clear_tick_s"] = wall
            if b.tick().started:
                times["running"] = clock.now() - death
            if clock.now() - death > 4 * (grace + interval + HOUR):
                raise SystemExit("the work did not run elsewhere")
        clearings = n_clearings() - fail_count
        b.stop()
    db.dispose()
    return {**times, **walls, "clearings": clearings}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grace", default="900,60", help="agent_grace_s values")
    ap.add_argument("--interval", default="3600,300", help="clearing_interval_s values")
    ap.add_argument("--deaths", type=int, default=5, help="deaths spread over an interval")
    ap.add_argument("--step", type=int, default=10, help="market seconds between ticks")
    ap.add_argument(
        "--delay-fen", type=int, default=0, help="the market's time preference (delay_fen)"
    )
    args = ap.parse_args()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"{'grace s':>7} {'interval s':>10}  {'failed s':>16}  {'cleared s':>16}  "
        f"{'running s':>16}  {'clearings':>9}  {'fail tick s':>11}  {'clear tick s':>12}"
    )
    with tempfile.TemporaryDirectory(prefix="suangu-bench-recovery-") as tmp:
        for grace in (int(x) for x in args.grace.split(",")):
            for interval in (int(x) for x in args.interval.split(",")):
                runs = [
                    one_death(
                        grace,
                        interval,
                        k * interval // args.deaths + 60,
                        args.step,
                        Path(tmp),
                        args.delay_fen,
                    )
                    for k in range(args.deaths)
                ]
                row = {
                    "grace_s": grace,
                    "interval_s": interval,
                    "step_s": args.step,
                    "delay_fen": args.delay_fen,
                    "runs": runs,
                    "python": platform.python_version(),
                    "at": int(time.time()),
                }
                with RESULTS.open("a") as f:
                    f.write(json.dumps(row) + "\n")

                def col(name: str, runs: list[dict[str, Any]] = runs) -> str:
                    v = [r[name] for r in runs]
                    return f"{statistics.median(v):.3g} ({min(v):.3g}-{max(v):.3g})"

                print(
                    f"{grace:>7} {interval:>10}  {col('failed'):>16}  {col('cleared'):>16}  "
                    f"{col('running'):>16}  {col('clearings'):>9}  {col('fail_tick_s'):>11}  "
                    f"{col('clear_tick_s'):>12}"
                )


if __name__ == "__main__":
    main()
