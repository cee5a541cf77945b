"""Bearer API keys -> the calling member and its role, and role checks.

Keys are created by the store (``Members.create_key``: random, shown once, kept as a sha256
hash) and verified by ``Members.verify_key``. A route declares who may call it with
``Depends(allow(Role.BUYER, ...))``; everything else answers 401 (no or bad key) or 403
(wrong role). Whose objects a member may see is decided in the routes, which answer 404 for
another member's object, so that sealed bids stay sealed: the answer never says it exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from suangu.api.context import ApiContext, get_ctx
from suangu.api.errors import Forbidden
from suangu.store.errors import Unauthorized
from suangu.store.models import Role
from suangu.store.repositories import Members

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


def principal(
    request: Request,
    ctx: Annotated[ApiContext, Depends(get_ctx)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    if creds is None or not creds.credentials:
        raise Unauthorized(
            "no API key",
            field="header.Authorization",
            fix="send the header Authorization: Bearer <your API key>",
        )
    with ctx.db.session_scope(write=False) as s:
        try:
            key, member = Members(s).verify_key(creds.credentials)
        except Unauthorized as err:
            raise Unauthorized(err.message, field="header.Authorization", fix=err.fix) from None
    return Principal(member.id, key.role, key.id)


def allow(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that lets only ``roles`` through (403 for the others)."""
    allowed = frozenset(roles)
    names = ", ".join(sorted(str(r) for r in allowed))

    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
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
Provider = Annotated[Principal, Depends(allow(Role.PROVIDER))]
BuyerOrReader = Annotated[Principal, Depends(allow(Role.BUYER, Role.OPERATOR, Role.AUDITOR))]
ProviderOrReader = Annotated[Principal, Depends(allow(Role.PROVIDER, Role.OPERATOR, Role.AUDITOR))]
ProviderOrOperator = Annotated[Principal, Depends(allow(Role.PROVIDER, Role.OPERATOR))]
Member = Annotated[
    Principal, Depends(allow(Role.BUYER, Role.PROVIDER, Role.OPERATOR, Role.AUDITOR))
]
