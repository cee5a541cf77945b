"""What the dashboard and the demo's summary show, read from the store in a few grouped queries.

Volumes and prices are those of the leases (the cleared allocations): a site's price in a
slot is the average price of the GPU-hours traded there, weighted by GPUs (yuan per GPU-hour).
Orders count by kind and status (``cleared``: all they asked for; ``partially``; ``open``,
``expired``, ``cancelled``: nothing). Energy and carbon come from the meter readings (Wh) and
the ``kWh-green`` and ``gCO2`` ledgers (certificates retired to buyers, market-based grams).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from suangu.core.ledger import AccountKind, Asset, TransferCode
from suangu.core.metering import ReadingSource
from suangu.core.types import class_speed
from suangu.store.models import (
    LeaseRow,
    LedgerAccountRow,
    LedgerTransferRow,
    MemberRow,
    MeterReadingRow,
    OrderRow,
    PoolRow,
    SiteRow,
)

#: Most slots the price heatmap shows (the latest ones).
MAX_HEAT_SLOTS = 24 * 14


@dataclass(frozen=True)
class SiteInfo:
    id: str
    name: str
    region: str
    provider_id: str | None
    lat: float = 0.0
    lon: float = 0.0


@dataclass(frozen=True)
class SiteVolume:
    site_id: str
    gpu_hours: int
    value_fen: int

    @property
    def avg_price_fen(self) -> float:
        return self.value_fen / self.gpu_hours if self.gpu_hours else 0.0


@dataclass(frozen=True)
class Balance:
    account_id: str
    ledger: str
    kind: str
    owner: str
    balance: int
    held: int


@dataclass(frozen=True)
class MarketStats:
    """The market as the dashboard draws it (see the module docs); money in fen."""

    slot_hours: int
    sites: tuple[SiteInfo, ...]
    #: (site id, slot) -> (GPU-hours, value in fen) of the leases there
    cells: dict[tuple[str, int], tuple[int, int]]
    volumes: tuple[SiteVolume, ...]
    #: order kind -> status -> orders
    orders: dict[str, dict[str, int]]
    #: work asked for and allocated, in each order's own unit: GPU-hours, or reference
    #: GPU-hours for orders with a reference class
    gpu_hours_asked: float
    gpu_hours_filled: float
    #: transfer code -> total posted, fen (lease payments, payouts, fees, deposits)
    money: dict[str, int]
    balances: tuple[Balance, ...]
    members: dict[str, tuple[str, str]]  # id -> (name, role)
    metered_gpu_hours: float
    metered_energy_wh: int
    #: Of the metered energy, what meters measured (NVML, Slurm); the rest is nominal
    #: (board power x time), see :class:`suangu.core.metering.ReadingSource`.
    measured_energy_wh: int = 0
    #: Orders due within the span asked for (``market_stats(due_by=)``), those filled by
    #: their deadline, and GPU-hours allocated to the ones that missed it.
    deadline_orders: int = 0
    deadlines_met: int = 0
    wasted_gpu_hours: float = 0.0
    leases: dict[str, int] = field(default_factory=dict)  # state -> leases
    #: per ledger: debits = credits, posted and pending alike (None: not checked)
    ledger_balanced: bool | None = None

    @property
    def first_slot(self) -> int | None:
        return min((t for _, t in self.cells), default=None)

    @property
    def end_slot(self) -> int | None:
        last = max((t for _, t in self.cells), default=None)
        return None if last is None else last + 1

    @property
    def gpu_hours(self) -> int:
        return sum(v.gpu_hours for v in self.volumes)

    @property
    def value_fen(self) -> int:
        return sum(v.value_fen for v in self.volumes)

    @property
    def orders_total(self) -> int:
        return sum(sum(by.values()) for by in self.orders.values())

    @property
    def buyer_spend_fen(self) -> int:
        """What buyers paid for metered use: posted lease payments less the data transfer
        charges posted with them (those pass on to the exchange's network account), so that
        buyer spend = provider revenue + exchange fees."""
        return self.money.get("lease_payment", 0) - self.money.get("data_transfer", 0)

    def orders_with(self, status: str) -> int:
        return sum(by.get(status, 0) for by in self.orders.values())

    @property
    def fill_rate(self) -> float:
        """Share of orders that got everything they asked for."""
        total = self.orders_total
        return self.orders_with("cleared") / total if total else 0.0

    @property
    def volume_fill_rate(self) -> float:
        """Share of the work asked for that was allocated (GPU-hours, or reference GPU-hours
        for orders with a reference class)."""
        return self.gpu_hours_filled / self.gpu_hours_asked if self.gpu_hours_asked else 0.0

    def green(self) -> tuple[int, int]:
        """(green certificates retired to buyers in Wh, market-based gCO2 of the buyers)."""
        wh = sum(
            b.balance
            for b in self.balances
            if b.ledger == Asset.KWH_GREEN.value and b.kind == AccountKind.BUYER.value
        )
        grams = sum(
            b.balance
            for b in self.balances
            if b.ledger == Asset.GCO2.value and b.kind == AccountKind.BUYER.value
        )
        return wh, grams

    @property
    def measured_share(self) -> float:
        """Measured energy / metered energy (0 without readings)."""
        return self.measured_energy_wh / self.metered_energy_wh if self.metered_energy_wh else 0.0

    @property
    def green_share(self) -> float:
        """Certified green energy / metered energy (0 without energy records)."""
        wh, _ = self.green()
        return wh / self.metered_energy_wh if self.metered_energy_wh else 0.0


def _asked_gpu_hours(kind: str, gpus: int, gpu_hours: int, duration: int, window: int) -> int:
    if kind == "gang":
        return gpus * duration
    if kind == "service":
        full = gpus * window
        return full if gpu_hours == 0 else min(full, gpu_hours)
    return gpu_hours


def market_stats(
    s: Session, slot_hours: int, *, member_id: str | None = None, due_by: int | None = None
) -> MarketStats:
    """The market, or with ``member_id`` only what concerns that member (its orders and
    leases as buyer or provider, its accounts). ``due_by``: count the orders whose deadline
    slot is at most it (``deadline_orders``), those filled (``deadlines_met``) and the
    GPU-hours allocated to the others (``wasted_gpu_hours``)."""
    sites = tuple(
        SiteInfo(r.id, r.name, r.region, r.provider_id, r.lat, r.lon)
        for r in s.scalars(select(SiteRow).order_by(SiteRow.id))
    )
    lease_q = (
        select(
            PoolRow.site_id,
            LeaseRow.slot,
            func.sum(LeaseRow.gpus),
            func.sum(LeaseRow.gpus * LeaseRow.price_fen),
        )
        .join(PoolRow, PoolRow.id == LeaseRow.pool_id)
        .group_by(PoolRow.site_id, LeaseRow.slot)
    )
    order_q = select(
        OrderRow.id,
        OrderRow.kind,
        OrderRow.status,
        OrderRow.gpus,
        OrderRow.gpu_hours,
        OrderRow.duration_slots,
        OrderRow.deadline_slot - OrderRow.release_slot,
        OrderRow.reference_class,
        OrderRow.speed,
        OrderRow.deadline_slot,
    )
    state_q = select(LeaseRow.state, func.count()).group_by(LeaseRow.state)
    filled_q = (
        select(LeaseRow.order_id, PoolRow.gpu_class, func.sum(LeaseRow.gpus))
        .join(PoolRow, PoolRow.id == LeaseRow.pool_id)
        .group_by(LeaseRow.order_id, PoolRow.gpu_class)
    )
    meter_q = select(
        func.coalesce(func.sum(MeterReadingRow.gpu_seconds), 0),
        func.coalesce(func.sum(MeterReadingRow.energy_wh), 0),
        func.coalesce(
            func.sum(
                case(
                    (
                        MeterReadingRow.source != str(ReadingSource.NOMINAL),
                        MeterReadingRow.energy_wh,
                    ),
                    else_=0,
                )
            ),
            0,
        ),
    )
    account_q = select(LedgerAccountRow).order_by(LedgerAccountRow.id)
    if member_id is not None:
        mine = (LeaseRow.buyer_id == member_id) | (LeaseRow.provider_id == member_id)
        lease_q = lease_q.where(mine)
        state_q = state_q.where(mine)
        filled_q = filled_q.where(mine)
        order_q = order_q.where(OrderRow.buyer_id == member_id)
        meter_q = meter_q.join(LeaseRow, LeaseRow.id == MeterReadingRow.lease_id).where(mine)
        account_q = account_q.where(LedgerAccountRow.owner == member_id)
    cells: dict[tuple[str, int], tuple[int, int]] = {}
    per_site: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for site_id, slot, gpus, value in s.execute(lease_q):
        hours, fen = int(gpus) * slot_hours, int(value) * slot_hours
        cells[(site_id, int(slot))] = (hours, fen)
        per_site[site_id][0] += hours
        per_site[site_id][1] += fen
    volumes = tuple(
        SiteVolume(site.id, *per_site[site.id]) for site in sites if site.id in per_site
    )
    # GPU-hours allocated per order and class; an order's work is counted in its own unit
    # (reference GPU-hours when it has a reference class: a GPU-hour does speed(class)).
    filled: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for oid, cls, n in s.execute(filled_q):
        filled[oid].append((cls, int(n) * slot_hours))
    orders: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    asked = got = 0.0
    due = met = 0
    wasted = 0.0
    for row in s.execute(order_q):
        oid, kind, status, gpus, gpu_hours, duration, window, ref, speed, deadline = row
        orders[kind][status] += 1
        if due_by is not None and deadline <= due_by:
            due += 1
            if status == "cleared":
                met += 1
            else:
                wasted += sum(h for _, h in filled.get(oid, ()))
        want = _asked_gpu_hours(kind, gpus, gpu_hours, duration, window * slot_hours)
        done = sum(h * class_speed(ref, speed or {}, cls) for cls, h in filled.get(oid, ()))
        asked += want
        got += min(float(want), done)
    money: dict[str, int] = {}
    if member_id is None:
        money = {
            str(code): int(total)
            for code, total in s.execute(
                select(LedgerTransferRow.code, func.sum(LedgerTransferRow.amount))
                .where(
                    LedgerTransferRow.ledger == Asset.CNY.value,
                    LedgerTransferRow.pending_status.is_(None),
                    LedgerTransferRow.code.in_(
                        [
                            TransferCode.LEASE_PAYMENT.value,
                            TransferCode.PROVIDER_PAYOUT.value,
                            TransferCode.EXCHANGE_FEE.value,
                            TransferCode.DEPOSIT.value,
                            TransferCode.DATA_TRANSFER.value,
                        ]
                    ),
                )
                .group_by(LedgerTransferRow.code)
            )
        }
    balances = tuple(
        Balance(
            r.id,
            r.ledger,
            r.kind,
            r.owner,
            r.credits_posted - r.debits_posted,
            r.debits_pending,
        )
        for r in s.scalars(account_q)
    )
    gpu_s, energy, measured = s.execute(meter_q).one()
    members = {r.id: (r.name, r.role) for r in s.scalars(select(MemberRow).order_by(MemberRow.id))}
    balanced = None
    if member_id is None:
        sums = s.execute(
            select(
                func.sum(LedgerAccountRow.debits_posted)
                - func.sum(LedgerAccountRow.credits_posted),
                func.sum(LedgerAccountRow.debits_pending)
                - func.sum(LedgerAccountRow.credits_pending),
            ).group_by(LedgerAccountRow.ledger)
        ).all()
        balanced = all(int(a or 0) == 0 and int(b or 0) == 0 for a, b in sums)
    return MarketStats(
        slot_hours=slot_hours,
        sites=sites,
        cells=cells,
        volumes=volumes,
        orders={k: dict(v) for k, v in sorted(orders.items())},
        gpu_hours_asked=asked,
        gpu_hours_filled=got,
        money=money,
        balances=balances,
        members=members,
        metered_gpu_hours=int(gpu_s) / 3600,
        metered_energy_wh=int(energy),
        measured_energy_wh=int(measured),
        deadline_orders=due,
        deadlines_met=met,
        wasted_gpu_hours=wasted,
        leases={str(st): int(n) for st, n in s.execute(state_q)},
        ledger_balanced=balanced,
    )
