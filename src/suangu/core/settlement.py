"""Settlement rules: who pays and receives what for a clearing, in integer fen.

* A buyer pays the clearing price of each pool-slot it got: ``price * gpus * slot_hours``.
* A provider receives the clearing price for each GPU-slot of its offers that sold.
* Every pool-slot has one price for both sides, so payments = receipts + congestion rent
  exactly; the rent is zero until network rows (link bandwidth) price congestion separately.

Individual rationality is a property of the clearing (prices are duals): the checks here
verify it on every result rather than patching amounts after the fact.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from suangu.core.types import ClearingResult, Market, OrderKind


class LineKind(StrEnum):
    BUYER_PAYMENT = "buyer_payment"
    PROVIDER_RECEIPT = "provider_receipt"
    CONGESTION_RENT = "congestion_rent"


@dataclass(frozen=True, slots=True)
class SettlementLine:
    kind: LineKind
    member_id: str
    ref: str  # order id (payments), offer id (receipts)
    pool_id: str
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

    @property
    def balanced(self) -> bool:
        return self.payments_fen == self.receipts_fen + self.congestion_rent_fen


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
    payments = sum(x.amount_fen for x in lines if x.kind is LineKind.BUYER_PAYMENT)
    receipts = sum(x.amount_fen for x in lines if x.kind is LineKind.PROVIDER_RECEIPT)
    rent = payments - receipts
    if rent:
        lines.append(
            SettlementLine(LineKind.CONGESTION_RENT, "exchange", "congestion", "", 0, 0, 0, rent)
        )
    return Settlement(tuple(lines), payments, receipts, rent, dict(by_member))


def check_settlement(market: Market, result: ClearingResult, settlement: Settlement) -> list[str]:
    """Every broken settlement rule, as readable sentences (empty when all hold)."""
    problems: list[str] = []
    orders = {o.id: o for o in market.orders}
    offers = {o.id: o for o in market.offers}
    hours = result.slot_hours
    paid: dict[str, int] = defaultdict(int)
    gpu_slots: dict[str, int] = defaultdict(int)
    for line in settlement.lines:
        if line.kind is LineKind.BUYER_PAYMENT:
            paid[line.ref] += line.amount_fen
            gpu_slots[line.ref] += line.gpus
            order = orders[line.ref]
            per_line = order.kind is not OrderKind.GANG and order.min_green_share == 0
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
        if amount > order.limit_fen * gpu_slots[order_id] * hours:
            problems.append(f"order {order_id} pays {amount} fen, above its limit in total")
        if order.kind is OrderKind.GANG and amount > order.limit_fen * order.gpus * (
            order.duration_slots * hours
        ):
            problems.append(f"gang {order_id} pays above its limit")
    if not settlement.balanced:
        problems.append(
            f"payments {settlement.payments_fen} != receipts {settlement.receipts_fen}"
            f" + rent {settlement.congestion_rent_fen}"
        )
    if settlement.congestion_rent_fen < 0:
        problems.append(f"negative congestion rent {settlement.congestion_rent_fen}")
    return problems
