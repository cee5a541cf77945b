"""Where an order may run and what running there costs: latency, data links, delay, speed.

The rules (one place, used by the clearing model, the baseline greedy clearing and the
checks):

* **Latency** from an order's ``home`` to a site: the site's own ``latency_ms[home]`` entry if
  present, else 0 when ``home`` is the site's region, else the latency of the link
  ``home -> site.region``; no entry and no link: unknown, and a latency-bound order may not
  use the site.
* **Data**: an order with ``data_gb > 0`` holds its input at ``home``. Running in another
  region ``r`` moves it over the link ``home -> r`` (no link: ``r`` is not eligible); the start
  waits :func:`~suangu.core.types.transfer_slots` whole slots after the release.
* **Work and speed**: a GPU-slot on class ``c`` does ``speed(c) * slot_hours`` reference
  GPU-hours (:func:`~suangu.core.types.speed_of`) and is worth ``limit_fen * speed(c)`` per
  GPU-hour. The share of the order's work one GPU-slot does is
  ``speed(c) * slot_hours / work_hours``; the data moved and its transfer cost are that share
  of ``data_gb`` and of ``data_gb * price_fen_per_gb``. A service order with ``gpu_hours = 0``
  (the whole window) counts replica-slots instead: each GPU-slot is ``1 / (gpus * window)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from suangu.core.types import (
    Link,
    Market,
    Offer,
    Order,
    OrderKind,
    Pool,
    Site,
    speed_of,
    transfer_slots,
)

__all__ = [
    "PoolTerms",
    "feasible_pools",
    "latency_ms",
    "links_by_key",
    "pool_terms",
    "work_hours",
    "work_share",
]


def links_by_key(market: Market) -> dict[tuple[str, str], Link]:
    return {link.key: link for link in market.links}


def latency_ms(site: Site, home: str, links: Mapping[tuple[str, str], Link]) -> float | None:
    """One-way latency from ``home`` to ``site``, or None when unknown."""
    if home in site.latency_ms:
        return float(site.latency_ms[home])
    if home == site.region:
        return 0.0
    link = links.get((home, site.region))
    return None if link is None else float(link.latency_ms)


def work_hours(order: Order, slot_hours: int) -> float:
    """The order's work in reference GPU-hours (a full-window service: its replica-hours)."""
    if order.kind is OrderKind.GANG:
        return float(order.gpus * order.duration_slots * slot_hours)
    if order.kind is OrderKind.SERVICE and order.gpu_hours == 0:
        return float(order.gpus * order.window * slot_hours)
    return float(order.gpu_hours)


def work_share(order: Order, speed: float, slot_hours: int) -> float:
    """Share of the order's work one GPU-slot at ``speed`` does."""
    if order.kind is OrderKind.SERVICE and order.gpu_hours == 0:
        return 1.0 / (order.gpus * order.window)
    return speed * slot_hours / work_hours(order, slot_hours)


@dataclass(frozen=True, slots=True)
class PoolTerms:
    """What running ``order`` in one pool means."""

    speed: float  # reference GPU-hours per GPU-hour
    delay_slots: int  # slots the start waits for the input data
    link: Link | None  # the link the data crosses, None at home or without data
    gb_per_gpu_slot: float  # GB moved per GPU-slot (0 without a link)
    duration_slots: int  # gang orders: slots the gang runs on this class; 0 otherwise

    @property
    def transfer_fen_per_gpu_slot(self) -> float:
        return 0.0 if self.link is None else self.gb_per_gpu_slot * self.link.price_fen_per_gb


def pool_terms(
    market: Market,
    order: Order,
    pool: Pool,
    site: Site,
    links: Mapping[tuple[str, str], Link],
) -> PoolTerms | None:
    """The terms of ``order`` in ``pool`` (at ``site``), or None when it may not run there:
    GPU class, residency (regions, provinces), latency bound, no data link, or a pool the
    order avoids."""
    if order.gpu_classes and pool.gpu_class not in order.gpu_classes:
        return None
    if pool.id in order.avoid_pools:
        return None
    if order.regions and site.region not in order.regions:
        return None
    if order.provinces and site.province not in order.provinces:
        return None
    if order.max_latency_ms is not None:
        assert order.home is not None
        lat = latency_ms(site, order.home, links)
        if lat is None or lat > order.max_latency_ms:
            return None
    link: Link | None = None
    if order.data_gb > 0 and order.home != site.region:
        assert order.home is not None
        link = links.get((order.home, site.region))
        if link is None:
            return None
    hours = market.grid.slot_hours
    speed = speed_of(order, pool.gpu_class, market.catalogue)
    delay = transfer_slots(order, link, market.grid.slot_seconds)
    duration = 0
    if order.kind is OrderKind.GANG:
        duration = max(1, math.ceil(order.duration_slots / speed - 1e-9))
        gb = float(order.data_gb) / (order.gpus * duration) if link is not None else 0.0
    else:
        gb = order.data_gb * work_share(order, speed, hours) if link is not None else 0.0
    return PoolTerms(speed, delay, link, gb, duration)


def feasible_pools(market: Market, order: Order, offers: Sequence[Offer]) -> tuple[str, ...]:
    """The pools of ``market`` where ``order`` could finish inside its window on its own,
    with the pool to itself: it may run there (:func:`pool_terms`: class, residency,
    latency, data link); its work fits after the data transfer delay at full width (a gang:
    its duration there; a service for its whole window: every slot of it); and in some slot
    of that span the pool offers enough GPUs (a gang: all of them; others: one) at a reserve
    below the order's value per GPU-hour (``limit * speed`` less the transfer cost).

    Capacity sold to others is not considered, nor a carbon price on the reserves. A batch
    order may still be served by several pools together when no single pool can serve it.
    """
    sites = {s.id: s for s in market.sites}
    links = links_by_key(market)
    hours = market.grid.slot_hours
    out = []
    for pool in market.pools:
        terms = pool_terms(market, order, pool, sites[pool.site_id], links)
        if terms is None:
            continue
        start = order.release_slot + terms.delay_slots
        if order.kind is OrderKind.GANG:
            need = terms.duration_slots
        elif order.kind is OrderKind.SERVICE and order.gpu_hours == 0:
            need = order.deadline_slot - order.release_slot  # every slot: no delay allowed
        else:
            need = math.ceil(order.gpu_hours / (terms.speed * hours * order.gpus) - 1e-9)
        if start + need > order.deadline_slot:
            continue
        least = order.gpus if order.kind is OrderKind.GANG else 1
        offered: dict[int, int] = {}
        cheapest: dict[int, int] = {}
        for o in offers:
            if o.pool_id != pool.id:
                continue
            for k in range(max(start, o.start_slot), min(order.deadline_slot, o.end_slot)):
                g = o.gpus[k - o.start_slot]
                if g > 0:
                    offered[k] = offered.get(k, 0) + g
                    r = o.reserve_fen[k - o.start_slot]
                    cheapest[k] = min(cheapest.get(k, r), r)
        value = order.limit_fen * terms.speed - terms.transfer_fen_per_gpu_slot / hours
        if any(offered[k] >= least and cheapest[k] < value for k in offered):
            out.append(pool.id)
    return tuple(out)
