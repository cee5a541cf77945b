"""Re-queued work goes to other providers where possible (SQLite and PostgreSQL): when a
provider fails a lease, the order's undelivered work avoids that provider at the next
clearing if other capacity can serve it before its deadline, and goes back to it when none
can (a deadline met at a provider that failed once beats a deadline missed)."""

from __future__ import annotations

import pytest

from suangu.api.services import ensure_accounts
from suangu.core import billing
from suangu.core.types import Offer, Order, OrderKind, Pool, Site
from suangu.store.models import Role
from suangu.store.repositories import Capacity, Orders

from .conftest import NOW_SLOT, Api
from .test_recovery import REGION, clear, leases_of, status


def market(api: Api, order: Order, b_from: int) -> None:
    """prov-a cheap (500 fen) for two days; prov-b dearer (900 fen) from slot ``b_from``."""
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
        for prov, start, reserve in (("prov-a", NOW_SLOT, 500), ("prov-b", b_from, 900)):
            site = Site(f"site-{prov}", prov.title(), "Inner Mongolia", REGION, pue=1.1)
            cap.add_site(site, prov)
            pool = Pool(f"{site.id}-h100", site.id, "H100")
            cap.add_pool(pool)
            cap.add_offer(
                Offer.over(f"offer-{prov}", prov, pool.id, start, NOW_SLOT + 48, 2, reserve), now
            )
        Orders(s).submit(order, now)
    ledger = api.client.app.state.ctx.ledger
    ensure_accounts(ledger, [billing.new_provider_account(p) for p in ("prov-a", "prov-b")], now)
    r = api.call(
        "POST", "/deposits", "op", json={"id": "d", "member_id": "buy-a", "amount_fen": 10**7}
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("kind", "b_from", "expected"),
    [
        (OrderKind.BATCH, NOW_SLOT, "prov-b"),  # prov-b can serve it: it goes there
        (OrderKind.BATCH, NOW_SLOT + 10, "prov-a"),  # prov-b only after the deadline
        (OrderKind.GANG, NOW_SLOT, "prov-b"),
        (OrderKind.GANG, NOW_SLOT + 10, "prov-a"),
    ],
)
def test_requeued_work_avoids_the_provider_that_failed_it(
    api: Api, kind: OrderKind, b_from: int, expected: str
) -> None:
    gang = kind is OrderKind.GANG
    order = Order(
        "job",
        "buy-a",
        kind,
        gpus=1,
        release_slot=NOW_SLOT,
        deadline_slot=NOW_SLOT + 6,
        limit_fen=2000,
        gpu_hours=0 if gang else 3,
        duration_slots=2 if gang else 0,
        regions=frozenset({REGION}),
    )
    market(api, order, b_from)
    clear(api, "clr-1")
    first = leases_of(api, "job")
    assert {x["provider_id"] for x in first} == {"prov-a"}  # the cheaper provider
    assert len(first) == (2 if gang else 3)

    # prov-a fails the lease of the last slot before it delivered anything.
    r = api.call("POST", f"/leases/{first[-1]['id']}/fail", "prov-a")
    assert r.status_code == 200, r.text
    assert status(api, "job") == ("open" if gang else "partially")

    clear(api, "clr-2")
    again = [x for x in leases_of(api, "job") if x["clearing_id"] == "clr-2"]
    assert again, "the undelivered work was not cleared again"
    assert {x["provider_id"] for x in again} == {expected}, again
    assert all(NOW_SLOT <= x["slot"] < NOW_SLOT + 6 for x in again)  # before the deadline
    assert sum(x["gpus"] for x in again) == (2 if gang else 1)
    api.client.app.state.ctx.ledger.check_invariants()
