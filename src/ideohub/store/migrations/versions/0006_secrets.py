"""Secrets in the database: the API-key pepper, the channel key and the URL-signing and webhook key
rings, one row each, sealed under the master secret (store.secrets); the ``verifier`` row holds the
key-derivation salt and tells a process with another master secret apart. Until now they lived in
``<data_dir>/secrets.json``, which the first start after this migration imports.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("secrets")
