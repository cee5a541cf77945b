"""The S3 backend against a real S3-compatible server process (moto's standalone server over
HTTP, not a mock patched into boto3), alone and behind the API."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from suangu.store.objects import ObjectStore, ObjectStoreError, S3Backend, store_from_env

from .conftest import Api, _database, build_world, make_api
from .s3server import S3Server

KEY = bytes(range(32))


def test_blobs_round_trip_through_the_bucket(s3_server: S3Server) -> None:
    bucket = s3_server.bucket("suangu-unit")
    backend = S3Backend(bucket, "exchange/", endpoint_url=s3_server.endpoint_url)
    store = ObjectStore(backend, KEY)
    data = bytes(range(256)) * 4096  # 1 MiB
    sealed = store.put("do_x", data)
    key = f"exchange/blobs/{sealed.blob_name}"
    raw = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert raw == sealed.blob and data[:4096] not in raw  # only ciphertext in the bucket
    sha = hashlib.sha256(data).hexdigest()
    assert store.get("do_x", sealed.blob_name, sealed.wrapped_key, sealed.key_id, sha) == data
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=raw[:-1] + b"\0")
    with pytest.raises(ObjectStoreError, match="content address"):
        store.get("do_x", sealed.blob_name, sealed.wrapped_key, sealed.key_id, sha)
    backend.delete(sealed.blob_name)
    with pytest.raises(ObjectStoreError, match="missing"):
        store.get("do_x", sealed.blob_name, sealed.wrapped_key, sealed.key_id, sha)


def test_a_missing_bucket_is_a_clear_error(s3_server: S3Server) -> None:
    store = ObjectStore(S3Backend("no-such-bucket", endpoint_url=s3_server.endpoint_url), KEY)
    with pytest.raises(ObjectStoreError, match="refused") as err:
        store.put("do_y", b"data")
    assert err.value.fix and "SUANGU_DATA_URL" in err.value.fix


def test_configured_from_the_environment(s3_server: S3Server) -> None:
    import base64

    bucket = s3_server.bucket("suangu-env")
    env = {
        "SUANGU_DATA_URL": f"s3://{bucket}/p",
        "SUANGU_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "SUANGU_MASTER_KEY": base64.b64encode(KEY).decode(),
    }
    store = store_from_env(env)
    sealed = store.put("do_z", b"hello")
    assert store.backend.describe().startswith(f"bucket s3://{bucket}/p/")
    listed = s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == [f"p/blobs/{sealed.blob_name}"]


@pytest.fixture
def s3_api(s3_server: S3Server, tmp_path: Path) -> Iterator[Api]:
    for backend, db in _database("sqlite", tmp_path):
        api = make_api(backend, db)
        build_world(api)
        bucket = s3_server.bucket(f"suangu-api-{tmp_path.name.lower().replace('_', '-')[:30]}")
        store = ObjectStore(S3Backend(bucket, endpoint_url=s3_server.endpoint_url), KEY)
        api.client.app.state.objects = store
        yield api


def test_the_api_stores_objects_in_the_bucket(s3_api: Api) -> None:
    api = s3_api
    data = b"sample" * 10_000
    r = api.call(
        "POST", "/data", "buy-a", params={"name": "in.bin"}, content=data,
        headers={"Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    got = api.call("GET", f"/data/{r.json()['id']}/content", "buy-a")
    assert got.status_code == 200 and got.content == data
