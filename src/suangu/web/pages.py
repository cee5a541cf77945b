"""The dashboard's HTML pages: rendered on the server, charts as inline SVG, no script, no
external resource (they work offline, from what ``pip install`` put on the machine).

* ``GET /`` — the market: key figures, cleared price by site x hour (heatmap), volume per
  site, fill rate by order kind; on a private dashboard also every member's balances and
  green energy and carbon per buyer.
* ``GET /member/{member_id}`` (private dashboard only) — the same for one member: its
  leases (as buyer or provider), its orders and its accounts.

``?lang=zh`` switches the labels to Chinese.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import escape
from html import unescape as html_unescape
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from suangu.api import carbon_price
from suangu.api.context import ApiContext
from suangu.core.ledger import AccountKind, Asset
from suangu.store.errors import NotFound
from suangu.web import svg
from suangu.web.i18n import LANGS, pick, t
from suangu.web.stats import MAX_HEAT_SLOTS, MarketStats, market_stats

router = APIRouter(include_in_schema=False)
#: Dates and hours on the dashboard are China Standard Time.
UTC_OFFSET_H = 8
Lang = Annotated[str | None, Query(description="en or zh")]

_CSS = """
body{margin:0;font-family:system-ui,-apple-system,'Segoe UI','Noto Sans SC','Noto Sans CJK SC',
'PingFang SC','Microsoft YaHei','WenQuanYi Micro Hei',sans-serif;color:#1f2933;background:#f7f8fa}
header{background:#16324f;color:#fff;padding:14px 28px;display:flex;align-items:baseline;
gap:24px;flex-wrap:wrap}
header h1{font-size:20px;margin:0}header a{color:#cfe3ff}header .clock{opacity:.85}
main{padding:16px 28px;max-width:1320px}
section{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:12px 16px;
margin:14px 0;overflow-x:auto}
h2{font-size:16px;margin:4px 0 6px}p.note{color:#667085;font-size:13px;margin:0 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:10px 14px;
min-width:150px}
.card .v{font-size:20px;font-weight:600}.card .k{font-size:12px;color:#667085}
table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 10px;border-bottom:1px solid #eef0f3;text-align:right}
td:first-child,th:first-child{text-align:left}
footer{padding:8px 28px 24px;color:#667085;font-size:12px}
"""


def _ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def _yuan(fen: float) -> str:
    return f"{fen / 100:,.2f}"


def _local(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC) + timedelta(hours=UTC_OFFSET_H)


def _link(path: str, lang: str, **query: str) -> str:
    params = {**query, "lang": lang} if lang != "en" else query
    tail = "&".join(f"{k}={quote(v)}" for k, v in params.items())
    return escape(path + (f"?{tail}" if tail else ""))


def _card(key: str, value: str) -> str:
    return (
        f'<div class="card"><div class="v">{escape(value)}</div>'
        f'<div class="k">{escape(key)}</div></div>'
    )


def _cards(st: MarketStats, lang: str, public: bool) -> str:
    _, grams = st.green()
    cards = [
        _card(t(lang, "orders"), f"{st.orders_total:,}"),
        _card(t(lang, "fill_rate"), f"{st.fill_rate:.1%}"),
        _card(t(lang, "volume_fill"), f"{st.volume_fill_rate:.1%}"),
        _card(t(lang, "gpu_hours"), f"{st.gpu_hours:,}"),
        _card(t(lang, "avg_price"), _yuan(st.value_fen / st.gpu_hours if st.gpu_hours else 0)),
    ]
    if st.money:
        cards += [
            # Posted from the holds: metered use, plus data transfer charges passed on to the
            # exchange's network account (so spend = revenue + fees).
            _card(t(lang, "spend"), _yuan(st.buyer_spend_fen)),
            _card(t(lang, "revenue"), _yuan(st.money.get("provider_payout", 0))),
            _card(t(lang, "fees"), _yuan(st.money.get("exchange_fee", 0))),
            _card(t(lang, "transfer"), _yuan(st.money.get("data_transfer", 0))),
        ]
    if st.metered_energy_wh and not public:
        cards += [
            _card(t(lang, "energy"), f"{st.metered_energy_wh / 1e6:,.1f}"),
            _card(t(lang, "measured_share"), f"{st.measured_share:.1%}"),
            _card(t(lang, "green_share"), f"{st.green_share:.1%}"),
            _card(t(lang, "co2"), f"{grams / 1e6:,.2f}"),
        ]
    if st.ledger_balanced is not None and not public:
        cards.append(_card(t(lang, "ledger_ok"), t(lang, "yes" if st.ledger_balanced else "no")))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _heat(st: MarketStats, lang: str, epoch: int, slot_seconds: int) -> str:
    first, end = st.first_slot, st.end_slot
    if first is None or end is None:
        return f'<p class="note">{escape(t(lang, "no_trades"))}</p>'
    first = max(first, end - MAX_HEAT_SLOTS)
    sites = [site for site in st.sites if any(k[0] == site.id for k in st.cells)]
    values: dict[tuple[int, int], float] = {}
    tips: dict[tuple[int, int], str] = {}
    unit = t(lang, "yuan_per_gpu_h")
    for r, site in enumerate(sites):
        for slot in range(first, end):
            cell = st.cells.get((site.id, slot))
            if cell is None or cell[0] == 0:
                continue
            hours, fen = cell
            values[(r, slot - first)] = fen / hours / 100
            when = _local(epoch + slot * slot_seconds).strftime("%m-%d %H:00")
            tips[(r, slot - first)] = (
                f"{site.name} {when}: {fen / hours / 100:,.2f} {unit}, {hours:,} GPU-h"
            )
    ticks = {}
    for slot in range(first, end):
        local = _local(epoch + slot * slot_seconds)
        if local.hour == 0 or slot == first:
            ticks[slot - first] = local.strftime("%m-%d")
    n = end - first
    cell_w = max(2.0, min(24.0, 860.0 / n))
    return svg.heatmap(
        [site.name for site in sites],
        n,
        values,
        label=t(lang, "heat_title"),
        col_ticks=ticks,
        unit=unit,
        cell_w=cell_w,
        tips=tips,
    )


def _volumes(st: MarketStats, lang: str) -> str:
    if not st.volumes:
        return f'<p class="note">{escape(t(lang, "no_trades"))}</p>'
    names = {site.id: site.name for site in st.sites}
    items = [
        svg.Bar(
            names.get(v.site_id, v.site_id),
            v.gpu_hours,
            f"{v.gpu_hours:,} GPU-h · {_yuan(v.value_fen)} ¥ · {_yuan(v.avg_price_fen)} "
            + t(lang, "yuan_per_gpu_h"),
        )
        for v in sorted(st.volumes, key=lambda v: -v.gpu_hours)
    ]
    return svg.bars(items, label=t(lang, "volume_title"), width=760)


#: Lines of the price index chart: the site-class pairs with the most GPU-hours.
INDEX_LINES = 6
INDEX_DAYS = 30


def _index(request: Request, lang: str, names: dict[str, str]) -> str:
    """The daily price index (:func:`suangu.api.pretrade.price_index`) of the last
    :data:`INDEX_DAYS` days, one line per site and GPU class."""
    from suangu.api import pretrade

    ctx = _ctx(request)
    first, last = pretrade.index_span(ctx.now(), None, None, INDEX_DAYS)
    with ctx.db.session_scope(write=False) as s:
        rows = pretrade.price_index(s, ctx.settings, first, last)
    if not rows:
        return f'<p class="note">{escape(t(lang, "no_trades"))}</p>'
    volume: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["site_id"], r["gpu_class"])
        volume[key] = volume.get(key, 0) + r["gpu_hours"]
    keys = sorted(volume, key=lambda k: (-volume[k], k))[:INDEX_LINES]
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    at = {d.isoformat(): i for i, d in enumerate(days)}
    values: dict[tuple[str, str], list[float | None]] = {k: [None] * len(days) for k in keys}
    for r in rows:
        key = (r["site_id"], r["gpu_class"])
        if key in values:
            values[key][at[r["date"]]] = r["index_fen"] / 100
    series = [
        svg.Series(
            f"{names.get(k[0], k[0])} · {k[1]}",
            values[k],
            svg.colour(i / max(1, len(keys) - 1) * 0.85),
        )
        for i, k in enumerate(keys)
    ]
    return svg.lines(
        series,
        [d.strftime("%m-%d") for d in days],
        label=t(lang, "index_title"),
        unit=t(lang, "yuan_per_gpu_h"),
    )


def _map(st: MarketStats, lang: str) -> str:
    volume = {v.site_id: v for v in st.volumes}
    unit = t(lang, "yuan_per_gpu_h")
    places = []
    for site in st.sites:
        v = volume.get(site.id)
        hours = v.gpu_hours if v is not None else 0
        price = v.avg_price_fen / 100 if v is not None and v.gpu_hours else None
        text = f"{site.name}: {hours:,} GPU-h" + ("" if price is None else f", {price:,.2f} {unit}")
        places.append(svg.Place(site.name, site.lon, site.lat, hours, price, text))
    return svg.site_map(places, label=t(lang, "map_title"), unit=unit)


_OUTCOMES = (("cleared", "#2a9d8f"), ("partially", "#e9c46a"), ("unfilled", "#d1d5db"))


def _fill(st: MarketStats, lang: str) -> str:
    rows = []
    for kind, by in st.orders.items():
        unfilled = sum(n for status, n in by.items() if status not in ("cleared", "partially"))
        counts = {"cleared": by.get("cleared", 0), "partially": by.get("partially", 0),
                  "unfilled": unfilled}  # fmt: skip
        rows.append(
            (
                t(lang, kind) if kind in ("batch", "gang", "service") else kind,
                [svg.Part(t(lang, name), counts[name], col) for name, col in _OUTCOMES],
            )
        )
    if not rows:
        return f'<p class="note">{escape(t(lang, "no_trades"))}</p>'
    return svg.stacked(rows, label=t(lang, "fill_title"), width=760)


def _balances(st: MarketStats, lang: str, member_links: bool) -> str:
    money = [b for b in st.balances if b.ledger == Asset.CNY.value]
    head = "".join(
        f"<th>{escape(t(lang, k))}</th>" for k in ("account", "kind", "owner", "balance", "held")
    )
    rows = []
    for b in money:
        owner = escape(b.owner)
        if member_links and b.owner in st.members:
            owner = f'<a href="{_link("/member/" + quote(b.owner, safe=""), lang)}">{owner}</a>'
        rows.append(
            f"<tr><td>{escape(b.account_id)}</td><td>{escape(b.kind)}</td><td>{owner}</td>"
            f"<td>{_yuan(b.balance)}</td><td>{_yuan(b.held)}</td></tr>"
        )
    table = f"<table><tr>{head}</tr>{''.join(rows)}</table>"
    members = [b for b in money if b.kind in (AccountKind.BUYER.value, AccountKind.PROVIDER.value)]
    chart = ""
    if members:
        chart = svg.bars(
            [
                svg.Bar(
                    b.owner,
                    abs(b.balance),
                    _yuan(b.balance) + " ¥",
                    "#2a788e" if b.kind == AccountKind.PROVIDER.value else "#7a5195",
                )
                for b in sorted(members, key=lambda b: (b.kind, b.owner))
            ],
            label=t(lang, "balances_title"),
            width=760,
            bar_h=14,
        )
    return chart + table


def _green(st: MarketStats, lang: str) -> str:
    certs = {
        b.owner: b.balance
        for b in st.balances
        if b.ledger == Asset.KWH_GREEN.value and b.kind == AccountKind.BUYER.value
    }
    grams = {
        b.owner: b.balance
        for b in st.balances
        if b.ledger == Asset.GCO2.value and b.kind == AccountKind.BUYER.value
    }
    buyers = sorted(set(certs) | set(grams))
    if not buyers:
        return ""
    head = "".join(
        f"<th>{escape(t(lang, k))}</th>" for k in ("member", "certificates_kwh", "co2_kg")
    )
    rows = "".join(
        f"<tr><td>{escape(b)}</td><td>{certs.get(b, 0) / 1000:,.1f}</td>"
        f"<td>{grams.get(b, 0) / 1000:,.1f}</td></tr>"
        for b in buyers
    )
    chart = svg.bars(
        [
            svg.Bar(b, certs.get(b, 0), f"{certs.get(b, 0) / 1000:,.0f} kWh", "#2a9d8f")
            for b in buyers
        ],
        label=t(lang, "green_title"),
        width=760,
        bar_h=14,
    )
    return (
        f"<section><h2>{escape(t(lang, 'green_title'))}</h2>"
        f'<p class="note">{escape(t(lang, "green_note"))}</p>{chart}'
        f"<table><tr>{head}</tr>{rows}</table></section>"
    )


def _page(request: Request, lang: str, title: str, body: str, path: str) -> HTMLResponse:
    ctx = _ctx(request)
    now = ctx.now()
    switch = " | ".join(
        f'<a href="{_link(path, code)}">{"English" if code == "en" else "中文"}</a>'
        for code in LANGS
    )
    clock = t(lang, "as_of", time=_local(now).strftime("%Y-%m-%d %H:%M"), slot=ctx.current_slot())
    html = (
        f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head>'
        '<meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>算谷 Suangu</h1><span>{escape(title)}</span>"
        f'<span class="clock">{escape(clock)}</span><span>{switch}</span></header>'
        f"<main>{body}</main>"
        f'<footer><a href="/docs">{escape(t(lang, "api"))}</a>{_account_link(request, lang)}'
        "</footer></body></html>"
    )
    return HTMLResponse(html)


#: The page frame (header, styles, footer) around ``body``: for :mod:`suangu.web.session`.
page = _page


def _account_link(request: Request, lang: str) -> str:
    """Sign in, or the member's own page and sign out (not on the demo's private
    dashboard, which shows every member anyway)."""
    if request.app.state.private_dashboard:
        return ""
    from suangu.web.session import signed_in

    who = signed_in(request)
    if who is None:
        return f' · <a href="{_link("/login", lang)}">{escape(t(lang, "sign_in"))}</a>'
    return (
        f' · <a href="{_link("/my", lang)}">{escape(t(lang, "my_page"))}</a>'
        f' · <form method="post" action="/logout" style="display:inline">'
        f'<button type="submit">{escape(t(lang, "sign_out"))}</button></form>'
    )


def _sections(st: MarketStats, request: Request, lang: str, *, private: bool) -> str:
    ctx = _ctx(request)
    grid = ctx.settings.grid
    with ctx.db.session_scope(write=False) as s:
        price = carbon_price.effective(s, request.app.state.market_hook)
    parts = [
        _cards(st, lang, public=not private),
        f'<p class="note">{escape(t(lang, "carbon_price", price=f"{price:,g}"))}</p>',
        f"<section><h2>{escape(t(lang, 'heat_title'))}</h2>"
        f'<p class="note">{escape(t(lang, "heat_note"))}</p>'
        f"{_heat(st, lang, grid.epoch, grid.slot_seconds)}</section>",
        f"<section><h2>{escape(t(lang, 'volume_title'))}</h2>"
        f'<p class="note">{escape(t(lang, "volume_note"))}</p>{_volumes(st, lang)}</section>',
        f"<section><h2>{escape(t(lang, 'index_title'))}</h2>"
        f'<p class="note">{escape(t(lang, "index_note"))}</p>'
        f"{_index(request, lang, {site.id: site.name for site in st.sites})}</section>",
        f"<section><h2>{escape(t(lang, 'map_title'))}</h2>"
        f'<p class="note">{escape(t(lang, "map_note"))}</p>{_map(st, lang)}</section>',
        f"<section><h2>{escape(t(lang, 'fill_title'))}</h2>"
        f'<p class="note">{escape(t(lang, "fill_note"))}</p>{_fill(st, lang)}</section>',
    ]
    if private:
        parts.append(
            f"<section><h2>{escape(t(lang, 'balances_title'))}</h2>"
            f'<p class="note">{escape(t(lang, "balances_note"))}</p>'
            f"{_balances(st, lang, member_links=True)}</section>"
        )
        parts.append(_green(st, lang))
    else:
        parts.append(f'<p class="note">{escape(t(lang, "public_only"))}</p>')
    return "".join(parts)


class PageCache:
    """The public dashboard's pages of the current market-clock tick (one tick:
    ``ApiSettings.dashboard_cache_s`` seconds of the app's clock): anonymous visitors share
    one rendering per language and tick instead of reading the whole market each, and one
    renders while the others wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tick: int | None = None
        self._pages: dict[str, str] = {}

    def get(self, tick: int, lang: str, render: Callable[[], str]) -> str:
        with self._lock:
            if tick != self._tick:
                self._tick, self._pages = tick, {}
            page = self._pages.get(lang)
            if page is None:
                page = self._pages[lang] = render()
            return page


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, lang: Lang = None) -> HTMLResponse:
    """The market overview (the public one cached per market-clock tick: :class:`PageCache`)."""
    lang = pick(lang)
    ctx = _ctx(request)
    private = bool(request.app.state.private_dashboard)
    every = ctx.settings.dashboard_cache_s
    if private or every == 0:
        return _dashboard(request, lang, ctx, private)
    cache: PageCache = request.app.state.public_pages
    html = cache.get(
        ctx.now() // every, lang, lambda: bytes(_dashboard(request, lang, ctx, False).body).decode()
    )
    return HTMLResponse(html)


def _dashboard(request: Request, lang: str, ctx: ApiContext, private: bool) -> HTMLResponse:
    with ctx.db.session_scope(write=False) as s:
        st = market_stats(s, ctx.settings.grid.slot_hours)
    if not private:  # public market data only: no balances, no per-member figures
        st = _public(st)
    body = _sections(st, request, lang, private=private)
    if private and st.members:
        links = " · ".join(
            f'<a href="{_link("/member/" + quote(m, safe=""), lang)}">{escape(m)}</a> '
            f"({escape(role)})"
            for m, (_, role) in st.members.items()
        )
        body += f"<section><h2>{escape(t(lang, 'members'))}</h2>{links}</section>"
    return _page(request, lang, t(lang, "title"), body, "/")


def _public(st: MarketStats) -> MarketStats:
    return replace(st, balances=(), members={}, money={}, ledger_balanced=None)


@router.get("/member/{member_id}", response_class=HTMLResponse)
def member_page(request: Request, member_id: str, lang: Lang = None) -> Response:
    """One member's leases, orders and accounts: on the private dashboard, or for the member
    signed in (:mod:`suangu.web.session`; operators and auditors: any member)."""
    lang = pick(lang)
    ctx = _ctx(request)
    if not request.app.state.private_dashboard:
        from suangu.web.session import may_see, signed_in

        who = signed_in(request)
        if who is None:
            target = _link("/login", lang, next="/member/" + quote(member_id, safe=""))
            return RedirectResponse(html_unescape(target), status_code=303)
        if not may_see(who, member_id):
            raise NotFound(f"no member {member_id!r}", field="path.member_id", fix="see /")
    with ctx.db.session_scope(write=False) as s:
        st = market_stats(s, ctx.settings.grid.slot_hours, member_id=member_id)
    if member_id not in st.members:
        raise NotFound(f"no member {member_id!r}", field="path.member_id", fix="see /")
    name, role = st.members[member_id]
    back = f'<a href="{_link("/", lang)}">← {escape(t(lang, "back"))}</a>'
    body = f"<p>{back} · {escape(name)} ({escape(role)})</p>"
    body += _sections(st, request, lang, private=True)
    title = t(lang, "member_title", member=member_id)
    return _page(request, lang, title, body, "/member/" + quote(member_id, safe=""))
