"""The network through the service: links (public read, operator write), orders that carry
input data and speeds, clearings that move data over links and bill it on the ledger."""

from __future__ import annotations

from typing import Any

import pytest

from suangu.api import orderbatch
from suangu.core import billing
from suangu.core.types import Order, OrderKind, speed_of
from suangu.store.models import Role

from .conftest import EPOCH, NOW_SLOT, Api


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def link(a: str, b: str, *, gbps: float = 10.0, fen: int = 20, ms: float = 15.0) -> dict[str, Any]:
    return {
        "from_region": a,
        "to_region": b,
        "latency_ms": ms,
        "bandwidth_gbps": gbps,
        "price_fen_per_gb": fen,
    }


def test_links_are_public_and_the_operator_replaces_them(api: Api) -> None:
    api.member("op", Role.OPERATOR)
    api.member("team", Role.BUYER)
    assert ok(api.call("GET", "/links", None)) == {"items": []}
    net = [link("beijing", "inner-mongolia"), link("beijing", "gansu", fen=30)]
    got = ok(api.call("PUT", "/links", "op", json={"links": net}))
    assert [(x["from_region"], x["to_region"]) for x in got["items"]] == [
        ("beijing", "gansu"),
        ("beijing", "inner-mongolia"),
    ]
    assert ok(api.call("GET", "/links", None)) == got  # anyone reads them, no key needed
    # The same set again changes nothing; a retried write with its key answers the same.
    assert ok(api.call("PUT", "/links", "op", json={"links": net})) == got
    headers = {"Idempotency-Key": "net-1"}
    first = ok(api.call("PUT", "/links", "op", json={"links": net[:1]}, headers=headers))
    again = ok(api.call("PUT", "/links", "op", json={"links": net[:1]}, headers=headers))
    assert first == again and len(first["items"]) == 1
    assert ok(api.call("GET", "/links", "team"))["items"] == first["items"]
    # Buyers may not write the network.
    assert api.call("PUT", "/links", "team", json={"links": net}).status_code == 403
    assert ok(api.call("PUT", "/links", "op", json={"links": []})) == {"items": []}


@pytest.mark.parametrize(
    ("links", "field"),
    [
        ([link("a", "a")], "body.links[0].to_region"),
        ([link("a", "b", gbps=0)], "body.links[0].bandwidth_gbps"),
        ([link("a", "b", fen=-1)], "body.links[0].price_fen_per_gb"),
        ([link("a", "b"), link("c", "d", ms=-1)], "body.links[1].latency_ms"),
        ([link("a", "b"), link("a", "b", fen=3)], "body.links[1]"),
        ([{**link("a", "b"), "colour": "red"}], "body.links[0].colour"),
    ],
    ids=["same regions", "no bandwidth", "negative price", "negative latency", "twice", "extra"],
)
def test_bad_links_name_the_field_and_change_nothing(
    api: Api, links: list[dict[str, Any]], field: str
) -> None:
    api.member("op", Role.OPERATOR)
    ok(api.call("PUT", "/links", "op", json={"links": [link("x", "y")]}))
    r = api.call("PUT", "/links", "op", json={"links": links})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field, r.json()
    assert r.json()["fix"]
    assert [x["from_region"] for x in ok(api.call("GET", "/links", None))["items"]] == ["x"]


def _order(**extra: Any) -> dict[str, Any]:
    return {
        "id": "o1",
        "kind": "batch",
        "gpus": 2,
        "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 4,
        "limit_fen": 3000,
        "gpu_hours": 4,
        **extra,
    }


@pytest.mark.parametrize("group_commit", ["1", "0"], ids=["group-commit", "one-by-one"])
def test_orders_carry_data_reference_class_and_speed(
    api: Api, group_commit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(orderbatch.BATCH_ENV, group_commit)
    api.member("team", Role.BUYER)
    body = _order(
        data_gb=100, home="beijing", reference_class="a800", speed={"H100": 2.5, "l40s": 1.1}
    )
    got = ok(api.call("POST", "/orders", "team", json=body), 201)
    assert got["data_gb"] == 100 and got["home"] == "beijing"
    assert got["reference_class"] == "A800-SXM-80GB"
    assert got["speed"] == {"H100-SXM-80GB": 2.5, "L40S": 1.1}
    detail = ok(api.call("GET", "/orders/o1", "team"))
    assert detail.pop("planned") == [] and detail == got
    # The same order again is the same order; other data is a conflict on the id.
    assert ok(api.call("POST", "/orders", "team", json=body), 201) == got
    r = api.call("POST", "/orders", "team", json={**body, "speed": {"H100": 2.0}})
    assert r.status_code == 409 and r.json()["field"] == "body.id", r.text
    # Defaults keep the old meaning.
    plain = ok(api.call("POST", "/orders", "team", json=_order(id="o2")), 201)
    assert (plain["data_gb"], plain["reference_class"], plain["speed"]) == (0, None, {})
    # And the YAML job spec takes the same fields.
    text = (
        f"id: y1\nbuyer: team\nkind: batch\ngpus: 1\ngpu_hours: 8\nrelease: {NOW_SLOT}\n"
        f"deadline: {NOW_SLOT + 8}\nlimit: 20.00\nhome: beijing\ndata_gb: 250\n"
        "reference_class: A800\nspeed: {H100: 3}\n"
    )
    items = ok(
        api.call(
            "POST",
            "/orders/yaml",
            "team",
            content=text.encode(),
            headers={"Content-Type": "application/yaml"},
        ),
        201,
    )["items"]
    assert (items[0]["data_gb"], items[0]["reference_class"], items[0]["speed"]) == (
        250,
        "A800-SXM-80GB",
        {"H100-SXM-80GB": 3.0},
    )


def _market(api: Api, *, buyers: tuple[str, ...] = ("team",)) -> None:
    """A provider in inner-mongolia with 4 H100s for 6 slots at 900 fen; buyers with money."""
    api.member("op", Role.OPERATOR)
    api.member("audit", Role.AUDITOR)
    api.member("dc", Role.PROVIDER)
    for b in buyers:
        api.member(b, Role.BUYER)
        ok(
            api.call(
                "POST",
                "/deposits",
                "op",
                json={"id": f"d-{b}", "member_id": b, "amount_fen": 10**6},
            ),
            201,
        )
    site = {
        "id": "hor",
        "name": "Horinger",
        "province": "Inner Mongolia",
        "region": "inner-mongolia",
        "lat": 40.5,
        "lon": 111.8,
    }
    ok(api.call("POST", "/sites", "dc", json=site), 201)
    ok(
        api.call("POST", "/pools", "dc", json={"id": "p", "site_id": "hor", "gpu_class": "H100"}),
        201,
    )
    offer = {
        "id": "f",
        "pool_id": "p",
        "start_slot": NOW_SLOT,
        "gpus": [4] * 6,
        "reserve_fen": [900],
    }
    ok(api.call("POST", "/offers", "dc", json={**offer, "reserve_fen": [900] * 6}), 201)


def _meter_all(api: Api, *, use: float = 1.0) -> None:
    mine = ok(api.call("GET", "/leases?limit=500", "dc"))["items"]
    api.clock.set(max(api.clock.now(), EPOCH + (max(x["slot"] for x in mine) + 1) * 3600))
    for x in mine:
        start = EPOCH + x["slot"] * 3600
        ok(
            api.call(
                "POST",
                f"/leases/{x['id']}/readings",
                "dc",
                json={
                    "id": "r1",
                    "interval_start": start,
                    "interval_end": start + 3600,
                    "gpu_seconds": int(x["gpus"] * 3600 * use),
                    "energy_wh": 100,
                    "final": True,
                },
            ),
            201,
        )


def test_data_moved_over_a_link_is_held_and_billed(api: Api) -> None:
    _market(api)
    # Data at home in beijing, compute only in inner-mongolia: without a link it cannot run.
    ok(api.call("POST", "/orders", "team", json=_order(data_gb=100, home="beijing")), 201)
    first = ok(api.call("POST", "/clearings", "op", json={"id": "c0", "n_slots": 4}), 201)
    assert first["n_allocations"] == 0
    ok(api.call("PUT", "/links", "op", json={"links": [link("beijing", "inner-mongolia")]}))
    ok(api.call("POST", "/clearings", "op", json={"id": "c1", "n_slots": 4}), 201)
    clearing = ok(api.call("GET", "/clearings/c1", "audit"))
    allocations = clearing["allocations"]
    assert sum(a["gpus"] for a in allocations) == 4
    # 100 GB at 10 Gbit/s take 80 s: the work starts one slot after the release.
    assert min(a["slot"] for a in allocations) == NOW_SLOT + 1
    [moved] = clearing["transfers"]
    assert (moved["order_id"], moved["from_region"], moved["to_region"]) == (
        "team~o1",
        "beijing",
        "inner-mongolia",
    )
    assert moved["gb"] == pytest.approx(100.0)
    assert moved["carrier_fen"] == 2000 and moved["congestion_fen"] == 0
    assert clearing["link_prices"] == [
        {
            "from_region": "beijing",
            "to_region": "inner-mongolia",
            "congestion_fen_per_gb": 0,
            "transfer_fen_per_gb": 20,
            "gb": pytest.approx(100.0),
            "capacity_gb": pytest.approx(10 * 4 * 3600 / 8),
        }
    ]
    compute = sum(a["price_fen"] * a["gpus"] for a in allocations)
    # Buyers never pay above their value: price plus transfer charges within the limit.
    assert compute + 2000 <= 3000 * 4
    buyer = ok(api.call("GET", "/accounts/buyer:team:CNY", "team"))
    assert buyer["debits_pending"] == compute + 2000

    _meter_all(api)
    buyer = ok(api.call("GET", "/accounts/buyer:team:CNY", "team"))
    assert buyer["debits_pending"] == 0 and buyer["balance"] == 10**6 - compute - 2000
    network = ok(api.call("GET", "/accounts/exchange:network:CNY", "audit"))
    assert network["balance"] == 2000
    provider = ok(api.call("GET", "/accounts/provider:dc:CNY", "dc"))
    fees = ok(api.call("GET", "/accounts/exchange:fees:CNY", "audit"))
    assert provider["balance"] + fees["balance"] == compute
    clearing_acc = ok(api.call("GET", "/accounts/exchange:clearing:CNY", "audit"))
    assert clearing_acc["balance"] == 0
    statement = ok(api.call("GET", "/accounts/exchange:network:CNY/transfers", "audit"))["items"]
    assert [(t["id"], t["code"], t["amount"]) for t in statement] == [
        ("carrier:hold:c1:team~o1", "data_transfer", 2000)
    ]
    assert network["kind"] == "exchange_network"
    api.client.app.state.ctx.ledger.check_invariants()


def test_an_order_that_never_ran_pays_nothing_for_its_data(api: Api) -> None:
    _market(api)
    ok(api.call("PUT", "/links", "op", json={"links": [link("beijing", "inner-mongolia")]}))
    ok(api.call("POST", "/orders", "team", json=_order(data_gb=100, home="beijing")), 201)
    ok(api.call("POST", "/clearings", "op", json={"id": "c1", "n_slots": 4}), 201)
    assert ok(api.call("GET", "/accounts/buyer:team:CNY", "team"))["debits_pending"] > 0
    _meter_all(api, use=0.0)
    buyer = ok(api.call("GET", "/accounts/buyer:team:CNY", "team"))
    assert buyer["debits_pending"] == 0 and buyer["balance"] == 10**6
    assert ok(api.call("GET", "/accounts/exchange:network:CNY", "audit"))["balance"] == 0
    api.client.app.state.ctx.ledger.check_invariants()


def test_a_congested_link_charges_its_price_to_every_order_on_it(api: Api) -> None:
    """Two buyers' data compete for a link that carries less than both: its congestion price
    is billed to each order moving data over it, and the ledger balances."""
    _market(api, buyers=("team", "lab"))
    # 0.06 Gbit/s carry 162 GB over 6 slots, less than the 2 x 100 GB the orders hold; 100 GB
    # take 4 slots to cross, so both orders fit in the last 2 slots' 8 GPUs only if the link
    # carried all their data.
    net = [link("beijing", "inner-mongolia", gbps=0.06, fen=1)]
    ok(api.call("PUT", "/links", "op", json={"links": net}))
    for b in ("team", "lab"):
        body = _order(id=f"o-{b}", gpus=4, data_gb=100, home="beijing", deadline_slot=NOW_SLOT + 6)
        ok(api.call("POST", "/orders", b, json=body), 201)
    ok(api.call("POST", "/clearings", "op", json={"id": "c1", "n_slots": 6}), 201)
    clearing = ok(api.call("GET", "/clearings/c1", "audit"))
    [price] = clearing["link_prices"]
    assert price["capacity_gb"] == pytest.approx(162.0)
    assert 162.0 - 25 < price["gb"] <= 162.0 + 1e-6  # full: another GPU-slot would move 25 GB
    assert price["congestion_fen_per_gb"] > 0
    assert {a["slot"] for a in clearing["allocations"]} == {NOW_SLOT + 4, NOW_SLOT + 5}
    charged = {t["order_id"]: t["carrier_fen"] + t["congestion_fen"] for t in clearing["transfers"]}
    assert set(charged) == {"team~o-team", "lab~o-lab"}
    for t in clearing["transfers"]:
        assert t["congestion_fen_per_gb"] == price["congestion_fen_per_gb"]
        assert t["congestion_fen"] == int(t["gb"] * t["congestion_fen_per_gb"])
        cost = sum(
            a["price_fen"] * a["gpus"]
            for a in clearing["allocations"]
            if a["order_id"] == t["order_id"]
        )
        got = sum(a["gpus"] for a in clearing["allocations"] if a["order_id"] == t["order_id"])
        assert cost + t["carrier_fen"] + t["congestion_fen"] <= 3000 * got  # within the limit
    _meter_all(api)
    network = ok(api.call("GET", "/accounts/exchange:network:CNY", "audit"))
    assert network["balance"] == sum(charged.values())
    paid = 0
    for b in ("team", "lab"):
        acc = ok(api.call("GET", f"/accounts/buyer:{b}:CNY", b))
        assert acc["debits_pending"] == 0
        paid += 10**6 - acc["balance"]
    provider = ok(api.call("GET", "/accounts/provider:dc:CNY", "dc"))["balance"]
    fees = ok(api.call("GET", "/accounts/exchange:fees:CNY", "audit"))["balance"]
    assert paid == provider + fees + network["balance"]
    api.client.app.state.ctx.ledger.check_invariants()


def test_speed_weighted_orders_clear_and_reopen_by_work(api: Api) -> None:
    """An order counted in A800 GPU-hours needs fewer H100 GPU-hours; what is left of it
    after a partial fill is counted in reference work, as in the simulation."""
    _market(api)
    h100 = speed_of(Order("x", "b", OrderKind.BATCH, 1, 0, 1, 1, 1, reference_class="A800"), "H100")
    assert h100 > 3
    # 12 A800 GPU-hours = about 3.8 H100 GPU-hours: 4 H100 GPU-slots.
    body = _order(gpu_hours=12, gpus=1, reference_class="A800", limit_fen=400)
    ok(api.call("POST", "/orders", "team", json=body), 201)
    ok(api.call("POST", "/clearings", "op", json={"id": "c1", "n_slots": 2}), 201)
    got = ok(api.call("GET", "/clearings/c1", "audit"))["allocations"]
    assert sum(a["gpus"] for a in got) == 2  # one GPU in each of the 2 slots of the horizon
    assert ok(api.call("GET", "/orders/o1", "team"))["status"] == "partially"
    # The rest: 12 - 2 x 3.17 = 5.66 A800 GPU-hours, bid for as 5 whole hours (as in the
    # simulation): one more H100 slot (3.17) fits, a second would overshoot.
    ok(api.call("POST", "/clearings", "op", json={"id": "c2", "first_slot": NOW_SLOT + 2}), 201)
    more = ok(api.call("GET", "/clearings/c2", "audit"))["allocations"]
    assert sum(a["gpus"] for a in more) == 1
    # 2.49 A800 GPU-hours are left, less than one H100 slot does: the order does not reopen.
    ok(api.call("POST", "/clearings", "op", json={"id": "c3", "first_slot": NOW_SLOT + 4}), 201)
    assert ok(api.call("GET", "/clearings/c3", "audit"))["allocations"] == []


def test_the_network_account_has_its_name() -> None:
    assert billing.exchange_network_account() == "exchange:network:CNY"
