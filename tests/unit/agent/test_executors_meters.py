"""Executors and meters of the provider agent, without a GPU or a Slurm cluster: Slurm's
commands are replaced by a function answering in their documented output formats."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import pytest

from suangu.agent.errors import AgentError
from suangu.agent.executors import (
    Job,
    JobState,
    LocalExecutor,
    SlurmExecutor,
    fill,
    parse_slurm_timestamp,
    slurm_time,
)
from suangu.agent.meters import NominalMeter, NvmlMeter, wh

VALUES = {"run_id": "o1.p1.5", "order_id": "o1", "lease_id": "l1", "gpus": "2", "seconds": "3600"}


def test_fill_names_a_bad_placeholder() -> None:
    assert fill(["run", "{order_id}", "{gpus}"], VALUES) == ["run", "o1", "2"]
    with pytest.raises(AgentError) as err:
        fill(["{nope}"], VALUES)
    assert err.value.field == "command"


def test_nominal_meter_is_board_power_times_utilisation_times_time() -> None:
    m = NominalMeter("H100", 0.5)  # 700 W board power
    token = m.start((), 4, 1000.0)
    assert m.energy_mj(token, 1000.0 + 3600) == pytest.approx(4 * 350 * 3600 * 1000)
    assert wh(m.energy_mj(token, 1000.0 + 3600)) == 1400
    with pytest.raises(AgentError):
        NominalMeter("H100", 1.5)


class FakeNvml:
    """Two devices: 0 has an energy counter (mJ), 1 only power samples (mW)."""

    def __init__(self) -> None:
        self.energy = {0: 5_000_000.0}
        self.power = {0: 300_000.0, 1: 200_000.0}

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> float:
        if h not in self.energy:
            raise RuntimeError("not supported")
        return self.energy[h]

    def nvmlDeviceGetPowerUsage(self, h: int) -> float:
        return self.power[h]

    def nvmlShutdown(self) -> None:
        pass


def test_nvml_meter_uses_the_counter_or_integrates_power() -> None:
    nvml = FakeNvml()
    m = NvmlMeter(nvml)
    assert m.device_count() == 2 and "H100" in m.describe(0)
    token = m.start((0, 1), 2, 0.0)
    nvml.energy[0] += 1_000_000.0  # 1 kJ on device 0
    nvml.power[1] = 400_000.0  # device 1 ramps 200 -> 400 W over 10 s: 3 kJ
    assert m.energy_mj(token, 10.0) == pytest.approx(1_000_000.0 + 3_000_000.0)
    m.close()


def test_nvml_meter_without_the_package_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(AgentError) as err:
        NvmlMeter()
    assert "nominal" in (err.value.fix or "")


def test_local_executor_runs_exits_and_hands_devices_back() -> None:
    now = [100.0]
    ex = LocalExecutor(
        [sys.executable, "-c", "import sys; sys.exit(int('{gpus}') - 2)"], [0, 1, 2], lambda: now[0]
    )
    job = ex.submit("r1", 2, 60, VALUES)
    assert job.state is JobState.RUNNING and job.devices == (0, 1) and job.started == 100.0
    busy = ex.submit("r2", 2, 60, VALUES)
    assert busy.state is JobState.FAILED and "free" in busy.detail
    ex._procs["r1"].wait(timeout=30)
    job = ex.poll(job, 130.0)
    assert job.state is JobState.DONE and job.ended == 130.0
    again = ex.submit("r3", 3, 60, VALUES)
    assert again.state is JobState.RUNNING
    ex.cancel(again)
    assert again.state is JobState.CANCELLED


def test_local_executor_reports_a_failing_command() -> None:
    ex = LocalExecutor([sys.executable, "-c", "raise SystemExit(3)"], [0], lambda: 0.0)
    job = ex.submit("r1", 1, 60, VALUES)
    ex._procs["r1"].wait(timeout=30)
    assert ex.poll(job, 5.0).state is JobState.FAILED
    missing = LocalExecutor(["/no/such/program"], [0], lambda: 0.0).submit("r", 1, 60, VALUES)
    assert missing.state is JobState.FAILED


class FakeSlurm:
    """Answers sbatch, squeue, sacct and scancel like Slurm 23 does with these options."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.queue: dict[str, str] = {}
        self.acct: dict[str, str] = {}

    def __call__(self, argv: list[str]) -> str:
        self.calls.append(argv)
        if argv[0] == "sbatch":
            self.queue["4242"] = "PENDING"
            return "4242;cluster\n"
        if argv[0] == "squeue":
            return self.queue.get(argv[3], "") + "\n"
        if argv[0] == "sacct":
            return self.acct.get(argv[5], "")
        if argv[0] == "scancel":
            self.queue.pop(argv[1], None)
            return ""
        raise AssertionError(argv)


def test_slurm_executor_submits_follows_and_reads_accounting() -> None:
    slurm = FakeSlurm()
    ex = SlurmExecutor(
        ["run.sh", "{order_id}", "{gpus}"], partition="gpu", account="prov", run=slurm
    )
    job = ex.submit("o1.p1.5", 2, 3601, VALUES)
    sbatch = slurm.calls[0]
    assert job.native_id == "4242" and job.state is JobState.PENDING
    assert "--gres=gpu:2" in sbatch and "--time=61" in sbatch and "--partition=gpu" in sbatch
    assert "--account=prov" in sbatch and sbatch[-2:] == ["--wrap", "run.sh o1 2"]
    assert ex.poll(job, 10.0).state is JobState.PENDING
    slurm.queue["4242"] = "RUNNING"
    start = datetime(2026, 11, 26, 17, 0, 0)
    slurm.acct["4242"] = f"RUNNING|{start.isoformat()}|Unknown|\n"
    job = ex.poll(job, 20.0)
    assert job.state is JobState.RUNNING and job.started == start.timestamp()
    del slurm.queue["4242"]
    end = datetime(2026, 11, 26, 17, 30, 0)
    slurm.acct["4242"] = f"COMPLETED|{start.isoformat()}|{end.isoformat()}|1800000\n"
    job = ex.poll(job, 2000.0)
    assert job.state is JobState.DONE and job.ended == end.timestamp()
    assert job.energy_j == 1_800_000.0


def test_slurm_executor_failed_and_cancelled_jobs() -> None:
    slurm = FakeSlurm()
    ex = SlurmExecutor(["run.sh"], run=slurm)
    job = ex.submit("r", 1, 60, VALUES)
    slurm.queue.clear()
    slurm.acct["4242"] = "FAILED|2026-11-26T17:00:00|2026-11-26T17:01:00|\n"
    assert ex.poll(job, 0.0).state is JobState.FAILED
    job2 = Job("r2", 1, "4242", state=JobState.RUNNING)
    slurm.queue["4242"] = "RUNNING"
    ex.cancel(job2)
    assert job2.state is JobState.CANCELLED and ["scancel", "4242"] in slurm.calls


def test_slurm_submit_errors_become_failed_jobs() -> None:
    def refuse(argv: list[str]) -> Any:
        raise AgentError("sbatch failed (1): Invalid generic resource", field="executor")

    job = SlurmExecutor(["x"], run=refuse).submit("r", 9, 60, VALUES)
    assert job.state is JobState.FAILED and "generic resource" in job.detail
    assert SlurmExecutor(["x"], run=lambda a: "oops").submit("r", 1, 60, VALUES).native_id == ""


def test_slurm_helpers() -> None:
    assert slurm_time(1) == "1" and slurm_time(3600) == "60" and slurm_time(3601) == "61"
    assert parse_slurm_timestamp("Unknown") is None and parse_slurm_timestamp("") is None
    assert parse_slurm_timestamp("bad") is None
