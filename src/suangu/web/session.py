"""Members sign in to their own dashboard page with their API key: a session cookie.

``GET /login`` is a form (no script); ``POST /login`` takes the key, checks it as the API
does, and sets the cookie ``suangu_session``; ``GET /my`` goes to the signed-in member's page
(``/member/{id}``, see :mod:`suangu.web.pages`); ``POST /logout`` clears it. A buyer or
provider sees only its own page; operators and auditors, every member's. The overview at
``/`` stays public on a served exchange: market aggregates only.

The cookie holds no secret: ``<key id>.<expiry>.<mac>``, where the MAC is HMAC-SHA256 over the
key id and expiry, keyed by the stored hash of the API key (and ``SUANGU_SESSION_SECRET``
when set). So every worker checks it without shared state, a session lives
:data:`SESSION_TTL_S` on the exchange's clock, and revoking the key ends its sessions at
once. The cookie is ``HttpOnly``, ``SameSite=Strict``, and ``Secure`` over HTTPS.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from html import escape
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from suangu.api.auth import Principal
from suangu.api.context import ApiContext
from suangu.store.errors import Unauthorized
from suangu.store.models import ApiKeyRow, Role
from suangu.store.repositories import Members

router = APIRouter(include_in_schema=False)
COOKIE = "suangu_session"
#: How long a session lasts, seconds of the exchange's clock.
SESSION_TTL_S = 8 * 3600
#: Optional server secret mixed into the sessions' MAC (the same for every worker).
SECRET_ENV = "SUANGU_SESSION_SECRET"
#: Largest login form read, bytes.
MAX_FORM = 4096
Lang = Annotated[str | None, Query(description="en or zh")]


def _mac(secret_hash: str, key_id: str, expires: int) -> str:
    key = (secret_hash + os.environ.get(SECRET_ENV, "")).encode()
    return hmac.new(key, f"{key_id}.{expires}".encode(), hashlib.sha256).hexdigest()


def make_session(ctx: ApiContext, key_id: str) -> str:
    """A session value for the (active) API key ``key_id``."""
    with ctx.db.session_scope(write=False) as s:
        secret_hash = s.scalar(select(ApiKeyRow.secret_hash).where(ApiKeyRow.id == key_id))
    if secret_hash is None:
        raise Unauthorized("unknown API key", field="key", fix="sign in again")
    expires = ctx.now() + SESSION_TTL_S
    return f"{key_id}.{expires}.{_mac(secret_hash, key_id, expires)}"


def signed_in(request: Request) -> Principal | None:
    """The member of the request's session cookie, if it is valid, unexpired, and its key
    still active."""
    value = request.cookies.get(COOKIE)
    if not value or len(value) > 512:
        return None
    key_id, _, rest = value.partition(".")
    expiry, _, mac = rest.partition(".")
    if not key_id or not expiry.isdigit() or len(mac) != 64:
        return None
    ctx: ApiContext = request.app.state.ctx
    expires = int(expiry)
    if expires <= ctx.now():
        return None
    with ctx.db.session_scope(write=False) as s:
        row = s.get(ApiKeyRow, key_id)
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(_mac(row.secret_hash, key_id, expires), mac):
            return None
        return Principal(row.member_id, Role(row.role), row.id)


def may_see(who: Principal | None, member_id: str) -> bool:
    return who is not None and who.may_see(member_id)


def _form(
    request: Request, lang: str, message: str = "", status: int = 200, next_path: str = ""
) -> HTMLResponse:
    from suangu.web.i18n import t
    from suangu.web.pages import page

    note = f'<p class="note" role="alert">{escape(message)}</p>' if message else ""
    hidden = f'<input type="hidden" name="next" value="{escape(next_path)}">' if next_path else ""
    body = (
        f"<section><h2>{escape(t(lang, 'sign_in'))}</h2>"
        f'<p class="note">{escape(t(lang, "sign_in_note"))}</p>{note}'
        f'<form method="post" action="/login?lang={lang}">'
        f'<label>{escape(t(lang, "api_key"))} <input type="password" name="key" size="60" '
        f'autocomplete="current-password" required></label>{hidden} '
        f'<button type="submit">{escape(t(lang, "sign_in"))}</button></form></section>'
    )
    resp = page(request, lang, t(lang, "sign_in"), body, "/login")
    resp.status_code = status
    return resp


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, lang: Lang = None, next: str = "") -> Response:
    from suangu.web.i18n import pick

    return _form(request, pick(lang), next_path=next if next.startswith("/member/") else "")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, lang: Lang = None) -> Response:
    from starlette.concurrency import run_in_threadpool

    from suangu.web.i18n import pick, t

    lang = pick(lang)
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM:
            return _form(request, lang, t(lang, "bad_key"), 413)
    form = parse_qs(raw.decode("utf-8", "replace"))
    token = (form.get("key") or [""])[0].strip()
    nxt = (form.get("next") or [""])[0]
    ctx: ApiContext = request.app.state.ctx

    def check() -> tuple[str, str] | None:
        try:
            with ctx.db.session_scope(write=False) as s:
                key, member = Members(s).verify_key(token)
        except Unauthorized:
            return None
        return member.id, key.id

    found = await run_in_threadpool(check) if token else None
    if found is None:
        return _form(request, lang, t(lang, "bad_key"), 401, nxt)
    member_id, key_id = found
    value = await run_in_threadpool(make_session, ctx, key_id)
    own = "/member/" + quote(member_id, safe="")
    target = nxt if nxt.startswith("/member/") and "//" not in nxt else own
    resp = RedirectResponse(target + ("?lang=zh" if lang == "zh" else ""), status_code=303)
    resp.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_TTL_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return resp


@router.post("/logout")
def logout(request: Request) -> Response:
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


@router.get("/my")
def my_page(request: Request, lang: Lang = None) -> Response:
    """The signed-in member's page, or the sign-in form."""
    tail = "?lang=zh" if lang == "zh" else ""
    who = signed_in(request)
    if who is None:
        return RedirectResponse("/login" + tail, status_code=303)
    return RedirectResponse("/member/" + quote(who.member_id, safe="") + tail, status_code=303)
