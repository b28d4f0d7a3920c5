"""Upstream channels.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("base_url", sa.String(500), nullable=False),
        sa.Column("auth", sa.String(16), nullable=False),
        sa.Column("path_style", sa.String(16), nullable=False),
        sa.Column("key_ciphertext", sa.Text(), nullable=False),
        sa.Column("operations", sa.JSON(), nullable=True),
        sa.Column("models", sa.JSON(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("weight", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("max_in_flight", sa.Integer(), nullable=False, server_default="10"),
        sa.Column("connect_timeout_s", sa.Float(), nullable=False, server_default="10"),
        sa.Column("timeout_s", sa.Float(), nullable=False, server_default="180"),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("source", sa.String(16), nullable=False, server_default="cli"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("channels")
