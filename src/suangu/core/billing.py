"""Billing rules: how market results become ledger transfers.

The functions here are pure: they build :class:`~suangu.core.ledger.Transfer` lists for the
caller to submit with :meth:`~suangu.core.ledger.Ledger.create_transfers`; they never touch a
ledger themselves.

Money path of one order (all amounts integer fen on the ``CNY`` ledger)

1. **Clearing** (:func:`holds_for_clearing`): one pending transfer per order from the buyer's
   cash account to the exchange clearing account, for the order's full cleared cost
   ``sum(price_fen * gpus * slot_hours)``. The buyer's cash account is limited by
   ``debits_must_not_exceed_credits``, so a hold beyond the deposit fails (``exceeds_credits``).
2. **Settlement** (:func:`settle_lease`): on metered use, one linked chain posts the hold for the
   metered cost (``price_fen * gpu_seconds // 3600`` per allocation, rounded down: the buyer
   never pays for a partial fen), which releases the rest of the hold, then pays each provider
   its share less the exchange fee and pays the fee to the exchange fee account. The clearing
   account is limited too, so it can never pay out more than was posted into it. Zero use voids
   the hold.

Data moved over network links (:attr:`~suangu.core.types.ClearingResult.transfers`) is billed
when the caller asks (``with_transfers=True`` at clearing; the service does, the simulation
reports them apart): the hold also covers the order's transfer charges (carrier +
congestion, :meth:`~suangu.core.types.ClearingResult.transfer_fen`), and settlement posts them
with the metered cost and passes them from the clearing account to the exchange's network
account (``exchange:network:<asset>``): one ``carrier:<hold id>`` transfer (the carriers'
transfer price, collected for them: the link rent) and one ``congestion:<hold id>`` (the
links' congestion rent), both with code ``data_transfer``. The data moves before the lease
starts, so the charges are posted in full whenever the order has any metered use; an order
with no use at all has its whole hold voided.

Fee rounding: per provider, ``fee = amount * fee_bp // 10_000`` (rounded down, in the
provider's favour) and ``payout = amount - fee``; so payouts plus fees equal the posted amount
exactly and the clearing account returns to zero for every settled order.

Identifiers: transfer ids are derived from the clearing id and the order id (``hold:<clearing>:
<order>``, ``post:<hold id>``, ``payout:<hold id>:<provider>``, ``fee:<hold id>``,
``void:<hold id>``), so rebuilding and resubmitting a settlement is idempotent (the ledger
answers ``exists``). Clearing ids must not contain ``:``. Account ids are
``<kind>:<member>:<asset>`` for members and ``exchange:<role>:<asset>`` for the exchange.

Provider attribution: an allocation names a pool, not an offer; each pool is taken to belong to
one provider (:func:`pool_providers` derives the mapping from the clearing's offer fills and
refuses a pool sold by several providers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

from suangu.core.errors import UnknownReferenceError, ValidationError
from suangu.core.ledger import (
    Account,
    AccountFlags,
    AccountKind,
    Asset,
    Transfer,
    TransferCode,
    hold,
    linked,
    post,
    transfer,
    void,
)
from suangu.core.types import (
    SECONDS_PER_HOUR,
    Allocation,
    ClearingResult,
    Order,
    OrderKind,
    speed_of,
)

#: Basis points in one whole (a fee of 10,000 bp takes everything).
BP_PER_WHOLE = 10_000
EXCHANGE = "exchange"
EXTERNAL = "external"
BANK = "bank"
#: Owners of the ledger's internal accounts (the exchange's, the bank's, the certificate
#: issuer's and the atmosphere's), and the heads of account ids (``buyer:<member>:CNY``): no
#: member may have one of these ids, in any case, or it would be taken for the owner of
#: these accounts (``GET /accounts`` shows a member the accounts it owns).
RESERVED_MEMBER_IDS = frozenset(
    {EXCHANGE, EXTERNAL, BANK, "issuer", "atmosphere", "buyer", "provider", "operator"}
)


def reserved_member_id(member_id: str) -> bool:
    """Whether ``member_id`` is one of :data:`RESERVED_MEMBER_IDS` (ignoring case)."""
    return member_id.strip().lower() in RESERVED_MEMBER_IDS


# ---------------------------------------------------------------------------------------------
# Account ids and account specs


def buyer_account(member_id: str, asset: Asset = Asset.CNY) -> str:
    return f"buyer:{member_id}:{asset}"


def provider_account(member_id: str, asset: Asset = Asset.CNY) -> str:
    return f"provider:{member_id}:{asset}"


def exchange_fee_account(asset: Asset = Asset.CNY) -> str:
    return f"exchange:fees:{asset}"


def exchange_clearing_account(asset: Asset = Asset.CNY) -> str:
    return f"exchange:clearing:{asset}"


def exchange_network_account(asset: Asset = Asset.CNY) -> str:
    """Where orders' data transfer charges go: carriers' fees (passed on) and link rent."""
    return f"exchange:network:{asset}"


def external_account(name: str = BANK, asset: Asset = Asset.CNY) -> str:
    """An external account: ``bank`` for cash in and out, or e.g. ``issuer`` for certificates."""
    return f"external:{name}:{asset}"


def new_buyer_account(member_id: str, asset: Asset = Asset.CNY) -> Account:
    """A buyer's account; cash accounts cannot spend (or hold) more than was deposited."""
    flags = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS if asset is Asset.CNY else AccountFlags.NONE
    return Account(
        id=buyer_account(member_id, asset),
        ledger=asset,
        kind=AccountKind.BUYER,
        owner=member_id,
        flags=flags,
    )


def new_provider_account(member_id: str, asset: Asset = Asset.CNY) -> Account:
    return Account(
        id=provider_account(member_id, asset),
        ledger=asset,
        kind=AccountKind.PROVIDER,
        owner=member_id,
    )


def new_exchange_accounts(asset: Asset = Asset.CNY) -> list[Account]:
    """The exchange's fee, clearing and network accounts and the external bank account of
    ``asset``.

    The clearing account may never pay out more than was posted into it.
    """
    return [
        Account(
            id=exchange_network_account(asset),
            ledger=asset,
            kind=AccountKind.EXCHANGE_NETWORK,
            owner=EXCHANGE,
        ),
        Account(
            id=exchange_fee_account(asset),
            ledger=asset,
            kind=AccountKind.EXCHANGE_FEES,
            owner=EXCHANGE,
        ),
        Account(
            id=exchange_clearing_account(asset),
            ledger=asset,
            kind=AccountKind.EXCHANGE_CLEARING,
            owner=EXCHANGE,
            flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
        ),
        Account(
            id=external_account(BANK, asset),
            ledger=asset,
            kind=AccountKind.EXTERNAL,
            owner=EXTERNAL,
        ),
    ]


# ---------------------------------------------------------------------------------------------
# Cash in and out


def deposit(transfer_id: str, member_id: str, amount_fen: int) -> Transfer:
    """Cash in: the bank pays ``amount_fen`` into the buyer's cash account."""
    return transfer(
        transfer_id,
        external_account(BANK),
        buyer_account(member_id),
        amount_fen,
        Asset.CNY,
        TransferCode.DEPOSIT,
    )


def withdrawal(
    transfer_id: str, account_id: str, amount_fen: int, *, user_data: str = ""
) -> Transfer:
    """Cash out: ``amount_fen`` leaves a member's cash account (``account_id``) to the bank."""
    return transfer(
        transfer_id,
        account_id,
        external_account(BANK),
        amount_fen,
        Asset.CNY,
        TransferCode.WITHDRAWAL,
        user_data=user_data,
    )


# ---------------------------------------------------------------------------------------------
# Clearing -> holds


def max_cost_fen(order: Order, slot_hours: int, classes: Iterable[str] = ()) -> int:
    """The most ``order`` can be charged by one clearing, data transfer included, given that
    nobody pays above their limit: ``limit x its most GPU-slots x slot hours``
    (:meth:`Order.max_gpu_slots`). A batch or service order's limit is per reference
    GPU-hour of work, so a faster class costs no more in total; a whole-window service order
    (no ``gpu_hours``) buys GPU time, and a GPU-hour of a class ``speed`` times the reference
    may cost ``speed x limit``: the fastest of the market's ``classes`` it may use counts."""
    if order.kind is OrderKind.BATCH and (order.reference_class or order.speed):
        return order.limit_fen * order.gpu_hours  # no GPU-hour costs more than limit x speed
    most = order.limit_fen * order.max_gpu_slots(slot_hours) * slot_hours
    if (
        order.kind is not OrderKind.SERVICE
        or order.gpu_hours
        or not (order.reference_class or order.speed)
    ):
        return most
    speeds = [1.0]
    for c in classes:
        if order.gpu_classes and c not in order.gpu_classes:
            continue
        try:
            speeds.append(speed_of(order, c))
        except UnknownReferenceError:
            continue
    return math.ceil(most * max(speeds))


def funded_orders(
    orders: Sequence[Order], available: Mapping[str, int], cost: Callable[[Order], int]
) -> tuple[list[Order], list[str]]:
    """Split ``orders`` into those that may enter a clearing and the ids of those that may not.

    The funding rule: an order enters only when its buyer's available money (posted balance
    less pending holds) still covers its maximum cost (``cost``, :func:`max_cost_fen`) after
    the buyer's orders before it, in id order. Every hold the clearing then takes is covered,
    so a clearing is solved once: an order from a buyer who cannot pay never enters the solve
    (it stays open, and enters a later clearing once the buyer's money covers it)."""
    left = dict(available)
    funded: list[Order] = []
    unfunded: list[str] = []
    for order in sorted(orders, key=lambda o: o.id):
        need = cost(order)
        if need <= left.get(order.buyer_id, 0):
            left[order.buyer_id] -= need
            funded.append(order)
        else:
            unfunded.append(order.id)
    return funded, unfunded


def hold_id(clearing_id: str, order_id: str) -> str:
    """The id of the hold placed for ``order_id`` by clearing ``clearing_id``."""
    _check_token(clearing_id, "clearing_id")
    return f"hold:{clearing_id}:{order_id}"


def allocation_cost(allocation: Allocation, slot_hours: int) -> int:
    """What an allocation costs if used in full, fen."""
    return allocation.price_fen * allocation.gpus * slot_hours


def orders_of(result: ClearingResult) -> dict[str, list[Allocation]]:
    """The allocations of ``result`` grouped by order, orders sorted by id."""
    grouped: dict[str, list[Allocation]] = {}
    for a in result.allocations:
        grouped.setdefault(a.order_id, []).append(a)
    return {order_id: grouped[order_id] for order_id in sorted(grouped)}


def holds_for_clearing(
    result: ClearingResult, clearing_id: str, timeout_s: int, *, with_transfers: bool = False
) -> list[Transfer]:
    """One pending transfer per order with allocations, sorted by order id.

    Each holds the order's full cost, ``sum(price_fen * gpus * slot_hours)``, from the buyer's
    cash account in the exchange clearing account, expiring after ``timeout_s`` (0 = never);
    ``with_transfers``: plus the order's data transfer charges (``result.transfer_fen``),
    settled with ``settle_lease(..., carrier_fen=, congestion_fen=)``. Orders that cost
    nothing (all prices zero, no charges) get no hold.
    """
    _check_token(clearing_id, "clearing_id")
    _check_nonnegative(timeout_s, "timeout_s")
    _check_slot_hours(result.slot_hours)
    out = []
    charges = result.transfer_charges() if with_transfers else {}
    for order_id, allocations in orders_of(result).items():
        buyer_id = _buyer_of(allocations)
        amount = sum(allocation_cost(a, result.slot_hours) for a in allocations)
        amount += sum(charges.get(order_id, (0, 0)))
        if amount == 0:
            continue
        out.append(
            hold(
                hold_id(clearing_id, order_id),
                buyer_account(buyer_id),
                exchange_clearing_account(),
                amount,
                Asset.CNY,
                TransferCode.ORDER_HOLD,
                timeout_s=timeout_s,
                user_data=order_id,
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# Metered use -> settlement


def pool_providers(result: ClearingResult) -> dict[str, str]:
    """Which provider sold each pool in ``result``, from its offer fills.

    Raises :class:`ValidationError` if one pool was sold by several providers (allocations do
    not say which offer served them, so the payout would be ambiguous).
    """
    out: dict[str, str] = {}
    for fill in result.fills:
        if fill.gpus <= 0:
            continue
        known = out.setdefault(fill.pool_id, fill.provider_id)
        if known != fill.provider_id:
            raise ValidationError(
                f"pool {fill.pool_id!r} was sold by {known!r} and {fill.provider_id!r}",
                field="fills",
                fix="give each pool one provider, or pass the pool -> provider map yourself",
            )
    return out


def metered_cost(allocation: Allocation, gpu_seconds: int, slot_hours: int) -> int:
    """The cost of metered use, fen: ``price_fen * gpu_seconds // 3600``.

    ``gpu_seconds`` is capped at the allocation's ``gpus * slot_hours * 3600``, so the cost
    never exceeds :func:`allocation_cost`.
    """
    _check_nonnegative(gpu_seconds, "gpu_seconds")
    used = min(gpu_seconds, allocation.gpus * slot_hours * SECONDS_PER_HOUR)
    return allocation.price_fen * used // SECONDS_PER_HOUR


def fee_split(amount_fen: int, fee_bp: int) -> tuple[int, int]:
    """``(payout, fee)`` of ``amount_fen`` at ``fee_bp`` basis points; they add up exactly."""
    _check_nonnegative(amount_fen, "amount_fen")
    _check_fee(fee_bp)
    fee = amount_fen * fee_bp // BP_PER_WHOLE
    return amount_fen - fee, fee


def settle_lease(
    hold_transfer_id: str,
    allocations: Sequence[Allocation],
    metered_gpu_seconds: Mapping[Allocation, int],
    providers: Mapping[str, str],
    fee_bp: int,
    *,
    slot_hours: int = 1,
    carrier_fen: int = 0,
    congestion_fen: int = 0,
    resold: Mapping[Allocation, Sequence[tuple[str, int, str]]] | None = None,
) -> list[Transfer]:
    """The transfers that settle one order's hold against its metered use.

    ``allocations`` are all the allocations of one order (as cleared); ``metered_gpu_seconds``
    gives the metered GPU-seconds of each (missing = 0; capped at the allocation's size);
    ``providers`` maps pool id -> provider member id; ``fee_bp`` is the exchange fee in basis
    points (300 = 3%). Returns a linked chain: the post of the hold for the metered cost (which
    releases the rest), a payout to each provider with use (sorted by provider id) and one fee
    transfer, skipping zero amounts. Zero use returns a single void of the hold; an order that
    cost nothing (no hold was placed) returns ``[]``.

    ``carrier_fen`` and ``congestion_fen``: the order's data transfer charges, included in its
    hold (``holds_for_clearing(..., with_transfers=True)``); with any metered use they are
    posted in full and passed to the exchange network account (``carrier:`` and
    ``congestion:`` transfers at the end of the chain).

    ``resold``: allocations that got GPUs a buyer resold (:mod:`suangu.core.products`), with
    ``(seller, GPUs, the seller's lease id)`` parts: that share of the allocation's metered
    cost (``cost x GPUs // allocation GPUs``) goes to the seller less the fee, in one
    ``resale:`` transfer per part whose user data is the seller's lease (the chain), instead
    of to the provider.
    """
    _check_fee(fee_bp)
    _check_slot_hours(slot_hours)
    _check_nonnegative(carrier_fen, "carrier_fen")
    _check_nonnegative(congestion_fen, "congestion_fen")
    if not allocations:
        raise ValidationError("is empty", field="allocations", fix="pass the order's allocations")
    order_ids = {a.order_id for a in allocations}
    if len(order_ids) != 1:
        raise ValidationError(
            f"belong to several orders: {sorted(order_ids)}",
            field="allocations",
            fix="settle one order at a time",
        )
    order_id = allocations[0].order_id
    buyer_id = _buyer_of(allocations)
    known = set(allocations)
    for a in metered_gpu_seconds:
        if a not in known:
            raise UnknownReferenceError(
                f"metered allocation {a} is not one of the order's allocations",
                field="metered_gpu_seconds",
                fix="key metered use by the cleared allocations of this order",
            )
    charges = carrier_fen + congestion_fen
    held = sum(allocation_cost(a, slot_hours) for a in allocations) + charges
    if held == 0:
        return []
    used = any(metered_gpu_seconds.get(a, 0) > 0 for a in allocations)
    per_provider: dict[str, int] = {}
    per_resale: dict[tuple[str, str], int] = {}
    for a in allocations:
        cost = metered_cost(a, metered_gpu_seconds.get(a, 0), slot_hours)
        if cost == 0:
            continue
        for seller, gpus, ref in (resold or {}).get(a, ()):
            share = cost * min(gpus, a.gpus) // a.gpus
            per_resale[(seller, ref)] = per_resale.get((seller, ref), 0) + share
            cost -= share
        if cost == 0:
            continue
        provider_id = providers.get(a.pool_id)
        if provider_id is None:
            raise UnknownReferenceError(
                f"no provider for pool {a.pool_id!r}",
                field="providers",
                fix="map every pool with metered use to its provider (see pool_providers)",
            )
        per_provider[provider_id] = per_provider.get(provider_id, 0) + cost
    if not used:
        charges = 0
    posted = sum(per_provider.values()) + sum(per_resale.values()) + charges
    clearing = exchange_clearing_account()
    if posted == 0:
        return [
            void(
                f"void:{hold_transfer_id}",
                hold_transfer_id,
                TransferCode.HOLD_RELEASE,
                debit_account_id=buyer_account(buyer_id),
                credit_account_id=clearing,
                ledger=Asset.CNY,
                user_data=order_id,
            )
        ]
    chain = [
        post(
            f"post:{hold_transfer_id}",
            hold_transfer_id,
            posted,
            TransferCode.LEASE_PAYMENT,
            debit_account_id=buyer_account(buyer_id),
            credit_account_id=clearing,
            ledger=Asset.CNY,
            user_data=order_id,
        )
    ]
    total_fee = 0
    for provider_id in sorted(per_provider):
        payout, fee = fee_split(per_provider[provider_id], fee_bp)
        total_fee += fee
        if payout:
            chain.append(
                transfer(
                    f"payout:{hold_transfer_id}:{provider_id}",
                    clearing,
                    provider_account(provider_id),
                    payout,
                    Asset.CNY,
                    TransferCode.PROVIDER_PAYOUT,
                    user_data=order_id,
                )
            )
    for k, (seller, ref) in enumerate(sorted(per_resale)):
        payout, fee = fee_split(per_resale[(seller, ref)], fee_bp)
        total_fee += fee
        if payout:
            chain.append(
                transfer(
                    f"resale:{hold_transfer_id}:{k}",
                    clearing,
                    buyer_account(seller),
                    payout,
                    Asset.CNY,
                    TransferCode.PROVIDER_PAYOUT,
                    user_data=ref,
                )
            )
    if total_fee:
        chain.append(
            transfer(
                f"fee:{hold_transfer_id}",
                clearing,
                exchange_fee_account(),
                total_fee,
                Asset.CNY,
                TransferCode.EXCHANGE_FEE,
                user_data=order_id,
            )
        )
    for prefix, amount in (("carrier", carrier_fen), ("congestion", congestion_fen)):
        if charges and amount:
            chain.append(
                transfer(
                    f"{prefix}:{hold_transfer_id}",
                    clearing,
                    exchange_network_account(),
                    amount,
                    Asset.CNY,
                    TransferCode.DATA_TRANSFER,
                    user_data=order_id,
                )
            )
    return linked(chain)


def settle_order(
    result: ClearingResult,
    clearing_id: str,
    order_id: str,
    metered_gpu_seconds: Mapping[Allocation, int],
    providers: Mapping[str, str],
    fee_bp: int,
) -> list[Transfer]:
    """:func:`settle_lease` for ``order_id`` of ``result``, with the hold of ``clearing_id``."""
    allocations = [a for a in result.allocations if a.order_id == order_id]
    if not allocations:
        raise UnknownReferenceError(
            f"order {order_id!r} has no allocations in this clearing",
            field="order_id",
            fix="settle only orders that cleared",
        )
    return settle_lease(
        hold_id(clearing_id, order_id),
        allocations,
        metered_gpu_seconds,
        providers,
        fee_bp,
        slot_hours=result.slot_hours,
    )


# ---------------------------------------------------------------------------------------------
# Checks


def _buyer_of(allocations: Iterable[Allocation]) -> str:
    buyers = {a.buyer_id for a in allocations}
    if len(buyers) != 1:
        raise ValidationError(
            f"one order has allocations for several buyers: {sorted(buyers)}",
            field="allocations.buyer_id",
            fix="every allocation of an order must name the order's buyer",
        )
    return buyers.pop()


def _check_token(value: str, field_name: str) -> None:
    if not value or ":" in value:
        raise ValidationError(
            f"must be a non-empty id without ':', got {value!r}",
            field=field_name,
            fix="use an id such as clr-000123",
        )


def _check_nonnegative(value: int, field_name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(
            f"must be a non-negative integer, got {value!r}", field=field_name, fix="use >= 0"
        )


def _check_fee(fee_bp: int) -> None:
    if isinstance(fee_bp, bool) or not isinstance(fee_bp, int) or not 0 <= fee_bp <= BP_PER_WHOLE:
        raise ValidationError(
            f"must be an integer between 0 and {BP_PER_WHOLE}, got {fee_bp!r}",
            field="fee_bp",
            fix="give the fee in basis points: 300 = 3%",
        )


def _check_slot_hours(slot_hours: int) -> None:
    if isinstance(slot_hours, bool) or not isinstance(slot_hours, int) or slot_hours < 1:
        raise ValidationError(
            f"must be a positive integer, got {slot_hours!r}",
            field="slot_hours",
            fix="hours per slot of the market grid, e.g. 1",
        )
