"""Data objects: members' files held by the exchange, sealed in a blob store; orders'
workloads; download grants of leases' inputs and the record of grants, downloads and
outputs; the agents' reports of how a lease's work ended; orders' latest checkpoints;
payloads' logs.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
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
    op.create_table(
        "data_grants",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("lease_id", sa.String(length=400), nullable=False),
        sa.Column("object_id", sa.String(length=128), nullable=False),
        sa.Column("provider_id", sa.String(length=128), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("expires_at > issued_at", name=op.f("ck_data_grants_expiry")),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_data_grants_lease_id_leases")
        ),
        sa.ForeignKeyConstraint(
            ["object_id"], ["data_objects.id"], name=op.f("fk_data_grants_object_id_data_objects")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["members.id"], name=op.f("fk_data_grants_provider_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_grants")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_data_grants_token_hash")),
    )
    op.create_index("ix_data_grants_lease", "data_grants", ["lease_id"])
    op.create_table(
        "data_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.String(length=128), nullable=False),
        sa.Column("owner_id", sa.String(length=128), nullable=False),
        sa.Column("member_id", sa.String(length=128), nullable=False),
        sa.Column("lease_id", sa.String(length=400), nullable=True),
        sa.Column("grant_id", sa.String(length=128), nullable=True),
        sa.CheckConstraint(
            "kind IN ('grant', 'download', 'output', 'checkpoint')",
            name=op.f("ck_data_events_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["object_id"], ["data_objects.id"], name=op.f("fk_data_events_object_id_data_objects")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["members.id"], name=op.f("fk_data_events_owner_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_data_events_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_data_events_lease_id_leases")
        ),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["data_grants.id"], name=op.f("fk_data_events_grant_id_data_grants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_events")),
    )
    op.create_index("ix_data_events_owner", "data_events", ["owner_id", "id"])
    op.create_index("ix_data_events_lease", "data_events", ["lease_id"])
    op.create_table(
        "lease_reports",
        sa.Column("lease_id", sa.String(length=400), nullable=False),
        sa.Column("provider_id", sa.String(length=128), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("reported_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("outcome IN ('done', 'failed')", name=op.f("ck_lease_reports_outcome")),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_lease_reports_lease_id_leases")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["members.id"], name=op.f("fk_lease_reports_provider_id_members")
        ),
        sa.PrimaryKeyConstraint("lease_id", name=op.f("pk_lease_reports")),
    )
    op.create_table(
        "order_checkpoints",
        sa.Column("order_id", sa.String(length=128), nullable=False),
        sa.Column("object_id", sa.String(length=128), nullable=False),
        sa.Column("lease_id", sa.String(length=400), nullable=False),
        sa.Column("provider_id", sa.String(length=128), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_checkpoints_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["data_objects.id"],
            name=op.f("fk_order_checkpoints_object_id_data_objects"),
        ),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_order_checkpoints_lease_id_leases")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["members.id"], name=op.f("fk_order_checkpoints_provider_id_members")
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_order_checkpoints")),
    )
    op.create_table(
        "lease_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lease_id", sa.String(length=400), nullable=False),
        sa.Column("order_id", sa.String(length=128), nullable=False),
        sa.Column("start_byte", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("start_byte >= 0 AND size >= 1", name=op.f("ck_lease_logs_chunk")),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_lease_logs_lease_id_leases")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_lease_logs_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lease_logs")),
        sa.UniqueConstraint("lease_id", "start_byte", name="uq_lease_logs_lease_start"),
    )
    op.create_index("ix_lease_logs_order", "lease_logs", ["order_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_lease_logs_order", table_name="lease_logs")
    op.drop_table("lease_logs")
    op.drop_table("order_checkpoints")
    op.drop_table("lease_reports")
    op.drop_index("ix_data_events_lease", table_name="data_events")
    op.drop_index("ix_data_events_owner", table_name="data_events")
    op.drop_table("data_events")
    op.drop_index("ix_data_grants_lease", table_name="data_grants")
    op.drop_table("data_grants")
    op.drop_table("order_workloads")
    op.drop_index("ix_data_objects_owner_created", table_name="data_objects")
    op.drop_table("data_objects")
