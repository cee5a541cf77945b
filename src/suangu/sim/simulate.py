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
   become one hold on its buyer's account (:func:`suangu.core.billing.holds_for_clearing`).

After the last clearing the clock runs on until every sold lease has ended and settled; then
the ledger's invariants are checked.

Open orders between clearings: a gang order closes when it clears; a batch or service order
keeps its remaining work open until its deadline. A core order allows ``gpus`` GPUs in *every*
slot, so a reopened order only bids for slots after the last slot it already holds. That loses
nothing while offers are fixed: a slot the order skipped inside an earlier horizon had no
profitable capacity left for it then, and capacity only shrinks as clearings sell it.

Buyers deposit, before the first clearing, what all their orders could cost at their limits
(no clearing charges more than an order's limit on average), so a hold never fails for want
of funds.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from suangu.core import billing
from suangu.core.clearing import clear
from suangu.core.clearing.checks import check_clearing
from suangu.core.errors import SuanguError, ValidationError
from suangu.core.ledger import (
    Asset,
    CreateResult,
    Ledger,
    PendingStatus,
    Transfer,
    TransferCode,
)
from suangu.core.settlement import check_settlement, settle
from suangu.core.types import (
    Allocation,
    ClearingStatus,
    Market,
    Offer,
    Order,
    OrderKind,
)
from suangu.sim.errors import SimulationError
from suangu.sim.scenario import OrderStream, Scenario, StreamOrder

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

    @property
    def avg_price_fen(self) -> float:
        return self.traded_value_fen / self.gpu_hours_traded if self.gpu_hours_traded else 0.0

    @property
    def green_share(self) -> float:
        return self.green_gpu_hours / self.gpu_hours_traded if self.gpu_hours_traded else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; everything that depends on the machine is under ``timings``."""
        data = asdict(self)
        timings = {
            k: data.pop(k)
            for k in ("clear_mean_s", "clear_max_s", "solve_mean_s", "solve_max_s", "wall_s")
        }
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
    allocated: int = 0  # GPU-slots allocated so far
    last_slot: int = -1  # last slot it holds
    closed: bool = False

    @property
    def order(self) -> Order:
        return self.stream.order


@dataclass
class _Hold:
    transfer_id: str
    allocations: list[Allocation]
    last_slot: int
    metered: dict[Allocation, int] = field(default_factory=dict)


def _max_spend(order: Order, slot_hours: int) -> int:
    """The most an order can cost at its limit, fen."""
    return order.limit_fen * order.max_gpu_slots(slot_hours) * slot_hours


class _Simulation:
    def __init__(
        self,
        scenario: Scenario,
        stream: OrderStream,
        shortfall: float,
        seed: int,
        progress: Progress | None,
    ) -> None:
        self.sc = scenario
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
        results = self.ledger.create_accounts(accounts, now)
        if any(r is not CreateResult.OK for r in results):
            raise SimulationError(
                f"could not open accounts: {sorted(set(results))}",
                fix="member ids must differ between buyers and providers",
            )
        need: dict[str, int] = defaultdict(int)
        for s in self.states:
            if s.stream.submit_slot < self.sc.hours:
                need[s.order.buyer_id] += _max_spend(s.order, self.hours)
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
            if release >= order.deadline_slot:
                st.closed = True
                continue
            if order.kind is OrderKind.GANG:
                if order.deadline_slot - release < order.duration_slots:
                    st.closed = True
                    continue
                out.append(replace(order, release_slot=release))
                continue
            if order.kind is OrderKind.SERVICE and order.gpu_hours == 0:
                out.append(replace(order, release_slot=release))
                continue
            left = order.gpu_hours - st.allocated * self.hours
            if left < self.hours:
                st.closed = True
                continue
            out.append(replace(order, release_slot=release, gpu_hours=left))
        return out

    def _open_offers(self, h: int, end: int) -> list[Offer]:
        out = []
        for offer in self.sc.offers:
            lo, hi = max(offer.start_slot, h), min(offer.end_slot, end)
            if hi <= lo:
                continue
            gpus = tuple(
                offer.gpus[s - offer.start_slot] - self.sold[(offer.id, s)] for s in range(lo, hi)
            )
            if not any(gpus):
                continue
            reserve = offer.reserve_fen[lo - offer.start_slot : hi - offer.start_slot]
            out.append(Offer(offer.id, offer.provider_id, offer.pool_id, lo, gpus, reserve))
        return out

    def _clear_at(self, h: int) -> None:
        orders = self._open_orders(h)
        if not orders:
            return
        n = self.sc.lookahead
        market = Market(
            grid=self.grid,
            first_slot=h,
            n_slots=n,
            sites=self.sc.sites,
            pools=self.sc.pools,
            offers=tuple(self._open_offers(h, h + n)),
            orders=tuple(orders),
            green_share=self.sc.green_share(h, n),
        )
        t = time.perf_counter()
        result = clear(market)
        self.clear_times.append(time.perf_counter() - t)
        self.solve_times.append(float(result.timings.get("solve_s", 0.0)))
        self.clearings += 1
        self.methods[result.method] += 1
        if result.status is ClearingStatus.FAILED:
            self.failed += 1
            return
        settlement = settle(result)
        problems = check_clearing(market, result) + check_settlement(market, result, settlement)
        if problems:
            raise SimulationError(
                f"the clearing at slot {h} broke {len(problems)} rule(s): "
                + "; ".join(problems[:3]),
                fix="this is a bug in the clearing; please report it with the scenario",
            )
        self.welfare += result.welfare_fen
        self.rent += settlement.congestion_rent_fen
        self.rejected += len(result.rejected_gangs)
        for f in result.fills:
            self.sold[(f.offer_id, f.slot)] += f.gpus
        states = self.by_id
        green = market.green_share
        for a in result.allocations:
            st = states[a.order_id]
            st.allocated += a.gpus
            st.last_slot = max(st.last_slot, a.slot)
            vol = self.site_volume[self.site_of[a.pool_id]]
            vol[0] += a.gpus * self.hours
            vol[1] += a.price_fen * a.gpus * self.hours
            shares = green.get(a.pool_id)
            if shares:
                self.green_gpu_hours += shares[a.slot - h] * a.gpus * self.hours
        for order_id in {a.order_id for a in result.allocations}:
            if states[order_id].order.kind is OrderKind.GANG:
                states[order_id].closed = True
        clearing_id = f"clr-{h:05d}"
        holds = billing.holds_for_clearing(result, clearing_id, timeout_s=0)
        self._submit(holds, self.grid.slot_start(h), f"clearing {clearing_id}")
        held = {t.id for t in holds}
        for order_id, allocations in billing.orders_of(result).items():
            hid = billing.hold_id(clearing_id, order_id)
            if hid not in held:
                continue  # cost nothing: nothing to settle
            hold = _Hold(hid, allocations, max(a.slot for a in allocations))
            self.holds[hold.last_slot].append(hold)
            for a in allocations:
                self.pending_meter[a.slot].append((hold, a))

    def _end_of_slot(self, slot: int) -> None:
        """Meter the leases of ``slot`` and settle the holds that ended with it."""
        full_s = self.grid.slot_seconds
        for hold, a in self.pending_meter.pop(slot, []):
            used = a.gpus * full_s
            if self.shortfall > 0 and self.rng.random() < self.shortfall:
                used = int(used * self.rng.uniform(0.5, 1.0))
            hold.metered[a] = used
        transfers: list[Transfer] = []
        for hold in self.holds.pop(slot, []):
            transfers += billing.settle_lease(
                hold.transfer_id,
                hold.allocations,
                hold.metered,
                self.sc.providers,
                self.sc.fee_bp,
                slot_hours=self.hours,
            )
        self._submit(transfers, self.grid.slot_start(slot + 1), f"the settlement of slot {slot}")

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
        return True, "debits = credits on every ledger; every hold settled"

    def _report(self, wall_s: float) -> SimulationReport:
        sums: dict[TransferCode, int] = defaultdict(int)
        transfers = self.ledger.transfers()
        for t in transfers:
            if t.ledger is Asset.CNY and t.amount is not None and not t.is_pending:
                sums[t.code] += t.amount
        balanced, message = self._ledger_check()
        spend = sums[TransferCode.LEASE_PAYMENT]
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
        for st in self.states:
            if st.stream.submit_slot >= span:
                after += 1
                continue
            row = kinds[st.order.kind.value]
            row["total"] += 1
            if st.allocated >= st.full > 0:
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


def simulate(
    scenario: Scenario,
    orders: OrderStream,
    *,
    progress: Progress | None = None,
    shortfall: float = 0.0,
    seed: int = 0,
) -> SimulationReport:
    """Run ``orders`` through ``scenario`` slot by slot; see the module docs.

    ``shortfall`` is the probability that a lease meters less than full use in a slot (then
    between 50% and 100% of it, drawn from a generator seeded with ``seed``): the unused part
    of the hold is released. Deterministic for the same inputs.
    """
    if not 0.0 <= shortfall <= 1.0:
        raise ValidationError(
            f"must be between 0 and 1, got {shortfall}", field="shortfall", fix="e.g. 0.1"
        )
    return _Simulation(scenario, orders, shortfall, seed, progress).run()


__all__ = ["SimulationReport", "SiteVolume", "simulate"]
