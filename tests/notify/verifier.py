"""A webhook verifier written from Ideogram's documentation alone (the spec's §1.3), the way a
customer would write one: it shares no code with ideohub's signer.

1. Fetch the JWKS from ``GET {base}/v1/.well-known/jwks.json``: OKP / Ed25519 keys, ``x`` the
   32-byte public key in base64url without padding.
2. Rebuild ``<Generation-Id>\\n<User-Id>\\n<Timestamp>\\n<sha256 hex of the raw body>`` from the
   ``X-Ideogram-Webhook-*`` headers and the body exactly as received.
3. Verify the lowercase-hex Ed25519 signature, trying the ``Key-Id`` key first, then every key.
"""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

URL_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


class NotAuthentic(AssertionError):
    pass


def fetch_jwks(base_url: str) -> dict:
    r = httpx.get(base_url.rstrip("/") + "/v1/.well-known/jwks.json", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _public_key(jwk: dict) -> Ed25519PublicKey:
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise NotAuthentic(f"not an Ed25519 key: {jwk}")
    x = jwk["x"]
    if "=" in x or not URL_SAFE_ID.match(x):
        raise NotAuthentic("x must be base64url without padding")
    raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
    if len(raw) != 32:
        raise NotAuthentic("x must be a 32-byte key")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(headers: dict[str, str], body: bytes, jwks: dict) -> str:
    """The ``kid`` whose key verifies this delivery; ``NotAuthentic`` otherwise. ``headers``
    with lower-case names."""
    if headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise NotAuthentic(f"Content-Type is {headers.get('content-type')!r}")
    generation_id = headers["x-ideogram-webhook-generation-id"]
    user_id = headers["x-ideogram-webhook-user-id"]
    timestamp = headers["x-ideogram-webhook-timestamp"]
    key_id = headers["x-ideogram-webhook-key-id"]
    signature = headers["x-ideogram-webhook-signature"]
    if not (URL_SAFE_ID.match(generation_id) and URL_SAFE_ID.match(user_id)):
        raise NotAuthentic("generation and user ids must be URL-safe base64")
    if not timestamp.isdigit():
        raise NotAuthentic("the timestamp must be decimal unix seconds")
    if not re.fullmatch(r"[0-9a-f]{128}", signature):
        raise NotAuthentic("the signature must be 64 bytes of lowercase hex")
    signed = "\n".join([generation_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode("utf-8")
    keys = sorted(jwks["keys"], key=lambda k: k.get("kid") != key_id)  # the hinted key first
    for jwk in keys:
        try:
            _public_key(jwk).verify(bytes.fromhex(signature), signed)
            return jwk["kid"]
        except InvalidSignature:
            continue
    raise NotAuthentic(f"no key in the JWKS verifies this delivery (Key-Id {key_id})")
