"""Every request body is bounded while it streams, before any route code sees it.

- Image endpoints: the handler authenticates from the headers first, then streams the body
  through the intake (``dialects.intake``), which applies the per-type, per-part and per-file
  caps. This middleware adds the total cap (``max_body_bytes``) and the stall limit
  (``body_timeout_s``) to the stream, counted on what arrives — a chunked body is counted the
  same as one with a Content-Length.
- Every other route takes at most ``max_small_body_bytes``: the body is read here, whole,
  before the route runs (routes that take no API key — admin, health, metrics, images — never
  need more). The admin API is checked first (``console.auth.precheck``: the admin token, or the
  console cookie with its cross-site and CSRF rules; everything but the session lookup, which
  the route makes), so an unauthenticated caller's body is never read.
- A response sent before the request body was read to its end carries ``Connection: close``,
  so the server stops reading what the client is still sending.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from ..domain.errors import IdeohubError, InvalidRequest, PayloadTooLarge, RequestTimeout
from ..console.auth import precheck, sessions_of, token_attempt_denial
from .problems import error_response, in_dialect

ADMIN_PREFIX = "/admin"
# what this middleware reads: the body's framing, and what the admin check needs (console.auth.precheck)
_READ_HEADERS = (b"content-length", b"transfer-encoding", b"authorization", b"cookie", b"origin", b"host",
                 b"sec-fetch-site", b"x-csrf-token")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def control_character_in_url(path: str, query_string: bytes) -> str | None:
    """Where the URL carries a control character (``path``, or the query parameter's name), or
    None. No identifier, filter or URL we accept holds one, and PostgreSQL refuses a NUL in any
    text: checked here, before routing, so no route can pass one on to the database."""
    if _CONTROL.search(path):
        return "path"
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if _CONTROL.search(name):
            return "query"
        if _CONTROL.search(value):
            return name[:40]
    return None


def _too_large(cap: int) -> PayloadTooLarge:
    return PayloadTooLarge("body", f"the request body exceeds the limit of {cap} bytes")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, is_image_path: Callable[[str], bool]) -> None:
        self.app = app
        self.settings = settings
        self.is_image_path = is_image_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.settings
        path: str = scope["path"]
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:  # the first of repeated headers, as Starlette's request.headers reads them
            if k in _READ_HEADERS:
                headers.setdefault(k.decode("latin-1"), v.decode("latin-1"))
        declared = headers.get("content-length", "")
        has_body = (declared.isdigit() and int(declared) > 0) or "transfer-encoding" in headers
        finished = not has_body

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and not finished:
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        async def refuse(error: IdeohubError) -> None:
            response = in_dialect(scope.get("state", {}), path, error_response(error), error.status, error.detail)
            await response(scope, receive, send_closing)

        where = control_character_in_url(path, scope.get("query_string", b""))
        if where is not None:
            await refuse(InvalidRequest(where, "must not contain control characters (bytes 0x00-0x1F or 0x7F)"))
            return
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            state = getattr(getattr(scope.get("app"), "state", None), "ideohub", None)
            checked = precheck(settings, scope["method"], headers, scope.get("scheme", "http"), sessions_of(state))
            denial = checked.denial
            if checked.bearer:  # an attempt at the admin token: a wrong one counts, a locked-out address waits
                client = scope.get("client")
                denial = await token_attempt_denial(state, client[0] if client else None,
                                                    count=denial is not None) or denial
            if denial is not None:
                await refuse(denial)
                return
        image = self.is_image_path(path)
        cap = settings.max_body_bytes if image else settings.max_small_body_bytes
        if declared and (not declared.isdigit() or int(declared) > cap):
            await refuse(_too_large(cap) if declared.isdigit() else PayloadTooLarge("Content-Length", "is not a number"))
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received, finished
            if finished:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), settings.body_timeout_s)
            except TimeoutError:
                raise RequestTimeout(f"the request body stalled for more than {settings.body_timeout_s:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise _too_large(cap)
                if not message.get("more_body", False):
                    finished = True
            elif message["type"] == "http.disconnect":
                finished = True
            return message

        if image:
            await self.app(scope, bounded_receive, send_closing)
            return
        # small bodies are read whole here, so no route's own parsing can turn a cap into another error
        chunks: list[bytes] = []
        try:
            while not finished:
                message = await bounded_receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
        except IdeohubError as exc:
            await refuse(exc)
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_closing)

