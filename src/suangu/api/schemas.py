"""Request and response bodies (Pydantic v2). Requests forbid unknown fields.

Money is integer fen (1 yuan = 100 fen), prices fen per GPU-hour, times integer Unix seconds,
and market times slots of the exchange's grid (slot ``k`` starts at
``grid_epoch + k * slot_seconds``; ``GET /api/v1/market/grid`` says which).
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from suangu.core.metering import ReadingSource
from suangu.core.text import check_name
from suangu.core.types import (
    MAX_DATA_GB,
    MAX_GPUS,
    MAX_PRICE_FEN,
    MAX_SPEED,
    MAX_TRANSFER_PRICE_FEN,
    MIN_SPEED,
    OrderKind,
)
from suangu.store.models import LeaseState, OfferStatus, OrderStatus, Role
from suangu.workload import WorkloadSpec

T = TypeVar("T")

#: Ids chosen by clients: letters, digits, ``.``, ``_`` and ``-`` (no ``:``: ids are joined
#: with it in lease and transfer ids).
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
#: Names people read: no control or bidirectional characters (:mod:`suangu.core.text`).
#: Order and offer ids: an :data:`Id`, optionally already in the caller's own namespace
#: (``<member id>~<name>``). Ids are per member: the API stores ``<member id>~<id>``
#: (:mod:`suangu.api.ids`), so no 409 ever says that another member has an id.
ScopedId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(~[A-Za-z0-9][A-Za-z0-9._-]*)?$",
    ),
]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(check_name)]
Label = Annotated[str, Field(max_length=200), AfterValidator(check_name)]
MAX_SLOTS = 24 * 366
#: The last slot a client may name: every slot derived from it (an offer's slots, a
#: clearing's horizon, an order's window) still fits the database's 32-bit integers.
MAX_SLOT = 2**31 - 1 - 2 * MAX_SLOTS
Slot = Annotated[int, Field(ge=0, le=MAX_SLOT)]
MAX_AMOUNT_FEN = 10**12


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PageOut(Response, Generic[T]):
    items: list[T]
    #: Pass back as ``cursor`` for the next page; ``null`` on the last page.
    next_cursor: str | None
    #: The URL of the next page, or ``null``.
    next: str | None


# -- members and keys --------------------------------------------------------------------------


class MemberIn(Request):
    id: Id
    name: Name
    role: Annotated[Role, Field(strict=False)]


class MemberOut(Response):
    id: str
    name: str
    role: Annotated[Role, Field(strict=False)]
    created_at: int


class KeyIn(Request):
    label: Label = ""


class KeyOut(Response):
    id: str
    prefix: str
    member_id: str
    role: Annotated[Role, Field(strict=False)]
    label: str
    created_at: int
    revoked_at: int | None


class NewKeyOut(KeyOut):
    #: The API key itself: shown in this response only, never stored.
    token: str


class MeOut(Response):
    member: MemberOut
    key_id: str
    role: Annotated[Role, Field(strict=False)]


# -- sites, pools, offers ------------------------------------------------------------------------


class SiteIn(Request):
    id: Id
    name: Name
    province: Name
    region: Name
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    pue: float = Field(default=1.2, ge=1.0, le=3.0, allow_inf_nan=False)
    latency_ms: dict[Name, Annotated[float, Field(ge=0, le=10_000, allow_inf_nan=False)]] = Field(
        default_factory=dict, max_length=500
    )
    #: The provider that operates the site: set by operators only (a provider's own id).
    provider_id: Id | None = None


class SiteOut(Response):
    id: str
    name: str
    province: str
    region: str
    lat: float
    lon: float
    pue: float
    latency_ms: dict[str, float]
    provider_id: str | None


class PoolIn(Request):
    id: Id
    site_id: Id
    gpu_class: Annotated[str, Field(min_length=1, max_length=32)]


class PoolOut(Response):
    id: str
    site_id: str
    gpu_class: str


class OfferIn(Request):
    id: ScopedId
    pool_id: Id
    start_slot: Slot
    #: GPUs offered in slots ``start_slot``, ``start_slot + 1``, ...
    gpus: list[Annotated[int, Field(ge=0, le=MAX_GPUS)]] = Field(min_length=1, max_length=MAX_SLOTS)
    #: Reserve price per slot, fen per GPU-hour (one value per slot of ``gpus``).
    reserve_fen: list[Annotated[int, Field(ge=0, le=MAX_PRICE_FEN)]] | None = Field(
        default=None, min_length=1, max_length=MAX_SLOTS
    )
    #: ``auto``: the exchange sets each slot's reserve from the site's energy cost
    #: (:func:`suangu.core.energy.hooks.reserve_from_energy`) x (1 + ``markup``) +
    #: ``margin_fen`` (instead of ``reserve_fen``).
    reserve: Literal["auto"] | None = None
    margin_fen: int = Field(default=0, ge=0, le=MAX_PRICE_FEN)
    markup: float = Field(default=0.0, ge=0.0, le=10.0, allow_inf_nan=False)


class OfferOut(Response):
    id: str
    provider_id: str
    pool_id: str
    start_slot: int
    gpus: list[int]
    reserve_fen: list[int]
    status: OfferStatus
    created_at: int


# -- orders -------------------------------------------------------------------------------------


class OrderIn(Request):
    """A bid. ``limit_fen`` is the most paid per GPU-hour; empty filters mean any."""

    id: ScopedId
    kind: Annotated[OrderKind, Field(strict=False)]
    gpus: int = Field(ge=1, le=MAX_GPUS)
    release_slot: Slot
    deadline_slot: Slot
    limit_fen: int = Field(ge=1, le=MAX_PRICE_FEN)
    gpu_hours: int = Field(default=0, ge=0, le=MAX_GPUS * 10_000)
    duration_slots: int = Field(default=0, ge=0, le=MAX_SLOTS)
    gpu_classes: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        default_factory=list, max_length=64
    )
    regions: list[Name] = Field(default_factory=list, max_length=100)
    provinces: list[Name] = Field(default_factory=list, max_length=100)
    home: Name | None = None
    max_latency_ms: float | None = Field(default=None, gt=0, le=10_000, allow_inf_nan=False)
    min_green_share: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)
    #: Input data, whole GB, held at ``home`` (a region id); 0: none.
    data_gb: int = Field(default=0, ge=0, le=MAX_DATA_GB)
    #: The GPU class ``gpu_hours`` and ``limit_fen`` count in (none: every class alike).
    reference_class: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    #: Per-class speed overrides relative to the reference class, e.g. ``{"H100": 3.0}``.
    speed: dict[
        Annotated[str, Field(min_length=1, max_length=32)],
        Annotated[float, Field(ge=MIN_SPEED, le=MAX_SPEED, allow_inf_nan=False, strict=False)],
    ] = Field(default_factory=dict, max_length=64)
    #: What the provider's agent runs (:mod:`suangu.workload`); its inputs set ``data_gb``.
    workload: WorkloadSpec | None = None
    #: The deadline is firm: with firm-order protection on, capacity is held back for a firm
    #: order that only one or two pools can serve (docs/market.md).
    firm: bool = False
    #: The interruptible tier: cleared after firm demand, preemptible by it with notice
    #: (batch and service orders; see docs/market.md).
    interruptible: bool = False
    #: Batch only: partial work is worthless, so serve all of it or none (docs/market.md).
    complete_or_nothing: bool = False


class OrderOut(Response):
    id: str
    buyer_id: str
    kind: Annotated[OrderKind, Field(strict=False)]
    gpus: int
    release_slot: int
    deadline_slot: int
    limit_fen: int
    gpu_hours: int
    duration_slots: int
    gpu_classes: list[str]
    regions: list[str]
    provinces: list[str]
    home: str | None
    max_latency_ms: float | None
    min_green_share: float
    data_gb: int = 0
    reference_class: str | None = None
    speed: dict[str, float] = Field(default_factory=dict)
    firm: bool = False
    interruptible: bool = False
    complete_or_nothing: bool = False
    status: OrderStatus
    submitted_at: int
    #: The order's workload, secret values shown as ``***`` (``null``: none).
    workload: dict[str, Any] | None = None


class OrdersOut(Response):
    items: list[OrderOut]


# -- network ------------------------------------------------------------------------------------

Region = Annotated[str, Field(min_length=1, max_length=128)]


class LinkIn(Request):
    """A one-way network path ``from_region -> to_region`` the exchange may move orders'
    input data over: its latency, the bandwidth the exchange may use, the carrier's price."""

    from_region: Region
    to_region: Region
    latency_ms: float = Field(ge=0, le=10_000, allow_inf_nan=False, strict=False)
    bandwidth_gbps: float = Field(gt=0, le=1e6, allow_inf_nan=False, strict=False)
    price_fen_per_gb: int = Field(ge=0, le=MAX_TRANSFER_PRICE_FEN)


class LinksIn(Request):
    """The whole network: replaces every stored link."""

    links: list[LinkIn] = Field(max_length=10_000)


class LinkOut(Response):
    from_region: str
    to_region: str
    latency_ms: float
    bandwidth_gbps: float
    price_fen_per_gb: int


class LinksOut(Response):
    items: list[LinkOut]


# -- clearings and market -------------------------------------------------------------------------


class ClearingIn(Request):
    id: Id | None = None
    #: First slot to clear (default: the current slot); never in the past.
    first_slot: Slot | None = None
    n_slots: int | None = Field(default=None, ge=1, le=24 * 14)


class PriceOut(Response):
    pool_id: str
    slot: int
    price_fen: int
    cleared_gpus: int


class AllocationOut(Response):
    order_id: str
    buyer_id: str
    pool_id: str
    slot: int
    gpus: int
    price_fen: int


class LinkPriceOut(Response):
    from_region: str
    to_region: str
    congestion_fen_per_gb: int
    transfer_fen_per_gb: int
    gb: float
    capacity_gb: float


class DataTransferOut(Response):
    order_id: str
    buyer_id: str
    from_region: str
    to_region: str
    gb: float
    transfer_fen_per_gb: int
    congestion_fen_per_gb: int
    carrier_fen: int
    congestion_fen: int


class PlannedOut(Response):
    """A GPU-slot the latest clearing planned for the order beyond its firmness horizon: at
    that clearing's price, indicative, not a contract (the next clearing plans again; the
    buyer never pays above its limit)."""

    pool_id: str
    slot: int
    gpus: int
    price_fen: int


class OrderDetailOut(OrderOut):
    #: The planned schedule (commit late, plan early): empty when nothing is planned.
    planned: list[PlannedOut] = Field(default_factory=list)


class ClearingSummaryOut(Response):
    id: str
    run_at: int
    first_slot: int
    n_slots: int
    status: str
    method: str
    welfare_fen: int
    n_allocations: int
    excluded_orders: list[str] = Field(default_factory=list)
    #: Allocations planned beyond the firmness horizon (not leases).
    n_planned: int = 0


class ClearingOut(ClearingSummaryOut):
    gap: float
    message: str
    rejected_gangs: list[str]
    allocations: list[AllocationOut]
    prices: list[PriceOut]
    #: Per network link: its congestion price (fen per GB) and the GB moved over it.
    link_prices: list[LinkPriceOut] = Field(default_factory=list)
    #: Data moved per order and link, with what its buyer is charged (fen).
    transfers: list[DataTransferOut] = Field(default_factory=list)


class GridOut(Response):
    epoch: int
    slot_seconds: int
    current_slot: int
    now: int


# -- leases and meters ----------------------------------------------------------------------------


class LeaseOut(Response):
    id: str
    clearing_id: str
    order_id: str
    buyer_id: str
    pool_id: str
    slot: int
    gpus: int
    price_fen: int
    provider_id: str | None
    state: LeaseState
    hold_transfer_id: str | None
    #: GPUs that firm demand preempted from this lease (an interruptible order's).
    preempted_gpus: int = 0
    #: GPUs of ``gpus`` its buyer resold: the provider runs ``gpus - resold_gpus`` for it.
    resold_gpus: int = 0


class ResaleIn(Request):
    """Offer back a lease you hold, with the least you take per GPU-hour."""

    id: Id
    lease_id: Annotated[str, Field(min_length=1, max_length=400)]
    reserve_fen: int = Field(ge=0, le=MAX_PRICE_FEN)


class ResaleSaleOut(Response):
    lease_id: str
    gpus: int
    price_fen: int


class ResaleOut(Response):
    id: str
    seller_id: str
    lease_id: str
    reserve_fen: int
    status: str
    created_at: int
    pool_id: str | None
    slot: int | None
    gpus: int | None
    resold_gpus: int = 0
    #: The new buyers' leases that got the GPUs, and the price of each GPU-hour.
    sales: list[ResaleSaleOut] = Field(default_factory=list)


class ReadingIn(Request):
    """Metered use of a lease over ``[interval_start, interval_end)`` (Unix seconds)."""

    #: The agent's id of this reading: resending it is recognised, never counted twice.
    id: Id
    interval_start: int = Field(ge=0, le=2**40)
    interval_end: int = Field(ge=1, le=2**40)
    gpu_seconds: int = Field(ge=0, le=MAX_GPUS * 7 * 24 * 3600)
    energy_wh: int = Field(default=0, ge=0, le=10**12)
    #: How the figures were obtained: ``nvml`` or ``slurm`` (measured) or ``nominal`` (board
    #: power x time, an estimate; the default).
    source: Annotated[ReadingSource, Field(strict=False)] = ReadingSource.NOMINAL
    #: The last reading of the lease: it is then completed and, once every lease of its order
    #: is, the order is settled on the ledger.
    final: bool = False


class LeaseReadingIn(ReadingIn):
    """A reading of one of the provider's leases in a batch (``POST /readings``)."""

    lease_id: Annotated[str, Field(min_length=1, max_length=300)]


class ReadingsOut(Response):
    """What a batch of readings did."""

    #: Readings stored (a reading sent before, same agent and id, is not stored again).
    recorded: int
    #: Orders settled on the ledger because the batch finished their last leases.
    settled: int


class ReadingOut(Response):
    id: str
    lease_id: str
    interval_start: int
    interval_end: int
    gpu_seconds: int
    energy_wh: int
    source: ReadingSource
    recorded_at: int
    new: bool
    lease_state: LeaseState
    settled: bool


# -- ledger -----------------------------------------------------------------------------------


class AccountOut(Response):
    id: str
    ledger: str
    kind: str
    owner: str
    balance: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


class TransferOut(Response):
    id: str
    code: str
    debit_account_id: str
    credit_account_id: str
    amount: int | None
    ledger: str | None
    pending_id: str
    user_data: str
    timestamp: int


class DepositIn(Request):
    id: Id
    member_id: Id
    amount_fen: int = Field(ge=1, le=MAX_AMOUNT_FEN)


class FeesIn(Request):
    fee_bp: int = Field(ge=0, le=10_000)


class FeesOut(Response):
    fee_bp: int


class CarbonPriceIn(Request):
    """The operator's carbon price, yuan per tonne of CO2 (whole fen per tonne)."""

    yuan_per_t: float = Field(ge=0, le=100_000, allow_inf_nan=False)


class CarbonPriceOut(Response):
    """The carbon price every clearing adds to the reserves of modelled sites' pool-slots
    (location-based gCO2 per GPU-hour x the price; docs/market.md)."""

    yuan_per_t: float
    fen_per_t: int
    #: When the operator set it (unix seconds); null: never set (the served default).
    updated_at: int | None = None


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


class HeartbeatIn(Request):
    #: The agent process sending it (changes when the agent restarts).
    instance: Id = "agent"
    #: The agent's name, kept across restarts: a provider may run one agent per cluster or
    #: site, each with its own heartbeats.
    agent: Id = "default"
    #: The pools this agent serves (its provider's); absent: all of them. When an agent falls
    #: silent, only the leases of the pools no live agent of its provider serves fail.
    pools: list[Annotated[str, Field(min_length=1, max_length=400)]] | None = Field(
        default=None, max_length=1000
    )


class HeartbeatOut(Response):
    provider_id: str
    instance: str
    agent: str
    pools: list[str] | None
    last_seen: int
    #: Since when the agent has been heard without a silence longer than the grace period.
    since: int
    #: The seconds of silence after which the exchange fails the provider's open leases.
    grace_s: int
    #: The first heartbeat, or the first after a silence: recorded in the audit trail.
    new: bool


class ProviderRecordOut(Response):
    provider_id: str
    #: Leases the provider was sold, and how many of them failed (by the provider or its
    #: silent agent; a buyer's cancel is not the provider's failure).
    leases: int
    failed: int
    failure_rate: float
    gpu_hours_sold: float
    #: GPU-hours its failed leases fell short of what they were sold for (sold less metered).
    gpu_hours_short: float


class ProviderRecordsOut(Response):
    items: list[ProviderRecordOut]
