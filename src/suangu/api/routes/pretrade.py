"""Pre-trade market information (:mod:`suangu.api.pretrade`): ``GET /market/quote`` (a buyer's
indicative quote), ``GET /market/depth`` (the supply curve, for members) and
``GET /market/index`` (the daily price index, public)."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from suangu.api import pretrade
from suangu.api.auth import Anyone, Buyer
from suangu.api.errors import MalformedBody
from suangu.api.routes._common import Ctx
from suangu.core.errors import ValidationError
from suangu.store.models import PoolRow

router = APIRouter(prefix="/market", tags=["market"])


@router.get("/quote", response_model=pretrade.QuoteOut)
async def get_quote(request: Request, who: Buyer, ctx: Ctx) -> dict[str, Any]:
    """What this order would get and pay if the market cleared now: **indicative**.

    The order spec is a JSON body with the fields of ``POST /orders`` (``id`` and
    ``release_slot`` optional), or, without a body, the same fields as query parameters
    (``?kind=batch&gpus=8&gpu_hours=64&deadline_slot=130&limit_fen=1500&gpu_classes=H100``;
    list fields repeat or take commas). A what-if clearing of the next clearing's horizon
    over the current open book plus this order, under ``quote_time_limit_s``; nothing is
    stored or held. Busy (more quotes running than ``quote_concurrency``): 503.
    """
    raw = await request.body()
    data: dict[str, Any] | None = None
    where = "query"
    if raw.strip():
        where = "body"
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise MalformedBody("is not JSON", field="body", fix="send a JSON object") from None
        if not isinstance(parsed, dict):
            raise MalformedBody("is not a JSON object", field="body", fix="send an object")
        data = parsed
    spec = pretrade.quote_spec(data, request.query_params.multi_items(), where)
    return await run_in_threadpool(
        pretrade.quote,
        ctx.db,
        ctx.settings,
        spec,
        who.member_id,
        ctx.now(),
        request.app.state.market_hook,
        where,
    )


@router.get("/depth", response_model=pretrade.DepthPageOut)
def get_depth(
    request: Request,
    who: Anyone,
    ctx: Ctx,
    pool: str | None = None,
    slot: Annotated[int | None, Query(ge=0, description="First slot (default: now)")] = None,
    n_slots: Annotated[int, Query(ge=1, le=pretrade.MAX_DEPTH_SLOTS)] = 1,
) -> dict[str, Any]:
    """The supply curve: per pool and slot, the GPUs still offered at each reserve price
    (offers less what clearings sold; reserves as the clearing uses them), cheapest first,
    summed over offers (a level never names its providers). Any member's key."""
    first = ctx.current_slot() if slot is None else slot
    with ctx.db.session_scope(write=False) as s:
        if pool is not None and s.get(PoolRow, pool) is None:
            raise ValidationError(f"no pool {pool!r}", field="query.pool", fix="see GET /pools")
        items = pretrade.depth(
            s,
            ctx.settings,
            ctx.now(),
            pool,
            first,
            first + n_slots,
            request.app.state.market_hook,
        )
    return {"items": items}


@router.get("/index", response_model=pretrade.IndexOut)
def get_index(
    ctx: Ctx,
    site: str | None = None,
    gpu_class: str | None = None,
    from_: Annotated[date | None, Query(alias="from", description="First day (UTC)")] = None,
    to: Annotated[date | None, Query(description="Last day, inclusive (default: today)")] = None,
) -> dict[str, Any]:
    """The daily price index per site and GPU class, with history: the volume-weighted mean
    of the published clearing prices of each day's GPU-hours sold (the rule is in
    ``rule``). Default span: the last 30 days; at most a year per request. No key needed."""
    first, last = pretrade.index_span(ctx.now(), from_, to)
    with ctx.db.session_scope(write=False) as s:
        if site is not None and not pretrade.known_site(s, site):
            raise ValidationError(f"no site {site!r}", field="query.site", fix="see GET /sites")
        items = pretrade.price_index(s, ctx.settings, first, last, site, gpu_class)
    return {
        "rule": pretrade.INDEX_RULE,
        "from_date": first.isoformat(),
        "to_date": last.isoformat(),
        "items": items,
    }
