"""The audit chain's verification on records in memory: every kind of tampering is named."""

from __future__ import annotations

import dataclasses

from suangu.store.audit import Entry, Record, canonical, chain_hash, encode_detail, verify
from suangu.store.models import AUDIT_GENESIS


def chain(n: int) -> list[Record]:
    out: list[Record] = []
    prev = AUDIT_GENESIS
    for seq in range(1, n + 1):
        e = Entry(1000 + seq, f"m{seq % 3}", "buyer", "order.submit", f"order:o{seq}", f"r{seq}")
        detail = encode_detail({"status": 201})
        body = canonical(seq, e.at, e.member_id, e.role, e.action, e.object, e.request_id, detail)
        h = chain_hash(prev, body)
        fields = (e.at, e.member_id, e.role, e.action, e.object, e.request_id, detail)
        out.append(Record(seq, *fields, prev, h))
        prev = h
    return out


def head_of(records: list[Record]) -> tuple[int, str]:
    return records[-1].seq, records[-1].hash


def test_an_intact_chain_verifies() -> None:
    records = chain(10)
    v = verify(records, head_of(records), {3: records[2].hash})
    assert v.ok and v.entries == 10 and (v.head_seq, v.head_hash) == head_of(records)
    assert verify([], (0, AUDIT_GENESIS)).ok


def test_an_edited_entry_is_named() -> None:
    records = chain(10)
    head = head_of(records)
    records[4] = dataclasses.replace(records[4], object="order:other")
    v = verify(records, head)
    assert [(p.seq, p.kind) for p in v.problems] == [(5, "edited")]
    assert "entry 5" in v.problems[0].message


def test_an_edited_entry_with_a_recomputed_hash_breaks_the_next_link() -> None:
    records = chain(10)
    head = head_of(records)
    forged = dataclasses.replace(records[4], member_id="someone-else")
    records[4] = dataclasses.replace(forged, hash=_rehash(forged))
    v = verify(records, head)
    assert [(p.seq, p.kind) for p in v.problems] == [(6, "unlinked")]
    assert "entry 5" in v.problems[0].message  # the one before it


def test_a_deleted_entry_is_named() -> None:
    records = chain(10)
    head = head_of(records)
    del records[6]
    v = verify(records, head)
    assert (7, "missing") in [(p.seq, p.kind) for p in v.problems]
    assert "entry 7 missing" in v.problems[0].message


def test_swapped_entries_are_named_as_reordered() -> None:
    records = chain(10)
    head = head_of(records)
    a, b = records[2], records[3]
    # Swap the contents of seq 3 and 4 (each keeps its place's seq).
    records[2] = dataclasses.replace(b, seq=3)
    records[3] = dataclasses.replace(a, seq=4)
    v = verify(records, head)
    kinds = [(p.seq, p.kind) for p in v.problems]
    assert (3, "reordered") in kinds and (4, "reordered") in kinds
    assert "entry 3 holds entry 4" in v.problems[0].message


def test_rows_read_out_of_order_are_named() -> None:
    records = chain(5)
    records[1], records[2] = records[2], records[1]
    v = verify(records, head_of(chain(5)))
    assert not v.ok
    assert {p.seq for p in v.problems} & {2, 3}


def test_a_truncated_tail_disagrees_with_the_head() -> None:
    records = chain(10)
    head = head_of(records)
    v = verify(records[:8], head)
    assert [(p.seq, p.kind) for p in v.problems] == [(9, "missing")]
    assert "entry 9 to 10 missing" in v.problems[0].message


def test_a_rewritten_tail_fails_its_anchor() -> None:
    records = chain(10)
    anchor = {8: records[7].hash}
    rewritten = records[:7]
    prev = rewritten[-1].hash
    for r in records[7:]:
        fake = dataclasses.replace(r, action="deposit", prev_hash=prev)
        fake = dataclasses.replace(fake, hash=_rehash(fake))
        rewritten.append(fake)
        prev = fake.hash
    assert verify(rewritten, head_of(rewritten)).ok  # consistent by itself...
    v = verify(rewritten, head_of(rewritten), anchor)
    assert [(p.seq, p.kind) for p in v.problems] == [(8, "anchor")]  # ...but not with the anchor


def test_records_round_trip_through_json() -> None:
    for r in chain(3):
        assert Record.from_dict(r.to_dict()) == r


def _rehash(r: Record) -> str:
    body = canonical(r.seq, r.at, r.member_id, r.role, r.action, r.object, r.request_id, r.detail)
    return chain_hash(r.prev_hash, body)
