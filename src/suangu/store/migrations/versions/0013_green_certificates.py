"""Green certificates and carbon statements in the service, and providers' energy
declarations. ``lease_energy`` keeps the energy and carbon record of every settled lease (what
its certificate and carbon transfers booked on the ``kWh-green`` and ``gCO2`` ledgers, with
the measured and nominal Wh); ``site_energy`` keeps a provider's declaration of a site's
energy (capacities and PUE, or an hourly green-share series).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    big = sa.BigInteger()
    ident = sa.String(length=128)
    op.create_table(
        "lease_energy",
        sa.Column("lease_id", sa.String(length=400), nullable=False),
        sa.Column("order_id", ident, nullable=False),
        sa.Column("buyer_id", ident, nullable=False),
        sa.Column("provider_id", ident, nullable=False),
        sa.Column("pool_id", ident, nullable=False),
        sa.Column("site_id", ident, nullable=False),
        sa.Column("gpu_class", sa.String(length=32), nullable=False),
        sa.Column("slot", big, nullable=False),
        sa.Column("start_unix", big, nullable=False),
        sa.Column("gpu_seconds", big, nullable=False),
        sa.Column("energy_wh", big, nullable=False),
        sa.Column("measured_wh", big, nullable=False),
        sa.Column("green_wh", big, nullable=False),
        sa.Column("grid_wh", big, nullable=False),
        sa.Column("certificates_wh", big, nullable=False),
        sa.Column("location_g", big, nullable=False),
        sa.Column("market_g", big, nullable=False),
        sa.Column("factor_region", sa.String(length=200), nullable=False),
        sa.Column("factor_level", sa.String(length=32), nullable=False),
        sa.Column("factor_year", big, nullable=False),
        sa.Column("factor_t_per_mwh", sa.Float(), nullable=False),
        sa.Column("factor_source", sa.Text(), nullable=False),
        sa.Column("residual_t_per_mwh", sa.Float(), nullable=False),
        sa.Column("green_basis", sa.String(length=16), nullable=False),
        sa.Column("recorded_at", big, nullable=False),
        sa.CheckConstraint("energy_wh = green_wh + grid_wh", name=op.f("ck_lease_energy_energy")),
        sa.CheckConstraint(
            "measured_wh >= 0 AND measured_wh <= energy_wh", name=op.f("ck_lease_energy_measured")
        ),
        sa.CheckConstraint(
            "certificates_wh >= 0 AND certificates_wh <= green_wh",
            name=op.f("ck_lease_energy_certificates"),
        ),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_lease_energy_lease_id_leases")
        ),
        sa.PrimaryKeyConstraint("lease_id", name=op.f("pk_lease_energy")),
    )
    op.create_index("ix_lease_energy_buyer", "lease_energy", ["buyer_id", "start_unix"])
    op.create_index("ix_lease_energy_provider", "lease_energy", ["provider_id", "start_unix"])
    op.create_index("ix_lease_energy_site", "lease_energy", ["site_id", "slot"])
    op.create_table(
        "site_energy",
        sa.Column("site_id", ident, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("declared_by", ident, nullable=False),
        sa.Column("declared_at", big, nullable=False),
        sa.CheckConstraint("kind IN ('capacities', 'series')", name=op.f("ck_site_energy_kind")),
        sa.ForeignKeyConstraint(
            ["declared_by"], ["members.id"], name=op.f("fk_site_energy_declared_by_members")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_site_energy_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_site_energy")),
    )


def downgrade() -> None:
    op.drop_table("site_energy")
    op.drop_index("ix_lease_energy_site", table_name="lease_energy")
    op.drop_index("ix_lease_energy_provider", table_name="lease_energy")
    op.drop_index("ix_lease_energy_buyer", table_name="lease_energy")
    op.drop_table("lease_energy")
