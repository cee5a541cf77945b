"""Recovery from provider failure: the work a failed lease did not deliver goes back into the
next clearing, at another provider, before the order's deadline; the buyer pays only metered
use, every clearing holds its own money, in integer fen, with the ledger balanced; a gang
fails whole and is re-queued whole."""

from __future__ import annotations

from typing import Any

from suangu.api.services import ensure_accounts
from suangu.core import billing
from suangu.core.types import Allocation, Offer, Order, OrderKind, Pool, Site
from suangu.store.models import Role
from suangu.store.repositories import Capacity, Orders

from .conftest import EPOCH, NOW_SLOT, Api

HOUR = 3600
REGION = "inner-mongolia"


def market(api: Api, order: Order) -> None:
    """Two providers in one region: prov-a cheap but only for slots 100-101, prov-b dearer
    for two days; one buyer with money and ``order``."""
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
        for prov, end, reserve in (("prov-a", NOW_SLOT + 2, 500), ("prov-b", NOW_SLOT + 48, 900)):
            site = Site(f"site-{prov}", prov.title(), "Inner Mongolia", REGION, pue=1.1)
            cap.add_site(site, prov)
            pool = Pool(f"{site.id}-h100", site.id, "H100")
            cap.add_pool(pool)
            cap.add_offer(
                Offer.over(f"offer-{prov}", prov, pool.id, NOW_SLOT, end, 2, reserve), now
            )
        Orders(s).submit(order, now)
    ledger = api.client.app.state.ctx.ledger
    ensure_accounts(ledger, [billing.new_provider_account(p) for p in ("prov-a", "prov-b")], now)
    r = api.call(
        "POST", "/deposits", "op", json={"id": "d", "member_id": "buy-a", "amount_fen": 10**7}
    )
    assert r.status_code == 201, r.text


def clear(api: Api, clearing_id: str) -> None:
    r = api.call("POST", "/clearings", "op", json={"id": clearing_id})
    assert r.status_code == 201, r.text


def leases_of(api: Api, order_id: str) -> list[dict[str, Any]]:
    r = api.call("GET", "/leases?limit=500", "op")
    assert r.status_code == 200, r.text
    return sorted(
        (x for x in r.json()["items"] if x["order_id"] == order_id),
        key=lambda x: (x["clearing_id"], x["slot"], x["pool_id"]),
    )


def read(api: Api, lease: dict[str, Any], seconds: int, gpu_seconds: int, final: bool) -> None:
    """A reading of the first ``seconds`` of the lease's slot (the clock moves past it)."""
    start = EPOCH + lease["slot"] * HOUR
    api.clock.set(max(api.clock.now(), start + seconds))
    r = api.call(
        "POST",
        f"/leases/{lease['id']}/readings",
        lease["provider_id"],
        json={
            "id": f"r-{seconds}",
            "interval_start": start,
            "interval_end": start + seconds,
            "gpu_seconds": gpu_seconds,
            "energy_wh": 1,
            "final": final,
        },
    )
    assert r.status_code == 201, r.text


def status(api: Api, order_id: str) -> str:
    r = api.call("GET", f"/orders/{order_id}", "buy-a")
    assert r.status_code == 200, r.text
    out: str = r.json()["status"]
    return out


def cost(lease: dict[str, Any], gpu_seconds: int) -> int:
    a = Allocation(
        lease["order_id"],
        lease["buyer_id"],
        lease["pool_id"],
        lease["slot"],
        lease["gpus"],
        lease["price_fen"],
    )
    return billing.metered_cost(a, gpu_seconds, 1)


def test_undelivered_work_is_cleared_again_elsewhere_and_paid_as_metered(api: Api) -> None:
    batch = Order(
        "job",
        "buy-a",
        OrderKind.BATCH,
        gpus=2,
        release_slot=NOW_SLOT,
        deadline_slot=NOW_SLOT + 4,
        limit_fen=2000,
        gpu_hours=4,
        regions=frozenset({REGION}),
    )
    market(api, batch)
    ledger = api.client.app.state.ctx.ledger
    before = ledger.lookup_account(billing.buyer_account("buy-a"))
    clear(api, "clr-1")
    first = leases_of(api, "job")
    assert [(x["provider_id"], x["slot"], x["gpus"]) for x in first] == [
        ("prov-a", NOW_SLOT, 2),
        ("prov-a", NOW_SLOT + 1, 2),
    ]
    assert status(api, "job") == "cleared"

    # Slot 100 runs in full; in slot 101 the provider breaks after half an hour on both GPUs
    # (one GPU-hour delivered of two) and fails the lease.
    done, broken = first
    read(api, done, HOUR, 2 * HOUR, final=True)
    read(api, broken, HOUR // 2, HOUR, final=False)
    r = api.call("POST", f"/leases/{broken['id']}/fail", "prov-a")
    assert r.status_code == 200 and r.json()["state"] == "settled", r.text
    assert status(api, "job") == "partially"  # back in the market for the rest

    # The next clearing takes the one GPU-hour left, at prov-b (prov-a's slots are sold),
    # before the deadline, under a hold of its own.
    clear(api, "clr-2")
    again = [x for x in leases_of(api, "job") if x["clearing_id"] == "clr-2"]
    assert [(x["provider_id"], x["gpus"]) for x in again] == [("prov-b", 1)]
    assert NOW_SLOT + 1 <= again[0]["slot"] < NOW_SLOT + 4
    assert again[0]["hold_transfer_id"] not in {x["hold_transfer_id"] for x in first}
    hold = ledger.lookup_transfer(again[0]["hold_transfer_id"])
    assert hold.amount == again[0]["price_fen"] * again[0]["gpus"]
    assert status(api, "job") == "cleared"
    clear(api, "clr-3")  # nothing is left to bid for
    assert {x["clearing_id"] for x in leases_of(api, "job")} == {"clr-1", "clr-2"}

    # It runs in full; the buyer paid exactly the metered GPU-hours, nothing stays held.
    read(api, again[0], HOUR, HOUR, final=True)
    assert {x["state"] for x in leases_of(api, "job")} == {"settled"}
    paid = cost(done, 2 * HOUR) + cost(broken, HOUR) + cost(again[0], HOUR)
    after = ledger.lookup_account(billing.buyer_account("buy-a"))
    assert after.debits_pending == 0
    assert after.debits_posted - before.debits_posted == paid > 0
    assert isinstance(paid, int)
    ledger.check_invariants()

    # Buyers see each provider's delivery record, and filter on it.
    a = api.call("GET", "/providers/prov-a/record", "buy-a").json()
    assert (a["leases"], a["failed"], a["failure_rate"]) == (2, 1, 0.5)
    assert a["gpu_hours_sold"] == 4.0 and a["gpu_hours_short"] == 1.0  # 2 sold, 1 metered
    b = api.call("GET", "/providers/prov-b/record", "buy-a").json()
    assert (b["leases"], b["failed"], b["gpu_hours_short"]) == (1, 0, 0.0)
    reliable = api.call("GET", "/providers/records?max_failure_rate=0.1", "buy-a").json()
    assert [x["provider_id"] for x in reliable["items"]] == ["prov-b"]
    every = api.call("GET", "/providers/records", "buy-a").json()
    assert [x["provider_id"] for x in every["items"]] == ["prov-a", "prov-b"]
    for bad in ("buy-a", "nobody"):
        r = api.call("GET", f"/providers/{bad}/record", "buy-a")
        assert r.status_code == 404 and "path.provider_id" in r.text, r.text
    r = api.call("GET", "/providers/records?max_failure_rate=2", "buy-a")
    assert r.status_code == 422 and "max_failure_rate" in r.text, r.text


def test_a_failed_gang_lease_fails_the_gang_and_requeues_it_whole(api: Api) -> None:
    gang = Order(
        "gang",
        "buy-a",
        OrderKind.GANG,
        gpus=2,
        release_slot=NOW_SLOT,
        deadline_slot=NOW_SLOT + 6,
        limit_fen=2000,
        duration_slots=2,
        regions=frozenset({REGION}),
    )
    market(api, gang)
    ledger = api.client.app.state.ctx.ledger
    before = ledger.lookup_account(billing.buyer_account("buy-a"))
    clear(api, "clr-1")
    first = leases_of(api, "gang")
    assert [(x["provider_id"], x["slot"]) for x in first] == [
        ("prov-a", NOW_SLOT),
        ("prov-a", NOW_SLOT + 1),
    ]
    # Half an hour on one GPU, then the first slot's lease fails: the whole gang fails.
    read(api, first[0], HOUR // 2, HOUR // 2, final=False)
    r = api.call("POST", f"/leases/{first[0]['id']}/fail", "prov-a")
    assert r.status_code == 200, r.text
    assert {x["state"] for x in leases_of(api, "gang")} == {"settled"}  # refunded, settled
    assert status(api, "gang") == "open"
    mid = ledger.lookup_account(billing.buyer_account("buy-a"))
    assert mid.debits_pending == 0
    assert mid.debits_posted - before.debits_posted == cost(first[0], HOUR // 2)

    # Re-queued whole: the next clearing runs all of it in one pool at prov-b.
    clear(api, "clr-2")
    again = [x for x in leases_of(api, "gang") if x["clearing_id"] == "clr-2"]
    assert {x["provider_id"] for x in again} == {"prov-b"}
    assert len({x["pool_id"] for x in again}) == 1
    slots = sorted(x["slot"] for x in again)
    assert len(slots) == 2 and slots[1] == slots[0] + 1 and slots[1] < NOW_SLOT + 6
    assert all(x["gpus"] == 2 for x in again)
    hold = ledger.lookup_transfer(again[0]["hold_transfer_id"])
    assert hold.amount == sum(x["price_fen"] * x["gpus"] for x in again)
    assert status(api, "gang") == "cleared"
    ledger.check_invariants()


def test_a_gang_whose_run_no_longer_fits_is_not_requeued(api: Api) -> None:
    gang = Order(
        "tight",
        "buy-a",
        OrderKind.GANG,
        gpus=2,
        release_slot=NOW_SLOT,
        deadline_slot=NOW_SLOT + 2,
        limit_fen=2000,
        duration_slots=2,
        regions=frozenset({REGION}),
    )
    market(api, gang)
    clear(api, "clr-1")
    first = leases_of(api, "tight")
    api.clock.set(EPOCH + (NOW_SLOT + 1) * HOUR + 60)  # one slot of the window is left
    r = api.call("POST", f"/leases/{first[1]['id']}/fail", "prov-a")
    assert r.status_code == 200, r.text
    assert {x["state"] for x in leases_of(api, "tight")} == {"settled"}
    assert status(api, "tight") == "cleared"
    api.client.app.state.ctx.ledger.check_invariants()


def test_a_silent_agents_leases_fail_and_its_work_completes_elsewhere(api: Api) -> None:
    batch = Order(
        "job",
        "buy-a",
        OrderKind.BATCH,
        gpus=2,
        release_slot=NOW_SLOT,
        deadline_slot=NOW_SLOT + 4,
        limit_fen=2000,
        gpu_hours=4,
        regions=frozenset({REGION}),
    )
    market(api, batch)
    ledger = api.client.app.state.ctx.ledger
    loop = api.client.app.state.clearing_loop
    grace = loop.settings.agent_grace_s
    before = ledger.lookup_account(billing.buyer_account("buy-a"))

    def beat(who: str) -> dict[str, Any]:
        r = api.call("POST", "/agents/heartbeat", who, json={"instance": "rack-1"})
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    assert beat("prov-a")["new"] is True
    assert beat("prov-a")["new"] is False  # only news is audited
    assert api.call("POST", "/agents/heartbeat", "buy-a", json={}).status_code == 403

    report = loop.tick()  # prov-a's agent is alive: the job clears there
    assert report.clearing_id is not None and report.lost == 0
    first = leases_of(api, "job")
    assert {x["provider_id"] for x in first} == {"prov-a"}

    # prov-a's agent dies. Within the grace period nothing happens; past it, its scheduled
    # and running leases fail and the job is back in the market.
    api.clock.advance(grace)
    assert loop.tick().lost == 0
    api.clock.advance(1)
    assert loop.tick().lost == len(first)
    assert {x["state"] for x in leases_of(api, "job")} == {"settled"}  # nothing metered
    assert status(api, "job") == "partially"

    # The next clearing runs the whole job at prov-b (which has no agent: never watched).
    api.clock.set(EPOCH + (NOW_SLOT + 1) * HOUR + 30)
    report = loop.tick()
    assert report.clearing_id is not None
    again = [x for x in leases_of(api, "job") if x["clearing_id"] == report.clearing_id]
    assert {x["provider_id"] for x in again} == {"prov-b"}
    assert sum(x["gpus"] for x in again) == 4 and all(x["slot"] < NOW_SLOT + 4 for x in again)
    assert status(api, "job") == "cleared"
    for x in again:
        read(api, x, HOUR, x["gpus"] * HOUR, final=True)
    assert loop.tick().lost == 0
    assert {x["state"] for x in leases_of(api, "job")} == {"settled"}
    after = ledger.lookup_account(billing.buyer_account("buy-a"))
    assert after.debits_pending == 0
    paid = sum(cost(x, x["gpus"] * HOUR) for x in again)
    assert after.debits_posted - before.debits_posted == paid > 0
    ledger.check_invariants()

    a = api.call("GET", "/providers/prov-a/record", "buy-a").json()
    assert (a["leases"], a["failed"], a["gpu_hours_short"]) == (2, 2, 4.0)

    # Heard again, prov-a is back in the market.
    assert beat("prov-a")["new"] is True
