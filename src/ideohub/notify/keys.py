"""The webhook-signing key ring (Ed25519): which keys exist, which one signs, which are
published, how a key is added, and how a running server notices a key added by another process.

The ring lives with the other secrets, in ``secrets.json``, as ``webhook_keys``: a list, oldest
first, of ``{"kid", "private" (hex of the 32-byte seed), "created", "retired"}`` (unix seconds;
``retired`` null for the key in use). It is created on first use. ``rotate`` retires the key in
use and adds a new one; a retired key stays published (``GET /v1/.well-known/jwks.json``) for
``RETIRED_PUBLISHED_S`` (7 days), so receivers verify webhooks signed just before a rotation,
then drops out (and is removed from the file at the next rotation).

Callers see the ring only through ``WebhookKeySource.current()``: a later issue moves secrets
into the database without changing them. ``WebhookKeyFile`` re-reads the file when its identity
(inode, size, mtime) changes, looking at most once per ``recheck_s``: a rotation by the CLI is
signed with within about a second, without a restart.

Private keys never leave this module except as ``Ed25519PrivateKey`` objects; ``repr`` of a key
shows its id only.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..filewatch import WatchedFile, locked

FIELD = "webhook_keys"
RETIRED_PUBLISHED_S = 7 * 24 * 3600  # a retired key stays in the JWKS this long
_NUMBERED = re.compile(r"^wh(\d+)$")


@dataclass(frozen=True)
class WebhookKey:
    kid: str
    created: float
    retired: float | None
    private: Ed25519PrivateKey = field(repr=False, compare=False)

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def published_at(self, now: float) -> bool:
        return self.retired is None or now - self.retired < RETIRED_PUBLISHED_S

    def jwk(self) -> dict[str, str]:
        """RFC 8037 OKP public key, as Ideogram's ``WebhookSigningJwk``."""
        x = base64.urlsafe_b64encode(self.public_raw).rstrip(b"=").decode("ascii")
        return {"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": self.kid, "x": x}

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)


@dataclass(frozen=True)
class WebhookRing:
    keys: tuple[WebhookKey, ...]  # oldest first

    @property
    def active(self) -> WebhookKey:
        """The key that signs: the newest one."""
        return self.keys[-1]

    def published(self, now: float) -> list[WebhookKey]:
        """The keys a receiver may need, newest first: the active one and those retired in the
        last 7 days."""
        return [k for k in reversed(self.keys) if k is self.active or k.published_at(now)]

    def jwks(self, now: float) -> dict[str, Any]:
        return {"keys": [k.jwk() for k in self.published(now)]}


class WebhookKeySource(Protocol):
    def current(self) -> WebhookRing: ...


# ---------------------------------------------------------------- the document form


def _new_entry(kid: str, now: float) -> dict[str, Any]:
    seed = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return {"kid": kid, "private": seed.hex(), "created": now, "retired": None}


def ring_from(data: dict[str, Any], where: str = "secrets.json") -> WebhookRing:
    entries = data.get(FIELD) or []
    if not entries:
        raise ValueError(f"{where} holds no webhook signing keys")
    keys = []
    for e in entries:
        try:
            private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(e["private"]))
            keys.append(WebhookKey(str(e["kid"]), float(e["created"]),
                                   None if e.get("retired") is None else float(e["retired"]), private))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: a webhook signing key is malformed") from None
    return WebhookRing(tuple(keys))


def add_key(data: dict[str, Any], now: float) -> str:
    """Retire the key in use, add a new one, and forget keys no longer published; returns the
    new key's id (``wh<n+1>``)."""
    entries: list[dict[str, Any]] = list(data.get(FIELD) or [])
    for e in entries:
        if e.get("retired") is None:
            e["retired"] = now
    numbers = [int(m.group(1)) for e in entries if (m := _NUMBERED.match(str(e.get("kid"))))]
    kid = f"wh{max(numbers, default=0) + 1}"
    kept = [e for e in entries if now - float(e["retired"]) < RETIRED_PUBLISHED_S]
    data[FIELD] = [*kept, _new_entry(kid, now)]
    return kid


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _write(path: Path, data: dict[str, Any]) -> None:
    from ..config import _replace_private  # the one writer of secrets.json (0600, atomic replace)

    _replace_private(path, data)


def ensure(path: Path, now: float | None = None) -> None:
    """Create the ring on first use (two processes starting at once create one)."""
    if _read(path).get(FIELD):
        return
    with locked(path):
        data = _read(path)
        if not data.get(FIELD):
            data[FIELD] = [_new_entry("wh1", time.time() if now is None else now)]
            _write(path, data)


def rotate(path: Path, now: float | None = None) -> str:
    """Add a key and make it the one that signs; the previous one is retired (still published
    for 7 days). Serialised with every other writer of ``path``."""
    ensure(path, now)
    with locked(path):
        data = _read(path)
        kid = add_key(data, time.time() if now is None else now)
        _write(path, data)
    return kid


class StaticWebhookKeys:
    """A fixed ring (tests, tools)."""

    def __init__(self, ring: WebhookRing) -> None:
        self._ring = ring

    def current(self) -> WebhookRing:
        return self._ring


class WebhookKeyFile(WatchedFile[WebhookRing]):
    """The ring in ``secrets.json`` (created if missing), re-read when the file changes.
    ``clock`` is the monotonic clock of the re-check interval (injectable for tests)."""

    def __init__(self, path: Path, *, recheck_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        ensure(Path(path))
        super().__init__(path, lambda p: ring_from(_read(p), str(p)), recheck_s=recheck_s, clock=clock)


def new_static_ring(count: int = 1, now: float | None = None) -> WebhookRing:
    """A ring of fresh keys held only in memory (tests, tools)."""
    data: dict[str, Any] = {}
    moment = time.time() if now is None else now
    for _ in range(count):
        add_key(data, moment)
    return ring_from(data)


__all__ = [
    "FIELD",
    "RETIRED_PUBLISHED_S",
    "StaticWebhookKeys",
    "WebhookKey",
    "WebhookKeyFile",
    "WebhookKeySource",
    "WebhookRing",
    "add_key",
    "ensure",
    "new_static_ring",
    "ring_from",
    "rotate",
]
