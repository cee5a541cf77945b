"""Commit late, plan early through the API (``firm_slots: 1``): a clearing
turns only the slot about to start into leases and shows the rest to the buyer as a planned
schedule; the next clearing plans again, so an urgent order that arrives later can take the
slots that were only planned. Leases never change; a started gang keeps its run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suangu.api.app import create_app
from suangu.api.clock import ManualClock
from suangu.api.settings import ApiSettings
from suangu.core.types import Offer, Pool, Site
from suangu.store.models import Role
from suangu.store.repositories import Capacity

from .conftest import BACKENDS, EPOCH, NOW_SLOT, T0, Api, _database

HOUR = 3600


@pytest.fixture(params=BACKENDS)
def late(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    """An exchange that plans late (a firmness horizon of one slot): one pool of 2 GPUs."""
    for backend, db in _database(request.param, tmp_path):
        clock = ManualClock(T0)
        settings = ApiSettings(grid_epoch=EPOCH, horizon_slots=6, delay_fen=1, firm_slots=1)
        app = create_app(db, clock, settings)
        api = Api(TestClient(app, raise_server_exceptions=True), db, clock, backend)
        for m, role in (("op", Role.OPERATOR), ("dc", Role.PROVIDER), ("b1", Role.BUYER)):
            api.member(m, role)
        api.member("b2", Role.BUYER)
        with db.session_scope() as s:
            cap = Capacity(s)
            cap.add_site(Site("west", "West", "Gansu", "gansu"), "dc")
            cap.add_pool(Pool("west-h800", "west", "H800"))
            cap.add_offer(Offer.over("w", "dc", "west-h800", NOW_SLOT, NOW_SLOT + 48, 2, 100), T0)
        for b in ("b1", "b2"):
            r = api.call(
                "POST",
                "/deposits",
                "op",
                json={"id": f"d-{b}", "member_id": b, "amount_fen": 10**6},
            )
            assert r.status_code == 201, r.text
        yield api


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def _order(oid: str, release: int, deadline: int, limit: int, **kw: Any) -> dict[str, Any]:
    return {
        "id": oid,
        "kind": "batch",
        "gpus": 2,
        "release_slot": release,
        "deadline_slot": deadline,
        "limit_fen": limit,
        "gpu_hours": 4,
        **kw,
    }


def test_later_slots_stay_a_plan_that_an_urgent_order_can_take(late: Api) -> None:
    ok(late.call("POST", "/orders", "b1", json=_order("flex", NOW_SLOT, NOW_SLOT + 6, 200)), 201)
    got = ok(late.call("POST", "/clearings", "op", json={"id": "c1"}), 201)
    assert got["n_allocations"] == 1 and got["n_planned"] >= 1
    leases = ok(late.call("GET", "/leases?order_id=flex", "b1"))["items"]
    assert [(x["slot"], x["gpus"]) for x in leases] == [(NOW_SLOT, 2)]
    flex = ok(late.call("GET", "/orders/flex", "b1"))
    assert flex["status"] == "partially"
    assert [(p["slot"], p["gpus"]) for p in flex["planned"]] == [(NOW_SLOT + 1, 2)]
    # Only the first slot's money is held.
    account = ok(late.call("GET", "/accounts/buyer:b1:CNY", "b1"))
    assert account["debits_pending"] == leases[0]["price_fen"] * 2

    # An urgent order arrives in the next hour: both GPUs in the next two slots.
    late.clock.set(EPOCH + (NOW_SLOT + 1) * HOUR + 60)
    ok(
        late.call("POST", "/orders", "b2", json=_order("urgent", NOW_SLOT + 1, NOW_SLOT + 3, 500)),
        201,
    )
    ok(late.call("POST", "/clearings", "op", json={"id": "c2"}), 201)
    late.clock.set(EPOCH + (NOW_SLOT + 2) * HOUR + 60)
    ok(late.call("POST", "/clearings", "op", json={"id": "c3"}), 201)
    urgent = ok(late.call("GET", "/leases?order_id=urgent", "b2"))["items"]
    assert sorted((x["slot"], x["gpus"]) for x in urgent) == [(NOW_SLOT + 1, 2), (NOW_SLOT + 2, 2)]
    assert ok(late.call("GET", "/orders/urgent", "b2"))["status"] == "cleared"
    # The flexible order's first lease never changed; its plan moved after the urgent work.
    again = ok(late.call("GET", "/leases?order_id=flex", "b1"))["items"]
    assert again[0] == leases[0]
    flex = ok(late.call("GET", "/orders/flex", "b1"))
    assert [(p["slot"], p["gpus"]) for p in flex["planned"]] == [(NOW_SLOT + 3, 2)]
    late.clock.set(EPOCH + (NOW_SLOT + 3) * HOUR + 60)
    ok(late.call("POST", "/clearings", "op", json={"id": "c4"}), 201)
    assert ok(late.call("GET", "/orders/flex", "b1"))["status"] == "cleared"
    assert ok(late.call("GET", "/orders/flex", "b1"))["planned"] == []
    late.client.app.state.ctx.ledger.check_invariants()


def test_a_started_gang_keeps_its_run(late: Api) -> None:
    gang = {
        "id": "g",
        "kind": "gang",
        "gpus": 2,
        "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 6,
        "limit_fen": 300,
        "duration_slots": 3,
    }
    ok(late.call("POST", "/orders", "b1", json=gang), 201)
    ok(late.call("POST", "/clearings", "op", json={"id": "c1"}), 201)
    leases = ok(late.call("GET", "/leases?order_id=g", "b1"))["items"]
    assert sorted(x["slot"] for x in leases) == [NOW_SLOT, NOW_SLOT + 1, NOW_SLOT + 2]
    assert ok(late.call("GET", "/orders/g", "b1"))["status"] == "cleared"
    # A richer order next hour cannot take the gang's later slots: they are firm.
    late.clock.set(EPOCH + (NOW_SLOT + 1) * HOUR + 60)
    ok(
        late.call("POST", "/orders", "b2", json=_order("rich", NOW_SLOT + 1, NOW_SLOT + 3, 5000)),
        201,
    )
    ok(late.call("POST", "/clearings", "op", json={"id": "c2"}), 201)
    assert ok(late.call("GET", "/leases?order_id=rich", "b2"))["items"] == []
    assert ok(late.call("GET", "/leases?order_id=g", "b1"))["items"] == leases
