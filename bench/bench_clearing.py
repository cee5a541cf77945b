"""Clearing benchmark: the engine against the pay-as-bid greedy baseline and the LP optimum.

    .venv/bin/python bench/bench_clearing.py [--sizes small,goal,green,week] [--seed 1]
                                             [--no-reference] [--refresh-reference]
                                             [--time-limit S]

For every size: generate the market (suangu.sim.generator, deterministic per seed), clear it
with the engine (suangu.core.clearing.clear) and with the greedy baseline, check the engine's
result with check_clearing, and compare both with the reference optimum: the LP relaxation of
the same market over the same columns (suangu.core.clearing.lp.solve_lp(build_model(market),
integer=False)), solved by HiGHS once per (size, seed, generator version) and cached in
bench/.cache/. For batch markets that LP is integral, so it is the exact optimum; with green
rows or gangs it is an upper bound.

Each size runs in its own child process, so "peak RSS" is that size's own process peak
(getrusage ru_maxrss) over generation, engine clearing and greedy, measured before the
reference LP runs. ``--time-limit S`` clears every size with that wall-clock limit (default
the engine's 60 s) and reports how far past it ``clear()`` returned ("overrun": total time /
limit). Besides wall time, each record has the CPU time of the clearing process and the
machine's load average before and after it: on a shared machine the wall time of one run
depends on what else runs, the CPU time much less. Results are printed as a table and
appended as JSON lines to bench/results/clearing.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
CACHE = BENCH / ".cache"
RESULTS = BENCH / "results" / "clearing.jsonl"

#: name -> generate_market arguments (besides the seed).
SIZES: dict[str, dict[str, Any]] = {
    "small": {"n_orders": 1_000, "n_pools": 10, "n_slots": 24},
    "goal": {"n_orders": 10_000, "n_pools": 20, "n_slots": 24},
    "green": {"n_orders": 10_000, "n_pools": 20, "n_slots": 24, "green": True},
    "week": {"n_orders": 10_000, "n_pools": 30, "n_slots": 168},
    "gang": {"n_orders": 1_000, "n_pools": 10, "n_slots": 24, "gang_share": 0.1},
    # Gang markets at scale (gangs: 8, 16 or 32 GPUs for 2-6 slots; see the generator).
    "gang5k-10": {"n_orders": 5_000, "n_pools": 20, "n_slots": 24, "gang_share": 0.1},
    "gang5k-30": {"n_orders": 5_000, "n_pools": 20, "n_slots": 24, "gang_share": 0.3},
    "gang10k-30": {"n_orders": 10_000, "n_pools": 20, "n_slots": 24, "gang_share": 0.3},
    # Hourly re-planning of pending all-or-nothing training jobs on one 960-GPU pool:
    # REPLAN_CLEARINGS markets of 100 to n_orders jobs (see replan_market()).
    "replan": {"n_orders": 1_000, "n_pools": 1, "n_slots": 24, "replan": True},
    # The goal market with links between every pair of regions, input data at a home region
    # and work in reference GPU-hours (speeds from FP16 TFLOPS): see with_network().
    "network": {"n_orders": 10_000, "n_pools": 20, "n_slots": 24, "network": True},
}
DEFAULT_SIZES = "small,goal,green,week,gang5k-10,gang5k-30,gang10k-30,replan"
#: Clearings of the ``replan`` size (markets of 100 .. n_orders pending jobs, evenly spaced),
#: each with this time limit (an hourly re-plan must answer within about a second).
REPLAN_CLEARINGS = 20
REPLAN_TIME_LIMIT_S = 1.0
REFERENCE_TIME_LIMIT_S = 3600.0


def _rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cache_path(size: str, seed: int) -> Path:
    from suangu.sim.generator import GENERATOR_VERSION

    spec = SIZES[size]
    parts = [
        size,
        f"{spec['n_orders']}x{spec['n_pools']}x{spec['n_slots']}",
        f"green{int(bool(spec.get('green', False)))}",
        f"gang{spec.get('gang_share', 0.0)}",
        f"seed{seed}",
        f"gen{GENERATOR_VERSION}",
    ]
    if spec.get("network"):
        parts.append(f"net{NETWORK_VERSION}")
    if spec.get("replan"):
        parts.append(f"replan{REPLAN_VERSION}")
    return CACHE / f"clearing-ref-{'-'.join(parts)}.json"


#: Bumped whenever with_network() changes what it draws (invalidates cached references).
NETWORK_VERSION = 1
#: Bumped whenever replan_market() changes what it draws.
REPLAN_VERSION = 1


def replan_market(seed: int, n_jobs: int, n_slots: int = 24, gpus: int = 960) -> Any:
    """One hourly re-plan of pending training jobs (deterministic per seed and size): one
    960-GPU H100 pool offered over the horizon at 18 yuan per GPU-hour, and ``n_jobs``
    all-or-nothing (gang) jobs shaped like a deep-learning training trace: 1-64 GPUs (35%
    one GPU, 20% two, 15% four, 15% eight, 8% 16, 5% 32, 2% 64), 2 slots or more
    (1 + geometric(0.2), at most the horizon), 70% ready now and 30% released later, a
    deadline 0-12 slots after the earliest finish, and a limit of 15-40 yuan per GPU-hour.
    At 1,000 jobs the demand is about 1.7 times the pool."""
    import numpy as np

    from suangu.core.types import Market, Offer, Order, OrderKind, Pool, Site, TimeGrid

    rng = np.random.default_rng(np.random.SeedSequence([seed, 7, n_jobs, REPLAN_VERSION]))
    sizes = np.array([1, 2, 4, 8, 16, 32, 64])
    share = np.array([0.35, 0.2, 0.15, 0.15, 0.08, 0.05, 0.02])
    orders = []
    for k in range(n_jobs):
        g = int(rng.choice(sizes, p=share))
        d = int(min(n_slots, 1 + rng.geometric(0.2)))
        release = int(rng.integers(0, n_slots - d + 1)) if rng.random() < 0.3 else 0
        deadline = min(n_slots, release + d + int(rng.integers(0, 13)))
        limit = int(rng.integers(1500, 4001))
        orders.append(
            Order(
                f"j{k:04d}",
                f"b{k % 50}",
                OrderKind.GANG,
                g,
                release,
                deadline,
                limit,
                duration_slots=d,
            )
        )
    return Market(
        TimeGrid(),
        0,
        n_slots,
        (Site("s0", "Site 0", "P0", "west"),),
        (Pool("p0", "s0", "H100-SXM-80GB"),),
        (Offer.over("f0", "prov0", "p0", 0, n_slots, gpus, 1800),),
        tuple(orders),
    )


def run_replan(size: str, seed: int, time_limit_s: float | None = None) -> dict[str, Any]:
    """Time REPLAN_CLEARINGS re-plans of 100 .. n_orders jobs, each with a time limit of
    REPLAN_TIME_LIMIT_S; one record with the distribution (p50, p95, max) of clear() times,
    the worst and the median certified gap, and the welfare summed over the clearings."""
    import numpy as np

    from suangu.core.clearing import ClearingOptions, clear
    from suangu.core.clearing.checks import check_clearing
    from suangu.core.clearing.greedy import greedy_clear
    from suangu.sim.generator import GENERATOR_VERSION, market_stats

    limit = REPLAN_TIME_LIMIT_S if time_limit_s is None else time_limit_s
    options = ClearingOptions(time_limit_s=limit)
    load_before = os.getloadavg()[0]
    top = int(SIZES[size]["n_orders"])
    sizes = np.linspace(100, top, REPLAN_CLEARINGS).round().astype(int).tolist()
    runs = []
    problems: list[str] = []
    for k, n in enumerate(sizes):
        market = replan_market(seed * 1000 + k, n)
        t0, c0 = time.perf_counter(), time.process_time()
        result = clear(market, options)
        took = time.perf_counter() - t0
        cpu = time.process_time() - c0
        greedy = greedy_clear(market)
        problems += check_clearing(market, result)
        runs.append(
            {
                "jobs": n,
                "s": took,
                "cpu_s": cpu,
                "status": str(result.status),
                "method": result.method,
                "gap": result.gap,
                "welfare_fen": result.welfare_fen,
                "greedy_fen": greedy.welfare_fen,
                "rejected_gangs": len(result.rejected_gangs),
            }
        )
        _log(
            f"[{size}] {n} jobs: {result.status}/{result.method} in {took:.2f} s,"
            f" gap {result.gap:.2e}"
        )
    times = np.asarray([r["s"] for r in runs])
    cpus = np.asarray([r["cpu_s"] for r in runs])
    statuses: dict[str, int] = {}
    for r in runs:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    engine_fen = sum(r["welfare_fen"] for r in runs)
    greedy_fen = sum(r["greedy_fen"] for r in runs)
    return {
        "bench": "clearing",
        "size": size,
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "market": market_stats(replan_market(seed * 1000 + len(sizes) - 1, sizes[-1])),
        "engine": {
            "status": ", ".join(f"{v} {k}" for k, v in sorted(statuses.items())),
            "method": "p95 of clearings",
            "welfare_fen": engine_fen,
            "gap": max(r["gap"] for r in runs),
            "median_gap": float(np.median([r["gap"] for r in runs])),
            "time_limit_s": limit,
            "total_s": float(np.percentile(times, 95)),
            "p50_s": float(np.percentile(times, 50)),
            "max_s": float(times.max()),
            "cpu_s": float(np.percentile(cpus, 95)),
            "overrun": float(times.max()) / limit,
            "check_problems": len(problems),
            "check_examples": problems[:3],
        },
        "greedy": {"welfare_fen": greedy_fen, "total_s": None},
        "welfare_ratio": engine_fen / greedy_fen if greedy_fen else None,
        "rss_mib": {"before_clear": None, "after_clear": None, "peak": _rss_mib()},
        "load": [load_before, os.getloadavg()[0]],
        "reference": None,
        "replan": runs,
    }


def with_network(market: Any, seed: int) -> Any:
    """The market with a network (deterministic per seed): a link between every ordered pair
    of regions (latency 5-40 ms, 10-100 Gbit/s, 0-3 fen per GB); every order gets a home
    region; 70% of orders hold input data (log-uniform 10-2,000 GB); half of the orders
    count work in reference GPU-hours of an A800 (speeds from FP16 TFLOPS)."""
    import dataclasses

    import numpy as np

    from suangu.core.types import Link

    rng = np.random.default_rng(np.random.SeedSequence([seed, 5, NETWORK_VERSION]))
    regions = sorted({s.region for s in market.sites})
    links = tuple(
        Link(
            a,
            b,
            float(rng.uniform(5, 40)),
            float(rng.choice([10.0, 25.0, 100.0])),
            int(rng.integers(0, 4)),
        )
        for a in regions
        for b in regions
        if a != b
    )
    orders = []
    for order in market.orders:
        home = str(regions[int(rng.integers(len(regions)))])
        data = int(np.exp(rng.uniform(np.log(10), np.log(2000)))) if rng.random() < 0.7 else 0
        ref = "A800" if rng.random() < 0.5 else None
        orders.append(dataclasses.replace(order, home=home, data_gb=data, reference_class=ref))
    return dataclasses.replace(market, orders=tuple(orders), links=links)


def _reference(
    size: str, seed: int, market: Any, compute: bool, refresh: bool, time_limit_s: float
) -> dict[str, Any] | None:
    """The cached reference LP optimum, computed (and cached) when allowed."""
    from suangu.core.clearing.lp import solve_lp
    from suangu.core.clearing.model import ARC_BID, build_model

    path = _cache_path(size, seed)
    if path.exists() and not refresh:
        ref: dict[str, Any] = json.loads(path.read_text())
        ref["cached"] = True
        return ref
    if not compute:
        return None
    _log(
        f"[{size}] computing the reference LP once (HiGHS, limit {time_limit_s:.0f} s; "
        "about 1 min for goal, 3 min for week here; --no-reference skips it) ..."
    )
    t0 = time.perf_counter()
    model = build_model(market)
    sol = solve_lp(model, integer=False, time_limit_s=time_limit_s)
    took = time.perf_counter() - t0
    import highspy

    ref = {
        "welfare_fen": sol.objective * market.grid.slot_hours / model.scale,
        "optimal": bool(sol.optimal),
        "seconds": took,
        "bid_columns": int((model.kind == ARC_BID).sum()),
        "placements": len(model.placements),
        "side_rows": len(model.side),
        "highs": highspy.Highs().version(),  # type: ignore[no-untyped-call]
        "computed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _log(f"[{size}] reference LP took {took:.1f} s (optimal: {ref['optimal']})")
    if sol.optimal:
        CACHE.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ref, indent=1))
    ref["cached"] = False
    return ref


def run_one(
    size: str,
    seed: int,
    compute_ref: bool,
    refresh: bool,
    ref_limit: float,
    time_limit_s: float | None = None,
) -> dict[str, Any]:
    """Benchmark one size in this process; returns one JSON-able record."""
    from suangu.core.clearing import ClearingOptions, clear
    from suangu.core.clearing.checks import check_clearing
    from suangu.core.clearing.greedy import greedy_clear
    from suangu.sim.generator import GENERATOR_VERSION, generate_market, market_stats

    spec = dict(SIZES[size])
    if spec.pop("replan", False):
        return run_replan(size, seed, time_limit_s)
    network = spec.pop("network", False)
    t0 = time.perf_counter()
    market = generate_market(seed=seed, **spec)
    if network:
        market = with_network(market, seed)
    gen_s = time.perf_counter() - t0
    stats = market_stats(market)
    rss_before = _rss_mib()
    _log(f"[{size}] generated in {gen_s:.2f} s: {stats['candidate_columns']:,} candidate columns")

    options = ClearingOptions() if time_limit_s is None else ClearingOptions(time_limit_s)
    load_before = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    result = clear(market, options)
    clear_s = time.perf_counter() - t0
    clear_cpu = time.process_time() - c0
    load_after = os.getloadavg()[0]
    rss_clear = _rss_mib()
    _log(f"[{size}] engine: {result.status} ({result.method}) in {clear_s:.2f} s")
    t0 = time.perf_counter()
    greedy = greedy_clear(market)
    greedy_s = time.perf_counter() - t0
    rss_peak = _rss_mib()
    problems = check_clearing(market, result)
    _log(f"[{size}] greedy in {greedy_s:.2f} s; engine check problems: {len(problems)}")

    ref = _reference(size, seed, market, compute_ref, refresh, ref_limit)
    if ref is not None and not ref["cached"]:
        ref["peak_rss_mib"] = _rss_mib()  # the process peak, now including the reference LP
    record: dict[str, Any] = {
        "bench": "clearing",
        "size": size,
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "market": stats,
        "generate_s": gen_s,
        "engine": {
            "status": str(result.status),
            "method": result.method,
            "message": result.message,
            "welfare_fen": result.welfare_fen,
            "gap": result.gap,
            "build_s": result.timings.get("build_s"),
            "solve_s": result.timings.get("solve_s"),
            "total_s": clear_s,
            "cpu_s": clear_cpu,
            "time_limit_s": options.time_limit_s,
            "overrun": clear_s / options.time_limit_s,
            "allocations": len(result.allocations),
            "rejected_gangs": len(result.rejected_gangs),
            "check_problems": len(problems),
            "check_examples": problems[:3],
        },
        "greedy": {
            "welfare_fen": greedy.welfare_fen,
            "total_s": greedy_s,
            "allocations": len(greedy.allocations),
        },
        "welfare_ratio": result.welfare_fen / greedy.welfare_fen if greedy.welfare_fen else None,
        "rss_mib": {"before_clear": rss_before, "after_clear": rss_clear, "peak": rss_peak},
        "load": [load_before, load_after],
        "reference": ref,
    }
    if ref and ref.get("optimal") and ref["welfare_fen"] > 0:
        record["gap_to_reference"] = (ref["welfare_fen"] - result.welfare_fen) / ref["welfare_fen"]
        record["greedy_gap_to_reference"] = (ref["welfare_fen"] - greedy.welfare_fen) / ref[
            "welfare_fen"
        ]
    return record


def _yuan(fen: float | None) -> str:
    return "-" if fen is None else f"{fen / 100:,.0f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.3f}%"


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def print_table(records: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="Suangu clearing benchmark",
        caption="times in s, welfare in yuan, RSS = process peak resident set (ru_maxrss)",
    )
    table.add_column("metric")
    for r in records:
        table.add_column(f"{r['size']} (seed {r['seed']})", justify="right")

    def row(name: str, get: Any) -> None:
        cells = []
        for r in records:
            try:
                cells.append(get(r))
            except (KeyError, TypeError):
                cells.append("-")
        table.add_row(name, *cells)

    row("orders", lambda r: f"{r['market']['orders']:,}")
    row("pools", lambda r: str(r["market"]["pools"]))
    row("slots", lambda r: str(r["market"]["slots"]))
    row(
        "green / gang orders",
        lambda r: f"{r['market']['green_orders']:,} / {r['market']['gang_orders']:,}",
    )
    row("candidate columns", lambda r: f"{r['market']['candidate_columns']:,}")
    row("profitable columns", lambda r: f"{r['market']['profitable_columns']:,}")
    row("hot-hour demand/capacity", lambda r: f"{r['market']['hot_hour_ratio']:.2f}")
    row("engine build", lambda r: _secs(r["engine"]["build_s"]))
    row("engine solve", lambda r: _secs(r["engine"]["solve_s"]))
    row("engine total", lambda r: _secs(r["engine"]["total_s"]))
    row("engine CPU", lambda r: _secs(r["engine"]["cpu_s"]))
    row(
        "time limit / overrun",
        lambda r: f"{r['engine']['time_limit_s']:g} / {r['engine']['overrun']:.2f}x",
    )
    row("load average before/after", lambda r: f"{r['load'][0]:.1f} / {r['load'][1]:.1f}")
    row("engine status/method", lambda r: f"{r['engine']['status']}/{r['engine']['method']}")
    row("engine certified gap", lambda r: _pct(r["engine"].get("gap")))
    row("engine check problems", lambda r: str(r["engine"]["check_problems"]))
    row("engine welfare", lambda r: _yuan(r["engine"]["welfare_fen"]))
    row("greedy welfare", lambda r: _yuan(r["greedy"]["welfare_fen"]))
    row("greedy time", lambda r: _secs(r["greedy"]["total_s"]))
    row(
        "welfare engine/greedy",
        lambda r: "-" if r["welfare_ratio"] is None else f"{r['welfare_ratio']:.4f}",
    )
    row("reference LP optimum", lambda r: _yuan(r["reference"]["welfare_fen"]))
    row(
        "reference LP time",
        lambda r: (
            _secs(r["reference"]["seconds"]) + (" (cached)" if r["reference"]["cached"] else "")
        ),
    )
    row("engine gap to reference", lambda r: _pct(r.get("gap_to_reference")))
    row("replan p50 / max s", lambda r: f"{r['engine']['p50_s']:.2f} / {r['engine']['max_s']:.2f}")
    row("greedy gap to reference", lambda r: _pct(r.get("greedy_gap_to_reference")))
    row("peak RSS MiB (ru_maxrss)", lambda r: f"{r['rss_mib']['peak']:,.0f}")
    row("RSS MiB before clearing", lambda r: f"{r['rss_mib']['before_clear']:,.0f}")
    Console(width=max(100, 32 + 24 * len(records))).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        default=DEFAULT_SIZES,
        help=f"comma-separated, from {', '.join(SIZES)} (default {DEFAULT_SIZES})",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="do not compute missing reference LP optima (cached ones are shown)",
    )
    parser.add_argument(
        "--refresh-reference",
        action="store_true",
        help="recompute reference LP optima even when cached",
    )
    parser.add_argument("--reference-time-limit", type=float, default=REFERENCE_TIME_LIMIT_S)
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="wall-clock limit of every clear() call, s (default: the engine's, 60 s; "
        f"replan: {REPLAN_TIME_LIMIT_S:g} s)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: one size, JSON out
    args = parser.parse_args(argv)

    if args.one:
        record = run_one(
            args.one,
            args.seed,
            not args.no_reference,
            args.refresh_reference,
            args.reference_time_limit,
            args.time_limit,
        )
        print(json.dumps(record))
        return 0

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown}; use {', '.join(SIZES)}")
    if args.no_reference:
        _log(
            "--no-reference: missing reference LP optima are not computed (the week one "
            "took about 3 minutes on a 2-core machine; see bench/README.md)"
        )
    records = []
    for size in sizes:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            size,
            "--seed",
            str(args.seed),
            "--reference-time-limit",
            str(args.reference_time_limit),
        ]
        cmd += ["--no-reference"] if args.no_reference else []
        cmd += ["--time-limit", str(args.time_limit)] if args.time_limit is not None else []
        cmd += ["--refresh-reference"] if args.refresh_reference else []
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0:
            _log(f"[{size}] failed with exit code {done.returncode}")
            records.append(
                {
                    "bench": "clearing",
                    "size": size,
                    "seed": args.seed,
                    "error": f"exit {done.returncode}",
                }
            )
            continue
        records.append(json.loads(done.stdout.strip().splitlines()[-1]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as out:
        for r in records:
            out.write(json.dumps(r) + "\n")
    ok = [r for r in records if "error" not in r]
    if ok:
        print_table(ok)
    for r in ok:
        ref = r.get("reference")
        if ref is None:
            print(f"{r['size']}: no reference LP (run without --no-reference to compute it)")
        elif not ref.get("cached"):
            print(
                f"{r['size']}: reference LP computed in {ref['seconds']:.1f} s"
                f" ({ref['bid_columns']:,} bid columns), cached in bench/.cache/"
            )
        if r["engine"]["check_problems"]:
            print(
                f"{r['size']}: engine result breaks {r['engine']['check_problems']} market "
                f"rules, e.g. {r['engine']['check_examples']}"
            )
    print(f"appended {len(records)} records to {RESULTS.relative_to(BENCH.parent)}")
    return 0 if len(ok) == len(records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
