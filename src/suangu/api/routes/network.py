"""The network between regions (hubs): links the exchange may move orders' input data over.

Public market data: anyone reads the links (no key needed), as clearings use them for data
moved away from an order's home: a transfer delay, the carrier's price per GB and a
congestion price when a link's bandwidth binds. Operators set the whole network at once
(``PUT /links``: the links sent replace every stored one; sending the same set again
changes nothing).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from suangu.api import schemas
from suangu.api.auth import Operator
from suangu.api.idempotency import fingerprint, run_write
from suangu.api.routes._common import Ctx, IdemKey
from suangu.api.services import link_out
from suangu.core.errors import ValidationError
from suangu.core.types import Link
from suangu.store.repositories import Links

router = APIRouter(tags=["network"])


@router.get("/links", response_model=schemas.LinksOut)
def list_links(ctx: Ctx) -> dict[str, Any]:
    """Every link, by (from_region, to_region)."""
    with ctx.db.session_scope(write=False) as s:
        return {"items": [link_out(x) for x in Links(s).all()]}


@router.put("/links", response_model=schemas.LinksOut)
def put_links(
    body: schemas.LinksIn, request: Request, who: Operator, ctx: Ctx, key: IdemKey = None
) -> JSONResponse:
    """Replace the network with the links sent (an empty list removes every link). Orders
    already cleared keep the transfers and charges of their clearing; later clearings use
    the new links."""
    links: list[Link] = []
    seen: dict[tuple[str, str], int] = {}
    for i, x in enumerate(body.links):
        try:
            link = Link(
                x.from_region, x.to_region, x.latency_ms, x.bandwidth_gbps, x.price_fen_per_gb
            )
        except ValidationError as err:
            raise err.prefixed(f"body.links[{i}]") from None
        if link.key in seen:
            raise ValidationError(
                f"repeats the link {link.from_region} -> {link.to_region} of "
                f"links[{seen[link.key]}]",
                field=f"body.links[{i}]",
                fix="give each (from_region, to_region) pair once",
            )
        seen[link.key] = i
        links.append(link)

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        return 200, {"items": [link_out(x) for x in Links(s).replace(links)]}

    return run_write(ctx, who, key, fingerprint("PUT", request.url.path, body), work)
