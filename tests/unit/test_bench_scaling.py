"""The scaling benchmark's own logic: grid points, the split of the clearing's time, the
selection of the latest record per point and the charts (no timings are asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import bench_scaling  # noqa: E402


def test_market_args_per_kind() -> None:
    assert bench_scaling.market_args("batch", 1000, 24, 20, 0.3) == {
        "n_orders": 1000,
        "n_pools": 20,
        "n_slots": 24,
    }
    assert bench_scaling.market_args("green", 1000, 24, 20, 0.3)["green"] is True
    assert bench_scaling.market_args("gang", 1000, 24, 20, 0.3)["gang_share"] == 0.3


def test_phases_split_the_wall_time() -> None:
    timings = {"build_s": 1.0, "greedy_s": 0.5, "dual_s": 2.0, "solve_s": 3.0, "price_s": 0.25}
    out = bench_scaling.phases(timings, total_s=5.0)
    assert out["solve_rest_s"] == pytest.approx(0.5)  # solve_s less greedy and dual
    assert out["mip_s"] == 0.0
    assert out["other_s"] == pytest.approx(0.75)
    assert sum(out.values()) == pytest.approx(5.0)


def test_run_point_clears_a_small_gang_market() -> None:
    record = bench_scaling.run_point("gang", 150, 6, 3, 0.3, seed=2, limit=20.0)
    assert record["market"]["orders"] == 150
    assert record["market"]["gang_orders"] > 0
    assert record["status"] in {"optimal", "feasible", "time_limit", "heuristic"}
    assert record["timings"]["build_s"] >= 0.0
    assert record["rss_mib"]["peak"] >= record["rss_mib"]["before_clear"] > 0
    assert sum(record["phases"].values()) == pytest.approx(record["total_s"])
    json.dumps(record)


def _record(kind: str, orders: int, slots: int, total: float, **extra: Any) -> dict[str, Any]:
    phases = dict.fromkeys([*bench_scaling.PHASES, "other_s"], 0.0)
    phases["solve_rest_s"] = total
    return {
        "kind": kind,
        "orders": orders,
        "slots": slots,
        "pools": 20,
        "gang_share": 0.3 if kind == "gang" else 0.0,
        "seed": 1,
        "time_limit_s": 30.0,
        "cpus": 2,
        "load_before": 1.0,
        "load_after": 2.0,
        "at": "2026-12-06T02:00:00+00:00",
        "status": "optimal",
        "method": "network",
        "total_s": total,
        "phases": phases,
        "hit_limit": False,
        "rss_mib": {"before_clear": 90.0, "peak": 100.0 + orders / 100},
        **extra,
    }


def test_latest_keeps_the_last_record_of_each_point(tmp_path: Path) -> None:
    path = tmp_path / "scaling.jsonl"
    rows = [
        _record("gang", 1000, 24, 9.0),
        _record("batch", 5000, 24, 2.0),
        _record("batch", 1000, 24, 1.0),
        _record("gang", 1000, 24, 3.0),
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = bench_scaling.latest(path)
    assert [(r["kind"], r["orders"], r["total_s"]) for r in got] == [
        ("batch", 1000, 1.0),
        ("batch", 5000, 2.0),
        ("gang", 1000, 3.0),
    ]
    assert bench_scaling.latest(tmp_path / "missing.jsonl") == []


def test_plot_writes_the_three_charts(tmp_path: Path) -> None:
    records = [
        _record("batch", 1000, 24, 0.1),
        _record("batch", 5000, 24, 0.8),
        _record("gang", 1000, 24, 30.5, hit_limit=True, status="time_limit", method="mip"),
        _record("gang", 5000, 24, 0.0, error="killed after 150 s"),
    ]
    written = bench_scaling.plot(records, tmp_path)
    assert sorted(p.name for p in written) == [
        "scaling-memory.png",
        "scaling-phases.png",
        "scaling-time.png",
    ]
    assert all(p.stat().st_size > 1000 for p in written)
