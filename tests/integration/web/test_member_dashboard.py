"""The per-member dashboard on a served exchange: a member signs in with its API key (a
session cookie) and sees its own page only; operators and auditors see every member's; the
overview stays public (aggregates only); revoking the key, expiry, a forged cookie or
signing out end the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.integration.api.conftest import Api, _database, build_world, make_api

from suangu.web.session import COOKIE, SESSION_TTL_S

from .test_dashboard import offline


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Api]:
    for backend, db in _database("sqlite", tmp_path):
        api = make_api(backend, db)
        build_world(api)
        yield api


def browser(api: Api) -> TestClient:
    """A fresh cookie jar on the same app (redirects not followed)."""
    return TestClient(api.client.app, follow_redirects=False)


def sign_in(api: Api, member: str, **form: str) -> TestClient:
    b = browser(api)
    r = b.post("/login", data={"key": api.tokens[member], **form})
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert COOKIE in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert api.tokens[member] not in cookie  # the cookie holds no key
    return b


def test_a_member_sees_its_own_page_only(world: Api) -> None:
    anon = browser(world)
    r = anon.get("/member/buy-a")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    form = anon.get("/login")
    assert form.status_code == 200 and 'type="password"' in form.text
    offline(form.text)
    assert anon.post("/login", data={"key": "sg_nope_nope"}).status_code == 401

    b = sign_in(world, "buy-a")
    assert b.get("/my").headers["location"] == "/member/buy-a"
    page = b.get("/member/buy-a")
    assert page.status_code == 200, page.text
    offline(page.text)
    assert "buyer:buy-a:CNY" in page.text and "buy-b" not in page.text
    assert "Sign out" in page.text
    assert b.get("/member/buy-b").status_code == 404  # another member's: as if none
    assert b.get("/member/prov-a").status_code == 404
    # The overview stays public: aggregates, no balances, signed in or not.
    home = b.get("/").text
    assert "Balances" not in home and "buyer:buy-a:CNY" not in home
    assert "My dashboard" in home


def test_operators_and_auditors_see_every_member(world: Api) -> None:
    for who in ("op", "aud"):
        b = sign_in(world, who)
        for member in ("buy-a", "buy-b", "prov-a"):
            assert b.get(f"/member/{member}").status_code == 200, (who, member)


def test_sessions_end(world: Api) -> None:
    b = sign_in(world, "buy-b")
    assert b.get("/member/buy-b").status_code == 200
    # Signing out.
    out = b.post("/logout")
    assert out.status_code == 303 and COOKIE in out.headers["set-cookie"]
    assert b.get("/member/buy-b").status_code == 303
    # A forged cookie.
    b = sign_in(world, "buy-b")
    key_id, expires, mac = b.cookies[COOKIE].split(".")
    b.cookies.set(COOKIE, f"{key_id}.{int(expires) + 10**6}.{mac}")
    assert b.get("/member/buy-b").status_code == 303
    # Expiry on the exchange's clock.
    b = sign_in(world, "buy-b")
    world.clock.advance(SESSION_TTL_S + 1)
    assert b.get("/member/buy-b").status_code == 303
    # Revoking the key.
    b = sign_in(world, "buy-b")
    key = world.call("GET", "/me", "buy-b").json()["key_id"]
    assert world.call("DELETE", f"/members/buy-b/keys/{key}", "op").status_code == 200
    assert b.get("/member/buy-b").status_code == 303


def test_sign_in_goes_back_to_the_page_asked_for(world: Api) -> None:
    b = browser(world)
    r = b.post("/login", data={"key": world.tokens["op"], "next": "/member/buy-b"})
    assert r.headers["location"] == "/member/buy-b"
    r = b.post("/login", data={"key": world.tokens["op"], "next": "//evil.example/x"})
    assert r.headers["location"] == "/member/op"  # never off the site
