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


def test_checkpoints_tar_and_restore_only_plain_files(tmp_path: Path) -> None:
    import io
    import tarfile

    import pytest

    from suangu.agent.errors import AgentError
    from suangu.agent.sandbox import tar_dir, untar

    src = tmp_path / "ck"
    (src / "sub").mkdir(parents=True)
    (src / "state.json").write_text('{"step": 3}')
    (src / "sub" / "w.bin").write_bytes(b"\x00\x01")
    (src / "link").symlink_to("/etc/passwd")  # left out
    data = tar_dir(src)
    out = tmp_path / "restored"
    untar(data, out)
    assert (out / "state.json").read_text() == '{"step": 3}'
    assert (out / "sub" / "w.bin").read_bytes() == b"\x00\x01"
    assert not (out / "link").exists()

    def tar_with(name: str, kind: bytes = tarfile.REGTYPE) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
        return buf.getvalue()

    for bad in (tar_with("../escape"), tar_with("/abs"), tar_with("l", tarfile.SYMTYPE)):
        with pytest.raises(AgentError, match="not restored"):
            untar(bad, tmp_path / "x")
    assert not (tmp_path / "escape").exists()
