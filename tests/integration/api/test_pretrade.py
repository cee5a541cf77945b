"""Pre-trade information through the API and the CLI: indicative quotes, depth, the daily
price index (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from sqlalchemy import func, select
from typer.testing import CliRunner

from suangu.api import pretrade
from suangu.cli import app as cli_app
from suangu.core import billing
from suangu.core.types import Offer, Order, OrderKind, Pool, Site
from suangu.store.models import ClearingRow, OrderRow, Role
from suangu.store.repositories import Capacity, Orders

from .conftest import EPOCH, NOW_SLOT, Api, _database, make_api

runner = CliRunner(env={"COLUMNS": "200", "SUANGU_URL": None, "SUANGU_KEY": None})
SITE = Site("site-q", "Horinger", "Inner Mongolia", "inner-mongolia", 40.5, 111.8, 1.15, {})
POOL = "site-q-h100"


def _setup(api: Api) -> None:
    """One provider with 8 H100s at 10 yuan reserve from slot 100 to 148; two buyers with
    money; no orders."""
    for m, role in (("op", Role.OPERATOR), ("prov", Role.PROVIDER)):
        api.member(m, role)
    for b in ("buy-a", "buy-b"):
        api.member(b, Role.BUYER)
    now = api.clock.now()
    with api.db.session_scope() as s:
        cap = Capacity(s)
        cap.add_site(SITE, "prov")
        cap.add_pool(Pool(POOL, SITE.id, "H100"))
        cap.add_offer(Offer.over("offer-q", "prov", POOL, NOW_SLOT, NOW_SLOT + 48, 8, 1000), now)
    ledger = api.client.app.state.ctx.ledger
    billing_accounts = [billing.new_provider_account("prov")]
    from suangu.api.services import ensure_accounts

    ensure_accounts(ledger, billing_accounts, now)
    for b in ("buy-a", "buy-b"):
        r = api.call(
            "POST", "/deposits", "op", json={"id": f"d-{b}", "member_id": b, "amount_fen": 10**7}
        )
        assert r.status_code == 201, r.text


def _order(oid: str, buyer: str, gpus: int, slot: int, limit: int) -> Order:
    return Order(
        oid,
        buyer,
        OrderKind.BATCH,
        gpus=gpus,
        release_slot=slot,
        deadline_slot=slot + 1,
        limit_fen=limit,
        gpu_hours=gpus,
    )


def _submit(api: Api, *orders: Order) -> None:
    with api.db.session_scope() as s:
        for o in orders:
            Orders(s).submit(o, api.clock.now())


def _clear(api: Api, cid: str) -> None:
    r = api.call("POST", "/clearings", "op", json={"id": cid})
    assert r.status_code == 201, r.text


@pytest.fixture
def market(api: Api) -> Api:
    _setup(api)
    return api


Q = {"kind": "batch", "gpus": 4, "gpu_hours": 8, "deadline_slot": NOW_SLOT + 2, "limit_fen": 3000}


def _counts(api: Api) -> tuple[int, int]:
    with api.db.session_scope(write=False) as s:
        return (
            int(s.scalar(select(func.count()).select_from(OrderRow)) or 0),
            int(s.scalar(select(func.count()).select_from(ClearingRow)) or 0),
        )


def test_quote_of_an_uncontested_order_is_the_reserve_and_stores_nothing(market: Api) -> None:
    before = _counts(market)
    r = market.call("GET", "/market/quote", "buy-a", params=Q)
    assert r.status_code == 200, r.text
    q = r.json()
    assert q["indicative"] is True and "indicative" in q["note"]
    assert q["funded"] is True
    assert q["gpu_hours"] == 8 and q["gpu_slots"] == 8
    assert q["capacity_fen"] == 8 * 1000 == q["total_fen"]
    assert q["mean_price_fen"] == 1000
    assert {a["slot"] for a in q["allocations"]} <= {NOW_SLOT, NOW_SLOT + 1}
    assert all(
        a["site_id"] == "site-q" and a["gpu_class"] == "H100-SXM-80GB" for a in q["allocations"]
    ), q
    # The same spec as a JSON body gives the same answer; nothing was stored either way.
    body = market.call("GET", "/market/quote", "buy-a", json=Q).json()
    assert {k: v for k, v in body.items() if k != "computed_at"} == {
        k: v for k, v in q.items() if k != "computed_at"
    }
    assert _counts(market) == before


def test_quote_sees_the_open_book_and_never_exceeds_the_limit(market: Api) -> None:
    # buy-b bids 6 GPUs at 20 yuan in slot 100: with the quote's 4 GPUs at 30 yuan, 10 GPUs
    # want 8; the lowest supporting price is buy-b's limit.
    _submit(market, _order("b-1", "buy-b", 6, NOW_SLOT, 2000))
    q = market.call(
        "GET", "/market/quote", "buy-a", params={**Q, "gpu_hours": 4, "deadline_slot": NOW_SLOT + 1}
    ).json()
    assert q["gpu_hours"] == 4 and q["book_orders"] == 1
    assert [a["price_fen"] for a in q["allocations"]] == [2000]
    assert q["total_fen"] == 4 * 2000 <= 4 * Q["limit_fen"]
    # A quote below the book's bid gets what is left (2 GPUs) at its own limit.
    low = market.call(
        "GET",
        "/market/quote",
        "buy-a",
        params={**Q, "gpu_hours": 4, "deadline_slot": NOW_SLOT + 1, "limit_fen": 1500},
    ).json()
    assert low["gpu_hours"] == 2 and low["mean_price_fen"] == 1500


def test_quote_rules(market: Api) -> None:
    assert market.call("GET", "/market/quote", None, params=Q).status_code == 401
    assert market.call("GET", "/market/quote", "prov", params=Q).status_code == 403
    bad = market.call("GET", "/market/quote", "buy-a", params={**Q, "gpus": "0"})
    assert bad.status_code == 422 and bad.json()["field"] == "query.gpus", bad.text
    bad = market.call("GET", "/market/quote", "buy-a", json={**Q, "gpus": 0})
    assert bad.status_code == 422 and bad.json()["field"] == "body.gpus", bad.text
    past = market.call("GET", "/market/quote", "buy-a", params={**Q, "deadline_slot": 5})
    assert past.status_code == 422 and past.json()["field"] == "query.deadline_slot", past.text
    bad = market.call("GET", "/market/quote", "buy-a", content=b"[1]")
    assert bad.status_code == 400, bad.text
    # An unfunded order is quoted and flagged: the real clearing would leave it out.
    market.member("poor", Role.BUYER)
    poor = market.call("GET", "/market/quote", "poor", params=Q).json()
    assert poor["funded"] is False and "not cover" in poor["note"]
    # Busy: every quote slot of the process is taken.
    gate = pretrade._gate(market.client.app.state.ctx.settings.quote_concurrency)
    held = 0
    while gate.acquire(blocking=False):
        held += 1
    try:
        busy = market.call("GET", "/market/quote", "buy-a", params=Q)
        assert busy.status_code == 503, busy.text
    finally:
        for _ in range(held):
            gate.release()


def test_depth_is_the_supply_curve_less_what_sold(market: Api) -> None:
    now = market.clock.now()
    with market.db.session_scope() as s:
        Capacity(s).add_offer(
            Offer.over("offer-q2", "prov", POOL, NOW_SLOT, NOW_SLOT + 2, 4, 800), now
        )
    _submit(market, _order("b-2", "buy-b", 6, NOW_SLOT, 5000))
    _clear(market, "clr-d")  # 6 GPUs sold in slot 100: the 4 cheap ones first, then 2
    r = market.call("GET", "/market/depth", "buy-a", params={"pool": POOL, "n_slots": 2})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(i["slot"], i["levels"]) for i in items] == [
        (NOW_SLOT, [{"reserve_fen": 1000, "gpus": 6, "cumulative_gpus": 6}]),
        (
            NOW_SLOT + 1,
            [
                {"reserve_fen": 800, "gpus": 4, "cumulative_gpus": 4},
                {"reserve_fen": 1000, "gpus": 8, "cumulative_gpus": 12},
            ],
        ),
    ]
    assert market.call("GET", "/market/depth", None).status_code == 401
    bad = market.call("GET", "/market/depth", "buy-a", params={"pool": "nope"})
    assert bad.status_code == 422 and bad.json()["field"] == "query.pool"


def _two_days(api: Api) -> None:
    """Day 2026-01-05 (slot 100 is 04:00): 8 GPUs at 20 yuan then 2 at 10; 2026-01-06: 3 at
    10."""
    _submit(
        api, _order("a-1", "buy-a", 4, NOW_SLOT, 3000), _order("b-1", "buy-b", 6, NOW_SLOT, 2000)
    )
    _clear(api, "clr-1")
    api.clock.advance(3600)
    _submit(api, _order("a-2", "buy-a", 2, NOW_SLOT + 1, 2500))
    _clear(api, "clr-2")
    api.clock.advance(3600 * 23)
    _submit(api, _order("a-3", "buy-a", 3, NOW_SLOT + 24, 2500))
    _clear(api, "clr-3")


def test_daily_index_is_the_volume_weighted_mean(market: Api) -> None:
    _two_days(market)
    r = market.call(
        "GET",
        "/market/index",
        None,
        params={"site": "site-q", "from": "2026-01-01", "to": "2026-01-31"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "sum(price x GPU-hours sold) / sum(GPU-hours sold)" in body["rule"]
    assert body["items"] == [
        {
            "site_id": "site-q",
            "gpu_class": "H100-SXM-80GB",
            "date": "2026-01-05",
            "index_fen": (8 * 2000 + 2 * 1000) // 10,
            "gpu_hours": 10,
            "turnover_fen": 18_000,
            "low_fen": 1000,
            "high_fen": 2000,
        },
        {
            "site_id": "site-q",
            "gpu_class": "H100-SXM-80GB",
            "date": "2026-01-06",
            "index_fen": 1000,
            "gpu_hours": 3,
            "turnover_fen": 3000,
            "low_fen": 1000,
            "high_fen": 1000,
        },
    ]
    one = market.call(
        "GET",
        "/market/index",
        None,
        params={"gpu_class": "h100", "from": "2026-01-06", "to": "2026-01-06"},
    ).json()
    assert [i["date"] for i in one["items"]] == ["2026-01-06"]
    # Default span: the last 30 days up to today (the clock is on 2026-01-06).
    dflt = market.call("GET", "/market/index", None).json()
    assert dflt["to_date"] == "2026-01-06" and len(dflt["items"]) == 2
    assert (
        market.call("GET", "/market/index", None, params={"gpu_class": "A100"}).json()["items"]
        == []
    )
    bad = market.call("GET", "/market/index", None, params={"gpu_class": "Z9"})
    assert bad.status_code == 422 and bad.json()["field"] == "query.gpu_class"
    bad = market.call(
        "GET", "/market/index", None, params={"from": "2026-02-01", "to": "2026-01-01"}
    )
    assert bad.status_code == 422 and bad.json()["field"] == "query.to"
    bad = market.call("GET", "/market/index", None, params={"site": "nope"})
    assert bad.status_code == 422 and bad.json()["field"] == "query.site"
    long = market.call(
        "GET", "/market/index", None, params={"from": "2024-01-01", "to": "2026-01-01"}
    )
    assert long.status_code == 422


def test_index_days_are_china_standard_time_days() -> None:
    # The epoch is 2026-01-01 00:00 UTC = 08:00 in Beijing; the day ends at 16:00 UTC.
    assert pretrade.date_of(pretrade.day_of(pretrade.today(EPOCH))).isoformat() == "2026-01-01"
    assert pretrade.today(EPOCH + 16 * 3600 - 1).isoformat() == "2026-01-01"
    assert pretrade.today(EPOCH + 16 * 3600).isoformat() == "2026-01-02"


def test_a_fill_counts_on_its_beijing_day(market: Api) -> None:
    # Slot 112 starts 2026-01-05 16:00 UTC: 2026-01-06 00:00 in Beijing.
    market.clock.set(EPOCH + 111 * 3600)
    _submit(market, _order("a-9", "buy-a", 2, 111, 2500), _order("a-10", "buy-a", 1, 112, 2500))
    _clear(market, "clr-9")
    market.clock.set(EPOCH + 112 * 3600)
    _clear(market, "clr-10")
    got = market.call(
        "GET", "/market/index", None, params={"from": "2026-01-05", "to": "2026-01-06"}
    )
    assert [(i["date"], i["gpu_hours"]) for i in got.json()["items"]] == [
        ("2026-01-05", 2),
        ("2026-01-06", 1),
    ]


# -- the CLI against a served app ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, str]]:
    for backend, db in _database("sqlite", tmp_path_factory.mktemp("cli-market")):
        api = make_api(backend, db)
        _setup(api)
        _two_days(api)
        port = _free_port()
        config = uvicorn.Config(
            api.client.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        try:
            yield api, f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(10)


def _run(served: tuple[Api, str], who: str | None, *args: str) -> Any:
    api, url = served
    key = [] if who is None else ["--key", api.tokens[who]]
    return runner.invoke(cli_app, ["market", *args, "--url", url, *key])


def test_cli_market_commands(served: tuple[Api, str]) -> None:
    slot = NOW_SLOT + 24
    out = _run(
        served, None, "index", "--site", "site-q", "--from", "2026-01-05", "--to", "2026-01-06"
    )
    assert out.exit_code == 0, out.output
    assert "2026-01-05" in out.output and "18.00" in out.output and "2026-01-06" in out.output
    out = _run(
        served, "buy-a", "quote", "--gpus", "2", "--gpu-hours", "4", "--deadline", str(slot + 2),
        "--limit-fen", "2500", "--class", "H100",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "Indicative" in out.output and "4 GPU-h for 40.00 yuan" in out.output
    # 40 GPU-hours cannot be done by then with 2 GPUs: complete or nothing gets nothing.
    big = ("quote", "--gpus", "2", "--gpu-hours", "40", "--deadline", str(slot + 2))
    out = _run(served, "buy-a", *big, "--limit-fen", "2500")
    assert out.exit_code == 0 and "4 GPU-h for 40.00 yuan" in out.output, out.output
    out = _run(served, "buy-a", *big, "--limit-fen", "2500", "--complete-or-nothing")
    assert out.exit_code == 0 and "0 GPU-h for 0.00 yuan" in out.output, out.output
    out = _run(served, "buy-a", "depth", "--pool", POOL, "--slot", str(slot + 1))
    assert out.exit_code == 0, out.output
    assert "10.00" in out.output and "8" in out.output
    out = _run(served, "buy-a", "quote", "--gpus", "2")
    assert out.exit_code == 2 and "--deadline" in out.output
    out = _run(served, "prov", "quote", "--deadline", str(slot + 2), "--limit-fen", "100")
    assert out.exit_code == 2 and "not allowed" in out.output
