"""Channel health, written only on transitions (for `ideohub channels list`).

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("channels") as b:
        b.add_column(sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("cooling_until", TS, nullable=True))
        b.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        b.add_column(sa.Column("last_ok_at", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channels") as b:
        b.drop_column("last_ok_at")
        b.drop_column("last_error")
        b.drop_column("cooling_until")
        b.drop_column("consecutive_failures")
