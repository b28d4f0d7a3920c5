"""Ideogram's webhook signature, exactly: Ed25519 over

    <generation_id> \\n <user_id> \\n <timestamp> \\n <sha256 hex of the raw body>

(UTF-8, single ``\\n``, lowercase hex digest), sent as lowercase hex in
``X-Ideogram-Webhook-Signature`` with the ``-Generation-Id``, ``-User-Id``, ``-Timestamp``
(unix seconds, decimal) and ``-Key-Id`` headers. Every attempt is signed afresh, with the time
of that attempt, so a receiver may reject old timestamps without rejecting our retries.

Task callbacks (the resellers' dialect, where Kling signs nothing) carry the same headers: a
receiver that wants to verify them can, and one that does not ignores them.
"""

from __future__ import annotations

import base64
import hashlib

from .keys import WebhookRing

PREFIX = "X-Ideogram-Webhook-"


def user_id(account_id: str) -> str:
    """A stable, URL-safe base64 id (22 characters) for an account, as Ideogram's user ids look;
    derived (one-way) so that our internal account ids are not what receivers see."""
    digest = hashlib.sha256(b"ideohub-webhook-user\x00" + account_id.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


def message(generation_id: str, user: str, timestamp: int, body: bytes) -> bytes:
    return f"{generation_id}\n{user}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


def headers(ring: WebhookRing, generation_id: str, user: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The signed headers for one attempt (with the ring's active key)."""
    key = ring.active
    signature = key.sign(message(generation_id, user, timestamp, body)).hex()
    return {
        "Content-Type": "application/json",
        PREFIX + "Generation-Id": generation_id,
        PREFIX + "User-Id": user,
        PREFIX + "Timestamp": str(timestamp),
        PREFIX + "Key-Id": key.kid,
        PREFIX + "Signature": signature,
    }
