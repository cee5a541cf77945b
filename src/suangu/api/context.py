"""What every request handler gets: the database, the ledger, the clock and the settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from suangu.api.clock import Clock
from suangu.api.keycache import KeyCache
from suangu.api.settings import ApiSettings
from suangu.store.db import Database
from suangu.store.ledger import SqlLedger


@dataclass(frozen=True)
class ApiContext:
    db: Database
    ledger: SqlLedger
    clock: Clock
    settings: ApiSettings
    #: Verified API keys of this app (:mod:`suangu.api.auth`); values are ``Principal``.
    keys: KeyCache[Any] = field(default_factory=KeyCache, compare=False, repr=False)

    def now(self) -> int:
        return self.clock.now()

    def current_slot(self) -> int:
        return max(0, self.settings.grid.slot_at(self.clock.now()))


async def get_ctx(request: Request) -> ApiContext:
    """The app's context (a coroutine: FastAPI calls it on the event loop, no thread hop)."""
    ctx: ApiContext = request.app.state.ctx
    return ctx
