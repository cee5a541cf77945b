"""Lists are paginated: ``limit`` (1..500) and an opaque ``cursor``; the page says ``next``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi import Request
from sqlalchemy import Select
from sqlalchemy.orm import Session

from suangu.core.errors import ValidationError

T = TypeVar("T")
MAX_LIMIT = 500


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    head, _, n = cursor.partition(":")
    if head != "o" or not n.isdigit() or len(n) > 12:
        raise ValidationError(
            f"malformed cursor {cursor!r}",
            field="query.cursor",
            fix="pass back the next_cursor of the previous page",
        )
    return int(n)


def page(items: Sequence[T], limit: int, cursor: str | None) -> tuple[list[T], str | None]:
    """One page of an ordered list: its items and the cursor of the next page."""
    start = _offset(cursor)
    chunk = list(items[start : start + limit])
    more = start + limit < len(items)
    return chunk, (f"o:{start + limit}" if more else None)


def page_query(
    s: Session, q: Select[Any], limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """One page of an ordered query, fetched with OFFSET/LIMIT (one row more to see the end)."""
    start = _offset(cursor)
    rows = list(s.scalars(q.offset(start).limit(limit + 1)))
    more = len(rows) > limit
    return rows[:limit], (f"o:{start + limit}" if more else None)


def body(request: Request, items: list[Any], next_cursor: str | None) -> dict[str, Any]:
    """The JSON of a page: ``items``, ``next_cursor`` and the ``next`` URL."""
    url = None
    if next_cursor is not None:
        url = str(request.url.include_query_params(cursor=next_cursor))
    return {"items": items, "next_cursor": next_cursor, "next": url}
