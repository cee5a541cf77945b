"""Scaling curve of the clearing: time and peak memory against orders and slots.

    .venv/bin/python bench/bench_scaling.py [--kinds batch,green,gang] [--orders 1000,5000,...]
                                            [--slots 24,72,168] [--max-orders 20000]
                                            [--pools 20] [--gang-share 0.3] [--seed 1]
                                            [--time-limit 60] [--figures-dir bench/results]
                                            [--plot-only]

Runs the grid kinds x orders x slots. Every point generates its market with
``suangu.sim.generator.generate_market`` (``batch``: plain orders; ``green``: green profiles
and green minimums; ``gang``: ``--gang-share`` of the orders all-or-nothing gangs) and clears
it once with ``clear(market, ClearingOptions(time_limit_s=--time-limit))`` in its own child
process, as ``bench_clearing.py`` does, so the peak RSS (getrusage ru_maxrss) is that point's
own. A child that outlives the limit by ``KILL_MARGIN_S`` (generation included) is killed
and recorded as such. Each point is appended as a JSON line to bench/results/scaling.jsonl
with the engine's status, method, certified gap and ``ClearingResult.timings``, the load
average before and after, and whether it hit its limit.

The charts (``scaling-time.png``, ``scaling-memory.png``, ``scaling-phases.png``) are drawn
from the latest record of every point in scaling.jsonl (so runs of subsets add up) into
``--figures-dir``; ``--plot-only`` redraws them without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_clearing import BENCH, _log, _rss_mib

RESULTS = BENCH / "results" / "scaling.jsonl"
KINDS = ("batch", "green", "gang")
ORDERS = (1_000, 5_000, 10_000, 20_000, 50_000)
SLOTS = (24, 72, 168)
#: Seconds a child may run past its clearing time limit (generation, imports, result
#: assembly and HiGHS overrunning the limit) before it is killed.
KILL_MARGIN_S = 120.0
#: Phases of ``ClearingResult.timings`` in the order they are stacked. ``greedy_s``,
#: ``dual_s`` and ``mip_s`` (gang markets) are parts of ``solve_s``; the charts show
#: ``solve_s`` less those parts as "solve (rest)".
PHASES = ("build_s", "greedy_s", "dual_s", "mip_s", "solve_rest_s", "price_s", "assemble_s")
PHASE_LABELS = {
    "build_s": "build model",
    "greedy_s": "greedy incumbent",
    "dual_s": "Lagrangian + rounding",
    "mip_s": "branch and bound",
    "solve_rest_s": "solve (network / LP / rest)",
    "price_s": "prices",
    "assemble_s": "assemble result",
    "other_s": "outside timings",
}


def market_args(
    kind: str, orders: int, slots: int, pools: int, gang_share: float
) -> dict[str, Any]:
    """generate_market arguments (besides the seed) of one grid point."""
    args: dict[str, Any] = {"n_orders": orders, "n_pools": pools, "n_slots": slots}
    if kind == "green":
        args["green"] = True
    elif kind == "gang":
        args["gang_share"] = gang_share
    return args


def phases(timings: dict[str, float], total_s: float) -> dict[str, float]:
    """The clearing's wall time split into PHASES plus ``other_s`` (what no timing covers)."""
    out = {p: float(timings.get(p, 0.0)) for p in PHASES if p != "solve_rest_s"}
    parts = out["greedy_s"] + out["dual_s"] + out["mip_s"]
    out["solve_rest_s"] = max(0.0, float(timings.get("solve_s", 0.0)) - parts)
    out["other_s"] = max(0.0, total_s - sum(out.values()))
    return out


def run_point(
    kind: str, orders: int, slots: int, pools: int, gang_share: float, seed: int, limit: float
) -> dict[str, Any]:
    """Generate and clear one grid point in this process; one JSON-able record."""
    from suangu.core.clearing import ClearingOptions, clear
    from suangu.sim.generator import GENERATOR_VERSION, generate_market, market_stats

    t0 = time.perf_counter()
    market = generate_market(seed=seed, **market_args(kind, orders, slots, pools, gang_share))
    gen_s = time.perf_counter() - t0
    stats = market_stats(market)
    rss_before = _rss_mib()
    t0 = time.perf_counter()
    result = clear(market, ClearingOptions(time_limit_s=limit))
    total_s = time.perf_counter() - t0
    timings = {k: float(v) for k, v in result.timings.items()}
    return {
        "generator_version": GENERATOR_VERSION,
        "python": platform.python_version(),
        "market": stats,
        "generate_s": gen_s,
        "status": str(result.status),
        "method": result.method,
        "message": result.message,
        "gap": result.gap,
        "welfare_fen": result.welfare_fen,
        "total_s": total_s,
        "timings": timings,
        "phases": phases(timings, total_s),
        "hit_limit": str(result.status) == "time_limit" or total_s >= limit,
        "rss_mib": {"before_clear": rss_before, "peak": _rss_mib()},
    }


def run_grid(args: argparse.Namespace, points: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """Every point in its own child process; records appended to RESULTS as they finish."""
    run = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    records = []
    for kind, orders, slots in points:
        base: dict[str, Any] = {
            "bench": "scaling",
            "run": run,
            "kind": kind,
            "orders": orders,
            "slots": slots,
            "pools": args.pools,
            "gang_share": args.gang_share if kind == "gang" else 0.0,
            "seed": args.seed,
            "time_limit_s": args.time_limit,
            "cpus": os.cpu_count(),
            "load_before": os.getloadavg()[0],
        }
        cmd = [sys.executable, __file__, "--point", f"{kind},{orders},{slots}"]
        cmd += ["--pools", str(args.pools), "--gang-share", str(args.gang_share)]
        cmd += ["--seed", str(args.seed), "--time-limit", str(args.time_limit)]
        _log(f"[{kind} {orders:,} x {slots}] running (load {base['load_before']:.1f}) ...")
        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                cmd,
                stdout=subprocess.PIPE,
                text=True,
                check=False,
                timeout=args.time_limit + KILL_MARGIN_S,
            )
            if done.returncode == 0:
                record = base | json.loads(done.stdout.strip().splitlines()[-1])
            else:
                record = base | {"error": f"exit {done.returncode}", "hit_limit": False}
        except subprocess.TimeoutExpired:
            record = base | {
                "error": f"killed after {args.time_limit + KILL_MARGIN_S:.0f} s",
                "hit_limit": True,
            }
        record["wall_s"] = time.perf_counter() - t0
        record["load_after"] = os.getloadavg()[0]
        record["at"] = datetime.now(UTC).isoformat(timespec="seconds")
        with RESULTS.open("a") as out:
            out.write(json.dumps(record) + "\n")
        records.append(record)
        if "error" in record:
            _log(f"[{kind} {orders:,} x {slots}] {record['error']}")
        else:
            _log(
                f"[{kind} {orders:,} x {slots}] {record['status']}/{record['method']} in "
                f"{record['total_s']:.2f} s, gap {record['gap']:.2e}, "
                f"peak RSS {record['rss_mib']['peak']:,.0f} MiB"
                + (" (hit the limit)" if record["hit_limit"] else "")
            )
    return records


def latest(path: Path) -> list[dict[str, Any]]:
    """The latest record of every point (kind, orders, slots, pools, gang share, seed)."""
    if not path.exists():
        return []
    by_point: dict[tuple[Any, ...], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        key = (r["kind"], r["orders"], r["slots"], r["pools"], r["gang_share"], r["seed"])
        by_point[key] = r
    return sorted(
        by_point.values(), key=lambda r: (KINDS.index(r["kind"]), r["slots"], r["orders"])
    )


def _runs(records: list[dict[str, Any]]) -> str:
    loads = [x for r in records for x in (r["load_before"], r["load_after"])]
    ats = sorted(r["at"] for r in records)
    first = ats[0][:16].replace("T", " ")
    return (
        f"{first}-{ats[-1][11:16]} UTC, load average {min(loads):.1f}-{max(loads):.1f}"
        f" on {records[0]['cpus']} shared cores"
    )


def plot(records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Draw the three charts from ``records``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    out_dir.mkdir(parents=True, exist_ok=True)
    kinds = [k for k in KINDS if any(r["kind"] == k for r in records)]
    note = _runs(records)
    written = []
    for metric, ylabel, name in (
        ("time", "clear() wall time, s", "scaling-time.png"),
        ("memory", "peak RSS of the point's process, MiB", "scaling-memory.png"),
    ):
        fig, axes = plt.subplots(
            1, len(kinds), figsize=(4.6 * len(kinds), 4.2), squeeze=False, sharey=True
        )
        for ax, kind in zip(axes[0], kinds, strict=True):
            for slots, colour in zip(SLOTS, ("tab:blue", "tab:orange", "tab:green"), strict=True):
                pts = [r for r in records if r["kind"] == kind and r["slots"] == slots]
                ok = [r for r in pts if "error" not in r]
                if not ok:
                    continue
                xs = [r["orders"] for r in ok]
                ys = [r["total_s"] if metric == "time" else r["rss_mib"]["peak"] for r in ok]
                ax.plot(xs, ys, "-o", color=colour, label=f"{slots} slots")
                if metric == "memory":  # after generation, before clear(): the market itself
                    before = [r["rss_mib"]["before_clear"] for r in ok]
                    ax.plot(xs, before, "--", color=colour, alpha=0.5, lw=1)
                hit = [(x, y) for x, y, r in zip(xs, ys, ok, strict=True) if r["hit_limit"]]
                if hit:
                    ax.plot(*zip(*hit, strict=True), "x", color="red", ms=11, mew=2)
            if metric == "time":
                limits = {r["time_limit_s"] for r in records if r["kind"] == kind}
                for lim in limits:
                    ax.axhline(lim, color="grey", ls=":", lw=1)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(list(ORDERS), [f"{n // 1000}k" for n in ORDERS])
            ax.xaxis.set_minor_locator(ticker.NullLocator())
            ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(ticker.NullFormatter())
            share = next((r["gang_share"] for r in records if r["kind"] == kind), 0.0)
            title = kind if kind != "gang" else f"gang ({share:.0%} gang orders)"
            ax.set_title(f"{title}, {records[0]['pools']} pools")
            ax.set_xlabel("orders")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        axes[0][0].set_ylabel(ylabel)
        key = (
            "red x: reached or ran past its time limit (dotted)"
            if metric == "time"
            else "dashed: RSS after generating the market, before clear()"
        )
        fig.suptitle(
            f"Suangu clearing scaling, seed {records[0]['seed']}; {key}\n{note}",
            fontsize=9,
        )
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    ok = [r for r in records if "error" not in r]
    bars = max(len([r for r in ok if r["kind"] == k]) for k in kinds)
    fig, axes = plt.subplots(
        1, len(kinds), figsize=(max(4.6, 0.42 * bars) * len(kinds), 4.8), squeeze=False, sharey=True
    )
    keys = [*PHASES, "other_s"]
    colours = plt.get_cmap("tab10").colors
    for ax, kind in zip(axes[0], kinds, strict=True):
        pts = [r for r in ok if r["kind"] == kind]
        labels = [f"{r['orders'] // 1000}k x {r['slots']}" for r in pts]
        bottom = [0.0] * len(pts)
        for i, key in enumerate(keys):
            share = [r["phases"][key] / r["total_s"] if r["total_s"] else 0.0 for r in pts]
            if not any(share):
                continue
            ax.bar(labels, share, bottom=bottom, color=colours[i], label=PHASE_LABELS[key])
            bottom = [b + s for b, s in zip(bottom, share, strict=True)]
        for x, r in enumerate(pts):
            ax.text(
                x, 1.01, f"{r['total_s']:.1f}s {r['method']}", ha="center", fontsize=6, rotation=90
            )
        ax.set_title(kind)
        ax.set_xlim(-0.6, max(bars, 1) - 0.4)  # the same bar width in every panel
        ax.set_ylim(0, 1.3)
        ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    axes[0][0].set_ylabel("share of clear() wall time (ClearingResult.timings)")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    order = [PHASE_LABELS[k] for k in keys if PHASE_LABELS[k] in handles]
    fig.legend([handles[k] for k in order], order, loc="lower center", ncol=len(order), fontsize=7)
    fig.suptitle(
        f"Where the clearing's time goes (orders x slots; above each bar: clear() time and "
        f"ClearingResult.method)\n{note}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = out_dir / "scaling-phases.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


def markdown_table(records: list[dict[str, Any]]) -> str:
    """One row per point: the table bench/README.md shows next to the charts."""
    lines = [
        "| kind | orders x slots | bid columns | clear() s | status/method | certified gap "
        "| largest phases | peak RSS MiB (before clear) | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        dims = f"{r['orders']:,} x {r['slots']}"
        load = f"{r['load_before']:.1f}-{r['load_after']:.1f}"
        if "error" in r:
            lines.append(f"| {r['kind']} | {dims} | - | - | {r['error']} | - | - | - | {load} |")
            continue
        top = sorted(r["phases"].items(), key=lambda kv: -kv[1])[:2]
        split = ", ".join(
            f"{PHASE_LABELS[k]} {v / r['total_s']:.0%}" for k, v in top if r["total_s"]
        )
        mark = " **(limit)**" if r["hit_limit"] else ""
        lines.append(
            f"| {r['kind']} | {dims} | {r['market']['profitable_columns']:,} "
            f"| {r['total_s']:.2f}{mark} | {r['status']}/{r['method']} | {100 * r['gap']:.3f}% "
            f"| {split} | {r['rss_mib']['peak']:,.0f} ({r['rss_mib']['before_clear']:,.0f}) "
            f"| {load} |"
        )
    return "\n".join(lines)


def _ints(text: str, field: str) -> list[int]:
    try:
        return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--{field}: give comma-separated integers, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"from {', '.join(KINDS)}")
    parser.add_argument("--orders", default=",".join(map(str, ORDERS)))
    parser.add_argument("--slots", default=",".join(map(str, SLOTS)))
    parser.add_argument("--max-orders", type=int, help="skip points with more orders")
    parser.add_argument(
        "--max-orders-per-kind",
        default="",
        help="e.g. gang=10000,green=10000: a tighter cap for some kinds",
    )
    parser.add_argument("--max-slot-orders", type=int, help="skip points above orders x slots")
    parser.add_argument("--pools", type=int, default=20)
    parser.add_argument("--gang-share", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--time-limit", type=float, default=60.0, help="ClearingOptions.time_limit_s per point"
    )
    parser.add_argument("--figures-dir", type=Path, default=BENCH / "results")
    parser.add_argument("--plot-only", action="store_true", help="redraw from scaling.jsonl")
    parser.add_argument("--point", help=argparse.SUPPRESS)  # child mode: kind,orders,slots
    args = parser.parse_args(argv)

    if args.point:
        kind, orders, slots = args.point.split(",")
        record = run_point(
            kind, int(orders), int(slots), args.pools, args.gang_share, args.seed, args.time_limit
        )
        print(json.dumps(record))
        return 0

    if not args.plot_only:
        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            parser.error(f"--kinds: unknown {unknown}; use {', '.join(KINDS)}")
        caps: dict[str, int] = {}
        for item in filter(None, args.max_orders_per_kind.split(",")):
            kind, _, cap = item.partition("=")
            if kind not in KINDS or not cap.isdigit():
                parser.error(f"--max-orders-per-kind: use kind=orders with a kind from {KINDS}")
            caps[kind] = int(cap)
        points = [
            (kind, n, s)
            for kind in kinds
            for s in _ints(args.slots, "slots")
            for n in _ints(args.orders, "orders")
            if (args.max_orders is None or n <= args.max_orders)
            and n <= caps.get(kind, n)
            and (args.max_slot_orders is None or n * s <= args.max_slot_orders)
        ]
        if not points:
            parser.error("no grid point left after --max-orders / --max-slot-orders")
        run_grid(args, points)
    records = latest(RESULTS)
    if not records:
        parser.error(f"no records in {RESULTS}; run without --plot-only first")
    print(markdown_table(records))
    for path in plot(records, args.figures_dir):
        print(f"wrote {path}")
    failed = [r for r in records if "error" in r]
    hit = [r for r in records if r["hit_limit"]]
    print(
        f"{len(records)} points in the charts, {len(hit)} at their limit, {len(failed)} failed;"
        f" records in {RESULTS.relative_to(BENCH.parent)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
