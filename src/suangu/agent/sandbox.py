"""The buyer's workload, run confined: the ``sandbox`` executor.

For each run (a block of consecutive leases of one order on one pool) the executor:

1. fetches the order's workload for the run's first lease (``GET /leases/{id}/workload``;
   the exchange answers only while the lease runs, and only to its provider);
2. makes a fresh work directory ``<root>/<run id>/work`` and writes the runtime's ``files``;
3. asks for download grants (``POST /leases/{id}/grants``), downloads each exchange input
   with its grant (URI inputs over HTTP(S), or S3 with the agent's own credentials), and
   checks every input's size and sha256 before the payload starts: a mismatch fails the
   run with the reason, and nothing runs;
4. runs the ``process`` runtime's command under bubblewrap (:func:`bwrap_argv`): a new
   mount, PID, network, IPC, UTS and user namespace; the host's ``/usr`` (and the few ``/etc``
   entries programs need) read-only; a fresh ``/proc`` and a minimal ``/dev`` plus the lease's
   GPU device nodes; the work directory, mounted at ``/work``, is the only writable place
   (``/`` is remounted read-only, ``TMPDIR`` and ``HOME`` point into the work directory); no
   other run's directory and no other member's file is in its view; no network (inputs are
   staged by the agent); the environment is exactly the workload's ``env`` and
   ``secret_env`` (bubblewrap's own environment, never on a command line),
   ``CUDA_VISIBLE_DEVICES`` (the lease's GPUs), ``SUANGU_LEASE_ID``, ``SUANGU_ORDER_ID``;
   it dies with the agent;
5. when the payload exits 0, uploads every output path (``POST /leases/{id}/outputs``): a
   path that is missing, not a regular file, or a link leaving the work directory fails the
   run with the reason; when it exits non-zero, the run fails with the exit code and the end
   of its output (``<root>/<run id>/payload.log``, kept outside the work directory).

The ``container`` runtime runs the order's image with the provider's podman, docker or
apptainer (:mod:`suangu.agent.containers`: the same work directory at ``/work``, no network,
the lease's GPUs) in place of bubblewrap; a host with none of them fails such a lease with
that reason. With a :class:`~suangu.agent.slurm.SlurmLauncher` the confined payload is
submitted into the site's Slurm cluster with ``sbatch`` instead of started on this host.
Secret values are passed to the payload's environment only: never logged, never written to
disk by the agent.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from suangu.agent.containers import RUNTIMES, container_argv, container_env, find_runtime
from suangu.agent.errors import AgentError
from suangu.agent.executors import Job, JobState
from suangu.agent.slurm import Exit, SlurmLauncher
from suangu.client import ClientError
from suangu.workload import REDACTED, ContainerRuntime, ProcessRuntime, WorkloadSpec

log = logging.getLogger("suangu.agent.sandbox")

#: Read-only system paths mounted into the sandbox when they exist on the host.
SYSTEM_RO = ("/usr", "/etc/alternatives", "/etc/ssl", "/etc/ld.so.cache", "/etc/localtime")
#: Top-level system directories: links into /usr on merged-/usr systems, else read-only.
TOP_DIRS = ("/bin", "/sbin", "/lib", "/lib64")
#: Device nodes of NVIDIA GPUs that every CUDA process needs besides its own /dev/nvidiaN.
NVIDIA_SHARED = (
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia-modeset",
)
#: Where a job that can checkpoint writes its checkpoint, in its work directory.
CHECKPOINT_DIR = ".checkpoint"
#: Most bytes of output one log shipment carries (whole lines while the payload runs).
LOG_CHUNK = 64 * 1024
#: How much of a failed payload's output goes into the reason.
REASON_TAIL = 600


class DataApi(Protocol):
    """What the executor needs of the exchange (``suangu.client.SuanguClient`` has it)."""

    def get(self, path: str, **params: Any) -> Any: ...

    def post(self, path: str, json: Any = None, **kw: Any) -> Any: ...

    def download(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[bytes, Mapping[str, str]]: ...

    def upload(self, path: str, data: bytes, params: Mapping[str, str]) -> Any: ...


def bwrap_available(bwrap: str = "bwrap") -> str | None:
    """Why bubblewrap cannot confine a payload here, or None when it can."""
    path = shutil.which(bwrap)
    if path is None:
        return f"{bwrap} is not installed (apt-get install -y bubblewrap)"
    try:
        with tempfile.TemporaryDirectory(prefix="suangu-bwrap-") as work:
            argv = bwrap_argv(Path(work), ["true"], bwrap=path)
            out = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                env={"PATH": "/usr/bin:/bin"},
            )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{bwrap} does not run: {err}"
    if out.returncode != 0:
        return f"{bwrap} cannot create namespaces here: {' '.join(out.stderr.split())[:200]}"
    return None


def bwrap_argv(
    work: Path,
    command: Sequence[str],
    devices: Sequence[int] = (),
    *,
    bwrap: str = "bwrap",
    network: bool = False,
) -> list[str]:
    """The bubblewrap command line that runs ``command`` confined to ``work``. The payload's
    environment is bubblewrap's own (the executor starts it with exactly that environment),
    so no value, secret or not, appears on a command line that ``ps`` shows."""
    argv = [bwrap, "--die-with-parent", "--new-session"]
    argv += ["--unshare-all"] + (["--share-net"] if network else [])
    for path in SYSTEM_RO:
        argv += ["--ro-bind-try", path, path]
    for top in TOP_DIRS:
        host = Path(top)
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), top]
        elif host.is_dir():
            argv += ["--ro-bind", top, top]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    gpus = [f"/dev/nvidia{d}" for d in devices]
    for node in [*gpus, *NVIDIA_SHARED] if devices else []:
        argv += ["--dev-bind-try", node, node]
    argv += ["--bind", str(work), "/work", "--remount-ro", "/", "--chdir", "/work"]
    return [*argv, "--", *command]


def _inside(base: Path, rel: str) -> Path | None:
    """``base / rel`` if it stays inside ``base`` once links are followed."""
    target = (base / rel).resolve()
    root = base.resolve()
    return target if target == root or root in target.parents else None


class Payload(Protocol):
    """A started payload: on this host (:class:`LocalPayload`) or in Slurm
    (:class:`~suangu.agent.slurm.SlurmPayload`)."""

    @property
    def native_id(self) -> str: ...

    @property
    def queued(self) -> bool:
        """Waiting for the cluster to start it."""
        ...

    def poll(self) -> Exit | None:
        """How it ended, or None while it is queued or running."""
        ...

    def signal(self, sig: int) -> None: ...

    def stop(self) -> None: ...


@dataclass
class LocalPayload:
    """bubblewrap started on the agent's own host."""

    proc: subprocess.Popen[bytes]
    queued: bool = False

    @property
    def native_id(self) -> str:
        return str(self.proc.pid)

    def poll(self) -> Exit | None:
        code = self.proc.poll()
        return None if code is None else Exit(code)

    def signal(self, sig: int) -> None:
        signal_payload(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


@dataclass
class _Running:
    proc: Payload
    lease_id: str
    run_dir: Path
    spec: WorkloadSpec
    devices: tuple[int, ...]
    #: When the run's last slot ends (the executor's clock), and whether the payload was
    #: told to checkpoint.
    end: float = 0.0
    warned: bool = False
    #: Secret values, redacted from the logs shipped to the exchange (memory only).
    secrets: tuple[str, ...] = ()
    #: Bytes of the payload's output shipped so far.
    log_sent: int = 0


def signal_payload(bwrap_pid: int, sig: int) -> None:
    """Send ``sig`` to the processes bubblewrap started (not to bubblewrap itself, whose
    death would kill them at once): the payload gets the chance to act on it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    todo, found = [bwrap_pid], []
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    for pid in found:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, sig)


def tar_dir(folder: Path) -> bytes:
    """The regular files and folders under ``folder`` as an uncompressed tar (links and
    special files are left out), in a fixed order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buf.getvalue()


def untar(data: bytes, folder: Path) -> None:
    """Extract a checkpoint tar into ``folder``: regular files and folders only, each inside
    ``folder`` (anything else is refused, not skipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        members = tar.getmembers()
        for m in members:
            if not (m.isfile() or m.isdir()) or _inside(folder, m.name) is None:
                raise AgentError(f"the checkpoint holds {m.name!r}, which is not restored")
        for m in members:
            target = _inside(folder, m.name)
            assert target is not None
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            target.write_bytes(src.read())


def fetch_uri(uri: str) -> bytes:
    """The bytes of a URI input (HTTP(S), or S3 with the agent's own credentials)."""
    if uri.startswith("s3://"):
        import boto3

        bucket, _, key = uri[len("s3://") :].partition("/")
        return bytes(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    import httpx

    with httpx.Client(timeout=120, follow_redirects=True) as client:
        r = client.get(uri)
        r.raise_for_status()
        return r.content


@dataclass
class SandboxExecutor:
    """Runs buyers' workloads under bubblewrap (see the module docs)."""

    api: DataApi
    root: Path
    devices: Sequence[int]
    clock: Callable[[], float]
    bwrap: str = "bwrap"
    network: bool = False
    fetch: Callable[[str], bytes] = fetch_uri
    #: A job that can checkpoint gets SIGTERM this long before its run's end.
    checkpoint_warning_s: float = 120.0
    #: Where payloads run: None on this host, or a Slurm cluster (``sbatch``).
    launcher: SlurmLauncher | None = None
    #: Container runtimes the ``container`` runtime may use, in order of preference.
    container_runtimes: Sequence[str] = RUNTIMES
    which: Callable[[str], str | None] = shutil.which
    _runs: dict[str, _Running] = field(default_factory=dict, init=False)
    _busy: set[int] = field(default_factory=set, init=False)

    def _failed(self, run_id: str, gpus: int, why: str) -> Job:
        log.warning("run %s failed before its payload started: %s", run_id, why)
        return Job(run_id, gpus, "", state=JobState.FAILED, detail=why)

    def submit(self, run_id: str, gpus: int, seconds: int, values: Mapping[str, str]) -> Job:
        devices: tuple[int, ...] = ()
        if self.launcher is None:  # on this host: hand out GPUs; in Slurm the cluster does
            free = [d for d in self.devices if d not in self._busy]
            if len(free) < gpus:
                return self._failed(
                    run_id, gpus, f"{gpus} GPUs needed, {len(free)} free of {len(self.devices)}"
                )
            devices = tuple(free[:gpus])
        lease_id = values["lease_id"]
        run_dir = self.root / run_id
        try:
            spec, secrets = self._workload(lease_id)
            container = None
            if spec.runtime.kind == "container":
                container = find_runtime(self.container_runtimes, self.which)
            if run_dir.exists():
                shutil.rmtree(run_dir)
            work = run_dir / "work"
            (work / ".tmp").mkdir(parents=True)
            if spec.checkpoint:
                (work / CHECKPOINT_DIR).mkdir()
            files = spec.runtime.files if isinstance(spec.runtime, ProcessRuntime) else {}
            for rel, text in files.items():
                path = work / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
            self._stage(lease_id, spec, work)
        except (AgentError, ClientError, OSError) as err:
            return self._failed(run_id, gpus, str(err))
        env = {
            **spec.runtime.env,
            **secrets,
            "SUANGU_LEASE_ID": lease_id,
            "SUANGU_ORDER_ID": values.get("order_id", ""),
            "SUANGU_RUN_ID": run_id,
            "SUANGU_SECONDS": str(seconds),
        }
        if spec.checkpoint:
            env["SUANGU_CHECKPOINT_DIR"] = f"/work/{CHECKPOINT_DIR}"
        if self.launcher is None:  # in Slurm, the cluster sets the job's CUDA_VISIBLE_DEVICES
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
        try:
            if container is not None and isinstance(spec.runtime, ContainerRuntime):
                argv = container_argv(
                    *container, spec.runtime.image, spec.runtime.command, work, sorted(env),
                    devices, network=self.network, user=(os.getuid(), os.getgid()),
                )  # fmt: skip
                env = container_env(container[0], env)
            else:
                env.update(PATH="/usr/local/bin:/usr/bin:/bin", HOME="/work",
                           TMPDIR="/work/.tmp", LANG="C.UTF-8")  # fmt: skip
                argv = bwrap_argv(
                    work, spec.runtime.command, devices, bwrap=self.bwrap, network=self.network
                )
        except AgentError as err:
            return self._failed(run_id, gpus, str(err))
        hidden = tuple(v for v in secrets.values() if v)
        if self.launcher is not None:
            try:
                payload: Payload = self.launcher.launch(
                    run_id, run_dir, argv, env, gpus, seconds, spec.checkpoint
                )
            except (AgentError, OSError) as err:
                return self._failed(run_id, gpus, str(err))
            state = JobState.PENDING
        else:
            logf = (run_dir / "payload.log").open("wb")
            try:
                proc = subprocess.Popen(
                    argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True, env=env,
                )  # fmt: skip
            except OSError as err:
                return self._failed(run_id, gpus, f"{argv[0]} did not start: {err}")
            finally:
                logf.close()
            payload, state = LocalPayload(proc), JobState.RUNNING
        end = self.clock() + seconds
        self._runs[run_id] = _Running(
            payload, lease_id, run_dir, spec, devices, end, secrets=hidden
        )
        self._busy.update(devices)
        log.info("run %s: payload %s in %s (%s)", run_id, state, work, payload.native_id)
        started = self.clock() if state is JobState.RUNNING else None
        return Job(run_id, gpus, payload.native_id, devices, state, started=started)

    def _workload(self, lease_id: str) -> tuple[WorkloadSpec, dict[str, str]]:
        got = self.api.get(f"/leases/{lease_id}/workload")["workload"]
        secrets = dict(got.get("secret_env") or {})
        return WorkloadSpec.model_validate(got), secrets

    def _stage(self, lease_id: str, spec: WorkloadSpec, work: Path) -> None:
        if not spec.inputs and not spec.checkpoint:
            return
        granted = self.api.post(f"/leases/{lease_id}/grants")["items"]
        for item in granted:
            if item.get("checkpoint"):
                self._restore(item, work)
                continue
            where = _inside(work, item["path"])
            if where is None:
                raise AgentError(f"input path {item['path']!r} leaves the work directory")
            if "token" in item:
                data, _ = self.api.download(
                    f"/data/{item['object']}/content", {"X-Suangu-Grant": item["token"]}
                )
                source = item["object"]
            else:
                try:
                    data = self.fetch(item["uri"])
                except Exception as err:
                    raise AgentError(f"input {item['uri']} could not be fetched: {err}") from None
                source = item["uri"]
            sha = hashlib.sha256(data).hexdigest()
            if len(data) != item["size"] or sha != item["sha256"]:
                raise AgentError(
                    f"input {item['path']} ({source}) is {len(data)} bytes with sha256 {sha}; "
                    f"the order says {item['size']} bytes with sha256 {item['sha256']}"
                )
            where.parent.mkdir(parents=True, exist_ok=True)
            where.write_bytes(data)

    def _restore(self, item: Mapping[str, Any], work: Path) -> None:
        """The order's latest checkpoint (a tar), verified, into the checkpoint directory."""
        data, _ = self.api.download(
            f"/data/{item['object']}/content", {"X-Suangu-Grant": item["token"]}
        )
        sha = hashlib.sha256(data).hexdigest()
        if len(data) != item["size"] or sha != item["sha256"]:
            raise AgentError(
                f"the checkpoint {item['object']} is {len(data)} bytes with sha256 {sha}; the "
                f"exchange says {item['size']} bytes with sha256 {item['sha256']}"
            )
        untar(data, work / CHECKPOINT_DIR)

    def poll(self, job: Job, now: float) -> Job:
        run = self._runs.get(job.run_id)
        if run is None or job.state not in (JobState.RUNNING, JobState.PENDING):
            return job
        ended = run.proc.poll()
        if not run.proc.queued and job.started is None:  # the cluster started it
            ran = getattr(run.proc, "ran_s", None)  # how long, if it has ended already
            job.state = JobState.RUNNING
            job.started = now - ran if ended is not None and ran is not None else now
        self._ship_logs(run, final=ended is not None)
        if ended is None:
            if (
                run.spec.checkpoint
                and not run.warned
                and not run.proc.queued
                and now >= run.end - self.checkpoint_warning_s
            ):
                run.warned = True
                log.info("run %s: SIGTERM to checkpoint before the lease ends", job.run_id)
                run.proc.signal(signal.SIGTERM)
            return job
        job.ended = now
        job.exit_code = code = ended.code
        job.energy_j = getattr(run.proc, "energy_j", None)
        if code is None:  # the cluster ended it, not the payload: its work can go elsewhere
            job.state = JobState.FAILED
            job.detail = f"{ended.detail}{self._tail(run)}"
        elif code != 0:
            job.state = JobState.FAILED
            extra = f" ({ended.detail})" if ended.detail else ""
            job.detail = f"the payload exited with code {code}{extra}{self._tail(run)}"
        elif run.warned:  # stopped to checkpoint: its work goes on at the next lease
            try:
                self._upload_checkpoint(run)
                job.state = JobState.DONE
                job.detail = "checkpointed before the lease ended"
            except (AgentError, ClientError, OSError) as err:
                job.state = JobState.FAILED
                job.detail = str(err)
        else:
            try:
                job.outputs = tuple(self._upload(run))
                job.state = JobState.DONE
                job.detail = "exit code 0"
            except (AgentError, ClientError, OSError) as err:
                job.state = JobState.FAILED
                job.detail = str(err)
        self._release(job)
        return job

    def _ship_logs(self, run: _Running, final: bool) -> None:
        """Send the payload's new output to the exchange (whole lines until it ends), secret
        values replaced by ``***``. A failure to send is retried at the next poll."""
        try:
            with (run.run_dir / "payload.log").open("rb") as f:
                f.seek(run.log_sent)
                raw = f.read(LOG_CHUNK)
        except OSError:
            return
        if not final and len(raw) < LOG_CHUNK:
            raw = raw[: raw.rfind(b"\n") + 1]
        if not raw:
            return
        text = raw.decode("utf-8", "replace")
        for secret in run.secrets:
            text = text.replace(secret, REDACTED)
        try:
            self.api.upload(
                f"/leases/{run.lease_id}/logs",
                text.encode("utf-8"),
                {"offset": str(run.log_sent), "size": str(len(raw))},
            )
        except ClientError as err:
            log.warning("run of lease %s: logs not shipped: %s", run.lease_id, err)
            return
        run.log_sent += len(raw)
        if final:
            self._ship_logs(run, final)  # the rest of a long output

    def _tail(self, run: _Running) -> str:
        try:
            raw = (run.run_dir / "payload.log").read_bytes()[-REASON_TAIL:]
        except OSError:
            return ""
        text = " ".join(raw.decode("utf-8", "replace").split())
        for secret in run.secrets:
            text = text.replace(secret, REDACTED)
        return f"; its output ends: {text}" if text else ""

    def _upload(self, run: _Running) -> list[str]:
        work = run.run_dir / "work"
        ids = []
        for rel in run.spec.outputs:
            raw = work / rel
            where = _inside(work, rel)
            if where is None:
                raise AgentError(f"output {rel} is a link that leaves the work directory")
            if not where.exists() and not raw.is_symlink():
                raise AgentError(f"output {rel} was not written by the payload")
            if not where.is_file():  # a dangling link, a directory, a device
                raise AgentError(f"output {rel} is not a regular file")
            data = where.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            got = self.api.upload(
                f"/leases/{run.lease_id}/outputs", data, {"name": rel, "sha256": sha}
            )
            ids.append(str(got["id"]))
        return ids

    def _upload_checkpoint(self, run: _Running) -> None:
        folder = run.run_dir / "work" / CHECKPOINT_DIR
        if not folder.is_dir() or not any(folder.iterdir()):
            raise AgentError("the payload was told to checkpoint but wrote no checkpoint")
        data = tar_dir(folder)
        sha = hashlib.sha256(data).hexdigest()
        self.api.upload(f"/leases/{run.lease_id}/checkpoint", data, {"sha256": sha})

    def cancel(self, job: Job) -> None:
        run = self._runs.get(job.run_id)
        if run is not None:
            try:
                run.proc.stop()
            except AgentError as err:  # scancel refused: the job ends at its time limit
                log.warning("run %s: %s", job.run_id, err)
        if job.state in (JobState.RUNNING, JobState.PENDING):
            job.state = JobState.CANCELLED
            job.ended = self.clock()
        self._release(job)

    def _release(self, job: Job) -> None:
        self._busy.difference_update(job.devices)
        self._runs.pop(job.run_id, None)
