"""Settlement rules: who pays and receives what for a clearing, in integer fen.

* A buyer pays the clearing price of each pool-slot it got: ``price * gpus * slot_hours``.
* A provider receives the clearing price for each GPU-slot of its offers that sold.
* A buyer whose input data crosses a link pays, per :class:`~suangu.core.types.Transfer`,
  the carrier's transfer price (passed on to the carrier: the *link rent*) and the link's
  congestion price (the exchange's *congestion rent*), each in whole fen.
* Every pool-slot has one price for both sides, so payments = receipts + congestion rent +
  link rent exactly.

Individual rationality is a property of the clearing (prices are duals): the checks here
verify it on every result rather than patching amounts after the fact.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from suangu.core.types import ClearingResult, Market, Order, OrderKind, speed_of


def _plain(order: Order) -> bool:
    return order.data_gb == 0 and order.reference_class is None and not order.speed


class LineKind(StrEnum):
    BUYER_PAYMENT = "buyer_payment"
    PROVIDER_RECEIPT = "provider_receipt"
    CONGESTION_RENT = "congestion_rent"
    TRANSFER_PAYMENT = "transfer_payment"  # a buyer pays the carrier's price for its data
    LINK_CONGESTION = "link_congestion"  # a buyer pays a congested link's price
    LINK_RENT = "link_rent"  # carriers' transfer fees, collected for them


@dataclass(frozen=True, slots=True)
class SettlementLine:
    kind: LineKind
    member_id: str
    ref: str  # order id (payments, transfers), offer id (receipts)
    pool_id: str  # "from->to" regions for transfer lines
    slot: int
    gpus: int
    price_fen: int
    amount_fen: int


@dataclass(frozen=True)
class Settlement:
    lines: tuple[SettlementLine, ...]
    payments_fen: int
    receipts_fen: int
    congestion_rent_fen: int
    by_member: Mapping[str, int] = field(default_factory=dict)  # + paid, - received
    #: Carriers' transfer fees the buyers paid for moving data (passed to the carriers).
    link_rent_fen: int = 0

    @property
    def balanced(self) -> bool:
        return self.payments_fen == self.receipts_fen + self.congestion_rent_fen + (
            self.link_rent_fen
        )


def settle(result: ClearingResult) -> Settlement:
    """Payment and receipt lines of a clearing."""
    hours = result.slot_hours
    lines: list[SettlementLine] = []
    by_member: dict[str, int] = defaultdict(int)
    for a in result.allocations:
        amount = a.price_fen * a.gpus * hours
        lines.append(
            SettlementLine(
                LineKind.BUYER_PAYMENT,
                a.buyer_id,
                a.order_id,
                a.pool_id,
                a.slot,
                a.gpus,
                a.price_fen,
                amount,
            )
        )
        by_member[a.buyer_id] += amount
    for f in result.fills:
        amount = f.price_fen * f.gpus * hours
        lines.append(
            SettlementLine(
                LineKind.PROVIDER_RECEIPT,
                f.provider_id,
                f.offer_id,
                f.pool_id,
                f.slot,
                f.gpus,
                f.price_fen,
                amount,
            )
        )
        by_member[f.provider_id] -= amount
    for t in result.transfers:
        route = f"{t.from_region}->{t.to_region}"
        for kind, price, amount in (
            (LineKind.TRANSFER_PAYMENT, t.transfer_fen_per_gb, t.carrier_fen),
            (LineKind.LINK_CONGESTION, t.congestion_fen_per_gb, t.congestion_fen),
        ):
            if amount:
                lines.append(
                    SettlementLine(kind, t.buyer_id, t.order_id, route, 0, 0, price, amount)
                )
                by_member[t.buyer_id] += amount
    paying = (LineKind.BUYER_PAYMENT, LineKind.TRANSFER_PAYMENT, LineKind.LINK_CONGESTION)
    payments = sum(x.amount_fen for x in lines if x.kind in paying)
    receipts = sum(x.amount_fen for x in lines if x.kind is LineKind.PROVIDER_RECEIPT)
    link_rent = sum(x.amount_fen for x in lines if x.kind is LineKind.TRANSFER_PAYMENT)
    rent = payments - receipts - link_rent
    if link_rent:
        lines.append(
            SettlementLine(LineKind.LINK_RENT, "carriers", "transfers", "", 0, 0, 0, link_rent)
        )
    if rent:
        lines.append(
            SettlementLine(LineKind.CONGESTION_RENT, "exchange", "congestion", "", 0, 0, 0, rent)
        )
    return Settlement(tuple(lines), payments, receipts, rent, dict(by_member), link_rent)


def check_settlement(market: Market, result: ClearingResult, settlement: Settlement) -> list[str]:
    """Every broken settlement rule, as readable sentences (empty when all hold)."""
    problems: list[str] = []
    orders = {o.id: o for o in market.orders}
    offers = {o.id: o for o in market.offers}
    classes = {p.id: p.gpu_class for p in market.pools}
    hours = result.slot_hours
    paid: dict[str, int] = defaultdict(int)
    gpu_slots: dict[str, int] = defaultdict(int)
    worth: dict[str, float] = defaultdict(float)  # limit x speed x GPU-hours
    for line in settlement.lines:
        if line.kind in (LineKind.TRANSFER_PAYMENT, LineKind.LINK_CONGESTION):
            paid[line.ref] += line.amount_fen
        elif line.kind is LineKind.BUYER_PAYMENT:
            paid[line.ref] += line.amount_fen
            gpu_slots[line.ref] += line.gpus
            order = orders[line.ref]
            speed = speed_of(order, classes[line.pool_id], market.catalogue)
            worth[line.ref] += order.limit_fen * speed * line.gpus * hours
            per_line = (
                order.kind is not OrderKind.GANG and order.min_green_share == 0 and _plain(order)
            )
            if per_line and line.price_fen > order.limit_fen:
                problems.append(
                    f"order {line.ref} pays {line.price_fen} > limit {order.limit_fen}"
                    f" at {line.pool_id}/{line.slot}"
                )
        elif line.kind is LineKind.PROVIDER_RECEIPT:
            offer = offers[line.ref]
            reserve = offer.reserve_fen[line.slot - offer.start_slot]
            if line.price_fen < reserve:
                problems.append(
                    f"offer {line.ref} receives {line.price_fen} < reserve {reserve} at slot"
                    f" {line.slot}"
                )
    for order_id, amount in paid.items():
        order = orders[order_id]
        if order.kind is not OrderKind.GANG and amount > worth[order_id] + 1e-6:
            problems.append(f"order {order_id} pays {amount} fen, above its limit in total")
        if order.kind is OrderKind.GANG and amount > order.limit_fen * order.gpus * (
            order.duration_slots * hours
        ):
            problems.append(f"gang {order_id} pays above its limit")
    if not settlement.balanced:
        problems.append(
            f"payments {settlement.payments_fen} != receipts {settlement.receipts_fen}"
            f" + rent {settlement.congestion_rent_fen} + link rent {settlement.link_rent_fen}"
        )
    if settlement.congestion_rent_fen < 0:
        problems.append(f"negative congestion rent {settlement.congestion_rent_fen}")
    return problems
