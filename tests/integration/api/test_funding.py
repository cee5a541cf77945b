"""The funding rule: orders from a buyer who cannot pay never enter the solve, and a
clearing is solved once however many such orders there are."""

from __future__ import annotations

from typing import Any

import pytest

import suangu.api.services as services
from suangu.core import billing
from suangu.core.types import Order, OrderKind
from suangu.store.models import Role
from suangu.store.repositories import Orders

from .conftest import EPOCH, NOW_SLOT, Api, build_world, order


def test_unfunded_orders_never_enter_the_solve(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    build_world(api)
    api.member("broke", Role.BUYER)
    now = api.clock.now()
    with api.db.session_scope() as s:
        for k in range(20):
            Orders(s).submit(order(f"ord-broke-{k:02d}", "broke", limit=5000), now)
        Orders(s).submit(order("ord-buy-a-2", "buy-a"), now)
    seen: list[set[str]] = []
    real = services.clear

    def counting(market: Any, *args: Any, **kw: Any) -> Any:
        seen.append({o.id for o in market.orders})
        return real(market, *args, **kw)

    monkeypatch.setattr(services, "clear", counting)
    r = api.call("POST", "/clearings", "op", json={"id": "clr-2"})
    assert r.status_code == 201, r.text
    assert len(seen) == 1  # solved once
    assert not any(o.startswith("ord-broke") for o in seen[0])
    assert "ord-buy-a-2" in seen[0]
    assert r.json()["excluded_orders"] == [f"ord-broke-{k:02d}" for k in range(20)]
    # They stay open, and enter once the buyer's money covers them.
    for k in range(20):
        got = api.call("GET", f"/orders/ord-broke-{k:02d}", "broke").json()
        assert got["status"] == "open"
    most = billing.max_cost_fen(order("x", "broke", limit=5000), 1)
    r = api.call(
        "POST", "/deposits", "op", json={"id": "d-broke", "member_id": "broke", "amount_fen": most}
    )
    assert r.status_code == 201, r.text
    seen.clear()
    r = api.call("POST", "/clearings", "op", json={"id": "clr-3"})
    assert r.status_code == 201, r.text
    assert len(seen) == 1 and "ord-broke-00" in seen[0] and "ord-broke-01" not in seen[0]
    api.client.app.state.ctx.ledger.check_invariants()


def test_the_funding_rule_takes_each_buyers_orders_in_id_order() -> None:
    def o(oid: str, buyer: str, gpu_hours: int) -> Order:
        return Order(oid, buyer, OrderKind.BATCH, 1, NOW_SLOT, NOW_SLOT + 24, 100, gpu_hours)

    orders = [o("b2", "x", 10), o("b1", "x", 10), o("c1", "y", 1), o("b3", "x", 5)]
    funded, unfunded = billing.funded_orders(
        orders, {"x": 2_000, "y": 50}, lambda order: billing.max_cost_fen(order, 1)
    )
    assert [f.id for f in funded] == ["b1", "b2"]
    assert unfunded == ["b3", "c1"]
    # A whole-window service order with a reference class may buy a faster class's hours.
    svc = Order("s", "x", OrderKind.SERVICE, 2, 0, 10, 100, 0, reference_class="A100")
    assert billing.max_cost_fen(svc, 1) == 100 * 2 * 10
    assert billing.max_cost_fen(svc, 1, ["A100", "H100"]) > 100 * 2 * 10


def test_a_failed_clearing_is_never_published_as_prices(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A solve that finds nothing stores a failed clearing with no prices: the market's
    published prices stay those of the last clearing that worked."""
    from suangu.core.types import ClearingResult, ClearingStatus, PoolPrice

    build_world(api)
    pool = "site-a-h100"
    path = f"/market/prices?pool_id={pool}&first_slot={NOW_SLOT}&end_slot={NOW_SLOT + 4}"
    before = api.call("GET", path, None).json()["items"]
    assert before and any(p["cleared_gpus"] > 0 for p in before)

    def failing(market: Any, *args: Any, **kw: Any) -> ClearingResult:
        prices = tuple(
            PoolPrice(p.id, t, 0, 0, 8)
            for p in market.pools
            for t in range(market.first_slot, market.first_slot + market.n_slots)
        )
        return ClearingResult(ClearingStatus.FAILED, "mip", (), (), prices, 0, message="none")

    monkeypatch.setattr(services, "clear", failing)
    api.clock.advance(60)  # the failed clearing is the latest
    with api.db.session_scope() as s:
        Orders(s).submit(order("ord-buy-a-3", "buy-a"), api.clock.now())
    r = api.call("POST", "/clearings", "op", json={"id": "clr-failed"})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "failed" and r.json()["n_allocations"] == 0
    assert api.call("GET", path, None).json()["items"] == before


def test_a_gang_book_out_of_time_still_clears_its_best(api: Api) -> None:
    """A book of gang orders with almost no time to solve: the clearing keeps the best
    allocation it found (the greedy incumbent), says so in its status, and publishes its
    prices; it never comes back empty."""
    from fastapi.testclient import TestClient

    from suangu.api.app import create_app
    from suangu.api.settings import ApiSettings
    from suangu.core.types import Order, OrderKind

    build_world(api)
    hurried = ApiSettings(grid_epoch=EPOCH, horizon_slots=6, clearing_time_limit_s=1e-6)
    api = Api(
        TestClient(create_app(api.db, api.clock, hurried)),
        api.db,
        api.clock,
        api.backend,
        api.tokens,
    )
    now = api.clock.now()
    with api.db.session_scope() as s:
        for k in range(12):
            gang = Order(
                f"g{k:02d}",
                "buy-a" if k % 2 else "buy-b",
                OrderKind.GANG,
                2 + k % 3,
                NOW_SLOT,
                NOW_SLOT + 6,
                1500 + 10 * k,
                duration_slots=2 + k % 2,
            )
            Orders(s).submit(gang, now)
    r = api.call("POST", "/clearings", "op", json={"id": "clr-gangs"})
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["n_allocations"] > 0, got
    assert got["status"] in ("time_limit", "heuristic"), got  # not proven in no time
    full = api.call("GET", "/clearings/clr-gangs", "op").json()
    assert full["prices"] and full["message"]
    api.client.app.state.ctx.ledger.check_invariants()
