"""Group commit of ``POST /orders`` (:mod:`suangu.api.orderbatch`): every order of a batch
gets the answer it would have got alone, whatever else the batch holds."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from suangu.api import schemas
from suangu.api.auth import Principal
from suangu.api.idempotency import fingerprint
from suangu.api.orderbatch import OrderBatcher, _Item
from suangu.api.services import order_from_json
from suangu.core.errors import SuanguError
from suangu.store.models import IdempotencyRow, OrderRow, Role
from suangu.store.repositories import Members

from .conftest import NOW_SLOT, Api

PATH = "/api/v1/orders"


def body(order_id: str, gpus: int = 1) -> dict[str, Any]:
    return {
        "id": order_id,
        "kind": "batch",
        "gpus": gpus,
        "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 3,
        "limit_fen": 1,
        "gpu_hours": 1,
    }


def who(api: Api, member: str) -> Principal:
    me = api.call("GET", "/me", member).json()
    return Principal(member, Role(me["role"]), me["key_id"])


def item(
    api: Api, loop: asyncio.AbstractEventLoop, w: Principal, b: dict[str, Any], key: str | None
) -> _Item:
    model = schemas.OrderIn(**b)
    order = order_from_json(model, w.member_id, NOW_SLOT)
    digest = fingerprint("POST", PATH, model)
    now = api.clock.now()
    return _Item(w, key, digest, order, now, loop, loop.create_future(), {"id": "body.id"})


def run(batcher: OrderBatcher, items: list[_Item]) -> list[Any]:
    """Write ``items`` as the writer thread would (batches in queue order), then collect
    each item's answer: ``(status, body, replayed)`` or the exception."""
    loop = items[0].loop
    pending = list(items)
    while pending:
        batch, pending = batcher._split(pending)
        batcher._write(batch)
    out: list[Any] = []
    for i in items:
        try:
            out.append(loop.run_until_complete(i.future))
        except Exception as err:
            out.append(err)
    return out


def count(api: Api, table: Any) -> int:
    with api.db.session_scope(write=False) as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture
def loop() -> Any:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_one_batch_answers_each_order_as_alone(api: Api, loop: asyncio.AbstractEventLoop) -> None:
    for m in ("b1", "b2", "b3"):
        api.member(m, Role.BUYER)
    b1, b2, b3 = who(api, "b1"), who(api, "b2"), who(api, "b3")
    batcher = OrderBatcher(api.client.app.state.ctx)
    # Earlier: b1 recorded key "k-old" for order o-old, and order o-fixed exists.
    first = run(
        batcher,
        [item(api, loop, b1, body("o-old"), "k-old"), item(api, loop, b1, body("o-fixed"), None)],
    )
    assert [r[0] for r in first] == [201, 201]
    with api.db.session_scope() as s:  # b2's key is revoked by another worker
        Members(s).revoke_key(b2.key_id, api.clock.now())
    items = [
        item(api, loop, b1, body("o1"), "k1"),  # new
        item(api, loop, b1, body("o1"), "k1"),  # the same request again: next batch, replayed
        item(api, loop, b2, body("o2"), None),  # revoked: 401
        item(api, loop, b1, body("o3"), None),  # o3 twice in the batch, same fields: one row
        item(api, loop, b1, body("o3"), None),
        item(api, loop, b3, body("o1"), None),  # another buyer's o1: its own order
        item(api, loop, b1, body("o-old", gpus=2), "k-old"),  # the key's 409
        item(api, loop, b1, body("o-fixed", gpus=3), None),  # other fields: 409 on body.id
        item(api, loop, b1, body("o-old"), "k-old"),  # recorded: replayed
    ]
    n_orders = count(api, OrderRow)
    out = run(batcher, items)
    assert out[0][0] == 201 and out[0][2] is False and out[0][1]["id"] == "b1~o1"
    assert out[1] == (out[0][0], out[0][1], True)
    assert isinstance(out[2], SuanguError) and out[2].field == "header.Authorization"
    assert out[3][0] == out[4][0] == 201 and out[3][1] == out[4][1]
    assert out[5][0] == 201 and out[5][1]["id"] == "b3~o1"  # ids are per member
    assert isinstance(out[6], SuanguError) and out[6].field == "header.Idempotency-Key"
    assert isinstance(out[7], SuanguError) and out[7].field == "body.id"
    assert out[8] == (201, first[0][1], True)
    assert count(api, OrderRow) == n_orders + 3  # b1~o1, b1~o3, b3~o1
    with api.db.session_scope(write=False) as s:
        keys = sorted(s.scalars(select(IdempotencyRow.key)))
    assert keys == ["k-old", "k1"]
    assert batcher.batches == 3  # (o-old, o-fixed), the nine less the repeated k1, then it


def test_a_failing_batch_is_written_order_by_order(
    api: Api, loop: asyncio.AbstractEventLoop
) -> None:
    """An order that breaks the batch's transaction (here: a buyer that does not exist,
    behind a real key) fails alone; the others are written."""
    api.member("b1", Role.BUYER)
    b1 = who(api, "b1")
    ghost = Principal("ghost", Role.BUYER, b1.key_id)
    batcher = OrderBatcher(api.client.app.state.ctx)
    out = run(
        batcher,
        [
            item(api, loop, b1, body("good-1"), "g1"),
            item(api, loop, ghost, body("bad"), None),
            item(api, loop, b1, body("good-2"), None),
        ],
    )
    assert out[0][0] == 201 and out[2][0] == 201
    assert isinstance(out[1], Exception)
    with api.db.session_scope(write=False) as s:
        assert sorted(s.scalars(select(OrderRow.id))) == ["b1~good-1", "b1~good-2"]
        assert list(s.scalars(select(IdempotencyRow.key))) == ["g1"]


def test_many_clients_through_the_api(api: Api) -> None:
    """Orders from many threads at once, some retried with their key: each order once, each
    retry the first answer."""
    buyers = [f"c{i}" for i in range(4)]
    for b in buyers:
        api.member(b, Role.BUYER)
    answers: dict[tuple[str, int], list[Any]] = {}
    lock = threading.Lock()

    def client(b: str) -> None:
        for k in range(6):
            for _ in range(2):  # each order sent twice with its key
                r = api.call(
                    "POST",
                    "/orders",
                    b,
                    json=body(f"{b}-o{k}"),
                    headers={"Idempotency-Key": f"{b}-{k}"},
                )
                with lock:
                    answers.setdefault((b, k), []).append((r.status_code, r.json()))

    threads = [threading.Thread(target=client, args=(b,)) for b in buyers for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count(api, OrderRow) == len(buyers) * 6
    for got in answers.values():
        assert len(got) == 4 and all(g == got[0] for g in got) and got[0][0] == 201


def test_group_commit_off(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """``SUANGU_ORDER_BATCH=0``: each order in its own transaction, the same answers."""
    monkeypatch.setenv("SUANGU_ORDER_BATCH", "0")
    api.member("b1", Role.BUYER)
    key = {"Idempotency-Key": "off-1"}
    first = api.call("POST", "/orders", "b1", json=body("off-1"), headers=key)
    assert first.status_code == 201, first.text
    again = api.call("POST", "/orders", "b1", json=body("off-1"), headers=key)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = api.call("POST", "/orders", "b1", json=body("off-1", gpus=2), headers=key)
    assert other.status_code == 409 and other.json()["field"] == "header.Idempotency-Key"
    clash = api.call("POST", "/orders", "b1", json=body("off-1", gpus=2))
    assert clash.status_code == 409 and clash.json()["field"] == "body.id"
    assert getattr(api.client.app.state, "order_batcher", None) is None
