"""The network: links between regions, orders' input data and speeds, and what clearings
decided about data moved (per-order transfers and per-link congestion prices); the ledger's
``exchange_network`` account kind and ``data_transfer`` transfer code for their charges.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = ("buyer", "provider", "exchange_fees", "exchange_clearing", "external")
_CODES = (
    "deposit",
    "withdrawal",
    "order_hold",
    "lease_payment",
    "hold_release",
    "provider_payout",
    "exchange_fee",
    "refund",
    "green_certificate_issue",
    "green_certificate_retire",
    "carbon_record",
    "adjustment",
)


def _one_of(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _recheck(table: str, column: str, old: Sequence[str], new: Sequence[str]) -> None:
    """Replace the ``CHECK (column IN (old))`` of ``table`` by ``CHECK (column IN (new))``.

    SQLite cannot alter a constraint, and copying the table (Alembic's batch mode) fails while
    other rows refer to it with foreign keys on; so the table's SQL in the schema is edited
    in place, SQLite's documented procedure for changes that leave stored rows valid (every
    value stored is in ``old``, so it is in ``new`` when widening; narrowing is refused while
    a row uses a value left out)."""
    name = f"ck_{table}_{column}"
    bind = op.get_bind()
    gone = sorted(set(old) - set(new))
    if gone:
        used = bind.execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE {column} IN :gone").bindparams(
                sa.bindparam("gone", expanding=True)
            ),
            {"gone": gone},
        ).scalar_one()
        if used:
            raise RuntimeError(f"{used} rows of {table} use {column} values {gone}")
    if bind.dialect.name != "sqlite":
        op.drop_constraint(op.f(name), table, type_="check")
        op.create_check_constraint(op.f(name), table, _one_of(column, new))
        return
    sql = bind.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}
    ).scalar_one()
    before = _one_of(column, old)
    if sql.count(before) != 1:
        raise RuntimeError(f"the CHECK {name} of {table} is not {before}")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.execute(
        sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = :t"),
        {"sql": sql.replace(before, _one_of(column, new)), "t": table},
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    # Existing orders keep today's meaning: no data, no reference class, no speeds.
    op.add_column(
        "orders",
        sa.Column("data_gb", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("orders", sa.Column("reference_class", sa.String(length=32), nullable=True))
    op.add_column(
        "orders",
        sa.Column("speed", sa.JSON(), server_default=sa.text("'{}'"), nullable=False),
    )
    op.create_table(
        "links",
        sa.Column("from_region", sa.String(length=128), nullable=False),
        sa.Column("to_region", sa.String(length=128), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("bandwidth_gbps", sa.Float(), nullable=False),
        sa.Column("price_fen_per_gb", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("from_region <> to_region", name=op.f("ck_links_regions_differ")),
        sa.CheckConstraint("latency_ms >= 0", name=op.f("ck_links_latency_ms")),
        sa.CheckConstraint("bandwidth_gbps > 0", name=op.f("ck_links_bandwidth_gbps")),
        sa.CheckConstraint("price_fen_per_gb >= 0", name=op.f("ck_links_price_fen_per_gb")),
        sa.PrimaryKeyConstraint("from_region", "to_region", name=op.f("pk_links")),
    )
    op.create_table(
        "link_prices",
        sa.Column("clearing_id", sa.String(length=128), nullable=False),
        sa.Column("from_region", sa.String(length=128), nullable=False),
        sa.Column("to_region", sa.String(length=128), nullable=False),
        sa.Column("congestion_fen_per_gb", sa.BigInteger(), nullable=False),
        sa.Column("transfer_fen_per_gb", sa.BigInteger(), nullable=False),
        sa.Column("gb", sa.Float(), nullable=False),
        sa.Column("capacity_gb", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "congestion_fen_per_gb >= 0", name=op.f("ck_link_prices_congestion_fen_per_gb")
        ),
        sa.CheckConstraint(
            "transfer_fen_per_gb >= 0", name=op.f("ck_link_prices_transfer_fen_per_gb")
        ),
        sa.ForeignKeyConstraint(
            ["clearing_id"],
            ["clearings.id"],
            name=op.f("fk_link_prices_clearing_id_clearings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "clearing_id", "from_region", "to_region", name=op.f("pk_link_prices")
        ),
    )
    op.create_table(
        "data_transfers",
        sa.Column("clearing_id", sa.String(length=128), nullable=False),
        sa.Column("order_id", sa.String(length=128), nullable=False),
        sa.Column("from_region", sa.String(length=128), nullable=False),
        sa.Column("to_region", sa.String(length=128), nullable=False),
        sa.Column("buyer_id", sa.String(length=128), nullable=False),
        sa.Column("gb", sa.Float(), nullable=False),
        sa.Column("transfer_fen_per_gb", sa.BigInteger(), nullable=False),
        sa.Column("congestion_fen_per_gb", sa.BigInteger(), nullable=False),
        sa.Column("carrier_fen", sa.BigInteger(), nullable=False),
        sa.Column("congestion_fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("carrier_fen >= 0", name=op.f("ck_data_transfers_carrier_fen")),
        sa.CheckConstraint("congestion_fen >= 0", name=op.f("ck_data_transfers_congestion_fen")),
        sa.ForeignKeyConstraint(
            ["clearing_id"],
            ["clearings.id"],
            name=op.f("fk_data_transfers_clearing_id_clearings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_data_transfers_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["buyer_id"], ["members.id"], name=op.f("fk_data_transfers_buyer_id_members")
        ),
        sa.PrimaryKeyConstraint(
            "clearing_id", "order_id", "from_region", "to_region", name=op.f("pk_data_transfers")
        ),
    )
    op.create_index("ix_data_transfers_order", "data_transfers", ["order_id"], unique=False)
    _recheck("ledger_accounts", "kind", _KINDS, (*_KINDS, "exchange_network"))
    _recheck("ledger_transfers", "code", _CODES, (*_CODES, "data_transfer"))


def downgrade() -> None:
    _recheck("ledger_transfers", "code", (*_CODES, "data_transfer"), _CODES)
    _recheck("ledger_accounts", "kind", (*_KINDS, "exchange_network"), _KINDS)
    op.drop_index("ix_data_transfers_order", table_name="data_transfers")
    op.drop_table("data_transfers")
    op.drop_table("link_prices")
    op.drop_table("links")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("speed")
        batch.drop_column("reference_class")
        batch.drop_column("data_gb")
