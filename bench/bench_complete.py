"""What complete-or-nothing batch orders cost a clearing.

Generates a market (suangu.sim.generator, deterministic per seed), marks a share of its batch
orders complete-or-nothing (every k-th batch order by id), clears it with the engine and
prints, per share: the clearing's time, rounds, orders left out, welfare, and the GPU-hours
the plain clearing would have sold to those orders in part (the work wasted without the
rule). Run: ``.venv/bin/python bench/bench_complete.py [--orders 1000 --pools 10 --slots 24]``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from suangu.core.clearing import clear
from suangu.core.clearing.checks import check_clearing
from suangu.core.clearing.complete import partly_served
from suangu.core.types import Market, OrderKind
from suangu.sim.generator import generate_market


def _mark(market: Market, share: float) -> Market:
    if share <= 0:
        return market
    step = max(1, round(1 / share))
    batch = sorted(o.id for o in market.orders if o.kind is OrderKind.BATCH)
    chosen = set(batch[::step])
    return replace(
        market,
        orders=tuple(
            replace(o, complete_or_nothing=True) if o.id in chosen else o for o in market.orders
        ),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=1_000)
    ap.add_argument("--pools", type=int, default=10)
    ap.add_argument("--slots", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shares", default="0,0.1,0.3")
    args = ap.parse_args()
    base = generate_market(args.orders, args.pools, args.slots, args.seed)
    print("share  orders_con  clear_s  rounds  left_out  welfare_yuan  partial_gpu_h_without_rule")
    for share in (float(x) for x in args.shares.split(",")):
        market = _mark(base, share)
        t0 = time.perf_counter()
        result = clear(market)
        dt = time.perf_counter() - t0
        assert check_clearing(market, result) == [], "a rule broke"
        n_con = sum(o.complete_or_nothing for o in market.orders)
        rounds = (
            result.message.rsplit("(", 1)[-1].split()[0] if "rounds)" in result.message else "1"
        )
        left = result.message.split("left out, served only in part: ")[-1] if n_con else ""
        n_left = len(left.split(", ")) if "left out" in result.message else 0
        plain = clear(
            replace(
                market, orders=tuple(replace(o, complete_or_nothing=False) for o in market.orders)
            )
        )
        wasted = 0
        for _, _, oid in partly_served(market, plain.allocations):
            wasted += sum(a.gpus for a in plain.allocations if a.order_id == oid)
        print(
            f"{share:5.2f}  {n_con:10d}  {dt:7.2f}  {rounds:>6}  {n_left:8d}  "
            f"{result.welfare_fen / 100:12,.0f}  {wasted * market.grid.slot_hours:26,d}"
        )


if __name__ == "__main__":
    main()
