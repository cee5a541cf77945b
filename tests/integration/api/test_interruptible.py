"""The interruptible tier through the API: interruptible orders clear after firm demand and
are preempted by it with notice; the preempted work goes back into the market through the
recovery path; the buyer pays only delivered GPU-hours, in integer fen, ledger balanced, and
no GPU-slot is sold twice."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from suangu.api.services import ensure_accounts
from suangu.core import billing
from suangu.core.types import Offer, Pool, Site
from suangu.store.models import Role
from suangu.store.repositories import Capacity

from .conftest import EPOCH, NOW_SLOT, Api

HOUR = 3600
REGION = "gansu"


def setup(api: Api) -> None:
    """One provider with 2 H100s for 3 slots at 1 yuan and for a fourth at 2 yuan; two
    buyers with money."""
    for m, role in (
        ("op", Role.OPERATOR),
        ("prov", Role.PROVIDER),
        ("spot", Role.BUYER),
        ("firm", Role.BUYER),
    ):
        api.member(m, role)
    now = api.clock.now()
    with api.db.session_scope() as s:
        cap = Capacity(s)
        site = Site("site-g", "Gansu", "Gansu", REGION)
        cap.add_site(site, "prov")
        cap.add_pool(Pool("pool-g", site.id, "H100"))
        cap.add_offer(Offer.over("offer-g", "prov", "pool-g", NOW_SLOT, NOW_SLOT + 3, 2, 100), now)
        cap.add_offer(
            Offer.over("late-g", "prov", "pool-g", NOW_SLOT + 3, NOW_SLOT + 4, 2, 200), now
        )
    ensure_accounts(api.client.app.state.ctx.ledger, [billing.new_provider_account("prov")], now)
    for buyer in ("spot", "firm"):
        r = api.call(
            "POST",
            "/deposits",
            "op",
            json={"id": f"d-{buyer}", "member_id": buyer, "amount_fen": 10**6},
        )
        assert r.status_code == 201, r.text


def order(api: Api, buyer: str, body: dict[str, Any]) -> Any:
    return api.call("POST", "/orders", buyer, json=body)


def clear(api: Api, clearing_id: str) -> None:
    r = api.call("POST", "/clearings", "op", json={"id": clearing_id})
    assert r.status_code == 201, r.text


def leases(api: Api) -> list[dict[str, Any]]:
    r = api.call("GET", "/leases?limit=500", "op")
    assert r.status_code == 200, r.text
    return sorted(r.json()["items"], key=lambda x: (x["clearing_id"], x["slot"], x["order_id"]))


def finish(api: Api, lease: dict[str, Any]) -> None:
    start = EPOCH + lease["slot"] * HOUR
    api.clock.set(max(api.clock.now(), start + HOUR))
    r = api.call(
        "POST",
        f"/leases/{lease['id']}/readings",
        "prov",
        json={
            "id": "r",
            "interval_start": start,
            "interval_end": start + HOUR,
            "gpu_seconds": lease["gpus"] * HOUR,
            "energy_wh": 1,
            "final": True,
        },
    )
    assert r.status_code == 201, r.text


def test_interruptible_order_is_preempted_with_notice_and_requeued(api: Api) -> None:
    setup(api)
    spot = {
        "id": "spot~train",
        "kind": "batch",
        "gpus": 2,
        "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 4,
        "limit_fen": 300,
        "gpu_hours": 6,
        "interruptible": True,
    }
    r = order(api, "spot", spot)
    assert r.status_code == 201 and r.json()["interruptible"] is True, r.text
    clear(api, "clr-1")
    first = leases(api)
    # Interruptible: at the reserve less 30%.
    assert [(x["slot"], x["gpus"], x["price_fen"]) for x in first] == [
        (NOW_SLOT + k, 2, 70) for k in range(3)
    ]

    # A firm order for 2 GPU-hours in slots 101-102: no free capacity there, so it preempts
    # an interruptible lease (the notice protects slot 100, about to start) and pays one fen
    # above the provider's firm reserve.
    firm = {
        "id": "firm~infer",
        "kind": "batch",
        "gpus": 2,
        "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 3,
        "limit_fen": 1000,
        "gpu_hours": 2,
    }
    assert order(api, "firm", firm).status_code == 201
    clear(api, "clr-2")
    now = leases(api)
    taken = [x for x in now if x["order_id"] == "firm~infer"]
    assert [(x["gpus"], x["price_fen"]) for x in taken] == [(2, 101)]
    assert taken[0]["slot"] in (NOW_SLOT + 1, NOW_SLOT + 2)
    preempted = [x for x in now if x["preempted_gpus"]]
    assert [(x["slot"], x["preempted_gpus"], x["state"]) for x in preempted] == [
        (taken[0]["slot"], 2, "failed")
    ]
    r = api.call("GET", "/orders/spot~train", "spot")
    assert r.json()["status"] == "partially"  # back in the market for the lost work

    # The next clearing gives the interruptible order the free slot 103 (at 2 yuan less 30%).
    clear(api, "clr-3")
    again = [x for x in leases(api) if x["clearing_id"] == "clr-3"]
    assert [(x["order_id"], x["slot"], x["gpus"], x["price_fen"]) for x in again] == [
        ("spot~train", NOW_SLOT + 3, 2, 140)
    ]

    # No GPU-slot is sold twice: live leases per slot never exceed the 2 GPUs.
    live: dict[int, int] = defaultdict(int)
    for x in leases(api):
        if x["state"] != "failed":
            live[x["slot"]] += x["gpus"]
    assert all(g <= 2 for g in live.values()), live

    # Everything that was not preempted runs in full; the interruptible buyer pays exactly
    # its delivered GPU-hours (4 at 0.70 yuan, 2 at 1.40), the firm buyer 2 at 1.01 yuan.
    ledger = api.client.app.state.ctx.ledger
    for x in leases(api):
        if x["state"] == "scheduled":
            finish(api, x)
    spot_acc = ledger.lookup_account(billing.buyer_account("spot"))
    firm_acc = ledger.lookup_account(billing.buyer_account("firm"))
    assert spot_acc.debits_pending == 0 and firm_acc.debits_pending == 0
    assert spot_acc.debits_posted == 4 * 70 + 2 * 140
    assert firm_acc.debits_posted == 2 * 101
    ledger.check_invariants()


def test_interruptible_gang_is_refused_naming_the_field(api: Api) -> None:
    setup(api)
    r = order(
        api,
        "spot",
        {
            "id": "spot~g",
            "kind": "gang",
            "gpus": 1,
            "release_slot": NOW_SLOT,
            "deadline_slot": NOW_SLOT + 2,
            "limit_fen": 300,
            "duration_slots": 1,
            "interruptible": True,
        },
    )
    assert r.status_code == 422, r.text
    assert "body.interruptible" in r.text and "batch" in r.text, r.text
