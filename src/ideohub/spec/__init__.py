"""Ideogram's official OpenAPI documents, vendored byte for byte (package data).

``ideogram-openapi.json`` is the document our parsers and response shapes follow (and our own
``/openapi.json`` copies its schemas); ``ideogram-openapi-2026-07.json`` is the mid-2026 one,
a superset, which the simulated upstream validates every incoming request against. Tests pin
both files' SHA-256, so an edit to either cannot pass unnoticed.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

OFFICIAL = "ideogram-openapi.json"
MID_2026 = "ideogram-openapi-2026-07.json"
FILES = (OFFICIAL, MID_2026)


def read_bytes(name: str) -> bytes:
    """The file exactly as vendored."""
    if name not in FILES:
        raise ValueError(f"unknown spec file {name!r}; one of {', '.join(FILES)}")
    return (resources.files(__name__) / name).read_bytes()


@cache
def _text(name: str) -> str:
    return read_bytes(name).decode("utf-8")


def load(name: str) -> dict[str, Any]:
    """A fresh parsed copy (callers may change it)."""
    return json.loads(_text(name))


def nullable_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` in JSON Schema's form (as OpenAPI 3.1 writes it): ``null``
    among the types, ``None`` among an enum's values."""
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
