"""Keyset pagination of the database listings: every item once, in order, however the list
changes between pages; cursors are opaque and checked."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from suangu.store.models import Role

from .conftest import NOW_SLOT, Api

#: (path, who lists) of the listings paged in the database.
LISTINGS = [
    ("/members", "op"),
    ("/members/op/keys", "op"),
    ("/sites", "op"),
    ("/pools", "op"),
    ("/offers", "op"),
    ("/orders", "op"),
    ("/orders", "buy-a"),
    ("/accounts", "op"),
    ("/clearings", "op"),
]


def _all(api: Api, path: str, who: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    sep = "&" if "?" in path else "?"
    for _ in range(1000):
        url = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = api.call("GET", url, who)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            assert page["next"] is None
            return items
        assert page["next"].endswith(f"cursor={cursor}")
    raise AssertionError("no last page")


@pytest.mark.parametrize(("path", "who"), LISTINGS)
def test_pages_add_up_to_the_whole_list(world: Api, path: str, who: str) -> None:
    whole = world.call("GET", f"{path}?limit=500", who).json()["items"]
    assert whole
    for limit in (1, 2, 3):
        assert _all(world, path, who, limit) == whole


@pytest.mark.parametrize(("path", "who"), LISTINGS)
def test_a_malformed_cursor_is_a_422_naming_it(world: Api, path: str, who: str) -> None:
    wrong_arity = "k1." + base64.urlsafe_b64encode(b'["a","b","c","d"]').decode().rstrip("=")
    for cursor in ("zzz", "k1.!!!", "k1." + "A" * 20, wrong_arity, "o:-1"):
        r = world.call("GET", f"{path}?cursor={cursor}", who)
        assert r.status_code == 422, (cursor, r.text)
        assert r.json()["field"] == "query.cursor"


def test_an_offset_cursor_still_reads(world: Api) -> None:
    whole = world.call("GET", "/members?limit=500", "op").json()["items"]
    page = world.call("GET", "/members?limit=2&cursor=o:1", "op").json()
    assert page["items"] == whole[1:3]


def test_items_added_before_the_cursor_do_not_repeat_the_page(api: Api) -> None:
    """With offsets, a member inserted before the cursor would shift the next page back by
    one and repeat an item; the keyset cursor resumes after the last item seen."""
    api.member("op", Role.OPERATOR)
    for m in ("m-b", "m-d", "m-f", "m-h"):
        api.member(m, Role.BUYER)
    first = api.call("GET", "/members?limit=2&role=buyer", "op").json()
    assert [m["id"] for m in first["items"]] == ["m-b", "m-d"]
    api.member("m-a", Role.BUYER)  # sorts before the cursor
    api.member("m-e", Role.BUYER)  # after it
    second = api.call("GET", f"/members?limit=2&role=buyer&cursor={first['next_cursor']}", "op")
    assert [m["id"] for m in second.json()["items"]] == ["m-e", "m-f"]


def test_orders_submitted_while_paging_come_last(api: Api) -> None:
    api.member("op", Role.OPERATOR)
    api.member("b", Role.BUYER)

    def submit(order_id: str) -> None:
        body = {
            "id": order_id,
            "kind": "batch",
            "gpus": 1,
            "release_slot": NOW_SLOT,
            "deadline_slot": NOW_SLOT + 3,
            "limit_fen": 1,
            "gpu_hours": 1,
        }
        assert api.call("POST", "/orders", "b", json=body).status_code == 201

    for i in (5, 1, 3):
        submit(f"o{i}")
    first = api.call("GET", "/orders?limit=2", "op").json()
    assert [o["id"] for o in first["items"]] == ["b~o1", "b~o3"]  # submitted together: by id
    api.clock.advance(10)
    submit("o0")
    rest = api.call("GET", f"/orders?limit=5&cursor={first['next_cursor']}", "op").json()
    assert [o["id"] for o in rest["items"]] == ["b~o5", "b~o0"]
    assert rest["next_cursor"] is None
