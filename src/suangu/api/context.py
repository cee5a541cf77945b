"""What every request handler gets: the database, the ledger, the clock and the settings."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from suangu.api.clock import Clock
from suangu.api.settings import ApiSettings
from suangu.store.db import Database
from suangu.store.ledger import SqlLedger


@dataclass(frozen=True)
class ApiContext:
    db: Database
    ledger: SqlLedger
    clock: Clock
    settings: ApiSettings

    def now(self) -> int:
        return self.clock.now()

    def current_slot(self) -> int:
        return max(0, self.settings.grid.slot_at(self.clock.now()))


def get_ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx
