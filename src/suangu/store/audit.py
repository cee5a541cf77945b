"""The audit trail: an append-only, hash-chained log of every write.

Each entry says who (member and role), did what (``action``, such as ``order.submit``), to
which ``object`` (``order:o-17``), under which request id, when (the app's clock), and a
little more in ``detail`` (canonical JSON). Entries are numbered ``seq`` = 1, 2, ... per
database, and chained::

    hash(n) = sha256(hash(n - 1) + canonical(entry n))        hash(0) = "0" * 64

where ``canonical`` is the entry's JSON with sorted keys, ``seq`` included (see
:func:`canonical`). Editing an entry breaks its own hash; deleting, inserting or reordering
entries breaks the ``seq`` numbering or the links; cutting the tail off disagrees with the
head row (:class:`~suangu.store.models.AuditHeadRow`). :func:`verify` checks all of it and
names the entry at fault. Someone who can rewrite the whole tail and the head (a database
superuser) can forge a consistent chain: keep a copy of the head now and then (``suangu
audit verify`` prints it) and pass it back as an anchor (``--expect SEQ:HASH``).

Appending happens in the transaction of the write it records, so a write that rolls back
leaves no entry: code that writes calls :func:`note` with the open session, and the entries
are appended when the transaction commits (the ``before_commit`` hooks of
:meth:`suangu.store.db.Database.session_scope`), after everything else it did. Appends are
serialised: on PostgreSQL by the row lock of the head (an ``UPDATE ... RETURNING`` that
reserves the numbers, held to the commit, which follows at once; then one statement inserts
the entries and moves the head's hash: two round trips); on SQLite by its one writer at a
time. The head is the last lock a write takes, so it adds no deadlock. Triggers refuse
``UPDATE`` and ``DELETE`` on ``audit_log`` (migration 0006).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session

from suangu.store.db import before_commit
from suangu.store.models import AUDIT_GENESIS, AuditHeadRow, AuditRow

#: The role of entries the exchange writes itself (clearing loop, command line).
SYSTEM = "system"
_PENDING = "suangu_audit_pending"
#: Entries read per query while verifying.
VERIFY_BATCH = 5_000
#: How far from its place a moved entry is looked for, to say "reordered" (not "edited").
_MOVED_WINDOW = 64


@dataclass(frozen=True, slots=True)
class Entry:
    """What an audit entry says (without its place in the chain)."""

    at: int
    member_id: str | None
    role: str
    action: str
    object: str
    request_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Record:
    """An entry in the chain, as stored."""

    seq: int
    at: int
    member_id: str | None
    role: str
    action: str
    object: str
    request_id: str | None
    detail: str
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "member_id": self.member_id,
            "role": self.role,
            "action": self.action,
            "object": self.object,
            "request_id": self.request_id,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Record:
        return cls(
            int(d["seq"]),
            int(d["at"]),
            d.get("member_id"),
            str(d["role"]),
            str(d["action"]),
            str(d["object"]),
            d.get("request_id"),
            str(d["detail"]),
            str(d["prev_hash"]),
            str(d["hash"]),
        )


def encode_detail(detail: Mapping[str, Any]) -> str:
    """The canonical JSON of ``detail`` (stored as text, hashed as stored)."""
    return json.dumps(dict(detail), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(
    seq: int,
    at: int,
    member_id: str | None,
    role: str,
    action: str,
    obj: str,
    request_id: str | None,
    detail: str,
) -> bytes:
    """The bytes an entry's hash covers: JSON with sorted keys, no spaces, UTF-8."""
    doc = {
        "seq": seq,
        "at": at,
        "member_id": member_id,
        "role": role,
        "action": action,
        "object": obj,
        "request_id": request_id,
        "detail": detail,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def record_hash(r: Record, seq: int | None = None) -> str:
    """What ``r.hash`` should be (at position ``seq``, its own by default)."""
    body = canonical(
        r.seq if seq is None else seq,
        r.at,
        r.member_id,
        r.role,
        r.action,
        r.object,
        r.request_id,
        r.detail,
    )
    return chain_hash(r.prev_hash, body)


# -- appending ----------------------------------------------------------------------------------


def note(s: Session, *entries: Entry) -> None:
    """Record ``entries`` in the write transaction of ``s``: appended to the chain when it
    commits, dropped if it rolls back (or is retried)."""
    if not entries:
        return
    pending: list[Entry] | None = s.info.get(_PENDING)
    if pending is None:
        pending = s.info[_PENDING] = []
        before_commit(s, _flush)
    pending.extend(entries)


def _flush(s: Session) -> None:
    pending: list[Entry] = s.info.pop(_PENDING, [])
    if pending:
        append(s, pending)


#: PostgreSQL: insert the entries (one JSON parameter) and move the head's hash, in one
#: statement of constant text (prepared once per connection, no per-call compilation).
_PG_APPEND = text(
    "WITH added AS (INSERT INTO audit_log (seq, at, member_id, role, action, object, "
    "request_id, detail, prev_hash, hash) SELECT seq, at, member_id, role, action, object, "
    "request_id, detail, prev_hash, hash FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r("
    "seq bigint, at bigint, member_id varchar, role varchar, action varchar, object varchar, "
    "request_id varchar, detail text, prev_hash varchar, hash varchar)) "
    "UPDATE audit_head SET hash = :hash WHERE id = 1"
)


def append(s: Session, entries: Sequence[Entry]) -> list[Record]:
    """Append ``entries`` to the chain now, in the transaction of ``s`` (locks the head to
    the end of the transaction)."""
    if not entries:
        return []
    conn = s.connection()
    n = len(entries)
    if conn.dialect.name == "postgresql":
        # One round trip locks the head and reserves n numbers: after waiting for the lock,
        # UPDATE reads the head as the previous writer committed it.
        row = conn.execute(
            update(AuditHeadRow)
            .where(AuditHeadRow.id == 1)
            .values(seq=AuditHeadRow.seq + n)
            .returning(AuditHeadRow.seq, AuditHeadRow.hash)
        ).one()
        first, prev = int(row.seq) - n + 1, str(row.hash)
    else:  # SQLite: one writer at a time already
        row = conn.execute(
            select(AuditHeadRow.seq, AuditHeadRow.hash).where(AuditHeadRow.id == 1)
        ).one()
        first, prev = int(row.seq) + 1, str(row.hash)
    out: list[Record] = []
    for seq, e in enumerate(entries, first):
        detail = encode_detail(e.detail)
        body = canonical(seq, e.at, e.member_id, e.role, e.action, e.object, e.request_id, detail)
        digest = chain_hash(prev, body)
        out.append(
            Record(
                seq,
                e.at,
                e.member_id,
                e.role,
                e.action,
                e.object,
                e.request_id,
                detail,
                prev,
                digest,
            )
        )
        prev = digest
    rows = [r.to_dict() for r in out]
    if conn.dialect.name == "postgresql":  # the rows and the new head: one round trip
        conn.execute(_PG_APPEND, {"rows": json.dumps(rows), "hash": prev})
    else:
        conn.execute(insert(AuditRow), rows)
        conn.execute(
            update(AuditHeadRow).where(AuditHeadRow.id == 1).values(seq=out[-1].seq, hash=prev)
        )
    return out


# -- reading ------------------------------------------------------------------------------------


def to_record(row: AuditRow) -> Record:
    return Record(
        row.seq,
        row.at,
        row.member_id,
        row.role,
        row.action,
        row.object,
        row.request_id,
        row.detail,
        row.prev_hash,
        row.hash,
    )


def head(s: Session) -> tuple[int, str]:
    """``(seq, hash)`` of the chain's head (``(0, genesis)`` when empty)."""
    row = s.execute(select(AuditHeadRow.seq, AuditHeadRow.hash).where(AuditHeadRow.id == 1)).first()
    if row is None:
        return 0, AUDIT_GENESIS
    return int(row.seq), str(row.hash)


def records(s: Session, batch: int = VERIFY_BATCH) -> Iterator[Record]:
    """Every entry in ``seq`` order, read ``batch`` at a time."""
    last = None
    while True:
        q = select(AuditRow).order_by(AuditRow.seq).limit(batch)
        if last is not None:
            q = q.where(AuditRow.seq > last)
        rows = list(s.scalars(q))
        for row in rows:
            yield to_record(row)
        if len(rows) < batch:
            return
        last = rows[-1].seq
        s.expunge_all()


# -- verifying ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with the chain, at entry ``seq``."""

    seq: int
    kind: str  # edited, missing, reordered, unlinked, head, anchor
    message: str


@dataclass(frozen=True, slots=True)
class Verdict:
    entries: int
    head_seq: int
    head_hash: str
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    entries: Iterable[Record],
    head: tuple[int, str] | None = None,
    anchors: Mapping[int, str] | None = None,
    *,
    max_problems: int = 100,
) -> Verdict:
    """Check a chain read in ``seq`` order (see the module docs): every entry's own hash,
    its link to the entry before, the numbering, the ``head`` row, and ``anchors``
    (``{seq: hash}`` recorded earlier). Names each entry at fault."""
    problems: list[Problem] = []
    want_anchor = dict(anchors or {})
    expected, prev = 1, AUDIT_GENESIS
    count = 0
    last_seq, last_hash = 0, AUDIT_GENESIS

    def add(p: Problem) -> None:
        if len(problems) < max_problems:
            problems.append(p)

    for r in entries:
        count += 1
        if r.seq > expected:
            gap = f"{expected}" if r.seq == expected + 1 else f"{expected} to {r.seq - 1}"
            add(Problem(expected, "missing", f"entry {gap} missing (deleted)"))
        elif r.seq < expected:
            add(Problem(r.seq, "reordered", f"entry {r.seq} out of order after {expected - 1}"))
        own = record_hash(r)
        if own != r.hash:
            moved = _moved_from(r)
            if moved is not None:
                add(Problem(r.seq, "reordered", f"entry {r.seq} holds entry {moved} (reordered)"))
            else:
                add(Problem(r.seq, "edited", f"entry {r.seq} was edited (its hash does not match)"))
        elif r.prev_hash != prev and r.seq == expected:
            add(
                Problem(
                    r.seq,
                    "unlinked",
                    f"entry {r.seq} does not follow entry {r.seq - 1} (the entry before it was "
                    "edited, removed or replaced)",
                )
            )
        if r.seq in want_anchor and want_anchor.pop(r.seq) != r.hash:
            add(Problem(r.seq, "anchor", f"entry {r.seq} differs from the recorded anchor"))
        prev = r.hash
        expected = max(expected, r.seq) + 1
        last_seq, last_hash = r.seq, r.hash
    for seq in sorted(want_anchor):
        add(Problem(seq, "anchor", f"anchored entry {seq} is missing"))
    if head is not None:
        head_seq, head_hash = head
        if head_seq > last_seq:
            gap = f"{last_seq + 1}" if head_seq == last_seq + 1 else f"{last_seq + 1} to {head_seq}"
            add(Problem(last_seq + 1, "missing", f"entry {gap} missing (the log was truncated)"))
        elif head_seq < last_seq or head_hash != last_hash:
            add(
                Problem(
                    head_seq,
                    "head",
                    f"the head ({head_seq}) does not match the last entry ({last_seq})",
                )
            )
    else:
        head_seq, head_hash = last_seq, last_hash
    return Verdict(count, head_seq, head_hash, tuple(problems))


def _moved_from(r: Record) -> int | None:
    """The position whose hash ``r`` has (it was moved from there), if near."""
    for delta in range(1, _MOVED_WINDOW + 1):
        for seq in (r.seq + delta, r.seq - delta):
            if seq > 0 and record_hash(r, seq) == r.hash:
                return seq
    return None


def verify_session(
    s: Session, anchors: Mapping[int, str] | None = None, *, batch: int = VERIFY_BATCH
) -> Verdict:
    """:func:`verify` the chain of the database behind ``s``."""
    top = head(s)
    return verify(records(s, batch), top, anchors)
