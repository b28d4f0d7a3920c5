"""Our published API description (``/openapi.json``) and offline docs (``/docs``).

FastAPI cannot see the image endpoints' bodies (each handler reads its own multipart or JSON),
so ``install_openapi`` completes the generated document: for every endpoint on its official
path, the official request schemas for the content types it accepts, the official 200 and 422
schemas, our RFC 7807 errors, and the two auth schemes; the official components it needs are
copied in from the vendored ``ideohub/spec/ideogram-openapi.json`` (``nullable`` rewritten for
OpenAPI 3.1). The 4.0 (``/v1/ideogram-v4/*``, ``/v1/ideogram-v45/*``, their ``/async/``
variants) and ``/v2/image/*`` endpoints follow the newest vendored document that declares their
path (the October-2026 extract), whose 402 and 429 on /v2 are ``GenerationErrorResponse`` and
whose ``dry_run`` answers ``PriceQuote``. Generations (polling, the webhook keys) follow the
July-2026 document. Each document's components are copied the same way; a copied name that
would differ from one already in the document stops the build instead of replacing it (the
October extract left descriptions and examples out, so for it "differ" ignores those keys; a
real difference is resolved by name in ``RESOLVED_CLASHES``). What Ideogram does not have (async
and idempotency on most endpoints, ``dry_run`` before /v2, /v2's ``asset_id``, the task dialect)
is marked ``x-ideohub-extension: true``, and so is the key holders' own API (``/v2/account/*``, tag
``account``), whose answers extend Ideogram's July-2026 usage and key-list shapes. Relay alias
paths stay out of the paths list and are named in the descriptions. Swagger UI's assets come from the ``swagger_ui_bundle`` package and
are served by us, so ``/docs`` needs no network.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from .. import spec
from ..domain.errors import NotFound
from ..domain.generations import GENERATION_ID, FailureReason
from ..domain.operations import Family, Operation
from ..manage.requests import DEFAULT_LIMIT, MAX_LIMIT
from ..notify.payloads import TASK_FAILED, TASK_PROCESSING, TASK_SUBMITTED, TASK_SUCCEED
from ..store.usage import REQUEST_STATES
from . import account, generations, jwks, tasks
from .assets import ASSET_FIELDS
from .dialects import ENDPOINTS, SPEC_ENDPOINTS, Endpoint, all_paths

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
# name → media type; only these files of the bundle are served
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-bundle.js.map": "application/json",
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui.css.map": "application/json",
    "favicon-32x32.png": "image/png",
}
_REF = re.compile(r"#/components/schemas/([A-Za-z0-9_.-]+)")

PROBLEM = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 7807 problem details. `detail` names the field and the rule, e.g. "
                   "`image_request.num_images: must be an integer from 1 to 8`.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "example": "about:blank"},
        "title": {"type": "string", "example": "Bad Request"},
        "status": {"type": "integer", "example": 400},
        "detail": {"type": "string", "example": "image_request.num_images: must be an integer from 1 to 8"},
    },
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
_WWW_AUTHENTICATE = {"WWW-Authenticate": {"schema": {"type": "string"}}}
_NO_STORE = {"Cache-Control": {"description": "`no-store`: the answer changes as the generation runs.",
                               "schema": {"type": "string"}}}
_GENERATION_HEADER = {"X-Ideohub-Generation-Id": {
    "description": "The request's `generation_id` (ideohub extension), on every answer given once it was admitted "
                   "(502 and 504 included): poll it rather than paying again. Absent on refusals at admission.",
    "schema": {"$ref": "#/components/schemas/GenerationId"}}}
EXTENSION = {"x-ideohub-extension": True}
MAX_TASK_IDS = tasks.MAX_TASK_IDS
_FAILURE_REASONS = [r.value for r in FailureReason]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ids(what: str) -> dict[str, Any]:
    return {"type": "array", "maxItems": MAX_TASK_IDS, "items": _ref("GenerationId"),
            "description": f"At most {MAX_TASK_IDS} {what}."}


def _envelope(title: str, description: str, data: dict[str, Any], *, code: dict[str, Any] | None = None,
              message: dict[str, Any] | None = None) -> dict[str, Any]:
    """The task dialect's envelope around ``data`` (success: code 0, message SUCCEED)."""
    return {
        "type": "object", "title": title, **EXTENSION, "description": description,
        "required": ["code", "message", "request_id", "data"],
        "properties": {
            "code": code or {"type": "integer", "const": 0},
            "message": message or {"type": "string", "const": tasks.SUCCEED},
            "request_id": {"type": "string", "description": "This request's id (also in `X-Request-Id`)."},
            "data": data,
        },
    }


# ---------------------------------------------------------------- the key holders' account API

_USD = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,6})?$", "example": "1.25",
        "description": "US dollars as a decimal string (at most 6 decimals, no exponent)."}
_TIME = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC."}


def _nullable(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """``schema`` or ``null`` (OpenAPI 3.1), with its own description."""
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    out = {**schema, "type": [*types, "null"], "description": description}
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def _account_request_fields() -> dict[str, Any]:
    """A log item's fields (``manage.requests.request_item`` for a key holder: no channel or engine)."""
    return {
        "id": {"type": "string", "maxLength": 40, "description": "The request's id (`request_id`)."},
        "generation_id": {"anyOf": [_ref("GenerationId"), {"type": "null"}],
                          "description": "Its generation (pollable at `/v1/generations/{generation_id}`); `null` "
                                         "for requests refused before admission."},
        "account_id": {"type": "string", "description": "The caller's account."},
        "key_id": _nullable({"type": "string"}, "The key that made the request."),
        "operation": {"type": "string", "example": "v3-generate", "description": "The operation's name."},
        "state": {"type": "string", "enum": list(REQUEST_STATES),
                  "description": "`received`, `queued`, `running`, then `done` or `failed` (refusals too)."},
        "status_code": _nullable({"type": "integer", "minimum": 100, "maximum": 599},
                                 "The HTTP status answered; `null` while unfinished."),
        "mode": _nullable({"type": "string", "enum": ["sync", "async"]}, "How it was called."),
        "price_usd": {**_USD, "description": "What was charged (US dollars, decimal string)."},
        "latency_ms": _nullable({"type": "number", "minimum": 0}, "Time to the answer, in milliseconds."),
        "created_at": _TIME,
        "finished_at": _nullable(_TIME, "When it finished; `null` while unfinished."),
        "error": _nullable({"type": "string"}, "Why it failed (our detail), when it did."),
        "failure_reason": _nullable({"type": "string", "example": "upstream_failed"},
                                    "A fixed failure code (the generation's `failure_reason`), when it failed."),
    }


def _account_schemas() -> dict[str, Any]:
    """Our account components: Ideogram's usage and key-list shapes (2026-07 document), extended."""
    item = _account_request_fields()
    detail = dict(item)
    detail.update({
        "images": {"type": "array", "items": _ref("AccountRequestImage"),
                   "description": "The images it delivered."},
        "images_delivered": {"type": "integer", "minimum": 0, "description": "How many images it delivered."},
        "params": {"type": "object", "description": "Its parameters as recorded (uploads as a summary, never "
                                                    "their bytes); the prompt fields only when the operator keeps "
                                                    "prompts (`log_prompts`)."},
        "started_at": _nullable(_TIME, "When it started running; `null` before."),
    })
    return {
        "AccountBalance": {
            "type": "object", "title": "AccountBalance", **EXTENSION,
            "description": "The caller's account and its balance.",
            "required": ["account_id", "name", "balance_usd", "unlimited", "currency_code"],
            "properties": {
                "account_id": {"type": "string", "example": "acct_default"},
                "name": {"type": "string"},
                "balance_usd": {**_USD, "description": "The prepaid balance in US dollars (decimal string); "
                                                      "not drawn on when `unlimited`."},
                "unlimited": {"type": "boolean", "description": "`true`: requests are never refused for credit."},
                "currency_code": {"type": "string", "const": "USD"},
            },
        },
        "AccountKeyLimits": {
            "type": "object", "title": "AccountKeyLimits", **EXTENSION,
            "description": "A key's limits; `null` is no limit of its own.",
            "required": ["rpm", "max_images_in_flight", "spend_cap_usd", "spent_usd", "expires_at",
                         "allowed_operations"],
            "properties": {
                "rpm": _nullable({"type": "integer", "minimum": 1}, "Requests per minute."),
                "max_images_in_flight": _nullable({"type": "integer", "minimum": 1},
                                                  "Images being generated at once."),
                "spend_cap_usd": _nullable(_USD, "The most this key may spend (US dollars)."),
                "spent_usd": {**_USD, "description": "What this key has spent (US dollars)."},
                "expires_at": _nullable(_TIME, "When the key stops working."),
                "allowed_operations": _nullable(
                    {"type": "array", "items": {"type": "string", "enum": [op.value for op in Operation]}},
                    "The only operations the key may use; `null`: every operation."),
            },
        },
        "AccountApiKey": {
            "title": "AccountApiKey", **EXTENSION,
            "description": "Ideogram's `ApiProfileApiKey` (`redacted_api_key`: the key's prefix and bullets, never "
                           "the secret; `status` `DISABLED`: revoked or expired; `label`: its name) with ideohub's "
                           "`current` and `limits`.",
            "allOf": [_ref("ApiProfileApiKey"), {
                "type": "object", "required": ["label", "current", "limits"],
                "properties": {
                    "label": {"type": "string"},
                    "current": {"type": "boolean", "description": "`true` for the key making this request."},
                    "limits": _ref("AccountKeyLimits")}}],
        },
        "AccountApiKeysResponse": {
            "title": "AccountApiKeysResponse", **EXTENSION,
            "description": "Ideogram's `GetApiKeysV2Response`: the keys of the caller's account (revoked and "
                           "expired ones included, as `DISABLED`), each an `AccountApiKey`.",
            "allOf": [_ref("GetApiKeysV2Response"), {
                "type": "object", "required": ["api_keys"],
                "properties": {"api_keys": {"type": "array", "items": _ref("AccountApiKey")}}}],
        },
        "AccountToolUsage": {
            "type": "object", "title": "AccountToolUsage", **EXTENSION,
            "description": "Ideogram's `ToolUsage`, for one operation, price tier and key: `amount` is Ideogram's "
                           "`Price` in cents, exact (it may be fractional, e.g. 2.5); ideohub adds `amount_usd`, "
                           "`images` and `requests`. `model_version` is our price tier, not Ideogram's "
                           "`ModelVersion` enum.",
            "required": ["full_tool_name", "tool_type", "model_version", "amount", "amount_usd", "api_key_id",
                         "images", "requests"],
            "properties": {
                "full_tool_name": {"type": "string", "example": "v3-generate TURBO",
                                   "description": "The operation, and its tier when it has one."},
                "tool_type": _ref("ToolType"),
                "model_version": _nullable({"type": "string", "example": "TURBO"},
                                           "The price tier: the legacy model (`V_2` …), the 3.0 rendering speed "
                                           "(`TURBO` …) or `*` (one price)."),
                "amount": _ref("Price"),
                "amount_usd": {**_USD, "description": "The same charge in US dollars (decimal string)."},
                "api_key_id": _nullable({"type": "string"}, "The key that was charged."),
                "images": {"type": "integer", "minimum": 0, "description": "Images delivered."},
                "requests": {"type": "integer", "minimum": 1, "description": "Requests made."},
            },
        },
        "AccountUsageSegment": {
            "type": "object", "title": "AccountUsageSegment", **EXTENSION,
            "description": "Ideogram's `UsageSegment`: one day (or hour), UTC; `segment_end` is its last second.",
            "required": ["segment_start", "segment_end", "tool_usage"],
            "properties": {"segment_start": _TIME, "segment_end": _TIME,
                           "tool_usage": {"type": "array", "items": _ref("AccountToolUsage")}},
        },
        "AccountUsageResponse": {
            "type": "object", "title": "AccountUsageResponse", **EXTENSION,
            "description": "Ideogram's `GetUsageInfoResponse` shape: the caller's account's charged usage, oldest "
                           "segment first; segments without usage are left out.",
            "required": ["usage_segments"],
            "properties": {"usage_segments": {"type": "array", "items": _ref("AccountUsageSegment")}},
        },
        "AccountRequest": {
            "type": "object", "title": "AccountRequest", **EXTENSION,
            "description": "One request of the caller's account (no channel, engine or upstream detail).",
            "required": [*item, "images"],
            "properties": {**item, "images": {"type": "integer", "minimum": 0,
                                              "description": "How many images it delivered."}},
        },
        "AccountRequestPage": {
            "type": "object", "title": "AccountRequestPage", **EXTENSION,
            "description": "A page of the account's requests, newest first.",
            "required": ["items", "next_before"],
            "properties": {
                "items": {"type": "array", "maxItems": MAX_LIMIT, "items": _ref("AccountRequest")},
                "next_before": _nullable({"type": "string", "maxLength": 200},
                                         "Pass as `before` for the next (older) page; `null` on the last page."),
            },
        },
        "AccountRequestImage": {
            "type": "object", "title": "AccountRequestImage", **EXTENSION,
            "required": ["url", "width", "height", "media_type", "expires_at"],
            "properties": {
                "url": _nullable({"type": "string", "format": "uri"},
                                 "A signed link that expires with the image; `null` once it expired or if the "
                                 "request did not complete."),
                "width": {"type": "integer", "minimum": 1},
                "height": {"type": "integer", "minimum": 1},
                "media_type": {"type": "string", "example": "image/png"},
                "expires_at": _nullable(_TIME, "When the image is deleted."),
            },
        },
        "AccountRequestDetail": {
            "type": "object", "title": "AccountRequestDetail", **EXTENSION,
            "description": "One request of the caller's account in detail: an `AccountRequest` whose `images` is "
                           "the list of its images (`images_delivered` is their count), with its parameters.",
            "required": list(detail),
            "properties": detail,
        },
    }


# Our own components. Official ones (Ideogram's names) are copied from the vendored documents.
OURS: dict[str, Any] = {
    "Problem": PROBLEM,
    "GenerationId": {
        "type": "string", "pattern": GENERATION_ID.pattern, "example": "xtdZiqPwRxqY1Y7NExFmzB",
        "description": "A generation id: 22 URL-safe base64 characters, as Ideogram's.",
    },
    "GenerationResponseExtensions": {
        "type": "object", "title": "GenerationResponseExtensions",
        "description": "What ideohub's `GenerationResponse` carries beyond the July-2026 schema; absent fields are "
                       "left out, never `null`. `usage_cost_usd_micros` and `failure_reason` are the fields of "
                       "Ideogram's later contract; `descriptions` is our extension.",
        "properties": {
            "usage_cost_usd_micros": {
                "type": "integer", "format": "int64", "minimum": 0,
                "description": "Only when `completed`: what was charged, in millionths of a US dollar. Images "
                               "that failed the safety check (`url: null`) are not charged."},
            "failure_reason": {
                "type": "string", "enum": _FAILURE_REASONS,
                "description": "Only when `failed`: a fixed code, never upstream text. `content_policy_violation`: "
                               "a safety refusal; `invalid_input`: the upstream refused the input; "
                               "`upstream_rate_limited`: every upstream said slow down; `upstream_failed`: every "
                               "upstream failed or none could serve it; `timeout`: the deadline passed; "
                               "`abandoned`: the process running it stopped and it could not run again; "
                               "`internal_error`: our own fault."},
            "descriptions": {
                "type": "array", "items": _ref("Description"), **EXTENSION,
                "description": "ideohub extension: a completed describe generation answers the synchronous "
                               "answer's `descriptions` instead of `response_type` and `data`."},
        },
    },
    "TaskObject": {
        "type": "object", "title": "TaskObject", **EXTENSION,
        "description": "ideohub extension (the resellers' task dialect, modelled on Kling's task API): a "
                       "generation as a task; the task id is the generation id. A `callback_url` receives this "
                       "object bare (no envelope) on every status change.",
        "required": ["task_id", "task_status", "created_at", "updated_at"],
        "properties": {
            "task_id": _ref("GenerationId"),
            "task_status": {
                "type": "string", "enum": [TASK_SUBMITTED, TASK_PROCESSING, TASK_SUCCEED, TASK_FAILED],
                "description": "`submitted`: admitted, not started; `processing`: running or storing; "
                               "`succeed`: completed; `failed`: failed (`task_status_msg` says why)."},
            "task_status_msg": {
                "type": "string", "enum": ["", *_FAILURE_REASONS],
                "description": "The failure code (a `failure_reason`) when `failed`, otherwise empty. Left out of "
                               "the acknowledgement of a submission."},
            "created_at": {"type": "integer", "format": "int64", "minimum": 0,
                           "description": "When the task was admitted, in milliseconds since the epoch."},
            "updated_at": {"type": "integer", "format": "int64", "minimum": 0,
                           "description": "When its status last changed, in milliseconds since the epoch."},
            "task_result": _ref("TaskResult"),
        },
    },
    "TaskResult": {
        "type": "object", "title": "TaskResult", **EXTENSION,
        "description": "Present once the task succeeded: its images (in the order of the synchronous answer's "
                       "`data`), or a describe's `descriptions`.",
        "oneOf": [{"required": ["images"]}, {"required": ["descriptions"]}],
        "properties": {
            "images": {"type": "array", "items": {
                "type": "object", "required": ["index", "url"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0, "description": "The image's position."},
                    "url": {"type": ["string", "null"], "format": "uri",
                            "description": "A signed, expiring link; `null` for an image that failed the "
                                           "safety check."}}}},
            "descriptions": {"type": "array", "items": _ref("Description")},
        },
    },
    "TaskEnvelope": _envelope(
        "TaskEnvelope", "ideohub extension: the task dialect's answer (a submission with `callback_url`, or a "
                        "task query).", _ref("TaskObject")),
    "TaskListEnvelope": _envelope(
        "TaskListEnvelope", "ideohub extension: the caller's known tasks among those asked, in the order asked; "
                            "unknown ids and other accounts' are left out.",
        {"type": "array", "maxItems": MAX_TASK_IDS, "items": _ref("TaskObject")}),
    "TaskError": _envelope(
        "TaskError", "ideohub extension: an error in the task dialect keeps the envelope, with the usual HTTP "
                     "status.", {"type": "null"},
        code={"type": "integer", "minimum": 400, "maximum": 599, "description": "The HTTP status."},
        message={"type": "string", "description": "Our detail: names the field and the rule.",
                 "example": "task_id: no such task"}),
    "TaskQueryRequest": {
        "type": "object", "title": "TaskQueryRequest", **EXTENSION,
        "description": f"The tasks to read: `task_ids`, or `ids` (midjourney-proxy's name), at most {MAX_TASK_IDS}; "
                       "duplicates are read once.",
        "oneOf": [{"required": ["task_ids"]}, {"required": ["ids"]}],
        "properties": {"task_ids": _ids("task ids"), "ids": _ids("task ids (the same as `task_ids`)")},
    },
    "ResponseAssetIds": {
        "type": "object", "title": "ResponseAssetIds", **EXTENSION,
        "description": "ideohub extension on /v2 answers: each image in `data` that this server stored carries "
                       "`asset_id`. A later /v2 request may name that image instead of uploading it again, as "
                       "`{\"asset_id\": \"...\", \"asset_type\": \"RESPONSE\"}` in "
                       + ", ".join(f"`{f}`" for f in ASSET_FIELDS) + " (an `AssetIdentifier`).",
        "properties": {"data": {"type": "array", "items": {"type": "object", "properties": {"asset_id": {
            "type": "string", "minLength": 1, "maxLength": 40, "pattern": "^[A-Za-z0-9_-]+$", **EXTENSION,
            "example": "7uS_VESkRI6O3-sVgHQp_A",
            "description": "ideohub extension: the stored image's id, usable as a `RESPONSE` asset by the same "
                           "account until the image expires."}}}}},
    },
    **_account_schemas(),
}
# The July-2026 components the generation routes use (copied with what they reference)
MID_2026_ROOTS = {"GenerationResponse", "WebhookSigningJwks", "AsyncImageGenerationResponseV4", "WebhookUrl",
                  # the key holders' account API: Ideogram's key list (its keys have `label`), price, tool type
                  "GetApiKeysV2Response", "Price", "ToolType"}
# The October-2026 components every image endpoint may answer beyond its own schemas: the dry
# run's quote, /v2's refusal (402, 429), and the safety error shape /v2 answers on 422
OCT_2026_ROOTS = {"PriceQuote", "GenerationErrorResponse", "GenerateImageSafetyError"}
# The keys the October-2026 extract left out of everything it copied (its ``x-extract.rule``):
# a component equal to one already copied but for these is the same schema, and the copy that
# has its descriptions is kept.
EXTRACT_LEFT_OUT = frozenset({"description", "example", "examples", "summary", "x-tool-description"})
# Components whose newer version differs from the one already copied by more than that, each
# resolved here on purpose: name → the top-level keys whose difference is accepted (the copy
# already in the document is kept). Any other difference still stops the build.
RESOLVED_CLASHES: dict[str, frozenset[str]] = {
    # October's WebhookUrl adds only `title: "webhook_url"` (a display label) to July's; type,
    # format and maxLength are the same. July's is kept: its description states the rules we
    # enforce (HTTPS only; private, loopback and metadata hosts refused).
    "WebhookUrl": frozenset({"title"}),
}

DESCRIPTION = """\
The Ideogram image API, self-hosted: clients written for `api.ideogram.ai` (or for the resellers
that relay it) work by changing only their base URL and key.

**Authentication.** Every image endpoint takes an ideohub API key, either as `Api-Key: KEY`
(`ApiKeyAuth`) or as `Authorization: Bearer KEY` (`BearerAuth`), and so does the key holder's own
`/v2/account/*` API (balance, keys, usage, requests; never a cookie). The `/admin` API takes the
admin token as `Authorization: Bearer <admin_token>` (`BearerAuth`).

**Paths.** Each image endpoint is listed once, on its official path: the legacy endpoints,
Ideogram 3.0 (`/v1/ideogram-v3/*`), Ideogram 4.0 (`/v1/ideogram-v4/*`, `/v1/ideogram-v45/*`
and their `/async/` variants) and the `/v2` API (`/v2/image/{capability}/{model}`). The same
operation also answers on the relay dialects' paths, which are not listed separately:
`/ideogram` + the official path (e.g. `/ideogram/v1/ideogram-v3/generate`,
`/ideogram/v2/image/generate/ideogram-4`), and for the legacy endpoints `/ideogram/v1` + the
legacy path (e.g. `/ideogram/v1/generate`).

**Bodies and responses** are Ideogram's official schemas (4.0 and `/v2`: the October-2026
document). Image URLs in responses point to this server: signed, expiring links (`exp`, `kid`,
`sig`). Images in `/v2` answers also carry an `asset_id`, which a later `/v2` request can name
as a `RESPONSE` asset instead of uploading the image again.

**Price quotes.** `?dry_run=true` validates and prices a request without running it and answers
Ideogram's `PriceQuote`: Ideogram's on `/v2`, our extension on the legacy, 3.0 and 4.0
generation endpoints (not on describe or magic prompt).

**Errors** are RFC 7807 problem JSON (`Problem`) whose `detail` names the field and the rule;
a safety refusal is the spec's `422 {"error": "..."}`; on `/v2`, 402 and 429 are Ideogram's
`GenerationErrorResponse` (`error`, `reject_reason`).

**Generations.** Every admitted image request is a generation, polled at
`/v1/generations/{generation_id}` or `/v2/generations/{generation_id}`; any image endpoint can
be called asynchronously (`async`, `webhook_url`), with an `Idempotency-Key`, or in the
resellers' task dialect (`callback_url`). Webhooks are signed with the keys at
`/v1/.well-known/jwks.json`. What Ideogram does not have is our extension, marked
`x-ideohub-extension: true`.
"""




def _refs(node: Any) -> set[str]:
    return set(_REF.findall(repr(node)))


def _closure(schemas: dict[str, Any], names: set[str]) -> dict[str, Any]:
    seen: set[str] = set()
    todo = sorted(names)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += sorted(_refs(schemas[name]) - seen)
    return {n: schemas[n] for n in sorted(seen)}


def _problem(description: str, headers: dict[str, Any] | None = None, shape: str = "Problem") -> dict[str, Any]:
    """An error answer: ``Problem``, ``TaskError`` (the task dialect), ``either`` (an image
    endpoint: the task envelope when the request carries ``callback_url``) or ``rejection`` (a
    /v2 402 or 429: ``GenerationErrorResponse``, or the task envelope)."""
    if shape in ("either", "rejection"):
        first = "Problem" if shape == "either" else "GenerationErrorResponse"
        schema = {"oneOf": [_ref(first), _ref("TaskError")]}
    else:
        schema = _ref(shape)
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _with_task_error(response: dict[str, Any]) -> dict[str, Any]:
    """An official error answer, or the task envelope when the request carries ``callback_url``."""
    out = copy.deepcopy(response)
    for media in out.get("content", {}).values():
        media["schema"] = {"oneOf": [media["schema"], _ref("TaskError")]}
    return out


def _media_types(endpoint: Endpoint) -> list[str]:
    return [mt for mt, ok in (("application/json", endpoint.json_body), ("multipart/form-data", endpoint.multipart)) if ok]


ASYNC_PARAMETERS: list[dict[str, Any]] = [
    {"name": "async", "in": "query", "required": False, "schema": {"type": "boolean", "default": False}, **EXTENSION,
     "description": "ideohub extension: `true` answers at once, after admission (validation, limits, the balance "
                    "reservation), with `{\"generation_id\"}`; poll it at `/v1/generations/{generation_id}`. Also "
                    "accepted as a top-level body field (a sibling of `image_request` in legacy JSON) or a "
                    "multipart field."},
    {"name": "webhook_url", "in": "query", "required": False, "schema": _ref("WebhookUrl"), **EXTENSION,
     "description": "Ideogram's `webhook_url` (as on its 4.0 async endpoints; on this endpoint an ideohub "
                    "extension): makes the call asynchronous, and the result is POSTed there, signed with Ed25519 "
                    "(keys at `/v1/.well-known/jwks.json`). Must be https and resolve to a public address (unless "
                    "the operator's `webhook_allowed_hosts` lists it). Also accepted as a top-level body field."},
    {"name": "callback_url", "in": "query", "required": False,
     "schema": {"type": "string", "format": "uri", "maxLength": 2048}, **EXTENSION,
     "description": "ideohub extension (the resellers' task dialect): makes the call asynchronous and answers the "
                    "`TaskEnvelope`; the bare `TaskObject` is POSTed there on every status change, under the "
                    "webhook rules. Errors then keep the envelope (`TaskError`). Not with `webhook_url`. Also "
                    "accepted as a top-level body field (never inside `image_request`)."},
    {"name": "Idempotency-Key", "in": "header", "required": False,
     "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"}, **EXTENSION,
     "description": "ideohub extension: 1-255 printable ASCII characters, kept 24 h per account. A retry of the "
                    "same request returns the same generation (its answer, acknowledgement or failure) and is "
                    "never charged again; the same key with a different request is 409."},
]


_PARAMETER = {p["name"]: p for p in ASYNC_PARAMETERS}
_DRY_RUN_TEXT = ("with `true`, the request is authenticated, validated and priced exactly as it would be, but not run: "
                 "nothing is generated, stored, reserved or charged, and the answer is a `PriceQuote` (the charge "
                 "if every image is delivered).")


def _dry_run_parameter(official_parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """``dry_run``: the official parameter where the path's document declares it (/v2), else ours."""
    for p in official_parameters:
        if p.get("in") == "query" and p.get("name") == "dry_run":
            return {**copy.deepcopy(p), "description": "Ideogram's: " + _DRY_RUN_TEXT}
    return {"name": "dry_run", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
            **EXTENSION, "description": "ideohub extension (Ideogram has it on /v2 only): " + _DRY_RUN_TEXT}


def _ok(official: dict[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    """The official 200, or the asynchronous acknowledgement, or the task envelope, or (quotable
    endpoints) the price quote."""
    out = copy.deepcopy(official)
    out["description"] = (official.get("description", "").rstrip(".") + ". With `async` or `webhook_url`: "
                          "`AsyncImageGenerationResponseV4`, `{\"generation_id\"}` (ideohub extension on this "
                          "endpoint); with `callback_url`: the `TaskEnvelope` (ideohub extension)"
                          + ("; with `dry_run=true`: `PriceQuote` (ideohub extension on this endpoint)."
                             if endpoint.quotable else "."))
    quote = [_ref("PriceQuote")] if endpoint.quotable else []
    for media in out["content"].values():
        # anyOf, not oneOf: DescribeResponse requires no field, so it also matches the other shapes
        media["schema"] = {"anyOf": [media["schema"], _ref("AsyncImageGenerationResponseV4"), _ref("TaskEnvelope"),
                                     *quote]}
    out["headers"] = {**out.get("headers", {}), **_GENERATION_HEADER}
    return out


def _request_body(endpoint: Endpoint, official: dict[str, Any]) -> dict[str, Any]:
    content = official["requestBody"]["content"]
    missing = [mt for mt in _media_types(endpoint) if mt not in content]
    if missing:
        raise RuntimeError(f"{endpoint.path}: the official spec has no {missing} body")
    return {"required": True, "content": {mt: copy.deepcopy(content[mt]) for mt in _media_types(endpoint)}}


def _responses(endpoint: Endpoint, ok: dict[str, Any], safety: dict[str, Any],
               rejection: str = "either") -> dict[str, Any]:
    """The answers of an image endpoint: ``ok`` (200), ``safety`` (422, official), our errors;
    ``rejection``: the shape of 402 and 429 (``rejection`` on /v2)."""
    auth = endpoint.auth_status
    either, after = "either", _GENERATION_HEADER  # errors after admission carry the generation id
    responses: dict[str, Any] = {
        "200": ok,
        "400": _problem("Invalid input: `detail` names the field and the rule.", shape=either),
        "402": _problem("The account's balance, or the key's spending cap, does not cover the request's price "
                        "(nothing ran)" + (": `reject_reason` `insufficient_funds`." if rejection == "rejection"
                                           else "."), shape=rejection),
    }
    if auth == 401:
        responses["401"] = _problem("Missing, unknown, expired or revoked API key.", _WWW_AUTHENTICATE, either)
        responses["403"] = _problem("The key may not use this operation, or its account no longer exists.",
                                    shape=either)
    else:  # the spec answers 403 for a missing key on /remix, /upscale and V3 remix
        responses["403"] = _problem("Missing, unknown, expired or revoked API key, or one that may not use this "
                                    "operation.", shape=either)
    responses.update({
        "409": _problem("The `Idempotency-Key` was used in the last 24 h for a different request (ideohub "
                        "extension).", shape=either),
        "413": _problem("The body, a part or a file is larger than the configured limit.", shape=either),
        "415": _problem("The Content-Type is not one this endpoint accepts, or an upload is not JPEG, PNG or WebP.",
                        shape=either),
        "422": {**_with_task_error(safety), "headers": after},
        "429": _problem("Rate limit of the key, or every upstream channel is busy or cooling down"
                        + (": `reject_reason` `inflight_limit`, with `max_inflight_requests` where a limit of "
                           "images in flight applies." if rejection == "rejection" else "."),
                        {**_RETRY_AFTER, **after}, rejection),
        "502": _problem("Every upstream channel tried failed (the request is refunded).", after, either),
        "503": _problem("No engine serves this operation, or the work queue is full.", {**_RETRY_AFTER, **after},
                        either),
        "504": _problem("The request did not complete within the configured deadline (refunded).", after, either),
    })
    return responses


def _operation(endpoint: Endpoint, official: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """Our operation object for one legacy or 3.0 endpoint, from the official one."""
    aliases = [p for p in all_paths(endpoint) if p != endpoint.path]
    responses = _responses(endpoint, _ok(official["responses"]["200"], endpoint), official["responses"]["422"])
    description = (official.get("description", "").strip() + "\n\n" if official.get("description") else "") + (
        "Also answers on " + ", ".join(f"`{p}`" for p in aliases) + " (relay dialects).\n\n"
        "Every admitted request is a generation (`X-Ideohub-Generation-Id`), pollable at "
        "`/v1/generations/{generation_id}`. ideohub extensions: `async`, `webhook_url` and `callback_url` (query "
        "or top-level body fields) make it asynchronous; `Idempotency-Key` makes retries safe"
        + ("; `dry_run=true` answers a `PriceQuote` instead of running it." if endpoint.quotable else "."))
    parameters = copy.deepcopy(ASYNC_PARAMETERS)
    if endpoint.quotable:
        parameters.append(_dry_run_parameter([]))
    return {
        **{k: v for k, v in ours.items() if k in ("operationId",)},
        "tags": ["Ideogram 3.0" if endpoint.operation.is_v3 else "Legacy"],
        "summary": official.get("summary", ours.get("summary", endpoint.path)),
        "description": description,
        "parameters": parameters,
        "requestBody": _request_body(endpoint, official),
        "responses": dict(sorted(responses.items())),
        "security": [{"ApiKeyAuth": []}, {"BearerAuth": []}],
    }


# ---------------------------------------------------------------- Ideogram 4.0 and /v2

_V4_ACTIONS = {"generate": "Generate", "remix": "Remix", "generate-transparent": "Generate a transparent image",
               "magic-prompt": "Magic prompt", "describe": "Describe"}
_V2_CAPABILITIES = {"generate": "Generate", "remix": "Remix", "inpaint": "Inpaint", "reframe": "Reframe",
                    "upscale": "Upscale", "remove-background": "Remove the background",
                    "replace-background": "Replace the background", "describe": "Describe"}


def _spec_summary(endpoint: Endpoint) -> str:
    op = endpoint.operation
    if op.family is Family.V2:
        capability, model = op.v2_parts
        return f"{_V2_CAPABILITIES.get(capability, capability)} with {model}"
    version, _, action = op.value.partition("-")
    name = {"v4": "Ideogram 4.0", "v45": "Ideogram 4.5"}.get(version, version)
    return f"{_V4_ACTIONS.get(action, action)} with {name}" + (" (asynchronous)" if endpoint.always_async else "")


def _schema_of(source: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = source["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _has_images(endpoint: Endpoint) -> bool:
    """A /v2 path whose synchronous answer lists images in ``data`` (every one but describe: also
    those whose official schema is the acknowledgement only, such as replace-background)."""
    return endpoint.operation.family is Family.V2 and endpoint.operation.v2_parts[0] != "describe"


def _spec_ok(endpoint: Endpoint, official: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """The 200 of a 4.0 or /v2 endpoint: the official schema (on /v2 with our ``asset_id`` on its
    images); the acknowledgement where the official schema is not it; the quote; the task envelope."""
    (media, body), = official["content"].items()
    schema = body["schema"]
    answer = _schema_of(source, schema)
    v2 = endpoint.operation.family is Family.V2
    alternatives: list[dict[str, Any]] = []
    notes: list[str] = []
    if _has_images(endpoint):
        alternatives.append({"allOf": [schema, _ref("ResponseAssetIds")]})
        notes.append("Its images carry `asset_id` (ideohub extension, `ResponseAssetIds`).")
    else:
        alternatives.append(schema)
    name = schema.get("$ref", "").rsplit("/", 1)[-1]
    if endpoint.always_async:
        notes.append("The request is admitted and answered at once: `{\"generation_id\"}`; poll "
                     "`/v1/generations/{generation_id}`, or pass `webhook_url` to have the result POSTed there.")
    elif v2 and set(answer.get("required", [])) <= {"generation_id", "seed", "width", "height"}:
        notes.append("With `async` or `webhook_url`: the same schema without `data` (`generation_id`, and `seed`, "
                     "`width`, `height` where it has them); poll `/v2/generations/{generation_id}`.")
    else:
        alternatives.append(_ref("AsyncImageGenerationResponseV4"))
        notes.append("With `async` or `webhook_url`: `AsyncImageGenerationResponseV4`, `{\"generation_id\"}` "
                     "(ideohub extension on this endpoint).")
    if endpoint.quotable:
        alternatives.append(_ref("PriceQuote"))
        notes.append("With `dry_run=true`: `PriceQuote`" + (" (ideohub extension on this endpoint)." if not v2
                                                             else "."))
    alternatives.append(_ref("TaskEnvelope"))
    notes.append("With `callback_url`: the `TaskEnvelope` (ideohub extension).")
    return {
        "description": f"`{name}`. " + " ".join(notes),
        "headers": copy.deepcopy(_GENERATION_HEADER),
        # anyOf, not oneOf: some official answers require no field, so they also match the other shapes
        "content": {media: {"schema": {"anyOf": alternatives}}},
    }


def _body_fields(source: dict[str, Any], official: dict[str, Any]) -> set[str]:
    """The top-level fields the official request schemas of an operation declare."""
    return {name for body in official["requestBody"]["content"].values()
            for name in _schema_of(source, body["schema"]).get("properties", {})}


def _in_body(field: str, declared: set[str]) -> str:
    """Where /v2 takes ``field`` besides the query string (ours)."""
    if field in declared:
        return f"Ideogram's /v2 reads `{field}` from the body (a JSON or multipart field), which works too."
    return (f"This path's official schema has no `{field}`; ideohub also takes it as a top-level body field (an "
            "ideohub extension too).")


def _spec_parameters(endpoint: Endpoint, official: dict[str, Any], source: dict[str, Any]) -> list[dict[str, Any]]:
    v2 = endpoint.operation.family is Family.V2
    declared = _body_fields(source, official)
    parameters = official.get("parameters", [])
    out: list[dict[str, Any]] = []
    if not endpoint.always_async:
        if v2:
            out.append({**copy.deepcopy(_PARAMETER["async"]), "description": (
                "ideohub extension as a query parameter. " + _in_body("async", declared) + " `true` answers at "
                "once, after admission, with the path's response schema without `data` (or `{\"generation_id\"}`); "
                "poll it at `/v2/generations/{generation_id}`.")})
        else:
            out.append(copy.deepcopy(_PARAMETER["async"]))
    webhook = next((p for p in parameters if p.get("in") == "query" and p.get("name") == "webhook_url"), None)
    if webhook is not None:  # 4.0's /async/ paths
        out.append({**copy.deepcopy(webhook), "required": False, "description": (
            "Ideogram's: where the result is POSTed once every image is done, signed with Ed25519 (keys at "
            "`/v1/.well-known/jwks.json`). Must be https and resolve to a public address (unless the operator's "
            "`webhook_allowed_hosts` lists it). Without it, poll `/v1/generations/{generation_id}`"
            + (" (Ideogram requires it on this path; ideohub does not: an ideohub extension)."
               if webhook.get("required") else "."))})
    elif v2:
        out.append({**copy.deepcopy(_PARAMETER["webhook_url"]), "description": (
            "ideohub extension as a query parameter. " + _in_body("webhook_url", declared) + " Makes the call "
            "asynchronous, and the result is POSTed there, signed with Ed25519 (keys at "
            "`/v1/.well-known/jwks.json`). Must be https and resolve to a public address (unless the operator's "
            "`webhook_allowed_hosts` lists it).")})
    else:
        out.append(copy.deepcopy(_PARAMETER["webhook_url"]))
    out += [copy.deepcopy(_PARAMETER["callback_url"]), copy.deepcopy(_PARAMETER["Idempotency-Key"])]
    if endpoint.quotable:
        out.append(_dry_run_parameter(parameters))
    return out


_DOCUMENT_NAMES = {spec.OCT_2026: "October-2026", spec.MID_2026: "July-2026", spec.OFFICIAL: "2025"}


def _spec_operation(endpoint: Endpoint, official: dict[str, Any], ours: dict[str, Any], document: str,
                    source: dict[str, Any]) -> dict[str, Any]:
    """Our operation object for one 4.0 or /v2 endpoint, from the official one in ``source`` (the
    vendored document named ``document``)."""
    v2 = endpoint.operation.family is Family.V2
    request_body = _request_body(endpoint, official)
    safety = copy.deepcopy(official["responses"].get("422") or {})
    if not safety.get("content"):  # /v2 gives its 422 no body; ours is the 4.0 safety error's shape
        safety = {"content": {"application/json": {"schema": _ref("GenerateImageSafetyError")}}}
    safety["description"] = "A safety refusal of the prompt or an image: `{\"error\": \"...\"}`."
    responses = _responses(endpoint, _spec_ok(endpoint, official["responses"]["200"], source), safety,
                           "rejection" if v2 else "either")
    reachable = _closure(source["components"]["schemas"], _refs(official["requestBody"]))
    if "AssetIdentifier" in reachable:
        responses["404"] = _problem("An asset identifier names no image of this account: unknown, expired, or "
                                    "another account's (answered the same).", shape="either")
    aliases = [p for p in all_paths(endpoint) if p != endpoint.path]
    notes = ["Also answers on " + ", ".join(f"`{p}`" for p in aliases) + " (relay dialects).",
             f"The request and answer are the official schemas of Ideogram's {_DOCUMENT_NAMES[document]} API "
             "description."]
    if v2:
        notes.append("402 and 429 are Ideogram's `GenerationErrorResponse`; other errors are RFC 7807 problem JSON.")
        if _has_images(endpoint):
            notes.append("Images in the answer carry `asset_id` (ideohub extension, `ResponseAssetIds`).")
        if "AssetIdentifier" in reachable:
            notes.append("An `*_asset_identifier(s)` field may name an image this server delivered to the same "
                         "account, as `{\"asset_id\": \"...\", \"asset_type\": \"RESPONSE\"}` (ideohub extension), "
                         "instead of uploading it again; other asset types are a 400.")
    extensions = []
    if v2:
        extensions.append("`async` and `webhook_url` as query parameters (Ideogram's are body fields, which work "
                          "too, also where this path's schema lacks them)")
    elif not endpoint.always_async:
        extensions.append("`async` and `webhook_url` (query or top-level body fields) make it asynchronous")
    extensions += ["`callback_url` answers in the resellers' task dialect", "`Idempotency-Key` makes retries safe"]
    if endpoint.quotable and not v2:
        extensions.append("`dry_run=true` answers a `PriceQuote` instead of running it")
    poll = "/v2/generations/{generation_id}" if v2 else "/v1/generations/{generation_id}"
    notes.append(f"Every admitted request is a generation (`X-Ideohub-Generation-Id`), pollable at `{poll}`. "
                 "ideohub extensions: " + "; ".join(extensions) + ".")
    return {
        **{k: v for k, v in ours.items() if k in ("operationId",)},
        "tags": ["Ideogram v2" if v2 else "Ideogram 4.0"],
        "summary": _spec_summary(endpoint),
        "description": "\n\n".join(notes),
        "parameters": _spec_parameters(endpoint, official, source),
        "requestBody": request_body,
        "responses": dict(sorted(responses.items())),
        "security": [{"ApiKeyAuth": []}, {"BearerAuth": []}],
    }


# ---------------------------------------------------------------- generations, webhook keys, tasks

_BOTH_AUTH = [{"ApiKeyAuth": []}, {"BearerAuth": []}]


def _aliases(paths: tuple[str, ...], listed: str) -> str:
    return ", ".join(f"`{p}`" for p in paths if p != listed)


def _id_parameter(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _ref("GenerationId"),
            "description": f"The {what}: 22 URL-safe base64 characters (`A-Z`, `a-z`, `0-9`, `-`, `_`)."}


def _poll_operation(path: str, operation_id: str) -> dict[str, Any]:
    """``GET /v1|v2/generations/{generation_id}``: Ideogram's polling."""
    return {
        "operationId": operation_id,
        "tags": ["Generations"],
        "summary": "Poll a generation",
        "description": "The status of a generation and, once completed, its result: Ideogram's "
                       "`GenerationResponse`. Every generation can be polled, synchronous or not. `pending` "
                       "carries `generation_id`, `status` and `created`; `completed` adds `response_type: \"url\"`, "
                       "`data` (the very items of the synchronous answer, with the same signed links and expiry) "
                       "and `usage_cost_usd_micros`; `failed` adds `failure_reason`. A describe generation answers "
                       "`descriptions` instead of `response_type` and `data` (ideohub extension). Absent fields "
                       "are left out, never `null`. A key sees its own account's generations only.\n\n"
                       "Polling reads the database only and has its own limit per account (`poll_limit` requests "
                       "per `poll_window_s`, by default 1,000 per 10 s), apart from each key's `rpm`.\n\n"
                       f"Also answers on `/ideogram{path}` (relay dialects).",
        "parameters": [_id_parameter("generation_id", "generation's id")],
        "responses": {
            "200": {"description": "The generation.", "headers": _NO_STORE, "content": {"application/json": {
                "schema": {"allOf": [_ref("GenerationResponse"), _ref("GenerationResponseExtensions")]}}}},
            "400": _problem("The `generation_id` is not 22 URL-safe base64 characters."),
            "401": _problem("Missing, unknown, expired or revoked API key.", _WWW_AUTHENTICATE),
            "404": _problem("No generation with that id in the key's account (another account's is answered the "
                            "same)."),
            "429": _problem("Over the account's polling limit.", _RETRY_AFTER),
        },
        "security": _BOTH_AUTH,
    }


def _jwks_operation() -> dict[str, Any]:
    return {
        "operationId": "get_webhook_signing_jwks",
        "tags": ["Webhooks"],
        "summary": "Get the public keys used to verify webhook signatures",
        "description": "The Ed25519 public keys (OKP JWKs with `kid`) our webhooks and task callbacks are signed "
                       "with: the key in use and the keys retired in the last 7 days. A delivery is authentic if "
                       "`X-Ideogram-Webhook-Signature` (lowercase hex) verifies over `generation_id \\n user_id "
                       "\\n timestamp \\n sha256_hex(raw body)` against a key of this set, the one named by "
                       "`X-Ideogram-Webhook-Key-Id` first. Public: no API key.\n\n"
                       f"Also answers on {_aliases(jwks.PATHS, jwks.PATHS[0])}.",
        "responses": {"200": {
            "description": "The JSON Web Key Set.",
            "headers": {"Cache-Control": {"description": f"`public, max-age={jwks.CACHE_S}`.",
                                          "schema": {"type": "string"}}},
            "content": {"application/json": {"schema": _ref("WebhookSigningJwks")}}}},
        "security": [],
    }


def _task_errors(*statuses: str) -> dict[str, Any]:
    texts = {
        "400": ("Invalid input: `message` names the field and the rule.", None),
        "401": ("Missing, unknown, expired or revoked API key.", _WWW_AUTHENTICATE),
        "404": ("No task with that id in the key's account (another account's is answered the same).", None),
        "413": ("The body is larger than the configured limit.", None),
        "429": ("Over the account's polling limit (task reads count against it).", _RETRY_AFTER),
    }
    return {s: _problem(texts[s][0], texts[s][1], "TaskError") for s in statuses}


def _task_operation() -> dict[str, Any]:
    return {
        "operationId": "get_task",
        "tags": ["Task dialect"],
        "summary": "Read a task (ideohub extension)",
        "description": "ideohub extension, the resellers' task dialect (modelled on Kling's task API): a "
                       "generation as a task, in the dialect's envelope. Errors keep the envelope (`code` = the "
                       "HTTP status). Task reads count against the polling limit.\n\n"
                       f"Also answers on {_aliases(tasks.TASK_PATHS, tasks.TASK_PATHS[0])}.",
        **EXTENSION,
        "parameters": [_id_parameter("task_id", "task's id (its generation id)")],
        "responses": {
            "200": {"description": "The task.", "headers": _NO_STORE,
                    "content": {"application/json": {"schema": _ref("TaskEnvelope")}}},
            **_task_errors("400", "401", "404", "429"),
        },
        "security": _BOTH_AUTH,
    }


def _task_query_operation() -> dict[str, Any]:
    return {
        "operationId": "query_tasks",
        "tags": ["Task dialect"],
        "summary": "Read several tasks (ideohub extension)",
        "description": f"ideohub extension, the resellers' task dialect: at most {MAX_TASK_IDS} tasks by id. The "
                       "answer lists the caller's known tasks in the order asked; unknown ids and other accounts' "
                       "are left out. Errors keep the envelope. Task reads count against the polling limit.\n\n"
                       f"Also answers on {_aliases(tasks.QUERY_PATHS, tasks.QUERY_PATHS[0])}.",
        **EXTENSION,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("TaskQueryRequest")}}},
        "responses": {
            "200": {"description": "The known tasks.", "headers": _NO_STORE,
                    "content": {"application/json": {"schema": _ref("TaskListEnvelope")}}},
            **_task_errors("400", "401", "413", "429"),
        },
        "security": _BOTH_AUTH,
    }


_ACCOUNT_OPERATIONS = {  # path under the prefix → (operationId, summary, 200 schema, description)
    "/balance": ("get_account_balance", "The caller's account and balance", "AccountBalance",
                 "The account of the key making the request: its balance in US dollars and whether it is "
                 "unlimited (the default account is)."),
    "/api-keys": ("list_account_api_keys", "The account's API keys and their limits", "AccountApiKeysResponse",
                  "Every key of the caller's account, as Ideogram's `GetApiKeysV2Response` (the key's prefix, "
                  "never its secret), with ideohub's `current` (the key making the request) and `limits`."),
    "/usage": ("get_account_usage", "The account's charged usage", "AccountUsageResponse",
               "What the caller's account was charged, per day or hour (UTC), operation, price tier and key, as "
               "Ideogram's `GetUsageInfoResponse`: `amount` in exact cents, plus `amount_usd`, `images` and "
               "`requests`."),
    "/requests": ("list_account_requests", "The account's requests", "AccountRequestPage",
                  "The request log of the caller's account, newest first, a page at a time (`next_before`); no "
                  "channel, engine or upstream detail."),
    "/requests/{request_id}": ("get_account_request", "One request of the account", "AccountRequestDetail",
                               "One request of the caller's account: its parameters (prompts only when the "
                               "operator keeps them), charge and images (signed links while they live)."),
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _account_parameters(path: str) -> list[dict[str, Any]]:
    if path == "/usage":
        return [_query("segment_by", {"type": "string", "enum": ["DAY", "HOUR"], "default": "DAY"},
                       "Ideogram's `SegmentBy`: a segment per day or per hour (UTC); lower case is accepted."),
                _query("days", {"type": "integer", "minimum": 1, "maximum": account.MAX_DAYS,
                                "default": account.DEFAULT_DAYS}, "How many days back from now.")]
    if path == "/requests":
        return [_query("key_id", {"type": "string", "maxLength": 40}, "Only this key's requests (of the account)."),
                _query("operation", {"type": "string", "enum": [op.value for op in Operation]},
                       "Only this operation's requests."),
                _query("state", {"type": "string", "enum": list(REQUEST_STATES)}, "Only requests in this state."),
                _query("since", {"type": "string", "format": "date-time"},
                       "Only requests made at or after this time (ISO 8601; UTC when it names no offset)."),
                _query("until", {"type": "string", "format": "date-time"},
                       "Only requests made before this time (ISO 8601; UTC when it names no offset)."),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                       "The page size."),
                _query("before", {"type": "string", "maxLength": 200},
                       "The cursor: the previous page's `next_before`.")]
    if path == "/requests/{request_id}":
        return [{"name": "request_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 40},
                 "description": "The request's `id`, from the request log."}]
    return []


def _account_operation(suffix: str) -> dict[str, Any]:
    """``GET /v2/account{suffix}``: the key holder's own account (ideohub extension)."""
    operation_id, summary, schema, text = _ACCOUNT_OPERATIONS[suffix]
    path = account.PREFIXES[0] + suffix
    parameters = _account_parameters(suffix)
    responses: dict[str, Any] = {
        "200": {"description": f"`{schema}`.", "headers": {"Cache-Control": {
            "description": "`no-store`.", "schema": {"type": "string"}}},
            "content": {"application/json": {"schema": _ref(schema)}}}}
    if any(p["in"] == "query" for p in parameters):
        responses["400"] = _problem("A parameter out of its bounds, or one this path does not take: `detail` names "
                                    "it and the rule.")
    responses["401"] = _problem("Missing, unknown, expired or revoked API key (a cookie is never read).",
                                _WWW_AUTHENTICATE)
    if "{request_id}" in suffix:
        responses["404"] = _problem("No request with that id in the key's account (another account's is answered "
                                    "the same).")
    responses["429"] = _problem("Over the account's polling limit (these reads count against it). As on every /v2 "
                                "path, Ideogram's `GenerationErrorResponse` (`reject_reason` `inflight_limit`).",
                                _RETRY_AFTER, "GenerationErrorResponse")
    return {
        "operationId": operation_id,
        "tags": ["account"],
        "summary": f"{summary} (ideohub extension)",
        "description": f"ideohub extension for key holders. {text} Authenticated by the API key exactly as the "
                       "image API, never by a cookie; only the key's own account is visible, and no secret is "
                       "answered. These reads count against the account's polling limit (`poll_limit` per "
                       "`poll_window_s`).\n\n"
                       f"Also answers on {_aliases(tuple(p + suffix for p in account.PREFIXES), path)} "
                       "(relay dialects).",
        **EXTENSION,
        **({"parameters": parameters} if parameters else {}),
        "responses": responses,
        "security": _BOTH_AUTH,
    }


def _generation_operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(path, method) → operation, for the routes that declare themselves documented."""
    v1, v2 = generations.DOCUMENTED_PATHS
    return {
        **{(account.PREFIXES[0] + suffix, "get"): _account_operation(suffix) for suffix, _handler in account.ROUTES},
        (v1, "get"): _poll_operation(v1, "get_generation"),
        (v2, "get"): _poll_operation(v2, "get_generation_v2"),
        (jwks.PATHS[0], "get"): _jwks_operation(),
        (tasks.TASK_PATHS[0], "get"): _task_operation(),
        (tasks.QUERY_PATHS[0], "post"): _task_query_operation(),
    }


def _to_openapi_31(schema: Any) -> Any:
    """An OpenAPI 3.0 schema in OpenAPI 3.1's JSON Schema: ``nullable`` as a ``null`` type, and a
    boolean ``exclusiveMinimum``/``exclusiveMaximum`` as the bound itself."""
    out = spec.nullable_to_jsonschema(schema)

    def bounds(node: Any) -> Any:
        if isinstance(node, list):
            return [bounds(n) for n in node]
        if not isinstance(node, dict):
            return node
        node = {k: bounds(v) for k, v in node.items()}
        for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(node.get(exclusive), bool):
                if node.pop(exclusive) and bound in node:
                    node[exclusive] = node.pop(bound)
        return node

    return bounds(out)


def _without(node: Any, keys: frozenset[str], top: frozenset[str] = frozenset()) -> Any:
    """``node`` without the keywords ``keys`` anywhere (never a property of that name) and ``top``
    at its top level."""
    def strip(n: Any, names: bool) -> Any:
        if isinstance(n, list):
            return [strip(x, False) for x in n]
        if not isinstance(n, dict):
            return n
        if names:  # a ``properties`` map: its keys are field names, not keywords
            return {k: strip(v, False) for k, v in n.items()}
        return {k: strip(v, k in ("properties", "patternProperties")) for k, v in n.items() if k not in keys}

    out = strip(node, False)
    return {k: v for k, v in out.items() if k not in top} if isinstance(out, dict) else out


def _copy_components(schemas: dict[str, Any], name: str, roots: set[str]) -> None:
    """Copy ``roots`` and what they reference from the vendored document ``name``; a name that
    is already in the document with other content (ours, or another file's) is an error. From
    an extract (a document with ``x-extract``), a schema that differs only by what the extract
    left out is the one already there (kept, with its descriptions), and so is one resolved in
    ``RESOLVED_CLASHES``."""
    document = spec.load(name)
    source = document["components"]["schemas"]
    left_out = EXTRACT_LEFT_OUT if "x-extract" in document else frozenset()
    for component, schema in _closure(source, roots).items():
        converted = _to_openapi_31(schema)
        present = schemas.get(component)
        if present is not None and present != converted:
            accepted = RESOLVED_CLASHES.get(component, frozenset())
            if _without(present, left_out, accepted) != _without(converted, left_out, accepted):
                raise RuntimeError(f"component {component} of {name} would replace a different schema of that name")
            continue
        schemas[component] = converted


def _complete(doc: dict[str, Any]) -> dict[str, Any]:
    official = spec.load(spec.OFFICIAL)
    paths = doc.setdefault("paths", {})
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    theirs = set(schemas) | set(official["components"]["schemas"])
    for document in (spec.MID_2026, spec.OCT_2026):
        theirs |= set(spec.load(document)["components"]["schemas"])
    clash = set(OURS) & theirs
    if clash:
        raise RuntimeError(f"components {sorted(clash)} are ours but have an official or generated namesake")
    needed: set[str] = set()
    for endpoint in ENDPOINTS.values():
        item = paths.setdefault(endpoint.path, {})
        op = _operation(endpoint, official["paths"][endpoint.path]["post"], item.get("post", {}))
        item["post"] = op
        needed |= _refs(op)
    newer: dict[str, set[str]] = {spec.OCT_2026: set(OCT_2026_ROOTS)}  # document → the roots to copy from it
    for endpoint in SPEC_ENDPOINTS:
        found = spec.newest_with(endpoint.path)
        if found is None:
            raise RuntimeError(f"{endpoint.path}: no vendored document declares it")
        document, source = found
        item = paths.setdefault(endpoint.path, {})
        op = _spec_operation(endpoint, source["paths"][endpoint.path]["post"], item.get("post", {}), document, source)
        item["post"] = op
        newer.setdefault(document, set()).update(_refs(op) & set(source["components"]["schemas"]))
    for (path, method), op in _generation_operations().items():
        if method not in paths.get(path, {}):
            raise RuntimeError(f"{method.upper()} {path} is not a documented route")
        paths[path][method] = op
    mid_2026 = set(_closure(spec.load(spec.MID_2026)["components"]["schemas"], MID_2026_ROOTS))
    needed |= _refs(list(OURS.values())) - mid_2026  # those come from July (its ApiProfileApiKey has `label`)
    _copy_components(schemas, spec.OFFICIAL, needed & set(official["components"]["schemas"]))
    _copy_components(schemas, spec.MID_2026, MID_2026_ROOTS)
    for document in (spec.MID_2026, spec.OCT_2026):  # older first: where names meet, the check above applies
        if newer.get(document):
            _copy_components(schemas, document, newer[document])
    schemas.update(copy.deepcopy(OURS))
    unresolved = _refs(doc) - set(schemas)
    if unresolved:
        raise RuntimeError(f"references to missing components: {sorted(unresolved)}")

    for path, item in paths.items():
        if not path.startswith("/admin"):
            continue
        for op in item.values():
            op["security"] = [{"BearerAuth": []}]
            responses = op.setdefault("responses", {})
            if "HTTPValidationError" in repr(responses.pop("422", None)):
                responses["400"] = _problem("Invalid body or parameters: `detail` names the field and the rule.")
            responses.setdefault("401", _problem("Missing or wrong admin token."))
            responses.setdefault("404", _problem("The admin API is disabled (no `admin_token`) or the item does not exist."))
    if "HTTPValidationError" not in repr(paths):  # FastAPI's 422 shape, which our handlers never send
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)

    components["securitySchemes"] = {
        "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "Api-Key",
                       "description": "An ideohub API key (the official header)."},
        "BearerAuth": {"type": "http", "scheme": "bearer",
                       "description": "An ideohub API key on image and `/v2/account` endpoints (the relays' "
                                      "style); the admin token on `/admin`."},
    }
    doc["info"]["description"] = DESCRIPTION
    ours = [{"name": "Legacy", "description": "Ideogram's original endpoints (`/generate`, `/remix`, …)."},
            {"name": "Ideogram 3.0", "description": "`/v1/ideogram-v3/...`"},
            {"name": "Ideogram 4.0", "description": "`/v1/ideogram-v4/...` and `/v1/ideogram-v45/...`, with their "
                                                    "`/async/` variants."},
            {"name": "Ideogram v2", "description": "Ideogram's `/v2` API: `/v2/image/{capability}/{model}`."},
            {"name": "Generations", "description": "Polling a generation, as Ideogram's `/v1|v2/generations`."},
            {"name": "Webhooks", "description": "The keys webhooks are signed with."},
            {"name": "Task dialect", "description": "ideohub extension: the resellers' task API (Kling's style)."},
            {"name": "account", "description": "ideohub extension: the key holder's own account (balance, keys, "
                                               "usage, requests), by the API key; modelled on Ideogram's usage and "
                                               "key-list answers."}]
    names = {t["name"] for t in ours}
    doc["tags"] = [*ours, *[t for t in doc.get("tags", []) if t.get("name") not in names]]
    return doc


def _assets_dir() -> Path:
    from swagger_ui_bundle import swagger_ui_path  # imported when /docs is first used, not at start-up

    return Path(swagger_ui_path)


def install_openapi(app: FastAPI) -> None:
    """Complete ``app``'s OpenAPI document and serve Swagger UI from our own asset URLs.
    Create the app with ``docs_url=None`` (FastAPI's own page loads its assets from a CDN)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _complete(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    async def docs(request: Request) -> HTMLResponse:
        # URLs relative to the page (/docs), so it works under any path prefix a reverse proxy adds
        assets = ASSETS_PATH.lstrip("/")
        return get_swagger_ui_html(
            openapi_url=(app.openapi_url or "/openapi.json").lstrip("/"),
            title=f"{app.title} — API docs",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
        )

    async def asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise NotFound(f"no docs asset named {name!r}")
        return FileResponse(_assets_dir() / name, media_type=media_type,
                            headers={"Cache-Control": "public, max-age=86400"})

    app.add_api_route(DOCS_PATH, docs, methods=["GET"], include_in_schema=False)
    app.add_api_route(ASSETS_PATH + "/{name}", asset, methods=["GET", "HEAD"], include_in_schema=False)
