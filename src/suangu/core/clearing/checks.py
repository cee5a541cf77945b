"""Feasibility checks of a clearing result against its market.

Used by the tests on every clearing, and available to the service as a last line of defence:
an allocation that breaks a rule is a bug, never something to settle.
"""

from __future__ import annotations

from collections import defaultdict

from suangu.core.network import latency_ms, links_by_key, pool_terms, work_hours
from suangu.core.types import ClearingResult, Market, Order, OrderKind, speed_of

#: Tolerance of float quantities (GB, reference GPU-hours).
EPS = 1e-6


def _plain(order: Order) -> bool:
    return order.data_gb == 0 and order.reference_class is None and not order.speed


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
    links = links_by_key(market)
    ref_work: dict[str, float] = defaultdict(float)  # reference GPU-hours done
    value: dict[str, float] = defaultdict(float)  # limit x speed x GPU-hours
    bill: dict[str, int] = defaultdict(int)  # fen paid for GPU-slots
    charges = result.transfer_charges()  # order -> (carrier, congestion) fen for its data
    moved: dict[tuple[str, str, str], float] = defaultdict(float)  # (order, from, to) -> GB

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
        if pool.id in order.avoid_pools:
            problems.append(f"{where}: a pool the order avoids")
        if order.regions and site.region not in order.regions:
            problems.append(f"{where}: region {site.region} not allowed")
        if order.provinces and site.province not in order.provinces:
            problems.append(f"{where}: province {site.province} not allowed")
        if order.max_latency_ms is not None:
            latency = latency_ms(site, order.home or "", links)
            if latency is None or latency > order.max_latency_ms:
                problems.append(f"{where}: latency {latency} above {order.max_latency_ms} ms")
        terms = pool_terms(market, order, pool, site, links)
        if (
            order.data_gb > 0
            and order.home != site.region
            and (order.home, site.region) not in links
        ):
            problems.append(f"{where}: no link {order.home} -> {site.region} for its data")
        # The data leaves home when the clearing decides (its first slot) or at release.
        arrival = max(order.release_slot, market.first_slot)
        if terms is not None and a.slot < arrival + terms.delay_slots:
            problems.append(
                f"{where}: starts before its data arrives (slot {arrival + terms.delay_slots})"
            )
        speed = speed_of(order, pool.gpu_class, market.catalogue)
        ref_work[a.order_id] += speed * a.gpus * hours
        value[a.order_id] += order.limit_fen * speed * a.gpus * hours
        bill[a.order_id] += a.price_fen * a.gpus * hours
        if terms is not None and terms.link is not None:
            moved[(a.order_id, order.home or "", site.region)] += terms.gb_per_gpu_slot * a.gpus
        if (
            order.kind is not OrderKind.GANG
            and a.price_fen > order.limit_fen
            and not (order.min_green_share > 0)
            and _plain(order)
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
        if _plain(order) and gpu_slots > order.max_gpu_slots(hours):
            problems.append(f"order {order_id}: {gpu_slots} GPU-slots above its work")
        full_service = order.kind is OrderKind.SERVICE and order.gpu_hours == 0
        counted = order.kind is not OrderKind.GANG and not full_service
        if counted and ref_work[order_id] > work_hours(order, hours) + EPS:
            problems.append(
                f"order {order_id}: {ref_work[order_id]:.3f} reference GPU-hours above"
                f" its work {work_hours(order, hours):g}"
            )
        if green_num[order_id] < -1e-9:
            problems.append(f"order {order_id}: green share below {order.min_green_share}")
        charged = bill[order_id] + sum(charges.get(order_id, (0, 0)))
        if order.kind is not OrderKind.GANG and charged > value[order_id] + EPS:
            problems.append(
                f"order {order_id}: pays {charged} fen with transfers, above its value"
                f" {value[order_id]:.0f}"
            )
    for order_id, cells in gang_cells.items():
        order = orders[order_id]
        pools_used = {p for p, _ in cells}
        slots = sorted(s for _, s in cells)
        pool = pools[next(iter(pools_used))]
        terms = pool_terms(market, order, pool, sites[pool.site_id], links)
        duration = order.duration_slots if terms is None else terms.duration_slots
        if (
            len(pools_used) != 1
            or len(slots) != duration
            or slots != list(range(slots[0], slots[0] + duration))
            or per_order[order_id] != order.gpus * duration
        ):
            problems.append(
                f"gang {order_id}: not {order.gpus} GPUs x {duration} contiguous slots in one pool"
            )
            continue
        if terms is not None and terms.link is not None:
            key = (order_id, order.home or "", sites[pool.site_id].region)
            moved[key] = float(order.data_gb)
        worth = order.limit_fen * order.gpus * order.duration_slots * hours
        if bill[order_id] + sum(charges.get(order_id, (0, 0))) > worth:
            problems.append(f"gang {order_id}: pays above its value {worth} fen with transfers")

    # Complete-or-nothing batch orders: all of their work or none of it.
    if any(o.complete_or_nothing for o in market.orders):
        from suangu.core.clearing.complete import partly_served

        for share, _, order_id in partly_served(market, result.allocations):
            problems.append(f"order {order_id}: complete or nothing, served {share:.0%}")

    # Data moved: the transfer records match the allocations, and no link carries more
    # than its bandwidth over the horizon.
    recorded: dict[tuple[str, str, str], float] = defaultdict(float)
    for t in result.transfers:
        recorded[(t.order_id, t.from_region, t.to_region)] += t.gb
        if t.carrier_fen > t.gb * t.transfer_fen_per_gb + EPS or t.carrier_fen < 0:
            problems.append(f"transfer of {t.order_id}: carrier charge {t.carrier_fen} fen wrong")
        if t.congestion_fen > t.gb * t.congestion_fen_per_gb + EPS or t.congestion_fen < 0:
            problems.append(f"transfer of {t.order_id}: congestion charge wrong")
    for key in set(moved) | set(recorded):
        if abs(moved[key] - recorded[key]) > EPS * max(1.0, moved[key]):
            problems.append(
                f"order {key[0]}: moves {moved[key]:.3f} GB {key[1]} -> {key[2]}, transfer"
                f" records say {recorded[key]:.3f}"
            )
    per_link: dict[tuple[str, str], float] = defaultdict(float)
    for (_, frm, to), gb in moved.items():
        per_link[(frm, to)] += gb
    for (frm, to), gb in per_link.items():
        link = links.get((frm, to))
        if link is None:
            continue  # reported per allocation above
        capacity = link.gb_per_slot(market.grid.slot_seconds) * market.n_slots
        if gb > capacity * (1 + EPS) + EPS:
            problems.append(
                f"link {frm} -> {to}: {gb:.3f} GB moved, bandwidth allows {capacity:.3f}"
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
