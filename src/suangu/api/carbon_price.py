"""The operator's carbon price, stored as an exchange setting.

The operator sets it with ``PUT /market/carbon-price`` (audited) or ``suangu serve
--carbon-price``; anyone reads it at ``GET /market/carbon-price`` and on the dashboard. It is
kept in whole fen per tonne of CO2 (``exchange_settings.carbon_price_fen_per_t``, an integer
like every amount of money), so a restart keeps it. Every clearing reads it and raises the
reserves of the modelled sites' pool-slots by their carbon cost
(:class:`suangu.api.market_energy.MarketEnergy`,
:func:`suangu.core.energy.hooks.apply_carbon_price`); until an operator sets one, the
energy hook's own price applies (0 unless the app was built with another).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from suangu.api.audit import record_system
from suangu.api.market_energy import MarketEnergy
from suangu.core.errors import ValidationError
from suangu.store.db import Database
from suangu.store.models import ExchangeSettingRow

#: The setting's name in ``exchange_settings`` (fen per tonne of CO2).
SETTING = "carbon_price_fen_per_t"
#: The highest carbon price, yuan per tonne (as the energy hooks allow).
MAX_YUAN_PER_T = 100_000


def fen_per_t(yuan_per_t: float, field: str = "body.yuan_per_t") -> int:
    """``yuan_per_t`` in whole fen per tonne; a price finer than a fen per tonne is refused."""
    fen = round(yuan_per_t * 100)
    if not 0 <= yuan_per_t <= MAX_YUAN_PER_T or abs(fen - yuan_per_t * 100) > 1e-6:
        raise ValidationError(
            f"must be 0 to {MAX_YUAN_PER_T:,} yuan per tonne in whole fen, got {yuan_per_t!r}",
            field=field,
            fix="e.g. 100 or 87.5",
        )
    return fen


def stored(s: Session) -> tuple[int, int] | None:
    """The stored carbon price, fen per tonne, and when it was set; None: never set."""
    row = s.get(ExchangeSettingRow, SETTING)
    return None if row is None else (int(row.value), int(row.updated_at))


def store(s: Session, fen: int, now: int) -> None:
    """Set the carbon price to ``fen`` per tonne from ``now`` on (the caller's transaction)."""
    row = s.get(ExchangeSettingRow, SETTING)
    if row is None:
        s.add(ExchangeSettingRow(name=SETTING, value=fen, updated_at=now))
    else:
        row.value = fen
        row.updated_at = now
    s.flush()


def effective(s: Session, hook: object) -> float:
    """The carbon price the clearings apply now, yuan per tonne: the stored one, else the
    energy hook's own (0 without an energy model: no pool-slot has a carbon figure)."""
    found = stored(s)
    if found is not None:
        return found[0] / 100
    hook = _energy_of(hook)
    return hook.carbon_price_yuan_per_t if isinstance(hook, MarketEnergy) else 0.0


def _energy_of(hook: object) -> object:
    """The packaged energy model under ``hook``: the hook itself, or the base of the
    providers' declarations (:class:`~suangu.api.green.DeclaredEnergy`)."""
    from suangu.api.green import DeclaredEnergy

    return hook.base if isinstance(hook, DeclaredEnergy) else hook


def priced(s: Session, hook: object) -> object:
    """``hook`` at the stored carbon price (an energy model; other hooks as they are)."""
    from suangu.api.green import DeclaredEnergy

    found = stored(s)
    if found is None:
        return hook
    if isinstance(hook, DeclaredEnergy):
        return hook.on(priced(s, hook.base))
    if not isinstance(hook, MarketEnergy):
        return hook
    return hook.at_price(found[0] / 100)


def set_at_start(db: Database, yuan_per_t: float, now: int) -> int:
    """Store the carbon price an exchange starts with (``suangu serve --carbon-price``),
    recorded in the audit trail as the exchange's own write; its fen per tonne."""
    fen = fen_per_t(yuan_per_t, "carbon_price")

    def work(s: Session) -> int:
        found = stored(s)
        if found is None or found[0] != fen:  # several workers start: one entry
            store(s, fen, now)
            record_system(s, now, "carbon_price.set", "carbon_price", yuan_per_t=fen / 100)
        return fen

    return db.transaction(work)
