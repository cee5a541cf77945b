"""What a hostile member or a faulty network found (issue "Trust and operations"), each
checked on SQLite and, with ``SUANGU_TEST_DATABASE_URL``, PostgreSQL: secrets never kept
for replays, reserved member ids, body size limits before the key is read, bounded YAML,
rate limits, slot ranges, plain-text names, and the OpenAPI document's errors and
``Allow`` headers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from suangu.api.app import create_app
from suangu.api.clock import ManualClock
from suangu.api.limits import Buckets
from suangu.api.schemas import MAX_SLOT
from suangu.api.settings import ApiSettings
from suangu.store.models import IdempotencyRow, MemberRow, Role
from suangu.store.repositories import Members

from .conftest import API, BACKENDS, EPOCH, NOW_SLOT, T0, Api, _database, build_world
from .test_bad_input import YAML_ORDER, assert_problem
from .test_pagination import LISTINGS


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def yaml_post(api: Api, text: str | bytes, who: str = "buy-a", **kw: Any) -> Any:
    raw = text.encode() if isinstance(text, str) else text
    headers = {"Content-Type": "application/yaml", **kw.pop("headers", {})}
    return api.call("POST", "/orders/yaml", who, content=raw, headers=headers, **kw)


# -- 5: API keys are never kept in idempotency records -----------------------------------------


def test_a_new_key_is_not_stored_and_its_replay_says_so(world: Api) -> None:
    world.member(fresh("team").lower(), Role.BUYER)
    member = next(m for m in reversed(world.tokens) if m.startswith("team-"))
    key = fresh("idem")
    r = world.call(
        "POST",
        f"/members/{member}/keys",
        "op",
        json={"label": "ci"},
        headers={"Idempotency-Key": key},
    )
    assert r.status_code == 201, r.text
    token, key_id = r.json()["token"], r.json()["id"]
    with world.db.session_scope(write=False) as s:
        stored = s.scalars(select(IdempotencyRow).where(IdempotencyRow.key == key)).one()
        assert token not in json.dumps(stored.body)
        assert stored.status == 409 and '"token"' not in json.dumps(stored.body)
        assert "sg_" not in json.dumps(stored.body)
    # A retry (the first answer was lost) mints no second key and shows no token.
    again = world.call(
        "POST",
        f"/members/{member}/keys",
        "op",
        json={"label": "ci"},
        headers={"Idempotency-Key": key},
    )
    body = assert_problem(again, 409, "header.Idempotency-Key")
    assert again.headers["idempotent-replayed"] == "true"
    assert body["code"] == "secret_not_replayable"
    assert key_id in body["detail"] and key_id in body["fix"]
    assert token not in again.text
    keys = world.call("GET", f"/members/{member}/keys", "op").json()["items"]
    assert [k["id"] for k in keys if k["label"] == "ci"] == [key_id]


def test_creating_a_key_needs_an_idempotency_key(world: Api) -> None:
    before = world.call("GET", "/members/buy-b/keys", "op").json()["items"]
    r = world.call("POST", "/members/buy-b/keys", "op", json={"label": "lost"})
    assert_problem(r, 422, "header.Idempotency-Key")
    assert world.call("GET", "/members/buy-b/keys", "op").json()["items"] == before


# -- 6: reserved member ids ----------------------------------------------------------------------


@pytest.mark.parametrize("member_id", ["exchange", "external", "Exchange", "bank", "issuer"])
def test_internal_account_owners_are_reserved_member_ids(world: Api, member_id: str) -> None:
    r = world.call(
        "POST", "/members", "op", json={"id": member_id, "name": "Sneaky", "role": "buyer"}
    )
    body = assert_problem(r, 422, "body.id")
    assert "reserved" in body["detail"]
    assert world.call("GET", f"/members/{member_id}", "op").status_code == 404


def test_a_member_never_sees_an_internal_account(small: Api) -> None:
    """Even a member whose id names an internal owner (created before the rule, behind the
    API's back) sees only member accounts."""
    with small.db.session_scope() as s:
        s.add(MemberRow(id="exchange", name="Old", role="buyer", created_at=T0))
        s.flush()
        small.tokens["exchange"] = Members(s).create_key("exchange", T0).token
    assert small.call("GET", "/accounts?limit=500", "exchange").json()["items"] == []
    r = small.call("GET", "/accounts/exchange:clearing:CNY", "exchange")
    assert_problem(r, 404, "path.account_id")
    r = small.call("GET", "/accounts/exchange:clearing:CNY/transfers", "exchange")
    assert_problem(r, 404, "path.account_id")


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Evil\u202egnp.exe", "Tab\there", "Zero\u200bwidth", "Bell\x07", "Iso\u2066late"]
)
def test_member_names_refuse_control_and_bidi_characters(world: Api, name: str) -> None:
    r = world.call("POST", "/members", "op", json={"id": fresh("m"), "name": name, "role": "buyer"})
    assert_problem(r, 422, "body.name")


def test_plain_names_in_any_script_are_fine(world: Api) -> None:
    r = world.call(
        "POST", "/members", "op", json={"id": fresh("m"), "name": "算谷 Café", "role": "buyer"}
    )
    assert r.status_code == 201, r.text


# -- 7: body size, before the key is read ------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def small(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    """An app with small limits: 4 KiB bodies, 2 KiB YAML, and tight rates."""
    for backend, db in _database(request.param, tmp_path):
        clock = ManualClock(T0)
        settings = ApiSettings(
            grid_epoch=EPOCH,
            horizon_slots=6,
            max_body_bytes=4096,
            max_yaml_bytes=2048,
            key_rate_per_s=0.01,
            key_burst=5,
            address_rate_per_s=0.01,
            address_burst=3,
            auth_failures_per_s=0.01,
            auth_failure_burst=2,
        )
        app = create_app(db, clock, settings, energy=False, dashboard=False)
        api = Api(TestClient(app), db, clock, backend)
        api.member("op", Role.OPERATOR)
        api.member("buy-a", Role.BUYER)
        yield api


def test_a_large_body_is_413_before_the_key_is_checked(small: Api) -> None:
    big = b"{" + b" " * 10_000 + b"}"
    for who in (None, "buy-a"):
        r = small.call(
            "POST", "/orders", who, content=big, headers={"Content-Type": "application/json"}
        )
        body = assert_problem(r, 413, "body")
        assert "4096" in body["fix"]


def _stream(app: Any, path: str, headers: list[tuple[bytes, bytes]], n: int) -> tuple[int, int]:
    """Send ``n`` chunks of 1 KiB to ``app`` without a length, as a server would pass a
    chunked body; the answer's status and how many chunks the app read."""
    import asyncio

    read = 0
    answer: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": b" " * 1024, "more_body": read < n}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.setdefault("status", message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.9", 5000),
        "server": ("testserver", 80),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    return answer["status"], read


def test_a_chunked_body_is_counted_as_it_streams(small: Api) -> None:
    """1 MB chunked to an endpoint, without a key: 413 once 4 KiB have come in."""
    json_type = [(b"content-type", b"application/json")]
    status, read = _stream(small.client.app, f"{API}/orders", json_type, 1000)
    assert status == 413
    assert read <= 5, read  # reading stopped at the limit


def test_a_chunked_yaml_body_is_counted_as_it_streams(small: Api) -> None:
    """Chunked YAML with a key: 413 at the YAML limit (2 KiB), not after reading it all."""
    headers = [
        (b"content-type", b"application/yaml"),
        (b"authorization", f"Bearer {small.tokens['buy-a']}".encode()),
    ]
    status, read = _stream(small.client.app, f"{API}/orders/yaml", headers, 1000)
    assert status == 413
    assert read <= 3, read


def test_yaml_over_the_yaml_limit_is_413(small: Api) -> None:
    r = yaml_post(small, YAML_ORDER + "# " + "x" * 3000 + "\n")
    assert_problem(r, 413, "body")


# -- 8: bounded YAML -------------------------------------------------------------------------


def test_deeply_nested_yaml_is_422_not_500(world: Api) -> None:
    for text in ("a: " + "[" * 5000 + "]" * 5000 + "\n", YAML_ORDER + "speed: " + "{a: " * 300):
        r = yaml_post(world, text)
        assert r.status_code in (400, 422), r.text
        assert r.json()["field"] == "body"


def test_a_5000_digit_integer_is_422_not_500(world: Api) -> None:
    r = yaml_post(world, YAML_ORDER.replace("gpus: 2", "gpus: " + "9" * 5000))
    body = assert_problem(r, 422, "body")
    assert "characters" in body["detail"]
    r = yaml_post(world, YAML_ORDER.replace("gpus: 2", "gpus: " + "9" * 4000))
    assert_problem(r, 422, "body.gpus")


def test_yaml_aliases_are_refused(world: Api) -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    body = assert_problem(yaml_post(world, laughs), 422, "body")
    assert "alias" in body["detail"]


def test_yaml_over_its_own_limit_is_413(world: Api) -> None:
    cap = world.client.app.state.ctx.settings.max_yaml_bytes
    r = yaml_post(world, YAML_ORDER + "#" * cap)
    assert_problem(r, 413, "body")


# -- 9: rate limits ----------------------------------------------------------------------------


def test_key_guessing_is_slowed_per_address(small: Api) -> None:
    statuses = [
        small.client.get(f"{API}/me", headers={"Authorization": f"Bearer sg_x_{i}"}).status_code
        for i in range(5)
    ]
    assert statuses[:2] == [401, 401] and set(statuses[2:]) == {429}, statuses
    # Even a good key from that address waits now: nothing is looked up until the wait is over.
    r = small.call("GET", "/me", "buy-a")
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["code"] == "rate_limited"


def test_each_key_has_its_own_rate(small: Api) -> None:
    got = [small.call("GET", "/me", "buy-a").status_code for _ in range(7)]
    assert got[:5] == [200] * 5 and got[5:] == [429, 429], got
    r = small.call("GET", "/me", "buy-a")
    assert int(r.headers["retry-after"]) >= 1
    assert small.call("GET", "/me", "op").status_code == 200  # another key is not held up


def test_anonymous_requests_are_limited_per_address(small: Api) -> None:
    got = [small.call("GET", "/market/grid", None).status_code for _ in range(5)]
    assert got == [200, 200, 200, 429, 429], got


def test_token_buckets_refill() -> None:
    b = Buckets(rate=2.0, burst=2)
    assert b.take("k", 0.0) == 0.0 and b.take("k", 0.0) == 0.0
    assert b.take("k", 0.0) == pytest.approx(0.5)
    assert b.take("k", 0.5) == 0.0
    small = Buckets(rate=1.0, burst=1, max_buckets=3)
    for i in range(10):
        small.take(str(i), 0.0)
    assert len(small._b) == 3


# -- Low: slot ranges -------------------------------------------------------------------------


@pytest.mark.parametrize("first_slot", [2**31, 2**31 - 1, MAX_SLOT + 1, 2**63])
def test_clearing_far_slots_is_422(world: Api, first_slot: int) -> None:
    r = world.call("POST", "/clearings", "op", json={"first_slot": first_slot, "n_slots": 1})
    assert_problem(r, 422, "body.first_slot")


def test_clearing_the_last_slot_works(world: Api) -> None:
    r = world.call(
        "POST", "/clearings", "op", json={"id": fresh("clr"), "first_slot": MAX_SLOT, "n_slots": 1}
    )
    assert r.status_code == 201, r.text


def test_prices_of_far_slots_are_422(world: Api) -> None:
    r = world.call("GET", f"/market/prices?first_slot={2**31}", None)
    assert_problem(r, 422, "query.first_slot")


# -- Low: OpenAPI errors and 405 ---------------------------------------------------------------


def test_every_operation_documents_its_problems(world: Api) -> None:
    spec = world.client.get("/openapi.json").json()
    assert "Problem" in spec["components"]["schemas"]
    for path, item in spec["paths"].items():
        for method, op in item.items():
            for status in ("400", "401", "404", "413", "422", "429"):
                content = op["responses"][status]["content"]
                assert list(content) == ["application/problem+json"], (method, path, status)


def test_405_allow_lists_the_paths_methods_as_documented(world: Api) -> None:
    spec = world.client.get("/openapi.json").json()
    for path, method in (("/orders", "PUT"), ("/members/op/keys", "PATCH"), ("/fees", "POST")):
        r = world.call(method, path, "op")
        assert_problem(r, 405, "path")
        documented = next(
            item
            for p, item in spec["paths"].items()
            if p.count("/") == (API + path).count("/")
            and all(
                a == b or a.startswith("{")
                for a, b in zip(p.split("/"), (API + path).split("/"), strict=True)
            )
        )
        allow = {m.strip() for m in r.headers["allow"].split(",")}
        assert allow == {m.upper() for m in documented}, (path, r.headers["allow"])


# -- 10: cancelling a partly filled order ---------------------------------------------------------


def test_a_partly_filled_order_can_be_cancelled(api: Api) -> None:
    """A big order filled in part by two clearings (one lease in the current slot, two in
    later slots): cancel stops what has not started (those leases fail, their clearing's hold
    is released at once), the running part settles as usual, the order is never offered
    again, and every fen is accounted for."""
    build_world(api)
    ledger = api.client.app.state.ctx.ledger
    before = ledger.lookup_account("buyer:buy-a:CNY")
    assert before is not None
    big = {
        "id": "big",
        "kind": "batch",
        "gpus": 4,
        "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 40,
        "limit_fen": 5000,
        "gpu_hours": 4 * 30,
        "regions": ["inner-mongolia"],
    }
    assert api.call("POST", "/orders", "buy-a", json=big).status_code == 201
    for cid, first, n in (("clr-now", NOW_SLOT, 1), ("clr-later", NOW_SLOT + 1, 2)):
        r = api.call(
            "POST", "/clearings", "op", json={"id": cid, "first_slot": first, "n_slots": n}
        )
        assert r.status_code == 201, r.text
    assert api.call("GET", "/orders/big", "buy-a").json()["status"] == "partially"
    leases = api.call("GET", "/leases?order_id=big", "buy-a").json()["items"]
    assert {x["clearing_id"] for x in leases} == {"clr-now", "clr-later"}
    held = ledger.lookup_account("buyer:buy-a:CNY")
    assert held is not None and held.debits_pending > before.debits_pending

    r = api.call("POST", "/orders/big/cancel", "buy-a", headers={"Idempotency-Key": "c-big"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    leases = api.call("GET", "/leases?order_id=buy-a~big", "op").json()["items"]
    leases = {x["id"]: x for x in leases}
    later = [x for x in leases.values() if x["clearing_id"] == "clr-later"]
    now_ = [x for x in leases.values() if x["clearing_id"] == "clr-now"]
    assert later and {x["state"] for x in later} == {"settled"}  # failed, then settled
    assert now_ and {x["state"] for x in now_} == {"scheduled"}  # its slot has begun: it runs
    after_cancel = ledger.lookup_account("buyer:buy-a:CNY")
    assert after_cancel is not None
    # clr-later's hold is released in full (nothing was metered on it), clr-now's still held.
    assert before.debits_pending < after_cancel.debits_pending < held.debits_pending
    assert after_cancel.debits_posted == before.debits_posted
    ledger.check_invariants()
    # Again: the same answer, nothing moves.
    again = api.call("POST", "/orders/big/cancel", "buy-a")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"

    # A later clearing never offers it again.
    r = api.call("POST", "/clearings", "op", json={"id": "clr-after", "first_slot": NOW_SLOT + 3})
    assert r.status_code == 201, r.text
    assert "buy-a~big" not in {x["order_id"] for x in r.json().get("allocations", [])}
    assert all(
        x["clearing_id"] != "clr-after"
        for x in api.call("GET", "/leases?order_id=buy-a~big", "op").json()["items"]
    )
    # The running lease completes with its reading and settles as usual: paid for what it ran.
    lease = now_[0]
    api.clock.set(EPOCH + (NOW_SLOT + 1) * 3600 + 10)
    r = api.call(
        "POST",
        f"/leases/{lease['id']}/readings",
        "prov-a",
        json={
            "id": "r-big",
            "interval_start": EPOCH + NOW_SLOT * 3600,
            "interval_end": EPOCH + (NOW_SLOT + 1) * 3600,
            "gpu_seconds": lease["gpus"] * 3600,
            "energy_wh": 100,
            "final": True,
        },
    )
    assert r.status_code == 201, r.text
    assert api.call("GET", f"/leases/{lease['id']}", "op").json()["state"] == "settled"
    end = ledger.lookup_account("buyer:buy-a:CNY")
    assert end is not None
    assert end.debits_pending == before.debits_pending
    assert end.debits_posted - before.debits_posted == lease["gpus"] * lease["price_fen"]
    ledger.check_invariants()
    assert api.call("GET", "/orders/big", "buy-a").json()["status"] == "cancelled"


def test_a_cleared_or_expired_order_is_still_409(world: Api) -> None:
    r = world.call("POST", "/orders/ord-buy-a/cancel", "buy-a")
    assert_problem(r, 409, "status")


# -- Low: pagination -----------------------------------------------------------------------------


def test_next_urls_never_echo_the_host_or_forwarded_headers(world: Api) -> None:
    spoof = {"Host": "evil.example", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "x.y"}
    page = world.call("GET", "/members?limit=1", "op", headers=spoof).json()
    assert page["next"].startswith(f"{API}/members?limit=1&cursor=")
    assert "evil" not in page["next"] and "https" not in page["next"]


def test_next_urls_use_the_configured_public_url(api: Api) -> None:
    app = create_app(
        api.db,
        api.clock,
        ApiSettings(grid_epoch=EPOCH, public_url="https://exchange.example/"),
        energy=False,
        dashboard=False,
    )
    client = TestClient(app)
    api.member("op", Role.OPERATOR)
    api.member("m-1", Role.BUYER)
    r = client.get(
        f"{API}/members?limit=1",
        headers={"Authorization": f"Bearer {api.tokens['op']}", "Host": "evil.example"},
    )
    assert r.json()["next"].startswith(f"https://exchange.example{API}/members?limit=1&cursor=")


def test_a_page_of_leases_reads_one_page_from_the_database(world: Api) -> None:
    from sqlalchemy import event

    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = world.db.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        page = world.call("GET", "/leases?limit=1", "op").json()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(page["items"]) == 1 and page["next_cursor"]
    reads = [x for x in statements if "FROM leases" in x]
    assert reads and all("LIMIT" in x.upper() for x in reads), reads
    second = world.call("GET", f"/leases?limit=1&cursor={page['next_cursor']}", "op").json()
    whole = world.call("GET", "/leases?limit=2", "op").json()["items"]
    assert page["items"] + second["items"] == whole


@pytest.mark.parametrize(
    ("path", "who"), [*LISTINGS, ("/leases", "buy-a"), ("/leases", "op"), ("/audit", "aud")]
)
def test_offset_cursors_are_read_by_every_listing(world: Api, path: str, who: str) -> None:
    whole = world.call("GET", f"{path}?limit=500", who).json()["items"]
    assert whole
    page = world.call("GET", f"{path}?limit=2&cursor=o:0", who).json()
    assert page["items"] == whole[:2]


# -- Low: ids in a member's own namespace ---------------------------------------------------------


def _order(order_id: str) -> dict[str, Any]:
    return {
        "id": order_id,
        "kind": "batch",
        "gpus": 1,
        "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 2,
        "limit_fen": 100,
        "gpu_hours": 1,
    }


def test_ids_in_a_members_namespace_are_its_alone(world: Api) -> None:
    """``buy-b~x`` can only be buy-b's: buy-a asking for it is refused whether or not it
    exists (the answer tells nothing about buy-b), and the same name in buy-a's namespace
    never meets buy-b's."""
    name = fresh("job")
    for who in ("buy-a", "buy-b"):
        r = world.call("POST", "/orders", who, json=_order(f"{who}~{name}"))
        assert r.status_code == 201, r.text
        assert r.json()["id"] == f"{who}~{name}"
    before = world.call("POST", "/orders", "buy-a", json=_order(f"buy-b~{name}"))
    never = world.call("POST", "/orders", "buy-a", json=_order(f"buy-b~{fresh('none')}"))
    for r in (before, never):
        body = assert_problem(r, 422, "body.id")
        assert "namespace" in body["detail"]
    assert before.json()["fix"] == never.json()["fix"]
    yaml = YAML_ORDER.replace("id: yaml-1", f"id: buy-b~{name}y")
    assert_problem(yaml_post(world, yaml), 422, "body.id")
    got = world.call("GET", f"/orders/buy-a~{name}", "buy-a").json()
    assert got["buyer_id"] == "buy-a"


def test_offer_ids_in_a_providers_namespace_are_its_alone(world: Api) -> None:
    offer = {
        "pool_id": "site-a-h100",
        "start_slot": NOW_SLOT + 60,
        "gpus": [1],
        "reserve_fen": [5],
    }
    r = world.call("POST", "/offers", "prov-a", json={"id": f"prov-b~{fresh('o')}", **offer})
    assert_problem(r, 422, "body.id")
    r = world.call("POST", "/offers", "prov-a", json={"id": f"prov-a~{fresh('o')}", **offer})
    assert r.status_code == 201, r.text
