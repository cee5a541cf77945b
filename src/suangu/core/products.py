"""Market products beyond the hourly market: the interruptible tier and resale.

**The interruptible tier.** An order may be ``interruptible`` (batch and service orders; a
gang runs all or nothing and cannot be). The rule, one clearing at a time:

1. **Firm demand first.** The orders that are not interruptible clear alone, against every
   offer's remaining capacity *and* against the capacity that earlier clearings sold to
   interruptible orders in slots that start at least ``notice_slots`` after the clearing's
   first slot (:func:`preemptible_offers`). That capacity is offered at one fen above both
   the provider's firm reserve there and the highest price an interruptible order pays for
   it, so firm demand takes it only when it values it more than both, and takes free
   capacity at the same reserve first. The firm tier's prices are the market's published
   prices; interruptible bids never raise them.
2. **Interruptible demand after, at a discount.** The interruptible orders clear against
   what firm demand left (the offers less the firm tier's fills; each link's bandwidth less
   what the firm tier moved over it), where every offer's reserve is its *interruptible
   reserve*: the listed reserve less the interruptible discount (``discount_bp``, default
   30%, rounded up to whole fen; :func:`interruptible_reserve`). An interruptible GPU-hour is
   a lesser product: the provider may take it back for firm demand, and is paid the firm
   price when it does. The tier's own prices are the *interruptible prices*.
3. **Preemption with notice.** The interruptible GPU-slots firm demand took are preempted
   (:func:`preempt`), the lowest-paying first (ties: the later lease first). A preempted
   lease gives up those GPUs before its slot starts; its order goes back into the market for
   the work it lost through the recovery path (:func:`suangu.core.lifecycle.requeued_status`),
   resuming from the checkpoint its last delivered lease left. Its buyer pays only for the
   GPU-hours delivered; the provider is paid by the firm buyer, at a price above what the
   interruptible buyer would have paid.

**Resale.** A buyer may offer back a GPU-slot it holds (a lease not started) with its own
reserve (:class:`Resale`). The next clearings offer it to firm demand as supply of the lease's
pool and slot (:func:`resale_offers`, id ``resale:<id>``) while the lease's slot starts at
least ``notice_slots`` after the clearing's first slot; the interruptible tier does not see
it. What sells (:attr:`TieredClearing.resold`) is taken from the seller's lease, which still
pays its provider for it in full; the new buyers' payments for those GPU-slots, less the
exchange fee, go to the seller. The resold GPU-slots of one pool-slot go to that pool-slot's
firm allocations in order id order (:func:`assign_resold`): everyone in a pool-slot pays its
one price, so who gets which GPU does not change any amount.

Each tier is a clearing of its own, so each keeps the clearing's guarantees: no buyer pays
above its limit, no provider receives below its reserve (its interruptible reserve for an
interruptible GPU-hour), and payments equal receipts to the fen (:func:`check_tiers` runs
the clearing's checks on each). The two tiers together never sell a GPU-slot twice: the
interruptible tier sees only what the firm tier left, and a preempted GPU-slot changes hands
from the interruptible lease to the firm one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from suangu.core import lifecycle
from suangu.core.clearing.checks import check_clearing
from suangu.core.errors import ValidationError
from suangu.core.settlement import check_settlement, settle
from suangu.core.types import (
    MAX_PRICE_FEN,
    MILLI,
    Allocation,
    ClearingResult,
    ClearingStatus,
    Market,
    Offer,
    OfferFill,
    PoolPrice,
)

#: Offer ids of the preemptible capacity offered to firm demand: ``preempt:<pool>:<slot>``.
PREEMPT_PREFIX = "preempt:"

#: The default notice: an interruptible lease is preempted only when its slot starts at least
#: this many slots after the clearing's first slot (the slot about to start keeps its lease).
DEFAULT_NOTICE_SLOTS = 1

#: The default interruptible discount in basis points: an interruptible GPU-hour's reserve is
#: the offer's reserve less 30% (rounded up to whole fen).
DEFAULT_DISCOUNT_BP = 3000

#: Offer ids of resold GPU-slots: ``resale:<resale id>``.
RESALE_PREFIX = "resale:"

#: A clearing function: the market's own (:func:`suangu.core.clearing.engine.clear`) with its
#: options bound.
Clear = Callable[[Market], ClearingResult]


@dataclass(frozen=True, slots=True)
class HeldSlot:
    """GPUs that an earlier clearing sold to an interruptible order in one pool-slot (one
    lease), not yet started."""

    lease_id: str
    order_id: str
    pool_id: str
    slot: int
    gpus: int
    #: What the interruptible buyer pays per GPU-hour.
    price_fen: int
    #: What the buyer's limit makes a GPU-hour there worth (``limit x speed``), for welfare.
    value_fen: float = 0.0
    #: The provider's reserve for a firm GPU-hour there (the offer's listed reserve).
    reserve_fen: int = 0


@dataclass(frozen=True, slots=True)
class Preemption:
    """GPUs a clearing's firm demand takes from one interruptible lease."""

    lease_id: str
    order_id: str
    pool_id: str
    slot: int
    gpus: int
    price_fen: int


@dataclass(frozen=True, slots=True)
class Resale:
    """A buyer's offer to sell back the GPUs of one lease it holds (one pool-slot)."""

    id: str
    seller_id: str
    lease_id: str
    pool_id: str
    slot: int
    gpus: int
    #: The least the seller takes per GPU-hour.
    reserve_fen: int


@dataclass(frozen=True, slots=True)
class Resold:
    """GPUs of a resale that a clearing sold, at the firm tier's price of its pool-slot."""

    resale_id: str
    pool_id: str
    slot: int
    gpus: int
    price_fen: int


@dataclass(frozen=True, slots=True)
class TieredClearing:
    """A clearing of both tiers (:func:`clear_tiers`)."""

    #: Both tiers' allocations (each at its own tier's price), the real offers' fills of
    #: both, the data transfers of both; prices and link prices are the firm tier's; welfare
    #: is the market's (firm value of preempted GPU-slots in, interruptible value out).
    result: ClearingResult
    #: The interruptible tier's price per pool-slot (empty when no order was interruptible).
    interruptible_prices: tuple[PoolPrice, ...]
    #: What firm demand took from earlier interruptible leases.
    preemptions: tuple[Preemption, ...]
    #: Each tier as cleared, with the market it cleared (for :func:`check_tiers`).
    firm: ClearingResult
    firm_market: Market
    interruptible: ClearingResult | None = None
    interruptible_market: Market | None = None
    #: What was resold (:class:`Resale`), from the firm tier's fills.
    resold: tuple[Resold, ...] = ()


def interruptible_reserve(reserve_fen: int, discount_bp: int) -> int:
    """The reserve of an interruptible GPU-hour: ``reserve x (1 - discount)``, rounded up
    to whole fen (never below what the provider asked less the discount)."""
    return -(-reserve_fen * (10_000 - discount_bp) // 10_000)


def preemptible_offers(
    held: Iterable[HeldSlot],
    providers: Mapping[str, str],
    first: int,
    end: int,
    notice_slots: int = DEFAULT_NOTICE_SLOTS,
) -> tuple[Offer, ...]:
    """The capacity that interruptible leases hold in ``[first + notice_slots, end)`` as
    offers to firm demand: one per pool-slot, id ``preempt:<pool>:<slot>``, its reserve one
    fen above both the provider's firm reserve there and the highest price an interruptible
    lease pays there. ``providers`` maps pool id to the pool's provider."""
    if notice_slots < 0:
        raise ValidationError(
            f"must be 0 or more, got {notice_slots}", field="notice_slots", fix="slots of notice"
        )
    gpus: dict[tuple[str, int], int] = defaultdict(int)
    top: dict[tuple[str, int], int] = defaultdict(int)
    for h in held:
        if h.gpus <= 0 or not first + notice_slots <= h.slot < end:
            continue
        cell = (h.pool_id, h.slot)
        gpus[cell] += h.gpus
        top[cell] = max(top[cell], h.price_fen + 1, h.reserve_fen + 1)
    return tuple(
        Offer(
            f"{PREEMPT_PREFIX}{pool_id}:{slot}",
            providers[pool_id],
            pool_id,
            slot,
            (gpus[(pool_id, slot)],),
            (min(MAX_PRICE_FEN, top[(pool_id, slot)]),),
        )
        for pool_id, slot in sorted(gpus)
        if pool_id in providers
    )


def is_preemptible_offer(offer_id: str) -> bool:
    return offer_id.startswith(PREEMPT_PREFIX)


def is_resale_offer(offer_id: str) -> bool:
    return offer_id.startswith(RESALE_PREFIX)


def _synthetic(offer_id: str) -> bool:
    return is_preemptible_offer(offer_id) or is_resale_offer(offer_id)


def resale_offers(
    resales: Iterable[Resale], first: int, end: int, notice_slots: int = DEFAULT_NOTICE_SLOTS
) -> tuple[Offer, ...]:
    """The resales whose slot is in ``[first + notice_slots, end)`` as offers of the seller:
    id ``resale:<id>``, the lease's pool, slot and GPUs, the seller's reserve."""
    return tuple(
        Offer(f"{RESALE_PREFIX}{r.id}", r.seller_id, r.pool_id, r.slot, (r.gpus,), (r.reserve_fen,))
        for r in sorted(resales, key=lambda r: r.id)
        if r.gpus > 0 and first + notice_slots <= r.slot < end
    )


def assign_resold(
    resold: Iterable[Resold], allocations: Iterable[Allocation]
) -> dict[tuple[str, str, int], list[tuple[str, int]]]:
    """Which allocations got the resold GPU-slots: per pool-slot, the firm allocations there
    in order id order take them first. ``(order id, pool id, slot) -> [(resale id, GPUs)]``."""
    left: dict[tuple[str, int], list[list[Any]]] = defaultdict(list)
    for r in sorted(resold, key=lambda r: r.resale_id):
        if r.gpus > 0:
            left[(r.pool_id, r.slot)].append([r.resale_id, r.gpus])
    out: dict[tuple[str, str, int], list[tuple[str, int]]] = defaultdict(list)
    for a in sorted(allocations, key=lambda a: (a.pool_id, a.slot, a.order_id)):
        queue = left.get((a.pool_id, a.slot))
        room = a.gpus
        while queue and room > 0:
            take = min(room, queue[0][1])
            out[(a.order_id, a.pool_id, a.slot)].append((queue[0][0], take))
            room -= take
            queue[0][1] -= take
            if queue[0][1] == 0:
                queue.pop(0)
    return dict(out)


def preempt(held: Iterable[HeldSlot], taken: Mapping[tuple[str, int], int]) -> list[Preemption]:
    """Which interruptible leases give up how many GPUs so that firm demand gets ``taken``
    GPUs per (pool, slot): in each pool-slot the lowest-paying lease first, ties the later
    lease (the larger id) first; a lease gives up only the GPUs needed."""
    by_cell: dict[tuple[str, int], list[HeldSlot]] = defaultdict(list)
    for h in held:
        by_cell[(h.pool_id, h.slot)].append(h)
    out: list[Preemption] = []
    for cell, need in sorted(taken.items()):
        leases = sorted(by_cell.get(cell, ()), key=lambda h: h.lease_id, reverse=True)
        leases.sort(key=lambda h: h.price_fen)
        for h in leases:
            if need <= 0:
                break
            take = min(need, h.gpus)
            if take > 0:
                out.append(Preemption(h.lease_id, h.order_id, h.pool_id, h.slot, take, h.price_fen))
                need -= take
        if need > 0:
            raise ValidationError(
                f"firm demand took {taken[cell]} GPUs of {cell[0]} at slot {cell[1]}, more "
                "than interruptible leases hold there",
                field="held",
                fix="offer firm demand only the capacity interruptible leases hold",
            )
    return out


def _empty(market: Market) -> ClearingResult:
    return ClearingResult(
        ClearingStatus.EMPTY, "none", (), (), (), 0, slot_hours=market.grid.slot_hours
    )


def _residual(market: Market, firm: ClearingResult, discount_bp: int) -> Market:
    """What the firm tier left: the real offers less its fills, at the interruptible
    reserve (:func:`interruptible_reserve`); the links less the GB it moved."""
    sold: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for f in firm.fills:
        sold[f.offer_id][f.slot] += f.gpus
    end = market.first_slot + market.n_slots
    offers = []
    fine: dict[str, tuple[int, ...]] = {}
    for offer in market.offers:
        left = lifecycle.remaining(offer, sold.get(offer.id, {}), market.first_slot, end)
        if left is not None:
            reserve = tuple(interruptible_reserve(r, discount_bp) for r in left.reserve_fen)
            offers.append(replace(left, reserve_fen=reserve))
            mfen = market.reserve_mfen.get(offer.id)
            if mfen is not None:  # the sub-fen part (the carbon signal) kept, on the discount
                k = left.start_slot - offer.start_slot
                fine[offer.id] = tuple(
                    r * MILLI + m % MILLI
                    for r, m in zip(reserve, mfen[k : k + len(reserve)], strict=True)
                )
    used = {(lp.from_region, lp.to_region): lp for lp in firm.link_prices}
    links = []
    for link in market.links:
        lp = used.get(link.key)
        if lp is not None and lp.gb > 0 and lp.capacity_gb > 0:
            share = max(0.0, 1.0 - lp.gb / lp.capacity_gb)
            link = replace(link, bandwidth_gbps=link.bandwidth_gbps * share)
        links.append(link)
    return replace(market, offers=tuple(offers), links=tuple(links), reserve_mfen=fine)


_WORST = (
    ClearingStatus.FAILED,
    ClearingStatus.TIME_LIMIT,
    ClearingStatus.HEURISTIC,
    ClearingStatus.FEASIBLE,
    ClearingStatus.OPTIMAL,
    ClearingStatus.EMPTY,
)


def clear_tiers(
    market: Market,
    clear: Clear,
    held: Sequence[HeldSlot] = (),
    providers: Mapping[str, str] | None = None,
    notice_slots: int = DEFAULT_NOTICE_SLOTS,
    discount_bp: int = DEFAULT_DISCOUNT_BP,
    resales: Sequence[Resale] = (),
) -> TieredClearing:
    """Clear ``market`` in two tiers (see the module docs): its firm orders against its
    offers and the preemptible capacity of ``held`` (interruptible leases of earlier
    clearings; ``providers`` maps pool id to provider), then its interruptible orders
    against what is left at the interruptible reserve (``discount_bp`` off). A market
    without interruptible orders, held capacity or resales is cleared once, exactly as
    ``clear(market)``. ``resales`` are offered to firm demand (:func:`resale_offers`)."""
    if not 0 <= discount_bp < 10_000:
        raise ValidationError(
            f"must be 0 to 9999 basis points, got {discount_bp}",
            field="discount_bp",
            fix="e.g. 3000 for 30% off",
        )
    for offer in market.offers:
        if _synthetic(offer.id):
            raise ValidationError(
                f"offer id {offer.id!r} is reserved for preemptible or resold capacity",
                field="offers.id",
                fix=f"offer ids may not start with {PREEMPT_PREFIX!r} or {RESALE_PREFIX!r}",
            )
    firm_orders = tuple(o for o in market.orders if not o.interruptible)
    spot_orders = tuple(o for o in market.orders if o.interruptible)
    end = market.first_slot + market.n_slots
    extra = (
        preemptible_offers(held, providers or {}, market.first_slot, end, notice_slots)
        + resale_offers(resales, market.first_slot, end, notice_slots)
        if firm_orders
        else ()
    )
    if not spot_orders and not extra:
        result = clear(market)
        return TieredClearing(result, (), (), result, market)
    firm_market = replace(market, orders=firm_orders, offers=market.offers + extra)
    firm = clear(firm_market) if firm_orders else _empty(firm_market)
    hours = market.grid.slot_hours
    taken: dict[tuple[str, int], int] = defaultdict(int)
    synthetic = 0
    real_fills: list[OfferFill] = []
    resold: list[Resold] = []
    for f in firm.fills:
        if is_resale_offer(f.offer_id):
            if f.gpus > 0:
                rid = f.offer_id[len(RESALE_PREFIX) :]
                resold.append(Resold(rid, f.pool_id, f.slot, f.gpus, f.price_fen))
        elif is_preemptible_offer(f.offer_id):
            if f.gpus > 0:
                taken[(f.pool_id, f.slot)] += f.gpus
                synthetic += f.reserve_fen * f.gpus * hours
        else:
            real_fills.append(f)
    preemptions = preempt(held, taken) if taken else []
    value_of = {h.lease_id: h.value_fen for h in held}
    lost = sum(value_of.get(p.lease_id, 0.0) * p.gpus * hours for p in preemptions)
    spot_market: Market | None = None
    spot: ClearingResult | None = None
    if spot_orders:
        spot_market = _residual(replace(market, orders=spot_orders), firm, discount_bp)
        spot = clear(spot_market) if spot_market.offers else _empty(spot_market)
        # Welfare counts the providers' listed reserves, not the discounted ones.
        listed = {
            (o.id, o.start_slot + k): r for o in market.offers for k, r in enumerate(o.reserve_fen)
        }
        lost += sum(
            (listed[(f.offer_id, f.slot)] - f.reserve_fen) * f.gpus * hours for f in spot.fills
        )
    # A resale's seller gave up the GPU-slot: its reserve is not a provider's cost.
    synthetic += sum(
        f.reserve_fen * f.gpus * hours for f in firm.fills if is_resale_offer(f.offer_id)
    )
    parts = [firm] if spot is None else [firm, spot]
    status = min((r.status for r in parts), key=_WORST.index)
    timings: dict[str, float] = defaultdict(float)
    for r in parts:
        for k, v in r.timings.items():
            timings[k] += v
    merged = ClearingResult(
        status,
        "+".join(r.method for r in parts),
        firm.allocations + (spot.allocations if spot else ()),
        tuple(real_fills) + (spot.fills if spot else ()),
        firm.prices,
        firm.welfare_fen + synthetic + (spot.welfare_fen if spot else 0) - math.ceil(lost),
        dict(timings),
        "; ".join(r.message for r in parts if r.message),
        firm.rejected_gangs + (spot.rejected_gangs if spot else ()),
        hours,
        max(r.gap for r in parts),
        firm.link_prices,
        firm.transfers + (spot.transfers if spot else ()),
    )
    return TieredClearing(
        merged,
        spot.prices if spot else (),
        tuple(preemptions),
        firm,
        firm_market,
        spot,
        spot_market,
        tuple(resold),
    )


def check_tiers(tiers: TieredClearing) -> list[str]:
    """The clearing's checks on each tier (capacity, limits, reserves, uniform prices within
    a tier, balanced settlement), and that the tiers together sell no real offer's GPU-slot
    beyond its capacity."""
    problems = check_clearing(tiers.firm_market, tiers.firm)
    problems += check_settlement(tiers.firm_market, tiers.firm, settle(tiers.firm))
    if tiers.interruptible is not None and tiers.interruptible_market is not None:
        m, r = tiers.interruptible_market, tiers.interruptible
        problems += [f"interruptible tier: {p}" for p in check_clearing(m, r)]
        problems += [f"interruptible tier: {p}" for p in check_settlement(m, r, settle(r))]
    sold: dict[tuple[str, int], int] = defaultdict(int)
    for f in tiers.result.fills:
        sold[(f.offer_id, f.slot)] += f.gpus
    cap = {
        (o.id, o.start_slot + k): g
        for o in tiers.firm_market.offers
        if not _synthetic(o.id)
        for k, g in enumerate(o.gpus)
    }
    for (offer_id, slot), gpus in sorted(sold.items()):
        if gpus > cap.get((offer_id, slot), 0):
            problems.append(
                f"offer {offer_id} slot {slot}: sold {gpus} > {cap.get((offer_id, slot), 0)}"
            )
    return problems
