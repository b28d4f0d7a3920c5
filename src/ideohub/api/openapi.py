"""Our published API description (``/openapi.json``) and offline docs (``/docs``).

FastAPI cannot see the image endpoints' bodies (each handler reads its own multipart or JSON),
so ``install_openapi`` completes the generated document: for every endpoint on its official
path, the official request schemas for the content types it accepts, the official 200 and 422
schemas, our RFC 7807 errors, and the two auth schemes; the official components it needs are
copied in from the vendored ``ideohub/spec/ideogram-openapi.json`` (``nullable`` rewritten for
OpenAPI 3.1). Generations (polling, the webhook keys) follow the July-2026 document, whose
components are copied the same way; a copied name that would differ from one already in the
document stops the build instead of replacing it. What Ideogram does not have (async and
idempotency on these endpoints, the task dialect) is marked ``x-ideohub-extension: true``.
Relay alias paths stay out of the paths list and are named in the descriptions.
Swagger UI's assets come from the ``swagger_ui_bundle`` package and are served by us, so
``/docs`` needs no network.
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
from ..notify.payloads import TASK_FAILED, TASK_PROCESSING, TASK_SUBMITTED, TASK_SUCCEED
from . import generations, jwks, tasks
from .dialects import ENDPOINTS, Endpoint, all_paths

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
}
# The July-2026 components the generation routes use (copied with what they reference)
MID_2026_ROOTS = {"GenerationResponse", "WebhookSigningJwks", "AsyncImageGenerationResponseV4", "WebhookUrl"}

DESCRIPTION = """\
The Ideogram image API, self-hosted: clients written for `api.ideogram.ai` (or for the resellers
that relay it) work by changing only their base URL and key.

**Authentication.** Every image endpoint takes an ideohub API key, either as `Api-Key: KEY`
(`ApiKeyAuth`) or as `Authorization: Bearer KEY` (`BearerAuth`). The `/admin` API takes the
admin token as `Authorization: Bearer <admin_token>` (`BearerAuth`).

**Paths.** Each image endpoint is listed once, on its official path. The same operation also
answers on the relay dialects' paths, which are not listed separately: `/ideogram` + the
official path (e.g. `/ideogram/v1/ideogram-v3/generate`), and for the legacy endpoints
`/ideogram/v1` + the legacy path (e.g. `/ideogram/v1/generate`).

**Bodies and responses** are Ideogram's official schemas. Image URLs in responses point to this
server: signed, expiring links (`exp`, `kid`, `sig`).

**Errors** are RFC 7807 problem JSON (`Problem`) whose `detail` names the field and the rule;
a safety refusal is the spec's `422 {"error": "..."}`.

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
    """An error answer: ``Problem``, ``TaskError`` (the task dialect), or ``either`` (an image
    endpoint: the task envelope when the request carries ``callback_url``)."""
    schema = {"oneOf": [_ref("Problem"), _ref("TaskError")]} if shape == "either" else _ref(shape)
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


def _ok(official: dict[str, Any]) -> dict[str, Any]:
    """The official 200, or the asynchronous acknowledgement, or the task envelope."""
    out = copy.deepcopy(official)
    out["description"] = (official.get("description", "").rstrip(".") + ". With `async` or `webhook_url`: "
                          "`AsyncImageGenerationResponseV4`, `{\"generation_id\"}` (ideohub extension on this "
                          "endpoint); with `callback_url`: the `TaskEnvelope` (ideohub extension).")
    for media in out["content"].values():
        # anyOf, not oneOf: DescribeResponse requires no field, so it also matches the other two shapes
        media["schema"] = {"anyOf": [media["schema"], _ref("AsyncImageGenerationResponseV4"), _ref("TaskEnvelope")]}
    out["headers"] = {**out.get("headers", {}), **_GENERATION_HEADER}
    return out


def _operation(endpoint: Endpoint, official: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """Our operation object for one image endpoint, from the official one."""
    content = official["requestBody"]["content"]
    missing = [mt for mt in _media_types(endpoint) if mt not in content]
    if missing:
        raise RuntimeError(f"{endpoint.path}: the official spec has no {missing} body")
    aliases = [p for p in all_paths(endpoint) if p != endpoint.path]
    auth = endpoint.auth_status
    either, after = "either", _GENERATION_HEADER  # errors after admission carry the generation id
    responses: dict[str, Any] = {
        "200": _ok(official["responses"]["200"]),
        "400": _problem("Invalid input: `detail` names the field and the rule.", shape=either),
        "402": _problem("The account's balance does not cover the request's price (nothing ran).", shape=either),
    }
    if auth == 401:
        responses["401"] = _problem("Missing or unknown API key.", _WWW_AUTHENTICATE, either)
        responses["403"] = _problem("The key is expired, revoked, not allowed this operation, or over its spending "
                                    "cap.", shape=either)
    else:  # the spec answers 403 for a missing key on /remix, /upscale and V3 remix
        responses["403"] = _problem("Missing, unknown or expired API key, or one not allowed this operation.",
                                    shape=either)
    responses.update({
        "409": _problem("The `Idempotency-Key` was used in the last 24 h for a different request (ideohub "
                        "extension).", shape=either),
        "413": _problem("The body, a part or a file is larger than the configured limit.", shape=either),
        "415": _problem("The Content-Type is not one this endpoint accepts, or an upload is not JPEG, PNG or WebP.",
                        shape=either),
        "422": {**_with_task_error(official["responses"]["422"]), "headers": after},
        "429": _problem("Rate limit of the key, or every upstream channel is busy or cooling down.",
                        {**_RETRY_AFTER, **after}, either),
        "502": _problem("Every upstream channel tried failed (the request is refunded).", after, either),
        "503": _problem("No engine serves this operation, or the work queue is full.", {**_RETRY_AFTER, **after},
                        either),
        "504": _problem("The request did not complete within the configured deadline (refunded).", after, either),
    })
    description = (official.get("description", "").strip() + "\n\n" if official.get("description") else "") + (
        "Also answers on " + ", ".join(f"`{p}`" for p in aliases) + " (relay dialects).\n\n"
        "Every admitted request is a generation (`X-Ideohub-Generation-Id`), pollable at "
        "`/v1/generations/{generation_id}`. ideohub extensions: `async`, `webhook_url` and `callback_url` (query "
        "or top-level body fields) make it asynchronous; `Idempotency-Key` makes retries safe.")
    return {
        **{k: v for k, v in ours.items() if k in ("operationId",)},
        "tags": ["Ideogram 3.0" if endpoint.operation.is_v3 else "Legacy"],
        "summary": official.get("summary", ours.get("summary", endpoint.path)),
        "description": description,
        "parameters": copy.deepcopy(ASYNC_PARAMETERS),
        "requestBody": {
            "required": True,
            "content": {mt: copy.deepcopy(content[mt]) for mt in _media_types(endpoint)},
        },
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


def _generation_operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(path, method) → operation, for the routes that declare themselves documented."""
    v1, v2 = generations.DOCUMENTED_PATHS
    return {
        (v1, "get"): _poll_operation(v1, "get_generation"),
        (v2, "get"): _poll_operation(v2, "get_generation_v2"),
        (jwks.PATHS[0], "get"): _jwks_operation(),
        (tasks.TASK_PATHS[0], "get"): _task_operation(),
        (tasks.QUERY_PATHS[0], "post"): _task_query_operation(),
    }


def _copy_components(schemas: dict[str, Any], name: str, roots: set[str]) -> None:
    """Copy ``roots`` and what they reference from the vendored document ``name``; a name that
    is already in the document with other content (ours, or the other file's) is an error."""
    source = spec.load(name)["components"]["schemas"]
    for component, schema in _closure(source, roots).items():
        converted = spec.nullable_to_jsonschema(schema)
        if component in schemas and schemas[component] != converted:
            raise RuntimeError(f"component {component} of {name} would replace a different schema of that name")
        schemas[component] = converted


def _complete(doc: dict[str, Any]) -> dict[str, Any]:
    official = spec.load(spec.OFFICIAL)
    paths = doc.setdefault("paths", {})
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    clash = set(OURS) & (set(schemas) | set(official["components"]["schemas"])
                         | set(spec.load(spec.MID_2026)["components"]["schemas"]))
    if clash:
        raise RuntimeError(f"components {sorted(clash)} are ours but have an official or generated namesake")
    needed: set[str] = set()
    for endpoint in ENDPOINTS.values():
        item = paths.setdefault(endpoint.path, {})
        op = _operation(endpoint, official["paths"][endpoint.path]["post"], item.get("post", {}))
        item["post"] = op
        needed |= _refs(op)
    for (path, method), op in _generation_operations().items():
        if method not in paths.get(path, {}):
            raise RuntimeError(f"{method.upper()} {path} is not a documented route")
        paths[path][method] = op
    needed |= _refs(list(OURS.values()))
    _copy_components(schemas, spec.OFFICIAL, needed & set(official["components"]["schemas"]))
    _copy_components(schemas, spec.MID_2026, MID_2026_ROOTS)
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
                       "description": "An ideohub API key on image endpoints (the relays' style); "
                                      "the admin token on `/admin`."},
    }
    doc["info"]["description"] = DESCRIPTION
    ours = [{"name": "Legacy", "description": "Ideogram's original endpoints (`/generate`, `/remix`, …)."},
            {"name": "Ideogram 3.0", "description": "`/v1/ideogram-v3/...`"},
            {"name": "Generations", "description": "Polling a generation, as Ideogram's `/v1|v2/generations`."},
            {"name": "Webhooks", "description": "The keys webhooks are signed with."},
            {"name": "Task dialect", "description": "ideohub extension: the resellers' task API (Kling's style)."}]
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
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} — API docs",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png",
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
