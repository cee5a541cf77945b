"""Repositories: typed reads and writes of the exchange's objects, in core types.

Every repository works inside a caller's :class:`~sqlalchemy.orm.Session`, so a service
composes several writes in one transaction (``with db.session_scope() as s: ...``, or
:meth:`~suangu.store.db.Database.transaction` to retry on contention). Rows become core frozen
dataclasses (and back) only in the ``_to_*`` / ``_*_row`` functions of this module.

Writes are idempotent where a client may retry: creating an object whose id exists with the
same fields returns it; with other fields raises :class:`~suangu.store.errors.Conflict`. The
database's unique keys are the final word: a concurrent duplicate insert raises
``IntegrityError``, and the retried transaction then finds the first row.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import (
    CursorResult,
    Insert,
    Result,
    Table,
    case,
    delete,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from suangu.core import gpus as gpu_catalogue
from suangu.core.billing import RESERVED_MEMBER_IDS, pool_providers, reserved_member_id
from suangu.core.errors import UnknownReferenceError, ValidationError
from suangu.core.lifecycle import (
    CLEARABLE,
    LEASE_TRANSITIONS,
    delivered_slots,
    is_filled,
    steps,
    work_done,
)
from suangu.core.metering import CLOCK_TOLERANCE_S, LeaseWindow, ReadingSource, check_reading
from suangu.core.text import unsafe_char
from suangu.core.types import (
    Allocation,
    ClearingResult,
    ClearingStatus,
    Link,
    LinkPrice,
    Offer,
    OfferFill,
    Order,
    OrderKind,
    Pool,
    PoolPrice,
    Site,
    TimeGrid,
    Transfer,
)
from suangu.store.db import TransientConflict
from suangu.store.errors import Conflict, InvalidState, NotFound, Unauthorized
from suangu.store.models import (
    AgentHeartbeatRow,
    ApiKeyRow,
    ClearingRow,
    DataTransferRow,
    IdempotencyRow,
    LeaseRow,
    LeaseState,
    LinkPriceRow,
    LinkRow,
    MemberRow,
    MeterReadingRow,
    OfferFillRow,
    OfferRow,
    OfferSlotRow,
    OfferStatus,
    OrderRow,
    OrderStatus,
    PlannedAllocationRow,
    PoolRow,
    PriceRow,
    Role,
    SiteRow,
)

T = TypeVar("T")

#: API keys look like ``sg_<prefix>_<secret>``; the prefix finds the row, the hash proves it.
KEY_SCHEME = "sg"
MAX_PAGE = 500


# -- records that have no core type ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    name: str
    role: Role
    created_at: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key: never the secret, only what identifies it."""

    id: str
    prefix: str
    member_id: str
    role: Role
    label: str
    created_at: int
    revoked_at: int | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A key just created: ``token`` is shown to its owner once and never stored."""

    key: ApiKey
    token: str


@dataclass(frozen=True, slots=True)
class OrderRecord:
    order: Order
    status: OrderStatus
    submitted_at: int


@dataclass(frozen=True, slots=True)
class OfferRecord:
    offer: Offer
    status: OfferStatus
    created_at: int


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_cursor`` back for the next (``None``: the last)."""

    items: tuple[T, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ClearingRecord:
    id: str
    run_at: int
    first_slot: int
    n_slots: int
    result: ClearingResult


@dataclass(frozen=True, slots=True)
class Lease:
    """One allocation as a contract, with its state and the hold that pays for it."""

    id: str
    clearing_id: str
    allocation: Allocation
    provider_id: str | None
    state: LeaseState
    hold_transfer_id: str | None
    #: GPUs of the lease that firm demand preempted (:mod:`suangu.core.products`).
    preempted_gpus: int = 0
    #: GPUs of ``gpus`` that its buyer resold (:mod:`suangu.core.products`).
    resold_gpus: int = 0


@dataclass(frozen=True, slots=True)
class MeterReading:
    idempotency_key: str
    lease_id: str
    interval_start: int
    interval_end: int
    gpu_seconds: int
    energy_wh: int
    recorded_at: int
    source: ReadingSource = ReadingSource.NOMINAL


#: Order statuses a clearing may allocate to.
_CLEARABLE = tuple(sorted(str(x) for x in CLEARABLE))


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE touched."""
    return int(cast(CursorResult[Any], result).rowcount)


def _enum(kind: type[T], value: object, field: str) -> T:
    try:
        return kind(value)  # type: ignore[call-arg]
    except ValueError:
        allowed = ", ".join(str(v) for v in kind)  # type: ignore[attr-defined]
        raise ValidationError(
            f"unknown value {value!r}", field=field, fix=f"use {allowed}"
        ) from None


def _same_or_conflict(existing: object, new: object, what: str, id: str) -> None:
    if existing != new:
        raise Conflict(
            f"{what} {id!r} exists with other fields",
            field="id",
            fix=f"use a new id, or resubmit the {what} exactly as first sent",
        )


def _not_found(what: str, id: str, field: str = "id") -> NotFound:
    return NotFound(f"no {what} {id!r}", field=field, fix=f"check the {what} id")


def insert_new(table: Table) -> dict[str, Insert]:
    """``INSERT ... ON CONFLICT (primary key) DO NOTHING RETURNING <key>`` by dialect name: a
    row whose key exists is skipped instead of failing the transaction, and returns nothing
    (psycopg reports no ``rowcount`` for it). Built once: executed with a dict of values."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    keys = list(table.primary_key.columns)
    names = [c.name for c in keys]
    return {
        "postgresql": pg_insert(table)
        .on_conflict_do_nothing(index_elements=names)
        .returning(*keys),
        "sqlite": sqlite_insert(table)
        .on_conflict_do_nothing(index_elements=names)
        .returning(*keys),
    }


def _require_member(s: Session, member_id: str, field: str, role: Role | None = None) -> None:
    row = s.get(MemberRow, member_id)
    if row is None:
        raise _not_found("member", member_id, field)
    if role is not None and row.role != role:
        raise InvalidState(
            f"member {member_id!r} is a {row.role}, not a {role}",
            field=field,
            fix=f"use a member with the {role} role",
        )


# -- members and API keys --------------------------------------------------------------------


def _to_member(row: MemberRow) -> Member:
    return Member(row.id, row.name, Role(row.role), row.created_at)


def _to_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        row.id, row.prefix, row.member_id, Role(row.role), row.label, row.created_at, row.revoked_at
    )


def to_member(row: MemberRow) -> Member:
    """A stored member row as a record (for listings that select rows themselves)."""
    return _to_member(row)


def to_key(row: ApiKeyRow) -> ApiKey:
    """A stored key row as a record (never the secret)."""
    return _to_key(row)


def hash_token(token: str) -> str:
    """sha256 (hex) of an API key: what the store keeps."""
    return hashlib.sha256(token.encode()).hexdigest()


class Members:
    """Members of the exchange and their API keys."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def create(self, member_id: str, name: str, role: Role | str, now: int) -> Member:
        if not member_id or not member_id.strip():
            raise ValidationError("must not be empty", field="id", fix="name the member")
        if unsafe_char(name) is not None or not name.strip():
            raise ValidationError(
                f"must be plain text, not empty, without control or bidirectional characters "
                f"(found {unsafe_char(name) or 'only spaces'})",
                field="name",
                fix="give the member's name as plain text",
            )
        if reserved_member_id(member_id):
            raise ValidationError(
                f"{member_id!r} is reserved for the exchange's internal accounts",
                field="id",
                fix="choose another member id (reserved: "
                + ", ".join(sorted(RESERVED_MEMBER_IDS))
                + ")",
            )
        member = Member(member_id, name, _enum(Role, role, "role"), now)
        existing = self.s.get(MemberRow, member_id)
        if existing is not None:
            old = _to_member(existing)
            _same_or_conflict((old.name, old.role), (member.name, member.role), "member", member_id)
            return old
        self.s.add(MemberRow(id=member_id, name=name, role=str(member.role), created_at=now))
        self.s.flush()
        return member

    def get(self, member_id: str) -> Member:
        row = self.s.get(MemberRow, member_id)
        if row is None:
            raise _not_found("member", member_id)
        return _to_member(row)

    def all(self, role: Role | None = None) -> list[Member]:
        q = select(MemberRow).order_by(MemberRow.id)
        if role is not None:
            q = q.where(MemberRow.role == str(role))
        return [_to_member(r) for r in self.s.scalars(q)]

    def create_key(self, member_id: str, now: int, *, label: str = "") -> NewApiKey:
        """A new key with the member's role; its token is in the result and nowhere else."""
        member = self.get(member_id)
        prefix = secrets.token_hex(6)
        token = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
        row = ApiKeyRow(
            id=f"key_{prefix}",
            prefix=prefix,
            secret_hash=hash_token(token),
            member_id=member.id,
            role=str(member.role),
            label=label,
            created_at=now,
            revoked_at=None,
        )
        self.s.add(row)
        self.s.flush()
        return NewApiKey(_to_key(row), token)

    def verify_key(self, token: str) -> tuple[ApiKey, Member]:
        """The key and member a bearer token belongs to; :class:`Unauthorized` otherwise."""
        scheme, _, rest = token.partition("_")
        prefix, _, secret = rest.partition("_")
        fail = Unauthorized(
            "unknown or revoked API key", field="authorization", fix="create a new key"
        )
        if scheme != KEY_SCHEME or not prefix or not secret:
            raise fail
        found = self.s.execute(
            select(ApiKeyRow, MemberRow)
            .join(MemberRow, MemberRow.id == ApiKeyRow.member_id)
            .where(ApiKeyRow.prefix == prefix)
        ).one_or_none()
        if found is None:
            raise fail
        row, member = found
        if not hmac.compare_digest(row.secret_hash, hash_token(token)):
            raise fail
        if row.revoked_at is not None:
            raise fail
        return _to_key(row), _to_member(member)

    def revoke_key(self, key_id: str, now: int) -> ApiKey:
        row = self.s.get(ApiKeyRow, key_id)
        if row is None:
            raise _not_found("API key", key_id)
        if row.revoked_at is None:
            row.revoked_at = now
            self.s.flush()
        return _to_key(row)

    def keys(self, member_id: str) -> list[ApiKey]:
        q = select(ApiKeyRow).where(ApiKeyRow.member_id == member_id).order_by(ApiKeyRow.id)
        return [_to_key(r) for r in self.s.scalars(q)]


# -- idempotency records ------------------------------------------------------------------------


class IdempotencyRecords:
    """The recorded responses of API writes (``suangu.api.idempotency`` reads and writes
    them; this is their upkeep)."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def purge(self, before: int, limit: int) -> int:
        """Delete up to ``limit`` records created before ``before``, oldest first; how many."""
        t = IdempotencyRow
        old = (
            select(t.member_id, t.key)
            .where(t.created_at < before)
            .order_by(t.created_at)
            .limit(limit)
        )
        table = cast(Table, t.__table__)
        done = self.s.connection().execute(
            delete(table).where(tuple_(table.c.member_id, table.c.key).in_(old))
        )
        return rowcount(done)

    def count(self) -> int:
        return int(self.s.scalar(select(func.count()).select_from(IdempotencyRow)) or 0)


# -- sites, pools, offers -----------------------------------------------------------------------


def _to_site(row: SiteRow) -> Site:
    return Site(
        row.id, row.name, row.province, row.region, row.lat, row.lon, row.pue, row.latency_ms
    )


def offer_record(row: OfferRow) -> OfferRecord:
    """The record of a stored offer row (for listings that select rows themselves)."""
    return OfferRecord(_to_offer(row), OfferStatus(row.status), row.created_at)


def _to_offer(row: OfferRow) -> Offer:
    return Offer(
        row.id,
        row.provider_id,
        row.pool_id,
        row.start_slot,
        tuple(x.gpus for x in row.slots),
        tuple(x.reserve_fen for x in row.slots),
    )


class Capacity:
    """Sites, pools and offers."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def add_site(self, site: Site, provider_id: str | None = None) -> Site:
        if provider_id is not None:
            _require_member(self.s, provider_id, "provider_id", Role.PROVIDER)
        existing = self.s.get(SiteRow, site.id)
        if existing is not None:
            _same_or_conflict(
                (_to_site(existing), existing.provider_id), (site, provider_id), "site", site.id
            )
            return _to_site(existing)
        self.s.add(
            SiteRow(
                id=site.id,
                name=site.name,
                province=site.province,
                region=site.region,
                lat=site.lat,
                lon=site.lon,
                pue=site.pue,
                latency_ms=dict(site.latency_ms),
                provider_id=provider_id,
            )
        )
        self.s.flush()
        return site

    def site(self, site_id: str) -> Site:
        row = self.s.get(SiteRow, site_id)
        if row is None:
            raise _not_found("site", site_id)
        return _to_site(row)

    def sites(self) -> list[Site]:
        return [_to_site(r) for r in self.s.scalars(select(SiteRow).order_by(SiteRow.id))]

    def add_pool(self, pool: Pool) -> Pool:
        if self.s.get(SiteRow, pool.site_id) is None:
            raise _not_found("site", pool.site_id, "site_id")
        existing = self.s.get(PoolRow, pool.id)
        if existing is not None:
            old = Pool(existing.id, existing.site_id, existing.gpu_class)
            _same_or_conflict(old, pool, "pool", pool.id)
            return old
        self.s.add(PoolRow(id=pool.id, site_id=pool.site_id, gpu_class=pool.gpu_class))
        self.s.flush()
        return pool

    def pool(self, pool_id: str) -> Pool:
        row = self.s.get(PoolRow, pool_id)
        if row is None:
            raise _not_found("pool", pool_id)
        return Pool(row.id, row.site_id, row.gpu_class)

    def pools(self, site_id: str | None = None) -> list[Pool]:
        q = select(PoolRow).order_by(PoolRow.id)
        if site_id is not None:
            q = q.where(PoolRow.site_id == site_id)
        return [Pool(r.id, r.site_id, r.gpu_class) for r in self.s.scalars(q)]

    def add_offer(self, offer: Offer, now: int) -> OfferRecord:
        _require_member(self.s, offer.provider_id, "provider_id", Role.PROVIDER)
        if self.s.get(PoolRow, offer.pool_id) is None:
            raise _not_found("pool", offer.pool_id, "pool_id")
        existing = self.s.get(OfferRow, offer.id)
        if existing is not None:
            _same_or_conflict(_to_offer(existing), offer, "offer", offer.id)
            return self.offer(offer.id)
        row = OfferRow(
            id=offer.id,
            provider_id=offer.provider_id,
            pool_id=offer.pool_id,
            start_slot=offer.start_slot,
            status=str(OfferStatus.OPEN),
            created_at=now,
        )
        row.slots = [
            OfferSlotRow(slot=offer.start_slot + k, gpus=g, reserve_fen=r)
            for k, (g, r) in enumerate(zip(offer.gpus, offer.reserve_fen, strict=True))
        ]
        self.s.add(row)
        self.s.flush()
        return OfferRecord(offer, OfferStatus.OPEN, now)

    def offer(self, offer_id: str) -> OfferRecord:
        row = self.s.get(OfferRow, offer_id)
        if row is None:
            raise _not_found("offer", offer_id)
        return OfferRecord(_to_offer(row), OfferStatus(row.status), row.created_at)

    def open_offers(self, first_slot: int, end_slot: int) -> list[Offer]:
        """Open offers with at least one slot in ``[first_slot, end_slot)``, by id."""
        has_slot = (
            select(OfferSlotRow.offer_id)
            .where(OfferSlotRow.slot >= first_slot, OfferSlotRow.slot < end_slot)
            .distinct()
        )
        q = (
            select(OfferRow)
            .where(OfferRow.status == str(OfferStatus.OPEN), OfferRow.id.in_(has_slot))
            .order_by(OfferRow.id)
        )
        return [_to_offer(r) for r in self.s.scalars(q)]

    def withdraw_offer(self, offer_id: str, provider_id: str) -> OfferRecord:
        done = self.s.execute(
            update(OfferRow)
            .where(
                OfferRow.id == offer_id,
                OfferRow.provider_id == provider_id,
                OfferRow.status == str(OfferStatus.OPEN),
            )
            .values(status=str(OfferStatus.WITHDRAWN))
        )
        self.s.expire_all()  # re-read what the database holds now, not a cached row
        record = self.offer(offer_id)
        if record.offer.provider_id != provider_id:
            raise _not_found("offer", offer_id)
        if rowcount(done) == 0 and record.status is not OfferStatus.WITHDRAWN:
            raise InvalidState(f"offer {offer_id!r} is {record.status}", field="status")
        return record


# -- network ------------------------------------------------------------------------------------


def _to_link(row: LinkRow) -> Link:
    return Link(
        row.from_region, row.to_region, row.latency_ms, row.bandwidth_gbps, row.price_fen_per_gb
    )


class Links:
    """The network links between regions that clearings may move orders' data over."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def all(self) -> list[Link]:
        """Every link, by (from, to)."""
        q = select(LinkRow).order_by(LinkRow.from_region, LinkRow.to_region)
        return [_to_link(r) for r in self.s.scalars(q)]

    def get(self, from_region: str, to_region: str) -> Link:
        row = self.s.get(LinkRow, (from_region, to_region))
        if row is None:
            raise _not_found("link", f"{from_region}->{to_region}")
        return _to_link(row)

    def put(self, link: Link) -> tuple[Link, bool]:
        """Store ``link``, replacing the link between the same regions; ``(link, created)``."""
        row = self.s.get(LinkRow, link.key, populate_existing=True)
        created = row is None
        if row is None:
            row = LinkRow(from_region=link.from_region, to_region=link.to_region)
            self.s.add(row)
        row.latency_ms = float(link.latency_ms)
        row.bandwidth_gbps = float(link.bandwidth_gbps)
        row.price_fen_per_gb = link.price_fen_per_gb
        self.s.flush()
        return link, created

    def replace(self, links: Sequence[Link]) -> list[Link]:
        """Make ``links`` the whole network (links not named are removed); idempotent."""
        seen: set[tuple[str, str]] = set()
        for i, link in enumerate(links):
            if link.key in seen:
                raise ValidationError(
                    f"duplicate link {link.from_region} -> {link.to_region}",
                    field=f"links[{i}]",
                    fix="give each (from_region, to_region) pair once",
                )
            seen.add(link.key)
        self.s.execute(delete(LinkRow))
        _insert(
            self.s,
            LinkRow,
            [
                {
                    "from_region": x.from_region,
                    "to_region": x.to_region,
                    "latency_ms": float(x.latency_ms),
                    "bandwidth_gbps": float(x.bandwidth_gbps),
                    "price_fen_per_gb": x.price_fen_per_gb,
                }
                for x in links
            ],
        )
        self.s.expire_all()
        return self.all()


# -- orders -----------------------------------------------------------------------------------


def order_record(row: OrderRow) -> OrderRecord:
    """The record of a stored order row (for listings that select rows themselves)."""
    return _to_order(row)


def _to_order(row: OrderRow) -> OrderRecord:
    order = Order(
        id=row.id,
        buyer_id=row.buyer_id,
        kind=OrderKind(row.kind),
        gpus=row.gpus,
        release_slot=row.release_slot,
        deadline_slot=row.deadline_slot,
        limit_fen=row.limit_fen,
        gpu_hours=row.gpu_hours,
        duration_slots=row.duration_slots,
        gpu_classes=frozenset(row.gpu_classes),
        regions=frozenset(row.regions),
        provinces=frozenset(row.provinces),
        home=row.home,
        max_latency_ms=row.max_latency_ms,
        min_green_share=row.min_green_share,
        data_gb=row.data_gb,
        reference_class=row.reference_class,
        speed=row.speed or {},
        firm=bool(row.firm),
        interruptible=bool(row.interruptible),
        complete_or_nothing=bool(row.complete_or_nothing),
    )
    return OrderRecord(order, OrderStatus(row.status), row.submitted_at)


def order_values(order: Order, now: int) -> dict[str, Any]:
    """The column values of a new (``open``) order submitted at ``now``."""
    return dict(
        id=order.id,
        buyer_id=order.buyer_id,
        kind=str(order.kind),
        gpus=order.gpus,
        release_slot=order.release_slot,
        deadline_slot=order.deadline_slot,
        limit_fen=order.limit_fen,
        gpu_hours=order.gpu_hours,
        duration_slots=order.duration_slots,
        gpu_classes=sorted(order.gpu_classes),
        regions=sorted(order.regions),
        provinces=sorted(order.provinces),
        home=order.home,
        max_latency_ms=order.max_latency_ms,
        min_green_share=order.min_green_share,
        status=str(OrderStatus.OPEN),
        submitted_at=now,
        data_gb=order.data_gb,
        reference_class=order.reference_class,
        speed=dict(sorted(order.speed.items())),
        firm=order.firm,
        interruptible=order.interruptible,
        complete_or_nothing=order.complete_or_nothing,
    )


_ORDERS = cast(Table, OrderRow.__table__)
_INSERT_ORDER = insert_new(_ORDERS)


class Orders:
    """Buyers' orders."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def submit(self, order: Order, now: int, *, buyer_checked: bool = False) -> OrderRecord:
        """Store a new order (``open``); the same order again returns the stored one.

        One ``INSERT ... ON CONFLICT DO NOTHING``; only when the id exists is the stored
        order read and compared (another buyer's id is "taken", other fields a
        :class:`Conflict`). ``buyer_checked``: the caller knows that ``order.buyer_id`` is a
        buyer member (the API: the caller's key has the buyer role), so it is not read again.
        """
        if not buyer_checked:
            _require_member(self.s, order.buyer_id, "buyer_id", Role.BUYER)
        conn = self.s.connection()
        added = conn.execute(_INSERT_ORDER[conn.dialect.name], order_values(order, now))
        if added.first() is not None:
            return OrderRecord(order, OrderStatus.OPEN, now)
        existing = self.s.get(OrderRow, order.id, populate_existing=True)
        if existing is None:  # pragma: no cover - the insert met a row with this id
            raise TransientConflict(f"order {order.id!r} vanished")
        if existing.buyer_id != order.buyer_id:
            # Another buyer's id: say "taken" without saying whose (sealed bids).
            raise Conflict(f"order id {order.id!r} is taken", field="id", fix="choose another id")
        old = _to_order(existing)
        _same_or_conflict(old.order, order, "order", order.id)
        return old

    def get(self, order_id: str, buyer_id: str | None = None) -> OrderRecord:
        """The order; with ``buyer_id``, only if it is that buyer's (others see nothing)."""
        row = self.s.get(OrderRow, order_id)
        if row is None or (buyer_id is not None and row.buyer_id != buyer_id):
            raise _not_found("order", order_id)
        return _to_order(row)

    def lock(self, order_ids: Iterable[str]) -> None:
        """Lock the orders' rows until the transaction ends (in id order, so that two
        transactions never wait on each other; SQLite: a no-op, one writer at a time)."""
        ids = sorted(set(order_ids))
        for chunk in range(0, len(ids), 500):
            list(
                self.s.scalars(
                    select(OrderRow.id)
                    .where(OrderRow.id.in_(ids[chunk : chunk + 500]))
                    .order_by(OrderRow.id)
                    .with_for_update()
                )
            )

    def cancel(self, order_id: str, buyer_id: str) -> OrderRecord:
        """Cancel an open order (atomically: a clearing that got there first wins)."""
        self.get(order_id, buyer_id)
        done = self.s.execute(
            update(OrderRow)
            .where(OrderRow.id == order_id, OrderRow.status == str(OrderStatus.OPEN))
            .values(status=str(OrderStatus.CANCELLED))
        )
        self.s.expire_all()  # re-read what the database holds now, not a cached row
        record = self.get(order_id, buyer_id)
        if rowcount(done) == 0 and record.status is not OrderStatus.CANCELLED:
            raise InvalidState(
                f"order {order_id!r} is {record.status}: only open and partly filled "
                "orders can be cancelled",
                field="status",
                fix="nothing to cancel: a cleared order's leases run and settle as usual",
            )
        return record

    def open_orders(self, first_slot: int, end_slot: int) -> list[Order]:
        """Open orders whose window overlaps ``[first_slot, end_slot)``, by id."""
        q = (
            select(OrderRow)
            .where(
                OrderRow.status == str(OrderStatus.OPEN),
                OrderRow.release_slot < end_slot,
                OrderRow.deadline_slot > first_slot,
            )
            .order_by(OrderRow.id)
        )
        return [_to_order(r).order for r in self.s.scalars(q)]

    def requeue(self, order_id: str, status: OrderStatus) -> bool:
        """Put a cleared or partly filled order back into the market with ``status`` (one of
        its leases failed: :func:`~suangu.core.lifecycle.requeued_status`); whether it moved
        (compare-and-set: a cancelled or expired order stays so)."""
        done = self.s.execute(
            update(OrderRow)
            .where(
                OrderRow.id == order_id,
                OrderRow.status.in_([str(OrderStatus.CLEARED), str(OrderStatus.PARTIALLY)]),
            )
            .values(status=str(status))
        )
        return rowcount(done) > 0

    def expire(self, slot: int) -> int:
        """Mark open orders whose deadline is at or before ``slot`` expired; how many."""
        done = self.s.execute(
            update(OrderRow)
            .where(OrderRow.status == str(OrderStatus.OPEN), OrderRow.deadline_slot <= slot)
            .values(status=str(OrderStatus.EXPIRED))
        )
        return rowcount(done)


# -- clearings, prices, leases ----------------------------------------------------------------


def lease_id(clearing_id: str, a: Allocation) -> str:
    return f"{clearing_id}:{a.order_id}:{a.pool_id}:{a.slot}"


def lease_record(row: LeaseRow) -> Lease:
    """The lease of a stored row (for listings that select rows themselves)."""
    return _to_lease(row)


def _to_lease(row: LeaseRow) -> Lease:
    allocation = Allocation(
        row.order_id, row.buyer_id, row.pool_id, row.slot, row.gpus, row.price_fen
    )
    return Lease(
        row.id,
        row.clearing_id,
        allocation,
        row.provider_id,
        LeaseState(row.state),
        row.hold_transfer_id,
        row.preempted_gpus or 0,
        row.resold_gpus or 0,
    )


def _to_transfer(row: DataTransferRow) -> Transfer:
    return Transfer(
        row.order_id,
        row.buyer_id,
        row.from_region,
        row.to_region,
        row.gb,
        row.transfer_fen_per_gb,
        row.congestion_fen_per_gb,
        row.carrier_fen,
        row.congestion_fen,
    )


def _insert(s: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``model``'s table in one executemany (nothing for none)."""
    from sqlalchemy import insert

    if rows:
        s.execute(insert(model), rows)


class Clearings:
    """Clearing rounds with their prices, offer fills and leases."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def save(
        self,
        clearing_id: str,
        run_at: int,
        first_slot: int,
        n_slots: int,
        result: ClearingResult,
        *,
        hold_ids: Mapping[str, str] | None = None,
        providers: Mapping[str, str] | None = None,
        planned: Sequence[Allocation] = (),
    ) -> list[Lease]:
        """Store a clearing and everything it decided, in the caller's transaction.

        ``result`` is what became firm (:func:`suangu.core.lifecycle.commit`); ``planned`` the
        allocations beyond the firmness horizon, stored as the buyers' planned schedule.

        One lease per allocation; ``hold_ids`` maps order id -> its hold transfer (recorded
        in the same transaction or before); ``providers`` maps pool id -> provider (default:
        from the offer fills). Orders with allocations become ``cleared`` (all they asked
        for) or ``partially``. An id already used raises :class:`Conflict`.
        """
        if not clearing_id or ":" in clearing_id:
            raise ValidationError(
                f"must be a non-empty id without ':', got {clearing_id!r}",
                field="clearing_id",
                fix="use e.g. c-000123",
            )
        if self.s.get(ClearingRow, clearing_id) is not None:
            raise Conflict(
                f"clearing {clearing_id!r} is already stored", field="clearing_id", fix="new id"
            )
        by_pool = dict(providers) if providers is not None else pool_providers(result)
        holds = dict(hold_ids or {})
        self.s.add(
            ClearingRow(
                id=clearing_id,
                run_at=run_at,
                first_slot=first_slot,
                n_slots=n_slots,
                slot_hours=result.slot_hours,
                status=str(result.status),
                method=result.method,
                welfare_fen=result.welfare_fen,
                gap=result.gap,
                timings=dict(result.timings),
                message=result.message,
                rejected_gangs=list(result.rejected_gangs),
            )
        )
        self.s.flush()
        # Bulk inserts (one executemany per table): a clearing stores hundreds of rows.
        _insert(
            self.s,
            PriceRow,
            [
                {
                    "clearing_id": clearing_id,
                    "pool_id": p.pool_id,
                    "slot": p.slot,
                    "price_fen": p.price_fen,
                    "cleared_gpus": p.cleared_gpus,
                    "offered_gpus": p.offered_gpus,
                }
                for p in result.prices
                # A failed clearing found no allocation: its prices say nothing of the market.
                if result.status is not ClearingStatus.FAILED
            ],
        )
        _insert(
            self.s,
            OfferFillRow,
            [
                {
                    "clearing_id": clearing_id,
                    "offer_id": f.offer_id,
                    "slot": f.slot,
                    "provider_id": f.provider_id,
                    "pool_id": f.pool_id,
                    "gpus": f.gpus,
                    "price_fen": f.price_fen,
                    "reserve_fen": f.reserve_fen,
                }
                for f in result.fills
            ],
        )
        leases = [
            Lease(
                lease_id(clearing_id, a),
                clearing_id,
                a,
                by_pool.get(a.pool_id),
                LeaseState.SCHEDULED,
                holds.get(a.order_id),
            )
            for a in result.allocations
        ]
        _insert(
            self.s,
            LeaseRow,
            [
                {
                    "id": x.id,
                    "clearing_id": clearing_id,
                    "order_id": x.allocation.order_id,
                    "buyer_id": x.allocation.buyer_id,
                    "pool_id": x.allocation.pool_id,
                    "slot": x.allocation.slot,
                    "gpus": x.allocation.gpus,
                    "price_fen": x.allocation.price_fen,
                    "provider_id": x.provider_id,
                    "state": str(x.state),
                    "hold_transfer_id": x.hold_transfer_id,
                }
                for x in leases
            ],
        )
        _insert(
            self.s,
            PlannedAllocationRow,
            [
                {
                    "clearing_id": clearing_id,
                    "order_id": a.order_id,
                    "buyer_id": a.buyer_id,
                    "pool_id": a.pool_id,
                    "slot": a.slot,
                    "gpus": a.gpus,
                    "price_fen": a.price_fen,
                }
                for a in planned
            ],
        )
        _insert(
            self.s,
            LinkPriceRow,
            [
                {
                    "clearing_id": clearing_id,
                    "from_region": p.from_region,
                    "to_region": p.to_region,
                    "congestion_fen_per_gb": p.congestion_fen_per_gb,
                    "transfer_fen_per_gb": p.transfer_fen_per_gb,
                    "gb": float(p.gb),
                    "capacity_gb": float(p.capacity_gb),
                }
                for p in result.link_prices
            ],
        )
        _insert(
            self.s,
            DataTransferRow,
            [
                {
                    "clearing_id": clearing_id,
                    "order_id": t.order_id,
                    "from_region": t.from_region,
                    "to_region": t.to_region,
                    "buyer_id": t.buyer_id,
                    "gb": float(t.gb),
                    "transfer_fen_per_gb": t.transfer_fen_per_gb,
                    "congestion_fen_per_gb": t.congestion_fen_per_gb,
                    "carrier_fen": t.carrier_fen,
                    "congestion_fen": t.congestion_fen,
                }
                for t in result.transfers
            ],
        )
        self._mark_orders(result)
        return leases

    def transfers(
        self, *, clearing_id: str | None = None, order_id: str | None = None
    ) -> list[Transfer]:
        """The data transfers clearings decided, by clearing, order and link."""
        q = select(DataTransferRow)
        if clearing_id is not None:
            q = q.where(DataTransferRow.clearing_id == clearing_id)
        if order_id is not None:
            q = q.where(DataTransferRow.order_id == order_id)
        q = q.order_by(
            DataTransferRow.clearing_id,
            DataTransferRow.order_id,
            DataTransferRow.from_region,
            DataTransferRow.to_region,
        )
        return [_to_transfer(r) for r in self.s.scalars(q)]

    def transfer_charges(
        self, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[int, int]]:
        """``(carrier fen, congestion fen)`` charged to each ``(clearing id, order id)`` of
        ``pairs`` for moving its data (pairs without transfers are left out)."""
        wanted = set(pairs)
        if not wanted:
            return {}
        out: dict[tuple[str, str], tuple[int, int]] = {}
        q = (
            select(
                DataTransferRow.clearing_id,
                DataTransferRow.order_id,
                func.sum(DataTransferRow.carrier_fen),
                func.sum(DataTransferRow.congestion_fen),
            )
            .where(
                DataTransferRow.clearing_id.in_(sorted({c for c, _ in wanted})),
                DataTransferRow.order_id.in_(sorted({o for _, o in wanted})),
            )
            .group_by(DataTransferRow.clearing_id, DataTransferRow.order_id)
        )
        for cid, oid, carrier, congestion in self.s.execute(q):
            if (cid, oid) in wanted:
                out[(cid, oid)] = (int(carrier), int(congestion))
        return out

    def failed_providers(self, order_ids: Iterable[str]) -> dict[str, set[str]]:
        """``order id -> providers`` whose leases of the order failed (the provider or its
        silent agent failed them)."""
        ids = sorted(set(order_ids))
        out: dict[str, set[str]] = defaultdict(set)
        for chunk in range(0, len(ids), 500):
            q = (
                select(LeaseRow.order_id, LeaseRow.provider_id)
                .where(LeaseRow.order_id.in_(ids[chunk : chunk + 500]), LeaseRow.failed.is_(True))
                .distinct()
            )
            for order_id, provider_id in self.s.execute(q):
                if provider_id is not None:
                    out[order_id].add(provider_id)
        return dict(out)

    def held_work(
        self, order_ids: Iterable[str], slot_hours: int
    ) -> dict[str, list[tuple[str, int, int]]]:
        """What the orders' leases of every clearing so far hold: ``order id -> [(GPU class,
        GPU-slots, last slot)]``. A failed lease counts only the whole GPU-slots its readings
        metered (:func:`~suangu.core.lifecycle.delivered_slots`) and holds no slot (last slot
        -1): the work it did not deliver is not done."""
        ids = sorted(set(order_ids))
        out: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
        failed: list[tuple[str, str, str, int]] = []
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            for order_id, gpu_class, n, last in self.s.execute(
                select(
                    LeaseRow.order_id,
                    PoolRow.gpu_class,
                    func.sum(LeaseRow.gpus),
                    func.max(LeaseRow.slot),
                )
                .join(PoolRow, PoolRow.id == LeaseRow.pool_id)
                .where(LeaseRow.order_id.in_(part), LeaseRow.failed.is_(False))
                .group_by(LeaseRow.order_id, PoolRow.gpu_class)
            ):
                out[order_id].append((gpu_class, int(n), int(last)))
            failed += [
                (lid, oid, c, int(g))
                for lid, oid, c, g in self.s.execute(
                    select(LeaseRow.id, LeaseRow.order_id, PoolRow.gpu_class, LeaseRow.gpus)
                    .join(PoolRow, PoolRow.id == LeaseRow.pool_id)
                    .where(LeaseRow.order_id.in_(part), LeaseRow.failed.is_(True))
                )
            ]
        if failed:
            metered = Meters(self.s).totals([lid for lid, _, _, _ in failed])
            for lid, order_id, gpu_class, gpus in failed:
                n = delivered_slots(gpus, slot_hours * 3600, metered.get(lid, (0, 0))[0])
                if n > 0:
                    out[order_id].append((gpu_class, n, -1))
        return dict(out)

    def _mark_orders(self, result: ClearingResult) -> None:
        # GPU-slots of every clearing so far (a partly filled order is cleared again later),
        # per GPU class (orders with speeds count their work in reference GPU-hours); a
        # failed lease counts only what it delivered.
        ids = sorted({a.order_id for a in result.allocations})
        if not ids:
            return
        got = {
            o: [(c, n) for c, n, _ in held]
            for o, held in self.held_work(ids, result.slot_hours).items()
        }
        rows = {r.id: r for r in self.s.scalars(select(OrderRow).where(OrderRow.id.in_(ids)))}
        by_status: dict[OrderStatus, list[str]] = {}
        classes: list[str] | None = None
        hours = result.slot_hours
        for order_id in ids:
            row = rows.get(order_id)
            if row is None:  # pragma: no cover - the lease's foreign key refused it already
                raise _not_found("order", order_id, "allocations.order_id")
            order = _to_order(row).order
            mine = got.get(order_id, [])
            if (order.reference_class or order.speed) and classes is None:
                classes = list(self.s.scalars(select(PoolRow.gpu_class).distinct()))
            filled = is_filled(
                order,
                work_done(order, mine, hours),
                sum(n for _, n in mine),
                steps(order, classes or [], hours),
                hours,
            )
            status = OrderStatus.CLEARED if filled else OrderStatus.PARTIALLY
            by_status.setdefault(status, []).append(order_id)
        for status, order_ids in sorted(by_status.items()):
            # Compare-and-set: an order cancelled since the clearing read it is not sold.
            done = self.s.execute(
                update(OrderRow)
                .where(OrderRow.id.in_(order_ids), OrderRow.status.in_(_CLEARABLE))
                .values(status=str(status))
                .execution_options(synchronize_session=False)
            )
            if rowcount(done) != len(order_ids):
                raise Conflict(
                    "an order was cancelled or expired after the clearing read it",
                    field="allocations.order_id",
                    fix="clear again with the open orders",
                )

    def get(self, clearing_id: str) -> ClearingRecord:
        row = self.s.get(ClearingRow, clearing_id)
        if row is None:
            raise _not_found("clearing", clearing_id)
        prices = self.s.scalars(
            select(PriceRow)
            .where(PriceRow.clearing_id == clearing_id)
            .order_by(PriceRow.pool_id, PriceRow.slot)
        )
        fills = self.s.scalars(
            select(OfferFillRow)
            .where(OfferFillRow.clearing_id == clearing_id)
            .order_by(OfferFillRow.offer_id, OfferFillRow.slot)
        )
        leases = self.leases(clearing_id=clearing_id)
        result = ClearingResult(
            status=ClearingStatus(row.status),
            method=row.method,
            allocations=tuple(x.allocation for x in leases),
            fills=tuple(
                OfferFill(
                    f.offer_id, f.provider_id, f.pool_id, f.slot, f.gpus, f.price_fen, f.reserve_fen
                )
                for f in fills
            ),
            prices=tuple(
                PoolPrice(p.pool_id, p.slot, p.price_fen, p.cleared_gpus, p.offered_gpus)
                for p in prices
            ),
            welfare_fen=row.welfare_fen,
            timings=dict(row.timings),
            message=row.message,
            rejected_gangs=tuple(row.rejected_gangs),
            slot_hours=row.slot_hours,
            gap=row.gap,
            link_prices=tuple(
                LinkPrice(
                    p.from_region,
                    p.to_region,
                    p.congestion_fen_per_gb,
                    p.transfer_fen_per_gb,
                    p.gb,
                    p.capacity_gb,
                )
                for p in self.s.scalars(
                    select(LinkPriceRow)
                    .where(LinkPriceRow.clearing_id == clearing_id)
                    .order_by(LinkPriceRow.from_region, LinkPriceRow.to_region)
                )
            ),
            transfers=tuple(self.transfers(clearing_id=clearing_id)),
        )
        return ClearingRecord(row.id, row.run_at, row.first_slot, row.n_slots, result)

    def latest(self) -> ClearingRecord | None:
        row_id = self.s.scalars(
            select(ClearingRow.id).order_by(ClearingRow.run_at.desc(), ClearingRow.id.desc())
        ).first()
        return None if row_id is None else self.get(row_id)

    def prices(self, pool_id: str, first_slot: int, end_slot: int) -> list[PoolPrice]:
        """The latest clearing's price of ``pool_id`` for each slot in the range (a failed
        clearing publishes no prices)."""
        published = ClearingRow.status != str(ClearingStatus.FAILED)
        latest = (
            select(PriceRow.slot, func.max(ClearingRow.run_at).label("run_at"))
            .join(ClearingRow, ClearingRow.id == PriceRow.clearing_id)
            .where(PriceRow.pool_id == pool_id, PriceRow.slot >= first_slot, published)
            .where(PriceRow.slot < end_slot)
            .group_by(PriceRow.slot)
            .subquery()
        )
        q = (
            select(PriceRow)
            .join(ClearingRow, ClearingRow.id == PriceRow.clearing_id)
            .join(
                latest,
                (latest.c.slot == PriceRow.slot) & (latest.c.run_at == ClearingRow.run_at),
            )
            .where(PriceRow.pool_id == pool_id, published)
            .order_by(PriceRow.slot, ClearingRow.id.desc())
        )
        out: dict[int, PoolPrice] = {}
        for p in self.s.scalars(q):
            out.setdefault(
                p.slot, PoolPrice(p.pool_id, p.slot, p.price_fen, p.cleared_gpus, p.offered_gpus)
            )
        return list(out.values())

    def leases(
        self,
        *,
        clearing_id: str | None = None,
        order_id: str | None = None,
        buyer_id: str | None = None,
        provider_id: str | None = None,
        state: LeaseState | None = None,
    ) -> list[Lease]:
        q = select(LeaseRow)
        for column, value in (
            (LeaseRow.clearing_id, clearing_id),
            (LeaseRow.order_id, order_id),
            (LeaseRow.buyer_id, buyer_id),
            (LeaseRow.provider_id, provider_id),
            (LeaseRow.state, None if state is None else str(state)),
        ):
            if value is not None:
                q = q.where(column == value)
        q = q.order_by(LeaseRow.slot, LeaseRow.order_id, LeaseRow.pool_id, LeaseRow.clearing_id)
        return [_to_lease(r) for r in self.s.scalars(q)]

    def planned(self, order_id: str) -> list[Allocation]:
        """The order's planned schedule: what the latest clearing that served or planned it
        planned beyond its firmness horizon (empty once a clearing made the rest firm)."""
        touched = (
            select(LeaseRow.clearing_id.label("cid"))
            .where(LeaseRow.order_id == order_id)
            .union(
                select(PlannedAllocationRow.clearing_id.label("cid")).where(
                    PlannedAllocationRow.order_id == order_id
                )
            )
            .subquery()
        )
        latest = self.s.execute(
            select(ClearingRow.id)
            .where(ClearingRow.id.in_(select(touched.c.cid)))
            .order_by(ClearingRow.run_at.desc(), ClearingRow.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        if latest is None:
            return []
        rows = self.s.scalars(
            select(PlannedAllocationRow)
            .where(
                PlannedAllocationRow.order_id == order_id,
                PlannedAllocationRow.clearing_id == latest,
            )
            .order_by(PlannedAllocationRow.slot, PlannedAllocationRow.pool_id)
        )
        return [
            Allocation(r.order_id, r.buyer_id, r.pool_id, r.slot, r.gpus, r.price_fen) for r in rows
        ]

    def lease(self, lease_id: str) -> Lease:
        row = self.s.get(LeaseRow, lease_id)
        if row is None:
            raise _not_found("lease", lease_id)
        return _to_lease(row)

    def move_lease(self, lease_id: str, to: LeaseState) -> Lease:
        """Move a lease to state ``to`` if allowed from its state (atomic compare-and-set)."""
        current = self.lease(lease_id)
        if current.state is to:
            return current
        if to not in LEASE_TRANSITIONS[current.state]:
            raise InvalidState(
                f"lease {lease_id!r} cannot go from {current.state} to {to}",
                field="state",
                fix="follow scheduled -> running -> completed|failed -> settled",
            )
        done = self.s.execute(
            update(LeaseRow)
            .where(LeaseRow.id == lease_id, LeaseRow.state == str(current.state))
            .values(state=str(to), **({"failed": True} if to is LeaseState.FAILED else {}))
        )
        if rowcount(done) == 0:
            raise Conflict(f"lease {lease_id!r} changed meanwhile", field="state", fix="retry")
        return self.lease(lease_id)

    def lease_windows(
        self, lease_ids: Iterable[str], grid: TimeGrid, max_pue: float
    ) -> dict[str, LeaseWindow]:
        """What bounds each lease's readings (:class:`~suangu.core.metering.LeaseWindow`):
        its slot on ``grid``, its GPUs, the board power of its pool's class (the catalogue's
        highest for a class it does not list) and max(site PUE, ``max_pue``)."""
        ids = sorted(set(lease_ids))
        out: dict[str, LeaseWindow] = {}
        for chunk in range(0, len(ids), 500):
            q = (
                select(LeaseRow.id, LeaseRow.slot, LeaseRow.gpus, PoolRow.gpu_class, SiteRow.pue)
                .join(PoolRow, PoolRow.id == LeaseRow.pool_id)
                .join(SiteRow, SiteRow.id == PoolRow.site_id)
                .where(LeaseRow.id.in_(ids[chunk : chunk + 500]))
            )
            for lease_id, slot, gpus, cls, pue in self.s.execute(q):
                out[lease_id] = LeaseWindow(
                    grid.slot_start(slot),
                    grid.slot_start(slot + 1),
                    gpus,
                    _board_power_w(cls),
                    max(float(pue), max_pue),
                )
        return out


# -- meter readings ---------------------------------------------------------------------------


def _board_power_w(name: str) -> int:
    try:
        return gpu_catalogue.gpu_class(name).board_power_w
    except UnknownReferenceError:
        return max(g.board_power_w for g in gpu_catalogue.CATALOGUE.values())


def _to_reading(row: MeterReadingRow) -> MeterReading:
    return MeterReading(
        row.idempotency_key,
        row.lease_id,
        row.interval_start,
        row.interval_end,
        row.gpu_seconds,
        row.energy_wh,
        row.recorded_at,
        ReadingSource(row.source),
    )


class Meters:
    """Metered use of leases."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def record(
        self,
        reading: MeterReading,
        window: LeaseWindow,
        *,
        tolerance_s: int = CLOCK_TOLERANCE_S,
        prefix: str = "",
    ) -> tuple[MeterReading, bool]:
        """Store a reading once: ``(reading, True)`` when new, ``(first reading, False)`` for a
        retry. The same key with other values raises :class:`Conflict`; a new reading must be
        possible for its lease (:func:`suangu.core.metering.check_reading`, with
        ``reading.recorded_at`` as the market clock's now and ``window`` from
        :meth:`Clearings.lease_windows`). Concurrent retries race on the unique key: run this
        in ``db.transaction(..., retry_integrity=True)``."""
        if not reading.idempotency_key:
            raise ValidationError(
                "must not be empty", field=f"{prefix}id", fix="give every reading an id"
            )
        lease = self.s.get(LeaseRow, reading.lease_id)
        if lease is None:
            raise _not_found("lease", reading.lease_id, "lease_id")
        existing = self.s.scalars(
            select(MeterReadingRow).where(
                MeterReadingRow.idempotency_key == reading.idempotency_key
            )
        ).one_or_none()
        if existing is not None:
            old = _to_reading(existing)
            _same_or_conflict(
                _without_time(old), _without_time(reading), "meter reading", old.idempotency_key
            )
            return old, False
        check_reading(
            reading.interval_start,
            reading.interval_end,
            reading.gpu_seconds,
            reading.energy_wh,
            window,
            reading.recorded_at,
            self.intervals([reading.lease_id]).get(reading.lease_id, []),
            tolerance_s=tolerance_s,
            prefix=prefix,
        )
        self.s.add(
            MeterReadingRow(
                idempotency_key=reading.idempotency_key,
                lease_id=reading.lease_id,
                interval_start=reading.interval_start,
                interval_end=reading.interval_end,
                gpu_seconds=reading.gpu_seconds,
                energy_wh=reading.energy_wh,
                recorded_at=reading.recorded_at,
                source=str(reading.source),
            )
        )
        self.s.flush()
        return reading, True

    def intervals(self, lease_ids: Iterable[str]) -> dict[str, list[tuple[int, int]]]:
        """``lease id -> [(interval_start, interval_end), ...]`` of its stored readings."""
        out: dict[str, list[tuple[int, int]]] = defaultdict(list)
        ids = sorted(set(lease_ids))
        for chunk in range(0, len(ids), 500):
            for lease_id, start, end in self.s.execute(
                select(
                    MeterReadingRow.lease_id,
                    MeterReadingRow.interval_start,
                    MeterReadingRow.interval_end,
                ).where(MeterReadingRow.lease_id.in_(ids[chunk : chunk + 500]))
            ):
                out[lease_id].append((int(start), int(end)))
        return dict(out)

    def readings(self, lease_id: str) -> list[MeterReading]:
        q = (
            select(MeterReadingRow)
            .where(MeterReadingRow.lease_id == lease_id)
            .order_by(MeterReadingRow.interval_start, MeterReadingRow.id)
        )
        return [_to_reading(r) for r in self.s.scalars(q)]

    def totals(self, lease_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
        """``lease id -> (GPU-seconds, Wh)`` summed over its readings (missing: no readings)."""
        ids = list(lease_ids)
        q = (
            select(
                MeterReadingRow.lease_id,
                func.sum(MeterReadingRow.gpu_seconds),
                func.sum(MeterReadingRow.energy_wh),
            )
            .where(MeterReadingRow.lease_id.in_(ids))
            .group_by(MeterReadingRow.lease_id)
        )
        return {lid: (int(g), int(e)) for lid, g, e in self.s.execute(q)}


def _without_time(r: MeterReading) -> tuple[object, ...]:
    return (r.lease_id, r.interval_start, r.interval_end, r.gpu_seconds, r.energy_wh, r.source)


# -- agents' heartbeats ---------------------------------------------------------------------------


#: The agent name of a heartbeat that names none (one agent per provider).
DEFAULT_AGENT = "default"


class Heartbeats:
    """Providers' agents' heartbeats (:class:`~suangu.store.models.AgentHeartbeatRow`): one
    row per provider and agent name; each agent serves some of its provider's pools (or all)."""

    def __init__(self, s: Session) -> None:
        self.s = s

    def beat(
        self,
        provider_id: str,
        instance: str,
        now: int,
        grace_s: int,
        agent: str = DEFAULT_AGENT,
        pools: Sequence[str] | None = None,
    ) -> tuple[bool, int]:
        """Record a heartbeat of ``agent`` (serving ``pools``; None: all of the provider's);
        whether it is news (the first, or the first after more than ``grace_s`` of silence)
        and since when the agent has been heard without a gap."""
        served = None if pools is None else json.dumps(sorted(set(pools)))
        row = self.s.get(AgentHeartbeatRow, (provider_id, agent), with_for_update=True)
        if row is None:
            self.s.add(
                AgentHeartbeatRow(
                    provider_id=provider_id,
                    agent=agent,
                    pools=served,
                    instance=instance,
                    first_seen=now,
                    last_seen=now,
                )
            )
            self.s.flush()
            return True, now
        new = now - row.last_seen > grace_s
        if new:
            row.first_seen = now
        row.instance, row.last_seen, row.pools = instance, max(row.last_seen, now), served
        self.s.flush()
        return new, row.first_seen

    def lost_pools(self, now: int, grace_s: int) -> dict[str, set[str]]:
        """``provider -> pools`` that only agents silent for more than ``grace_s`` serve: a
        pool that a live agent of the same provider also serves is not lost."""
        rows = list(self.s.scalars(select(AgentHeartbeatRow)))
        quiet = {r.provider_id for r in rows if r.last_seen < now - grace_s}
        if not quiet:
            return {}
        every: dict[str, set[str]] = defaultdict(set)
        for pool_id, owner in self.s.execute(
            select(PoolRow.id, SiteRow.provider_id)
            .join(SiteRow, SiteRow.id == PoolRow.site_id)
            .where(SiteRow.provider_id.in_(sorted(quiet)))
        ):
            every[str(owner)].add(pool_id)
        out: dict[str, set[str]] = {}
        for provider_id in sorted(quiet):
            live: set[str] = set()
            dead: set[str] = set()
            for r in rows:
                if r.provider_id != provider_id:
                    continue
                served = set(json.loads(r.pools)) if r.pools is not None else every[provider_id]
                (dead if r.last_seen < now - grace_s else live).update(served)
            if dead - live:
                out[provider_id] = dead - live
        return out

    def silent(self, now: int, grace_s: int) -> list[str]:
        """Providers with pools that only agents silent for more than ``grace_s`` serve."""
        return sorted(self.lost_pools(now, grace_s))

    def open_leases(
        self, provider_ids: Iterable[str], pools: Iterable[str] | None = None
    ) -> list[Lease]:
        """The scheduled and running leases of ``provider_ids`` (only in ``pools``, when
        given), by slot."""
        ids = sorted(set(provider_ids))
        if not ids:
            return []
        q = select(LeaseRow).where(
            LeaseRow.provider_id.in_(ids),
            LeaseRow.state.in_([str(LeaseState.SCHEDULED), str(LeaseState.RUNNING)]),
        )
        if pools is not None:
            q = q.where(LeaseRow.pool_id.in_(sorted(set(pools))))
        return [_to_lease(r) for r in self.s.scalars(q.order_by(LeaseRow.slot, LeaseRow.id))]


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """How a provider delivered its leases: how many it had, how many failed (its provider
    or its agent failed them; a buyer's cancel is not counted), and the GPU-seconds its
    failed leases fell short of what they were sold for."""

    provider_id: str
    leases: int
    failed: int
    gpu_seconds_sold: int
    gpu_seconds_short: int

    @property
    def failure_rate(self) -> float:
        return self.failed / self.leases if self.leases else 0.0


def delivery_records(s: Session, provider_ids: Iterable[str]) -> list[DeliveryRecord]:
    """The delivery records of ``provider_ids`` (by id; a provider without leases has an
    empty one)."""
    ids = sorted(set(provider_ids))
    counts: dict[str, tuple[int, int, int]] = {}
    short: dict[str, int] = defaultdict(int)
    for chunk in range(0, len(ids), 500):
        part = ids[chunk : chunk + 500]
        sold = LeaseRow.gpus * ClearingRow.slot_hours * 3600
        for pid, n, k, g in s.execute(
            select(
                LeaseRow.provider_id,
                func.count(),
                func.sum(case((LeaseRow.failed.is_(True), 1), else_=0)),
                func.sum(sold),
            )
            .join(ClearingRow, ClearingRow.id == LeaseRow.clearing_id)
            .where(LeaseRow.provider_id.in_(part))
            .group_by(LeaseRow.provider_id)
        ):
            counts[str(pid)] = (int(n), int(k or 0), int(g or 0))
        failed = list(
            s.execute(
                select(LeaseRow.id, LeaseRow.provider_id, sold)
                .join(ClearingRow, ClearingRow.id == LeaseRow.clearing_id)
                .where(LeaseRow.provider_id.in_(part), LeaseRow.failed.is_(True))
            )
        )
        metered = Meters(s).totals([lid for lid, _, _ in failed])
        for lid, pid, g in failed:
            short[str(pid)] += max(0, int(g) - metered.get(lid, (0, 0))[0])
    return [
        DeliveryRecord(p, *counts.get(p, (0, 0, 0)), gpu_seconds_short=short.get(p, 0)) for p in ids
    ]
