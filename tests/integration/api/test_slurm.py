"""The Slurm executor against a real Slurm: slurmctld, slurmd and munged on localhost, started
by ``.ci/slurm-up`` (Debian's ``slurm-wlm`` and ``munge``). A buyer's order is cleared, the
provider's agent stages its inputs, submits the confined payload with ``sbatch`` and follows
the job with ``scontrol``; its exit status, logs and outputs reach the exchange. A payload
that exits non-zero fails its lease with its code; a job that Slurm itself ends (a node lost,
an operator's ``scancel``) fails its lease with no exit code, and the order goes back into the
market. The cluster has no accounting database (slurmdbd): ends are read from the controller,
and no energy is measured, so the readings are the agent's nominal meter.

The tests skip when Slurm cannot be started here; under ``CI=true`` they fail instead."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from suangu.agent.executors import JobState, run_command
from suangu.agent.meters import NominalMeter
from suangu.agent.runner import ProviderAgent
from suangu.agent.sandbox import SandboxExecutor, bwrap_available
from suangu.agent.slurm import SlurmLauncher, slurm_job_info

from .conftest import EPOCH, Api
from .test_sandbox import DATA, SECRET, AsProvider, expected_scores, input_of, submit, world

ROOT = Path(__file__).resolve().parents[3]
SLURM_DIR = os.environ.get("SUANGU_SLURM_DIR", "/tmp/suangu-slurm")

WHY = bwrap_available()
pytestmark = pytest.mark.skipif(
    WHY is not None, reason=f"bubblewrap cannot confine payloads here: {WHY}"
)

SCORE = """\
set -e
echo "scoring $(($(wc -l < "$1") - 1)) candidates with token $API_TOKEN on job $SLURM_JOB_ID"
mkdir -p out
awk -F, 'NR > 1 { n = gsub(/[AVLIFMW]/, "", $2); print $1 "," length($0) "," n }' \\
    "$1" > "$2"
echo "gpus=$SLURM_GPUS_ON_NODE token_len=${#API_TOKEN} lease=$SUANGU_LEASE_ID" > out/env.txt
"""


def _up() -> bool:
    try:
        run_command(["scontrol", "ping"])
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def slurm() -> Iterator[str]:
    """A running one-node Slurm (``SLURM_CONF``); started here and stopped at the end unless
    one was running already."""
    conf = os.environ.get("SLURM_CONF") or f"{SLURM_DIR}/slurm.conf"
    os.environ["SLURM_CONF"] = conf
    started = False
    if not (Path(conf).exists() and _up()):
        out = subprocess.run(
            [str(ROOT / ".ci" / "slurm-up"), "start", str(Path(conf).parent)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if out.returncode != 0:
            why = f"Slurm could not be started here: {out.stderr.strip()[-500:]}"
            if os.environ.get("CI") == "true":
                pytest.fail(why)
            pytest.skip(why)
        started = True
    yield conf
    if started:
        subprocess.run(
            [str(ROOT / ".ci" / "slurm-up"), "stop", str(Path(conf).parent)], check=False
        )


def agent_for(api: Api, root: Path) -> ProviderAgent:
    executor = SandboxExecutor(
        AsProvider(api, "prov-a"), root, [], api.clock.now, launcher=SlurmLauncher(gres="gpu")
    )
    return ProviderAgent(
        AsProvider(api, "prov-a"),
        executor,
        NominalMeter("H100", 0.5),
        api.clock.now,
        reading_interval_s=600,
        instance="slurm",
    )


def run_lease(api: Api, agent: ProviderAgent, lease_id: str, cancel: bool = False) -> str:
    """Start the lease's run at its slot (sbatch), wait until Slurm ends the job (or cancel
    it as an operator would), and let the agent finish; the Slurm job id."""
    lease = api.call("GET", f"/leases/{lease_id}", "op").json()
    api.clock.set(EPOCH + lease["slot"] * 3600 + 60)
    s = agent.tick()
    assert not s.errors and s.started == 1, s
    (run,) = agent.runs.values()
    assert run.job is not None
    job_id = run.job.native_id
    assert job_id.isdigit() and run.job.state is JobState.PENDING
    if cancel:
        run_command(["scancel", job_id])
    deadline = time.monotonic() + 60
    while slurm_job_info(run_command, job_id).state in {"PENDING", "RUNNING", "COMPLETING"}:
        assert time.monotonic() < deadline, "the Slurm job did not end"
        time.sleep(0.1)
    api.clock.advance(120)
    s = agent.tick()
    assert not s.errors, s
    return job_id


def test_a_payload_runs_through_sbatch_with_its_logs_and_outputs(
    slurm: str, api: Api, tmp_path: Path
) -> None:
    obj = world(api)
    runtime = {
        "kind": "process",
        "command": ["sh", "score.sh", "inputs/cands.csv", "out/scores.csv"],
        "files": {"score.sh": SCORE},
    }
    lid = submit(api, "screen-slurm", runtime, [input_of(obj)])
    agent = agent_for(api, tmp_path / "runs")
    job_id = run_lease(api, agent, lid)

    report = api.call("GET", f"/leases/{lid}/report", "buy-a").json()
    assert report["outcome"] == "done" and report["exit_code"] == 0, report
    scores_id, env_id = report["outputs"]
    assert api.call("GET", f"/data/{scores_id}/content", "buy-a").content == expected_scores()
    env = api.call("GET", f"/data/{env_id}/content", "buy-a").content.decode()
    assert env == f"gpus=1 token_len={len(SECRET)} lease={lid}\n"  # Slurm gave it one GPU
    logs = api.call("GET", "/orders/screen-slurm/logs", "buy-a").json()["items"]
    text = "".join(x["text"] for x in logs)
    assert text == f"scoring 3 candidates with token *** on job {job_id}\n"
    assert api.call("GET", f"/leases/{lid}", "buy-a").json()["state"] == "settled"

    # What Slurm was asked for and did: the lease's GPUs, its name, its output file.
    show = run_command(["scontrol", "show", "job", "-o", job_id])
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert f"JobName=suangu-{run_dir.name}" in show and "JobState=COMPLETED" in show
    assert "ExitCode=0:0" in show and "gpu:1" in show
    assert f"StdOut={run_dir}/payload.log" in show
    assert (run_dir / "work" / "inputs" / "cands.csv").read_bytes() == DATA
    assert SECRET not in (run_dir / "job.sh").read_text()  # secrets only in the environment


def test_a_failing_payload_and_a_job_slurm_cancelled(slurm: str, api: Api, tmp_path: Path) -> None:
    obj = world(api)
    runtime = {"kind": "process", "command": ["sh", "-c", "echo bad input >&2; exit 5"]}
    lid = submit(api, "exit5-slurm", runtime, [input_of(obj)])
    run_lease(api, agent_for(api, tmp_path / "a"), lid)
    report = api.call("GET", f"/leases/{lid}/report", "buy-a").json()
    assert (report["outcome"], report["exit_code"]) == ("failed", 5), report
    assert report["reason"].endswith("its output ends: bad input"), report["reason"]
    order: dict[str, Any] = api.call("GET", "/orders/exit5-slurm", "buy-a").json()
    assert order["status"] != "partially"  # its own error: not re-queued

    # Slurm ends the job (an operator's scancel, as a lost node or a preemption would): no
    # exit status of the payload, so the work goes back into the market.
    runtime = {"kind": "process", "command": ["sh", "-c", "sleep 30"]}
    lid = submit(api, "lost-slurm", runtime, [input_of(obj)])
    run_lease(api, agent_for(api, tmp_path / "b"), lid, cancel=True)
    report = api.call("GET", f"/leases/{lid}/report", "buy-a").json()
    assert report["outcome"] == "failed" and report["exit_code"] is None, report
    assert "Slurm ended job" in report["reason"] and "CANCELLED" in report["reason"]
    order = api.call("GET", "/orders/lost-slurm", "buy-a").json()
    assert order["status"] == "partially", order  # bids again for the undelivered work


def test_the_providers_command_template_through_sbatch(slurm: str, tmp_path: Path) -> None:
    """The other Slurm mode: the provider's own command template (``sbatch --wrap``), its end
    read from the controller when the cluster keeps no accounting."""
    from suangu.agent.executors import SlurmExecutor

    out = tmp_path / "ran.txt"
    ex = SlurmExecutor(["sh", "-c", f"echo {{order_id}} {{gpus}} > {out}"])
    values = {"run_id": "r1", "order_id": "o1", "lease_id": "l1", "gpus": "2", "seconds": "60"}
    job = ex.submit("r1", 2, 60, values)
    assert job.native_id.isdigit(), job.detail
    deadline = time.monotonic() + 60
    while ex.poll(job, time.time()).state in (JobState.PENDING, JobState.RUNNING):
        assert time.monotonic() < deadline, "the Slurm job did not end"
        time.sleep(0.1)
    assert job.state is JobState.DONE and job.detail == "COMPLETED"
    assert out.read_text() == "o1 2\n"
    bad = ex.submit("r2", 3, 60, values)  # more GPUs than the node has
    assert bad.state is JobState.FAILED and "sbatch failed" in bad.detail


# Waits for the checkpoint signal, then writes its state and exits 0.
WAIT = """\
import os, signal, sys, time
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
open("started", "w").close()
for _ in range(600):
    if stop:
        with open(os.path.join(os.environ["SUANGU_CHECKPOINT_DIR"], "state.txt"), "w") as f:
            f.write("step 7")
        sys.exit(0)
    time.sleep(0.05)
sys.exit(3)
"""


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no /usr/bin/python3")
def test_a_checkpoint_signal_reaches_the_payload_through_slurm(
    slurm: str, api: Api, tmp_path: Path
) -> None:
    obj = world(api)
    body = {
        "id": "ck-slurm", "kind": "batch", "gpus": 1,
        "release_slot": api.clock.now() // 3600 - EPOCH // 3600,
        "deadline_slot": api.clock.now() // 3600 - EPOCH // 3600 + 3,
        "limit_fen": 2000, "gpu_hours": 1, "regions": ["inner-mongolia"],
        "home": "inner-mongolia",
        "workload": {
            "runtime": {"kind": "process", "command": ["/usr/bin/python3", "wait.py"],
                        "files": {"wait.py": WAIT}},
            "inputs": [input_of(obj)], "checkpoint": True,
        },
    }  # fmt: skip
    assert api.call("POST", "/orders", "buy-a", json=body).status_code == 201
    assert api.call("POST", "/clearings", "op", json={"id": "clr-ck"}).status_code == 201
    (lease,) = api.call("GET", "/leases", "op", params={"order_id": "buy-a~ck-slurm"}).json()[
        "items"
    ]
    agent = agent_for(api, tmp_path / "runs")
    start = EPOCH + lease["slot"] * 3600
    api.clock.set(start + 60)
    assert agent.tick().started == 1
    (run,) = agent.runs.values()
    assert run.job is not None
    work = tmp_path / "runs" / run.id / "work"
    deadline = time.monotonic() + 60
    while not (work / "started").exists():  # the job is running inside its sandbox
        assert time.monotonic() < deadline, "the Slurm job did not start"
        time.sleep(0.1)
    api.clock.set(start + 3600 - 100)  # within checkpoint_warning_s of the lease's end
    assert not agent.tick().errors
    while slurm_job_info(run_command, run.job.native_id).state in {"RUNNING", "COMPLETING"}:
        assert time.monotonic() < deadline + 60, "the payload did not act on the signal"
        time.sleep(0.1)
    api.clock.advance(30)
    s = agent.tick()
    assert not s.errors, s
    report = api.call("GET", f"/leases/{lease['id']}/report", "buy-a").json()
    assert report["outcome"] == "done" and report["exit_code"] == 0, report
    assert report["reason"] == "checkpointed before the lease ended"
    assert (work / ".checkpoint" / "state.txt").read_text() == "step 7"
    grants = api.call("GET", "/data/events", "aud", params={"lease_id": lease["id"]}).json()
    assert "checkpoint" in {e["kind"] for e in grants["items"]}, grants
