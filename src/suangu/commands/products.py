"""``suangu bench --products``: what the market products change against the hourly market
alone (:mod:`suangu.sim.products_bench`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from suangu.core.errors import SuanguError


def bench_products(
    scenario: Path | None,
    orders: Path | None,
    trace: Path | None,
    days: int,
    load: float,
    hours: int | None,
    seed: int,
    share: float,
    out: Path,
) -> None:
    """Run the products bench, print its table and save ``products.json`` under ``out``."""
    from suangu.sim.bench import bench_inputs
    from suangu.sim.products_bench import products_table, run_products_bench, write_json

    err_console = Console(stderr=True)
    try:
        sc, stream, _ = bench_inputs(
            scenario, orders, trace, days=days, load=load, hours=hours, seed=seed
        )

        def progress(name: str, done: int, total: int) -> None:
            if done == total:
                err_console.print(f"{name}: {total} hours simulated")

        result = run_products_bench(sc, stream, share=share, seed=seed, progress=progress)
    except SuanguError as err:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(err))}")
        raise typer.Exit(2) from None
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    console.print(products_table(result))
    path = write_json(result, out / "products.json")
    Console().print(f"wrote {path}")
    if not (result.baseline.ledger_balanced and result.products.ledger_balanced):
        raise typer.Exit(1)
