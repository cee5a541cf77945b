"""The audit trail through the service, on SQLite and PostgreSQL: every write appends an
entry in its own transaction (who, role, action, object, request id, time); a failed write
leaves none; tampering with a row (edit, delete, swap) makes the verification fail and name
the entry, through the store, the API and ``suangu audit verify``."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from suangu.api.audit import ACTIONS, PREFIX
from suangu.cli import app as cli
from suangu.store import audit
from suangu.store.audit import Entry
from suangu.store.db import Database
from suangu.store.models import AuditRow

from .conftest import NOW_SLOT, Api, build_world

runner = CliRunner(env={"COLUMNS": "200", "SUANGU_URL": None, "SUANGU_KEY": None})


def entries(api: Api, who: str = "aud", **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": 7, **params, **({"cursor": cursor} if cursor else {})}
        r = api.call("GET", "/audit", who, params=query)
        assert r.status_code == 200, r.text
        out += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return out


def actions(api: Api) -> list[tuple[str | None, str, str, str]]:
    return [(e["member_id"], e["role"], e["action"], e["object"]) for e in entries(api)]


def verify(api: Api) -> dict[str, Any]:
    r = api.call("GET", "/audit/verify", "aud")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_every_write_route_has_an_action(api: Api) -> None:
    routes = {
        (method.upper(), path.removeprefix(PREFIX))
        for path, item in api.client.app.openapi()["paths"].items()
        for method in item
        if method in ("post", "put", "patch", "delete")
    }
    assert routes == set(ACTIONS)


def test_writes_append_entries(api: Api) -> None:
    build_world(api)  # deposits and a clearing through the API, the rest through the store
    assert actions(api) == [
        ("op", "operator", "deposit", "deposit:d-buy-a"),
        ("op", "operator", "deposit", "deposit:d-buy-b"),
        ("op", "operator", "clearing.run", "clearing:clr-world"),
    ]
    first = entries(api)[0]
    assert json.loads(first["detail"])["amount_fen"] == 10**7
    assert first["at"] == api.clock.now() and len(first["request_id"]) == 32
    before = len(entries(api))
    rid = {"X-Request-ID": "trace-42"}
    calls: list[tuple[str, str, str, dict[str, Any]]] = [
        ("POST", "/members", "op", {"json": {"id": "m-new", "name": "New", "role": "buyer"}}),
        (
            "POST",
            "/members/m-new/keys",
            "op",
            {"json": {"label": "laptop"}, "headers": {"Idempotency-Key": "k-laptop"}},
        ),
        ("PUT", "/fees", "op", {"json": {"fee_bp": 250}}),
        (
            "POST",
            "/orders",
            "buy-a",
            {
                "json": {
                    "id": "o-audit",
                    "kind": "batch",
                    "gpus": 1,
                    "release_slot": NOW_SLOT,
                    "deadline_slot": NOW_SLOT + 3,
                    "limit_fen": 900,
                    "gpu_hours": 1,
                },
                "headers": rid,
            },
        ),
        ("POST", "/orders/o-audit/cancel", "buy-a", {}),
        (
            "POST",
            "/offers",
            "prov-a",
            {
                "json": {
                    "id": "offer-audit",
                    "pool_id": "site-a-h100",
                    "start_slot": NOW_SLOT + 60,
                    "gpus": [1],
                    "reserve_fen": [5],
                }
            },
        ),
        ("POST", "/offers/offer-audit/withdraw", "prov-a", {}),
    ]
    for method, path, who, kw in calls:
        r = api.call(method, path, who, **kw)
        assert r.status_code in (200, 201), r.text
    key_id = api.call("GET", "/members/m-new/keys", "op").json()["items"][0]["id"]
    assert api.call("DELETE", f"/members/m-new/keys/{key_id}", "op").status_code == 200
    lease = api.call("GET", "/leases?order_id=ord-buy-a", "prov-a").json()["items"][0]["id"]
    now = api.clock.now()
    reading = {"id": "rd-1", "interval_start": now - 60, "interval_end": now, "gpu_seconds": 60}
    r = api.call("POST", f"/leases/{lease}/readings", "prov-a", json=reading)
    assert r.status_code == 201, r.text
    r = api.call("POST", f"/leases/{lease}/readings", "prov-a", json=reading)  # resent: no entry
    assert r.status_code == 200, r.text
    r = api.call("POST", f"/leases/{lease}/fail", "prov-a")
    assert r.status_code == 200, r.text
    new = actions(api)[before:]
    assert new == [
        ("op", "operator", "member.create", "member:m-new"),
        ("op", "operator", "key.create", f"key:{key_id}"),
        ("op", "operator", "fees.set", "fees"),
        ("buy-a", "buyer", "order.submit", "order:buy-a~o-audit"),
        ("buy-a", "buyer", "order.cancel", "order:buy-a~o-audit"),
        ("prov-a", "provider", "offer.submit", "offer:prov-a~offer-audit"),
        ("prov-a", "provider", "offer.withdraw", "offer:prov-a~offer-audit"),
        ("op", "operator", "key.revoke", f"key:{key_id}"),
        ("prov-a", "provider", "reading.record", f"lease:{lease}"),
        ("prov-a", "provider", "lease.fail", f"lease:{lease}"),
    ]
    got = entries(api)
    order_entry = next(e for e in got if e["action"] == "order.submit")
    assert order_entry["request_id"] == "trace-42"
    assert "sg_" not in json.dumps(got)  # the new key's token is never recorded
    assert entries(api, action="order.cancel", who="op")[0]["object"] == "order:buy-a~o-audit"
    assert {e["member_id"] for e in entries(api, member_id="prov-a")} == {"prov-a"}
    v = verify(api)
    assert v["ok"] and v["entries"] == len(got) and v["head"]["seq"] == len(got)
    assert v["head"]["hash"] == got[-1]["hash"]
    head = api.call("GET", "/audit/head", "op").json()
    assert head == v["head"]


def test_a_replayed_write_adds_no_entry(api: Api) -> None:
    build_world(api)
    n = len(entries(api))
    key = {"Idempotency-Key": "k1"}
    for _ in range(2):
        r = api.call("PUT", "/fees", "op", json={"fee_bp": 200}, headers=key)
        assert r.status_code == 200
    assert len(entries(api)) == n + 1


def test_failed_writes_leave_no_entry(api: Api) -> None:
    build_world(api)
    n = len(entries(api))
    # Refused inside the write's transaction: a deposit id reused with another amount.
    r = api.call(
        "POST", "/deposits", "op", json={"id": "d-buy-a", "member_id": "buy-a", "amount_fen": 5}
    )
    assert r.status_code == 409, r.text
    # Another buyer's order: a 404 from inside the write.
    assert api.call("POST", "/orders/ord-buy-b/cancel", "buy-a").status_code == 404
    assert len(entries(api)) == n
    # A transaction that rolls back after noting an entry appends nothing.
    with pytest.raises(RuntimeError), api.db.session_scope() as s:
        audit.note(s, Entry(1, None, audit.SYSTEM, "test", "x"))
        raise RuntimeError("rolled back")
    assert len(entries(api)) == n and verify(api)["ok"]


def test_the_clearing_loop_writes_as_system(api: Api) -> None:
    build_world(api)
    loop = api.client.app.state.clearing_loop
    n = len(entries(api))
    loop.tick()
    api.clock.advance(6 * 3600)
    loop.tick()
    new = entries(api)[n:]
    kinds = {(e["member_id"], e["role"], e["action"]) for e in new}
    assert (None, "system", "clearing.run") in kinds
    assert (None, "system", "lease.start") in kinds
    assert (None, "system", "lease.complete") in kinds
    assert verify(api)["ok"]


def test_concurrent_appends_keep_one_chain(api: Api) -> None:
    n_threads, per_thread = 6, 15
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(per_thread):
                api.db.transaction(
                    lambda s, i=i: audit.note(
                        s, Entry(i, f"t{k}", audit.SYSTEM, "test", f"x:{k}:{i}")
                    )
                )
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with api.db.session_scope(write=False) as s:
        v = audit.verify_session(s)
    assert v.ok and v.entries == v.head_seq == n_threads * per_thread


# -- tampering -----------------------------------------------------------------------------------


def _tamper(db: Database, *statements: str) -> None:
    """Run ``statements`` as an intruder with DDL rights would: with the append-only
    triggers out of the way."""
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))
        for sql in statements:
            conn.execute(text(sql))


@pytest.fixture
def audited(api: Api) -> Api:
    build_world(api)
    for fee in (100, 200, 300, 400):
        assert api.call("PUT", "/fees", "op", json={"fee_bp": fee}).status_code == 200
    assert verify(api)["ok"] and verify(api)["entries"] == 7
    return api


def test_the_log_refuses_updates_and_deletes(audited: Api) -> None:
    refused = ["UPDATE audit_log SET action = 'x' WHERE seq = 1", "DELETE FROM audit_log"]
    if audited.backend == "postgresql":
        refused.append("TRUNCATE audit_log")
    for sql in refused:
        with pytest.raises(Exception, match="append-only"), audited.db.engine.begin() as conn:
            conn.execute(text(sql))
    assert verify(audited)["ok"]


def _problems(api: Api) -> list[tuple[int, str]]:
    v = verify(api)
    assert not v["ok"]
    return [(p["seq"], p["kind"]) for p in v["problems"]]


def test_an_edited_row_is_named(audited: Api) -> None:
    _tamper(audited.db, "UPDATE audit_log SET member_id = 'buy-b' WHERE seq = 2")
    assert _problems(audited) == [(2, "edited")]


def test_a_deleted_row_is_named(audited: Api) -> None:
    _tamper(audited.db, "DELETE FROM audit_log WHERE seq = 5")
    assert _problems(audited) == [(5, "missing")]


def test_a_deleted_last_row_is_named(audited: Api) -> None:
    _tamper(audited.db, "DELETE FROM audit_log WHERE seq = 7")
    assert _problems(audited) == [(7, "missing")]


def test_swapped_rows_are_named(audited: Api) -> None:
    cols = "at, member_id, role, action, object, request_id, detail, prev_hash, hash"
    _tamper(
        audited.db,
        f"CREATE TABLE swap AS SELECT seq, {cols} FROM audit_log WHERE seq IN (4, 5)",
        *(
            f"UPDATE audit_log SET ({cols}) = (SELECT {cols} FROM swap WHERE swap.seq = {b}) "
            f"WHERE seq = {a}"
            for a, b in ((4, 5), (5, 4))
        ),
        "DROP TABLE swap",
    )
    problems = _problems(audited)
    assert (4, "reordered") in problems and (5, "reordered") in problems


def test_the_cli_verifies_the_database(audited: Api) -> None:
    url = audited.db.engine.url.render_as_string(hide_password=False)
    if audited.backend == "postgresql":  # the test's schema, as a connection option
        with audited.db.engine.connect() as conn:
            schema = str(conn.execute(text("SHOW search_path")).scalar()).strip('"')
        url += ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"
    ok = runner.invoke(cli, ["audit", "verify", "--database-url", url])
    assert ok.exit_code == 0, ok.output
    assert "ok: 7 entries, head 7:" in ok.output
    head = ok.output.split("head ")[1].split()[0]
    again = runner.invoke(cli, ["audit", "verify", "--database-url", url, "--expect", head])
    assert again.exit_code == 0, again.output
    _tamper(audited.db, "UPDATE audit_log SET detail = '{}' WHERE seq = 3")
    bad = runner.invoke(cli, ["audit", "verify", "--database-url", url])
    assert bad.exit_code == 1, bad.output
    assert "entry 3 was edited" in bad.output
    as_json = runner.invoke(cli, ["audit", "verify", "--database-url", url, "--json"])
    assert json.loads(as_json.output)["problems"][0]["seq"] == 3


def test_the_cli_verifies_through_the_api(audited: Api) -> None:
    transport = audited.client._transport
    args = ["audit", "verify", "--url", "http://testserver", "--key", audited.tokens["aud"]]
    ok = runner.invoke(cli, args, obj={"transport": transport})
    assert ok.exit_code == 0, ok.output
    _tamper(audited.db, "DELETE FROM audit_log WHERE seq = 6")
    bad = runner.invoke(cli, args, obj={"transport": transport})
    assert bad.exit_code == 1, bad.output
    assert "entry 6 missing" in bad.output
    buyer = ["audit", "verify", "--url", "http://testserver", "--key", audited.tokens["buy-a"]]
    denied = runner.invoke(cli, buyer, obj={"transport": transport})
    assert (denied.exit_code == 2 and "403" in denied.output) or "may not" in denied.output


def test_request_ids_are_echoed_or_made(api: Api) -> None:
    r = api.client.get(f"{PREFIX}/market/grid", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    made = api.client.get(f"{PREFIX}/market/grid").headers["x-request-id"]
    assert (
        len(made) == 32 and made != api.client.get(f"{PREFIX}/market/grid").headers["x-request-id"]
    )
    bad = api.client.get(f"{PREFIX}/market/grid", headers={"X-Request-ID": "a b\tc" * 50})
    assert len(bad.headers["x-request-id"]) == 32
    problem = api.client.get(f"{PREFIX}/me", headers={"X-Request-ID": "e-1"})
    assert problem.status_code == 401 and problem.headers["x-request-id"] == "e-1"


def test_entries_are_rows(api: Api) -> None:
    build_world(api)
    with api.db.session_scope(write=False) as s:
        rows = s.query(AuditRow).order_by(AuditRow.seq).all()
    assert [r.seq for r in rows] == [1, 2, 3]


def test_the_cli_never_creates_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    out = runner.invoke(cli, ["audit", "verify", "--database-url", f"sqlite:///{missing}"])
    assert out.exit_code == 2 and "no database file" in out.output
    assert not missing.exists()
