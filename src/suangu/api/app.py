"""The FastAPI application: ``create_app(db, clock, settings)``.

Serve it with ``uvicorn --factory suangu.api.app:app_from_env`` (reads
``SUANGU_DATABASE_URL``, migrates, uses the wall clock). OpenAPI at ``/docs`` and
``/openapi.json``; every route under ``/api/v1``.
"""

from __future__ import annotations

from fastapi import FastAPI

from suangu.api import errors
from suangu.api.clock import Clock, WallClock
from suangu.api.context import ApiContext
from suangu.api.routes import ROUTERS
from suangu.api.settings import ApiSettings
from suangu.core import billing
from suangu.store.db import Database, open_database
from suangu.store.ledger import SqlLedger

PREFIX = "/api/v1"


def create_app(db: Database, clock: Clock, settings: ApiSettings | None = None) -> FastAPI:
    """The API over a migrated database, reading the time only from ``clock``."""
    settings = settings or ApiSettings()
    ledger = SqlLedger(db, clamp_clock=True)
    ledger.create_accounts(billing.new_exchange_accounts(), clock.now())
    app = FastAPI(
        title="Suangu exchange API",
        version="1",
        description="An open exchange for green GPU compute. Bearer API keys; errors are "
        "RFC 9457 problem details naming the `field` at fault and a `fix`.",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.ctx = ApiContext(db, ledger, clock, settings)
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router, prefix=PREFIX)
    return app


def app_from_env() -> FastAPI:  # pragma: no cover - for uvicorn --factory
    return create_app(open_database(), WallClock())
