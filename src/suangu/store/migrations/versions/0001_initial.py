"""Initial schema: every table of the exchange.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clearings",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("run_at", sa.BigInteger(), nullable=False),
        sa.Column("first_slot", sa.BigInteger(), nullable=False),
        sa.Column("n_slots", sa.BigInteger(), nullable=False),
        sa.Column("slot_hours", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("method", sa.String(length=64), nullable=False),
        sa.Column("welfare_fen", sa.BigInteger(), nullable=False),
        sa.Column("gap", sa.Float(), nullable=False),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("rejected_gangs", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "status IN ('optimal', 'feasible', 'empty', 'failed')", name=op.f("ck_clearings_status")
        ),
        sa.CheckConstraint("gap >= 0", name=op.f("ck_clearings_gap")),
        sa.CheckConstraint("n_slots >= 1", name=op.f("ck_clearings_n_slots")),
        sa.CheckConstraint("slot_hours >= 1", name=op.f("ck_clearings_slot_hours")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clearings")),
    )
    with op.batch_alter_table("clearings", schema=None) as batch_op:
        batch_op.create_index("ix_clearings_run_at", ["run_at"], unique=False)

    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("ledger", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column("debits_pending", sa.BigInteger(), nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), nullable=False),
        sa.Column("credits_pending", sa.BigInteger(), nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('buyer', 'provider', 'exchange_fees', 'exchange_clearing', 'external')",
            name=op.f("ck_ledger_accounts_kind"),
        ),
        sa.CheckConstraint(
            "ledger IN ('CNY', 'kWh-green', 'gCO2')", name=op.f("ck_ledger_accounts_ledger")
        ),
        sa.CheckConstraint(
            "(flags & 2) = 0 OR debits_pending <= credits_posted - debits_posted",
            name=op.f("ck_ledger_accounts_debits_within_credits"),
        ),
        sa.CheckConstraint(
            "(flags & 4) = 0 OR credits_pending <= debits_posted - credits_posted",
            name=op.f("ck_ledger_accounts_credits_within_debits"),
        ),
        sa.CheckConstraint("credits_pending >= 0", name=op.f("ck_ledger_accounts_credits_pending")),
        sa.CheckConstraint("credits_posted >= 0", name=op.f("ck_ledger_accounts_credits_posted")),
        sa.CheckConstraint("debits_pending >= 0", name=op.f("ck_ledger_accounts_debits_pending")),
        sa.CheckConstraint("debits_posted >= 0", name=op.f("ck_ledger_accounts_debits_posted")),
        sa.CheckConstraint("flags >= 0 AND flags <= 7", name=op.f("ck_ledger_accounts_flags")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
    )
    with op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_accounts_ledger", ["ledger"], unique=False)
        batch_op.create_index("ix_ledger_accounts_owner", ["owner"], unique=False)

    op.create_table(
        "ledger_clock",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("now", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_ledger_clock_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_clock")),
    )
    op.create_table(
        "members",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "role IN ('operator', 'provider', 'buyer', 'auditor')", name=op.f("ck_members_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "role IN ('operator', 'provider', 'buyer', 'auditor')", name=op.f("ck_api_keys_role")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_api_keys_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_member_id"), ["member_id"], unique=False)

    op.create_table(
        "ledger_transfers",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("debit_account_id", sa.String(length=255), nullable=False),
        sa.Column("credit_account_id", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("ledger", sa.String(length=16), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column("pending_id", sa.String(length=255), nullable=True),
        sa.Column("timeout_s", sa.BigInteger(), nullable=False),
        sa.Column("user_data", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("pending_status", sa.String(length=16), nullable=True),
        sa.CheckConstraint(
            "code IN ('deposit', 'withdrawal', 'order_hold', 'lease_payment', 'hold_release', "
            "'provider_payout', 'exchange_fee', 'refund', 'green_certificate_issue', "
            "'green_certificate_retire', 'carbon_record', 'adjustment')",
            name=op.f("ck_ledger_transfers_code"),
        ),
        sa.CheckConstraint(
            "ledger IN ('CNY', 'kWh-green', 'gCO2')", name=op.f("ck_ledger_transfers_ledger")
        ),
        sa.CheckConstraint(
            "pending_status IN ('pending', 'posted', 'voided', 'expired')",
            name=op.f("ck_ledger_transfers_pending_status"),
        ),
        sa.CheckConstraint(
            "((flags & 2) = 2) = (pending_status IS NOT NULL)",
            name=op.f("ck_ledger_transfers_pending_status_iff_pending"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_transfers_amount")),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id",
            name=op.f("ck_ledger_transfers_accounts_differ"),
        ),
        sa.CheckConstraint("flags >= 0 AND flags <= 15", name=op.f("ck_ledger_transfers_flags")),
        sa.CheckConstraint("timeout_s >= 0", name=op.f("ck_ledger_transfers_timeout_s")),
        sa.ForeignKeyConstraint(
            ["credit_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_transfers_credit_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["debit_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_transfers_debit_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["pending_id"],
            ["ledger_transfers.id"],
            name=op.f("fk_ledger_transfers_pending_id_ledger_transfers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transfers")),
        sa.UniqueConstraint("pending_id", name=op.f("uq_ledger_transfers_pending_id")),
    )
    with op.batch_alter_table("ledger_transfers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_transfers_credit", ["credit_account_id", "timestamp"], unique=False
        )
        batch_op.create_index(
            "ix_ledger_transfers_debit", ["debit_account_id", "timestamp"], unique=False
        )
        batch_op.create_index(
            "ix_ledger_transfers_due", ["pending_status", "expires_at"], unique=False
        )
        batch_op.create_index("ix_ledger_transfers_timestamp", ["timestamp"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("buyer_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("gpus", sa.BigInteger(), nullable=False),
        sa.Column("release_slot", sa.BigInteger(), nullable=False),
        sa.Column("deadline_slot", sa.BigInteger(), nullable=False),
        sa.Column("limit_fen", sa.BigInteger(), nullable=False),
        sa.Column("gpu_hours", sa.BigInteger(), nullable=False),
        sa.Column("duration_slots", sa.BigInteger(), nullable=False),
        sa.Column("gpu_classes", sa.JSON(), nullable=False),
        sa.Column("regions", sa.JSON(), nullable=False),
        sa.Column("provinces", sa.JSON(), nullable=False),
        sa.Column("home", sa.String(length=128), nullable=True),
        sa.Column("max_latency_ms", sa.Float(), nullable=True),
        sa.Column("min_green_share", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("submitted_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("kind IN ('batch', 'gang', 'service')", name=op.f("ck_orders_kind")),
        sa.CheckConstraint(
            "status IN ('open', 'cleared', 'partially', 'cancelled', 'expired')",
            name=op.f("ck_orders_status"),
        ),
        sa.CheckConstraint("deadline_slot > release_slot", name=op.f("ck_orders_window")),
        sa.CheckConstraint("duration_slots >= 0", name=op.f("ck_orders_duration_slots")),
        sa.CheckConstraint("gpu_hours >= 0", name=op.f("ck_orders_gpu_hours")),
        sa.CheckConstraint("gpus >= 1", name=op.f("ck_orders_gpus")),
        sa.CheckConstraint("limit_fen >= 1", name=op.f("ck_orders_limit_fen")),
        sa.CheckConstraint(
            "min_green_share >= 0 AND min_green_share <= 1", name=op.f("ck_orders_min_green_share")
        ),
        sa.CheckConstraint("release_slot >= 0", name=op.f("ck_orders_release_slot")),
        sa.ForeignKeyConstraint(
            ["buyer_id"], ["members.id"], name=op.f("fk_orders_buyer_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_orders_buyer_submitted", ["buyer_id", "submitted_at", "id"], unique=False
        )
        batch_op.create_index("ix_orders_status", ["status"], unique=False)

    op.create_table(
        "sites",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("province", sa.String(length=128), nullable=False),
        sa.Column("region", sa.String(length=128), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("pue", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.JSON(), nullable=False),
        sa.Column("provider_id", sa.String(length=128), nullable=True),
        sa.CheckConstraint("lat >= -90 AND lat <= 90", name=op.f("ck_sites_lat")),
        sa.CheckConstraint("lon >= -180 AND lon <= 180", name=op.f("ck_sites_lon")),
        sa.CheckConstraint("pue >= 1.0 AND pue <= 3.0", name=op.f("ck_sites_pue")),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["members.id"], name=op.f("fk_sites_provider_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sites")),
    )
    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sites_provider_id"), ["provider_id"], unique=False)

    op.create_table(
        "pools",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("site_id", sa.String(length=128), nullable=False),
        sa.Column("gpu_class", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_pools_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pools")),
    )
    with op.batch_alter_table("pools", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pools_site_id"), ["site_id"], unique=False)

    op.create_table(
        "leases",
        sa.Column("id", sa.String(length=400), nullable=False),
        sa.Column("clearing_id", sa.String(length=128), nullable=False),
        sa.Column("order_id", sa.String(length=128), nullable=False),
        sa.Column("buyer_id", sa.String(length=128), nullable=False),
        sa.Column("pool_id", sa.String(length=128), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("gpus", sa.BigInteger(), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("provider_id", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("hold_transfer_id", sa.String(length=255), nullable=True),
        sa.CheckConstraint(
            "state IN ('scheduled', 'running', 'completed', 'failed', 'settled')",
            name=op.f("ck_leases_state"),
        ),
        sa.CheckConstraint("gpus >= 1", name=op.f("ck_leases_gpus")),
        sa.CheckConstraint("price_fen >= 0", name=op.f("ck_leases_price_fen")),
        sa.ForeignKeyConstraint(
            ["buyer_id"], ["members.id"], name=op.f("fk_leases_buyer_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["clearing_id"], ["clearings.id"], name=op.f("fk_leases_clearing_id_clearings")
        ),
        sa.ForeignKeyConstraint(
            ["hold_transfer_id"],
            ["ledger_transfers.id"],
            name=op.f("fk_leases_hold_transfer_id_ledger_transfers"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_leases_order_id_orders")
        ),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name=op.f("fk_leases_pool_id_pools")),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["members.id"], name=op.f("fk_leases_provider_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leases")),
        sa.UniqueConstraint("clearing_id", "order_id", "pool_id", "slot", name="uq_leases_alloc"),
    )
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.create_index("ix_leases_buyer", ["buyer_id"], unique=False)
        batch_op.create_index("ix_leases_order", ["order_id"], unique=False)
        batch_op.create_index("ix_leases_provider", ["provider_id"], unique=False)

    op.create_table(
        "offers",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("provider_id", sa.String(length=128), nullable=False),
        sa.Column("pool_id", sa.String(length=128), nullable=False),
        sa.Column("start_slot", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("status IN ('open', 'withdrawn')", name=op.f("ck_offers_status")),
        sa.CheckConstraint("start_slot >= 0", name=op.f("ck_offers_start_slot")),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name=op.f("fk_offers_pool_id_pools")),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["members.id"], name=op.f("fk_offers_provider_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offers")),
    )
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_offers_pool_id"), ["pool_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_offers_provider_id"), ["provider_id"], unique=False)

    op.create_table(
        "prices",
        sa.Column("clearing_id", sa.String(length=128), nullable=False),
        sa.Column("pool_id", sa.String(length=128), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("cleared_gpus", sa.BigInteger(), nullable=False),
        sa.Column("offered_gpus", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("cleared_gpus >= 0", name=op.f("ck_prices_cleared_gpus")),
        sa.CheckConstraint("offered_gpus >= 0", name=op.f("ck_prices_offered_gpus")),
        sa.CheckConstraint("price_fen >= 0", name=op.f("ck_prices_price_fen")),
        sa.ForeignKeyConstraint(
            ["clearing_id"],
            ["clearings.id"],
            name=op.f("fk_prices_clearing_id_clearings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name=op.f("fk_prices_pool_id_pools")),
        sa.PrimaryKeyConstraint("clearing_id", "pool_id", "slot", name=op.f("pk_prices")),
    )
    with op.batch_alter_table("prices", schema=None) as batch_op:
        batch_op.create_index("ix_prices_pool_slot", ["pool_id", "slot"], unique=False)

    op.create_table(
        "meter_readings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("lease_id", sa.String(length=400), nullable=False),
        sa.Column("interval_start", sa.BigInteger(), nullable=False),
        sa.Column("interval_end", sa.BigInteger(), nullable=False),
        sa.Column("gpu_seconds", sa.BigInteger(), nullable=False),
        sa.Column("energy_wh", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("energy_wh >= 0", name=op.f("ck_meter_readings_energy_wh")),
        sa.CheckConstraint("gpu_seconds >= 0", name=op.f("ck_meter_readings_gpu_seconds")),
        sa.CheckConstraint(
            "interval_end > interval_start", name=op.f("ck_meter_readings_interval")
        ),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_meter_readings_lease_id_leases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meter_readings")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_meter_readings_idempotency_key")),
    )
    with op.batch_alter_table("meter_readings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_meter_readings_lease", ["lease_id", "interval_start"], unique=False
        )

    op.create_table(
        "offer_fills",
        sa.Column("clearing_id", sa.String(length=128), nullable=False),
        sa.Column("offer_id", sa.String(length=128), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("provider_id", sa.String(length=128), nullable=False),
        sa.Column("pool_id", sa.String(length=128), nullable=False),
        sa.Column("gpus", sa.BigInteger(), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("reserve_fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("gpus >= 0", name=op.f("ck_offer_fills_gpus")),
        sa.CheckConstraint("price_fen >= 0", name=op.f("ck_offer_fills_price_fen")),
        sa.CheckConstraint("reserve_fen >= 0", name=op.f("ck_offer_fills_reserve_fen")),
        sa.ForeignKeyConstraint(
            ["clearing_id"],
            ["clearings.id"],
            name=op.f("fk_offer_fills_clearing_id_clearings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["offer_id"], ["offers.id"], name=op.f("fk_offer_fills_offer_id_offers")
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_offer_fills_pool_id_pools")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["members.id"], name=op.f("fk_offer_fills_provider_id_members")
        ),
        sa.PrimaryKeyConstraint("clearing_id", "offer_id", "slot", name=op.f("pk_offer_fills")),
    )
    with op.batch_alter_table("offer_fills", schema=None) as batch_op:
        batch_op.create_index("ix_offer_fills_provider", ["provider_id"], unique=False)

    op.create_table(
        "offer_slots",
        sa.Column("offer_id", sa.String(length=128), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("gpus", sa.BigInteger(), nullable=False),
        sa.Column("reserve_fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("gpus >= 0", name=op.f("ck_offer_slots_gpus")),
        sa.CheckConstraint("reserve_fen >= 0", name=op.f("ck_offer_slots_reserve_fen")),
        sa.ForeignKeyConstraint(
            ["offer_id"],
            ["offers.id"],
            name=op.f("fk_offer_slots_offer_id_offers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("offer_id", "slot", name=op.f("pk_offer_slots")),
    )


def downgrade() -> None:
    op.drop_table("offer_slots")
    with op.batch_alter_table("offer_fills", schema=None) as batch_op:
        batch_op.drop_index("ix_offer_fills_provider")

    op.drop_table("offer_fills")
    with op.batch_alter_table("meter_readings", schema=None) as batch_op:
        batch_op.drop_index("ix_meter_readings_lease")

    op.drop_table("meter_readings")
    with op.batch_alter_table("prices", schema=None) as batch_op:
        batch_op.drop_index("ix_prices_pool_slot")

    op.drop_table("prices")
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_offers_provider_id"))
        batch_op.drop_index(batch_op.f("ix_offers_pool_id"))

    op.drop_table("offers")
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.drop_index("ix_leases_provider")
        batch_op.drop_index("ix_leases_order")
        batch_op.drop_index("ix_leases_buyer")

    op.drop_table("leases")
    with op.batch_alter_table("pools", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pools_site_id"))

    op.drop_table("pools")
    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sites_provider_id"))

    op.drop_table("sites")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_status")
        batch_op.drop_index("ix_orders_buyer_submitted")

    op.drop_table("orders")
    with op.batch_alter_table("ledger_transfers", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_transfers_timestamp")
        batch_op.drop_index("ix_ledger_transfers_due")
        batch_op.drop_index("ix_ledger_transfers_debit")
        batch_op.drop_index("ix_ledger_transfers_credit")

    op.drop_table("ledger_transfers")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_member_id"))

    op.drop_table("api_keys")
    op.drop_table("members")
    op.drop_table("ledger_clock")
    with op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_accounts_owner")
        batch_op.drop_index("ix_ledger_accounts_ledger")

    op.drop_table("ledger_accounts")
    with op.batch_alter_table("clearings", schema=None) as batch_op:
        batch_op.drop_index("ix_clearings_run_at")

    op.drop_table("clearings")
