"""Cancelling an order, also once a clearing has filled part of it.

An ``open`` order is simply cancelled. A ``partially`` filled order (one that clearings
still offer the rest of its work to) stops its remaining work, in one transaction:

* the order becomes ``cancelled``, so no later clearing offers it again
  (:func:`suangu.api.services.clearable_orders` takes only ``open`` and ``partially``
  orders; a clearing that read it before the cancel fails its compare-and-set and clears
  again without it);
* its leases whose slot has not started yet (``scheduled``, slot after the current one) fail:
  nothing was metered on them, so nothing is paid for them;
* every clearing's group of its leases that is now all completed or failed is settled by the
  ledger's one settlement path (:func:`suangu.api.services.settle_done_orders`): metered use
  is paid, the rest of that clearing's hold is released, in integer fen, with the ledger
  balanced. Groups with a lease still running or in its slot settle as usual when it ends.

A cancelled order cancelled again is answered as it is. An expired order is a 409, and so
is a ``cleared`` one: it got all it asked for, and its leases are firm contracts that run
(or that their provider fails) and settle as usual.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from suangu.api.services import settle_done_orders
from suangu.store.db import TransientConflict
from suangu.store.ledger import SqlLedger
from suangu.store.models import LeaseRow, LeaseState, OrderRow, OrderStatus
from suangu.store.repositories import OrderRecord, Orders, rowcount


def provider_ids(s: Session, order_id: str) -> list[str]:
    """The providers of the order's leases (their accounts must exist before settling)."""
    q = select(LeaseRow.provider_id).where(LeaseRow.order_id == order_id).distinct()
    return sorted(p for p in s.scalars(q) if p)


def cancel_order(
    s: Session,
    ledger: SqlLedger,
    order_id: str,
    buyer_id: str,
    *,
    current_slot: int,
    fee_bp: int,
    now: int,
) -> OrderRecord:
    """Cancel ``buyer_id``'s order ``order_id`` (see the module docs); the order after."""
    orders = Orders(s)
    record = orders.get(order_id, buyer_id)
    if record.status is not OrderStatus.PARTIALLY:
        return orders.cancel(order_id, buyer_id)  # open, cancelled, or a 409
    pending = list(
        s.execute(
            select(LeaseRow.id, LeaseRow.clearing_id).where(
                LeaseRow.order_id == order_id,
                LeaseRow.state == str(LeaseState.SCHEDULED),
                LeaseRow.slot > current_slot,
            )
        )
    )
    done = s.execute(
        update(OrderRow)
        .where(OrderRow.id == order_id, OrderRow.status == str(OrderStatus.PARTIALLY))
        .values(status=str(OrderStatus.CANCELLED))
        .execution_options(synchronize_session=False)
    )
    if rowcount(done) != 1:  # a clearing changed it meanwhile: run the cancel again
        raise TransientConflict(f"order {order_id!r} changed meanwhile")
    ids = [lease_id for lease_id, _ in pending]
    if ids:
        failed = s.execute(
            update(LeaseRow)
            .where(LeaseRow.id.in_(ids), LeaseRow.state == str(LeaseState.SCHEDULED))
            .values(state=str(LeaseState.FAILED))
            .execution_options(synchronize_session=False)
        )
        if rowcount(failed) != len(ids):  # a lease started meanwhile
            raise TransientConflict(f"a lease of order {order_id!r} changed meanwhile")
        groups = {(clearing_id, order_id) for _, clearing_id in pending}
        settle_done_orders(s, ledger, groups, fee_bp, now)
    s.expire_all()
    return orders.get(order_id, buyer_id)
