"""Planned allocations: what a clearing planned beyond its firmness horizon (commit late,
plan early), shown to buyers as their planned schedule and planned again by the next clearing.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "planned_allocations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("clearing_id", sa.String(128), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("buyer_id", sa.String(128), nullable=False),
        sa.Column("pool_id", sa.String(128), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("gpus", sa.BigInteger(), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("gpus >= 1", name=op.f("ck_planned_allocations_gpus")),
        sa.CheckConstraint("price_fen >= 0", name=op.f("ck_planned_allocations_price_fen")),
        sa.ForeignKeyConstraint(
            ["buyer_id"], ["members.id"], name=op.f("fk_planned_allocations_buyer_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["clearing_id"],
            ["clearings.id"],
            name=op.f("fk_planned_allocations_clearing_id_clearings"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_planned_allocations_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_planned_allocations_pool_id_pools")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_planned_allocations")),
        sa.UniqueConstraint("clearing_id", "order_id", "pool_id", "slot", name="uq_planned_alloc"),
    )
    op.create_index(
        "ix_planned_allocations_order",
        "planned_allocations",
        ["order_id", "clearing_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_planned_allocations_order", table_name="planned_allocations")
    op.drop_table("planned_allocations")
