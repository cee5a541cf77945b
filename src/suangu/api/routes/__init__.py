"""The API's routers, one module per area; :data:`ROUTERS` lists them for the app."""

from __future__ import annotations

from fastapi import APIRouter

from suangu.api.routes import (
    agents,
    audit,
    capacity,
    clearings,
    data,
    grants,
    green,
    leases,
    ledger,
    logs,
    market,
    members,
    network,
    orders,
    pretrade,
    providers,
    resales,
)

ROUTERS: tuple[APIRouter, ...] = (
    members.router,
    capacity.router,
    orders.router,
    clearings.router,
    market.router,
    pretrade.router,
    network.router,
    leases.router,
    ledger.router,
    audit.router,
    grants.router,
    data.router,
    logs.router,
    agents.router,
    providers.router,
    green.router,
    resales.router,
)
