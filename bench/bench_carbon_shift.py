"""Does the carbon price move work to the cleaner hours of one region?

Simulates the packaged one-region scenario (``one_region.yaml``: Shaoguan, 16 H100, flexible
24-hour batch jobs, the 1-fen time preference of hubs.yaml) at 0 and 100 yuan per tonne of
CO2, and, for contrast, at 100 yuan/t with the carbon adder rounded to whole fen (half up) as
reserves carried it before the clearing priced in milli-fen. Prints GPU-hours shifted and
location-based CO2, writes ``docs/figures/carbon-shift.png`` and ``carbon-shift.json``.

    .venv/bin/python bench/bench_carbon_shift.py
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from suangu.core.energy import hooks
from suangu.core.types import Market
from suangu.sim.carbon_shift import CarbonShift, carbon_shift
from suangu.sim.scenario import load_orders, load_scenario

OUT = Path(__file__).resolve().parent.parent / "docs" / "figures"


def whole_fen(market: Market, carbon: Any, yuan_per_t: float) -> Market:
    """The carbon adder as whole-fen reserves carried it (half up), no milli-fen."""
    offers = []
    for offer in market.offers:
        reserve = list(offer.reserve_fen)
        for k in range(len(reserve)):
            slot = offer.start_slot + k
            if market.first_slot <= slot < market.end_slot:
                g = float(carbon[offer.pool_id][slot - market.first_slot])
                reserve[k] += math.floor(g * yuan_per_t * 100 / 1e6 + 0.5)
        offers.append(dataclasses.replace(offer, reserve_fen=tuple(reserve)))
    return dataclasses.replace(market, offers=tuple(offers))


def main() -> None:
    data = resources.files("suangu.data.scenarios")
    with resources.as_file(data / "one_region.yaml") as sc_path:
        scenario = load_scenario(sc_path)
    with resources.as_file(data / "one_region_orders.csv") as orders_path:
        stream = load_orders(orders_path, scenario)
    fine = carbon_shift(scenario, stream, 0.0, 100.0)
    real = hooks.apply_carbon_price
    hooks.apply_carbon_price = whole_fen  # type: ignore[assignment]
    try:
        rounded = carbon_shift(scenario, stream, 0.0, 100.0)
    finally:
        hooks.apply_carbon_price = real  # type: ignore[assignment]
    rows = {"milli_fen": fine.to_dict(), "whole_fen": rounded.to_dict()}
    for name, r in (("milli-fen (the clearing)", fine), ("whole fen (before)", rounded)):
        print(
            f"{name:26s} GPU-h {sum(r.high.gpu_hours):6.0f}  shifted {r.gpu_hours_shifted:6.0f}"
            f"  CO2 {r.low.location_g / 1000:6.1f} kg -> {r.high.location_g / 1000:6.1f} kg"
            f"  saved {r.co2_saved_g / 1000:5.1f} kg ({r.co2_saved_g / r.low.location_g:.1%})"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "carbon-shift.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    plot(fine, rounded, OUT / "carbon-shift.png")
    print(f"wrote {OUT / 'carbon-shift.png'}", file=sys.stderr)


def plot(fine: CarbonShift, rounded: CarbonShift, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (carbon,) = fine.carbon_g.values()
    n = max(len(fine.low.gpu_hours), len(rounded.high.gpu_hours))

    def padded(xs: tuple[float, ...]) -> list[float]:
        return list(xs) + [0.0] * (n - len(xs))

    hours = range(n)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.step(hours, padded(tuple(carbon[:n])), where="post", color="tab:gray")
    top.set_ylabel("gCO2 per H100 GPU-hour\n(location-based)")
    fen = top.secondary_yaxis("right", functions=(lambda g: g / 100, lambda f: f * 100))
    fen.set_ylabel("fen at 100 yuan/t")
    top.set_title("Shaoguan, 2-5 June 2025 (energy model, seed 0): carbon of a GPU-hour")
    bottom.step(hours, padded(fine.low.gpu_hours), where="post", label="0 yuan/t", color="tab:red")
    bottom.step(
        hours, padded(rounded.high.gpu_hours), where="post", label="100 yuan/t, whole fen", ls=":"
    )
    bottom.step(
        hours,
        padded(fine.high.gpu_hours),
        where="post",
        label="100 yuan/t, milli-fen",
        color="tab:green",
    )
    bottom.set_ylabel("GPU-hours metered")
    bottom.set_xlabel("hour of the simulation (UTC; local noon = hour 4 + 24 k)")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
