"""The official request and response schemas of the endpoints the sim serves, read from the
vendored OpenAPI documents (``ideohub.spec``) — never from ideohub's own parsers, so that a
defect in those cannot hide in a relay test.

Each operation follows the newest vendored document that declares its path
(``spec.newest_with``): the October-2026 extract for 4.0 and /v2, the mid-2026 document for the
legacy and 3.0 endpoints. An operation no document declares is not served (a 404, as for any
unknown path). Request bodies are compiled by ``spec.schemas`` (a validator per media type and
each top-level property's kind, which is how multipart text parts are coerced); the 200
response's schema name and the document are kept so that answers are built in that schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from .. import spec
from ..domain.operations import Family, Operation
from ..spec.schemas import BodySchema, Prop, body_schema, flatten, resolve

__all__ = ["BodySchema", "GenerationsEndpoint", "Prop", "SimEndpoint", "endpoints", "flatten",
           "generations_endpoint", "resolve"]

RELAY_PREFIX = "/ideogram"  # AiHubMix, OpenAI-Hub: /ideogram + official path
RELAY_V1_PREFIX = "/ideogram/v1"  # AI-YIAPI: /ideogram/v1 + legacy path
_ACKNOWLEDGEMENT_FIELDS = {"generation_id", "generation_kind", "seed", "width", "height", "created"}
GENERATION_PATHS = ("/v2/generations/{generation_id}", "/v1/generations/{generation_id}")


@dataclass(frozen=True)
class SimEndpoint:
    operation: Operation
    bodies: dict[str, BodySchema]  # media type → schema
    auth_status: int  # 401, or 403 where the spec lists 403 and no 401 (/remix, /upscale, V3 remix)
    response_schema: str  # the 200 answer's component name
    document: str = spec.MID_2026  # the vendored document the endpoint follows
    doc: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # that document, parsed
    query: frozenset[str] = frozenset()  # declared query parameters (/v2: dry_run)

    @property
    def path(self) -> str:
        return self.operation.official_path

    def paths(self) -> list[str]:
        """The official path, ``/ideogram`` + it, and for legacy endpoints ``/ideogram/v1`` + it."""
        out = [self.path, RELAY_PREFIX + self.path]
        if self.operation.family is Family.LEGACY:
            out.append(RELAY_V1_PREFIX + self.path)
        return out

    def response_node(self) -> dict[str, Any]:
        """The 200 answer's schema, ``allOf`` merged."""
        return flatten(self.doc, {"$ref": f"#/components/schemas/{self.response_schema}"})

    @property
    def async_only(self) -> bool:
        """A /v2 endpoint whose answer has no field for a result (only ids, seed and size, as on
        replace-background or reframe with nano-banana-2): the spec runs it only asynchronously,
        and the result is fetched by polling."""
        fields = set(self.response_node().get("properties", {}))
        return self.operation.family is Family.V2 and not fields - _ACKNOWLEDGEMENT_FIELDS

    def declares(self, name: str) -> bool:
        """Whether any of the request bodies has a top-level field ``name``."""
        return any(name in body.props for body in self.bodies.values())


@dataclass(frozen=True)
class GenerationsEndpoint:
    """``GET /v2/generations/{id}`` and ``GET /v1/generations/{id}`` (each also under ``/ideogram``):
    the poll of an async generation, answered in the newest document's ``GenerationResponse``."""

    response_schema: str
    document: str
    doc: dict[str, Any] = field(repr=False, compare=False)

    def paths(self) -> list[str]:
        return [prefix + p for p in GENERATION_PATHS for prefix in ("", RELAY_PREFIX)]

    def response_node(self) -> dict[str, Any]:
        return flatten(self.doc, {"$ref": f"#/components/schemas/{self.response_schema}"})


def _auth_status(responses: dict[str, Any]) -> int:
    return 403 if "403" in responses and "401" not in responses else 401


def _ok_schema(operation: dict[str, Any]) -> str:
    return operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]


def _endpoint(op: Operation) -> SimEndpoint | None:
    found = spec.newest_with(op.official_path)
    if found is None:
        return None
    name, doc = found
    post = doc["paths"][op.official_path]["post"]
    bodies = {mt: body_schema(doc, mt, c) for mt, c in post["requestBody"]["content"].items()}
    parameters = [_parameter(doc, p) for p in post.get("parameters", [])]
    query = frozenset(p["name"] for p in parameters if p.get("in") == "query")
    return SimEndpoint(op, bodies, _auth_status(post["responses"]), _ok_schema(post), name, doc, query)


def _parameter(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = doc["components"]["parameters"][node["$ref"].rsplit("/", 1)[1]]
    return node


@cache
def endpoints() -> dict[Operation, SimEndpoint]:
    """One entry per operation whose official path a vendored document declares."""
    out: dict[Operation, SimEndpoint] = {}
    for op in Operation:
        endpoint = _endpoint(op)
        if endpoint is not None:
            out[op] = endpoint
    return out


@cache
def generations_endpoint() -> GenerationsEndpoint | None:
    """The poll endpoint as the newest document declaring one of its paths has it (None: none does)."""
    for path in GENERATION_PATHS:  # /v2 first: it is only in the newest document
        found = spec.newest_with(path)
        if found is not None:
            name, doc = found
            return GenerationsEndpoint(_ok_schema(doc["paths"][path]["get"]), name, doc)
    return None
