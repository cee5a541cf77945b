"""Meter readings say how they were measured (``nvml``, ``slurm`` or ``nominal``); readings
stored before this revision were not told apart and count as ``nominal``.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SOURCES = ("nvml", "slurm", "nominal")
_CHECK = f"source IN ({', '.join(repr(v) for v in _SOURCES)})"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # A column-level named CHECK: SQLite adds it without copying the table.
        op.execute(
            "ALTER TABLE meter_readings ADD COLUMN source VARCHAR(16) DEFAULT 'nominal' "
            f"NOT NULL CONSTRAINT ck_meter_readings_source CHECK ({_CHECK})"
        )
        return
    op.add_column(
        "meter_readings",
        sa.Column("source", sa.String(16), nullable=False, server_default="nominal"),
    )
    op.create_check_constraint(op.f("ck_meter_readings_source"), "meter_readings", _CHECK)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_meter_readings_source"), "meter_readings", type_="check")
    op.drop_column("meter_readings", "source")
