"""The server-side store of operator console sessions, in the database so every instance of a
fleet honours a session any of them opened.

The browser holds a random 32-byte cookie; the database holds only HMAC-SHA256 of it under the
key pepper (``id_hash``, as API keys are stored), so a leaked table signs nobody in. The CSRF
token is derived from the cookie (another HMAC under the pepper, with its own label): any
instance can recompute it, it is never stored, and it cannot be computed without the pepper.
``admin_fingerprint`` is the HMAC of the admin token the session was opened with: a session
is valid only while it matches the token configured now, so changing ``admin_token`` ends every
session at once.

Expiry is absolute (``console_session_hours`` from sign-in, not sliding). Expired rows are
refused at once and deleted at the next sign-in (sign-ins are rate-limited, so the table stays
small), or by ``delete_expired`` from a sweeper.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..store.models import ConsoleSession

COOKIE_BYTES = 32
MAX_COOKIE_CHARS = 64  # token_urlsafe(32) is 43 characters; anything longer is not ours
LAST_SEEN_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often per session


def _aware(dt: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Opened:
    """A new session: ``cookie`` goes to the browser once (Set-Cookie), never anywhere else."""

    cookie: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class Active:
    """A session that is valid now."""

    csrf_token: str
    expires_at: datetime


class ConsoleSessions:
    def __init__(self, session: async_sessionmaker[AsyncSession], pepper: bytes) -> None:
        self._session = session
        self._pepper = pepper

    # ------------------------------------------------------------ derivations (no database)

    def _mac(self, label: bytes, value: str) -> bytes:
        return hmac.new(self._pepper, label + b"\0" + value.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def id_hash(self, cookie: str) -> str:
        return self._mac(b"ideohub-console-session", cookie).hex()

    def csrf_token(self, cookie: str) -> str:
        return base64.urlsafe_b64encode(self._mac(b"ideohub-console-csrf", cookie)).rstrip(b"=").decode()

    def admin_fingerprint(self, admin_token: str) -> str:
        return self._mac(b"ideohub-console-admin-token", admin_token).hex()

    def csrf_matches(self, cookie: str, presented: str | None) -> bool:
        """Constant-time comparison of a presented ``X-CSRF-Token`` with the session's."""
        if not presented:
            return False
        return hmac.compare_digest(self.csrf_token(cookie).encode(), presented.encode("utf-8", "surrogatepass"))

    # ------------------------------------------------------------ the store

    async def open(self, admin_token: str, hours: float, now: datetime, client: str | None) -> Opened:
        """A new session for a caller who presented ``admin_token``; expired rows go first."""
        cookie = secrets.token_urlsafe(COOKIE_BYTES)
        expires_at = now + timedelta(hours=hours)
        async with self._session.begin() as s:
            await s.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
            s.add(ConsoleSession(id_hash=self.id_hash(cookie), admin_fingerprint=self.admin_fingerprint(admin_token),
                                 created_at=now, expires_at=expires_at, last_seen_at=now,
                                 client=(client or "")[:64] or None))
        return Opened(cookie, self.csrf_token(cookie), expires_at)

    async def active(self, cookie: str, admin_token: str | None, now: datetime) -> Active | None:
        """The session behind ``cookie`` if it exists, has not expired and was opened with the
        admin token configured now; else None. Marks it seen (at most once a minute)."""
        if not cookie or len(cookie) > MAX_COOKIE_CHARS or not admin_token:
            return None
        digest = self.id_hash(cookie)
        async with self._session() as s:
            row = await s.scalar(select(ConsoleSession).where(ConsoleSession.id_hash == digest))
        if row is None or _aware(row.expires_at) <= now:
            return None
        if not hmac.compare_digest(row.admin_fingerprint, self.admin_fingerprint(admin_token)):
            return None
        if now - _aware(row.last_seen_at) >= LAST_SEEN_EVERY:
            async with self._session.begin() as s:
                await s.execute(update(ConsoleSession).where(ConsoleSession.id_hash == digest)
                                .values(last_seen_at=now))
        return Active(self.csrf_token(cookie), _aware(row.expires_at))

    async def end(self, cookie: str) -> bool:
        """Sign-out: the row goes; True when there was one."""
        if not cookie or len(cookie) > MAX_COOKIE_CHARS:
            return False
        async with self._session.begin() as s:
            result = await s.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == self.id_hash(cookie)))
            return bool(result.rowcount)

    async def delete_expired(self, now: datetime) -> int:
        return await delete_expired(self._session, now)


async def delete_expired(session: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """For a sweeper (no pepper needed): removes the sessions past their expiry; returns how many."""
    async with session.begin() as s:
        result = await s.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
        return int(result.rowcount or 0)
