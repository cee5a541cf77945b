"""The demo (the service over HTTP, its providers' agents included) against the simulator on
the same scenario, orders and seed: every figure both report, side by side, and whether they
are equal (they must be: see docs/demo.md), and the demo's CPU seconds by phase.

    .venv/bin/python bench/bench_demo_exact.py [--hours 168] [--scenario hubs]

Appends a JSON line to ``bench/results/demo_exact.jsonl``; exits 1 if a figure differs.
The week takes a few minutes on a 2-core machine (the demo's week about a minute of CPU,
the simulation about 20 s).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from suangu.demo import demo_inputs, figures_against, run_demo
from suangu.sim.simulate import simulate
from suangu.store.db import open_database, sqlite_url

RESULTS = Path(__file__).parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="hubs", help="hubs or east-west")
    ap.add_argument("--hours", type=int, default=None, help="the span (default: the scenario's)")
    args = ap.parse_args()
    scenario, stream = demo_inputs(args.scenario, args.hours)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(sqlite_url(Path(tmp) / "demo.db"))
        cpu = time.process_time()
        _, report = run_demo(db, scenario, stream)
        demo_cpu = time.process_time() - cpu
        db.engine.dispose()
    cpu = time.process_time()
    sim = simulate(scenario, stream)
    sim_cpu = time.process_time() - cpu
    pairs = figures_against(report, sim)
    width = max(len(k) for k in pairs)
    print(f"{scenario.name}, {scenario.hours} h, {report.orders_submitted} orders")
    print(f"{'figure':<{width}}  {'demo':>16}  {'simulate':>16}")
    for name, (a, b) in pairs.items():
        print(f"{name:<{width}}  {a:>16,}  {b:>16,}  {'' if a == b else 'DIFFERS'}")
    t = report.timings
    phases = ("setup", "energy_model", "orders", "clearing", "metering", "report")
    print(
        f"demo: {demo_cpu:.1f} s CPU ("
        + ", ".join(f"{p} {t.get(p + '_cpu_s', 0.0):.1f}" for p in phases)
        + f"), {t.get('total_s', 0.0):.1f} s wall; simulate: {sim_cpu:.1f} s CPU"
    )
    same = all(a == b for a, b in pairs.values())
    with (RESULTS / "demo_exact.jsonl").open("a", encoding="utf-8") as f:
        record = {
            "scenario": scenario.name,
            "hours": scenario.hours,
            "same": same,
            "figures": {k: list(v) for k, v in pairs.items()},
            "demo_cpu_s": round(demo_cpu, 2),
            "sim_cpu_s": round(sim_cpu, 2),
            "timings": {k: round(v, 3) for k, v in t.items()},
        }
        f.write(json.dumps(record) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
