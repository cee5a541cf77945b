"""End to end, on SQLite and PostgreSQL: a buyer submits an order with inputs, the exchange
clears it, the provider's agent stages the inputs through download grants, runs the payload
under bubblewrap, uploads its outputs and reports; the buyer downloads and checks them. And
what goes wrong: a payload that exits non-zero, one that writes outside its directory, an
input whose bytes are not what the order says: each a failed lease with the reason."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from suangu.agent.meters import NominalMeter
from suangu.agent.runner import ProviderAgent
from suangu.agent.sandbox import SandboxExecutor, bwrap_available
from suangu.client import ClientError, problem_line

from .conftest import EPOCH, Api, build_world

WHY = bwrap_available()
pytestmark = pytest.mark.skipif(
    WHY is not None, reason=f"bubblewrap cannot confine payloads here: {WHY}"
)

ROWS = [("c1", "MKTAYIAKQR"), ("c2", "GAVLIPFW"), ("c3", "ACDEFGHIKLMNPQRSTVWY")]
DATA = ("id,sequence\n" + "".join(f"{i},{s}\n" for i, s in ROWS)).encode()
SECRET = "s3cr3t-model-token"
# Scores each candidate by its length and count of hydrophobic residues; proves it saw its
# GPUs and its secret (by length only) without printing it.
SCORE = """\
set -e
echo "scoring $(($(wc -l < "$1") - 1)) candidates with token $API_TOKEN"
mkdir -p out
awk -F, 'NR > 1 { n = gsub(/[AVLIFMW]/, "", $2); print $1 "," length($0) "," n }' \\
    "$1" > "$2"
echo "gpus=$CUDA_VISIBLE_DEVICES token_len=${#API_TOKEN} lease=$SUANGU_LEASE_ID" > out/env.txt
"""


def expected_scores() -> bytes:
    out = []
    for i, s in ROWS:
        hydro = sum(c in "AVLIFMW" for c in s)
        line = f"{i},{s}"
        rest = len(line) - hydro  # awk's length($0) after gsub removed them
        out.append(f"{i},{rest},{hydro}\n")
    return "".join(out).encode()


class AsProvider:
    """The agent's view of the API through the test client, as one provider."""

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
        return list(self.get(path, limit=500, **params)["items"])

    def download(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[bytes, Mapping[str, str]]:
        r = self.api.call("GET", path, self.member, headers=dict(headers or {}))
        self._answer(r) if not r.is_success else None
        return r.content, r.headers

    def upload(self, path: str, data: bytes, params: Mapping[str, str]) -> Any:
        return self._answer(self.api.call("POST", path, self.member, params=params, content=data))


def submit(api: Api, oid: str, runtime: dict[str, Any], inputs: list[dict[str, Any]]) -> str:
    body = {
        "id": oid,
        "kind": "batch",
        "gpus": 1,
        "release_slot": api.clock.now() // 3600 - EPOCH // 3600,
        "deadline_slot": api.clock.now() // 3600 - EPOCH // 3600 + 3,
        "limit_fen": 2000,
        "gpu_hours": 1,
        "regions": ["inner-mongolia"],
        "home": "inner-mongolia",
        "workload": {
            "runtime": runtime,
            "inputs": inputs,
            "outputs": ["out/scores.csv", "out/env.txt"],
            "secret_env": {"API_TOKEN": SECRET},
        },
    }
    r = api.call("POST", "/orders", "buy-a", json=body)
    assert r.status_code == 201, r.text
    r = api.call("POST", "/clearings", "op", json={"id": f"clr-{oid}"})
    assert r.status_code == 201, r.text
    (lease,) = api.call("GET", "/leases", "op", params={"order_id": f"buy-a~{oid}"}).json()["items"]
    assert lease["provider_id"] == "prov-a"
    return str(lease["id"])


def world(api: Api) -> dict[str, Any]:
    build_world(api)
    # The world's own lease at prov-a has no workload: out of the way.
    for x in api.call("GET", "/leases", "op", params={"order_id": "ord-buy-a"}).json()["items"]:
        assert api.call("POST", f"/leases/{x['id']}/fail", "prov-a").status_code == 200
    # Failed work goes back into the market: the buyer cancels the rest.
    r = api.call("POST", "/orders/ord-buy-a/cancel", "buy-a")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    r = api.call("POST", "/data", "buy-a", params={"name": "cands.csv"}, content=DATA)
    assert r.status_code == 201, r.text
    return dict(r.json())


def input_of(obj: dict[str, Any]) -> dict[str, Any]:
    return {"object": obj["id"], "sha256": obj["sha256"], "size": obj["size"],
            "path": "inputs/cands.csv"}  # fmt: skip


def agent_for(api: Api, root: Path, **kw: Any) -> ProviderAgent:
    executor = SandboxExecutor(AsProvider(api, "prov-a"), root, [0, 1, 2, 3], api.clock.now, **kw)
    return ProviderAgent(
        AsProvider(api, "prov-a"),
        executor,
        NominalMeter("H100", 0.5),
        api.clock.now,
        reading_interval_s=600,
        instance="sb",
    )


def run_lease(api: Api, agent: ProviderAgent, lease_id: str) -> None:
    """Start the lease's run at its slot, wait for the payload, and let the agent finish."""
    lease = api.call("GET", f"/leases/{lease_id}", "op").json()
    api.clock.set(EPOCH + lease["slot"] * 3600 + 60)
    s = agent.tick()
    assert not s.errors, s
    for run in list(agent.runs.values()):
        proc = agent.executor._runs[run.id].proc  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the payload did not end"
            time.sleep(0.05)
    api.clock.advance(120)
    s = agent.tick()
    assert not s.errors, s


def test_submit_clear_run_confined_and_download_the_outputs(api: Api, tmp_path: Path) -> None:
    obj = world(api)
    runtime = {
        "kind": "process",
        "command": ["sh", "score.sh", "inputs/cands.csv", "out/scores.csv"],
        "files": {"score.sh": SCORE},
    }
    lid = submit(api, "screen", runtime, [input_of(obj)])
    agent = agent_for(api, tmp_path / "runs")
    run_lease(api, agent, lid)

    report = api.call("GET", f"/leases/{lid}/report", "buy-a").json()
    assert report["outcome"] == "done" and report["exit_code"] == 0, report
    scores_id, env_id = report["outputs"]
    scores = api.call("GET", f"/data/{scores_id}/content", "buy-a")
    assert scores.status_code == 200
    assert scores.content == expected_scores()
    meta = api.call("GET", f"/data/{scores_id}", "buy-a").json()
    assert meta["owner_id"] == "buy-a" and meta["lease_id"] == lid
    assert meta["sha256"] == hashlib.sha256(expected_scores()).hexdigest()
    env = api.call("GET", f"/data/{env_id}/content", "buy-a").content.decode()
    assert env == f"gpus=0 token_len={len(SECRET)} lease={lid}\n"
    # The lease completed and settled on the metered use; the record has it all.
    assert api.call("GET", f"/leases/{lid}", "buy-a").json()["state"] == "settled"
    kinds = [
        (e["kind"], e["member_id"])
        for e in api.call("GET", "/data/events", "aud", params={"lease_id": lid}).json()["items"]
    ]
    assert kinds == [("grant", "prov-a"), ("download", "prov-a"),
                     ("output", "prov-a"), ("output", "prov-a")]  # fmt: skip
    # The staged input was verified and sits in the run's own work directory only.
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "work" / "inputs" / "cands.csv").read_bytes() == DATA
    # The buyer follows the payload's output; the secret it printed is never shown back.
    logs = api.call("GET", "/orders/screen/logs", "buy-a").json()
    text = "".join(x["text"] for x in logs["items"])
    assert text == "scoring 3 candidates with token ***\n"
    assert logs["items"][0]["lease_id"] == lid and logs["resume"] == str(logs["items"][-1]["id"])
    assert api.call("GET", "/orders/screen/logs", "buy-b").status_code == 404
    assert api.call("GET", "/orders/buy-a~screen/logs", "aud").json()["items"] == logs["items"]

    from click.testing import Result
    from typer.testing import CliRunner

    from suangu.cli import app

    out: Result = CliRunner(env={"SUANGU_URL": None, "SUANGU_KEY": None}).invoke(
        app,
        ["job", "logs", "screen", "-f", "--interval", "0.1", "--url", "http://x",
         "--key", api.tokens["buy-a"]],
        obj={"transport": api.client._transport},
    )  # fmt: skip
    assert out.exit_code == 0 and out.output == text, out.output


def test_a_failing_payload_fails_its_lease_with_the_reason(api: Api, tmp_path: Path) -> None:
    obj = world(api)
    secret_file = tmp_path / "other-member" / "secret.txt"
    secret_file.parent.mkdir()
    secret_file.write_text("another member's data")
    script = (
        f'if cat "{secret_file}" 2>/dev/null; then echo LEAKED; fi\n'
        "echo trying to write outside\n"
        "set -e\n"
        "echo pwned > /usr/pwned.txt\n"
    )
    runtime = {"kind": "process", "command": ["sh", "evil.sh"], "files": {"evil.sh": script}}
    lid = submit(api, "evil", runtime, [input_of(obj)])
    run_lease(api, agent_for(api, tmp_path / "runs"), lid)
    report = api.call("GET", f"/leases/{lid}/report", "buy-a").json()
    assert report["outcome"] == "failed" and report["exit_code"] == 2, report
    assert "exited with code 2" in report["reason"]
    assert "Read-only file system" in report["reason"], report["reason"]
    assert "LEAKED" not in report["reason"] and "another member" not in report["reason"]
    logs = api.call("GET", "/orders/evil/logs", "buy-a").json()["items"]
    assert "trying to write outside" in "".join(x["text"] for x in logs)
    assert not Path("/usr/pwned.txt").exists()
    lease = api.call("GET", f"/leases/{lid}", "buy-a").json()
    assert lease["state"] == "settled"  # failed, then settled on the metered use
    readings = api.call("GET", f"/leases/{lid}/readings", "buy-a").json()["items"]
    assert sum(r["gpu_seconds"] for r in readings) <= 120  # it ran for seconds, not the hour


def test_a_non_zero_exit_and_a_wrong_input(api: Api, tmp_path: Path) -> None:
    obj = world(api)
    runtime = {"kind": "process", "command": ["sh", "-c", "echo bad input >&2; exit 5"]}
    lid = submit(api, "exit5", runtime, [input_of(obj)])
    run_lease(api, agent_for(api, tmp_path / "a"), lid)
    report = api.call("GET", f"/leases/{lid}/report", "buy-a").json()
    assert (report["outcome"], report["exit_code"]) == ("failed", 5)
    assert report["reason"].endswith("its output ends: bad input"), report["reason"]

    # A URI input whose bytes are not what the order says: nothing runs.
    uri = {"uri": "https://data.example/ref.csv", "sha256": "e" * 64, "size": 3}
    lid = submit(api, "wrong", {"kind": "process", "command": ["true"]}, [uri])
    agent = agent_for(api, tmp_path / "b", fetch=lambda _uri: b"xyz")
    lease = api.call("GET", f"/leases/{lid}", "op").json()
    api.clock.set(EPOCH + lease["slot"] * 3600 + 60)
    s = agent.tick()
    assert s.started == 0 and s.failed == 1, s
    report = api.call("GET", f"/leases/{lid}/report", "buy-a").json()
    assert report["outcome"] == "failed" and report["exit_code"] is None
    assert "sha256" in report["reason"] and "e" * 64 in report["reason"]
    assert api.call("GET", f"/leases/{lid}", "buy-a").json()["state"] == "settled"
