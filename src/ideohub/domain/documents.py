"""A canonical request as a JSON document and the files it needs — what a generation that
outlives its process (or runs on another machine) needs to run again, exactly as admitted.

``to_document`` names each uploaded image with ``name_file`` (the caller stores the bytes);
``from_document`` rebuilds the request from the document and those bytes, through the request
class itself, so the rebuilt request is checked by the same rules as the original.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable
from dataclasses import fields
from functools import cache
from typing import Any

from . import operations as ops
from .enums import ColorPaletteName
from .operations import CanonicalRequest, ColorMember, ColorPalette, ImageInput, Operation


@cache
def request_types() -> dict[Operation, type[CanonicalRequest]]:
    found: dict[Operation, type[CanonicalRequest]] = {}
    stack = list(CanonicalRequest.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        op = getattr(cls, "operation", None)
        if isinstance(op, Operation) and "operation" in cls.__dict__:
            found[op] = cls
    return found


def to_document(request: CanonicalRequest, name_file: Callable[[int, ImageInput], str]) -> tuple[dict, dict[str, bytes]]:
    """(document, files): ``name_file(n, image)`` gives the n-th image its storage key."""
    files: dict[str, bytes] = {}

    def encode(value: Any) -> Any:
        if isinstance(value, ImageInput):
            key = name_file(len(files), value)
            files[key] = value.data
            return {"$image": key, "media_type": value.media_type, "width": value.width, "height": value.height,
                    "filename": value.filename}
        if isinstance(value, ColorPalette):
            return {"$palette": value.to_wire()}
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, tuple):
            return [encode(v) for v in value]
        return value

    values = {f.name: encode(getattr(request, f.name)) for f in fields(request)}
    return {"operation": request.operation.value, "fields": values}, files


def document_files(doc: dict | None) -> list[str]:
    """The names ``to_document`` gave the files a document needs."""
    if not doc:
        return []
    names: list[str] = []
    stack: list[Any] = [doc["fields"]]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "$image" in node:
                names.append(node["$image"])
            else:
                stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


def from_document(doc: dict, files: dict[str, bytes]) -> CanonicalRequest:
    operation = Operation(doc["operation"])
    cls = request_types().get(operation, ops.SpecRequest)  # the 4.0 and /v2 families share one type
    hints = _hints(cls)
    kwargs = {name: _decode(value, hints[name], files) for name, value in doc["fields"].items()}
    return cls(**kwargs)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(ops))


def _decode(value: Any, hint: Any, files: dict[str, bytes]) -> Any:
    if value is None:
        return None
    if isinstance(value, dict) and "$image" in value:
        return ImageInput(data=files[value["$image"]], media_type=value["media_type"], width=value["width"],
                          height=value["height"], filename=value["filename"])
    if isinstance(value, dict) and "$palette" in value:
        wire = value["$palette"]
        if "name" in wire:
            return ColorPalette(name=ColorPaletteName(wire["name"]))
        return ColorPalette(members=tuple(ColorMember(m["color_hex"], m.get("color_weight")) for m in wire["members"]))
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return _decode(value, args[0], files)
    if typing.get_origin(hint) is tuple:
        return tuple(_decode(v, args[0], files) for v in value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    return value
