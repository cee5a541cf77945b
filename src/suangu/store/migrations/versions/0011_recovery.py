"""Recovery from provider failure. Leases remember that they failed: ``leases.failed`` stays
true once a lease failed, also after it is settled (``failed -> settled``), so the work it did
not deliver is known to be undone and goes back into the next clearing. Providers' agents
send heartbeats (``agent_heartbeats``: the last one per provider), so the clearing loop fails
the leases of a provider whose agent fell silent.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "leases",
        sa.Column("failed", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    # Leases failed before this revision and not yet settled.
    op.execute("UPDATE leases SET failed = true WHERE state = 'failed'")
    op.create_table(
        "agent_heartbeats",
        sa.Column("provider_id", sa.String(length=128), nullable=False),
        sa.Column("instance", sa.String(length=128), nullable=False),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["members.id"], name=op.f("fk_agent_heartbeats_provider_id_members")
        ),
        sa.PrimaryKeyConstraint("provider_id", name=op.f("pk_agent_heartbeats")),
    )


def downgrade() -> None:
    op.drop_table("agent_heartbeats")
    op.drop_column("leases", "failed")
