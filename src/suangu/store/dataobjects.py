"""Data objects in the database: who owns which sealed blob (:mod:`suangu.store.objects`).

An object's id is derived from its owner, name and content (``do_`` + 24 hex digits of a
sha256 over them): uploading the same bytes under the same name again is recognised and
returns the first object (a retried upload stores nothing twice); the same bytes under
another name, or by another member, are another object. Ids say nothing about the content
to anyone who does not already have it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from suangu.core.errors import ValidationError
from suangu.store.errors import NotFound
from suangu.store.models import DataObjectRow
from suangu.store.objects import ObjectStore, Sealed
from suangu.store.repositories import MAX_PAGE, Page


@dataclass(frozen=True, slots=True)
class DataObject:
    id: str
    owner_id: str
    name: str
    sha256: str
    size: int
    created_at: int
    lease_id: str | None = None


def object_id(owner_id: str, name: str, sha256: str) -> str:
    digest = hashlib.sha256(f"{owner_id}\0{name}\0{sha256}".encode()).hexdigest()
    return f"do_{digest[:24]}"


def _to_object(row: DataObjectRow) -> DataObject:
    return DataObject(
        row.id, row.owner_id, row.name, row.sha256, row.size, row.created_at, row.lease_id
    )


class DataObjects:
    """Data objects' rows (inside a caller's session)."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def find(self, object_id: str) -> DataObjectRow | None:
        return self.s.get(DataObjectRow, object_id)

    def add(
        self,
        oid: str,
        owner_id: str,
        name: str,
        sha256: str,
        size: int,
        sealed: Sealed,
        now: int,
        lease_id: str | None = None,
    ) -> DataObject:
        row = DataObjectRow(
            id=oid,
            owner_id=owner_id,
            name=name,
            sha256=sha256,
            size=size,
            created_at=now,
            blob=sealed.blob_name,
            wrapped_key=sealed.wrapped_key,
            key_id=sealed.key_id,
            lease_id=lease_id,
        )
        self.s.add(row)
        self.s.flush()
        return _to_object(row)

    def get(self, oid: str, owner_id: str | None = None, field: str = "id") -> DataObject:
        """The object; with ``owner_id``, only if that member owns it (others: not found)."""
        row = self.find(oid)
        if row is None or (owner_id is not None and row.owner_id != owner_id):
            raise NotFound(f"no data object {oid!r}", field=field, fix="list your objects")
        return _to_object(row)

    def many(self, ids: Iterable[str]) -> dict[str, DataObject]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        q = select(DataObjectRow).where(DataObjectRow.id.in_(wanted))
        return {r.id: _to_object(r) for r in self.s.scalars(q)}

    def read(self, store: ObjectStore, oid: str) -> bytes:
        """The plaintext of an object (checked against its content address and sha256)."""
        row = self.find(oid)
        if row is None:
            raise NotFound(f"no data object {oid!r}", field="id", fix="list your objects")
        return store.get(row.id, row.blob, row.wrapped_key, row.key_id, row.sha256)

    def page(
        self, owner_id: str | None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[DataObject]:
        """Objects oldest first (``owner_id=None``: every member's), keyset-paginated."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError(
                f"must be between 1 and {MAX_PAGE}, got {limit}", field="limit", fix="use 50"
            )
        q = select(DataObjectRow)
        if owner_id is not None:
            q = q.where(DataObjectRow.owner_id == owner_id)
        if cursor:
            at, _, after = cursor.partition("|")
            try:
                after_at = int(at)
            except ValueError:
                raise ValidationError(
                    f"malformed cursor {cursor!r}", field="cursor", fix="pass next_cursor back"
                ) from None
            q = q.where(
                (DataObjectRow.created_at > after_at)
                | ((DataObjectRow.created_at == after_at) & (DataObjectRow.id > after))
            )
        q = q.order_by(DataObjectRow.created_at, DataObjectRow.id).limit(limit + 1)
        rows = list(self.s.scalars(q))
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = f"{rows[-1].created_at}|{rows[-1].id}" if more else None
        return Page(tuple(_to_object(r) for r in rows), nxt)
