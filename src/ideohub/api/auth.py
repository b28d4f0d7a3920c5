"""API-key authentication: ``Authorization: Bearer KEY`` (relays) or ``Api-Key: KEY`` (official),
treated the same. The header name is case-insensitive (``api-key`` works too)."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from ..domain.errors import IdeohubError
from ..store.models import ApiKey
from ..store.repository import Repository


class AuthFailed(IdeohubError):
    """401 on most endpoints; the spec answers 403 on /remix, /upscale and V3 remix."""

    def __init__(self, detail: str, status: int = 401) -> None:
        super().__init__(detail)
        self.status = status
        self.title = "Unauthorized" if status == 401 else "Forbidden"


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (scheme case-insensitive), or None."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def bearer_matches(authorization: str | None, secret: str) -> bool:
    """Whether the header presents ``secret`` as a bearer token: constant-time, and blind to the
    secret's length (digests of equal size are compared)."""
    token = bearer_token(authorization)
    return token is not None and hmac.compare_digest(hashlib.sha256(token.encode()).digest(),
                                                     hashlib.sha256(secret.encode()).digest())


def presented_key(request: Request) -> str | None:
    token = bearer_token(request.headers.get("authorization"))
    if token is not None:
        return token
    key = request.headers.get("api-key")
    return key.strip() if key and key.strip() else None


async def authenticate(request: Request, repo: Repository, status: int = 401) -> ApiKey:
    key = presented_key(request)
    if key is None:
        raise AuthFailed("missing API key: send 'Api-Key: <key>' or 'Authorization: Bearer <key>'", status)
    row = await repo.authenticate(key)
    if row is None:
        raise AuthFailed("the API key is not valid or has been revoked", status)
    return row
