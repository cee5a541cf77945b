"""The client commands (suangu order/offer/clear/ledger) against a real server: the app on
uvicorn in a thread on a free port, on the small world of conftest; plus an injected httpx
transport for answers a Suangu server never gives."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from suangu.cli import app
from suangu.client import ClientError, SuanguClient, problem_line

from .conftest import NOW_SLOT, Api, _database, build_world, make_api

runner = CliRunner(env={"COLUMNS": "200", "SUANGU_URL": None, "SUANGU_KEY": None})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, api: Api, url: str) -> None:
        self.api = api
        self.url = url

    def run(self, who: str | None, *args: str, **kw: Any) -> Any:
        key = [] if who is None else ["--key", self.api.tokens[who]]
        return runner.invoke(app, [*args, "--url", self.url, *key], **kw)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    for backend, db in _database("sqlite", tmp_path_factory.mktemp("cli")):
        api = make_api(backend, db)
        build_world(api)
        port = _free_port()
        config = uvicorn.Config(
            api.client.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        try:
            yield Served(api, f"http://127.0.0.1:{port}")
        finally:
            server.should_exit = True
            thread.join(10)


def one_line_error(result: Any, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in message, message
    return str(message)


JOB = f"""\
orders:
  - id: cli-job-1
    buyer: buy-a
    kind: batch
    gpus: 1
    gpu_hours: 2
    release: {NOW_SLOT}
    deadline: {NOW_SLOT + 4}
    limit: 15.00
    regions: [inner-mongolia]
  - id: cli-job-2
    buyer: buy-a
    kind: batch
    gpus: 1
    gpu_hours: 1
    release: {NOW_SLOT}
    deadline: {NOW_SLOT + 4}
    limit: 0.01
"""


def test_a_buyer_submits_lists_shows_and_cancels(served: Served, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(JOB)
    r = served.run("buy-a", "order", "submit", str(job))
    assert r.exit_code == 0, r.output
    assert "cli-job-1" in r.stdout and "cli-job-2" in r.stdout and "15.00" in r.stdout
    r = served.run("buy-a", "order", "list", "--json")
    assert r.exit_code == 0, r.output
    mine = {o["id"]: o["status"] for o in json.loads(r.stdout)}
    assert mine["buy-a~cli-job-1"] == "open" and "ord-buy-b" not in mine
    r = served.run("buy-a", "order", "list", "--status", "open")
    assert r.exit_code == 0 and "cli-job-2" in r.stdout and "ord-buy-a" not in r.stdout
    r = served.run("buy-a", "order", "show", "ord-buy-a")
    assert r.exit_code == 0, r.output
    assert "Leases" in r.stdout and "site-a-h100" in r.stdout
    r = served.run("buy-a", "order", "cancel", "cli-job-2")
    assert r.exit_code == 0 and "cancelled" in r.stdout, r.output
    one_line_error(served.run("buy-a", "order", "cancel", "ord-buy-a"), "status")
    one_line_error(served.run("buy-a", "order", "show", "ord-buy-b"), "no order")


def test_a_provider_offers_and_an_operator_clears(served: Served, tmp_path: Path) -> None:
    spec = tmp_path / "offers.yaml"
    spec.write_text(
        "offers:\n"
        f"  - {{id: cli-offer-1, pool_id: site-a-h100, start_slot: {NOW_SLOT},"
        " gpus: [2, 2, 2], reserve_fen: [800]}\n"
    )
    r = served.run("prov-a", "offer", "submit", str(spec))
    assert r.exit_code == 0, r.output
    assert "cli-offer-1" in r.stdout and "8.00" in r.stdout
    r = served.run("prov-a", "offer", "list", "--json")
    assert {o["id"] for o in json.loads(r.stdout)} == {"offer-prov-a", "prov-a~cli-offer-1"}
    r = served.run("op", "clear", "--slots", "4", "--id", "cli-clear")
    assert r.exit_code == 0, r.output
    assert "clearing cli-clear" in r.stdout and "Prices" in r.stdout
    r = served.run("op", "clear", "--slots", "2", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_slots"] == 2
    one_line_error(served.run("op", "clear", "--id", "cli-clear"), "cli-clear", "exists")
    one_line_error(served.run("buy-a", "clear"), "not allowed")
    bad = tmp_path / "bad-offer.yaml"
    bad.write_text(f"id: cli-offer-2\npool_id: site-b-h100\nstart_slot: {NOW_SLOT}\n")
    one_line_error(served.run("prov-a", "offer", "submit", str(bad)), "bad-offer.yaml")


def test_balances_and_statements(served: Served) -> None:
    r = served.run("buy-a", "ledger", "balance")
    assert r.exit_code == 0, r.output
    assert "buyer:buy-a:CNY" in r.stdout and "100,000.00" in r.stdout
    assert "buy-b" not in r.stdout
    r = served.run("buy-a", "ledger", "statement", "buyer:buy-a:CNY", "--json")
    assert r.exit_code == 0, r.output
    codes = [t["code"] for t in json.loads(r.stdout)]
    assert codes[0] == "deposit" and "order_hold" in codes
    r = served.run("aud", "ledger", "statement", "buyer:buy-a:CNY")
    assert r.exit_code == 0 and "deposit" in r.stdout and " in " in r.stdout
    one_line_error(served.run("buy-a", "ledger", "statement", "buyer:buy-b:CNY"), "no account")


def test_a_bad_spec_is_one_line_naming_the_file(served: Served, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(JOB.replace("gpus: 1\n    gpu_hours: 1", "gpus: 0\n    gpu_hours: 1"))
    one_line_error(served.run("buy-a", "order", "submit", str(job)), "job.yaml", "orders[1].gpus")
    job.write_text("id: x\n  kind: : batch\n")
    one_line_error(served.run("buy-a", "order", "submit", str(job)), "job.yaml", "line")
    one_line_error(served.run("buy-a", "order", "submit", str(tmp_path / "none.yaml")), "none.yaml")
    bad = tmp_path / "offers.yaml"
    bad.write_text("offers: [1, 2]\n")
    one_line_error(served.run("prov-a", "offer", "submit", str(bad)), "offers[0]")


def test_a_bad_or_missing_key(served: Served) -> None:
    r = runner.invoke(app, ["order", "list", "--url", served.url, "--key", "sg_nope_nope"])
    one_line_error(r, "the API key was refused", "SUANGU_KEY")
    one_line_error(served.run(None, "order", "list"), "no API key", "SUANGU_KEY")


def test_url_and_key_from_the_environment(served: Served) -> None:
    env = {"SUANGU_URL": served.url, "SUANGU_KEY": served.api.tokens["op"]}
    r = runner.invoke(app, ["order", "list", "--json"], env=env)
    assert r.exit_code == 0, r.output
    assert {"ord-buy-a", "ord-buy-b"} <= {o["id"] for o in json.loads(r.stdout)}


def test_a_server_that_is_down() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    r = runner.invoke(app, ["order", "list", "--url", url, "--key", "sg_x"])
    one_line_error(r, f"the Suangu server at {url} is not reachable", "suangu serve")
    r = runner.invoke(app, ["ledger", "balance", "--url", "ftp://x", "--key", "sg_x"])
    one_line_error(r, "not a server URL")


def test_an_injected_transport_and_odd_answers() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/orders"):
            assert request.headers["authorization"] == "Bearer sg_k"
            return httpx.Response(200, json={"items": [], "next_cursor": None})
        if request.url.path.endswith("/offers"):
            return httpx.Response(502, text="<html>Bad gateway</html>")
        return httpx.Response(200, text="not json")

    transport = httpx.MockTransport(handler)
    args = ["--url", "http://suangu.test", "--key", "sg_k"]
    r = runner.invoke(app, ["order", "list", *args], obj={"transport": transport})
    assert r.exit_code == 0 and "Orders (0)" in r.stdout, r.output
    r = runner.invoke(app, ["offer", "list", *args], obj={"transport": transport})
    one_line_error(r, "answered 502", "Bad gateway")
    r = runner.invoke(app, ["ledger", "balance", *args], obj={"transport": transport})
    one_line_error(r, "without JSON")


def test_problem_lines() -> None:
    body = {"detail": "must be >= 1", "field": "body.orders[1].gpus", "fix": "ask for a GPU"}
    assert (
        problem_line(body, 422, "job.yaml")
        == "job.yaml: orders[1].gpus: must be >= 1 (ask for a GPU)"
    )
    assert problem_line({"detail": "bad", "field": "body"}, 400, "j.yaml") == "j.yaml: bad"
    assert problem_line({"title": "Conflict"}, 409) == "Conflict"
    with SuanguClient("http://x", None) as c, pytest.raises(ClientError, match="no API key"):
        c.get("/orders")


def test_carbon_statement_and_certificates(served: Served) -> None:
    r = served.run("buy-a", "carbon", "statement", "buy-a", "--from", "2026-01-01", "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    api = served.api.call("GET", "/buyers/buy-a/carbon-statement?from=2026-01-01", "buy-a").json()
    assert got == api and got["buyer_id"] == "buy-a"
    r = served.run("aud", "carbon", "statement", "buy-a", "--to", "2027-01-01")
    assert r.exit_code == 0, r.output
    assert "Carbon statement of buy-a" in r.stdout and "measured (NVML, Slurm)" in r.stdout
    assert "market-based" in r.stdout
    one_line_error(served.run("buy-a", "carbon", "statement", "buy-b"), "no buyer")
    one_line_error(
        served.run("buy-a", "carbon", "statement", "buy-a", "--from", "soon"), "query.from"
    )
    r = served.run("prov-a", "carbon", "certificates", "prov-a")
    assert r.exit_code == 0 and "Green certificates of prov-a" in r.stdout, r.output
