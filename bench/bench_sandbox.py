"""Overhead per lease of the sandbox executor: stage, start, upload.

    .venv/bin/python bench/bench_sandbox.py [--sizes 1,16,64] [--repeat 3] [--slurm]

Against the API on uvicorn on a free loopback port (a temporary SQLite database, the
embedded object store): a provider with a site, a pool and an offer; a buyer that uploads an
input of each size and submits an order with a workload whose payload copies the input to
its output (``cp``); one clearing. Then, per run, the agent's :class:`SandboxExecutor` on
the lease at its slot (the app's clock is a manual one, set into the slot):

* ``stage``: ``GET /leases/{id}/workload``, ``POST /leases/{id}/grants``, the download of
  the input with its grant, its size and sha256 checked, written into a fresh work directory;
* ``start``: bubblewrap started until the payload has exited (``cp`` of the input: a payload
  that does almost nothing, so this is the sandbox's own cost plus the copy); with
  ``--slurm``, from ``sbatch`` until ``scontrol`` reports the job ended (Slurm's scheduling,
  slurmd's launch and the batch script, polled every 5 ms);
* ``upload``: the output's sha256 and ``POST /leases/{id}/outputs``.

The table shows the median of the runs and the range (seconds). One JSON line per size is
appended to ``bench/results/sandbox.jsonl``. Needs ``bwrap`` (apt-get install bubblewrap).
"""

from __future__ import annotations

import argparse
import json
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_data import _free_port, _wait_port  # noqa: E402
from suangu.agent.executors import JobState  # noqa: E402
from suangu.agent.sandbox import SandboxExecutor, bwrap_available  # noqa: E402
from suangu.agent.slurm import SlurmLauncher  # noqa: E402
from suangu.store.objects import DirectoryBackend, ObjectStore  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "sandbox.jsonl"
EPOCH = 1_767_225_600
SLOT = 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,16,64", help="input sizes in MiB")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--slurm",
        action="store_true",
        help="submit the payloads with sbatch (SLURM_CONF; .ci/slurm-up start makes one)",
    )
    args = ap.parse_args()
    why = bwrap_available()
    if why is not None:
        sys.exit(f"cannot run: {why}")
    import threading

    import uvicorn

    from suangu.api.app import create_app
    from suangu.api.clock import ManualClock
    from suangu.api.settings import ApiSettings
    from suangu.client import SuanguClient
    from suangu.core.types import Offer, Pool, Site
    from suangu.store.db import open_database, sqlite_url
    from suangu.store.models import Role
    from suangu.store.repositories import Capacity, Members

    sizes = [int(float(x) * 1024 * 1024) for x in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="suangu-bench-sandbox-") as tmp:
        d = Path(tmp)
        db = open_database(sqlite_url(d / "bench.db"))
        clock = ManualClock(EPOCH + SLOT * 3600 + 10)
        now = clock.now()
        tokens = {}
        with db.session_scope() as s:
            for m, role in (("op", Role.OPERATOR), ("prov", Role.PROVIDER), ("buy", Role.BUYER)):
                Members(s).create(m, m, role, now)
                tokens[m] = Members(s).create_key(m, now).token
            cap = Capacity(s)
            site = Site("site", "Horinger", "Inner Mongolia", "im", 40.5, 111.8, 1.15)
            cap.add_site(site, "prov")
            cap.add_pool(Pool("pool", "site", "H100"))
            cap.add_offer(Offer.over("offer", "prov", "pool", SLOT, SLOT + 24, 64, 100), now)
        store = ObjectStore(DirectoryBackend(d / "blobs"), secrets.token_bytes(32))
        app = create_app(
            db,
            clock,
            ApiSettings(grid_epoch=EPOCH, max_body_bytes=1 << 30, rate_limit=False),
            energy=False,
            dashboard=False,
            objects=store,
        )
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        threading.Thread(target=server.run, daemon=True).start()
        _wait_port(port)
        url = f"http://127.0.0.1:{port}"
        op, prov, buy = (SuanguClient(url, tokens[m]) for m in ("op", "prov", "buy"))
        op.post("/deposits", json={"id": "dep", "member_id": "buy", "amount_fen": 10**12})
        leases: dict[int, list[str]] = {}
        for size in sizes:
            data = secrets.token_bytes(size)
            obj = buy.upload("/data", data, {"name": f"in-{size}"})
            ids = []
            for n in range(args.repeat):
                oid = f"o{size}-{n}"
                buy.post(
                    "/orders",
                    json={
                        "id": oid, "kind": "batch", "gpus": 1, "release_slot": SLOT,
                        "deadline_slot": SLOT + 1, "limit_fen": 1000, "gpu_hours": 1,
                        "home": "im", "regions": ["im"],
                        "workload": {
                            "runtime": {"kind": "process", "command": ["cp", "in.bin", "out.bin"]},
                            "inputs": [{"object": obj["id"], "sha256": obj["sha256"],
                                        "size": obj["size"], "path": "in.bin"}],
                            "outputs": ["out.bin"],
                        },
                    },
                )  # fmt: skip
                ids.append(oid)
            leases[size] = ids
        op.post("/clearings", json={"id": "clr", "n_slots": 1})
        launcher = SlurmLauncher() if args.slurm else None
        executor = SandboxExecutor(prov, d / "runs", list(range(64)), time.time, launcher=launcher)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        print(f"{'input':>8}  {'stage s':>18}  {'start+run s':>18}  {'upload s':>18}")
        for size in sizes:
            stage, start, upload = [], [], []
            for oid in leases[size]:
                (lease,) = prov.get("/leases", order_id=oid)["items"]
                values = {"lease_id": lease["id"], "order_id": oid}
                t0 = time.perf_counter()
                job = executor.submit(f"run-{oid}", 1, 3600, values)
                t1 = time.perf_counter()
                assert job.state in (JobState.RUNNING, JobState.PENDING), job.detail
                run = executor._runs[job.run_id]
                while run.proc.poll() is None:
                    time.sleep(0.005)
                t2 = time.perf_counter()
                job = executor.poll(job, time.time())
                t3 = time.perf_counter()
                assert job.state is JobState.DONE, job.detail
                stage.append(t1 - t0)
                start.append(t2 - t1)
                upload.append(t3 - t2)
            row: dict[str, Any] = {
                "size_bytes": size,
                "stage_s": stage,
                "start_run_s": start,
                "upload_s": upload,
                "executor": "slurm" if args.slurm else "sandbox",
                "python": platform.python_version(),
                "at": int(time.time()),
            }
            with RESULTS.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{size / 2**20:5.0f} MiB  {_fmt(stage)}  {_fmt(start)}  {_fmt(upload)}")
        server.should_exit = True
        db.dispose()


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):7.3f} ({min(values):.3f}-{max(values):.3f})"


if __name__ == "__main__":
    main()
