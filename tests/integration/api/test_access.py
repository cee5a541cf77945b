"""The access matrix: every endpoint x every role x own/other member's object.

The table below states who may do what, independently of the app; the test enumerates the
app's OpenAPI routes and fails if one is missing from the table. Expected answers: the
route's success status where allowed, 401 without a key, 403 for a role that may not use the
endpoint, 404 for another member's object (sealed: its existence is not revealed).
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from suangu.core.types import Allocation, ClearingResult, ClearingStatus, Offer
from suangu.store.db import Database
from suangu.store.models import Role
from suangu.store.repositories import Capacity, Clearings, Members, Orders

from .conftest import API, EPOCH, NOW_SLOT, Api, order

OP, AUD, PROV, BUY = Role.OPERATOR, Role.AUDITOR, Role.PROVIDER, Role.BUYER
ROLES = (OP, AUD, PROV, BUY, None)  # None: no key
ME = {OP: "op", AUD: "aud", PROV: "prov-a", BUY: "buy-a", None: "buy-a"}
ALL = "all"
OWN = "own"
#: Its own objects' bytes; another member's (whose metadata it reads): 403.
BYTES = "bytes"
PUBLIC = {r: ALL for r in ROLES}
SIGNED_IN = {OP: ALL, AUD: ALL, PROV: ALL, BUY: ALL}


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class Target:
    """Whose objects a call names: side A (the caller's own) or side B (another member's)."""

    api: Api
    role: Role | None
    mine: bool

    @property
    def buyer(self) -> str:
        return "buy-a" if self.mine else "buy-b"

    @property
    def provider(self) -> str:
        return "prov-a" if self.mine else "prov-b"

    @property
    def member(self) -> str:
        if self.mine:
            return ME[self.role]
        return "prov-b" if self.role is PROV else "buy-b"

    @property
    def site(self) -> str:
        return "site-a" if self.mine else "site-b"

    @property
    def pool(self) -> str:
        return f"{self.site}-h100"

    @property
    def db(self) -> Database:
        return self.api.db

    def lease(self) -> str:
        r = self.api.call("GET", f"/leases?order_id=ord-{self.buyer}", "op")
        return str(r.json()["items"][0]["id"])

    def fresh_lease(self) -> str:
        """A scheduled lease of its own (unheld) on the provider's pool, to fail."""
        oid = self.fresh_order()
        cid = fresh("clr")
        a = Allocation(oid, self.buyer, self.pool, NOW_SLOT, 1, 0)
        result = ClearingResult(ClearingStatus.OPTIMAL, "test", (a,), (), (), 0)
        with self.db.session_scope() as s:
            leases = Clearings(s).save(
                cid, self.api.clock.now(), NOW_SLOT, 1, result, providers={self.pool: self.provider}
            )
        return leases[0].id

    def future_lease(self) -> str:
        """A scheduled lease of the buyer's, beyond the resale notice."""
        oid = self.fresh_order()
        a = Allocation(oid, self.buyer, self.pool, NOW_SLOT + 2, 1, 0)
        result = ClearingResult(ClearingStatus.OPTIMAL, "test", (a,), (), (), 0)
        with self.db.session_scope() as s:
            leases = Clearings(s).save(
                fresh("clr"),
                self.api.clock.now(),
                NOW_SLOT,
                3,
                result,
                providers={self.pool: self.provider},
            )
        return leases[0].id

    def fresh_resale(self) -> str:
        """An open resale of the buyer's."""
        from suangu.store.models import ResaleRow

        rid, lease = fresh("rs"), self.future_lease()
        with self.db.session_scope() as s:
            s.add(
                ResaleRow(
                    id=rid,
                    seller_id=self.buyer,
                    lease_id=lease,
                    reserve_fen=5,
                    status="open",
                    created_at=self.api.clock.now(),
                )
            )
        return rid

    def account(self) -> str:
        if self.role is PROV:
            return f"provider:{self.provider}:CNY"
        return f"buyer:{self.buyer}:CNY"

    def fresh_key(self) -> str:
        with self.db.session_scope() as s:
            return Members(s).create_key(self.member, self.api.clock.now()).key.id

    def fresh_order(self) -> str:
        oid = fresh("ord")
        with self.db.session_scope() as s:
            Orders(s).submit(order(oid, self.buyer), self.api.clock.now())
        return oid

    def data_object(self) -> str:
        """A data object of the member the call names (stored as an upload would be)."""
        from suangu.store.dataobjects import DataObjects, object_id

        name, data = fresh("f"), b"bytes"
        sha = hashlib.sha256(data).hexdigest()
        oid = object_id(self.member, name, sha)
        sealed = self.api.client.app.state.objects.put(oid, data)
        with self.db.session_scope() as s:
            DataObjects(s).add(oid, self.member, name, sha, len(data), sealed, 0)
        return oid

    def workload_lease(self) -> str:
        """A lease in the current slot of a fresh order with a workload (URI input, one
        output ``out/x``) on the provider's pool."""
        from suangu.api import workloads
        from suangu.workload import WorkloadSpec

        oid = fresh("ord")
        spec = WorkloadSpec.model_validate(
            {
                "runtime": {"kind": "process", "command": ["true"]},
                "inputs": [{"uri": "https://data.example/x", "sha256": "a" * 64, "size": 0}],
                "outputs": ["out/x"],
                "checkpoint": True,
            }
        )
        now = self.api.clock.now()
        store = self.api.client.app.state.objects
        a = Allocation(oid, self.buyer, self.pool, NOW_SLOT, 1, 0)
        result = ClearingResult(ClearingStatus.OPTIMAL, "test", (a,), (), (), 0)
        with self.db.session_scope() as s:
            record = Orders(s).submit(order(oid, self.buyer), now)
            workloads.attach(s, store, record.order, spec, now)
            leases = Clearings(s).save(
                fresh("clr"), now, NOW_SLOT, 1, result, providers={self.pool: self.provider}
            )
        return leases[0].id

    def reported_lease(self) -> str:
        """A fresh lease whose provider reported its end."""
        from suangu.store.models import LeaseReportRow

        lid = self.fresh_lease()
        with self.db.session_scope() as s:
            s.add(
                LeaseReportRow(
                    lease_id=lid,
                    provider_id=self.provider,
                    outcome="failed",
                    exit_code=1,
                    reason="exit code 1",
                    outputs=[],
                    reported_at=0,
                )
            )
        return lid

    def fresh_offer(self) -> str:
        oid = fresh("offer")
        offer = Offer.over(oid, self.provider, self.pool, NOW_SLOT + 50, NOW_SLOT + 52, 1, 10)
        with self.db.session_scope() as s:
            Capacity(s).add_offer(offer, self.api.clock.now())
        return oid


Params = Callable[[Target], dict[str, str]]
Body = Callable[[Target], dict[str, Any]]


@dataclass(frozen=True)
class Rule:
    ok: int
    policy: dict[Role | None, str]
    params: Params = lambda t: {}
    body: Body = lambda t: {}


def site_body(t: Target) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": fresh("site"),
        "name": "New",
        "province": "Gansu",
        "region": "gansu",
        "lat": 35.0,
        "lon": 107.0,
    }
    if t.role is OP:
        body["provider_id"] = "prov-a"
    return {"json": body}


ORDER_JSON: Body = lambda t: {  # noqa: E731
    "json": {
        "id": fresh("ord"),
        "kind": "batch",
        "gpus": 1,
        "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 2,
        "limit_fen": 1,
        "gpu_hours": 1,
    }
}
ORDER_YAML: Body = lambda t: {  # noqa: E731
    "content": f"id: {fresh('ord')}\nbuyer: buy-a\nkind: batch\ngpus: 1\ngpu_hours: 1\n"
    f"release: {NOW_SLOT}\ndeadline: {NOW_SLOT + 2}\nlimit: 0.01\n",
    "headers": {"Content-Type": "application/yaml"},
}

RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/me"): Rule(200, SIGNED_IN),
    ("POST", "/members"): Rule(
        201, {OP: ALL}, body=lambda t: {"json": {"id": fresh("m"), "name": "M", "role": "buyer"}}
    ),
    ("GET", "/members"): Rule(200, {OP: ALL, AUD: ALL}),
    ("GET", "/members/{member_id}"): Rule(
        200, {OP: ALL, AUD: ALL, PROV: OWN, BUY: OWN}, lambda t: {"member_id": t.member}
    ),
    ("POST", "/members/{member_id}/keys"): Rule(
        201,
        {OP: ALL},
        lambda t: {"member_id": t.member},
        lambda t: {"json": {"label": "x"}, "headers": {"Idempotency-Key": fresh("k")}},
    ),
    ("GET", "/members/{member_id}/keys"): Rule(
        200, {OP: ALL, AUD: ALL, PROV: OWN, BUY: OWN}, lambda t: {"member_id": t.member}
    ),
    ("DELETE", "/members/{member_id}/keys/{key_id}"): Rule(
        200,
        {OP: ALL, PROV: OWN, BUY: OWN},
        lambda t: {"member_id": t.member, "key_id": t.fresh_key()},
    ),
    ("POST", "/sites"): Rule(201, {OP: ALL, PROV: ALL}, body=site_body),
    ("GET", "/sites"): Rule(200, SIGNED_IN),
    ("GET", "/sites/{site_id}"): Rule(200, SIGNED_IN, lambda t: {"site_id": t.site}),
    ("PUT", "/sites/{site_id}/energy"): Rule(
        200,
        {OP: ALL, PROV: OWN},
        lambda t: {"site_id": t.site},
        lambda t: {"json": {"series": [{"hour": EPOCH + 3600 * NOW_SLOT, "green_share": 0.0}]}},
    ),
    ("PUT", "/sites/{site_id}/energy/series"): Rule(
        200,
        {OP: ALL, PROV: OWN},
        lambda t: {"site_id": t.site},
        lambda t: {
            "content": f"hour,green_share\n{EPOCH + 3600 * NOW_SLOT},0\n".encode(),
            "headers": {"Content-Type": "text/csv"},
        },
    ),
    ("GET", "/sites/{site_id}/energy"): Rule(200, SIGNED_IN, lambda t: {"site_id": t.site}),
    ("GET", "/buyers/{buyer_id}/carbon-statement"): Rule(
        200, {OP: ALL, AUD: ALL, BUY: OWN}, lambda t: {"buyer_id": t.buyer}
    ),
    ("GET", "/providers/{provider_id}/certificates"): Rule(
        200, {OP: ALL, AUD: ALL, PROV: OWN}, lambda t: {"provider_id": t.provider}
    ),
    ("POST", "/pools"): Rule(
        201,
        {OP: ALL, PROV: OWN},
        body=lambda t: {"json": {"id": fresh("pool"), "site_id": t.site, "gpu_class": "A800"}},
    ),
    ("GET", "/pools"): Rule(200, SIGNED_IN),
    ("GET", "/pools/{pool_id}"): Rule(200, SIGNED_IN, lambda t: {"pool_id": t.pool}),
    ("POST", "/offers"): Rule(
        201,
        {PROV: OWN},
        body=lambda t: {
            "json": {
                "id": fresh("offer"),
                "pool_id": t.pool,
                "start_slot": NOW_SLOT + 60,
                "gpus": [1, 1],
                "reserve_fen": [5],
            }
        },
    ),
    ("GET", "/offers"): Rule(200, {OP: ALL, AUD: ALL, PROV: ALL}),
    ("GET", "/offers/{offer_id}"): Rule(
        200, {OP: ALL, AUD: ALL, PROV: OWN}, lambda t: {"offer_id": f"offer-{t.provider}"}
    ),
    ("POST", "/offers/{offer_id}/withdraw"): Rule(
        200, {PROV: OWN}, lambda t: {"offer_id": t.fresh_offer()}
    ),
    ("POST", "/orders"): Rule(201, {BUY: ALL}, body=ORDER_JSON),
    ("POST", "/orders/yaml"): Rule(201, {BUY: ALL}, body=ORDER_YAML),
    ("GET", "/orders"): Rule(200, {OP: ALL, AUD: ALL, BUY: ALL}),
    ("GET", "/orders/{order_id}"): Rule(
        200, {OP: ALL, AUD: ALL, BUY: OWN}, lambda t: {"order_id": f"ord-{t.buyer}"}
    ),
    ("POST", "/orders/{order_id}/cancel"): Rule(
        200, {BUY: OWN}, lambda t: {"order_id": t.fresh_order()}
    ),
    ("POST", "/clearings"): Rule(
        201, {OP: ALL}, body=lambda t: {"json": {"id": fresh("clr"), "n_slots": 2}}
    ),
    ("POST", "/resales"): Rule(
        201,
        {BUY: OWN},
        body=lambda t: {
            "json": {"id": fresh("rs"), "lease_id": t.future_lease(), "reserve_fen": 5}
        },
    ),
    ("GET", "/resales"): Rule(200, {OP: ALL, AUD: ALL, BUY: ALL}),
    ("GET", "/resales/{resale_id}"): Rule(
        200, {OP: ALL, AUD: ALL, BUY: OWN}, lambda t: {"resale_id": t.fresh_resale()}
    ),
    ("POST", "/resales/{resale_id}/withdraw"): Rule(
        200, {BUY: OWN}, lambda t: {"resale_id": t.fresh_resale()}
    ),
    ("GET", "/clearings"): Rule(200, {OP: ALL, AUD: ALL}),
    ("GET", "/clearings/{clearing_id}"): Rule(
        200, {OP: ALL, AUD: ALL}, lambda t: {"clearing_id": "clr-world"}
    ),
    ("GET", "/market/grid"): Rule(200, PUBLIC),
    ("GET", "/market/prices"): Rule(200, PUBLIC),
    ("GET", "/market/index"): Rule(200, PUBLIC),
    ("GET", "/market/depth"): Rule(200, SIGNED_IN),
    ("GET", "/market/quote"): Rule(
        200,
        {BUY: ALL},
        body=lambda t: {
            "params": {
                "kind": "batch",
                "gpus": 1,
                "gpu_hours": 1,
                "deadline_slot": NOW_SLOT + 2,
                "limit_fen": 1,
            }
        },
    ),
    ("GET", "/links"): Rule(200, PUBLIC),
    ("PUT", "/links"): Rule(
        200,
        {OP: ALL},
        body=lambda t: {
            "json": {
                "links": [
                    {
                        "from_region": "gansu",
                        "to_region": "east",
                        "latency_ms": 30,
                        "bandwidth_gbps": 10,
                        "price_fen_per_gb": 5,
                    }
                ]
            }
        },
    ),
    ("GET", "/leases"): Rule(200, SIGNED_IN),
    ("GET", "/leases/{lease_id}"): Rule(
        200, {OP: ALL, AUD: ALL, PROV: OWN, BUY: OWN}, lambda t: {"lease_id": t.lease()}
    ),
    ("GET", "/leases/{lease_id}/readings"): Rule(
        200, {OP: ALL, AUD: ALL, PROV: OWN, BUY: OWN}, lambda t: {"lease_id": t.lease()}
    ),
    ("POST", "/leases/{lease_id}/readings"): Rule(
        201,
        {PROV: OWN},
        lambda t: {"lease_id": t.lease()},
        lambda t: {
            "json": {
                "id": fresh("r"),
                "interval_start": t.api.clock.now(),
                "interval_end": t.api.clock.now() + 1,
                "gpu_seconds": 1,
            }
        },
    ),
    ("POST", "/readings"): Rule(
        201,
        {PROV: OWN},
        body=lambda t: {
            "json": [
                {
                    "lease_id": t.lease(),
                    "id": fresh("r"),
                    "interval_start": t.api.clock.now() - 30,
                    "interval_end": t.api.clock.now() - 29,
                    "gpu_seconds": 1,
                }
            ]
        },
    ),
    ("POST", "/leases/{lease_id}/fail"): Rule(
        200, {PROV: OWN}, lambda t: {"lease_id": t.fresh_lease()}
    ),
    ("GET", "/providers/records"): Rule(200, SIGNED_IN),
    ("GET", "/providers/{provider_id}/record"): Rule(
        200, SIGNED_IN, lambda t: {"provider_id": "prov-a"}
    ),
    ("POST", "/agents/heartbeat"): Rule(
        200, {PROV: ALL}, body=lambda t: {"json": {"instance": "access"}}
    ),
    ("GET", "/accounts"): Rule(200, SIGNED_IN),
    ("GET", "/accounts/{account_id}"): Rule(
        200, {OP: ALL, AUD: ALL, PROV: OWN, BUY: OWN}, lambda t: {"account_id": t.account()}
    ),
    ("GET", "/accounts/{account_id}/transfers"): Rule(
        200, {OP: ALL, AUD: ALL, PROV: OWN, BUY: OWN}, lambda t: {"account_id": t.account()}
    ),
    ("POST", "/deposits"): Rule(
        201,
        {OP: ALL},
        body=lambda t: {"json": {"id": fresh("d"), "member_id": t.buyer, "amount_fen": 100}},
    ),
    ("POST", "/data"): Rule(
        201,
        {BUY: ALL},
        body=lambda t: {"params": {"name": fresh("f")}, "content": b"data"},
    ),
    ("GET", "/data"): Rule(200, SIGNED_IN),
    ("GET", "/data/events"): Rule(200, SIGNED_IN),
    ("POST", "/leases/{lease_id}/checkpoint"): Rule(
        201,
        {PROV: OWN},
        lambda t: {"lease_id": t.workload_lease()},
        lambda t: {"content": fresh("ckpt").encode()},
    ),
    ("POST", "/leases/{lease_id}/logs"): Rule(
        201,
        {PROV: OWN},
        lambda t: {"lease_id": t.workload_lease()},
        lambda t: {"params": {"offset": 0, "size": 3}, "content": b"hi\n"},
    ),
    ("GET", "/orders/{order_id}/logs"): Rule(
        200, {OP: ALL, AUD: ALL, BUY: OWN}, lambda t: {"order_id": f"ord-{t.buyer}"}
    ),
    ("POST", "/leases/{lease_id}/report"): Rule(
        201,
        {PROV: OWN},
        lambda t: {"lease_id": t.fresh_lease()},
        lambda t: {"json": {"outcome": "failed", "exit_code": 3, "reason": "exit code 3"}},
    ),
    ("GET", "/leases/{lease_id}/report"): Rule(
        200, {OP: ALL, AUD: ALL, PROV: OWN, BUY: OWN}, lambda t: {"lease_id": t.reported_lease()}
    ),
    ("GET", "/leases/{lease_id}/workload"): Rule(
        200, {PROV: OWN}, lambda t: {"lease_id": t.workload_lease()}
    ),
    ("POST", "/leases/{lease_id}/grants"): Rule(
        201, {PROV: OWN}, lambda t: {"lease_id": t.workload_lease()}
    ),
    ("POST", "/leases/{lease_id}/outputs"): Rule(
        201,
        {PROV: OWN},
        lambda t: {"lease_id": t.workload_lease()},
        lambda t: {"params": {"name": "out/x"}, "content": fresh("out").encode()},
    ),
    ("GET", "/data/{object_id}"): Rule(
        200, {OP: ALL, AUD: ALL, PROV: OWN, BUY: OWN}, lambda t: {"object_id": t.data_object()}
    ),
    ("GET", "/data/{object_id}/content"): Rule(
        200,
        {OP: BYTES, AUD: BYTES, PROV: OWN, BUY: OWN},
        lambda t: {"object_id": t.data_object()},
    ),
    ("GET", "/fees"): Rule(200, SIGNED_IN),
    ("PUT", "/fees"): Rule(200, {OP: ALL}, body=lambda t: {"json": {"fee_bp": 300}}),
    ("GET", "/market/carbon-price"): Rule(200, PUBLIC),
    ("PUT", "/market/carbon-price"): Rule(
        200, {OP: ALL}, body=lambda t: {"json": {"yuan_per_t": 0}}
    ),
    ("GET", "/audit"): Rule(200, {OP: ALL, AUD: ALL}),
    ("GET", "/audit/head"): Rule(200, {OP: ALL, AUD: ALL}),
    ("GET", "/audit/verify"): Rule(200, {OP: ALL, AUD: ALL}),
}


def expected(rule: Rule, role: Role | None, mine: bool) -> int:
    if role is None and rule.policy.get(None) != ALL:
        return 401
    access = rule.policy.get(role)
    if access is None:
        return 403
    if access == OWN and not mine:
        return 404
    if access == BYTES and not mine:
        return 403
    return rule.ok


CASES = [
    pytest.param(method, path, role, mine, id=f"{method} {path} {role or 'anon'} {mine}")
    for (method, path), role, mine in itertools.product(RULES, ROLES, (True, False))
    if role is not None or mine
]


def test_every_route_is_in_the_matrix(world: Api) -> None:
    routes = {
        (method.upper(), path.removeprefix(API))
        for path, item in world.client.app.openapi()["paths"].items()
        for method in item
    }
    assert routes == set(RULES)


@pytest.mark.parametrize(("method", "path", "role", "mine"), CASES)
def test_access(world: Api, method: str, path: str, role: Role | None, mine: bool) -> None:
    rule = RULES[(method, path)]
    target = Target(world, role, mine)
    url = path.format(**rule.params(target))
    kwargs = rule.body(target)
    r = world.call(method, url, None if role is None else ME[role], **kwargs)
    want = expected(rule, role, mine)
    assert r.status_code == want, f"{method} {url} as {role}: {r.status_code} {r.text[:300]}"
    if want >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["status"] == want


def test_a_bad_or_revoked_key_is_401(world: Api) -> None:
    for token in ("sg_nope_nope", "garbage", world.tokens["buy-a"] + "x"):
        r = world.client.get(f"{API}/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, r.text
        assert r.json()["field"] == "header.Authorization"
        assert r.headers["www-authenticate"] == "Bearer"
    world.member("gone", BUY)
    key = world.call("GET", "/me", "gone").json()["key_id"]
    r = world.call("DELETE", f"/members/gone/keys/{key}", "gone")
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert world.call("GET", "/me", "gone").status_code == 401


def test_sealed_bids(world: Api) -> None:
    """No member sees another member's orders, limits, leases or accounts in any list."""
    for who, other in (("buy-a", "buy-b"), ("buy-b", "buy-a")):
        for path in ("/orders", "/leases", "/accounts"):
            text = world.call("GET", f"{path}?limit=500", who).text
            assert other not in text, (who, path)
    for who, other in (("prov-a", "prov-b"), ("prov-b", "prov-a")):
        for path in ("/offers", "/leases", "/accounts"):
            text = world.call("GET", f"{path}?limit=500", who).text
            assert other not in text, (who, path)
    public = world.call("GET", "/market/prices?limit=500", None).json()
    assert public["items"]
    for item in public["items"]:
        assert set(item) == {"pool_id", "slot", "price_fen", "cleared_gpus"}
    # Another buyer's order answers exactly like an order that does not exist.
    theirs = world.call("GET", "/orders/ord-buy-b", "buy-a").json()
    nobody = world.call("GET", "/orders/ord-nobody", "buy-a").json()
    for problem in (theirs, nobody):
        assert problem["status"] == 404
        problem.pop("detail"), problem.pop("instance")
    assert theirs == nobody


def test_openapi_is_served_with_bearer_security(world: Api) -> None:
    assert world.client.get("/docs").status_code == 200
    spec = world.client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    for path, item in spec["paths"].items():
        for method, op in item.items():
            public = RULES[(method.upper(), path.removeprefix(API))].policy is PUBLIC
            assert bool(op.get("security")) is not public, (method, path)
            if method in ("post", "put", "delete"):
                names = {p["name"] for p in op.get("parameters", [])}
                assert "Idempotency-Key" in names, (method, path)
