"""``GET /v1/.well-known/jwks.json`` (and ``/ideogram/v1/...``): the public keys our webhooks are
signed with, as Ideogram's ``WebhookSigningJwks`` — the key in use and those retired in the last
7 days. No authentication (Ideogram's has ``security: []``): public keys only."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

PATHS = ("/v1/.well-known/jwks.json", "/ideogram/v1/.well-known/jwks.json")
CACHE_S = 300  # receivers refetch after a failed verification anyway (Ideogram: cache up to 24 h)

router = APIRouter()


async def webhook_signing_jwks(request: Request) -> JSONResponse:
    webhooks = request.app.state.webhooks
    return JSONResponse(webhooks.jwks(), headers={"Cache-Control": f"public, max-age={CACHE_S}"})


for _path in PATHS:
    router.add_api_route(_path, webhook_signing_jwks, methods=["GET"], include_in_schema=_path == PATHS[0],
                         name=f"jwks:{_path}")
