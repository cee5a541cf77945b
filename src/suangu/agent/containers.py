"""The ``container`` runtime: the buyer's OCI image run by the provider's podman, docker or
apptainer (the first of :data:`RUNTIMES` installed, or the agent's configured list).

Every runtime gets the same contract as the ``process`` runtime under bubblewrap: the run's
work directory mounted at ``/work`` (its only writable place besides a private ``/tmp``), the
working directory ``/work``, no network unless the agent allows it, the lease's GPUs only,
and the payload's environment passed by name (the values stay in the runtime's own
environment, never on a command line):

* podman: ``podman run --rm --read-only --network=none --cap-drop=all
  --security-opt=no-new-privileges --volume WORK:/work:rw --workdir /work --tmpfs /tmp
  --env NAME ... --device nvidia.com/gpu=N ... IMAGE [COMMAND]`` (GPUs through CDI);
* docker: the same flags, the GPUs as ``--gpus "device=N,M"``, and ``--user UID:GID`` of the
  agent so the outputs it uploads are its own;
* apptainer: ``apptainer exec --containall --cleanenv --no-home --bind WORK:/work --pwd
  /work [--nv] docker://IMAGE COMMAND`` (``run`` without a command), the environment as
  ``APPTAINERENV_NAME`` variables (apptainer's own convention with ``--cleanenv``); apptainer
  shares the host's network (``--network none`` needs root), so a provider that must cut it
  off uses podman or docker.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from suangu.agent.errors import AgentError

#: Container runtimes the agent can drive, in its default order of preference.
RUNTIMES = ("podman", "docker", "apptainer")
#: Variables of the agent's own environment the runtime's command-line tool needs.
RUNTIME_ENV = ("PATH", "HOME", "XDG_RUNTIME_DIR", "DOCKER_HOST", "CONTAINER_HOST", "TMPDIR")
#: Names a payload may not set in a container runtime: the runtime's tools read them.
RESERVED_PREFIXES = ("DOCKER_", "CONTAINER", "PODMAN_", "APPTAINER", "SINGULARITY", "BUILDAH_")


def find_runtime(
    preferred: Sequence[str] = RUNTIMES, which: Callable[[str], str | None] = shutil.which
) -> tuple[str, str]:
    """The first of ``preferred`` installed here, as (name, path), or an :class:`AgentError`
    saying that none is."""
    for name in preferred:
        if name not in RUNTIMES:
            raise AgentError(
                f"{name!r} is not a container runtime the agent drives",
                field="executor.container_runtimes",
                fix=f"use some of {', '.join(RUNTIMES)}",
            )
        path = which(name)
        if path:
            return name, path
    raise AgentError(
        "the container runtime needs podman, docker or apptainer on the provider's host; "
        f"none of {', '.join(preferred)} is installed",
        field="executor.container_runtimes",
        fix="install podman (apt-get install -y podman), docker or apptainer on the agent's host",
    )


def container_argv(
    runtime: str,
    path: str,
    image: str,
    command: Sequence[str],
    work: Path,
    env_names: Sequence[str],
    devices: Sequence[int] = (),
    *,
    network: bool = False,
    user: tuple[int, int] | None = None,
) -> list[str]:
    """The command line that runs ``image`` for a run (see the module docs)."""
    if runtime == "apptainer":
        argv = [path, "exec" if command else "run", "--containall", "--cleanenv", "--no-home"]
        argv += ["--bind", f"{work}:/work", "--pwd", "/work"]
        if devices:
            argv.append("--nv")
        return [*argv, f"docker://{image}", *command]
    if runtime not in ("podman", "docker"):
        raise AgentError(f"{runtime!r} is not a container runtime the agent drives")
    argv = [path, "run", "--rm", "--read-only"]
    argv += ["--network=host" if network else "--network=none"]
    argv += ["--cap-drop=all", "--security-opt=no-new-privileges"]
    argv += ["--volume", f"{work}:/work:rw", "--workdir", "/work", "--tmpfs", "/tmp"]
    for name in env_names:
        argv += ["--env", name]
    if runtime == "podman":
        for d in devices:
            argv += ["--device", f"nvidia.com/gpu={d}"]
    else:
        if devices:
            argv += ["--gpus", '"device=' + ",".join(str(d) for d in devices) + '"']
        if user is not None:
            argv += ["--user", f"{user[0]}:{user[1]}"]
    return [*argv, image, *command]


def container_env(runtime: str, payload_env: Mapping[str, str]) -> dict[str, str]:
    """The environment the runtime's tool is started with: what the tool itself needs from
    the agent's environment, plus the payload's (podman and docker forward the names given
    with ``--env``; apptainer takes ``APPTAINERENV_NAME``)."""
    for name in payload_env:
        if name in RUNTIME_ENV or name.startswith(RESERVED_PREFIXES):
            raise AgentError(
                f"the workload's environment sets {name}, which the container runtime's own "
                "tool reads",
                field="workload.runtime.env",
                fix=f"rename it: {', '.join(RUNTIME_ENV)} and names starting "
                f"{', '.join(RESERVED_PREFIXES)} are the runtime's",
            )
    env = {k: os.environ[k] for k in RUNTIME_ENV if k in os.environ}
    if runtime == "apptainer":
        env.update({f"APPTAINERENV_{k}": v for k, v in payload_env.items()})
    else:
        env.update(payload_env)
    return env
