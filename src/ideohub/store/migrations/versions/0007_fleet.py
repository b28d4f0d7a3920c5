"""The fleet (issue 9): when a generation was last enqueued and how many runs it has had, and an
index for the per-account pending bound.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as b:
        b.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("runs", sa.Integer(), nullable=True))
        b.create_index("ix_requests_account_state", ["account_id", "state"])


def downgrade() -> None:
    with op.batch_alter_table("requests") as b:
        b.drop_index("ix_requests_account_state")
        b.drop_column("runs")
        b.drop_column("enqueued_at")
