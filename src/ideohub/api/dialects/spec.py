"""The 4.0 and /v2 dialects: one parser for every path of both, driven by Ideogram's official
request schemas (the newest vendored document that declares the path, ``ideohub.spec``).

Each body is read into the JSON instance the schema describes — JSON bodies as they are;
multipart text parts coerced to the property's type (integers, numbers, booleans, JSON parts for
objects, repeated parts or a JSON array for arrays), files decoded and checked like every
upload — then validated against the schema (Draft 4, as OpenAPI 3.0 writes it) and the rules
the schema cannot say (``domain.spec_rules``). Every refusal is a 400 naming the field.

What is ours and not the upstream's is taken out of the fields: ``async`` and ``webhook_url``
(how the caller is answered, ``api.submission``). ``private`` is always true: results are
never published to a public feed. 4.0 generate also takes the April-2026 shape (``prompt``,
``magic_prompt_option``): ``prompt`` is read as ``text_prompt``; ``magic_prompt_option`` is
checked and not forwarded, since 4.0 has no such field (text prompts are always expanded).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema

from ... import spec
from ...domain import spec_rules, untrusted
from ...domain.errors import InvalidRequest
from ...domain.operations import ImageInput, Operation, SpecRequest
from ...spec.schemas import BodySchema, body_schema
from .fields import Fields, loads_json

OURS = frozenset({"async", "webhook_url"})  # the caller's delivery options: never part of the request
APRIL_2026 = frozenset({"prompt", "magic_prompt_option"})  # 4.0 generate's first shape
_MAGIC_OPTIONS = ("AUTO", "ON", "OFF")
_MAX_DETAIL = 240
APRIL_OPS = (Operation.V4_GENERATE, Operation.V45_GENERATE)


@dataclass(frozen=True)
class SpecBodies:
    """One path's request bodies by media type."""

    path: str
    bodies: dict[str, BodySchema]

    @property
    def props(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for body in self.bodies.values():
            out.update(body.props)
        return out

    @property
    def file_fields(self) -> frozenset[str]:
        return frozenset(n for n, prop in self.props.items() if prop.is_file)

    @property
    def text_fields(self) -> frozenset[str]:
        return frozenset(n for n, prop in self.props.items() if not prop.is_file)


@cache
def bodies_for(path: str) -> SpecBodies | None:
    """The request bodies of ``path`` from the newest document that declares it (None: none does)."""
    found = spec.newest_with(path)
    if found is None:
        return None
    _name, doc = found
    content = doc["paths"][path]["post"]["requestBody"]["content"]
    return SpecBodies(path, {mt: body_schema(doc, mt, c) for mt, c in content.items()})


def parse(op: Operation, path: str, f: Fields) -> SpecRequest:
    found = bodies_for(path)
    assert found is not None  # only declared paths get a route
    media = "application/json" if f.from_json else "multipart/form-data"
    body = found.bodies.get(media) or next(iter(found.bodies.values()))
    instance, files = _instance(body, f)
    if op in APRIL_OPS:
        _april_shape(instance, f)
    _validate(body, instance, files)
    params = {k: v for k, v in instance.items() if k not in OURS and not body_is_file(body, k)}
    declared = frozenset(body.props)
    spec_rules.check(op, params, files, declared)
    if "private" in declared:
        params["private"] = True
    images = tuple((name, image) for name in body.props if name in files for image in files[name])
    num_images = params.get("num_images", 1)
    return SpecRequest(op=op, params=params, images=images, num_images=num_images, seed=params.get("seed"),
                       seedless="seed" not in declared)


def body_is_file(body: BodySchema, name: str) -> bool:
    prop = body.props.get(name)
    return prop is not None and prop.is_file


def _instance(body: BodySchema, f: Fields) -> tuple[dict[str, Any], dict[str, list[ImageInput]]]:
    """The schema's instance (files stand in as their names) and the decoded uploads."""
    instance: dict[str, Any] = {}
    files: dict[str, list[ImageInput]] = {}
    for name, prop in body.props.items():
        if prop.is_file:
            if prop.kind == "file":
                image = f.file(name, required=False)
                uploads = [image] if image is not None else []
            else:
                uploads = list(f.file_list(name) or ())
            if uploads:
                files[name] = uploads
                instance[name] = uploads[0].filename or name if prop.kind == "file" else [
                    u.filename or name for u in uploads]
            continue
        if f.from_json:
            if name in f.values:
                value = instance[name] = f.values[name]
                problem = untrusted.check_text(value, f.max_text_chars) if isinstance(value, str) else None
                if problem:  # JSON strings: the same text rules as every other field
                    raise InvalidRequest(name, problem)
            continue
        texts = [t for t in f.values.get(name) or [] if t != ""] or _text_uploads(f, name)
        if not texts:
            continue
        for text in texts:
            problem = untrusted.check_text(text, f.max_text_chars if prop.kind == "string" else 1024 * 1024)
            if problem:
                raise InvalidRequest(name, problem)
        if prop.kind == "array":
            instance[name] = _array(texts, prop.items or "string", name)
        else:
            instance[name] = _coerce(texts[-1], prop.kind, name)
    return instance, files


def _text_uploads(f: Fields, name: str) -> list[str]:
    """A text field sent as a file part (a ``json_prompt`` part with a filename, as some clients send
    JSON parts): its bytes as UTF-8 text."""
    texts = []
    for upload in f.files.get(name) or []:
        try:
            texts.append(upload.data.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidRequest(name, "must be UTF-8 text") from None
    return texts


def _coerce(text: str, kind: str, name: str) -> Any:
    if kind == "integer":
        stripped = text.strip()
        if len(stripped) > untrusted.MAX_NUMBER_CHARS or not stripped.lstrip("+-").isdigit() \
                or not stripped.lstrip("+-").isascii():
            raise InvalidRequest(name, f"must be an integer, got '{untrusted.printable(text, 40)}'")
        return int(stripped)
    if kind == "number":
        try:
            value = float(text.strip())
        except ValueError:
            raise InvalidRequest(name, f"must be a number, got '{untrusted.printable(text, 40)}'") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidRequest(name, "must be a finite number")
        return int(value) if value.is_integer() and "." not in text else value
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise InvalidRequest(name, "must be true or false")
        return lowered == "true"
    if kind == "object":
        return loads_json(text, name, detail=False)
    return text


def _array(texts: list[str], items: str, name: str) -> list[Any]:
    """Repeated parts, or one part holding a JSON array."""
    if len(texts) == 1 and texts[0].lstrip().startswith("["):
        value = loads_json(texts[0], name, detail=False)
        if not isinstance(value, list):
            raise InvalidRequest(name, "must be an array")
        return value
    if len(texts) > 64:
        raise InvalidRequest(name, "may have at most 64 items")
    return [_coerce(t, items, name) for t in texts]


def _april_shape(instance: dict[str, Any], f: Fields) -> None:
    """4.0 generate's April-2026 fields, read into today's (see the module docstring)."""
    raw_prompt = f.values.get("prompt")
    if raw_prompt is not None and "text_prompt" not in instance:
        prompt = raw_prompt if f.from_json else (raw_prompt[-1] if raw_prompt else None)
        if not isinstance(prompt, str):
            raise InvalidRequest("prompt", "must be a string")
        problem = untrusted.check_text(prompt, f.max_text_chars)
        if problem:
            raise InvalidRequest("prompt", problem)
        instance["text_prompt"] = prompt
    raw_magic = f.values.get("magic_prompt_option")
    if raw_magic is not None:
        magic = raw_magic if f.from_json else (raw_magic[-1] if raw_magic else None)
        if magic not in _MAGIC_OPTIONS:
            raise InvalidRequest("magic_prompt_option", f"must be one of: {', '.join(_MAGIC_OPTIONS)}")


def _no_overlong_numbers(value: Any, path: str) -> None:
    """A JSON number too long to be real (``untrusted.OutOfRange``) is refused naming its field,
    before the schema would describe the marker object instead."""
    if isinstance(value, untrusted.OutOfRange):
        raise InvalidRequest(path or "body", f"must be a number of at most {untrusted.MAX_NUMBER_CHARS} characters")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        _no_overlong_numbers(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key)


def _validate(body: BodySchema, instance: dict[str, Any], files: dict[str, list[ImageInput]]) -> None:
    """The official schema's verdict: the deepest failing field and the rule. The V4 JSON
    prompt is checked first by its own rules (clearer than a failed ``oneOf``)."""
    _no_overlong_numbers(instance, "")
    if isinstance(instance.get("json_prompt"), dict):
        spec_rules.check_json_prompt(instance["json_prompt"], "json_prompt")
    error = jsonschema.exceptions.best_match(body.validator.iter_errors(instance))
    if error is None:
        return
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [p for p in error.validator_value if p not in error.instance]
        if missing:
            field = f"{path}.{missing[0]}" if path else missing[0]
            raise InvalidRequest(field, "is required" + (" (a file part)" if body_is_file(body, missing[0]) else ""))
    if error.validator == "additionalProperties":
        raise InvalidRequest(path or "body", f"has fields the schema does not allow ({error.message[:120]})")
    message = error.message if len(error.message) <= _MAX_DETAIL else error.message[:_MAX_DETAIL - 1] + "…"
    raise InvalidRequest(path or "body", message)
