"""The agent's configuration file (YAML), validated with errors that name the field.

Example (``examples/agent-slurm.yaml``)::

    url: http://exchange.example:8000
    key_env: SUANGU_KEY          # the provider's API key is read from this variable
    pools: [horinger-h100]       # optional: only these pools (default: all of the provider's)
    reading_interval_s: 300
    poll_s: 10
    executor:
      kind: slurm                # or local
      command: [/opt/suangu/run-lease.sh, "{order_id}", "{gpus}", "{seconds}"]
      partition: gpu
    meter:
      kind: nominal              # or nvml (local executor on the GPU host)
      gpu_class: H100
      utilisation: 0.8
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic import ValidationError as PydanticValidationError

from suangu.agent.errors import AgentError
from suangu.agent.executors import Executor, LocalExecutor, SlurmExecutor
from suangu.agent.meters import Meter, NominalMeter, NvmlMeter
from suangu.agent.sandbox import DataApi, SandboxExecutor, bwrap_available
from suangu.agent.slurm import SlurmLauncher

RuntimeName = Literal["podman", "docker", "apptainer"]


def _runtimes() -> list[RuntimeName]:
    return ["podman", "docker", "apptainer"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExecutorSpec(_Spec):
    kind: Literal["local", "slurm", "sandbox"] = "local"
    #: local: the provider's command template (sandbox: the order's workload). slurm: the
    #: provider's command template, or none to run the order's workload through sbatch.
    command: list[str] = Field(default_factory=list, validate_default=True)
    #: local: GPU indices this agent may hand out.
    devices: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)
    #: slurm:
    partition: str | None = None
    account: str | None = None
    gres: str = "gpu"
    extra_args: list[str] = Field(default_factory=list)
    #: sandbox: where runs' work directories are made (one per run, nothing else mounted).
    work_dir: str = "/var/lib/suangu/runs"
    #: sandbox: give payloads the host's network (default: none; inputs are staged).
    network: bool = False
    bwrap: str = "bwrap"
    #: sandbox: a job that can checkpoint gets SIGTERM this many seconds before its run ends.
    checkpoint_warning_s: Annotated[int, Field(ge=10, le=3600)] = 120
    #: sandbox and slurm: the container runtimes the ``container`` runtime may use, in order.
    container_runtimes: list[RuntimeName] = Field(default_factory=_runtimes, min_length=1)

    @field_validator("command")
    @classmethod
    def _command_given(cls, value: list[str], info: ValidationInfo) -> list[str]:
        kind = info.data.get("kind", "local")
        if kind == "local" and not value:
            raise ValueError("a local executor needs a command template")
        return value


class MeterSpec(_Spec):
    kind: Literal["nominal", "nvml"] = "nominal"
    gpu_class: str = "H100"
    utilisation: Annotated[float, Field(gt=0, le=1)] = 0.8


class AgentSpec(_Spec):
    url: str = "http://127.0.0.1:8000"
    key_env: str = "SUANGU_KEY"
    #: The agent's name, kept across restarts; a provider running several agents (one per
    #: cluster or site) gives each its own, with the pools it serves.
    name: Annotated[
        str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    ] = "default"
    pools: list[str] | None = None
    reading_interval_s: Annotated[int, Field(ge=10, le=3600)] = 300
    poll_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    executor: ExecutorSpec
    meter: MeterSpec = MeterSpec()


def load_config(path: Path) -> AgentSpec:
    """Read and validate an agent configuration file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise AgentError(
            f"cannot read {path}: {err.strerror}", field="config", fix="give the config's path"
        ) from None
    except yaml.YAMLError as err:
        raise AgentError(f"{path} is not valid YAML: {err}", field="config") from None
    try:
        return AgentSpec.model_validate(data if data is not None else {})
    except PydanticValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise AgentError(
            f"{path}: {first['msg']}",
            field=where,
            fix="see examples/agent-local.yaml and examples/agent-slurm.yaml",
        ) from None


def build_executor(spec: ExecutorSpec, meter: Meter, api: DataApi | None = None) -> Executor:
    """The executor of ``spec``; the sandbox executor talks to the exchange through ``api``."""
    if spec.kind == "slurm" and spec.command:
        return SlurmExecutor(
            spec.command, spec.partition, spec.account, spec.gres, tuple(spec.extra_args)
        )
    if spec.kind == "slurm":  # the order's workload, confined, through sbatch
        return _sandbox(
            spec,
            [],
            api,
            SlurmLauncher(spec.partition, spec.account, spec.gres, tuple(spec.extra_args)),
        )
    devices = list(spec.devices)
    if not devices and isinstance(meter, NvmlMeter):
        devices = list(range(meter.device_count()))
    if not devices:
        raise AgentError(
            "the local executor has no GPUs to hand out",
            field="executor.devices",
            fix="list the GPU indices, e.g. devices: [0, 1, 2, 3]",
        )
    if spec.kind == "sandbox":
        return _sandbox(spec, devices, api, None)
    return LocalExecutor(spec.command, devices, time.time)


def _sandbox(
    spec: ExecutorSpec, devices: list[int], api: DataApi | None, launcher: SlurmLauncher | None
) -> SandboxExecutor:
    why = bwrap_available(spec.bwrap)
    if why is not None:
        raise AgentError(why, field="executor.kind", fix="install bubblewrap, or use local")
    if api is None:  # pragma: no cover - the CLI always passes its client
        raise AgentError("the sandbox executor needs the exchange's client", field="api")
    return SandboxExecutor(
        api,
        Path(spec.work_dir),
        devices,
        time.time,
        spec.bwrap,
        network=spec.network,
        checkpoint_warning_s=spec.checkpoint_warning_s,
        launcher=launcher,
        container_runtimes=tuple(spec.container_runtimes),
    )


def build_meter(spec: MeterSpec) -> Meter:
    if spec.kind == "nvml":
        return NvmlMeter()
    return NominalMeter(spec.gpu_class, spec.utilisation)


def api_key(spec: AgentSpec, given: str | None) -> str:
    key = given or os.environ.get(spec.key_env)
    if not key:
        raise AgentError(
            f"no API key: set {spec.key_env} or pass --key",
            field="key_env",
            fix="use a provider key an operator created for you",
        )
    return key
