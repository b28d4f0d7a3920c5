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
