"""Providers' delivery records, for buyers to choose by: ``GET /providers/{id}/record`` and
``GET /providers/records`` (every provider, filtered by failure rate). A record counts the
provider's leases, those that failed (the provider or its silent agent failed them), and the
GPU-hours the failed ones fell short of what they were sold for."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from suangu.api import schemas
from suangu.api.auth import Anyone
from suangu.api.routes._common import Ctx
from suangu.store.errors import NotFound
from suangu.store.models import MemberRow, Role
from suangu.store.repositories import DeliveryRecord, delivery_records

router = APIRouter(tags=["providers"])


def record_out(r: DeliveryRecord) -> dict[str, Any]:
    return {
        "provider_id": r.provider_id,
        "leases": r.leases,
        "failed": r.failed,
        "failure_rate": round(r.failure_rate, 6),
        "gpu_hours_sold": round(r.gpu_seconds_sold / 3600, 6),
        "gpu_hours_short": round(r.gpu_seconds_short / 3600, 6),
    }


@router.get("/providers/{provider_id}/record", response_model=schemas.ProviderRecordOut)
def provider_record(provider_id: str, who: Anyone, ctx: Ctx) -> dict[str, Any]:
    """One provider's delivery record (every signed-in member may read it)."""
    with ctx.db.session_scope(write=False) as s:
        row = s.get(MemberRow, provider_id)
        if row is None or row.role != str(Role.PROVIDER):
            raise NotFound(
                f"no provider {provider_id!r}",
                field="path.provider_id",
                fix="GET /providers/records lists the providers",
            )
        (record,) = delivery_records(s, [provider_id])
    return record_out(record)


@router.get("/providers/records", response_model=schemas.ProviderRecordsOut)
def provider_records(
    who: Anyone,
    ctx: Ctx,
    max_failure_rate: Annotated[float | None, Query(ge=0, le=1)] = None,
    min_leases: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> dict[str, Any]:
    """Every provider's delivery record, by id; ``max_failure_rate`` and ``min_leases`` keep
    the providers with at most that share of failed leases and at least that many leases."""
    with ctx.db.session_scope(write=False) as s:
        ids = s.scalars(select(MemberRow.id).where(MemberRow.role == str(Role.PROVIDER)))
        records = delivery_records(s, list(ids))
    keep = [
        r
        for r in records
        if r.leases >= min_leases
        and (max_failure_rate is None or r.failure_rate <= max_failure_rate + 1e-12)
    ]
    return {"items": [record_out(r) for r in keep]}
