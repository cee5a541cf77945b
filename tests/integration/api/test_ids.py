"""Order and offer ids are per member (issue "Trust and operations", Low): two members can
each submit ``job-1``, neither learns that the other did, each sees only its own, and
operators and auditors address both by their stored ids ``<member>~job-1``. On SQLite and,
with ``SUANGU_TEST_DATABASE_URL``, PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from suangu.api import ids
from suangu.core.errors import ValidationError

from .conftest import NOW_SLOT, Api, build_world
from .test_bad_input import YAML_ORDER, assert_problem


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


REGION = {"buy-a": "inner-mongolia", "buy-b": "ningxia"}


def _order(order_id: str, who: str, **kw: Any) -> dict[str, Any]:
    return {
        "id": order_id,
        "kind": "batch",
        "gpus": 1,
        "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 4,
        "limit_fen": 2000,
        "gpu_hours": 1,
        "regions": [REGION[who]],
        **kw,
    }


def _strip(body: dict[str, Any]) -> dict[str, Any]:
    """A response without what names its owner (to compare two members' answers)."""
    return {k: v for k, v in body.items() if k not in ("id", "buyer_id", "submitted_at")}


def test_two_buyers_submit_the_same_id_and_each_sees_its_own(world: Api) -> None:
    name = fresh("job")
    a = world.call("POST", "/orders", "buy-a", json=_order(name, "buy-a", limit_fen=2000))
    # buy-b's first use of a name buy-a has: answered as any new name is (no 409, no hint).
    b = world.call("POST", "/orders", "buy-b", json=_order(name, "buy-b", limit_fen=3000))
    other = world.call("POST", "/orders", "buy-b", json=_order(fresh("job"), "buy-b"))
    assert (a.status_code, b.status_code, other.status_code) == (201, 201, 201), b.text
    assert a.json()["id"] == f"buy-a~{name}" and b.json()["id"] == f"buy-b~{name}"
    assert _strip(b.json()) == _strip(other.json()) | {"limit_fen": 3000}
    assert set(b.headers) == set(other.headers)

    # Each buyer names its own by the plain id or the stored one, and sees only its own.
    for who, limit in (("buy-a", 2000), ("buy-b", 3000)):
        for path in (f"/orders/{name}", f"/orders/{who}~{name}"):
            got = world.call("GET", path, who)
            assert got.status_code == 200, got.text
            assert got.json()["buyer_id"] == who and got.json()["limit_fen"] == limit
        listed = world.call("GET", "/orders?limit=500", who).json()["items"]
        assert [o["id"] for o in listed if name in o["id"]] == [f"{who}~{name}"]
    # ... never the other's, by its stored id either.
    assert_problem(world.call("GET", f"/orders/buy-b~{name}", "buy-a"), 404, "path.order_id")

    # Operators and auditors address both, unambiguously, by the stored ids.
    for reader in ("op", "aud"):
        for who, limit in (("buy-a", 2000), ("buy-b", 3000)):
            got = world.call("GET", f"/orders/{who}~{name}", reader).json()
            assert got["buyer_id"] == who and got["limit_fen"] == limit
        assert_problem(world.call("GET", f"/orders/{name}", reader), 404, "path.order_id")
        listed = world.call("GET", "/orders?limit=500", reader).json()["items"]
        assert sorted(o["id"] for o in listed if name in o["id"]) == [
            f"buy-a~{name}",
            f"buy-b~{name}",
        ]


def test_a_buyers_own_duplicate_is_idempotent_or_a_409_as_before(world: Api) -> None:
    name = fresh("job")
    first = world.call("POST", "/orders", "buy-a", json=_order(name, "buy-a"))
    assert first.status_code == 201, first.text
    # The same order again, by the plain id or the stored one: the same order.
    for again in (name, f"buy-a~{name}"):
        r = world.call("POST", "/orders", "buy-a", json=_order(again, "buy-a"))
        assert r.status_code == 201, r.text
        assert r.json() == first.json()
    # Other fields under the same id: a 409 naming body.id.
    r = world.call("POST", "/orders", "buy-a", json=_order(name, "buy-a", limit_fen=2500))
    assert_problem(r, 409, "body.id")
    # buy-b's different fields under that name are its own new order, not a 409.
    r = world.call("POST", "/orders", "buy-b", json=_order(name, "buy-b", limit_fen=2500))
    assert r.status_code == 201, r.text
    # The old namespace form keeps working: another member's namespace is refused.
    r = world.call("POST", "/orders", "buy-a", json=_order(f"buy-b~{name}", "buy-a"))
    assert_problem(r, 422, "body.id")


def test_yaml_orders_are_per_member_too(world: Api) -> None:
    name = fresh("yaml")
    text = YAML_ORDER.replace("id: yaml-1", f"id: {name}")
    for who in ("buy-a", "buy-b"):
        raw = text.replace("buyer: buy-a", f"buyer: {who}")
        r = world.call(
            "POST",
            "/orders/yaml",
            who,
            content=raw.encode(),
            headers={"Content-Type": "application/yaml"},
        )
        assert r.status_code == 201, r.text
        assert [o["id"] for o in r.json()["items"]] == [f"{who}~{name}"]
        assert world.call("GET", f"/orders/{name}", who).json()["buyer_id"] == who


def test_orders_written_before_keep_their_plain_ids(world: Api) -> None:
    """The world's orders were written through the store with plain ids (as orders written
    before ids were per member): their owner and the operator still address them so, and
    another buyer gets the 404 that any unknown id gets."""
    assert world.call("GET", "/orders/ord-buy-a", "buy-a").json()["buyer_id"] == "buy-a"
    assert world.call("GET", "/orders/ord-buy-a", "op").json()["buyer_id"] == "buy-a"
    mine = world.call("GET", "/leases?order_id=ord-buy-a&limit=500", "buy-a").json()["items"]
    assert mine and {x["order_id"] for x in mine} == {"ord-buy-a"}
    theirs = world.call("GET", "/orders/ord-buy-a", "buy-b")
    unknown = world.call("GET", f"/orders/{fresh('none')}", "buy-b")
    for r in (theirs, unknown):
        assert_problem(r, 404, "path.order_id")


def test_cancel_leases_logs_and_audit_follow_the_stored_id(api: Api) -> None:
    """Both buyers' ``job`` clear; each cancels and lists leases by the plain name and gets
    its own; leases, holds and audit entries carry the stored ids."""
    build_world(api)
    for who in ("buy-a", "buy-b"):
        r = api.call("POST", "/orders", who, json=_order("job", who, gpus=2, gpu_hours=4 * 2))
        assert r.status_code == 201, r.text
    r = api.call("POST", "/clearings", "op", json={"id": "clr-ids", "first_slot": NOW_SLOT + 1})
    assert r.status_code == 201, r.text
    for who in ("buy-a", "buy-b"):
        leases = api.call("GET", "/leases?order_id=job", who).json()["items"]
        assert leases and {x["order_id"] for x in leases} == {f"{who}~job"}
        assert all(x["buyer_id"] == who for x in leases)
        logs = api.call("GET", "/orders/job/logs", who)
        assert logs.status_code == 200, logs.text
    ops = api.call("GET", "/leases?order_id=buy-b~job&limit=500", "op").json()["items"]
    assert ops and {x["buyer_id"] for x in ops} == {"buy-b"}
    ledger = api.client.app.state.ctx.ledger
    assert ledger.lookup_transfer("hold:clr-ids:buy-a~job") is not None
    assert ledger.lookup_transfer("hold:clr-ids:buy-b~job") is not None

    r = api.call("POST", "/orders/job/cancel", "buy-a", headers={"Idempotency-Key": "c-job"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "buy-a~job" and r.json()["status"] == "cancelled"
    assert api.call("GET", "/orders/job", "buy-b").json()["status"] != "cancelled"

    entries = api.call("GET", "/audit?limit=500", "aud").json()["items"]
    objects = {(e["action"], e["member_id"], e["object"]) for e in entries}
    assert ("order.submit", "buy-a", "order:buy-a~job") in objects
    assert ("order.submit", "buy-b", "order:buy-b~job") in objects
    assert ("order.cancel", "buy-a", "order:buy-a~job") in objects


def test_two_providers_offer_the_same_id(world: Api) -> None:
    name = fresh("offer")
    body = {"start_slot": NOW_SLOT + 60, "gpus": [1], "reserve_fen": [5]}
    for prov, pool in (("prov-a", "site-a-h100"), ("prov-b", "site-b-h100")):
        r = world.call("POST", "/offers", prov, json={"id": name, "pool_id": pool, **body})
        assert r.status_code == 201, r.text
        assert r.json()["id"] == f"{prov}~{name}"
    for prov, pool in (("prov-a", "site-a-h100"), ("prov-b", "site-b-h100")):
        assert world.call("GET", f"/offers/{name}", prov).json()["pool_id"] == pool
        assert world.call("GET", f"/offers/{prov}~{name}", "op").json()["pool_id"] == pool
    r = world.call("POST", f"/offers/{name}/withdraw", "prov-a")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == f"prov-a~{name}" and r.json()["status"] == "withdrawn"
    assert world.call("GET", f"/offers/{name}", "prov-b").json()["status"] == "open"
    assert_problem(world.call("GET", f"/offers/{name}", "op"), 404, "path.offer_id")


def test_a_stored_id_fits_the_id_columns() -> None:
    assert ids.own("job-1", "buy-a") == "buy-a~job-1"
    assert ids.own("buy-a~job-1", "buy-a") == "buy-a~job-1"
    assert len(ids.own("j" * 63, "m" * 64)) == 128
    with pytest.raises(ValidationError) as err:
        ids.own("j" * 64, "m" * 64)
    assert err.value.field == "body.id"
