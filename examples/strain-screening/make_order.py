"""Write the screening order (a job spec for ``suangu order submit``) for the uploaded files.

    for f in screen.py weights.json candidates.csv; do
        suangu data put $f --json > put-$f.json; done
    python make_order.py put-*.json --deadline 2026-12-08T00:00:00Z > order.yaml

The order is a batch job of one GPU-hour whose workload stages the three data objects into
the run's work directory (``screen.py``, ``weights.json``, ``inputs/candidates.csv``), runs
``python3 screen.py``, and uploads ``out/scores.csv`` and ``out/top.csv`` as the buyer's data
objects. Each input's id, sha256 and size come from what ``suangu data put --json``
answered, so the provider's agent checks that it stages exactly the bytes uploaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

#: Where each uploaded file (by the name ``data put`` gave it) is staged in the work directory.
STAGED = {
    "screen.py": "screen.py",
    "weights.json": "weights.json",
    "candidates.csv": "inputs/candidates.csv",
}
COMMAND = ["python3", "screen.py", "inputs/candidates.csv", "weights.json", "out"]
OUTPUTS = ["out/scores.csv", "out/top.csv"]


def order_spec(
    puts: list[dict[str, Any]],
    *,
    order_id: str = "strain-screen-001",
    buyer: str = "lab",
    deadline: str | int = "2026-12-08T00:00:00Z",
    limit_yuan: float = 12.5,
    regions: tuple[str, ...] = ("inner-mongolia",),
    home: str = "inner-mongolia",
) -> dict[str, Any]:
    """The job spec as a mapping; ``puts`` are what ``suangu data put --json`` answered for
    screen.py, weights.json and candidates.csv (in any order)."""
    by_name = {Path(p["name"]).name: p for p in puts}
    missing = sorted(set(STAGED) - set(by_name))
    if missing:
        raise ValueError(f"no upload of {', '.join(missing)}: `suangu data put` it first")
    spec: dict[str, Any] = {
        "id": order_id,
        "buyer": buyer,
        "kind": "batch",
        "gpus": 1,
        "gpu_hours": 1,
        "deadline": deadline,
        "limit": limit_yuan,
        "regions": list(regions),
        # Where the inputs are: their size (whole GB, rounded up) is priced for moving
        # them from there to where the job runs.
        "home": home,
    }
    spec["workload"] = {
        "runtime": {"kind": "process", "command": COMMAND},
        "inputs": [
            {
                "object": by_name[name]["id"],
                "sha256": by_name[name]["sha256"],
                "size": by_name[name]["size"],
                "path": path,
            }
            for name, path in STAGED.items()
        ],
        "outputs": OUTPUTS,
        "checkpoint": False,
    }
    return spec


def to_yaml(spec: dict[str, Any]) -> str:
    """The job spec as YAML."""
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=100)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "puts", type=Path, nargs="+", help="what `suangu data put FILE --json` wrote, per file"
    )
    p.add_argument("--id", default="strain-screen-001", help="the order's id")
    p.add_argument("--buyer", default="lab", help="your member id")
    p.add_argument("--deadline", default="2026-12-08T00:00:00Z", help="ISO date-time")
    p.add_argument("--limit", type=float, default=12.5, help="yuan per GPU-hour at most")
    p.add_argument("--region", action="append", help="allowed regions (default inner-mongolia)")
    p.add_argument(
        "--home", default="inner-mongolia", help="where the data is (a region): transfer pricing"
    )
    a = p.parse_args(argv)
    puts = [json.loads(f.read_text(encoding="utf-8")) for f in a.puts]
    try:
        spec = order_spec(
            puts,
            order_id=a.id,
            buyer=a.buyer,
            deadline=a.deadline,
            limit_yuan=a.limit,
            regions=tuple(a.region or ["inner-mongolia"]),
            home=a.home,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(to_yaml(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
