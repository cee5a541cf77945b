"""The exchange end to end over HTTP: members and keys, capacity, orders (JSON and YAML),
money, a clearing, public prices, metering and settlement, balances and statements."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select

from suangu.api.services import PreparedClearing, prepare_clearing, save_clearing
from suangu.core import billing
from suangu.store.errors import Conflict
from suangu.store.models import OfferFillRow, Role
from suangu.store.repositories import Orders

from .conftest import EPOCH, NOW_SLOT, Api, build_world, order


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def test_buyer_orders_operator_clears_provider_meters_balances(api: Api) -> None:
    api.member("op", Role.OPERATOR)
    # The operator onboards a provider, a buyer and an auditor, each with a key.
    for member_id, role in (("dc", "provider"), ("team", "buyer"), ("audit", "auditor")):
        ok(
            api.call(
                "POST", "/members", "op", json={"id": member_id, "name": member_id, "role": role}
            ),
            201,
        )
        new = ok(
            api.call(
                "POST",
                f"/members/{member_id}/keys",
                "op",
                json={"label": "ci"},
                headers={"Idempotency-Key": f"key-{member_id}"},
            ),
            201,
        )
        assert new["token"].startswith("sg_") and new["role"] == role
        api.tokens[member_id] = new["token"]
    listed = ok(api.call("GET", "/members/team/keys", "team"))["items"]
    assert "token" not in listed[0]  # shown once, never again

    # The provider lists a site, a pool and an offer.
    ok(
        api.call(
            "POST",
            "/sites",
            "dc",
            json={
                "id": "hor",
                "name": "Horinger",
                "province": "Inner Mongolia",
                "region": "inner-mongolia",
                "lat": 40.5,
                "lon": 111.8,
                "pue": 1.15,
                "latency_ms": {"beijing": 12.0},
            },
        ),
        201,
    )
    ok(
        api.call(
            "POST", "/pools", "dc", json={"id": "hor-h100", "site_id": "hor", "gpu_class": "h100"}
        ),
        201,
    )
    ok(
        api.call(
            "POST",
            "/offers",
            "dc",
            json={
                "id": "f1",
                "pool_id": "hor-h100",
                "start_slot": NOW_SLOT,
                "gpus": [4, 4, 4, 4],
                "reserve_fen": [900],
            },
        ),
        201,
    )

    # The buyer gets money, then bids in JSON and in YAML.
    ok(
        api.call(
            "POST",
            "/deposits",
            "op",
            json={"id": "d1", "member_id": "team", "amount_fen": 1_000_000},
        ),
        201,
    )
    ok(
        api.call(
            "POST",
            "/orders",
            "team",
            json={
                "id": "o1",
                "kind": "batch",
                "gpus": 2,
                "release_slot": NOW_SLOT,
                "deadline_slot": NOW_SLOT + 2,
                "limit_fen": 1500,
                "gpu_hours": 4,
                "gpu_classes": ["H100"],
            },
        ),
        201,
    )
    yaml_text = (
        f"id: o2\nbuyer: team\nkind: gang\ngpus: 2\nduration: 2\n"
        f"release: {NOW_SLOT}\ndeadline: {NOW_SLOT + 4}\nlimit: 14.00\n"
    )
    got = ok(
        api.call(
            "POST",
            "/orders/yaml",
            "team",
            content=yaml_text.encode(),
            headers={"Content-Type": "application/yaml"},
        ),
        201,
    )
    assert got["items"][0]["limit_fen"] == 1400
    ok(
        api.call(
            "POST",
            "/orders",
            "team",
            json={
                "id": "o3",
                "kind": "batch",
                "gpus": 1,
                "release_slot": NOW_SLOT,
                "deadline_slot": NOW_SLOT + 4,
                "limit_fen": 100,
                "gpu_hours": 1,
            },
        ),
        201,
    )
    assert ok(api.call("POST", "/orders/o3/cancel", "team"))["status"] == "cancelled"

    # Before a clearing the market has no prices.
    assert ok(api.call("GET", "/market/prices", None))["items"] == []

    # The operator clears now.
    summary = ok(api.call("POST", "/clearings", "op", json={"id": "c1", "n_slots": 4}), 201)
    assert summary["status"] == "optimal" and summary["n_allocations"] > 0
    orders = {o["id"]: o["status"] for o in ok(api.call("GET", "/orders", "team"))["items"]}
    # Ids are per member: the API stores team's o1 as team~o1.
    assert orders == {"team~o1": "cleared", "team~o2": "cleared", "team~o3": "cancelled"}
    r = api.call("POST", "/orders/o1/cancel", "team")
    assert r.status_code == 409 and r.json()["field"] == "status"

    # Everyone sees cleared prices and volumes per pool and slot.
    prices = ok(
        api.call(
            "GET",
            f"/market/prices?pool_id=hor-h100&first_slot={NOW_SLOT}&end_slot={NOW_SLOT + 4}",
            None,
        )
    )["items"]
    assert [p["slot"] for p in prices] == list(range(NOW_SLOT, NOW_SLOT + 4))
    volume = sum(p["cleared_gpus"] for p in prices)
    assert volume == 2 * 2 + 4  # the gang's 2 GPUs x 2 slots + the batch's 4 GPU-hours
    assert all(900 <= p["price_fen"] <= 1500 for p in prices)

    # The buyer's money is held for its leases.
    buyer = ok(api.call("GET", "/accounts/buyer:team:CNY", "team"))
    leases = ok(api.call("GET", "/leases", "team"))["items"]
    held = sum(x["price_fen"] * x["gpus"] for x in leases)
    assert buyer["debits_pending"] == held and buyer["balance"] == 1_000_000

    # The provider meters every lease in full (the last reading of each is final), once
    # the leases' slots have passed: readings lie inside their lease's slot.
    mine = ok(api.call("GET", "/leases", "dc"))["items"]
    api.clock.set(EPOCH + (max(x["slot"] for x in mine) + 1) * 3600)
    for x in mine:
        start = EPOCH + x["slot"] * 3600
        half = x["gpus"] * 1800
        for k, final in ((1, False), (2, True)):
            got = ok(
                api.call(
                    "POST",
                    f"/leases/{x['id']}/readings",
                    "dc",
                    json={
                        "id": f"r{k}",
                        "interval_start": start + (k - 1) * 1800,
                        "interval_end": start + k * 1800,
                        "gpu_seconds": half,
                        "energy_wh": 700 * k,
                        "final": final,
                    },
                ),
                201,
            )
        assert got["lease_state"] in ("completed", "settled")
    states = {x["state"] for x in ok(api.call("GET", "/leases", "team"))["items"]}
    assert states == {"settled"}

    # Balances: the buyer paid what it held, the provider got it less the 3% fee.
    buyer = ok(api.call("GET", "/accounts/buyer:team:CNY", "team"))
    assert buyer["debits_pending"] == 0 and buyer["balance"] == 1_000_000 - held
    provider = ok(api.call("GET", "/accounts", "dc"))["items"]
    assert [a["id"] for a in provider] == ["provider:dc:CNY"]
    fees = ok(api.call("GET", "/accounts/exchange:fees:CNY", "audit"))
    assert provider[0]["balance"] + fees["balance"] == held
    cost = {
        o: sum(x["price_fen"] * x["gpus"] for x in leases if x["order_id"] == o)
        for o in ("team~o1", "team~o2")
    }
    assert fees["balance"] == sum(billing.fee_split(c, 300)[1] for c in cost.values())
    statement = ok(api.call("GET", "/accounts/buyer:team:CNY/transfers", "team"))["items"]
    assert statement[0]["code"] == "deposit"
    assert len(statement) == 1 + 2 + 2  # deposit, two holds, two posts
    api.client.app.state.ctx.ledger.check_invariants()

    # The auditor reads everything and writes nothing.
    assert ok(api.call("GET", "/clearings/c1", "audit"))["allocations"]
    assert api.call("PUT", "/fees", "audit", json={"fee_bp": 0}).status_code == 403


def test_pagination_follows_next(api: Api) -> None:
    api.member("op", Role.OPERATOR)
    for k in range(7):
        api.member(f"m{k}", Role.BUYER)
    seen: list[str] = []
    url: str | None = "/api/v1/members?limit=3"
    while url is not None:
        page = ok(api.client.get(url, headers=api.h("op")))
        seen += [m["id"] for m in page["items"]]
        url = page["next"]
    assert seen == sorted(["op", *(f"m{k}" for k in range(7))])


def test_a_clearing_never_sells_capacity_sold_meanwhile(api: Api) -> None:
    """Two clearings prepared from the same state: the second to commit is refused whole."""
    build_world(api)
    ctx = api.client.app.state.ctx
    with api.db.session_scope() as s:
        Orders(s).submit(order("big", "buy-a", gpus=8, hours=32), api.clock.now())

    def prepare(clearing_id: str) -> PreparedClearing:
        with api.db.session_scope(write=False) as s:
            return prepare_clearing(s, ctx.ledger, ctx.settings.grid, clearing_id, NOW_SLOT, 4, 0)

    first, second = prepare("c-first"), prepare("c-second")
    assert first.result.fills and second.result.fills
    now = api.clock.now()
    api.db.transaction(lambda s: save_clearing(s, ctx.ledger, first, now), retry_integrity=True)
    with pytest.raises(Conflict, match="sold meanwhile"):
        api.db.transaction(lambda s: save_clearing(s, ctx.ledger, second, now))
    assert ctx.ledger.lookup_transfer("hold:c-second:big") is None
    assert api.call("GET", "/clearings/c-second", "op").status_code == 404
    ctx.ledger.check_invariants()


def test_concurrent_clearings_never_oversell(api: Api) -> None:
    build_world(api)
    with api.db.session_scope() as s:
        for k in range(6):
            for b in ("buy-a", "buy-b"):
                Orders(s).submit(order(f"rush-{b}-{k}", b, gpus=4, hours=16), api.clock.now())
    statuses: list[int] = []

    def run() -> None:
        statuses.append(api.call("POST", "/clearings", "op", json={"n_slots": 4}).status_code)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 201 in statuses and set(statuses) <= {201, 409}, statuses
    sold: dict[tuple[str, int], int] = {}
    with api.db.session_scope(write=False) as s:
        for offer_id, slot, gpus in s.execute(
            select(OfferFillRow.offer_id, OfferFillRow.slot, OfferFillRow.gpus)
        ):
            sold[(offer_id, slot)] = sold.get((offer_id, slot), 0) + gpus
    assert sold and max(sold.values()) <= 8  # each offer has 8 GPUs per slot
    api.client.app.state.ctx.ledger.check_invariants()
