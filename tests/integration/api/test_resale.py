"""Resale through the API: a buyer offers back a lease it holds; the next clearing sells it
to a new buyer at a price at least the seller's reserve; the new buyer runs on those GPUs;
the seller receives the proceeds less the fee, the original provider exactly what the
seller's lease paid; the ledger shows the chain and balances to the fen."""

from __future__ import annotations

from typing import Any

from suangu.api.services import ensure_accounts
from suangu.core import billing
from suangu.core.types import Offer, Pool, Site
from suangu.store.models import Role
from suangu.store.repositories import Capacity

from .conftest import EPOCH, NOW_SLOT, Api

HOUR = 3600


def setup(api: Api) -> None:
    """One provider with 2 H100s in slots 100-102 at 1 yuan; two buyers with money."""
    for m, role in (
        ("op", Role.OPERATOR),
        ("prov", Role.PROVIDER),
        ("b1", Role.BUYER),
        ("b2", Role.BUYER),
    ):
        api.member(m, role)
    now = api.clock.now()
    with api.db.session_scope() as s:
        cap = Capacity(s)
        cap.add_site(Site("site-n", "Ningxia", "Ningxia", "ningxia"), "prov")
        cap.add_pool(Pool("pool-n", "site-n", "H100"))
        cap.add_offer(Offer.over("offer-n", "prov", "pool-n", NOW_SLOT, NOW_SLOT + 3, 2, 100), now)
    ensure_accounts(api.client.app.state.ctx.ledger, [billing.new_provider_account("prov")], now)
    for buyer in ("b1", "b2"):
        r = api.call(
            "POST",
            "/deposits",
            "op",
            json={"id": f"d-{buyer}", "member_id": buyer, "amount_fen": 10**6},
        )
        assert r.status_code == 201, r.text


def clear(api: Api, clearing_id: str) -> None:
    r = api.call("POST", "/clearings", "op", json={"id": clearing_id})
    assert r.status_code == 201, r.text


def leases(api: Api) -> list[dict[str, Any]]:
    r = api.call("GET", "/leases?limit=500", "op")
    assert r.status_code == 200, r.text
    return sorted(r.json()["items"], key=lambda x: (x["slot"], x["clearing_id"], x["order_id"]))


def finish(api: Api, lease: dict[str, Any]) -> None:
    start = EPOCH + lease["slot"] * HOUR
    api.clock.set(max(api.clock.now(), start + HOUR))
    gpus = lease["gpus"] - lease["resold_gpus"]
    r = api.call(
        "POST",
        f"/leases/{lease['id']}/readings",
        "prov",
        json={
            "id": "r",
            "interval_start": start,
            "interval_end": start + HOUR,
            "gpu_seconds": gpus * HOUR,
            "energy_wh": 1,
            "final": True,
        },
    )
    assert r.status_code == 201, r.text


def test_a_resold_lease_runs_the_new_buyer_and_pays_the_seller(api: Api) -> None:
    setup(api)
    ledger = api.client.app.state.ctx.ledger
    r = api.call(
        "POST",
        "/orders",
        "b1",
        json={
            "id": "b1~train",
            "kind": "batch",
            "gpus": 2,
            "release_slot": NOW_SLOT,
            "deadline_slot": NOW_SLOT + 3,
            "limit_fen": 500,
            "gpu_hours": 6,
        },
    )
    assert r.status_code == 201, r.text
    clear(api, "clr-1")
    held = leases(api)
    assert [(x["slot"], x["gpus"], x["price_fen"]) for x in held] == [
        (NOW_SLOT + k, 2, 100) for k in range(3)
    ]
    last = held[2]

    # Errors name the field and the fix.
    bad = api.call(
        "POST", "/resales", "b1", json={"id": "r0", "lease_id": held[0]["id"], "reserve_fen": 1}
    )
    assert bad.status_code == 409 and "body.lease_id" in bad.text and "notice" in bad.text, bad.text
    other = api.call(
        "POST", "/resales", "b2", json={"id": "r0", "lease_id": last["id"], "reserve_fen": 1}
    )
    assert other.status_code == 404 and "body.lease_id" in other.text, other.text
    neg = api.call(
        "POST", "/resales", "b1", json={"id": "r0", "lease_id": last["id"], "reserve_fen": -1}
    )
    assert neg.status_code == 422 and "reserve_fen" in neg.text, neg.text

    # b1 no longer needs slot 102: it offers it back at 3 yuan.
    r = api.call(
        "POST", "/resales", "b1", json={"id": "r1", "lease_id": last["id"], "reserve_fen": 300}
    )
    assert r.status_code == 201 and r.json()["status"] == "open", r.text
    dup = api.call(
        "POST", "/resales", "b1", json={"id": "r2", "lease_id": last["id"], "reserve_fen": 1}
    )
    assert dup.status_code == 409 and "r1" in dup.text, dup.text

    # b2 wants 2 GPUs in slot 102 at up to 5 yuan: it buys the resold GPU-slots at 3 yuan.
    r = api.call(
        "POST",
        "/orders",
        "b2",
        json={
            "id": "b2~infer",
            "kind": "batch",
            "gpus": 2,
            "release_slot": NOW_SLOT + 2,
            "deadline_slot": NOW_SLOT + 3,
            "limit_fen": 500,
            "gpu_hours": 2,
        },
    )
    assert r.status_code == 201, r.text
    clear(api, "clr-2")
    after = {x["id"]: x for x in leases(api)}
    new = [x for x in after.values() if x["order_id"] == "b2~infer"]
    assert [(x["slot"], x["gpus"], x["price_fen"], x["provider_id"]) for x in new] == [
        (NOW_SLOT + 2, 2, 300, "prov")
    ]
    seller = after[last["id"]]
    assert (seller["resold_gpus"], seller["state"]) == (2, "completed")
    sale = api.call("GET", "/resales/r1", "b1").json()
    assert sale["status"] == "sold"
    assert sale["sales"] == [{"lease_id": new[0]["id"], "gpus": 2, "price_fen": 300}]
    assert api.call("GET", "/resales/r1", "b2").status_code == 404
    assert api.call("POST", "/resales/r1/withdraw", "b1").status_code == 409

    # Everything runs and settles: b1 pays the provider for all 6 GPU-hours at 1 yuan; b2
    # pays 2 at 3 yuan, which go to b1 less the 3% fee; the provider gets 6 yuan less fee.
    for x in leases(api):
        if x["state"] == "scheduled":
            finish(api, x)
    assert {x["state"] for x in leases(api)} == {"settled"}
    b1 = ledger.lookup_account(billing.buyer_account("b1"))
    b2 = ledger.lookup_account(billing.buyer_account("b2"))
    prov = ledger.lookup_account(billing.provider_account("prov"))
    assert b1.debits_pending == b2.debits_pending == 0
    assert b1.debits_posted == 600 and b2.debits_posted == 600
    assert b1.credits_posted == 10**6 + 600 - 18  # proceeds less the 3% fee
    assert prov.credits_posted == 600 - 18  # unchanged by the resale
    chain = [t for t in ledger.transfers() if t.id.startswith("resale:")]
    assert [(t.amount, t.user_data) for t in chain] == [(582, last["id"])]
    ledger.check_invariants()
