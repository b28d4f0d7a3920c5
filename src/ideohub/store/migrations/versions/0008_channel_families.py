"""Channels and the 4.0 and /v2 families (issue 10): a relay channel keeps exactly the operations
it served before (the legacy and 3.0 ones: its NULL ``operations``, which meant "all", becomes that
explicit list, so it gets the new families only when an operator adds them), and the
``account_fields`` option (default false: fields that act on the operator's own upstream account
are not forwarded). ``ideogram`` channels keep NULL: they serve every Ideogram endpoint.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The legacy and 3.0 operations as they were when 4.0 and /v2 arrived, sorted as ChannelStore
# writes lists (frozen here: later operations must not change what this revision wrote).
LEGACY_V3_OPERATIONS = sorted([
    "generate", "remix", "edit", "reframe", "upscale", "describe",
    "v3-generate", "v3-remix", "v3-edit", "v3-inpaint", "v3-reframe", "v3-replace-background",
    "v3-generate-transparent",
])

channels = sa.table("channels", sa.column("name", sa.String), sa.column("kind", sa.String),
                    sa.column("operations", sa.JSON))
# "No list" as written so far: SQL NULL, or the JSON null that SQLAlchemy's JSON type stores for None.
_NO_LIST = sa.or_(channels.c.operations.is_(None), sa.cast(channels.c.operations, sa.Text) == "null")


def upgrade() -> None:
    with op.batch_alter_table("channels") as b:
        b.add_column(sa.Column("account_fields", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(channels.update()
               .where(channels.c.kind == "relay", _NO_LIST)
               .values(operations=LEGACY_V3_OPERATIONS))


def downgrade() -> None:
    # Rows written by upgrade() are indistinguishable from a relay channel declaring exactly these
    # operations; both mean the same to the code of revision 0007, so they go back to NULL.
    conn = op.get_bind()
    rows = conn.execute(sa.select(channels.c.name, channels.c.operations).where(channels.c.kind == "relay")).all()
    for name, operations in rows:
        if isinstance(operations, list) and sorted(operations) == LEGACY_V3_OPERATIONS:
            conn.execute(channels.update().where(channels.c.name == name).values(operations=sa.null()))
    with op.batch_alter_table("channels") as b:
        b.drop_column("account_fields")
