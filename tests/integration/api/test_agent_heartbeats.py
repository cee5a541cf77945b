"""Heartbeats per agent (SQLite and PostgreSQL): a provider runs one agent per site, each
heartbeating under its own name with the pools it serves. When one falls silent past the
grace period, only the leases of its pools fail (the other agent's keep running), its pools'
offers sit the clearings out, and its work is cleared elsewhere; an agent serving all the
provider's pools covers them all."""

from __future__ import annotations

from typing import Any

from suangu.api.services import ensure_accounts
from suangu.core import billing
from suangu.core.types import Offer, Order, OrderKind, Pool, Site
from suangu.store.models import Role
from suangu.store.repositories import Capacity, Orders

from .conftest import EPOCH, NOW_SLOT, Api
from .test_recovery import HOUR, leases_of, status

EAST, WEST = "inner-mongolia", "ningxia"


def job(order_id: str, region: str, release: int = NOW_SLOT) -> Order:
    return Order(
        order_id,
        "buy-a",
        OrderKind.BATCH,
        gpus=2,
        release_slot=release,
        deadline_slot=NOW_SLOT + 6,
        limit_fen=2000,
        gpu_hours=4,
        regions=frozenset({region}),
    )


def market(api: Api) -> None:
    """prov-a: a site in each region (cheap); prov-b: a dearer site in the west."""
    for m, role in (
        ("op", Role.OPERATOR),
        ("prov-a", Role.PROVIDER),
        ("prov-b", Role.PROVIDER),
        ("buy-a", Role.BUYER),
    ):
        api.member(m, role)
    now = api.clock.now()
    with api.db.session_scope() as s:
        cap = Capacity(s)
        for prov, name, region, reserve in (
            ("prov-a", "east", EAST, 500),
            ("prov-a", "west", WEST, 500),
            ("prov-b", "b", WEST, 900),
        ):
            site = Site(f"site-{name}", name.title(), region.title(), region, pue=1.1)
            cap.add_site(site, prov)
            pool = Pool(f"pool-{name}", site.id, "H100")
            cap.add_pool(pool)
            cap.add_offer(
                Offer.over(f"offer-{name}", prov, pool.id, NOW_SLOT, NOW_SLOT + 48, 2, reserve),
                now,
            )
        for order in (job("east-job", EAST), job("west-job", WEST)):
            Orders(s).submit(order, now)
    ledger = api.client.app.state.ctx.ledger
    ensure_accounts(ledger, [billing.new_provider_account(p) for p in ("prov-a", "prov-b")], now)
    r = api.call(
        "POST", "/deposits", "op", json={"id": "d", "member_id": "buy-a", "amount_fen": 10**7}
    )
    assert r.status_code == 201, r.text


def beat(api: Api, agent: str, pools: list[str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"instance": f"{agent}-1", "agent": agent}
    if pools is not None:
        body["pools"] = pools
    r = api.call("POST", "/agents/heartbeat", "prov-a", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_a_silent_agent_fails_only_its_own_pools_leases(api: Api) -> None:
    market(api)
    loop = api.client.app.state.clearing_loop
    grace = loop.settings.agent_grace_s
    east = beat(api, "east", ["pool-east"])
    assert (east["agent"], east["pools"], east["new"]) == ("east", ["pool-east"], True)
    assert beat(api, "west", ["pool-west"])["new"] is True
    # An agent names only its provider's pools.
    r = api.call("POST", "/agents/heartbeat", "prov-a", json={"agent": "x", "pools": ["pool-b"]})
    assert r.status_code == 422 and "body.pools.0" in r.text, r.text

    assert loop.tick().clearing_id is not None
    east_leases = leases_of(api, "east-job")
    west_leases = leases_of(api, "west-job")
    assert {x["pool_id"] for x in east_leases} == {"pool-east"}
    assert {x["pool_id"] for x in west_leases} == {"pool-west"}  # cheaper than prov-b

    # The west agent dies; the east agent keeps beating.
    api.clock.advance(grace)
    beat(api, "east", ["pool-east"])
    assert loop.tick().lost == 0
    api.clock.advance(1)
    beat(api, "east", ["pool-east"])
    assert loop.tick().lost == len(west_leases)
    assert {x["state"] for x in leases_of(api, "west-job")} == {"settled"}  # failed, settled
    assert {x["state"] for x in leases_of(api, "east-job")} <= {"scheduled", "running"}
    assert status(api, "west-job") == "partially" and status(api, "east-job") == "cleared"

    # The next clearing: the west job runs at prov-b, and a new western order too: the silent
    # agent's pool sits out although it is the cheapest.
    api.clock.set(EPOCH + (NOW_SLOT + 1) * HOUR + 30)
    beat(api, "east", ["pool-east"])
    with api.db.session_scope() as s:
        Orders(s).submit(job("west-new", WEST, NOW_SLOT + 1), api.clock.now())
    report = loop.tick()
    assert report.clearing_id is not None and report.lost == 0
    for order_id in ("west-job", "west-new"):
        again = [x for x in leases_of(api, order_id) if x["clearing_id"] == report.clearing_id]
        assert {x["pool_id"] for x in again} == {"pool-b"}, (order_id, again)
        assert all(x["slot"] < NOW_SLOT + 6 for x in again)
    api.client.app.state.ctx.ledger.check_invariants()


def test_an_agent_serving_every_pool_covers_a_silent_one(api: Api) -> None:
    market(api)
    loop = api.client.app.state.clearing_loop
    grace = loop.settings.agent_grace_s
    beat(api, "west", ["pool-west"])
    beat(api, "all", None)  # serves all of prov-a's pools
    assert loop.tick().clearing_id is not None
    api.clock.advance(grace + 1)
    beat(api, "all", None)
    assert loop.tick().lost == 0  # the west pool still has a live agent
    assert {x["state"] for x in leases_of(api, "west-job")} <= {"scheduled", "running"}
    # The old single-agent form (no name, no pools) is the provider's "default" agent.
    r = api.call("POST", "/agents/heartbeat", "prov-a", json={"instance": "rack-1"})
    assert r.status_code == 200 and r.json()["agent"] == "default" and r.json()["pools"] is None
