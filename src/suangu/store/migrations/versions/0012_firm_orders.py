"""Firm orders. ``orders.firm`` says that an order's deadline is firm: with firm-order
protection on (``suangu serve --protect-firm-hours``), the clearing holds capacity back for
firm orders that only one or two pools can serve (:mod:`suangu.core.lifecycle`). Orders
stored before this revision are flexible.

The operator's carbon price needs no table: it is the ``carbon_price_fen_per_t`` row of
``exchange_settings`` (fen per tonne of CO2, an integer like every amount of money).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("firm", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("orders", "firm")
