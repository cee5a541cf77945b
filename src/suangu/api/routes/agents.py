"""Providers' agents report that they are alive: ``POST /agents/heartbeat``. The clearing loop
(:mod:`suangu.api.scheduler`) fails the scheduled and running leases of a provider whose agent
has been silent longer than ``agent_grace_s`` (their undelivered work goes back into the next
clearing) and leaves its offers out of the clearings until it is heard again. Providers that
never sent a heartbeat are not watched."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from suangu.api import schemas
from suangu.api.auth import Provider
from suangu.api.idempotency import fingerprint, run_write
from suangu.api.routes._common import Ctx, IdemKey
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
    """The provider's agent is alive. Agents send one every tick; a provider silent for more
    than ``grace_s`` seconds has its scheduled and running leases failed by the clearing loop.
    Only the first heartbeat, and the first after a silence, are audited (``new``)."""
    now = ctx.now()
    data = body or schemas.HeartbeatIn()
    grace = ctx.settings.agent_grace_s

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        new, since = Heartbeats(s).beat(who.member_id, data.instance, now, grace)
        return 200, {
            "provider_id": who.member_id,
            "instance": data.instance,
            "last_seen": now,
            "since": since,
            "grace_s": grace,
            "new": new,
        }

    return run_write(ctx, who, key, fingerprint("POST", request.url.path, data), work)
