"""What each API write puts in the audit trail (:mod:`suangu.store.audit`).

Every write of the API goes through :func:`suangu.api.idempotency.run_write` (or, for
``POST /orders``, the group commit of :mod:`suangu.api.orderbatch`): both call
:func:`record_write` in the write's transaction once it succeeded, so the entry commits
with the write or not at all. A replayed response (the same ``Idempotency-Key``) wrote
nothing and adds no entry.

The entry's action and object come from the route that served the request
(:data:`ACTIONS`, by method and route template), filled in from the path parameters, the
request and the response; its ``detail`` holds the HTTP status, the sha256 of the request
as the API understood it (the ``Idempotency-Key`` fingerprint: whoever has the request can
prove it is the one recorded) and a few fields named per route. The clearing loop's writes
(clearings, lease starts and completions) are recorded by :mod:`suangu.api.scheduler` as the
``system`` role.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from contextvars import Context, ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from suangu.api import observe
from suangu.api.auth import Principal
from suangu.store import audit
from suangu.store.audit import Entry

PREFIX = "/api/v1"

#: The request of the current write, as :func:`suangu.api.idempotency.fingerprint` parsed
#: it (set there, read here).
_REQUEST_DATA: ContextVar[Any] = ContextVar("suangu_request_data", default=None)


def remember_request(data: Any) -> None:
    """Called by ``fingerprint``: the canonical request of the write about to run."""
    _REQUEST_DATA.set(data)


@dataclass(frozen=True, slots=True)
class Spec:
    """How a write route is recorded."""

    action: str
    #: ``str.format`` template over the path parameters, then the request's fields, then
    #: the response's (``{id}``); a field that is nowhere gives ``?``.
    object: str
    #: Request fields copied into ``detail``.
    request: tuple[str, ...] = ()
    #: Response fields copied into ``detail``.
    response: tuple[str, ...] = ()
    #: One entry per item of the response's ``items`` (each filled in from its item).
    per_item: bool = False
    #: A response whose field ``new`` is false wrote nothing (a resent reading): no entry.
    unless_old: bool = False
    #: ``detail.count``: how many ``items`` the response has.
    count_items: bool = False
    #: The response's fields before the request's: ``{id}`` is the stored id of an order or
    #: offer (``<member>~<name>``, :mod:`suangu.api.ids`), not the name the client sent.
    stored_id: bool = False


#: Every write route of the API (method, template under ``/api/v1``) -> its record.
ACTIONS: Mapping[tuple[str, str], Spec] = {
    ("POST", "/members"): Spec("member.create", "member:{id}", ("role",)),
    ("POST", "/members/{member_id}/keys"): Spec(
        "key.create", "key:{id}", ("label",), ("member_id", "role")
    ),
    ("DELETE", "/members/{member_id}/keys/{key_id}"): Spec(
        "key.revoke", "key:{key_id}", (), ("member_id",)
    ),
    ("POST", "/sites"): Spec("site.create", "site:{id}", ("provider_id",)),
    ("POST", "/pools"): Spec("pool.create", "pool:{id}", ("site_id", "gpu_class")),
    ("POST", "/offers"): Spec(
        "offer.submit", "offer:{id}", (), ("pool_id", "provider_id"), stored_id=True
    ),
    ("POST", "/offers/{offer_id}/withdraw"): Spec("offer.withdraw", "offer:{id}", stored_id=True),
    ("POST", "/orders"): Spec(
        "order.submit", "order:{id}", (), ("kind", "gpus", "limit_fen"), stored_id=True
    ),
    ("POST", "/orders/yaml"): Spec(
        "order.submit",
        "order:{id}",
        (),
        ("kind", "gpus", "limit_fen"),
        per_item=True,
        stored_id=True,
    ),
    ("POST", "/orders/{order_id}/cancel"): Spec("order.cancel", "order:{id}", stored_id=True),
    ("POST", "/resales"): Spec("resale.offer", "resale:{id}", ("lease_id", "reserve_fen")),
    ("POST", "/resales/{resale_id}/withdraw"): Spec("resale.withdraw", "resale:{resale_id}"),
    ("POST", "/clearings"): Spec(
        "clearing.run",
        "clearing:{id}",
        ("first_slot", "n_slots"),
        ("status", "welfare_fen", "n_allocations"),
    ),
    ("POST", "/leases/{lease_id}/readings"): Spec(
        "reading.record",
        "lease:{lease_id}",
        ("id", "interval_start", "interval_end", "gpu_seconds", "energy_wh", "source"),
        ("lease_state",),
        unless_old=True,
    ),
    # A batch of readings (the request is their list): one entry with what it recorded.
    ("POST", "/readings"): Spec("reading.batch", "readings", (), ("recorded", "settled")),
    ("POST", "/leases/{lease_id}/fail"): Spec("lease.fail", "lease:{lease_id}", (), ("state",)),
    ("POST", "/agents/heartbeat"): Spec(
        "agent.heartbeat",
        "member:{provider_id}",
        ("instance", "agent", "pools"),
        ("since",),
        unless_old=True,
    ),
    ("POST", "/deposits"): Spec("deposit", "deposit:{id}", ("member_id", "amount_fen")),
    ("PUT", "/fees"): Spec("fees.set", "fees", ("fee_bp",)),
    ("PUT", "/market/carbon-price"): Spec("carbon_price.set", "carbon_price", ("yuan_per_t",)),
    ("PUT", "/links"): Spec("links.set", "links", count_items=True),
    ("POST", "/data"): Spec("data.put", "data:{id}", (), ("name", "sha256", "size")),
    ("POST", "/leases/{lease_id}/grants"): Spec(
        "grant.issue", "lease:{lease_id}", (), (), count_items=True
    ),
    ("POST", "/leases/{lease_id}/outputs"): Spec(
        "output.put", "lease:{lease_id}", (), ("id", "name", "sha256", "size")
    ),
    ("POST", "/leases/{lease_id}/checkpoint"): Spec(
        "checkpoint.put", "lease:{lease_id}", (), ("id", "sha256", "size")
    ),
    ("POST", "/leases/{lease_id}/logs"): Spec("logs.append", "lease:{lease_id}"),
    ("PUT", "/sites/{site_id}/energy"): Spec("site.energy", "site:{site_id}", (), ("kind",)),
    ("PUT", "/sites/{site_id}/energy/series"): Spec(
        "site.energy", "site:{site_id}", (), ("kind", "series_hours")
    ),
    ("POST", "/leases/{lease_id}/report"): Spec(
        "lease.report", "lease:{lease_id}", ("exit_code", "reason"), ()
    ),
}


class _Fields(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


_FORMATTER = string.Formatter()


def _fill(template: str, *sources: Any) -> str:
    fields = _Fields()
    for source in reversed(sources):
        if isinstance(source, Mapping):
            fields.update({k: v for k, v in source.items() if isinstance(v, str | int)})
    return _FORMATTER.vformat(template, (), fields)


def _pick(source: Any, names: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(source, Mapping):
        return {}
    return {n: source[n] for n in names if n in source and _scalar(source[n])}


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


def entries_for(
    who: Principal,
    info: observe.RequestInfo | None,
    request: Any,
    status: int,
    body: Any,
    digest: str,
    now: int,
) -> list[Entry]:
    """The audit entries of a write that answered ``status``, ``body``."""
    method = info.method if info is not None else "?"
    route = (info.route if info is not None else None) or "?"
    template = route[len(PREFIX) :] if route.startswith(PREFIX) else route
    params = info.path_params if info is not None else {}
    spec = ACTIONS.get((method, template))
    if spec is None:  # a write route not listed: recorded all the same
        spec = Spec(f"{method} {template}", template.strip("/").replace("/", ":") or "?")
    if spec.unless_old and isinstance(body, Mapping) and body.get("new") is False:
        return []
    items = body.get("items") if spec.per_item and isinstance(body, Mapping) else None
    targets = items if isinstance(items, list) else [body]
    out = []
    for target in targets:
        detail: dict[str, Any] = {"status": status, "request_sha256": digest}
        detail.update(_pick(request, spec.request))
        detail.update(_pick(target, spec.response))
        if spec.count_items and isinstance(target, Mapping):
            detail["count"] = len(target.get("items") or ())
        out.append(
            Entry(
                at=now,
                member_id=who.member_id,
                role=str(who.role),
                action=spec.action,
                object=_fill(
                    spec.object,
                    *((params, target, request) if spec.stored_id else (params, request, target)),
                ),
                request_id=None if info is None else info.request_id,
                detail=detail,
            )
        )
    return out


def record_write(
    s: Session,
    who: Principal,
    status: int,
    body: Any,
    digest: str,
    now: int,
    context: Context | None = None,
) -> None:
    """Note the entries of a write in its transaction (``context``: the request's, when
    the write runs outside it, as a batch of orders does)."""
    if context is None:
        info, request = observe.current(), _REQUEST_DATA.get()
    else:
        info, request = context.get(observe.CURRENT), context.get(_REQUEST_DATA)
    audit.note(s, *entries_for(who, info, request, status, body, digest, now))


def record_system(s: Session, now: int, action: str, *objects: str, **detail: Any) -> None:
    """Note entries of the exchange's own writes (the clearing loop): role ``system``, no
    member, one entry per object."""
    rid = observe.current_id()
    audit.note(s, *(Entry(now, None, audit.SYSTEM, action, obj, rid, detail) for obj in objects))
