"""Energy-model benchmark: one year x the 10 packaged hub sites at hourly resolution.

    .venv/bin/python bench/bench_energy.py [--year 2024] [--repeat 5] [--seed 0]

Imports (numpy, pandas, pvlib, scipy) and the packaged data are loaded first and timed apart;
then ``simulate_sites`` runs over all sites ``--repeat`` times (a fresh seed each run, so
nothing is cached) and the best and median wall times are printed, with a per-stage split of
one site-year (solar with pvlib, wind, temperature/PUE, storage dispatch). Results are appended
as JSON lines to bench/results/energy.jsonl. The goal: under 1 s for a year x 10 sites.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "energy.jsonl"
GOAL_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--year", type=int, default=2024)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t0 = time.perf_counter()
    import numpy as np

    from suangu.core.energy._common import rng_for
    from suangu.core.energy.climate import pue, temperature
    from suangu.core.energy.model import simulate_site_year, simulate_sites
    from suangu.core.energy.solar import solar_output
    from suangu.core.energy.storage import dispatch
    from suangu.core.energy.wind import wind_output
    from suangu.sim.energy import load_energy_data

    data = load_energy_data()
    sites = list(data.sites.values())
    simulate_site_year(sites[0], args.year, args.seed)  # first pvlib call loads its lazy parts
    setup_s = time.perf_counter() - t0

    runs = []
    for k in range(args.repeat):
        t = time.perf_counter()
        out = simulate_sites(sites, args.year, args.seed + 1 + k)
        runs.append(time.perf_counter() - t)
    hours = next(iter(out.values())).hours

    p = data.site("horinger")
    y = args.year
    stages: dict[str, float] = {}
    t = time.perf_counter()
    solar = solar_output(p.lat, p.lon, p.altitude_m, y, 8, p.solar, rng_for(0, "b", y, "s"))
    stages["solar (pvlib clear sky + clearness)"] = time.perf_counter() - t
    t = time.perf_counter()
    wind = wind_output(p.wind, y, rng_for(0, "b", y, "w"))
    stages["wind"] = time.perf_counter() - t
    t = time.perf_counter()
    load = p.it_load_mw * pue(temperature(p.climate, y, rng_for(0, "b", y, "c")), p.pue_model)
    stages["temperature + PUE"] = time.perf_counter() - t
    t = time.perf_counter()
    dispatch(solar + wind, np.asarray(load), p.storage)
    stages["storage dispatch"] = time.perf_counter() - t

    best, median = min(runs), statistics.median(runs)
    print(f"energy model: {len(sites)} sites x {hours} hours ({y}), {args.repeat} runs")
    print(f"  setup (imports, data, first pvlib call): {setup_s:.2f} s (not counted)")
    print(f"  year x {len(sites)} sites: best {best:.3f} s, median {median:.3f} s "
          f"(goal < {GOAL_S:.0f} s: {'met' if median < GOAL_S else 'MISSED'})")  # fmt: skip
    print("  one site-year by stage (horinger):")
    for name, s in stages.items():
        print(f"    {name:<38} {s * 1000:7.1f} ms")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as f:
        record = {
            "bench": "energy",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "sites": len(sites),
            "hours": hours,
            "year": y,
            "setup_s": setup_s,
            "runs_s": runs,
            "best_s": best,
            "median_s": median,
            "stages_s": stages,
        }
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
