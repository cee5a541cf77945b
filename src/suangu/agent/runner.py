"""The provider agent: runs the provider's leases on its cluster, meters them, reports.

Every ``tick`` (a few seconds apart in production, driven by an injected clock in tests):

1. It lists the provider's scheduled and running leases (one call:
   ``GET /leases?state=scheduled&state=running``; a provider's key sees only its own). A
   lease is one slot of one order on one pool.
2. Leases of one order and pool in consecutive slots, of the same GPUs, form a **run**: one
   job for the whole block (a job holds its GPUs throughout, so a lease of another width
   starts a run of its own), started when the first slot starts, with the block's end as its
   time limit. A lease that arrives later (a later clearing extended the order) starts a new
   run when its slot comes, if the job is no longer running.
3. While a job runs, the agent sends a reading every ``reading_interval_s`` for the lease of
   the current slot, and a final reading when the slot ends (or the job ends): GPU-seconds =
   the lease's GPUs x the time the job ran inside the interval, energy = what the meter
   measured since the previous reading. A lease whose job ended early gets a final reading of
   what it used (nothing, for the slots after the end): the buyer pays metered use only and
   the rest of its hold is released.
4. A job that could not start (no free GPUs, sbatch refused it) fails its leases
   (``POST /leases/{id}/fail``); so does a lease whose slot passed with no run (the agent was
   down): the exchange then settles what was metered and releases the rest.

Readings carry ids unique to this agent process, so a retry after a network error is
recognised by the exchange and never counted twice. With ``batch_readings`` the readings of a
tick go to the exchange in one call (``POST /readings``) instead of one call per lease: an
agent metering hundreds of leases a slot settles them in one transaction. ``meters`` gives a
pool its own meter (a provider whose pools hold different GPU classes meters each with its
class's figures). A restarted agent does not know its
predecessor's jobs: leases whose slot is still open get a new job.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from suangu.agent.executors import Executor, Job, JobState
from suangu.agent.meters import Meter, wh
from suangu.client import ClientError
from suangu.core.metering import ReadingSource

log = logging.getLogger("suangu.agent")


class Api(Protocol):
    def get(self, path: str, **params: Any) -> Any: ...

    def post(self, path: str, json: Any = None, **kw: Any) -> Any: ...

    def all_pages(self, path: str, **params: Any) -> list[dict[str, Any]]: ...


@dataclass
class LeaseView:
    id: str
    order_id: str
    pool_id: str
    slot: int
    gpus: int
    start: int  # Unix seconds
    end: int


@dataclass
class Run:
    id: str
    order_id: str
    pool_id: str
    leases: list[LeaseView]
    job: Job | None = None
    meter_token: object = None
    meter: Meter | None = None  # the meter of the run's pool
    read_to: float = 0.0  # everything before this instant has been reported
    energy_mj: float = 0.0  # meter reading at read_to
    finished: set[str] = field(default_factory=set)  # lease ids with a final reading
    reported: bool = False  # the job's end was reported to the exchange

    @property
    def end(self) -> int:
        return self.leases[-1].end

    def open_leases(self) -> list[LeaseView]:
        return [x for x in self.leases if x.id not in self.finished]


@dataclass
class TickSummary:
    started: int = 0
    readings: int = 0
    finals: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class ProviderAgent:
    """See the module docs. ``clock()`` returns Unix seconds."""

    def __init__(
        self,
        api: Api,
        executor: Executor,
        meter: Meter,
        clock: Callable[[], float],
        *,
        reading_interval_s: int = 300,
        pools: set[str] | None = None,
        instance: str | None = None,
        name: str = "default",
        meters: dict[str, Meter] | None = None,
        batch_readings: bool = False,
        ahead_slots: int | None = None,
    ) -> None:
        self.api = api
        self.executor = executor
        self.meter = meter
        self.clock = clock
        self.reading_interval_s = reading_interval_s
        self.pools = pools
        self.instance = instance or secrets.token_hex(4)
        self.name = name
        self.meters = dict(meters or {})
        self.batch_readings = batch_readings
        #: List only leases of the current slot and this many after it (None: every open
        #: lease): a run then covers at most that many slots ahead, and a provider with
        #: thousands of leases sold a day ahead reads only the few it acts on.
        self.ahead_slots = ahead_slots
        #: Readings of this tick not sent yet (``batch_readings``): body, run, lease id.
        self._batch: list[tuple[dict[str, Any], Run, str]] = []
        #: Where the runs of those readings were read to before this tick (restored when the
        #: batch is refused, so the next tick reads the same time again).
        self._read_before: dict[str, tuple[Run, float, float]] = {}
        self.runs: dict[str, Run] = {}
        self._seq = 0
        self._grid: tuple[int, int] | None = None

    # -- the exchange ------------------------------------------------------------------------

    def grid(self) -> tuple[int, int]:
        if self._grid is None:
            g = self.api.get("/market/grid")
            self._grid = (int(g["epoch"]), int(g["slot_seconds"]))
        return self._grid

    def open_leases(self) -> list[LeaseView]:
        epoch, step = self.grid()
        out = []
        params: dict[str, Any] = {"state": ["scheduled", "running"]}
        if self.ahead_slots is not None:
            params["slot_to"] = max(0, int(self.clock() - epoch) // step + self.ahead_slots)
        for x in self.api.all_pages("/leases", **params):
            if self.pools is not None and x["pool_id"] not in self.pools:
                continue
            start = epoch + int(x["slot"]) * step
            out.append(
                LeaseView(
                    x["id"],
                    x["order_id"],
                    x["pool_id"],
                    int(x["slot"]),
                    # GPUs its buyer resold run the new buyers' leases instead.
                    int(x["gpus"]) - int(x.get("resold_gpus", 0)),
                    start,
                    start + step,
                )
            )
        out.sort(key=lambda v: (v.order_id, v.pool_id, v.slot, v.id))
        return out

    def _reading_id(self) -> str:
        self._seq += 1
        return f"a{self.instance}-{self._seq}"

    def _post_reading(
        self,
        lease: LeaseView,
        start: float,
        end: float,
        gpu_s: int,
        energy_wh: int,
        final: bool,
        source: str,
        run: Run | None = None,
    ) -> bool:
        """Post the reading of ``[start, end)`` in whole seconds; whether one was posted.

        Readings of a lease never overlap (the exchange refuses those): consecutive readings
        share their boundary, truncated to the second. An interval shorter than a second is
        skipped unless it is the lease's final reading, which then covers one second of the
        lease's slot."""
        lo, hi = int(start), int(end)
        if hi <= lo:
            if not final:
                return False
            lo, hi = (lo, lo + 1) if lo + 1 <= lease.end else (lo - 1, lo)
        body = {
            "id": self._reading_id(),
            "interval_start": lo,
            "interval_end": hi,
            "gpu_seconds": min(gpu_s, lease.gpus * (hi - lo)),
            "energy_wh": energy_wh,
            "source": source,
            "final": final,
        }
        if self.batch_readings and run is not None:
            self._batch.append(({"lease_id": lease.id, **body}, run, lease.id))
            return True
        self.api.post(f"/leases/{lease.id}/readings", json=body)
        return True

    def _flush(self, summary: TickSummary) -> None:
        """Send the tick's batched readings in one call; on an error the leases they would
        have finished stay open, so the next tick reads them again."""
        batch, self._batch = self._batch, []
        before, self._read_before = self._read_before, {}
        if not batch:
            return
        try:
            self.api.post("/readings", json=[body for body, _, _ in batch])
        except ClientError as err:
            summary.errors.append(f"readings: {err}")
            for run, read_to, energy_mj in before.values():
                run.read_to, run.energy_mj = read_to, energy_mj
            for body, run, lease_id in batch:
                if body["final"]:
                    run.finished.discard(lease_id)
                summary.readings -= 1
                summary.finals -= int(body["final"])

    # -- one step ------------------------------------------------------------------------------

    def heartbeat(self, summary: TickSummary) -> None:
        """Tell the exchange this agent is alive and which pools it serves (``POST
        /agents/heartbeat``): when it is silent longer than the exchange's grace period, the
        open leases of the pools no other live agent of the provider serves fail and their
        work is cleared elsewhere."""
        body: dict[str, Any] = {"instance": self.instance, "agent": self.name}
        if self.pools is not None:
            body["pools"] = sorted(self.pools)
        try:
            self.api.post("/agents/heartbeat", json=body)
        except ClientError as err:
            summary.errors.append(f"heartbeat: {err}")

    def tick(self) -> TickSummary:
        now = self.clock()
        summary = TickSummary()
        self.heartbeat(summary)
        try:
            leases = self.open_leases()
        except ClientError as err:
            summary.errors.append(str(err))
            return summary
        known = {x.id for x in leases}
        in_runs = {x.id for r in self.runs.values() for x in r.leases}
        self._extend_or_start(now, [x for x in leases if x.id not in in_runs], summary)
        for run in list(self.runs.values()):
            try:
                self._advance(run, now, known, summary)
            except ClientError as err:
                summary.errors.append(f"run {run.id}: {err}")
        self._flush(summary)
        for run in list(self.runs.values()):
            if not run.open_leases() and (
                run.job is None or run.job.state not in (JobState.RUNNING, JobState.PENDING)
            ):
                del self.runs[run.id]
        return summary

    def _extend_or_start(self, now: float, new: list[LeaseView], summary: TickSummary) -> None:
        blocks: list[list[LeaseView]] = []
        for x in new:
            if (
                blocks
                and (blocks[-1][-1].order_id, blocks[-1][-1].pool_id, blocks[-1][-1].gpus)
                == (x.order_id, x.pool_id, x.gpus)
                and blocks[-1][-1].slot + 1 == x.slot
            ):
                blocks[-1].append(x)
            else:
                blocks.append([x])
        for block in blocks:
            first = block[0]
            if now < first.start:
                continue  # not yet: its run starts with its first slot
            live = [x for x in block if x.end > now]
            for gone in [x for x in block if x.end <= now]:
                self._fail(gone, "slot passed with no run on this agent", summary)
            if not live:
                continue
            run_id = f"{first.order_id}.{first.pool_id}.{live[0].slot}"
            run = Run(run_id, first.order_id, first.pool_id, live, read_to=now)
            seconds = int(run.end - now)
            values = {
                "run_id": run_id,
                "order_id": run.order_id,
                "lease_id": live[0].id,
                "gpus": str(live[0].gpus),
                "seconds": str(seconds),
            }
            gpus = max(x.gpus for x in live)
            job = self.executor.submit(run_id, gpus, seconds, values)
            run.job = job
            self.runs[run_id] = run
            if job.state is JobState.FAILED:
                log.warning("run %s could not start: %s", run_id, job.detail)
                for x in live:
                    self._fail(x, job.detail, summary)
                    run.finished.add(x.id)
                continue
            run.meter = self.meters.get(run.pool_id, self.meter)
            run.meter_token = run.meter.start(job.devices, gpus, now)
            summary.started += 1
            log.info("run %s started (%s GPUs, %s s): job %s", run_id, gpus, seconds, job.native_id)

    def _report(self, lease: LeaseView, body: dict[str, Any], summary: TickSummary) -> None:
        """Tell the exchange how the lease's work ended (``POST /leases/{id}/report``)."""
        try:
            self.api.post(f"/leases/{lease.id}/report", json=body)
        except ClientError as err:
            summary.errors.append(f"lease {lease.id} report: {err}")

    def _fail(
        self, lease: LeaseView, why: str, summary: TickSummary, exit_code: int | None = None
    ) -> None:
        body = {"outcome": "failed", "exit_code": exit_code, "reason": why[:2000]}
        self._report(lease, body, summary)
        try:
            self.api.post(f"/leases/{lease.id}/fail")
            summary.failed += 1
            log.warning("lease %s failed: %s", lease.id, why)
        except ClientError as err:
            summary.errors.append(f"lease {lease.id}: {err}")

    def _advance(self, run: Run, now: float, known: set[str], summary: TickSummary) -> None:
        job = run.job
        if job is None:
            return
        # Leases the exchange already closed (e.g. completed after its grace period) are done.
        for x in run.open_leases():
            if x.id not in known:
                run.finished.add(x.id)
        job = self.executor.poll(job, now)
        ended = job.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
        if job.state is JobState.RUNNING and now >= run.end:
            self.executor.cancel(job)  # past its last slot: the time limit is the contract
            ended = True
            job.ended = float(run.end)
        upto = min(now, float(run.end))
        use_from = job.started
        use_to = job.ended if ended and job.ended is not None else upto
        # A payload that failed: its use so far is metered, the leases it did not finish fail
        # with the reason (the exchange pays the metered use and releases the rest).
        failed = ended and job.state is JobState.FAILED
        if ended and job.state is JobState.DONE and job.exit_code is not None and not run.reported:
            run.reported = True
            done = {
                "outcome": "done",
                "exit_code": job.exit_code,
                "outputs": list(job.outputs),
                "reason": "" if job.detail.startswith("exit code") else job.detail,
            }
            for x in run.open_leases():
                self._report(x, done, summary)
        due = [x for x in run.open_leases() if x.start <= upto]
        finals = [x for x in due if x.end <= upto or (ended and not failed)]
        if not due or (not finals and not failed and upto - run.read_to < self.reading_interval_s):
            self._fail_rest(run, job, failed, summary)
            return
        meter = run.meter or self.meter
        energy_now = meter.energy_mj(run.meter_token, min(now, use_to or now))
        if ended and job.energy_j is not None:
            energy_now = max(energy_now, job.energy_j * 1000.0)
        energy = max(0.0, energy_now - run.energy_mj)
        pieces: list[tuple[LeaseView, float, float, int, bool]] = []
        for x in due:
            lo, hi = max(run.read_to, float(x.start)), min(upto, float(x.end))
            used = 0.0
            if use_from is not None and use_to is not None:
                used = max(0.0, min(hi, use_to) - max(lo, use_from))
            final = x.end <= upto or (ended and not failed)
            pieces.append((x, lo, max(hi, lo), round(used * x.gpus), final))
        total_gpu_s = sum(p[3] for p in pieces)
        for x, lo, hi, gpu_s, final in pieces:
            share = gpu_s / total_gpu_s if total_gpu_s else 0.0
            source = str(meter.source)
            if ended and job.energy_j is not None:
                source = str(ReadingSource.SLURM)  # the cluster's accounting has the last word
            if not self._post_reading(x, lo, hi, gpu_s, wh(energy * share), final, source, run):
                continue
            summary.readings += 1
            if final:
                run.finished.add(x.id)
                summary.finals += 1
        if self.batch_readings:
            self._read_before.setdefault(run.id, (run, run.read_to, run.energy_mj))
        run.read_to = upto
        run.energy_mj = energy_now
        self._fail_rest(run, job, failed, summary)

    def _fail_rest(self, run: Run, job: Job, failed: bool, summary: TickSummary) -> None:
        """The leases of a failed payload's run that it did not finish fail, with why."""
        if not failed:
            return
        for x in run.open_leases():
            self._fail(x, job.detail, summary, job.exit_code)
            run.finished.add(x.id)

    def stop(self) -> None:
        """Cancel every job this agent started (the exchange then settles what was metered)."""
        for run in self.runs.values():
            if run.job is not None:
                self.executor.cancel(run.job)
