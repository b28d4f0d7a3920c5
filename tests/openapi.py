"""Validate our responses against Ideogram's official OpenAPI schema (../shared/spec).

OpenAPI 3.0's ``nullable`` is turned into JSON Schema's ``null`` type. One named exception:
V3 operations that keep the input's size (edit, inpaint, replace-background) legitimately
report a ``resolution`` that is not a ``ResolutionV3`` value; for those the value is checked
as ``WxH`` equal to the input's size, then the schema check runs on the rest.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from ideohub.domain.operations import Operation

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "ideogram-openapi.json"
KEEPS_INPUT_SIZE = {Operation.V3_EDIT, Operation.V3_INPAINT, Operation.V3_REPLACE_BACKGROUND}


def _nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items()}
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
def validator(schema_name: str) -> jsonschema.Validator:
    doc = json.loads(SPEC.read_text())
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": _nullable(doc["components"])}
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


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
