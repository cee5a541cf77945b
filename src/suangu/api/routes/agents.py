"""Providers' agents report that they are alive: ``POST /agents/heartbeat``, each agent under
its own name with the pools it serves (a provider may run one per cluster or site). The
clearing loop (:mod:`suangu.api.scheduler`) fails the scheduled and running leases of the
pools that only agents silent longer than ``agent_grace_s`` serve (their undelivered work goes
back into the next clearing) and leaves those pools' offers out of the clearings until an
agent serving them is heard again. Providers that never sent a heartbeat are not watched."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from suangu.api import schemas
from suangu.api.auth import Provider
from suangu.api.idempotency import fingerprint, run_write
from suangu.api.routes._common import Ctx, IdemKey
from suangu.api.services import pool_provider
from suangu.core.errors import ValidationError
from suangu.store.repositories import Heartbeats

router = APIRouter(tags=["agents"])


@router.post("/agents/heartbeat", response_model=schemas.HeartbeatOut)
def heartbeat(
    request: Request,
    who: Provider,
    ctx: Ctx,
    body: schemas.HeartbeatIn | None = None,
    key: IdemKey = None,
) -> JSONResponse:
    """The provider's agent ``agent`` is alive and serves ``pools`` (absent: all of the
    provider's). Agents send one every tick; once an agent is silent for more than
    ``grace_s`` seconds, the clearing loop fails the scheduled and running leases of the pools
    that no live agent of the provider serves. Only the first heartbeat, and the first after a
    silence, are audited (``new``)."""
    now = ctx.now()
    data = body or schemas.HeartbeatIn()
    grace = ctx.settings.agent_grace_s

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        for i, pool_id in enumerate(data.pools or []):
            found, owner = pool_provider(s, pool_id)
            if not found or owner != who.member_id:
                raise ValidationError(
                    f"pool {pool_id!r} is not one of yours",
                    field=f"body.pools.{i}",
                    fix="name pools of your own sites (GET /pools), or leave pools out",
                )
        new, since = Heartbeats(s).beat(
            who.member_id, data.instance, now, grace, data.agent, data.pools
        )
        return 200, {
            "provider_id": who.member_id,
            "instance": data.instance,
            "agent": data.agent,
            "pools": None if data.pools is None else sorted(set(data.pools)),
            "last_seen": now,
            "since": since,
            "grace_s": grace,
            "new": new,
        }

    return run_write(ctx, who, key, fingerprint("POST", request.url.path, data), work)
