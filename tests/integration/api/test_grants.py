"""Download grants and outputs of leases, on SQLite and PostgreSQL: a provider's agent gets
the inputs of a lease it holds only while it runs and only inside the order's residency;
every grant, download and output is recorded for the buyer and the auditor."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from suangu.core.types import Allocation, ClearingResult, ClearingStatus
from suangu.store.repositories import Clearings

from .conftest import EPOCH, NOW_SLOT, Api, build_world
from .test_workload import DATA, SECRET, order_json, upload, workload


@pytest.fixture
def leased(api: Api) -> Iterator[tuple[Api, dict[str, Any], list[dict[str, Any]]]]:
    """buy-a's order with a workload, cleared onto prov-a's site (in its region)."""
    build_world(api)
    obj = upload(api)
    r = api.call("POST", "/orders", "buy-a", json=order_json("wk", workload(obj)))
    assert r.status_code == 201, r.text
    r = api.call("POST", "/clearings", "op", json={"id": "clr-wk"})
    assert r.status_code == 201, r.text
    leases = api.call("GET", "/leases", "op", params={"order_id": "buy-a~wk"}).json()["items"]
    assert leases and all(x["provider_id"] == "prov-a" for x in leases), leases
    yield api, obj, sorted(leases, key=lambda x: x["slot"])


def at_slot(api: Api, slot: int, offset: int = 60) -> None:
    api.clock.set(EPOCH + slot * 3600 + offset)


def test_the_agent_of_a_running_lease_gets_its_inputs(leased: Any) -> None:
    api, obj, leases = leased
    lease = leases[0]
    lid = lease["id"]
    at_slot(api, lease["slot"])
    w = api.call("GET", f"/leases/{lid}/workload", "prov-a")
    assert w.status_code == 200, w.text
    assert w.json()["workload"]["secret_env"] == {"API_TOKEN": SECRET}  # its agent only
    for who in ("prov-b", "buy-a", "aud"):
        assert api.call("GET", f"/leases/{lid}/workload", who).status_code in (403, 404)
    r = api.call("POST", f"/leases/{lid}/grants", "prov-a")
    assert r.status_code == 201, r.text
    (g,) = r.json()["items"]
    assert (g["object"], g["sha256"], g["size"]) == (obj["id"], obj["sha256"], obj["size"])
    assert g["path"] == "inputs/cands.csv"
    assert g["expires_at"] == min(api.clock.now() + 900, EPOCH + (lease["slot"] + 1) * 3600)
    url = f"/data/{obj['id']}/content"
    got = api.call("GET", url, "prov-a", headers={"X-Suangu-Grant": g["token"]})
    assert got.status_code == 200 and got.content == DATA
    assert hashlib.sha256(got.content).hexdigest() == g["sha256"]
    # Without the grant, or with it as another member, nothing.
    assert api.call("GET", url, "prov-a").status_code == 404
    for who in ("prov-b", "buy-b"):
        r = api.call("GET", url, who, headers={"X-Suangu-Grant": g["token"]})
        assert r.status_code == 403 and r.json()["field"] == "header.X-Suangu-Grant"
    bad = api.call("GET", url, "prov-a", headers={"X-Suangu-Grant": "sgg_forged"})
    assert bad.status_code == 403
    # Expired grants are refused, and so are grants once the lease's slot is over.
    api.clock.set(g["expires_at"])
    r = api.call("GET", url, "prov-a", headers={"X-Suangu-Grant": g["token"]})
    assert r.status_code == 403
    at_slot(api, lease["slot"] + 1, 10)
    r = api.call("POST", f"/leases/{lid}/grants", "prov-a")
    assert r.status_code == 409 and r.json()["field"] == "path.lease_id"

    # The record: one grant and one download by prov-a, for the buyer and the auditor.
    for who in ("buy-a", "aud", "op", "prov-a"):
        events = api.call("GET", "/data/events", who, params={"lease_id": lid}).json()["items"]
        assert [(e["kind"], e["member_id"], e["object_id"]) for e in events] == [
            ("grant", "prov-a", obj["id"]),
            ("download", "prov-a", obj["id"]),
        ], who
        assert events[1]["grant_id"] == g["grant_id"] == events[0]["grant_id"]
    for who in ("buy-b", "prov-b"):
        assert api.call("GET", "/data/events", who).json()["items"] == []
    # The owner's own downloads are recorded too.
    assert api.call("GET", url, "buy-a").status_code == 200
    mine = api.call("GET", "/data/events", "buy-a", params={"object_id": obj["id"]}).json()
    assert [e["kind"] for e in mine["items"]][-1] == "download"
    assert mine["items"][-1]["member_id"] == "buy-a" and mine["items"][-1]["lease_id"] is None
    r = api.call("GET", "/data/events", "aud", params={"cursor": "x"})
    assert r.status_code == 422 and r.json()["field"] == "query.cursor"


def test_no_grant_before_the_slot_or_for_others(leased: Any) -> None:
    api, _obj, leases = leased
    lid = leases[0]["id"]
    at_slot(api, leases[0]["slot"], -120)  # two minutes before its slot
    r = api.call("POST", f"/leases/{lid}/grants", "prov-a")
    assert r.status_code == 409 and "not running" in r.json()["detail"]
    assert api.call("GET", f"/leases/{lid}/workload", "prov-a").status_code == 409
    at_slot(api, leases[0]["slot"])
    r = api.call("POST", f"/leases/{lid}/grants", "prov-b")  # not its lease
    assert r.status_code == 404 and r.json()["field"] == "path.lease_id"
    assert api.call("POST", f"/leases/{lid}/grants", "buy-a").status_code == 403
    # A lease without a workload has nothing to grant.
    plain = api.call("GET", "/leases", "prov-a", params={"order_id": "ord-buy-a"}).json()
    for x in plain["items"]:
        at_slot(api, x["slot"])
        r = api.call("POST", f"/leases/{x['id']}/grants", "prov-a")
        assert r.status_code in (404, 409), r.text


def test_a_site_outside_the_residency_is_refused(leased: Any) -> None:
    api, obj, _leases = leased
    # A lease of an order at prov-b's site in Ningxia (the order allows Inner Mongolia only).
    r = api.call("POST", "/orders", "buy-a", json=order_json("wk2", workload(obj)))
    assert r.status_code == 201, r.text
    a = Allocation("buy-a~wk2", "buy-a", "site-b-h100", NOW_SLOT + 1, 1, 100)
    result = ClearingResult(ClearingStatus.OPTIMAL, "test", (a,), (), (), 0)
    with api.db.session_scope() as s:
        (lease,) = Clearings(s).save(
            "clr-outside", api.clock.now(), NOW_SLOT, 2, result, providers={"site-b-h100": "prov-b"}
        )
    at_slot(api, NOW_SLOT + 1)
    r = api.call("POST", f"/leases/{lease.id}/grants", "prov-b")
    assert r.status_code == 403, r.text
    assert r.json()["field"] == "path.lease_id" and "residency" in r.json()["detail"]
    events = api.call("GET", "/data/events", "aud", params={"lease_id": lease.id}).json()
    assert events["items"] == []  # nothing granted


def test_outputs_become_the_buyers_objects(leased: Any) -> None:
    api, _obj, leases = leased
    lease = leases[0]
    lid = lease["id"]
    at_slot(api, lease["slot"], 600)
    result = b"c1,0.93\nc2,0.12\n"
    r = api.call(
        "POST", f"/leases/{lid}/outputs", "prov-a", params={"name": "out/scores.csv"},
        content=result,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["owner_id"] == "buy-a" and out["lease_id"] == lid and out["size"] == len(result)
    got = api.call("GET", f"/data/{out['id']}/content", "buy-a")
    assert got.content == result
    assert api.call("GET", f"/data/{out['id']}", "prov-a").status_code == 404  # the buyer's
    r = api.call("POST", f"/leases/{lid}/outputs", "prov-a", params={"name": "other"}, content=b"")
    assert r.status_code == 422 and r.json()["field"] == "query.name"
    r = api.call(
        "POST", f"/leases/{lid}/outputs", "prov-a",
        params={"name": "out/scores.csv", "sha256": "0" * 64}, content=result,
    )  # fmt: skip
    assert r.status_code == 422 and r.json()["field"] == "query.sha256"
    r = api.call(
        "POST", f"/leases/{lid}/outputs", "prov-b", params={"name": "out/scores.csv"},
        content=result,
    )  # fmt: skip
    assert r.status_code == 404
    kinds = api.call("GET", "/data/events", "buy-a", params={"lease_id": lid}).json()["items"]
    assert [(e["kind"], e["object_id"]) for e in kinds] == [("output", out["id"])]
    # A job spanning the run's slots uploads against its first lease until the run ends.
    assert len(leases) == 2 and leases[1]["slot"] == lease["slot"] + 1
    api.clock.set(EPOCH + (lease["slot"] + 1) * 3600 + 901)
    r = api.call(
        "POST", f"/leases/{lid}/outputs", "prov-a", params={"name": "out/scores.csv"},
        content=b"mid-run",
    )  # fmt: skip
    assert r.status_code == 201, r.text
    # Too late: past the run's last slot and the grace period.
    api.clock.set(EPOCH + (leases[-1]["slot"] + 1) * 3600 + 901)
    r = api.call(
        "POST", f"/leases/{lid}/outputs", "prov-a", params={"name": "out/scores.csv"},
        content=b"late",
    )  # fmt: skip
    assert r.status_code == 409 and r.json()["field"] == "path.lease_id"


def test_logs_come_in_order_and_only_from_the_leases_provider(leased: Any) -> None:
    api, _obj, leases = leased
    lid = leases[0]["id"]

    def ship(who: str, offset: int, size: int, text: bytes) -> Any:
        return api.call(
            "POST", f"/leases/{lid}/logs", who, params={"offset": offset, "size": size},
            content=text,
        )  # fmt: skip

    assert ship("prov-a", 0, 6, b"hello\n").status_code == 201
    again = ship("prov-a", 0, 6, b"hello\n")
    assert again.status_code == 200 and again.json()["offset"] == 0
    r = ship("prov-a", 0, 6, b"other\n")
    assert r.status_code == 409 and r.json()["field"] == "query.offset"
    r = ship("prov-a", 10, 2, b"x\n")  # a gap
    assert r.status_code == 409 and "continues at offset 6" in r.json()["detail"]
    assert ship("prov-a", 6, 20, b"*** redacted\n").status_code == 201
    r = ship("prov-a", 26, 1, b"\xff")
    assert r.status_code == 422 and r.json()["field"] == "body"
    assert ship("prov-b", 26, 2, b"x\n").status_code == 404
    assert ship("buy-a", 26, 2, b"x\n").status_code == 403
    page = api.call("GET", "/orders/wk/logs", "buy-a", params={"limit": 1}).json()
    assert [x["text"] for x in page["items"]] == ["hello\n"] and page["next_cursor"]
    rest = api.call("GET", "/orders/wk/logs", "buy-a", params={"cursor": page["resume"]}).json()
    assert [x["text"] for x in rest["items"]] == ["*** redacted\n"]
    assert rest["next_cursor"] is None and rest["resume"] == str(rest["items"][0]["id"])
    empty = api.call("GET", "/orders/wk/logs", "buy-a", params={"cursor": rest["resume"]}).json()
    assert empty["items"] == [] and empty["resume"] == rest["resume"]
    r = api.call("GET", "/orders/wk/logs", "buy-a", params={"cursor": "x"})
    assert r.status_code == 422 and r.json()["field"] == "query.cursor"
