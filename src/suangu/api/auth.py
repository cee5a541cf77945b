"""Bearer API keys -> the calling member and its role, and role checks.

Keys are created by the store (``Members.create_key``: random, shown once, kept as a sha256
hash) and verified by ``Members.verify_key``. A route declares who may call it with
``Depends(allow(Role.BUYER, ...))``; everything else answers 401 (no or bad key) or 403
(wrong role). Whose objects a member may see is decided in the routes, which answer 404 for
another member's object, so that sealed bids stay sealed: the answer never says it exists.

Verified keys are remembered per app for ``KEY_CACHE_TTL_S`` seconds of the app's clock
(:class:`suangu.api.keycache.KeyCache` in ``ApiContext.keys``, keyed by the sha256 of the
token), so that a request does not spend a database transaction on its key. Revocation takes
effect:

* at once in the process that revoked the key (``DELETE /members/{id}/keys/{key_id}`` evicts
  it, see :func:`forget_key`);
* at once for every write in every process: :func:`suangu.api.idempotency.run_write` checks
  in the write's own transaction that the key is still active (the same statement that looks
  up the ``Idempotency-Key``), so a revoked key never writes;
* for reads in other worker processes, within ``KEY_CACHE_TTL_S`` seconds (writes, which
  check the key themselves, trust the cache for ``WRITE_KEY_CACHE_TTL_S``: it spares them
  the member lookup only).

Failed verifications are not cached: an unknown or revoked key reaches the database each time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from suangu.api.context import ApiContext
from suangu.api.errors import Forbidden
from suangu.api.keycache import WRITE_KEY_CACHE_TTL_S
from suangu.store.errors import Unauthorized
from suangu.store.models import Role
from suangu.store.repositories import Members, hash_token

bearer = HTTPBearer(
    auto_error=False,
    description="An API key created by an operator: `Authorization: Bearer sg_...`",
)

#: Roles that see every member's data (read-only for the auditor).
SEE_ALL = frozenset({Role.OPERATOR, Role.AUDITOR})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the member behind the key, and the key's role."""

    member_id: str
    role: Role
    key_id: str

    @property
    def sees_all(self) -> bool:
        return self.role in SEE_ALL

    def may_see(self, owner: str | None) -> bool:
        return self.sees_all or (owner is not None and owner == self.member_id)


def forget_key(ctx: ApiContext, key_id: str) -> None:
    """Call after revoking ``key_id``: this process stops accepting it at once."""
    ctx.keys.forget(key_id)


def _verify(ctx: ApiContext, token: str) -> Principal:
    with ctx.db.session_scope(write=False) as s:
        try:
            key, member = Members(s).verify_key(token)
        except Unauthorized as err:
            raise Unauthorized(err.message, field="header.Authorization", fix=err.fix) from None
    return Principal(member.id, key.role, key.id)


async def _principal(
    request: Request, creds: HTTPAuthorizationCredentials | None, ttl_s: int | None = None
) -> Principal:
    """The caller, from the cache (verified less than ``ttl_s`` ago) or, on a miss, from the
    database in a worker thread."""
    if creds is None or not creds.credentials:
        raise Unauthorized(
            "no API key",
            field="header.Authorization",
            fix="send the header Authorization: Bearer <your API key>",
        )
    ctx: ApiContext = request.app.state.ctx
    digest = hash_token(creds.credentials)
    cached: Principal | None = ctx.keys.get(digest, ctx.now(), ttl_s)
    if cached is not None:
        return cached
    generation = ctx.keys.generation()
    who = await run_in_threadpool(_verify, ctx, creds.credentials)
    ctx.keys.put(digest, who, who.key_id, ctx.now(), generation)
    return who


async def principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    """The caller (any role). A coroutine: FastAPI runs it on the event loop."""
    return await _principal(request, creds)


def allow(*roles: Role, ttl_s: int | None = None) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets only ``roles`` through (403 for the others).

    It reads the key itself (not through :func:`principal`): one dependency less for FastAPI
    to resolve on every request. ``ttl_s``: trust a cached key that long (only for routes
    whose write checks the key in its transaction: :data:`WRITE_KEY_CACHE_TTL_S`).
    """
    allowed = frozenset(roles)
    names = ", ".join(sorted(str(r) for r in allowed))

    async def check(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> Principal:
        who = await _principal(request, creds, ttl_s)
        if who.role not in allowed:
            raise Forbidden(
                f"a {who.role} may not do this",
                field="header.Authorization",
                fix=f"use the key of a member with one of the roles: {names}",
            )
        return who

    return check


Anyone = Annotated[Principal, Depends(principal)]
Operator = Annotated[Principal, Depends(allow(Role.OPERATOR))]
Reader = Annotated[Principal, Depends(allow(Role.OPERATOR, Role.AUDITOR))]
Buyer = Annotated[Principal, Depends(allow(Role.BUYER))]
#: A buyer on a route that writes through ``run_write`` or the order batcher.
BuyerWriting = Annotated[Principal, Depends(allow(Role.BUYER, ttl_s=WRITE_KEY_CACHE_TTL_S))]
Provider = Annotated[Principal, Depends(allow(Role.PROVIDER))]
BuyerOrReader = Annotated[Principal, Depends(allow(Role.BUYER, Role.OPERATOR, Role.AUDITOR))]
ProviderOrReader = Annotated[Principal, Depends(allow(Role.PROVIDER, Role.OPERATOR, Role.AUDITOR))]
ProviderOrOperator = Annotated[Principal, Depends(allow(Role.PROVIDER, Role.OPERATOR))]
Member = Annotated[
    Principal, Depends(allow(Role.BUYER, Role.PROVIDER, Role.OPERATOR, Role.AUDITOR))
]
