"""The sim's own reading of a request body: bounded read, strict JSON, multipart parts (with
python-multipart), and the coercion of multipart text parts to the types the official schema
declares — integers, numbers, booleans, JSON parts for objects, repeated parts for arrays,
files for binary properties. Nothing here comes from ideohub's API layer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from .schema import BodySchema

_INTEGER = re.compile(r"-?[0-9]{1,30}")  # the spec's integers fit in 31 bits; longer text is not one
_NUMBER = re.compile(r"-?[0-9]{1,30}(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?")
_MAX_DETAIL = 300


class SimInputError(Exception):
    """A request the official API would refuse: ``status`` and a detail naming the field and the rule."""

    def __init__(self, field_name: str, rule: str, status: int = 400) -> None:
        text = f"{field_name}: {rule}"
        if len(text) > _MAX_DETAIL:
            text = text[: _MAX_DETAIL - 1] + "…"
        super().__init__(text)
        self.status = status
        self.detail = text


@dataclass
class Part:
    name: str | None
    filename: str | None
    content_type: str | None
    data: bytearray = field(default_factory=bytearray)

    def header_view(self) -> dict[str, str | None]:
        return {"name": self.name, "filename": self.filename, "content_type": self.content_type}


@dataclass
class SimFile:
    """An uploaded file; ``media_type``/``width``/``height`` are filled in by the image check."""

    field_name: str
    filename: str | None
    content_type: str | None
    data: bytes
    media_type: str | None = None
    width: int = 0
    height: int = 0

    def view(self) -> dict[str, Any]:
        return {"filename": self.filename, "content_type": self.content_type, "bytes": len(self.data),
                "size": f"{self.width}x{self.height}" if self.width else None}


# ---------------------------------------------------------------- the body


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refusing (413) as soon as it passes ``max_bytes``, declared or chunked."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise SimInputError("body", f"larger than {max_bytes} bytes", 413)
    buf = bytearray()
    try:
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > max_bytes:
                raise SimInputError("body", f"larger than {max_bytes} bytes", 413)
    except ClientDisconnect:
        raise SimInputError("body", "the client went away before sending all of it") from None
    return bytes(buf)


def media_type(content_type: str | None) -> str | None:
    return content_type.split(";")[0].strip().lower() if content_type else None


def parse_json(body: bytes, what: str = "body") -> Any:
    """Standard JSON only: UTF-8, no NaN/Infinity, no lone surrogates, bounded depth."""
    try:
        text = body.decode("utf-8")
        value = json.loads(text, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise SimInputError(what, "is not UTF-8") from None
    except RecursionError:
        raise SimInputError(what, "is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN, and ints too long for int()
        raise SimInputError(what, f"is not valid JSON ({str(exc)[:80]})") from None
    _check_unicode(value, what)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_unicode(value: Any, where: str) -> None:
    """JSON may escape a lone surrogate (``"\\ud800"``); that is no Unicode text, so no prompt."""
    stack = [(value, where)]
    while stack:
        v, path = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise SimInputError(path, "holds a lone surrogate (not Unicode text)") from None
        elif isinstance(v, dict):
            for k, item in v.items():
                _check_unicode(k, path)
                stack.append((item, f"{path}.{k}" if path != "body" else k))
        elif isinstance(v, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(v))


# ---------------------------------------------------------------- multipart


def _boundary(content_type: str) -> bytes:
    _ctype, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise SimInputError("Content-Type", "multipart/form-data needs a boundary parameter")
    return boundary


def parse_multipart(body: bytes, content_type: str, max_parts: int = 1000) -> list[Part]:
    """Every part with its headers and data, in order; a body without its closing boundary is refused."""
    parts: list[Part] = []
    state: dict[str, Any] = {"field": b"", "value": b"", "headers": {}, "ended": False}

    def on_part_begin() -> None:
        state["headers"] = {}
        if len(parts) >= max_parts:
            raise SimInputError("body", f"more than {max_parts} parts")
        parts.append(Part(None, None, None))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].decode("latin-1").strip().lower()] = state["value"].decode("utf-8", "replace")
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        part = parts[-1]
        disposition = state["headers"].get("content-disposition")
        if disposition is None:
            raise SimInputError("body", f"part {len(parts)} has no Content-Disposition header")
        _kind, params = parse_options_header(disposition.encode("utf-8"))
        name = params.get(b"name")
        if name is None:
            raise SimInputError("body", f"part {len(parts)} has no name")
        part.name = name.decode("utf-8", "replace")
        filename = params.get(b"filename")
        part.filename = filename.decode("utf-8", "replace") if filename is not None else None
        ctype = state["headers"].get("content-type")
        part.content_type = ctype.strip() if ctype else None

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data += data[start:end]

    def on_end() -> None:
        state["ended"] = True

    parser = MultipartParser(_boundary(content_type), {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_end": on_end,
    })
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise SimInputError("body", f"is not valid multipart/form-data ({str(exc)[:80]})") from None
    if not state["ended"]:
        raise SimInputError("body", "the multipart body ends before its closing boundary")
    return parts


def multipart_parts(body: bytes, content_type: str) -> list[dict[str, str | None]]:
    """Each part's name, filename and Content-Type, in order (the request log's view)."""
    return [p.header_view() for p in parse_multipart(body, content_type)]


def _coerce(text: str, kind: str, name: str) -> Any:
    if kind == "integer":
        if not _INTEGER.fullmatch(text):
            raise SimInputError(name, f"{text[:40]!r} is not of type 'integer'")
        return int(text)
    if kind == "number":
        if not _NUMBER.fullmatch(text):
            raise SimInputError(name, f"{text[:40]!r} is not of type 'number'")
        return float(text) if any(c in text for c in ".eE") else int(text)
    if kind == "boolean":
        if text.lower() not in ("true", "false"):
            raise SimInputError(name, f"{text[:40]!r} is not of type 'boolean'")
        return text.lower() == "true"
    if kind in ("object", "array"):
        return parse_json(text.encode("utf-8"), name)
    return text


def _check_part_type(part: Part, declared: str | None, name: str) -> None:
    """Where the spec's ``encoding`` names a part's content type, a part that states another is refused."""
    if declared is None or part.content_type is None:
        return
    if media_type(part.content_type) != media_type(declared):
        raise SimInputError(name, f"the spec sends this part as {declared}, not {media_type(part.content_type)}")


def multipart_instance(body: BodySchema, parts: list[Part], strict: bool) -> tuple[dict[str, Any], list[SimFile]]:
    """The JSON instance the schema validates (files stand in as their filename) and the files."""
    values: dict[str, Any] = {}
    files: list[SimFile] = []
    for part in parts:
        name = part.name or ""
        prop = body.props.get(name)
        if prop is None:
            if strict:
                raise SimInputError(name, f"is not a field of {body.name}")
            continue
        if prop.is_file:
            if part.filename is None:
                raise SimInputError(name, "must be a file part (with a filename)")
            files.append(SimFile(name, part.filename, part.content_type, bytes(part.data)))
            item: Any = part.filename
        else:
            if part.filename is not None:
                raise SimInputError(name, "must be a text part, not a file")
            _check_part_type(part, prop.part_type, name)
            try:
                text = bytes(part.data).decode("utf-8")
            except UnicodeDecodeError:
                raise SimInputError(name, "is not UTF-8 text") from None
            kind = (prop.items or "string") if prop.kind == "array" else prop.kind
            item = _coerce(text, kind, name)
        if prop.kind == "array":
            values.setdefault(name, []).append(item)
        elif name in values:
            raise SimInputError(name, "is sent more than once (only arrays repeat)")
        else:
            values[name] = item
    return values, files


def json_instance(body: BodySchema, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SimInputError("body", "must be a JSON object")
    for name, prop in body.props.items():
        if name in value and prop.is_file:
            raise SimInputError(name, "files can only be sent as multipart/form-data")
    return value
