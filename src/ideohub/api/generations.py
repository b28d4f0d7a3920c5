"""Reading generations back: Ideogram's polling, ``GET /v1/generations/{generation_id}`` and
``GET /v2/generations/{generation_id}`` (also under ``/ideogram``), answering its
``GenerationResponse``.

Polling reads the generation's record and nothing else — no engine, no upstream — so it can
be cheap and frequent; it has its own limit per account (``poll_limit`` per ``poll_window_s``,
Ideogram's 1,000 per 10 s), apart from a key's ``rpm``. A completed generation answers the very
items of its synchronous answer (the stored body, so the links keep their original expiry and
answer 410 after it); a failed one its ``failure_reason``, one of the fixed codes of
``domain.generations.FailureReason``. Absent fields are left out, never ``null`` (the spec's
``x-drop-nulls``). Another account's generation is answered exactly like an unknown id (404).

The task dialect's queries (``api.tasks``) read the same records through the same checks.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..domain.errors import InvalidRequest, NotFound, RateLimited
from ..domain.generations import GENERATION_ID, STATUS_OF_STATE, Status
from ..store.ledger import DEFAULT_ACCOUNT
from ..store.models import ApiKey, RequestRecord
from ..store.repository import Repository, _aware, utcnow
from .auth import authenticate

POLL_PATHS = ("/v1/generations/{generation_id}", "/v2/generations/{generation_id}",
              "/ideogram/v1/generations/{generation_id}", "/ideogram/v2/generations/{generation_id}")
DOCUMENTED_PATHS = POLL_PATHS[:2]  # the official paths; /openapi.json names the /ideogram aliases in their text
NO_STORE = {"Cache-Control": "no-store"}  # a pending answer must not be cached on the way

router = APIRouter()


def account_of(key: ApiKey) -> str:
    return key.account_id or DEFAULT_ACCOUNT


async def admit_poll(state: Any, key: ApiKey) -> None:
    """One poll against the account's polling limit: 429 with ``Retry-After`` beyond it. Counted
    per account (every key of it together), on the shared limiter (Redis when configured)."""
    limit, window = state.settings.poll_limit, state.settings.poll_window_s
    if limit <= 0 or window <= 0:
        return
    try:
        await state.service.limiter.hit(f"poll:{account_of(key)}", limit, window)
    except RateLimited as exc:
        raise RateLimited(f"polling is limited to {limit} requests per {window:g} s per account",
                          exc.retry_after) from None


def check_id(value: str, field: str) -> str:
    if not GENERATION_ID.fullmatch(value):
        raise InvalidRequest(field, "must be 22 URL-safe base64 characters (A-Z, a-z, 0-9, '-' and '_')")
    return value


async def find_own(repo: Repository, key: ApiKey, generation_id: str, field: str, what: str) -> RequestRecord:
    """The key's account's generation, or 404 — the same 404 whether the id is unknown or another
    account's, so ids cannot be probed."""
    record = await repo.get_generation(generation_id)
    if record is None or (record.account_id or DEFAULT_ACCOUNT) != account_of(key):
        raise NotFound(f"{field}: no such {what}")
    return record


_DOCUMENT_FIELDS = ("descriptions", "json_prompt", "aspect_ratio")
_IMAGE_NAME = re.compile(r"/images/([A-Za-z0-9_-]{1,40})\.[a-z]{3,4}(?:\?|$)")


def _with_asset_id(item: Any) -> Any:
    """An image of a completed generation as October-2026's ``GenerationResponse`` lists it: its
    ``object_type`` (``image.generation``, or ``image.without-prompt-or-seed`` for results that
    have no prompt, such as an upscale or a cut-out) and its ``asset_id`` (the name of our stored
    file, read from our own signed URL: what a /v2 request names to reuse it)."""
    if not isinstance(item, dict):
        return item
    kind = "image.generation" if "prompt" in item and "seed" in item else "image.without-prompt-or-seed"
    out = {"object_type": kind, **item}
    match = _IMAGE_NAME.search(item["url"]) if isinstance(item.get("url"), str) else None
    if match and "asset_id" not in item:
        out = {"asset_id": match.group(1), **out}
    return out


def generation_response(record: RequestRecord) -> dict[str, Any]:
    """Ideogram's ``GenerationResponse`` for one record (fields in the spec's order)."""
    status = STATUS_OF_STATE.get(record.state, Status.PENDING)
    body: dict[str, Any] = {"generation_id": record.generation_id, "status": status.value,
                            "created": _aware(record.created_at).isoformat()}
    if status is Status.COMPLETED:
        answer = json.loads(record.result) if record.result else {}
        if "data" not in answer:  # describe and magic prompt: the synchronous answer's fields (our extension)
            body.update({k: v for k, v in answer.items() if k in _DOCUMENT_FIELDS})
        else:
            body["response_type"] = "url"
            body["data"] = [_with_asset_id(item) for item in answer["data"]]
        body["usage_cost_usd_micros"] = record.price_micros or 0
    elif status is Status.FAILED and record.failure_reason:
        body["failure_reason"] = record.failure_reason
    return body


async def get_generation(request: Request, generation_id: str) -> JSONResponse:
    state = request.app.state.ideohub
    request.state.operation = "get-generation"
    key = await authenticate(request, state.repo)
    request.state.key_id = key.id
    await admit_poll(state, key)
    check_id(generation_id, "generation_id")
    record = await find_own(state.repo, key, generation_id, "generation_id", "generation")
    return JSONResponse(generation_response(record), headers=NO_STORE)


for _path in POLL_PATHS:
    router.add_api_route(_path, get_generation, methods=["GET"], include_in_schema=_path in DOCUMENTED_PATHS,
                         name=f"get-generation:{_path}")


# ---------------------------------------------------------------- metrics


async def refresh_metrics(state: Any, now: datetime | None = None) -> None:
    """Pending generations and the oldest one's age, from one query over the pending states
    (it reads the ``state`` index: cheap however many finished records are kept)."""
    by_state = await state.service.store.pending_counts()
    count = sum(n for n, _oldest in by_state.values())
    queued = by_state.get("queued", (0, None))[0]
    state.metrics.generations_pending.set(count)
    state.metrics.queue_depth.set(queued)
    state.metrics.generations_running.set(count - queued)
    oldest = min((o for _n, o in by_state.values()), default=None)
    age = ((now or utcnow()) - oldest).total_seconds() if oldest is not None else 0.0
    state.metrics.oldest_pending_generation.set(max(0.0, age))
    live = getattr(state.service.dispatch, "live_workers", None)
    if live is not None:  # the fleet's queue: workers whose heartbeat is current, per operation
        for operation, n in (await live()).items():
            state.metrics.workers_live.labels(operation).set(n)
