"""The FastAPI application: ``create_app(db, clock, settings)``.

Serve it with ``uvicorn --factory suangu.api.app:app_from_env`` (reads
``SUANGU_DATABASE_URL``, migrates, uses the wall clock). OpenAPI at ``/docs`` and
``/openapi.json``; every route under ``/api/v1``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from suangu.api import carbon_price, docs, errors, observe
from suangu.api.clock import Clock, WallClock
from suangu.api.context import ApiContext
from suangu.api.green import DeclaredEnergy, SiteEnergyModel
from suangu.api.limits import BodyLimit, RateLimit
from suangu.api.market_energy import MarketEnergy
from suangu.api.routes import ROUTERS
from suangu.api.scheduler import ClearingLoop
from suangu.api.services import MarketHook
from suangu.api.settings import ApiSettings
from suangu.core import billing
from suangu.store.db import Database, open_database
from suangu.store.ledger import SqlLedger
from suangu.store.objects import ObjectStore

PREFIX = "/api/v1"
#: ``0`` turns the clearing loop of :func:`app_from_env` off (``suangu serve --no-clearing-loop``).
CLEARING_LOOP_ENV = "SUANGU_CLEARING_LOOP"
#: Firm-order protection's look-back in hours for :func:`app_from_env`
#: (``suangu serve --protect-firm-hours``; unset or 0: off).
PROTECT_FIRM_ENV = "SUANGU_PROTECT_FIRM_HOURS"


def create_app(
    db: Database,
    clock: Clock,
    settings: ApiSettings | None = None,
    *,
    energy: MarketHook | bool = True,
    dashboard: bool = True,
    private_dashboard: bool = False,
    objects: ObjectStore | None = None,
) -> FastAPI:
    """The API over a migrated database, reading the time only from ``clock``.

    ``app.state.clearing_loop`` is its :class:`ClearingLoop`; the app's lifespan starts it
    when ``settings.clearing_loop`` is set (tests may call its ``tick()`` themselves).

    ``energy``: the hook applied to every market before clearing it (``POST /clearings`` and
    the loop); ``True``: :class:`~suangu.api.market_energy.MarketEnergy` with its defaults
    (modelled green shares for the sites with packaged energy data, no carbon price), and
    the providers' energy declarations on top (:class:`~suangu.api.green.DeclaredEnergy`);
    ``False``: none (certificates are then booked for declared sites only).
    ``dashboard`` serves the dashboard (:mod:`suangu.web`) at ``/``;
    ``private_dashboard`` adds the members' balances and per-member pages to it (the demo
    on loopback; a served exchange shows public market data only). ``objects``: the data
    objects' store (default: :func:`suangu.store.objects.store_from_env`, on first use).
    """
    settings = settings or ApiSettings()
    ledger = SqlLedger(db, clamp_clock=True)
    ledger.create_accounts(billing.new_exchange_accounts(), clock.now())
    if settings.carbon_price_yuan_per_t is not None:
        carbon_price.set_at_start(db, settings.carbon_price_yuan_per_t, clock.now())
    base: MarketHook | None
    if energy is True:
        base = MarketEnergy()
    elif energy is False:
        base = None
    else:
        base = energy
    # Providers' energy declarations on top of the packaged model (suangu.api.green).
    model = SiteEnergyModel(base if isinstance(base, MarketEnergy) else None)
    adjust: MarketHook | None = None if energy is False else DeclaredEnergy(db, model, base)
    loop = ClearingLoop(db, ledger, clock, settings, adjust=adjust, energy_model=model)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.clearing_loop:
            loop.start()
        try:
            yield
        finally:
            loop.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="Suangu exchange API",
        version="1",
        description="An open exchange for green GPU compute. Bearer API keys; errors are "
        "RFC 9457 problem details naming the `field` at fault and a `fix`.",
        docs_url=None,  # served offline by suangu.api.docs
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.ctx = ApiContext(db, ledger, clock, settings)
    app.state.clearing_loop = loop
    app.state.market_hook = adjust
    app.state.energy_model = model
    if objects is not None:
        app.state.objects = objects
    errors.install(app)
    docs.install(app)
    for router in ROUTERS:
        app.include_router(router, prefix=PREFIX)
    if dashboard:
        from suangu.web import mount_dashboard

        mount_dashboard(app, private=private_dashboard)
    errors.document_problems(app)
    # Outermost last: the rate limit, then the body size, then the app (auth, routes).
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.rate_limit:
        app.add_middleware(
            RateLimit,
            key_rate=settings.key_rate_per_s,
            key_burst=settings.key_burst,
            address_rate=settings.address_rate_per_s,
            address_burst=settings.address_burst,
            failure_rate=settings.auth_failures_per_s,
            failure_burst=settings.auth_failure_burst,
        )
    observe.install(app)  # request ids, logs, metrics: the outermost middleware
    return app


def app_from_env() -> FastAPI:  # pragma: no cover - for uvicorn --factory
    """The served app: ``SUANGU_DATABASE_URL``, the wall clock, the clearing loop on unless
    ``SUANGU_CLEARING_LOOP=0``."""
    loop_on = os.environ.get(CLEARING_LOOP_ENV, "1").strip().lower() not in ("0", "false", "no")
    protect = int(os.environ.get(PROTECT_FIRM_ENV, "0") or 0)
    settings = ApiSettings(clearing_loop=loop_on, protect_firm_hours=protect)
    return create_app(open_database(), WallClock(), settings)
