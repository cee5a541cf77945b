"""The cache of verified API keys: revocation takes effect (at once in the process that
revoked, at once for writes everywhere, within the cache's TTL for reads elsewhere)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from suangu.api.auth import Principal
from suangu.api.keycache import KEY_CACHE_TTL_S, KeyCache
from suangu.store.models import OrderRow, Role
from suangu.store.repositories import Members

from .conftest import NOW_SLOT, Api


def order_body(order_id: str) -> dict[str, Any]:
    return {
        "id": order_id,
        "kind": "batch",
        "gpus": 1,
        "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 3,
        "limit_fen": 1,
        "gpu_hours": 1,
    }


def _revoke_elsewhere(api: Api, member: str) -> None:
    """Revoke the member's keys through the store, as another worker process would: this
    app's cache is not told."""
    with api.db.session_scope() as s:
        for key in Members(s).keys(member):
            Members(s).revoke_key(key.id, api.clock.now())


def test_revoking_through_the_api_takes_effect_at_once(api: Api) -> None:
    api.member("op", Role.OPERATOR)
    api.member("b1", Role.BUYER)
    me = api.call("GET", "/me", "b1")
    assert me.status_code == 200  # now cached
    key_id = me.json()["key_id"]
    r = api.call("DELETE", f"/members/b1/keys/{key_id}", "op")
    assert r.status_code == 200, r.text
    assert api.call("GET", "/me", "b1").status_code == 401
    r = api.call("POST", "/orders", "b1", json=order_body("after-revoke"))
    assert r.status_code == 401
    assert r.json()["field"] == "header.Authorization"


def test_a_key_revoked_by_another_worker_never_writes(api: Api) -> None:
    api.member("b2", Role.BUYER)
    assert api.call("GET", "/me", "b2").status_code == 200  # cached here
    _revoke_elsewhere(api, "b2")
    for headers in ({}, {"Idempotency-Key": "k-after-revoke"}):
        r = api.call("POST", "/orders", "b2", json=order_body("never"), headers=headers)
        assert r.status_code == 401, r.text
        assert r.json()["field"] == "header.Authorization"
    # The write found the revocation and dropped the key from the cache: reads stop too.
    assert api.call("GET", "/me", "b2").status_code == 401
    with api.db.session_scope(write=False) as s:
        assert s.get(OrderRow, "never") is None


def test_a_key_revoked_by_another_worker_stops_reading_within_the_ttl(api: Api) -> None:
    api.member("b3", Role.BUYER)
    assert api.call("GET", "/me", "b3").status_code == 200
    _revoke_elsewhere(api, "b3")
    # Reads trust the cache for at most KEY_CACHE_TTL_S seconds of the app's clock.
    assert api.call("GET", "/me", "b3").status_code == 200
    api.clock.advance(KEY_CACHE_TTL_S)
    assert api.call("GET", "/me", "b3").status_code == 401


def test_a_cached_key_costs_no_query(api: Api) -> None:
    """With the key cached, GET /me reads the member only; POST /orders is one transaction
    of three statements (key and Idempotency-Key check, order insert, record), and the
    audit trail's: on PostgreSQL two (lock the chain's head and reserve the numbers; insert
    the entries and move the head), on SQLite three."""
    api.member("b4", Role.BUYER)
    assert api.call("GET", "/me", "b4").status_code == 200
    first = api.call(
        "POST", "/orders", "b4", json=order_body("o-b4-0"), headers={"Idempotency-Key": "w"}
    )
    assert first.status_code == 201, first.text
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if sql.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            return
        if sql.lstrip().upper().startswith("DELETE FROM IDEMPOTENCY_KEYS"):
            return  # the purge of expired records, in a thread of its own
        statements.append(sql)

    event.listen(api.db.engine, "before_cursor_execute", seen)
    try:
        assert api.call("GET", "/me", "b4").status_code == 200
        assert len(statements) == 1, statements
        statements.clear()
        r = api.call(
            "POST", "/orders", "b4", json=order_body("o-b4"), headers={"Idempotency-Key": "x"}
        )
        assert r.status_code == 201, r.text
        trail = 2 if api.backend == "postgresql" else 3
        assert len(statements) == 3 + trail, statements
        assert "api_keys" in statements[0] and "idempotency_keys" in statements[0]
        assert all("audit_" in sql for sql in statements[3:])
    finally:
        event.remove(api.db.engine, "before_cursor_execute", seen)


def _who(key_id: str) -> Principal:
    return Principal("m", Role.BUYER, key_id)


def test_cache_entries_expire_and_are_bounded() -> None:
    cache: KeyCache[Principal] = KeyCache(ttl_s=2, size=2)
    g = cache.generation()
    cache.put("a", _who("ka"), "ka", 100, g)
    assert cache.get("a", 101) == _who("ka")
    assert cache.get("a", 102) is None  # expired
    for d in "bcd":
        cache.put(d, _who(f"k{d}"), f"k{d}", 100, g)
    assert len(cache) == 2 and cache.get("b", 100) is None  # the least recently used went


def test_writes_may_trust_a_cached_key_longer() -> None:
    """Routes whose write re-checks the key in its transaction ask for a longer TTL."""
    cache: KeyCache[Principal] = KeyCache(ttl_s=2, keep_s=300)
    cache.put("a", _who("ka"), "ka", 100, cache.generation())
    assert cache.get("a", 110) is None  # too old for a read
    assert cache.get("a", 110, ttl_s=300) == _who("ka")  # fine for a write
    assert cache.get("a", 400, ttl_s=300) is None and len(cache) == 0  # gone after keep_s


def test_a_revocation_during_a_verification_is_not_undone() -> None:
    cache: KeyCache[Principal] = KeyCache(ttl_s=60)
    before = cache.generation()  # a verification starts (reads the database) ...
    cache.forget("k1")  # ... the key is revoked meanwhile ...
    cache.put("d1", _who("k1"), "k1", 100, before)  # ... and its stale result is refused
    assert cache.get("d1", 100) is None
    cache.put("d1", _who("k1"), "k1", 100, cache.generation())
    cache.forget("k1")
    assert cache.get("d1", 100) is None
