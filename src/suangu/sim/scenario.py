"""Scenario and order-stream files: validated with Pydantic, converted to core types.

Scenario (YAML)
---------------
::

    name: east-west                 # required
    start: 2025-06-02T00:00:00Z     # required: the grid epoch, ISO date-time (UTC if no zone)
    slot_seconds: 3600              # default 3600 (one hour)
    hours: 72                       # required: the simulated span, in slots
    lookahead: 24                   # default 24: each clearing covers [h, h + lookahead)
    exchange_fee_bps: 300           # default 300 (3% of what providers are paid)
    utc_offset_hours: 8             # default 8: daily profiles are indexed by local hour
    sites:                          # required, at least one
      - {id: horinger, name: Horinger, province: Inner Mongolia, region: inner_mongolia,
         lat: 40.55, lon: 111.85, pue: 1.18, latency_ms: {beijing: 2.9},
         green_share: 0.85}         # optional: a share 0..1 or a 24-value daily profile
    pools:                          # required
      - {id: horinger-h100, site: horinger, gpu_class: H100,
         green_share: 0.9}          # optional, overrides the site's
    offers:                         # required
      - {id: o1, provider: cloudvalley, pool: horinger-h100,
         from: 0, to: 96,           # optional: default the whole span [0, hours + lookahead)
         gpus: 64,                  # a number, or a 24-value daily profile (local hours)
         reserve: 12.50}            # yuan per GPU-hour (<= 2 decimals), or a 24-value profile
    energy:                         # optional: the energy and carbon model (suangu.core.energy)
      model: true                   # default true once the block is there
      seed: 0                       # default 0: seed of the modelled weather
      carbon_price_yuan_per_t: 0    # default 0: added to every reserve (hooks.apply_carbon_price)
      home_grid: Beijing            # optional: buyers' home grid, for "avoided vs home grid"
    links:                          # optional: one-way hub-to-hub links for input data
      - {from: beijing_tianjin_hebei, to: inner_mongolia,   # region ids of the sites
         latency_ms: 2.3, bandwidth_gbps: 10,               # what the exchange may use
         price_per_gb: 0.06}                                # yuan per GB moved (<= 2 decimals)
    time_preference: 0.01           # default 0: yuan per GPU-hour per slot of delay
    protect_firm_hours: 24          # default 0 (off): firm-order protection's look-back
    firm_slots: 1                   # default null: slots of each clearing that become firm
                                    # (leases); later slots are a plan the next clearing
                                    # re-plans; null: every allocation is firm at once

With ``energy.model`` true, each site uses the packaged energy-data site named by its
``energy_site`` (default: its own id; the ids are the keys of ``suangu/data/energy/sites.yaml``),
pools' green shares come from the model hour by hour, and ``green_share`` numbers in the file
are refused (they would be silently overridden). Without the block, or with ``model: false``,
``green_share`` numbers are used as before and no energy is modelled.

Times (``from``, ``to``, and the order times below) are hour offsets from ``start`` (``12``)
or ISO date-times (``2025-06-02T12:00:00Z``); they must fall on slot boundaries. A daily
profile has 24 values, one per local hour of day (``start`` + ``utc_offset_hours``), repeated
over the whole span. Every pool is sold by one provider.

Order stream (CSV or YAML)
--------------------------
CSV: one header row, then one order per row; an empty cell means the default. YAML: a mapping
with one key ``orders:`` holding a list of mappings with the same fields.

=================  ========  ===============================================================
column             required  meaning
=================  ========  ===============================================================
id                 yes       unique order id
buyer              yes       buyer member id
kind               yes       ``batch`` (divisible work), ``gang`` (all-or-nothing), ``service``
                             (``complete_or_nothing: true``, batch only: partial work is
                             worthless, served in full within one clearing or not at all)
gpus               yes       GPUs at most per slot (gang: exactly)
gpu_hours          batch     GPU-hours of work (service: optional cap, default whole window)
duration           gang      slots a gang runs, contiguous, in one pool
submit             no        when the buyer submits the order (default 0)
release            no        earliest time the work may run (default: submit)
deadline           yes       the work must end by then (exclusive)
limit              yes       most the buyer pays, yuan per GPU-hour, at most 2 decimals
gpu_classes        no        accepted GPU classes, ``;``-separated (default any)
regions            no        allowed regions (data residency), ``;``-separated (default any)
provinces          no        allowed provinces, ``;``-separated (default any)
home               no        the buyer's home: a region id (hub: where its data and users are)
                             or a place named in the sites' ``latency_ms``
max_latency_ms     no        one-way latency bound to ``home`` (needs ``home``): a site's own
                             ``latency_ms[home]``, else 0 in the home region, else the latency
                             of the link home -> site region; no entry and no link: ineligible
min_green_share    no        minimum green share 0..1 of the GPU-hours it gets (default 0)
data_gb            no        input data, whole GB, held at ``home`` (then a region id); running
                             away from home moves it over a link: delay and transfer price
reference_class    no        GPU class that ``gpu_hours`` and ``limit`` count in: a GPU-hour of
                             class c does speed(c) reference GPU-hours of work and is worth
                             ``limit x speed(c)`` (default none: every class counts alike)
speed              no        per-class speed overrides, ``;``-separated ``class=factor`` pairs,
                             e.g. ``H100=3;L40S=1.1`` (default: FP16 TFLOPS ratio to the
                             reference class)
firm               no        ``true``: the deadline is firm (a miss counts against a policy in
                             ``suangu bench``); default ``false``
=================  ========  ===============================================================

Errors: every problem raises :class:`~suangu.sim.errors.ScenarioError` naming the file, the
line, the field and the fix.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
)
from pydantic import ValidationError as PydanticValidationError

from suangu.core.errors import UnknownReferenceError, ValidationError
from suangu.core.gpus import ALIASES
from suangu.core.lifecycle import DEFAULT_FIRM_SLOTS
from suangu.core.types import (
    MAX_DATA_GB,
    MAX_GPUS,
    MAX_PRICE_FEN,
    MAX_SPEED,
    MAX_TRANSFER_PRICE_FEN,
    MIN_SPEED,
    SECONDS_PER_HOUR,
    Link,
    Offer,
    Order,
    OrderKind,
    Pool,
    Site,
    TimeGrid,
)
from suangu.sim.errors import ScenarioError
from suangu.workload import WorkloadSpec

#: Values in a daily profile: one per local hour of day.
PROFILE_LEN = 24
#: The longest simulated span and clearing horizon, in slots.
MAX_HOURS = 24 * 366
MAX_LOOKAHEAD = 24 * 14

Loc = tuple[str | int, ...]

# --- field value types ------------------------------------------------------------------------

#: A point in time: an hour offset from the scenario start, or an aware date-time.
When = Decimal | datetime
IntProfile = int | tuple[int, ...]
ShareProfile = float | tuple[float, ...]

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _decimal(value: Any, what: str) -> Decimal:
    """A number given as int, float, Decimal or text, as an exact Decimal."""
    if isinstance(value, bool):
        raise ValueError(f"must be {what}, got {value!r}")
    if isinstance(value, int | Decimal):
        d = Decimal(value)
    elif isinstance(value, float):
        d = Decimal(repr(value))  # the shortest text that round-trips: what the file said
    elif isinstance(value, str) and _NUMBER.match(value.strip()):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"must be {what}, got {value!r}") from None
    else:
        raise ValueError(f"must be {what}, got {value!r}")
    if not d.is_finite():
        raise ValueError(f"must be {what}, got {value!r}")
    return d


def _fen(value: Any, *, minimum: int = 0) -> int:
    """Yuan (at most 2 decimals) -> integer fen, exactly."""
    d = _decimal(value, "a price in yuan, e.g. 12.50")
    fen = d * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"has more than 2 decimals: {value!r} yuan is not a whole number of fen")
    n = int(fen)
    if n < minimum:
        low = "0.01" if minimum == 1 else f"{minimum / 100:.2f}"
        raise ValueError(f"must be at least {low} yuan, got {value!r}")
    if n > MAX_PRICE_FEN:
        raise ValueError(
            f"must be at most {MAX_PRICE_FEN // 100:,} yuan per GPU-hour, got {value!r}"
        )
    return n


def _profile_items(value: Any) -> list[Any]:
    if len(value) != PROFILE_LEN:
        raise ValueError(
            f"a daily profile needs {PROFILE_LEN} values (one per local hour), got {len(value)}"
        )
    return list(value)


def _gpus_value(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"must be a whole number of GPUs, got {value!r}")
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"must be a whole number of GPUs, got {value!r}") from None
    if not 0 <= n <= MAX_GPUS:
        raise ValueError(f"must be between 0 and {MAX_GPUS:,} GPUs, got {value!r}")
    return n


def _int_profile(value: Any) -> IntProfile:
    if isinstance(value, list | tuple):
        return tuple(_gpus_value(v) for v in _profile_items(value))
    return _gpus_value(value)


def _fen_profile(value: Any) -> IntProfile:
    if isinstance(value, list | tuple):
        return tuple(_fen(v) for v in _profile_items(value))
    return _fen(value)


def _share(value: Any) -> float:
    d = _decimal(value, "a share between 0 and 1, e.g. 0.8")
    if not 0 <= d <= 1:
        raise ValueError(f"must be a share between 0 and 1 (0.8 = 80%), got {value!r}")
    return float(d)


def _share_profile(value: Any) -> ShareProfile:
    if isinstance(value, list | tuple):
        return tuple(_share(v) for v in _profile_items(value))
    return _share(value)


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _when(value: Any) -> When:
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, date):
        raise ValueError(f"needs a time of day too, e.g. {value.isoformat()}T00:00:00Z")
    if isinstance(value, str) and not _NUMBER.match(value.strip()):
        text = value.strip()
        try:
            return _aware(datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            raise ValueError(f"must be an hour offset or an ISO date-time, got {value!r}") from None
    hours = _decimal(value, "an hour offset or an ISO date-time")
    if hours < 0:
        raise ValueError(f"must not be before the scenario start (hour 0), got {value!r}")
    return hours


def _start(value: Any) -> datetime:
    when = _when(value)
    if not isinstance(when, datetime):
        raise ValueError(f"must be an ISO date-time such as 2025-06-02T00:00:00Z, got {value!r}")
    return when


def _fen_limit(value: Any) -> int:
    return _fen(value, minimum=1)


def _names(value: Any) -> Any:
    """``a;b`` or ``[a, b]`` -> a tuple of stripped names (empty parts dropped)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(s.strip() for s in value.split(";") if s.strip())
    if isinstance(value, list | tuple):
        return tuple(str(s).strip() for s in value if str(s).strip())
    return value


def _blank_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _speeds(value: Any) -> Any:
    """``H100=3;L40S=1.2`` (CSV) or a mapping (YAML) -> a dict of class -> speed factor."""
    if value is None:
        return {}
    if isinstance(value, str):
        out: dict[str, Any] = {}
        for part in value.split(";"):
            if not part.strip():
                continue
            name, eq, number = part.partition("=")
            if not eq or not name.strip() or not number.strip():
                raise ValueError(f"must be ';'-separated class=factor pairs, got {value!r}")
            out[name.strip()] = number.strip()
        return out
    return value


def _transfer_fen(value: Any) -> int:
    """Yuan per GB (at most 2 decimals) -> integer fen per GB."""
    d = _decimal(value, "a price in yuan per GB, e.g. 0.12")
    fen = d * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"has more than 2 decimals: {value!r} yuan is not a whole number of fen")
    if not 0 <= fen <= MAX_TRANSFER_PRICE_FEN:
        raise ValueError(
            f"must be between 0 and {MAX_TRANSFER_PRICE_FEN // 100:,} yuan per GB, got {value!r}"
        )
    return int(fen)


GpusField = Annotated[IntProfile, PlainValidator(_int_profile)]
ReserveField = Annotated[IntProfile, PlainValidator(_fen_profile)]
ShareField = Annotated[ShareProfile, PlainValidator(_share_profile)]
WhenField = Annotated[When, PlainValidator(_when)]
TransferField = Annotated[int, PlainValidator(_transfer_fen)]
SpeedField = Annotated[
    dict[str, Annotated[float, Field(ge=MIN_SPEED, le=MAX_SPEED, allow_inf_nan=False)]],
    BeforeValidator(_speeds),
]
LimitField = Annotated[int, PlainValidator(_fen_limit)]
StartField = Annotated[datetime, PlainValidator(_start)]
Names = Annotated[tuple[str, ...], BeforeValidator(_names)]
Id = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")]


# --- file models ---------------------------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class SiteSpec(_Spec):
    id: Id
    name: str = ""
    province: Id
    region: Id
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    pue: float = Field(default=1.2, ge=1.0, le=3.0)
    latency_ms: dict[str, Annotated[float, Field(ge=0, le=10_000)]] = Field(default_factory=dict)
    green_share: ShareField | None = None
    energy_site: Id | None = None


class PoolSpec(_Spec):
    id: Id
    site: Id
    gpu_class: Id
    green_share: ShareField | None = None


class OfferSpec(_Spec):
    id: Id
    provider: Id
    pool: Id
    from_: WhenField | None = Field(default=None, alias="from")
    to: WhenField | None = None
    gpus: GpusField
    reserve: ReserveField


class EnergySpec(_Spec):
    model: bool = True
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    carbon_price_yuan_per_t: float = Field(default=0.0, ge=0, le=100_000, allow_inf_nan=False)
    home_grid: Id | None = None


class LinkSpec(_Spec):
    from_: Id = Field(alias="from")
    to: Id
    latency_ms: float = Field(ge=0, le=10_000, allow_inf_nan=False)
    bandwidth_gbps: float = Field(gt=0, le=1_000_000, allow_inf_nan=False)
    price_per_gb: TransferField


class ScenarioSpec(_Spec):
    name: Id
    start: StartField
    slot_seconds: int = Field(default=SECONDS_PER_HOUR, ge=SECONDS_PER_HOUR, le=7 * 24 * 3600)
    hours: int = Field(ge=1, le=MAX_HOURS)
    lookahead: int = Field(default=24, ge=1, le=MAX_LOOKAHEAD)
    exchange_fee_bps: int = Field(default=300, ge=0, le=10_000)
    utc_offset_hours: int = Field(default=8, ge=-12, le=14)
    sites: list[SiteSpec] = Field(min_length=1)
    pools: list[PoolSpec] = Field(min_length=1)
    offers: list[OfferSpec] = Field(min_length=1)
    energy: EnergySpec | None = None
    links: list[LinkSpec] = Field(default_factory=list)
    #: yuan per GPU-hour per slot of delay (Market.delay_fen): the clearing's preference for
    #: serving work early among equally good slots; 0 = none.
    time_preference: Annotated[int, PlainValidator(_fen)] = 0
    #: hours of history behind the ``suangu`` policy's firm-order protection; 0 = none
    #: (see :mod:`suangu.sim.simulate`).
    protect_firm_hours: int = Field(default=0, ge=0, le=MAX_HOURS)
    #: the firmness horizon: slots of each clearing that become firm (commit late, plan
    #: early; :func:`suangu.core.lifecycle.commit`); None: every allocation is firm at once.
    firm_slots: int | None = Field(default=DEFAULT_FIRM_SLOTS, ge=1, le=MAX_LOOKAHEAD)


class OrderSpec(_Spec):
    id: Id
    buyer: Id
    kind: OrderKind
    gpus: int = Field(ge=1, le=MAX_GPUS)
    gpu_hours: int | None = Field(default=None, ge=0, le=MAX_GPUS * 10_000)
    duration: int | None = Field(default=None, ge=1, le=MAX_HOURS)
    submit: WhenField | None = None
    release: WhenField | None = None
    deadline: WhenField
    limit: LimitField
    gpu_classes: Names = ()
    regions: Names = ()
    provinces: Names = ()
    home: Annotated[str | None, BeforeValidator(_blank_none)] = None
    max_latency_ms: float | None = Field(default=None, gt=0, le=10_000)
    min_green_share: float = Field(default=0.0, ge=0, le=1)
    data_gb: int = Field(default=0, ge=0, le=MAX_DATA_GB)
    reference_class: Annotated[str | None, BeforeValidator(_blank_none)] = None
    speed: SpeedField = Field(default_factory=dict)
    #: The interruptible tier: cleared after firm demand, preemptible by it with notice.
    interruptible: bool = False
    #: What runs (the API stores it with the order; simulations ignore it).
    workload: WorkloadSpec | None = None
    #: ``true``: the deadline is firm (firm-order protection; a miss counts in reports).
    firm: bool = False
    #: Batch only: served in full or not at all.
    complete_or_nothing: bool = False

    def to_order(self, buyer_id: str, release_slot: int, deadline_slot: int) -> Order:
        """The core order of this spec once its times are slots (core rules validate it)."""
        return Order(
            id=self.id,
            buyer_id=buyer_id,
            kind=self.kind,
            gpus=self.gpus,
            release_slot=release_slot,
            deadline_slot=deadline_slot,
            limit_fen=self.limit,
            gpu_hours=self.gpu_hours or 0,
            duration_slots=self.duration or 0,
            gpu_classes=frozenset(self.gpu_classes),
            regions=frozenset(self.regions),
            provinces=frozenset(self.provinces),
            home=self.home,
            max_latency_ms=self.max_latency_ms,
            min_green_share=self.min_green_share,
            complete_or_nothing=self.complete_or_nothing,
            data_gb=self.data_gb,
            reference_class=self.reference_class,
            speed=dict(self.speed),
            firm=self.firm,
            interruptible=self.interruptible,
        )


class StreamOrderSpec(OrderSpec):
    """An order of a stream file: an order spec and whether its deadline is firm."""


class OrderStreamSpec(_Spec):
    """A YAML list of order specs (the API's job specs)."""

    orders: list[OrderSpec]


class StreamFileSpec(_Spec):
    """An order-stream YAML file: order specs with ``firm``."""

    orders: list[StreamOrderSpec]


#: CSV columns of an order stream, in the documented order.
ORDER_COLUMNS: tuple[str, ...] = tuple(StreamOrderSpec.model_fields)
_REQUIRED_COLUMNS = ("id", "buyer", "kind", "gpus", "deadline", "limit")

#: How to fix a value, by field name (the last part of its path).
_FIX: Mapping[str, str] = {
    "name": "give it a name",
    "start": "an ISO date-time in UTC, e.g. 2025-06-02T00:00:00Z",
    "slot_seconds": "use 3600, one hour, or a multiple of it",
    "hours": "the simulated span in slots, e.g. 72",
    "lookahead": "the clearing horizon in slots, e.g. 24",
    "time_preference": "yuan per GPU-hour per slot of delay, e.g. 0.01 (0 = none)",
    "protect_firm_hours": "hours of firm demand the protection looks back on, e.g. 24 (0 = off)",
    "firm_slots": "slots of each clearing that become firm, e.g. 1 (null: all at once)",
    "exchange_fee_bps": "the fee in basis points: 300 = 3%",
    "utc_offset_hours": "hours east of UTC of the daily profiles' clock: 8 for China",
    "id": "give every object a unique id without leading or trailing spaces",
    "province": "the province of the site, e.g. Inner Mongolia",
    "region": "the hub region, e.g. inner_mongolia",
    "lat": "latitude in degrees, -90..90",
    "lon": "longitude in degrees, -180..180",
    "pue": "facility power / IT power, 1.0..3.0, typically 1.1-1.6",
    "latency_ms": "a map from place to one-way latency in ms, e.g. {beijing: 2.9}",
    "green_share": "a share 0..1, 0.8 = 80%, or a list of 24 hourly shares",
    "energy": "a mapping such as {model: true, seed: 0, carbon_price_yuan_per_t: 0}",
    "model": "true to model energy and carbon (green shares from the model), false not to",
    "seed": "a whole number >= 0: the seed of the modelled weather",
    "carbon_price_yuan_per_t": "yuan per tonne of CO2, 0..100,000, e.g. 100",
    "home_grid": "a province or grid region of the emission-factor table, e.g. Beijing",
    "energy_site": "a site of the packaged energy data (suangu/data/energy/sites.yaml)",
    "site": "the id of a site listed under sites:",
    "pool": "the id of a pool listed under pools:",
    "provider": "the provider's member id",
    "gpu_class": "a GPU class of the catalogue: H100, A800, 910B, L40S, ...",
    "gpu_classes": "';'-separated GPU classes of the catalogue, e.g. H100;A800",
    "gpus": "whole GPUs, or a list of 24 hourly values",
    "reserve": "yuan per GPU-hour with at most 2 decimals, e.g. 12.50, or 24 hourly values",
    "limit": "yuan per GPU-hour with at most 2 decimals, e.g. 12.50",
    "from": "hours from the scenario start, e.g. 12, or an ISO date-time",
    "to": "hours from the scenario start, e.g. 96, or an ISO date-time; after from",
    "submit": "hours from the scenario start, e.g. 12, or an ISO date-time",
    "release": "hours from the scenario start, e.g. 12, or an ISO date-time",
    "deadline": "hours from the scenario start, after release, or an ISO date-time",
    "kind": "use batch, gang or service",
    "buyer": "the buyer's member id",
    "gpu_hours": "GPU-hours of work, a whole number; batch orders need it",
    "duration": "slots a gang order runs, a whole number; gang orders only",
    "regions": "';'-separated region ids of the scenario's sites",
    "provinces": "';'-separated provinces of the scenario's sites",
    "home": "a place named in the sites' latency_ms, e.g. beijing",
    "max_latency_ms": "a positive one-way latency bound in ms; needs home",
    "min_green_share": "a share 0..1, e.g. 0.6",
    "firm": "true if the deadline is firm, else false (or empty)",
    "sites": "list the data centres under sites:",
    "pools": "list the GPU pools under pools:",
    "offers": "list the offers under offers:",
    "orders": "list the orders under orders:",
    "links": "list hub-to-hub links under links:, e.g. {from: beijing_tianjin_hebei, "
    "to: inner_mongolia, latency_ms: 2.3, bandwidth_gbps: 10, price_per_gb: 0.06}",
    "data_gb": "input data in whole GB held at home (a region id), e.g. 500; 0 for none",
    "reference_class": "the GPU class work and limit are counted in, e.g. A800",
    "speed": "';'-separated class=factor pairs, e.g. H100=3;L40S=1.1 (relative to the "
    "reference class)",
}

#: Fixes of the fields of a link (``links[i].from`` is not an offer's ``from``).
_LINK_FIX: Mapping[str, str] = {
    "from": "the region (hub) id the data leaves, e.g. beijing_tianjin_hebei",
    "to": "the region (hub) id the data goes to, e.g. inner_mongolia",
    "latency_ms": "one-way latency in ms, e.g. 9.7",
    "bandwidth_gbps": "Gbit/s the exchange may use on the link, e.g. 10",
    "price_per_gb": "yuan per GB moved with at most 2 decimals, e.g. 0.12",
}

#: Fixes that differ for order streams.
_ORDER_FIX: Mapping[str, str] = {
    "gpus": "whole GPUs per slot, at least 1; a gang gets exactly this many",
    "id": "give every order a unique id without leading or trailing spaces",
}

#: Core field names -> file field names (for errors raised by the core constructors).
_CORE_FIELDS: Mapping[str, str] = {
    "site_id": "site",
    "provider_id": "provider",
    "pool_id": "pool",
    "start_slot": "from",
    "end_slot": "to",
    "reserve_fen": "reserve",
    "limit_fen": "limit",
    "release_slot": "release",
    "deadline_slot": "deadline",
    "duration_slots": "duration",
    "buyer_id": "buyer",
}


# --- converted, core-level objects ---------------------------------------------------------


@dataclass(frozen=True)
class EnergyConfig:
    """The scenario's ``energy:`` block with the model on (see the module docs)."""

    seed: int
    carbon_price_yuan_per_t: float
    #: scenario site id -> packaged energy-data site id
    sites: Mapping[str, str]
    home_grid: str | None = None


@dataclass(frozen=True)
class Scenario:
    """A validated scenario in core types. Slot ``k`` starts ``k * slot_seconds`` after start."""

    name: str
    source: str
    grid: TimeGrid
    hours: int
    lookahead: int
    fee_bp: int
    utc_offset_hours: int
    sites: tuple[Site, ...]
    pools: tuple[Pool, ...]
    offers: tuple[Offer, ...]
    #: pool id -> the provider that sells it
    providers: Mapping[str, str]
    #: pool id -> green share per local hour of day (24 values); pools absent count as 0
    green_profiles: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    #: the energy model's settings; None: no energy model (green shares from the file)
    energy: EnergyConfig | None = None
    #: Market.delay_fen of every clearing: fen per GPU-hour per slot of delay
    delay_fen: int = 0
    #: one-way hub-to-hub links for buyers' input data (``links:``)
    links: tuple[Link, ...] = ()
    #: hours of history behind the ``suangu`` policy's firm-order protection (0 = off)
    protect_firm_hours: int = 0
    #: the firmness horizon in slots (None: every allocation is firm at once)
    firm_slots: int | None = DEFAULT_FIRM_SLOTS
    #: the interruptible tier's notice: firm demand preempts interruptible GPU-slots that
    #: start this many slots or more after a clearing's first slot (:mod:`suangu.core.products`)
    notice_slots: int = 1

    @property
    def regions(self) -> tuple[str, ...]:
        """The regions (hubs) of the sites, in the order they first appear."""
        return tuple(dict.fromkeys(s.region for s in self.sites))

    @property
    def slot_hours(self) -> int:
        return self.grid.slot_hours

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.grid.epoch, UTC)

    def local_hour(self, slot: int) -> int:
        """The local hour of day (0..23) at the start of ``slot``."""
        return (self.grid.slot_start(slot) // SECONDS_PER_HOUR + self.utc_offset_hours) % 24

    def green_share(self, first_slot: int, n_slots: int) -> dict[str, tuple[float, ...]]:
        """Green share per pool for slots ``[first_slot, first_slot + n_slots)``."""
        hours = [self.local_hour(first_slot + k) for k in range(n_slots)]
        return {pid: tuple(prof[h] for h in hours) for pid, prof in self.green_profiles.items()}

    def site_of(self, pool_id: str) -> Site:
        pools = {p.id: p for p in self.pools}
        return next(s for s in self.sites if s.id == pools[pool_id].site_id)


@dataclass(frozen=True)
class StreamOrder:
    """An order of the stream: the core order and the slot in which the buyer submits it."""

    order: Order
    submit_slot: int
    line: int | None = None


@dataclass(frozen=True)
class OrderStream:
    source: str
    orders: tuple[StreamOrder, ...]
    #: ids of the orders whose deadline is firm (a miss counts against a policy)
    firm: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # One truth: an order is firm when its id is in ``firm`` or its order says so, and
        # then its ``Order.firm`` says so too (as a stream file read back gives it).
        firm = self.firm | {s.order.id for s in self.orders if s.order.firm}
        orders = tuple(
            s
            if s.order.firm == (s.order.id in firm)
            else replace(s, order=replace(s.order, firm=s.order.id in firm))
            for s in self.orders
        )
        object.__setattr__(self, "firm", frozenset(firm))
        object.__setattr__(self, "orders", orders)


# --- reading files -------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    file = str(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ScenarioError(
            "file not found",
            file=file,
            fix="check the path; relative paths start where you run suangu",
        ) from None
    except IsADirectoryError:
        raise ScenarioError("is a directory, not a file", file=file, fix="name the file") from None
    except UnicodeDecodeError as err:
        raise ScenarioError(
            f"is not UTF-8 text (byte {err.start})", file=file, fix="save the file as UTF-8"
        ) from None
    except OSError as err:
        raise ScenarioError(
            f"cannot be read: {err.strerror}", file=file, fix="check the path and permissions"
        ) from None


def _yaml_document(path: Path) -> tuple[Any, dict[Loc, int]]:
    """The YAML document of ``path`` and the line (1-based) of every value, by path."""
    text = _read_text(path)
    file = str(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or "malformed YAML"
        if err.context:
            problem = f"{err.context}, {problem}"
        raise ScenarioError(
            f"malformed YAML: {problem}",
            file=file,
            line=mark.line + 1 if mark else None,
            fix="check the indentation, the ':' after each key and the quoting on this line",
        ) from None
    except yaml.YAMLError as err:
        raise ScenarioError(
            f"malformed YAML: {err}", file=file, fix="check the file is valid YAML"
        ) from None
    lines: dict[Loc, int] = {}
    if node is not None:
        _node_lines(node, (), lines, file)
    return data, lines


def _node_lines(node: yaml.Node, path: Loc, out: dict[Loc, int], file: str) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ScenarioError(
                    f"duplicate key {key!r} (first given on line {seen[key]})",
                    file=file,
                    line=line,
                    field=_format_loc((*path, key)),
                    fix="give each key once",
                )
            seen[key] = line
            _node_lines(value_node, (*path, key), out, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _node_lines(item, (*path, i), out, file)


def _join(prefix: str, name: str) -> str:
    """``prefix.name``, or whichever of the two is not empty."""
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_of(lines: Mapping[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``, or of its closest ancestor found in ``lines``."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _at_line(line: int) -> Callable[[Loc], int | None]:
    """A line lookup that answers ``line`` for every path (one CSV row)."""

    def lookup(loc: Loc) -> int | None:
        return line

    return lookup


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that holds the last part of ``loc`` (for listing allowed fields)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = next(
            (f for name, f in current.model_fields.items() if (f.alias or name) == part), None
        )
        if info is None:
            return None
        current = _inner_model(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, tuple, Union) or get_args(annotation):
        for arg in get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def _fields_of(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _fix_for(loc: Loc, overrides: Mapping[str, str] | None = None) -> str | None:
    if loc and loc[0] == "links" and isinstance(loc[-1], str) and loc[-1] in _LINK_FIX:
        return _LINK_FIX[loc[-1]]
    for part in reversed(loc):
        if isinstance(part, str):
            if overrides and part in overrides:
                return overrides[part]
            if part in _FIX:
                return _FIX[part]
    return None


def _pydantic_error(
    err: PydanticValidationError,
    root: type[BaseModel],
    file: str,
    line_of: Callable[[Loc], int | None],
    prefix: Loc = (),
    display: Callable[[Loc], str] | None = None,
    fixes: Mapping[str, str] | None = None,
) -> ScenarioError:
    """The first error of ``err`` as a :class:`ScenarioError` with file, line and field."""
    errors = err.errors()
    e = errors[0]
    loc: Loc = tuple(e["loc"])
    kind = e["type"]
    fix = _fix_for(loc, fixes)
    if kind == "extra_forbidden":
        message = f"unknown field {loc[-1]!r}"
        holder = _model_at(root, loc)
        if holder is not None:
            fix = f"allowed fields here: {', '.join(_fields_of(holder))}"
    elif kind == "missing":
        message = "is missing"
        fix = f"add it: {fix}" if fix else "add it"
    else:
        message = str(e["msg"]).removeprefix("Value error, ")
        value = e.get("input")
        shown = isinstance(value, str | int | float) and not isinstance(value, bool)
        if shown and repr(value) not in message and str(value) not in message:
            message += f", got {value!r}"
    message = message[0].lower() + message[1:] if message else message
    if len(errors) > 1:
        more = len(errors) - 1
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    field_name = display(loc) if display else _format_loc((*prefix, *loc))
    return ScenarioError(message, file=file, line=line_of(loc), field=field_name, fix=fix)


def _core_error(err: ValidationError, file: str, line: int | None, prefix: str) -> ScenarioError:
    """A core constructor's error, renamed to the file's field names."""
    name = err.field or ""
    head = re.split(r"[.\[]", name, maxsplit=1)[0]
    if head in _CORE_FIELDS:
        name = _CORE_FIELDS[head] + name[len(head) :]
    field_name = _join(prefix, name)
    fix = err.fix
    if isinstance(err, UnknownReferenceError) and "GPU class" in err.message:
        fix = f"{fix}, or a short name: {', '.join(ALIASES)}"
    return ScenarioError(err.message, file=file, line=line, field=field_name, fix=fix)


# --- scenario --------------------------------------------------------------------------------


def load_scenario(path: str | Path, *, hours: int | None = None) -> Scenario:
    """Read and validate a scenario YAML file; ``hours`` overrides the file's span."""
    p = Path(path)
    file = str(path)
    data, lines = _yaml_document(p)
    if data is None:
        raise ScenarioError("is empty", file=file, fix="start from the packaged east_west.yaml")
    if not isinstance(data, dict):
        raise ScenarioError(
            f"must be a YAML mapping (name:, start:, sites: ...), got a {type(data).__name__}",
            file=file,
            line=1,
            fix="start from the packaged east_west.yaml",
        )
    try:
        spec = ScenarioSpec.model_validate(data)
    except PydanticValidationError as err:
        raise _pydantic_error(err, ScenarioSpec, file, lambda loc: _line_of(lines, loc)) from None
    if hours is not None:
        if not 1 <= hours <= MAX_HOURS:
            raise ScenarioError(
                f"must be between 1 and {MAX_HOURS}, got {hours}",
                file="--hours",
                fix="the simulated span in slots, e.g. 24",
            )
        spec = spec.model_copy(update={"hours": hours})
    return _convert_scenario(spec, file, lines)


def _convert_scenario(spec: ScenarioSpec, file: str, lines: Mapping[Loc, int]) -> Scenario:
    def line(*loc: str | int) -> int | None:
        return _line_of(lines, loc)

    epoch = int(spec.start.timestamp())
    if spec.start.timestamp() != epoch or epoch < 0:
        raise ScenarioError(
            "must be a whole second after 1970",
            file=file,
            line=line("start"),
            field="start",
            fix=_FIX["start"],
        )
    try:
        grid = TimeGrid(epoch=epoch, slot_seconds=spec.slot_seconds)
    except ValidationError as err:
        raise _core_error(err, file, line(err.field or ""), "") from None
    span_end = spec.hours + spec.lookahead

    sites: list[Site] = []
    site_green: dict[str, ShareProfile] = {}
    for i, s in enumerate(spec.sites):
        _unique_id(s.id, [x.id for x in sites], file, line("sites", i, "id"), f"sites[{i}].id")
        try:
            sites.append(
                Site(
                    s.id,
                    s.name or s.id,
                    s.province,
                    s.region,
                    s.lat,
                    s.lon,
                    s.pue,
                    dict(s.latency_ms),
                )
            )
        except ValidationError as err:
            raise _core_error(err, file, line("sites", i), f"sites[{i}]") from None
        if s.green_share is not None:
            site_green[s.id] = s.green_share
    site_ids = {s.id for s in sites}

    pools: list[Pool] = []
    green: dict[str, tuple[float, ...]] = {}
    for i, ps in enumerate(spec.pools):
        where = f"pools[{i}]"
        _unique_id(ps.id, [x.id for x in pools], file, line("pools", i, "id"), f"{where}.id")
        if ps.site not in site_ids:
            raise ScenarioError(
                f"unknown site {ps.site!r}",
                file=file,
                line=line("pools", i, "site"),
                field=f"{where}.site",
                fix=f"use one of the sites: {', '.join(sorted(site_ids))}",
            )
        try:
            pools.append(Pool(ps.id, ps.site, ps.gpu_class))
        except ValidationError as err:
            raise _core_error(err, file, line("pools", i, "gpu_class"), where) from None
        share = ps.green_share if ps.green_share is not None else site_green.get(ps.site)
        if share is not None:
            green[ps.id] = share if isinstance(share, tuple) else (share,) * PROFILE_LEN
    pool_ids = {p.id for p in pools}

    provisional = Scenario(
        spec.name,
        file,
        grid,
        spec.hours,
        spec.lookahead,
        spec.exchange_fee_bps,
        spec.utc_offset_hours,
        tuple(sites),
        tuple(pools),
        (),
        {},
    )
    offers: list[Offer] = []
    providers: dict[str, str] = {}
    provider_line: dict[str, int | None] = {}
    for i, o in enumerate(spec.offers):
        where = f"offers[{i}]"
        _unique_id(o.id, [x.id for x in offers], file, line("offers", i, "id"), f"{where}.id")
        if o.pool not in pool_ids:
            raise ScenarioError(
                f"unknown pool {o.pool!r}",
                file=file,
                line=line("offers", i, "pool"),
                field=f"{where}.pool",
                fix=f"use one of the pools: {', '.join(sorted(pool_ids))}",
            )
        known = providers.setdefault(o.pool, o.provider)
        provider_line.setdefault(o.pool, line("offers", i, "provider"))
        if known != o.provider:
            raise ScenarioError(
                f"pool {o.pool!r} is already sold by {known!r}"
                f" (line {provider_line[o.pool]}); one provider per pool",
                file=file,
                line=line("offers", i, "provider"),
                field=f"{where}.provider",
                fix="give each provider its own pools",
            )
        lo = (
            0
            if o.from_ is None
            else _slot(o.from_, grid, file, line("offers", i, "from"), f"{where}.from")
        )
        hi = (
            span_end
            if o.to is None
            else _slot(o.to, grid, file, line("offers", i, "to"), f"{where}.to")
        )
        if hi <= lo:
            raise ScenarioError(
                f"must be after from (slot {hi} <= {lo})",
                file=file,
                line=line("offers", i, "to") or line("offers", i),
                field=f"{where}.to",
                fix=_FIX["to"],
            )
        slots = range(lo, hi)
        gpus = _expand(o.gpus, slots, provisional)
        reserve = _expand(o.reserve, slots, provisional)
        try:
            offers.append(Offer(o.id, o.provider, o.pool, lo, gpus, reserve))
        except ValidationError as err:
            raise _core_error(err, file, line("offers", i), where) from None
    return Scenario(
        name=spec.name,
        source=file,
        grid=grid,
        hours=spec.hours,
        lookahead=spec.lookahead,
        fee_bp=spec.exchange_fee_bps,
        utc_offset_hours=spec.utc_offset_hours,
        sites=tuple(sites),
        pools=tuple(pools),
        offers=tuple(offers),
        providers=MappingProxyType(providers),
        green_profiles=MappingProxyType(green),
        energy=_energy_config(spec, file, lines),
        links=_links(spec, {s.region for s in sites}, file, lines),
        delay_fen=spec.time_preference,
        protect_firm_hours=spec.protect_firm_hours,
        firm_slots=spec.firm_slots,
    )


def _links(
    spec: ScenarioSpec, regions: set[str], file: str, lines: Mapping[Loc, int]
) -> tuple[Link, ...]:
    """The ``links:`` of the scenario as core links; their regions must be the sites' regions."""
    out: list[Link] = []
    seen: dict[tuple[str, str], int | None] = {}
    known = ", ".join(sorted(regions))
    for i, ls in enumerate(spec.links):
        where = f"links[{i}]"
        for name, region in (("from", ls.from_), ("to", ls.to)):
            if region not in regions:
                raise ScenarioError(
                    f"unknown region {region!r}: no site is in it",
                    file=file,
                    line=_line_of(lines, ("links", i, name)),
                    field=f"{where}.{name}",
                    fix=f"use a region of the sites: {known}",
                )
        key = (ls.from_, ls.to)
        line = _line_of(lines, ("links", i))
        if key in seen:
            raise ScenarioError(
                f"duplicate link {ls.from_} -> {ls.to} (first on line {seen[key]})",
                file=file,
                line=line,
                field=where,
                fix="give each (from, to) pair once; list the way back as its own link",
            )
        seen[key] = line
        try:
            out.append(Link(ls.from_, ls.to, ls.latency_ms, ls.bandwidth_gbps, ls.price_per_gb))
        except ValidationError as err:
            renamed = {"from_region": "from", "to_region": "to", "price_fen_per_gb": "price_per_gb"}
            raise ScenarioError(
                err.message,
                file=file,
                line=line,
                field=f"{where}.{renamed.get(err.field or '', err.field or '')}",
                fix=err.fix,
            ) from None
    return tuple(out)


def _energy_config(spec: ScenarioSpec, file: str, lines: Mapping[Loc, int]) -> EnergyConfig | None:
    """The ``energy:`` block checked against the packaged energy data; None if the model is off."""

    def line(*loc: str | int) -> int | None:
        return _line_of(lines, loc)

    block = spec.energy
    model = block is not None and block.model
    if block is not None and not model:
        for name in ("carbon_price_yuan_per_t", "home_grid"):
            if getattr(block, name):
                raise ScenarioError(
                    "needs the energy model (energy.model is false)",
                    file=file,
                    line=line("energy", name),
                    field=f"energy.{name}",
                    fix=f"set energy.model: true, or remove {name}",
                )
    if not model and all(s.energy_site is None for s in spec.sites):
        return None
    from suangu.sim.energy import load_energy_data

    data = load_energy_data()
    known = ", ".join(sorted(data.sites))
    mapping: dict[str, str] = {}
    for i, s in enumerate(spec.sites):
        name = s.energy_site or s.id
        if name not in data.sites and (model or s.energy_site is not None):
            given = s.energy_site is not None
            raise ScenarioError(
                f"unknown energy-data site {name!r}"
                if given
                else f"site {s.id!r} has no packaged energy data of the same id",
                file=file,
                line=line("sites", i, "energy_site") if given else line("sites", i, "id"),
                field=f"sites[{i}].energy_site",
                fix=f"name its energy-data site with energy_site: one of {known}",
            )
        mapping[s.id] = name
    if not model or block is None:
        return None
    shares = [("sites", i, x.green_share) for i, x in enumerate(spec.sites)]
    shares += [("pools", i, x.green_share) for i, x in enumerate(spec.pools)]
    for kind, i, share in shares:
        if share is not None:
            raise ScenarioError(
                "is set by the energy model hour by hour (energy.model is true)",
                file=file,
                line=line(kind, i, "green_share"),
                field=f"{kind}[{i}].green_share",
                fix="remove green_share, or set energy: {model: false} to use the file's numbers",
            )
    if block.home_grid is not None:
        try:
            data.factors.get(block.home_grid)
        except ValidationError as err:
            raise ScenarioError(
                err.message,
                file=file,
                line=line("energy", "home_grid"),
                field="energy.home_grid",
                fix=err.fix,
            ) from None
    return EnergyConfig(
        seed=block.seed,
        carbon_price_yuan_per_t=block.carbon_price_yuan_per_t,
        sites=MappingProxyType(mapping),
        home_grid=block.home_grid,
    )


def _unique_id(value: str, seen: list[str], file: str, line: int | None, where: str) -> None:
    if value in seen:
        raise ScenarioError(
            f"duplicate id {value!r}", file=file, line=line, field=where, fix=_FIX["id"]
        )


def _expand(value: IntProfile, slots: range, scenario: Scenario) -> tuple[int, ...]:
    if isinstance(value, tuple):
        return tuple(value[scenario.local_hour(k)] for k in slots)
    return (value,) * len(slots)


def _slot(when: When, grid: TimeGrid, file: str, line: int | None, where: str) -> int:
    """The slot index of a time point; it must be a slot boundary at or after the start."""
    if isinstance(when, datetime):
        seconds = Decimal(str(when.timestamp())) - grid.epoch
        shown = when.isoformat()
    else:
        seconds = when * SECONDS_PER_HOUR
        shown = f"hour {when}"
    if seconds < 0:
        raise ScenarioError(
            f"{shown} is before the scenario start",
            file=file,
            line=line,
            field=where,
            fix="times count from the scenario's start",
        )
    slots = seconds / grid.slot_seconds
    if slots != slots.to_integral_value():
        raise ScenarioError(
            f"{shown} is not on a slot boundary (slots are {grid.slot_seconds // 3600} h)",
            file=file,
            line=line,
            field=where,
            fix="round it to a whole slot",
        )
    n = int(slots)
    if n >= 2**31:
        raise ScenarioError(
            f"{shown} is too far in the future",
            file=file,
            line=line,
            field=where,
            fix="times count in hours from the scenario start",
        )
    return n


# --- order streams ---------------------------------------------------------------------------


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _number(value: float) -> str:
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def order_row(stream_order: StreamOrder, *, firm: bool = False) -> dict[str, str]:
    """One order as a row of the CSV order format (times as hour offsets, prices in yuan)."""
    o = stream_order.order
    gang = o.kind is OrderKind.GANG
    return {
        "id": o.id,
        "buyer": o.buyer_id,
        "kind": o.kind.value,
        "gpus": str(o.gpus),
        "gpu_hours": ""
        if gang or (o.kind is OrderKind.SERVICE and not o.gpu_hours)
        else str(o.gpu_hours),
        "duration": str(o.duration_slots) if gang else "",
        "submit": str(stream_order.submit_slot),
        "release": str(o.release_slot),
        "deadline": str(o.deadline_slot),
        "limit": _yuan(o.limit_fen),
        "gpu_classes": ";".join(sorted(o.gpu_classes)),
        "regions": ";".join(sorted(o.regions)),
        "provinces": ";".join(sorted(o.provinces)),
        "home": o.home or "",
        "max_latency_ms": "" if o.max_latency_ms is None else _number(o.max_latency_ms),
        "min_green_share": _number(o.min_green_share) if o.min_green_share else "",
        "data_gb": str(o.data_gb) if o.data_gb else "",
        "reference_class": o.reference_class or "",
        "speed": ";".join(f"{k}={_number(v)}" for k, v in sorted(o.speed.items())),
        "complete_or_nothing": "true" if o.complete_or_nothing else "",
        "firm": "true" if firm else "",
    }


def write_orders(stream: OrderStream, path: str | Path, scenario: Scenario) -> Path:
    """Write ``stream`` as a CSV order file that :func:`load_orders` reads back unchanged.

    Times are written as slot offsets, so the scenario's slots must be one hour long."""
    if scenario.slot_hours != 1:
        raise ValidationError(
            f"needs one-hour slots to write times as hour offsets, got {scenario.slot_hours} h",
            field="slot_seconds",
            fix="write orders for a scenario with slot_seconds: 3600",
        )
    p = Path(path)
    with p.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(ORDER_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for so in stream.orders:
            writer.writerow(order_row(so, firm=so.order.id in stream.firm))
    return p


def load_orders(path: str | Path, scenario: Scenario) -> OrderStream:
    """Read and validate an order stream (``.csv``, ``.yaml`` or ``.yml``) for ``scenario``."""
    p = Path(path)
    file = str(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        items = _csv_orders(p)
    elif suffix in (".yaml", ".yml"):
        items = _yaml_orders(p)
    else:
        raise ScenarioError(
            f"unknown order file type {suffix or '(none)'!r}",
            file=file,
            fix="give orders as a .csv file with a header row, or a .yaml file with orders:",
        )
    context = _OrderContext(scenario, file)
    orders: list[StreamOrder] = []
    firm: set[str] = set()
    seen: dict[str, int | None] = {}
    for spec, where, line in items:
        if spec.id in seen:
            raise ScenarioError(
                f"duplicate order id {spec.id!r} (first on line {seen[spec.id]})",
                file=file,
                line=line,
                field=_join(where, "id"),
                fix="order ids must be unique",
            )
        seen[spec.id] = line
        orders.append(context.convert(spec, where, line))
        if spec.firm:
            firm.add(spec.id)
    return OrderStream(file, tuple(orders), frozenset(firm))


def _csv_orders(path: Path) -> list[tuple[StreamOrderSpec, str, int | None]]:
    file = str(path)
    text = _read_text(path)
    reader = csv.reader(text.splitlines(keepends=True))
    out: list[tuple[StreamOrderSpec, str, int | None]] = []
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise ScenarioError(
                "is empty: expected a header row",
                file=file,
                line=1,
                fix=f"start with the header {','.join(ORDER_COLUMNS)}",
            )
        columns = [h.strip() for h in header]
        for name in columns:
            if name not in ORDER_COLUMNS:
                raise ScenarioError(
                    f"unknown column {name!r}",
                    file=file,
                    line=1,
                    field=name or "(empty header)",
                    fix=f"columns are: {', '.join(ORDER_COLUMNS)}",
                )
        dup = sorted({c for c in columns if columns.count(c) > 1})
        if dup:
            raise ScenarioError(
                f"column {dup[0]!r} appears twice",
                file=file,
                line=1,
                field=dup[0],
                fix="give each column once",
            )
        missing = [c for c in _REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ScenarioError(
                f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
                file=file,
                line=1,
                field=missing[0],
                fix=f"required columns: {', '.join(_REQUIRED_COLUMNS)}",
            )
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(columns):
                raise ScenarioError(
                    f"has {len(row)} cells but the header has {len(columns)} columns",
                    file=file,
                    line=line,
                    fix="one cell per column, empty ones are fine; quote cells that hold commas",
                )
            values = {c: v.strip() for c, v in zip(columns, row, strict=True) if v.strip()}
            try:
                spec = StreamOrderSpec.model_validate(values)
            except PydanticValidationError as err:
                raise _pydantic_error(
                    err,
                    StreamOrderSpec,
                    file,
                    _at_line(line),
                    display=lambda loc: str(loc[0]) if loc else "",
                    fixes=_ORDER_FIX,
                ) from None
            out.append((spec, "", line))
    except csv.Error as err:
        raise ScenarioError(
            f"malformed CSV: {err}",
            file=file,
            line=reader.line_num,
            fix="check the quotes and commas on this line",
        ) from None
    return out


def _yaml_orders(path: Path) -> list[tuple[StreamOrderSpec, str, int | None]]:
    file = str(path)
    data, lines = _yaml_document(path)
    if not isinstance(data, dict):
        raise ScenarioError(
            "must be a YAML mapping with a list under orders:",
            file=file,
            line=1,
            fix="write orders: then one '- id: ...' item per order",
        )
    try:
        spec = StreamFileSpec.model_validate(data)
    except PydanticValidationError as err:
        raise _pydantic_error(
            err, StreamFileSpec, file, lambda loc: _line_of(lines, loc), fixes=_ORDER_FIX
        ) from None
    return [(o, f"orders[{i}]", _line_of(lines, ("orders", i))) for i, o in enumerate(spec.orders)]


class _OrderContext:
    """Converts order specs to core orders, checking references against the scenario."""

    def __init__(self, scenario: Scenario, file: str) -> None:
        self.scenario = scenario
        self.file = file
        self.regions = {s.region for s in scenario.sites}
        self.provinces = {s.province for s in scenario.sites}
        self.places = {place for s in scenario.sites for place in s.latency_ms}

    def _err(
        self, message: str, line: int | None, where: str, name: str, fix: str | None = None
    ) -> ScenarioError:
        return ScenarioError(
            message,
            file=self.file,
            line=line,
            field=_join(where, name),
            fix=fix or _ORDER_FIX.get(name) or _FIX.get(name),
        )

    def convert(self, spec: OrderSpec, where: str, line: int | None) -> StreamOrder:
        grid = self.scenario.grid

        def slot(name: str, when: When) -> int:
            return _slot(when, grid, self.file, line, _join(where, name))

        submit = slot("submit", spec.submit) if spec.submit is not None else 0
        release = slot("release", spec.release) if spec.release is not None else submit
        deadline = slot("deadline", spec.deadline)
        if deadline <= release:
            raise self._err(
                f"must be after release (deadline slot {deadline}, release slot {release})",
                line,
                where,
                "deadline",
                "the deadline is the first hour the work may no longer run: make it later "
                "than release",
            )
        if submit >= deadline:
            raise self._err(
                f"submit (slot {submit}) is not before the deadline (slot {deadline})",
                line,
                where,
                "submit",
                "submit the order before its deadline",
            )
        self._check_names(spec.regions, self.regions, line, where, "regions")
        self._check_names(spec.provinces, self.provinces, line, where, "provinces")
        if spec.home is not None and spec.home not in self.places | self.regions:
            raise self._err(
                f"unknown home {spec.home!r}: neither a region of the sites nor a place they"
                " give a latency to",
                line,
                where,
                "home",
                f"use a region ({', '.join(sorted(self.regions))}) or a place"
                f" ({', '.join(sorted(self.places)) or 'none: add latency_ms'})",
            )
        if spec.data_gb and spec.home not in self.regions:
            raise self._err(
                "is needed, as a region, when data_gb is set: the data is held at home"
                if spec.home is None
                else f"{spec.home!r} is a place, not a region: data_gb needs a region home",
                line,
                where,
                "home",
                f"name the region holding the data: one of {', '.join(sorted(self.regions))}",
            )
        kind = spec.kind
        if kind is OrderKind.GANG:
            if spec.duration is None:
                raise self._err("is missing: gang orders need a duration", line, where, "duration")
            if spec.gpu_hours is not None:
                raise self._err(
                    "is not used by gang orders (their work is gpus x duration)",
                    line,
                    where,
                    "gpu_hours",
                    "leave gpu_hours empty for gang orders",
                )
            window = deadline - release
            if spec.duration > window:
                raise self._err(
                    f"{spec.duration} slots do not fit between release and deadline"
                    f" ({window} slots)",
                    line,
                    where,
                    "duration",
                    "shorten the duration or widen the window",
                )
            if spec.duration > self.scenario.lookahead:
                raise self._err(
                    f"{spec.duration} slots are longer than the clearing horizon"
                    f" ({self.scenario.lookahead} slots): the gang could never be placed",
                    line,
                    where,
                    "duration",
                    "shorten the duration, or raise lookahead in the scenario",
                )
        elif spec.duration is not None:
            raise self._err(
                "only gang orders have a duration",
                line,
                where,
                "duration",
                "give batch work in gpu_hours; leave duration empty",
            )
        if kind is OrderKind.BATCH and not spec.gpu_hours:
            raise self._err(
                "is missing: batch orders need gpu_hours of work", line, where, "gpu_hours"
            )
        try:
            order = spec.to_order(spec.buyer, release, deadline)
        except ValidationError as err:
            raise _core_error(err, self.file, line, where) from None
        return StreamOrder(order, submit, line)

    def _check_names(
        self, names: tuple[str, ...], known: set[str], line: int | None, where: str, name: str
    ) -> None:
        for n in names:
            if n not in known:
                raise self._err(
                    f"unknown {name[:-1]} {n!r}",
                    line,
                    where,
                    name,
                    f"use ';'-separated names from the scenario: {', '.join(sorted(known))}",
                )
