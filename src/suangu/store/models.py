"""SQLAlchemy 2.0 typed models: the schema of the exchange.

Conventions: ids are client- or exchange-chosen strings; times are integer Unix seconds (the
core never reads a clock, neither does the store: callers pass ``now``); money and quantities
are ``BIGINT`` in the smallest unit; closed sets are strings with a ``CHECK`` listing their
values; every constraint has a deterministic name (see ``NAMING``) so that Alembic can find it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from suangu.core.ledger import AccountKind, Asset, PendingStatus, TransferCode

# The lifecycle's states are the core's (re-exported for the store's users).
from suangu.core.lifecycle import LeaseState as LeaseState
from suangu.core.lifecycle import OfferStatus as OfferStatus
from suangu.core.lifecycle import OrderStatus as OrderStatus
from suangu.core.metering import ReadingSource
from suangu.core.types import ClearingStatus, OrderKind

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = 128  # length of identifier columns
#: Length of ledger ids (account and transfer ids are derived from other ids, so longer).
LEDGER_ID = 255


class Role(StrEnum):
    """What a member (and each of its API keys) may do."""

    OPERATOR = "operator"
    PROVIDER = "provider"
    BUYER = "buyer"
    AUDITOR = "auditor"


def one_of(column: str, values: Iterable[str], name: str | None = None) -> CheckConstraint:
    """``CHECK (column IN (...))`` for a closed set of strings."""
    listed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=name or column)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: dict[Any, Any] = {int: BigInteger, str: String(ID)}  # noqa: RUF012


# -- members and keys -------------------------------------------------------------------------


class MemberRow(Base):
    __tablename__ = "members"
    __table_args__ = (one_of("role", [r.value for r in Role]),)

    id: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int]


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    __table_args__ = (one_of("role", [r.value for r in Role]),)

    id: Mapped[str] = mapped_column(primary_key=True)
    #: Public part of the key, shown in listings and used to find the row.
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    #: sha256 (hex) of the whole key; the key itself is never stored.
    secret_hash: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[int]
    revoked_at: Mapped[int | None]


# -- sites, pools, offers -----------------------------------------------------------------------


class SiteRow(Base):
    __tablename__ = "sites"
    __table_args__ = (
        CheckConstraint("pue >= 1.0 AND pue <= 3.0", name="pue"),
        CheckConstraint("lat >= -90 AND lat <= 90", name="lat"),
        CheckConstraint("lon >= -180 AND lon <= 180", name="lon"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    province: Mapped[str]
    region: Mapped[str]
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    pue: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[dict[str, float]] = mapped_column(JSON)
    #: The provider member that operates the site (``None`` for sites of a scenario).
    provider_id: Mapped[str | None] = mapped_column(ForeignKey("members.id"), index=True)


class PoolRow(Base):
    __tablename__ = "pools"

    id: Mapped[str] = mapped_column(primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    gpu_class: Mapped[str] = mapped_column(String(32))


class OfferRow(Base):
    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint("start_slot >= 0", name="start_slot"),
        one_of("status", [s.value for s in OfferStatus]),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("members.id"), index=True)
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id"), index=True)
    start_slot: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int]
    slots: Mapped[list[OfferSlotRow]] = relationship(
        order_by="OfferSlotRow.slot", cascade="all, delete-orphan", lazy="selectin"
    )


class OfferSlotRow(Base):
    __tablename__ = "offer_slots"
    __table_args__ = (
        CheckConstraint("gpus >= 0", name="gpus"),
        CheckConstraint("reserve_fen >= 0", name="reserve_fen"),
    )

    offer_id: Mapped[str] = mapped_column(
        ForeignKey("offers.id", ondelete="CASCADE"), primary_key=True
    )
    slot: Mapped[int] = mapped_column(primary_key=True)
    gpus: Mapped[int]
    reserve_fen: Mapped[int]


# -- orders ---------------------------------------------------------------------------------


class OrderRow(Base):
    __tablename__ = "orders"
    __table_args__ = (
        one_of("kind", [k.value for k in OrderKind]),
        one_of("status", [s.value for s in OrderStatus]),
        CheckConstraint("gpus >= 1", name="gpus"),
        CheckConstraint("release_slot >= 0", name="release_slot"),
        CheckConstraint("deadline_slot > release_slot", name="window"),
        CheckConstraint("limit_fen >= 1", name="limit_fen"),
        CheckConstraint("gpu_hours >= 0", name="gpu_hours"),
        CheckConstraint("duration_slots >= 0", name="duration_slots"),
        CheckConstraint("min_green_share >= 0 AND min_green_share <= 1", name="min_green_share"),
        Index("ix_orders_buyer_submitted", "buyer_id", "submitted_at", "id"),
        Index("ix_orders_status", "status"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    buyer_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(16))
    gpus: Mapped[int]
    release_slot: Mapped[int]
    deadline_slot: Mapped[int]
    limit_fen: Mapped[int]
    gpu_hours: Mapped[int]
    duration_slots: Mapped[int]
    gpu_classes: Mapped[list[str]] = mapped_column(JSON)
    regions: Mapped[list[str]] = mapped_column(JSON)
    provinces: Mapped[list[str]] = mapped_column(JSON)
    home: Mapped[str | None]
    max_latency_ms: Mapped[float | None] = mapped_column(Float)
    min_green_share: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    submitted_at: Mapped[int]
    #: Input data, whole GB, held at ``home`` (0: none).
    data_gb: Mapped[int] = mapped_column(server_default=text("0"))
    #: The GPU class ``gpu_hours`` and ``limit_fen`` count in (``None``: every class alike).
    reference_class: Mapped[str | None] = mapped_column(String(32))
    #: Per-class speed overrides relative to the reference class.
    speed: Mapped[dict[str, float]] = mapped_column(JSON, server_default=text("'{}'"))
    #: The deadline is firm (firm-order protection; :func:`suangu.core.lifecycle.captive`).
    firm: Mapped[bool] = mapped_column(Boolean, server_default=false())
    #: The interruptible tier (:mod:`suangu.core.products`).
    interruptible: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: A batch order served in full or not at all (:mod:`suangu.core.clearing.complete`).
    complete_or_nothing: Mapped[bool] = mapped_column(Boolean, server_default=false())


# -- network ------------------------------------------------------------------------------------


class LinkRow(Base):
    """A one-way network path between two regions (hubs) that the exchange may use to move
    orders' input data (:class:`suangu.core.types.Link`)."""

    __tablename__ = "links"
    __table_args__ = (
        CheckConstraint("from_region <> to_region", name="regions_differ"),
        CheckConstraint("latency_ms >= 0", name="latency_ms"),
        CheckConstraint("bandwidth_gbps > 0", name="bandwidth_gbps"),
        CheckConstraint("price_fen_per_gb >= 0", name="price_fen_per_gb"),
    )

    from_region: Mapped[str] = mapped_column(primary_key=True)
    to_region: Mapped[str] = mapped_column(primary_key=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    bandwidth_gbps: Mapped[float] = mapped_column(Float)
    price_fen_per_gb: Mapped[int]


# -- clearings, prices, leases ----------------------------------------------------------------


class ClearingRow(Base):
    __tablename__ = "clearings"
    __table_args__ = (
        one_of("status", [s.value for s in ClearingStatus]),
        CheckConstraint("n_slots >= 1", name="n_slots"),
        CheckConstraint("slot_hours >= 1", name="slot_hours"),
        CheckConstraint("gap >= 0", name="gap"),
        Index("ix_clearings_run_at", "run_at"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    run_at: Mapped[int]
    first_slot: Mapped[int]
    n_slots: Mapped[int]
    slot_hours: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(64))
    welfare_fen: Mapped[int]
    gap: Mapped[float] = mapped_column(Float)
    timings: Mapped[dict[str, float]] = mapped_column(JSON)
    message: Mapped[str] = mapped_column(Text)
    rejected_gangs: Mapped[list[str]] = mapped_column(JSON)


class PriceRow(Base):
    __tablename__ = "prices"
    __table_args__ = (
        CheckConstraint("price_fen >= 0", name="price_fen"),
        CheckConstraint("cleared_gpus >= 0", name="cleared_gpus"),
        CheckConstraint("offered_gpus >= 0", name="offered_gpus"),
        Index("ix_prices_pool_slot", "pool_id", "slot"),
    )

    clearing_id: Mapped[str] = mapped_column(
        ForeignKey("clearings.id", ondelete="CASCADE"), primary_key=True
    )
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id"), primary_key=True)
    slot: Mapped[int] = mapped_column(primary_key=True)
    price_fen: Mapped[int]
    cleared_gpus: Mapped[int]
    offered_gpus: Mapped[int]


class LinkPriceRow(Base):
    """A link's congestion price in a clearing and the data it carries over the horizon."""

    __tablename__ = "link_prices"
    __table_args__ = (
        CheckConstraint("congestion_fen_per_gb >= 0", name="congestion_fen_per_gb"),
        CheckConstraint("transfer_fen_per_gb >= 0", name="transfer_fen_per_gb"),
    )

    clearing_id: Mapped[str] = mapped_column(
        ForeignKey("clearings.id", ondelete="CASCADE"), primary_key=True
    )
    from_region: Mapped[str] = mapped_column(primary_key=True)
    to_region: Mapped[str] = mapped_column(primary_key=True)
    congestion_fen_per_gb: Mapped[int]
    transfer_fen_per_gb: Mapped[int]
    gb: Mapped[float] = mapped_column(Float)
    capacity_gb: Mapped[float] = mapped_column(Float)


class DataTransferRow(Base):
    """Input data an order of a clearing moves over a link, and what its buyer is charged
    (:class:`suangu.core.types.Transfer`): billed in the order's hold, posted at settlement."""

    __tablename__ = "data_transfers"
    __table_args__ = (
        CheckConstraint("carrier_fen >= 0", name="carrier_fen"),
        CheckConstraint("congestion_fen >= 0", name="congestion_fen"),
        Index("ix_data_transfers_order", "order_id"),
    )

    clearing_id: Mapped[str] = mapped_column(
        ForeignKey("clearings.id", ondelete="CASCADE"), primary_key=True
    )
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    from_region: Mapped[str] = mapped_column(primary_key=True)
    to_region: Mapped[str] = mapped_column(primary_key=True)
    buyer_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    gb: Mapped[float] = mapped_column(Float)
    transfer_fen_per_gb: Mapped[int]
    congestion_fen_per_gb: Mapped[int]
    carrier_fen: Mapped[int]
    congestion_fen: Mapped[int]


class OfferFillRow(Base):
    """How much of an offer sold in one slot of a clearing (who gets paid for a pool-slot)."""

    __tablename__ = "offer_fills"
    __table_args__ = (
        CheckConstraint("gpus >= 0", name="gpus"),
        CheckConstraint("price_fen >= 0", name="price_fen"),
        CheckConstraint("reserve_fen >= 0", name="reserve_fen"),
        Index("ix_offer_fills_provider", "provider_id"),
        Index("ix_offer_fills_slot", "slot"),
    )

    clearing_id: Mapped[str] = mapped_column(
        ForeignKey("clearings.id", ondelete="CASCADE"), primary_key=True
    )
    offer_id: Mapped[str] = mapped_column(ForeignKey("offers.id"), primary_key=True)
    slot: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id"))
    gpus: Mapped[int]
    price_fen: Mapped[int]
    reserve_fen: Mapped[int]


class LeaseRow(Base):
    """One allocation of a clearing: the contract between a buyer and a provider."""

    __tablename__ = "leases"
    __table_args__ = (
        UniqueConstraint("clearing_id", "order_id", "pool_id", "slot", name="uq_leases_alloc"),
        one_of("state", [s.value for s in LeaseState]),
        CheckConstraint("gpus >= 1", name="gpus"),
        CheckConstraint("price_fen >= 0", name="price_fen"),
        Index("ix_leases_order", "order_id"),
        Index("ix_leases_buyer", "buyer_id"),
        Index("ix_leases_provider", "provider_id"),
    )

    id: Mapped[str] = mapped_column(String(400), primary_key=True)
    clearing_id: Mapped[str] = mapped_column(ForeignKey("clearings.id"))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    buyer_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id"))
    slot: Mapped[int]
    gpus: Mapped[int]
    price_fen: Mapped[int]
    provider_id: Mapped[str | None] = mapped_column(ForeignKey("members.id"))
    state: Mapped[str] = mapped_column(String(16))
    #: The ledger's pending transfer that holds the buyer's money for this lease's order.
    hold_transfer_id: Mapped[str | None] = mapped_column(
        String(LEDGER_ID), ForeignKey("ledger_transfers.id")
    )
    #: The lease failed (its provider could not run it): true also once it is settled, so
    #: the work it did not deliver goes back into the next clearing.
    failed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: GPUs of the lease that firm demand preempted (an interruptible order's lease): ``gpus``
    #: is what is left of it; a lease preempted whole is also ``failed``.
    preempted_gpus: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    #: GPUs of ``gpus`` that its buyer resold (:class:`ResaleRow`): the provider runs the new
    #: buyers' work on them, and this lease pays for them as delivered.
    resold_gpus: Mapped[int] = mapped_column(default=0, server_default=text("0"))


class ResaleRow(Base):
    """A buyer's offer to sell back the GPUs of a lease it holds (:mod:`suangu.core.products`)."""

    __tablename__ = "resales"
    __table_args__ = (
        one_of("status", ["open", "sold", "withdrawn"]),
        CheckConstraint("reserve_fen >= 0", name="reserve_fen"),
        UniqueConstraint("lease_id", name="uq_resales_lease"),
        Index("ix_resales_seller", "seller_id"),
        Index("ix_resales_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seller_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    lease_id: Mapped[str] = mapped_column(String(400), ForeignKey("leases.id"))
    reserve_fen: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int]


class ResaleSaleRow(Base):
    """GPUs of a resale that a clearing sold, and the new buyer's lease that got them."""

    __tablename__ = "resale_sales"
    __table_args__ = (
        CheckConstraint("gpus >= 1", name="gpus"),
        Index("ix_resale_sales_lease", "lease_id"),
    )

    resale_id: Mapped[str] = mapped_column(ForeignKey("resales.id"), primary_key=True)
    #: The new buyer's lease.
    lease_id: Mapped[str] = mapped_column(String(400), ForeignKey("leases.id"), primary_key=True)
    gpus: Mapped[int]
    price_fen: Mapped[int]


class PlannedAllocationRow(Base):
    """Work a clearing planned beyond its firmness horizon (commit late, plan early): the
    buyer's planned schedule at the clearing's prices, not a contract. The next clearing plans
    again; an order's plan is the latest clearing's."""

    __tablename__ = "planned_allocations"
    __table_args__ = (
        UniqueConstraint("clearing_id", "order_id", "pool_id", "slot", name="uq_planned_alloc"),
        CheckConstraint("gpus >= 1", name="gpus"),
        CheckConstraint("price_fen >= 0", name="price_fen"),
        Index("ix_planned_allocations_order", "order_id", "clearing_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    clearing_id: Mapped[str] = mapped_column(ForeignKey("clearings.id"))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    buyer_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id"))
    slot: Mapped[int]
    gpus: Mapped[int]
    price_fen: Mapped[int]


class MeterReadingRow(Base):
    __tablename__ = "meter_readings"
    __table_args__ = (
        CheckConstraint("interval_end > interval_start", name="interval"),
        CheckConstraint("gpu_seconds >= 0", name="gpu_seconds"),
        CheckConstraint("energy_wh >= 0", name="energy_wh"),
        one_of("source", [s.value for s in ReadingSource]),
        Index("ix_meter_readings_lease", "lease_id", "interval_start"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    #: The agent's idempotency key: a resubmitted reading is recognised, never counted twice.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    lease_id: Mapped[str] = mapped_column(ForeignKey("leases.id"))
    interval_start: Mapped[int]
    interval_end: Mapped[int]
    gpu_seconds: Mapped[int]
    energy_wh: Mapped[int]
    recorded_at: Mapped[int]
    #: How the figures were obtained (:class:`~suangu.core.metering.ReadingSource`).
    source: Mapped[str] = mapped_column(
        String(16), default="nominal", server_default="nominal", nullable=False
    )


# -- ledger -----------------------------------------------------------------------------------


class LedgerAccountRow(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        one_of("ledger", [a.value for a in Asset]),
        one_of("kind", [k.value for k in AccountKind]),
        CheckConstraint("flags >= 0 AND flags <= 7", name="flags"),
        CheckConstraint("debits_pending >= 0", name="debits_pending"),
        CheckConstraint("debits_posted >= 0", name="debits_posted"),
        CheckConstraint("credits_pending >= 0", name="credits_pending"),
        CheckConstraint("credits_posted >= 0", name="credits_posted"),
        # Limits re-checked by the database (flag bits 2 and 4; see core AccountFlags).
        CheckConstraint(
            "(flags & 2) = 0 OR debits_pending <= credits_posted - debits_posted",
            name="debits_within_credits",
        ),
        CheckConstraint(
            "(flags & 4) = 0 OR credits_pending <= debits_posted - credits_posted",
            name="credits_within_debits",
        ),
        Index("ix_ledger_accounts_owner", "owner"),
        Index("ix_ledger_accounts_ledger", "ledger"),
    )

    id: Mapped[str] = mapped_column(String(LEDGER_ID), primary_key=True)
    ledger: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str]
    flags: Mapped[int] = mapped_column(Integer)
    debits_pending: Mapped[int]
    debits_posted: Mapped[int]
    credits_pending: Mapped[int]
    credits_posted: Mapped[int]
    timestamp: Mapped[int]


class LedgerTransferRow(Base):
    """A recorded transfer; the primary key is the client's idempotency id."""

    __tablename__ = "ledger_transfers"
    __table_args__ = (
        one_of("ledger", [a.value for a in Asset]),
        one_of("code", [c.value for c in TransferCode]),
        one_of("pending_status", [s.value for s in PendingStatus]),
        CheckConstraint("amount > 0", name="amount"),
        CheckConstraint("timeout_s >= 0", name="timeout_s"),
        CheckConstraint("flags >= 0 AND flags <= 15", name="flags"),
        CheckConstraint("debit_account_id <> credit_account_id", name="accounts_differ"),
        # Exactly the pending transfers (flag bit 2) carry a pending status.
        CheckConstraint(
            "((flags & 2) = 2) = (pending_status IS NOT NULL)", name="pending_status_iff_pending"
        ),
        Index("ix_ledger_transfers_debit", "debit_account_id", "timestamp"),
        Index("ix_ledger_transfers_credit", "credit_account_id", "timestamp"),
        Index("ix_ledger_transfers_due", "pending_status", "expires_at"),
        Index("ix_ledger_transfers_timestamp", "timestamp"),
    )

    id: Mapped[str] = mapped_column(String(LEDGER_ID), primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    debit_account_id: Mapped[str] = mapped_column(
        String(LEDGER_ID), ForeignKey("ledger_accounts.id")
    )
    credit_account_id: Mapped[str] = mapped_column(
        String(LEDGER_ID), ForeignKey("ledger_accounts.id")
    )
    amount: Mapped[int]
    ledger: Mapped[str] = mapped_column(String(16))
    flags: Mapped[int] = mapped_column(Integer)
    #: The pending transfer this one posts or voids. Unique: a pending transfer resolves once.
    pending_id: Mapped[str | None] = mapped_column(
        String(LEDGER_ID), ForeignKey("ledger_transfers.id"), unique=True
    )
    timeout_s: Mapped[int]
    user_data: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[int]
    #: ``timestamp + timeout_s`` of a pending transfer that can expire.
    expires_at: Mapped[int | None]
    #: pending / posted / voided / expired, for pending transfers only.
    pending_status: Mapped[str | None] = mapped_column(String(16))


class LedgerClockRow(Base):
    """The ledger's clock: the latest ``now`` seen by a transfer call (one row, id 1)."""

    __tablename__ = "ledger_clock"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    now: Mapped[int]


#: Longest ``Idempotency-Key`` header kept.
MAX_IDEMPOTENCY_KEY = 200


class IdempotencyRow(Base):
    """The first response to a write made with an ``Idempotency-Key``, per member (kept for
    ``suangu.api.idempotency.RETENTION_S``, then purged by ``created_at``)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    member_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_IDEMPOTENCY_KEY), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(BigInteger)


class ExchangeSettingRow(Base):
    """Settings the operator changes at run time (the exchange fee)."""

    __tablename__ = "exchange_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


# -- audit trail ------------------------------------------------------------------------------

#: The ``prev_hash`` of the first entry of an audit chain.
AUDIT_GENESIS = "0" * 64


class AuditRow(Base):
    """One entry of the append-only, hash-chained audit trail (:mod:`suangu.store.audit`):
    who (member and role; ``NULL`` and ``system`` for the exchange's own clearing loop and
    the command line), did what (action) to which object, under which request id, when.

    ``hash`` is sha256 of ``prev_hash`` and the entry's canonical JSON (``seq`` included),
    so editing, deleting or reordering an entry breaks the chain from there on. Triggers
    refuse ``UPDATE`` and ``DELETE`` (migration 0006)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_member_id", "member_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[str | None] = mapped_column(String(ID))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    object: Mapped[str] = mapped_column(String(512))
    request_id: Mapped[str | None] = mapped_column(String(128))
    #: Canonical JSON of what else the entry says (hashed as stored).
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The audit chain's head (one row, id 1): the last entry's ``seq`` and ``hash``. An
    append locks this row, so that appends are serialised across workers, and a verifier
    detects a truncated tail."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


# -- data objects -------------------------------------------------------------------------------


class DataObjectRow(Base):
    """A member's data object (an input file, a job's output): what it is and where its sealed
    bytes are (:mod:`suangu.store.objects`). The bytes never pass through the database."""

    __tablename__ = "data_objects"
    __table_args__ = (
        CheckConstraint("size >= 0", name="size"),
        Index("ix_data_objects_owner_created", "owner_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    name: Mapped[str] = mapped_column(String(255))
    #: sha256 (hex) of the plaintext.
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    created_at: Mapped[int]
    #: The sealed blob's content address: sha256 (hex) of its stored bytes.
    blob: Mapped[str] = mapped_column(String(64))
    #: The object's data key, wrapped by the master key ``key_id`` (base64).
    wrapped_key: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(32))
    #: The lease whose job wrote this object (outputs), else ``None``.
    lease_id: Mapped[str | None] = mapped_column(String(400), ForeignKey("leases.id"))


class OrderWorkloadRow(Base):
    """What an order runs (:class:`suangu.workload.WorkloadSpec` as JSON, its secret values
    sealed with the master key)."""

    __tablename__ = "order_workloads"

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[int]


class DataGrantRow(Base):
    """A short-lived right of a provider to download one input of a lease it holds."""

    __tablename__ = "data_grants"
    __table_args__ = (
        CheckConstraint("expires_at > issued_at", name="expiry"),
        Index("ix_data_grants_lease", "lease_id"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    #: sha256 (hex) of the grant's token; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    lease_id: Mapped[str] = mapped_column(String(400), ForeignKey("leases.id"))
    object_id: Mapped[str] = mapped_column(ForeignKey("data_objects.id"))
    provider_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    issued_at: Mapped[int]
    expires_at: Mapped[int]


class DataEventKind(StrEnum):
    GRANT = "grant"
    DOWNLOAD = "download"
    OUTPUT = "output"
    CHECKPOINT = "checkpoint"


class DataEventRow(Base):
    """Who did what with a data object, when, for which lease: grants, downloads, outputs."""

    __tablename__ = "data_events"
    __table_args__ = (
        one_of("kind", [k.value for k in DataEventKind]),
        Index("ix_data_events_owner", "owner_id", "id"),
        Index("ix_data_events_lease", "lease_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str] = mapped_column(ForeignKey("data_objects.id"))
    #: The object's owner (whose record it is).
    owner_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    #: Who acted (the provider that got a grant, downloaded or uploaded; an owner's download).
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    lease_id: Mapped[str | None] = mapped_column(String(400), ForeignKey("leases.id"))
    grant_id: Mapped[str | None] = mapped_column(ForeignKey("data_grants.id"))


class RunOutcome(StrEnum):
    DONE = "done"
    FAILED = "failed"


class AgentHeartbeatRow(Base):
    """The last heartbeat of one of a provider's agents: the clearing loop fails the leases
    of the pools that only silent agents serve once they have been silent longer than the
    grace period (providers that never sent one are not watched)."""

    __tablename__ = "agent_heartbeats"

    provider_id: Mapped[str] = mapped_column(ForeignKey("members.id"), primary_key=True)
    #: The agent's name, kept across its restarts (one per cluster or site).
    agent: Mapped[str] = mapped_column(
        String(128), primary_key=True, server_default="default", default="default"
    )
    #: The pools it serves, a JSON list; None: all of the provider's.
    pools: Mapped[str | None] = mapped_column(Text)
    #: The agent instance (process) that sent the last heartbeat.
    instance: Mapped[str]
    #: When the agent was first heard from, or heard again after being silent.
    first_seen: Mapped[int]
    last_seen: Mapped[int]


class LeaseReportRow(Base):
    """How the work of a lease ended, as its provider's agent reported it: the payload's exit
    status, the reason of a failure, the outputs it uploaded."""

    __tablename__ = "lease_reports"
    __table_args__ = (one_of("outcome", [o.value for o in RunOutcome]),)

    lease_id: Mapped[str] = mapped_column(String(400), ForeignKey("leases.id"), primary_key=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    outcome: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    outputs: Mapped[list[str]] = mapped_column(JSON)
    reported_at: Mapped[int]


class OrderCheckpointRow(Base):
    """An order's latest checkpoint: a data object of its buyer that the next lease restores."""

    __tablename__ = "order_checkpoints"

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    object_id: Mapped[str] = mapped_column(ForeignKey("data_objects.id"))
    lease_id: Mapped[str] = mapped_column(String(400), ForeignKey("leases.id"))
    provider_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    at: Mapped[int]


class LeaseLogRow(Base):
    """A chunk of a lease's payload output, as its agent shipped it (secret values redacted
    by the agent); ``start_byte`` is where the chunk starts in the payload's raw output."""

    __tablename__ = "lease_logs"
    __table_args__ = (
        UniqueConstraint("lease_id", "start_byte", name="uq_lease_logs_lease_start"),
        CheckConstraint("start_byte >= 0 AND size >= 1", name="chunk"),
        Index("ix_lease_logs_order", "order_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    lease_id: Mapped[str] = mapped_column(String(400), ForeignKey("leases.id"))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    start_byte: Mapped[int]
    #: Raw bytes of output the chunk covers (its text may be shorter once redacted).
    size: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[int]


# -- green certificates, carbon and energy declarations ---------------------------------------


class LeaseEnergyRow(Base):
    """The energy and carbon record of a settled lease (:class:`~suangu.core.energy.
    accounting.LeaseEnergy`): what its certificate and carbon transfers on the ``kWh-green``
    and ``gCO2`` ledgers booked, and what carbon statements add up. Integers in Wh and g."""

    __tablename__ = "lease_energy"
    __table_args__ = (
        CheckConstraint("energy_wh = green_wh + grid_wh", name="energy"),
        CheckConstraint("measured_wh >= 0 AND measured_wh <= energy_wh", name="measured"),
        CheckConstraint(
            "certificates_wh >= 0 AND certificates_wh <= green_wh", name="certificates"
        ),
        Index("ix_lease_energy_buyer", "buyer_id", "start_unix"),
        Index("ix_lease_energy_provider", "provider_id", "start_unix"),
        Index("ix_lease_energy_site", "site_id", "slot"),
    )

    lease_id: Mapped[str] = mapped_column(String(400), ForeignKey("leases.id"), primary_key=True)
    order_id: Mapped[str]
    buyer_id: Mapped[str]
    provider_id: Mapped[str]
    pool_id: Mapped[str]
    site_id: Mapped[str]
    gpu_class: Mapped[str] = mapped_column(String(32))
    slot: Mapped[int]
    start_unix: Mapped[int]
    gpu_seconds: Mapped[int]
    energy_wh: Mapped[int]
    measured_wh: Mapped[int]
    green_wh: Mapped[int]
    grid_wh: Mapped[int]
    certificates_wh: Mapped[int]
    location_g: Mapped[int]
    market_g: Mapped[int]
    #: The grid-average factor used (location-based) and the residual (market-based).
    factor_region: Mapped[str] = mapped_column(String(200))
    factor_level: Mapped[str] = mapped_column(String(32))
    factor_year: Mapped[int]
    factor_t_per_mwh: Mapped[float] = mapped_column(Float)
    factor_source: Mapped[str] = mapped_column(Text)
    residual_t_per_mwh: Mapped[float] = mapped_column(Float)
    #: Where the green share came from: ``packaged``, ``capacities``, ``series`` or ``none``.
    green_basis: Mapped[str] = mapped_column(String(16))
    recorded_at: Mapped[int]


class SiteEnergyRow(Base):
    """A provider's declaration of a site's energy (``PUT /sites/{site_id}/energy``): its
    wind, solar and storage capacities and PUE (modelled like a packaged site), or an hourly
    green-share series (``series``: ``[[hour start, share], ...]``)."""

    __tablename__ = "site_energy"
    __table_args__ = (one_of("kind", ["capacities", "series"]),)

    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    #: The declaration as validated (:mod:`suangu.api.green`), canonical JSON.
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    declared_by: Mapped[str] = mapped_column(ForeignKey("members.id"))
    declared_at: Mapped[int]
