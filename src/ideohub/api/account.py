"""The key holders' own API: their account's balance, keys and limits, usage and request log,
modelled on Ideogram's ``/v2/account/usage`` and ``/v2/account/api-keys`` (the 2026-07 schemas
``GetUsageInfoResponse`` and ``GetApiKeysV2Response``), with ideohub's fields added.

Authenticated by the API key exactly as the image API (``Api-Key`` or ``Authorization: Bearer``;
a revoked or expired key is a 401) and never by a cookie: a browser's ambient credentials open
nothing here. The reads share the account's polling limit (``poll_limit`` per ``poll_window_s``).
Every answer is confined to the key's account (another account's request is a 404,
like an unknown one) and carries no secret: keys by id and prefix, no channels or upstream
details. Answered on ``/v2/account/*`` and ``/ideogram/v2/account/*``; ``/openapi.json`` lists the
``/v2/account`` paths (tag ``account``) and names the ``/ideogram`` ones in their descriptions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request

from ..domain.errors import InvalidRequest
from ..domain.operations import Operation
from ..domain.prices import micros_to_usd
from ..manage import Manager
from ..manage.keys import key_status, key_view
from ..manage.requests import HOLDER_FILTERS, parse_filters
from ..store.ledger import DEFAULT_ACCOUNT
from ..store.models import ApiKey
from ..store.usage import tool_usage
from .auth import authenticate
from .generations import admit_poll

router = APIRouter()
PREFIXES = ("/v2/account", "/ideogram/v2/account")
MAX_DAYS = 366
DEFAULT_DAYS = 30
NO_STORE = {"Cache-Control": "no-store"}
_TOOL_TYPES = {"generate": "GENERATE", "remix": "REMIX", "edit": "EDIT", "inpaint": "EDIT", "reframe": "EDIT",
               "replace-background": "EDIT", "upscale": "UPSCALE", "describe": "DESCRIBE"}


async def _holder(request: Request) -> tuple[Any, ApiKey, str]:
    """The caller's key (401 unless valid and live) and account. A cookie is never looked at."""
    state = request.app.state.ideohub
    request.state.operation = "account"
    key = await authenticate(request, state.repo)
    request.state.key_id = key.id
    await admit_poll(state, key)  # these reads count against the account's polling limit (429 beyond it)
    return state, key, key.account_id or DEFAULT_ACCOUNT


def tool_type(operation: str) -> str:
    """Ideogram's ``ToolType`` of an operation (GENERATE, REMIX, EDIT, UPSCALE, DESCRIBE or OTHER)."""
    try:
        op = Operation(operation)
    except ValueError:
        return "OTHER"
    name = op.v2_parts[0] if op.value.startswith("v2-") else op.value.removeprefix("v3-").removeprefix("v45-") \
        .removeprefix("v4-")
    for prefix, kind in _TOOL_TYPES.items():
        if name.startswith(prefix):
            return kind
    return "OTHER"


def _respond(body: dict[str, Any]) -> Any:
    from fastapi.encoders import jsonable_encoder
    from starlette.responses import JSONResponse

    return JSONResponse(jsonable_encoder(body), headers=NO_STORE)


async def balance(request: Request) -> Any:
    state, _key, account_id = await _holder(request)
    account = await Manager.of_state(state).accounts.get(account_id)
    return _respond({"account_id": account.id, "name": account.name, "balance_usd": micros_to_usd(account.balance_micros),
                     "unlimited": bool(account.unlimited), "currency_code": "USD"})


async def api_keys(request: Request) -> Any:
    state, key, account_id = await _holder(request)
    now = datetime.now(UTC)
    out = []
    for k in await Manager.of_state(state).keys.list(account_id):
        v = key_view(k, now)
        out.append({"api_key_id": k.id, "redacted_api_key": k.prefix + "•" * 8, "creation_time": v["created_at"],
                    "status": "ACTIVE" if key_status(k, now) == "active" else "DISABLED", "label": k.name,
                    "current": k.id == key.id,
                    "limits": {f: v[f] for f in ("rpm", "max_images_in_flight", "spend_cap_usd", "spent_usd",
                                                 "expires_at", "allowed_operations")}})
    return _respond({"api_keys": out})


def _segment_by(value: str | None) -> str:
    if value is None or value == "":
        return "DAY"
    if value.upper() not in ("DAY", "HOUR"):
        raise InvalidRequest("segment_by", "must be DAY or HOUR")
    return value.upper()


def _days(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_DAYS
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 4 or not 1 <= int(text) <= MAX_DAYS:
        raise InvalidRequest("days", f"must be an integer from 1 to {MAX_DAYS}")
    return int(text)


async def usage(request: Request) -> Any:
    """Charged usage per day (or hour), tool and key. ``amount`` is Ideogram's cents, exact
    (micro-dollars / 10,000: it may be fractional); ``amount_usd`` the same as a decimal string."""
    state, _key, account_id = await _holder(request)
    q = request.query_params
    unknown = sorted(k for k in q if k not in ("segment_by", "days"))
    if unknown:
        raise InvalidRequest(unknown[0][:40], "is not a parameter; parameters: segment_by, days")
    segment_by, days = _segment_by(q.get("segment_by")), _days(q.get("days"))
    bucket = "hour" if segment_by == "HOUR" else "day"
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    since = datetime.now(UTC) - timedelta(days=days)
    segments: dict[datetime, list[dict[str, Any]]] = {}
    for row in await tool_usage(state.repo.session, account_id, since, bucket):
        micros = row["charged_micros"]
        segments.setdefault(row["start"], []).append({
            "full_tool_name": row["operation"] + (f" {row['tier']}" if row["tier"] and row["tier"] != "*" else ""),
            "tool_type": tool_type(row["operation"]), "model_version": row["tier"],
            "amount": {"amount": micros / 10_000 if micros % 10_000 else micros // 10_000, "currency_code": "USD"},
            "amount_usd": micros_to_usd(micros), "api_key_id": row["key_id"], "images": row["images"],
            "requests": row["requests"]})
    out = [{"segment_start": start, "segment_end": start + step - timedelta(seconds=1), "tool_usage": tools}
           for start, tools in sorted(segments.items())]
    return _respond({"usage_segments": out})


async def requests_log(request: Request) -> Any:
    state, _key, account_id = await _holder(request)
    filters = parse_filters(dict(request.query_params), HOLDER_FILTERS)
    return _respond(await Manager.of_state(state).requests.page(filters, account_id=account_id, operator=False))


async def request_detail(request: Request, request_id: str) -> Any:
    state, _key, account_id = await _holder(request)
    return _respond(await Manager.of_state(state).requests.detail(request_id, account_id=account_id, operator=False))


ROUTES = (("/balance", balance), ("/api-keys", api_keys), ("/usage", usage), ("/requests", requests_log),
          ("/requests/{request_id}", request_detail))
DOCUMENTED_PATHS = tuple(PREFIXES[0] + _path for _path, _handler in ROUTES)  # /openapi.json names the aliases

for _prefix in PREFIXES:
    for _path, _handler in ROUTES:
        router.add_api_route(_prefix + _path, _handler, methods=["GET"], include_in_schema=_prefix == PREFIXES[0],
                             name=f"account{_path}:{_prefix}")
