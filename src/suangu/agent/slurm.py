"""The buyer's payload through Slurm: ``sbatch`` of a batch script that runs it confined.

The sandbox executor (:mod:`suangu.agent.sandbox`) stages a run's inputs into its work
directory on the agent's host; with :class:`SlurmLauncher` it then submits the payload into
the site's Slurm cluster instead of starting it on the agent's host. The work directory must
be on a file system that the cluster's nodes mount at the same path (a shared ``/scratch``;
one machine in the tests).

How a run maps to ``sbatch`` (:meth:`SlurmLauncher.sbatch_argv`):

=========================  ==================================================================
the run                    ``sbatch``
=========================  ==================================================================
its GPUs                   ``--gres=<gres>:<gpus>`` (none for a run of 0 GPUs); Slurm picks the
                           devices and sets ``CUDA_VISIBLE_DEVICES``
its time (the lease block) ``--time=<minutes>``, rounded up; the agent cancels the job when
                           the block ends anyway (the lease is the contract)
its output                 ``--output=<run dir>/payload.log`` (stdout and stderr): the agent
                           ships it to the exchange as the job's logs
its name                   ``--job-name=suangu-<run id>``
re-queueing                ``--no-requeue``: a job Slurm lost fails its lease, and the exchange
                           clears the undelivered work again (at another provider if it can)
environment                ``--export=ALL`` of exactly the payload's environment (workload
                           ``env`` and ``secret_env``, ``SUANGU_*``); never on a command line
provider's choice          ``--partition``, ``--account`` and ``extra_args`` from the config
=========================  ==================================================================

The batch script (``<run dir>/job.sh``) runs the payload under bubblewrap exactly as the
local sandbox does, with the job's GPU device nodes (``/dev/nvidia*`` that exist on the node:
Slurm's device cgroup, ``ConstrainDevices=yes``, decides which of them the job may open).
Secrets travel to Slurm in the job's environment, which ``slurmctld`` keeps in its state
directory until the job is purged: a provider's Slurm sees a payload's secrets as its nodes
see its payload.

A job is followed with ``scontrol show job -o`` (state, exit code, reason), falling back to
``sacct`` when the controller no longer knows the job; energy comes from ``sacct``
(``ConsumedEnergyRaw``) when the cluster has accounting with an energy plugin. A job that
Slurm ended without the payload's own exit status (node failure, preemption, cancellation)
ends with no exit code, so the exchange re-queues its work; a payload that exited non-zero
(or was killed by a signal, as 128 + signal) carries its code.

A job that can checkpoint is told to with ``scancel --signal=TERM --batch``: the batch script
passes it on to the payload's processes inside the sandbox (bubblewrap itself would die of it
and take the payload along); the payload's own handler receives it.
"""

from __future__ import annotations

import re
import shlex
import shutil
import signal as signals
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from suangu.agent.errors import AgentError
from suangu.agent.executors import (
    _SLURM_PENDING,
    _SLURM_RUNNING,
    Runner,
    parse_slurm_timestamp,
    slurm_time,
)

#: Device nodes a CUDA payload may need, bound into its sandbox when the node has them.
GPU_NODES = "/dev/nvidia[0-9]* /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools"

SACCT_FIELDS = "State,ExitCode,Start,End,ConsumedEnergyRaw"
_PAIR = re.compile(r"(\w[\w/:.]*)=(\S*)")


@dataclass(frozen=True)
class SlurmJobInfo:
    """What Slurm says of one job. ``state`` is Slurm's word (``""``: unknown to Slurm)."""

    state: str
    exit_code: int | None = None
    reason: str = ""
    start: float | None = None
    end: float | None = None
    energy_j: float | None = None

    @property
    def queued(self) -> bool:
        return self.state in _SLURM_PENDING

    @property
    def running(self) -> bool:
        return self.state in _SLURM_RUNNING


def exit_status(text: str) -> int | None:
    """Slurm's ``ExitCode`` (``code:signal``) as a shell's exit status: the code, or 128 +
    the signal that killed it; None if it does not parse."""
    code, _, sig = text.strip().partition(":")
    if not code.isdigit() or (sig and not sig.isdigit()):
        return None
    return 128 + int(sig) if sig and int(sig) else int(code)


def parse_scontrol_job(text: str) -> SlurmJobInfo | None:
    """One job from ``scontrol show job -o ID`` (``Key=Value`` pairs), None if none."""
    line = next((x for x in text.splitlines() if x.startswith("JobId=")), None)
    if line is None:
        return None
    pairs = dict(_PAIR.findall(line))
    return SlurmJobInfo(
        pairs.get("JobState", ""),
        exit_status(pairs.get("ExitCode", "")),
        pairs.get("Reason", "") if pairs.get("Reason") != "None" else "",
        parse_slurm_timestamp(pairs.get("StartTime", "")),
        parse_slurm_timestamp(pairs.get("EndTime", "")),
    )


def parse_sacct_job(text: str) -> SlurmJobInfo | None:
    """One job from ``sacct -n -P -X -o State,ExitCode,Start,End,ConsumedEnergyRaw``."""
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 5:
            continue
        energy = parts[4]
        return SlurmJobInfo(
            parts[0].split(" ")[0],
            exit_status(parts[1]),
            "",
            parse_slurm_timestamp(parts[2]),
            parse_slurm_timestamp(parts[3]),
            float(energy) if energy.replace(".", "", 1).isdigit() else None,
        )
    return None


def slurm_job_info(run: Runner, job_id: str) -> SlurmJobInfo:
    """The job as the controller knows it, else as the accounting does; energy from the
    accounting when it has it. A cluster without accounting (no slurmdbd) is fine while the
    controller remembers the job (``MinJobAge``, 300 s by default)."""
    info: SlurmJobInfo | None = None
    try:
        info = parse_scontrol_job(run(["scontrol", "show", "job", "-o", job_id]))
    except AgentError:  # "Invalid job id specified": purged from the controller
        info = None
    final = info is not None and not (info.queued or info.running)
    if info is None or final:
        try:
            acct = parse_sacct_job(
                run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", SACCT_FIELDS])
            )
        except AgentError:  # accounting storage is disabled
            acct = None
        if info is None:
            info = acct
        elif acct is not None and acct.energy_j is not None:
            info = SlurmJobInfo(
                info.state, info.exit_code, info.reason, info.start, info.end, acct.energy_j
            )
    return info if info is not None else SlurmJobInfo("")


@dataclass(frozen=True)
class Exit:
    """How a payload ended: its exit status (None when it was not the payload that ended
    it: the cluster lost or cancelled the job) and what the launcher knows beyond that."""

    code: int | None
    detail: str = ""


@dataclass
class SlurmPayload:
    """A submitted batch job (see the module docs)."""

    native_id: str
    run: Runner
    #: Slurm's word for the job at the last poll.
    state: str = "PENDING"
    energy_j: float | None = None
    #: How long the job ran (Slurm's end less start), once it ended.
    ran_s: float | None = None
    _exit: Exit | None = field(default=None, init=False)

    @property
    def queued(self) -> bool:
        return self.state in _SLURM_PENDING

    def poll(self) -> Exit | None:
        if self._exit is not None:
            return self._exit
        info = slurm_job_info(self.run, self.native_id)
        if not info.state:
            self._exit = Exit(None, f"Slurm job {self.native_id} is unknown to the cluster")
            return self._exit
        self.state = info.state
        if info.queued or info.running:
            return None
        self.energy_j = info.energy_j
        if info.start is not None and info.end is not None:
            self.ran_s = max(0.0, info.end - info.start)
        why = f" ({info.reason})" if info.reason else ""
        if info.state in {"COMPLETED", "FAILED", "OUT_OF_MEMORY"} and info.exit_code is not None:
            detail = "" if info.state != "OUT_OF_MEMORY" else f"Slurm: OUT_OF_MEMORY{why}"
            self._exit = Exit(info.exit_code, detail)
        else:
            self._exit = Exit(None, f"Slurm ended job {self.native_id}: {info.state}{why}")
        return self._exit

    def signal(self, sig: int) -> None:
        name = signals.Signals(sig).name.removeprefix("SIG")
        self.run(["scancel", f"--signal={name}", "--batch", self.native_id])

    def stop(self) -> None:
        if self._exit is None:
            self.run(["scancel", self.native_id])


@dataclass
class SlurmLauncher:
    """Submits confined payloads with ``sbatch`` (see the module docs)."""

    partition: str | None = None
    account: str | None = None
    gres: str = "gpu"
    extra_args: Sequence[str] = ()
    run: Runner | None = None

    def runner(self) -> Runner:
        from suangu.agent.executors import run_command

        return self.run or run_command

    def script(self, argv: Sequence[str], checkpoint: bool) -> str:
        """The batch script. ``argv`` is a bubblewrap command line (from
        :func:`~suangu.agent.sandbox.bwrap_argv`, without GPUs: the node's GPU device nodes are
        bound after its ``--dev /dev``) or a container runtime's. With ``checkpoint``, the
        script runs it in the background and passes SIGTERM (``scancel --batch``) on to the
        payload's processes: bubblewrap would die of it and take the payload along; a
        container runtime gets it and passes it on itself."""
        lines = ["#!/bin/sh", "# A Suangu run: the buyer's payload, confined."]
        if "--dev" in argv:  # bubblewrap
            at = list(argv).index("/dev", list(argv).index("--dev")) + 1
            command = f'{shlex.join(argv[:at])} "$@" {shlex.join(argv[at:])}'
            lines += [
                "set --",
                f"for node in {GPU_NODES}; do",
                '  [ -e "$node" ] && set -- "$@" --dev-bind "$node" "$node"',
                "done",
            ]
            forward = 'for init in $(pgrep -P "$run"); do tree "$init"; done'
        else:
            command, forward = shlex.join(argv), 'echo "$run"'
        if not checkpoint:
            return "\n".join([*lines, f"exec {command}"]) + "\n"
        lines += [
            'tree() { for p in $(pgrep -P "$1"); do echo "$p"; tree "$p"; done; }',
            f"forward() {{ kill -TERM $({forward}) 2>/dev/null; }}",
            "trap forward TERM",
            f"{command} &",
            "run=$!",
            'while :; do wait "$run"; rc=$?; kill -0 "$run" 2>/dev/null || break; done',
            'exit "$rc"',
        ]
        return "\n".join(lines) + "\n"

    def sbatch_argv(self, run_id: str, run_dir: Path, gpus: int, seconds: int) -> list[str]:
        argv = [
            "sbatch",
            "--parsable",
            f"--job-name=suangu-{run_id}",
            f"--time={slurm_time(seconds)}",
            f"--output={run_dir / 'payload.log'}",
            f"--chdir={run_dir}",
            "--export=ALL",
            "--no-requeue",
        ]
        if gpus > 0:
            argv.append(f"--gres={self.gres}:{gpus}")
        if self.partition:
            argv.append(f"--partition={self.partition}")
        if self.account:
            argv.append(f"--account={self.account}")
        argv += list(self.extra_args)
        return [*argv, str(run_dir / "job.sh")]

    def launch(
        self,
        run_id: str,
        run_dir: Path,
        bwrap: Sequence[str],
        env: Mapping[str, str],
        gpus: int,
        seconds: int,
        checkpoint: bool,
    ) -> SlurmPayload:
        script = run_dir / "job.sh"
        script.write_text(self.script(bwrap, checkpoint), encoding="utf-8")
        script.chmod(0o700)
        argv = self.sbatch_argv(run_id, run_dir, gpus, seconds)
        run = self.runner()
        out = _sbatch(argv, env) if self.run is None else run(argv)
        native = out.strip().split(";")[0]
        if not native.isdigit():
            raise AgentError(f"sbatch said {out.strip()!r}", field="executor")
        return SlurmPayload(native, run)


def _sbatch(argv: list[str], env: Mapping[str, str]) -> str:
    """Run sbatch with the payload's environment (exported to the job) plus what sbatch
    itself needs to find the cluster."""
    import os

    path = shutil.which(argv[0])
    if path is None:
        raise AgentError(
            "sbatch is not installed here",
            field="executor.kind",
            fix="run the agent on a Slurm login or submit node, or use executor kind 'sandbox'",
        )
    full = dict(env)
    for name in ("SLURM_CONF", "SLURM_CLUSTERS"):
        if name in os.environ:
            full[name] = os.environ[name]
    try:
        out = subprocess.run(
            [path, *argv[1:]], capture_output=True, text=True, timeout=60, check=False, env=full
        )
    except subprocess.TimeoutExpired:
        raise AgentError("sbatch did not answer in 60 s", field="executor") from None
    if out.returncode != 0:
        raise AgentError(
            f"sbatch failed ({out.returncode}): {' '.join(out.stderr.split())[:300]}",
            field="executor",
        )
    return out.stdout
