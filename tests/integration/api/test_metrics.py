"""``/metrics`` (Prometheus text format) and the structured logs, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from suangu.api import observe
from suangu.api.metrics import iter_samples

from .conftest import API, Api, build_world


def samples(api: Api) -> list[tuple[str, dict[str, str], float]]:
    r = api.client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return list(iter_samples(r.text))


def value(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    hits = [
        v for n, lab, v in found if n == name and all(lab.get(k) == w for k, w in labels.items())
    ]
    assert len(hits) == 1, (name, labels, [s for s in found if s[0] == name])
    return hits[0]


def total(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(
        v for n, lab, v in found if n == name and all(lab.get(k) == w for k, w in labels.items())
    )


def test_metrics_of_the_exchange(api: Api) -> None:
    build_world(api)
    api.clock.advance(600)
    assert api.call("GET", "/orders/ord-buy-a", "buy-a").status_code == 200
    assert api.client.get("/no/such/page").status_code == 404
    found = samples(api)
    # Request latency by route template and status (never the raw path).
    # (The histogram is the process's: other tests in this process add to it.)
    count = "suangu_http_request_duration_seconds_count"
    assert total(found, count, route=f"{API}/orders/{{order_id}}", status="200") >= 1
    assert total(found, count, route="unmatched", status="404") >= 1
    assert not [lab for n, lab, _ in found if "ord-buy-a" in json.dumps(lab)]
    # Orders by status, the latest clearing, its prices.
    assert value(found, "suangu_orders", status="cleared") == 2
    assert value(found, "suangu_clearings") == 1
    assert value(found, "suangu_clearing_last_status", status="optimal") == 1
    assert value(found, "suangu_clearing_last_welfare_fen") > 0
    assert value(found, "suangu_clearing_last_duration_seconds") > 0
    assert value(found, "suangu_price_fen", pool="site-a-h100") > 0
    # Ledger totals: the deposits are posted credits of the buyers' accounts.
    assert value(found, "suangu_ledger_credits_posted", ledger="CNY", kind="buyer") == 2 * 10**7
    # The clearing's holds are pending, ten minutes old on the exchange's clock.
    assert value(found, "suangu_holds_pending", ledger="CNY") == 2
    assert value(found, "suangu_holds_pending_amount", ledger="CNY") > 0
    assert value(found, "suangu_holds_oldest_age_seconds", ledger="CNY") == 600
    assert value(found, "suangu_audit_entries") == 3
    assert value(found, "suangu_leases", state="scheduled") >= 2


def test_metrics_of_an_empty_exchange(api: Api) -> None:
    found = samples(api)
    assert value(found, "suangu_clearings") == 0
    assert not [n for n, _, _ in found if n.startswith("suangu_clearing_last")]


_WORKER = """
import sys
from suangu.api.metrics import observe_request
for _ in range(int(sys.argv[1])):
    observe_request("GET", "/api/v1/market/grid", 200, 0.003)
"""


def test_multiprocess_mode_sums_the_workers(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR (what `suangu serve --workers N` sets), each process
    writes its samples there and a scrape in any of them sums them all."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", _WORKER, str(n)], env=env, check=True, timeout=60)
    scrape = (
        "from suangu.api.metrics import _process_metrics; "
        "import sys; sys.stdout.write(_process_metrics().decode())"
    )
    out = subprocess.run(
        [sys.executable, "-c", scrape], env=env, check=True, timeout=60, capture_output=True
    ).stdout.decode()
    found = list(iter_samples(out))
    assert value(found, "suangu_http_request_duration_seconds_count", status="200") == 7


def test_json_logs_carry_the_request_id() -> None:
    formatter = observe.JsonFormatter()
    record = logging.LogRecord("suangu.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    info = observe.RequestInfo("rid-7", "GET", {"type": "http"})
    token = observe.CURRENT.set(info)
    try:
        observe.RequestIdFilter().filter(record)
        doc = json.loads(formatter.format(record))
    finally:
        observe.CURRENT.reset(token)
    assert doc["message"] == "hello you" and doc["request_id"] == "rid-7"
    assert doc["level"] == "info" and doc["logger"] == "suangu.x" and doc["ts"].endswith("+00:00")
    access = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/api/v1/me", "1.1", 401),
        None,
    )
    doc = json.loads(formatter.format(access))
    assert (doc["method"], doc["path"], doc["status"]) == ("GET", "/api/v1/me", 401)
    assert "request_id" not in doc  # outside a request
    plain = logging.LogRecord("suangu.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    text = observe.TextFormatter().format(plain)
    assert "[-]" in text and "hello you" in text


def test_route_templates_keep_their_prefix(api: Api) -> None:
    build_world(api)
    for path in ("/orders", "/audit", "/market/grid"):
        api.call("GET", path, "op")
    routes = {lab.get("route") for n, lab, _ in samples(api) if n.endswith("_count")}
    assert {f"{API}/orders", f"{API}/audit", f"{API}/market/grid"} <= routes
