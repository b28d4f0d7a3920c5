"""``/console``: the operator and key-holder console, served by the server itself (no CDN, no
build step), and the operator's session endpoints.

- ``GET /console`` → 307 to the relative ``console/`` (so a path prefix behind a reverse proxy
  is kept); ``GET /console/`` → ``static/index.html``; ``GET /console/static/<file>`` → the
  package's static files, ``Cache-Control: no-cache`` with an ``ETag`` (304 on a match).
- ``GET /console/api/config`` → ``{"operator_enabled", "session_hours"}``.
- ``POST /console/api/session`` (JSON ``{"admin_token"}``) signs an operator in: a session row,
  an ``ideohub_console`` cookie (HttpOnly, SameSite=Strict, Path=/, Secure over https) and
  ``{"role": "operator", "csrf_token", "expires_at"}``; at most ``console_signin_per_minute``
  attempts per client address (the shared limiter: Redis on a fleet) → 429 + Retry-After.
- ``GET /console/api/session`` → the same answer for a valid session, else 401.
- ``DELETE /console/api/session`` (with ``X-CSRF-Token``) ends it and clears the cookie → 204.

Every answer here carries the console's security headers (a strict Content-Security-Policy,
``nosniff``, ``no-referrer``, no framing). Key holders sign in in the page only: their key stays
in page memory and is sent as ``Api-Key`` to the image and account APIs, which never read cookies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Match

from ..config import Settings
from ..domain.errors import (IdeohubError, InvalidRequest, NotFound, Unauthorized,
                             UnsupportedMediaType)
from ..api.problems import error_response, problem
from .auth import (COOKIE_NAME, cross_site_denial, csrf_denial, session_cookie, sessions_of, token_attempt_denial,
                   wall_now)
from .sessions import ConsoleSessions

log = logging.getLogger("ideohub.console")

STATIC_DIR = Path(__file__).parent / "static"
MAX_STATIC_BYTES = 8 * 1024 * 1024
OPERATOR_DISABLED = "the operator console is disabled: no admin_token is configured"
NO_SESSION = "no operator console session: sign in with the admin token"
EXPIRED_SESSION = "the console session has expired or ended (or admin_token changed): sign in again"
MAX_ADMIN_TOKEN_CHARS = 4096

CSP = ("default-src 'self'; img-src 'self' blob: data:{img}; script-src 'self'; style-src 'self'; "
       "connect-src 'self'{connect}; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".map": "application/json", ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon", ".webp": "image/webp",
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".woff2": "font/woff2", ".woff": "font/woff",
}


# ------------------------------------------------------------ security headers on every answer


def _origin(url: str | None) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL (never its user:password), or None."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        port = parts.port
    except ValueError:  # not a number
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def image_origins(settings: Settings) -> list[str]:
    """Where result images may come from besides this server: the object store, when images are
    delivered as redirects to presigned URLs (``image_delivery = "redirect"``)."""
    if settings.image_delivery != "redirect" or not (settings.storage_url or "").startswith("s3://"):
        return []
    if settings.s3_endpoint_url:
        store = _origin(settings.s3_endpoint_url)
        return [store, store.replace("://", "://*.", 1)] if store else []
    return ["https://*.amazonaws.com"]


def security_headers(settings: Settings) -> dict[str, str]:
    stores = "".join(" " + o for o in image_origins(settings))
    # links are signed for public_base_url: the page may be opened at another address (a tunnel)
    signed = _origin(settings.base_url)
    return {
        "Content-Security-Policy": CSP.format(img=(f" {signed}" if signed else "") + stores, connect=stores),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


class ConsoleRoute(APIRoute):
    """Every answer of a console route, errors included, gets the security headers, and
    ``Cache-Control: no-store`` unless the route chose its own."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_headers(request: Request) -> Response:
            try:
                response = await handler(request)
            except IdeohubError as exc:
                response = error_response(exc)
            except StarletteHTTPException as exc:
                response = problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))
            for name, value in security_headers(request.app.state.ideohub.settings).items():
                response.headers[name] = value
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return with_headers


router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


# ------------------------------------------------------------ pages and static files


@router.api_route("/console", methods=["GET", "HEAD"])
async def console_root() -> Response:
    # relative, so /prefix/console → /prefix/console/ behind a reverse proxy
    return RedirectResponse("console/", status_code=307)


@router.api_route("/console/", methods=["GET", "HEAD"])
async def console_index(request: Request) -> Response:
    return await _static(request, "index.html")


@router.api_route("/console/static/{path:path}", methods=["GET", "HEAD"])
async def console_static(request: Request, path: str) -> Response:
    return await _static(request, path)


@dataclass(frozen=True)
class _Asset:
    mtime_ns: int
    size: int
    body: bytes
    etag: str


_assets: dict[Path, _Asset] = {}  # a fixed set of package files: bounded by what ships


def _resolve(path: str) -> Path | None:
    """The file under ``STATIC_DIR`` that ``path`` names, or None: no empty, dot or hidden segment,
    no backslash or NUL, and (after symlinks) still inside the directory."""
    if not path or len(path) > 200 or "\\" in path or "\0" in path:
        return None
    segments = path.split("/")
    if any(not s or s.startswith(".") for s in segments):
        return None
    root = STATIC_DIR.resolve()
    candidate = (root / path).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def _load(file: Path) -> _Asset | None:
    stat = file.stat()
    if stat.st_size > MAX_STATIC_BYTES:
        return None
    cached = _assets.get(file)
    if cached is not None and (cached.mtime_ns, cached.size) == (stat.st_mtime_ns, stat.st_size):
        return cached
    body = file.read_bytes()
    asset = _Asset(stat.st_mtime_ns, stat.st_size, body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    _assets[file] = asset
    return asset


async def _static(request: Request, path: str) -> Response:
    file = _resolve(path)
    asset = await anyio.to_thread.run_sync(_load, file) if file is not None else None
    if file is None or asset is None:
        raise NotFound(f"path: no console file {path[:100]!r}")
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache"}
    tags = [t.strip() for t in request.headers.get("if-none-match", "").split(",")]
    if asset.etag in tags or "*" in tags:
        return Response(status_code=304, headers=headers)
    media_type = MEDIA_TYPES.get(file.suffix.lower(), "application/octet-stream")
    return Response(asset.body if request.method != "HEAD" else b"", media_type=media_type,
                    headers={**headers, "Content-Length": str(asset.size)})


# ------------------------------------------------------------ the operator's session


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    admin_token: str = Field(min_length=1, max_length=MAX_ADMIN_TOKEN_CHARS)


def _session_body(csrf_token: str, expires_at: Any) -> dict[str, str]:
    return {"role": "operator", "csrf_token": csrf_token,
            "expires_at": expires_at.isoformat().replace("+00:00", "Z")}


def _cookie_path(request: Request, settings: Settings) -> str:
    """Where the browser sends the session cookie: under ``public_base_url``'s path prefix when the
    page was reached through that address (a reverse proxy publishing ideohub at /hub: other apps on
    the same host never see the cookie), else the whole host (the server opened directly)."""
    public = urlsplit(settings.public_base_url or "")
    prefix = public.path.rstrip("/")
    if not prefix or _origin(request.headers.get("origin")) != _origin(settings.public_base_url):
        return "/"
    return prefix


def _secure(request: Request, settings: Settings) -> bool:
    """Secure cookies when the browser talks https: the request's scheme (a trusted proxy's
    ``X-Forwarded-Proto`` included) or the configured public address."""
    return request.url.scheme == "https" or settings.base_url.startswith("https://")


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _sessions(request: Request) -> ConsoleSessions:
    sessions = sessions_of(request.app.state.ideohub)
    assert sessions is not None  # the lifespan opened the state before any request
    return sessions


def _sign_in_fields(request: Request, raw: bytes) -> SignIn:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaType("Content-Type", 'must be application/json: {"admin_token": "..."}')
    try:
        return SignIn.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "body"
        if first.get("type") == "json_invalid":
            raise InvalidRequest("body", 'must be a JSON object: {"admin_token": "..."}') from None
        raise InvalidRequest(field, first.get("msg", "is not valid")) from None


@router.get("/console/api/config")
async def console_config(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.ideohub.settings
    return JSONResponse({"operator_enabled": bool(settings.admin_token),
                         "session_hours": settings.console_session_hours})


@router.post("/console/api/session")
async def sign_in(request: Request) -> JSONResponse:
    state = request.app.state.ideohub
    settings: Settings = state.settings
    if not settings.admin_token:
        raise NotFound(OPERATOR_DISABLED)
    denial = cross_site_denial(settings, request.headers, request.url.scheme)
    if denial is not None:
        raise denial
    fields = _sign_in_fields(request, await request.body())
    limited = await token_attempt_denial(state, _client(request), count=True)  # right or wrong, every sign-in counts
    if limited is not None:
        raise limited
    sessions = _sessions(request)
    if not _same_token(sessions, fields.admin_token, settings.admin_token):
        log.warning('{"console": "operator sign-in refused", "client": %s}', json.dumps(_client(request)))
        raise Unauthorized("admin_token: this is not the admin token configured on this server")
    old = session_cookie(request.headers.get("cookie"))
    if old is not None:
        await sessions.end(old)
    opened = await sessions.open(fields.admin_token, settings.console_session_hours, wall_now(request),
                                 _client(request))
    log.info('{"console": "operator signed in", "client": %s}', json.dumps(_client(request)))
    response = JSONResponse(_session_body(opened.csrf_token, opened.expires_at))
    response.set_cookie(COOKIE_NAME, opened.cookie, max_age=int(settings.console_session_hours * 3600),
                        path=_cookie_path(request, settings), secure=_secure(request, settings), httponly=True,
                        samesite="strict")
    return response


def _same_token(sessions: ConsoleSessions, presented: str, configured: str) -> bool:
    """Constant-time, and blind to the length of the real token: the HMACs are compared."""
    return hmac.compare_digest(sessions.admin_fingerprint(presented), sessions.admin_fingerprint(configured))


@router.get("/console/api/session")
async def current_session(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.ideohub.settings
    cookie = session_cookie(request.headers.get("cookie"))
    if cookie is None:
        raise Unauthorized(NO_SESSION if settings.admin_token else OPERATOR_DISABLED)
    denial = cross_site_denial(settings, request.headers, request.url.scheme)
    if denial is not None:
        raise denial
    active = await _sessions(request).active(cookie, settings.admin_token, wall_now(request))
    if active is None:
        raise Unauthorized(EXPIRED_SESSION)
    return JSONResponse(_session_body(active.csrf_token, active.expires_at))


@router.delete("/console/api/session")
async def sign_out(request: Request) -> Response:
    settings: Settings = request.app.state.ideohub.settings
    cookie = session_cookie(request.headers.get("cookie"))
    if cookie is not None:
        sessions = _sessions(request)
        denial = cross_site_denial(settings, request.headers, request.url.scheme) or \
            csrf_denial(request.method, request.headers, cookie, sessions)
        if denial is not None:
            raise denial
        await sessions.end(cookie)
    response = Response(status_code=204)
    for path in sorted({"/", _cookie_path(request, settings)}):  # wherever sign-in put it
        response.delete_cookie(COOKIE_NAME, path=path, secure=_secure(request, settings), httponly=True,
                               samesite="strict")
    return response


# ------------------------------------------------------------ anything else under /console


@router.api_route("/console/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def console_other(request: Request, rest: str) -> Response:
    """404, or 405 with ``Allow`` for a console path asked with a method it does not take."""
    allowed = {m for route in router.routes if isinstance(route, APIRoute) and route.endpoint is not console_other
               and route.matches(request.scope)[0] is Match.PARTIAL for m in route.methods}
    if allowed:
        allow = ", ".join(sorted(allowed))
        return problem(405, f"method: {request.method} is not allowed on {request.url.path[:100]}; allowed: {allow}",
                       headers={"Allow": allow})
    raise NotFound(f"path: no console page or API at {request.url.path[:100]}")
