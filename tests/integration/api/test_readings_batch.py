"""An agent's readings of a whole tick in one call (``POST /readings``) and its open leases in
one listing (``GET /leases?state=scheduled&state=running``), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from suangu.store.ledger import SqlLedger

from .conftest import BACKENDS, EPOCH, Api, _database, build_world, make_api

HOUR = 3600


@pytest.fixture(params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    for backend, db in _database(request.param, tmp_path):
        world = make_api(backend, db)
        build_world(world)
        yield world


def _leases(api: Api, who: str = "op", query: str = "") -> list[dict[str, Any]]:
    r = api.call("GET", f"/leases?limit=500{query}", who)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def _final(lease: dict[str, Any], reading_id: str) -> dict[str, Any]:
    start = EPOCH + lease["slot"] * HOUR
    return {
        "lease_id": lease["id"],
        "id": reading_id,
        "interval_start": start,
        "interval_end": start + HOUR,
        "gpu_seconds": lease["gpus"] * HOUR,
        "energy_wh": 100,
        "final": True,
    }


def test_a_batch_of_final_readings_completes_and_settles_every_order(api: Api) -> None:
    leases = _leases(api)
    assert leases
    api.clock.set(EPOCH + (max(x["slot"] for x in leases) + 1) * HOUR)
    by_provider: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for x in leases:
        by_provider[x["provider_id"]].append(x)
    settled = 0
    for provider, xs in sorted(by_provider.items()):
        body = [_final(x, f"f{k}") for k, x in enumerate(xs)]
        r = api.call("POST", "/readings", provider, json=body)
        assert r.status_code == 201, r.text
        assert r.json()["recorded"] == len(xs)
        settled += r.json()["settled"]
        # The same batch again is recognised: nothing is counted twice.
        again = api.call("POST", "/readings", provider, json=body)
        assert again.status_code == 201 and again.json() == {"recorded": 0, "settled": 0}
    assert settled == len({(x["clearing_id"], x["order_id"]) for x in leases})
    assert {x["state"] for x in _leases(api)} == {"settled"}
    SqlLedger(api.db).check_invariants()


def test_one_bad_reading_refuses_the_whole_batch(api: Api) -> None:
    leases = _leases(api)
    api.clock.set(EPOCH + (max(x["slot"] for x in leases) + 1) * HOUR)
    mine = [x for x in leases if x["provider_id"] == "prov-a"]
    theirs = next(x for x in leases if x["provider_id"] != "prov-a")
    body = [_final(x, f"f{k}") for k, x in enumerate(mine)] + [_final(theirs, "fx")]
    r = api.call("POST", "/readings", "prov-a", json=body)
    assert r.status_code == 404, r.text
    assert r.json()["field"] == f"body[{len(mine)}].lease_id"
    assert {x["state"] for x in _leases(api)} <= {"scheduled", "running"}
    early = dict(_final(mine[0], "late"), interval_end=EPOCH + 10**9)
    r = api.call("POST", "/readings", "prov-a", json=[early])
    assert r.status_code == 422 and r.json()["field"] == "body[0].interval_end", r.text
    assert api.call("POST", "/readings", "buy-a", json=[]).status_code == 403


def test_an_agent_lists_its_open_leases_in_one_call(api: Api) -> None:
    leases = _leases(api, "prov-a")
    first = min(x["slot"] for x in leases)
    api.clock.set(EPOCH + first * HOUR)
    done = next(x for x in leases if x["slot"] == first)
    api.clock.set(EPOCH + (first + 1) * HOUR)
    r = api.call("POST", "/readings", "prov-a", json=[_final(done, "f0")])
    assert r.status_code == 201, r.text
    both = _leases(api, "prov-a", "&state=scheduled&state=running")
    assert {x["id"] for x in both} == {x["id"] for x in leases} - {done["id"]}
    one = _leases(api, "prov-a", "&state=scheduled")
    assert {x["state"] for x in one} <= {"scheduled"}
