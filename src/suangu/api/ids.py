"""Order and offer ids are per member.

A client names its order or offer (``job-1``); the API stores it in the member's namespace,
``<member id>~<name>`` (:func:`suangu.core.types.owned_id`), and answers with that stored id.
Two members can both submit ``job-1``: they are two objects, and neither learns that the
other exists (no 409, no other answer). A member's own duplicate meets its own row: the same
fields return it again, other fields are a 409, as before.

Paths and filters take the stored id, or the owner's plain name: a buyer's ``job-1`` is its
``<buyer>~job-1`` (:func:`resolve`), falling back to a plain stored id (objects written
before ids were per member, or by the store's own callers) that is the caller's own; the
usual ownership check answers 404 for anything else. Operators and auditors, who see every
member's objects, name them by the stored id.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from suangu.api.auth import Principal
from suangu.core.errors import ValidationError
from suangu.core.types import SCOPE, owned_id
from suangu.store.models import ID, OfferRow, OrderRow


def own(object_id: str, member_id: str, field: str = "body.id") -> str:
    """The stored id of ``member_id``'s object named ``object_id`` (at most the length of
    the store's id columns)."""
    stored = owned_id(object_id, member_id)
    if len(stored) > ID:
        raise ValidationError(
            f"is stored as {stored!r}: {len(stored)} characters with your member id, above {ID}",
            field=field,
            fix="choose a shorter id",
        )
    return stored


def resolve(s: Session, who: Principal, object_id: str, table: type[OrderRow | OfferRow]) -> str:
    """The stored id that ``who`` means by ``object_id`` in a path or filter."""
    if who.sees_all or SCOPE in object_id:
        return object_id
    mine = owned_id(object_id, who.member_id)
    found = s.scalar(select(table.id).where(table.id == mine))
    return mine if found is not None else object_id


def order_id(s: Session, who: Principal, object_id: str) -> str:
    return resolve(s, who, object_id, OrderRow)


def offer_id(s: Session, who: Principal, object_id: str) -> str:
    return resolve(s, who, object_id, OfferRow)
