"""`suangu bench` on a small packaged slice: the ten-hub scenario, 12 hours of trace orders."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suangu.cli import app
from suangu.sim.bench import BenchResult, bench_inputs, run_bench, write_chart, write_csv
from suangu.sim.policies import POLICIES, Policy
from suangu.sim.trace import HOME_WEIGHTS, load_hub_scenario

runner = CliRunner()


@pytest.fixture(scope="module")
def bench() -> BenchResult:
    scenario, stream, policies = bench_inputs(days=1, hours=12, load=0.5)
    assert policies == POLICIES
    return run_bench(scenario, stream)


def test_every_policy_runs_and_balances(bench: BenchResult) -> None:
    assert [r.policy for r in bench.rows] == [p.value for p in POLICIES]
    for row, report in zip(bench.rows, bench.reports, strict=True):
        assert row.ledger_balanced, report.ledger_message
        assert report.clearings_failed == 0
        assert row.orders == bench.rows[0].orders > 0
        assert 0 < row.fill_rate <= 1
        assert 0 <= row.green_share <= 1 and row.co2_location_t > 0
        assert row.buyer_cost_fen == report.buyer_spend_fen + report.transfer_charged_fen
        assert row.welfare_fen == report.value_fen - report.listed_reserve_fen - (
            report.transfer_fen
        )
        assert row.firm_missed <= row.firm_orders
        if row.policy != Policy.SUANGU:  # pay-as-offer at listed prices
            assert report.paid_fen == report.listed_reserve_fen
        # Data transfer charges are held at clearing and posted at settlement, in full.
        assert report.transfer_posted_fen == report.transfer_charged_fen
        if row.policy in (Policy.FIFO_HOME, Policy.CARBON_SHIFT):  # never leave home
            assert report.transfer_gb == 0
            regions = {s.id: s.region for s in load_hub_scenario().sites}
            assert {regions[v.site_id] for v in report.sites} <= set(HOME_WEIGHTS)


def test_some_data_moves_and_is_billed(bench: BenchResult) -> None:
    suangu = bench.reports[[r.policy for r in bench.rows].index(Policy.SUANGU)]
    assert suangu.transfer_gb > 0 and suangu.transfer_posted_fen > 0


def test_suangu_has_the_highest_welfare(bench: BenchResult) -> None:
    best = bench.row(Policy.SUANGU).welfare_fen
    assert all(best >= r.welfare_fen for r in bench.rows)


def test_csv_and_chart(bench: BenchResult, tmp_path: Path) -> None:
    rows = list(csv.DictReader(write_csv(bench, tmp_path / "b.csv").open(encoding="utf-8")))
    assert [r["policy"] for r in rows] == [p.value for p in POLICIES]
    assert rows[0]["scenario"] == "hubs" and rows[0]["hours"] == "12"
    assert int(rows[3]["welfare_fen"]) == bench.row(Policy.SUANGU).welfare_fen
    png = write_chart(bench, tmp_path / "b.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_bench_command(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "bench",
            "--days",
            "1",
            "--hours",
            "4",
            "--load",
            "0.2",
            "--out",
            str(out),
            "--policy",
            "fifo-home",
            "--policy",
            "suangu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "fifo-home" in result.output and "suangu" in result.output
    assert "cheapest-now" not in result.output
    assert (out / "bench.csv").exists() and (out / "bench.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "lifo"], "unknown policy 'lifo'"),
        (["--trace", "absent.csv"], "absent.csv: file not found"),
        (["--orders", "o.csv", "--trace", "t.csv"], "either an order stream or a trace"),
    ],
)
def test_bench_errors_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", "--hours", "2", "--out", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
