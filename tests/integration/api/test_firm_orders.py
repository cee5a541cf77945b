"""Firm orders and firm-order protection in the service (``POST /clearings`` and the
clearing loop), on SQLite and PostgreSQL.

A captive firm order (one that only pool A can serve) arrives after a flexible order that
could run anywhere has bid for everything: with protection on, the clearing held A back for
captive firm demand and the firm order is served; without it the flexible order took A.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suangu.api.app import create_app
from suangu.api.clock import ManualClock
from suangu.api.settings import ApiSettings
from suangu.core.types import Offer, Pool
from suangu.store.models import Role
from suangu.store.repositories import Capacity

from .conftest import BACKENDS, EPOCH, NOW_SLOT, SITES, T0, Api, _database

HOUR = 3600


def exchange(api: Api) -> None:
    for m, role in (
        ("op", Role.OPERATOR),
        ("prov-a", Role.PROVIDER),
        ("prov-b", Role.PROVIDER),
        ("team", Role.BUYER),
        ("flex", Role.BUYER),
    ):
        api.member(m, role)
    now = api.clock.now()
    with api.db.session_scope() as s:
        cap = Capacity(s)
        for prov, site in SITES.items():
            cap.add_site(site, prov)
            pool = Pool(f"{site.id}-h100", site.id, "H100")
            cap.add_pool(pool)
            cap.add_offer(
                Offer.over(f"offer-{prov}", prov, pool.id, NOW_SLOT, NOW_SLOT + 24, 4, 1000), now
            )
    for b in ("team", "flex"):
        r = api.call(
            "POST", "/deposits", "op", json={"id": f"d-{b}", "member_id": b, "amount_fen": 10**8}
        )
        assert r.status_code == 201, r.text


def firm_order(order_id: str, release: int, deadline: int, gpu_hours: int) -> dict[str, Any]:
    """4 GPUs in Inner Mongolia only: captive to site-a's pool."""
    return {
        "id": order_id,
        "kind": "batch",
        "gpus": 4,
        "release_slot": release,
        "deadline_slot": deadline,
        "limit_fen": 2000,
        "gpu_hours": gpu_hours,
        "regions": ["inner-mongolia"],
        "firm": True,
    }


def run(api: Api) -> dict[str, str]:
    """The story of the module docs; each order's status at the end."""
    exchange(api)
    r = api.call("POST", "/orders", "team", json=firm_order("firm-1", NOW_SLOT, NOW_SLOT + 1, 4))
    assert r.status_code == 201, r.text
    assert r.json()["firm"] is True
    flexible = {
        "id": "flex-1",
        "kind": "batch",
        "gpus": 8,
        "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 8,
        "limit_fen": 3000,
        "gpu_hours": 64,
    }
    r = api.call("POST", "/orders", "flex", json=flexible)
    assert r.status_code == 201, r.text
    assert r.json()["firm"] is False
    r = api.call("POST", "/clearings", "op", json={"id": "c1", "n_slots": 8})
    assert r.status_code == 201, r.text
    api.clock.advance(2 * HOUR)  # slot 102: a second captive firm order arrives
    late = firm_order("firm-2", NOW_SLOT + 2, NOW_SLOT + 4, 8)
    r = api.call("POST", "/orders", "team", json=late)
    assert r.status_code == 201, r.text
    r = api.call("POST", "/clearings", "op", json={"id": "c2", "n_slots": 6})
    assert r.status_code == 201, r.text
    got = api.call("GET", "/orders/firm-2", "team").json()
    assert got["firm"] is True  # shown back
    return {
        o: api.call("GET", f"/orders/{o}", who).json()["status"]
        for o, who in (("firm-1", "team"), ("firm-2", "team"), ("flex-1", "flex"))
    }


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    yield from _database(request.param, tmp_path)


def app_api(backend: tuple[str, Any], protect_firm_hours: int) -> Api:
    name, db = backend
    clock = ManualClock(T0)
    settings = ApiSettings(grid_epoch=EPOCH, protect_firm_hours=protect_firm_hours)
    app = create_app(db, clock, settings, energy=False)
    return Api(TestClient(app, raise_server_exceptions=True), db, clock, name)


def test_protection_keeps_a_captive_firm_order(backend: tuple[str, Any]) -> None:
    api = app_api(backend, protect_firm_hours=24)
    status = run(api)
    assert status["firm-1"] == "cleared" and status["firm-2"] == "cleared"
    assert status["flex-1"] == "partially"  # it got site-b, and site-a's slot 100 was firm-1's
    firm = api.call("GET", "/clearings/c1-firm", "op").json()
    assert {a["order_id"] for a in firm["allocations"]} == {"team~firm-1"}
    main = api.call("GET", "/clearings/c1", "op").json()
    # site-a was held back after slot 100: the flexible order got none of it
    assert all(a["pool_id"] == "site-b-h100" for a in main["allocations"])
    second = api.call("GET", "/clearings/c2-firm", "op").json()
    assert sorted(a["slot"] for a in second["allocations"]) == [NOW_SLOT + 2, NOW_SLOT + 3]


def test_without_protection_the_captive_firm_order_loses(backend: tuple[str, Any]) -> None:
    api = app_api(backend, protect_firm_hours=0)
    status = run(api)
    assert status["firm-2"] == "open"  # site-a's slots were sold to the flexible order
    assert status["flex-1"] == "cleared"
    assert api.call("GET", "/clearings/c1-firm", "op").status_code == 404


def test_a_yaml_job_spec_says_firm(backend: tuple[str, Any]) -> None:
    api = app_api(backend, protect_firm_hours=0)
    exchange(api)
    spec = (
        "orders:\n"
        "  - {id: y1, buyer: team, kind: batch, gpus: 2, gpu_hours: 4, deadline: 110,"
        " limit: 20, firm: true}\n"
        "  - {id: y2, buyer: team, kind: batch, gpus: 2, gpu_hours: 4, deadline: 110,"
        " limit: 20}\n"
    )
    r = api.call(
        "POST", "/orders/yaml", "team", content=spec, headers={"Content-Type": "application/yaml"}
    )
    assert r.status_code == 201, r.text
    assert [o["firm"] for o in r.json()["items"]] == [True, False]
    assert api.call("GET", "/orders/y1", "team").json()["firm"] is True
    # The same id again with another firmness is a different order: refused.
    again = firm_order("y2", NOW_SLOT, NOW_SLOT + 10, 4)
    assert api.call("POST", "/orders", "team", json=again).status_code == 409
