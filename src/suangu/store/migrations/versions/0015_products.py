"""Market products: the interruptible tier. ``orders.interruptible`` marks an order of the
interruptible tier (cleared after firm demand, preemptible by it with notice);
``leases.preempted_gpus`` counts the GPUs of a lease that firm demand preempted.

Revision ID: 0015
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("interruptible", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "leases",
        sa.Column("preempted_gpus", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    op.drop_column("leases", "preempted_gpus")
    op.drop_column("orders", "interruptible")
