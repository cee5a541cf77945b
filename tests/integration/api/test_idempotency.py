"""``Idempotency-Key`` on writes: the same key and body replay the first response; another
body is a 409 naming the header; keys are per member; concurrent retries write once."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import func, select

from suangu.api.idempotency import PURGE_EVERY_S, RETENTION_S, purge_expired
from suangu.store.models import ClearingRow, IdempotencyRow, LedgerTransferRow, OrderRow, Role

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


def test_concurrent_retries_with_two_bodies_record_one(world: Api) -> None:
    """Many threads, one key, two different bodies (same order id): the first to commit wins;
    its body gets its response every time, the other body the documented 409 naming the
    header."""
    n = count(world, OrderRow)
    bodies = {"a": order_body("idem-mixed", gpus=1), "b": order_body("idem-mixed", gpus=2)}
    results: list[tuple[str, int, Any]] = []
    lock = threading.Lock()

    def send(which: str) -> None:
        r = world.call(
            "POST", "/orders", "buy-a", json=bodies[which], headers={"Idempotency-Key": "mixed"}
        )
        with lock:
            results.append((which, r.status_code, r.json()))

    threads = [threading.Thread(target=send, args=("ab"[i % 2],)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count(world, OrderRow) == n + 1
    winners = {which for which, status, _ in results if status == 201}
    assert len(winners) == 1, results
    (winner,) = winners
    firsts = [b for which, status, b in results if which == winner]
    assert all(b == firsts[0] for b in firsts)
    assert firsts[0]["gpus"] == bodies[winner]["gpus"]
    for which, status, b in results:
        if which != winner:
            assert status == 409, (which, status, b)
            assert b["field"] == "header.Idempotency-Key"


def test_records_expire_after_the_retention(api: Api) -> None:
    api.member("exp", Role.BUYER)
    late = {**order_body("idem-exp"), "release_slot": NOW_SLOT + 30, "deadline_slot": NOW_SLOT + 60}
    key = {"Idempotency-Key": "old-key"}
    first = api.call("POST", "/orders", "exp", json=late, headers=key)
    assert first.status_code == 201, first.text
    api.clock.advance(RETENTION_S - 1)  # kept: a retry is replayed
    again = api.call("POST", "/orders", "exp", json=late, headers=key)
    assert again.headers.get("idempotent-replayed") == "true"
    # Past the retention, the next keyed write of the process purges the record ...
    api.clock.advance(PURGE_EVERY_S + 1)
    other = {**late, "id": "idem-exp-2"}
    assert api.call(
        "POST", "/orders", "exp", json=other, headers={"Idempotency-Key": "new"}
    ).is_success
    # (group commit purges after answering: give its writer thread a moment)
    for _ in range(100):
        with api.db.session_scope(write=False) as s:
            keys = set(s.scalars(select(IdempotencyRow.key)))
        if keys == {"new"}:
            break
        time.sleep(0.05)
    assert keys == {"new"}
    # ... and the old key runs the write again (the order id keeps it idempotent).
    r = api.call("POST", "/orders", "exp", json=late, headers=key)
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    assert r.json() == first.json()


def test_purge_deletes_the_oldest_in_batches(api: Api) -> None:
    now = api.clock.now()
    with api.db.session_scope() as s:
        for i in range(5):
            s.add(
                IdempotencyRow(
                    member_id="m",
                    key=f"k{i}",
                    request_hash="h",
                    status=200,
                    body={},
                    created_at=now - RETENTION_S - 10 + i,
                )
            )
        s.add(
            IdempotencyRow(
                member_id="m", key="fresh", request_hash="h", status=200, body={}, created_at=now
            )
        )
    assert purge_expired(api.db, now, limit=2) == 2
    assert purge_expired(api.db, now, limit=10) == 3
    assert purge_expired(api.db, now, limit=10) == 0
    with api.db.session_scope(write=False) as s:
        assert list(s.scalars(select(IdempotencyRow.key))) == ["fresh"]
