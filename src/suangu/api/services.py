"""Service functions behind the routes: conversions, clearing rounds, settlement, accounts.

Data flows API -> these functions -> core (pure) -> store. Nothing here reads a clock: the
time comes in as ``now`` from the app's injected clock.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar, cast

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import CursorResult, case, func, insert, select, update
from sqlalchemy.orm import Session

from suangu.api import carbon_price, ids, protection, schemas, yamlin
from suangu.api import products as product_service
from suangu.api.errors import IdempotencyConflict, MalformedBody
from suangu.api.settings import ApiSettings
from suangu.core import billing, lifecycle, products
from suangu.core.clearing import ClearingOptions, clear
from suangu.core.errors import ValidationError
from suangu.core.ledger import Account, CreateResult, Transfer
from suangu.core.metering import check_reading
from suangu.core.types import (
    Allocation,
    ClearingResult,
    Link,
    Market,
    Offer,
    Order,
    OrderKind,
    TimeGrid,
    owned_id,
)
from suangu.sim.scenario import OrderSpec, OrderStreamSpec
from suangu.store.db import Database
from suangu.store.errors import Conflict, InvalidState, NotFound
from suangu.store.ledger import SqlLedger
from suangu.store.models import (
    ClearingRow,
    ExchangeSettingRow,
    LeaseReportRow,
    LeaseRow,
    LeaseState,
    LedgerAccountRow,
    MeterReadingRow,
    OfferFillRow,
    OfferRow,
    OfferSlotRow,
    OfferStatus,
    OrderRow,
    OrderStatus,
    PoolRow,
    Role,
    SiteRow,
)
from suangu.store.repositories import (
    ApiKey,
    Capacity,
    Clearings,
    Heartbeats,
    Lease,
    Links,
    Member,
    MeterReading,
    Meters,
    OfferRecord,
    OrderRecord,
    Orders,
    order_record,
    rowcount,
)

R = TypeVar("R")
log = logging.getLogger(__name__)
FEE_SETTING = "fee_bp"
#: Most orders one YAML body may hold.
MAX_YAML_ORDERS = 1000
MAX_YAML_BYTES = 262_144
#: How deep a YAML job spec may nest (it needs 3 levels: orders:, the list, an order's map).
MAX_YAML_DEPTH = 20

# -- conversions ------------------------------------------------------------------------------


def member_out(m: Member) -> dict[str, Any]:
    return schemas.dump(
        schemas.MemberOut(id=m.id, name=m.name, role=m.role, created_at=m.created_at)
    )


def key_out(k: ApiKey) -> dict[str, Any]:
    return schemas.dump(
        schemas.KeyOut(
            id=k.id,
            prefix=k.prefix,
            member_id=k.member_id,
            role=k.role,
            label=k.label,
            created_at=k.created_at,
            revoked_at=k.revoked_at,
        )
    )


def site_out(row: SiteRow) -> dict[str, Any]:
    return schemas.dump(
        schemas.SiteOut(
            id=row.id,
            name=row.name,
            province=row.province,
            region=row.region,
            lat=row.lat,
            lon=row.lon,
            pue=row.pue,
            latency_ms=dict(row.latency_ms),
            provider_id=row.provider_id,
        )
    )


def pool_out(row: PoolRow) -> dict[str, Any]:
    return {"id": row.id, "site_id": row.site_id, "gpu_class": row.gpu_class}


def offer_out(r: OfferRecord) -> dict[str, Any]:
    o = r.offer
    return {
        "id": o.id,
        "provider_id": o.provider_id,
        "pool_id": o.pool_id,
        "start_slot": o.start_slot,
        "gpus": list(o.gpus),
        "reserve_fen": list(o.reserve_fen),
        "status": str(r.status),
        "created_at": r.created_at,
    }


def order_out(r: OrderRecord) -> dict[str, Any]:
    o = r.order
    return {
        "id": o.id,
        "buyer_id": o.buyer_id,
        "kind": str(o.kind),
        "gpus": o.gpus,
        "release_slot": o.release_slot,
        "deadline_slot": o.deadline_slot,
        "limit_fen": o.limit_fen,
        "gpu_hours": o.gpu_hours,
        "duration_slots": o.duration_slots,
        "gpu_classes": sorted(o.gpu_classes),
        "regions": sorted(o.regions),
        "provinces": sorted(o.provinces),
        "home": o.home,
        "max_latency_ms": o.max_latency_ms,
        "min_green_share": o.min_green_share,
        "data_gb": o.data_gb,
        "reference_class": o.reference_class,
        "speed": dict(sorted(o.speed.items())),
        "firm": o.firm,
        "interruptible": o.interruptible,
        "complete_or_nothing": o.complete_or_nothing,
        "status": str(r.status),
        "submitted_at": r.submitted_at,
        # Filled by the orders routes for an order that has one (suangu.api.workloads).
        "workload": None,
    }


def link_out(link: Link) -> dict[str, Any]:
    return {
        "from_region": link.from_region,
        "to_region": link.to_region,
        "latency_ms": link.latency_ms,
        "bandwidth_gbps": link.bandwidth_gbps,
        "price_fen_per_gb": link.price_fen_per_gb,
    }


def lease_out(x: Lease) -> dict[str, Any]:
    a = x.allocation
    return {
        "id": x.id,
        "clearing_id": x.clearing_id,
        "order_id": a.order_id,
        "buyer_id": a.buyer_id,
        "pool_id": a.pool_id,
        "slot": a.slot,
        "gpus": a.gpus,
        "price_fen": a.price_fen,
        "provider_id": x.provider_id,
        "state": str(x.state),
        "hold_transfer_id": x.hold_transfer_id,
        "preempted_gpus": x.preempted_gpus,
        "resold_gpus": x.resold_gpus,
    }


def account_out(a: Account) -> dict[str, Any]:
    return {
        "id": a.id,
        "ledger": str(a.ledger),
        "kind": str(a.kind),
        "owner": a.owner,
        "balance": a.balance,
        "debits_pending": a.debits_pending,
        "debits_posted": a.debits_posted,
        "credits_pending": a.credits_pending,
        "credits_posted": a.credits_posted,
    }


def transfer_out(t: Transfer) -> dict[str, Any]:
    return {
        "id": t.id,
        "code": str(t.code),
        "debit_account_id": t.debit_account_id,
        "credit_account_id": t.credit_account_id,
        "amount": t.amount,
        "ledger": None if t.ledger is None else str(t.ledger),
        "pending_id": t.pending_id,
        "user_data": t.user_data,
        "timestamp": t.timestamp,
    }


# -- orders --------------------------------------------------------------------------------------


def check_window(order: Order, current_slot: int, prefix: str = "body") -> None:
    """Refuse windows that start in the past (the market only clears from now on)."""
    if order.deadline_slot <= current_slot:
        raise ValidationError(
            f"slot {order.deadline_slot} is in the past (the current slot is {current_slot})",
            field=f"{prefix}.deadline_slot",
            fix=f"give a deadline after slot {current_slot}",
        )
    if order.release_slot < current_slot:
        raise ValidationError(
            f"slot {order.release_slot} is in the past (the current slot is {current_slot})",
            field=f"{prefix}.release_slot",
            fix=f"release at slot {current_slot} or later",
        )


def order_from_json(body: schemas.OrderIn, buyer_id: str, current_slot: int) -> Order:
    try:
        order = Order(
            id=ids.own(body.id, buyer_id),
            buyer_id=buyer_id,
            kind=body.kind,
            gpus=body.gpus,
            release_slot=body.release_slot,
            deadline_slot=body.deadline_slot,
            limit_fen=body.limit_fen,
            gpu_hours=body.gpu_hours,
            duration_slots=body.duration_slots,
            gpu_classes=frozenset(body.gpu_classes),
            regions=frozenset(body.regions),
            provinces=frozenset(body.provinces),
            home=body.home,
            max_latency_ms=body.max_latency_ms,
            min_green_share=body.min_green_share,
            data_gb=body.data_gb,
            reference_class=body.reference_class,
            speed=body.speed,
            firm=body.firm,
            interruptible=body.interruptible,
            complete_or_nothing=body.complete_or_nothing,
        )
    except ValidationError as err:
        raise err.prefixed("body") from None
    check_window(order, current_slot)
    return order


def _slot_of(when: Decimal | datetime, grid: TimeGrid, field: str) -> int:
    if isinstance(when, datetime):
        seconds = Decimal(str(when.timestamp())) - grid.epoch
    else:
        seconds = when * 3600
    slots = seconds / grid.slot_seconds
    if seconds < 0 or slots != slots.to_integral_value() or slots > schemas.MAX_SLOT:
        raise ValidationError(
            f"is not a slot boundary at or after the grid's start ({when})",
            field=field,
            fix="give whole hours from the grid epoch, or an ISO date-time on an hour",
        )
    return int(slots)


def _spec_to_order(spec: OrderSpec, buyer_id: str, grid: TimeGrid, current: int, at: str) -> Order:
    if spec.buyer != buyer_id:
        raise ValidationError(
            f"names buyer {spec.buyer!r}, but the key belongs to {buyer_id!r}",
            field=f"{at}.buyer",
            fix="submit orders for your own member only",
        )
    release = _slot_of(spec.release, grid, f"{at}.release") if spec.release is not None else current
    deadline = _slot_of(spec.deadline, grid, f"{at}.deadline")
    if deadline <= release:
        raise ValidationError(
            f"must be after release (slot {deadline} <= {release})",
            field=f"{at}.deadline",
            fix="make the deadline later than the release",
        )
    names = {
        "release_slot": "release",
        "deadline_slot": "deadline",
        "limit_fen": "limit",
        "duration_slots": "duration",
        "buyer_id": "buyer",
    }
    try:
        order = spec.to_order(buyer_id, release, deadline)
    except ValidationError as err:
        name = err.field or ""
        head = name.split(".")[0].split("[")[0]
        renamed = names.get(head, head) + name[len(head) :]
        raise ValidationError(err.message, field=f"{at}.{renamed}", fix=err.fix) from None
    order = dataclasses.replace(order, id=ids.own(order.id, buyer_id, f"{at}.id"))
    if order.deadline_slot <= current or order.release_slot < current:
        which = "deadline" if order.deadline_slot <= current else "release"
        raise ValidationError(
            f"is in the past (the current slot is {current})",
            field=f"{at}.{which}",
            fix=f"give times at or after slot {current} (hour offsets from the grid epoch)",
        )
    return order


def _pydantic_field(err: PydanticValidationError, prefix: str) -> ValidationError:
    e = err.errors()[0]
    loc = [str(p) if not isinstance(p, int) else f"[{p}]" for p in e["loc"]]
    path = prefix
    for part in loc:
        path += part if part.startswith("[") else f".{part}"
    message = str(e["msg"]).removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        message = f"unknown field {e['loc'][-1]!r}"
    more = len(err.errors()) - 1
    if more:
        message += f" (and {more} more)"
    return ValidationError(message, field=path, fix="see the order spec in suangu.sim.scenario")


def orders_from_yaml(
    text: bytes,
    buyer_id: str,
    grid: TimeGrid,
    current: int,
    *,
    max_bytes: int = MAX_YAML_BYTES,
    max_depth: int = MAX_YAML_DEPTH,
) -> list[Order]:
    """Orders of a YAML job spec as the CLI reads it: one order mapping, or ``orders:``.

    The YAML is bounded before it is built (:func:`suangu.api.yamlin.load`): at most
    ``max_bytes``, nested at most ``max_depth`` deep, no alias."""
    data = yamlin.load(text, max_bytes=max_bytes, max_depth=max_depth)
    if not isinstance(data, dict):
        raise MalformedBody(
            "must be a YAML mapping: one order, or orders: with a list",
            field="body",
            fix="write id:, kind:, gpus: ... or orders: then '- id: ...' items",
        )
    try:
        if "orders" in data:
            stream = OrderStreamSpec.model_validate(data)
            specs = [(s, f"body.orders[{i}]") for i, s in enumerate(stream.orders)]
        else:
            specs = [(OrderSpec.model_validate(data), "body")]
    except PydanticValidationError as err:
        raise _pydantic_field(err, "body") from None
    if not specs or len(specs) > MAX_YAML_ORDERS:
        raise ValidationError(
            f"holds {len(specs)} orders; give 1 to {MAX_YAML_ORDERS}",
            field="body.orders",
            fix="send at least one order",
        )
    seen: set[str] = set()
    out = []
    for spec, at in specs:
        if owned_id(spec.id, buyer_id) in seen:
            raise ValidationError(
                f"duplicate order id {spec.id!r}", field=f"{at}.id", fix="ids must be unique"
            )
        seen.add(owned_id(spec.id, buyer_id))
        out.append(_spec_to_order(spec, buyer_id, grid, current, at))
    return out


# -- accounts and fees ----------------------------------------------------------------------------


def member_accounts(member_id: str, role: Role) -> list[Account]:
    if role is Role.BUYER:
        return [billing.new_buyer_account(member_id)]
    if role is Role.PROVIDER:
        return [billing.new_provider_account(member_id)]
    return []


def ensure_accounts(ledger: SqlLedger, accounts: Sequence[Account], now: int) -> None:
    """Create the accounts that do not exist yet (idempotent; its own transaction)."""
    if not accounts:
        return
    results = ledger.create_accounts(accounts, now)
    bad = [
        (a.id, r)
        for a, r in zip(accounts, results, strict=True)
        if r not in (CreateResult.OK, CreateResult.EXISTS)
    ]
    if bad:
        raise Conflict(f"account {bad[0][0]!r}: {bad[0][1]}", field="account", fix="contact us")


def fee_bp(s: Session, default: int) -> int:
    row = s.get(ExchangeSettingRow, FEE_SETTING)
    return default if row is None else int(row.value)


def set_fee_bp(s: Session, value: int, now: int) -> None:
    row = s.get(ExchangeSettingRow, FEE_SETTING)
    if row is None:
        s.add(ExchangeSettingRow(name=FEE_SETTING, value=value, updated_at=now))
    else:
        row.value = value
        row.updated_at = now
    s.flush()


def account_owner(s: Session, account_id: str) -> str | None:
    row = s.get(LedgerAccountRow, account_id)
    return None if row is None else row.owner


# -- clearing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedClearing:
    id: str
    first_slot: int
    n_slots: int
    #: What became firm (:func:`suangu.core.lifecycle.commit`): leases, fills, holds.
    result: ClearingResult
    holds: list[Transfer]
    excluded: list[str]
    #: Allocations beyond the firmness horizon: the buyers' planned schedule.
    planned: tuple[Allocation, ...] = ()
    #: With firm-order protection: the first step, the captive firm orders cleared against
    #: all the open capacity, stored before this one as ``<id>-firm``.
    firm_step: PreparedClearing | None = None
    #: Interruptible GPUs that firm demand takes (:mod:`suangu.core.products`).
    preemptions: tuple[products.Preemption, ...] = ()
    #: Buyers' resold GPU-slots that sold (:mod:`suangu.core.products`).
    resold: tuple[products.Resold, ...] = ()


def _remaining_offers(s: Session, first: int, end: int, *, less_sold: bool = True) -> list[Offer]:
    """Open offers over the horizon, less what earlier clearings sold of them (only the
    horizon's slots are read); ``less_sold=False``: as listed."""
    sold: dict[str, dict[int, int]] = defaultdict(dict)
    for o, t, g in (
        s.execute(
            select(OfferFillRow.offer_id, OfferFillRow.slot, func.sum(OfferFillRow.gpus))
            .where(OfferFillRow.slot >= first, OfferFillRow.slot < end)
            .group_by(OfferFillRow.offer_id, OfferFillRow.slot)
        )
        if less_sold
        else ()
    ):
        sold[o][t] = int(g)
    slots: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    owner: dict[str, tuple[str, str]] = {}
    for offer_id, provider_id, pool_id, slot, gpus, reserve in s.execute(
        select(
            OfferRow.id,
            OfferRow.provider_id,
            OfferRow.pool_id,
            OfferSlotRow.slot,
            OfferSlotRow.gpus,
            OfferSlotRow.reserve_fen,
        )
        .join(OfferSlotRow, OfferSlotRow.offer_id == OfferRow.id)
        .where(
            OfferRow.status == str(OfferStatus.OPEN),
            OfferSlotRow.slot >= first,
            OfferSlotRow.slot < end,
        )
        .order_by(OfferRow.id, OfferSlotRow.slot)
    ):
        owner[offer_id] = (provider_id, pool_id)
        slots[offer_id].append((slot, gpus, reserve))
    out = []
    for offer_id, rows in slots.items():
        provider_id, pool_id = owner[offer_id]
        listed = Offer(
            offer_id,
            provider_id,
            pool_id,
            rows[0][0],
            tuple(g for _, g, _ in rows),
            tuple(r for _, _, r in rows),
        )
        left = lifecycle.remaining(listed, sold.get(offer_id, {}), first, end)
        if left is not None:
            out.append(left)
    return out


def _available(s: Session, buyers: Iterable[str]) -> dict[str, int]:
    """What each buyer can still hold: posted balance less pending debits (one query)."""
    ids = {billing.buyer_account(b): b for b in buyers}
    out = dict.fromkeys(ids.values(), 0)
    for a in s.scalars(select(LedgerAccountRow).where(LedgerAccountRow.id.in_(sorted(ids)))):
        out[ids[a.id]] = a.credits_posted - a.debits_posted - a.debits_pending
    return out


#: A function the service applies to every market before clearing it (the energy model:
#: :class:`suangu.api.market_energy.MarketEnergy`).
MarketHook = Callable[[Market], Market]


def clearable_orders(s: Session, grid: TimeGrid, first: int, end: int) -> list[Order]:
    """The orders a clearing of ``[first, end)`` takes: open ones, and the rest of partly
    filled batch and service orders (see :func:`suangu.core.lifecycle.reopened`), by id; the
    work of failed leases that was not delivered is part of that rest."""
    orders = Orders(s).open_orders(first, end)
    partly = (
        OrderRow.status == str(OrderStatus.PARTIALLY),
        OrderRow.kind != str(OrderKind.GANG),
        OrderRow.deadline_slot > first,
        OrderRow.release_slot < end,
    )
    rows = list(s.scalars(select(OrderRow).where(*partly)))
    # A failed lease holds only what it delivered: the rest of its work is bid for again.
    held = Clearings(s).held_work([r.id for r in rows], grid.slot_hours)
    hours = grid.slot_hours
    classes: list[str] | None = None
    for row in rows:
        order = order_record(row).order
        got = held.get(row.id, [])
        done = lifecycle.work_done(order, [(c, n) for c, n, _ in got], hours)
        last = max((t for _, _, t in got), default=-1)
        if (order.reference_class or order.speed) and classes is None:
            classes = list(s.scalars(select(PoolRow.gpu_class).distinct()))
        steps = lifecycle.steps(order, classes or [], hours)
        gpu_slots = sum(n for _, n, _ in got)
        rest = lifecycle.reopened(order, done, gpu_slots, last, first, steps, hours)
        if rest is not None:
            orders.append(rest)
    return sorted(orders, key=lambda o: o.id)


def prepare_clearing(
    db_read: Session,
    ledger: SqlLedger,
    grid: TimeGrid,
    clearing_id: str,
    first: int,
    n_slots: int,
    timeout_s: int,
    adjust: MarketHook | None = None,
    *,
    delay_fen: int = 0,
    firm_slots: int | None = None,
    options: ClearingOptions | None = None,
    exclude_providers: Iterable[str] = (),
    protect_slots: int = 0,
    notice_slots: int = products.DEFAULT_NOTICE_SLOTS,
    discount_bp: int = products.DEFAULT_DISCOUNT_BP,
    exclude_pools: Iterable[str] = (),
) -> PreparedClearing:
    """Clear the open orders and offers of ``[first, first + n_slots)`` over the stored links.

    Only funded orders enter the solve (:func:`suangu.core.billing.funded_orders`: the
    buyer's available money covers the order's maximum cost at its limit), so the market is
    solved once and every allocation saved has its money held. Should a hold still exceed
    what its buyer has (a pricing rule broken), that order is left out and the market
    cleared again, as a safety net. ``adjust`` (the energy model) turns each market into the
    one cleared; ``delay_fen`` is the market's time preference (:attr:`Market.delay_fen`).
    Commit late, plan early: only what :func:`suangu.core.lifecycle.commit` makes firm
    within ``firm_slots`` (None: everything) is held, sold and leased; the rest is returned
    as the buyers' planned schedule. The offers of ``exclude_providers`` and of
    ``exclude_pools`` (pools that only silent agents serve) sit the clearing out, and an
    order whose leases a provider failed avoids that provider where other capacity can
    serve it (:func:`suangu.core.lifecycle.avoid_failed_providers`). Interruptible orders
    clear after firm demand, which may preempt interruptible leases that start
    ``notice_slots`` or more after ``first``, against offers at ``discount_bp`` off their
    reserves (:func:`suangu.core.products.clear_tiers`).

    Firm-order protection (``protect_slots`` > 0, the look-back in slots; the rule is the
    simulator's, :func:`suangu.core.lifecycle.protection_levels`): the open captive firm
    orders clear first against all the open capacity (``firm_step``, stored as
    ``<clearing_id>-firm``), then everyone else against what is left, less the GPUs held
    back for captive firm orders in every slot after the first. The first step is a plain
    clearing: preemptions and resales belong to the second.
    """
    cap = Capacity(db_read)
    sites, pools = tuple(cap.sites()), tuple(cap.pools())
    links = tuple(Links(db_read).all())
    silent, gone = set(exclude_providers), set(exclude_pools)
    end = first + n_slots
    offers = [
        o
        for o in _remaining_offers(db_read, first, end)
        if o.provider_id not in silent and o.pool_id not in gone
    ]
    candidates = clearable_orders(db_read, grid, first, end)
    classes = sorted({p.gpu_class for p in pools})
    hours = grid.slot_hours

    def cost(order: Order) -> int:
        return billing.max_cost_fen(order, hours, classes)

    available = _available(db_read, {o.buyer_id for o in candidates})
    orders, excluded = billing.funded_orders(candidates, available, cost)

    # Re-queued work goes to other providers where they can serve it.
    failed_at = Clearings(db_read).failed_providers(o.id for o in orders)
    held_leases = product_service.held_interruptible(db_read, first, end)
    resales = product_service.open_resales(db_read, first, end)
    providers = product_service.pool_providers(db_read) if held_leases else {}

    def solve(
        step_id: str,
        orders: list[Order],
        offers: list[Offer],
        used: Mapping[str, int],
        tiered: bool = True,
    ) -> PreparedClearing:
        dropped: list[str] = []
        while True:
            market = Market(
                grid,
                first,
                n_slots,
                sites,
                pools,
                tuple(offers),
                tuple(orders),
                links=links,
                delay_fen=delay_fen,
            )
            market = lifecycle.avoid_failed_providers(market, failed_at)
            if adjust is not None:
                market = adjust(market)
            if tiered:
                tiers = products.clear_tiers(
                    market,
                    lambda m: clear(m, options),
                    held_leases,
                    providers,
                    notice_slots,
                    discount_bp,
                    resales,
                )
                cleared, preempted, resold = tiers.result, tiers.preemptions, tiers.resold
            else:
                cleared, preempted, resold = clear(market, options), (), ()
            commitment = lifecycle.commit(cleared, market, firm_slots)
            result = commitment.firm
            holds = billing.holds_for_clearing(result, step_id, timeout_s, with_transfers=True)
            need: dict[str, list[Transfer]] = defaultdict(list)
            buyer_of = {o.id: o.buyer_id for o in orders}
            for h in holds:
                need[buyer_of[h.user_data]].append(h)
            left = _available(db_read, need)
            unfunded = []
            for buyer, hs in sorted(need.items()):
                left[buyer] -= used.get(buyer, 0)
                for h in hs:
                    amount = h.amount or 0
                    if amount <= left[buyer]:
                        left[buyer] -= amount
                    else:
                        unfunded.append(h.user_data)
            if not unfunded:
                return PreparedClearing(
                    step_id,
                    first,
                    n_slots,
                    result,
                    holds,
                    sorted(dropped),
                    commitment.planned,
                    # Planning late: only what becomes a lease now preempts (a plan is
                    # re-planned).
                    preemptions=tuple(
                        p for p in preempted if firm_slots is None or p.slot < first + firm_slots
                    ),
                    resold=tuple(resold),
                )
            log.warning("clearing %s: holds beyond the funding bound for %s", step_id, unfunded)
            dropped += unfunded
            drop = set(unfunded)
            orders = [o for o in orders if o.id not in drop]

    captive = (
        protection.captive_firm_orders(
            db_read,
            grid,
            first,
            protect_slots,
            Market(grid, 0, 1, sites, pools, (), (), links=links),
            lambda lo, hi: _remaining_offers(db_read, lo, hi, less_sold=False),
        )
        if protect_slots > 0
        else {}
    )
    if not captive:
        main = solve(clearing_id, orders, offers, {})
        return replace(main, excluded=sorted(excluded + main.excluded))
    step: PreparedClearing | None = None
    firm = [o for o in orders if o.id in captive]
    used: dict[str, int] = defaultdict(int)
    if firm:
        step = solve(f"{clearing_id}-firm", firm, offers, {}, tiered=False)
        sold: dict[str, dict[int, int]] = defaultdict(dict)
        for f in step.result.fills:
            sold[f.offer_id][f.slot] = sold[f.offer_id].get(f.slot, 0) + f.gpus
        offers = [
            rest
            for o in offers
            if (rest := lifecycle.remaining(o, sold.get(o.id, {}), first, end)) is not None
        ]
        buyer_of = {o.id: o.buyer_id for o in firm}
        for h in step.holds:
            used[buyer_of[h.user_data]] += h.amount or 0
    demand, captive_sold = protection.firm_demand(db_read, grid, first, end, protect_slots, captive)
    if step is not None:
        for a in step.result.allocations:
            captive_sold[(a.pool_id, a.slot)] += a.gpus
    held = lifecycle.protection_levels(
        demand, captive_sold, first, end, protect_slots, offset=first - protect_slots
    )
    flexible = [o for o in orders if o.id not in captive]
    main = solve(clearing_id, flexible, lifecycle.hold_back(offers, held), used)
    dropped = excluded + main.excluded + (step.excluded if step is not None else [])
    return replace(main, excluded=sorted(dropped), firm_step=step)


def new_clearing_id(now: int) -> str:
    return f"clr-{now}-{secrets.token_hex(3)}"


def save_clearing(
    s: Session,
    ledger: SqlLedger,
    prepared: PreparedClearing,
    now: int,
    default_fee_bp: int = ApiSettings().default_fee_bp,
) -> list[Lease]:
    """Hold the buyers' money, preempt the interruptible GPUs firm demand took, and store
    the clearing (its firm step first, when it has one), in the caller's transaction."""
    first = (
        []
        if prepared.firm_step is None
        else save_clearing(s, ledger, prepared.firm_step, now, default_fee_bp)
    )
    if prepared.preemptions:
        fee = fee_bp(s, default_fee_bp)
        product_service.apply_preemptions(
            s, ledger, prepared.preemptions, fee, now, prepared.first_slot
        )
    _check_capacity(s, prepared.result)
    results = ledger.create_transfers_in(s, prepared.holds, now)
    for h, r in zip(prepared.holds, results, strict=True):
        if r is not CreateResult.OK:
            raise Conflict(
                f"the hold for order {h.user_data!r} failed: {r}",
                field="orders",
                fix="run the clearing again",
            )
    hold_ids = {h.user_data: h.id for h in prepared.holds}
    leases = Clearings(s).save(
        prepared.id,
        now,
        prepared.first_slot,
        prepared.n_slots,
        prepared.result,
        hold_ids=hold_ids,
        # Capacity preempted or resold has no fill of this clearing.
        providers=(
            product_service.pool_providers(s) if prepared.preemptions or prepared.resold else None
        ),
        planned=prepared.planned,
    )
    if prepared.resold:
        fee = fee_bp(s, default_fee_bp)
        product_service.apply_resales(s, ledger, prepared.resold, leases, fee, now)
    return first + leases


#: Tries of a clearing that collides with a concurrent one before giving up (409).
CLEARING_ATTEMPTS = 3


def clearing_round(
    db: Database,
    ledger: SqlLedger,
    settings: ApiSettings,
    now: int,
    clearing_id: str,
    first: int,
    n_slots: int,
    save: Callable[[PreparedClearing], R],
    adjust: MarketHook | None = None,
) -> R:
    """One clearing round: expire stale orders, clear ``[first, first + n_slots)``, save.

    The one implementation behind ``POST /clearings`` and the clearing loop. ``save`` stores
    the prepared clearing in one transaction (the route records its idempotency key there;
    the loop calls :func:`save_clearing` through ``db.transaction``). A clearing that collides
    with a concurrent one (:class:`Conflict`: capacity or orders sold meanwhile) is cleared
    again from what is left, up to :data:`CLEARING_ATTEMPTS` times. A clearing id that exists
    is a :class:`Conflict` naming ``body.id``.
    """
    current = max(0, settings.grid.slot_at(now))
    with db.session_scope() as s:
        Orders(s).expire(current)
    with db.session_scope(write=False) as s:
        if s.get(ClearingRow, clearing_id) is not None:
            raise Conflict(f"clearing {clearing_id!r} exists", field="body.id", fix="new id")
        orders = clearable_orders(s, settings.grid, first, first + n_slots)
        buyers = sorted({o.buyer_id for o in orders})
        lost_pools = Heartbeats(s).lost_pools(now, settings.agent_grace_s)
        if adjust is not None:  # the operator's carbon price, as stored now
            adjust = cast(MarketHook, carbon_price.priced(s, adjust))
    ensure_accounts(ledger, billing.new_exchange_accounts(), now)
    ensure_accounts(ledger, [billing.new_buyer_account(b) for b in buyers], now)
    for attempt in range(CLEARING_ATTEMPTS):
        with db.session_scope(write=False) as s:
            prepared = prepare_clearing(
                s,
                ledger,
                settings.grid,
                clearing_id,
                first,
                n_slots,
                settings.hold_timeout_s,
                adjust,
                delay_fen=settings.delay_fen,
                firm_slots=settings.firm_slots,
                options=ClearingOptions(time_limit_s=settings.clearing_time_limit_s),
                protect_slots=settings.protect_slots,
                notice_slots=settings.preempt_notice_slots,
                discount_bp=settings.interruptible_discount_bp,
                exclude_pools=set().union(*lost_pools.values()),
            )
        try:
            return save(prepared)
        except IdempotencyConflict:
            raise
        except Conflict:
            # Another clearing sold some of the same capacity or orders meanwhile: clear
            # again from what is left.
            if attempt == CLEARING_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _check_capacity(s: Session, result: ClearingResult) -> None:
    """Refuse a clearing that would sell more of an offer than it has: another clearing may
    have sold some meanwhile (the offers' rows are locked, in id order, then counted)."""
    selling: dict[tuple[str, int], int] = defaultdict(int)
    for f in result.fills:
        if f.gpus > 0:
            selling[(f.offer_id, f.slot)] += f.gpus
    if not selling:
        return
    ids = sorted({o for o, _ in selling})
    open_ids = set(
        s.scalars(
            select(OfferRow.id).where(OfferRow.id.in_(ids)).order_by(OfferRow.id).with_for_update()
        )
    )
    sold = {
        (o, t): int(g)
        for o, t, g in s.execute(
            select(OfferFillRow.offer_id, OfferFillRow.slot, func.sum(OfferFillRow.gpus))
            .where(OfferFillRow.offer_id.in_(ids))
            .group_by(OfferFillRow.offer_id, OfferFillRow.slot)
        )
    }
    offered = {
        (o, t): g
        for o, t, g in s.execute(
            select(OfferSlotRow.offer_id, OfferSlotRow.slot, OfferSlotRow.gpus).where(
                OfferSlotRow.offer_id.in_(ids)
            )
        )
    }
    status = {
        o: st
        for o, st in s.execute(select(OfferRow.id, OfferRow.status).where(OfferRow.id.in_(ids)))
    }
    for (offer_id, slot), gpus in sorted(selling.items()):
        if offer_id not in open_ids or status.get(offer_id) != str(OfferStatus.OPEN):
            raise Conflict(
                f"offer {offer_id!r} was withdrawn meanwhile",
                field="offers",
                fix="run the clearing again",
            )
        if sold.get((offer_id, slot), 0) + gpus > offered.get((offer_id, slot), 0):
            raise Conflict(
                f"offer {offer_id!r} in slot {slot} was sold meanwhile by another clearing",
                field="offers",
                fix="run the clearing again",
            )


# -- metering and settlement ----------------------------------------------------------------------


def record_reading(
    s: Session,
    ledger: SqlLedger,
    lease: Lease,
    body: schemas.ReadingIn,
    agent: str,
    fee: int,
    now: int,
    settings: ApiSettings,
) -> dict[str, Any]:
    """Store a reading, move the lease along, and settle its order when all its leases are
    done. A new reading must be possible for the lease (:mod:`suangu.core.metering`: inside
    its slot, not after ``now`` beyond the tolerance, no overlap, GPU time and energy bounded).
    """
    key = f"{agent}:{lease.id}:{body.id}"
    reading = MeterReading(
        key,
        lease.id,
        body.interval_start,
        body.interval_end,
        body.gpu_seconds,
        body.energy_wh,
        now,
        body.source,
    )
    known = any(r.idempotency_key == key for r in Meters(s).readings(lease.id))
    if not known and lease.state not in (LeaseState.SCHEDULED, LeaseState.RUNNING):
        raise InvalidState(
            f"lease {lease.id!r} is {lease.state}: it takes no more readings",
            field="body.id",
            fix="send every reading before the final one",
        )
    clearings = Clearings(s)
    window = clearings.lease_windows([lease.id], settings.grid, settings.max_pue)[lease.id]
    stored, new = Meters(s).record(
        reading, window, tolerance_s=settings.reading_tolerance_s, prefix="body."
    )
    if new and lease.state is LeaseState.SCHEDULED:
        lease = clearings.move_lease(lease.id, LeaseState.RUNNING)
    if new and body.final and lease.state is LeaseState.RUNNING:
        lease = clearings.move_lease(lease.id, LeaseState.COMPLETED)
    settled = False
    if new and body.final:
        settled = settle_if_done(s, ledger, lease, fee, now)
        lease = clearings.lease(lease.id)
    return {
        "id": body.id,
        "lease_id": lease.id,
        "interval_start": stored.interval_start,
        "interval_end": stored.interval_end,
        "gpu_seconds": stored.gpu_seconds,
        "energy_wh": stored.energy_wh,
        "source": str(stored.source),
        "recorded_at": stored.recorded_at,
        "new": new,
        "lease_state": str(lease.state),
        "settled": settled or lease.state is LeaseState.SETTLED,
    }


@dataclass(frozen=True)
class FinalReading:
    """A lease's last reading, for :func:`meter_final`."""

    lease_id: str
    reading: schemas.ReadingIn


def _lease_of(row: LeaseRow) -> Lease:
    a = Allocation(row.order_id, row.buyer_id, row.pool_id, row.slot, row.gpus, row.price_fen)
    return Lease(
        row.id,
        row.clearing_id,
        a,
        row.provider_id,
        LeaseState(row.state),
        row.hold_transfer_id,
        row.preempted_gpus or 0,
        row.resold_gpus or 0,
    )


def meter_final(
    s: Session,
    provider_id: str,
    readings: Sequence[FinalReading],
    now: int,
    settings: ApiSettings,
) -> tuple[int, set[tuple[str, str]]]:
    """Record the final reading of many of a provider's leases and complete them; ``(readings
    recorded, their (clearing id, order id) pairs)`` (settle those with
    :func:`settle_done_orders`).

    The same rules as :func:`record_reading` with ``final`` readings, in a handful of
    statements for the whole batch instead of a dozen per lease (what a provider agent that
    meters a whole slot sends): a reading already recorded (same agent and id) is skipped; a
    lease of another provider is :class:`~suangu.store.errors.NotFound`; a lease that is
    completed, failed or settled takes no more readings (:class:`InvalidState`); every new
    reading must be possible for its lease (:func:`suangu.core.metering.check_reading`).
    """
    if not readings:
        return 0, set()
    ids = sorted({r.lease_id for r in readings})
    rows = {r.id: r for r in s.scalars(select(LeaseRow).where(LeaseRow.id.in_(ids)))}
    keys = {f"{provider_id}:{r.lease_id}:{r.reading.id}" for r in readings}
    known = set(
        s.scalars(
            select(MeterReadingRow.idempotency_key).where(
                MeterReadingRow.idempotency_key.in_(sorted(keys))
            )
        )
    )
    windows = Clearings(s).lease_windows(rows, settings.grid, settings.max_pue)
    intervals = Meters(s).intervals(rows)
    new_rows: list[dict[str, Any]] = []
    done: set[str] = set()
    for i, item in enumerate(readings):
        body, at = item.reading, f"body[{i}]"
        row = rows.get(item.lease_id)
        if row is None or row.provider_id != provider_id:
            raise NotFound(
                f"no lease {item.lease_id!r}", field=f"{at}.lease_id", fix="list your leases"
            )
        key = f"{provider_id}:{item.lease_id}:{body.id}"
        if key in known:
            continue
        if row.state not in (str(LeaseState.SCHEDULED), str(LeaseState.RUNNING)):
            raise InvalidState(
                f"lease {row.id!r} is {row.state}: it takes no more readings",
                field=f"{at}.id",
                fix="send every reading before the final one",
            )
        others = intervals.setdefault(row.id, [])
        check_reading(
            body.interval_start,
            body.interval_end,
            body.gpu_seconds,
            body.energy_wh,
            windows[row.id],
            now,
            others,
            tolerance_s=settings.reading_tolerance_s,
            prefix=f"{at}.",
        )
        others.append((body.interval_start, body.interval_end))
        known.add(key)
        done.add(row.id)
        new_rows.append(
            {
                "idempotency_key": key,
                "lease_id": row.id,
                "interval_start": body.interval_start,
                "interval_end": body.interval_end,
                "gpu_seconds": body.gpu_seconds,
                "energy_wh": body.energy_wh,
                "recorded_at": now,
                "source": str(body.source),
            }
        )
    if not new_rows:
        return 0, set()
    s.execute(insert(MeterReadingRow), new_rows)
    moved = s.execute(
        update(LeaseRow)
        .where(
            LeaseRow.id.in_(sorted(done)),
            LeaseRow.state.in_([str(LeaseState.SCHEDULED), str(LeaseState.RUNNING)]),
        )
        .values(state=str(LeaseState.COMPLETED))
        .execution_options(synchronize_session=False)
    )
    if int(cast(CursorResult[Any], moved).rowcount) != len(done):
        raise Conflict("a lease changed meanwhile", field="body", fix="send the batch again")
    return len(new_rows), {(rows[i].clearing_id, rows[i].order_id) for i in done}


def settle_done_orders(
    s: Session, ledger: SqlLedger, groups: Iterable[tuple[str, str]], fee: int, now: int
) -> int:
    """Settle each ``(clearing id, order id)`` of ``groups`` whose leases are now all
    completed or failed (none settled yet), in one ledger call; how many were settled.

    Race-free under concurrent transactions: the orders' rows are locked (in id order, ``FOR
    UPDATE`` on PostgreSQL; SQLite has one writer at a time) before their leases are counted.
    When the last two leases of an order finish in two transactions at once, the second waits
    for the first to commit and then, reading committed rows, sees both finished and settles
    (without the lock each saw only its own lease finished, and neither settled).
    :func:`settle_stuck_orders` sweeps up any order left with all leases final.

    The providers' and the exchange's accounts must exist (:func:`ensure_accounts` before the
    transaction, as the routes do)."""
    pairs = set(groups)
    if not pairs:
        return 0
    finished = [str(LeaseState.COMPLETED), str(LeaseState.FAILED)]
    clearing_ids = sorted({c for c, _ in pairs})
    order_ids = sorted({o for _, o in pairs})
    Orders(s).lock(order_ids)
    counts = s.execute(
        select(
            LeaseRow.clearing_id,
            LeaseRow.order_id,
            func.count(),
            func.sum(case((LeaseRow.state.in_(finished), 1), else_=0)),
        )
        .where(LeaseRow.clearing_id.in_(clearing_ids), LeaseRow.order_id.in_(order_ids))
        .group_by(LeaseRow.clearing_id, LeaseRow.order_id)
    )
    done = {(c, o) for c, o, n, k in counts if (c, o) in pairs and int(k) == int(n)}
    if not done:
        return 0
    ready: dict[tuple[str, str], list[Lease]] = defaultdict(list)
    for row in s.scalars(
        select(LeaseRow)
        .where(
            LeaseRow.clearing_id.in_(sorted({c for c, _ in done})),
            LeaseRow.order_id.in_(sorted({o for _, o in done})),
        )
        .order_by(LeaseRow.slot, LeaseRow.order_id, LeaseRow.pool_id, LeaseRow.clearing_id)
        .execution_options(populate_existing=True)
    ):
        if (row.clearing_id, row.order_id) in done:
            ready[(row.clearing_id, row.order_id)].append(_lease_of(row))
    totals = Meters(s).totals([x.id for xs in ready.values() for x in xs])
    hours = {
        cid: h
        for cid, h in s.execute(
            select(ClearingRow.id, ClearingRow.slot_hours).where(
                ClearingRow.id.in_(sorted({cid for cid, _ in ready}))
            )
        )
    }
    charges = Clearings(s).transfer_charges(ready)
    # Resale: a seller's resold GPUs count as delivered; a new buyer's pays the seller.
    ids = [x.id for xs in ready.values() for x in xs]
    resold = product_service.resold_gpus(s, ids)
    parts = product_service.resale_parts(s, ids)
    transfers: list[Transfer] = []
    for (cid, order_id), xs in sorted(ready.items()):
        hold = xs[0].hold_transfer_id
        if hold is None:
            continue
        carrier, congestion = charges.get((cid, order_id), (0, 0))
        slot_s = hours.get(cid, 1) * 3600
        transfers += billing.settle_lease(
            hold,
            [x.allocation for x in xs],
            {x.allocation: totals.get(x.id, (0, 0))[0] + resold.get(x.id, 0) * slot_s for x in xs},
            {x.allocation.pool_id: x.provider_id for x in xs if x.provider_id},
            fee,
            slot_hours=hours.get(cid, 1),
            carrier_fen=carrier,
            congestion_fen=congestion,
            resold={x.allocation: parts[x.id] for x in xs if x.id in parts},
        )
    results = ledger.create_transfers_in(s, transfers, now)
    bad = [
        (t, r)
        for t, r in zip(transfers, results, strict=True)
        if r not in (CreateResult.OK, CreateResult.EXISTS)
    ]
    if bad:
        raise Conflict(
            f"settling {bad[0][0].user_data or bad[0][0].id!r} failed: {bad[0][1]}",
            field="lease",
            fix="ask the operator to check the order's hold",
        )
    settled = [x.id for xs in ready.values() for x in xs]
    moved = 0
    for chunk in range(0, len(settled), 500):
        changed = s.execute(
            update(LeaseRow)
            .where(LeaseRow.id.in_(settled[chunk : chunk + 500]), LeaseRow.state.in_(finished))
            .values(state=str(LeaseState.SETTLED))
            .execution_options(synchronize_session=False)
        )
        moved += rowcount(changed)
    if moved != len(settled):  # another transaction settled some of them meanwhile
        raise Conflict("leases changed meanwhile", field="lease", fix="retry")
    return len(ready)


def stuck_orders(s: Session, limit: int = 500) -> list[tuple[str, str]]:
    """``(clearing id, order id)`` groups whose leases are all completed or failed and not
    settled: what :func:`settle_stuck_orders` settles (oldest clearings first)."""
    finished = [str(LeaseState.COMPLETED), str(LeaseState.FAILED)]
    q = (
        select(LeaseRow.clearing_id, LeaseRow.order_id)
        .group_by(LeaseRow.clearing_id, LeaseRow.order_id)
        .having(func.sum(case((LeaseRow.state.in_(finished), 0), else_=1)) == 0)
        .order_by(LeaseRow.clearing_id, LeaseRow.order_id)
        .limit(limit)
    )
    return [(c, o) for c, o in s.execute(q)]


def settle_stuck_orders(
    db: Database, ledger: SqlLedger, default_fee_bp: int, now: int, limit: int = 500
) -> int:
    """The sweeper: settle every order whose leases of a clearing are all final but which no
    transaction settled (a crash between a lease's last state change and its settlement, or
    any other path that left it); how many orders were settled. The clearing loop runs it on
    every tick, so no hold stays pending for an order that is done."""
    with db.session_scope(write=False) as s:
        groups = stuck_orders(s, limit)
        if not groups:
            return 0
        providers = sorted(
            {
                p
                for p in s.scalars(
                    select(LeaseRow.provider_id)
                    .where(LeaseRow.order_id.in_(sorted({o for _, o in groups})))
                    .distinct()
                )
                if p
            }
        )
    ensure_accounts(ledger, billing.new_exchange_accounts(), now)
    ensure_accounts(ledger, [billing.new_provider_account(p) for p in providers], now)

    def work(s: Session) -> int:
        return settle_done_orders(s, ledger, groups, fee_bp(s, default_fee_bp), now)

    return db.transaction(work)


def settle_if_done(s: Session, ledger: SqlLedger, lease: Lease, fee: int, now: int) -> bool:
    """Settle the lease's order on the ledger when all its leases are completed or failed
    (:func:`settle_done_orders` for its one group)."""
    key = (lease.clearing_id, lease.allocation.order_id)
    return settle_done_orders(s, ledger, [key], fee, now) > 0


def fail_lease(
    s: Session,
    ledger: SqlLedger,
    lease: Lease,
    fee: int,
    now: int,
    current_slot: int | None = None,
) -> Lease:
    """Mark a scheduled or running lease failed (the provider could not run it), settle its
    order's leases of that clearing if that was the last open one (metered use so far is
    paid, the rest of the hold released), and put the order back into the market
    (:func:`suangu.core.lifecycle.requeued_status`): a batch or service order bids again
    for the work the lease did not deliver; a gang fails whole (its other scheduled and
    running leases of that clearing fail too) and bids again whole while its run still fits.
    ``current_slot`` is the grid's slot at ``now`` (None: the order is not re-queued). An
    order whose payload itself exited with an error (the agent's report on the lease has an
    exit code) is not re-queued either: it would fail the same way anywhere."""
    clearings = Clearings(s)
    if lease.state is not LeaseState.FAILED:
        if lease.state not in (LeaseState.SCHEDULED, LeaseState.RUNNING):
            raise InvalidState(
                f"lease {lease.id!r} is {lease.state}: only a scheduled or running lease can fail",
                field="path.lease_id",
                fix="a completed lease is settled from its readings",
            )
        order_id = lease.allocation.order_id
        Orders(s).lock([order_id])
        record = Orders(s).get(order_id)
        lease = clearings.move_lease(lease.id, LeaseState.FAILED)
        if record.order.kind is OrderKind.GANG:  # all or nothing: the whole gang fails
            for other in clearings.leases(clearing_id=lease.clearing_id, order_id=order_id):
                if other.state in (LeaseState.SCHEDULED, LeaseState.RUNNING):
                    clearings.move_lease(other.id, LeaseState.FAILED)
        settle_if_done(s, ledger, lease, fee, now)
        report = s.get(LeaseReportRow, lease.id)
        if report is not None and report.exit_code is not None:
            # The buyer's own payload exited with an error: running it again elsewhere
            # would fail the same way, so the order is not re-queued.
            current_slot = None
        if current_slot is not None:
            status = lifecycle.requeued_status(record.order, record.status, current_slot)
            if status is not None and Orders(s).requeue(order_id, status):
                log.info(
                    "order %s back in the market (%s): lease %s failed", order_id, status, lease.id
                )
    return clearings.lease(lease.id)


def leases_due(s: Session, grid: TimeGrid, grace_s: int, now: int) -> list[tuple[str, LeaseState]]:
    """Leases the clock moves on: scheduled ones whose slot has started (-> running), and
    running ones whose slot ended more than ``grace_s`` ago (-> completed)."""
    current = grid.slot_at(now)
    ended = grid.slot_at(now - grace_s) - 1  # the last slot that ended grace_s ago or more
    q = (
        select(LeaseRow.id, LeaseRow.state)
        .where(
            ((LeaseRow.state == str(LeaseState.SCHEDULED)) & (LeaseRow.slot <= current))
            | ((LeaseRow.state == str(LeaseState.RUNNING)) & (LeaseRow.slot <= ended))
        )
        .order_by(LeaseRow.slot, LeaseRow.id)
    )
    return [(i, LeaseState(st)) for i, st in s.execute(q)]


def start_leases(s: Session, grid: TimeGrid, now: int) -> int:
    """``scheduled -> running`` for every lease whose slot has started, in one statement;
    how many."""
    done = s.execute(
        update(LeaseRow)
        .where(LeaseRow.state == str(LeaseState.SCHEDULED), LeaseRow.slot <= grid.slot_at(now))
        .values(state=str(LeaseState.RUNNING))
    )
    return int(cast(CursorResult[Any], done).rowcount)


def site_provider(s: Session, site_id: str) -> str | None:
    row = s.get(SiteRow, site_id)
    return None if row is None else row.provider_id


def pool_provider(s: Session, pool_id: str) -> tuple[bool, str | None]:
    """Whether the pool exists, and the provider of its site."""
    row = s.get(PoolRow, pool_id)
    if row is None:
        return False, None
    return True, site_provider(s, row.site_id)


def provider_ids(leases: Iterable[Lease]) -> list[str]:
    return sorted({x.provider_id for x in leases if x.provider_id})
