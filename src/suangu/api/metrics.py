"""``GET /metrics``: Prometheus text format, with ``prometheus-client``.

Two kinds of metrics:

* **Per process**: ``suangu_http_request_duration_seconds``, a histogram of request latency
  by ``method``, ``route`` (the route's template, such as ``/api/v1/orders/{order_id}``;
  ``unmatched`` for paths no route serves, so a scanner cannot blow up the label set) and
  ``status``, observed by :class:`suangu.api.observe.ObserveMiddleware`. With several
  workers (``suangu serve --workers N``) these use the library's **multiprocess mode**:
  ``suangu serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the
  workers start, each worker writes its samples there, and whichever worker answers a
  scrape sums them all (:class:`prometheus_client.multiprocess.MultiProcessCollector`).
* **From the database, at scrape time** (:class:`ExchangeCollector`): the same answer from
  every worker, nothing to aggregate. Orders by status, leases by state, the latest
  clearing (its duration, status, welfare, when it ran), the latest clearing's price of
  each pool, the ledger's posted and pending totals by asset and account kind, holds
  pending (how many, how much, the age of the oldest on the exchange's clock), audit
  entries. Each scrape costs a few aggregate queries (one read transaction).

The endpoint is public (no key) and shows aggregates only: no member, order or account
appears in a label. Put it behind your proxy's access rules if even those are private.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from suangu.store.models import (
    AuditHeadRow,
    ClearingRow,
    LeaseRow,
    LedgerAccountRow,
    LedgerTransferRow,
    OrderRow,
    PriceRow,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from suangu.api.context import ApiContext

#: The environment variable of the library's multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Latency buckets, seconds: the API answers in milliseconds, clearings take seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: This process's request metrics (in multiprocess mode, also written to its files).
REGISTRY = CollectorRegistry(auto_describe=True)
REQUEST_LATENCY = Histogram(
    "suangu_http_request_duration_seconds",
    "Latency of HTTP requests, by method, route template and status.",
    ("method", "route", "status"),
    buckets=BUCKETS,
    registry=REGISTRY,
)


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    REQUEST_LATENCY.labels(method, route or "unmatched", str(status)).observe(seconds)


class ExchangeCollector(Collector):
    """Gauges read from the database at scrape time (see the module docs)."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterable[Metric]:
        ctx = self.ctx
        now = ctx.now()
        with ctx.db.session_scope(write=False) as s:
            orders = s.execute(select(OrderRow.status, func.count()).group_by(OrderRow.status))
            leases = s.execute(select(LeaseRow.state, func.count()).group_by(LeaseRow.state))
            latest = s.scalars(
                select(ClearingRow).order_by(ClearingRow.run_at.desc(), ClearingRow.id.desc())
            ).first()
            n_clearings = s.scalar(select(func.count()).select_from(ClearingRow)) or 0
            prices: list[Any] = []
            if latest is not None:
                prices = list(
                    s.execute(
                        select(PriceRow.pool_id, PriceRow.price_fen, PriceRow.cleared_gpus).where(
                            PriceRow.clearing_id == latest.id,
                            PriceRow.slot == latest.first_slot,
                        )
                    )
                )
            accounts = list(
                s.execute(
                    select(
                        LedgerAccountRow.ledger,
                        LedgerAccountRow.kind,
                        func.sum(LedgerAccountRow.debits_posted),
                        func.sum(LedgerAccountRow.credits_posted),
                        func.sum(LedgerAccountRow.debits_pending),
                        func.sum(LedgerAccountRow.credits_pending),
                    ).group_by(LedgerAccountRow.ledger, LedgerAccountRow.kind)
                )
            )
            holds = s.execute(
                select(
                    LedgerTransferRow.ledger,
                    func.count(),
                    func.sum(LedgerTransferRow.amount),
                    func.min(LedgerTransferRow.timestamp),
                )
                .where(LedgerTransferRow.pending_status == "pending")
                .group_by(LedgerTransferRow.ledger)
            ).all()
            head = s.scalar(select(AuditHeadRow.seq).where(AuditHeadRow.id == 1)) or 0
            orders_by, leases_by = list(orders), list(leases)

        g = GaugeMetricFamily("suangu_orders", "Orders by status.", labels=["status"])
        for status, n in orders_by:
            g.add_metric([status], n)
        yield g
        g = GaugeMetricFamily("suangu_leases", "Leases by state.", labels=["state"])
        for state, n in leases_by:
            g.add_metric([state], n)
        yield g
        yield GaugeMetricFamily("suangu_clearings", "Clearings stored.", value=n_clearings)
        if latest is not None:
            timings = latest.timings or {}
            yield GaugeMetricFamily(
                "suangu_clearing_last_duration_seconds",
                "Time the latest clearing took to build, solve and price its market.",
                value=sum(float(v) for v in timings.values()),
            )
            yield GaugeMetricFamily(
                "suangu_clearing_last_welfare_fen",
                "Welfare of the latest clearing, fen.",
                value=latest.welfare_fen,
            )
            yield GaugeMetricFamily(
                "suangu_clearing_last_run_timestamp_seconds",
                "When the latest clearing ran (Unix seconds, exchange clock).",
                value=latest.run_at,
            )
            g = GaugeMetricFamily(
                "suangu_clearing_last_status",
                "Status of the latest clearing: 1 for its status.",
                labels=["status", "method"],
            )
            g.add_metric([latest.status, latest.method], 1)
            yield g
        g = GaugeMetricFamily(
            "suangu_price_fen",
            "Latest clearing's price in its first slot, fen per GPU-hour, by pool.",
            labels=["pool"],
        )
        c = GaugeMetricFamily(
            "suangu_cleared_gpus",
            "GPUs the latest clearing sold in its first slot, by pool.",
            labels=["pool"],
        )
        for pool, price, gpus in prices:
            g.add_metric([pool], price)
            c.add_metric([pool], gpus)
        yield g
        yield c
        names = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
        families = {
            name: GaugeMetricFamily(
                f"suangu_ledger_{name}",
                f"Sum of the accounts' {name.replace('_', ' ')}, by asset and account kind "
                "(fen for CNY).",
                labels=["ledger", "kind"],
            )
            for name in names
        }
        for ledger, kind, *sums in accounts:
            for name, v in zip(names, sums, strict=True):
                families[name].add_metric([ledger, kind], int(v or 0))
        yield from families.values()
        count = GaugeMetricFamily(
            "suangu_holds_pending", "Pending transfers (holds) by asset.", labels=["ledger"]
        )
        amount = GaugeMetricFamily(
            "suangu_holds_pending_amount",
            "Amount held by pending transfers, by asset (fen for CNY).",
            labels=["ledger"],
        )
        age = GaugeMetricFamily(
            "suangu_holds_oldest_age_seconds",
            "Age of the oldest pending hold, by asset (exchange clock).",
            labels=["ledger"],
        )
        for ledger, held, total, oldest in holds:
            count.add_metric([ledger], held)
            amount.add_metric([ledger], int(total or 0))
            age.add_metric([ledger], max(0, now - int(oldest)))
        yield count
        yield amount
        yield age
        yield GaugeMetricFamily(
            "suangu_audit_entries", "Entries in the audit trail (its head's seq).", value=head
        )


def _process_metrics() -> bytes:
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return generate_latest(REGISTRY)
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def render(ctx: ApiContext) -> bytes:
    """The whole exposition: this process's (or every worker's) request metrics, then the
    exchange's gauges."""
    exchange = CollectorRegistry(auto_describe=False)
    exchange.register(ExchangeCollector(ctx))
    return _process_metrics() + generate_latest(exchange)


def mount(app: FastAPI) -> None:
    """Serve :func:`render` at ``/metrics`` (not in the OpenAPI schema)."""

    async def metrics(request: Request) -> Response:
        body = await run_in_threadpool(render, request.app.state.ctx)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)


def iter_samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """``(name, labels, value)`` of each sample of an exposition (for tests and tools)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield sample.name, dict(sample.labels), float(sample.value)
