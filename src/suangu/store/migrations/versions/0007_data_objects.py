"""Data objects: members' files held by the exchange, sealed in a blob store; orders'
workloads.

Revision ID: 0007
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_objects",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("owner_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("blob", sa.String(length=64), nullable=False),
        sa.Column("wrapped_key", sa.String(length=128), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("lease_id", sa.String(length=400), nullable=True),
        sa.CheckConstraint("size >= 0", name=op.f("ck_data_objects_size")),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["members.id"], name=op.f("fk_data_objects_owner_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_data_objects_lease_id_leases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_objects")),
    )
    op.create_index(
        "ix_data_objects_owner_created", "data_objects", ["owner_id", "created_at", "id"]
    )
    op.create_table(
        "order_workloads",
        sa.Column("order_id", sa.String(length=128), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_workloads_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_order_workloads")),
    )


def downgrade() -> None:
    op.drop_table("order_workloads")
    op.drop_index("ix_data_objects_owner_created", table_name="data_objects")
    op.drop_table("data_objects")
