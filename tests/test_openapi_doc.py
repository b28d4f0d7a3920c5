"""Our published API description and docs: ``/openapi.json`` is a valid OpenAPI 3.1 document
that describes every image endpoint's body (the official schemas, per accepted content type),
responses and auth schemes — the legacy and 3.0 endpoints from the original document, the 4.0
and /v2 endpoints from the October-2026 extract, with ``dry_run`` (Ideogram's on /v2, ours
elsewhere), /v2's ``GenerationErrorResponse`` on 402 and 429 and its images' ``asset_id`` — and
the generation routes (polling, the webhook keys, the task dialect) with the official July-2026
schemas or our own, marked as extensions; the key holders' account API (``/v2/account/*``, by the
API key) with Ideogram's usage and key-list shapes, extended; real answers of a running server
validate against what it publishes; ``/docs`` loads only assets we serve ourselves (works offline); the official
specs the tests use are vendored in the package and pinned."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from urllib.parse import urljoin, urlsplit
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from conftest import Running, ThreadedServer, free_port
from conftest import sim_channel as channel
from generations.support import PNG, Gate, new_key, poll_until
from openapi import PINNED_SHA256, _validator, document, nullable_to_jsonschema
from openapi_spec_validator import validate as validate_openapi

from ideohub import spec
from ideohub.api import account, generations, jwks, tasks
from ideohub.api.app import create_app
from ideohub.api.dialects import ENDPOINTS, SPEC_ENDPOINTS, all_paths
from ideohub.api.openapi import OURS, RESOLVED_CLASHES, _copy_components
from ideohub.config import load_settings
from ideohub.domain.errors import UpstreamFailed
from ideohub.domain.generations import FailureReason
from ideohub.domain.operations import Family, ImageResult, Operation
from ideohub.domain.sizes import Size
from ideohub.store import db
from ideohub.store.ledger import Ledger
from ideohub.store.repository import Repository
from ideohub.store.secrets import Secrets

ROOT = Path(__file__).resolve().parents[1]
V3 = "/v1/ideogram-v3/generate"
CALLBACK = "http://127.0.0.1:9/callback"  # allowed by webhook_allowed_hosts; never answered
ID_PATTERN = "^[A-Za-z0-9_-]{22}$"
MID_2026_NAMES = {"GenerationResponse", "ImageGenerationObject", "WebhookSigningJwks", "WebhookSigningJwk",
                  "AsyncImageGenerationResponseV4", "WebhookUrl",
                  # the account API's: July's key list (its ApiProfileApiKey has `label`), price, tool type
                  "GetApiKeysV2Response", "ApiProfileApiKey", "ApiKeyStatus", "Price", "ToolType"}
ACCOUNT = {  # path → (operationId, 200 schema, the query parameters and their bounds)
    "/v2/account/balance": ("get_account_balance", "AccountBalance", {}),
    "/v2/account/api-keys": ("list_account_api_keys", "AccountApiKeysResponse", {}),
    "/v2/account/usage": ("get_account_usage", "AccountUsageResponse", {
        "segment_by": {"enum": ["DAY", "HOUR"]}, "days": {"minimum": 1, "maximum": 366}}),
    "/v2/account/requests": ("list_account_requests", "AccountRequestPage", {
        "key_id": {}, "operation": {}, "state": {"enum": ["received", "queued", "running", "done", "failed"]},
        "since": {"format": "date-time"}, "until": {"format": "date-time"}, "limit": {"minimum": 1, "maximum": 200},
        "before": {}}),
    "/v2/account/requests/{request_id}": ("get_account_request", "AccountRequestDetail", {}),
}
ADMIN_TOKEN = "admin-token-" + "d" * 32
V2 = "/v2/image/generate/ideogram-4"
V4 = "/v1/ideogram-v4/generate"
REF = "#/components/schemas/"
# What the October-2026 extract left out of everything it copied (its x-extract rule)
LEFT_OUT = {"description", "example", "examples", "summary", "x-tool-description"}
# The one October component that differs from the copy we publish by more than that (July's is
# published): its display title
KNOWN_DIFFERENCES = {"WebhookUrl": {"title"}}


class SquareGate(Gate):
    """The gate, reporting a size of Ideogram 3.0's list (``ResolutionV3``), so its V3 answers are
    the official shape."""

    async def run(self, request: Any, ctx: Any) -> Any:
        result = await super().run(request, ctx)
        if isinstance(result, ImageResult):
            result.images = [dataclasses.replace(i, resolution=Size(1024, 1024)) for i in result.images]
        return result


@pytest.fixture(scope="module")
def gate() -> Gate:
    return SquareGate()


@pytest.fixture(scope="module")
def server(tmp_path_factory, gate):  # type: ignore[no-untyped-def]
    """One real server for the whole module; every operation runs on a gate engine the tests hold."""
    port = free_port()
    settings = load_settings(data_dir=tmp_path_factory.mktemp("openapi") / "data", port=port,
                             webhook_allowed_hosts=["127.0.0.1"])
    db.upgrade(settings.db_url)
    with ThreadedServer(create_app(settings, engines={op: gate for op in Operation}), port), \
            httpx.Client(base_url=settings.base_url, timeout=60) as client:
        running = Running(settings.base_url, "", settings, client)
        _key_id, running.key = running.create_key()
        yield running


@pytest.fixture(scope="module")
def doc(server) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = server.client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    return r.json()




def component_validator(doc: dict[str, Any], ref: str) -> jsonschema.Validator:
    """A JSON Schema 2020-12 validator (OpenAPI 3.1's dialect) for one of our components."""
    return jsonschema.Draft202012Validator({"$ref": ref, "components": doc["components"]})


def response_validator(doc: dict[str, Any], path: str, method: str, status: int) -> jsonschema.Validator:
    """A validator for the JSON body our document publishes for one answer."""
    schema = doc["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


def undeclared(doc: dict[str, Any], schema: Any, body: Any, at: str = "$") -> list[str]:
    """The fields of ``body`` that ``schema`` does not declare (through ``$ref``, ``allOf``,
    ``anyOf``, ``oneOf``): an answer may carry nothing the document leaves out. An object schema
    with no ``properties`` at all is free-form."""
    def flat(s: Any) -> list[dict[str, Any]]:
        if not isinstance(s, dict):
            return []
        s = resolve(doc, s)
        return [s] + [x for key in ("allOf", "anyOf", "oneOf") for branch in s.get(key, []) for x in flat(branch)]

    schemas = flat(schema)
    out: list[str] = []
    if isinstance(body, dict) and any("properties" in s for s in schemas):
        for field, value in body.items():
            found = [s["properties"][field] for s in schemas if field in s.get("properties", {})]
            if not found:
                out.append(f"{at}.{field}")
            out += undeclared(doc, {"allOf": found}, value, f"{at}.{field}")  # every schema found applies
    elif isinstance(body, list):
        items = [s["items"] for s in schemas if "items" in s]
        for i, value in enumerate(body):
            out += undeclared(doc, {"allOf": items}, value, f"{at}[{i}]")
    return sorted(set(out))


def refs(node: Any) -> set[str]:
    return set(re.findall(r"#/components/schemas/([A-Za-z0-9_.-]+)", repr(node)))


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def check_answer(doc: dict[str, Any], r: httpx.Response, path: str, method: str = "post") -> Any:
    """The answer validates against what we publish for its path and status."""
    assert str(r.status_code) in doc["paths"][path][method]["responses"], (path, r.status_code, r.text)
    body = r.json()
    response_validator(doc, path, method, r.status_code).validate(body)
    return body


def to_openapi_31(node: Any) -> Any:
    """An OpenAPI 3.0 schema as OpenAPI 3.1 writes it: ``nullable`` as the ``null`` type, and a
    boolean ``exclusiveMinimum``/``exclusiveMaximum`` as the bound (the tests' own conversion)."""
    def bounds(n: Any) -> Any:
        if isinstance(n, list):
            return [bounds(x) for x in n]
        if not isinstance(n, dict):
            return n
        n = {k: bounds(v) for k, v in n.items()}
        for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if n.get(exclusive) is True:
                del n[exclusive]
                n[exclusive] = n.pop(bound)
            elif n.get(exclusive) is False:
                del n[exclusive]
        return n

    return bounds(nullable_to_jsonschema(node))


def without(node: Any, keys: set[str], top: set[str] = frozenset()) -> Any:  # type: ignore[assignment]
    """``node`` without the keywords ``keys`` (anywhere but as property names) and ``top``."""
    def strip(n: Any, names: bool = False) -> Any:
        if isinstance(n, list):
            return [strip(x) for x in n]
        if not isinstance(n, dict):
            return n
        if names:
            return {k: strip(v) for k, v in n.items()}
        return {k: strip(v, k == "properties") for k, v in n.items() if k not in keys}

    return {k: v for k, v in strip(node).items() if k not in top}


def closure(schemas: dict[str, Any], names: set[str]) -> set[str]:
    reached, todo = set(), set(names)
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo |= refs(schemas[name])
    return reached


def alternatives_of(doc: dict[str, Any], path: str) -> list[dict[str, Any]]:
    return doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["anyOf"]


def matching(doc: dict[str, Any], path: str, body: Any) -> list[int]:
    """The positions of the published 200 alternatives that ``body`` validates against."""
    return [i for i, s in enumerate(alternatives_of(doc, path))
            if jsonschema.Draft202012Validator({**s, "components": doc["components"]}).is_valid(body)]


def unfunded_key(srv: Running) -> str:
    """A key of a new account with no balance."""
    async def go() -> str:
        repo = Repository.connect(srv.settings.db_url, Secrets.load(srv.settings).key_pepper)
        try:
            account = await Ledger(repo.session).create_account("unfunded")
            _row, key = await repo.create_key("k", account_id=account.id)
            return key
        finally:
            await repo.close()

    return asyncio.run(go())


# ---------------------------------------------------------------- the vendored specs


def test_vendored_specs_are_the_pinned_files() -> None:
    for name in spec.FILES:
        assert document(name)["openapi"].startswith("3.0"), name  # raises SpecDrift on any change
    assert set(PINNED_SHA256) == set(spec.FILES)


def test_nothing_in_the_repo_reads_the_shared_folder() -> None:
    """The README's test command must pass on a fresh clone with nothing beside it."""
    pattern = re.compile(r"""["']shared["']\s*/|["']shared["'],\s*["']spec|\.\./shared|/work/shared""")
    offenders = [str(p.relative_to(ROOT)) for folder in ("src", "tests") for p in (ROOT / folder).rglob("*.py")
                 if p != Path(__file__).resolve() and pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


# ---------------------------------------------------------------- /openapi.json


def test_document_is_valid_openapi_with_both_auth_schemes(doc) -> None:  # type: ignore[no-untyped-def]
    validate_openapi(doc)
    assert doc["openapi"].startswith("3.1")
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKeyAuth"] == {**schemes["ApiKeyAuth"], "type": "apiKey", "in": "header", "name": "Api-Key"}
    assert schemes["BearerAuth"]["type"] == "http" and schemes["BearerAuth"]["scheme"] == "bearer"
    for path, item in doc["paths"].items():
        if path.startswith("/admin"):
            for op in item.values():
                assert op["security"] == [{"BearerAuth": []}], path
                assert "422" not in op["responses"], path  # invalid input is our 400 problem, not FastAPI's 422
                if "requestBody" in op or op.get("parameters"):
                    assert "400" in op["responses"], path
    assert "HTTPValidationError" not in doc["components"]["schemas"]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS.values()), ids=[e.path for e in ENDPOINTS.values()])
def test_every_image_endpoint_has_its_official_bodies_and_responses(doc, endpoint) -> None:  # type: ignore[no-untyped-def]
    official = document(spec.OFFICIAL)
    official_op = official["paths"][endpoint.path]["post"]
    op = doc["paths"][endpoint.path]["post"]
    for alias in all_paths(endpoint)[1:]:
        assert alias not in doc["paths"] and alias in op["description"]

    accepted = {mt for mt, ok in (("application/json", endpoint.json_body),
                                  ("multipart/form-data", endpoint.multipart)) if ok}
    content = op["requestBody"]["content"]
    assert op["requestBody"]["required"] is True and set(content) == accepted
    for mt, body in content.items():
        ref = body["schema"]["$ref"]
        assert ref == official_op["requestBody"]["content"][mt]["schema"]["$ref"]
        name = ref.rsplit("/", 1)[1]
        assert doc["components"]["schemas"][name] == nullable_to_jsonschema(official["components"]["schemas"][name])
        assert body.get("encoding") == official_op["requestBody"]["content"][mt].get("encoding")

    ref = "#/components/schemas/"
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]["anyOf"]
    quote = [{"$ref": ref + "PriceQuote"}] if endpoint.quotable else []  # dry_run (our extension here)
    assert ok == [official_op["responses"]["200"]["content"]["application/json"]["schema"],
                  {"$ref": ref + "AsyncImageGenerationResponseV4"}, {"$ref": ref + "TaskEnvelope"}, *quote]
    safety = op["responses"]["422"]["content"]["application/json"]["schema"]["oneOf"]
    assert safety == [official_op["responses"]["422"]["content"]["application/json"]["schema"],
                      {"$ref": ref + "TaskError"}]
    problem = {"application/json": {"schema": {"oneOf": [{"$ref": ref + "Problem"}, {"$ref": ref + "TaskError"}]}}}
    for status in ("400", str(endpoint.auth_status), "402", "409", "413", "415", "429", "502", "503", "504"):
        assert op["responses"][status]["content"] == problem, status
    for status in ("429", "503"):
        assert "Retry-After" in op["responses"][status]["headers"]
    for status in ("200", "422", "429", "502", "503", "504"):  # answers after admission name the generation
        header = op["responses"][status]["headers"]["X-Ideohub-Generation-Id"]
        assert resolve(doc, header["schema"])["pattern"] == ID_PATTERN
    assert op["security"] == [{"ApiKeyAuth": []}, {"BearerAuth": []}]
    assert "{}" not in repr(op["requestBody"]) and "{}" not in repr(op["responses"])  # no empty schemas left


def test_every_image_endpoint_documents_async_webhooks_callbacks_and_idempotency(doc) -> None:  # type: ignore
    for endpoint in ENDPOINTS.values():
        params = {(p["in"], p["name"]): p for p in doc["paths"][endpoint.path]["post"]["parameters"]}
        dry_run = {("query", "dry_run")} if endpoint.quotable else set()  # not on /describe
        assert set(params) == {("query", "async"), ("query", "webhook_url"), ("query", "callback_url"),
                               ("header", "Idempotency-Key"), *dry_run}, endpoint.path
        for p in params.values():  # none of them is Ideogram's on these endpoints
            assert p["x-ideohub-extension"] is True and "ideohub extension" in p["description"]
            assert p["required"] is False
        assert params[("query", "async")]["schema"]["type"] == "boolean"
        if endpoint.quotable:
            assert params[("query", "dry_run")]["schema"] == {"type": "boolean", "default": False}
            assert "PriceQuote" in params[("query", "dry_run")]["description"]
        assert params[("query", "webhook_url")]["schema"] == {"$ref": "#/components/schemas/WebhookUrl"}
    assert not ENDPOINTS[Operation.DESCRIBE].quotable
    webhook_url = doc["components"]["schemas"]["WebhookUrl"]
    assert webhook_url["maxLength"] == 2048 and "HTTPS" in webhook_url["description"]
    key = jsonschema.Draft202012Validator(params[("header", "Idempotency-Key")]["schema"])
    for good in ("k", "order-42:retry", "~" * 255):
        assert key.is_valid(good), good
    for bad in ("", "two words", "tab\there", "é", "x" * 256):
        assert not key.is_valid(bad), bad


@pytest.mark.parametrize("endpoint", SPEC_ENDPOINTS, ids=[e.path for e in SPEC_ENDPOINTS])
def test_every_4_0_and_v2_endpoint_has_its_official_bodies_and_responses(doc, endpoint) -> None:  # type: ignore
    name, _ = spec.newest_with(endpoint.path)  # type: ignore[misc]
    assert name == spec.OCT_2026
    october = document(spec.OCT_2026)
    official_op = october["paths"][endpoint.path]["post"]
    op = doc["paths"][endpoint.path]["post"]
    v2 = endpoint.operation.family is Family.V2
    assert endpoint.path.startswith("/v2/image/" if v2 else ("/v1/ideogram-v4/", "/v1/ideogram-v45/"))
    assert op["tags"] == ["Ideogram v2" if v2 else "Ideogram 4.0"]
    for alias in all_paths(endpoint)[1:]:
        assert alias not in doc["paths"] and f"`{alias}`" in op["description"]
    assert op["security"] == [{"ApiKeyAuth": []}, {"BearerAuth": []}]
    assert op["summary"] and "{}" not in repr(op["requestBody"]) and "{}" not in repr(op["responses"])

    # the official request schema(s), per accepted content type
    accepted = {mt for mt, ok in (("application/json", endpoint.json_body),
                                  ("multipart/form-data", endpoint.multipart)) if ok}
    content = op["requestBody"]["content"]
    assert op["requestBody"]["required"] is True and set(content) == accepted
    for mt, body in content.items():
        official_body = official_op["requestBody"]["content"][mt]
        assert body["schema"] == official_body["schema"] and body["schema"]["$ref"].startswith(REF)
        assert body.get("encoding") == official_body.get("encoding")
        request = body["schema"]["$ref"].rsplit("/", 1)[1]
        assert without(doc["components"]["schemas"][request], LEFT_OUT) == \
            without(to_openapi_31(october["components"]["schemas"][request]), LEFT_OUT)

    # 200: the official schema first (on /v2 with our asset_id on its images), then the
    # acknowledgement where the official schema is not it, the quote, the task envelope
    official_ok = official_op["responses"]["200"]["content"]["application/json"]["schema"]
    answer = resolve(doc, official_ok)
    ok = alternatives_of(doc, endpoint.path)
    if v2 and endpoint.operation.v2_parts[0] != "describe":  # images: with our asset_id
        assert ok[0] == {"allOf": [official_ok, {"$ref": REF + "ResponseAssetIds"}]}
    else:
        assert ok[0] == official_ok
    if endpoint.always_async:
        assert official_ok == {"$ref": REF + "AsyncImageGenerationResponseV4"}
    assert ({"$ref": REF + "PriceQuote"} in ok) is endpoint.quotable
    assert ok[-1] == {"$ref": REF + "TaskEnvelope"}
    acknowledged = set(answer.get("required", [])) <= {"generation_id", "seed", "width", "height"}
    assert ({"$ref": REF + "AsyncImageGenerationResponseV4"} in ok[1:]) is not (
        endpoint.always_async or (v2 and acknowledged))  # /v2's ack is its schema without `data`
    assert "X-Ideohub-Generation-Id" in op["responses"]["200"]["headers"]

    # parameters: dry_run where quotable (Ideogram's on /v2, ours on 4.0); the async ones
    params = {(p["in"], p["name"]): p for p in op["parameters"]}
    expected = {("query", "webhook_url"), ("query", "callback_url"), ("header", "Idempotency-Key")}
    expected |= set() if endpoint.always_async else {("query", "async")}
    expected |= {("query", "dry_run")} if endpoint.quotable else set()
    assert set(params) == expected
    if endpoint.quotable:
        dry_run = params[("query", "dry_run")]
        assert dry_run["schema"] == {"type": "boolean", "default": False} and dry_run["required"] is False
        assert "PriceQuote" in dry_run["description"]
        official_dry_run = [p for p in official_op.get("parameters", []) if p["name"] == "dry_run"]
        if v2:
            assert official_dry_run and "x-ideohub-extension" not in dry_run
        else:
            assert not official_dry_run and dry_run["x-ideohub-extension"] is True
    webhook = params[("query", "webhook_url")]
    assert webhook["schema"] == {"$ref": REF + "WebhookUrl"} and webhook["required"] is False
    assert ("x-ideohub-extension" in webhook) is not endpoint.always_async  # Ideogram's on 4.0's /async/ paths
    official_webhook = [p for p in official_op.get("parameters", []) if p["name"] == "webhook_url"]
    if official_webhook and official_webhook[0]["required"]:  # 4.5's: we also accept none (poll instead)
        assert "Ideogram requires it" in webhook["description"]
    for key in (("query", "callback_url"), ("header", "Idempotency-Key"), ("query", "async")):
        if key in params:
            assert params[key]["x-ideohub-extension"] is True, key

    # errors: /v2's 402 and 429 are GenerationErrorResponse; the rest problem JSON (or the task envelope)
    responses = op["responses"]
    problem = {"oneOf": [{"$ref": REF + "Problem"}, {"$ref": REF + "TaskError"}]}
    rejection = {"oneOf": [{"$ref": REF + "GenerationErrorResponse"}, {"$ref": REF + "TaskError"}]}
    for status in ("402", "429"):
        assert responses[status]["content"]["application/json"]["schema"] == (rejection if v2 else problem), status
    for status in ("400", "401", "403", "409", "413", "415", "502", "503", "504"):
        assert responses[status]["content"]["application/json"]["schema"] == problem, status
    assert "Retry-After" in responses["429"]["headers"] and "Retry-After" in responses["503"]["headers"]
    safety = official_op["responses"]["422"]["content"]["application/json"]["schema"] \
        if official_op["responses"].get("422", {}).get("content") else {"$ref": REF + "GenerateImageSafetyError"}
    assert responses["422"]["content"]["application/json"]["schema"] == {"oneOf": [safety, {"$ref": REF + "TaskError"}]}
    takes_assets = "AssetIdentifier" in closure(october["components"]["schemas"], refs(official_op["requestBody"]))
    assert ("404" in responses) is takes_assets
    assert takes_assets or not v2 or "asset_identifier" not in repr(official_op["requestBody"])
    for status, response in responses.items():
        assert response["description"], status


def test_the_4_0_and_v2_families_and_their_extensions_are_described(doc) -> None:  # type: ignore[no-untyped-def]
    tags = [t["name"] for t in doc["tags"]]
    assert {"Legacy", "Ideogram 3.0", "Ideogram 4.0", "Ideogram v2"} <= set(tags)
    documented = {p for p, item in doc["paths"].items() if "post" in item}
    assert {e.path for e in SPEC_ENDPOINTS} <= documented
    assert {"/v1/ideogram-v4/async/generate", "/v1/ideogram-v45/async/generate", V2, V4} <= documented
    assert not [p for p in doc["paths"] if p.startswith("/ideogram/v2/") or p.startswith("/ideogram/v1/ideogram-v4")]
    assets = doc["components"]["schemas"]["ResponseAssetIds"]
    asset_id = assets["properties"]["data"]["items"]["properties"]["asset_id"]
    assert assets["x-ideohub-extension"] is True and asset_id["x-ideohub-extension"] is True
    assert "RESPONSE" in assets["description"] and "image_asset_identifier" in assets["description"]
    error = component_validator(doc, REF + "GenerationErrorResponse")
    assert error.is_valid({"error": "no", "reject_reason": "inflight_limit", "max_inflight_requests": 8})
    assert not error.is_valid({"error": "no", "reject_reason": "because"}) and not error.is_valid({"error": "no"})
    quote = component_validator(doc, REF + "PriceQuote")
    assert quote.is_valid({"object": "price_quote", "billing_identifier": "ideogram_v3_generation", "quantity": 2,
                           "usd_micros": 60000, "credit_millis": 3000, "qualifier": "exact"})
    assert not quote.is_valid({"object": "price_quote", "usd_micros": 60000})
    description = doc["info"]["description"]
    for text in ("/v1/ideogram-v4/", "/v2/image/{capability}/{model}", "dry_run", "PriceQuote", "asset_id",
                 "GenerationErrorResponse"):
        assert text in description, text


def test_the_documented_schemas_are_usable_and_match_what_we_answer(server, doc) -> None:  # type: ignore[no-untyped-def]
    v3 = component_validator(doc, "#/components/schemas/GenerateImageRequestV3")
    assert v3.is_valid({"prompt": "a cat", "aspect_ratio": "16x9", "num_images": 2})
    assert not v3.is_valid({"prompt": "a cat", "num_images": 9})
    assert not v3.is_valid({"aspect_ratio": "16x9"})  # prompt is required

    problem = component_validator(doc, "#/components/schemas/Problem")
    bad = server.post("/v1/ideogram-v3/generate", json={"prompt": "a cat", "num_images": 9})
    no_key = server.client.post("/generate", json={"image_request": {"prompt": "x"}})
    no_key_remix = server.client.post("/remix", files={"image_file": ("a.png", b"x", "image/png")})
    for r, status in ((bad, 400), (no_key, 401), (no_key_remix, 403)):
        assert r.status_code == status, r.text
        problem.validate(r.json())
        assert status == 400 or str(status) in doc["paths"][r.request.url.path]["post"]["responses"]


def test_the_generation_routes_are_documented_on_their_official_paths(doc) -> None:  # type: ignore[no-untyped-def]
    both = [{"ApiKeyAuth": []}, {"BearerAuth": []}]
    listed = {  # path → (method, security, the aliases its description names)
        "/v1/generations/{generation_id}": ("get", both, ["/ideogram/v1/generations/{generation_id}"]),
        "/v2/generations/{generation_id}": ("get", both, ["/ideogram/v2/generations/{generation_id}"]),
        "/v1/.well-known/jwks.json": ("get", [], ["/ideogram/v1/.well-known/jwks.json"]),
        "/ideogram/v1/tasks/{task_id}": ("get", both, ["/ideogram/tasks/{task_id}"]),
        "/ideogram/v1/tasks/query": ("post", both, ["/ideogram/tasks/query"]),
    }
    for path, (method, security, aliases) in listed.items():
        op = doc["paths"][path][method]
        assert op["security"] == security, path
        assert "{}" not in repr(op) and "422" not in op["responses"], path  # no empty schemas, no FastAPI 422
        for alias in aliases:
            assert alias not in doc["paths"] and f"`{alias}`" in op["description"], (path, alias)
        for response in op["responses"].values():
            assert response["content"]["application/json"]["schema"], path
    # every route of these families is either listed or named by a listed one
    described = repr(doc["paths"])
    for path in (*generations.POLL_PATHS, *jwks.PATHS, *tasks.TASK_PATHS, *tasks.QUERY_PATHS):
        assert path in described, path

    ref = "#/components/schemas/"
    for path, operation_id in (("/v1/generations/{generation_id}", "get_generation"),
                               ("/v2/generations/{generation_id}", "get_generation_v2")):
        op = doc["paths"][path]["get"]
        assert op["operationId"] == operation_id  # Ideogram's
        (param,) = op["parameters"]
        assert param["name"] == "generation_id" and param["in"] == "path" and param["required"] is True
        assert resolve(doc, param["schema"])["pattern"] == ID_PATTERN
        assert op["responses"]["200"]["content"]["application/json"]["schema"]["allOf"][0] == \
            {"$ref": ref + "GenerationResponse"}
        assert "descriptions" in op["description"] and "ideohub extension" in op["description"]
        for status in ("400", "401", "404", "429"):
            assert op["responses"][status]["content"]["application/json"]["schema"] == {"$ref": ref + "Problem"}
        assert "Retry-After" in op["responses"]["429"]["headers"]
    extensions = doc["components"]["schemas"]["GenerationResponseExtensions"]["properties"]
    assert extensions["failure_reason"]["enum"] == [r.value for r in FailureReason]
    assert extensions["descriptions"]["x-ideohub-extension"] is True

    jwks_op = doc["paths"]["/v1/.well-known/jwks.json"]["get"]
    assert jwks_op["operationId"] == "get_webhook_signing_jwks"
    assert jwks_op["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": ref + "WebhookSigningJwks"}

    for path, method in (("/ideogram/v1/tasks/{task_id}", "get"), ("/ideogram/v1/tasks/query", "post")):
        op = doc["paths"][path][method]
        assert op["x-ideohub-extension"] is True and "ideohub extension" in op["summary"]
        for status, response in op["responses"].items():
            if status != "200":
                assert response["content"]["application/json"]["schema"] == {"$ref": ref + "TaskError"}, status
        assert "Retry-After" in op["responses"]["429"]["headers"]
    assert resolve(doc, doc["paths"]["/ideogram/v1/tasks/{task_id}"]["get"]["parameters"][0]["schema"])["pattern"] \
        == ID_PATTERN
    query = component_validator(doc, ref + "TaskQueryRequest")
    task_id = "A" * 22
    assert query.is_valid({"task_ids": [task_id]}) and query.is_valid({"ids": [task_id] * 100})
    for bad in ({}, {"task_ids": [task_id] * 101}, {"ids": ["short"]}, {"task_ids": [task_id], "ids": [task_id]}):
        assert not query.is_valid(bad), bad
    for name in ("TaskObject", "TaskResult", "TaskEnvelope", "TaskListEnvelope", "TaskError", "TaskQueryRequest"):
        assert doc["components"]["schemas"][name]["x-ideohub-extension"] is True, name


def test_the_account_routes_are_documented_on_their_v2_account_paths(doc) -> None:  # type: ignore[no-untyped-def]
    both = [{"ApiKeyAuth": []}, {"BearerAuth": []}]
    assert {p for p in doc["paths"] if "/account/" in p and not p.startswith("/admin")} == set(ACCOUNT)
    schemes = doc["components"]["securitySchemes"]  # the API key in a header; never a cookie
    assert schemes["ApiKeyAuth"]["in"] == "header" and schemes["BearerAuth"]["type"] == "http"
    for path, (operation_id, schema, bounds) in ACCOUNT.items():
        assert set(doc["paths"][path]) == {"get"}, path
        op = doc["paths"][path]["get"]
        assert op["operationId"] == operation_id and op["tags"] == ["account"], path
        assert op["security"] == both and op["x-ideohub-extension"] is True, path
        alias = "/ideogram" + path
        assert alias not in doc["paths"] and f"Also answers on `{alias}` (relay dialects)." in op["description"]
        assert "{}" not in repr(op) and "422" not in op["responses"], path
        ok = op["responses"]["200"]
        assert ok["content"]["application/json"]["schema"] == {"$ref": REF + schema}, path
        assert "Cache-Control" in ok["headers"]
        params = {p["name"]: p for p in op.get("parameters", [])}
        assert {n for n, p in params.items() if p["in"] == "query"} == set(bounds), path
        for name, expected in bounds.items():
            assert params[name]["required"] is False and params[name]["schema"] == \
                {**params[name]["schema"], **expected}, (path, name)
        expected_errors = {"401", "429"} | ({"400"} if bounds else set()) | ({"404"} if "{request_id}" in path
                                                                            else set())
        assert set(op["responses"]) == {"200"} | expected_errors, path
        for status in expected_errors - {"429"}:
            assert op["responses"][status]["content"]["application/json"]["schema"] == {"$ref": REF + "Problem"}
        # a /v2 path: its 429 is Ideogram's /v2 refusal, as the server answers it
        assert op["responses"]["429"]["content"]["application/json"]["schema"] == \
            {"$ref": REF + "GenerationErrorResponse"}
        assert "Retry-After" in op["responses"]["429"]["headers"]
        assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
    assert doc["paths"]["/v2/account/requests"]["get"]["parameters"][1]["schema"]["enum"] == \
        [op.value for op in Operation]
    (param,) = doc["paths"]["/v2/account/requests/{request_id}"]["get"]["parameters"]
    assert param["name"] == "request_id" and param["in"] == "path" and param["required"] is True
    assert any(t["name"] == "account" for t in doc["tags"])
    # every account route (both prefixes) is either listed or named by a listed one
    described = repr(doc["paths"])
    for prefix in account.PREFIXES:
        for suffix, _handler in account.ROUTES:
            assert f"'{prefix + suffix}'" in described or f"`{prefix + suffix}`" in described, prefix + suffix

    # the shapes extend Ideogram's (July 2026): the key list is its GetApiKeysV2Response
    schemas = doc["components"]["schemas"]
    assert {"$ref": REF + "GetApiKeysV2Response"} in schemas["AccountApiKeysResponse"]["allOf"]
    assert {"$ref": REF + "ApiProfileApiKey"} in schemas["AccountApiKey"]["allOf"]
    assert "label" in schemas["ApiProfileApiKey"]["properties"]
    tool = schemas["AccountToolUsage"]["properties"]
    assert tool["amount"] == {"$ref": REF + "Price"} and tool["tool_type"] == {"$ref": REF + "ToolType"}
    usage = component_validator(doc, REF + "AccountUsageResponse")
    segment = {"segment_start": "2026-01-01T00:00:00+00:00", "segment_end": "2026-01-01T23:59:59+00:00",
               "tool_usage": [{"full_tool_name": "v3-generate TURBO", "tool_type": "GENERATE",
                               "model_version": "TURBO", "amount": {"amount": 2.5, "currency_code": "USD"},
                               "amount_usd": "0.025", "api_key_id": "k", "images": 1, "requests": 1}]}
    assert usage.is_valid({"usage_segments": [segment]})
    for bad in ({}, {"usage_segments": [{**segment, "tool_usage": [{"tool_type": "PAINT"}]}]},
                {"usage_segments": [{"segment_start": "x"}]}):
        assert not usage.is_valid(bad), bad
    balance = component_validator(doc, REF + "AccountBalance")
    good = {"account_id": "a", "name": "n", "balance_usd": "-0.5", "unlimited": False, "currency_code": "USD"}
    assert balance.is_valid(good)
    for bad in ({**good, "balance_usd": "1e3"}, {**good, "currency_code": "EUR"}, {"account_id": "a"}):
        assert not balance.is_valid(bad), bad


def test_real_account_answers_validate_against_what_we_publish(start_server, fresh, doc) -> None:  # type: ignore
    """The key holders' answers from a running server (a relay to the simulated upstream, a funded
    account with a live key, a revoked one and an expired one) against the published document —
    every field declared, every date-time a date-time — and, independently, the api-keys answer
    against Ideogram's own GetApiKeysV2Response and the usage answer against its
    GetUsageInfoResponse (but for ``model_version``: ours is the price tier, not its enum)."""
    srv = start_server("config", engine_config={"*": "relay"}, channels=[channel("up", fresh[0])],
                       admin_token=ADMIN_TOKEN, poll_limit=60, poll_window_s=60)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    acct = srv.client.post("/admin/accounts", headers=admin, json={"name": "docs"}).json()["id"]
    assert srv.client.post(f"/admin/accounts/{acct}/topup", headers=admin, json={"usd": "1"}).status_code == 200
    one = srv.client.post("/admin/keys", headers=admin, json={
        "account_id": acct, "name": "one", "rpm": 60, "spend_cap_usd": "0.5", "allowed_operations": ["v3-generate",
                                                                                                     "generate"],
        "expires_at": "2099-01-01T00:00:00Z"}).json()
    two = srv.client.post("/admin/keys", headers=admin, json={"account_id": acct, "name": "two"}).json()
    srv.client.post("/admin/keys", headers=admin, json={"account_id": acct, "expires_at": "2000-01-01T00:00:00Z"})
    key = {"Api-Key": one["key"]}
    fields = {"prompt": "a lighthouse at dusk", "rendering_speed": "TURBO", "num_images": 2}
    assert srv.client.post(V3, headers=key, json=fields).status_code == 200
    legacy = srv.client.post("/generate", headers={"Api-Key": two["key"]},
                             json={"image_request": {"prompt": "a cat", "model": "V_2"}})
    assert legacy.status_code == 200, legacy.text
    acknowledged = srv.client.post(V3 + "?async=true", headers=key, json=fields)
    assert acknowledged.status_code == 200, acknowledged.text
    srv.key = one["key"]
    poll_until(srv, acknowledged.json()["generation_id"], "completed")
    assert srv.client.post(V3, headers=key, json={**fields, "num_images": 9}).status_code == 400
    assert srv.client.delete(f"/admin/keys/{two['id']}", headers=admin).status_code == 204

    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER

    def published(path: str, url: str, style: str = "api-key", **kw: Any) -> Any:
        auth = key if style == "api-key" else {"Authorization": f"Bearer {one['key']}"}
        r = srv.client.get(url, headers={**auth, **kw.pop("headers", {})}, **kw)
        body = check_answer(doc, r, path, "get")
        schema = doc["paths"][path]["get"]["responses"][str(r.status_code)]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**schema, "components": doc["components"]},
                                        format_checker=checker).validate(body)
        assert undeclared(doc, schema, body) == [], (url, undeclared(doc, schema, body))
        return body

    for prefix in account.PREFIXES:  # the alias answers what the listed path documents
        balance = published("/v2/account/balance", prefix + "/balance", style="bearer")
        assert balance["account_id"] == acct and balance["unlimited"] is False
    keys = published("/v2/account/api-keys", "/v2/account/api-keys")
    assert {k["status"] for k in keys["api_keys"]} == {"ACTIVE", "DISABLED"} and len(keys["api_keys"]) == 3
    mine = next(k for k in keys["api_keys"] if k["current"])
    assert mine["limits"]["allowed_operations"] == ["v3-generate", "generate"] and mine["limits"]["expires_at"]
    _validator(spec.MID_2026, "GetApiKeysV2Response").validate(keys)  # Ideogram's own schema

    ideogram_usage = _validator(spec.MID_2026, "GetUsageInfoResponse")
    for segment_by, days in (("DAY", "2"), ("HOUR", "1"), ("hour", "366")):
        usage = published("/v2/account/usage", "/v2/account/usage", params={"segment_by": segment_by, "days": days})
        tools = [t for s in usage["usage_segments"] for t in s["tool_usage"]]
        assert {t["tool_type"] for t in tools} == {"GENERATE"} and {t["model_version"] for t in tools} >= {"TURBO"}
        assert all(Decimal(t["amount_usd"]) * 100 == Decimal(str(t["amount"]["amount"])) for t in tools)  # exact
        ideogram_usage.validate({"usage_segments": [
            {**s, "tool_usage": [{k: v for k, v in t.items() if k != "model_version"} for t in s["tool_usage"]]}
            for s in usage["usage_segments"]]})

    log = published("/v2/account/requests", "/v2/account/requests")
    assert len(log["items"]) >= 3 and log["next_before"] is None
    assert {i["mode"] for i in log["items"]} >= {"sync", "async"}
    assert {i["state"] for i in log["items"]} >= {"done"}
    page = published("/v2/account/requests", "/v2/account/requests", params={"limit": "1", "state": "done",
                                                                             "operation": "v3-generate"})
    assert len(page["items"]) == 1 and page["next_before"]
    published("/v2/account/requests", "/v2/account/requests", params={"before": page["next_before"],
                                                                     "since": "2000-01-01T00:00:00Z"})
    for item in log["items"]:
        detail = published("/v2/account/requests/{request_id}", f"/v2/account/requests/{item['id']}")
        assert detail["id"] == item["id"] and isinstance(detail["images"], list)
    assert any(i["url"] for item in log["items"] for i in
               srv.client.get(f"/v2/account/requests/{item['id']}", headers=key).json()["images"])

    # the errors: each a documented problem
    for path, url, params, status in (
            ("/v2/account/usage", "/v2/account/usage", {"days": "0"}, 400),
            ("/v2/account/usage", "/v2/account/usage", {"segment_by": "WEEK"}, 400),
            ("/v2/account/requests", "/v2/account/requests", {"limit": "201"}, 400),
            ("/v2/account/requests", "/v2/account/requests", {"channel": "up"}, 400),
            ("/v2/account/requests/{request_id}", "/v2/account/requests/req_unknown", {}, 404)):
        r = srv.client.get(url, headers=key, params=params)
        assert r.status_code == status, (url, params, r.text)
        published(path, url, params=params)
    for path in ACCOUNT:
        url = path.replace("{request_id}", log["items"][0]["id"])
        for headers in ({}, {"Api-Key": two["key"]}, {"Cookie": f"ideohub_console=x; api_key={one['key']}"}):
            r = srv.client.get(url, headers=headers)
            assert r.status_code == 401 and "www-authenticate" in r.headers, (url, headers)
            check_answer(doc, r, path, "get")
    # the account's polling limit: 429 with Retry-After
    for _ in range(61):
        r = srv.client.get("/v2/account/balance", headers=key)
        if r.status_code == 429:
            break
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert check_answer(doc, r, "/v2/account/balance", "get")["reject_reason"] == "inflight_limit"


def test_the_admin_generation_route_is_documented_with_the_admin_token(doc) -> None:  # type: ignore[no-untyped-def]
    op = doc["paths"]["/admin/generations/{generation_id}"]["get"]
    assert op["security"] == [{"BearerAuth": []}]
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/GenerationOut"}
    out = doc["components"]["schemas"]["GenerationOut"]["properties"]
    assert {"generation_id", "state", "failure_reason", "deliveries"} <= set(out)
    assert {"401", "404"} <= set(op["responses"])


def test_copied_official_components_are_the_vendored_ones(doc) -> None:  # type: ignore[no-untyped-def]
    """Every component with an official name is that document's schema, after the conversion to
    OpenAPI 3.1: the legacy and 3.0 endpoints' from ``ideogram-openapi.json``, the generation
    routes' from the July-2026 file, the 4.0 and /v2 endpoints' from the October-2026 extract
    (where a name they share with an older document is the same schema but for what the
    extract left out, the older copy, which has the descriptions, is published); no name of
    ours shadows an official one."""
    official = document(spec.OFFICIAL)["components"]["schemas"]
    mid_2026 = document(spec.MID_2026)["components"]["schemas"]
    october = document(spec.OCT_2026)["components"]["schemas"]
    schemas = doc["components"]["schemas"]
    fastapi_models: set[str] = set()
    assert MID_2026_NAMES <= set(schemas)
    assert not set(OURS) & (set(official) | set(mid_2026) | set(october))
    legacy = closure(schemas, refs([doc["paths"][e.path] for e in ENDPOINTS.values()]) | refs(list(OURS.values())))
    for name, schema in schemas.items():
        if name in OURS:
            assert schema == OURS[name], name
        elif name in MID_2026_NAMES:
            assert schema == to_openapi_31(mid_2026[name]), name
        elif name in official and name in legacy:
            assert schema == to_openapi_31(official[name]), name
        elif name in october:
            assert schema == to_openapi_31(october[name]), name
        else:  # FastAPI's, from the admin API's models
            assert name not in mid_2026 and name not in official, name
            fastapi_models.add(name)
    reached = closure(schemas, refs({p: i for p, i in doc["paths"].items() if p.startswith("/admin")}))
    assert fastapi_models <= reached

    # what the 4.0 and /v2 endpoints reach is October's, up to what the extract left out
    spec_names = closure(schemas, refs([doc["paths"][e.path] for e in SPEC_ENDPOINTS]) - set(OURS))
    assert {"PriceQuote", "GenerationErrorResponse", "GenerationRejectReason", "AssetIdentifier"} <= spec_names
    for name in spec_names:
        top = KNOWN_DIFFERENCES.get(name, set())
        assert without(schemas[name], LEFT_OUT, top) == without(to_openapi_31(october[name]), LEFT_OUT, top), name
    # the one known difference is exactly October's title; the published WebhookUrl is July's
    assert without(to_openapi_31(october["WebhookUrl"]), LEFT_OUT) == \
        {**without(schemas["WebhookUrl"], LEFT_OUT), "title": "webhook_url"}
    # OpenAPI 3.0's boolean exclusiveMinimum is rewritten (3.1 takes the bound itself)
    assert october["StackedCustomModel"]["properties"]["weight"]["exclusiveMinimum"] is True
    assert schemas["StackedCustomModel"]["properties"]["weight"]["exclusiveMinimum"] == 0
    assert "minimum" not in schemas["StackedCustomModel"]["properties"]["weight"]


def test_a_component_that_differs_between_documents_stops_the_build() -> None:
    """Copying the October extract over what is already published: a schema that differs only by
    what the extract left out is kept as it is (with its descriptions); WebhookUrl's title is the
    one difference resolved by name; any other difference stops the build."""
    mid_2026 = document(spec.MID_2026)["components"]["schemas"]
    described = {name: to_openapi_31(mid_2026[name]) for name in ("AsyncImageGenerationResponseV4", "WebhookUrl")}
    schemas = dict(described)
    _copy_components(schemas, spec.OCT_2026, {"AsyncImageGenerationResponseV4", "WebhookUrl", "PriceQuote"})
    assert {k: schemas[k] for k in described} == described and "description" in schemas["WebhookUrl"]
    assert "PriceQuote" in schemas and "PriceQualifier" in schemas  # new names come with what they reference
    assert RESOLVED_CLASHES == {"WebhookUrl": frozenset({"title"})}

    for name, change in (("WebhookUrl", {"maxLength": 4096}), ("AsyncImageGenerationResponseV4", {"required": []}),
                         ("PriceQuote", {"title": "Quote"})):
        schemas = {**described, name: {**(described.get(name) or to_openapi_31(
            document(spec.OCT_2026)["components"]["schemas"][name])), **change}}
        with pytest.raises(RuntimeError, match=f"component {name} of {spec.OCT_2026} would replace"):
            _copy_components(schemas, spec.OCT_2026, {name})


def test_real_answers_validate_against_what_we_publish(server, doc, gate) -> None:  # type: ignore[no-untyped-def]
    """Synchronous, asynchronous and task answers, polls in every status, the JWKS and the
    errors of each family, from the running server, against its own ``/openapi.json``."""
    key = server.auth()
    fields = {"prompt": "a lighthouse at dusk", "rendering_speed": "TURBO", "num_images": 2}
    published = doc["paths"][V3]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["anyOf"]

    def alternative(body: Any) -> list[int]:
        return [i for i, s in enumerate(published)
                if jsonschema.Draft202012Validator({**s, "components": doc["components"]}).is_valid(body)]

    sync = server.post(V3, json=fields)
    assert alternative(check_answer(doc, sync, V3)) == [0]
    sync_id = sync.headers["x-ideohub-generation-id"]
    acknowledged = server.post(V3 + "?async=true", json=fields)
    assert alternative(check_answer(doc, acknowledged, V3)) == [1]
    async_id = acknowledged.json()["generation_id"]
    task = server.post(V3, json={**fields, "callback_url": CALLBACK})
    assert alternative(check_answer(doc, task, V3)) == [2]
    described = server.post("/describe", files={"image_file": ("a.png", PNG, "image/png")})
    check_answer(doc, described, "/describe")
    describe_id = described.headers["x-ideohub-generation-id"]

    # polls: completed (images, describe), pending, failed — on both listed paths
    for path in ("/v1/generations/{generation_id}", "/v2/generations/{generation_id}"):
        for generation_id in (sync_id, async_id, describe_id):
            poll_until(server, generation_id, "completed")
            body = check_answer(doc, server.client.get(path.format(generation_id=generation_id), headers=key),
                                path, "get")
            assert body["status"] == "completed" and body["usage_cost_usd_micros"] >= 0
    gate.hold()
    try:
        pending_id = server.post(V3, json={**fields, "async": True}).json()["generation_id"]
        gate.entered.wait(30)
        pending = server.client.get(f"/v1/generations/{pending_id}", headers=key)
        assert check_answer(doc, pending, "/v1/generations/{generation_id}", "get")["status"] == "pending"
        task_path = "/ideogram/v1/tasks/{task_id}"
        processing = server.client.get(f"/ideogram/v1/tasks/{pending_id}", headers=key)
        assert check_answer(doc, processing, task_path, "get")["data"]["task_status"] == "processing"
    finally:
        gate.release()
    poll_until(server, pending_id, "completed")
    gate.fail = UpstreamFailed("every upstream failed")
    try:
        failed_id = server.post(V3, json={**fields, "async": True}).json()["generation_id"]
        failed = poll_until(server, failed_id, "failed")
    finally:
        gate.fail = None
    response_validator(doc, "/v2/generations/{generation_id}", "get", 200).validate(failed)
    assert failed["failure_reason"] == "upstream_failed"

    # the task dialect: one task, several, and its errors
    task_id = task.json()["data"]["task_id"]
    poll_until(server, task_id, "completed")
    one = check_answer(doc, server.client.get(f"/ideogram/v1/tasks/{task_id}", headers=key), task_path, "get")
    assert one["data"]["task_status"] == "succeed" and len(one["data"]["task_result"]["images"]) == 2
    several = server.client.post("/ideogram/v1/tasks/query", headers=key,
                                 json={"task_ids": [task_id, describe_id, failed_id, "Z" * 22]})
    data = check_answer(doc, several, "/ideogram/v1/tasks/query")["data"]
    assert [t["task_status"] for t in data] == ["succeed", "succeed", "failed"]
    assert "descriptions" in data[1]["task_result"] and data[2]["task_status_msg"] == "upstream_failed"
    check_answer(doc, server.client.get("/ideogram/v1/tasks/" + "Z" * 22, headers=key), task_path, "get")
    check_answer(doc, server.client.get("/ideogram/v1/tasks/short", headers=key), task_path, "get")
    check_answer(doc, server.client.get(f"/ideogram/v1/tasks/{task_id}"), task_path, "get")
    check_answer(doc, server.client.post("/ideogram/v1/tasks/query", headers=key, json={"ids": ["A" * 22] * 101}),
                 "/ideogram/v1/tasks/query")

    # polling's errors, the JWKS (no key), an image endpoint's errors in both dialects, a reused key
    poll_path = "/v1/generations/{generation_id}"
    for r in (server.client.get("/v1/generations/" + "Z" * 22, headers=key),
              server.client.get("/v1/generations/not-an-id", headers=key),
              server.client.get(f"/v1/generations/{sync_id}")):
        assert r.status_code in (404, 400, 401)
        assert "type" in check_answer(doc, r, poll_path, "get")
    keys = check_answer(doc, server.client.get("/v1/.well-known/jwks.json"), "/v1/.well-known/jwks.json", "get")
    assert keys["keys"] and all(k["kty"] == "OKP" and k["crv"] == "Ed25519" for k in keys["keys"])
    as_problem = server.post(V3, json={**fields, "num_images": 9})
    assert "detail" in check_answer(doc, as_problem, V3)
    in_envelope = server.post(V3 + "?callback_url=" + CALLBACK, json={**fields, "num_images": 9})
    assert check_answer(doc, in_envelope, V3)["code"] == 400
    retry = {"Idempotency-Key": "openapi-doc-1"}
    assert server.post(V3, json=fields, headers=retry).status_code == 200
    conflict = server.post(V3, json={**fields, "num_images": 1}, headers=retry)
    assert conflict.status_code == 409 and "Idempotency-Key" in check_answer(doc, conflict, V3)["detail"]


def test_real_4_0_and_v2_answers_and_quotes_validate_against_what_we_publish(server, doc) -> None:  # type: ignore
    """4.0 and /v2 answers (synchronous, acknowledged, quoted) and /v2's refusals from the running
    server, against its own ``/openapi.json``; dry runs on a 3.0 endpoint (our extension) too."""
    quote_of = {path: alternatives_of(doc, path).index({"$ref": REF + "PriceQuote"}) for path in (V2, V4, V3)}

    # /v2: the answer (its images with asset_id), the acknowledgement, the quote
    sync = server.post(V2, json={"prompt": "a lighthouse at dusk", "num_images": 2, "seed": 7})
    body = check_answer(doc, sync, V2)
    assert matching(doc, V2, body)[0] == 0 and len(body["data"]) == 2
    assert all(f"/images/{item['asset_id']}." in item["url"] for item in body["data"])  # ResponseAssetIds
    assert matching(doc, V2, {**body, "data": [{**body["data"][0], "asset_id": "not an id"}]}) == []
    asset_id = body["data"][0]["asset_id"]
    ack = server.post(V2, json={"prompt": "a lighthouse at dusk", "async": True})
    body = check_answer(doc, ack, V2)
    assert 0 in matching(doc, V2, body) and "data" not in body
    poll_until(server, body["generation_id"], "completed")
    quoted = server.post(V2 + "?dry_run=true", json={"prompt": "a lighthouse at dusk", "num_images": 2})
    body = check_answer(doc, quoted, V2)
    assert matching(doc, V2, body) == [quote_of[V2]] and body["object"] == "price_quote"

    # a /v2 path whose official answer is the acknowledgement only, answered synchronously; one
    # naming the image just delivered as a RESPONSE asset, and an unknown one (404)
    background = "/v2/image/replace-background/ideogram-3"
    replaced = server.post(background, data={"prompt": "a beach"}, files={"image": ("a.png", PNG, "image/png")})
    body = check_answer(doc, replaced, background)
    assert 0 in matching(doc, background, body) and body["data"]
    assert all("asset_id" in item for item in body["data"])
    upscale = "/v2/image/upscale/auto"
    reused = server.post(upscale, json={"image_asset_identifier": {"asset_id": asset_id, "asset_type": "RESPONSE"}})
    assert 0 in matching(doc, upscale, check_answer(doc, reused, upscale))
    unknown = server.post(upscale, json={"image_asset_identifier": {"asset_id": "nope", "asset_type": "RESPONSE"}})
    assert unknown.status_code == 404 and "asset_id" in check_answer(doc, unknown, upscale)["detail"]

    # 4.0: the answer, the ack of an /async/ path, a quote (our extension there)
    fields = {"text_prompt": "a lighthouse at dusk"}
    assert matching(doc, V4, check_answer(doc, server.post(V4, json=fields), V4)) == [0]
    async_path = "/v1/ideogram-v4/async/generate"
    acknowledged = check_answer(doc, server.post(async_path, json=fields), async_path)
    assert matching(doc, async_path, acknowledged) == [0]
    poll_until(server, acknowledged["generation_id"], "completed")
    assert matching(doc, V4, check_answer(doc, server.post(V4 + "?dry_run=true", json=fields), V4)) == [quote_of[V4]]

    # 3.0 with dry_run (our extension): the quote, nothing run
    v3 = check_answer(doc, server.post(V3 + "?dry_run=true", json={"prompt": "a cat", "num_images": 3}), V3)
    assert matching(doc, V3, v3) == [quote_of[V3]] and v3["quantity"] == 3
    assert server.post("/describe?dry_run=true",  # no quotes on describe: a 400 naming the parameter
                       files={"image_file": ("a.png", PNG, "image/png")}).json()["detail"].startswith("dry_run")

    # /v2's refusals: 402 (no balance) and 429 (the key's rate limit) are GenerationErrorResponse
    broke = server.client.post(V2, headers={"Api-Key": unfunded_key(server)}, json={"prompt": "a cat"})
    assert broke.status_code == 402, broke.text
    assert check_answer(doc, broke, V2)["reject_reason"] == "insufficient_funds"
    _account, limited = new_key(server, rpm=1)
    answers = [server.client.post(V2, headers={"Api-Key": limited}, json={"prompt": "a cat"}) for _ in range(2)]
    assert [r.status_code for r in answers] == [200, 429], answers[-1].text
    assert check_answer(doc, answers[1], V2)["reject_reason"] == "inflight_limit"
    assert "retry-after" in answers[1].headers
    # the same refusal in the task dialect keeps the envelope
    in_envelope = server.client.post(V2 + "?callback_url=" + CALLBACK, headers={"Api-Key": limited},
                                     json={"prompt": "a cat"})
    assert in_envelope.status_code == 429 and check_answer(doc, in_envelope, V2)["code"] == 429
    invalid = server.post(V2, json={"prompt": "a cat", "num_images": 9})
    assert invalid.status_code == 400 and "num_images" in check_answer(doc, invalid, V2)["detail"]


# ---------------------------------------------------------------- /docs, offline


def test_docs_page_loads_only_assets_we_serve(server) -> None:  # type: ignore[no-untyped-def]
    r = server.client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not re.search(r"https?://|//[a-z]|cdn", html, re.IGNORECASE), "no URL off this server"
    urls = re.findall(r"""(?:src|href)="([^"]+)"|url: '([^']+)'""", html)
    # relative to the page, as a browser resolves them (so a path prefix added by a proxy is kept)
    urls = [urlsplit(urljoin("http://server/docs", a or b)).path for a, b in urls]
    assert set(urls) == {"/docs/assets/swagger-ui.css", "/docs/assets/favicon-32x32.png",
                         "/docs/assets/swagger-ui-bundle.js", "/openapi.json"}
    expected = {"/docs/assets/swagger-ui-bundle.js": "text/javascript", "/docs/assets/swagger-ui.css": "text/css",
                "/docs/assets/favicon-32x32.png": "image/png", "/openapi.json": "application/json"}
    for url in urls:
        asset = server.client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].split(";")[0] == expected[url]
    js = server.client.get("/docs/assets/swagger-ui-bundle.js").text
    assert "s.SwaggerUIBundle=" in js  # the UMD global the page calls (Swagger UI 5: renders OpenAPI 3.1)
    assert server.client.get("/docs/assets/favicon-32x32.png").content.startswith(b"\x89PNG")

    for name in ("index.html", "swagger-initializer.js", "..%2F..%2F__init__.py", "nope.js"):
        missing = server.client.get(f"/docs/assets/{name}")
        assert missing.status_code == 404 and missing.json()["status"] == 404, name
    assert server.client.get("/docs/oauth2-redirect").status_code == 404  # FastAPI's CDN page is not installed
