"""Requests recorded before accounts existed (0003 added ``requests.account_id`` but left it empty)
belong to the default account, as their keys were given to it then. With the column filled in, the
request log, the usage figures and a key holder's own requests find them like any other.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

DEFAULT_ACCOUNT = "acct_default"


def upgrade() -> None:
    op.execute(sa.text("UPDATE requests SET account_id = :id WHERE account_id IS NULL").bindparams(id=DEFAULT_ACCOUNT))


def downgrade() -> None:
    pass  # which rows were empty is not kept; the default account is where they belong either way
