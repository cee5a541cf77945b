"""The bubblewrap command line (no bubblewrap needed): what the payload may see and touch."""

from __future__ import annotations

from pathlib import Path

from suangu.agent.config import ExecutorSpec
from suangu.agent.sandbox import bwrap_argv


def pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def test_only_the_work_directory_is_writable() -> None:
    argv = bwrap_argv(Path("/runs/r1/work"), ["sh", "job.sh"], (2, 3))
    assert argv[:3] == ["bwrap", "--die-with-parent", "--new-session"]
    assert "--unshare-all" in argv and "--share-net" not in argv
    assert pairs(argv, "--bind") == [("/runs/r1/work", "/work")]  # the only writable mount
    assert all(src.startswith(("/usr", "/etc/")) for src, _ in pairs(argv, "--ro-bind-try"))
    i = argv.index("--remount-ro")
    assert argv[i + 1] == "/" and i > argv.index("--bind")
    assert argv[argv.index("--chdir") + 1] == "/work"
    devs = [src for src, _ in pairs(argv, "--dev-bind-try")]
    assert "/dev/nvidia2" in devs and "/dev/nvidia3" in devs and "/dev/nvidia0" not in devs
    assert "/dev/nvidiactl" in devs
    assert "--setenv" not in argv  # the environment (secrets too) never on a command line
    assert argv[-3:] == ["--", "sh", "job.sh"]
    assert "--dev-bind-try" not in bwrap_argv(Path("/w"), ["true"])  # no GPUs: no nodes
    assert "--share-net" in bwrap_argv(Path("/w"), ["true"], network=True)


def test_the_sandbox_executor_needs_no_command_template() -> None:
    spec = ExecutorSpec.model_validate({"kind": "sandbox", "devices": [0]})
    assert spec.command == [] and spec.work_dir == "/var/lib/suangu/runs"
    assert not spec.network
