"""Market products: the interruptible tier and resale. ``orders.interruptible`` marks an
order of the interruptible tier (cleared after firm demand, preemptible by it with notice);
``leases.preempted_gpus`` counts the GPUs of a lease that firm demand preempted. ``resales``
holds buyers' offers to sell back leases they hold, ``resale_sales`` what a clearing sold of
them and to which new lease, ``leases.resold_gpus`` the GPUs of a lease that were resold.

Revision ID: 0015
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0013"
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
    op.add_column(
        "leases",
        sa.Column("resold_gpus", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )
    op.create_table(
        "resales",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("seller_id", sa.String(length=128), nullable=False),
        sa.Column("lease_id", sa.String(length=400), nullable=False),
        sa.Column("reserve_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'sold', 'withdrawn')", name=op.f("ck_resales_status")
        ),
        sa.CheckConstraint("reserve_fen >= 0", name=op.f("ck_resales_reserve_fen")),
        sa.ForeignKeyConstraint(
            ["seller_id"], ["members.id"], name=op.f("fk_resales_seller_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_resales_lease_id_leases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resales")),
        sa.UniqueConstraint("lease_id", name="uq_resales_lease"),
    )
    op.create_index("ix_resales_seller", "resales", ["seller_id"])
    op.create_index("ix_resales_status", "resales", ["status"])
    op.create_table(
        "resale_sales",
        sa.Column("resale_id", sa.String(length=128), nullable=False),
        sa.Column("lease_id", sa.String(length=400), nullable=False),
        sa.Column("gpus", sa.BigInteger(), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("gpus >= 1", name=op.f("ck_resale_sales_gpus")),
        sa.ForeignKeyConstraint(
            ["resale_id"], ["resales.id"], name=op.f("fk_resale_sales_resale_id_resales")
        ),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_resale_sales_lease_id_leases")
        ),
        sa.PrimaryKeyConstraint("resale_id", "lease_id", name=op.f("pk_resale_sales")),
    )
    op.create_index("ix_resale_sales_lease", "resale_sales", ["lease_id"])


def downgrade() -> None:
    op.drop_index("ix_resale_sales_lease", table_name="resale_sales")
    op.drop_table("resale_sales")
    op.drop_index("ix_resales_status", table_name="resales")
    op.drop_index("ix_resales_seller", table_name="resales")
    op.drop_table("resales")
    op.drop_column("leases", "resold_gpus")
    op.drop_column("leases", "preempted_gpus")
    op.drop_column("orders", "interruptible")
