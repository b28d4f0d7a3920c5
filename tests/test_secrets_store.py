"""Secrets in the database, on SQLite and on PostgreSQL: an earlier version's secrets.json is
imported (its API keys, links, channel keys and webhook keys keep working); processes with
different data directories but one database and one secret_key share them; a process with another
master secret refuses to start, in one line; concurrent first starts make one set; a rotation
reaches a running signer within its recheck interval; nothing is stored in plaintext."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text

from ideohub.config import Settings, load_settings
from ideohub.engines.relay.channels import SecretBox
from ideohub.media.signing import LinkForbidden, UrlSigner
from ideohub.notify import keys as webhook_keys
from ideohub.store import db
from ideohub.store.repository import Repository
from ideohub.store.secrets import KEY_FILE, Secrets, SecretsError, WrongSecretKey, open_secrets

MASTER = "fleet-master-secret-0123456789-abcdefghijklmnop"
OTHER = "another-master-secret-0123456789-abcdefghijklmno"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> str | None:  # type: ignore[no-untyped-def]
    """None: the SQLite file of each data directory (the embedded default); else a fresh
    PostgreSQL database."""
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


def settings_for(data: Path, database: str | None, migrate: bool = True, **overrides) -> Settings:  # type: ignore[no-untyped-def]
    """Settings of one process; its database migrated (``ideohub db upgrade``) unless ``migrate`` is False."""
    settings = load_settings(data_dir=data, database_url=database, **overrides)
    if migrate:
        db.upgrade(settings.db_url)
    return settings


async def opened(settings: Settings, **kwargs) -> tuple[Secrets, object]:  # type: ignore[no-untyped-def]
    db.ready(settings.db_url)
    engine = db.create_engine_async(settings.db_url)
    try:
        return await open_secrets(settings, engine, **kwargs), engine
    except BaseException:
        await engine.dispose()
        raise


def raw_rows(url: str) -> dict[str, str]:
    from sqlalchemy import create_engine

    engine = create_engine(db.sync_url(url))
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT name, value FROM secrets")).all())
    finally:
        engine.dispose()


def query(url: str) -> tuple[str, str, str, str]:
    q = parse_qs(urlsplit(url).query)
    return urlsplit(url).path.rsplit("/", 1)[1], q["exp"][0], q["kid"][0], q["sig"][0]


def cli_env(database: str | None, secret_key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDEOHUB_")}
    if database:
        env["IDEOHUB_DATABASE_URL"] = database
    if secret_key:
        env["IDEOHUB_SECRET_KEY"] = secret_key
    return env


def cli(*args: str, data: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ideohub.cli", *args, "--data-dir", str(data)],
                          capture_output=True, text=True, env=env, timeout=120)


# ---------------------------------------------------------------- import of secrets.json


def write_old_secrets(path: Path, *, current_format: bool = True) -> dict:
    """A secrets.json as earlier versions wrote it (``current_format=False``: the oldest form, with
    neither a key order, a channel key nor webhook keys)."""
    data: dict = {"key_pepper": os.urandom(32).hex(),
                  "signing_keys": {kid: os.urandom(32).hex() for kid in ("k10", "k2", "k9", "k1")}}
    if current_format:
        data["signing_key_order"] = ["k1", "k2", "k9", "k10"]
        data["channel_key"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
        data[webhook_keys.FIELD] = []
        webhook_keys.add_key(data, 1_800_000_000.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    os.chmod(path, 0o600)
    return data


def test_an_existing_secrets_json_is_imported_and_everything_made_with_it_keeps_working(database, tmp_path):
    data = tmp_path / "data"
    settings = settings_for(data, database, migrate=False)
    old = write_old_secrets(settings.secrets_file)
    file_text = settings.secrets_file.read_text()
    url = settings.db_url
    db.prepare_sqlite_file(url)
    db.upgrade(url, "0005")  # the database as the previous version left it

    async def before() -> tuple[str, str, str]:
        repo = Repository.connect(url, bytes.fromhex(old["key_pepper"]))
        try:
            _row, plaintext = await repo.create_key("made before the upgrade")
        finally:
            await repo.close()
        link = UrlSigner({k: bytes.fromhex(v) for k, v in old["signing_keys"].items()}, "k10", "http://x", 3600)
        return plaintext, link.sign("img_a.png")[0], SecretBox(old["channel_key"].encode()).seal("upstream-key")

    plaintext, old_link, sealed_channel = asyncio.run(before())
    db.upgrade(url)  # this version's migrations (SQLite would run them at start itself)

    async def after() -> None:
        secrets, engine = await opened(settings)
        try:
            repo = Repository(engine, secrets.key_pepper)  # type: ignore[arg-type]
            assert await repo.authenticate(plaintext) is not None
            signer = UrlSigner(secrets.signing_key_source, None, "http://x", 3600)
            assert signer.verify(*query(old_link)) > time.time()
            assert secrets.active_kid == "k10" and list(secrets.signing_ring.order) == ["k1", "k2", "k9", "k10"]
            assert SecretBox(secrets.channel_key).open(sealed_channel) == "upstream-key"
            old_ring = webhook_keys.ring_from(old)
            ring = secrets.webhook_key_source.current()
            assert [k.kid for k in ring.keys] == ["wh1"] and ring.active.public_raw == old_ring.active.public_raw
        finally:
            await engine.dispose()

    asyncio.run(after())
    assert settings.secrets_file.read_text() == file_text  # left in place, untouched
    assert (data / KEY_FILE).exists()

    # from now on the database is the source: the file changing (or going) changes nothing
    versions = raw_rows(url)
    write_old_secrets(settings.secrets_file)
    again = Secrets.load(settings)
    assert again.key_pepper.hex() == old["key_pepper"]
    assert raw_rows(url) == versions
    settings.secrets_file.unlink()
    assert Secrets.load(settings).key_pepper.hex() == old["key_pepper"]


def test_the_oldest_secrets_json_is_imported_with_its_keys_in_creation_order(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data")
    old = write_old_secrets(settings.secrets_file, current_format=False)
    secrets = Secrets.load(settings)
    assert secrets.key_pepper.hex() == old["key_pepper"]
    assert secrets.active_kid == "k10"  # by number: a string sort picked k9
    assert [k.kid for k in secrets.webhook_ring.keys] == ["wh1"] and len(secrets.channel_key) == 44  # made now
    assert Secrets.rotate(settings) == "k11"


def test_a_secrets_json_that_cannot_be_read_stops_the_first_start(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    settings.secrets_file.write_text('{"key_pepper": "not hex"}')
    with pytest.raises(SecretsError, match="cannot import .*secrets.json"):
        Secrets.load(settings)
    assert raw_rows(settings.db_url) == {}  # nothing half-made


# ---------------------------------------------------------------- one set for every process


def test_two_data_dirs_on_one_postgresql_database_with_one_secret_key_share_the_secrets(pg_url, tmp_path):
    db.upgrade(pg_url)  # `ideohub db upgrade`, once for the fleet
    a, b = tmp_path / "a", tmp_path / "b"
    created = cli("keys", "create", "--name", "via a", data=a, env=cli_env(pg_url, MASTER))  # another process
    assert created.returncode == 0, created.stderr
    plaintext = created.stdout.strip().splitlines()[-1]

    async def through_b() -> None:
        secrets, engine = await opened(settings_for(b, pg_url, secret_key=MASTER))
        try:
            assert await Repository(engine, secrets.key_pepper).authenticate(plaintext) is not None  # type: ignore[arg-type]
            assert await Repository(engine, secrets.key_pepper).authenticate(plaintext + "x") is None  # type: ignore[arg-type]
        finally:
            await engine.dispose()

    asyncio.run(through_b())
    # a link signed by one verifies at the other; neither wrote a secret.key (the master secret is given)
    from_a = Secrets.load(settings_for(a, pg_url, secret_key=MASTER))
    from_b = Secrets.load(settings_for(b, pg_url, secret_key=MASTER))
    link = UrlSigner(from_a.signing_key_source, None, "http://x", 60).sign("img_a.png")[0]
    assert UrlSigner(from_b.signing_key_source, None, "http://x", 60).verify(*query(link)) > time.time()
    assert from_a.channel_key == from_b.channel_key and from_a.webhook_ring.active.kid == from_b.webhook_ring.active.kid
    assert not (a / KEY_FILE).exists() and not (b / KEY_FILE).exists()


def test_a_wrong_master_secret_refuses_with_one_line(database, tmp_path):
    first = settings_for(tmp_path / "a", database, secret_key=MASTER)
    Secrets.load(first)
    before = raw_rows(first.db_url)
    share = {"database_url": first.db_url}  # the same database, from another data directory
    with pytest.raises(WrongSecretKey, match="sealed under another master secret") as wrong:
        Secrets.load(load_settings(data_dir=tmp_path / "b", secret_key=OTHER, **share))
    assert "\n" not in str(wrong.value) and OTHER not in str(wrong.value)
    # no secret_key and no secret.key: the embedded default never makes one for a database that has secrets
    with pytest.raises(WrongSecretKey, match="no secret_key is set"):
        Secrets.load(load_settings(data_dir=tmp_path / "c", **share))
    assert not (tmp_path / "c" / KEY_FILE).exists()
    assert raw_rows(first.db_url) == before  # nothing was added or changed

    for args in (("keys", "list"), ("rotate-signing-key",), ("rotate-webhook-key",), ("channels", "list")):
        out = cli(*args, data=tmp_path / "b", env=cli_env(first.db_url, OTHER))
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        [line] = out.stderr.strip().splitlines()
        assert line.startswith("error: the secrets in the database") and "another master secret" in line, line
        assert "Traceback" not in out.stderr
    assert raw_rows(first.db_url) == before


def test_serve_with_a_wrong_master_secret_exits_with_the_message(tmp_path):
    data = tmp_path / "data"
    Secrets.load(load_settings(data_dir=data))  # the embedded default: data/secret.key
    out = subprocess.run([sys.executable, "-m", "ideohub.cli", "serve", "--port", "0", "--data-dir", str(data)],
                         capture_output=True, text=True, env=cli_env(None, OTHER), timeout=120)
    assert out.returncode == 1, out.stderr
    assert "another master secret" in out.stderr and "secret.key exists" in out.stderr
    assert "Traceback" not in out.stderr and "listening" not in out.stderr


def test_a_short_secret_key_is_refused(tmp_path):
    with pytest.raises(SecretsError, match="at least 32 characters"):
        Secrets.load(load_settings(data_dir=tmp_path, secret_key="short"))


def test_the_embedded_default_generates_a_private_secret_key_and_reuses_it(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data")
    first = Secrets.load(settings)
    path = tmp_path / "data" / KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600 and len(path.read_text().strip()) >= 32
    content = path.read_text()
    assert Secrets.load(settings).key_pepper == first.key_pepper and path.read_text() == content
    # the same key given explicitly opens the same secrets (moving from the embedded default to a fleet)
    explicit = load_settings(data_dir=tmp_path / "elsewhere", database_url=settings.db_url, secret_key=content.strip())
    assert Secrets.load(explicit).key_pepper == first.key_pepper


def test_concurrent_first_opens_create_exactly_one_set(database, tmp_path):
    async def race() -> list[bytes]:
        settings = [settings_for(tmp_path / f"d{i}", database, secret_key=MASTER) for i in range(8)]
        if database is None:  # one SQLite file for all
            settings = [s.model_copy(update={"database_url": settings[0].db_url}) for s in settings]
        db.ready(settings[0].db_url)
        engines = [db.create_engine_async(s.db_url) for s in settings]
        try:
            opened_all = await asyncio.gather(*(open_secrets(s, e) for s, e in zip(settings, engines)))
        finally:
            for e in engines:
                await e.dispose()
        return [s.key_pepper for s in opened_all]

    peppers = asyncio.run(race())
    assert len(set(peppers)) == 1
    url = database or settings_for(tmp_path / "d0", None).db_url
    assert sorted(raw_rows(url)) == ["channel_key", "key_pepper", "signing_keys", "verifier", "webhook_keys"]


def test_concurrent_first_starts_of_processes_on_postgresql_agree(pg_url, tmp_path):
    db.upgrade(pg_url)
    script = ("import asyncio, hashlib, sys\n"
              "from ideohub.config import load_settings\n"
              "from ideohub.store import db\n"
              "from ideohub.store.secrets import open_secrets\n"
              "async def main():\n"
              "    s = load_settings(data_dir=sys.argv[1])\n"
              "    e = db.create_engine_async(s.db_url)\n"
              "    sec = await open_secrets(s, e)\n"
              "    await e.dispose()\n"
              "    print(hashlib.sha256(sec.key_pepper).hexdigest())\n"
              "asyncio.run(main())\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / f"p{i}")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=cli_env(pg_url, MASTER)) for i in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert len({o[0].strip() for o in outs}) == 1
    assert sorted(raw_rows(pg_url)) == ["channel_key", "key_pepper", "signing_keys", "verifier", "webhook_keys"]


def test_threads_racing_on_a_new_data_dir_make_one_secret_key_and_one_set(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data")
    db.ready(settings.db_url)
    results: list[bytes] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        barrier.wait()
        results.append(Secrets.load(settings).key_pepper)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and len(set(results)) == 1


# ---------------------------------------------------------------- rotation reaches running processes


def test_a_running_signer_follows_a_rotation_within_its_recheck_interval(database, tmp_path):
    settings = settings_for(tmp_path / "a", database, secret_key=MASTER)
    other = settings_for(tmp_path / "b", database, secret_key=MASTER)
    if database is None:
        other = other.model_copy(update={"database_url": settings.db_url})

    async def go() -> None:
        clock = Clock()
        secrets, engine = await opened(settings, recheck_s=1.0, clock=clock)
        cli_side, other_engine = await opened(other)  # another process: the CLI
        try:
            signer = UrlSigner(secrets.signing_key_source, None, "http://x", 60)
            assert query(signer.sign("img_a.png")[0])[2] == "k1"
            assert await cli_side.rotate_signing_key() == "k2"
            assert await cli_side.rotate_webhook_key() == "wh2"
            clock.t += 0.5
            assert await secrets.check() is False  # not looked at before the interval
            assert query(signer.sign("img_a.png")[0])[2] == "k1"
            assert secrets.webhook_key_source.current().active.kid == "wh1"
            clock.t += 0.6
            assert await secrets.check() is True
            assert query(signer.sign("img_a.png")[0])[2] == "k2"
            assert secrets.webhook_key_source.current().active.kid == "wh2"
            assert [k["kid"] for k in secrets.webhook_key_source.current().jwks(time.time())["keys"]] == ["wh2", "wh1"]

            # a link signed by another process with a key this one has not read yet verifies at once
            assert await cli_side.rotate_signing_key() == "k3"
            link = UrlSigner(cli_side.signing_key_source, None, "http://x", 60).sign("img_b.png")[0]
            assert query(link)[2] == "k3"
            assert signer.verify(*query(link)) > time.time()  # clock not moved: verify looked again
            name, exp, _kid, sig = query(link)
            with pytest.raises(LinkForbidden):
                signer.verify(name, exp, "k404", sig)  # and an unknown id does not hit the database every time

            # the background task: no clock to move, a rotation arrives within about recheck_s
            secrets.recheck_s = 0.05
            secrets.start()
            assert await cli_side.rotate_signing_key() == "k4"
            deadline = time.monotonic() + 5
            while secrets.active_kid != "k4" and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert secrets.active_kid == "k4"
            await secrets.aclose()
        finally:
            await engine.dispose()
            await other_engine.dispose()

    asyncio.run(go())


def test_concurrent_rotations_all_land_and_other_secrets_stay(database, tmp_path):
    settings = settings_for(tmp_path / "data", database, secret_key=MASTER)
    before = Secrets.load(settings)
    with ThreadPoolExecutor(6) as pool:
        signing = list(pool.map(lambda _: Secrets.rotate(settings), range(6)))
        hooks = list(pool.map(lambda _: Secrets.rotate_webhook(settings), range(3)))
    assert sorted(signing, key=lambda k: int(k[1:])) == [f"k{n}" for n in range(2, 8)]
    assert sorted(hooks) == ["wh2", "wh3", "wh4"]
    after = Secrets.load(settings)
    assert list(after.signing_ring.order) == [f"k{n}" for n in range(1, 8)]
    assert [k.kid for k in after.webhook_ring.keys] == ["wh1", "wh2", "wh3", "wh4"]
    assert after.key_pepper == before.key_pepper and after.channel_key == before.channel_key


# ---------------------------------------------------------------- sealed at rest


def test_no_secret_is_stored_in_plaintext_and_rows_cannot_be_swapped(database, tmp_path):
    settings = settings_for(tmp_path / "data", database, secret_key=MASTER)
    secrets = Secrets.load(settings)
    rows = raw_rows(settings.db_url)
    assert sorted(rows) == ["channel_key", "key_pepper", "signing_keys", "verifier", "webhook_keys"]
    forms = [secrets.key_pepper.hex(), base64.b64encode(secrets.key_pepper).decode(), secrets.channel_key.decode(),
             MASTER]
    for key in secrets.signing_keys.values():
        forms += [key.hex(), base64.b64encode(key).decode()]
    for k in secrets.webhook_ring.keys:
        seed = k.private.private_bytes_raw()
        forms += [seed.hex(), base64.b64encode(seed).decode()]
    stored = json.dumps(rows)
    for form in forms:
        assert form not in stored and form[:16] not in stored
    assert all(v.startswith("v1.") for n, v in rows.items() if n != "verifier")
    assert hashlib.sha256(secrets.key_pepper).hexdigest() not in stored

    # each row is bound to its name: a pepper row pasted over the channel key does not open
    from sqlalchemy import create_engine

    engine = create_engine(db.sync_url(settings.db_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE secrets SET value = :v WHERE name = 'channel_key'"), {"v": rows["key_pepper"]})
    engine.dispose()
    with pytest.raises(SecretsError, match="'channel_key' in the database cannot be opened"):
        Secrets.load(settings)
