"""What the demo needs from the service, on SQLite and (when set) PostgreSQL: partly filled
orders cleared again by later clearings, the energy model in API clearings (green shares and
a carbon price), batched final meter readings, and the `suangu lease` commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.integration.api.conftest import (
    BACKENDS,
    EPOCH,
    NOW_SLOT,
    Api,
    _database,
    make_api,
)
from typer.testing import CliRunner

from suangu.api.app import create_app
from suangu.api.market_energy import MarketEnergy
from suangu.api.schemas import ReadingIn
from suangu.api.services import FinalReading, ensure_accounts, meter_final, settle_done_orders
from suangu.api.settings import ApiSettings
from suangu.cli import app as cli
from suangu.core import billing
from suangu.core.errors import ValidationError
from suangu.core.types import Market, Offer, Pool, Site
from suangu.store.db import Database
from suangu.store.errors import InvalidState, NotFound
from suangu.store.ledger import SqlLedger
from suangu.store.models import Role
from suangu.store.repositories import Capacity

HOUR = 3600
runner = CliRunner(env={"COLUMNS": "250", "SUANGU_URL": None, "SUANGU_KEY": None})


@pytest.fixture(params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    for backend, db in _database(request.param, tmp_path):
        yield make_api(backend, db)


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def market(api: Api, site: Site, gpus: int, reserve: int = 1000, money: int = 10**8) -> str:
    """An operator, a provider with one H100 pool at ``site`` offering ``gpus`` GPUs over 24
    slots from now, and a buyer with money; returns the pool id."""
    for member, role in (("op", Role.OPERATOR), ("dc", Role.PROVIDER), ("team", Role.BUYER)):
        if member not in api.tokens:
            api.member(member, role)
    pool = Pool(f"{site.id}-h100", site.id, "H100")
    with api.db.session_scope() as s:
        Capacity(s).add_site(site, "dc")
        Capacity(s).add_pool(pool)
        offer = Offer.over(f"f-{site.id}", "dc", pool.id, NOW_SLOT, NOW_SLOT + 24, gpus, reserve)
        Capacity(s).add_offer(offer, api.clock.now())
    body = {"id": f"d-{site.id}", "member_id": "team", "amount_fen": money}
    ok(api.call("POST", "/deposits", "op", json=body), 201)
    return pool.id


SITE_X = Site("site-x", "X", "Gansu", "gansu", 36.0, 104.0, 1.2, {"beijing": 10.0})
HORINGER = Site("horinger", "Horinger", "Inner Mongolia", "inner_mongolia", 40.5, 111.8, 1.18)


def order(order_id: str, **kw: Any) -> dict[str, Any]:
    body = {
        "id": order_id,
        "kind": "batch",
        "gpus": 4,
        "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 8,
        "limit_fen": 2000,
        "gpu_hours": 8,
    }
    return {**body, **kw}


def test_a_partly_filled_order_is_cleared_again(api: Api) -> None:
    pool = market(api, SITE_X, gpus=2)
    ok(api.call("POST", "/orders", "team", json=order("o1")), 201)
    ok(api.call("POST", "/clearings", "op", json={"id": "c1", "n_slots": 2}), 201)
    assert ok(api.call("GET", "/orders/o1", "team"))["status"] == "partially"
    first = ok(api.call("GET", "/leases?order_id=o1", "team"))["items"]
    assert sum(x["gpus"] for x in first) == 4 and {x["slot"] for x in first} == {
        NOW_SLOT,
        NOW_SLOT + 1,
    }
    # The next clearing takes the rest of its work, after the slots it already holds.
    ok(api.call("POST", "/clearings", "op", json={"id": "c2", "n_slots": 6}), 201)
    assert ok(api.call("GET", "/orders/o1", "team"))["status"] == "cleared"
    leases = ok(api.call("GET", "/leases?order_id=o1", "team"))["items"]
    second = [x for x in leases if x["clearing_id"] == "c2"]
    assert sum(x["gpus"] for x in second) == 4
    assert min(x["slot"] for x in second) >= NOW_SLOT + 2 and {x["pool_id"] for x in second} == {
        pool
    }
    # A third clearing finds nothing left to do for it.
    ok(api.call("POST", "/clearings", "op", json={"id": "c3", "n_slots": 6}), 201)
    assert len(ok(api.call("GET", "/leases?order_id=o1", "team"))["items"]) == len(leases)
    # Each clearing's hold settles on its own once its leases are metered.
    api.clock.set(EPOCH + (max(x["slot"] for x in leases) + 1) * HOUR)
    for x in leases:
        start = EPOCH + x["slot"] * HOUR
        body = {
            "id": "r",
            "interval_start": start,
            "interval_end": start + HOUR,
            "gpu_seconds": x["gpus"] * HOUR,
            "final": True,
        }
        ok(api.call("POST", f"/leases/{x['id']}/readings", "dc", json=body), 201)
    states = {x["state"] for x in ok(api.call("GET", "/leases?order_id=o1", "team"))["items"]}
    assert states == {"settled"}
    spent = ok(api.call("GET", "/accounts/buyer:team:CNY", "team"))
    assert spent["debits_pending"] == 0
    assert spent["debits_posted"] == sum(x["price_fen"] * x["gpus"] for x in leases)
    SqlLedger(api.db).check_invariants()


def test_a_gang_order_is_never_reopened(api: Api) -> None:
    market(api, SITE_X, gpus=4)
    gang = order("g1", kind="gang", gpu_hours=0, duration_slots=2, gpus=2)
    ok(api.call("POST", "/orders", "team", json=gang), 201)
    ok(api.call("POST", "/clearings", "op", json={"id": "c1", "n_slots": 4}), 201)
    ok(api.call("POST", "/clearings", "op", json={"id": "c2", "n_slots": 4}), 201)
    leases = ok(api.call("GET", "/leases?order_id=g1", "team"))["items"]
    assert {x["clearing_id"] for x in leases} == {"c1"} and len(leases) == 2


def _bare(slots: range, offers: tuple[Offer, ...] = ()) -> Market:
    pool = Pool("horinger-h100", "horinger", "H100")
    grid = ApiSettings(grid_epoch=EPOCH).grid
    return Market(grid, slots.start, len(slots), (HORINGER,), (pool,), offers, ())


def _modelled_share(slots: range) -> list[float]:
    return list(MarketEnergy()(_bare(slots)).green_share["horinger-h100"])


def test_api_clearings_use_the_modelled_green_share(api: Api) -> None:
    market(api, HORINGER, gpus=8)
    shares = _modelled_share(range(NOW_SLOT, NOW_SLOT + 4))
    assert min(shares) > 0.05  # seeded weather: Horinger has wind and sun in these hours
    need = round(min(shares) * 0.9, 3)
    body = order("green", min_green_share=need, deadline_slot=NOW_SLOT + 4, gpu_hours=4)
    ok(api.call("POST", "/orders", "team", json=body), 201)
    # Without the energy model the pool has no green share: the order cannot clear.
    plain = create_app(api.db, api.clock, ApiSettings(grid_epoch=EPOCH), energy=False)
    assert plain.state.market_hook is None
    headers = {"Authorization": f"Bearer {api.tokens['op']}"}
    r = TestClient(plain).post(
        "/api/v1/clearings", json={"id": "c-plain", "n_slots": 4}, headers=headers
    )
    assert ok(r, 201)["n_allocations"] == 0
    # The served app (energy model on by default) clears it.
    summary = ok(api.call("POST", "/clearings", "op", json={"id": "c-green", "n_slots": 4}), 201)
    assert summary["n_allocations"] > 0
    assert ok(api.call("GET", "/orders/green", "team"))["status"] == "cleared"


def test_a_carbon_price_raises_the_reserve(api: Api) -> None:
    market(api, HORINGER, gpus=8, reserve=1000)
    horizon = range(NOW_SLOT, NOW_SLOT + 24)
    # an hour in which Horinger draws from the grid (so its GPU-hours carry CO2)
    k = next(t for t, g in zip(horizon, _modelled_share(horizon), strict=True) if g < 0.9)
    window = {"release_slot": k, "deadline_slot": k + 1, "gpus": 1, "gpu_hours": 1}
    ok(api.call("POST", "/orders", "team", json=order("o1", **window)), 201)
    priced = MarketEnergy(carbon_price_yuan_per_t=1000)
    app = create_app(api.db, api.clock, ApiSettings(grid_epoch=EPOCH), energy=priced)
    headers = {"Authorization": f"Bearer {api.tokens['op']}"}
    client = TestClient(app)
    ok(client.post("/api/v1/clearings", json={"id": "c1", "n_slots": 24}, headers=headers), 201)
    got = ok(client.get("/api/v1/clearings/c1", headers=headers))
    # The clearing saw the reserves raised by the carbon of each hour (grid share x factor):
    offer = Offer.over("f", "dc", "horinger-h100", NOW_SLOT, NOW_SLOT + 24, 8, 1000)
    raised = priced(_bare(horizon, (offer,))).offers[0].reserve_fen
    assert raised[k - NOW_SLOT] > 1000
    assert [a["slot"] for a in got["allocations"]] == [k]
    assert got["allocations"][0]["price_fen"] >= raised[k - NOW_SLOT]  # never below reserve
    with pytest.raises(ValidationError, match="yuan/t"):
        MarketEnergy(carbon_price_yuan_per_t=-1)


def test_batched_final_readings(api: Api) -> None:
    market(api, SITE_X, gpus=4)
    api.member("dc2", Role.PROVIDER)
    ok(api.call("POST", "/orders", "team", json=order("o1", deadline_slot=NOW_SLOT + 2)), 201)
    ok(api.call("POST", "/clearings", "op", json={"id": "c1", "n_slots": 2}), 201)
    leases = ok(api.call("GET", "/leases?order_id=team~o1", "op"))["items"]
    api.clock.set(EPOCH + (NOW_SLOT + 2) * HOUR)
    now = api.clock.now()
    ledger: SqlLedger = api.client.app.state.ctx.ledger
    ensure_accounts(ledger, [billing.new_provider_account("dc")], now)  # as the routes do

    def batch(x: dict[str, Any], rid: str = "final") -> FinalReading:
        start = EPOCH + x["slot"] * HOUR
        body = ReadingIn(
            id=rid,
            interval_start=start,
            interval_end=start + HOUR,
            gpu_seconds=x["gpus"] * HOUR // 2,
            energy_wh=10,
            final=True,
        )
        return FinalReading(x["id"], body)

    db: Database = api.db
    settings = api.client.app.state.ctx.settings
    with pytest.raises(NotFound), db.session_scope() as s:  # another provider's lease
        meter_final(s, "dc2", [batch(leases[0])], now, settings)
    with db.session_scope() as s:
        recorded, groups = meter_final(s, "dc", [batch(x) for x in leases[:1]], now, settings)
        assert recorded == 1 and groups == {("c1", "team~o1")}
        assert settle_done_orders(s, ledger, groups, 300, now) == 0  # one lease still runs
    with db.session_scope() as s:
        recorded, groups = meter_final(s, "dc", [batch(x) for x in leases], now, settings)
        assert recorded == len(leases) - 1  # the first one is known: skipped
        assert settle_done_orders(s, ledger, groups, 300, now) == 1
    with pytest.raises(InvalidState), db.session_scope() as s:  # settled: no more readings
        meter_final(s, "dc", [batch(leases[0], "late")], now, settings)
    account = ok(api.call("GET", "/accounts/buyer:team:CNY", "team"))
    cost = sum(x["price_fen"] * x["gpus"] for x in leases)
    assert account["debits_pending"] == 0 and account["debits_posted"] == cost // 2
    SqlLedger(db).check_invariants()


def test_lease_commands(api: Api) -> None:
    market(api, SITE_X, gpus=4)
    ok(api.call("POST", "/orders", "team", json=order("o1", deadline_slot=NOW_SLOT + 2)), 201)
    ok(api.call("POST", "/clearings", "op", json={"id": "c1", "n_slots": 2}), 201)
    transport = api.client._transport
    common = ["--url", "http://testserver", "--key", api.tokens["team"]]
    result = runner.invoke(cli, ["lease", "list", *common], obj={"transport": transport})
    assert result.exit_code == 0, result.output
    assert "Leases (2)" in result.stdout and "c1:team~o1:site-x-h100" in result.stdout
    got = runner.invoke(
        cli,
        ["lease", "list", "--state", "settled", "--json", *common],
        obj={"transport": transport},
    )
    assert got.exit_code == 0 and got.stdout.strip() == "[]"
    lease_id = f"c1:team~o1:site-x-h100:{NOW_SLOT}"
    shown = runner.invoke(cli, ["lease", "show", lease_id, *common], obj={"transport": transport})
    assert shown.exit_code == 0, shown.output
    assert "scheduled" in shown.stdout and "Meter readings" not in shown.stdout
    other = ["--url", "http://testserver", "--key", api.tokens["dc"]]
    missing = runner.invoke(cli, ["lease", "show", "nope", *other], obj={"transport": transport})
    assert missing.exit_code == 2 and "no lease 'nope'" in missing.stderr
