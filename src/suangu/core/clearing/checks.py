"""Feasibility checks of a clearing result against its market.

Used by the tests on every clearing, and available to the service as a last line of defence:
an allocation that breaks a rule is a bug, never something to settle.
"""

from __future__ import annotations

from collections import defaultdict

from suangu.core.types import ClearingResult, Market, OrderKind


def check_clearing(
    market: Market, result: ClearingResult, *, uniform_prices: bool = True
) -> list[str]:
    """Every broken market rule in ``result``, as readable sentences (empty when all hold).

    ``uniform_prices=False`` checks a pay-as-bid result, where each buyer pays its own limit
    rather than the pool-slot's price."""
    problems: list[str] = []
    hours = market.grid.slot_hours
    orders = {o.id: o for o in market.orders}
    pools = {p.id: p for p in market.pools}
    sites = {s.id: s for s in market.sites}
    green = market.green_share
    offered: dict[tuple[str, int], int] = defaultdict(int)
    for offer in market.offers:
        for k, g in enumerate(offer.gpus):
            offered[(offer.pool_id, offer.start_slot + k)] += g
    used: dict[tuple[str, int], int] = defaultdict(int)
    per_order_slot: dict[tuple[str, int], int] = defaultdict(int)
    per_order: dict[str, int] = defaultdict(int)
    green_num: dict[str, float] = defaultdict(float)
    gang_cells: dict[str, set[tuple[str, int]]] = defaultdict(set)

    for a in result.allocations:
        order = orders.get(a.order_id)
        if order is None:
            problems.append(f"allocation to unknown order {a.order_id}")
            continue
        pool, site = pools[a.pool_id], sites[pools[a.pool_id].site_id]
        where = f"order {a.order_id} at {a.pool_id}/{a.slot}"
        if a.gpus <= 0:
            problems.append(f"{where}: non-positive GPUs {a.gpus}")
        if not (order.release_slot <= a.slot < order.deadline_slot):
            problems.append(
                f"{where}: outside window [{order.release_slot}, {order.deadline_slot})"
            )
        if not (market.first_slot <= a.slot < market.end_slot):
            problems.append(f"{where}: outside the horizon")
        if order.gpu_classes and pool.gpu_class not in order.gpu_classes:
            problems.append(f"{where}: GPU class {pool.gpu_class} not accepted")
        if order.regions and site.region not in order.regions:
            problems.append(f"{where}: region {site.region} not allowed")
        if order.provinces and site.province not in order.provinces:
            problems.append(f"{where}: province {site.province} not allowed")
        if order.max_latency_ms is not None:
            latency = site.latency_ms.get(order.home or "")
            if latency is None or latency > order.max_latency_ms:
                problems.append(f"{where}: latency {latency} above {order.max_latency_ms} ms")
        if (
            order.kind is not OrderKind.GANG
            and a.price_fen > order.limit_fen
            and not (order.min_green_share > 0)
        ):
            problems.append(f"{where}: price {a.price_fen} above limit {order.limit_fen}")
        used[(a.pool_id, a.slot)] += a.gpus
        per_order_slot[(a.order_id, a.slot)] += a.gpus
        per_order[a.order_id] += a.gpus
        shares = green.get(a.pool_id)
        share = shares[a.slot - market.first_slot] if shares else 0.0
        green_num[a.order_id] += (share - order.min_green_share) * a.gpus
        if order.kind is OrderKind.GANG:
            gang_cells[a.order_id].add((a.pool_id, a.slot))

    for cell, gpus in used.items():
        if gpus > offered[cell]:
            problems.append(f"pool-slot {cell}: {gpus} GPUs allocated, {offered[cell]} offered")
    for (order_id, slot), gpus in per_order_slot.items():
        if gpus > orders[order_id].gpus:
            problems.append(f"order {order_id} slot {slot}: {gpus} GPUs > {orders[order_id].gpus}")
    for order_id, gpu_slots in per_order.items():
        order = orders[order_id]
        if gpu_slots > order.max_gpu_slots(hours):
            problems.append(f"order {order_id}: {gpu_slots} GPU-slots above its work")
        if green_num[order_id] < -1e-9:
            problems.append(f"order {order_id}: green share below {order.min_green_share}")
    for order_id, cells in gang_cells.items():
        order = orders[order_id]
        pools_used = {p for p, _ in cells}
        slots = sorted(s for _, s in cells)
        if (
            len(pools_used) != 1
            or len(slots) != order.duration_slots
            or slots != list(range(slots[0], slots[0] + order.duration_slots))
            or per_order[order_id] != order.gpus * order.duration_slots
        ):
            problems.append(
                f"gang {order_id}: not {order.gpus} GPUs x {order.duration_slots}"
                " contiguous slots in one pool"
            )

    reserves: dict[tuple[str, int], int] = {}
    for offer in market.offers:
        for k, r in enumerate(offer.reserve_fen):
            reserves[(offer.id, offer.start_slot + k)] = r
    sold: dict[tuple[str, int], int] = defaultdict(int)
    for f in result.fills:
        sold[(f.pool_id, f.slot)] += f.gpus
        if f.price_fen < reserves[(f.offer_id, f.slot)]:
            problems.append(f"offer {f.offer_id} slot {f.slot}: price below reserve")
    for cell in set(sold) | set(used):
        if sold[cell] != used[cell]:
            problems.append(f"pool-slot {cell}: {used[cell]} allocated but {sold[cell]} sold")
    prices = {(p.pool_id, p.slot): p.price_fen for p in result.prices}
    for a in result.allocations if uniform_prices else ():
        if prices.get((a.pool_id, a.slot)) != a.price_fen:
            problems.append(f"order {a.order_id} at {a.pool_id}/{a.slot}: price differs from pool")
    return problems
