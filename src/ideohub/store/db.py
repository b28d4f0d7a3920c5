"""Database connections: an async engine for the server, a sync URL for Alembic and the CLI.

SQLite (the embedded default) runs in WAL mode so readers never block the writer; PostgreSQL
is reached through psycopg 3 for both.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def _with_driver(url: str, sqlite_driver: str) -> str:
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        return u.set(drivername=sqlite_driver).render_as_string(hide_password=False)
    if backend == "postgresql":
        return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def sync_url(url: str) -> str:
    """For Alembic: sqlite3 or psycopg."""
    return _with_driver(url, "sqlite")


def async_url(url: str) -> str:
    """For the server: aiosqlite or psycopg's async mode."""
    return _with_driver(url, "sqlite+aiosqlite")


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def configure_sqlite(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)


def create_engine_async(url: str, *, pool_size: int | None = None, max_overflow: int | None = None) -> AsyncEngine:
    """``pool_size`` / ``max_overflow``: SQLAlchemy's queue pool (defaults 5 and 10), e.g. to give
    every concurrent task its own connection (bench/billing.py)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database:
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    pool = {k: v for k, v in (("pool_size", pool_size), ("max_overflow", max_overflow)) if v is not None}
    engine = create_async_engine(async_url(url), pool_pre_ping=u.get_backend_name() != "sqlite", **pool)
    configure_sqlite(engine.sync_engine)
    return engine


def sessionmaker_for(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def upgrade(url: str, revision: str = "head") -> None:
    """Run Alembic migrations up to ``revision`` (``ideohub db upgrade``; ``serve`` on SQLite)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database:
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    command.upgrade(cfg, revision)
