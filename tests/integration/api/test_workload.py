"""Orders with a workload (JSON and YAML), on SQLite and PostgreSQL: the inputs are checked
against the buyer's data objects and set the data volume; secrets are never shown back."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from suangu.store.models import OrderRow, OrderWorkloadRow

from .conftest import NOW_SLOT, Api, build_world

DATA = b"candidate,sequence\n" + b"c1,MKTAYIAKQR\n" * 1000
SHA = hashlib.sha256(DATA).hexdigest()
SECRET = "tok-7f3a9c-never-shown"


@pytest.fixture
def wapi(api: Api) -> Iterator[Api]:
    build_world(api)
    yield api


def upload(api: Api, who: str = "buy-a", data: bytes = DATA) -> dict[str, Any]:
    r = api.call("POST", "/data", who, params={"name": "cands.csv"}, content=data)
    assert r.status_code == 201, r.text
    return dict(r.json())


def workload(obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
    w: dict[str, Any] = {
        "runtime": {
            "kind": "process",
            "command": ["python3", "score.py", "inputs/cands.csv"],
            "files": {"score.py": "print('hi')\n"},
            "env": {"THREADS": "2"},
        },
        "inputs": [
            {"object": obj["id"], "sha256": obj["sha256"], "size": obj["size"],
             "path": "inputs/cands.csv"}
        ],
        "outputs": ["out/scores.csv"],
        "checkpoint": False,
        "secret_env": {"API_TOKEN": SECRET},
    }  # fmt: skip
    w.update(kw)
    return w


def order_json(oid: str, w: dict[str, Any], **kw: Any) -> dict[str, Any]:
    body = {
        "id": oid,
        "kind": "batch",
        "gpus": 1,
        "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 4,
        "limit_fen": 2000,
        "gpu_hours": 2,
        "regions": ["inner-mongolia"],
        "home": "inner-mongolia",
        "workload": w,
    }
    body.update(kw)
    return body


def test_an_order_with_a_workload(wapi: Api) -> None:
    api = wapi
    obj = upload(api)
    r = api.call("POST", "/orders", "buy-a", json=order_json("w1", workload(obj)))
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["data_gb"] == 1  # 19 kB of inputs: one whole GB, rounded up
    w = got["workload"]
    assert w["secret_env"] == {"API_TOKEN": "***"}
    assert w["runtime"]["command"][1] == "score.py" and w["outputs"] == ["out/scores.csv"]
    assert w["inputs"][0]["object"] == obj["id"]
    for who in ("buy-a", "op", "aud"):
        shown = api.call("GET", "/orders/buy-a~w1", who)
        assert shown.json()["workload"] == w, who
        assert SECRET not in shown.text
        listed = api.call("GET", "/orders", who, params={"limit": 500})
        assert SECRET not in listed.text
        assert next(o for o in listed.json()["items"] if o["id"] == "buy-a~w1")["workload"] == w
    assert api.call("GET", "/orders/ord-buy-a", "buy-a").json()["workload"] is None
    with api.db.session_scope(write=False) as s:
        stored = s.scalars(select(OrderWorkloadRow)).one().spec
        assert s.get(OrderRow, "buy-a~w1").data_gb == 1  # type: ignore[union-attr]
    assert SECRET not in str(stored)  # sealed at rest
    # The same order again: the same answer; another workload under that id: 409.
    again = api.call("POST", "/orders", "buy-a", json=order_json("w1", workload(obj)))
    assert again.status_code == 201 and again.json() == got
    other = workload(obj, outputs=["out/other.csv"])
    r = api.call("POST", "/orders", "buy-a", json=order_json("w1", other))
    assert r.status_code == 409 and r.json()["field"] == "body.id"
    r = api.call(
        "POST", "/orders", "buy-a",
        json=order_json("w1", workload(obj, secret_env={"API_TOKEN": "changed"})),
    )  # fmt: skip
    assert r.status_code == 409
    cancelled = api.call("POST", "/orders/w1/cancel", "buy-a").json()
    assert cancelled["status"] == "cancelled" and cancelled["workload"] == w


def problem(r: Any) -> tuple[int, str]:
    body = r.json()
    assert r.headers["content-type"] == "application/problem+json", r.text
    return r.status_code, str(body["field"])


def test_bad_workloads_name_the_field(wapi: Api) -> None:
    api = wapi
    obj = upload(api)
    theirs = upload(api, "buy-b", b"their data")
    inp = workload(obj)["inputs"][0]
    cases: list[tuple[dict[str, Any], str]] = [
        (order_json("b1", workload(obj), data_gb=3), "body.data_gb"),
        (order_json("b2", workload(obj, inputs=[{**inp, "sha256": "0" * 64}])),
         "body.workload.inputs[0].sha256"),
        (order_json("b3", workload(obj, inputs=[{**inp, "size": 5}])),
         "body.workload.inputs[0].size"),
        (order_json("b4", workload(obj, inputs=[{**inp, "object": "do_" + "0" * 24}])),
         "body.workload.inputs[0].object"),
        (order_json("b5", workload(obj, inputs=[{**inp, "object": theirs["id"]}])),
         "body.workload.inputs[0].object"),
        (order_json("b6", workload(obj, outputs=["../escape"])), "body.workload.outputs[0]"),
        (order_json("b7", workload(obj, runtime={"kind": "container", "image": "Bad Image"})),
         "body.workload.runtime.container.image"),
        (order_json("b8", workload(obj), home=None), "body.home"),
    ]  # fmt: skip
    for body, field in cases:
        r = api.call("POST", "/orders", "buy-a", json=body)
        assert problem(r) == (422, field), (field, r.text)
        assert SECRET not in r.text
    listed = api.call("GET", "/orders", "buy-a", params={"limit": 500}).json()["items"]
    assert not [o for o in listed if o["id"].startswith("b")]  # nothing half-written


def test_a_container_workload_and_uri_inputs(wapi: Api) -> None:
    api = wapi
    w = {
        "runtime": {"kind": "container", "image": "registry.example:5000/lab/screen:1.2",
                    "command": ["screen", "--all"], "env": {"K": "v"}},
        "inputs": [{"uri": "https://data.example/big.tar", "sha256": "c" * 64,
                    "size": 2_500_000_000}],
        "checkpoint": True,
    }  # fmt: skip
    r = api.call("POST", "/orders", "buy-a", json=order_json("c1", w))
    assert r.status_code == 201, r.text
    assert r.json()["data_gb"] == 3
    assert r.json()["workload"]["runtime"]["image"] == "registry.example:5000/lab/screen:1.2"
    assert r.json()["workload"]["checkpoint"] is True


YAML = """\
orders:
  - id: y1
    buyer: buy-a
    kind: batch
    gpus: 1
    gpu_hours: 2
    release: {release}
    deadline: {deadline}
    limit: 20
    regions: [inner-mongolia]
    home: inner-mongolia
    workload:
      runtime:
        kind: process
        command: [python3, score.py]
      secret_env: {{API_TOKEN: {secret}}}
      inputs:
        - object: {oid}
          sha256: {sha}
          size: {size}
      outputs: [{output}]
"""


def test_yaml_job_specs_carry_workloads(wapi: Api) -> None:
    api = wapi
    obj = upload(api)

    def send(**kw: Any) -> Any:
        values = {
            "release": NOW_SLOT, "deadline": NOW_SLOT + 4, "secret": SECRET, "oid": obj["id"],
            "sha": obj["sha256"], "size": obj["size"], "output": "out/x.csv",
        }  # fmt: skip
        values.update(kw)
        return api.call(
            "POST", "/orders/yaml", "buy-a", content=YAML.format(**values),
            headers={"Content-Type": "application/yaml"},
        )  # fmt: skip

    r = send()
    assert r.status_code == 201, r.text
    (item,) = r.json()["items"]
    assert item["data_gb"] == 1 and item["workload"]["secret_env"] == {"API_TOKEN": "***"}
    assert SECRET not in r.text
    assert api.call("GET", "/orders/y1", "buy-a").json()["workload"] == item["workload"]
    r = send(output="/abs")
    assert problem(r) == (422, "body.orders[0].workload.outputs[0]"), r.text
    r = send(sha="1" * 64)
    assert problem(r) == (422, "body.orders[0].workload.inputs[0].sha256"), r.text


def test_idempotent_retries_tell_secrets_apart_without_storing_them(wapi: Api) -> None:
    from suangu.store.models import IdempotencyRow

    api = wapi
    obj = upload(api)
    key = {"Idempotency-Key": "retry-1"}
    body = order_json("k1", workload(obj))
    first = api.call("POST", "/orders", "buy-a", json=body, headers=key)
    assert first.status_code == 201, first.text
    again = api.call("POST", "/orders", "buy-a", json=body, headers=key)
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()
    other = order_json("k1", workload(obj, secret_env={"API_TOKEN": "another"}))
    r = api.call("POST", "/orders", "buy-a", json=other, headers=key)
    assert r.status_code == 409 and r.json()["field"] == "header.Idempotency-Key"
    with api.db.session_scope(write=False) as s:
        rows = list(s.scalars(select(IdempotencyRow)))
    assert rows and all(SECRET not in str(r.body) + r.request_hash for r in rows)
