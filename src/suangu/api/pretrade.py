"""Pre-trade information: an indicative quote, the depth of supply, and a daily price index.

* :func:`quote`: what an order would get and pay if the market cleared now, from a what-if
  clearing of the next clearing's horizon over the current open book (funded open orders,
  the rest of partly served ones, offers less what was sold) plus this order. Nothing is
  stored; the answer is labelled ``indicative``: the real clearing sees the orders and offers
  of its own time. Each quote runs under its own time limit
  (:attr:`ApiSettings.quote_time_limit_s`), and at most :attr:`ApiSettings.quote_concurrency`
  run at once in a process (more are told to retry: 503), so quotes cannot stall the service.
* :func:`depth`: per pool and slot, the GPUs still offered at each reserve price (the supply
  curve), aggregated over offers: a price level never names its providers.
* :func:`price_index`: per site, GPU class and day, the volume-weighted mean of the published
  clearing prices of the GPU-hours sold (offer fills), with the day's volume, turnover, low
  and high (the rule is in docs/market.md).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suangu.api import schemas
from suangu.api.services import (
    MarketHook,
    _available,
    _pydantic_field,
    _remaining_offers,
    clearable_orders,
    order_from_json,
)
from suangu.api.settings import ApiSettings
from suangu.core import billing
from suangu.core.clearing import ClearingOptions, clear
from suangu.core.errors import ValidationError
from suangu.core.gpus import gpu_class as catalogue_class
from suangu.core.types import SCOPE, ClearingStatus, Market, Order
from suangu.store.db import Database
from suangu.store.errors import RetryExhausted
from suangu.store.models import ClearingRow, OfferFillRow, PoolRow, SiteRow
from suangu.store.repositories import Capacity, Heartbeats, Links

#: Every answer of :func:`quote` says this: it is what the market would do now, not a promise.
INDICATIVE = (
    "indicative: a what-if clearing of the current open book plus this order; nothing was "
    "stored or held, and the next clearing sees the orders and offers of its own time"
)
#: The longest span of one index request, days.
MAX_INDEX_DAYS = 366
#: The longest span of one depth request, slots.
MAX_DEPTH_SLOTS = 24 * 7
DAY_S = 86_400
#: Index days are calendar days of China Standard Time (UTC+8), as on the dashboard.
CST_S = 8 * 3600

_GATES: dict[int, threading.BoundedSemaphore] = {}
_GATES_LOCK = threading.Lock()


def _gate(n: int) -> threading.BoundedSemaphore:
    """The process's semaphore of ``n`` concurrent quotes."""
    with _GATES_LOCK:
        return _GATES.setdefault(n, threading.BoundedSemaphore(n))


class QuoteIn(schemas.OrderIn):
    """An order spec to quote: the fields of ``POST /orders`` (``id`` and ``release_slot``
    optional; a workload is not quoted: give its ``data_gb``)."""

    id: schemas.ScopedId = "quote"
    #: Default: the current slot.
    release_slot: schemas.Slot = 0


class QuoteAllocationOut(schemas.Response):
    pool_id: str
    site_id: str
    gpu_class: str
    slot: int
    gpus: int
    price_fen: int


class QuoteOut(schemas.Response):
    indicative: bool
    note: str
    computed_at: int
    first_slot: int
    n_slots: int
    #: The what-if clearing's status, method and certified gap (see ``GET /clearings``).
    status: str
    method: str
    gap: float
    #: Whether the buyer's available money covers the order's maximum cost (the funding
    #: rule): an unfunded order sits the real clearing out.
    funded: bool
    max_cost_fen: int
    #: What the order would get: GPU-slots, GPU-hours, and for a gang whether it was placed.
    gpu_slots: int
    gpu_hours: int
    #: What it would pay: capacity at the clearing prices plus data transfer charges.
    capacity_fen: int
    transfer_fen: int
    total_fen: int
    #: ``capacity_fen / gpu_hours`` rounded down (null when nothing is allocated).
    mean_price_fen: int | None
    rejected: bool
    allocations: list[QuoteAllocationOut]
    #: The book the what-if clearing saw.
    book_orders: int
    book_offers: int


class DepthLevelOut(schemas.Response):
    reserve_fen: int
    gpus: int
    #: GPUs offered at this reserve or below.
    cumulative_gpus: int


class DepthOut(schemas.Response):
    pool_id: str
    site_id: str
    gpu_class: str
    slot: int
    offered_gpus: int
    levels: list[DepthLevelOut]


class DepthPageOut(schemas.Response):
    items: list[DepthOut]


class IndexDayOut(schemas.Response):
    site_id: str
    gpu_class: str
    date: str
    #: Volume-weighted mean price of the day's GPU-hours sold, fen per GPU-hour, rounded down.
    index_fen: int
    gpu_hours: int
    turnover_fen: int
    low_fen: int
    high_fen: int


class IndexOut(schemas.Response):
    rule: str
    from_date: str
    to_date: str
    items: list[IndexDayOut]


INDEX_RULE = (
    "per site, GPU class and day (China Standard Time, UTC+8): "
    "sum(price x GPU-hours sold) / sum(GPU-hours sold) over every offer fill of a "
    "published clearing in the day's slots, rounded down to whole fen; "
    "days without trades have no row"
)


# -- quote ---------------------------------------------------------------------------------------


def quote_spec(
    data: dict[str, Any] | None, query: Iterable[tuple[str, str]], prefix: str
) -> QuoteIn:
    """The quote's spec from a JSON body, or else from query parameters (lists repeat the
    parameter or separate values by commas)."""
    if data is None:
        lists = {"gpu_classes", "regions", "provinces"}
        raw: dict[str, Any] = {}
        for k, v in query:
            if k in lists:
                raw.setdefault(k, []).extend(x for x in v.split(",") if x)
            elif k in raw:
                raise ValidationError("is given twice", field=f"query.{k}", fix="give it once")
            else:
                raw[k] = v
        data = raw
    try:
        return QuoteIn.model_validate(data, strict=False)
    except PydanticValidationError as err:
        bad = _pydantic_field(err, prefix)
        raise ValidationError(
            bad.message, field=bad.field, fix="see GET /market/quote in docs/api.md"
        ) from None


def _quote_id(spec: QuoteIn, buyer_id: str, taken: set[str]) -> str:
    base = spec.id if SCOPE in spec.id else f"{buyer_id}{SCOPE}{spec.id}"
    out, n = base, 0
    while out in taken:
        n += 1
        out = f"{base}-{n}"
    return out


def quote(
    db: Database,
    settings: ApiSettings,
    spec: QuoteIn,
    buyer_id: str,
    now: int,
    adjust: MarketHook | None = None,
    prefix: str = "body",
) -> dict[str, Any]:
    """An indicative quote of ``spec`` for ``buyer_id`` (see the module docs)."""
    if spec.workload is not None:
        raise ValidationError(
            "a quote takes no workload",
            field=f"{prefix}.workload",
            fix="leave the workload out and give its input size as data_gb",
        )
    grid = settings.grid
    current = max(0, grid.slot_at(now))
    first, n_slots = current, settings.horizon_slots
    release = spec.release_slot if "release_slot" in spec.model_fields_set else current
    gate = _gate(settings.quote_concurrency)
    if not gate.acquire(blocking=False):
        raise RetryExhausted(
            f"{settings.quote_concurrency} quotes are being computed",
            field="quote",
            fix="retry in a few seconds",
        )
    try:
        with db.session_scope(write=False) as s:
            book = clearable_orders(s, grid, first, first + n_slots)
            order_id = _quote_id(spec, buyer_id, {o.id for o in book})
            asked = spec.model_copy(update={"id": order_id, "release_slot": release})
            try:
                order = order_from_json(asked, buyer_id, current)
            except ValidationError as err:
                raise ValidationError(
                    err.message,
                    field=(err.field or "body").replace("body", prefix, 1),
                    fix=err.fix,
                ) from None
            cap = Capacity(s)
            sites, pools = tuple(cap.sites()), tuple(cap.pools())
            links = tuple(Links(s).all())
            silent = set(Heartbeats(s).silent(now, settings.agent_grace_s))
            offers = tuple(
                o
                for o in _remaining_offers(s, first, first + n_slots)
                if o.provider_id not in silent
            )
            classes = sorted({p.gpu_class for p in pools})
            hours = grid.slot_hours

            def cost(o: Order) -> int:
                return billing.max_cost_fen(o, hours, classes)

            available = _available(s, {o.buyer_id for o in book} | {buyer_id})
        funded_book, _ = billing.funded_orders(book, available, cost)
        max_cost = cost(order)
        funded = max_cost <= available.get(buyer_id, 0) - sum(
            cost(o) for o in funded_book if o.buyer_id == buyer_id
        )
        market = Market(
            grid,
            first,
            n_slots,
            sites,
            pools,
            offers,
            (*funded_book, order),
            links=links,
            delay_fen=settings.delay_fen,
        )
        if adjust is not None:
            market = adjust(market)
        result = clear(market, ClearingOptions(time_limit_s=settings.quote_time_limit_s))
    finally:
        gate.release()
    pool_of = {p.id: p for p in pools}
    mine = sorted(
        (a for a in result.allocations if a.order_id == order_id), key=lambda a: (a.slot, a.pool_id)
    )
    gpu_slots = sum(a.gpus for a in mine)
    capacity_fen = sum(a.price_fen * a.gpus * result.slot_hours for a in mine)
    transfer_fen = result.transfer_fen(order_id)
    gpu_hours = gpu_slots * result.slot_hours
    return {
        "indicative": True,
        "note": INDICATIVE
        + (
            ""
            if funded
            else "; the buyer's available money does not cover this order's "
            "maximum cost, so the real clearing would leave it out"
        ),
        "computed_at": now,
        "first_slot": first,
        "n_slots": n_slots,
        "status": str(result.status),
        "method": result.method,
        "gap": result.gap,
        "funded": funded,
        "max_cost_fen": max_cost,
        "gpu_slots": gpu_slots,
        "gpu_hours": gpu_hours,
        "capacity_fen": capacity_fen,
        "transfer_fen": transfer_fen,
        "total_fen": capacity_fen + transfer_fen,
        "mean_price_fen": capacity_fen // gpu_hours if gpu_hours else None,
        "rejected": order_id in result.rejected_gangs,
        "allocations": [
            {
                "pool_id": a.pool_id,
                "site_id": pool_of[a.pool_id].site_id,
                "gpu_class": pool_of[a.pool_id].gpu_class,
                "slot": a.slot,
                "gpus": a.gpus,
                "price_fen": a.price_fen,
            }
            for a in mine
        ],
        "book_orders": len(funded_book),
        "book_offers": len(offers),
    }


# -- depth ---------------------------------------------------------------------------------------


def depth(
    s: Session,
    settings: ApiSettings,
    now: int,
    pool_id: str | None,
    first: int,
    end: int,
    adjust: MarketHook | None = None,
) -> list[dict[str, Any]]:
    """Open capacity by reserve price per pool and slot of ``[first, end)``: the offers' GPUs
    less what clearings sold, with the reserves the clearing would use (``adjust``: the
    energy model's carbon price), summed per price level, cheapest first."""
    cap = Capacity(s)
    sites, pools = tuple(cap.sites()), tuple(cap.pools())
    silent = set(Heartbeats(s).silent(now, settings.agent_grace_s))
    offers = tuple(
        o
        for o in _remaining_offers(s, first, end)
        if o.provider_id not in silent and (pool_id is None or o.pool_id == pool_id)
    )
    market = Market(settings.grid, first, end - first, sites, pools, offers, ())
    if adjust is not None:
        market = adjust(market)
    levels: dict[tuple[str, int], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for o in market.offers:
        for i, (g, r) in enumerate(zip(o.gpus, o.reserve_fen, strict=True)):
            t = o.start_slot + i
            if g > 0 and first <= t < end:
                levels[(o.pool_id, t)][r] += g
    pool_of = {p.id: p for p in pools}
    out = []
    for (pid, t), by_price in sorted(levels.items()):
        total, rows = 0, []
        for r in sorted(by_price):
            total += by_price[r]
            rows.append({"reserve_fen": r, "gpus": by_price[r], "cumulative_gpus": total})
        p = pool_of[pid]
        out.append(
            {
                "pool_id": pid,
                "site_id": p.site_id,
                "gpu_class": p.gpu_class,
                "slot": t,
                "offered_gpus": total,
                "levels": rows,
            }
        )
    return out


# -- price index ---------------------------------------------------------------------------------


def day_of(d: date) -> int:
    """Days since 1970-01-01 (the index's calendar days: China Standard Time)."""
    return (d - date(1970, 1, 1)).days


def date_of(day: int) -> date:
    return date(1970, 1, 1) + timedelta(days=day)


def today(now: int) -> date:
    """The calendar day (China Standard Time) of unix time ``now``."""
    return datetime.fromtimestamp(now + CST_S, UTC).date()


def index_span(
    now: int, first: date | None, last: date | None, days: int = 30
) -> tuple[date, date]:
    """The inclusive span of days of an index request (default: the last ``days`` days up
    to today), checked."""
    to = last or today(now)
    frm = first or to - timedelta(days=days - 1)
    if to < frm:
        raise ValidationError(
            f"{to.isoformat()} is before from ({frm.isoformat()})", field="query.to", fix="widen"
        )
    if (to - frm).days + 1 > MAX_INDEX_DAYS:
        raise ValidationError(
            f"spans {(to - frm).days + 1} days; at most {MAX_INDEX_DAYS}",
            field="query.to",
            fix="ask for a year at a time",
        )
    return frm, to


def price_index(
    s: Session,
    settings: ApiSettings,
    first: date,
    last: date,
    site_id: str | None = None,
    gpu_class: str | None = None,
) -> list[dict[str, Any]]:
    """The daily index rows of the inclusive day span (:data:`INDEX_RULE`), by site, class
    and day. Slots belong to the day (China Standard Time) their start falls in."""
    grid = settings.grid
    start = day_of(first) * DAY_S - CST_S - grid.epoch  # seconds after the epoch
    end = (day_of(last) + 1) * DAY_S - CST_S - grid.epoch
    lo = (start + grid.slot_seconds - 1) // grid.slot_seconds
    hi = (end + grid.slot_seconds - 1) // grid.slot_seconds
    lo, hi = max(lo, 0), max(hi, 0)
    day = (OfferFillRow.slot * grid.slot_seconds + (grid.epoch + CST_S)) // DAY_S
    gpu_hours = OfferFillRow.gpus * ClearingRow.slot_hours
    q = (
        select(
            PoolRow.site_id,
            PoolRow.gpu_class,
            day.label("day"),
            func.sum(OfferFillRow.price_fen * gpu_hours),
            func.sum(gpu_hours),
            func.min(OfferFillRow.price_fen),
            func.max(OfferFillRow.price_fen),
        )
        .join(PoolRow, PoolRow.id == OfferFillRow.pool_id)
        .join(ClearingRow, ClearingRow.id == OfferFillRow.clearing_id)
        .where(
            OfferFillRow.slot >= lo,
            OfferFillRow.slot < hi,
            OfferFillRow.gpus > 0,
            ClearingRow.status != str(ClearingStatus.FAILED),
        )
        .group_by(PoolRow.site_id, PoolRow.gpu_class, day)
        .order_by(PoolRow.site_id, PoolRow.gpu_class, day)
    )
    if site_id is not None:
        q = q.where(PoolRow.site_id == site_id)
    if gpu_class is not None:
        try:
            name = catalogue_class(gpu_class).name
        except ValidationError as err:
            raise ValidationError(err.message, field="query.gpu_class", fix=err.fix) from None
        q = q.where(PoolRow.gpu_class == name)
    out = []
    for site, cls, d, turnover, volume, low, high in s.execute(q):
        volume, turnover = int(volume), int(turnover)
        if volume <= 0:
            continue
        out.append(
            {
                "site_id": site,
                "gpu_class": cls,
                "date": date_of(int(d)).isoformat(),
                "index_fen": turnover // volume,
                "gpu_hours": volume,
                "turnover_fen": turnover,
                "low_fen": int(low),
                "high_fen": int(high),
            }
        )
    return out


def known_site(s: Session, site_id: str) -> bool:
    return s.get(SiteRow, site_id) is not None
