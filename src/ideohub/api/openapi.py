"""Our published API description (``/openapi.json``) and offline docs (``/docs``).

FastAPI cannot see the image endpoints' bodies (each handler reads its own multipart or JSON),
so ``install_openapi`` completes the generated document: for every endpoint on its official
path, the official request schemas for the content types it accepts, the official 200 and 422
schemas, our RFC 7807 errors, and the two auth schemes; the official components it needs are
copied in from the vendored ``ideohub/spec/ideogram-openapi.json`` (``nullable`` rewritten for
OpenAPI 3.1). Relay alias paths stay out of the paths list and are named in the descriptions.
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


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    if headers:
        out["headers"] = headers
    return out


def _media_types(endpoint: Endpoint) -> list[str]:
    return [mt for mt, ok in (("application/json", endpoint.json_body), ("multipart/form-data", endpoint.multipart)) if ok]


def _operation(endpoint: Endpoint, official: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """Our operation object for one image endpoint, from the official one."""
    content = official["requestBody"]["content"]
    missing = [mt for mt in _media_types(endpoint) if mt not in content]
    if missing:
        raise RuntimeError(f"{endpoint.path}: the official spec has no {missing} body")
    aliases = [p for p in all_paths(endpoint) if p != endpoint.path]
    auth = endpoint.auth_status
    www_authenticate = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {
        "200": copy.deepcopy(official["responses"]["200"]),
        "400": _problem("Invalid input: `detail` names the field and the rule."),
        "402": _problem("The account's balance does not cover the request's price (nothing ran)."),
    }
    if auth == 401:
        responses["401"] = _problem("Missing or unknown API key.", www_authenticate)
        responses["403"] = _problem("The key is expired, revoked, not allowed this operation, or over its spending cap.")
    else:  # the spec answers 403 for a missing key on /remix, /upscale and V3 remix
        responses["403"] = _problem("Missing, unknown or expired API key, or one not allowed this operation.")
    responses.update({
        "413": _problem("The body, a part or a file is larger than the configured limit."),
        "415": _problem("The Content-Type is not one this endpoint accepts, or an upload is not JPEG, PNG or WebP."),
        "422": copy.deepcopy(official["responses"]["422"]),
        "429": _problem("Rate limit of the key, or every upstream channel is busy or cooling down.", _RETRY_AFTER),
        "502": _problem("Every upstream channel tried failed (the request is refunded)."),
        "503": _problem("No engine serves this operation, or the work queue is full.", _RETRY_AFTER),
        "504": _problem("The request did not complete within the configured deadline (refunded)."),
    })
    description = (official.get("description", "").strip() + "\n\n" if official.get("description") else "") + (
        "Also answers on " + ", ".join(f"`{p}`" for p in aliases) + " (relay dialects).")
    return {
        **{k: v for k, v in ours.items() if k in ("operationId",)},
        "tags": ["Ideogram 3.0" if endpoint.operation.is_v3 else "Legacy"],
        "summary": official.get("summary", ours.get("summary", endpoint.path)),
        "description": description,
        "requestBody": {
            "required": True,
            "content": {mt: copy.deepcopy(content[mt]) for mt in _media_types(endpoint)},
        },
        "responses": dict(sorted(responses.items())),
        "security": [{"ApiKeyAuth": []}, {"BearerAuth": []}],
    }


def _complete(doc: dict[str, Any]) -> dict[str, Any]:
    official = spec.load(spec.OFFICIAL)
    paths = doc.setdefault("paths", {})
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    needed: set[str] = set()
    for endpoint in ENDPOINTS.values():
        item = paths.setdefault(endpoint.path, {})
        op = _operation(endpoint, official["paths"][endpoint.path]["post"], item.get("post", {}))
        item["post"] = op
        needed |= _refs(op)
    needed.discard("Problem")
    for name, schema in _closure(official["components"]["schemas"], needed).items():
        if name in schemas and schemas[name] != spec.nullable_to_jsonschema(schema):
            raise RuntimeError(f"component {name} would replace one of our own schemas")
        schemas[name] = spec.nullable_to_jsonschema(schema)
    schemas["Problem"] = PROBLEM

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
    doc["tags"] = [{"name": "Legacy", "description": "Ideogram's original endpoints (`/generate`, `/remix`, …)."},
                   {"name": "Ideogram 3.0", "description": "`/v1/ideogram-v3/...`"},
                   *[t for t in doc.get("tags", []) if t.get("name") not in ("Legacy", "Ideogram 3.0")]]
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
