"""Charts as inline SVG, drawn server-side in plain Python: no JavaScript, no network.

Every function returns one ``<svg>`` element as a string, sized in CSS pixels, with every
piece of text escaped. Colours come from :func:`colour` (a perceptually even blue-green-yellow
ramp close to matplotlib's *viridis*) so that charts read the same in print.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

#: Anchors of the colour ramp (viridis at 0, 0.25, 0.5, 0.75, 1).
_RAMP = (
    (0.267, 0.005, 0.329),
    (0.230, 0.322, 0.546),
    (0.128, 0.567, 0.551),
    (0.369, 0.789, 0.383),
    (0.993, 0.906, 0.144),
)
FONT = (
    "font-family:system-ui,-apple-system,'Segoe UI','Noto Sans SC','Noto Sans CJK SC',"
    "'PingFang SC','Microsoft YaHei','WenQuanYi Micro Hei',sans-serif"
)
EMPTY = "#eef0f3"
INK = "#1f2933"
MUTED = "#667085"


def colour(x: float) -> str:
    """The ramp's colour at ``x`` in [0, 1] (clamped), as ``#rrggbb``."""
    x = min(1.0, max(0.0, x))
    pos = x * (len(_RAMP) - 1)
    i = min(int(pos), len(_RAMP) - 2)
    f = pos - i
    a, b = _RAMP[i], _RAMP[i + 1]
    r, g, bl = (round(255 * (a[k] + (b[k] - a[k]) * f)) for k in range(3))
    return f"#{r:02x}{g:02x}{bl:02x}"


def text_width(body: str, size: int = 11) -> float:
    """About how wide ``body`` is in pixels at ``size`` (wide CJK glyphs count double)."""
    return sum(size if ord(ch) > 0x2E7F else size * 0.6 for ch in body)


def _margin(labels: Sequence[str], size: int = 11) -> float:
    """A left margin that fits the longest label (within 80 and 300 pixels)."""
    return min(300.0, max(80.0, max((text_width(x, size) for x in labels), default=0) + 14))


def _text(
    x: float, y: float, body: str, *, anchor: str = "start", size: int = 11, **kw: str
) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in kw.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>'
        f"{escape(body)}</text>"
    )


def _svg(width: float, height: float, label: str, body: list[str]) -> str:
    return (
        f'<svg width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(label)}" '
        f'style="{FONT};fill:{INK}">' + "".join(body) + "</svg>"
    )


def heatmap(
    rows: Sequence[str],
    n_cols: int,
    values: Mapping[tuple[int, int], float],
    *,
    label: str,
    col_ticks: Mapping[int, str],
    unit: str,
    cell_w: float = 5.0,
    cell_h: float = 18.0,
    tips: Mapping[tuple[int, int], str] | None = None,
) -> str:
    """A grid of ``len(rows)`` x ``n_cols`` cells coloured by ``values[(row, col)]`` (cells
    without a value are pale grey), row labels on the left, ``col_ticks`` under the grid and a
    colour scale with ``unit`` on the right. ``tips`` are the cells' hover titles."""
    left, top, scale_w = _margin(rows), 8.0, 110.0
    grid_w = max(1, n_cols) * cell_w
    width = left + grid_w + 20 + scale_w
    height = top + len(rows) * cell_h + 34
    present = list(values.values())
    lo, hi = (min(present), max(present)) if present else (0.0, 1.0)
    span = hi - lo or 1.0
    body = []
    for r, name in enumerate(rows):
        y = top + r * cell_h
        body.append(_text(left - 6, y + cell_h * 0.68, name, anchor="end"))
        body.append(
            f'<rect x="{left:.1f}" y="{y:.1f}" width="{grid_w:.1f}" height="{cell_h - 1:.1f}" '
            f'fill="{EMPTY}"/>'
        )
    for (r, c), v in sorted(values.items()):
        x, y = left + c * cell_w, top + r * cell_h
        tip = (tips or {}).get((r, c))
        title = f"<title>{escape(tip)}</title>" if tip else ""
        body.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell_w:.2f}" height="{cell_h - 1:.1f}" '
            f'fill="{colour((v - lo) / span)}">{title}</rect>'
        )
    base = top + len(rows) * cell_h
    for c, tick in sorted(col_ticks.items()):
        x = left + c * cell_w
        body.append(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{base + 4:.1f}" '
                    f'stroke="#ffffff" stroke-width="1"/>')  # fmt: skip
        body.append(_text(x + 2, base + 16, tick, size=10, fill=MUTED))
    # the colour scale
    sx = left + grid_w + 24
    steps = 20
    bar_h = max(60.0, len(rows) * cell_h - 20)
    for k in range(steps):
        y = top + bar_h * (1 - (k + 1) / steps)
        body.append(
            f'<rect x="{sx:.1f}" y="{y:.1f}" width="14" height="{bar_h / steps + 0.5:.1f}" '
            f'fill="{colour((k + 0.5) / steps)}"/>'
        )
    body.append(_text(sx + 18, top + 10, f"{hi:,.2f}", size=10))
    body.append(_text(sx + 18, top + bar_h, f"{lo:,.2f}", size=10))
    body.append(_text(sx, top + bar_h + 16, unit, size=10, fill=MUTED))
    return _svg(width, max(height, top + bar_h + 24), label, body)


@dataclass(frozen=True)
class Bar:
    """One bar of :func:`bars`: its label, length and the text written after it."""

    label: str
    value: float
    text: str
    colour: str = "#2a788e"


def bars(items: Sequence[Bar], *, label: str, width: float = 640.0, bar_h: float = 20.0) -> str:
    """Horizontal bars, longest = the largest value (negative values count as 0)."""
    left = _margin([b.label for b in items])
    right = max((text_width(b.text) for b in items), default=0) + 16
    top = 6.0
    room = max(60.0, width - left - right)
    width = left + room + right
    most = max((max(0.0, b.value) for b in items), default=0.0) or 1.0
    body = []
    for i, b in enumerate(items):
        y = top + i * (bar_h + 6)
        w = room * max(0.0, b.value) / most
        body.append(_text(left - 6, y + bar_h * 0.7, b.label, anchor="end"))
        body.append(
            f'<rect x="{left:.1f}" y="{y:.1f}" width="{max(w, 1.0):.1f}" height="{bar_h:.1f}" '
            f'rx="2" fill="{b.colour}"><title>{escape(b.label)}: {escape(b.text)}</title></rect>'
        )
        body.append(_text(left + w + 6, y + bar_h * 0.7, b.text, fill=MUTED))
    height = top + len(items) * (bar_h + 6) + 4
    return _svg(width, height, label, body)


@dataclass(frozen=True)
class Part:
    """One part of a stacked bar: a count, its colour and the legend name."""

    name: str
    value: int
    colour: str


def stacked(rows: Sequence[tuple[str, Sequence[Part]]], *, label: str, width: float = 640.0) -> str:
    """One 100%-stacked horizontal bar per row (shares of the row's total), with a legend."""
    left, right, bar_h, top = _margin([name for name, _ in rows]), 70.0, 20.0, 6.0
    room = width - left - right
    body = []
    legend: dict[str, str] = {}
    for i, (name, parts) in enumerate(rows):
        y = top + i * (bar_h + 6)
        total = sum(p.value for p in parts)
        body.append(_text(left - 6, y + bar_h * 0.7, name, anchor="end"))
        x = left
        for p in parts:
            legend.setdefault(p.name, p.colour)
            if total <= 0 or p.value <= 0:
                continue
            w = room * p.value / total
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bar_h:.1f}" '
                f'fill="{p.colour}"><title>{escape(name)}: {escape(p.name)} {p.value:,} '
                f"({p.value / total:.0%})</title></rect>"
            )
            x += w
        body.append(_text(left + room + 6, y + bar_h * 0.7, f"{total:,}", fill=MUTED))
    y = top + len(rows) * (bar_h + 6) + 8
    x = left
    for name, col in legend.items():
        body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="10" height="10" fill="{col}"/>')
        body.append(_text(x + 14, y + 9, name, size=10))
        x += 24 + text_width(name, 10)
    return _svg(width, y + 18, label, body)


@dataclass(frozen=True)
class Place:
    """One site on :func:`site_map`: where it is, how big its circle, what colour."""

    label: str
    lon: float
    lat: float
    size: float  # e.g. GPU-hours traded (circle area)
    value: float | None  # e.g. average price (colour); None: grey
    text: str  # hover title


def site_map(
    places: Sequence[Place],
    *,
    label: str,
    unit: str,
    width: float = 620.0,
    height: float = 420.0,
) -> str:
    """Sites on a plain longitude/latitude plot (equirectangular, framed on the sites), a
    circle per site with its area proportional to ``size`` and its colour by ``value``."""
    if not places:
        return _svg(width, 40, label, [_text(8, 24, "-", fill=MUTED)])
    pad = 2.0
    west = min(p.lon for p in places) - pad
    east = max(p.lon for p in places) + pad
    south = min(p.lat for p in places) - pad
    north = max(p.lat for p in places) + pad
    inner_w, inner_h = width - 150, height - 40
    scale = min(inner_w / (east - west), inner_h / (north - south))
    biggest = max((p.size for p in places), default=0.0) or 1.0
    values = [p.value for p in places if p.value is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    span = hi - lo or 1.0
    body = [f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="#f4f7fb"/>']
    for lon in range(int(west) + 1, int(east) + 1):
        if lon % 5 == 0:
            x = 10 + (lon - west) * scale
            body.append(
                f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{10 + (north - south) * scale:.1f}" '
                'stroke="#dde3ea" stroke-width="1"/>'
            )
            body.append(_text(x + 2, 10 + (north - south) * scale + 12, f"{lon}°E", size=9,
                              fill=MUTED))  # fmt: skip
    for lat in range(int(south) + 1, int(north) + 1):
        if lat % 5 == 0:
            y = 10 + (north - lat) * scale
            body.append(
                f'<line x1="10" y1="{y:.1f}" x2="{10 + (east - west) * scale:.1f}" y2="{y:.1f}" '
                'stroke="#dde3ea" stroke-width="1"/>'
            )
            body.append(_text(12, y - 2, f"{lat}°N", size=9, fill=MUTED))
    for p in sorted(places, key=lambda p: -p.size):
        x = 10 + (p.lon - west) * scale
        y = 10 + (north - p.lat) * scale
        r = 3 + 22 * (max(0.0, p.size) / biggest) ** 0.5
        fill = EMPTY if p.value is None else colour((p.value - lo) / span)
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{fill}" fill-opacity="0.85" '
            f'stroke="#16324f" stroke-width="0.8"><title>{escape(p.text)}</title></circle>'
        )
        body.append(_text(x + r + 3, y + 4, p.label, size=10))
    sx = width - 120
    for k in range(10):
        body.append(
            f'<rect x="{sx + k * 10:.1f}" y="{height - 22:.1f}" width="10" height="8" '
            f'fill="{colour((k + 0.5) / 10)}"/>'
        )
    body.append(_text(sx, height - 26, f"{lo:,.2f} - {hi:,.2f} {unit}", size=9, fill=MUTED))
    return _svg(width, height, label, body)


@dataclass(frozen=True)
class Series:
    """One line of :func:`lines`: its legend name, colour and values (None: no point)."""

    name: str
    values: Sequence[float | None]
    colour: str


def lines(
    series: Sequence[Series],
    x_labels: Sequence[str],
    *,
    label: str,
    unit: str,
    width: float = 760.0,
    height: float = 220.0,
) -> str:
    """Lines over shared x positions (one per label; every ``len(x_labels) // 6``-th label
    is written), the y axis from 0 to the largest value, a legend below. A gap in a series
    (None) breaks its line; a lone point is drawn as a square."""
    n = max(1, len(x_labels))
    top = max((v for s in series for v in s.values if v is not None), default=0.0) or 1.0
    left, right, pad_top, plot_h = 56.0, 16.0, 10.0, height
    room = max(60.0, width - left - right)
    legend_rows = (len(series) + 2) // 3
    total_h = pad_top + plot_h + 24 + legend_rows * 18 + 4

    def x(i: int) -> float:
        return left + (room * (i + 0.5) / n)

    def y(v: float) -> float:
        return pad_top + plot_h * (1 - v / top)

    body = []
    for k in range(5):
        tick = top * k / 4
        body.append(
            f'<line x1="{left:.1f}" x2="{left + room:.1f}" y1="{y(tick):.1f}" '
            f'y2="{y(tick):.1f}" stroke="{EMPTY}"/>'
        )
        body.append(_text(left - 6, y(tick) + 4, f"{tick:,.2f}", anchor="end", fill=MUTED))
    body.append(_text(4, pad_top + 8, unit, fill=MUTED, size=10))
    step = max(1, n // 6)
    for i, name in enumerate(x_labels):
        if i % step == 0:
            body.append(_text(x(i), pad_top + plot_h + 16, name, anchor="middle", fill=MUTED))
    for s in series:
        runs: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(s.values):
            if v is None:
                runs.append([])
            else:
                runs[-1].append((x(i), y(v)))
        for run in runs:
            if len(run) == 1:
                ((cx, cy),) = run
                body.append(
                    f'<rect x="{cx - 3:.1f}" y="{cy - 3:.1f}" width="6" height="6" '
                    f'fill="{s.colour}"/>'
                )
            elif run:
                pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in run)
                body.append(
                    f'<polyline points="{pts}" fill="none" stroke="{s.colour}" '
                    f'stroke-width="2"><title>{escape(s.name)}</title></polyline>'
                )
    for k, s in enumerate(series):
        lx = left + (k % 3) * (room / 3)
        ly = pad_top + plot_h + 24 + (k // 3) * 18
        body.append(
            f'<rect x="{lx:.1f}" y="{ly + 4:.1f}" width="12" height="4" fill="{s.colour}"/>'
        )
        body.append(_text(lx + 16, ly + 10, s.name))
    return _svg(left + room + right, total_h, label, body)
