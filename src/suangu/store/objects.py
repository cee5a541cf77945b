"""Where data objects' bytes live, encrypted at rest: a content-addressed blob store.

A data object (a buyer's input file, a job's output) is stored as one **sealed blob**:

* a fresh 256-bit data key per object encrypts the bytes with AES-GCM (a random 96-bit nonce,
  the object's id as associated data, so a blob cannot be passed off as another object's);
* the data key is wrapped (RFC 3394 AES key wrap) by the server's **master key** and kept in
  the object's row (``data_objects.wrapped_key``) with the master key's id; the blob never
  holds its own key;
* the blob is stored under the sha256 of its own bytes (content addressing): a read checks
  that the bytes fetched hash to their name before anything is decrypted, and the plaintext's
  sha256 against the row's, so a corrupted or swapped blob is an error, never wrong data.

Two backends hold the blobs: :class:`DirectoryBackend` (the embedded default: a directory next
to the SQLite database, ``ab/cd/<sha256>`` files written atomically) and :class:`S3Backend`
(any S3-compatible bucket through boto3: AWS S3, MinIO, Ceph RGW, cloud providers' S3
endpoints). :func:`store_from_env` picks one from the environment (see ``docs/data.md``):

* ``SUANGU_DATA_URL``: ``s3://bucket/prefix`` or a directory (default: ``<db>-objects/`` next
  to a SQLite database file, else ``./suangu-objects``);
* ``SUANGU_S3_ENDPOINT_URL``: the S3 endpoint when it is not AWS (credentials and region come
  from boto3's usual chain: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
  ``AWS_DEFAULT_REGION``, profiles, instance roles);
* ``SUANGU_MASTER_KEY`` (32 bytes, base64) or ``SUANGU_MASTER_KEY_FILE``; an embedded store
  without either generates one next to the database (``<db>.master-key``, mode 0600) on first
  use, which is what the demo does. A bucket needs an explicit key: a key generated on one
  host would leave the other workers unable to read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from suangu.store.errors import Conflict, StoreError

DATA_URL_ENV = "SUANGU_DATA_URL"
S3_ENDPOINT_ENV = "SUANGU_S3_ENDPOINT_URL"
MASTER_KEY_ENV = "SUANGU_MASTER_KEY"
MASTER_KEY_FILE_ENV = "SUANGU_MASTER_KEY_FILE"
#: Largest object the exchange stores (bytes); larger data sets are given to orders as URIs.
MAX_OBJECT_BYTES = 512 * 1024 * 1024
#: First bytes of every sealed blob: the format's version.
MAGIC = b"SGO1"
NONCE_BYTES = 12
KEY_BYTES = 32


class ObjectStoreError(StoreError):
    """A blob that cannot be stored, found, or opened (wrong key, corrupted bytes)."""

    code = "object_store"


class Backend(Protocol):
    """Holds sealed blobs by name (the sha256 of their bytes)."""

    def put(self, name: str, blob: bytes) -> None: ...

    def get(self, name: str) -> bytes: ...

    def delete(self, name: str) -> None: ...

    def describe(self) -> str: ...


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blob_missing(name: str) -> ObjectStoreError:
    return ObjectStoreError(
        f"the stored bytes of blob {name[:12]}... are missing",
        field="object",
        fix="the object store lost them: restore it from a backup",
    )


@dataclass(frozen=True)
class DirectoryBackend:
    """Blobs as files ``root/ab/cd/<name>``; written to a temporary file and renamed, so a
    reader never sees half a blob."""

    root: Path

    def _path(self, name: str) -> Path:
        if len(name) != 64 or any(c not in "0123456789abcdef" for c in name):
            raise ObjectStoreError(f"bad blob name {name!r}", field="object")
        return self.root / name[:2] / name[2:4] / name

    def put(self, name: str, blob: bytes) -> None:
        path = self._path(name)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            raise _blob_missing(name) from None

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def describe(self) -> str:
        return f"directory {self.root}"


class S3Backend:
    """Blobs as objects ``<prefix>blobs/<name>`` of an S3-compatible bucket (boto3)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url or None,
                config=Config(retries={"max_attempts": 5, "mode": "standard"}),
            )
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url

    def _key(self, name: str) -> str:
        return f"{self.prefix}blobs/{name}"

    def put(self, name: str, blob: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=blob)
        except (BotoCoreError, ClientError) as err:
            raise ObjectStoreError(
                f"the bucket {self.bucket!r} refused the blob: {err}",
                field="object",
                fix=f"check {DATA_URL_ENV}, {S3_ENDPOINT_ENV} and the S3 credentials",
            ) from None

    def get(self, name: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self._key(name))
            return bytes(got["Body"].read())
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise _blob_missing(name) from None
            raise ObjectStoreError(
                f"the bucket {self.bucket!r} failed to return a blob: {err}", field="object"
            ) from None
        except BotoCoreError as err:
            raise ObjectStoreError(
                f"the bucket {self.bucket!r} is not reachable: {err}",
                field="object",
                fix=f"check {S3_ENDPOINT_ENV} and the network",
            ) from None

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(name))

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"bucket s3://{self.bucket}/{self.prefix}{where}"


# -- sealing ------------------------------------------------------------------------------------


def master_key_id(master: bytes) -> str:
    """A public name of a master key (so that a server with another key says so)."""
    return hashlib.sha256(b"suangu-master-key-id:" + master).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed object: its blob, the blob's name, and its data key wrapped by the master."""

    blob: bytes
    blob_name: str
    wrapped_key: str  # base64
    key_id: str


def seal(master: bytes, object_id: str, plaintext: bytes) -> Sealed:
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(NONCE_BYTES)
    blob = MAGIC + nonce + AESGCM(data_key).encrypt(nonce, plaintext, object_id.encode())
    wrapped = base64.b64encode(aes_key_wrap(master, data_key)).decode("ascii")
    return Sealed(blob, sha256_hex(blob), wrapped, master_key_id(master))


def unseal(master: bytes, object_id: str, blob: bytes, wrapped_key: str, key_id: str) -> bytes:
    if key_id != master_key_id(master):
        raise ObjectStoreError(
            f"object {object_id!r} was sealed with master key {key_id}, this server has "
            f"{master_key_id(master)}",
            field="object",
            fix=f"start the server with the master key the object was stored under "
            f"({MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV})",
        )
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + NONCE_BYTES + 16:
        raise ObjectStoreError(f"object {object_id!r}: not a sealed blob", field="object")
    try:
        data_key = aes_key_unwrap(master, base64.b64decode(wrapped_key))
        nonce = blob[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
        return AESGCM(data_key).decrypt(nonce, blob[len(MAGIC) + NONCE_BYTES :], object_id.encode())
    except (InvalidTag, InvalidUnwrap, binascii.Error, ValueError):
        raise ObjectStoreError(
            f"object {object_id!r} does not decrypt: its blob or key was altered",
            field="object",
            fix="restore the object store and the database from the same backup",
        ) from None


def seal_text(master: bytes, purpose: str, text: str) -> str:
    """A short secret (a workload's secret env value) sealed with the master key: base64 of
    nonce + AES-GCM ciphertext, bound to ``purpose`` (e.g. ``order:<id>:env:<NAME>``)."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    ct = AESGCM(master).encrypt(nonce, text.encode("utf-8"), purpose.encode())
    return base64.b64encode(nonce + ct).decode("ascii")


def open_text(master: bytes, purpose: str, sealed: str) -> str:
    try:
        raw = base64.b64decode(sealed)
        out = AESGCM(master).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], purpose.encode())
    except (InvalidTag, binascii.Error, ValueError):
        raise ObjectStoreError(
            "a sealed secret does not open with this server's master key",
            field="workload.secret_env",
            fix="start the server with the master key the order was stored under",
        ) from None
    return out.decode("utf-8")


# -- the store ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectStore:
    """A backend and the master key: seals on the way in, verifies and opens on the way out."""

    backend: Backend
    master_key: bytes
    max_bytes: int = MAX_OBJECT_BYTES

    def __post_init__(self) -> None:
        if len(self.master_key) != KEY_BYTES:
            raise ObjectStoreError(
                f"the master key has {len(self.master_key)} bytes, not {KEY_BYTES}",
                field=MASTER_KEY_ENV,
                fix="give 32 random bytes, base64-encoded (openssl rand -base64 32)",
            )

    @property
    def key_id(self) -> str:
        return master_key_id(self.master_key)

    def put(self, object_id: str, plaintext: bytes) -> Sealed:
        """Seal and store the bytes of a new object; the caller records the result."""
        sealed = seal(self.master_key, object_id, plaintext)
        self.backend.put(sealed.blob_name, sealed.blob)
        return sealed

    def get(
        self, object_id: str, blob_name: str, wrapped_key: str, key_id: str, sha256: str
    ) -> bytes:
        """The plaintext of a stored object, checked against its blob name and its sha256."""
        blob = self.backend.get(blob_name)
        if sha256_hex(blob) != blob_name:
            raise ObjectStoreError(
                f"object {object_id!r}: the stored blob does not match its content address",
                field="object",
                fix="the object store holds corrupted bytes: restore it from a backup",
            )
        plain = unseal(self.master_key, object_id, blob, wrapped_key, key_id)
        if sha256_hex(plain) != sha256:
            raise Conflict(  # pragma: no cover - AES-GCM already refused altered bytes
                f"object {object_id!r} does not match its sha256", field="object"
            )
        return plain

    def seal_text(self, purpose: str, text: str) -> str:
        return seal_text(self.master_key, purpose, text)

    def mac(self, text: str) -> str:
        """HMAC-SHA256 of ``text`` under a key derived from the master key (to tell secret
        values apart, e.g. in an idempotency fingerprint, without a guessable hash)."""
        key = hashlib.sha256(b"suangu-mac:" + self.master_key).digest()
        return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()

    def open_text(self, purpose: str, sealed: str) -> str:
        return open_text(self.master_key, purpose, sealed)


# -- configuration ----------------------------------------------------------------------------


def decode_master_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ObjectStoreError(
            "is not 32 bytes in base64",
            field=where,
            fix="generate one with: openssl rand -base64 32",
        )
    return key


def load_or_create_key(path: Path) -> bytes:
    """The master key in ``path``; a new random one written there (mode 0600) if absent."""
    if path.exists():
        return decode_master_key(path.read_text(encoding="ascii"), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    # Written whole under a temporary name, then linked into place: a worker starting at the
    # same moment either finds no file or a whole one, and one key wins.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        os.write(fd, base64.b64encode(key) + b"\n")
        os.fsync(fd)
        os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return decode_master_key(path.read_text(encoding="ascii"), str(path))
    finally:
        Path(tmp).unlink(missing_ok=True)
    return key


def embedded_paths(database_url: str | None) -> tuple[Path, Path]:
    """The default blob directory and master-key file for a database: next to a SQLite
    file (``x.db`` -> ``x-objects/`` and ``x.master-key``), else in the working directory."""
    from sqlalchemy import make_url

    if database_url:
        url = make_url(database_url)
        name = url.database
        if url.get_backend_name() == "sqlite" and name and name != ":memory:":
            db = Path(name).resolve()
            return db.with_name(f"{db.stem}-objects"), db.with_name(f"{db.stem}.master-key")
    here = Path.cwd()
    return here / "suangu-objects", here / "suangu.master-key"


def store_from_env(
    env: Mapping[str, str] | None = None, database_url: str | None = None
) -> ObjectStore:
    """The object store the environment describes (see the module docs)."""
    source = os.environ if env is None else env
    url = source.get(DATA_URL_ENV, "").strip()
    key_text = source.get(MASTER_KEY_ENV, "").strip()
    key_file = source.get(MASTER_KEY_FILE_ENV, "").strip()
    default_dir, default_key = embedded_paths(database_url)
    if key_text:
        master = decode_master_key(key_text, MASTER_KEY_ENV)
    elif key_file:
        try:
            master = decode_master_key(Path(key_file).read_text(encoding="ascii"), key_file)
        except OSError as err:
            raise ObjectStoreError(
                f"cannot read {key_file}: {err.strerror}",
                field=MASTER_KEY_FILE_ENV,
                fix="give the path of a file holding the base64 master key",
            ) from None
    elif url.startswith("s3://"):
        raise ObjectStoreError(
            "a bucket needs an explicit master key",
            field=MASTER_KEY_ENV,
            fix=f"set {MASTER_KEY_ENV} (openssl rand -base64 32) or {MASTER_KEY_FILE_ENV} on "
            "every server process, and keep a copy: without it the objects cannot be read",
        )
    else:
        master = load_or_create_key(default_key)
    backend: Backend
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ObjectStoreError(
                f"{url!r} names no bucket", field=DATA_URL_ENV, fix="write s3://bucket/prefix"
            )
        backend = S3Backend(bucket, prefix, endpoint_url=source.get(S3_ENDPOINT_ENV) or None)
    else:
        path = Path(url.removeprefix("file://")) if url else default_dir
        backend = DirectoryBackend(path)
    return ObjectStore(backend, master)


_LOCK = threading.Lock()


def app_store(state: Any, database_url: str | None) -> ObjectStore:
    """The object store of an app (``state.objects``), built from the environment on first
    use so that an exchange that never stores data never creates a directory or a key."""
    found: ObjectStore | None = getattr(state, "objects", None)
    if found is None:
        with _LOCK:
            found = getattr(state, "objects", None)
            if found is None:
                found = store_from_env(database_url=database_url)
                state.objects = found
    return found
