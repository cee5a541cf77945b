"""Bad input: each a 4xx problem (RFC 9457) naming the field, and nothing half-written."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from suangu.store.models import (
    IdempotencyRow,
    MeterReadingRow,
    OfferRow,
    OrderRow,
    PoolRow,
    SiteRow,
)

from .conftest import NOW_SLOT, Api

GOOD_ORDER: dict[str, Any] = {
    "id": "bad-1",
    "kind": "batch",
    "gpus": 2,
    "release_slot": NOW_SLOT,
    "deadline_slot": NOW_SLOT + 4,
    "limit_fen": 1500,
    "gpu_hours": 4,
}


def with_(**changes: Any) -> dict[str, Any]:
    out = {**GOOD_ORDER, **changes}
    return {k: v for k, v in out.items() if v is not ...}


JSON_ORDERS = [
    ("unknown field", with_(colour="green"), 422, "body.colour"),
    ("missing field", with_(limit_fen=...), 422, "body.limit_fen"),
    ("negative gpus", with_(gpus=-3), 422, "body.gpus"),
    ("zero gpus", with_(gpus=0), 422, "body.gpus"),
    ("absurd gpus", with_(gpus=10**12), 422, "body.gpus"),
    ("absurd limit", with_(limit_fen=10**15), 422, "body.limit_fen"),
    ("gpus as text", with_(gpus="2"), 422, "body.gpus"),
    ("gpus as bool", with_(gpus=True), 422, "body.gpus"),
    ("fractional gpus", with_(gpus=1.5), 422, "body.gpus"),
    ("unknown kind", with_(kind="spot"), 422, "body.kind"),
    ("unknown GPU class", with_(gpu_classes=["H9000"]), 422, "body.gpu_classes"),
    ("deadline before release", with_(deadline_slot=NOW_SLOT), 422, "body.deadline_slot"),
    ("window in the past", with_(release_slot=10, deadline_slot=20), 422, "body.deadline_slot"),
    ("release in the past", with_(release_slot=NOW_SLOT - 1), 422, "body.release_slot"),
    ("batch without work", with_(gpu_hours=0), 422, "body.gpu_hours"),
    ("latency without home", with_(max_latency_ms=20.0), 422, "body.home"),
    ("green share above 1", with_(min_green_share=1.5), 422, "body.min_green_share"),
    ("id with a colon", with_(id="a:b"), 422, "body.id"),
    ("NaN latency", with_(max_latency_ms="NaN", home="beijing"), 422, "body.max_latency_ms"),
    ("data without home", with_(data_gb=100), 422, "body.home"),
    ("negative data", with_(data_gb=-1, home="beijing"), 422, "body.data_gb"),
    ("data as text", with_(data_gb="100", home="beijing"), 422, "body.data_gb"),
    ("unknown reference class", with_(reference_class="H9000"), 422, "body.reference_class"),
    ("speed of an unknown class", with_(speed={"H9000": 2.0}), 422, "body.speed.H9000"),
    ("speed above the bound", with_(speed={"H100": 500.0}), 422, "body.speed.H100"),
    ("zero speed", with_(speed={"H100": 0}), 422, "body.speed.H100"),
]


def counts(api: Api) -> dict[str, int]:
    with api.db.session_scope(write=False) as s:
        return {
            t.__tablename__: int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in (OrderRow, SiteRow, PoolRow, OfferRow, MeterReadingRow, IdempotencyRow)
        }


def assert_problem(r: Any, status: int, field: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["field"] == field, body
    assert body["fix"], body
    assert body["type"].startswith("https://")
    return body


@pytest.mark.parametrize(
    ("what", "body", "status", "field"), JSON_ORDERS, ids=[c[0] for c in JSON_ORDERS]
)
def test_bad_json_orders(
    world: Api, what: str, body: dict[str, Any], status: int, field: str
) -> None:
    before = counts(world)
    r = world.call("POST", "/orders", "buy-a", json=body, headers={"Idempotency-Key": what})
    assert_problem(r, status, field)
    assert counts(world) == before


@pytest.mark.parametrize(
    "raw", [b'{"id": "x", ', b"", b"[1, 2", b"\xff\xfe"], ids=["cut", "empty", "list", "bytes"]
)
def test_malformed_json(world: Api, raw: bytes) -> None:
    before = counts(world)
    r = world.call(
        "POST", "/orders", "buy-a", content=raw, headers={"Content-Type": "application/json"}
    )
    assert r.status_code in (400, 422), r.text
    assert r.json()["field"] == "body"
    assert counts(world) == before


YAML_ORDER = f"""
id: yaml-1
buyer: buy-a
kind: batch
gpus: 2
gpu_hours: 4
release: {NOW_SLOT}
deadline: {NOW_SLOT + 4}
limit: 15.00
"""

YAML_CASES = [
    ("malformed", "id: [unclosed\nkind: batch\n", 400, "body"),
    ("not a mapping", "- 1\n- 2\n", 400, "body"),
    ("unknown field", YAML_ORDER + "colour: green\n", 422, "body.colour"),
    ("negative gpus", YAML_ORDER.replace("gpus: 2", "gpus: -2"), 422, "body.gpus"),
    ("absurd gpus", YAML_ORDER.replace("gpus: 2", "gpus: 99999999999"), 422, "body.gpus"),
    ("fen in limit", YAML_ORDER.replace("15.00", "15.001"), 422, "body.limit"),
    ("unknown GPU class", YAML_ORDER + "gpu_classes: H9000\n", 422, "body.gpu_classes"),
    ("data without home", YAML_ORDER + "data_gb: 100\n", 422, "body.home"),
    ("negative data", YAML_ORDER + "home: beijing\ndata_gb: -5\n", 422, "body.data_gb"),
    (
        "unknown reference class",
        YAML_ORDER + "reference_class: H9000\n",
        422,
        "body.reference_class",
    ),
    ("speed of an unknown class", YAML_ORDER + "speed: {H9000: 2}\n", 422, "body.speed.H9000"),
    ("speed above the bound", YAML_ORDER + "speed: {H100: 500}\n", 422, "body.speed.H100"),
    ("other buyer", YAML_ORDER.replace("buyer: buy-a", "buyer: buy-b"), 422, "body.buyer"),
    (
        "window in the past",
        YAML_ORDER.replace(f"release: {NOW_SLOT}", "release: 1").replace(
            f"deadline: {NOW_SLOT + 4}", "deadline: 5"
        ),
        422,
        "body.deadline",
    ),
    (
        "second order bad",
        "orders:\n"
        + "\n".join(
            "  - " + YAML_ORDER.strip().replace("\n", "\n    ").replace("yaml-1", f"yaml-{i}")
            for i in (2, 3)
        )
        .replace("gpus: 2", "gpus: 0", 2)
        .replace("gpus: 0", "gpus: 2", 1),
        422,
        "body.orders[1].gpus",
    ),
]


@pytest.mark.parametrize(
    ("what", "text", "status", "field"), YAML_CASES, ids=[c[0] for c in YAML_CASES]
)
def test_bad_yaml_orders(world: Api, what: str, text: str, status: int, field: str) -> None:
    before = counts(world)
    r = world.call(
        "POST",
        "/orders/yaml",
        "buy-a",
        content=text.encode(),
        headers={"Content-Type": "application/yaml"},
    )
    assert_problem(r, status, field)
    assert counts(world) == before


def test_yaml_needs_a_yaml_content_type(world: Api) -> None:
    r = world.call(
        "POST",
        "/orders/yaml",
        "buy-a",
        content=YAML_ORDER.encode(),
        headers={"Content-Type": "text/plain"},
    )
    assert_problem(r, 415, "header.Content-Type")


def test_good_yaml_order_stream_is_all_stored(world: Api) -> None:
    text = "orders:\n" + "\n".join(
        "  - " + YAML_ORDER.strip().replace("\n", "\n    ").replace("yaml-1", f"ys-{i}")
        for i in range(3)
    )
    r = world.call(
        "POST",
        "/orders/yaml",
        "buy-a",
        content=text.encode(),
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 201, r.text
    items = r.json()["items"]
    assert [o["id"] for o in items] == ["buy-a~ys-0", "buy-a~ys-1", "buy-a~ys-2"]
    assert {o["limit_fen"] for o in items} == {1500}
    assert {o["buyer_id"] for o in items} == {"buy-a"}


OTHER_WRITES = [
    (
        "pool with unknown GPU class",
        "prov-a",
        "POST",
        "/pools",
        {"id": "p-x", "site_id": "site-a", "gpu_class": "H9000"},
        422,
        "body.gpu_class",
    ),
    (
        "pool on another's site",
        "prov-a",
        "POST",
        "/pools",
        {"id": "p-y", "site_id": "site-b", "gpu_class": "H100"},
        404,
        "body.site_id",
    ),
    (
        "site with bad PUE",
        "prov-a",
        "POST",
        "/sites",
        {
            "id": "s-x",
            "name": "X",
            "province": "P",
            "region": "r",
            "lat": 1.0,
            "lon": 1.0,
            "pue": 0.5,
        },
        422,
        "body.pue",
    ),
    (
        "site for another provider",
        "prov-a",
        "POST",
        "/sites",
        {
            "id": "s-y",
            "name": "X",
            "province": "P",
            "region": "r",
            "lat": 1.0,
            "lon": 1.0,
            "provider_id": "prov-b",
        },
        422,
        "body.provider_id",
    ),
    (
        "offer reserves do not match",
        "prov-a",
        "POST",
        "/offers",
        {
            "id": "f-x",
            "pool_id": "site-a-h100",
            "start_slot": NOW_SLOT,
            "gpus": [1, 2, 3],
            "reserve_fen": [1, 2],
        },
        422,
        "body.reserve_fen",
    ),
    (
        "offer in the past",
        "prov-a",
        "POST",
        "/offers",
        {"id": "f-y", "pool_id": "site-a-h100", "start_slot": 1, "gpus": [1], "reserve_fen": [1]},
        422,
        "body.start_slot",
    ),
    (
        "negative offer",
        "prov-a",
        "POST",
        "/offers",
        {
            "id": "f-z",
            "pool_id": "site-a-h100",
            "start_slot": NOW_SLOT,
            "gpus": [-1],
            "reserve_fen": [1],
        },
        422,
        "body.gpus[0]",
    ),
    (
        "member with unknown role",
        "op",
        "POST",
        "/members",
        {"id": "m-x", "name": "X", "role": "king"},
        422,
        "body.role",
    ),
    (
        "deposit to a provider",
        "op",
        "POST",
        "/deposits",
        {"id": "d-x", "member_id": "prov-a", "amount_fen": 5},
        422,
        "body.member_id",
    ),
    (
        "negative deposit",
        "op",
        "POST",
        "/deposits",
        {"id": "d-y", "member_id": "buy-a", "amount_fen": -5},
        422,
        "body.amount_fen",
    ),
    ("fee above 100%", "op", "PUT", "/fees", {"fee_bp": 10_001}, 422, "body.fee_bp"),
    (
        "clearing in the past",
        "op",
        "POST",
        "/clearings",
        {"first_slot": 3},
        422,
        "body.first_slot",
    ),
]


@pytest.mark.parametrize(
    ("what", "who", "method", "path", "body", "status", "field"),
    OTHER_WRITES,
    ids=[c[0] for c in OTHER_WRITES],
)
def test_bad_writes(
    world: Api,
    what: str,
    who: str,
    method: str,
    path: str,
    body: dict[str, Any],
    status: int,
    field: str,
) -> None:
    before = counts(world)
    assert_problem(world.call(method, path, who, json=body), status, field)
    assert counts(world) == before


def test_bad_meter_readings(world: Api) -> None:
    lease = world.call("GET", "/leases", "prov-a").json()["items"][0]
    t = world.clock.now()
    base = {"id": "r-bad", "interval_start": t, "interval_end": t + 10, "gpu_seconds": 1}
    before = counts(world)
    for body, field in (
        ({**base, "interval_end": t}, "body.interval_end"),
        ({**base, "gpu_seconds": lease["gpus"] * 10 + 1}, "body.gpu_seconds"),
        ({**base, "gpu_seconds": -1}, "body.gpu_seconds"),
        ({**base, "extra": 1}, "body.extra"),
    ):
        r = world.call("POST", f"/leases/{lease['id']}/readings", "prov-a", json=body)
        assert_problem(r, 422, field)
    assert counts(world) == before


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "query.limit"), ("limit=100000", "query.limit"), ("cursor=zzz", "query.cursor")],
)
def test_bad_pagination(world: Api, query: str, field: str) -> None:
    assert_problem(world.call("GET", f"/orders?{query}", "buy-a"), 422, field)


def test_bad_idempotency_key(world: Api) -> None:
    r = world.call(
        "PUT", "/fees", "op", json={"fee_bp": 300}, headers={"Idempotency-Key": "x" * 300}
    )
    assert_problem(r, 422, "header.Idempotency-Key")


def test_unknown_route_and_method_are_problems(world: Api) -> None:
    assert_problem(world.call("GET", "/nowhere", "op"), 404, "path")
    assert_problem(world.call("PATCH", "/fees", "op", json={}), 405, "path")


def test_reused_order_ids(world: Api) -> None:
    body = with_(id="reuse-1")
    assert world.call("POST", "/orders", "buy-a", json=body).status_code == 201
    assert world.call("POST", "/orders", "buy-a", json=body).status_code == 201  # the same
    before = counts(world)
    assert_problem(world.call("POST", "/orders", "buy-a", json={**body, "gpus": 3}), 409, "body.id")
    assert counts(world) == before
    # Ids are per member: another buyer's reuse-1 is its own order (tests/.../test_ids.py).
    r = world.call("POST", "/orders", "buy-b", json=body)
    assert r.status_code == 201 and r.json()["id"] == "buy-b~reuse-1", r.text


def test_an_unexpected_error_is_a_problem_too(world: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from suangu.api.routes import ledger

    def boom(*args: Any) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ledger, "fee_bp", boom)
    client = TestClient(world.client.app, raise_server_exceptions=False)
    r = client.get("/api/v1/fees", headers=world.h("op"))
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "disk" not in r.text


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("first_slot=10&end_slot=5", "query.end_slot"),
        ("first_slot=0&end_slot=100000", "query.end_slot"),
        ("first_slot=-1", "query.first_slot"),
    ],
)
def test_bad_market_ranges(world: Api, query: str, field: str) -> None:
    assert_problem(world.call("GET", f"/market/prices?{query}", None), 422, field)


def test_bad_list_filters(world: Api) -> None:
    assert_problem(world.call("GET", "/leases?state=lost", "op"), 422, "query.state[0]")
    assert_problem(world.call("GET", "/orders?status=won", "op"), 422, "query.status")
