"""Lists are paginated: ``limit`` (1..500) and an opaque ``cursor``; the page says ``next``.

Database listings use keyset (cursor) pagination (:func:`page_query`): the cursor holds the
sort key of the last item of the page, and the next page is the rows after it in the
listing's order (``WHERE (a, b) > (:a, :b) ORDER BY a, b LIMIT n``). A page costs the same
however deep it is (no ``OFFSET`` scan), and rows inserted or deleted meanwhile never make a
client skip or repeat an item. The order comes from the query's own ``ORDER BY``: plain
columns, ascending or descending, that are never NULL, the last of which is unique (an id).

Lists computed in memory use :func:`page` (an offset into the list). Cursors of the older
``o:<offset>`` form are still read by :func:`page_query`, so a client paging through an
upgrade goes on.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi import Request
from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from suangu.core.errors import ValidationError

T = TypeVar("T")
MAX_LIMIT = 500
#: Longest cursor a client may send back (a sort key of a few ids, base64-encoded).
MAX_CURSOR = 1024
_KEYSET = "k1."


def _malformed(cursor: str) -> ValidationError:
    shown = cursor if len(cursor) <= 40 else cursor[:37] + "..."
    return ValidationError(
        f"malformed cursor {shown!r}",
        field="query.cursor",
        fix="pass back the next_cursor of the previous page",
    )


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    head, _, n = cursor.partition(":")
    if head != "o" or not n.isdigit() or len(n) > 12:
        raise _malformed(cursor)
    return int(n)


def page(items: Sequence[T], limit: int, cursor: str | None) -> tuple[list[T], str | None]:
    """One page of an ordered list in memory: its items and the cursor of the next page."""
    start = _offset(cursor)
    chunk = list(items[start : start + limit])
    more = start + limit < len(items)
    return chunk, (f"o:{start + limit}" if more else None)


def encode_cursor(key: Sequence[Any]) -> str:
    """The opaque cursor of a sort key (JSON values: strings and numbers)."""
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return _KEYSET + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, n: int) -> list[Any]:
    """The sort key of ``n`` values in ``cursor`` (a 422 naming ``query.cursor`` if it is not
    one of ours)."""
    if not cursor.startswith(_KEYSET) or len(cursor) > MAX_CURSOR:
        raise _malformed(cursor)
    body = cursor[len(_KEYSET) :]
    try:
        key = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _malformed(cursor) from None
    if not isinstance(key, list) or len(key) != n:
        raise _malformed(cursor)
    if not all(isinstance(v, str | int | float) for v in key):
        raise _malformed(cursor)
    return list(key)


def sort_key(q: Select[Any]) -> list[tuple[ColumnElement[Any], bool]]:
    """``(column, descending)`` for each term of the query's ``ORDER BY``."""
    out: list[tuple[ColumnElement[Any], bool]] = []
    for term in getattr(q, "_order_by_clauses", ()):
        desc = False
        column = term
        if isinstance(term, UnaryExpression) and term.modifier in (
            operators.desc_op,
            operators.asc_op,
        ):
            desc = term.modifier is operators.desc_op
            column = term.element
        if isinstance(column, UnaryExpression):  # nulls first/last, or nested modifiers
            raise TypeError(f"unsupported ORDER BY term for keyset pagination: {term}")
        out.append((column, desc))
    if not out:
        raise TypeError("keyset pagination needs a query with an ORDER BY")
    return out


def after(key: list[tuple[ColumnElement[Any], bool]], values: Sequence[Any]) -> Any:
    """The condition "after ``values`` in the order ``key``" (lexicographic, each column in
    its own direction): ``a > :a OR (a = :a AND b > :b) OR ...``."""
    terms = []
    for i, (column, desc) in enumerate(key):
        equal = [c == v for (c, _), v in zip(key[:i], values[:i], strict=True)]
        beyond = column < values[i] if desc else column > values[i]
        terms.append(and_(*equal, beyond))
    return or_(*terms)


def page_query(
    s: Session, q: Select[Any], limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """One page of an ordered one-column (or one-entity) query, keyset-paginated (see the
    module docs): the items and the cursor of the next page (``None`` on the last)."""
    if cursor and cursor.startswith("o:"):  # an offset cursor from before keyset pagination
        start = _offset(cursor)
        rows = list(s.scalars(q.offset(start).limit(limit + 1)))
        more = len(rows) > limit
        return rows[:limit], (f"o:{start + limit}" if more else None)
    key = sort_key(q)
    if cursor:
        q = q.where(after(key, decode_cursor(cursor, len(key))))
    found = list(s.execute(q.add_columns(*(c for c, _ in key)).limit(limit + 1)))
    more = len(found) > limit
    found = found[:limit]
    nxt = encode_cursor(tuple(found[-1])[1:]) if more and found else None
    return [row[0] for row in found], nxt


def next_url(request: Request, next_cursor: str) -> str:
    """The URL of the next page: the request's path and query with ``cursor`` replaced,
    relative (``/api/v1/orders?limit=50&cursor=...``) or under the configured
    ``ApiSettings.public_url``. Never built from the request's ``Host`` or
    ``X-Forwarded-*`` headers, which the client chooses."""
    url = request.url.include_query_params(cursor=next_cursor)
    relative = url.path + (f"?{url.query}" if url.query else "")
    ctx = getattr(request.app.state, "ctx", None)
    base = getattr(getattr(ctx, "settings", None), "public_url", None)
    return relative if not base else base.rstrip("/") + relative


def body(request: Request, items: list[Any], next_cursor: str | None) -> dict[str, Any]:
    """The JSON of a page: ``items``, ``next_cursor`` and the ``next`` URL
    (:func:`next_url`)."""
    url = None if next_cursor is None else next_url(request, next_cursor)
    return {"items": items, "next_cursor": next_cursor, "next": url}
