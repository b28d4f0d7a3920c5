"""Server secrets, kept in the database so every process that shares it holds the same ones: the
pepper of API-key hashes, the channel key (Fernet, upstream keys at rest), the URL-signing key ring
(``media.signing_keys``) and the webhook key ring (``notify.keys``).

Each is one row of ``secrets``, sealed with AES-256-GCM (the row's name as associated data, so rows
cannot be swapped) under a key derived with HKDF-SHA256 from ONE master secret and a per-database
salt. The master secret is ``Settings.secret_key`` (``IDEOHUB_SECRET_KEY``); without it, the
embedded default generates ``<data_dir>/secret.key`` (0600) on first use and reuses it.

The ``verifier`` row holds the salt and a sealed constant. A process whose master secret does not
open it refuses to start (``WrongSecretKey``, one line) instead of making secrets of its own: a
second set would make every existing API key, signed link and channel key fail.

The first process to find no secrets creates them all in one transaction; the verifier's primary
key makes a concurrent first start (another process, on SQLite or PostgreSQL) fail its insert, and
it reads the winner's. That first start imports ``<data_dir>/secrets.json`` when one exists (the
file of earlier versions), so existing keys, links, webhook keys and channels keep working; the
file is then no longer read, and is left in place, untouched (a downgrade still finds it).

Rotation (``rotate_signing_key`` / ``rotate_webhook_key``) rewrites a ring's row under an
optimistic check of its ``version`` (two rotations at once both land). A running process follows:
``Secrets.start()`` reads the rings' versions every ``recheck_s`` (one small query) and re-reads
a ring whose version moved. ``UrlSigner`` and the webhook sender see the rings through
``signing_key_source`` / ``webhook_key_source``, in memory; a link whose key id is not known yet
makes ``refresh()`` look at the database at once (at most every ``MIN_REFRESH_S``), so a link
signed by another process a moment after a rotation verifies too.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets as _random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Connection, Engine, create_engine, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from ..config import Settings, private_dir
from ..domain.untrusted import printable, redact
from ..media import signing_keys
from ..media.signing_keys import KeyRing
from ..notify import keys as webhook_keys
from ..notify.keys import WebhookRing
from . import db
from .models import SecretRow

log = logging.getLogger("ideohub.secrets")

VERIFIER = "verifier"
PEPPER = "key_pepper"
CHANNEL = "channel_key"
SIGNING = "signing_keys"
WEBHOOK = "webhook_keys"
SECRETS = (PEPPER, CHANNEL, SIGNING, WEBHOOK)
RINGS = (SIGNING, WEBHOOK)  # what a running process follows
KEY_FILE = "secret.key"
MIN_SECRET_KEY_CHARS = 32
MIN_REFRESH_S = 0.2  # unknown key ids (perhaps guessed) look at the database at most this often
_CHECK = b"ideohub secrets"
_INFO = b"ideohub secrets v1"
_SEALED = "v1."
_T = SecretRow.__table__
_READY = threading.Lock()


class SecretsError(db.DatabaseError):
    """Secrets this process cannot use; ``str()`` is one line for an operator."""


class WrongSecretKey(SecretsError):
    """The database's secrets were sealed under another master secret than this process's."""


# ---------------------------------------------------------------- sealing


class _Cipher:
    def __init__(self, master: bytes, salt: bytes) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO).derive(master)
        self._aead = AESGCM(key)

    def seal(self, name: str, plaintext: bytes) -> str:
        nonce = os.urandom(12)
        return _SEALED + _b64(nonce + self._aead.encrypt(nonce, plaintext, name.encode()))

    def open(self, name: str, sealed: str) -> bytes:
        """Raises ``InvalidTag`` (another key, or a changed value) or ``ValueError`` (not ours)."""
        if not sealed.startswith(_SEALED):
            raise ValueError("not a sealed value")
        raw = base64.urlsafe_b64decode(sealed[len(_SEALED):])
        return self._aead.decrypt(raw[:12], raw[12:], name.encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _verifier(cipher: _Cipher, salt: bytes) -> str:
    """Not secret: the salt, and a constant sealed under the derived key."""
    return json.dumps({"kdf": "HKDF-SHA256", "aead": "AES-256-GCM", "salt": _b64(salt),
                       "check": cipher.seal(VERIFIER, _CHECK)})


# ---------------------------------------------------------------- the master secret


@dataclass(frozen=True)
class _Master:
    secret: bytes
    where: str  # for messages: where this process took it from


def _master(settings: Settings, database_has_secrets: bool) -> _Master:
    if settings.secret_key is not None:
        return _Master(_strong(settings.secret_key, "secret_key"), "the secret_key setting (IDEOHUB_SECRET_KEY or the config file)")
    path = settings.data_dir / KEY_FILE
    private_dir(settings.data_dir)
    if not path.exists():
        if database_has_secrets:  # generating one now could never open them
            raise WrongSecretKey(
                f"the database {db.shown_url(settings.db_url)} already holds secrets, sealed under a master secret "
                f"this process does not have (no secret_key is set and there is no {path}): set secret_key "
                "(IDEOHUB_SECRET_KEY) to the one the database's other processes use")
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{_random.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(_random.token_urlsafe(32) + "\n")
        try:
            os.link(tmp, path)  # atomic create: a concurrent first start keeps the winner's file
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(path, mode & 0o700)
    return _Master(_strong(path.read_text(), str(path)), str(path))


def _strong(text: str, what: str) -> bytes:
    text = text.strip()
    if len(text) < MIN_SECRET_KEY_CHARS:
        raise SecretsError(f"{what} must be at least {MIN_SECRET_KEY_CHARS} characters of random text "
                           "(e.g. the output of `openssl rand -base64 32`)")
    return text.encode()


# ---------------------------------------------------------------- documents (the plaintext of each row)


def _fresh(now: float) -> dict[str, bytes]:
    webhook: dict[str, Any] = {}
    webhook_keys.add_key(webhook, now)
    return {PEPPER: _random.token_hex(32).encode(),
            CHANNEL: base64.urlsafe_b64encode(_random.token_bytes(32)),
            SIGNING: json.dumps(signing_keys.new_ring_fields()).encode(),
            WEBHOOK: json.dumps(webhook).encode()}


def _from_file(path: Path, now: float) -> dict[str, bytes] | None:
    """The secrets of an earlier version's ``secrets.json`` (any of its forms), or None."""
    try:
        data = json.loads(path.read_text())
        pepper = bytes.fromhex(data["key_pepper"])
        if not pepper:
            raise ValueError("key_pepper is empty")
        signing_keys.with_order(data)
        signing_keys.ring_from(data, None, str(path))
        ring = {signing_keys.KEYS_FIELD: data[signing_keys.KEYS_FIELD], signing_keys.ORDER_FIELD: data[signing_keys.ORDER_FIELD]}
        fresh = _fresh(now)
        webhook = {webhook_keys.FIELD: data[webhook_keys.FIELD]} if data.get(webhook_keys.FIELD) else None
        if webhook is not None:
            webhook_keys.ring_from(webhook, str(path))
        channel = data.get("channel_key")
    except FileNotFoundError:
        return None
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise SecretsError(f"cannot import {path}: {printable(str(exc), 200)}; fix or move the file") from None
    return {PEPPER: pepper.hex().encode(),
            CHANNEL: channel.encode() if isinstance(channel, str) and channel else fresh[CHANNEL],
            SIGNING: json.dumps(ring).encode(),
            WEBHOOK: json.dumps(webhook).encode() if webhook is not None else fresh[WEBHOOK]}


# ---------------------------------------------------------------- rows (sync, on a Connection: also run from async code)


@dataclass(frozen=True)
class _Row:
    value: str
    version: int


def _read(conn: Connection, names: tuple[str, ...] | None = None) -> dict[str, _Row]:
    q = select(_T.c.name, _T.c.value, _T.c.version)
    if names is not None:
        q = q.where(_T.c.name.in_(names))
    with conn.begin():
        return {r.name: _Row(r.value, r.version) for r in conn.execute(q)}


def _insert_new(conn: Connection, rows: dict[str, str]) -> bool:
    """All of ``rows`` or none (another process inserted first: False). One statement per row, in
    order (the verifier first): a conflict fails a plain insert, not a batched one."""
    now = datetime.now(UTC)
    try:
        with conn.begin():
            for name, value in rows.items():
                conn.execute(insert(_T).values(name=name, value=value, version=1, updated_at=now))
    except IntegrityError:
        return False
    return True


@dataclass
class _Opened:
    cipher: _Cipher
    values: dict[str, bytes]
    versions: dict[str, int]


def _open(conn: Connection, settings: Settings) -> _Opened:
    url = db.shown_url(settings.db_url)
    try:
        rows = _read(conn)
    except (OperationalError, ProgrammingError) as exc:
        lines = str(exc.orig or exc).strip().splitlines()
        password = make_url(settings.db_url).password
        reason = printable(redact(lines[0] if lines else type(exc).__name__, [str(password)] if password else []), 200)
        raise SecretsError(f"cannot read the secrets table of {url}: {reason}; "
                           "is the database migrated (`ideohub db upgrade`)?") from None
    imported = None
    if VERIFIER not in rows:
        master = _master(settings, database_has_secrets=False)
        now = time.time()
        imported = _from_file(settings.secrets_file, now)
        values = imported or _fresh(now)
        salt = os.urandom(16)
        cipher = _Cipher(master.secret, salt)
        sealed = {VERIFIER: _verifier(cipher, salt), **{n: cipher.seal(n, v) for n, v in values.items()}}
        if not _insert_new(conn, sealed):
            imported = None  # another process created them first: theirs are the secrets
        elif imported is not None:
            log.info("imported %s into the database %s: the file is no longer read (it is left in place for a "
                     "downgrade; delete it once you no longer need one)", settings.secrets_file, url)
        rows = _read(conn)
    master = _master(settings, database_has_secrets=True)
    cipher = _unlock(rows[VERIFIER].value, master, settings)
    missing = [n for n in SECRETS if n not in rows]  # e.g. a kind of secret newer than the database's
    if missing:
        fresh = _fresh(time.time())
        for name in missing:
            _insert_new(conn, {name: cipher.seal(name, fresh[name])})
        rows = _read(conn)
    values = {}
    for name in SECRETS:
        values[name] = _unseal(cipher, name, rows[name].value)
    if imported is None:
        _warn_if_other_file(settings, values[PEPPER])
    return _Opened(cipher, values, {n: rows[n].version for n in RINGS})


def _unlock(verifier: str, master: _Master, settings: Settings) -> _Cipher:
    try:
        doc = json.loads(verifier)
        salt = base64.urlsafe_b64decode(doc["salt"])
        cipher = _Cipher(master.secret, salt)
        if cipher.open(VERIFIER, doc["check"]) == _CHECK:
            return cipher
    except InvalidTag:
        pass
    except (KeyError, TypeError, ValueError):
        raise SecretsError(f"the secrets verifier in {db.shown_url(settings.db_url)} is malformed") from None
    hint = ""
    if settings.secret_key is not None and (settings.data_dir / KEY_FILE).exists():
        hint = f" ({settings.data_dir / KEY_FILE} exists: was the database created with that one?)"
    raise WrongSecretKey(
        f"the secrets in the database {db.shown_url(settings.db_url)} were sealed under another master secret than "
        f"this process's, which comes from {master.where}{hint}: every process sharing a database needs the same "
        "secret_key (IDEOHUB_SECRET_KEY); refusing to start rather than make a second set of secrets")


def _unseal(cipher: _Cipher, name: str, sealed: str) -> bytes:
    try:
        return cipher.open(name, sealed)
    except (InvalidTag, ValueError):
        raise SecretsError(f"the secret {name!r} in the database cannot be opened although the master secret matches "
                           "(was the row edited or copied from another database?)") from None


def _warn_if_other_file(settings: Settings, pepper: bytes) -> None:
    """A secrets.json the database's secrets did not come from: keys made with it do not work here."""
    path = settings.secrets_file
    try:
        other = json.loads(path.read_text()).get("key_pepper")
    except FileNotFoundError:
        return
    except (OSError, ValueError, AttributeError):
        other = None
    if other != pepper.decode():
        log.warning("%s is not the source of this process's secrets: the database %s already holds others, so API "
                    "keys, links and channels made with that file do not work here", path, db.shown_url(settings.db_url))


def _rotate(conn: Connection, cipher: _Cipher, name: str, change: Callable[[dict[str, Any]], str]) -> tuple[str, int, bytes]:
    """Apply ``change`` to the ring document ``name``; retried when another writer came first.
    Returns what ``change`` returned, the new version and the new plaintext."""
    for _ in range(100):
        row = _read(conn, (name,))[name]
        doc = json.loads(_unseal(cipher, name, row.value))
        result = change(doc)
        plaintext = json.dumps(doc).encode()
        with conn.begin():
            done = conn.execute(
                update(_T).where(_T.c.name == name, _T.c.version == row.version)
                .values(value=cipher.seal(name, plaintext), version=row.version + 1, updated_at=datetime.now(UTC))
            ).rowcount
        if done == 1:
            return result, row.version + 1, plaintext
    raise SecretsError(f"could not rotate {name}: it kept changing under this process")


def _private_dirs(settings: Settings) -> None:
    """The data directory holds the database, secret.key and the images: private to this user."""
    private_dir(settings.data_dir)
    if settings.storage_url is None:  # the local image store: private before it is first written
        private_dir(settings.images_dir)


def _sync_engine(url: str) -> Engine:
    args = {}
    if make_url(url).get_backend_name() == "postgresql" and "connect_timeout" not in make_url(url).query:
        args["connect_timeout"] = db.CONNECT_TIMEOUT_S
    engine = create_engine(db.sync_url(url), poolclass=NullPool, connect_args=args)
    db.configure_sqlite(engine)
    return engine


# ---------------------------------------------------------------- what callers hold


class Secrets:
    """The secrets of this database, opened by ``open_secrets`` (servers) or ``Secrets.load`` (tools).

    ``key_pepper`` and ``channel_key`` never change. The rings follow the database while
    ``start()``'s task runs (or on ``check()``): ``signing_key_source`` (a ``KeySource`` for
    ``UrlSigner``, honouring ``Settings.signing_key_id``) and ``webhook_key_source`` (a
    ``WebhookKeySource``). ``signing_keys`` / ``active_kid``: the signing ring as it is now."""

    def __init__(self, settings: Settings, opened: _Opened, engine: AsyncEngine | None, *,
                 recheck_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.key_pepper = bytes.fromhex(opened.values[PEPPER].decode())
        self.channel_key = opened.values[CHANNEL]  # Fernet key for upstream secrets at rest
        self.recheck_s = recheck_s
        self._settings = settings
        self._pinned = settings.signing_key_id
        self._cipher = opened.cipher
        self._engine = engine
        self._url = settings.db_url
        self._sync: Engine | None = None  # for refresh_now (and a Secrets without an event loop); NullPool
        self._clock = clock
        self._lock = threading.Lock()
        self._versions: dict[str, int] = {}
        self._signing: KeyRing | None = None
        self._webhook: WebhookRing | None = None
        self._checked = clock()
        self._forced = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._apply({n: (opened.versions[n], opened.values[n]) for n in RINGS}, strict=True)
        self.signing_key_source = _SigningKeys(self)
        self.webhook_key_source = _WebhookKeys(self)

    # -- the rings now

    @property
    def signing_ring(self) -> KeyRing:
        assert self._signing is not None
        return self._signing

    @property
    def webhook_ring(self) -> WebhookRing:
        assert self._webhook is not None
        return self._webhook

    @property
    def signing_keys(self) -> dict[str, bytes]:
        return dict(self.signing_ring.keys)

    @property
    def active_kid(self) -> str:
        return self.signing_ring.active

    def _apply(self, changed: dict[str, tuple[int, bytes]], *, strict: bool = False) -> bool:
        """Take newer versions of the rings; a ring that does not parse keeps the last good one
        (``strict``: at opening, it is an error)."""
        parsed: dict[str, tuple[int, Any]] = {}
        for name, (version, plaintext) in changed.items():
            if version <= self._versions.get(name, 0):
                continue
            try:
                doc = json.loads(plaintext)
                ring = (signing_keys.ring_from(doc, self._pinned, "the database") if name == SIGNING
                        else webhook_keys.ring_from(doc, "the database"))
            except ValueError as exc:
                if strict:
                    raise SecretsError(f"{name}: {printable(str(exc), 200)}") from None
                log.error("the %s in the database do not parse (%s); keeping the previous ones", name, exc)
                continue
            parsed[name] = (version, ring)
        with self._lock:
            for name, (version, ring) in parsed.items():
                if version > self._versions.get(name, 0):
                    self._versions[name] = version
                    if name == SIGNING:
                        self._signing = ring
                    else:
                        self._webhook = ring
        return bool(parsed)

    # -- following the database

    def _reload(self, conn: Connection) -> bool:
        with conn.begin():
            versions = {r.name: r.version for r in conn.execute(select(_T.c.name, _T.c.version).where(_T.c.name.in_(RINGS)))}
        stale = tuple(n for n in RINGS if versions.get(n, 0) > self._versions.get(n, 0))
        if not stale:
            return False
        rows = _read(conn, stale)
        return self._apply({n: (r.version, _unseal(self._cipher, n, r.value)) for n, r in rows.items()})

    async def check(self, *, force: bool = False) -> bool:
        """Look at the rings' versions (at most once per ``recheck_s`` of ``clock`` unless
        ``force``) and re-read those that changed; True if a ring changed."""
        now = self._clock()
        if not force and now - self._checked < self.recheck_s:
            return False
        self._checked = now
        if self._engine is None:
            return self._reload_sync()
        async with self._engine.connect() as conn:
            return await conn.run_sync(self._reload)

    def _sync_engine(self) -> Engine:
        if self._sync is None:
            self._sync = _sync_engine(self._url)
        return self._sync

    def _reload_sync(self) -> bool:
        with self._sync_engine().connect() as conn:
            return self._reload(conn)

    def refresh_now(self) -> None:
        """For a key id not seen yet (``KeySource.refresh``, synchronous): one read, now, at most
        every ``MIN_REFRESH_S``; a failure keeps what we have."""
        now = self._clock()
        if now - self._forced < MIN_REFRESH_S:
            return
        self._forced = now
        try:
            self._reload_sync()
        except (SQLAlchemyError, SecretsError) as exc:
            log.warning("could not re-read the signing keys: %s", printable(str(exc).splitlines()[0] if str(exc) else "", 200))

    async def watch(self) -> None:
        """Follow the database until cancelled (``start`` runs this as a task)."""
        failing = False
        while True:
            try:
                await self.check(force=True)
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning("could not re-read the key rings (retrying every %.1f s): %s", self.recheck_s,
                                printable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 200))
                failing = True
            await asyncio.sleep(self.recheck_s)

    def start(self) -> asyncio.Task[None]:
        """The background re-read: a rotation reaches this process within about ``recheck_s``."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.watch(), name="secrets watcher")
        return self._task

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._sync is not None:
            self._sync.dispose()

    # -- rotation

    async def rotate_signing_key(self) -> str:
        """Add a URL-signing key and make it the newest; returns its id."""
        return await self._rotate_async(SIGNING, signing_keys.add_key)

    async def rotate_webhook_key(self, now: float | None = None) -> str:
        """Retire the webhook key in use and add one that signs from now on; returns its id."""
        return await self._rotate_async(WEBHOOK, lambda doc: webhook_keys.add_key(doc, time.time() if now is None else now))

    async def _rotate_async(self, name: str, change: Callable[[dict[str, Any]], str]) -> str:
        if self._engine is None:
            return self._rotate_sync(name, change)
        async with self._engine.connect() as conn:
            result, version, plaintext = await conn.run_sync(_rotate, self._cipher, name, change)
        self._apply({name: (version, plaintext)})
        return result

    def _rotate_sync(self, name: str, change: Callable[[dict[str, Any]], str]) -> str:
        with self._sync_engine().connect() as conn:
            result, version, plaintext = _rotate(conn, self._cipher, name, change)
        self._apply({name: (version, plaintext)})
        return result

    # -- synchronous use (CLI helpers, tools, tests)

    @classmethod
    def load(cls, settings: Settings) -> Secrets:
        """``open_secrets`` without an event loop: the database made ready first (SQLite is
        migrated when behind; PostgreSQL must be). ``check`` then reads synchronously."""
        _private_dirs(settings)
        with _READY:  # db.ready parses the migration scripts: ast.parse is not thread-safe on CPython 3.11
            db.ready(settings.db_url)
        engine = _sync_engine(settings.db_url)
        try:
            with engine.connect() as conn:
                opened = _open(conn, settings)
        finally:
            engine.dispose()
        return cls(settings, opened, None)

    @staticmethod
    def rotate(settings: Settings) -> str:
        """``rotate-signing-key``: returns the new key's id. Running servers sign with it within
        about a second (unless ``signing_key_id`` pins another)."""
        secrets = Secrets.load(settings)
        return secrets._rotate_sync(SIGNING, signing_keys.add_key)

    @staticmethod
    def rotate_webhook(settings: Settings, now: float | None = None) -> str:
        """``rotate-webhook-key``: returns the new key's id."""
        secrets = Secrets.load(settings)
        return secrets._rotate_sync(WEBHOOK, lambda doc: webhook_keys.add_key(doc, time.time() if now is None else now))


class _SigningKeys:
    """``media.signing_keys.KeySource`` over ``Secrets``."""

    def __init__(self, owner: Secrets) -> None:
        self._owner = owner

    def current(self) -> KeyRing:
        return self._owner.signing_ring

    def refresh(self) -> KeyRing:
        self._owner.refresh_now()
        return self._owner.signing_ring


class _WebhookKeys:
    """``notify.keys.WebhookKeySource`` over ``Secrets``."""

    def __init__(self, owner: Secrets) -> None:
        self._owner = owner

    def current(self) -> WebhookRing:
        return self._owner.webhook_ring


async def open_secrets(settings: Settings, engine: AsyncEngine, *, recheck_s: float = 1.0,
                       clock: Callable[[], float] = time.monotonic) -> Secrets:
    """This database's secrets, created (or imported from ``secrets.json``) by the first process
    that finds none. Raises ``WrongSecretKey`` when this process's master secret is not the one they
    were sealed with, ``SecretsError`` for other trouble (one line each). The database must be
    migrated. ``clock`` (monotonic) times ``check``'s interval; call ``start()`` to follow rotations."""
    _private_dirs(settings)
    async with engine.connect() as conn:
        opened = await conn.run_sync(_open, settings)
    return Secrets(settings, opened, engine, recheck_s=recheck_s, clock=clock)


__all__ = ["KEY_FILE", "Secrets", "SecretsError", "WrongSecretKey", "open_secrets"]
