"""Error bodies: RFC 7807 problem JSON for every 4xx/5xx, except the spec's safety 422
``{"error": "..."}``. Always ``Content-Type: application/json`` (what clients of the API expect)."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..domain.errors import IdeohubError, Retryable, SafetyRejected

log = logging.getLogger("ideohub.api")

_TITLES = {400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 413: "Payload Too Large",
           415: "Unsupported Media Type", 422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def problem(status: int, detail: str, title: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"type": "about:blank", "title": title or _TITLES.get(status, "Error"), "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(exc: IdeohubError) -> JSONResponse:
    if isinstance(exc, SafetyRejected):
        return JSONResponse({"error": exc.detail}, status_code=422)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Retryable) else None
    if exc.status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer, ApiKey header="Api-Key"'}
    return problem(exc.status, exc.detail, exc.title, headers)


def in_dialect(scope_state: dict, path: str, response: JSONResponse, status: int, detail: str) -> JSONResponse:
    """The error in the caller's dialect: the task dialect keeps its envelope; others as given."""
    from .tasks import error, is_task_path

    if scope_state.get("dialect") != "task" and not is_task_path(path):
        return response
    headers = {k: v for k, v in response.headers.items() if k.lower() in ("retry-after", "www-authenticate")}
    return error(scope_state.get("request_id", ""), status, detail, headers or None)


async def ideohub_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IdeohubError)
    return in_dialect(request.scope.get("state", {}), request.url.path, error_response(exc), exc.status, exc.detail)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    response = problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))
    return in_dialect(request.scope.get("state", {}), request.url.path, response, exc.status_code, str(exc.detail))


async def unhandled_error_handler(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "internal error; the request was not completed")


async def validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's body validation (admin API): a 400 problem naming the field and the rule."""
    errors = getattr(exc, "errors", lambda: [])()
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    return problem(400, "; ".join(parts) or "invalid request")
