"""Green certificates, carbon statements and providers' energy declarations in the service.

* **Where a site's green share comes from** (:class:`SiteEnergyModel`): a provider's
  declaration (``PUT /sites/{site_id}/energy``) first: its wind, solar and storage
  capacities and PUE, modelled hour by hour like a packaged site (the weather, climate and
  tariff of the packaged site of the same province, or else of the nearest one), or an
  hourly green-share series it uploads (JSON or CSV; hours outside the series count as grid
  power). Otherwise the packaged energy data of the site (:class:`~suangu.api.market_energy.
  MarketEnergy`), otherwise none: all grid power at the province's grid-average factor.
* **The clearing** sees declared sites' modelled green shares (:class:`DeclaredEnergy`, the
  market hook wrapped around :class:`~suangu.api.market_energy.MarketEnergy`), so orders'
  minimum green shares use them.
* **Certificates** (:func:`book_energy`): every settled lease gets its energy and carbon
  record by the one rule of :func:`suangu.core.energy.accounting.lease_record` (the
  simulator's), from its readings: the facility Wh metered (measured by NVML or Slurm, or
  nominal), or, where no reading carried energy, the nominal Wh of its GPU-seconds. Its green
  Wh are issued to the provider as certificates (``kWh-green``) and retired to the buyer, and
  its market-based grams recorded on ``gCO2``, in the settlement's transaction; certificates
  of one site and slot never exceed the green energy its model used in the slot
  (:func:`~suangu.core.energy.accounting.certify_within`).
* **Statements** (:func:`carbon_statement`, :func:`certificate_statement`) add up the stored
  records: the same figures as the ledger.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from suangu.api.market_energy import MarketEnergy
from suangu.core.energy import accounting, hooks
from suangu.core.energy.accounting import LeaseEnergy, SlotEnergy
from suangu.core.energy.carbon import EmissionFactor
from suangu.core.energy.climate import PueModel
from suangu.core.energy.model import SiteEnergyParams, SiteYear
from suangu.core.energy.storage import StorageParams
from suangu.core.errors import UnknownReferenceError, ValidationError
from suangu.core.ledger import AccountKind, Asset, CreateResult, Transfer
from suangu.core.metering import ReadingSource
from suangu.core.types import SECONDS_PER_HOUR, Allocation, Market, Offer, Pool, Site, TimeGrid
from suangu.store.db import Database
from suangu.store.errors import Conflict
from suangu.store.ledger import SqlLedger
from suangu.store.models import (
    LeaseEnergyRow,
    LeaseRow,
    LeaseState,
    LedgerAccountRow,
    MeterReadingRow,
    PoolRow,
    SiteEnergyRow,
    SiteRow,
)
from suangu.store.repositories import Capacity

#: The national grid average excluding market-traded green power, 2022 (MEE/NBS announcement
#: of 2024-12-26): the factor of a site whose province has none in the packaged table.
NATIONAL_FACTOR = EmissionFactor(
    "China national",
    2022,
    0.5856,
    "national",
    "MEE/NBS 2024-12-26: national grid average excluding market-traded green power, 2022",
)
#: Most hours an uploaded green-share series may hold (three years).
MAX_SERIES_HOURS = 3 * 8784
#: The last instant a site's energy is modelled for (2100-01-01 UTC).
MAX_UNIX = 4_102_444_800
#: Most capacity-declared site-years kept in this process.
_MAX_YEARS = 32
_YEARS: dict[tuple[str, str, int], SiteYear] = {}
_YEARS_LOCK = threading.Lock()


class GreenError(ValidationError):
    """A declaration or statement request that cannot be used (names the field and fix)."""


# -- declarations -----------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CapacitiesIn(_In):
    """A site's own energy assets, modelled hour by hour like a packaged site."""

    #: IT load the assets serve, MW (flat): the site's green share is green used / load.
    it_load_mw: float = Field(gt=0, le=100_000, allow_inf_nan=False)
    wind_mw: float = Field(default=0.0, ge=0, le=100_000, allow_inf_nan=False)
    solar_mw: float = Field(default=0.0, ge=0, le=100_000, allow_inf_nan=False)
    storage_mw: float = Field(default=0.0, ge=0, le=1_000_000, allow_inf_nan=False)
    storage_mwh: float = Field(default=0.0, ge=0, le=10_000_000, allow_inf_nan=False)


class SeriesPointIn(_In):
    #: Start of the hour, Unix seconds (a whole hour).
    hour: int = Field(ge=0, le=2**40)
    green_share: float = Field(ge=0, le=1, allow_inf_nan=False)


class EnergyIn(_In):
    """``PUT /sites/{site_id}/energy``: capacities or an hourly green-share series."""

    capacities: CapacitiesIn | None = None
    series: list[SeriesPointIn] | None = Field(
        default=None, min_length=1, max_length=MAX_SERIES_HOURS
    )
    #: The site's PUE (default: the PUE the site was registered with).
    pue: float | None = Field(default=None, ge=1.0, le=3.0, allow_inf_nan=False)


def declaration(body: EnergyIn, prefix: str = "body") -> tuple[str, dict[str, Any]]:
    """``(kind, stored body)`` of a declaration; :class:`GreenError` naming the field."""
    if (body.capacities is None) == (body.series is None):
        raise GreenError(
            "give either capacities or series",
            field=prefix,
            fix='e.g. {"capacities": {"it_load_mw": 20, "wind_mw": 100}} or '
            '{"series": [{"hour": 1767225600, "green_share": 0.8}, ...]}',
        )
    out: dict[str, Any] = {"pue": body.pue}
    if body.capacities is not None:
        out["capacities"] = body.capacities.model_dump()
        return "capacities", out
    assert body.series is not None
    last = -1
    points = []
    for k, p in enumerate(body.series):
        if p.hour % SECONDS_PER_HOUR:
            raise GreenError(
                f"{p.hour} is not the start of an hour",
                field=f"{prefix}.series[{k}].hour",
                fix=f"Unix seconds of a whole hour, e.g. {p.hour - p.hour % SECONDS_PER_HOUR}",
            )
        if p.hour <= last:
            raise GreenError(
                f"hour {p.hour} does not come after the one before ({last})",
                field=f"{prefix}.series[{k}].hour",
                fix="one value per hour, in time order, no hour twice",
            )
        last = p.hour
        points.append([p.hour, p.green_share])
    out["series"] = points
    return "series", out


def _hour_of(text: str, line: int) -> int:
    value = text.strip()
    try:
        return int(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GreenError(
            f"line {line}: {value!r} is not a time",
            field=f"body.line[{line}].hour",
            fix="Unix seconds or ISO 8601, e.g. 2026-01-01T00:00:00+08:00",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def series_from_csv(text: str, pue: float | None = None) -> EnergyIn:
    """An uploaded CSV (columns ``hour`` and ``green_share``; ``hour`` in Unix seconds or ISO
    8601, UTC when no offset is given) as a declaration; :class:`GreenError` naming the line."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fields = [f.strip() for f in reader.fieldnames or []]
    except csv.Error as err:
        raise GreenError(
            f"is not CSV: {err}", field="body", fix="plain text lines: hour,green_share"
        ) from None
    missing = [c for c in ("hour", "green_share") if c not in fields]
    if missing:
        raise GreenError(
            f"the header lacks {', '.join(missing)} (got {', '.join(fields) or 'nothing'})",
            field="body.header",
            fix="start the file with the line: hour,green_share",
        )
    points: list[dict[str, Any]] = []
    try:
        rows = list(reader)
    except csv.Error as err:
        raise GreenError(
            f"is not CSV: {err}", field="body", fix="plain text lines: hour,green_share"
        ) from None
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "") for k, v in row.items()}
        if len(points) >= MAX_SERIES_HOURS:
            raise GreenError(
                f"more than {MAX_SERIES_HOURS} hours",
                field="body",
                fix="upload at most three years of hours",
            )
        share_text = row["green_share"].strip()
        try:
            share = float(share_text)
        except ValueError:
            share = math.nan
        if not (math.isfinite(share) and 0.0 <= share <= 1.0):
            raise GreenError(
                f"line {line}: green_share {share_text!r} is not a share between 0 and 1",
                field=f"body.line[{line}].green_share",
                fix="a number between 0 and 1, e.g. 0.85 (not a percentage)",
            )
        points.append({"hour": _hour_of(row["hour"], line), "green_share": share})
    if not points:
        raise GreenError("no hours", field="body", fix="one line per hour after the header")
    try:
        return EnergyIn.model_validate({"series": points, "pue": pue}, strict=False)
    except PydanticValidationError as err:
        first = err.errors()[0]
        where = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in first["loc"])
        where = where.lstrip(".")
        raise GreenError(first["msg"], field=f"body.{where}", fix="check that value") from None


def put_declaration(
    s: Session, site_id: str, kind: str, body: dict[str, Any], who: str, now: int
) -> dict[str, Any]:
    row = s.get(SiteEnergyRow, site_id, with_for_update=True)
    if row is None:
        row = SiteEnergyRow(site_id=site_id, kind=kind, body=body, declared_by=who, declared_at=now)
        s.add(row)
    else:
        row.kind, row.body, row.declared_by, row.declared_at = kind, body, who, now
    s.flush()
    return declaration_out(row)


def declaration_out(row: SiteEnergyRow) -> dict[str, Any]:
    body = row.body
    series = body.get("series") or []
    return {
        "site_id": row.site_id,
        "kind": row.kind,
        "pue": body.get("pue"),
        "capacities": body.get("capacities"),
        "series_hours": len(series),
        "series_start": series[0][0] if series else None,
        "series_end": series[-1][0] + SECONDS_PER_HOUR if series else None,
        "declared_by": row.declared_by,
        "declared_at": row.declared_at,
    }


# -- the site's energy ------------------------------------------------------------------------


def province_factor(province: str) -> EmissionFactor:
    """The grid-average factor of ``province`` (latest published), else the national one."""
    from suangu.sim.energy import load_energy_data

    try:
        return load_energy_data().factors.get(province)
    except UnknownReferenceError:
        return NATIONAL_FACTOR


def declared_params(site: Site, capacities: Mapping[str, float], pue: float) -> SiteEnergyParams:
    """Energy-model parameters of a site declared by its capacities: the packaged site of its
    province (else the nearest packaged site) supplies weather, climate and tariff."""
    from suangu.sim.energy import load_energy_data

    sites = load_energy_data().sites
    same = sorted(k for k, p in sites.items() if p.province.casefold() == site.province.casefold())
    if same:
        template = sites[same[0]]
    else:
        template = min(
            sites.values(),
            key=lambda p: ((p.lat - site.lat) ** 2 + (p.lon - site.lon) ** 2, p.site_id),
        )
    return dataclasses.replace(
        template,
        site_id=site.id,
        name=site.name,
        province=site.province,
        lat=site.lat,
        lon=site.lon,
        it_load_mw=float(capacities["it_load_mw"]),
        solar=dataclasses.replace(template.solar, capacity_mw=float(capacities["solar_mw"])),
        wind=dataclasses.replace(template.wind, capacity_mw=float(capacities["wind_mw"])),
        storage=StorageParams(
            power_mw=float(capacities["storage_mw"]),
            energy_mwh=float(capacities["storage_mwh"]),
            round_trip_efficiency=template.storage.round_trip_efficiency,
            initial_soc=template.storage.initial_soc,
        ),
        pue_model=PueModel(floor=pue, free_cooling_c=40.0, slope_per_c=0.0, ceiling=pue),
        grid_factor=province_factor(site.province),
        sources={
            "capacities": f"declared by the provider of {site.id}",
            "weather": f"template: packaged site {template.site_id}",
        },
    )


def _declared_year(params: SiteEnergyParams, key: str, start: int, end: int, seed: int) -> SiteYear:
    from suangu.sim.energy import EnergyData, load_energy_data, site_years_for_span

    with _YEARS_LOCK:
        cache_key = (key, f"{start}:{end}", seed)
        got = _YEARS.get(cache_key)
        if got is None:
            data = load_energy_data()
            custom = EnergyData({params.site_id: params}, data.factors, data.methods)
            got = site_years_for_span(
                {params.site_id: params.site_id}, start, end, seed=seed, data=custom
            )[params.site_id]
            if len(_YEARS) >= _MAX_YEARS:
                _YEARS.pop(next(iter(_YEARS)))
            _YEARS[cache_key] = got
        return got


class SiteEnergyModel:
    """Where each site's hourly green share and PUE come from (see the module docs)."""

    def __init__(self, market: MarketEnergy | None = None, *, seed: int = 0) -> None:
        self.market = market
        self.seed = market.seed if market is not None else seed

    def _year_span(self, start: int, end: int) -> tuple[int, int]:
        """Whole UTC years around ``[start, end)`` (a site-year per span, cached)."""
        first = datetime.fromtimestamp(start, UTC).year
        last = datetime.fromtimestamp(max(start, end - 1), UTC).year + 1
        return (
            int(datetime(first, 1, 1, tzinfo=UTC).timestamp()),
            int(datetime(last, 1, 1, tzinfo=UTC).timestamp()),
        )

    def declared_year(self, site: Site, row: SiteEnergyRow, start: int, end: int) -> SiteYear:
        pue = float(row.body.get("pue") or site.pue)
        params = declared_params(site, row.body["capacities"], pue)
        key = hashlib.sha256(
            json.dumps(
                [site.id, site.lat, site.lon, site.province, row.body], sort_keys=True
            ).encode()
        ).hexdigest()
        lo, hi = self._year_span(start, end)
        return _declared_year(params, key, lo, hi, self.seed)

    def slot_energy(
        self,
        site: Site,
        row: SiteEnergyRow | None,
        grid: TimeGrid,
        slot: int,
    ) -> tuple[SlotEnergy, str]:
        """The :class:`SlotEnergy` of ``site`` in ``slot`` (its ``site_id`` the market's) and
        where it came from: ``capacities``, ``series``, ``packaged`` or ``none``."""
        hours = grid.slot_hours
        start = grid.slot_start(slot)
        if row is not None:
            pue = float(row.body.get("pue") or site.pue)
            if row.kind == "series":
                shares = dict((int(h), float(v)) for h, v in row.body["series"])
                return SlotEnergy(
                    site.id,
                    (pue,) * hours,
                    tuple(shares.get(start + k * SECONDS_PER_HOUR, 0.0) for k in range(hours)),
                    province_factor(site.province),
                    green_room_wh=None,
                ), "series"
            sy = self.declared_year(site, row, start, grid.slot_start(slot + 1))
            e = accounting.slot_energy(sy, grid, slot)
            return dataclasses.replace(e, site_id=site.id), "capacities"
        if self.market is not None:
            years = self.market.site_years([site.id], start, grid.slot_start(slot + 1))
            if site.id in years:
                e = accounting.slot_energy(years[site.id], grid, slot)
                return dataclasses.replace(e, site_id=site.id), "packaged"
        return SlotEnergy(
            site.id,
            (site.pue,) * hours,
            (0.0,) * hours,
            province_factor(site.province),
            green_room_wh=0,
        ), "none"

    def slot_shares(
        self, site: Site, row: SiteEnergyRow, grid: TimeGrid, slots: range
    ) -> tuple[float, ...]:
        """Mean green share of a declared site in each slot of ``slots`` (the clearing's)."""
        if row.kind == "series":
            shares = dict((int(h), float(v)) for h, v in row.body["series"])
            n = grid.slot_hours
            return tuple(
                sum(shares.get(grid.slot_start(t) + k * SECONDS_PER_HOUR, 0.0) for k in range(n))
                / n
                for t in slots
            )
        sy = self.declared_year(
            site, row, grid.slot_start(slots.start), grid.slot_start(slots.stop)
        )
        values = hooks.slot_mean(sy.green_share, sy, grid, slots)
        return tuple(min(1.0, max(0.0, float(v))) for v in values)


def auto_reserve(
    s: Session,
    model: SiteEnergyModel,
    offer: Offer,
    grid: TimeGrid,
    *,
    margin_fen: int = 0,
    markup: float = 0.0,
) -> Offer:
    """``offer`` priced by :func:`~suangu.core.energy.hooks.reserve_from_energy` from its
    site's modelled energy cost (``reserve: auto``): a site with packaged energy data or
    declared capacities (a green-share series has no tariff to price from)."""
    pool = s.get(PoolRow, offer.pool_id)
    assert pool is not None
    site = next(x for x in Capacity(s).sites() if x.id == pool.site_id)
    row = declarations(s, [site.id]).get(site.id)
    start, end = grid.slot_start(offer.start_slot), grid.slot_start(offer.end_slot)
    sy: SiteYear | None = None
    if row is not None and row.kind == "capacities":
        sy = model.declared_year(site, row, start, end)
    elif row is None and model.market is not None:
        sy = model.market.site_years([site.id], start, end).get(site.id)
    if sy is None:
        raise GreenError(
            f"site {site.id!r} has no energy model to price from",
            field="body.reserve",
            fix=f"declare its capacities (PUT /sites/{site.id}/energy) or give reserve_fen",
        )
    core_pool = Pool(pool.id, pool.site_id, pool.gpu_class)
    try:
        return hooks.reserve_from_energy(
            offer, core_pool, sy, grid, margin_fen=margin_fen, markup=markup
        )
    except ValidationError as err:
        raise err.prefixed("body") from None


def energy_model(request: Request) -> SiteEnergyModel:
    """The app's :class:`SiteEnergyModel` (``app.state.energy_model``)."""
    model: SiteEnergyModel = request.app.state.energy_model
    return model


def declarations(s: Session, site_ids: Iterable[str]) -> dict[str, SiteEnergyRow]:
    ids = sorted(set(site_ids))
    if not ids:
        return {}
    return {
        r.site_id: r for r in s.scalars(select(SiteEnergyRow).where(SiteEnergyRow.site_id.in_(ids)))
    }


class DeclaredEnergy:
    """The market hook: ``base`` (the packaged energy model, if any), then the modelled green
    shares of every declared site (read from the database at each clearing)."""

    def __init__(self, db: Database, model: SiteEnergyModel, base: Any = None) -> None:
        self.db = db
        self.model = model
        self.base = base

    def on(self, base: Any) -> DeclaredEnergy:
        """These declarations on top of another base hook (the packaged energy model at the
        operator's carbon price: :func:`suangu.api.carbon_price.priced`)."""
        return self if base is self.base else DeclaredEnergy(self.db, self.model, base)

    def __call__(self, market: Market) -> Market:
        if self.base is not None:
            market = self.base(market)
        with self.db.session_scope(write=False) as s:
            rows = declarations(s, [site.id for site in market.sites])
        if not rows:
            return market
        sites = {site.id: site for site in market.sites}
        slots = range(market.first_slot, market.end_slot)
        shares = dict(market.green_share)
        per_site = {
            sid: self.model.slot_shares(sites[sid], row, market.grid, slots)
            for sid, row in rows.items()
        }
        for pool in market.pools:
            if pool.site_id in per_site:
                shares[pool.id] = per_site[pool.site_id]
        return dataclasses.replace(market, green_share=shares)


# -- booking ----------------------------------------------------------------------------------


def _ledger_key(lease_id: str) -> str:
    """The key of a lease's certificate transfers (``issue:``, ``retire:``, ``carbon:``):
    the lease id, or its digest when the id is too long for a ledger id."""
    if len(lease_id) <= 200:
        return lease_id
    return "lease-" + hashlib.sha256(lease_id.encode()).hexdigest()[:40]


def _factor_of(row: LeaseEnergyRow) -> EmissionFactor:
    return EmissionFactor(
        row.factor_region,
        int(row.factor_year),
        float(row.factor_t_per_mwh),
        row.factor_level,
        row.factor_source,
    )


def record_of(row: LeaseEnergyRow) -> LeaseEnergy:
    """A stored record as the core's :class:`LeaseEnergy`."""
    return LeaseEnergy(
        lease_id=row.lease_id,
        order_id=row.order_id,
        buyer_id=row.buyer_id,
        provider_id=row.provider_id,
        pool_id=row.pool_id,
        site_id=row.site_id,
        gpu_class=row.gpu_class,
        slot=int(row.slot),
        start_unix=int(row.start_unix),
        gpu_seconds=int(row.gpu_seconds),
        energy_wh=int(row.energy_wh),
        green_wh=int(row.green_wh),
        grid_wh=int(row.grid_wh),
        certificates_wh=int(row.certificates_wh),
        location_g=int(row.location_g),
        market_g=int(row.market_g),
        grid_factor=_factor_of(row),
        residual_t_per_mwh=float(row.residual_t_per_mwh),
        measured_wh=int(row.measured_wh),
    )


def _readings(s: Session, lease_ids: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """``lease id -> (GPU-seconds, Wh, measured Wh)`` over its readings."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    measured = [str(x) for x in ReadingSource if x.measured]
    for chunk in range(0, len(lease_ids), 500):
        q = (
            select(
                MeterReadingRow.lease_id,
                MeterReadingRow.source,
                func.sum(MeterReadingRow.gpu_seconds),
                func.sum(MeterReadingRow.energy_wh),
            )
            .where(MeterReadingRow.lease_id.in_(lease_ids[chunk : chunk + 500]))
            .group_by(MeterReadingRow.lease_id, MeterReadingRow.source)
        )
        for lease_id, source, seconds, wh in s.execute(q):
            acc = out[lease_id]
            acc[0] += int(seconds or 0)
            acc[1] += int(wh or 0)
            if source in measured:
                acc[2] += int(wh or 0)
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def unbooked_leases(
    s: Session, lease_ids: Iterable[str] | None = None, limit: int = 500
) -> list[str]:
    """Settled leases without an energy record (``lease_ids``: only among those)."""
    q = (
        select(LeaseRow.id)
        .outerjoin(LeaseEnergyRow, LeaseEnergyRow.lease_id == LeaseRow.id)
        .where(LeaseRow.state == str(LeaseState.SETTLED), LeaseEnergyRow.lease_id.is_(None))
    )
    if lease_ids is not None:
        ids = sorted(set(lease_ids))
        if not ids:
            return []
        q = q.where(LeaseRow.id.in_(ids))
    return list(s.scalars(q.order_by(LeaseRow.slot, LeaseRow.id).limit(limit)))


def book_energy(
    s: Session,
    ledger: SqlLedger,
    model: SiteEnergyModel,
    grid: TimeGrid,
    now: int,
    lease_ids: Iterable[str] | None = None,
    *,
    limit: int = 500,
) -> list[LeaseEnergy]:
    """Record the energy and carbon of settled leases without a record (``lease_ids``: only
    among those), issue and retire their certificates and record their grams on the ledger,
    in the caller's transaction (run it with ``retry_integrity=True``); the records made.

    A lease with no GPU-seconds and no energy metered gets a zero record (nothing booked)."""
    ids = unbooked_leases(s, lease_ids, limit)
    if not ids:
        return []
    rows = list(
        s.scalars(select(LeaseRow).where(LeaseRow.id.in_(ids)).order_by(LeaseRow.slot, LeaseRow.id))
    )
    pools = {
        pid: (site, cls)
        for pid, site, cls in s.execute(
            select(PoolRow.id, PoolRow.site_id, PoolRow.gpu_class).where(
                PoolRow.id.in_(sorted({r.pool_id for r in rows}))
            )
        )
    }
    site_ids = sorted({pools[r.pool_id][0] for r in rows})
    # One booking per site at a time: the green room of a site-slot is read, then used.
    s.scalars(
        select(SiteRow.id).where(SiteRow.id.in_(site_ids)).order_by(SiteRow.id).with_for_update()
    ).all()
    sites = {site.id: site for site in Capacity(s).sites() if site.id in set(site_ids)}
    decl = declarations(s, site_ids)
    metered = _readings(s, ids)
    slots = sorted({(pools[r.pool_id][0], int(r.slot)) for r in rows})
    used_room: dict[tuple[str, int], int] = {}
    for site_id in site_ids:
        mine = sorted({t for sid, t in slots if sid == site_id})
        for sid, t, certs in s.execute(
            select(
                LeaseEnergyRow.site_id,
                LeaseEnergyRow.slot,
                func.sum(LeaseEnergyRow.certificates_wh),
            )
            .where(LeaseEnergyRow.site_id == site_id, LeaseEnergyRow.slot.in_(mine))
            .group_by(LeaseEnergyRow.site_id, LeaseEnergyRow.slot)
        ):
            used_room[(sid, int(t))] = int(certs or 0)
    energy: dict[tuple[str, int], tuple[SlotEnergy, str]] = {
        (sid, t): model.slot_energy(sites[sid], decl.get(sid), grid, t) for sid, t in slots
    }
    by_slot: dict[tuple[str, int], list[tuple[LeaseRow, LeaseEnergy]]] = defaultdict(list)
    for r in rows:
        site_id, gpu_class = pools[r.pool_id]
        seconds, wh, measured = metered.get(r.id, (0, 0, 0))
        e, _ = energy[(site_id, int(r.slot))]
        a = Allocation(
            r.order_id, r.buyer_id, r.pool_id, int(r.slot), int(r.gpus), int(r.price_fen)
        )
        rec = accounting.lease_record(
            a,
            seconds,
            r.provider_id or "",
            e,
            grid,
            gpu_class,
            energy_wh=wh if wh > 0 or seconds == 0 else None,
            measured_wh=measured if wh > 0 else 0,
            lease=r.id,
        )
        by_slot[(site_id, int(r.slot))].append((r, rec))
    records: list[tuple[LeaseRow, LeaseEnergy, str]] = []
    for key, items in sorted(by_slot.items()):
        e, basis = energy[key]
        room: dict[str, int | None] = {
            key[0]: None if e.green_room_wh is None else e.green_room_wh - used_room.get(key, 0)
        }
        certified, _ = accounting.certify_within([rec for _, rec in items], room)
        records += [(r, rec, basis) for (r, _), rec in zip(items, certified, strict=True)]
    providers = sorted({rec.provider_id for _, rec, _ in records if rec.certificates_wh})
    buyers = sorted({rec.buyer_id for _, rec, _ in records if rec.energy_wh})
    if providers or buyers:
        ledger.create_accounts_in(s, accounting.energy_accounts(providers, buyers), now)
    # One issue per provider for the batch (its id names the batch's leases, so a retried
    # batch is the same transfer), then each lease's retire + carbon chain.
    issued: dict[str, list[str]] = defaultdict(list)
    amounts: dict[str, int] = defaultdict(int)
    chains: list[Transfer] = []
    for _, rec, _ in records:
        keyed = dataclasses.replace(rec, lease_id=_ledger_key(rec.lease_id))
        if rec.certificates_wh:
            issued[rec.provider_id].append(rec.lease_id)
            amounts[rec.provider_id] += rec.certificates_wh
        chains += accounting.lease_transfers(keyed)
    transfers: list[Transfer] = []
    for provider, leases in sorted(issued.items()):
        digest = hashlib.sha256("\n".join(sorted(leases)).encode()).hexdigest()[:32]
        transfers.append(
            accounting.issue_certificates(
                f"issue:{digest}",
                provider,
                amounts[provider],
                user_data=f"{len(leases)} lease(s) from {min(leases)[:150]}",
            )
        )
    transfers += chains
    if transfers:
        results = ledger.create_transfers_in(s, transfers, now)
        bad = [
            (t.id, x)
            for t, x in zip(transfers, results, strict=True)
            if x not in (CreateResult.OK, CreateResult.EXISTS)
        ]
        if bad:
            raise Conflict(
                f"booking certificates failed: {bad[0][0]}: {bad[0][1]}",
                field="lease",
                fix="ask the operator to check the kWh-green and gCO2 ledgers",
            )
    values: list[dict[str, Any]] = []
    for r, rec, basis in records:
        f = rec.grid_factor
        values.append(
            {
                "lease_id": r.id,
                "order_id": rec.order_id,
                "buyer_id": rec.buyer_id,
                "provider_id": rec.provider_id,
                "pool_id": rec.pool_id,
                "site_id": rec.site_id,
                "gpu_class": rec.gpu_class,
                "slot": rec.slot,
                "start_unix": rec.start_unix,
                "gpu_seconds": rec.gpu_seconds,
                "energy_wh": rec.energy_wh,
                "measured_wh": rec.measured_wh,
                "green_wh": rec.green_wh,
                "grid_wh": rec.grid_wh,
                "certificates_wh": rec.certificates_wh,
                "location_g": rec.location_g,
                "market_g": rec.market_g,
                "factor_region": f.region,
                "factor_level": f.level,
                "factor_year": f.year,
                "factor_t_per_mwh": f.t_per_mwh,
                "factor_source": f.source,
                "residual_t_per_mwh": rec.residual_t_per_mwh,
                "green_basis": basis,
                "recorded_at": now,
            }
        )
    s.execute(insert(LeaseEnergyRow), values)
    return [rec for _, rec, _ in records]


def book_all(
    db: Database, ledger: SqlLedger, model: SiteEnergyModel, grid: TimeGrid, now: int
) -> int:
    """The sweeper: book every settled lease without an energy record (batches of 500);
    how many were booked. The clearing loop runs it on every tick."""
    total = 0
    while True:
        n = db.transaction(
            lambda s: len(book_energy(s, ledger, model, grid, now)), retry_integrity=True
        )
        total += n
        if n < 500:
            return total


# -- statements -------------------------------------------------------------------------------


def parse_when(value: str | None, field: str, default: int) -> int:
    """A statement bound: Unix seconds, or an ISO 8601 date or time (UTC without offset)."""
    if value is None or value == "":
        return default
    text = value.strip()
    if text.lstrip("-").isdigit():
        if not -(2**40) <= int(text) <= 2**40:
            raise GreenError(f"{value!r} is out of range", field=field, fix="a date or time")
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise GreenError(
            f"{value!r} is not a time",
            field=field,
            fix="a date (2026-01-01), an ISO 8601 time or Unix seconds",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def _records(
    s: Session, column: Any, member_id: str, start: int, end: int
) -> list[tuple[LeaseEnergy, str]]:
    q = (
        select(LeaseEnergyRow)
        .where(
            column == member_id, LeaseEnergyRow.start_unix >= start, LeaseEnergyRow.start_unix < end
        )
        .order_by(LeaseEnergyRow.start_unix, LeaseEnergyRow.lease_id)
    )
    return [(record_of(r), r.green_basis) for r in s.scalars(q)]


def _figures(st: accounting.CarbonStatement) -> dict[str, Any]:
    return {
        "leases": st.leases,
        "gpu_hours": round(st.gpu_hours, 4),
        "energy_wh": st.energy_wh,
        "measured_wh": st.measured_wh,
        "nominal_wh": st.nominal_wh,
        "green_wh": st.green_wh,
        "grid_wh": st.grid_wh,
        "certificates_wh": st.certificates_wh,
        "co2_location_g": st.location_g,
        "co2_market_g": st.market_g,
        "green_share": round(st.green_share, 4),
    }


def _month(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m")


def _balance(s: Session, account_id: str) -> int:
    row = s.get(LedgerAccountRow, account_id)
    if row is None:
        return 0
    return int(row.credits_posted) - int(row.debits_posted)


def carbon_statement(s: Session, buyer_id: str, start: int, end: int) -> dict[str, Any]:
    """A buyer's energy and carbon over ``[start, end)`` (leases by slot start): totals, per
    site, per month and per lease, measured and nominal energy, and its ledger balances."""
    if end <= start:
        raise GreenError("must be after from", field="query.to", fix="a later time")
    got = _records(s, LeaseEnergyRow.buyer_id, buyer_id, start, end)
    records = [r for r, _ in got if r.energy_wh or r.gpu_seconds]
    basis = {r.lease_id: b for r, b in got}
    total = accounting.carbon_statement(records, buyer_id, start, end)

    def group(key: Any) -> list[dict[str, Any]]:
        out: dict[str, list[LeaseEnergy]] = defaultdict(list)
        for r in records:
            out[key(r)].append(r)
        return [
            {"key": k, **_figures(accounting.carbon_statement(v, buyer_id, start, end))}
            for k, v in sorted(out.items())
        ]

    return {
        "buyer_id": buyer_id,
        "from": start,
        "to": end,
        **_figures(total),
        "methods": list(total.methods),
        "sites": [{"site_id": g.pop("key"), **g} for g in group(lambda r: r.site_id)],
        "months": [{"month": g.pop("key"), **g} for g in group(lambda r: _month(r.start_unix))],
        "lease_records": [
            {
                "lease_id": r.lease_id,
                "order_id": r.order_id,
                "site_id": r.site_id,
                "slot": r.slot,
                "start_unix": r.start_unix,
                "energy_wh": r.energy_wh,
                "measured_wh": r.measured_wh,
                "nominal_wh": r.nominal_wh,
                "green_wh": r.green_wh,
                "certificates_wh": r.certificates_wh,
                "co2_location_g": r.location_g,
                "co2_market_g": r.market_g,
                "green_basis": basis[r.lease_id],
                "grid_factor": r.grid_factor.label,
            }
            for r in records
        ],
        "ledger": {
            "certificates_retired_wh": _balance(
                s, accounting.certificate_account(AccountKind.BUYER, buyer_id)
            ),
            "co2_market_g": _balance(s, accounting.carbon_account(buyer_id)),
            "note": "all-time balances of the buyer's kWh-green and gCO2 accounts",
        },
    }


def certificate_statement(s: Session, provider_id: str, start: int, end: int) -> dict[str, Any]:
    """The certificates issued to a provider (and retired to its buyers) over ``[start,
    end)``, per site and per month, with the energy metered on its leases."""
    if end <= start:
        raise GreenError("must be after from", field="query.to", fix="a later time")
    records = [r for r, _ in _records(s, LeaseEnergyRow.provider_id, provider_id, start, end)]

    def figures(rs: list[LeaseEnergy]) -> dict[str, Any]:
        return {
            "leases": sum(1 for r in rs if r.energy_wh or r.gpu_seconds),
            "energy_wh": sum(r.energy_wh for r in rs),
            "measured_wh": sum(r.measured_wh for r in rs),
            "nominal_wh": sum(r.nominal_wh for r in rs),
            "green_wh": sum(r.green_wh for r in rs),
            "certificates_issued_wh": sum(r.certificates_wh for r in rs),
        }

    def group(key: Any, name: str) -> list[dict[str, Any]]:
        out: dict[str, list[LeaseEnergy]] = defaultdict(list)
        for r in records:
            out[key(r)].append(r)
        return [{name: k, **figures(v)} for k, v in sorted(out.items())]

    return {
        "provider_id": provider_id,
        "from": start,
        "to": end,
        **figures(records),
        "sites": group(lambda r: r.site_id, "site_id"),
        "months": group(lambda r: _month(r.start_unix), "month"),
        "ledger": {
            "certificates_held_wh": _balance(
                s, accounting.certificate_account(AccountKind.PROVIDER, provider_id)
            ),
            "note": "all-time balance of the provider's kWh-green account (issued - retired)",
        },
    }


__all__ = [
    "Asset",
    "CapacitiesIn",
    "DeclaredEnergy",
    "EnergyIn",
    "GreenError",
    "SiteEnergyModel",
    "book_all",
    "book_energy",
    "carbon_statement",
    "certificate_statement",
    "declaration",
    "series_from_csv",
]
