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


def generation_error(response: JSONResponse, status: int, detail: str, max_inflight: int | None) -> JSONResponse:
    """/v2's ``GenerationErrorResponse`` for 402 and 429: ``error`` (our message) and ``reject_reason``
    — a balance or spending cap is ``insufficient_funds``; images in flight, rpm, pending bounds and
    saturated channels are ``inflight_limit`` (with ``max_inflight_requests`` where a limit of
    images in flight applies)."""
    body: dict = {"error": detail, "reject_reason": "insufficient_funds" if status == 402 else "inflight_limit"}
    if status == 429 and max_inflight:
        body["max_inflight_requests"] = max_inflight
    headers = {k: v for k, v in response.headers.items() if k.lower() == "retry-after"}
    return JSONResponse(body, status_code=status, headers=headers or None)


def is_v2_path(path: str) -> bool:
    return path.startswith(("/v2/", "/ideogram/v2/"))


def in_dialect(scope_state: dict, path: str, response: JSONResponse, status: int, detail: str,
               max_inflight: int | None = None) -> JSONResponse:
    """The error in the caller's dialect: the task dialect keeps its envelope; /v2's 402 and 429
    are ``GenerationErrorResponse``; others as given."""
    from .tasks import error, is_task_path

    if scope_state.get("dialect") != "task" and not is_task_path(path):
        if status in (402, 429) and is_v2_path(path):
            return generation_error(response, status, detail, max_inflight)
        return response
    headers = {k: v for k, v in response.headers.items() if k.lower() in ("retry-after", "www-authenticate")}
    return error(scope_state.get("request_id", ""), status, detail, headers or None)


async def ideohub_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IdeohubError)
    return in_dialect(request.scope.get("state", {}), request.url.path, error_response(exc), exc.status, exc.detail,
                      getattr(exc, "max_inflight", None))


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
