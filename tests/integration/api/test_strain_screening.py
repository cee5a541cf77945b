"""The strain-screening example (examples/strain-screening/), end to end, on SQLite and
PostgreSQL: the buyer uploads the packaged candidates with ``suangu data put``, submits the
order that ``make_order.py`` writes with ``suangu order submit``, the operator clears, the
provider's agent runs ``screen.py`` under bubblewrap with the host's Debian numpy, and the
buyer downloads the scores with ``suangu data get``: byte for byte what the scoring function
gives when called directly here."""

from __future__ import annotations

import importlib.util
import itertools
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from suangu.agent.sandbox import bwrap_available
from suangu.cli import app

from .conftest import EPOCH, Api, build_world
from .test_sandbox import agent_for, run_lease

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "strain-screening"
PYTHON = "/usr/bin/python3"


def _sandbox_numpy() -> str | None:
    """Why the sandbox's python3 (the host's /usr) cannot import numpy, or None."""
    try:
        out = subprocess.run(
            [PYTHON, "-c", "import numpy"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as err:
        return f"{PYTHON} does not run: {err}"
    if out.returncode != 0:
        return f"{PYTHON} has no numpy (apt-get install -y python3-numpy)"
    return None


WHY = bwrap_available()
pytestmark = [
    pytest.mark.skipif(WHY is not None, reason=f"bubblewrap cannot confine payloads here: {WHY}"),
    pytest.mark.skipif(
        (NO_NUMPY := _sandbox_numpy()) is not None,
        reason=f"the sandbox's python3 cannot run the example: {NO_NUMPY}",
    ),
]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"strain_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def cli(api: Api, who: str, *args: str) -> str:
    out = CliRunner(env={"SUANGU_URL": None, "SUANGU_KEY": None}).invoke(
        app,
        [*args, "--url", "http://x", "--key", api.tokens[who]],
        obj={"transport": api.client._transport},
    )
    assert out.exit_code == 0, out.output
    return str(out.output)


def test_the_weights_follow_the_documented_rule() -> None:
    spec = json.loads((EXAMPLE / "weights.json").read_text())
    assert (spec["k"], spec["alphabet"]) == (3, "ACGT")
    for kmer in map("".join, itertools.product("ACGT", repeat=3)):
        rule = 100 * sum(c in "GC" for c in kmer)
        rule += -600 if kmer in ("TAA", "TAG", "TGA") else 400 if kmer == "ATG" else 0
        assert spec["weights"][kmer] == rule, kmer


def test_bad_candidates_name_the_candidate() -> None:
    screen = load("screen")
    weights = (EXAMPLE / "weights.json").read_text()
    with pytest.raises(screen.BadInput, match="candidate 'x2': needs at least 3 letters"):
        screen.run("id,sequence\nx1,ACGTAC\nx2,ACGNNT\n", weights)
    with pytest.raises(screen.BadInput, match="the id 'x1' is empty or repeated"):
        screen.run("id,sequence\nx1,ACGTAC\nx1,ACGT\n", weights)


def screen_through_exchange(api: Api, tmp_path: Path, candidates: Path, oid: str) -> str:
    """Upload the example's files (the candidates from ``candidates``), submit its order,
    clear, run the lease with prov-a's sandboxed agent; the lease's id."""
    build_world(api)
    # The world's own lease at prov-a has no workload: out of the way.
    for x in api.call("GET", "/leases", "op", params={"order_id": "ord-buy-a"}).json()["items"]:
        assert api.call("POST", f"/leases/{x['id']}/fail", "prov-a").status_code == 200
    puts = [
        json.loads(cli(api, "buy-a", "data", "put", str(path), "--json"))
        for path in (EXAMPLE / "screen.py", EXAMPLE / "weights.json", candidates)
    ]
    assert puts[2]["size"] == candidates.stat().st_size

    make_order = load("make_order")
    slot = api.clock.now() // 3600 - EPOCH // 3600
    spec: dict[str, Any] = make_order.order_spec(
        puts, order_id=oid, buyer="buy-a", deadline=slot + 3, limit_yuan=20,
        regions=("inner-mongolia",), home="inner-mongolia",
    )  # fmt: skip
    job = tmp_path / "order.yaml"
    job.write_text(make_order.to_yaml(spec))
    cli(api, "buy-a", "order", "submit", str(job))
    r = api.call("POST", "/clearings", "op", json={"id": f"clr-{oid}"})
    assert r.status_code == 201, r.text
    (lease,) = api.call("GET", "/leases", "op", params={"order_id": f"buy-a~{oid}"}).json()["items"]
    assert lease["provider_id"] == "prov-a"
    run_lease(api, agent_for(api, tmp_path / "runs"), lease["id"])
    return str(lease["id"])


def test_screen_the_packaged_candidates_through_the_exchange(api: Api, tmp_path: Path) -> None:
    candidates = EXAMPLE / "candidates.csv"
    lease_id = screen_through_exchange(api, tmp_path, candidates, "screen-40")
    report = api.call("GET", f"/leases/{lease_id}/report", "buy-a").json()
    assert report["outcome"] == "done" and report["exit_code"] == 0, report
    scores_id, top_id = report["outputs"]
    cli(api, "buy-a", "data", "get", scores_id, "-o", str(tmp_path / "scores.csv"))
    cli(api, "buy-a", "data", "get", top_id, "-o", str(tmp_path / "top.csv"))

    screen = load("screen")
    scores, top = screen.run(candidates.read_text(), (EXAMPLE / "weights.json").read_text())
    assert (tmp_path / "scores.csv").read_text() == scores
    assert (tmp_path / "top.csv").read_text() == top
    assert scores.count("\n") == 41 and top.count("\n") == 11
    assert top.splitlines()[1] == "strain-002,63,14000,229.508197,1"  # as the README shows
    logs = api.call("GET", "/orders/screen-40/logs", "buy-a").json()["items"]
    text = "".join(x["text"] for x in logs)
    assert text.startswith("scored 40 candidates with numpy "), text
    assert text.rstrip().endswith(top.splitlines()[1]), text
    assert api.call("GET", f"/leases/{lease_id}", "buy-a").json()["state"] == "settled"


def test_a_bad_candidate_fails_the_lease_naming_it(api: Api, tmp_path: Path) -> None:
    bad = tmp_path / "candidates.csv"
    bad.write_text("id,sequence\nok-1,ACGTACGTAC\nbad-2,ACGUACGT\n")
    lease_id = screen_through_exchange(api, tmp_path, bad, "screen-bad")
    report = api.call("GET", f"/leases/{lease_id}/report", "buy-a").json()
    assert (report["outcome"], report["exit_code"], report["outputs"]) == ("failed", 2, []), report
    why = "error: candidate 'bad-2': needs at least 3 letters, all of A, C, G, T"
    assert report["reason"].endswith(f"its output ends: {why}"), report["reason"]
    logs = api.call("GET", "/orders/screen-bad/logs", "buy-a").json()["items"]
    assert "".join(x["text"] for x in logs) == why + "\n"
    assert api.call("GET", f"/leases/{lease_id}", "buy-a").json()["state"] == "settled"
