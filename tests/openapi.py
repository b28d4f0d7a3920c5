"""Ideogram's official OpenAPI schema as a test oracle: our responses (and, for the sim's
independence tests, request bodies) are validated against it.

The documents are the ones vendored in the package (``src/ideohub/spec``), each pinned here by
SHA-256: a changed file fails every test that uses this module instead of moving the oracle
silently. Responses are checked against ``ideogram-openapi.json``; request bodies against the
mid-2026 document, the one the simulated upstream enforces.

OpenAPI 3.0's ``nullable`` is turned into JSON Schema's ``null`` type. One named exception:
V3 operations that keep the input's size (edit, inpaint, replace-background) legitimately
report a ``resolution`` that is not a ``ResolutionV3`` value; for those the value is checked
as ``WxH`` equal to the input's size, then the schema check runs on the rest.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from functools import cache
from typing import Any

import jsonschema

from ideohub import spec
from ideohub.domain.operations import Operation

PINNED_SHA256 = {
    spec.OFFICIAL: "69fca7f3d360c995b1cd7656af4d20842ac68620671a0b4dacb3c6d5aeb40f8f",
    spec.MID_2026: "f69c9da2ec85596bdf1a78f5c6c87385ac17b61a1618c3c62f291c96ded8c8eb",
    # the October-2026 extract (qmediat/ideogram-mcp@e312b2341395bb7db7c20f56036cb48cee17e863 spec/openapi.json)
    spec.OCT_2026: "2ad9eb6b673960c67f1dcb5a316cb408574f99ffb2809a3a75ae5ae7e7829fcb",
}
KEEPS_INPUT_SIZE = {Operation.V3_EDIT, Operation.V3_INPAINT, Operation.V3_REPLACE_BACKGROUND}


class SpecDrift(AssertionError):
    pass


@cache
def document(name: str) -> dict[str, Any]:
    """The vendored document, after checking its pinned hash."""
    data = spec.read_bytes(name)
    digest = hashlib.sha256(data).hexdigest()
    if digest != PINNED_SHA256[name]:
        raise SpecDrift(f"src/ideohub/spec/{name} changed (sha256 {digest}, pinned {PINNED_SHA256[name]}); "
                        "re-vendor it byte for byte and update PINNED_SHA256 on purpose")
    return json.loads(data)


def nullable_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable`` in JSON Schema's form (the tests' own copy: the oracle shares no code with ideohub)."""
    if isinstance(node, list):
        return [nullable_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: nullable_to_jsonschema(v) for k, v in node.items()}
    if out.pop("nullable", False) is True:
        if "type" in out:
            t = out["type"]
            out["type"] = [*(t if isinstance(t, list) else [t]), "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def _validator(doc_name: str, schema_name: str) -> jsonschema.Validator:
    doc = document(doc_name)
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": nullable_to_jsonschema(doc["components"])}
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def validator(schema_name: str) -> jsonschema.Validator:
    """A response (or any component) schema of ``ideogram-openapi.json``."""
    return _validator(spec.OFFICIAL, schema_name)


def request_validator(path: str, media_type: str) -> jsonschema.Validator:
    """The request-body schema of ``path`` for ``media_type`` in the mid-2026 document."""
    content = document(spec.MID_2026)["paths"][path]["post"]["requestBody"]["content"][media_type]
    return _validator(spec.MID_2026, content["schema"]["$ref"].rsplit("/", 1)[1])


def schema_name(op: Operation) -> str:
    if op is Operation.DESCRIBE:
        return "DescribeResponse"
    return "ImageGenerationResponseV3" if op.is_v3 else "GenerateImageResponse"


def validate_response(body: dict[str, Any], op: Operation, input_size: str | None = None) -> None:
    body = copy.deepcopy(body)
    if op in KEEPS_INPUT_SIZE:
        for item in body.get("data", []):
            assert re.fullmatch(r"\d+x\d+", item["resolution"])
            if input_size:
                assert item["resolution"] == input_size
            item["resolution"] = "1024x1024"  # the named exception: any WxH, here the input's
    validator(schema_name(op)).validate(body)


# ---------------------------------------------------------------- 4.0 and /v2 (the October-2026 extract first)

_NEWEST_FIRST = (spec.OCT_2026, spec.MID_2026, spec.OFFICIAL)


def document_with(path: str) -> str:
    for name in _NEWEST_FIRST:
        if path in document(name)["paths"]:
            return name
    raise KeyError(f"no vendored document declares {path}")


def path_response_validator(path: str, method: str = "post", status: str = "200") -> jsonschema.Validator:
    """The response schema of ``path`` in the newest vendored document that declares it."""
    name = document_with(path)
    schema = document(name)["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    return _validator(name, schema["$ref"].rsplit("/", 1)[1])


def path_request_validator(path: str, media_type: str) -> jsonschema.Validator:
    name = document_with(path)
    content = document(name)["paths"][path]["post"]["requestBody"]["content"][media_type]
    return _validator(name, content["schema"]["$ref"].rsplit("/", 1)[1])


def component_validator(schema_name: str) -> jsonschema.Validator:
    """A component of the October-2026 extract (PriceQuote, GenerationErrorResponse, GenerationResponse …)."""
    return _validator(spec.OCT_2026, schema_name)
