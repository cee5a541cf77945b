"""Sites, pools and offers. Sites and pools are market data every member sees; offers carry
reserve prices and are sealed: a provider sees its own, operators and auditors all."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from suangu.api import ids, pagination, schemas
from suangu.api.auth import Anyone, Principal, Provider, ProviderOrOperator, ProviderOrReader
from suangu.api.green import auto_reserve, energy_model
from suangu.api.idempotency import fingerprint, run_write
from suangu.api.routes._common import Ctx, Cursor, IdemKey, Limit
from suangu.api.services import offer_out, pool_out, pool_provider, site_out, site_provider
from suangu.core.errors import ValidationError
from suangu.core.types import Offer, Pool, Site
from suangu.store.errors import NotFound
from suangu.store.models import OfferRow, OfferStatus, PoolRow, Role, SiteRow
from suangu.store.repositories import Capacity, OfferRecord, offer_record

router = APIRouter(tags=["capacity"])
BODY_ID = {"id": "body.id"}


def _core(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """A core constructor, its errors named after the request body."""
    try:
        return fn(*args, **kwargs)
    except ValidationError as err:
        raise err.prefixed("body") from None


# -- sites ------------------------------------------------------------------------------------


@router.post("/sites", status_code=201, response_model=schemas.SiteOut)
def create_site(
    body: schemas.SiteIn, request: Request, who: ProviderOrOperator, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """A data centre. A provider registers its own; an operator names its provider."""
    provider = body.provider_id
    if who.role is Role.PROVIDER:
        if provider not in (None, who.member_id):
            raise ValidationError(
                "a provider registers its own sites only",
                field="body.provider_id",
                fix="leave it out",
            )
        provider = who.member_id
    site = _core(
        Site,
        body.id,
        body.name,
        body.province,
        body.region,
        body.lat,
        body.lon,
        body.pue,
        body.latency_ms,
    )

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        try:
            Capacity(s).add_site(site, provider)
        except ValidationError as err:
            raise err.prefixed("body") from None
        except NotFound as err:
            raise NotFound(err.message, field="body.provider_id", fix=err.fix) from None
        row = s.get(SiteRow, site.id)
        assert row is not None
        return 201, site_out(row)

    return run_write(
        ctx, who, key, fingerprint("POST", request.url.path, body), work, rename=BODY_ID
    )


@router.get("/sites", response_model=schemas.PageOut[schemas.SiteOut])
def list_sites(
    request: Request, who: Anyone, ctx: Ctx, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    with ctx.db.session_scope(write=False) as s:
        rows, nxt = pagination.page_query(s, select(SiteRow).order_by(SiteRow.id), limit, cursor)
        return pagination.body(request, [site_out(r) for r in rows], nxt)


@router.get("/sites/{site_id}", response_model=schemas.SiteOut)
def get_site(site_id: str, who: Anyone, ctx: Ctx) -> dict[str, Any]:
    with ctx.db.session_scope(write=False) as s:
        row = s.get(SiteRow, site_id)
        if row is None:
            raise NotFound(f"no site {site_id!r}", field="path.site_id", fix="list the sites")
        return site_out(row)


# -- pools -------------------------------------------------------------------------------------


@router.post("/pools", status_code=201, response_model=schemas.PoolOut)
def create_pool(
    body: schemas.PoolIn, request: Request, who: ProviderOrOperator, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """The GPUs of one class at a site (a provider's own site)."""
    pool = _core(Pool, body.id, body.site_id, body.gpu_class)

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        owner = site_provider(s, body.site_id)
        if s.get(SiteRow, body.site_id) is None or (
            who.role is Role.PROVIDER and owner != who.member_id
        ):
            raise NotFound(
                f"no site {body.site_id!r} of yours", field="body.site_id", fix="list your sites"
            )
        Capacity(s).add_pool(pool)
        row = s.get(PoolRow, pool.id)
        assert row is not None
        return 201, pool_out(row)

    return run_write(
        ctx, who, key, fingerprint("POST", request.url.path, body), work, rename=BODY_ID
    )


@router.get("/pools", response_model=schemas.PageOut[schemas.PoolOut])
def list_pools(
    request: Request,
    who: Anyone,
    ctx: Ctx,
    site_id: str | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    q = select(PoolRow).order_by(PoolRow.id)
    if site_id is not None:
        q = q.where(PoolRow.site_id == site_id)
    with ctx.db.session_scope(write=False) as s:
        rows, nxt = pagination.page_query(s, q, limit, cursor)
        return pagination.body(request, [pool_out(r) for r in rows], nxt)


@router.get("/pools/{pool_id}", response_model=schemas.PoolOut)
def get_pool(pool_id: str, who: Anyone, ctx: Ctx) -> dict[str, Any]:
    with ctx.db.session_scope(write=False) as s:
        row = s.get(PoolRow, pool_id)
        if row is None:
            raise NotFound(f"no pool {pool_id!r}", field="path.pool_id", fix="list the pools")
        return pool_out(row)


# -- offers ------------------------------------------------------------------------------------


def _offer_of(s: Session, who: Principal, offer_id: str) -> OfferRecord:
    """The offer ``who`` names ``offer_id`` (a stored id, or the owner's plain name)."""
    offer_id = ids.offer_id(s, who, offer_id)
    row = s.get(OfferRow, offer_id)
    if row is None or not who.may_see(row.provider_id):
        raise NotFound(f"no offer {offer_id!r}", field="path.offer_id", fix="list your offers")
    return Capacity(s).offer(offer_id)


@router.post("/offers", status_code=201, response_model=schemas.OfferOut)
def create_offer(
    body: schemas.OfferIn, request: Request, who: Provider, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """Capacity of one of the provider's pools over consecutive slots, with reserves."""
    auto = body.reserve == "auto"
    if auto == (body.reserve_fen is not None):
        raise ValidationError(
            "give either reserve_fen or reserve: auto",
            field="body.reserve_fen",
            fix="reserve_fen: one reserve per slot (or one for all), or reserve: auto to price "
            "from the site's energy cost + margin_fen",
        )
    given = body.reserve_fen or [0]
    if len(given) not in (1, len(body.gpus)):
        raise ValidationError(
            f"has {len(given)} values for {len(body.gpus)} slots",
            field="body.reserve_fen",
            fix="give one reserve per slot, or a single one for all",
        )
    current = ctx.current_slot()
    if body.start_slot + len(body.gpus) <= current:
        raise ValidationError(
            f"the offer ends before the current slot {current}",
            field="body.start_slot",
            fix=f"offer slots from {current} on",
        )
    reserve = given * len(body.gpus) if len(given) == 1 else given
    offer = _core(
        Offer,
        ids.own(body.id, who.member_id),
        who.member_id,
        body.pool_id,
        body.start_slot,
        tuple(body.gpus),
        tuple(reserve),
    )
    now = ctx.now()
    model = energy_model(request)

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        exists, owner = pool_provider(s, body.pool_id)
        if not exists or owner != who.member_id:
            raise NotFound(
                f"no pool {body.pool_id!r} of yours", field="body.pool_id", fix="list your pools"
            )
        priced = offer
        if auto:
            priced = auto_reserve(
                s, model, offer, ctx.settings.grid, margin_fen=body.margin_fen, markup=body.markup
            )
        return 201, offer_out(Capacity(s).add_offer(priced, now))

    return run_write(
        ctx, who, key, fingerprint("POST", request.url.path, body), work, rename=BODY_ID
    )


@router.get("/offers", response_model=schemas.PageOut[schemas.OfferOut])
def list_offers(
    request: Request,
    who: ProviderOrReader,
    ctx: Ctx,
    status: OfferStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    q = select(OfferRow).order_by(OfferRow.id)
    if not who.sees_all:
        q = q.where(OfferRow.provider_id == who.member_id)
    if status is not None:
        q = q.where(OfferRow.status == str(status))
    with ctx.db.session_scope(write=False) as s:
        rows, nxt = pagination.page_query(s, q, limit, cursor)
        items = [offer_out(offer_record(r)) for r in rows]
    return pagination.body(request, items, nxt)


@router.get("/offers/{offer_id}", response_model=schemas.OfferOut)
def get_offer(offer_id: str, who: ProviderOrReader, ctx: Ctx) -> dict[str, Any]:
    with ctx.db.session_scope(write=False) as s:
        return offer_out(_offer_of(s, who, offer_id))


@router.post("/offers/{offer_id}/withdraw", response_model=schemas.OfferOut)
def withdraw_offer(
    offer_id: str, request: Request, who: Provider, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """Withdraw an open offer: later clearings no longer sell it (sold slots stay sold)."""

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        stored = _offer_of(s, who, offer_id).offer.id
        return 200, offer_out(Capacity(s).withdraw_offer(stored, who.member_id))

    return run_write(ctx, who, key, fingerprint("POST", request.url.path, None), work)
