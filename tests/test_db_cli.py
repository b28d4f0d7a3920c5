"""`ideohub db upgrade` reports what it did; the migration state is read without Alembic;
SQLite migrates itself (Alembic only when behind); PostgreSQL is migrated only by `db upgrade`,
and any other command against an unmigrated or unreachable PostgreSQL is one line of advice."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from conftest import free_port
from ideohub.store import db


def cli(*args: str, data_dir, database_url: str | None = None, importtime: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDEOHUB_")}
    env["IDEOHUB_DATA_DIR"] = str(data_dir)
    if database_url:
        env["IDEOHUB_DATABASE_URL"] = database_url
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run([sys.executable, *flags, "-m", "ideohub.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def alembic_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def imported(proc: subprocess.CompletedProcess) -> set[str]:
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def messages(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("import time:")]


def n_migrations() -> int:
    return len(list((db.MIGRATIONS / "versions").glob("*.py")))


def test_head_is_read_from_the_scripts_as_alembic_reads_it():
    assert db.head_revision() == alembic_head()


def test_sqlite_upgrade_reports_honestly_and_later_commands_skip_alembic(tmp_path):
    data = tmp_path / "data"
    head = alembic_head()
    url = f"sqlite:///{(data / 'ideohub.db').resolve()}"
    state = db.migration_state(url)
    assert (state.current, state.head, state.at_head) == (None, head, False)
    assert not (data / "ideohub.db").exists()  # looking does not create it

    first = cli("db", "upgrade", data_dir=data)
    assert first.returncode == 0, first.stderr
    n = n_migrations()
    assert first.stderr.strip() == f"database upgraded from empty to {head} ({n} migrations applied)"
    again = cli("db", "upgrade", data_dir=data)
    assert again.returncode == 0 and again.stderr.strip() == f"database already at {head}"
    assert db.migration_state(url).at_head

    listed = cli("keys", "list", data_dir=data, importtime=True)
    assert listed.returncode == 0, listed.stderr
    assert "alembic" not in imported(listed)  # at head: no Alembic at all

    # a database one migration behind: any command brings it up; `db upgrade` says from where
    behind = tmp_path / "behind"
    behind_url = f"sqlite:///{(behind / 'ideohub.db').resolve()}"
    previous = db._revisions()[head]
    assert previous is not None
    db.upgrade(behind_url, previous)
    assert db.migration_state(behind_url) == db.MigrationState(previous, head, 1)
    up = cli("db", "upgrade", data_dir=behind)
    assert up.returncode == 0 and up.stderr.strip() == f"database upgraded from {previous} to {head} (1 migration applied)"


def test_sqlite_in_a_fresh_data_dir_migrates_itself(tmp_path):
    data = tmp_path / "fresh"
    created = cli("accounts", "create", "acme", data_dir=data)
    assert created.returncode == 0, created.stderr
    assert db.migration_state(f"sqlite:///{(data / 'ideohub.db').resolve()}").at_head


def test_a_database_from_a_newer_version_is_refused_with_one_line(tmp_path):
    data = tmp_path / "data"
    assert cli("db", "upgrade", data_dir=data).returncode == 0
    url = f"sqlite:///{(data / 'ideohub.db').resolve()}"
    engine = sa.create_engine(db.sync_url(url))
    with engine.begin() as c:
        c.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    for args in (["keys", "list"], ["db", "upgrade"]):
        out = cli(*args, data_dir=data)
        assert out.returncode == 1, out.stdout + out.stderr
        assert len(messages(out)) == 1 and "9999_future" in out.stderr and "does not know" in out.stderr
        assert "Traceback" not in out.stderr


def test_postgresql_is_migrated_only_by_db_upgrade(pg_url, tmp_path):
    data = tmp_path / "data"
    head = alembic_head()
    assert db.migration_state(pg_url).current is None

    for args in (["keys", "list"], ["keys", "create"], ["accounts", "list"], ["usage"], ["sweep"]):
        out = cli(*args, data_dir=data, database_url=pg_url)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        lines = messages(out)
        assert len(lines) == 1 and "ideohub db upgrade" in lines[0] and "Traceback" not in out.stderr, lines
    assert db.migration_state(pg_url).current is None  # nothing migrated it behind our back
    engine = sa.create_engine(db.sync_url(pg_url))
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar() == 0
    engine.dispose()

    up = cli("db", "upgrade", data_dir=data, database_url=pg_url)
    assert up.returncode == 0, up.stderr
    assert up.stderr.strip() == f"database upgraded from empty to {head} ({n_migrations()} migrations applied)"
    again = cli("db", "upgrade", data_dir=data, database_url=pg_url)
    assert again.returncode == 0 and again.stderr.strip() == f"database already at {head}"
    state = db.migration_state(pg_url)
    assert state.at_head and state.current == head

    created = cli("keys", "create", "--name", "pg", data_dir=data, database_url=pg_url)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1].startswith("ih_")


def test_an_unreachable_postgresql_is_one_line_without_the_password(tmp_path):
    url = f"postgresql://ideohub:s3cret-pw@127.0.0.1:{free_port()}/ideohub"
    with pytest.raises(db.DatabaseUnreachable) as info:
        db.migration_state(url)
    text = str(info.value)
    assert "s3cret-pw" not in text and "\n" not in text and "check database_url" in text
    for args in (["keys", "list"], ["db", "upgrade"], ["topup", "acct_x", "1"]):
        out = cli(*args, data_dir=tmp_path / "d", database_url=url)
        assert out.returncode == 1, (args, out.stderr)
        lines = messages(out)
        assert len(lines) == 1 and "check database_url" in lines[0] and "s3cret-pw" not in out.stderr, lines


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_requests_from_before_accounts_are_the_default_accounts(backend, tmp_path, request):
    """Migration 0010: request rows left without an account by 0003 are given the default account
    (their keys' account), so account filters find them; rows of other accounts are untouched."""
    url = f"sqlite:///{(tmp_path / 'old.db').resolve()}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    db.upgrade(url, "0009")
    engine = sa.create_engine(db.sync_url(url))
    insert = sa.text("INSERT INTO requests (id, operation, params, state, images, created_at, updated_at, account_id) "
                     "VALUES (:id, 'v3-generate', '{}', 'done', 1, :t, :t, :acct)")
    with engine.begin() as c:
        for rid, acct in (("req_old", None), ("req_default", "acct_default"), ("req_other", "acct_other")):
            c.execute(insert, {"id": rid, "t": "2025-01-01 00:00:00+00:00", "acct": acct})
    db.upgrade(url)
    with engine.connect() as c:
        rows = dict(c.execute(sa.text("SELECT id, account_id FROM requests")).all())
    engine.dispose()
    assert rows == {"req_old": "acct_default", "req_default": "acct_default", "req_other": "acct_other"}
