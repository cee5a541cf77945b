"""Energy declarations of sites, buyers' carbon statements, providers' certificates.

A provider declares the energy of its own sites (an operator of any site): capacities and
PUE, or an hourly green-share series (JSON, or CSV at ``/sites/{site_id}/energy/series``);
every signed-in member reads a site's declaration and modelled green share. A buyer reads its
own carbon statement, a provider its own certificates; operators and auditors read all.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from suangu.api import green
from suangu.api.auth import (
    Anyone,
    BuyerOrReader,
    Principal,
    ProviderOrOperator,
    ProviderOrReader,
)
from suangu.api.idempotency import fingerprint, run_write
from suangu.api.routes._common import Ctx, IdemKey
from suangu.store.errors import NotFound
from suangu.store.models import Role, SiteEnergyRow, SiteRow
from suangu.store.repositories import Capacity

router = APIRouter(tags=["green"])

When = Annotated[
    str | None,
    Query(max_length=40, description="Unix seconds, or an ISO 8601 date or time (UTC)"),
]


def _own_site(s: Session, who: Principal, site_id: str) -> SiteRow:
    row = s.get(SiteRow, site_id)
    if row is None or (who.role is Role.PROVIDER and row.provider_id != who.member_id):
        raise NotFound(f"no site {site_id!r} of yours", field="path.site_id", fix="list your sites")
    return row


def _declare(
    request: Request, who: Principal, ctx: Ctx, key: str | None, site_id: str, body: Any
) -> JSONResponse:
    kind, stored = green.declaration(body)
    now = ctx.now()

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        _own_site(s, who, site_id)
        return 200, green.put_declaration(s, site_id, kind, stored, who.member_id, now)

    return run_write(ctx, who, key, fingerprint("PUT", request.url.path, body), work)


@router.put("/sites/{site_id}/energy")
def declare_energy(
    site_id: str,
    body: green.EnergyIn,
    request: Request,
    who: ProviderOrOperator,
    ctx: Ctx,
    key: IdemKey = None,
) -> JSONResponse:
    """Declare a site's energy: ``capacities`` (IT load, wind, solar, storage; modelled hour
    by hour like a packaged site) or ``series`` (hourly green shares); ``pue`` optional.
    Replaces the site's earlier declaration; a bad one is refused whole (422)."""
    return _declare(request, who, ctx, key, site_id, body)


@router.put(
    "/sites/{site_id}/energy/series",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
async def upload_series(
    site_id: str,
    request: Request,
    who: ProviderOrOperator,
    ctx: Ctx,
    pue: Annotated[float | None, Query(ge=1.0, le=3.0)] = None,
    key: IdemKey = None,
) -> JSONResponse:
    """Upload a site's hourly green-share series as CSV: a header ``hour,green_share``, then
    one line per hour (``hour``: Unix seconds or ISO 8601; ``green_share`` 0..1). Errors name
    the line and column; nothing is stored unless every line is good."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise green.GreenError(
            "is not UTF-8 text", field="body", fix="upload the CSV as UTF-8"
        ) from None
    body = green.series_from_csv(text, pue)
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_declare, request, who, ctx, key, site_id, body)


@router.get("/sites/{site_id}/energy")
def get_energy(
    site_id: str,
    request: Request,
    who: Anyone,
    ctx: Ctx,
    first_slot: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    n_slots: Annotated[int, Query(ge=1, le=168)] = 24,
) -> dict[str, Any]:
    """A site's energy declaration (``null`` without one) and its modelled green share and
    PUE in ``n_slots`` slots from ``first_slot`` (default: the current slot), with where they
    come from: ``capacities``, ``series`` (declared), ``packaged`` or ``none`` (grid only)."""
    model = green.energy_model(request)
    grid = ctx.settings.grid
    first = ctx.current_slot() if first_slot is None else first_slot
    if grid.slot_start(first + n_slots) > green.MAX_UNIX:
        raise green.GreenError(
            f"slot {first + n_slots} is after 2100", field="query.first_slot", fix="an earlier slot"
        )
    with ctx.db.session_scope(write=False) as s:
        if s.get(SiteRow, site_id) is None:
            raise NotFound(f"no site {site_id!r}", field="path.site_id", fix="list the sites")
        site = next(x for x in Capacity(s).sites() if x.id == site_id)
        row = s.get(SiteEnergyRow, site_id)
        declared = None if row is None else green.declaration_out(row)
        slots = []
        basis = "none"
        for t in range(first, first + n_slots):
            e, basis = model.slot_energy(site, row, grid, t)
            slots.append(
                {
                    "slot": t,
                    "green_share": round(e.weighted_share, 6),
                    "pue": round(sum(e.pue) / len(e.pue), 4),
                }
            )
    return {
        "site_id": site_id,
        "declaration": declared,
        "basis": basis,
        "grid_factor": e.grid_factor.label,
        "slots": slots,
    }


@router.get("/buyers/{buyer_id}/carbon-statement")
def buyer_carbon_statement(
    buyer_id: str,
    who: BuyerOrReader,
    ctx: Ctx,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: When = None,
) -> dict[str, Any]:
    """A buyer's energy and CO2 over ``[from, to)`` (leases by the start of their slot;
    default: from the market's first slot to now): energy metered (measured and nominal),
    location-based CO2 (grid import x grid-average factor), market-based CO2 (energy not
    covered by retired certificates x residual factor), certificates retired; per site, per
    month and per lease. The same figures as the ``kWh-green`` and ``gCO2`` ledgers."""
    if not who.may_see(buyer_id):
        raise NotFound(f"no buyer {buyer_id!r}", field="path.buyer_id", fix="ask for your own")
    start = green.parse_when(from_, "query.from", ctx.settings.grid_epoch)
    end = green.parse_when(to, "query.to", ctx.now() + 1)
    with ctx.db.session_scope(write=False) as s:
        return green.carbon_statement(s, buyer_id, start, end)


@router.get("/providers/{provider_id}/certificates")
def provider_certificates(
    provider_id: str,
    who: ProviderOrReader,
    ctx: Ctx,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: When = None,
) -> dict[str, Any]:
    """Green certificates issued to a provider over ``[from, to)`` for its metered leases,
    per site and month, with the energy metered (measured and nominal)."""
    if not who.may_see(provider_id):
        raise NotFound(
            f"no provider {provider_id!r}", field="path.provider_id", fix="ask for your own"
        )
    start = green.parse_when(from_, "query.from", ctx.settings.grid_epoch)
    end = green.parse_when(to, "query.to", ctx.now() + 1)
    with ctx.db.session_scope(write=False) as s:
        return green.certificate_statement(s, provider_id, start, end)
