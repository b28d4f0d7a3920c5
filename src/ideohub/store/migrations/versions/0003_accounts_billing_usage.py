"""Accounts, prepaid balances, the ledger, reservations, per-key limits and usage.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
DEFAULT_ACCOUNT = "acct_default"


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("group_name", sa.String(64), nullable=False, server_default="default"),
        sa.Column("balance_micros", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("unlimited", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", TS, nullable=False),
    )
    op.execute(
        sa.text("INSERT INTO accounts (id, name, group_name, balance_micros, unlimited, created_at) "
                "VALUES (:id, 'default (unlimited)', 'default', 0, :t, CURRENT_TIMESTAMP)")
        .bindparams(id=DEFAULT_ACCOUNT, t=True)
    )
    with op.batch_alter_table("api_keys") as b:
        b.add_column(sa.Column("account_id", sa.String(40), nullable=True))
        b.add_column(sa.Column("expires_at", TS, nullable=True))
        b.add_column(sa.Column("allowed_operations", sa.JSON(), nullable=True))
        b.add_column(sa.Column("rpm", sa.Integer(), nullable=True))
        b.add_column(sa.Column("max_images_in_flight", sa.Integer(), nullable=True))
        b.add_column(sa.Column("spend_cap_micros", sa.BigInteger(), nullable=True))
        b.add_column(sa.Column("committed_micros", sa.BigInteger(), nullable=False, server_default="0"))
        b.create_foreign_key("fk_api_keys_account", "accounts", ["account_id"], ["id"])
        b.create_index("ix_api_keys_account_id", ["account_id"])
    op.execute(sa.text("UPDATE api_keys SET account_id = :id").bindparams(id=DEFAULT_ACCOUNT))
    with op.batch_alter_table("requests") as b:
        b.add_column(sa.Column("account_id", sa.String(40), nullable=True))
        b.add_column(sa.Column("tier", sa.String(32), nullable=True))
        b.add_column(sa.Column("price_micros", sa.BigInteger(), nullable=False, server_default="0"))
        b.add_column(sa.Column("latency_ms", sa.Float(), nullable=True))
        b.add_column(sa.Column("channel", sa.String(64), nullable=True))
        b.create_index("ix_requests_account_id", ["account_id"])
    with op.batch_alter_table("channels") as b:
        b.add_column(sa.Column("cost_multiplier", sa.Float(), nullable=False, server_default="1.0"))
    op.create_table(
        "reservations",
        sa.Column("request_id", sa.String(40), primary_key=True),
        sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("key_id", sa.String(32), sa.ForeignKey("api_keys.id"), nullable=True),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),  # held → settled | refunded | released
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_index("ix_reservations_state_expires", "reservations", ["state", "expires_at"])
    op.create_table(
        "ledger",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("request_id", sa.String(40), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),  # topup | reserve | settle | refund | release
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),  # signed: what the balance moved by
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.String(200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_ledger_account_id", "ledger", ["account_id"])
    op.create_index("ix_ledger_request_id", "ledger", ["request_id"])
    op.create_table(
        "upstream_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_upstream_attempts_request_id", "upstream_attempts", ["request_id"])
    op.create_index("ix_upstream_attempts_created_at", "upstream_attempts", ["created_at"])


def downgrade() -> None:
    op.drop_table("upstream_attempts")
    op.drop_table("ledger")
    op.drop_table("reservations")
    with op.batch_alter_table("channels") as b:
        b.drop_column("cost_multiplier")
    with op.batch_alter_table("requests") as b:
        b.drop_index("ix_requests_account_id")
        for c in ("channel", "latency_ms", "price_micros", "tier", "account_id"):
            b.drop_column(c)
    with op.batch_alter_table("api_keys") as b:
        b.drop_index("ix_api_keys_account_id")
        b.drop_constraint("fk_api_keys_account", type_="foreignkey")
        for c in ("committed_micros", "spend_cap_micros", "max_images_in_flight", "rpm", "allowed_operations",
                  "expires_at", "account_id"):
            b.drop_column(c)
    op.drop_table("accounts")
