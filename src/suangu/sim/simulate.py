"""Replay an order stream against a scenario on a simulated clock, clearing every slot.

At the start of each slot ``h`` of the span ``[0, hours)``:

1. The leases of slot ``h - 1`` have just run: the simulated providers meter them (full use,
   or a seeded shortfall) and every hold whose last slot that was is settled on the ledger
   (:func:`suangu.core.billing.settle_lease`: post the metered cost, pay the providers less the
   exchange fee, release the rest of the hold).
2. Orders submitted at or before ``h`` that are still open join the market. A clearing covers
   slots ``[h, h + lookahead)``; offers keep only the capacity not sold by earlier clearings
   (contracts are firm, and a cleared allocation keeps its price).
3. :func:`suangu.core.clearing.clear` runs; the result is checked with
   :func:`~suangu.core.clearing.checks.check_clearing` and
   :func:`~suangu.core.settlement.check_settlement` (any problem raises
   :class:`~suangu.sim.errors.SimulationError`: it is a bug), and each order's allocations
   become one hold on its buyer's account (:func:`suangu.core.billing.holds_for_clearing`),
   which also covers the order's data transfer charges (carriers' price and link congestion
   rent); settlement posts them to the exchange's network account, as the service does.

After the last clearing the clock runs on until every sold lease has ended and settled; then
the ledger's invariants are checked.

With the scenario's energy model on (``energy: {model: true}``, see
:mod:`suangu.sim.scenario`), the site-years the span covers are simulated once
(:func:`suangu.sim.energy.site_years_for_span`), and

* before each clearing, the market's green shares come from
  :func:`~suangu.core.energy.hooks.green_share_for_market`, and a non-zero carbon price raises
  every offer's reserve in the horizon through
  :func:`~suangu.core.energy.hooks.apply_carbon_price` (location-based gCO2 per GPU-hour of
  the pool-slot, :func:`~suangu.core.energy.hooks.carbon_for_market`). Both ``*_for_market``
  hooks run once over the whole span and each clearing takes its horizon's slice (a slot's
  value does not depend on the horizon);
* when the leases of a slot are metered (step 1), each gets its energy record
  (:func:`~suangu.core.energy.accounting.lease_record`, the rule the service books by).
  Certificates are issued per provider and slot for the green Wh its leases used, never more
  than the site's modelled green energy used in those hours (one cap per energy site, shared
  by the providers there; a lease that would exceed it is recorded uncertified:
  :func:`~suangu.core.energy.accounting.certify_within`), and each lease's linked chain
  (:func:`~suangu.core.energy.accounting.lease_transfers`) retires them to the buyer and records
  its market-based grams, on the same ledger as the money (``kWh-green`` and ``gCO2``).

Open orders between clearings: a gang order closes when it clears; a batch or service order
keeps its remaining work open until its deadline. A core order allows ``gpus`` GPUs in *every*
slot, so a reopened order only bids for slots after the last slot it already holds. That loses
nothing while offers are fixed: a slot the order skipped inside an earlier horizon had no
profitable capacity left for it then, and capacity only shrinks as clearings sell it. Firm-order
protection (below) breaks that: it puts held-back GPUs back on sale. With it on, an order whose
room after its last slot is too small for its work bids from the current slot instead, at the
width it has left in every slot it holds, when that leaves more room.

Firm-order protection (``protect_firm_hours: N`` in the scenario, ``suangu`` policy only).
A firm order that only one or two pools can serve (its GPU classes, residency, latency bound,
data transfer delay, window and limit: :func:`~suangu.core.network.feasible_pools`, "captive"
to them) misses its deadline whenever earlier clearings sold those pools' near future to
orders that could have gone elsewhere. With protection on, each hourly clearing runs in two
steps on the same engine:

1. the open captive firm orders clear first, against all the open capacity;
2. everyone else clears against what is left, less, at each pool and in every slot after the
   one about to start, the GPUs held back for captive firm orders: the peak number of GPUs
   that captive firm orders of that pool asked for at once (their windows from submission, an
   order with two pools counting half at each, over the last ``N`` hours up to now) minus
   what such orders already hold in the slot.

Held-back GPUs are released when their slot is the next to start, to whatever work can use
that one slot then; some stay unsold (docs/scheduling.md has the figures). Each step is a
uniform-price clearing of its own (checked like any other); each gets the links' whole
bandwidth over the horizon.

Buyers deposit, before the first clearing, what all their orders could cost at their limits
(no clearing charges more than an order's limit on average), so a hold never fails for want
of funds.
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from suangu.core import billing, lifecycle, products
from suangu.core.clearing import clear
from suangu.core.clearing.checks import check_clearing
from suangu.core.energy import accounting, hooks
from suangu.core.energy.accounting import CarbonStatement, LeaseEnergy
from suangu.core.energy.carbon import AvoidanceMethod, avoided_co2
from suangu.core.energy.model import SiteYear
from suangu.core.errors import SuanguError, ValidationError
from suangu.core.ledger import (
    AccountKind,
    Asset,
    CreateResult,
    Ledger,
    PendingStatus,
    Transfer,
    TransferCode,
)
from suangu.core.network import feasible_pools, pool_terms
from suangu.core.settlement import check_settlement, settle
from suangu.core.types import (
    SECONDS_PER_HOUR,
    Allocation,
    ClearingStatus,
    Market,
    Offer,
    Order,
    OrderKind,
    speed_of,
)
from suangu.sim.errors import SimulationError
from suangu.sim.policies import Policy, parse_policy, place
from suangu.sim.scenario import EnergyConfig, OrderStream, Scenario, StreamOrder

#: The longest market the core accepts, in slots (``Market.n_slots``).
_MAX_MARKET_SLOTS = 24 * 366

#: ``progress(done, total)`` after each simulated slot of the span.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SiteVolume:
    """What traded at one site over the simulation."""

    site_id: str
    name: str
    gpu_hours: int
    value_fen: int  # sum of price x GPU-hours of the allocations (as cleared)

    @property
    def avg_price_fen(self) -> float:
        return self.value_fen / self.gpu_hours if self.gpu_hours else 0.0


@dataclass(frozen=True)
class AvoidedRow:
    """Avoided CO2 of the traded energy under one named baseline: energy x factor - actual."""

    method: str
    description: str
    t_per_mwh: float | None  # None where the factor differs by site (the sites' grid averages)
    tonnes: float
    label: str


@dataclass(frozen=True)
class EnergySummary:
    """Energy and carbon of every metered lease (integers in Wh and g; see docs/energy.md)."""

    seed: int
    carbon_price_yuan_per_t: float
    energy_sites: dict[str, str]  # scenario site id -> energy-data site id
    years: tuple[int, ...]
    leases: int
    gpu_hours: float  # metered
    energy_wh: int
    green_wh: int
    grid_wh: int
    certificates_wh: int
    uncertified_leases: int  # green Wh beyond the site's modelled green energy: not certified
    location_g: int
    market_g: int
    methods: dict[str, str]  # method -> what it means, with the factors used
    grid_factors: dict[str, float]  # province -> t/MWh: the location-based factors used
    grid_factor_years: tuple[int, ...]  # the years of those published factors
    home_grid: str | None  # label of the buyers' home-grid factor (energy.home_grid)
    avoided: tuple[AvoidedRow, ...]
    buyers: tuple[CarbonStatement, ...]

    @property
    def green_share(self) -> float:
        return self.green_wh / self.energy_wh if self.energy_wh else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "carbon_price_yuan_per_t": self.carbon_price_yuan_per_t,
            "energy_sites": dict(self.energy_sites),
            "years": list(self.years),
            "leases": self.leases,
            "gpu_hours": round(self.gpu_hours, 4),
            "energy_kwh": self.energy_wh / 1000,
            "green_kwh": self.green_wh / 1000,
            "grid_kwh": self.grid_wh / 1000,
            "certificates_kwh": self.certificates_wh / 1000,
            "green_share": round(self.green_share, 4),
            "uncertified_leases": self.uncertified_leases,
            "co2_location_based_t": self.location_g / 1e6,
            "co2_market_based_t": self.market_g / 1e6,
            "methods": dict(self.methods),
            "grid_factors_t_per_mwh": dict(self.grid_factors),
            "grid_factor_years": list(self.grid_factor_years),
            "home_grid": self.home_grid,
            "avoided_co2": [asdict(a) for a in self.avoided],
            "buyers": [_statement_dict(b) for b in self.buyers],
        }


def avoided_label(st: CarbonStatement) -> str:
    """The statement's avoided CO2 with three decimals (``AvoidedCO2.label`` rounds to whole
    tonnes and MWh, too coarse for one buyer's leases)."""
    a = st.avoided
    if a is None:
        return ""
    return (
        f"{a.tonnes:,.3f} t CO2 avoided = {a.energy_mwh:,.3f} MWh x {a.method.t_per_mwh:.4f} "
        f"t/MWh ({a.method.name}: {a.method.description}) - {a.actual_tonnes:,.3f} t actual "
        "(market-based)"
    )


def _statement_dict(st: CarbonStatement) -> dict[str, Any]:
    avoided = None
    if st.avoided is not None:
        avoided = {
            "method": st.avoided.method.name,
            "t_per_mwh": st.avoided.method.t_per_mwh,
            "description": st.avoided.method.description,
            "tonnes": st.avoided.tonnes,
            "label": avoided_label(st),
        }
    methods = [m for m in st.methods if not m.startswith("avoided: ")]
    if avoided is not None:
        methods.append(f"avoided: {avoided['label']}")
    return {
        "buyer": st.buyer_id,
        "start_unix": st.start_unix,
        "end_unix": st.end_unix,
        "leases": st.leases,
        "gpu_hours": round(st.gpu_hours, 4),
        "energy_kwh": st.energy_wh / 1000,
        "green_kwh": st.green_wh / 1000,
        "grid_kwh": st.grid_wh / 1000,
        "certificates_kwh": st.certificates_wh / 1000,
        "green_share": round(st.green_share, 4),
        "co2_location_based_t": st.location_g / 1e6,
        "co2_market_based_t": st.market_g / 1e6,
        "avoided_vs_home_grid": avoided,
        "methods": methods,
    }


@dataclass(frozen=True)
class SimulationReport:
    """The outcome of a simulation. Money in integer fen; timings in seconds."""

    scenario: str
    hours: int
    slot_hours: int
    orders_total: int  # submitted within the span
    orders_filled: int
    orders_partial: int
    orders_unfilled: int
    orders_after_span: int  # submitted after the span ends: never joined
    orders_by_kind: dict[str, dict[str, int]]
    gpu_hours_traded: int
    traded_value_fen: int  # price x GPU-hours of every allocation, as cleared
    green_gpu_hours: float  # traded GPU-hours x the pool's green share in the slot
    sites: tuple[SiteVolume, ...]
    welfare_fen: int
    buyer_deposits_fen: int
    buyer_spend_fen: int  # posted on metered use
    provider_revenue_fen: int  # paid out to providers (after the fee)
    exchange_fees_fen: int
    congestion_rent_fen: int
    released_fen: int  # held at clearing but not spent (metered shortfall)
    ledger_balanced: bool
    ledger_message: str
    transfers: int
    clearings: int
    clearings_failed: int
    gangs_rejected: int
    clear_mean_s: float
    clear_max_s: float
    solve_mean_s: float
    solve_max_s: float
    wall_s: float
    methods: dict[str, int] = field(default_factory=dict)
    #: energy and carbon of the metered leases; None without the scenario's energy model
    energy: EnergySummary | None = None
    energy_model_s: float = 0.0  # simulating the site-years (and the energy imports)
    policy: str = Policy.SUANGU.value
    #: welfare the same way for every policy: buyers' value (limit x speed x GPU-hours) -
    #: providers' listed reserves of the GPU-slots sold - transfer cost of data moved, fen
    value_fen: int = 0
    listed_reserve_fen: int = 0
    transfer_fen: int = 0
    transfer_gb: float = 0.0
    paid_fen: int = 0  # price x GPU-hours of every allocation, as placed (before metering)
    transfer_charged_fen: int = 0  # charged to buyers for data moved (carrier + congestion)
    transfer_posted_fen: int = 0  # of which posted on the ledger (orders with metered use)
    work_asked_h: float = 0.0  # reference GPU-hours of the orders submitted within the span
    work_done_h: float = 0.0  # reference GPU-hours allocated to them
    waits_h: tuple[float, ...] = ()  # per order that ran: first slot - submit slot, hours
    firm_orders: int = 0  # firm orders whose deadline falls within the span
    firm_missed: int = 0  # of those, not filled by their deadline
    #: of those missed, orders no single pool could serve alone at their limit in their window
    #: (:func:`suangu.core.network.feasible_pools`)
    firm_unservable: int = 0
    #: orders whose deadline falls within the span, and of those the ones filled by it
    deadline_orders: int = 0
    deadlines_met: int = 0
    #: GPU-hours allocated to orders (deadline within the span) that then missed it: work
    #: that served nothing when a job needs all of its work by its deadline
    wasted_gpu_hours: float = 0.0
    #: the firmness horizon the clearings committed (None: every allocation at once)
    firm_slots: int | None = None
    #: The interruptible tier (:mod:`suangu.core.products`): orders submitted within the span
    #: that were interruptible, the GPU-hours they kept (allocated less preempted) and what
    #: those cost at their tier's prices; how many interruptible GPU-slots firm demand took
    #: (preemptions: one per lease and clearing), from how many orders, in GPU-hours.
    interruptible_orders: int = 0
    interruptible_gpu_hours: int = 0
    interruptible_paid_fen: int = 0
    preemptions: int = 0
    orders_preempted: int = 0
    preempted_gpu_hours: int = 0

    @property
    def deadline_share(self) -> float:
        return self.deadlines_met / self.deadline_orders if self.deadline_orders else 0.0

    @property
    def net_welfare_fen(self) -> int:
        return self.value_fen - self.listed_reserve_fen - self.transfer_fen

    @property
    def fill_rate(self) -> float:
        return self.work_done_h / self.work_asked_h if self.work_asked_h else 0.0

    @property
    def wait_mean_h(self) -> float:
        return sum(self.waits_h) / len(self.waits_h) if self.waits_h else 0.0

    @property
    def wait_p95_h(self) -> float:
        return _p95(self.waits_h)

    @property
    def avg_price_fen(self) -> float:
        return self.traded_value_fen / self.gpu_hours_traded if self.gpu_hours_traded else 0.0

    @property
    def green_share(self) -> float:
        return self.green_gpu_hours / self.gpu_hours_traded if self.gpu_hours_traded else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; everything that depends on the machine is under ``timings``."""
        data = asdict(self)
        waits = data.pop("waits_h")
        data["wait_mean_h"] = round(self.wait_mean_h, 3)
        data["wait_p95_h"] = round(self.wait_p95_h, 3)
        data["orders_waited"] = len(waits)
        data["net_welfare_fen"] = self.net_welfare_fen
        data["fill_rate"] = round(self.fill_rate, 4)
        data["deadline_share"] = round(self.deadline_share, 4)
        data["transfer_gb"] = round(self.transfer_gb, 1)
        data["work_asked_h"] = round(self.work_asked_h, 1)
        data["work_done_h"] = round(self.work_done_h, 1)
        keys = ("clear_mean_s", "clear_max_s", "solve_mean_s", "solve_max_s", "wall_s")
        timings = {k: data.pop(k) for k in (*keys, "energy_model_s")}
        data["energy"] = None if self.energy is None else self.energy.to_dict()
        data["sites"] = [
            {**asdict(s), "avg_price_fen": round(s.avg_price_fen, 2)} for s in self.sites
        ]
        data["avg_price_fen"] = round(self.avg_price_fen, 2)
        data["green_share"] = round(self.green_share, 4)
        data["green_gpu_hours"] = round(self.green_gpu_hours, 2)
        data["timings"] = timings
        return data


@dataclass
class _OrderState:
    stream: StreamOrder
    full: int  # GPU-slots that fill it
    held: dict[int, int] = field(default_factory=dict)  # slot -> GPUs allocated there so far
    closed: bool = False
    done: float = 0.0  # reference GPU-hours of work allocated so far (speed x GPU-hours)
    min_step: float = 1.0  # the least work one GPU-slot does for it (slowest eligible class)
    max_step: float = 1.0  # the most work one GPU-slot does for it (fastest eligible class)

    @property
    def allocated(self) -> int:
        """GPU-slots allocated so far."""
        return sum(self.held.values())

    @property
    def first_slot(self) -> int:
        """The first slot it holds, -1 if none."""
        return min(self.held, default=-1)

    @property
    def last_slot(self) -> int:
        """The last slot it holds, -1 if none."""
        return max(self.held, default=-1)

    @property
    def work_left(self) -> float:
        return self.order.gpu_hours - self.done

    def filled(self, slot_hours: int) -> bool:
        """The lifecycle's one fill rule (:func:`suangu.core.lifecycle.is_filled`)."""
        return lifecycle.is_filled(
            self.order, self.done, self.allocated, (self.min_step, self.max_step), slot_hours
        )

    @property
    def order(self) -> Order:
        return self.stream.order


@dataclass
class _Hold:
    transfer_id: str
    allocations: list[Allocation]
    last_slot: int
    metered: dict[Allocation, int] = field(default_factory=dict)
    #: the order's data transfer charges in the hold (carriers' price, link congestion rent)
    carrier_fen: int = 0
    congestion_fen: int = 0
    #: GPUs of each allocation that firm demand preempted (an interruptible order's)
    preempted: dict[Allocation, int] = field(default_factory=dict)


def _p95(values: Sequence[float]) -> float:
    return float(np.percentile(np.array(values), 95)) if values else 0.0


class _Simulation:
    def __init__(
        self,
        scenario: Scenario,
        stream: OrderStream,
        shortfall: float,
        seed: int,
        progress: Progress | None,
        policy: Policy = Policy.SUANGU,
    ) -> None:
        self.sc = scenario
        self.policy = policy
        self.firm = stream.firm
        self.grid = scenario.grid
        self.hours = scenario.slot_hours
        self.progress = progress
        self.shortfall = shortfall
        self.rng = random.Random(seed)
        self.states = [
            _OrderState(s, s.order.max_gpu_slots(self.hours))
            for s in sorted(stream.orders, key=lambda s: (s.submit_slot, s.order.id))
        ]
        self.sold: dict[tuple[str, int], int] = defaultdict(int)  # (offer id, slot) -> GPUs
        self.ledger = Ledger()
        self.holds: dict[int, list[_Hold]] = defaultdict(list)  # last slot -> holds
        self.pending_meter: dict[int, list[tuple[_Hold, Allocation]]] = defaultdict(list)
        self.site_of = {p.id: p.site_id for p in scenario.pools}
        self.site_volume: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.green_gpu_hours = 0.0
        self.welfare = 0
        self.rent = 0
        self.clearings = 0
        self.failed = 0
        self.rejected = 0
        self.methods: dict[str, int] = defaultdict(int)
        self.clear_times: list[float] = []
        self.solve_times: list[float] = []
        self.deposits = 0
        self.by_id = {st.order.id: st for st in self.states}
        self.pools = {p.id: p for p in scenario.pools}
        self.site_by_id = {s.id: s for s in scenario.sites}
        self.links = {link.key: link for link in scenario.links}
        self.listed = {o.id: o for o in scenario.offers}
        self.offers_of: dict[str, list[Offer]] = defaultdict(list)  # pool id -> its offers
        for o in scenario.offers:
            self.offers_of[o.pool_id].append(o)
        self.value = 0.0  # buyers' value of the allocations: limit x speed x GPU-hours
        self.reserve_cost = 0  # listed reserves of the GPU-slots sold
        self.transfer = 0.0  # fen of data moved away from home
        self.transfer_gb = 0.0
        self.paid = 0  # price x GPU-hours of the allocations (as placed)
        self.transfer_charged = 0  # fen buyers are charged for data moved (carrier + rent)
        #: the interruptible tier: lease key -> (hold, allocation) of interruptible orders
        self.spot: dict[str, tuple[_Hold, Allocation]] = {}
        self.track: frozenset[str] = frozenset()  # more orders counted with the tier's
        self.spot_hours = 0
        self.spot_paid = 0
        self.preemptions = 0
        self.preempted_orders: set[str] = set()
        self.preempted_hours = 0
        for st in self.states:
            st.min_step, st.max_step = self._steps(st.order)
        #: order id -> the pools that could serve it alone (``_feasible_pools``)
        self.feasible: dict[str, tuple[str, ...]] = {}
        self.bare = Market(
            self.grid, 0, 1, scenario.sites, scenario.pools, (), (), links=scenario.links
        )
        #: the protection's look-back in slots (0: off)
        self.protect_h = (
            math.ceil(scenario.protect_firm_hours * SECONDS_PER_HOUR / self.grid.slot_seconds)
            if policy is Policy.SUANGU
            else 0
        )
        #: captive firm order id -> the pools it can run in (protection only)
        self.captive: dict[str, tuple[str, ...]] = self._captive_orders() if self.protect_h else {}
        #: (pool id, slot) -> GPUs sold to captive firm orders
        self.captive_sold: dict[tuple[str, int], int] = defaultdict(int)
        #: pool id -> GPUs captive firm orders submitted so far ask for in each slot (an
        #: order with several pools counts its GPUs shared evenly among them)
        self.captive_demand: dict[str, npt.NDArray[np.float64]] = {}
        self._captive_next = 0  # index into self.states of the next order to count
        self.energy: EnergyConfig | None = scenario.energy
        self.site_years: dict[str, SiteYear] = {}
        self.records: list[LeaseEnergy] = []
        self.uncertified = 0
        self.energy_model_s = 0.0
        self.span_green: dict[str, list[float]] = {}
        self.span_carbon: dict[str, list[float]] = {}
        if self.energy is not None:
            from suangu.sim.energy import site_years_for_span

            t = time.perf_counter()
            end = self.grid.slot_start(scenario.hours + scenario.lookahead)
            self.site_years = site_years_for_span(
                self.energy.sites, self.grid.epoch, end, seed=self.energy.seed
            )
            self._model_span()
            self.energy_model_s = time.perf_counter() - t

    def _model_span(self) -> None:
        """The hooks' green shares (and carbon, with a price) of every pool-slot of the span.

        A slot's value does not depend on the horizon around it, so the hooks run once over
        ``[0, hours + lookahead)`` (in chunks of at most a year of slots) and each clearing
        takes its slice: the same numbers as running them per clearing, at a fraction of the
        cost.
        """
        assert self.energy is not None
        total = self.sc.hours + self.sc.lookahead
        green: dict[str, list[float]] = defaultdict(list)
        carbon: dict[str, list[float]] = defaultdict(list)
        for first in range(0, total, _MAX_MARKET_SLOTS):
            n = min(_MAX_MARKET_SLOTS, total - first)
            bare = Market(self.grid, first, n, self.sc.sites, self.sc.pools, (), ())
            for pool_id, shares in hooks.green_share_for_market(
                bare, self.site_years
            ).green_share.items():
                green[pool_id] += shares
            if self.energy.carbon_price_yuan_per_t > 0 or self.policy is Policy.CARBON_SHIFT:
                for pool_id, grams in hooks.carbon_for_market(bare, self.site_years).items():
                    carbon[pool_id] += grams
        self.span_green = dict(green)
        self.span_carbon = dict(carbon)

    # -- ledger --------------------------------------------------------------------------------

    def _submit(self, transfers: Sequence[Transfer], now: int, what: str) -> None:
        if not transfers:
            return
        results = self.ledger.create_transfers(transfers, now)
        bad = [
            (t.id, r) for t, r in zip(transfers, results, strict=True) if r is not CreateResult.OK
        ]
        if bad:
            shown = ", ".join(f"{tid}: {r}" for tid, r in bad[:3])
            raise SimulationError(
                f"the ledger refused {len(bad)} transfer(s) of {what}: {shown}",
                fix="this is a bug in the simulation or the ledger; please report it",
            )

    def _open_accounts(self) -> None:
        now = self.grid.epoch
        accounts = billing.new_exchange_accounts()
        buyers = sorted({s.order.buyer_id for s in self.states})
        providers = sorted(set(self.sc.providers.values()))
        accounts += [billing.new_buyer_account(b) for b in buyers]
        accounts += [billing.new_provider_account(p) for p in providers]
        if self.energy is not None:
            accounts += accounting.energy_accounts(providers, buyers)
        results = self.ledger.create_accounts(accounts, now)
        if any(r is not CreateResult.OK for r in results):
            raise SimulationError(
                f"could not open accounts: {sorted(set(results))}",
                fix="member ids must differ between buyers and providers",
            )
        need: dict[str, int] = defaultdict(int)
        classes = sorted({p.gpu_class for p in self.sc.pools})
        for s in self.states:
            if s.stream.submit_slot < self.sc.hours:
                need[s.order.buyer_id] += billing.max_cost_fen(s.order, self.hours, classes)
        self.deposits = sum(need.values())
        self._submit(
            [billing.deposit(f"deposit-{b}", b, need[b]) for b in buyers if need[b] > 0],
            now,
            "the buyers' deposits",
        )

    # -- the clock ---------------------------------------------------------------------------

    def run(self) -> SimulationReport:
        t0 = time.perf_counter()
        self._open_accounts()
        span = self.sc.hours
        for h in range(span):
            if h > 0:
                self._end_of_slot(h - 1)
            self._clear_at(h)
            if self.progress is not None:
                self.progress(h + 1, span)
        last = max([*self.holds, span - 1])
        for s in range(span - 1 if span else 0, last + 1):
            self._end_of_slot(s)
        return self._report(time.perf_counter() - t0)

    def _open_orders(self, h: int) -> list[Order]:
        out = []
        for st in self.states:
            if st.stream.submit_slot > h:
                break  # sorted by submit slot
            if st.closed:
                continue
            order = st.order
            release = max(order.release_slot, h, st.last_slot + 1)
            gpus = order.gpus
            if self.protect_h and order.kind is not OrderKind.GANG and st.last_slot >= h:
                # Protection puts GPUs back on sale in slots the order may already hold in
                # part. When bidding after its last slot at full width leaves too little
                # room for its work, bid from now at the width it has left in every slot it
                # holds, if that leaves more.
                start = max(order.release_slot, h)
                width = order.gpus - max(st.held.get(k, 0) for k in range(start, release))
                room = gpus * max(0, order.deadline_slot - release)
                if room * st.max_step < st.work_left - 1e-9 and (
                    width * (order.deadline_slot - start) > room
                ):
                    release, gpus = start, width
            rest = lifecycle.reopened(
                order,
                st.done,
                st.allocated,
                st.last_slot,
                h,
                (st.min_step, st.max_step),
                self.hours,
                release=release,
                gpus=gpus,
            )
            if rest is None:
                st.closed = True
                continue
            out.append(rest)
        return out

    def _steps(self, order: Order) -> tuple[float, float]:
        """The least and most work one GPU-slot does for ``order`` in the scenario."""
        return lifecycle.steps(order, {p.gpu_class for p in self.sc.pools}, self.hours)

    def _open_offers(
        self, h: int, end: int, held: dict[tuple[str, int], int] | None = None
    ) -> list[Offer]:
        """Offers with the capacity not sold yet in ``[h, end)``, less ``held`` GPUs per
        (pool, slot) (:func:`suangu.core.lifecycle.hold_back`: from the pool's cheapest
        offers first)."""
        out: list[Offer] = []
        for offer in self.sc.offers:
            lo, hi = max(offer.start_slot, h), min(offer.end_slot, end)
            sold = {s: self.sold[(offer.id, s)] for s in range(lo, hi)}
            rest = lifecycle.remaining(offer, sold, h, end)
            if rest is not None:
                out.append(rest)
        return lifecycle.hold_back(out, held) if held else out

    # --- firm-order protection -------------------------------------------------------------

    def _captive_orders(self) -> dict[str, tuple[str, ...]]:
        """Firm orders captive to a pool or two (:func:`suangu.core.lifecycle.captive`),
        and those pools."""
        out = {}
        for st in self.states:
            if st.order.id in self.firm:
                pools = lifecycle.captive(True, self._feasible_pools(st))
                if pools:
                    out[st.order.id] = pools
        return out

    def _feasible_pools(self, st: _OrderState) -> tuple[str, ...]:
        """:func:`~suangu.core.network.feasible_pools` of an order from its submission on,
        against the listed offers (cached)."""
        order = st.order
        cached = self.feasible.get(order.id)
        if cached is None:
            order = lifecycle.from_submission(order, st.stream.submit_slot)
            cached = feasible_pools(self.bare, order, self.sc.offers)
            self.feasible[order.id] = cached
        return cached

    def _held_back(self, h: int, end: int) -> dict[tuple[str, int], int]:
        """GPUs held back for captive firm orders per (pool, slot) in ``(h, end)``
        (:func:`suangu.core.lifecycle.protection_levels`)."""
        while self._captive_next < len(self.states):
            st = self.states[self._captive_next]
            if st.stream.submit_slot > h:
                break
            self._captive_next += 1
            pools = self.captive.get(st.order.id, ())
            if pools:
                lifecycle.add_firm_demand(
                    self.captive_demand,
                    st.order,
                    pools,
                    st.stream.submit_slot,
                    size=self.sc.hours + self.sc.lookahead + 1,
                )
        return lifecycle.protection_levels(
            self.captive_demand, self.captive_sold, h, end, self.protect_h
        )

    def _clear_at(self, h: int) -> None:
        """The hour's clearing (with protection: its two steps); one entry in the timings."""
        orders = self._open_orders(h)
        if not orders:
            return
        end = h + self.sc.lookahead
        clearing_id = f"clr-{h:05d}"
        if not self.protect_h:
            steps = [self._clear(h, orders, self._open_offers(h, end), clearing_id)]
        else:
            first = [o for o in orders if o.id in self.captive]
            rest = [o for o in orders if o.id not in self.captive]
            steps = []
            if first:
                offers = self._open_offers(h, end)
                steps.append(self._clear(h, first, offers, f"{clearing_id}-firm"))
            if rest:
                offers = self._open_offers(h, end, self._held_back(h, end))
                steps.append(self._clear(h, rest, offers, clearing_id))
        self.failed += any(failed for _, _, failed in steps)
        self.clear_times.append(sum(wall for wall, _, _ in steps))
        self.solve_times.append(sum(solve for _, solve, _ in steps))
        self.clearings += 1

    def _clear(
        self, h: int, orders: list[Order], offers: list[Offer], clearing_id: str
    ) -> tuple[float, float, bool]:
        """Clear ``orders`` against ``offers`` over the horizon from ``h``; book the result.
        Returns the seconds it took, the solver's seconds and whether it failed."""
        n = self.sc.lookahead
        market = Market(
            grid=self.grid,
            first_slot=h,
            n_slots=n,
            sites=self.sc.sites,
            pools=self.sc.pools,
            offers=tuple(offers),
            orders=tuple(orders),
            green_share=self.sc.green_share(h, n),
            links=self.sc.links,
            delay_fen=self.sc.delay_fen,
        )
        carbon: dict[str, list[float]] | None = None
        if self.energy is not None:  # the hooks' values over the span, sliced to the horizon
            modelled = {p: tuple(v[h : h + n]) for p, v in self.span_green.items()}
            market = replace(market, green_share=modelled)
            if self.span_carbon:
                carbon = {p: v[h : h + n] for p, v in self.span_carbon.items()}
        listed = market
        uniform = self.policy is Policy.SUANGU
        t = time.perf_counter()
        tiers: products.TieredClearing | None = None
        if uniform:
            price = self.energy.carbon_price_yuan_per_t if self.energy is not None else 0.0
            if price > 0 and market.offers and carbon is not None:
                market = hooks.apply_carbon_price(market, carbon, price)
            tiers = products.clear_tiers(
                market, clear, self._spot_held(h), self.sc.providers, self.sc.notice_slots
            )
            result = tiers.result
        else:
            result = place(market, self.policy, carbon=carbon)
        wall, solve = time.perf_counter() - t, float(result.timings.get("solve_s", 0.0))
        self.methods[result.method] += 1
        if result.status is ClearingStatus.FAILED:
            return wall, solve, True
        tiered = tiers is not None and (tiers.interruptible is not None or tiers.preemptions)
        if tiers is not None and tiered:
            problems = products.check_tiers(tiers)
            self._preempt(tiers.preemptions)
        else:
            problems = check_clearing(market, result, uniform_prices=uniform)
        # Commit late, plan early: what lies beyond the firmness horizon stays a plan that
        # the next clearing plans again (a started gang keeps its run).
        result = lifecycle.commit(result, market, self.sc.firm_slots).firm
        settlement = settle(result)
        if not tiered:  # each tier's settlement is checked by check_tiers
            problems += check_settlement(market, result, settlement)
        if problems:
            raise SimulationError(
                f"the clearing at slot {h} broke {len(problems)} rule(s): "
                + "; ".join(problems[:3]),
                fix="this is a bug in the clearing; please report it with the scenario",
            )
        self.welfare += result.welfare_fen
        self.rent += settlement.congestion_rent_fen
        self.rejected += len(result.rejected_gangs)
        self.transfer_charged += sum(t.amount_fen for t in result.transfers)
        for f in result.fills:
            self.sold[(f.offer_id, f.slot)] += f.gpus
            offer = self.listed[f.offer_id]
            self.reserve_cost += offer.reserve_fen[f.slot - offer.start_slot] * f.gpus * self.hours
        states = self.by_id
        green = market.green_share
        open_orders = {o.id: o for o in listed.orders}
        for a in result.allocations:
            st = states[a.order_id]
            st.held[a.slot] = st.held.get(a.slot, 0) + a.gpus
            if a.order_id in self.captive:
                self.captive_sold[(a.pool_id, a.slot)] += a.gpus
            pool = self.pools[a.pool_id]
            speed = speed_of(st.order, pool.gpu_class)
            st.done += speed * a.gpus * self.hours
            self.value += st.order.limit_fen * speed * a.gpus * self.hours
            self.paid += a.price_fen * a.gpus * self.hours
            if st.order.interruptible or a.order_id in self.track:
                self.spot_hours += a.gpus * self.hours
                self.spot_paid += a.price_fen * a.gpus * self.hours
            terms = pool_terms(
                listed, open_orders[a.order_id], pool, self.site_by_id[pool.site_id], self.links
            )
            if terms is not None and terms.link is not None:
                self.transfer += terms.transfer_fen_per_gpu_slot * a.gpus
                self.transfer_gb += terms.gb_per_gpu_slot * a.gpus
            vol = self.site_volume[self.site_of[a.pool_id]]
            vol[0] += a.gpus * self.hours
            vol[1] += a.price_fen * a.gpus * self.hours
            shares = green.get(a.pool_id)
            if shares:
                self.green_gpu_hours += shares[a.slot - h] * a.gpus * self.hours
        for order_id in {a.order_id for a in result.allocations}:
            if states[order_id].order.kind is OrderKind.GANG:
                states[order_id].closed = True
        holds = billing.holds_for_clearing(result, clearing_id, timeout_s=0, with_transfers=True)
        self._submit(holds, self.grid.slot_start(h), f"clearing {clearing_id}")
        held = {t.id for t in holds}
        charges = result.transfer_charges()
        for order_id, allocations in billing.orders_of(result).items():
            hid = billing.hold_id(clearing_id, order_id)
            if hid not in held:
                continue  # cost nothing: nothing to settle
            carrier, congestion = charges.get(order_id, (0, 0))
            hold = _Hold(
                hid, allocations, max(a.slot for a in allocations), {}, carrier, congestion
            )
            self.holds[hold.last_slot].append(hold)
            spot = states[order_id].order.interruptible
            for a in allocations:
                self.pending_meter[a.slot].append((hold, a))
                if spot:
                    key = f"{clearing_id}|{order_id}|{a.pool_id}|{a.slot}"
                    self.spot[key] = (hold, a)
        return wall, solve, False

    # --- the interruptible tier -------------------------------------------------------------

    def _spot_held(self, h: int) -> list[products.HeldSlot]:
        """The interruptible allocations of earlier clearings not started by slot ``h``."""
        out = []
        for key, (hold, a) in list(self.spot.items()):
            if a.slot < h:
                del self.spot[key]
                continue
            gpus = a.gpus - hold.preempted.get(a, 0)
            if gpus > 0:
                order = self.by_id[a.order_id].order
                value = order.limit_fen * speed_of(order, self.pools[a.pool_id].gpu_class)
                reserve = max(
                    (
                        o.reserve_fen[a.slot - o.start_slot]
                        for o in self.offers_of[a.pool_id]
                        if o.start_slot <= a.slot < o.end_slot
                    ),
                    default=0,
                )
                out.append(
                    products.HeldSlot(
                        key, a.order_id, a.pool_id, a.slot, gpus, a.price_fen, value, reserve
                    )
                )
        return out

    def _preempt(self, preemptions: Sequence[products.Preemption]) -> None:
        """Firm demand takes interruptible GPUs: the buyer will not be metered for them, and
        its order bids again for the work it lost (the recovery path's rule)."""
        for p in preemptions:
            hold, a = self.spot[p.lease_id]
            hold.preempted[a] = hold.preempted.get(a, 0) + p.gpus
            st = self.by_id[a.order_id]
            st.held[a.slot] -= p.gpus
            if st.held[a.slot] <= 0:
                del st.held[a.slot]
            speed = speed_of(st.order, self.pools[a.pool_id].gpu_class)
            st.done -= speed * p.gpus * self.hours
            st.closed = False
            self.value -= st.order.limit_fen * speed * p.gpus * self.hours
            self.paid -= a.price_fen * p.gpus * self.hours
            self.spot_hours -= p.gpus * self.hours
            self.spot_paid -= a.price_fen * p.gpus * self.hours
            vol = self.site_volume[self.site_of[a.pool_id]]
            vol[0] -= p.gpus * self.hours
            vol[1] -= a.price_fen * p.gpus * self.hours
            self.preemptions += 1
            self.preempted_orders.add(a.order_id)
            self.preempted_hours += p.gpus * self.hours

    def _end_of_slot(self, slot: int) -> None:
        """Meter the leases of ``slot`` and settle the holds that ended with it."""
        full_s = self.grid.slot_seconds
        metered = self.pending_meter.pop(slot, [])
        for hold, a in metered:
            used = (a.gpus - hold.preempted.get(a, 0)) * full_s
            if self.shortfall > 0 and self.rng.random() < self.shortfall:
                used = int(used * self.rng.uniform(0.5, 1.0))
            hold.metered[a] = used
        transfers: list[Transfer] = []
        if self.energy is not None and metered:
            transfers += self._energy_of_slot(slot, [(a, hold.metered[a]) for hold, a in metered])
        for hold in self.holds.pop(slot, []):
            transfers += billing.settle_lease(
                hold.transfer_id,
                hold.allocations,
                hold.metered,
                self.sc.providers,
                self.sc.fee_bp,
                slot_hours=self.hours,
                carrier_fen=hold.carrier_fen,
                congestion_fen=hold.congestion_fen,
            )
        self._submit(transfers, self.grid.slot_start(slot + 1), f"the settlement of slot {slot}")

    def _energy_of_slot(self, slot: int, leases: list[tuple[Allocation, int]]) -> list[Transfer]:
        """Energy records of the leases metered in ``slot``; their certificate and carbon transfers.

        Certificates are issued to each provider for the green Wh of its leases, within the
        green energy its site used in the slot's hours (``flows.green_used``, MWh per hour);
        a lease that would go over that is recorded with ``certify=False``.
        """
        grid = self.grid
        # One energy record per (order, pool, slot): an order that two clearings served in
        # the same pool-slot (protection gives back GPUs it holds in part) is metered once.
        merged: dict[str, tuple[Allocation, int]] = {}
        for a, used in leases:
            key = accounting.lease_id(a)
            if key in merged:
                b, before = merged[key]
                a, used = replace(b, gpus=b.gpus + a.gpus), before + used
            merged[key] = (a, used)
        energy: dict[str, accounting.SlotEnergy] = {}  # energy site -> its slot
        records = []
        for _, (a, used) in sorted(merged.items()):
            sy = self.site_years[self.site_of[a.pool_id]]
            site = sy.params.site_id
            if site not in energy:
                energy[site] = accounting.slot_energy(sy, grid, slot)
            provider = self.sc.providers[a.pool_id]
            gpu = self.pools[a.pool_id].gpu_class
            records.append(accounting.lease_record(a, used, provider, energy[site], grid, gpu))
        room = {site: e.green_room_wh for site, e in energy.items()}
        records, left = accounting.certify_within(records, room)
        self.uncertified += left
        issued: dict[str, int] = defaultdict(int)  # provider -> Wh to issue
        chains: list[Transfer] = []
        for rec in records:
            issued[rec.provider_id] += rec.certificates_wh
            self.records.append(rec)
            chains += accounting.lease_transfers(rec)
        issues = [
            accounting.issue_certificates(
                f"issue:{provider}:{slot}", provider, wh, user_data=f"slot {slot}"
            )
            for provider, wh in sorted(issued.items())
            if wh > 0
        ]
        return issues + chains

    # -- the report --------------------------------------------------------------------------

    def _ledger_check(self) -> tuple[bool, str]:
        try:
            self.ledger.check_invariants()
        except SuanguError as err:
            return False, str(err)
        clearing = self.ledger.lookup_account(billing.exchange_clearing_account())
        if clearing is not None and (
            clearing.balance != 0 or clearing.debits_pending or clearing.credits_pending
        ):
            return False, f"the clearing account is not back to zero: {clearing}"
        open_holds = [
            t.id
            for t in self.ledger.transfers()
            if t.is_pending and self.ledger.pending_status(t.id) is PendingStatus.PENDING
        ]
        if open_holds:
            return False, f"{len(open_holds)} hold(s) never settled, e.g. {open_holds[0]}"
        if self.energy is None:
            return True, "debits = credits on every ledger; every hold settled"
        problem = self._energy_ledger_problem()
        if problem:
            return False, problem
        return True, (
            "debits = credits on every ledger (CNY, kWh-green, gCO2); every hold settled; "
            "every lease's certificates retired and grams recorded"
        )

    def _energy_ledger_problem(self) -> str | None:
        """The kWh-green and gCO2 ledgers against the lease records (None if they agree)."""
        green = self.ledger.balances(Asset.KWH_GREEN)
        co2 = self.ledger.balances(Asset.GCO2)
        retired: dict[str, int] = defaultdict(int)
        grams: dict[str, int] = defaultdict(int)
        for r in self.records:
            retired[r.buyer_id] += r.certificates_wh
            grams[r.buyer_id] += r.market_g
        issued = sum(retired.values())
        if -green.get(accounting.ISSUER, 0) != issued:
            return f"certificates issued {-green.get(accounting.ISSUER, 0)} Wh != retired {issued}"
        for buyer in sorted(retired):
            acc = accounting.certificate_account(AccountKind.BUYER, buyer)
            if green.get(acc, 0) != retired[buyer]:
                return f"{acc} holds {green.get(acc, 0)} Wh, its leases retired {retired[buyer]}"
            acc = accounting.carbon_account(buyer)
            if co2.get(acc, 0) != grams[buyer]:
                return f"{acc} holds {co2.get(acc, 0)} g, its leases' market-based {grams[buyer]}"
        return None

    def _report(self, wall_s: float) -> SimulationReport:
        sums: dict[TransferCode, int] = defaultdict(int)
        transfers = self.ledger.transfers()
        for t in transfers:
            if t.ledger is Asset.CNY and t.amount is not None and not t.is_pending:
                sums[t.code] += t.amount
        balanced, message = self._ledger_check()
        # Posted from the holds: metered use plus data transfer charges, which pass on to the
        # exchange's network account; the buyer spend reported is the metered use.
        posted = sums[TransferCode.LEASE_PAYMENT]
        data = sums[TransferCode.DATA_TRANSFER]
        spend = posted - data
        revenue = sums[TransferCode.PROVIDER_PAYOUT]
        fees = sums[TransferCode.EXCHANGE_FEE]
        if balanced and spend != revenue + fees:
            balanced = False
            message = f"buyer spend {spend} != provider revenue {revenue} + fees {fees}"
        span = self.sc.hours
        kinds: dict[str, dict[str, int]] = {
            k.value: {"total": 0, "filled": 0, "partial": 0, "unfilled": 0} for k in OrderKind
        }
        filled = partial = unfilled = after = 0
        asked = done = 0.0
        waits: list[float] = []
        firm = missed = unservable = 0
        due = met = 0
        wasted = 0.0
        for st in self.states:
            if st.stream.submit_slot >= span:
                after += 1
                continue
            if st.order.deadline_slot <= span:
                due += 1
                if st.filled(self.hours):
                    met += 1
                else:
                    wasted += st.allocated * self.hours
            asked += _asked(st.order, self.hours)
            done += st.done if st.order.kind is OrderKind.BATCH else st.allocated * self.hours
            if st.first_slot >= 0:
                waits.append(float((st.first_slot - st.stream.submit_slot) * self.hours))
            if st.order.id in self.firm and st.order.deadline_slot <= span:
                firm += 1
                missed += not st.filled(self.hours)
                unservable += not st.filled(self.hours) and not self._feasible_pools(st)
            row = kinds[st.order.kind.value]
            row["total"] += 1
            if st.filled(self.hours):
                filled += 1
                row["filled"] += 1
            elif st.allocated > 0:
                partial += 1
                row["partial"] += 1
            else:
                unfilled += 1
                row["unfilled"] += 1
        names = {s.id: s.name for s in self.sc.sites}
        sites = tuple(
            SiteVolume(s.id, names[s.id], *self.site_volume[s.id])
            for s in self.sc.sites
            if s.id in self.site_volume
        )
        n = len(self.clear_times)
        return SimulationReport(
            scenario=self.sc.name,
            hours=span,
            slot_hours=self.hours,
            orders_total=filled + partial + unfilled,
            orders_filled=filled,
            orders_partial=partial,
            orders_unfilled=unfilled,
            orders_after_span=after,
            orders_by_kind=kinds,
            gpu_hours_traded=sum(v.gpu_hours for v in sites),
            traded_value_fen=sum(v.value_fen for v in sites),
            green_gpu_hours=self.green_gpu_hours,
            sites=sites,
            welfare_fen=self.welfare,
            buyer_deposits_fen=self.deposits,
            buyer_spend_fen=spend,
            provider_revenue_fen=revenue,
            exchange_fees_fen=fees,
            congestion_rent_fen=self.rent,
            released_fen=self._released(),
            ledger_balanced=balanced,
            ledger_message=message,
            transfers=len(transfers),
            clearings=self.clearings,
            clearings_failed=self.failed,
            gangs_rejected=self.rejected,
            clear_mean_s=sum(self.clear_times) / n if n else 0.0,
            clear_max_s=max(self.clear_times, default=0.0),
            solve_mean_s=sum(self.solve_times) / n if n else 0.0,
            solve_max_s=max(self.solve_times, default=0.0),
            wall_s=wall_s,
            methods=dict(sorted(self.methods.items())),
            energy=self._energy_summary(),
            energy_model_s=self.energy_model_s,
            policy=self.policy.value,
            value_fen=round(self.value),
            listed_reserve_fen=self.reserve_cost,
            transfer_fen=round(self.transfer),
            transfer_gb=self.transfer_gb,
            paid_fen=self.paid,
            transfer_charged_fen=self.transfer_charged,
            transfer_posted_fen=data,
            work_asked_h=asked,
            work_done_h=done,
            waits_h=tuple(waits),
            firm_orders=firm,
            firm_missed=missed,
            firm_unservable=unservable,
            deadline_orders=due,
            deadlines_met=met,
            wasted_gpu_hours=wasted,
            firm_slots=self.sc.firm_slots,
            interruptible_orders=sum(
                1
                for st in self.states
                if st.order.interruptible and st.stream.submit_slot < self.sc.hours
            ),
            interruptible_gpu_hours=self.spot_hours,
            interruptible_paid_fen=self.spot_paid,
            preemptions=self.preemptions,
            orders_preempted=len(self.preempted_orders),
            preempted_gpu_hours=self.preempted_hours,
        )

    def _energy_summary(self) -> EnergySummary | None:
        if self.energy is None:
            return None
        from suangu.sim.energy import load_energy_data

        data = load_energy_data()
        recs = self.records
        energy = sum(r.energy_wh for r in recs)
        market = sum(r.market_g for r in recs)
        factors = sorted({r.grid_factor.label for r in recs})
        residuals = sorted({f"{r.residual_t_per_mwh:.4f}" for r in recs})
        methods = {
            "location-based": "grid import x the site province's grid average (direct green "
            "supply counts 0): " + ("; ".join(factors) or "no leases"),
            "market-based": "energy not covered by green certificates retired to the buyer x "
            "residual factor = the site province's grid average (China publishes no residual "
            "mix): " + (", ".join(residuals) + " t/MWh" if residuals else "no leases"),
        }
        avoided: list[AvoidedRow] = []
        # grid_average: each lease's energy at its own site's provincial average, less actual
        baseline = sum(r.energy_wh * r.grid_factor.t_per_mwh for r in recs) / 1e6
        avoided.append(
            AvoidedRow(
                "grid_average",
                "the same energy from each site's provincial grid (location), less market-based "
                "actual",
                None,
                baseline - market / 1e6,
                f"{baseline - market / 1e6:,.3f} t CO2 avoided = energy x each site's "
                f"provincial grid average ({'; '.join(factors) or 'no leases'}) - "
                f"{market / 1e6:,.3f} t actual (market-based)",
            )
        )
        named: list[AvoidanceMethod] = list(data.methods.values())
        home = None
        if self.energy.home_grid is not None:
            home = data.factors.get(self.energy.home_grid)
            named.append(
                AvoidanceMethod(
                    "home_grid",
                    home.t_per_mwh,
                    f"buyers' home grid: {home.label}",
                    home.source,
                )
            )
        for m in named:
            a = avoided_co2(energy / 1e6, m, actual_tonnes=market / 1e6)
            avoided.append(
                AvoidedRow(
                    m.name,
                    f"{m.description}, less market-based actual",
                    m.t_per_mwh,
                    a.tonnes,
                    f"{a.tonnes:,.3f} t CO2 avoided = {a.energy_mwh:,.3f} MWh x "
                    f"{m.t_per_mwh:.4f} t/MWh ({m.name}: {m.description}) - "
                    f"{market / 1e6:,.3f} t actual (market-based)",
                )
            )
        start = self.grid.epoch
        end = self.grid.slot_start(max((r.slot for r in recs), default=0) + 1)
        buyers = tuple(
            accounting.carbon_statement(recs, b, start, end, home)
            for b in sorted({r.buyer_id for r in recs})
        )
        years = sorted({y for sy in self.site_years.values() for y in _years_of(sy)})
        return EnergySummary(
            seed=self.energy.seed,
            carbon_price_yuan_per_t=self.energy.carbon_price_yuan_per_t,
            energy_sites=dict(self.energy.sites),
            years=tuple(years),
            leases=len(recs),
            gpu_hours=sum(r.gpu_seconds for r in recs) / 3600,
            energy_wh=energy,
            green_wh=sum(r.green_wh for r in recs),
            grid_wh=sum(r.grid_wh for r in recs),
            certificates_wh=sum(r.certificates_wh for r in recs),
            uncertified_leases=self.uncertified,
            location_g=sum(r.location_g for r in recs),
            market_g=market,
            methods=methods,
            grid_factors={
                f.region: f.t_per_mwh
                for f in sorted({r.grid_factor for r in recs}, key=lambda f: f.region)
            },
            grid_factor_years=tuple(sorted({r.grid_factor.year for r in recs})),
            home_grid=None if home is None else home.label,
            avoided=tuple(avoided),
            buyers=buyers,
        )

    def _released(self) -> int:
        """Held at clearing time but released at settlement (metered shortfall), fen."""
        held = posted = 0
        for t in self.ledger.transfers():
            if t.amount is None:
                continue
            if t.is_pending:
                held += t.amount
            elif t.is_post:
                posted += t.amount
        return held - posted


def _asked(order: Order, slot_hours: int) -> float:
    """Work an order asks for: reference GPU-hours (batch), GPU-hours (gang, service)."""
    if order.kind is OrderKind.BATCH:
        return float(order.gpu_hours)
    return float(order.max_gpu_slots(slot_hours) * slot_hours)


def _years_of(sy: SiteYear) -> range:
    """The calendar years a (possibly joined) site-year covers."""
    last = int(np.count_nonzero((sy.month[1:] == 1) & (sy.month[:-1] == 12)))
    return range(sy.year, sy.year + last + 1)


def simulate(
    scenario: Scenario,
    orders: OrderStream,
    *,
    progress: Progress | None = None,
    shortfall: float = 0.0,
    seed: int = 0,
    policy: Policy | str = Policy.SUANGU,
    track: Iterable[str] = (),
) -> SimulationReport:
    """Run ``orders`` through ``scenario`` slot by slot; see the module docs.

    ``shortfall`` is the probability that a lease meters less than full use in a slot (then
    between 50% and 100% of it, drawn from a generator seeded with ``seed``): the unused part
    of the hold is released. ``policy`` places the work at each clearing (see
    :mod:`suangu.sim.policies`; default ``suangu``, the clearing engine). Deterministic for the
    same inputs. The report's ``interruptible_gpu_hours`` and ``interruptible_paid_fen``
    count the interruptible orders and those of ``track`` (a baseline's same orders).
    """
    if not 0.0 <= shortfall <= 1.0:
        raise ValidationError(
            f"must be between 0 and 1, got {shortfall}", field="shortfall", fix="e.g. 0.1"
        )
    if not isinstance(policy, Policy):
        try:
            policy = parse_policy(policy)
        except ValueError as err:
            raise ValidationError(
                str(err), field="policy", fix="fifo-home, cheapest-now, carbon-shift or suangu"
            ) from None
    sim = _Simulation(scenario, orders, shortfall, seed, progress, policy)
    sim.track = frozenset(track)
    return sim.run()


__all__ = ["AvoidedRow", "EnergySummary", "SimulationReport", "SiteVolume", "simulate"]
