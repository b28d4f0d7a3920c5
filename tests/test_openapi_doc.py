"""Our published API description and docs: ``/openapi.json`` is a valid OpenAPI 3.1 document
that describes every image endpoint's body (the official schemas, per accepted content type),
responses and auth schemes; ``/docs`` loads only assets we serve ourselves (works offline);
the official specs the tests use are vendored in the package and pinned."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi

from conftest import Running, ThreadedServer, free_port
from ideohub import spec
from ideohub.api.app import create_app
from ideohub.api.dialects import ENDPOINTS, all_paths
from ideohub.config import load_settings
from ideohub.store import db
from openapi import PINNED_SHA256, document, nullable_to_jsonschema

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One real server (no engines) for the whole module."""
    port = free_port()
    settings = load_settings(data_dir=tmp_path_factory.mktemp("openapi") / "data", port=port)
    db.upgrade(settings.db_url)
    with ThreadedServer(create_app(settings, engines={}), port), \
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

    assert op["responses"]["200"]["content"] == official_op["responses"]["200"]["content"]
    assert op["responses"]["422"]["content"] == official_op["responses"]["422"]["content"]
    problem = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for status in ("400", str(endpoint.auth_status), "402", "413", "415", "429", "502", "503", "504"):
        assert op["responses"][status]["content"] == problem, status
    assert op["security"] == [{"ApiKeyAuth": []}, {"BearerAuth": []}]
    assert "{}" not in repr(op["requestBody"]) and "{}" not in repr(op["responses"])  # no empty schemas left


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


# ---------------------------------------------------------------- /docs, offline


def test_docs_page_loads_only_assets_we_serve(server) -> None:  # type: ignore[no-untyped-def]
    r = server.client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not re.search(r"https?://|//[a-z]|cdn", html, re.IGNORECASE), "no URL off this server"
    urls = re.findall(r"""(?:src|href)="([^"]+)"|url: '([^']+)'""", html)
    urls = [a or b for a, b in urls]
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
