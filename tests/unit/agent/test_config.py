"""The agent's configuration file: the examples load, bad files name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from suangu.agent.config import api_key, build_executor, build_meter, load_config
from suangu.agent.errors import AgentError
from suangu.agent.executors import LocalExecutor, SlurmExecutor
from suangu.agent.meters import NominalMeter
from suangu.cli import app

EXAMPLES = Path(__file__).parents[3] / "examples"


def test_the_examples_load_and_build() -> None:
    local = load_config(EXAMPLES / "agent-local.yaml")
    slurm = load_config(EXAMPLES / "agent-slurm.yaml")
    sandbox = load_config(EXAMPLES / "agent-sandbox.yaml")
    assert sandbox.executor.kind == "sandbox" and sandbox.executor.command == []
    assert local.executor.kind == "local" and local.meter.kind == "nvml"
    assert slurm.pools == ["horinger-h100"]
    meter = build_meter(slurm.meter)
    assert isinstance(meter, NominalMeter)
    assert isinstance(build_executor(slurm.executor, meter), SlurmExecutor)
    assert isinstance(build_executor(local.executor, meter), LocalExecutor)
    workloads = load_config(EXAMPLES / "agent-slurm-workloads.yaml")
    assert workloads.executor.kind == "slurm" and workloads.executor.command == []
    assert workloads.name == "horinger-slurm"
    assert workloads.executor.container_runtimes == ["apptainer", "podman"]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("executor: {kind: local}\n", "executor.command"),
        ("executor: {kind: k8s, command: [x]}\n", "executor.kind"),
        ("executor: {command: [x]}\nreading_interval_s: 1\n", "reading_interval_s"),
        ("executor: {command: [x]}\nmeter: {utilisation: 2}\n", "meter.utilisation"),
        ("executor: {command: [x]}\nsurprise: 1\n", "surprise"),
        ("executor: [\n", "config"),
    ],
)
def test_bad_configs_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text(text)
    with pytest.raises(AgentError) as err:
        load_config(f)
    assert err.value.field == field


def test_missing_file_devices_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AgentError) as err:
        load_config(tmp_path / "nope.yaml")
    assert err.value.field == "config"
    f = tmp_path / "agent.yaml"
    f.write_text("executor: {command: [x]}\nkey_env: MY_KEY\n")
    spec = load_config(f)
    with pytest.raises(AgentError) as err:
        build_executor(spec.executor, build_meter(spec.meter))
    assert err.value.field == "executor.devices"
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(AgentError):
        api_key(spec, None)
    monkeypatch.setenv("MY_KEY", "sg_x")
    assert api_key(spec, None) == "sg_x" and api_key(spec, "sg_y") == "sg_y"


def test_cli_prints_one_line_for_a_bad_config(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text("executor: {kind: k8s, command: [x]}\n")
    out = CliRunner().invoke(app, ["agent", str(f)])
    assert out.exit_code == 2
    assert "executor.kind" in out.output and "Traceback" not in out.output
