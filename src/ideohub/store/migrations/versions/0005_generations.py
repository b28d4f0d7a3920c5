"""Generations: a generation id and delivery mode on every request record, the stored answer, a
failure reason, the owner's heartbeat (so a dead process's work is taken over), what an async
generation needs to run again after a restart; idempotency keys; the webhook/callback outbox.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("requests") as b:
        b.add_column(sa.Column("generation_id", sa.String(22), nullable=True))
        b.add_column(sa.Column("mode", sa.String(8), nullable=True))
        b.add_column(sa.Column("webhook_url", sa.Text(), nullable=True))
        b.add_column(sa.Column("callback_url", sa.Text(), nullable=True))
        b.add_column(sa.Column("result", sa.Text(), nullable=True))
        b.add_column(sa.Column("failure_reason", sa.String(40), nullable=True))
        b.add_column(sa.Column("resume", sa.JSON(), nullable=True))
        b.add_column(sa.Column("owner", sa.String(40), nullable=True))
        b.add_column(sa.Column("heartbeat_at", TS, nullable=True))
        b.add_column(sa.Column("started_at", TS, nullable=True))
        b.create_index("ix_requests_generation_id", ["generation_id"], unique=True)
    op.create_table(
        "idempotency_keys",
        sa.Column("account_id", sa.String(40), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False, index=True),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(40), nullable=False, index=True),
        sa.Column("generation_id", sa.String(22), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_due", "deliveries")
    op.drop_table("deliveries")
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("requests") as b:
        b.drop_index("ix_requests_generation_id")
        for name in ("started_at", "heartbeat_at", "owner", "resume", "failure_reason", "result", "callback_url",
                     "webhook_url", "mode", "generation_id"):
            b.drop_column(name)
