"""No secret in idempotency records: the recorded responses of API key creations held the
key's token (kept 24 hours for replays). Each such record becomes the 409 problem that new
ones are (``suangu.api.idempotency.secret_issued``): a replay names the key created and no
longer shows its token.

Revision ID: 0008
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RECORDS = sa.table(
    "idempotency_keys",
    sa.column("member_id", sa.String),
    sa.column("key", sa.String),
    sa.column("status", sa.Integer),
    sa.column("body", sa.JSON),
)


def redacted(body: dict[str, Any]) -> dict[str, Any]:
    """The problem a replay of the key creation answers with (no token)."""
    key_id = str(body.get("id", ""))
    member = str(body.get("member_id", ""))
    return {
        "type": "https://suangu.dev/problems/secret_not_replayable",
        "title": "Conflict",
        "status": 409,
        "detail": f"this Idempotency-Key already created the API key {key_id!r}; its secret "
        "was in the first response only and is not kept, so it cannot be shown again",
        "code": "secret_not_replayable",
        "field": "header.Idempotency-Key",
        "fix": f"use the token of the first response; if it was lost, revoke {key_id} "
        f"(DELETE /members/{member}/keys/{key_id}) and create a new key with a new "
        "Idempotency-Key",
    }


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_RECORDS.c.member_id, _RECORDS.c.key, _RECORDS.c.body).where(
            _RECORDS.c.status == 201, sa.cast(_RECORDS.c.body, sa.Text).like('%"token"%')
        )
    )
    for member_id, key, body in list(rows):
        if isinstance(body, dict) and isinstance(body.get("token"), str):
            conn.execute(
                _RECORDS.update()
                .where(_RECORDS.c.member_id == member_id, _RECORDS.c.key == key)
                .values(status=409, body=redacted(body))
            )


def downgrade() -> None:
    """Nothing to undo: the tokens are gone for good."""
