"""Command lines of the Slurm launcher and the container runtimes, and Slurm's output parsed
(no Slurm or container runtime needed: the live Slurm test is tests/integration/api/
test_slurm.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from suangu.agent.config import ExecutorSpec, build_executor
from suangu.agent.containers import container_argv, container_env, find_runtime
from suangu.agent.errors import AgentError
from suangu.agent.meters import NominalMeter
from suangu.agent.sandbox import SandboxExecutor, bwrap_argv, bwrap_available
from suangu.agent.slurm import (
    SlurmLauncher,
    SlurmPayload,
    exit_status,
    parse_sacct_job,
    parse_scontrol_job,
    slurm_job_info,
)

SHOW = (
    "JobId=7 JobName=suangu-o1.p1.5 UserId=root(0) JobState={state} Reason={reason} "
    "Dependency=(null) ExitCode={code} RunTime=00:00:03 StartTime=2026-12-06T04:09:54 "
    "EndTime=2026-12-06T04:09:57 Command=/runs/o1.p1.5/job.sh TresPerNode=gres:gpu:2\n"
)


def test_exit_status_and_scontrol_and_sacct_lines() -> None:
    assert exit_status("0:0") == 0 and exit_status("5:0") == 5 and exit_status("0:9") == 137
    assert exit_status("") is None and exit_status("x:1") is None
    info = parse_scontrol_job(SHOW.format(state="FAILED", reason="NonZeroExitCode", code="3:0"))
    assert info is not None and (info.state, info.exit_code) == ("FAILED", 3)
    assert info.reason == "NonZeroExitCode" and info.end is not None and info.start is not None
    assert info.end - info.start == 3.0
    assert parse_scontrol_job("slurm_load_jobs error: Invalid job id specified") is None
    acct = parse_sacct_job("COMPLETED|0:0|2026-12-06T04:09:54|2026-12-06T04:10:54|360000\n")
    assert acct is not None and acct.energy_j == 360000.0 and acct.exit_code == 0
    assert parse_sacct_job("") is None


class Cluster:
    """Answers scontrol, sacct and scancel as Slurm 22.05 does (accounting optional)."""

    def __init__(self, show: str | None, sacct: str | None = None) -> None:
        self.show, self.sacct = show, sacct
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> str:
        self.calls.append(argv)
        if argv[0] == "scontrol":
            if self.show is None:
                raise AgentError("scontrol failed (1): Invalid job id specified")
            return self.show
        if argv[0] == "sacct":
            if self.sacct is None:
                raise AgentError("sacct failed (1): Slurm accounting storage is disabled")
            return self.sacct
        if argv[0] == "scancel":
            return ""
        raise AssertionError(argv)


def test_job_info_from_the_controller_then_the_accounting() -> None:
    done = SHOW.format(state="COMPLETED", reason="None", code="0:0")
    info = slurm_job_info(Cluster(done), "7")  # no accounting: the controller's word
    assert info.state == "COMPLETED" and info.energy_j is None and info.reason == ""
    with_energy = Cluster(done, "COMPLETED|0:0|2026-12-06T04:09:54|2026-12-06T04:09:57|900\n")
    assert slurm_job_info(with_energy, "7").energy_j == 900.0
    purged = Cluster(None, "FAILED|2:0|2026-12-06T04:09:54|2026-12-06T04:09:57|\n")
    assert slurm_job_info(purged, "7").exit_code == 2
    assert slurm_job_info(Cluster(None), "7").state == ""


@pytest.mark.parametrize(
    ("state", "reason", "code", "exit_code", "detail"),
    [
        ("COMPLETED", "None", "0:0", 0, ""),
        ("FAILED", "NonZeroExitCode", "4:0", 4, ""),
        ("OUT_OF_MEMORY", "OutOfMemory", "0:125", 253, "OUT_OF_MEMORY"),
        ("NODE_FAIL", "NodeDown", "0:0", None, "Slurm ended job 7: NODE_FAIL (NodeDown)"),
        ("CANCELLED", "None", "0:15", None, "Slurm ended job 7: CANCELLED"),
        ("TIMEOUT", "TimeLimit", "0:15", None, "TIMEOUT"),
        ("PREEMPTED", "None", "0:15", None, "PREEMPTED"),
    ],
)
def test_how_a_job_ended(
    state: str, reason: str, code: str, exit_code: int | None, detail: str
) -> None:
    payload = SlurmPayload("7", Cluster(SHOW.format(state=state, reason=reason, code=code)))
    ended = payload.poll()
    assert ended is not None and ended.code == exit_code and detail in ended.detail
    assert payload.ran_s == 3.0 and payload.poll() is ended  # asked once


def test_a_queued_or_running_job_and_the_checkpoint_signal() -> None:
    cluster = Cluster(SHOW.format(state="PENDING", reason="Resources", code="0:0"))
    payload = SlurmPayload("7", cluster)
    assert payload.poll() is None and payload.queued
    cluster.show = SHOW.format(state="RUNNING", reason="None", code="0:0")
    assert payload.poll() is None and not payload.queued
    payload.signal(15)
    payload.stop()
    assert cluster.calls[-2:] == [["scancel", "--signal=TERM", "--batch", "7"], ["scancel", "7"]]


def test_the_sbatch_command_line_and_script(tmp_path: Path) -> None:
    launcher = SlurmLauncher("gpu", "lab", "gpu", ["--exclusive"], run=lambda a: "41;c\n")
    argv = launcher.sbatch_argv("o1.p1.5", Path("/scratch/runs/o1.p1.5"), 2, 3601)
    assert argv[:2] == ["sbatch", "--parsable"]
    assert "--gres=gpu:2" in argv and "--time=61" in argv and "--no-requeue" in argv
    assert "--output=/scratch/runs/o1.p1.5/payload.log" in argv and "--export=ALL" in argv
    assert "--partition=gpu" in argv and "--account=lab" in argv and "--exclusive" in argv
    assert argv[-1] == "/scratch/runs/o1.p1.5/job.sh"
    assert not any(a.startswith("--gres") for a in launcher.sbatch_argv("r", tmp_path, 0, 60))

    bwrap = bwrap_argv(Path("/scratch/runs/r/work"), ["python3", "train.py"])
    plain = launcher.script(bwrap, checkpoint=False)
    last = plain.splitlines()[-1]
    assert last.startswith("exec bwrap ") and '--dev /dev "$@" --bind' in last
    assert last.endswith("-- python3 train.py") and "trap" not in plain
    warned = launcher.script(bwrap, checkpoint=True)  # SIGTERM passed on to the payload
    assert "trap forward TERM" in warned and "-- python3 train.py &" in warned
    assert 'pgrep -P "$run"' in warned and warned.endswith('exit "$rc"\n')
    box = launcher.script(["podman", "run", "img"], checkpoint=True)
    assert "podman run img &" in box and 'kill -TERM $(echo "$run")' in box
    payload = launcher.launch("r", tmp_path, bwrap, {"SECRET": "x"}, 1, 60, False)
    assert payload.native_id == "41" and (tmp_path / "job.sh").read_text() == plain
    refused = SlurmLauncher(run=lambda a: "sbatch: error: Batch job submission failed\n")
    with pytest.raises(AgentError, match="sbatch said"):
        refused.launch("r", tmp_path, bwrap, {}, 1, 60, False)


def test_container_command_lines() -> None:
    work = Path("/runs/r/work")
    podman = container_argv(
        "podman", "/usr/bin/podman", "reg.example/lab/screen:1.2", ["python", "s.py"],
        work, ["API_TOKEN", "THREADS"], (2, 3),
    )  # fmt: skip
    assert podman[:4] == ["/usr/bin/podman", "run", "--rm", "--read-only"]
    assert "--network=none" in podman and "--cap-drop=all" in podman
    assert podman[podman.index("--volume") + 1] == "/runs/r/work:/work:rw"
    assert podman[podman.index("--workdir") + 1] == "/work"
    at = podman.index("API_TOKEN")
    assert podman[at - 1] == "--env" and podman[at + 1] == "--env"
    assert "nvidia.com/gpu=2" in podman and "nvidia.com/gpu=3" in podman
    assert podman[-3:] == ["reg.example/lab/screen:1.2", "python", "s.py"]
    docker = container_argv(
        "docker", "docker", "img:1", [], work, ["A"], (0, 1), network=True, user=(1000, 1000)
    )
    assert docker[docker.index("--gpus") + 1] == '"device=0,1"' and "--network=host" in docker
    assert docker[docker.index("--user") + 1] == "1000:1000" and docker[-1] == "img:1"
    app = container_argv("apptainer", "apptainer", "img:1", ["run.sh"], work, ["A"], (0,))
    assert app[:2] == ["apptainer", "exec"] and "--containall" in app and "--cleanenv" in app
    assert "--nv" in app and app[-2:] == ["docker://img:1", "run.sh"]
    assert container_argv("apptainer", "a", "img:1", [], work, [])[1] == "run"
    # The values never on the command line: in the tool's environment, by its convention.
    assert container_env("apptainer", {"A": "s3cr3t"})["APPTAINERENV_A"] == "s3cr3t"
    assert container_env("podman", {"A": "s3cr3t"})["A"] == "s3cr3t"
    with pytest.raises(AgentError, match="DOCKER_HOST"):
        container_env("docker", {"DOCKER_HOST": "tcp://evil:2375"})


def test_which_runtime_and_a_clear_reason_when_there_is_none() -> None:
    found = {"docker": "/usr/local/bin/docker", "apptainer": "/usr/bin/apptainer"}
    assert find_runtime(which=found.get) == ("docker", "/usr/local/bin/docker")
    assert find_runtime(["apptainer", "docker"], found.get)[0] == "apptainer"
    with pytest.raises(AgentError, match="podman, docker or apptainer") as err:
        find_runtime(which=lambda _name: None)
    assert err.value.field == "executor.container_runtimes"
    with pytest.raises(AgentError, match="not a container runtime"):
        find_runtime(["lxc"], found.get)


def test_the_slurm_executor_config_runs_buyers_workloads(tmp_path: Path) -> None:
    if bwrap_available() is not None:
        pytest.skip("bubblewrap cannot run here")
    spec = ExecutorSpec.model_validate(
        {"kind": "slurm", "partition": "gpu", "work_dir": str(tmp_path)}
    )
    api: Any = object()
    ex = build_executor(spec, NominalMeter("H100", 0.8), api)
    assert isinstance(ex, SandboxExecutor) and isinstance(ex.launcher, SlurmLauncher)
    assert ex.launcher.partition == "gpu" and list(ex.container_runtimes) == [
        "podman",
        "docker",
        "apptainer",
    ]
    with pytest.raises(ValueError, match="command template"):
        ExecutorSpec.model_validate({"kind": "local"})
