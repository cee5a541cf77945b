"""The daily price index (``GET /market/index``) sums the offer fills of a span of slots:
``offer_fills`` gets an index on ``slot`` (the remaining-capacity query of every clearing
reads fills by slot range too). Orders may be complete or nothing
(``orders.complete_or_nothing``, false for every order stored before).

Revision ID: 0014
Revises: 0017
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_offer_fills_slot", "offer_fills", ["slot"])
    op.add_column(
        "orders",
        sa.Column("complete_or_nothing", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("complete_or_nothing")
    op.drop_index("ix_offer_fills_slot", table_name="offer_fills")
