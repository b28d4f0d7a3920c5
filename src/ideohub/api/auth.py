"""API-key authentication: ``Authorization: Bearer KEY`` (relays) or ``Api-Key: KEY`` (official),
treated the same. The header name is case-insensitive (``api-key`` works too)."""

from __future__ import annotations

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


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
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
