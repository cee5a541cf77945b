"""``Idempotency-Key`` on writes: the same key and body replay the first response; another
body is a 409 naming the header; keys are per member; concurrent retries write once."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import func, select

from suangu.store.models import ClearingRow, LedgerTransferRow, OrderRow

from .conftest import NOW_SLOT, Api


def order_body(order_id: str, gpus: int = 1) -> dict[str, Any]:
    return {
        "id": order_id,
        "kind": "batch",
        "gpus": gpus,
        "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 3,
        "limit_fen": 1,
        "gpu_hours": 1,
    }


def count(api: Api, table: Any) -> int:
    with api.db.session_scope(write=False) as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


def test_same_key_same_body_replays(world: Api) -> None:
    key = {"Idempotency-Key": "idem-order-1"}
    first = world.call("POST", "/orders", "buy-a", json=order_body("idem-1"), headers=key)
    assert first.status_code == 201, first.text
    n = count(world, OrderRow)
    world.clock.advance(5)
    again = world.call("POST", "/orders", "buy-a", json=order_body("idem-1"), headers=key)
    assert again.status_code == 201
    assert again.json() == first.json()  # the first response, submitted_at included
    assert again.headers["idempotent-replayed"] == "true"
    assert count(world, OrderRow) == n


def test_same_key_other_body_is_409_naming_the_header(world: Api) -> None:
    key = {"Idempotency-Key": "idem-order-2"}
    assert world.call("POST", "/orders", "buy-a", json=order_body("idem-2"), headers=key).is_success
    n = count(world, OrderRow)
    r = world.call("POST", "/orders", "buy-a", json=order_body("idem-2", gpus=2), headers=key)
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == "header.Idempotency-Key"
    # Another path with the same key is another request too.
    r = world.call("POST", "/orders/idem-2/cancel", "buy-a", headers=key)
    assert r.status_code == 409
    assert count(world, OrderRow) == n


def test_keys_are_per_member(world: Api) -> None:
    key = {"Idempotency-Key": "shared-key"}
    a = world.call("POST", "/orders", "buy-a", json=order_body("idem-a"), headers=key)
    b = world.call("POST", "/orders", "buy-b", json=order_body("idem-b"), headers=key)
    assert (a.status_code, b.status_code) == (201, 201)
    assert b.json()["buyer_id"] == "buy-b"


def test_a_failed_write_is_not_recorded(world: Api) -> None:
    key = {"Idempotency-Key": "idem-fail"}
    bad = order_body("idem-fail")
    bad["deadline_slot"] = 1
    assert world.call("POST", "/orders", "buy-a", json=bad, headers=key).status_code == 422
    good = world.call("POST", "/orders", "buy-a", json=order_body("idem-fail"), headers=key)
    assert good.status_code == 201


def test_clearing_and_deposit_replays_change_nothing(world: Api) -> None:
    key = {"Idempotency-Key": "clear-once"}
    first = world.call("POST", "/clearings", "op", json={"n_slots": 2}, headers=key)
    assert first.status_code == 201, first.text
    clearings, transfers = count(world, ClearingRow), count(world, LedgerTransferRow)
    again = world.call("POST", "/clearings", "op", json={"n_slots": 2}, headers=key)
    assert again.json() == first.json()
    assert (count(world, ClearingRow), count(world, LedgerTransferRow)) == (clearings, transfers)

    body = {"id": "dep-once", "member_id": "buy-a", "amount_fen": 500}
    before = world.call("GET", "/accounts/buyer:buy-a:CNY", "buy-a").json()["balance"]
    for _ in range(3):
        r = world.call("POST", "/deposits", "op", json=body, headers={"Idempotency-Key": "dep"})
        assert r.status_code == 201
    # Without the header, the deposit id alone makes it idempotent too.
    assert world.call("POST", "/deposits", "op", json=body).status_code == 201
    after = world.call("GET", "/accounts/buyer:buy-a:CNY", "buy-a").json()["balance"]
    assert after == before + 500


def test_meter_readings_count_once(world: Api) -> None:
    lease = world.call("GET", "/leases", "prov-a").json()["items"][0]["id"]
    t = world.clock.now()
    body = {"id": "m-once", "interval_start": t, "interval_end": t + 60, "gpu_seconds": 60}
    first = world.call("POST", f"/leases/{lease}/readings", "prov-a", json=body)
    assert first.status_code == 201 and first.json()["new"] is True
    again = world.call("POST", f"/leases/{lease}/readings", "prov-a", json=body)
    assert again.status_code == 200 and again.json()["new"] is False
    r = world.call("POST", f"/leases/{lease}/readings", "prov-a", json={**body, "gpu_seconds": 1})
    assert r.status_code == 409
    readings = world.call("GET", f"/leases/{lease}/readings?limit=500", "prov-a").json()["items"]
    assert sum(1 for x in readings if x["id"] == "m-once") == 1


def test_concurrent_retries_write_once(world: Api) -> None:
    n = count(world, OrderRow)
    statuses: list[int] = []
    bodies: list[Any] = []

    def send() -> None:
        r = world.call(
            "POST",
            "/orders",
            "buy-b",
            json=order_body("idem-race"),
            headers={"Idempotency-Key": "race"},
        )
        statuses.append(r.status_code)
        bodies.append(r.json())

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [201] * 6
    assert all(b == bodies[0] for b in bodies)
    assert count(world, OrderRow) == n + 1
