"""Database connections: an async engine for the server, a sync URL for Alembic and the CLI,
and the migration state.

SQLite (the embedded default) runs in WAL mode so readers never block the writer; PostgreSQL
is reached through psycopg 3 for both.

``migration_state`` answers "is this database at our schema?" with one query and without
Alembic (whose import and script loading cost more than the CLI command itself), so every
command checks it and only a database that is behind runs Alembic. SQLite in the data
directory migrates itself; PostgreSQL is migrated only by ``ideohub db upgrade`` (``ready``).

A SQLite file is created mode 0600 before SQLite opens it: SQLite gives its ``-wal`` and
``-shm`` files the database file's mode, so all three stay private to the server's user.
"""

from __future__ import annotations

import ast
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from ..domain.untrusted import printable, redact

MIGRATIONS = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT_S = 5  # PostgreSQL: an unreachable host fails this fast instead of hanging the CLI


class DatabaseError(Exception):
    """A database we cannot use; ``str()`` is one line for an operator, with no password in it."""


class DatabaseUnreachable(DatabaseError):
    pass


class DatabaseNotMigrated(DatabaseError):
    pass


@dataclass(frozen=True)
class MigrationState:
    current: str | None  # the revision in alembic_version; None: an empty (unmigrated) database
    head: str  # the newest revision shipped with this ideohub
    pending: int = 0  # migrations between current and head (-1: current is not one of ours)

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    @property
    def known(self) -> bool:
        """False when the database was migrated by a newer ideohub (or another program)."""
        return self.pending >= 0


@dataclass(frozen=True)
class UpgradeReport:
    before: str | None
    after: str
    applied: int

    def __str__(self) -> str:
        if not self.applied:
            return f"database already at {self.after}"
        plural = "" if self.applied == 1 else "s"
        return (f"database upgraded from {self.before or 'empty'} to {self.after} "
                f"({self.applied} migration{plural} applied)")


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


def shown_url(url: str) -> str:
    """The URL as it may be printed: the password masked."""
    return make_url(url).render_as_string(hide_password=True)


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


def _sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def prepare_sqlite_file(url: str) -> None:
    """Create the SQLite file (and a missing parent directory) private to this user before
    SQLite opens it, and take group/other bits off an existing one and its -wal/-shm."""
    path = _sqlite_path(url)
    if path is None:
        return
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Never open an existing database file here: closing any descriptor of a file drops every POSIX
    # lock this process holds on it, which corrupts SQLite connections open in this process.
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = p.stat().st_mode
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(p, mode & 0o700)


def create_engine_async(url: str, *, pool_size: int | None = None, max_overflow: int | None = None) -> AsyncEngine:
    """``pool_size`` / ``max_overflow``: SQLAlchemy's queue pool (defaults 5 and 10), e.g. to give
    every concurrent task its own connection (bench/billing.py)."""
    u = make_url(url)
    prepare_sqlite_file(url)
    pool = {k: v for k, v in (("pool_size", pool_size), ("max_overflow", max_overflow)) if v is not None}
    engine = create_async_engine(async_url(url), pool_pre_ping=u.get_backend_name() != "sqlite", **pool)
    configure_sqlite(engine.sync_engine)
    return engine


class Transactions:
    """Runs a transaction written as a synchronous function of a connection, on the request path.

    On SQLite the whole transaction runs in one worker-thread hop on a pysqlite engine: aiosqlite
    costs several thread hops per statement (cursor, execute, fetch, close), which made the
    embedded default's few statements per request its largest cost. On PostgreSQL it runs on the
    async engine (``AsyncConnection.run_sync``): psycopg's async mode needs no threads."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sync: Engine | None = None
        if engine.dialect.name == "sqlite":
            url = engine.url.set(drivername="sqlite")
            self.sync = create_engine(url, pool_size=8, max_overflow=8)
            configure_sqlite(self.sync)

    async def begin(self, fn: Any, *args: Any) -> Any:
        """``fn(connection, *args)`` in one transaction, committed unless it raises."""
        if self.sync is not None:
            return await anyio.to_thread.run_sync(self._begin_sync, fn, args)
        async with self.engine.begin() as conn:
            return await conn.run_sync(fn, *args)

    async def read(self, fn: Any, *args: Any) -> Any:
        if self.sync is not None:
            return await anyio.to_thread.run_sync(self._read_sync, fn, args)
        async with self.engine.connect() as conn:
            return await conn.run_sync(fn, *args)

    def _begin_sync(self, fn: Any, args: tuple[Any, ...]) -> Any:
        assert self.sync is not None
        with self.sync.begin() as conn:
            return fn(conn, *args)

    def _read_sync(self, fn: Any, args: tuple[Any, ...]) -> Any:
        assert self.sync is not None
        with self.sync.connect() as conn:
            return fn(conn, *args)

    def dispose(self) -> None:
        if self.sync is not None:
            self.sync.dispose()


def sessionmaker_for(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


# ------------------------------------------------------------ migration state


def _revisions() -> dict[str, str | None]:
    """revision → down_revision, read from the scripts' module-level assignments (no Alembic)."""
    graph: dict[str, str | None] = {}
    for script in sorted((MIGRATIONS / "versions").glob("*.py")):
        values: dict[str, object] = {}
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            target = node.target if isinstance(node, ast.AnnAssign) else (
                node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision") and node.value is not None:
                values[target.id] = ast.literal_eval(node.value)
        if "revision" in values:
            down = values.get("down_revision")
            if isinstance(down, (tuple, list)):  # a merge: keep the chain walk simple, any parent will do
                down = down[0] if down else None
            graph[str(values["revision"])] = None if down is None else str(down)
    return graph


def head_revision() -> str:
    graph = _revisions()
    heads = set(graph) - {d for d in graph.values() if d is not None}
    if len(heads) != 1:
        raise RuntimeError(f"the migration scripts must have exactly one head, found {sorted(heads)}")
    return heads.pop()


def _pending(graph: dict[str, str | None], head: str, current: str | None) -> int:
    steps, rev = 0, head
    while rev != current:
        if rev is None:
            return -1  # walked past the first migration without meeting current: not ours
        steps, rev = steps + 1, graph.get(rev)
    return steps


def _unreachable(url: str, exc: BaseException) -> DatabaseUnreachable:
    password = make_url(url).password
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    reason = printable(redact(reason, [str(password)] if password else []), 300)
    return DatabaseUnreachable(f"cannot connect to the database {shown_url(url)}: {reason}; check database_url")


def _current_sqlite(url: str, path: Path) -> str | None:
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'").fetchone() is None:
                return None
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise _unreachable(url, exc) from None
    return row[0] if row else None


def _current_postgresql(url: str) -> str | None:
    import psycopg

    u = make_url(url)
    conninfo = u.set(drivername="postgresql").render_as_string(hide_password=False)
    timeout = {} if "connect_timeout" in u.query else {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        with psycopg.connect(conninfo, autocommit=True, **timeout) as conn:
            table = conn.execute("SELECT to_regclass('alembic_version')").fetchone()
            if table is None or table[0] is None:
                return None
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except psycopg.Error as exc:
        raise _unreachable(url, exc) from None
    return row[0] if row else None


def migration_state(url: str) -> MigrationState:
    """Where the database's schema stands; raises ``DatabaseUnreachable`` (one line, no password)."""
    backend = make_url(url).get_backend_name()
    path = _sqlite_path(url)
    if backend == "sqlite":
        current = _current_sqlite(url, path) if path is not None else None
    elif backend == "postgresql":
        current = _current_postgresql(url)
    else:
        raise DatabaseUnreachable(f"unsupported database {shown_url(url)}: use sqlite:/// or postgresql://")
    graph = _revisions()
    head = head_revision()
    return MigrationState(current, head, _pending(graph, head, current))


def _not_ours(url: str, state: MigrationState) -> DatabaseNotMigrated:
    return DatabaseNotMigrated(
        f"the database {shown_url(url)} is at revision {state.current}, which this ideohub does not know "
        f"(its newest is {state.head}); was it migrated by a newer version?")


def upgrade(url: str, revision: str = "head") -> UpgradeReport:
    """Run Alembic migrations up to ``revision`` (``ideohub db upgrade``; SQLite on start).
    Alembic is imported only when there is something to do."""
    prepare_sqlite_file(url)
    before = migration_state(url)
    if revision == "head" and before.at_head:
        return UpgradeReport(before.current, before.head, 0)
    if not before.known:
        raise _not_ours(url, before)
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    try:
        command.upgrade(cfg, revision)
    except Exception as exc:
        from sqlalchemy.exc import OperationalError

        if isinstance(exc, OperationalError):
            raise _unreachable(url, exc.orig or exc) from None
        raise
    after = migration_state(url)
    return UpgradeReport(before.current, after.current or after.head, before.pending - after.pending)


def ready(url: str) -> MigrationState:
    """Make sure the database can be used by this ideohub, before serving or a CLI command:
    SQLite is migrated when behind; PostgreSQL that is behind raises ``DatabaseNotMigrated``
    (it is migrated only by ``ideohub db upgrade``, so several servers never race to do it).
    Raises ``DatabaseUnreachable`` when it cannot connect. Both messages say what to do."""
    state = migration_state(url)
    if state.at_head:
        return state
    if not state.known:
        raise _not_ours(url, state)
    if make_url(url).get_backend_name() == "sqlite":
        upgrade(url)
        return migration_state(url)
    what = "empty (never migrated)" if state.current is None else f"at revision {state.current}, behind {state.head}"
    raise DatabaseNotMigrated(f"the database {shown_url(url)} is {what}: run `ideohub db upgrade` "
                              "(with the same database_url) first")
