"""Ideogram's official OpenAPI documents, vendored byte for byte (package data).

``ideogram-openapi.json`` is the document our parsers and response shapes follow (and our own
``/openapi.json`` copies its schemas); ``ideogram-openapi-2026-07.json`` is the mid-2026 one,
a superset, which the simulated upstream validates every incoming request against.
``ideogram-openapi-2026-10-subset.json`` is the part of the October-2026 document (the one with
/v2) that the 4.0 and /v2 dialects follow: its paths and the closure of their schemas, copied
exactly but for descriptions and examples (its ``x-extract`` says from where). Tests pin every
file's SHA-256, so an edit to any cannot pass unnoticed.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

OFFICIAL = "ideogram-openapi.json"
MID_2026 = "ideogram-openapi-2026-07.json"
OCT_2026 = "ideogram-openapi-2026-10-subset.json"
FILES = (OFFICIAL, MID_2026, OCT_2026)


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


def newest_with(path: str) -> tuple[str, dict[str, Any]] | None:
    """(document name, parsed document) of the newest vendored document that declares ``path``:
    where two versions disagree, the newer one's schema is followed."""
    for name in (OCT_2026, MID_2026, OFFICIAL):
        doc = _parsed(name)
        if path in doc.get("paths", {}):
            return name, doc
    return None


@cache
def _parsed(name: str) -> dict[str, Any]:
    try:
        return json.loads(_text(name))
    except FileNotFoundError:
        return {}
