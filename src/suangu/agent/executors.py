"""Executors: where a provider's agent runs the work of a lease.

* :class:`LocalExecutor` starts a process on this machine with the run's GPUs in
  ``CUDA_VISIBLE_DEVICES`` (devices are handed out from the configured list, one run per
  device at a time).
* :class:`SlurmExecutor` submits a batch job into the site's own Slurm cluster with
  ``sbatch --parsable --gres=gpu:N --time=M``, follows it with ``squeue`` and ``sacct`` and
  cancels it with ``scancel``. It parses the documented machine-readable output formats
  (``--parsable``, ``-h -o %T``, ``sacct -n -P``); it does not manage the cluster.

Both run the provider's command template, whose ``{placeholders}`` are filled from the run:
``{run_id}``, ``{order_id}``, ``{lease_id}``, ``{gpus}``, ``{seconds}``. How the buyer's
workload reaches the command (a container registry, a shared file system) is the provider's
and buyer's arrangement; the exchange dispatches, meters and settles.
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from suangu.agent.errors import AgentError


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"  # ended by itself with success
    FAILED = "failed"  # could not start, or ended with an error
    CANCELLED = "cancelled"


@dataclass
class Job:
    """A run's job on an executor; ``started``/``ended`` are the executor's times (Unix s)."""

    run_id: str
    gpus: int
    native_id: str
    devices: tuple[int, ...] = ()
    state: JobState = JobState.PENDING
    started: float | None = None
    ended: float | None = None
    #: Energy the executor measured for the whole job (Slurm energy accounting), if any.
    energy_j: float | None = None
    detail: str = ""
    #: The payload's exit status, when the executor knows it.
    exit_code: int | None = None
    #: Data objects the job's outputs became (the sandbox executor).
    outputs: tuple[str, ...] = ()


class Executor(Protocol):
    def submit(self, run_id: str, gpus: int, seconds: int, values: Mapping[str, str]) -> Job: ...

    def poll(self, job: Job, now: float) -> Job: ...

    def cancel(self, job: Job) -> None: ...


def fill(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """The command template with ``{name}`` placeholders filled; unknown names are an error."""
    try:
        return [part.format(**values) for part in template]
    except (KeyError, IndexError, ValueError) as err:
        raise AgentError(
            f"the command template has a bad placeholder: {err}",
            field="command",
            fix="use {run_id}, {order_id}, {lease_id}, {gpus} or {seconds}",
        ) from None


@dataclass
class LocalExecutor:
    """Processes on this machine; ``devices`` are the GPU indices it may hand out."""

    command: Sequence[str]
    devices: Sequence[int]
    clock: Callable[[], float]
    env: Mapping[str, str] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)
    _busy: set[int] = field(default_factory=set, init=False)

    def submit(self, run_id: str, gpus: int, seconds: int, values: Mapping[str, str]) -> Job:
        free = [d for d in self.devices if d not in self._busy]
        if len(free) < gpus:
            return Job(
                run_id,
                gpus,
                "",
                state=JobState.FAILED,
                detail=f"{gpus} GPUs needed, {len(free)} free of {len(self.devices)}",
            )
        devices = tuple(free[:gpus])
        env = dict(os.environ)
        env.update(self.env)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
        env["SUANGU_RUN_ID"] = run_id
        argv = fill(self.command, values)
        try:
            proc = subprocess.Popen(
                argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        except OSError as err:
            return Job(run_id, gpus, "", state=JobState.FAILED, detail=str(err))
        self._procs[run_id] = proc
        self._busy.update(devices)
        now = self.clock()
        return Job(run_id, gpus, str(proc.pid), devices, JobState.RUNNING, started=now)

    def poll(self, job: Job, now: float) -> Job:
        proc = self._procs.get(job.run_id)
        if proc is None or job.state not in (JobState.RUNNING, JobState.PENDING):
            return job
        code = proc.poll()
        if code is None:
            return job
        job.ended = now
        job.state = JobState.DONE if code == 0 else JobState.FAILED
        job.detail = f"exit code {code}"
        self._release(job)
        return job

    def cancel(self, job: Job) -> None:
        proc = self._procs.get(job.run_id)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if job.state in (JobState.RUNNING, JobState.PENDING):
            job.state = JobState.CANCELLED
            job.ended = self.clock()
        self._release(job)

    def _release(self, job: Job) -> None:
        self._busy.difference_update(job.devices)
        self._procs.pop(job.run_id, None)


Runner = Callable[[list[str]], str]


def run_command(argv: list[str]) -> str:
    """Run a Slurm command; its stdout, or an :class:`AgentError` naming it."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise AgentError(
            f"{argv[0]} is not installed here",
            field="executor.kind",
            fix="run the agent on a Slurm login or submit node, or use executor kind 'local'",
        ) from None
    except subprocess.TimeoutExpired:
        raise AgentError(f"{argv[0]} did not answer in 60 s", field="executor") from None
    if out.returncode != 0:
        raise AgentError(
            f"{argv[0]} failed ({out.returncode}): {' '.join(out.stderr.split())[:300]}",
            field="executor",
        )
    return out.stdout


#: Slurm job states (squeue %T / sacct State) by what they mean for a run.
_SLURM_PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED"}
_SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
_SLURM_DONE = {"COMPLETED"}
_SLURM_CANCELLED = {"CANCELLED", "PREEMPTED", "REVOKED"}


def slurm_time(seconds: int) -> str:
    """``--time`` in minutes (Slurm's plain number form), at least one."""
    return str(max(1, math.ceil(seconds / 60)))


def parse_slurm_timestamp(text: str) -> float | None:
    """sacct's ISO local time (``2026-11-26T17:05:00``) as Unix seconds, None if unset."""
    from datetime import datetime

    text = text.strip()
    if not text or text in {"Unknown", "None"}:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class _Accounting:
    """One job's line of ``sacct -n -P -X -o State,Start,End,ConsumedEnergyRaw``."""

    state: str
    start: float | None
    end: float | None
    energy_j: float | None


@dataclass
class SlurmExecutor:
    """Batch jobs in a Slurm cluster (see the module docs)."""

    command: Sequence[str]
    partition: str | None = None
    account: str | None = None
    gres: str = "gpu"
    extra_args: Sequence[str] = ()
    run: Runner = run_command

    def sbatch_argv(
        self, run_id: str, gpus: int, seconds: int, values: Mapping[str, str]
    ) -> list[str]:
        argv = [
            "sbatch",
            "--parsable",
            f"--job-name=suangu-{run_id}",
            f"--gres={self.gres}:{gpus}",
            f"--time={slurm_time(seconds)}",
            "--output=/dev/null",
        ]
        if self.partition:
            argv.append(f"--partition={self.partition}")
        if self.account:
            argv.append(f"--account={self.account}")
        argv += list(self.extra_args)
        argv += ["--wrap", shlex.join(fill(self.command, values))]
        return argv

    def submit(self, run_id: str, gpus: int, seconds: int, values: Mapping[str, str]) -> Job:
        try:
            out = self.run(self.sbatch_argv(run_id, gpus, seconds, values))
        except AgentError as err:
            return Job(run_id, gpus, "", state=JobState.FAILED, detail=err.message)
        # --parsable prints "jobid" or "jobid;cluster".
        native = out.strip().split(";")[0]
        if not native.isdigit():
            return Job(run_id, gpus, "", state=JobState.FAILED, detail=f"sbatch said {out!r}")
        return Job(run_id, gpus, native)

    def poll(self, job: Job, now: float) -> Job:
        if not job.native_id or job.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED):
            return job
        state = self.run(["squeue", "-h", "-j", job.native_id, "-o", "%T"]).strip()
        if state in _SLURM_PENDING:
            job.state = JobState.PENDING
            return job
        if state in _SLURM_RUNNING:
            if job.state is not JobState.RUNNING:
                job.state = JobState.RUNNING
                acct = self._accounting(job)
                job.started = acct.start if acct.start is not None else now
            return job
        # Gone from the queue: ask the accounting for how it ended.
        acct = self._accounting(job)
        final = acct.state.split(" ")[0]
        job.started = acct.start if acct.start is not None else job.started
        job.ended = acct.end if acct.end is not None else now
        job.energy_j = acct.energy_j
        if final in _SLURM_DONE:
            job.state = JobState.DONE
        elif final in _SLURM_CANCELLED:
            job.state = JobState.CANCELLED
        elif final in _SLURM_PENDING | _SLURM_RUNNING:
            job.state = JobState.RUNNING if final in _SLURM_RUNNING else JobState.PENDING
            job.ended = None
        else:
            job.state = JobState.FAILED
        job.detail = final or "unknown"
        return job

    def _accounting(self, job: Job) -> _Accounting:
        try:
            out = self.run(
                [
                    "sacct",
                    "-n",
                    "-P",
                    "-X",
                    "-j",
                    job.native_id,
                    "-o",
                    "State,Start,End,ConsumedEnergyRaw",
                ]
            )
        except AgentError:  # a cluster without accounting storage: ask the controller
            from suangu.agent.slurm import parse_scontrol_job

            shown = parse_scontrol_job(self.run(["scontrol", "show", "job", "-o", job.native_id]))
            if shown is None:
                return _Accounting("", None, None, None)
            return _Accounting(shown.state, shown.start, shown.end, None)
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) < 4:
                continue
            energy = parts[3].strip()
            return _Accounting(
                parts[0].strip(),
                parse_slurm_timestamp(parts[1]),
                parse_slurm_timestamp(parts[2]),
                float(energy) if energy.replace(".", "", 1).isdigit() else None,
            )
        return _Accounting("", None, None, None)

    def cancel(self, job: Job) -> None:
        if job.native_id and job.state in (JobState.PENDING, JobState.RUNNING):
            self.run(["scancel", job.native_id])
            job.state = JobState.CANCELLED


@dataclass
class SimulatedExecutor:
    """Jobs on a simulated clock (the demo's providers, tests): a job starts when submitted
    and runs until its time limit, or, with ``use``, until ``use(run_id)`` of it (a share in
    (0, 1]: a payload that finished early), then ends by itself. Nothing is run; the
    agent meters the job's time as it would a real one's."""

    clock: Callable[[], float]
    #: The share of its time limit a run's job uses (default: all of it).
    use: Callable[[str], float] | None = None
    _ends: dict[str, float] = field(default_factory=dict, init=False)

    def submit(self, run_id: str, gpus: int, seconds: int, values: Mapping[str, str]) -> Job:
        now = self.clock()
        share = 1.0 if self.use is None else min(1.0, max(0.0, self.use(run_id)))
        self._ends[run_id] = now + seconds * share
        return Job(run_id, gpus, f"sim-{run_id}", (), JobState.RUNNING, started=now)

    def poll(self, job: Job, now: float) -> Job:
        end = self._ends.get(job.run_id)
        if job.state is not JobState.RUNNING or end is None or now < end:
            return job
        job.state, job.ended = JobState.DONE, end
        del self._ends[job.run_id]
        return job

    def cancel(self, job: Job) -> None:
        if job.state in (JobState.RUNNING, JobState.PENDING):
            job.state, job.ended = JobState.CANCELLED, self.clock()
        self._ends.pop(job.run_id, None)
