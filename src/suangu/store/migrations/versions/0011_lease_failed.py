"""Leases remember that they failed: ``leases.failed`` stays true once a lease failed, also
after it is settled (``failed -> settled``), so the work it did not deliver is known to be
undone and goes back into the next clearing.

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


def downgrade() -> None:
    op.drop_column("leases", "failed")
