"""An agent that batches its readings: one call per tick, and a failed call is sent again."""

from __future__ import annotations

from typing import Any

from suangu.agent.executors import SimulatedExecutor
from suangu.agent.meters import NominalMeter
from suangu.agent.runner import ProviderAgent
from suangu.client import ClientError

EPOCH, STEP = 1_000_000, 3600


class FakeApi:
    def __init__(self) -> None:
        self.leases = [
            {"id": f"l{k}", "order_id": "o1", "pool_id": "p1", "slot": k, "gpus": 2} for k in (0, 1)
        ]
        self.posts: list[tuple[str, Any]] = []
        self.listed: list[dict[str, Any]] = []
        self.refuse = 1  # refuse this many batches of readings

    def get(self, path: str, **params: Any) -> Any:
        assert path == "/market/grid"
        return {"epoch": EPOCH, "slot_seconds": STEP}

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        if path == "/readings" and self.refuse:
            self.refuse -= 1
            raise ClientError("the server is busy", status=503)
        self.posts.append((path, json))
        if path == "/readings":
            done = {x["lease_id"] for x in json if x["final"]}
            self.leases = [x for x in self.leases if x["id"] not in done]
        return {}

    def all_pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        self.listed.append(params)
        return [x for x in self.leases if x["slot"] <= params.get("slot_to", 10**9)]


def test_readings_go_in_one_call_per_tick_and_a_refused_batch_is_sent_again() -> None:
    now = [float(EPOCH)]
    api = FakeApi()
    agent = ProviderAgent(
        api,
        SimulatedExecutor(lambda: now[0]),
        NominalMeter("A800-SXM-80GB"),
        lambda: now[0],
        reading_interval_s=STEP,
        meters={"p1": NominalMeter("H800")},
        batch_readings=True,
        ahead_slots=1,
    )
    assert agent.tick().started == 1
    assert api.listed[0] == {"state": ["scheduled", "running"], "slot_to": 1}
    now[0] = EPOCH + STEP  # slot 0 ended: its batch is refused, so l0 stays open
    refused = agent.tick()
    assert refused.errors and refused.finals == 0
    now[0] = EPOCH + 2 * STEP  # both slots ended: one call with both final readings
    summary = agent.tick()
    assert summary.finals == 2 and not summary.errors
    batches = [body for path, body in api.posts if path == "/readings"]
    assert len(batches) == 1
    assert [(x["lease_id"], x["gpu_seconds"], x["final"]) for x in batches[0]] == [
        ("l0", 2 * STEP, True),
        ("l1", 2 * STEP, True),
    ]
    h800 = NominalMeter("H800").watts_per_gpu * 2 * STEP / 3600
    assert batches[0][1]["energy_wh"] == round(h800)
    assert not api.leases and not agent.runs
