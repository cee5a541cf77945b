"""What a provider's agent gets for a lease it holds: the order's workload, short-lived
download grants for its inputs, and a place for its outputs; and the record of it all.

* ``GET /leases/{id}/workload``: the workload to run (secret values included: only the agent
  of a running lease gets them).
* ``POST /leases/{id}/grants``: one grant per exchange input of the lease's order, valid for
  :data:`GRANT_TTL_S` seconds and never past the lease's slot. Refused (409) unless the lease
  runs (scheduled or running, its slot under way), and (403) when the lease's site lies
  outside the order's residency regions or provinces. The agent downloads each input with
  ``GET /data/{object_id}/content`` and the header ``X-Suangu-Grant: <token>``.
* ``POST /leases/{id}/outputs?name=...`` uploads one of the workload's output paths: it
  becomes a data object of the buyer, tied to the lease; allowed until the slot of the run's
  last lease (the order's leases at this provider from this one on) ended plus the grace
  period, while that lease is not failed or settled.
* ``POST /leases/{id}/report`` (its provider) says how the lease's work ended: ``done`` or
  ``failed``, the payload's exit code, the reason, the outputs; ``GET /leases/{id}/report``
  for its buyer, its provider, operators and auditors.
* ``POST /leases/{id}/checkpoint`` uploads a checkpoint of a job that can checkpoint (a tar
  of its ``$SUANGU_CHECKPOINT_DIR``): the buyer's object and the order's latest checkpoint;
  the grants of the order's next lease, wherever it runs, include it.
* ``GET /data/events`` is the record of every grant, download (grant or owner) and output:
  who, which object, which lease, when. A buyer reads the events of its objects, a provider
  its own actions, operators and auditors all.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from suangu.api import pagination, workloads
from suangu.api.auth import Member, Principal, Provider
from suangu.api.context import ApiContext
from suangu.api.errors import Forbidden
from suangu.api.idempotency import fingerprint, run_write
from suangu.api.routes._common import Ctx, Cursor, IdemKey, Limit
from suangu.api.routes.data import (
    NAME_PATTERN,
    SAME_OBJECT,
    Sha256,
    objects,
    read_upload,
    store_object,
)
from suangu.core.errors import ValidationError
from suangu.store.dataobjects import DataEvent, DataEvents, DataObject, DataObjects, Grants
from suangu.store.errors import Conflict, InvalidState, NotFound
from suangu.store.models import (
    DataEventKind,
    LeaseReportRow,
    LeaseState,
    OrderCheckpointRow,
    Role,
    RunOutcome,
)
from suangu.store.repositories import Capacity, Clearings, Lease, Orders
from suangu.workload import WorkloadSpec

router = APIRouter(tags=["data"])

#: How long a download grant lasts at most (it never outlives the lease's slot).
GRANT_TTL_S = 900
GRANT_HEADER = "X-Suangu-Grant"
#: Where a restored checkpoint goes, relative to the work directory ($SUANGU_CHECKPOINT_DIR).
CHECKPOINT_DIR = ".checkpoint"
_RUNS = (LeaseState.SCHEDULED, LeaseState.RUNNING)


def _held(s: Session, who: Principal, lease_id: str) -> Lease:
    """A lease of the calling provider (others' and missing ones: 404)."""
    try:
        lease = Clearings(s).lease(lease_id)
    except NotFound:
        lease = None
    if lease is None or lease.provider_id != who.member_id:
        raise NotFound(f"no lease {lease_id!r}", field="path.lease_id", fix="list your leases")
    return lease


def _slot(ctx: ApiContext, lease: Lease) -> tuple[int, int]:
    start = ctx.settings.grid.slot_start(lease.allocation.slot)
    return start, start + ctx.settings.slot_seconds


def lease_runs(ctx: ApiContext, lease: Lease, now: int) -> bool:
    start, end = _slot(ctx, lease)
    return lease.state in _RUNS and start <= now < end


def _running(ctx: ApiContext, lease: Lease, now: int) -> None:
    if not lease_runs(ctx, lease, now):
        start, end = _slot(ctx, lease)
        raise InvalidState(
            f"lease {lease.id!r} is not running now (it is {lease.state}; its slot runs "
            f"from {start} to {end}, now is {now})",
            field="path.lease_id",
            fix="ask while the lease's slot is under way",
        )


def _workload(s: Session, request: Request, ctx: ApiContext, lease: Lease) -> WorkloadSpec:
    spec = workloads.spec_of(s, objects(request, ctx), lease.allocation.order_id)
    if spec is None:
        raise NotFound(
            f"order {lease.allocation.order_id!r} has no workload",
            field="path.lease_id",
            fix="run the provider's own command for it",
        )
    return spec


@router.get("/leases/{lease_id}/workload")
def get_workload(lease_id: str, request: Request, who: Provider, ctx: Ctx) -> dict[str, Any]:
    """The workload of a running lease's order, secret values included (its agent only)."""
    now = ctx.now()
    with ctx.db.session_scope(write=False) as s:
        lease = _held(s, who, lease_id)
        _running(ctx, lease, now)
        spec = _workload(s, request, ctx, lease)
    body = spec.model_dump(mode="json", exclude_none=True)
    body["secret_env"] = spec.secrets()
    return {"lease_id": lease.id, "order_id": lease.allocation.order_id, "workload": body}


def _check_residency(s: Session, lease: Lease) -> None:
    order = Orders(s).get(lease.allocation.order_id).order
    capacity = Capacity(s)
    site = capacity.site(capacity.pool(lease.allocation.pool_id).site_id)
    outside = (order.regions and site.region not in order.regions) or (
        order.provinces and site.province not in order.provinces
    )
    if outside:
        allowed = ", ".join(sorted(order.regions | order.provinces))
        raise Forbidden(
            f"site {site.id!r} ({site.region}, {site.province}) is outside the order's "
            f"residency ({allowed}): its data may not go there",
            field="path.lease_id",
            fix="only leases at sites in the order's regions get its inputs",
        )


@router.post("/leases/{lease_id}/grants", status_code=201)
def create_grants(
    lease_id: str, request: Request, who: Provider, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """Download grants for the inputs of a lease the caller holds, while it runs. (A retry
    with the same ``Idempotency-Key`` answers the same grants; a token is of no use without
    the key of the provider it was granted to.)"""
    now = ctx.now()

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        lease = _held(s, who, lease_id)
        _running(ctx, lease, now)
        _check_residency(s, lease)
        spec = _workload(s, request, ctx, lease)
        expires = min(now + GRANT_TTL_S, _slot(ctx, lease)[1])
        grants = Grants(s)
        events = DataEvents(s)
        found = DataObjects(s).many(i.object for i in spec.inputs if i.object)
        items = []
        for item in spec.inputs:
            out: dict[str, Any] = {
                "sha256": item.sha256,
                "size": item.size,
                "path": item.staged_at,
            }
            if item.object is None:
                items.append({**out, "uri": item.uri})
                continue
            obj = found.get(item.object)
            if obj is None:  # pragma: no cover - inputs are checked when the order is stored
                raise NotFound(f"input object {item.object!r} is gone", field="path.lease_id")
            grant, token = grants.issue(lease.id, obj.id, who.member_id, now, expires)
            events.record(DataEventKind.GRANT, obj, who.member_id, now, lease.id, grant.id)
            items.append(
                {
                    **out,
                    "object": obj.id,
                    "grant_id": grant.id,
                    "token": token,
                    "expires_at": grant.expires_at,
                    "url": f"/api/v1/data/{obj.id}/content",
                }
            )
        latest = s.get(OrderCheckpointRow, lease.allocation.order_id) if spec.checkpoint else None
        if latest is not None:
            obj = DataObjects(s).get(latest.object_id)
            grant, token = grants.issue(lease.id, obj.id, who.member_id, now, expires)
            events.record(DataEventKind.GRANT, obj, who.member_id, now, lease.id, grant.id)
            items.append(
                {
                    "checkpoint": True,
                    "object": obj.id,
                    "sha256": obj.sha256,
                    "size": obj.size,
                    "path": CHECKPOINT_DIR,
                    "grant_id": grant.id,
                    "token": token,
                    "expires_at": grant.expires_at,
                    "url": f"/api/v1/data/{obj.id}/content",
                    "from_lease": latest.lease_id,
                }
            )
        return 201, {"lease_id": lease.id, "items": items}

    return run_write(ctx, who, key, fingerprint("POST", request.url.path, None), work)


def grant_download(
    s: Session, ctx: ApiContext, who: Principal, object_id: str, token: str, now: int
) -> tuple[DataObject, str, str]:
    """Check a download grant: its object, holder, expiry and lease; ``(object, grant id,
    lease id)``. Every failure is the same 403, so a token reveals nothing."""
    grant = Grants(s).by_token(token)
    refused = Forbidden(
        "the download grant is unknown, expired, for another object or member, or its lease "
        "no longer runs",
        field=f"header.{GRANT_HEADER}",
        fix="ask POST /leases/{lease_id}/grants again while the lease runs",
    )
    if grant is None or grant.object_id != object_id or grant.provider_id != who.member_id:
        raise refused
    if now >= grant.expires_at:
        raise refused
    lease = Clearings(s).lease(grant.lease_id)
    if not lease_runs(ctx, lease, now):
        raise refused
    return DataObjects(s).get(object_id), grant.id, lease.id


@router.post("/leases/{lease_id}/outputs", status_code=201, responses=SAME_OBJECT)
async def put_output(
    lease_id: str,
    request: Request,
    who: Provider,
    ctx: Ctx,
    name: Annotated[str, Query(pattern=NAME_PATTERN, description="One of the output paths")],
    sha256: Sha256 | None = None,
    key: IdemKey = None,
) -> JSONResponse:
    """Upload one output of a lease's job: a data object of the order's buyer."""
    return await _upload(request, who, ctx, lease_id, name, sha256, key, DataEventKind.OUTPUT)


@router.post("/leases/{lease_id}/checkpoint", status_code=201, responses=SAME_OBJECT)
async def put_checkpoint(
    lease_id: str,
    request: Request,
    who: Provider,
    ctx: Ctx,
    sha256: Sha256 | None = None,
    key: IdemKey = None,
) -> JSONResponse:
    """Upload the checkpoint a lease's job wrote (a tar of ``$SUANGU_CHECKPOINT_DIR``): a
    data object of the buyer, and the order's latest checkpoint, which the order's next lease
    (at whichever provider) restores through its grants."""
    name = f"checkpoint/{lease_id}.tar"
    return await _upload(request, who, ctx, lease_id, name, sha256, key, DataEventKind.CHECKPOINT)


async def _upload(
    request: Request,
    who: Principal,
    ctx: ApiContext,
    lease_id: str,
    name: str,
    sha256: str | None,
    key: str | None,
    kind: DataEventKind,
) -> JSONResponse:
    now = ctx.now()
    with ctx.db.session_scope(write=False) as s:
        lease = _held(s, who, lease_id)
        spec = _workload(s, request, ctx, lease)
        # The run a lease belongs to goes on in the order's later leases at this provider.
        run = Clearings(s).leases(order_id=lease.allocation.order_id, provider_id=who.member_id)
    grace = ctx.settings.lease_grace_s
    what = "outputs" if kind is DataEventKind.OUTPUT else "checkpoints"
    if not any(
        x.state in (*_RUNS, LeaseState.COMPLETED)
        and x.allocation.slot >= lease.allocation.slot
        and now < _slot(ctx, x)[1] + grace
        for x in run
    ):
        raise InvalidState(
            f"lease {lease.id!r} is {lease.state}: {what} are taken until the end of its "
            f"run's last slot plus {grace} s, before its leases fail or settle",
            field="path.lease_id",
            fix=f"upload {what} before the run's final reading",
        )
    if kind is DataEventKind.OUTPUT and name not in spec.outputs:
        raise ValidationError(
            f"{name!r} is not an output of the workload ({', '.join(spec.outputs) or 'none'})",
            field="query.name",
            fix="upload only the paths the order lists under outputs",
        )
    if kind is DataEventKind.CHECKPOINT and not spec.checkpoint:
        raise ValidationError(
            f"order {lease.allocation.order_id!r} does not checkpoint",
            field="path.lease_id",
            fix="only workloads with checkpoint: true take checkpoints",
        )
    store = objects(request, ctx)
    data, sha, digest = await read_upload(request, store, name, sha256)

    def record(s: Session, obj: DataObject, new: bool) -> None:
        DataEvents(s).record(kind, obj, who.member_id, now, lease.id)
        if kind is DataEventKind.CHECKPOINT:
            row = s.get(OrderCheckpointRow, lease.allocation.order_id)
            if row is None:
                s.add(
                    OrderCheckpointRow(
                        order_id=lease.allocation.order_id,
                        object_id=obj.id,
                        lease_id=lease.id,
                        provider_id=who.member_id,
                        at=now,
                    )
                )
            elif row.at <= now:
                row.object_id, row.lease_id, row.provider_id, row.at = (
                    obj.id,
                    lease.id,
                    who.member_id,
                    now,
                )
            s.flush()

    buyer = lease.allocation.buyer_id
    return await run_in_threadpool(
        store_object, ctx, store, who, key, digest, buyer, name, data, sha, lease.id, record
    )


def event_out(e: DataEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": e.at,
        "kind": str(e.kind),
        "object_id": e.object_id,
        "owner_id": e.owner_id,
        "member_id": e.member_id,
        "lease_id": e.lease_id,
        "grant_id": e.grant_id,
    }


@router.get("/data/events")
def list_events(
    request: Request,
    who: Member,
    ctx: Ctx,
    lease_id: str | None = None,
    object_id: str | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Grants, downloads and outputs, oldest first: a buyer's objects', a provider's own
    actions, everything for operators and auditors."""
    mine: dict[str, str] = {}
    if who.role is Role.BUYER:
        mine = {"owner_id": who.member_id}
    elif who.role is Role.PROVIDER:
        mine = {"member_id": who.member_id}
    with ctx.db.session_scope(write=False) as s:
        try:
            pg = DataEvents(s).page(
                lease_id=lease_id, object_id=object_id, limit=limit, cursor=cursor, **mine
            )
        except ValidationError as err:
            raise ValidationError(err.message, field=f"query.{err.field}", fix=err.fix) from None
    return pagination.body(request, [event_out(e) for e in pg.items], pg.next_cursor)


# -- how a lease's work ended ---------------------------------------------------------------


class ReportIn(BaseModel):
    """How the work of a lease ended (its provider's agent)."""

    model_config = ConfigDict(extra="forbid")

    outcome: RunOutcome
    #: The payload's exit status (``null``: it did not run, or did not end by itself).
    exit_code: int | None = Field(default=None, ge=-255, le=255)
    #: Why it failed (empty when done); at most 2,000 characters.
    reason: str = Field(default="", max_length=2000)
    #: The data objects its outputs became.
    outputs: list[Annotated[str, Field(pattern=r"^do_[0-9a-f]{24}$")]] = Field(
        default_factory=list, max_length=1000
    )


def report_out(row: LeaseReportRow) -> dict[str, Any]:
    return {
        "lease_id": row.lease_id,
        "provider_id": row.provider_id,
        "outcome": row.outcome,
        "exit_code": row.exit_code,
        "reason": row.reason,
        "outputs": list(row.outputs),
        "reported_at": row.reported_at,
    }


@router.post("/leases/{lease_id}/report", status_code=201)
def post_report(
    lease_id: str,
    body: ReportIn,
    request: Request,
    who: Provider,
    ctx: Ctx,
    key: IdemKey = None,
) -> JSONResponse:
    """Report how a lease's work ended: once (the same report again changes nothing; another
    one is a 409). A failed payload's lease is then failed with ``POST /leases/{id}/fail``."""
    now = ctx.now()

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        lease = _held(s, who, lease_id)
        row = s.get(LeaseReportRow, lease.id)
        if row is not None:
            same = (row.outcome, row.exit_code, row.reason, list(row.outputs)) == (
                str(body.outcome),
                body.exit_code,
                body.reason,
                body.outputs,
            )
            if not same:
                raise Conflict(
                    f"lease {lease.id!r} has another report",
                    field="body",
                    fix="a lease's work ends once: resend the first report exactly",
                )
            return 200, report_out(row)
        if body.outputs:
            found = DataObjects(s).many(body.outputs)
            for n, oid in enumerate(body.outputs):
                obj = found.get(oid)
                if obj is None or obj.lease_id != lease.id:
                    raise ValidationError(
                        f"{oid!r} is not an output uploaded for this lease",
                        field=f"body.outputs[{n}]",
                        fix="list the ids POST /leases/{lease_id}/outputs answered",
                    )
        row = LeaseReportRow(
            lease_id=lease.id,
            provider_id=who.member_id,
            outcome=str(body.outcome),
            exit_code=body.exit_code,
            reason=body.reason,
            outputs=body.outputs,
            reported_at=now,
        )
        s.add(row)
        s.flush()
        return 201, report_out(row)

    return run_write(ctx, who, key, fingerprint("POST", request.url.path, body), work)


@router.get("/leases/{lease_id}/report")
def get_report(lease_id: str, who: Member, ctx: Ctx) -> dict[str, Any]:
    """How a lease's work ended: its buyer, its provider, operators and auditors."""
    with ctx.db.session_scope(write=False) as s:
        try:
            lease = Clearings(s).lease(lease_id)
        except NotFound:
            lease = None
        mine = lease is not None and (
            who.sees_all
            or (who.role is Role.BUYER and lease.allocation.buyer_id == who.member_id)
            or (who.role is Role.PROVIDER and lease.provider_id == who.member_id)
        )
        row = s.get(LeaseReportRow, lease_id) if mine else None
        if row is None:
            raise NotFound(
                f"no report of lease {lease_id!r}",
                field="path.lease_id",
                fix="its agent reports when the work ends; list your leases",
            )
        return report_out(row)
