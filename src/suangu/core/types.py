"""Domain types of the market: sites, pools, slots, orders, offers, allocations and prices.

All are frozen dataclasses validated in their constructors; a bad value raises
:class:`~suangu.core.errors.ValidationError` naming the field and the fix. Money is integer
fen (1 yuan = 100 fen); prices are fen per GPU-hour; quantities are whole GPUs per slot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from suangu.core.errors import UnknownReferenceError, ValidationError
from suangu.core.gpus import CATALOGUE, GpuClass, gpu_class

SECONDS_PER_HOUR = 3600
#: Upper bound on any price, fen per GPU-hour (100,000 yuan): catches unit mistakes.
MAX_PRICE_FEN = 10_000_000
#: Milli-fen per fen: the unit of reserves finer than a fen inside a clearing
#: (:attr:`Market.reserve_mfen`).
MILLI = 1000
#: Upper bound on GPUs in one order or offer slot.
MAX_GPUS = 1_000_000
#: Upper bound on an order's input data, GB (100 PB): catches unit mistakes.
MAX_DATA_GB = 100_000_000
#: Upper bound on a link's transfer price, fen per GB (1,000 yuan).
MAX_TRANSFER_PRICE_FEN = 100_000
#: Bounds on a class speed factor relative to the reference class.
MIN_SPEED, MAX_SPEED = 0.01, 100.0


class OrderKind(StrEnum):
    """How an order may be filled."""

    BATCH = "batch"  # divisible work, any slots in its window, partial fill allowed
    GANG = "gang"  # exactly g GPUs in one pool for d contiguous slots, or nothing
    SERVICE = "service"  # up to g GPUs in every slot of its window (inference replicas)


def _require(ok: bool, field_name: str, message: str, fix: str) -> None:
    if not ok:
        raise ValidationError(message, field=field_name, fix=fix)


def _check_id(value: str, field_name: str = "id") -> None:
    _require(
        isinstance(value, str) and bool(value.strip()),
        field_name,
        f"must be a non-empty string, got {value!r}",
        "give every object an identifier",
    )


#: Separates a member's namespace from the rest of an order or offer id: ``buy-a~job-7`` can
#: only ever be member ``buy-a``'s (member ids never hold it). The API stores every new order
#: and offer in its owner's namespace (:func:`owned_id`); ids without it are those written
#: before, or by the store's own callers (the demo, the simulator), and are global.
SCOPE = "~"


def check_scope(object_id: str, owner: str, field_name: str = "id") -> None:
    """An id in a member's namespace (``<member>~<name>``) must be ``owner``'s."""
    head, sep, _ = object_id.partition(SCOPE)
    _require(
        not sep or head == owner,
        field_name,
        f"{object_id!r} is in the namespace of member {head!r}, not {owner!r}",
        f"use {owner}{SCOPE}<name> (yours alone), or an id without {SCOPE!r}",
    )


def owned_id(object_id: str, owner: str) -> str:
    """The id under which ``owner``'s order or offer named ``object_id`` is stored: ids are
    per member, so ``job-1`` of member ``buy-a`` is ``buy-a~job-1`` and never meets another
    member's ``job-1``. An id already in a namespace is kept as it is (:func:`check_scope`
    refuses one in another member's)."""
    return object_id if SCOPE in object_id else f"{owner}{SCOPE}{object_id}"


def _check_int(value: Any, field_name: str, lo: int, hi: int, fix: str) -> None:
    _require(
        isinstance(value, int) and not isinstance(value, bool),
        field_name,
        f"must be an integer, got {value!r}",
        fix,
    )
    _require(lo <= value <= hi, field_name, f"must be between {lo} and {hi}, got {value}", fix)


def _check_share(value: float, field_name: str) -> None:
    _require(
        isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0,
        field_name,
        f"must be a share between 0 and 1, got {value!r}",
        "write 0.8 for 80%",
    )


@dataclass(frozen=True, slots=True)
class TimeGrid:
    """The market's time grid: slot ``k`` starts at ``epoch + k * slot_seconds`` (Unix s)."""

    epoch: int = 0
    slot_seconds: int = SECONDS_PER_HOUR

    def __post_init__(self) -> None:
        _check_int(self.epoch, "epoch", 0, 2**40, "use Unix seconds")
        _check_int(self.slot_seconds, "slot_seconds", SECONDS_PER_HOUR, 7 * 24 * 3600, "use 3600")
        _require(
            self.slot_seconds % SECONDS_PER_HOUR == 0,
            "slot_seconds",
            f"must be a whole number of hours, got {self.slot_seconds}",
            "use 3600 (one hour) or a multiple of it",
        )

    @property
    def slot_hours(self) -> int:
        return self.slot_seconds // SECONDS_PER_HOUR

    def slot_start(self, slot: int) -> int:
        return self.epoch + slot * self.slot_seconds

    def slot_at(self, unix_seconds: int) -> int:
        """The slot containing the instant ``unix_seconds``."""
        return (unix_seconds - self.epoch) // self.slot_seconds


@dataclass(frozen=True, slots=True)
class Site:
    """One data centre."""

    id: str
    name: str
    province: str
    region: str  # the hub it belongs to (东数西算 hub), used by residency rules
    lat: float = 0.0
    lon: float = 0.0
    pue: float = 1.2
    latency_ms: Mapping[str, float] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check_id(self.id)
        _check_id(self.province, "province")
        _check_id(self.region, "region")
        _require(-90 <= self.lat <= 90, "lat", f"must be in [-90, 90], got {self.lat}", "degrees")
        _require(
            -180 <= self.lon <= 180, "lon", f"must be in [-180, 180], got {self.lon}", "degrees"
        )
        _require(
            math.isfinite(self.pue) and 1.0 <= self.pue <= 3.0,
            "pue",
            f"must be between 1.0 and 3.0, got {self.pue}",
            "PUE is facility power / IT power, typically 1.1-1.6",
        )
        for place, ms in self.latency_ms.items():
            _require(
                isinstance(ms, int | float) and math.isfinite(ms) and ms >= 0,
                f"latency_ms.{place}",
                f"must be a non-negative number of milliseconds, got {ms!r}",
                "give one-way latency in ms",
            )
        object.__setattr__(self, "latency_ms", MappingProxyType(dict(self.latency_ms)))


@dataclass(frozen=True, slots=True)
class Pool:
    """The GPUs of one class at one site."""

    id: str
    site_id: str
    gpu_class: str

    def __post_init__(self) -> None:
        _check_id(self.id)
        _check_id(self.site_id, "site_id")
        object.__setattr__(self, "gpu_class", gpu_class(self.gpu_class).name)


def _per_slot(value: int | Sequence[int], n: int | None, field_name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        _require(n is not None, field_name, "needs a length", "give a list, one value per slot")
        assert n is not None
        return (value,) * n
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Offer:
    """A provider's capacity in one pool over consecutive slots, with reserve prices.

    ``gpus[k]`` and ``reserve_fen[k]`` apply to slot ``start_slot + k``; the reserve is the
    lowest price, in fen per GPU-hour, at which the provider sells.
    """

    id: str
    provider_id: str
    pool_id: str
    start_slot: int
    gpus: tuple[int, ...]
    reserve_fen: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_id(self.id)
        _check_id(self.provider_id, "provider_id")
        _check_id(self.pool_id, "pool_id")
        check_scope(self.id, self.provider_id)
        _check_int(self.start_slot, "start_slot", 0, 2**31, "slots count from the grid epoch")
        gpus = tuple(self.gpus)
        reserve = tuple(self.reserve_fen)
        _require(len(gpus) > 0, "gpus", "must cover at least one slot", "list GPUs per slot")
        _require(
            len(reserve) == len(gpus),
            "reserve_fen",
            f"has {len(reserve)} values for {len(gpus)} slots of gpus",
            "give one reserve price per slot, or a single number",
        )
        for k, g in enumerate(gpus):
            _check_int(g, f"gpus[{k}]", 0, MAX_GPUS, "whole GPUs, zero or more")
        for k, r in enumerate(reserve):
            _check_int(r, f"reserve_fen[{k}]", 0, MAX_PRICE_FEN, "fen per GPU-hour (1 yuan = 100)")
        object.__setattr__(self, "gpus", gpus)
        object.__setattr__(self, "reserve_fen", reserve)

    @classmethod
    def over(
        cls,
        id: str,
        provider_id: str,
        pool_id: str,
        start_slot: int,
        end_slot: int,
        gpus: int | Sequence[int],
        reserve_fen: int | Sequence[int],
    ) -> Offer:
        """An offer for slots ``[start_slot, end_slot)`` from constants or per-slot lists."""
        n = end_slot - start_slot
        _require(n > 0, "end_slot", f"must be after start_slot {start_slot}", "end is exclusive")
        return cls(
            id,
            provider_id,
            pool_id,
            start_slot,
            _per_slot(gpus, n, "gpus"),
            _per_slot(reserve_fen, n, "reserve_fen"),
        )

    @property
    def end_slot(self) -> int:
        return self.start_slot + len(self.gpus)


@dataclass(frozen=True, slots=True)
class Order:
    """A buyer's bid.

    * ``batch``: up to ``gpu_hours`` of work, at most ``gpus`` GPUs in any slot, in any pools
      and slots of the window ``[release_slot, deadline_slot)``; partial fills allowed.
    * ``gang``: exactly ``gpus`` GPUs in one pool for ``duration_slots`` contiguous slots inside
      the window, or nothing.
    * ``service``: up to ``gpus`` GPUs in every slot of the window (replicas may be split
      across pools); ``gpu_hours`` defaults to the whole window.

    ``limit_fen`` is the most the buyer pays per GPU-hour. Empty filter sets mean "any"
    (``avoid_pools``: none avoided).
    """

    id: str
    buyer_id: str
    kind: OrderKind
    gpus: int
    release_slot: int
    deadline_slot: int
    limit_fen: int
    gpu_hours: int = 0
    duration_slots: int = 0
    gpu_classes: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    provinces: frozenset[str] = frozenset()
    home: str | None = None
    max_latency_ms: float | None = None
    min_green_share: float = 0.0
    data_gb: int = 0
    reference_class: str | None = None
    speed: Mapping[str, float] = field(default_factory=dict, hash=False)
    #: The deadline is firm: the buyer needs the work done by then (firm-order protection
    #: holds capacity back for firm orders that only a pool or two can serve,
    #: :func:`suangu.core.lifecycle.protection_levels`); the clearing itself ignores it.
    firm: bool = False
    #: The interruptible tier (:mod:`suangu.core.products`): cleared after firm demand, on
    #: the capacity it left, and preemptible by it with notice. Batch and service only.
    interruptible: bool = False
    #: Pools the order may not use in this clearing: the exchange sets it on work re-queued
    #: after a provider failed it, when other capacity can serve it (never stored).
    avoid_pools: frozenset[str] = frozenset()
    #: A batch order whose partial work is worthless: served in full within the clearing's
    #: horizon and its window, or not at all (:mod:`suangu.core.clearing.complete`).
    complete_or_nothing: bool = False

    def __post_init__(self) -> None:
        _check_id(self.id)
        _check_id(self.buyer_id, "buyer_id")
        check_scope(self.id, self.buyer_id)
        try:
            kind = OrderKind(self.kind)
        except ValueError:
            raise ValidationError(
                f"unknown order kind {self.kind!r}",
                field="kind",
                fix="use batch, gang or service",
            ) from None
        object.__setattr__(self, "kind", kind)
        _require(isinstance(self.firm, bool), "firm", "must be true or false", "true or false")
        _check_int(self.gpus, "gpus", 1, MAX_GPUS, "GPUs per slot, at least 1")
        _check_int(self.release_slot, "release_slot", 0, 2**31, "slots count from the grid epoch")
        _check_int(self.deadline_slot, "deadline_slot", 0, 2**31, "slots count from the epoch")
        _require(
            self.deadline_slot > self.release_slot,
            "deadline_slot",
            f"must be after release_slot ({self.deadline_slot} <= {self.release_slot})",
            "the deadline is the first slot the job may no longer use",
        )
        _check_int(self.limit_fen, "limit_fen", 1, MAX_PRICE_FEN, "fen per GPU-hour (1 yuan = 100)")
        window = self.deadline_slot - self.release_slot
        if kind is OrderKind.GANG:
            _check_int(self.duration_slots, "duration_slots", 1, window, "slots the gang runs")
        else:
            _require(
                self.duration_slots == 0,
                "duration_slots",
                "only gang orders have a duration",
                "give batch work in gpu_hours",
            )
        if kind is OrderKind.BATCH:
            _check_int(self.gpu_hours, "gpu_hours", 1, MAX_GPUS * 10_000, "GPU-hours of work")
        elif kind is OrderKind.SERVICE and self.gpu_hours == 0:
            object.__setattr__(self, "gpu_hours", 0)
        if self.kind is OrderKind.SERVICE:
            _check_int(self.gpu_hours, "gpu_hours", 0, MAX_GPUS * 10_000, "0 means whole window")
        object.__setattr__(self, "gpu_classes", _canonical_classes(self.gpu_classes))
        object.__setattr__(self, "regions", frozenset(self.regions))
        object.__setattr__(self, "provinces", frozenset(self.provinces))
        if self.max_latency_ms is not None:
            _require(
                isinstance(self.max_latency_ms, int | float)
                and math.isfinite(self.max_latency_ms)
                and self.max_latency_ms > 0,
                "max_latency_ms",
                f"must be a positive number of milliseconds, got {self.max_latency_ms!r}",
                "give the one-way latency bound in ms",
            )
            _require(
                bool(self.home),
                "home",
                "is needed when max_latency_ms is set",
                "name the place latency is measured from, e.g. beijing",
            )
        _require(
            self.complete_or_nothing is False
            or (self.complete_or_nothing is True and kind is OrderKind.BATCH),
            "complete_or_nothing",
            f"is for batch orders only (a {kind} order gave {self.complete_or_nothing!r})",
            "a gang is complete or nothing already; leave it out for service orders",
        )
        _check_share(self.min_green_share, "min_green_share")
        _check_int(self.data_gb, "data_gb", 0, MAX_DATA_GB, "input data in whole GB, 0 for none")
        _require(
            self.data_gb == 0 or bool(self.home),
            "home",
            "is needed when data_gb is set",
            "name the region (hub) where the input data lives, e.g. beijing",
        )
        if self.reference_class is not None:
            try:
                ref = gpu_class(self.reference_class).name
            except UnknownReferenceError as err:
                raise UnknownReferenceError(
                    err.message, field="reference_class", fix=err.fix
                ) from None
            object.__setattr__(self, "reference_class", ref)
        speeds: dict[str, float] = {}
        for name, value in self.speed.items():
            try:
                key = gpu_class(name).name
            except UnknownReferenceError as err:
                raise UnknownReferenceError(
                    err.message, field=f"speed.{name}", fix=err.fix
                ) from None
            _require(
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and MIN_SPEED <= value <= MAX_SPEED,
                f"speed.{name}",
                f"must be a number between {MIN_SPEED} and {MAX_SPEED:g}, got {value!r}",
                "give the class's speed relative to the reference class, e.g. 0.5",
            )
            speeds[key] = float(value)
        object.__setattr__(self, "speed", MappingProxyType(speeds))
        _require(
            not (self.interruptible and kind is OrderKind.GANG),
            "interruptible",
            "a gang order cannot be interruptible (it runs all or nothing)",
            "make it a batch order, or leave interruptible out",
        )

    @property
    def window(self) -> int:
        return self.deadline_slot - self.release_slot

    def max_gpu_slots(self, slot_hours: int) -> int:
        """The most GPU-slots the order can take in a market with ``slot_hours`` slots."""
        if self.kind is OrderKind.GANG:
            return self.gpus * self.duration_slots
        if self.kind is OrderKind.SERVICE:
            full = self.gpus * self.window
            return full if self.gpu_hours == 0 else min(full, self.gpu_hours // slot_hours)
        return self.gpu_hours // slot_hours


def speed_of(
    order: Order, gpu_class_name: str, catalogue: Mapping[str, GpuClass] = CATALOGUE
) -> float:
    """Reference GPU-hours of ``order``'s work that one GPU-hour of ``gpu_class_name`` does.

    An override in ``order.speed`` wins; otherwise 1.0 when the order has no reference class
    (every class counts alike), else the ratio of FP16 dense TFLOPS of the class to the
    reference class's, from ``catalogue``.
    """
    return class_speed(order.reference_class, order.speed, gpu_class_name, catalogue)


def class_speed(
    reference_class: str | None,
    overrides: Mapping[str, float],
    gpu_class_name: str,
    catalogue: Mapping[str, GpuClass] = CATALOGUE,
) -> float:
    """:func:`speed_of` from an order's ``reference_class`` and ``speed`` fields alone (for
    stored orders)."""
    name = gpu_class(gpu_class_name, catalogue).name
    if name in overrides:
        return overrides[name]
    if reference_class is None:
        return 1.0
    ref = gpu_class(reference_class, catalogue)
    return catalogue[name].fp16_dense_tflops / ref.fp16_dense_tflops


def transfer_slots(order: Order, link: Link | None, slot_seconds: int) -> int:
    """Whole slots the start of ``order`` waits for its input data to cross ``link``.

    ``ceil(data_gb * 8 / bandwidth_gbps / slot_seconds)``; 0 when the order has no data or
    runs in its home region (``link`` None).
    """
    if link is None or order.data_gb == 0:
        return 0
    seconds = order.data_gb * 8 / link.bandwidth_gbps
    return math.ceil(seconds / slot_seconds - 1e-9)


@dataclass(frozen=True, slots=True)
class Link:
    """A one-way network path for input data between two regions (hubs).

    ``bandwidth_gbps`` is what the exchange may use on it during a clearing (its capacity in
    this market); ``price_fen_per_gb`` is the carrier's transfer price; ``latency_ms`` the
    one-way latency from ``from_region`` to ``to_region``.
    """

    from_region: str
    to_region: str
    latency_ms: float
    bandwidth_gbps: float
    price_fen_per_gb: int

    def __post_init__(self) -> None:
        _check_id(self.from_region, "from_region")
        _check_id(self.to_region, "to_region")
        _require(
            self.from_region != self.to_region,
            "to_region",
            f"must differ from from_region ({self.to_region!r})",
            "a link joins two different regions; data in its own region moves for free",
        )
        _require(
            isinstance(self.latency_ms, int | float)
            and not isinstance(self.latency_ms, bool)
            and math.isfinite(self.latency_ms)
            and self.latency_ms >= 0,
            "latency_ms",
            f"must be a non-negative number of milliseconds, got {self.latency_ms!r}",
            "give the one-way latency in ms",
        )
        _require(
            isinstance(self.bandwidth_gbps, int | float)
            and not isinstance(self.bandwidth_gbps, bool)
            and math.isfinite(self.bandwidth_gbps)
            and 0 < self.bandwidth_gbps <= 1e6,
            "bandwidth_gbps",
            f"must be a positive number of Gbit/s up to 1e6, got {self.bandwidth_gbps!r}",
            "give the bandwidth the exchange may use, e.g. 100",
        )
        _check_int(
            self.price_fen_per_gb,
            "price_fen_per_gb",
            0,
            MAX_TRANSFER_PRICE_FEN,
            "fen per GB moved (1 yuan = 100 fen)",
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.from_region, self.to_region)

    def gb_per_slot(self, slot_seconds: int) -> float:
        """GB the link carries in one slot at its full bandwidth."""
        return self.bandwidth_gbps * slot_seconds / 8


def _canonical_classes(names: Iterable[str]) -> frozenset[str]:
    out = set()
    for name in names:
        try:
            out.add(gpu_class(name).name)
        except UnknownReferenceError as err:
            raise UnknownReferenceError(err.message, field="gpu_classes", fix=err.fix) from None
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Market:
    """Everything one clearing needs: the grid, the horizon and the open orders and offers.

    The clearing covers slots ``[first_slot, first_slot + n_slots)``. ``green_share[pool_id]``
    gives each pool's green share per slot of the horizon (missing pools count as 0).
    """

    grid: TimeGrid
    first_slot: int
    n_slots: int
    sites: tuple[Site, ...]
    pools: tuple[Pool, ...]
    offers: tuple[Offer, ...]
    orders: tuple[Order, ...]
    green_share: Mapping[str, tuple[float, ...]] = field(default_factory=dict, hash=False)
    catalogue: Mapping[str, GpuClass] = field(
        default_factory=lambda: CATALOGUE, hash=False, repr=False
    )
    links: tuple[Link, ...] = ()
    #: Time preference, fen per GPU-hour per slot: the clearing values a GPU-slot this much
    #: less for each slot after the order could first start there, so that among equally
    #: good slots the earliest wins (work done now leaves later capacity to orders not yet
    #: submitted). It shapes the optimisation only: reported welfare leaves it out, and as a
    #: lower value it never makes a buyer pay above its limit. 0: none. In a market with
    #: reserves finer than a fen (``reserve_mfen``) it is a tie-break only: the whole time
    #: preference over the horizon stays below one milli-fen, so any difference in reserves
    #: (a carbon price's) outweighs it (docs/market.md).
    delay_fen: int = 0
    #: Reserves finer than a fen, milli-fen per GPU-hour, by offer id, one per slot of the
    #: offer (as ``Offer.reserve_fen``), e.g. an exact carbon adder
    #: (:func:`suangu.core.energy.hooks.apply_carbon_price`): the clearing prices these
    #: offers' GPU-slots at them, and each ``reserve_fen`` is its milli-fen rounded down
    #: (what fills record and settlement uses). Empty: whole-fen reserves.
    reserve_mfen: Mapping[str, tuple[int, ...]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check_int(self.first_slot, "first_slot", 0, 2**31, "slots count from the grid epoch")
        _check_int(self.n_slots, "n_slots", 1, 24 * 366, "the horizon in slots, e.g. 24")
        _check_int(self.delay_fen, "delay_fen", 0, 10_000, "fen per GPU-hour per slot, e.g. 1")
        for name in ("sites", "pools", "offers", "orders", "links"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        seen_links: set[tuple[str, str]] = set()
        for i, link in enumerate(self.links):
            _require(
                isinstance(link, Link),
                f"links[{i}]",
                f"must be a Link, got {type(link).__name__}",
                "build links with suangu.core.types.Link",
            )
            _require(
                link.key not in seen_links,
                f"links[{i}]",
                f"duplicate link {link.from_region} -> {link.to_region}",
                "give each (from_region, to_region) pair once",
            )
            seen_links.add(link.key)
        _unique(self.sites, "sites")
        _unique(self.pools, "pools")
        _unique(self.offers, "offers")
        _unique(self.orders, "orders")
        site_ids = {s.id for s in self.sites}
        pool_ids = {p.id for p in self.pools}
        for i, pool in enumerate(self.pools):
            if pool.site_id not in site_ids:
                raise UnknownReferenceError(
                    f"unknown site {pool.site_id!r}", field=f"pools[{i}].site_id", fix="add it"
                )
            if pool.gpu_class not in self.catalogue:
                raise UnknownReferenceError(
                    f"GPU class {pool.gpu_class!r} is not in the catalogue",
                    field=f"pools[{i}].gpu_class",
                    fix="add it to the catalogue",
                )
        for i, offer in enumerate(self.offers):
            if offer.pool_id not in pool_ids:
                raise UnknownReferenceError(
                    f"unknown pool {offer.pool_id!r}", field=f"offers[{i}].pool_id", fix="add it"
                )
        green = {}
        for pool_id, shares in self.green_share.items():
            if pool_id not in pool_ids:
                raise UnknownReferenceError(
                    f"unknown pool {pool_id!r}", field="green_share", fix="key it by pool id"
                )
            values = tuple(float(v) for v in shares)
            _require(
                len(values) == self.n_slots,
                f"green_share.{pool_id}",
                f"has {len(values)} values for a horizon of {self.n_slots} slots",
                "give one share per slot of the horizon",
            )
            for k, v in enumerate(values):
                _check_share(v, f"green_share.{pool_id}[{k}]")
            green[pool_id] = values
        object.__setattr__(self, "green_share", MappingProxyType(green))
        by_id = {o.id: o for o in self.offers}
        fine = {}
        for offer_id, values in self.reserve_mfen.items():
            found = by_id.get(offer_id)
            if found is None:
                raise UnknownReferenceError(
                    f"unknown offer {offer_id!r}", field="reserve_mfen", fix="key it by offer id"
                )
            mfen = tuple(values)
            _require(
                len(mfen) == len(found.reserve_fen)
                and all(
                    isinstance(v, int) and v >= 0 and v // MILLI == r
                    for v, r in zip(mfen, found.reserve_fen, strict=True)
                ),
                f"reserve_mfen.{offer_id}",
                "must give one whole milli-fen value per slot of the offer, each rounding "
                "down to its reserve_fen",
                "build it with apply_carbon_price",
            )
            fine[offer_id] = mfen
        object.__setattr__(self, "reserve_mfen", MappingProxyType(fine))

    @property
    def end_slot(self) -> int:
        return self.first_slot + self.n_slots

    def link(self, from_region: str, to_region: str) -> Link | None:
        """The link ``from_region -> to_region``, or None."""
        for link in self.links:
            if link.from_region == from_region and link.to_region == to_region:
                return link
        return None

    def site(self, site_id: str) -> Site:
        for s in self.sites:
            if s.id == site_id:
                return s
        raise UnknownReferenceError(f"unknown site {site_id!r}", field="site_id")


def _unique(items: Sequence[Any], name: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.id in seen:
            raise ValidationError(
                f"duplicate id {item.id!r}", field=f"{name}[{i}].id", fix="ids must be unique"
            )
        seen.add(item.id)


class ClearingStatus(StrEnum):
    """How good a clearing is proven to be (``ClearingResult.gap`` gives the distance)."""

    #: Proven within ``engine.OPTIMAL_GAP`` (1e-6 relative) of the optimum.
    OPTIMAL = "optimal"
    #: The search ended (its gap target reached, or a heuristic whose bound is certified)
    #: with a certified gap above that tolerance: the welfare is within ``gap`` of the bound.
    FEASIBLE = "feasible"
    #: Stopped at the time limit with the best clearing found, within ``gap`` of the bound.
    TIME_LIMIT = "time_limit"
    #: A heuristic clearing with no bound (e.g. the pay-as-bid greedy baseline).
    HEURISTIC = "heuristic"
    EMPTY = "empty"  # nothing could trade: no orders, no offers or no eligible pairs
    FAILED = "failed"  # the solver failed; nothing allocated


@dataclass(frozen=True, slots=True)
class Allocation:
    """``gpus`` GPUs of ``pool_id`` in ``slot`` for ``order_id`` at ``price_fen`` per GPU-hour."""

    order_id: str
    buyer_id: str
    pool_id: str
    slot: int
    gpus: int
    price_fen: int


@dataclass(frozen=True, slots=True)
class OfferFill:
    """How much of an offer sold in one slot, at the pool's clearing price."""

    offer_id: str
    provider_id: str
    pool_id: str
    slot: int
    gpus: int
    price_fen: int
    reserve_fen: int


@dataclass(frozen=True, slots=True)
class PoolPrice:
    """The locational marginal price of a pool in a slot, fen per GPU-hour."""

    pool_id: str
    slot: int
    price_fen: int
    cleared_gpus: int
    offered_gpus: int


@dataclass(frozen=True, slots=True)
class LinkPrice:
    """A link's congestion price in a clearing and the data it carries over the horizon.

    ``congestion_fen_per_gb`` is the dual of the link's bandwidth row (0 when the link is
    not congested), charged to the orders moving data over it on top of the carrier's
    ``transfer_fen_per_gb``."""

    from_region: str
    to_region: str
    congestion_fen_per_gb: int
    transfer_fen_per_gb: int
    gb: float  # moved over the horizon
    capacity_gb: float  # bandwidth x horizon


@dataclass(frozen=True, slots=True)
class Transfer:
    """Input data an order moves over a link, and what the buyer is charged for it.

    ``gb`` is the order's data times the share of its work done at the far end; the buyer
    pays ``carrier_fen`` (``gb x transfer price``, passed to the carrier) and
    ``congestion_fen`` (``gb x congestion price``, the exchange's congestion rent), each
    rounded down to whole fen."""

    order_id: str
    buyer_id: str
    from_region: str
    to_region: str
    gb: float
    transfer_fen_per_gb: int
    congestion_fen_per_gb: int
    carrier_fen: int
    congestion_fen: int

    @property
    def amount_fen(self) -> int:
        return self.carrier_fen + self.congestion_fen


@dataclass(frozen=True, slots=True)
class ClearingResult:
    status: ClearingStatus
    method: str
    allocations: tuple[Allocation, ...]
    fills: tuple[OfferFill, ...]
    prices: tuple[PoolPrice, ...]
    welfare_fen: int
    #: Seconds per phase; not part of the result's identity (``==`` ignores it).
    timings: Mapping[str, float] = field(default_factory=dict, hash=False, compare=False)
    message: str = ""
    rejected_gangs: tuple[str, ...] = ()
    slot_hours: int = 1
    #: Certified bound on how far welfare may be below the optimum, relative (0: exact):
    #: ``(bound - welfare) / bound`` for the best upper bound the clearing proved.
    gap: float = 0.0
    #: One row per market link: congestion price and GB moved.
    link_prices: tuple[LinkPrice, ...] = ()
    #: Data moved per order and link, with the fen charged for it.
    transfers: tuple[Transfer, ...] = ()

    def transfer_fen(self, order_id: str) -> int:
        """What ``order_id`` is charged for moving its data (carrier + congestion)."""
        return sum(t.amount_fen for t in self.transfers if t.order_id == order_id)

    def transfer_charges(self) -> dict[str, tuple[int, int]]:
        """``(carrier fen, congestion fen)`` per order that moves data, in one pass."""
        out: dict[str, tuple[int, int]] = {}
        for t in self.transfers:
            carrier, congestion = out.get(t.order_id, (0, 0))
            out[t.order_id] = (carrier + t.carrier_fen, congestion + t.congestion_fen)
        return out
