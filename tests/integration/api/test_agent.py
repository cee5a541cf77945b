"""The provider agent against a real exchange (the API on SQLite and PostgreSQL): it starts
the leases' jobs, reports readings, and the exchange settles the orders from them."""

from __future__ import annotations

import sys
from typing import Any

from suangu.agent.executors import LocalExecutor
from suangu.agent.meters import NominalMeter
from suangu.agent.runner import ProviderAgent
from suangu.client import ClientError, problem_line
from suangu.core.types import Order, OrderKind
from suangu.store.repositories import Orders

from .conftest import API, NOW_SLOT, Api, build_world


class AsProvider:
    """The agent's view of the API through the test client, as one member."""

    def __init__(self, api: Api, member: str) -> None:
        self.api, self.member = api, member

    def _answer(self, r: Any) -> Any:
        if not r.is_success:
            raise ClientError(problem_line(r.json(), r.status_code), status=r.status_code)
        return r.json()

    def get(self, path: str, **params: Any) -> Any:
        return self._answer(self.api.call("GET", path, self.member, params=params))

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self._answer(self.api.call("POST", path, self.member, json=json))

    def all_pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.get(path, limit=200, cursor=cursor, **params)
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return items


def _service_order(api: Api) -> str:
    """A small world plus a service order of buy-a for two consecutive slots, cleared."""
    build_world(api)
    order = Order(
        "svc-a",
        "buy-a",
        OrderKind.SERVICE,
        gpus=2,
        release_slot=NOW_SLOT + 3,
        deadline_slot=NOW_SLOT + 5,
        limit_fen=2000,
        regions=frozenset({"inner-mongolia"}),
    )
    with api.db.session_scope() as s:
        Orders(s).submit(order, api.clock.now())
    r = api.call("POST", "/clearings", "op", json={"id": "clr-svc"})
    assert r.status_code == 201, r.text
    for x in _leases(api, "ord-buy-a"):  # the world's other lease on prov-a: out of the way
        assert api.call("POST", f"/leases/{x['id']}/fail", "prov-a").status_code == 200
    return order.id


def _leases(api: Api, order_id: str) -> list[dict[str, Any]]:
    r = api.client.get(API + "/leases", params={"order_id": order_id}, headers=api.h("op"))
    return sorted(r.json()["items"], key=lambda x: x["slot"])


def _agent(api: Api, command: list[str], devices: list[int]) -> ProviderAgent:
    clock = api.clock.now
    return ProviderAgent(
        AsProvider(api, "prov-a"),
        LocalExecutor(command, devices, clock),
        NominalMeter("H100", 0.5),
        clock,
        reading_interval_s=600,
        instance="t1",
    )


SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


def test_agent_runs_meters_and_the_exchange_settles(api: Api) -> None:
    order_id = _service_order(api)
    leases = _leases(api, order_id)
    assert [x["slot"] for x in leases] == [NOW_SLOT + 3, NOW_SLOT + 4]
    assert all(x["pool_id"] == "site-a-h100" for x in leases)
    first, last = leases[0]["slot"], leases[-1]["slot"]
    epoch = api.call("GET", "/market/grid", "op").json()["epoch"]
    agent = _agent(api, SLEEP, list(range(8)))

    api.clock.set(epoch + first * 3600 + 60)
    started_at = api.clock.now()
    s = agent.tick()
    assert s.started == 1 and not s.errors, s
    assert s.readings == 0  # nothing to report yet
    api.clock.advance(700)
    s = agent.tick()
    assert s.readings == 1 and s.finals == 0  # the periodic reading
    end = epoch + (last + 1) * 3600
    while api.clock.now() < end + 30:  # the agent polls every 5 minutes, on the minute
        api.clock.set(min((api.clock.now() // 300 + 1) * 300, end + 30))
        s = agent.tick()
        assert not s.errors and not s.failed, s
    assert not agent.runs  # every lease reported, each job stopped at the end of its slots
    # Each lease ran from its slot's start (the first from when the agent started it).
    expected = sum(
        x["gpus"] * (3600 if x["slot"] != first else epoch + (first + 1) * 3600 - started_at)
        for x in leases
    )

    after = _leases(api, order_id)
    assert {x["state"] for x in after} == {"settled"}
    readings = [
        rd
        for x in after
        for rd in api.call("GET", f"/leases/{x['id']}/readings", "prov-a").json()["items"]
    ]
    gpu_s = sum(rd["gpu_seconds"] for rd in readings)
    assert gpu_s == expected
    energy = sum(rd["energy_wh"] for rd in readings)
    assert abs(energy - 350 * expected / 3600) <= len(readings)
    # The buyer paid the metered GPU-seconds at the lease price; the rest was released.
    price = after[0]["price_fen"]
    statement = api.call("GET", "/accounts", "buy-a").json()["items"]
    spent = sum(a["debits_posted"] for a in statement)
    assert spent == -(-gpu_s * price // 3600) or spent == gpu_s * price // 3600


def test_a_job_that_cannot_start_fails_its_leases(api: Api) -> None:
    order_id = _service_order(api)
    leases = _leases(api, order_id)
    epoch = api.call("GET", "/market/grid", "op").json()["epoch"]
    agent = _agent(api, SLEEP, [0])  # one GPU: the lease needs more
    assert leases[0]["gpus"] > 1
    api.clock.set(epoch + leases[0]["slot"] * 3600 + 5)
    s = agent.tick()
    assert s.started == 0 and s.failed == len(leases), s
    assert {x["state"] for x in _leases(api, order_id)} <= {"failed", "settled"}


def test_a_job_that_ends_early_is_paid_for_what_it_used(api: Api) -> None:
    order_id = _service_order(api)
    leases = _leases(api, order_id)
    epoch = api.call("GET", "/market/grid", "op").json()["epoch"]
    agent = _agent(api, [sys.executable, "-c", "pass"], list(range(8)))
    start = epoch + leases[0]["slot"] * 3600
    api.clock.set(start)
    assert agent.tick().started == 1
    run = next(iter(agent.runs.values()))
    assert run.job is not None
    agent.executor._procs[run.job.run_id].wait(timeout=30)  # type: ignore[attr-defined]
    api.clock.advance(100)
    s = agent.tick()
    assert s.finals >= 1
    # Later slots get a final reading of nothing when they come.
    api.clock.set(epoch + (leases[-1]["slot"] + 1) * 3600)
    agent.tick()
    after = _leases(api, order_id)
    assert {x["state"] for x in after} == {"settled"}
    used = sum(
        rd["gpu_seconds"]
        for x in after
        for rd in api.call("GET", f"/leases/{x['id']}/readings", "prov-a").json()["items"]
    )
    assert used == leases[0]["gpus"] * 100
