"""The dashboard: pages render from the store after a short demo run, with their charts as
inline SVG, no script and no external resource, in English and Chinese; balances and the
per-member pages only on a private dashboard."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from suangu.api.app import create_app
from suangu.api.clock import ManualClock
from suangu.demo import DemoReport, demo_inputs, run_demo
from suangu.store.db import Database, make_engine, migrate, sqlite_url
from suangu.web import svg

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|@import|url\(\s*["']?https?:""")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, DemoReport]]:
    path = tmp_path_factory.mktemp("web") / "demo.db"
    engine = make_engine(sqlite_url(path))
    migrate(engine)
    scenario, stream = demo_inputs("east-west", 4)
    app, report = run_demo(Database(engine), scenario, stream)
    yield TestClient(app), report
    engine.dispose()


def offline(html: str) -> None:
    """Nothing the page needs comes from elsewhere: no scripts, no remote URLs."""
    assert "<script" not in html.lower()
    assert not EXTERNAL.search(html), EXTERNAL.search(html)
    assert "http://" not in html and "https://" not in html


def test_market_page_has_the_charts(served: tuple[TestClient, DemoReport]) -> None:
    client, report = served
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    offline(html)
    assert html.count("<svg") >= 5  # heatmap, volumes, map, fill rate, balances (+ green)
    for words in (
        "Cleared price by site and hour",
        "Volume per site",
        "Fill rate by order kind",
        "Balances",
        "Green energy and carbon per buyer",
        "Horinger",
    ):
        assert words in html, words
    # one heatmap cell per (site, hour) traded, each with its price in the hover title
    traded = [(site, slot) for (site, slot), (hours, _) in report.stats.cells.items() if hours]
    cells = re.findall(r"<rect [^>]*><title>[^<]* \d\d-\d\d \d\d:00: [^<]*yuan/GPU-h", html)
    assert len(cells) == len(traded)
    # the map: one circle per site
    assert "Map of the sites" in html and html.count("<circle") == len(report.stats.sites)
    # the daily price index: one line (or lone day) per site and class that traded
    assert "Daily price index by site and GPU class" in html
    assert "<polyline" in html or 'width="6" height="6"' in html
    # the figures on the page are the store's
    assert f"{report.stats.orders_total:,}" in html
    assert f"{report.stats.gpu_hours:,}" in html


def test_chinese_labels(served: tuple[TestClient, DemoReport]) -> None:
    client, _ = served
    html = client.get("/?lang=zh").text
    offline(html)
    for words in (
        "各站点逐小时出清价格",
        "各站点成交量",
        "按订单类型的成交率",
        "余额",
        'lang="zh-CN"',
    ):
        assert words in html, words
    assert "Cleared price by site and hour" not in html
    fallback = client.get("/?lang=xx").text  # an unknown language: English
    assert "Cleared price by site and hour" in fallback and 'lang="en"' in fallback


def test_member_pages(served: tuple[TestClient, DemoReport]) -> None:
    client, report = served
    buyer = next(m for m in report.members if m.role == "buyer")
    provider = next(m for m in report.members if m.role == "provider")
    for m in (buyer, provider):
        r = client.get(f"/member/{m.id}?lang=zh")
        assert r.status_code == 200, r.text
        offline(r.text)
        assert m.id in r.text and "<svg" in r.text
    other = next(m for m in report.members if m.role == "buyer" and m.id != buyer.id)
    page = client.get(f"/member/{buyer.id}").text
    assert f"buyer:{buyer.id}:CNY" in page and f"buyer:{other.id}:CNY" not in page
    assert client.get("/member/nobody").status_code == 404


def test_a_served_exchange_shows_public_data_only(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path / "x.db"))
    migrate(engine)
    app = create_app(Database(engine), ManualClock(1_767_225_600))
    client = TestClient(app)
    html = client.get("/").text
    offline(html)
    assert "public market data only" in html and "Balances" not in html
    assert "No trades yet" in html
    # Member pages need the member's sign-in (test_member_dashboard.py).
    r = client.get("/member/anyone", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert "/" not in {p for p in app.openapi()["paths"]}  # not part of the API
    engine.dispose()


def test_svg_helpers_escape_and_scale() -> None:
    out = svg.heatmap(
        ["<a&b>"], 3, {(0, 0): 1.0, (0, 2): 3.0}, label="x", col_ticks={0: "06-02"}, unit="u"
    )
    assert "&lt;a&amp;b&gt;" in out and "<a&b>" not in out
    assert svg.colour(0.0) == "#440154" and svg.colour(1.0) == "#fde725"
    assert svg.colour(-1) == svg.colour(0) and svg.colour(2) == svg.colour(1)
    assert svg.site_map([], label="m", unit="u").startswith("<svg")
    one = svg.site_map([svg.Place("A&B", 110.0, 40.0, 5, None, "t")], label="m", unit="u")
    assert one.count("<circle") == 1 and "A&amp;B" in one
    empty = svg.bars([], label="none")
    assert empty.startswith("<svg") and empty.endswith("</svg>")
    parts = svg.stacked([("k", [svg.Part("a", 0, "#000"), svg.Part("b", 0, "#fff")])], label="s")
    assert "<title>" not in parts  # nothing to draw for a row of zeros
    lines = svg.lines(
        [svg.Series("<s>", [1.0, 2.0, None, 4.0], "#000"), svg.Series("t", [None] * 4, "#111")],
        ["a", "b", "c", "d"],
        label="idx",
        unit="u",
    )
    assert "&lt;s&gt;" in lines and "<s>" not in lines
    # a line over the first two days, the gap breaks it, the fourth day is a lone square
    assert lines.count("<polyline") == 1 and 'width="6" height="6"' in lines
    assert "4.00" in lines  # the top of the axis is the largest value


def test_the_public_page_is_rendered_once_per_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anonymous visitors share one rendering per market-clock tick (60 s) and language."""
    from suangu.web import pages

    calls: list[int] = []
    real = pages.market_stats

    def counted(*args: object, **kw: object) -> object:
        calls.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pages, "market_stats", counted)
    engine = make_engine(sqlite_url(tmp_path / "x.db"))
    migrate(engine)
    clock = ManualClock(1_767_225_600)
    client = TestClient(create_app(Database(engine), clock, energy=False))
    first = client.get("/").text
    assert [client.get("/").text for _ in range(5)] == [first] * 5
    assert len(calls) == 1
    client.get("/?lang=zh")
    assert len(calls) == 2
    clock.advance(60)
    client.get("/")
    assert len(calls) == 3
    engine.dispose()
