"""Request schemas of Ideogram's official OpenAPI documents, compiled for validation.

For one endpoint's ``requestBody``: the media types it accepts, a JSON Schema validator per media
type (OpenAPI 3.0 ``nullable`` turned into JSON Schema's ``null`` type; Draft 4, the dialect
OpenAPI 3.0 schemas are written in, so ``1.0`` is not an integer), and each top-level property's
kind, which is how multipart text parts are coerced. Used by the 4.0 and /v2 dialects
(``api.dialects.spec``) and by the simulated upstream (``sim``), each with its own reading of
bodies and its own rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jsonschema

from . import nullable_to_jsonschema

_REF = re.compile(r"#/components/schemas/([A-Za-z0-9_.-]+)")


@dataclass(frozen=True)
class Prop:
    """A top-level body property. ``kind``: string, integer, number, boolean, object (a JSON
    part in multipart), file (one binary part), array (repeated parts; ``items`` is the item
    kind, "file" for binary items)."""

    name: str
    kind: str
    items: str | None = None
    part_type: str | None = None  # the encoding's contentType for this part, if the spec declares one

    @property
    def is_file(self) -> bool:
        """One binary part, or repeated binary parts."""
        return self.kind == "file" or (self.kind == "array" and self.items == "file")


@dataclass(frozen=True)
class BodySchema:
    media_type: str
    name: str  # the component's name, e.g. "GenerateImageRequestV3"
    props: dict[str, Prop]
    required: frozenset[str]
    validator: jsonschema.Validator
    schema: dict[str, Any]  # the root document the validator uses (for nested property lookups)

    def nested_props(self, name: str) -> dict[str, Any] | None:
        """The flattened schema of an object-typed property (``image_request``), or None."""
        node = flatten(self.schema, {"$ref": f"#/components/schemas/{self.name}"})
        sub = node.get("properties", {}).get(name)
        if sub is None:
            return None
        sub = flatten(self.schema, sub)
        return sub if "properties" in sub else None


def closure(doc: dict[str, Any], names: set[str]) -> dict[str, Any]:
    schemas = doc["components"]["schemas"]
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += _REF.findall(repr(schemas[name]))
    return {n: schemas[n] for n in sorted(seen)}


def resolve(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = root["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def flatten(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``$ref`` followed and ``allOf`` merged: one node with all ``properties`` and ``required``."""
    node = resolve(root, node)
    if "allOf" not in node:
        return node
    merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
    props = dict(merged.get("properties", {}))
    required = list(merged.get("required", []))
    for part in node["allOf"]:
        sub = flatten(root, part)
        props = {**sub.get("properties", {}), **props}
        required += sub.get("required", [])
        if "type" in sub:
            merged.setdefault("type", sub["type"])
    merged["properties"] = props
    merged["required"] = sorted(set(required))
    return merged


def inline(root: dict[str, Any], node: Any, path: tuple[str, ...] = ()) -> Any:
    """``$ref`` replaced by its target (halves jsonschema's time per request); a reference back
    into its own chain stays a ``$ref`` (resolved against ``root``)."""
    if isinstance(node, list):
        return [inline(root, n, path) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        if name in path:
            return node
        return inline(root, root["components"]["schemas"][name], (*path, name))
    return {k: inline(root, v, path) for k, v in node.items()}


def kind(root: dict[str, Any], node: dict[str, Any]) -> str:
    node = flatten(root, node)
    t = node.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    if t == "string" and node.get("format") == "binary":
        return "file"
    if t in ("string", "integer", "number", "boolean", "object", "array"):
        return t
    if any(k in node for k in ("oneOf", "anyOf", "properties")):
        return "object"
    return "string"


def body_schema(doc: dict[str, Any], media_type: str, content: dict[str, Any]) -> BodySchema:
    name = content["schema"]["$ref"].rsplit("/", 1)[1]
    root = {"components": {"schemas": nullable_to_jsonschema(closure(doc, {name}))}}
    top = flatten(root, {"$ref": f"#/components/schemas/{name}"})
    encoding = content.get("encoding", {})
    props: dict[str, Prop] = {}
    for pname, pnode in top.get("properties", {}).items():
        what = kind(root, pnode)
        items = kind(root, flatten(root, pnode).get("items", {})) if what == "array" else None
        props[pname] = Prop(pname, what, items, encoding.get(pname, {}).get("contentType"))
    validator = jsonschema.Draft4Validator({**inline(root, {"$ref": f"#/components/schemas/{name}"}), **root})
    return BodySchema(media_type, name, props, frozenset(top.get("required", [])), validator, root)
