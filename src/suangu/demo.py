"""``suangu demo``: the whole exchange working as a service, on a simulated clock.

:func:`run_demo` drives the real service, the same code ``suangu serve`` runs, over an
in-process transport (:class:`fastapi.testclient.TestClient`, no network):

1. **Setup through the API.** An operator member (made in the store: the API has no
   anonymous sign-up) onboards an auditor, the scenario's providers and buyers with
   ``POST /members`` and gives each an API key (``POST /members/{id}/keys``). Each provider
   registers its sites, pools and offers (``POST /sites``, ``/pools``, ``/offers``); the
   operator sets the scenario's fee (``PUT /fees``) and its hub-to-hub links (``PUT /links``:
   the network buyers' input data crosses) and records each buyer's deposit
   (``POST /deposits``: what all its orders could cost at their limits, as in
   :mod:`suangu.sim.simulate`, so that no hold fails for want of money).
2. **A week on a simulated clock.** A :class:`~suangu.api.clock.ManualClock` moves hour by
   hour. At each hour: buyers submit the orders of the stream due that hour
   (``POST /orders``, with their home hub, input data, reference class and speeds, as
   :mod:`suangu.sim.simulate` clears them); the app's own
   :class:`~suangu.api.scheduler.ClearingLoop` ticks: it clears the market over the
   scenario's look-ahead with the energy model's green shares and carbon price
   (:class:`~suangu.api.market_energy.MarketEnergy`), holds the buyers' money and moves
   leases on; then the providers' agents tick. After the last hour, the clock runs on until
   every lease sold has been metered.
3. **The providers are agents over HTTP**: one :class:`~suangu.agent.runner.ProviderAgent`
   per provider, with its own key, a :class:`~suangu.agent.executors.SimulatedExecutor` on
   the market clock and a :class:`ModelMeter` per pool. Each tick it sends a heartbeat,
   lists its open leases, starts the runs of the hour and sends the final readings of the
   leases that ended in one ``POST /readings`` (the orders they finish settle on the
   ledger: metered use posted, the rest of the hold released, the fee to the exchange).
   With ``shortfall``, a seeded share of the runs finish after 50-100% of their time. The
   service then books the settled leases' green certificates and CO2 on the ``kWh-green``
   and ``gCO2`` ledgers from their metered energy (:func:`suangu.api.green.book_energy`,
   the readings routes' path), by the simulation's rule.
4. **The summary** comes from the store (:func:`suangu.web.stats.market_stats`, what the
   dashboard draws) and the ledger's invariants are checked
   (:meth:`~suangu.store.ledger.SqlLedger.check_invariants`).

The app returned keeps the clock stopped at the end of the run: ``suangu demo`` then serves
it (API and dashboard) on that frozen clock, with the clearing loop off; an operator can
still clear new orders with ``suangu clear`` (``POST /clearings``).
"""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from suangu.agent.executors import SimulatedExecutor
from suangu.agent.meters import MJ_PER_WH, Meter, NominalMeter
from suangu.agent.runner import ProviderAgent
from suangu.api.app import PREFIX, create_app
from suangu.api.clock import ManualClock
from suangu.api.green import SiteEnergyModel, book_energy
from suangu.api.market_energy import MarketEnergy
from suangu.api.settings import ApiSettings
from suangu.client import SuanguClient
from suangu.core import billing
from suangu.core.energy import accounting
from suangu.core.energy.model import SiteYear
from suangu.core.errors import SuanguError, ValidationError
from suangu.core.ledger import PendingStatus, TransferCode
from suangu.core.metering import ReadingSource
from suangu.core.types import Allocation, Order, OrderKind, TimeGrid, owned_id
from suangu.sim.scenario import OrderStream, Scenario, StreamOrder
from suangu.sim.simulate import SimulationReport
from suangu.store.db import Database
from suangu.store.ledger import SqlLedger
from suangu.store.models import (
    ClearingRow,
    DataTransferRow,
    ExchangeSettingRow,
    LeaseEnergyRow,
    LeaseRow,
    LeaseState,
    LedgerTransferRow,
    MeterReadingRow,
    Role,
)
from suangu.store.repositories import Members
from suangu.web.stats import MarketStats, market_stats

#: ``progress(done, total)`` after each simulated hour.
Progress = Callable[[int, int], None]
OPERATOR = "exchange-operator"
AUDITOR = "regulator"
#: The demo's agents look this many slots past the current one (a run spans at most that many
#: more slots; the rest of a longer allocation is the next run).
AGENT_AHEAD_SLOTS = 2
#: The exchange setting that marks a database as the demo's (``suangu demo`` may replace it).
DEMO_MARK = "demo_database"


class DemoError(SuanguError):
    """The demo could not run (a request refused, a database that is not the demo's)."""

    code = "demo"


@dataclass(frozen=True)
class DemoMember:
    id: str
    name: str
    role: str
    token: str


@dataclass(frozen=True)
class EnergyTotals:
    """Energy and carbon of the metered leases (Wh and g, see docs/energy.md)."""

    leases: int = 0
    energy_wh: int = 0
    green_wh: int = 0
    certificates_wh: int = 0
    location_g: int = 0
    market_g: int = 0
    uncertified_leases: int = 0

    @property
    def green_share(self) -> float:
        return self.green_wh / self.energy_wh if self.energy_wh else 0.0


@dataclass(frozen=True)
class DemoReport:
    """What :func:`run_demo` did; money in fen."""

    scenario: str
    source: str
    hours: int
    members: tuple[DemoMember, ...]
    orders_submitted: int
    orders_refused: int  # the API said no (windows already past when due)
    orders_after_span: int
    clearings: int
    clearings_failed: int
    readings: int
    holds_settled: int  # (clearing, order) holds settled on the ledger
    stats: MarketStats
    energy: EnergyTotals
    ledger_balanced: bool
    ledger_message: str
    timings: dict[str, float] = field(default_factory=dict)
    #: Charged to buyers for moving their input data over links (carrier + congestion), fen:
    #: posted with their leases, passed to the exchange's network account.
    transfer_charged_fen: int = 0
    transfer_gb: float = 0.0  # data moved over links by the orders that cleared
    #: The clearings' welfare (what they committed), as :mod:`suangu.sim.simulate` sums it.
    welfare_fen: int = 0
    #: What the agents' ticks could not do (none in a healthy run).
    agent_errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        st = self.stats
        names = {s.id: s.name for s in st.sites}
        return {
            "scenario": self.scenario,
            "source": self.source,
            "hours": self.hours,
            "members": [
                {"id": m.id, "name": m.name, "role": m.role, "key": m.token} for m in self.members
            ],
            "orders_submitted": self.orders_submitted,
            "orders_refused": self.orders_refused,
            "orders_after_span": self.orders_after_span,
            "orders_by_kind": st.orders,
            "orders_filled": st.orders_with("cleared"),
            "orders_partial": st.orders_with("partially"),
            "fill_rate": round(st.fill_rate, 4),
            "volume_fill_rate": round(st.volume_fill_rate, 4),
            "deadline_orders": st.deadline_orders,
            "deadlines_met": st.deadlines_met,
            "wasted_gpu_hours": round(st.wasted_gpu_hours, 1),
            "clearings": self.clearings,
            "clearings_failed": self.clearings_failed,
            "readings": self.readings,
            "holds_settled": self.holds_settled,
            "gpu_hours_traded": st.gpu_hours,
            "traded_value_fen": st.value_fen,
            "sites": [
                {
                    "site_id": v.site_id,
                    "name": names.get(v.site_id, v.site_id),
                    "gpu_hours": v.gpu_hours,
                    "value_fen": v.value_fen,
                    "avg_price_fen": round(v.avg_price_fen, 2),
                }
                for v in st.volumes
            ],
            "welfare_fen": self.welfare_fen,
            "buyer_spend_fen": st.buyer_spend_fen,
            "provider_revenue_fen": st.money.get("provider_payout", 0),
            "exchange_fees_fen": st.money.get("exchange_fee", 0),
            "transfer_charged_fen": self.transfer_charged_fen,
            "transfer_gb": round(self.transfer_gb, 1),
            "deposits_fen": st.money.get("deposit", 0),
            "energy": {
                "leases": self.energy.leases,
                "energy_kwh": self.energy.energy_wh / 1000,
                "green_kwh": self.energy.green_wh / 1000,
                "green_share": round(self.energy.green_share, 4),
                "certificates_kwh": self.energy.certificates_wh / 1000,
                "co2_location_based_t": self.energy.location_g / 1e6,
                "co2_market_based_t": self.energy.market_g / 1e6,
                "uncertified_leases": self.energy.uncertified_leases,
            },
            "ledger_balanced": self.ledger_balanced,
            "ledger_message": self.ledger_message,
            "agent_errors": list(self.agent_errors),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


# -- the database ---------------------------------------------------------------------------------


def fresh_sqlite(path: Path) -> None:
    """Make room for a new demo database at ``path``: remove an earlier demo's file (and its
    WAL files); refuse to touch any other file."""
    if not path.exists():
        return
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            mark = con.execute(
                "SELECT value FROM exchange_settings WHERE name = ?", (DEMO_MARK,)
            ).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        mark = None
    if mark is None:
        raise DemoError(
            f"{path} exists and is not a database of an earlier demo",
            field="db",
            fix="give --db a new file (the demo replaces only its own databases)",
        )
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# -- the simulated providers ----------------------------------------------------------------------


@dataclass
class _MeterRun:
    gpus: int
    since: int
    slot: int  # the first slot not summed yet
    wh: int = 0  # energy of the slots before ``slot``


class ModelMeter:
    """The meter of one pool of a simulated provider: the energy model's figure for the
    GPU-seconds a job ran in each slot (:func:`~suangu.core.energy.accounting.lease_energy`:
    the class's power x the site's hourly PUE), whole Wh per slot, so a lease's final
    reading carries exactly the energy its metered GPU-seconds are booked with."""

    source = ReadingSource.NOMINAL

    def __init__(
        self, pool_id: str, gpu_class: str, provider_id: str, site_year: SiteYear, grid: TimeGrid
    ) -> None:
        self.pool_id, self.gpu_class, self.provider_id = pool_id, gpu_class, provider_id
        self.site_year, self.grid = site_year, grid

    def start(self, devices: Any, gpus: int, now: float) -> object:
        return _MeterRun(gpus, int(now), self.grid.slot_at(int(now)))

    def energy_mj(self, token: object, now: float) -> float:
        assert isinstance(token, _MeterRun)
        t, grid = int(now), self.grid
        while grid.slot_start(token.slot + 1) <= t:
            token.wh += self._wh(token, token.slot, grid.slot_start(token.slot + 1))
            token.slot += 1
        return (token.wh + self._wh(token, token.slot, t)) * MJ_PER_WH

    def _wh(self, run: _MeterRun, slot: int, upto: int) -> int:
        seconds = upto - max(run.since, self.grid.slot_start(slot))
        if seconds <= 0:
            return 0
        a = Allocation("", "", self.pool_id, slot, run.gpus, 0)
        rec = accounting.lease_energy(
            a, run.gpus * seconds, self.provider_id, self.site_year, self.grid, self.gpu_class
        )
        return rec.energy_wh


# -- the run --------------------------------------------------------------------------------------


class _Run:
    def __init__(
        self,
        db: Database,
        scenario: Scenario,
        stream: OrderStream,
        *,
        progress: Progress | None,
        shortfall: float,
        seed: int,
    ) -> None:
        self.db = db
        self.sc = scenario
        self.stream = stream
        self.grid = scenario.grid
        self.progress = progress
        self.shortfall = shortfall
        self.seed = seed
        self.clock = ManualClock(self.grid.epoch)
        energy = scenario.energy
        self.energy = (
            MarketEnergy(
                energy.sites,
                seed=energy.seed,
                carbon_price_yuan_per_t=energy.carbon_price_yuan_per_t,
            )
            if energy is not None
            else None
        )
        self.settings = ApiSettings(
            grid_epoch=self.grid.epoch,
            slot_seconds=self.grid.slot_seconds,
            horizon_slots=scenario.lookahead,
            default_fee_bp=scenario.fee_bp,
            delay_fen=scenario.delay_fen,
            firm_slots=scenario.firm_slots,
            # The agents report once a simulated slot: silent means two slots without a word.
            agent_grace_s=max(900, 2 * self.grid.slot_seconds),
        )
        self.app = create_app(
            db,
            self.clock,
            self.settings,
            energy=self.energy if self.energy is not None else False,
            private_dashboard=True,
        )
        # Entered (and left in run()): one event-loop portal for every request, not one each.
        self.client = TestClient(self.app, raise_server_exceptions=True)
        self.ledger: SqlLedger = self.app.state.ctx.ledger
        self.tokens: dict[str, str] = {}
        self.members: list[DemoMember] = []
        self.site_years: dict[str, SiteYear] = {}
        self.pools = {p.id: p for p in scenario.pools}
        self.timings: dict[str, float] = defaultdict(float)
        self.energy_model: SiteEnergyModel = self.app.state.energy_model
        self.agents: list[ProviderAgent] = []
        self.agent_errors: list[str] = []

    def _took(self, phase: str, wall: float, cpu: float) -> None:
        """Add the wall-clock and CPU seconds since ``wall`` and ``cpu`` to ``phase`` (CPU of
        the whole process, the API's threads included: steadier on a shared machine)."""
        self.timings[f"{phase}_s"] += time.perf_counter() - wall
        self.timings[f"{phase}_cpu_s"] += time.process_time() - cpu

    # -- HTTP ----------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        who: str,
        body: Any = None,
        ok: int = 201,
        idempotency_key: str | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        r = self.client.request(method, PREFIX + path, json=body, headers=headers)
        if r.status_code != ok:
            try:
                problem = r.json()
            except ValueError:
                problem = {"detail": r.text}
            raise DemoError(
                f"{method} {path} as {who} answered {r.status_code}: "
                f"{problem.get('field', '')} {problem.get('detail', '')}".strip(),
                fix="this is a bug in the demo or the API; please report it",
            )
        return r.json()

    # -- setup ---------------------------------------------------------------------------------

    def setup(self) -> None:
        t, c = time.perf_counter(), time.process_time()
        now = self.clock.now()
        with self.db.session_scope() as s:
            Members(s).create(OPERATOR, "Suangu exchange operator 算谷交易所", Role.OPERATOR, now)
            token = Members(s).create_key(OPERATOR, now, label="demo").token
            s.merge(ExchangeSettingRow(name=DEMO_MARK, value=1, updated_at=now))
        self.tokens[OPERATOR] = token
        self.members.append(DemoMember(OPERATOR, "Suangu exchange operator", "operator", token))
        providers = sorted(set(self.sc.providers.values()))
        buyers = sorted({s.order.buyer_id for s in self.stream.orders})
        overlap = set(providers) & set(buyers)
        if overlap:
            raise DemoError(
                f"{sorted(overlap)[0]!r} is both a provider and a buyer",
                fix="give providers and buyers different ids",
            )
        for member_id, role in (
            [(AUDITOR, Role.AUDITOR)]
            + [(p, Role.PROVIDER) for p in providers]
            + [(b, Role.BUYER) for b in buyers]
        ):
            self._member(member_id, role)
        self.call("PUT", "/fees", OPERATOR, {"fee_bp": self.sc.fee_bp}, ok=200)
        self._capacity()
        self._links()
        self._deposits(buyers)
        self._took("setup", t, c)

    def _member(self, member_id: str, role: Role) -> None:
        name = member_id.replace("-", " ").title()
        self.call("POST", "/members", OPERATOR, {"id": member_id, "name": name, "role": role})
        key = self.call(
            "POST",
            f"/members/{member_id}/keys",
            OPERATOR,
            {"label": "demo"},
            idempotency_key=f"demo-key-{member_id}-{uuid.uuid4().hex}",
        )
        self.tokens[member_id] = key["token"]
        self.members.append(DemoMember(member_id, name, str(role), key["token"]))

    def _capacity(self) -> None:
        owner: dict[str, str] = {}
        for pool in self.sc.pools:
            provider = self.sc.providers.get(pool.id)
            if provider is None:
                continue  # a pool nobody offers
            if owner.setdefault(pool.site_id, provider) != provider:
                raise DemoError(
                    f"site {pool.site_id!r} has pools of {owner[pool.site_id]!r} and {provider!r}",
                    fix="in the service a site belongs to one provider",
                )
        for site in self.sc.sites:
            if site.id not in owner:
                continue
            self.call(
                "POST",
                "/sites",
                owner[site.id],
                {
                    "id": site.id,
                    "name": site.name,
                    "province": site.province,
                    "region": site.region,
                    "lat": site.lat,
                    "lon": site.lon,
                    "pue": site.pue,
                    "latency_ms": dict(site.latency_ms),
                },
            )
        for pool in self.sc.pools:
            if pool.site_id in owner:
                self.call(
                    "POST",
                    "/pools",
                    owner[pool.site_id],
                    {"id": pool.id, "site_id": pool.site_id, "gpu_class": pool.gpu_class},
                )
        for offer in self.sc.offers:
            self.call(
                "POST",
                "/offers",
                offer.provider_id,
                {
                    "id": offer.id,
                    "pool_id": offer.pool_id,
                    "start_slot": offer.start_slot,
                    "gpus": list(offer.gpus),
                    "reserve_fen": list(offer.reserve_fen),
                },
            )

    def _links(self) -> None:
        """The scenario's hub-to-hub links, the network the clearings move input data over."""
        links = [
            {
                "from_region": x.from_region,
                "to_region": x.to_region,
                "latency_ms": x.latency_ms,
                "bandwidth_gbps": x.bandwidth_gbps,
                "price_fen_per_gb": x.price_fen_per_gb,
            }
            for x in self.sc.links
        ]
        if links:
            self.call("PUT", "/links", OPERATOR, {"links": links}, ok=200)

    def _deposits(self, buyers: list[str]) -> None:
        need: dict[str, int] = defaultdict(int)
        hours = self.grid.slot_hours
        classes = sorted({p.gpu_class for p in self.sc.pools})
        for s in self.stream.orders:
            if s.submit_slot < self.sc.hours:
                o = s.order
                need[o.buyer_id] += billing.max_cost_fen(o, hours, classes)
        for b in buyers:
            if need[b] > 0:
                self.call(
                    "POST",
                    "/deposits",
                    OPERATOR,
                    {"id": f"deposit-{b}", "member_id": b, "amount_fen": need[b]},
                )

    # -- the clock -------------------------------------------------------------------------------

    def run(self) -> DemoReport:
        with self.client:
            return self._run()

    def _run(self) -> DemoReport:
        t0, cpu0 = time.perf_counter(), time.process_time()
        self.setup()
        span = self.sc.hours
        if self.energy is not None:
            t, c = time.perf_counter(), time.process_time()
            end = self.grid.slot_start(span + self.sc.lookahead)
            self.site_years = self.energy.site_years(
                [s.id for s in self.sc.sites], self.grid.epoch, end
            )
            self._took("energy_model", t, c)
        due: dict[int, list[StreamOrder]] = defaultdict(list)
        after = 0
        for due_order in sorted(self.stream.orders, key=lambda o: (o.submit_slot, o.order.id)):
            if due_order.submit_slot >= span:
                after += 1
            else:
                due[due_order.submit_slot].append(due_order)
        self._start_agents()
        submitted = refused = clearings = failed = 0
        loop = self.app.state.clearing_loop
        for h in range(span):
            self.clock.set(self.grid.slot_start(h))
            t, c = time.perf_counter(), time.process_time()
            for due_order in due.pop(h, []):
                if self._submit(due_order.order, h):
                    submitted += 1
                else:
                    refused += 1
            self._took("orders", t, c)
            t, c = time.perf_counter(), time.process_time()
            tick = loop.tick()
            self._took("clearing", t, c)
            if tick.clearing_id is not None:
                clearings += 1
            elif tick.skipped is not None and tick.skipped != "exists":
                failed += 1
            # The agents meter the slot that just ended and start the leases of this one.
            self._meter(h)
            if self.progress is not None:
                self.progress(h + 1, span)
        last = self._last_lease_slot()
        for slot in range(span, max(last, span - 1) + 2):
            self.clock.set(self.grid.slot_start(slot))
            self._meter(slot)
        t, c = time.perf_counter(), time.process_time()
        balanced, message = self._ledger_check()
        with self.db.session_scope(write=False) as s:
            stats = market_stats(s, self.grid.slot_hours, due_by=span)
            charged = s.scalar(
                select(func.sum(LedgerTransferRow.amount)).where(
                    LedgerTransferRow.code == str(TransferCode.DATA_TRANSFER)
                )
            )
            moved = s.scalar(select(func.sum(DataTransferRow.gb)))
            welfare = s.scalar(select(func.sum(ClearingRow.welfare_fen)))
            readings = int(s.scalar(select(func.count()).select_from(MeterReadingRow)) or 0)
            settled = int(
                s.scalar(
                    select(func.count(func.distinct(LeaseRow.hold_transfer_id))).where(
                        LeaseRow.state == str(LeaseState.SETTLED)
                    )
                )
                or 0
            )
        self._took("report", t, c)
        self.timings["total_s"] = time.perf_counter() - t0
        # CPU seconds of the whole process (the API's threads included): on a shared machine
        # a steadier measure than the wall clock.
        self.timings["cpu_s"] = time.process_time() - cpu0
        e = self._energy_totals()
        return DemoReport(
            scenario=self.sc.name,
            source=self.stream.source,
            hours=span,
            members=tuple(self.members),
            orders_submitted=submitted,
            orders_refused=refused,
            orders_after_span=after,
            clearings=clearings,
            clearings_failed=failed,
            readings=readings,
            holds_settled=settled,
            stats=stats,
            energy=EnergyTotals(
                leases=e["leases"],
                energy_wh=e["energy_wh"],
                green_wh=e["green_wh"],
                certificates_wh=e["certificates_wh"],
                location_g=e["location_g"],
                market_g=e["market_g"],
                uncertified_leases=e["uncertified"],
            ),
            ledger_balanced=balanced,
            ledger_message=message,
            timings=dict(self.timings),
            transfer_charged_fen=int(charged or 0),
            transfer_gb=float(moved or 0.0),
            welfare_fen=int(welfare or 0),
            agent_errors=tuple(self.agent_errors),
        )

    def _submit(self, order: Order, h: int) -> bool:
        release = max(order.release_slot, h)
        if release >= order.deadline_slot or (
            order.kind is OrderKind.GANG and order.deadline_slot - release < order.duration_slots
        ):
            return False
        body = {
            "id": order.id,
            "kind": str(order.kind),
            "gpus": order.gpus,
            "release_slot": release,
            "deadline_slot": order.deadline_slot,
            "limit_fen": order.limit_fen,
            "gpu_hours": order.gpu_hours,
            "duration_slots": order.duration_slots,
            "gpu_classes": sorted(order.gpu_classes),
            "regions": sorted(order.regions),
            "provinces": sorted(order.provinces),
            "home": order.home,
            "max_latency_ms": order.max_latency_ms,
            "min_green_share": order.min_green_share,
            "data_gb": order.data_gb,
            "reference_class": order.reference_class,
            "speed": dict(order.speed),
        }
        self.call("POST", "/orders", order.buyer_id, body)
        return True

    def _last_lease_slot(self) -> int:
        with self.db.session_scope(write=False) as s:
            got = s.scalar(select(func.max(LeaseRow.slot)))
        return -1 if got is None else int(got)

    # -- the simulated provider --------------------------------------------------------------------

    def _start_agents(self) -> None:
        """One agent per provider, talking HTTP to the service with the provider's key (the
        same :class:`~suangu.agent.runner.ProviderAgent` as ``suangu agent``), with a
        simulated executor on the market clock and each pool's meter."""
        transport = self.client._transport
        providers = sorted(set(self.sc.providers.values()))
        for provider in providers:
            meters: dict[str, Meter] = {}
            for pool in self.sc.pools:
                if self.sc.providers.get(pool.id) != provider:
                    continue
                sy = self.site_years.get(pool.site_id)
                if sy is not None:
                    meters[pool.id] = ModelMeter(pool.id, pool.gpu_class, provider, sy, self.grid)
                else:
                    meters[pool.id] = NominalMeter(pool.gpu_class)
            api = SuanguClient("http://testserver", self.tokens[provider], transport=transport)
            executor = SimulatedExecutor(self._now, use=self._use(provider))
            self.agents.append(
                ProviderAgent(
                    api,
                    executor,
                    next(iter(meters.values()), NominalMeter("A800-SXM-80GB")),
                    self._now,
                    reading_interval_s=self.grid.slot_seconds,
                    instance=f"demo-{provider}",
                    meters=meters,
                    batch_readings=True,
                    ahead_slots=AGENT_AHEAD_SLOTS,
                )
            )

    def _now(self) -> float:
        return float(self.clock.now())

    def _use(self, provider: str) -> Callable[[str], float] | None:
        """With ``shortfall``: the share of its time a run's job uses, drawn per run from
        the seed (a payload that finishes early: the rest of its leases is metered short)."""
        if self.shortfall <= 0:
            return None
        seed, shortfall = self.seed, self.shortfall

        def use(run_id: str) -> float:
            rng = random.Random(f"{seed}:{provider}:{run_id}")
            return rng.uniform(0.5, 1.0) if rng.random() < shortfall else 1.0

        return use

    def _meter(self, now_slot: int) -> None:
        """The agents' tick at the start of ``now_slot``: final readings of the leases of the
        slot that just ended (settling the orders they finish), runs started for the leases
        of this one; then the ended slot's green certificates and CO2 are booked."""
        t, c = time.perf_counter(), time.process_time()
        for agent in self.agents:
            summary = agent.tick()
            self.agent_errors += summary.errors
        if now_slot > 0:
            self._book_energy(now_slot - 1)
        self._took("metering", t, c)

    def _book_energy(self, slot: int) -> None:
        """Book what the readings routes left: the certificates and CO2 of settled leases
        without an energy record (:func:`suangu.api.green.book_energy`; the clearing loop's
        sweep does the same each tick)."""
        now = self.clock.now()

        def work(s: Session) -> None:
            book_energy(s, self.ledger, self.energy_model, self.grid, now, limit=1_000_000)

        self.db.transaction(work)

    def _energy_totals(self) -> dict[str, int]:
        """What the service booked for the metered leases (``lease_energy`` records; a lease
        metered with no use has a zero record and counts as metered)."""
        with self.db.session_scope(write=False) as s:
            row = s.execute(
                select(
                    func.count(),
                    func.sum(LeaseEnergyRow.energy_wh),
                    func.sum(LeaseEnergyRow.green_wh),
                    func.sum(LeaseEnergyRow.certificates_wh),
                    func.sum(LeaseEnergyRow.location_g),
                    func.sum(LeaseEnergyRow.market_g),
                    func.sum(case((LeaseEnergyRow.certificates_wh < LeaseEnergyRow.green_wh, 1))),
                )
            ).one()
        keys = ("leases", "energy_wh", "green_wh", "certificates_wh", "location_g", "market_g")
        out = {k: int(v or 0) for k, v in zip(keys, row[:6], strict=True)}
        out["uncertified"] = int(row[6] or 0)
        return out

    # -- checks ------------------------------------------------------------------------------------

    def _ledger_check(self) -> tuple[bool, str]:
        try:
            self.ledger.check_invariants()
        except SuanguError as err:
            return False, str(err)
        with self.db.session_scope(write=False) as s:
            open_holds = list(
                s.scalars(
                    select(LedgerTransferRow.id)
                    .where(LedgerTransferRow.pending_status == str(PendingStatus.PENDING))
                    .limit(3)
                )
            )
            unsettled = s.scalar(
                select(LeaseRow.id).where(LeaseRow.state != str(LeaseState.SETTLED)).limit(1)
            )
        if open_holds:
            return False, f"hold(s) never settled, e.g. {open_holds[0]}"
        if unsettled is not None:
            return False, f"lease {unsettled} was never settled"
        return True, (
            "debits = credits on every ledger (CNY, kWh-green, gCO2); every hold settled; "
            "every lease metered and settled"
        )


def run_demo(
    db: Database,
    scenario: Scenario,
    stream: OrderStream,
    *,
    progress: Progress | None = None,
    shortfall: float = 0.0,
    seed: int = 0,
) -> tuple[FastAPI, DemoReport]:
    """Run the demo on a migrated, empty database (see the module docs); the app (clock
    stopped at the end of the run, clearing loop off) and what happened."""
    if not 0.0 <= shortfall <= 1.0:
        raise ValidationError(
            f"must be between 0 and 1, got {shortfall}", field="shortfall", fix="e.g. 0.1"
        )
    with db.session_scope(write=False) as s:
        if Members(s).all():
            raise DemoError(
                "the database is not empty", field="db", fix="run the demo on a new database"
            )
    r = _Run(db, scenario, stream, progress=progress, shortfall=shortfall, seed=seed)
    report = r.run()
    return r.app, report


def figures_against(report: DemoReport, sim: SimulationReport) -> dict[str, tuple[Any, Any]]:
    """The figures the demo and :func:`suangu.sim.simulate.simulate` both report, by name:
    ``(demo, simulation)``. On the same scenario, orders and seed, with every lease used in
    full, each pair is equal (money in fen, energy in Wh, CO2 in g; see docs/demo.md)."""
    st = report.stats
    e, se = report.energy, sim.energy
    pairs: dict[str, tuple[Any, Any]] = {
        "orders": (st.orders_total, sim.orders_total),
        "orders filled": (st.orders_with("cleared"), sim.orders_filled),
        "orders partly filled": (st.orders_with("partially"), sim.orders_partial),
        "orders due in the span": (st.deadline_orders, sim.deadline_orders),
        "deadlines met": (st.deadlines_met, sim.deadlines_met),
        "GPU-hours traded": (st.gpu_hours, sim.gpu_hours_traded),
        "traded value (fen)": (st.value_fen, sim.traded_value_fen),
        "welfare (fen)": (report.welfare_fen, sim.welfare_fen),
        "buyer deposits (fen)": (st.money.get("deposit", 0), sim.buyer_deposits_fen),
        "buyer spend (fen)": (st.buyer_spend_fen, sim.buyer_spend_fen),
        "provider revenue (fen)": (st.money.get("provider_payout", 0), sim.provider_revenue_fen),
        "exchange fees (fen)": (st.money.get("exchange_fee", 0), sim.exchange_fees_fen),
        "data transfer charged (fen)": (report.transfer_charged_fen, sim.transfer_posted_fen),
        "data moved (GB)": (round(report.transfer_gb, 6), round(sim.transfer_gb, 6)),
    }
    if se is not None:
        pairs |= {
            "energy (Wh)": (e.energy_wh, se.energy_wh),
            "green energy (Wh)": (e.green_wh, se.green_wh),
            "certificates retired (Wh)": (e.certificates_wh, se.certificates_wh),
            "CO2 location-based (g)": (e.location_g, se.location_g),
            "CO2 market-based (g)": (e.market_g, se.market_g),
            "leases metered": (e.leases, se.leases),
        }
    return pairs


#: The built-in scenarios: name -> what it is.
SCENARIOS = {
    "hubs": "the ten East-Data-West-Compute hub sites, a week of batch, service and gang "
    "orders derived from the Alibaba GPU trace (suangu.sim.trace.demo_week)",
    "east-west": "six hub sites, three days of hand-made orders (data/scenarios/east_west*)",
}


def _owned(stream: OrderStream) -> OrderStream:
    """The stream with each order under the id the exchange stores it by (ids are per
    member: :func:`~suangu.core.types.owned_id`), so that the simulation of the same stream
    clears the same ids and breaks ties alike."""
    ids = {s.order.id: owned_id(s.order.id, s.order.buyer_id) for s in stream.orders}
    return replace(
        stream,
        orders=tuple(replace(s, order=replace(s.order, id=ids[s.order.id])) for s in stream.orders),
        firm=frozenset(ids.get(i, i) for i in stream.firm),
    )


def demo_inputs(name: str = "hubs", hours: int | None = None) -> tuple[Scenario, OrderStream]:
    """The scenario and order stream of a built-in demo (:data:`SCENARIOS`); ``hours``
    shortens the span (the hub scenario's trace then covers only the days it spans)."""
    from importlib import resources

    from suangu.sim.scenario import load_orders, load_scenario

    if name == "hubs":
        from suangu.sim.trace import demo_week, load_hub_scenario

        # The demo's service starts with firm-order protection off (ApiSettings'
        # default): the scenario runs without it, so that `suangu simulate` of the same
        # inputs is the same market.
        scenario = replace(load_hub_scenario(hours), protect_firm_hours=0)
        days = max(1, -(-scenario.hours // 24))
        return scenario, _owned(demo_week(scenario, days=days))
    if name == "east-west":
        package = resources.files("suangu")
        with (
            resources.as_file(package / "data/scenarios/east_west.yaml") as scenario_path,
            resources.as_file(package / "data/scenarios/east_west_orders.csv") as orders_path,
        ):
            scenario = load_scenario(scenario_path, hours=hours)
            return scenario, _owned(load_orders(orders_path, scenario))
    raise ValidationError(
        f"unknown scenario {name!r}", field="scenario", fix=f"use {' or '.join(SCENARIOS)}"
    )


__all__ = [
    "SCENARIOS",
    "DemoError",
    "DemoMember",
    "DemoReport",
    "EnergyTotals",
    "demo_inputs",
    "figures_against",
    "fresh_sqlite",
    "run_demo",
]
