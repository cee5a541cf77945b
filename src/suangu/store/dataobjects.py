"""Data objects in the database: who owns which sealed blob (:mod:`suangu.store.objects`).

An object's id is derived from its owner, name and content (``do_`` + 24 hex digits of a
sha256 over them): uploading the same bytes under the same name again is recognised and
returns the first object (a retried upload stores nothing twice); the same bytes under
another name, or by another member, are another object. Ids say nothing about the content
to anyone who does not already have it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from suangu.core.errors import ValidationError
from suangu.store.errors import NotFound
from suangu.store.models import DataEventKind, DataEventRow, DataGrantRow, DataObjectRow
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


# -- grants and the record of what happened to objects --------------------------------------


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    lease_id: str
    object_id: str
    provider_id: str
    issued_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class DataEvent:
    id: int
    at: int
    kind: DataEventKind
    object_id: str
    owner_id: str
    member_id: str
    lease_id: str | None
    grant_id: str | None


def _to_grant(row: DataGrantRow) -> Grant:
    return Grant(
        row.id, row.lease_id, row.object_id, row.provider_id, row.issued_at, row.expires_at
    )


class Grants:
    """Download grants: the token is shown once, only its sha256 is kept."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def issue(
        self, lease_id: str, object_id: str, provider_id: str, now: int, expires_at: int
    ) -> tuple[Grant, str]:
        token = "sgg_" + secrets.token_urlsafe(32)
        row = DataGrantRow(
            id="gr_" + secrets.token_hex(12),
            token_hash=hashlib.sha256(token.encode()).hexdigest(),
            lease_id=lease_id,
            object_id=object_id,
            provider_id=provider_id,
            issued_at=now,
            expires_at=expires_at,
        )
        self.s.add(row)
        self.s.flush()
        return _to_grant(row), token

    def by_token(self, token: str) -> Grant | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        row = self.s.scalars(select(DataGrantRow).where(DataGrantRow.token_hash == digest)).first()
        return None if row is None else _to_grant(row)


def _to_event(row: DataEventRow) -> DataEvent:
    return DataEvent(
        row.id,
        row.at,
        DataEventKind(row.kind),
        row.object_id,
        row.owner_id,
        row.member_id,
        row.lease_id,
        row.grant_id,
    )


class DataEvents:
    """The record of grants, downloads and outputs (append-only)."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def record(
        self,
        kind: DataEventKind,
        obj: DataObject,
        member_id: str,
        now: int,
        lease_id: str | None = None,
        grant_id: str | None = None,
    ) -> None:
        self.s.add(
            DataEventRow(
                at=now,
                kind=str(kind),
                object_id=obj.id,
                owner_id=obj.owner_id,
                member_id=member_id,
                lease_id=lease_id,
                grant_id=grant_id,
            )
        )
        self.s.flush()

    def page(
        self,
        *,
        owner_id: str | None = None,
        member_id: str | None = None,
        lease_id: str | None = None,
        object_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[DataEvent]:
        """Events oldest first, filtered; keyset-paginated by id."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError(
                f"must be between 1 and {MAX_PAGE}, got {limit}", field="limit", fix="use 50"
            )
        q = select(DataEventRow)
        for column, value in (
            (DataEventRow.owner_id, owner_id),
            (DataEventRow.member_id, member_id),
            (DataEventRow.lease_id, lease_id),
            (DataEventRow.object_id, object_id),
        ):
            if value is not None:
                q = q.where(column == value)
        if cursor:
            if not cursor.isdigit():
                raise ValidationError(
                    f"malformed cursor {cursor!r}", field="cursor", fix="pass next_cursor back"
                )
            q = q.where(DataEventRow.id > int(cursor))
        rows = list(self.s.scalars(q.order_by(DataEventRow.id).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(tuple(_to_event(r) for r in rows), str(rows[-1].id) if more else None)
