"""`suangu bench --products` on a small packaged slice: the hourly market alone against the
same orders with the interruptible tier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suangu.cli import app
from suangu.sim.bench import bench_inputs
from suangu.sim.products_bench import ProductsResult, interruptible_stream, run_products_bench

runner = CliRunner()


@pytest.fixture(scope="module")
def products() -> ProductsResult:
    scenario, stream, _ = bench_inputs(days=1, hours=12, load=1.2)
    return run_products_bench(scenario, stream, share=0.3, seed=0)


def test_both_markets_balance_and_count_the_tier(products: ProductsResult) -> None:
    base, prod = products.reports
    assert base.ledger_balanced and prod.ledger_balanced, prod.ledger_message
    assert base.clearings_failed == prod.clearings_failed == 0
    assert base.preemptions == 0 and base.interruptible_orders == 0
    assert prod.interruptible_orders > 0
    # The tracked orders are the same in both runs; the tier's hours are part of the total.
    assert 0 < prod.interruptible_gpu_hours <= prod.gpu_hours_traded
    assert 0 < base.interruptible_gpu_hours <= base.gpu_hours_traded
    # Preempted GPU-hours are never metered: the buyers' spend is the metered use only.
    assert prod.preempted_gpu_hours >= prod.preemptions > 0
    assert prod.orders_preempted <= prod.interruptible_orders
    # Interruptible GPU-hours cost less than the same orders paid in the hourly market alone.
    assert products.products.interruptible_avg_price_fen < (
        products.baseline.interruptible_avg_price_fen
    )
    assert products.saved_fen > 0


def test_only_orders_that_can_wait_go_interruptible() -> None:
    _, stream, _ = bench_inputs(days=1, hours=12, load=1.2)
    tiered, chosen = interruptible_stream(stream, 0.5, seed=1)
    assert chosen and not chosen & stream.firm
    for s in tiered.orders:
        assert s.order.interruptible is (s.order.id in chosen)
        if s.order.interruptible:
            assert s.order.kind != "gang"


def test_cli_prints_and_saves(tmp_path: Path) -> None:
    r = runner.invoke(
        app,
        [
            "bench",
            "--products",
            "--days",
            "1",
            "--hours",
            "6",
            "--load",
            "1.2",
            "--out",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "with products" in r.output and "preemptions" in r.output
    data = json.loads((tmp_path / "products.json").read_text(encoding="utf-8"))
    assert data["with_products"]["ledger_balanced"] is True
    assert set(data) >= {"hourly_only", "with_products", "interruptible_saved_fen"}
