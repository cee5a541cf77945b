"""The operator's carbon price in the service, on SQLite and (when set) PostgreSQL: set
through the API (operator only, audited) or at start, shown publicly, kept across restarts,
and applied by every clearing in milli-fen, so that it moves work to the cleanest hour."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.integration.api.conftest import BACKENDS, EPOCH, NOW_SLOT, Api, _database, make_api
from tests.integration.test_demo_service import HORINGER, _bare, market, ok, order

from suangu.api.app import create_app
from suangu.api.market_energy import MarketEnergy
from suangu.api.settings import ApiSettings
from suangu.core.types import MILLI, Offer
from suangu.store.models import Role

PATH = "/market/carbon-price"


@pytest.fixture(params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    for backend, db in _database(request.param, tmp_path):
        yield make_api(backend, db)


def audit(api: Api) -> list[tuple[str | None, str, str, dict[str, Any]]]:
    items = ok(api.call("GET", "/audit", "aud", params={"limit": 500}))["items"]
    return [
        (e["member_id"], e["action"], e["object"], json.loads(e["detail"]))
        if isinstance(e["detail"], str)
        else (e["member_id"], e["action"], e["object"], e["detail"])
        for e in items
    ]


def test_the_operator_sets_it_everyone_reads_it_and_it_survives_a_restart(api: Api) -> None:
    for m, role in (("op", Role.OPERATOR), ("aud", Role.AUDITOR), ("team", Role.BUYER)):
        api.member(m, role)
    shown = ok(api.call("GET", PATH, None))  # public: no key
    assert shown == {"yuan_per_t": 0.0, "fen_per_t": 0, "updated_at": None}
    assert api.call("PUT", PATH, "team", json={"yuan_per_t": 100}).status_code == 403
    bad = api.call("PUT", PATH, "op", json={"yuan_per_t": 0.001})
    assert bad.status_code == 422 and bad.json()["field"] == "body.yuan_per_t"
    assert api.call("PUT", PATH, "op", json={"yuan_per_t": -1}).status_code == 422
    got = ok(api.call("PUT", PATH, "op", json={"yuan_per_t": 87.5}))
    assert got == {"yuan_per_t": 87.5, "fen_per_t": 8750, "updated_at": api.clock.now()}
    assert ok(api.call("GET", PATH, None))["fen_per_t"] == 8750
    (entry,) = [e for e in audit(api) if e[1] == "carbon_price.set"]
    assert entry[:3] == ("op", "carbon_price.set", "carbon_price")
    assert entry[3]["yuan_per_t"] == 87.5
    # A restarted app reads it from the database; one started with a price stores that one.
    again = TestClient(create_app(api.db, api.clock, ApiSettings(grid_epoch=EPOCH)))
    assert ok(again.get(f"/api/v1{PATH}"))["yuan_per_t"] == 87.5
    settings = ApiSettings(grid_epoch=EPOCH, carbon_price_yuan_per_t=100)
    started = TestClient(create_app(api.db, api.clock, settings))
    assert ok(started.get(f"/api/v1{PATH}"))["fen_per_t"] == 10_000
    system = [e for e in audit(api) if e[1] == "carbon_price.set" and e[0] is None]
    assert len(system) == 1 and system[0][3]["yuan_per_t"] == 100
    assert "Carbon price: 100 yuan per tonne" in started.get("/").text  # the dashboard


def test_a_price_set_through_the_api_raises_reserves_and_moves_work(api: Api) -> None:
    api.member("aud", Role.AUDITOR)
    pool = market(api, HORINGER, gpus=8, reserve=1000)
    horizon = range(NOW_SLOT, NOW_SLOT + 24)
    window = {"gpus": 1, "gpu_hours": 1, "deadline_slot": NOW_SLOT + 24, "limit_fen": 5000}
    ok(api.call("POST", "/orders", "team", json=order("before", **window)), 201)
    ok(api.call("POST", "/clearings", "op", json={"id": "c0", "n_slots": 24}), 201)
    ok(api.call("PUT", PATH, "op", json={"yuan_per_t": 100}), 200)
    ok(api.call("POST", "/orders", "team", json=order("after", **window)), 201)
    ok(api.call("POST", "/clearings", "op", json={"id": "c1", "n_slots": 24}), 201)
    # What the clearing saw: the reserve of each hour plus its carbon, in milli-fen.
    offer = Offer.over("f", "dc", pool, NOW_SLOT, NOW_SLOT + 24, 8, 1000)
    priced = MarketEnergy(carbon_price_yuan_per_t=100)(_bare(horizon, (offer,)))
    fine = priced.reserve_mfen["f"]
    assert max(fine) - min(fine) >= MILLI  # a carbon signal of at least a fen between hours
    c0 = ok(api.call("GET", "/clearings/c0", "op"))
    c1 = ok(api.call("GET", "/clearings/c1", "op"))
    (lease,) = c1["allocations"]
    assert fine[lease["slot"] - NOW_SLOT] == min(fine)  # the cleanest hour of the day
    assert lease["price_fen"] == min(fine) // MILLI  # its reserve, rounded down
    # Unsold pool-slots are priced at their reserve: 1000 fen before, + carbon after.
    sold = {a["slot"] for a in c1["allocations"]} | {a["slot"] for a in c0["allocations"]}
    for p in c1["prices"]:
        if p["slot"] not in sold:
            assert p["price_fen"] == priced.offers[0].reserve_fen[p["slot"] - NOW_SLOT]
    assert {p["price_fen"] for p in c0["prices"] if p["slot"] not in sold} == {1000}


def test_serve_stores_the_carbon_price_and_passes_protection_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import suangu.api.serving
    from suangu.api.app import CLEARING_LOOP_ENV, PROTECT_FIRM_ENV, app_from_env
    from suangu.cli import app as cli
    from suangu.store.db import open_database

    served: list[tuple[Any, ...]] = []
    monkeypatch.setattr(suangu.api.serving, "serve", lambda *a, **kw: served.append(a))
    for name in ("SUANGU_DATABASE_URL", CLEARING_LOOP_ENV, PROTECT_FIRM_ENV):
        monkeypatch.setenv(name, "0")  # serve sets them: restored after the test
    url = f"sqlite:///{tmp_path / 'suangu.db'}"
    args = ["serve", "--database-url", url, "--carbon-price", "100", "--protect-firm-hours", "24"]
    args += ["--no-clearing-loop"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    assert served and os.environ[PROTECT_FIRM_ENV] == "24"
    app = app_from_env()  # what each worker builds
    assert app.state.ctx.settings.protect_firm_hours == 24
    with TestClient(app) as client:
        assert ok(client.get(f"/api/v1{PATH}"))["yuan_per_t"] == 100
    open_database(url).dispose()
    bad = CliRunner().invoke(cli, ["serve", "--database-url", url, "--carbon-price", "0.001"])
    assert bad.exit_code != 0 and "carbon_price" in bad.output
