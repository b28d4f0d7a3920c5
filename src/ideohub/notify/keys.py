"""The webhook-signing key ring (Ed25519): which keys exist, which one signs, which are
published, and how a key is added.

The ring is a document ``{"webhook_keys": [...]}``, oldest first, of ``{"kid", "private" (hex of
the 32-byte seed), "created", "retired"}`` (unix seconds; ``retired`` null for the key in use),
kept sealed in the database with the other secrets (``store.secrets``, which creates it, rotates
it and imports the same field from an earlier version's ``secrets.json``). ``add_key`` retires the
key in use and adds a new one; a retired key stays published (``GET /v1/.well-known/jwks.json``)
for ``RETIRED_PUBLISHED_S`` (7 days), so receivers verify webhooks signed just before a rotation,
then drops out (and is removed from the ring at the next rotation).

Callers see the ring only through ``WebhookKeySource.current()``: on a server,
``Secrets.webhook_key_source``, which follows a rotation by the CLI within about a second,
without a restart.

Private keys never leave this module except as ``Ed25519PrivateKey`` objects; ``repr`` of a key
shows its id only.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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


def ring_from(data: dict[str, Any], where: str = "the database") -> WebhookRing:
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


class StaticWebhookKeys:
    """A fixed ring (tests, tools)."""

    def __init__(self, ring: WebhookRing) -> None:
        self._ring = ring

    def current(self) -> WebhookRing:
        return self._ring


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
    "WebhookKeySource",
    "WebhookRing",
    "add_key",
    "new_static_ring",
    "ring_from",
]
