"""API fixtures: each test runs on SQLite (a temporary file) and, when
``SUANGU_TEST_DATABASE_URL`` is set, on PostgreSQL in a fresh schema dropped afterwards.

``World`` is a small exchange built through the store (fast): an operator, an auditor, two
providers with a site, a pool and an offer each, two buyers with money and orders, and one
clearing, so that every kind of object exists for "own" and "other" members.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, event, text

from suangu.api.app import create_app
from suangu.api.clock import ManualClock
from suangu.api.services import ensure_accounts
from suangu.api.settings import ApiSettings
from suangu.core import billing
from suangu.core.types import Offer, Order, OrderKind, Pool, Site
from suangu.store.db import Database, make_engine, migrate, sqlite_url
from suangu.store.models import Role
from suangu.store.objects import DirectoryBackend, ObjectStore
from suangu.store.repositories import Capacity, Members, Orders

PG_ENV = "SUANGU_TEST_DATABASE_URL"
BACKENDS = ["sqlite", *(["postgresql"] if os.environ.get(PG_ENV) else [])]
EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z, slot 0
NOW_SLOT = 100
T0 = EPOCH + NOW_SLOT * 3600 + 60  # a minute into slot 100
API = "/api/v1"


def _pg_engine(url: str, schema: str) -> Engine:
    engine = make_engine(url)

    @event.listens_for(engine, "connect")
    def _search_path(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f'SET search_path TO "{schema}"')
        cursor.close()
        dbapi_connection.commit()

    return engine


@dataclass
class Api:
    """A client on a fresh app, with the database and clock behind it."""

    client: TestClient
    db: Database
    clock: ManualClock
    backend: str
    tokens: dict[str, str] = field(default_factory=dict)

    def member(self, member_id: str, role: Role) -> str:
        """Create a member with a key (through the store); returns the token."""
        with self.db.session_scope() as s:
            Members(s).create(member_id, member_id.title(), role, self.clock.now())
            token = Members(s).create_key(member_id, self.clock.now()).token
        self.tokens[member_id] = token
        return token

    def h(self, member_id: str | None, **extra: str) -> dict[str, str]:
        """Headers for a call as ``member_id`` (None: no key)."""
        out = dict(extra)
        if member_id is not None:
            out["Authorization"] = f"Bearer {self.tokens[member_id]}"
        return out

    def call(self, method: str, path: str, who: str | None, **kw: Any) -> Any:
        headers = {**self.h(who), **kw.pop("headers", {})}
        return self.client.request(method, API + path, headers=headers, **kw)


@pytest.fixture(scope="module", params=BACKENDS)
def backend_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Database]]:
    yield from _database(request.param, tmp_path_factory.mktemp("api"))


def _database(backend: str, where: Path) -> Iterator[tuple[str, Database]]:
    if backend == "sqlite":
        engine = make_engine(sqlite_url(where / "suangu.db"))
        migrate(engine)
        yield "sqlite", Database(engine)
        engine.dispose()
        return
    url = os.environ[PG_ENV]
    schema = f"api_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = _pg_engine(url, schema)
    try:
        migrate(engine)
        yield "postgresql", Database(engine)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


#: Where the test apps keep data objects' blobs (removed when the tests end).
BLOBS = tempfile.TemporaryDirectory(prefix="suangu-test-blobs-")


def make_api(backend: str, db: Database) -> Api:
    clock = ManualClock(T0)
    blobs = ObjectStore(DirectoryBackend(Path(BLOBS.name) / uuid.uuid4().hex), bytes(range(32)))
    app = create_app(db, clock, ApiSettings(grid_epoch=EPOCH, horizon_slots=6), objects=blobs)
    return Api(TestClient(app, raise_server_exceptions=True), db, clock, backend)


@pytest.fixture(params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    """A fresh app on an empty database, per test."""
    for backend, db in _database(request.param, tmp_path):
        yield make_api(backend, db)


# -- a small world ------------------------------------------------------------------------------

SITES = {
    "prov-a": Site(
        "site-a",
        "Horinger",
        "Inner Mongolia",
        "inner-mongolia",
        40.5,
        111.8,
        1.15,
        {"beijing": 12.0},
    ),
    "prov-b": Site("site-b", "Zhongwei", "Ningxia", "ningxia", 37.5, 105.2, 1.2, {"beijing": 20.0}),
}


REGION = {"buy-a": "inner-mongolia", "buy-b": "ningxia"}


def order(order_id: str, buyer: str, *, gpus: int = 2, hours: int = 4, limit: int = 2000) -> Order:
    """A batch order of ``buyer`` in its region (buy-a: prov-a's site, buy-b: prov-b's)."""
    return Order(
        order_id,
        buyer,
        OrderKind.BATCH,
        gpus=gpus,
        release_slot=NOW_SLOT,
        deadline_slot=NOW_SLOT + 4,
        limit_fen=limit,
        gpu_hours=hours,
        regions=frozenset({REGION[buyer]}) if buyer in REGION else frozenset(),
    )


def build_world(api: Api) -> None:
    """Members with keys, capacity, money and one clearing (see the module docs)."""
    for m, role in (
        ("op", Role.OPERATOR),
        ("aud", Role.AUDITOR),
        ("prov-a", Role.PROVIDER),
        ("prov-b", Role.PROVIDER),
        ("buy-a", Role.BUYER),
        ("buy-b", Role.BUYER),
    ):
        api.member(m, role)
    now = api.clock.now()
    with api.db.session_scope() as s:
        cap = Capacity(s)
        for prov, site in SITES.items():
            cap.add_site(site, prov)
            pool = Pool(f"{site.id}-h100", site.id, "H100")
            cap.add_pool(pool)
            cap.add_offer(
                Offer.over(f"offer-{prov}", prov, pool.id, NOW_SLOT, NOW_SLOT + 48, 8, 1000), now
            )
        for b in ("buy-a", "buy-b"):
            Orders(s).submit(order(f"ord-{b}", b), now)
    ledger = api.client.app.state.ctx.ledger
    ensure_accounts(ledger, [billing.new_provider_account(p) for p in ("prov-a", "prov-b")], now)
    for b in ("buy-a", "buy-b"):
        r = api.call(
            "POST", "/deposits", "op", json={"id": f"d-{b}", "member_id": b, "amount_fen": 10**7}
        )
        assert r.status_code == 201, r.text
    r = api.call("POST", "/clearings", "op", json={"id": "clr-world"})
    assert r.status_code == 201, r.text
    assert r.json()["n_allocations"] >= 2, r.text


@pytest.fixture(scope="module")
def world(backend_db: tuple[str, Database]) -> Api:
    """One small world per test module and backend (tests may add to it, never break it)."""
    backend, db = backend_db
    api = make_api(backend, db)
    build_world(api)
    return api


from .s3server import s3_server  # noqa: E402, F401  (the moto S3 server fixture)
