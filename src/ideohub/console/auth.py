"""Who may call the admin API: ``Authorization: Bearer <admin_token>`` (scripts) or the operator
console's session cookie (browsers), decided in one place for every ``/admin`` route.

- No ``admin_token`` configured: 404, the admin API is disabled.
- An ``Authorization`` header decides alone when present (Bearer wins over a cookie): it must be
  the admin token (constant-time comparison); no CSRF check applies, since browsers never attach
  it by themselves.
- Else the ``ideohub_console`` cookie: refused (403) when the request says it comes from another
  site (``Sec-Fetch-Site: cross-site``, or an ``Origin`` that is not this server's), and, for any
  method but GET and HEAD, unless ``X-CSRF-Token`` equals the session's token. Then the session
  must exist in the database, be unexpired and have been opened with today's admin token (401).

``precheck`` is everything but the database lookup; ``BodyLimitMiddleware`` runs it before a
request body is read, so it never refuses what ``operator_denial`` would accept.

Guesses at the admin token are limited per client address (an IPv6 /64), wherever they are made
(``token_attempt_denial``): every console sign-in counts, and every wrong ``Bearer`` on ``/admin``.
A right ``Bearer`` counts nothing (scripts are not slowed) but is refused too while the address is
locked out, so a 429 tells a guesser nothing about the token.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request, cookie_parser

from ..api.auth import bearer_matches
from ..api.server import client_key
from ..config import Settings
from ..domain.errors import Forbidden, IdeohubError, NotFound, RateLimited, Unauthorized
from .sessions import Active, ConsoleSessions

COOKIE_NAME = "ideohub_console"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD"})
ADMIN_DISABLED = "the admin API is disabled: set admin_token in the config"
NEEDS_AUTH = ("admin endpoints need 'Authorization: Bearer <admin token>' or an operator console session "
              "(sign in at /console/)")
SESSION_INVALID = "the console session has expired or ended (or admin_token changed): sign in again at /console/"
_DEFAULT_PORTS = {"http": "80", "https": "443"}


async def token_attempt_denial(state: Any, host: str | None, count: bool) -> IdeohubError | None:
    """A 429 when ``host`` has used up its ``console_signin_per_minute`` admin-token attempts
    (``count``: this attempt is one of them), else None. The limiter is shared by a fleet when it
    is Redis; Redis unreachable is a 503, never a pass."""
    service = getattr(state, "service", None)
    if service is None:
        return None
    per_minute = state.settings.console_signin_per_minute
    try:
        await service.limiter.hit(f"console-signin:{client_key(host or 'unknown')}", per_minute, 60.0, count=count)
    except RateLimited as exc:
        return RateLimited(f"admin token: at most {per_minute} attempts per minute from one address; "
                           f"try again in {exc.retry_after} s", exc.retry_after)
    except IdeohubError as exc:  # SharedStateUnavailable: answered here, the middleware has no handler
        return exc
    return None


@dataclass(frozen=True)
class Precheck:
    """``denial``: refused without a database lookup; else ``cookie`` (a session to look up) or
    neither (the Bearer admin token was accepted). ``bearer``: an ``Authorization`` header decided
    (an attempt at the admin token, for ``token_attempt_denial``)."""

    denial: IdeohubError | None = None
    cookie: str | None = None
    bearer: bool = False


def session_cookie(cookie_header: str | None) -> str | None:
    """The console cookie's value from a ``Cookie`` header, or None."""
    if not cookie_header:
        return None
    value = cookie_parser(cookie_header).get(COOKIE_NAME)
    return value or None


def _origin(scheme: str, netloc: str) -> str | None:
    """``scheme://host[:port]`` as browsers write an Origin (lower case, no default port), or None."""
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS or not netloc or "@" in netloc:
        return None
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" if port is None or str(port) == _DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{port}"


def own_origins(settings: Settings, scheme: str, host: str | None) -> set[str]:
    """This server's origins: the one in ``base_url`` (``public_base_url``), and the one the
    request was addressed to (its scheme, after a trusted proxy's ``X-Forwarded-Proto``, and ``Host``)."""
    base = urlsplit(settings.base_url)
    origins = {_origin(base.scheme, base.netloc), _origin(scheme, host or "")}
    origins.discard(None)
    return origins  # type: ignore[return-value]


def cross_site_denial(settings: Settings, headers: Mapping[str, str], scheme: str) -> Forbidden | None:
    """403 when a request carrying the console cookie says it was made by another site."""
    if (headers.get("sec-fetch-site") or "").strip().lower() == "cross-site":
        return Forbidden("Sec-Fetch-Site: a cross-site request may not use the console session")
    origin = headers.get("origin")
    if origin is not None:
        try:
            parts = urlsplit(origin.strip())
            presented = _origin(parts.scheme, parts.netloc) if not parts.path and not parts.query else None
        except ValueError:  # e.g. an unclosed "[" of an IPv6 address
            presented = None
        if presented is None or presented not in own_origins(settings, scheme, headers.get("host")):
            return Forbidden(f"Origin: {origin[:100]!r} is not this server's origin; the console session is "
                             "accepted from this server's own pages only (behind a proxy, set public_base_url "
                             "to the address browsers use)")
    return None


def csrf_denial(method: str, headers: Mapping[str, str], cookie: str,
                sessions: ConsoleSessions | None) -> Forbidden | None:
    """403 for a change (not GET/HEAD) without the session's ``X-CSRF-Token``. Without ``sessions``
    (no pepper at hand) only its presence is checked."""
    if method.upper() in SAFE_METHODS:
        return None
    presented = headers.get(CSRF_HEADER)
    if not presented:
        return Forbidden("X-CSRF-Token: a change made with the console session needs this header, "
                         "set to the csrf_token of the sign-in answer")
    if sessions is not None and not sessions.csrf_matches(cookie, presented):
        return Forbidden("X-CSRF-Token: does not match this console session's token")
    return None


def precheck(settings: Settings, method: str, headers: Mapping[str, str], scheme: str,
             sessions: ConsoleSessions | None = None) -> Precheck:
    """Every rule but the session lookup (see the module's docstring); ``headers`` by lower-case name."""
    token = settings.admin_token
    if not token:
        return Precheck(NotFound(ADMIN_DISABLED))
    authorization = headers.get("authorization")
    if authorization is not None and authorization.strip():
        if bearer_matches(authorization, token):
            return Precheck(bearer=True)
        return Precheck(Unauthorized(NEEDS_AUTH), bearer=True)
    cookie = session_cookie(headers.get("cookie"))
    if cookie is None:
        return Precheck(Unauthorized(NEEDS_AUTH))
    denial = cross_site_denial(settings, headers, scheme) or csrf_denial(method, headers, cookie, sessions)
    return Precheck(denial, None if denial else cookie)


def sessions_of(state: Any) -> ConsoleSessions | None:
    """The session store of an app's state (``api.app.AppState``), or None before it is open."""
    repo, secrets = getattr(state, "repo", None), getattr(state, "secrets", None)
    if repo is None or secrets is None:
        return None
    return ConsoleSessions(repo.session, secrets.key_pepper)


def wall_now(request: Request) -> datetime:
    """Now, from the app's injected wall clock (``app.state.wall_clock``, unix seconds) if a test set one."""
    clock = getattr(request.app.state, "wall_clock", None) or time.time
    return datetime.fromtimestamp(clock(), UTC)


async def active_session(request: Request, cookie: str) -> Active | None:
    state = request.app.state.ideohub
    sessions = sessions_of(state)
    if sessions is None:
        return None
    return await sessions.active(cookie, state.settings.admin_token, wall_now(request))


async def operator_denial(request: Request) -> IdeohubError | None:
    """Why this request may not use the admin API, or None when it may (see the module's docstring)."""
    state = request.app.state.ideohub
    checked = precheck(state.settings, request.method, request.headers, request.url.scheme, sessions_of(state))
    if checked.denial is not None or checked.cookie is None:
        return checked.denial
    if await active_session(request, checked.cookie) is None:
        return Unauthorized(SESSION_INVALID)
    return None
