"""Parameters shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query

from suangu.api.context import ApiContext, get_ctx
from suangu.api.idempotency import HEADER
from suangu.api.pagination import MAX_CURSOR, MAX_LIMIT
from suangu.store.models import MAX_IDEMPOTENCY_KEY as MAX_KEY

Ctx = Annotated[ApiContext, Depends(get_ctx)]
IdemKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        max_length=MAX_KEY,
        description="Any unique string: a retry with the same key and body returns the first "
        "response; the same key with another body is a 409.",
    ),
]
#: For writes whose retry without a key would do the work twice unseen (a new API key).
IdemKeyRequired = Annotated[
    str,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=MAX_KEY,
        description="Required: any unique string; a retry with the same key and body does "
        "not do the work again.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page")]
Cursor = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR, description="`next_cursor` of the previous page (opaque)"),
]
