"""Complete-or-nothing batch orders through the API (JSON and YAML), the clearing and the
quote, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from .conftest import NOW_SLOT, Api
from .test_pretrade import _clear, _setup, market  # noqa: F401  (the fixture)


def _order(oid: str, gpus: int, hours: int, limit: int, deadline: int, **kw: Any) -> dict[str, Any]:
    return {
        "id": oid, "kind": "batch", "gpus": gpus, "gpu_hours": hours, "limit_fen": limit,
        "release_slot": NOW_SLOT, "deadline_slot": deadline, **kw,
    }  # fmt: skip


def _got(api: Api, who: str, oid: str) -> int:
    r = api.call("GET", "/leases", who, params={"order_id": oid})
    assert r.status_code == 200, r.text
    return sum(x["gpus"] for x in r.json()["items"])


def test_served_in_full_or_not_at_all(market: Api) -> None:  # noqa: F811
    # 8 GPUs per slot. buy-b (60 yuan) wants 8 GPU-hours by slot 102; buy-a 12 at 30 yuan,
    # worthless in part. As a plain order buy-a would get the 8 GPU-slots buy-b leaves.
    ok = market.call("POST", "/orders", "buy-b", json=_order("b-1", 8, 8, 6000, NOW_SLOT + 2))
    assert ok.status_code == 201, ok.text
    con = _order("a-1", 8, 12, 3000, NOW_SLOT + 2, complete_or_nothing=True)
    r = market.call("POST", "/orders", "buy-a", json=con)
    assert r.status_code == 201 and r.json()["complete_or_nothing"] is True, r.text
    plain = market.call(
        "GET", "/market/quote", "buy-a", json={**con, "id": "q", "complete_or_nothing": False}
    )
    assert plain.json()["gpu_hours"] == 8, plain.text
    assert market.call("GET", "/orders/a-1", "buy-a").json()["complete_or_nothing"] is True
    # The quote says the same: nothing for a-1, as things stand.
    q = market.call("GET", "/market/quote", "buy-a", json={**con, "id": "q"}).json()
    assert q["gpu_hours"] == 0 and q["indicative"] is True
    # A YAML job spec may say it too: 16 GPU-hours by slot 104 fit beside b-1, in full.
    yaml = (
        f"id: a-2\nbuyer: buy-a\nkind: batch\ngpus: 8\ngpu_hours: 16\nrelease: {NOW_SLOT}\n"
        f"deadline: {NOW_SLOT + 4}\nlimit: 25\ncomplete_or_nothing: true\n"
    )
    y = market.call(
        "POST", "/orders/yaml", "buy-a", content=yaml, headers={"Content-Type": "application/yaml"}
    )
    assert y.status_code == 201 and y.json()["items"][0]["complete_or_nothing"] is True, y.text
    _clear(market, "clr-con")
    assert _got(market, "buy-b", "b-1") == 8
    assert _got(market, "buy-a", "a-1") == 0
    assert _got(market, "buy-a", "a-2") == 16
    status = {o["id"]: o["status"] for o in market.call("GET", "/orders", "buy-a").json()["items"]}
    assert status == {"buy-a~a-1": "open", "buy-a~a-2": "cleared"}
    clearing = market.call("GET", "/clearings/clr-con", "op").json()
    assert "a-1" in clearing["message"], clearing["message"]


def test_only_batch_orders(market: Api) -> None:  # noqa: F811
    gang = {**_order("g-1", 2, 0, 3000, NOW_SLOT + 4), "kind": "gang", "duration_slots": 2}
    del gang["gpu_hours"]
    r = market.call("POST", "/orders", "buy-a", json={**gang, "complete_or_nothing": True})
    assert r.status_code == 422 and r.json()["field"] == "body.complete_or_nothing", r.text
