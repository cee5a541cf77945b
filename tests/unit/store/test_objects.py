"""Sealed blobs: AES-GCM per object, keys wrapped by the master key, content addresses
checked on read; the embedded directory backend and the configuration from the environment."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest

from suangu.store.objects import (
    DirectoryBackend,
    ObjectStore,
    ObjectStoreError,
    S3Backend,
    master_key_id,
    seal,
    store_from_env,
    unseal,
)

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


def test_seal_hides_the_bytes_and_opens_with_the_master_key() -> None:
    data = b"GATTACA" * 1000
    s = seal(KEY, "do_1", data)
    assert data[:64] not in s.blob
    assert s.blob_name == hashlib.sha256(s.blob).hexdigest()
    assert unseal(KEY, "do_1", s.blob, s.wrapped_key, s.key_id) == data
    again = seal(KEY, "do_1", data)  # a fresh data key and nonce every time
    assert again.blob != s.blob and again.wrapped_key != s.wrapped_key


def test_a_blob_opens_only_as_its_own_object_and_unaltered() -> None:
    s = seal(KEY, "do_1", b"secret genome")
    with pytest.raises(ObjectStoreError, match="altered"):
        unseal(KEY, "do_2", s.blob, s.wrapped_key, s.key_id)  # swapped for another object
    flipped = s.blob[:-1] + bytes([s.blob[-1] ^ 1])
    with pytest.raises(ObjectStoreError, match="altered"):
        unseal(KEY, "do_1", flipped, s.wrapped_key, s.key_id)
    with pytest.raises(ObjectStoreError, match="master key") as err:
        unseal(OTHER, "do_1", s.blob, s.wrapped_key, s.key_id)
    assert err.value.fix and "SUANGU_MASTER_KEY" in err.value.fix


def test_the_store_checks_content_addresses(tmp_path: Path) -> None:
    store = ObjectStore(DirectoryBackend(tmp_path), KEY)
    data = b"x" * 100_000
    s = store.put("do_1", data)
    sha = hashlib.sha256(data).hexdigest()
    path = tmp_path / s.blob_name[:2] / s.blob_name[2:4] / s.blob_name
    assert path.read_bytes() == s.blob
    assert store.get("do_1", s.blob_name, s.wrapped_key, s.key_id, sha) == data
    path.write_bytes(s.blob[:-1] + b"\0")  # the disk corrupted it
    with pytest.raises(ObjectStoreError, match="content address"):
        store.get("do_1", s.blob_name, s.wrapped_key, s.key_id, sha)
    path.unlink()
    with pytest.raises(ObjectStoreError, match="missing"):
        store.get("do_1", s.blob_name, s.wrapped_key, s.key_id, sha)
    assert not list(tmp_path.rglob(".tmp-*"))  # no temporary file left behind


def test_a_bad_master_key_is_refused() -> None:
    with pytest.raises(ObjectStoreError, match="not 32") as err:
        ObjectStore(DirectoryBackend(Path("x")), b"short")
    assert err.value.field == "SUANGU_MASTER_KEY"


def test_embedded_default_lives_next_to_the_database(tmp_path: Path) -> None:
    db = tmp_path / "exchange.db"
    store = store_from_env({}, f"sqlite:///{db}")
    key_file = tmp_path / "exchange.master-key"
    assert isinstance(store.backend, DirectoryBackend)
    assert store.backend.root == tmp_path / "exchange-objects"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert base64.b64decode(key_file.read_text()) == store.master_key
    # The next start reads the same key.
    assert store_from_env({}, f"sqlite:///{db}").master_key == store.master_key


def test_configuration_from_the_environment(tmp_path: Path) -> None:
    text = base64.b64encode(KEY).decode()
    store = store_from_env({"SUANGU_MASTER_KEY": text, "SUANGU_DATA_URL": str(tmp_path / "d")})
    assert store.master_key == KEY and store.key_id == master_key_id(KEY)
    assert isinstance(store.backend, DirectoryBackend) and store.backend.root == tmp_path / "d"
    (tmp_path / "k").write_text(text + "\n")
    env = {"SUANGU_MASTER_KEY_FILE": str(tmp_path / "k"), "SUANGU_DATA_URL": "s3://bkt/pre"}
    s3 = store_from_env(env)
    assert isinstance(s3.backend, S3Backend)
    assert (s3.backend.bucket, s3.backend.prefix) == ("bkt", "pre/")
    with pytest.raises(ObjectStoreError, match="explicit master key") as err:
        store_from_env({"SUANGU_DATA_URL": "s3://bkt"})
    assert err.value.field == "SUANGU_MASTER_KEY"
    with pytest.raises(ObjectStoreError, match="32 bytes"):
        store_from_env({"SUANGU_MASTER_KEY": "bm90IGEga2V5"})
    with pytest.raises(ObjectStoreError, match="cannot read"):
        store_from_env({"SUANGU_MASTER_KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(ObjectStoreError, match="no bucket"):
        store_from_env({"SUANGU_MASTER_KEY": text, "SUANGU_DATA_URL": "s3:///x"})


def test_workers_starting_together_share_one_generated_key(tmp_path: Path) -> None:
    import threading

    from suangu.store.objects import load_or_create_key

    keys: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: keys.append(load_or_create_key(tmp_path / "k")))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert base64.b64decode((tmp_path / "k").read_text()) == keys[0]
    assert [p.name for p in tmp_path.iterdir()] == ["k"]  # no temporary file left
