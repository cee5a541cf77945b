"""Data objects through the API, on SQLite and PostgreSQL: upload, list, download, who may
see what, and bad input naming the field."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from suangu.store.objects import DirectoryBackend, ObjectStore

from .conftest import Api, build_world

KEY = bytes(range(32))


def use_store(api: Api, root: Path, **kw: int) -> ObjectStore:
    store = ObjectStore(DirectoryBackend(root), KEY, **kw)
    api.client.app.state.objects = store
    return store


@pytest.fixture
def data_api(api: Api, tmp_path: Path) -> Iterator[Api]:
    build_world(api)
    use_store(api, tmp_path / "blobs")
    yield api


def put(api: Api, who: str, name: str, data: bytes, **params: str) -> object:
    return api.call(
        "POST",
        "/data",
        who,
        params={"name": name, **params},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )


def test_upload_list_download(data_api: Api, tmp_path: Path) -> None:
    api = data_api
    data = b"ACGT" * 50_000
    sha = hashlib.sha256(data).hexdigest()
    r = put(api, "buy-a", "reads/sample.fa", data, sha256=sha)
    assert r.status_code == 201, r.text
    obj = r.json()
    assert obj["id"].startswith("do_") and obj["owner_id"] == "buy-a"
    assert (obj["name"], obj["sha256"], obj["size"]) == ("reads/sample.fa", sha, len(data))
    assert obj["created_at"] == api.clock.now() and obj["lease_id"] is None
    # The same bytes under the same name: the same object, stored once.
    again = put(api, "buy-a", "reads/sample.fa", data)
    assert again.status_code == 200 and again.json() == obj
    blobs = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1
    assert data[:1000] not in blobs[0].read_bytes()  # encrypted at rest
    # Another name: another object.
    other = put(api, "buy-a", "copy.fa", data).json()
    assert other["id"] != obj["id"]

    got = api.call("GET", f"/data/{obj['id']}/content", "buy-a")
    assert got.status_code == 200
    assert got.content == data and got.headers["X-Suangu-Sha256"] == sha
    assert got.headers["content-type"] == "application/octet-stream"
    assert api.call("GET", f"/data/{obj['id']}", "buy-a").json() == obj

    listed = api.call("GET", "/data", "buy-a", params={"limit": 1}).json()
    assert [o["id"] for o in listed["items"]] == [min(obj["id"], other["id"])]
    rest = api.call("GET", "/data", "buy-a", params={"cursor": listed["next_cursor"]}).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None


def test_members_see_only_their_own_and_auditors_read_metadata(data_api: Api) -> None:
    api = data_api
    obj = put(api, "buy-a", "private.bin", b"\x00\x01secret").json()
    path = f"/data/{obj['id']}"
    for who in ("buy-b", "prov-a"):  # never told that it exists
        r = api.call("GET", path, who)
        assert r.status_code == 404 and r.json()["field"] == "path.object_id"
        assert api.call("GET", path + "/content", who).status_code == 404
    assert api.call("GET", "/data", "buy-b").json()["items"] == []
    for who in ("aud", "op"):
        assert api.call("GET", path, who).json() == obj
        assert obj in api.call("GET", "/data", who).json()["items"]
        r = api.call("GET", path + "/content", who)
        assert r.status_code == 403 and r.json()["field"] == "header.Authorization"
    r = put(api, "prov-a", "x", b"1")  # providers upload outputs through their leases
    assert r.status_code == 403
    assert put(api, None, "x", b"1").status_code == 401  # type: ignore[arg-type]


def test_bad_uploads_name_the_field(data_api: Api, tmp_path: Path) -> None:
    api = data_api
    r = put(api, "buy-a", "x", b"data", sha256="0" * 64)
    assert r.status_code == 422
    assert r.json()["field"] == "query.sha256" and "not " + "0" * 64 in r.json()["detail"]
    assert r.headers["content-type"] == "application/problem+json"
    r = put(api, "buy-a", "x", b"data", sha256="nothex")
    assert r.status_code == 422 and r.json()["field"] == "query.sha256"
    r = api.call("POST", "/data", "buy-a", content=b"data")
    assert r.status_code == 422 and r.json()["field"] == "query.name"
    r = put(api, "buy-a", "bad\nname", b"data")
    assert r.status_code == 422 and r.json()["field"] == "query.name"
    r = api.call("GET", "/data/do_nothing", "buy-a")
    assert r.status_code == 404 and r.json()["field"] == "path.object_id"
    r = api.call("GET", "/data", "buy-a", params={"cursor": "bad"})
    assert r.status_code == 422 and r.json()["field"] == "query.cursor"
    use_store(api, tmp_path / "small", max_bytes=10)
    r = put(api, "buy-a", "big", b"x" * 11)
    assert r.status_code == 413 and r.json()["field"] == "body"
    assert put(api, "buy-a", "ok", b"x" * 10).status_code == 201


def test_a_lost_or_altered_blob_is_an_error_not_wrong_bytes(data_api: Api, tmp_path: Path) -> None:
    api = data_api
    obj = put(api, "buy-a", "f", b"precious" * 100).json()
    (blob,) = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    r = api.call("GET", f"/data/{obj['id']}/content", "buy-a")
    assert r.status_code == 503 and "content address" in r.json()["detail"]
    blob.unlink()
    r = api.call("GET", f"/data/{obj['id']}/content", "buy-a")
    assert r.status_code == 503 and "missing" in r.json()["detail"]
    use_store(api, tmp_path / "blobs2")  # a server started with another master key
    api.client.app.state.objects = ObjectStore(DirectoryBackend(tmp_path / "b3"), bytes(32))
    obj2 = put(api, "buy-a", "g", b"other key").json()
    use_store(api, tmp_path / "b3")
    r = api.call("GET", f"/data/{obj2['id']}/content", "buy-a")
    assert r.status_code == 503 and "master key" in r.json()["detail"]


def test_cli_put_ls_get(data_api: Api, tmp_path: Path) -> None:
    from click.testing import Result
    from typer.testing import CliRunner

    from suangu.cli import app

    api = data_api
    runner = CliRunner(env={"COLUMNS": "200", "SUANGU_URL": None, "SUANGU_KEY": None})
    obj = {"transport": api.client._transport}  # the app itself, through httpx

    def run(*args: str) -> Result:
        return runner.invoke(
            app, [*args, "--url", "http://exchange", "--key", api.tokens["buy-a"]], obj=obj
        )

    src = tmp_path / "in.csv"
    src.write_bytes(b"id,seq\n1,ACGT\n" * 1000)
    r = run("data", "put", str(src), "--json")
    assert r.exit_code == 0, r.output
    made = json.loads(r.output)
    assert made["name"] == "in.csv" and made["size"] == src.stat().st_size
    r = run("data", "ls")
    assert r.exit_code == 0 and made["id"] in r.output
    out = tmp_path / "back.csv"
    r = run("data", "get", made["id"], "-o", str(out))
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == src.read_bytes()
    r = run("data", "get", "do_missing", "-o", str(out))
    assert r.exit_code == 2
    assert "path.object_id" in r.output and "no data object" in r.output
    r = run("data", "put", str(tmp_path / "nope"))
    assert r.exit_code == 2 and "cannot read" in r.output
