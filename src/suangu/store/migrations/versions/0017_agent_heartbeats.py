"""Heartbeats per agent: a provider may run several agents (one per cluster or site), each
sending its own heartbeats under a name it keeps across restarts (``agent``) and naming the
pools it serves (``pools``, a JSON list; NULL: all of the provider's). A silent agent fails
only the leases of the pools no live agent of its provider serves. Rows from before this
revision become the provider's agent ``default`` serving all its pools.

Revision ID: 0017
Revises: 0015
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _sqlite_table(name: str, per_agent: bool) -> None:
    """SQLite cannot change a primary key: the table is made anew (constraint names are per
    table there), filled from the old one, and takes its name."""
    cols: list[sa.Column[Any]] = [sa.Column("provider_id", sa.String(length=128), nullable=False)]
    if per_agent:
        cols += [
            sa.Column("agent", sa.String(length=128), nullable=False, server_default="default"),
            sa.Column("pools", sa.Text(), nullable=True),
        ]
    cols += [
        sa.Column("instance", sa.String(length=128), nullable=False),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
    ]
    op.create_table(
        name,
        *cols,
        sa.ForeignKeyConstraint(
            ["provider_id"], ["members.id"], name="fk_agent_heartbeats_provider_id_members"
        ),
        sa.PrimaryKeyConstraint(
            "provider_id", *(["agent"] if per_agent else []), name="pk_agent_heartbeats"
        ),
    )
    keep = "provider_id, instance, first_seen, last_seen"
    op.execute(f"INSERT INTO {name} ({keep}) SELECT {keep} FROM agent_heartbeats")
    op.drop_table("agent_heartbeats")
    op.rename_table(name, "agent_heartbeats")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_table("agent_heartbeats_0017", per_agent=True)
        return
    op.add_column(
        "agent_heartbeats",
        sa.Column("agent", sa.String(length=128), nullable=False, server_default="default"),
    )
    op.add_column("agent_heartbeats", sa.Column("pools", sa.Text(), nullable=True))
    op.drop_constraint("pk_agent_heartbeats", "agent_heartbeats", type_="primary")
    op.create_primary_key("pk_agent_heartbeats", "agent_heartbeats", ["provider_id", "agent"])


def downgrade() -> None:
    op.execute("DELETE FROM agent_heartbeats WHERE agent <> 'default'")
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_table("agent_heartbeats_0011", per_agent=False)
        return
    op.drop_constraint("pk_agent_heartbeats", "agent_heartbeats", type_="primary")
    op.drop_column("agent_heartbeats", "pools")
    op.drop_column("agent_heartbeats", "agent")
    op.create_primary_key("pk_agent_heartbeats", "agent_heartbeats", ["provider_id"])
