"""Checkpoints make divisible work real, on SQLite and PostgreSQL: a small training loop split
over three leases at two providers (warned with SIGTERM before each lease ends, its checkpoint
uploaded and restored at the next lease, wherever it runs) ends with exactly the result of
an uninterrupted run."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from suangu.agent.executors import JobState
from suangu.agent.sandbox import SandboxExecutor, bwrap_available
from suangu.core.types import Allocation, ClearingResult, ClearingStatus
from suangu.store.repositories import Clearings

from .conftest import EPOCH, NOW_SLOT, Api
from .test_sandbox import AsProvider, world

WHY = bwrap_available()
PYTHON = Path("/usr/bin/python3")
pytestmark = [
    pytest.mark.skipif(WHY is not None, reason=f"bubblewrap cannot confine payloads here: {WHY}"),
    pytest.mark.skipif(not PYTHON.exists(), reason="no /usr/bin/python3 for the payload"),
]

TOTAL = 300
INIT = [0.5, -1.25, 2.0, 0.125, -0.75, 1.5]
# Gradient steps towards a moving target; SIGTERM: write the state and stop at a step's end.
TRAIN = f"""\
import json, math, os, signal, sys, time
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
ck = os.path.join(os.environ["SUANGU_CHECKPOINT_DIR"], "state.json")
if os.path.exists(ck):
    with open(ck) as f:
        st = json.load(f)
    step, w = st["step"], st["w"]
else:
    step, w = 0, [float(x) for x in open("inputs/init.csv").read().split(",")]
while step < {TOTAL}:
    if stop:
        with open(ck, "w") as f:
            json.dump({{"step": step, "w": w}}, f)
        sys.exit(0)
    w = [x - 0.1 * (x - math.sin(i * 0.3 + step * 0.02)) for i, x in enumerate(w)]
    step += 1
    with open("progress", "w") as f:
        f.write(str(step))
    time.sleep(0.004)
os.makedirs("out", exist_ok=True)
with open("out/model.json", "w") as f:
    json.dump({{"step": step, "w": w}}, f)
"""


def reference() -> dict[str, Any]:
    w = list(INIT)
    for step in range(TOTAL):
        w = [x - 0.1 * (x - math.sin(i * 0.3 + step * 0.02)) for i, x in enumerate(w)]
    return {"step": TOTAL, "w": w}


def progress(root: Path, run_id: str) -> int:
    try:
        return int((root / run_id / "work" / "progress").read_text() or 0)
    except (OSError, ValueError):
        return 0


def test_training_split_over_three_leases_at_two_providers(api: Api, tmp_path: Path) -> None:
    world(api)
    init = ",".join(repr(x) for x in INIT).encode()
    obj = api.call("POST", "/data", "buy-a", params={"name": "init.csv"}, content=init).json()
    body = {
        "id": "train", "kind": "batch", "gpus": 1, "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 4, "limit_fen": 2000, "gpu_hours": 3,
        "regions": ["inner-mongolia", "ningxia"], "home": "inner-mongolia",
        "workload": {
            "runtime": {"kind": "process", "command": ["python3", "train.py"],
                        "files": {"train.py": TRAIN}},
            "inputs": [{"object": obj["id"], "sha256": obj["sha256"], "size": obj["size"],
                        "path": "inputs/init.csv"}],
            "outputs": ["out/model.json"],
            "checkpoint": True,
        },
    }  # fmt: skip
    r = api.call("POST", "/orders", "buy-a", json=body)
    assert r.status_code == 201, r.text
    # Three slots, two providers: Horinger, then Zhongwei, then Horinger again.
    plan = [("site-a-h100", "prov-a"), ("site-b-h100", "prov-b"), ("site-a-h100", "prov-a")]
    allocations = tuple(
        Allocation("buy-a~train", "buy-a", pool, NOW_SLOT + n, 1, 500)
        for n, (pool, _) in enumerate(plan)
    )
    result = ClearingResult(ClearingStatus.OPTIMAL, "test", allocations, (), (), 0)
    with api.db.session_scope() as s:
        leases = Clearings(s).save(
            "clr-train", api.clock.now(), NOW_SLOT, 3, result,
            providers={"site-a-h100": "prov-a", "site-b-h100": "prov-b"},
        )  # fmt: skip
    leases = sorted(leases, key=lambda x: x.allocation.slot)
    roots = {p: tmp_path / p for p in ("prov-a", "prov-b")}
    executors = {
        p: SandboxExecutor(AsProvider(api, p), roots[p], [0], api.clock.now,
                           checkpoint_warning_s=120)
        for p in roots
    }  # fmt: skip
    restored_from = []
    for n, (lease, (_, provider)) in enumerate(zip(leases, plan, strict=True)):
        start = EPOCH + lease.allocation.slot * 3600
        api.clock.set(start + 60)
        ex = executors[provider]
        run_id = f"run{n}"
        job = ex.submit(run_id, 1, 3600 - 60, {"lease_id": lease.id, "order_id": "buy-a~train"})
        assert job.state is JobState.RUNNING, job.detail
        proc = ex._runs[run_id].proc
        state = roots[provider] / run_id / "work" / ".checkpoint" / "state.json"
        restored_from.append(json.loads(state.read_text())["step"] if state.exists() else 0)
        deadline = time.monotonic() + 60
        if n < 2:  # let it train a while, then the lease is about to end: SIGTERM
            while progress(roots[provider], run_id) < restored_from[-1] + 40:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.01)
            api.clock.set(start + 3600 - 100)
            ex.poll(job, api.clock.now())
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the payload did not end"
            time.sleep(0.01)
        job = ex.poll(job, api.clock.now())
        assert job.state is JobState.DONE, job.detail
        if n < 2:
            assert job.detail == "checkpointed before the lease ended"
    assert restored_from[0] == 0 and 0 < restored_from[1] < restored_from[2] < TOTAL

    (model,) = [
        o
        for o in api.call("GET", "/data", "buy-a").json()["items"]
        if o["name"] == "out/model.json"
    ]
    got = json.loads(api.call("GET", f"/data/{model['id']}/content", "buy-a").content)
    assert got == reference()  # exactly the uninterrupted result
    assert model["lease_id"] == leases[2].id
    events = api.call("GET", "/data/events", "aud", params={"limit": 500}).json()["items"]
    ckpts = [(e["member_id"], e["lease_id"]) for e in events if e["kind"] == "checkpoint"]
    assert ckpts == [("prov-a", leases[0].id), ("prov-b", leases[1].id)]
    # prov-b restored prov-a's checkpoint through a grant, and prov-a restored prov-b's.
    downloads = [(e["member_id"], e["lease_id"]) for e in events if e["kind"] == "download"]
    assert ("prov-b", leases[1].id) in downloads and ("prov-a", leases[2].id) in downloads
