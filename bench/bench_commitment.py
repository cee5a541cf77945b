"""Commit late, plan early: deadlines met under the two commitment rules.

Runs the ``suangu`` policy of ``suangu.sim.simulate`` on the packaged ten-hub scenario with
trace-derived orders (their deadlines are drawn from the jobs' lengths: ``max(1, duration/4)``
slots of slack for firm jobs, ``min(48, max(12, 2 x duration))`` for flexible ones; see
``suangu.sim.trace``) at high load, once per rule:

* ``at once``: every allocation of a clearing is firm when it clears (``firm_slots: null``);
* ``firm 1``: only the slot about to start is firm, the rest is a plan that the next hourly
  clearing plans again (``firm_slots: 1``, the default).

Two workloads: the trace's jobs as divisible batch orders, and the same jobs all-or-nothing
(each a gang of its GPUs for its duration). Prints one table and appends JSON lines to
``bench/results/commitment.jsonl``::

    .venv/bin/python bench/bench_commitment.py [--load 1.2] [--days 7] [--seed 0]
                                               [--workload divisible|all-or-nothing]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from suangu.core.types import OrderKind
from suangu.sim.bench import bench_inputs
from suangu.sim.scenario import OrderStream, Scenario
from suangu.sim.simulate import Policy, SimulationReport, simulate

RESULTS = Path(__file__).parent / "results" / "commitment.jsonl"


def all_or_nothing(stream: OrderStream) -> OrderStream:
    """Each order as a gang of its GPUs for its duration (work / GPUs / slot hours)."""
    orders = []
    for s in stream.orders:
        o = s.order
        duration = max(1, o.gpu_hours // o.gpus)
        gang = replace(
            o,
            kind=OrderKind.GANG,
            gpu_hours=0,
            duration_slots=duration,
            reference_class=None,
            speed={},
        )
        orders.append(replace(s, order=gang))
    return replace(stream, orders=tuple(orders))


def run(sc: Scenario, stream: OrderStream, firm_slots: int | None) -> SimulationReport:
    return simulate(replace(sc, firm_slots=firm_slots), stream, policy=Policy.SUANGU)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=float, default=1.2)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workload", choices=["divisible", "all-or-nothing"], action="append", default=None
    )
    args = parser.parse_args()
    sc, stream, _ = bench_inputs(days=args.days, load=args.load, seed=args.seed)
    workloads = {"divisible": stream, "all-or-nothing": all_or_nothing(stream)}
    if args.workload:
        workloads = {k: v for k, v in workloads.items() if k in args.workload}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"{'workload':<15} {'rule':<8} {'deadlines met':>15} {'share':>7} "
        f"{'wasted GPU-h':>13} {'welfare yuan':>13} {'clear mean/max s':>17} {'wall s':>7}"
    )
    print(f"load {args.load}, {args.days} days, seed {args.seed}")
    print(header)
    for name, orders in workloads.items():
        for rule, firm in (("at once", None), ("firm 1", 1)):
            t = time.perf_counter()
            r = run(sc, orders, firm)
            wall = time.perf_counter() - t
            print(
                f"{name:<15} {rule:<8} {r.deadlines_met:>7,} / {r.deadline_orders:<5,} "
                f"{r.deadline_share:>7.1%} {r.wasted_gpu_hours:>13,.0f} "
                f"{r.net_welfare_fen / 100:>13,.0f} "
                f"{r.clear_mean_s:>8.2f} / {r.clear_max_s:<6.2f} {wall:>7.1f}"
            )
            row = {
                "load": args.load,
                "days": args.days,
                "seed": args.seed,
                "workload": name,
                "rule": rule,
                "deadline_orders": r.deadline_orders,
                "deadlines_met": r.deadlines_met,
                "wasted_gpu_hours": r.wasted_gpu_hours,
                "net_welfare_fen": r.net_welfare_fen,
                "clear_mean_s": r.clear_mean_s,
                "clear_max_s": r.clear_max_s,
                "wall_s": wall,
            }
            with RESULTS.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
