"""Orders' workloads: checked against the buyer's data objects, stored with the order (secret
values sealed with the master key), answered with secrets redacted, opened for the agent of a
lease. See :mod:`suangu.workload` for the spec."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from suangu.core.errors import ValidationError
from suangu.core.types import Order
from suangu.store.dataobjects import DataObjects
from suangu.store.errors import Conflict
from suangu.store.models import OrderWorkloadRow
from suangu.store.objects import ObjectStore
from suangu.workload import REDACTED, WorkloadSpec, check_data_gb


def with_data_gb(order: Order, spec: WorkloadSpec, given: int | None, prefix: str) -> Order:
    """``order`` with the data volume of its workload's inputs (``given``: the ``data_gb``
    the order itself stated, if it did)."""
    gb = check_data_gb(spec, given, f"{prefix}.data_gb")
    if gb == order.data_gb:
        return order
    try:
        return dataclasses.replace(order, data_gb=gb)
    except ValidationError as err:
        raise err.prefixed(prefix) from None


def _purpose(order_id: str, name: str) -> str:
    return f"order:{order_id}:secret_env:{name}"


def _stored(store: ObjectStore, order_id: str, spec: WorkloadSpec) -> dict[str, Any]:
    out = spec.model_dump(mode="json", exclude_none=True)
    out["secret_env"] = {
        k: store.seal_text(_purpose(order_id, k), v) for k, v in spec.secrets().items()
    }
    return out


def _opened(store: ObjectStore, order_id: str, stored: dict[str, Any]) -> WorkloadSpec:
    data = dict(stored)
    data["secret_env"] = {
        k: store.open_text(_purpose(order_id, k), v)
        for k, v in (stored.get("secret_env") or {}).items()
    }
    return WorkloadSpec.model_validate(data)


def redact(stored: dict[str, Any]) -> dict[str, Any]:
    out = dict(stored)
    out["secret_env"] = {k: REDACTED for k in stored.get("secret_env") or {}}
    return out


def check_inputs(s: Session, spec: WorkloadSpec, buyer_id: str, prefix: str) -> None:
    """Every exchange input is a data object of the buyer with the stated sha256 and size."""
    found = DataObjects(s).many(i.object for i in spec.inputs if i.object)
    for n, item in enumerate(spec.inputs):
        if item.object is None:
            continue
        at = f"{prefix}.workload.inputs[{n}]"
        obj = found.get(item.object)
        if obj is None or obj.owner_id != buyer_id:
            raise ValidationError(
                f"no data object {item.object!r} of yours",
                field=f"{at}.object",
                fix="upload it first (suangu data put) and give the id it answers",
            )
        if obj.sha256 != item.sha256:
            raise ValidationError(
                f"is {item.sha256}, but object {obj.id} has sha256 {obj.sha256}",
                field=f"{at}.sha256",
                fix="give the object's sha256 (suangu data ls), or the object you meant",
            )
        if obj.size != item.size:
            raise ValidationError(
                f"is {item.size}, but object {obj.id} holds {obj.size} bytes",
                field=f"{at}.size",
                fix=f"give size: {obj.size}",
            )


def attach(
    s: Session,
    store: ObjectStore,
    order: Order,
    spec: WorkloadSpec,
    now: int,
    prefix: str = "body",
) -> dict[str, Any]:
    """Check and store the workload of a just-submitted ``order`` (in its transaction); the
    same workload again changes nothing, another one is a 409. Answers it redacted."""
    check_inputs(s, spec, order.buyer_id, prefix)
    row = s.get(OrderWorkloadRow, order.id)
    if row is not None:
        if _opened(store, order.id, row.spec) != spec:
            raise Conflict(
                f"order {order.id!r} exists with another workload",
                field=f"{prefix}.id",
                fix="use a new order id, or resubmit the order exactly as first sent",
            )
        return redact(row.spec)
    stored = _stored(store, order.id, spec)
    s.add(OrderWorkloadRow(order_id=order.id, spec=stored, created_at=now))
    s.flush()
    return redact(stored)


def redacted_for(s: Session, order_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The workloads (redacted) of the orders that have one."""
    ids = sorted(set(order_ids))
    if not ids:
        return {}
    q = select(OrderWorkloadRow).where(OrderWorkloadRow.order_id.in_(ids))
    return {r.order_id: redact(r.spec) for r in s.scalars(q)}


def spec_of(s: Session, store: ObjectStore, order_id: str) -> WorkloadSpec | None:
    """The whole workload of an order, secrets opened (for the agent of one of its leases)."""
    row = s.get(OrderWorkloadRow, order_id)
    return None if row is None else _opened(store, order_id, row.spec)


def _pydantic_problem(err: PydanticValidationError, prefix: str) -> ValidationError:
    e = err.errors()[0]
    path = prefix
    for part in e["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    message = str(e["msg"]).removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        message = f"unknown field {e['loc'][-1]!r}"
    return ValidationError(message, field=path, fix="see the workload spec in docs/api.md")


def from_yaml(raw: bytes) -> dict[str, tuple[WorkloadSpec, int | None, str]]:
    """The workloads of a YAML job spec that :func:`suangu.api.services.orders_from_yaml`
    accepted: order id -> (workload, the ``data_gb`` the order stated or None, its field
    path)."""
    data = yaml.safe_load(raw.decode("utf-8-sig"))
    items: list[tuple[Any, str]]
    if isinstance(data, dict) and "orders" in data:
        items = [(o, f"body.orders[{n}]") for n, o in enumerate(data["orders"] or [])]
    else:
        items = [(data, "body")]
    out: dict[str, tuple[WorkloadSpec, int | None, str]] = {}
    for item, at in items:
        if not isinstance(item, dict) or item.get("workload") is None:
            continue
        try:
            spec = WorkloadSpec.model_validate(item["workload"])
        except PydanticValidationError as err:
            raise _pydantic_problem(err, f"{at}.workload") from None
        given = item.get("data_gb")
        out[str(item["id"])] = (spec, int(given) if given is not None else None, at)
    return out
