"""Alembic environment: the URL comes from ``store.db.upgrade``; metadata from ``store.models``."""

from alembic import context
from sqlalchemy import create_engine, pool

from ideohub.store.db import configure_sqlite
from ideohub.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    configure_sqlite(engine)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
