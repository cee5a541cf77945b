"""The products through the CLI against a real server: an interruptible order from YAML,
and a resale offered, listed and withdrawn."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import NOW_SLOT
from .test_cli_client import Served, one_line_error, served

__all__ = ["served"]  # the module's server fixture


def test_an_interruptible_order_from_yaml(served: Served, tmp_path: Path) -> None:
    job = tmp_path / "spot.yaml"
    job.write_text(
        "orders:\n"
        "  - {id: cli-spot, buyer: buy-a, kind: batch, gpus: 1, gpu_hours: 2,"
        f" release: {NOW_SLOT}, deadline: {NOW_SLOT + 4}, limit: 9.00, interruptible: true}}\n"
    )
    r = served.run("buy-a", "order", "submit", str(job))
    assert r.exit_code == 0, r.output
    r = served.run("buy-a", "order", "list", "--json")
    mine = {o["id"]: o for o in json.loads(r.stdout)}
    assert mine["buy-a~cli-spot"]["interruptible"] is True
    assert mine["ord-buy-a"]["interruptible"] is False  # made in the store: a plain id
    gang = tmp_path / "gang.yaml"
    gang.write_text(
        "orders:\n"
        "  - {id: cli-gang, buyer: buy-a, kind: gang, gpus: 1, duration: 1,"
        f" release: {NOW_SLOT}, deadline: {NOW_SLOT + 4}, limit: 9.00, interruptible: true}}\n"
    )
    one_line_error(served.run("buy-a", "order", "submit", str(gang)), "interruptible")


def test_a_buyer_offers_lists_and_withdraws_a_resale(served: Served) -> None:
    leases = served.api.call("GET", "/leases?order_id=ord-buy-a", "buy-a").json()["items"]
    later = [x for x in leases if x["slot"] > NOW_SLOT]
    assert later, leases
    lease = later[0]["id"]
    r = served.run(
        "buy-a", "resale", "offer", lease, "--reserve", "12.5", "--id", "cli-rs", "--json"
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out[0]["reserve_fen"] == 1250 and out[0]["status"] == "open"
    r = served.run("buy-a", "resale", "list")
    assert r.exit_code == 0 and "cli-rs" in r.stdout and "12.50" in r.stdout, r.output
    r = served.run("buy-b", "resale", "list", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == [], r.output
    one_line_error(served.run("buy-b", "resale", "offer", lease, "--reserve", "1"), "body.lease_id")
    r = served.run("buy-a", "resale", "withdraw", "cli-rs", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["status"] == "withdrawn", r.output
