"""Canonical request → the upstream's wire format, and the upstream's response → our result.

Faithful to the official encoding rules (reference §2): ``/generate`` is JSON
``{"image_request": …}``; ``/remix`` and ``/upscale`` send ``image_file`` plus an
``image_request`` part holding JSON (``Content-Type: application/json``); ``/edit``,
``/reframe`` and ``/describe`` are flat parts; V3 endpoints are flat parts with arrays as
repeated parts and ``color_palette`` as a JSON part — or a JSON body for V3 generate and
generate-transparent when there are no files, as the official samples send it. The body is
encoded once per request (``encode_request``), before any channel is chosen: text we cannot
encode is the caller's 400, naming the field.

Everything an upstream sends back is untrusted and validated here before use: JSON through
``untrusted.loads`` (bounded depth and numbers, no NaN, no lone surrogates), no more images than
asked for, sizes ``WxH`` with sides 1..16384, seeds 0..2^31-1, image URLs that pass the guard's
syntax rules, prompts and descriptions printable and capped, unknown style types dropped, and
``Retry-After`` finite and clamped. Anything else is a ``MalformedResponse``: fail over.

4.0 and /v2 requests (``SpecRequest``) are encoded by their official request schema (the newest
vendored document declaring the path, ``ideohub.spec``): a JSON body where the path accepts
``application/json`` and nothing is uploaded; else multipart — files as file parts, objects as
JSON parts, arrays of scalars as repeated text parts, arrays of objects as one JSON part per item
where the spec's ``encoding`` names a content type for the field (else one JSON part holding the
array), booleans ``true``/``false``. ``async``, ``webhook_url`` and ``dry_run`` are never sent
(how our caller is answered is ours), and the fields that act on the operator's own upstream
account (``ACCOUNT_FIELDS``) only to a channel that allows them (``account_fields``).

Their answers: 4.0 images as above; /v2 images ``{generation_id?, seed?, data: [...]}`` whose
items may lack ``resolution``, ``prompt`` and ``seed`` (remove-background: the size is then read
from the downloaded image); a /v2 acknowledgement (a ``generation_id`` and no ``data``) is polled
(``parse_generation``); 4.0 magic-prompt and describe and /v2 describe are JSON documents whose
``json_prompt`` is checked field by field against the V4JsonPrompt shape (``parse_json_prompt``):
strings printable and capped, lists capped, unknown keys dropped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any

import httpx

from ... import spec
from ...domain.enums import StyleType, StyleTypeV3
from ...domain.errors import InvalidRequest
from ...domain.operations import (
    ACCOUNT_FIELDS,
    SEED_MAX,
    CanonicalRequest,
    DescribeResult,
    Family,
    JsonResult,
    Operation,
    SpecRequest,
)
from ...domain.sizes import Size
from ...domain.untrusted import UntrustedJSON, loads, printable
from ...net.guard import Refused, check_url
from ...spec.schemas import flatten

_IMAGE_REQUEST_OPS = {Operation.GENERATE, Operation.REMIX, Operation.UPSCALE}
_JSON_OK_OPS = {Operation.GENERATE, Operation.V3_GENERATE, Operation.V3_GENERATE_TRANSPARENT}
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_UNICODE_RULE = "must be valid Unicode text (it holds an unpaired surrogate)"

FilePart = tuple[str, tuple[str | None, bytes, str]]


@dataclass(frozen=True)
class EncodedBody:
    """The upstream request body, encoded once before any channel is chosen."""

    content: bytes
    content_type: str


@dataclass
class WireRequest:
    json_body: dict[str, Any] | None = None
    parts: list[FilePart] | None = None  # multipart parts in order; text parts have no filename

    def encode(self) -> EncodedBody:
        """The body's bytes; a value we cannot encode is the caller's 400 naming the field (it
        must never reach a channel, let alone count against one)."""
        if self.json_body is not None:
            try:
                content = json.dumps(self.json_body, ensure_ascii=False, allow_nan=False).encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequest(_unencodable(self.json_body) or "body", _UNICODE_RULE) from None
            return EncodedBody(content, "application/json")
        request = httpx.Request("POST", "http://upstream.invalid/", files=self.parts or [])
        return EncodedBody(request.read(), request.headers["content-type"])


def _unencodable(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string in ``value`` that UTF-8 cannot encode."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or None
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _unencodable(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _encode_text(name: str, text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(name, _UNICODE_RULE) from None


def _filename(name: str, image: Any) -> str:
    """The upload's own name (the upstream may read it, e.g. the sim's safety marker) when it can
    be sent; else ``<field>.<ext>``."""
    fallback = f"{name}.{_EXT.get(image.media_type, 'png')}"
    filename = image.filename
    if not filename or len(filename) > 255:
        return fallback
    try:
        filename.encode("utf-8")
    except UnicodeEncodeError:
        return fallback
    return filename


def to_wire(request: CanonicalRequest, account_fields: bool = True) -> WireRequest:
    """The upstream request for ``request``; raises ``InvalidRequest`` for text that cannot be
    encoded (a lone surrogate that got past a parser), naming the field. ``account_fields``
    False drops ``ACCOUNT_FIELDS`` from a 4.0 or /v2 request (the channel does not allow them)."""
    if isinstance(request, SpecRequest):
        return _spec_wire(request, account_fields)
    op = request.operation
    params = request.wire_params()
    files = request.image_inputs()
    if op in _JSON_OK_OPS and not files:
        return WireRequest(json_body={"image_request": params} if op in _IMAGE_REQUEST_OPS else params)
    parts: list[FilePart] = []
    for name, image in files:
        parts.append((name, (_filename(name, image), image.data, image.media_type)))
    if op in _IMAGE_REQUEST_OPS:
        try:
            payload = json.dumps(params, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(_unencodable({"image_request": params}) or "image_request", _UNICODE_RULE) from None
        parts.append(("image_request", (None, payload, "application/json")))
        return WireRequest(parts=parts)
    for name, value in params.items():
        if isinstance(value, dict):
            try:
                payload = json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequest(_unencodable(value, name) or name, _UNICODE_RULE) from None
            parts.append((name, (None, payload, "application/json")))
        elif isinstance(value, list):
            parts.extend((name, (None, _encode_text(name, _text(v)), "text/plain")) for v in value)
        else:
            parts.append((name, (None, _encode_text(name, _text(value)), "text/plain")))
    return WireRequest(parts=parts)


def encode_request(request: CanonicalRequest, account_fields: bool = True) -> EncodedBody:
    """``to_wire`` + ``encode``: what the relay sends, built once per request (and per
    ``account_fields`` setting where the request holds account fields)."""
    return to_wire(request, account_fields).encode()


# ---------------------------------------------------------------- 4.0 and /v2 requests

NEVER_SENT = frozenset({"async", "webhook_url", "dry_run"})  # ours: how the caller is answered
_JSON_MEDIA = "application/json"
_MULTIPART = "multipart/form-data"


@cache
def request_content(path: str) -> dict[str, Any]:
    """The official ``requestBody.content`` of ``path`` (media type → {schema, encoding}) from the
    newest vendored document that declares it; empty when none does."""
    found = spec.newest_with(path)
    if found is None:
        return {}
    post = found[1]["paths"][path].get("post", {})
    return post.get("requestBody", {}).get("content", {})  # type: ignore[no-any-return]


@cache
def _fields(path: str, key: str) -> frozenset[str] | None:
    found = spec.newest_with(path)
    if found is None:
        return None
    doc = found[1]
    out: set[str] = set()
    for content in request_content(path).values():
        node = content.get("schema")
        if isinstance(node, dict):
            try:
                flat = flatten(doc, node)
            except KeyError:  # a schema missing from a partial document: nothing known
                return None
            out.update(flat.get("properties", {}) if key == "properties" else flat.get(key, []))
    return frozenset(out)


def required_fields(path: str) -> frozenset[str]:
    """The top-level fields the official schema requires of ``path`` under any media type."""
    return _fields(path, "required") or frozenset()


def declares_seed(path: str) -> bool:
    """Whether the official schema of ``path`` has a ``seed`` (4.0 remix has none): the seed
    admission fixed is sent only where it does (unknown paths: sent)."""
    declared = _fields(path, "properties")
    return declared is None or "seed" in declared


def has_account_fields(request: CanonicalRequest) -> bool:
    return isinstance(request, SpecRequest) and any(k in ACCOUNT_FIELDS for k in request.params)


def required_account_field(request: CanonicalRequest) -> str | None:
    """An account field the request holds that its endpoint requires (``custom_model_uri`` of the
    custom-model paths): only a channel that forwards account fields can serve the request."""
    if not isinstance(request, SpecRequest):
        return None
    needed = required_fields(request.op.official_path) & ACCOUNT_FIELDS
    return next((k for k in sorted(needed) if k in request.params), None)


def _json_part(name: str, value: Any) -> FilePart:
    try:
        payload = json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(_unencodable(value, name) or name, _UNICODE_RULE) from None
    return (name, (None, payload, "application/json"))


def _spec_wire(request: SpecRequest, account_fields: bool) -> WireRequest:
    path = request.op.official_path
    params = {k: v for k, v in request.wire_params().items()
              if k not in NEVER_SENT and (account_fields or k not in ACCOUNT_FIELDS)}
    if "seed" in params and "seed" not in request.params and not declares_seed(path):
        del params["seed"]  # fixed by admission for an endpoint without one: never the upstream's 400
    files = request.image_inputs()
    content = request_content(path)
    multipart = content.get(_MULTIPART)
    if not files and (_JSON_MEDIA in content or multipart is None):
        return WireRequest(json_body=params)
    if multipart is None:  # the dialect never lets this through; refuse rather than send what cannot be
        raise InvalidRequest(files[0][0], f"{path} takes no uploaded files")
    encoding = multipart.get("encoding") or {}
    parts: list[FilePart] = []
    for name, image in files:
        parts.append((name, (_filename(name, image), image.data, image.media_type)))
    for name, value in params.items():
        if value is None:  # JSON null has no multipart form; leaving the field out means the same
            continue
        if isinstance(value, dict):
            parts.append(_json_part(name, value))
        elif isinstance(value, list):
            if any(isinstance(v, (dict, list)) for v in value):
                if (encoding.get(name) or {}).get("contentType"):  # the spec's encoding: a part per item
                    parts.extend(_json_part(name, v) for v in value)
                else:
                    parts.append(_json_part(name, value))
            else:
                parts.extend((name, (None, _encode_text(name, _text(v)), "text/plain")) for v in value if v is not None)
        else:
            parts.append((name, (None, _encode_text(name, _text(value)), "text/plain")))
    return WireRequest(parts=parts)


class MalformedResponse(ValueError):
    """The upstream answered 200 with a body that is not the spec's shape. The message is ours
    (it never quotes the upstream's values)."""


# Bounds on what an upstream may hand us (anything outside is a malformed answer: fail over).
MAX_SIDE = 16384  # pixels per side of a reported resolution
MAX_PROMPT_CHARS = 20_000  # an upstream's (magic) prompt, echoed to our client and stored
MAX_DESCRIPTIONS = 16
MAX_DESCRIPTION_CHARS = 20_000
_SIZE = re.compile(r"([0-9]{1,5})x([0-9]{1,5})")
_STYLE_TYPES = frozenset(StyleType._value2member_map_) | frozenset(StyleTypeV3._value2member_map_)


@dataclass
class UpstreamImage:
    url: str | None
    prompt: str
    resolution: Size | None  # None: not stated (/v2 remove-background): read from the downloaded image
    upscaled_resolution: Size | None
    is_image_safe: bool
    seed: int
    style_type: str | None


def _size(value: Any, field: str) -> Size:
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise MalformedResponse(f"{field} is not a WxH string")
    width, height = int(match.group(1)), int(match.group(2))
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise MalformedResponse(f"{field} must have sides from 1 to {MAX_SIDE}")
    return Size(width, height)


def _url(value: Any, field: str) -> str | None:
    """An image link we may later fetch (the guard still judges where it points)."""
    if value is None:
        return None
    try:
        check_url(value)  # http(s), at most 2,048 characters, no whitespace or control characters
    except Refused:
        raise MalformedResponse(f"{field} is not an acceptable http(s) URL") from None
    return value  # type: ignore[no-any-return]


def parse_images(body: Any, max_images: int) -> list[UpstreamImage]:
    """Validate an image answer; more items than ``max_images`` (what we asked for) is malformed:
    extras are never downloaded, stored or delivered."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list) or not body["data"]:
        raise MalformedResponse("response has no data[]")
    if len(body["data"]) > max_images:
        raise MalformedResponse(f"response has {len(body['data'])} images; {max_images} were asked for")
    out: list[UpstreamImage] = []
    for i, item in enumerate(body["data"]):
        if not isinstance(item, dict):
            raise MalformedResponse(f"data[{i}] is not an object")
        safe = item.get("is_image_safe")
        if not isinstance(safe, bool):
            raise MalformedResponse(f"data[{i}].is_image_safe is not a boolean")
        seed = item.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= SEED_MAX:
            raise MalformedResponse(f"data[{i}].seed is not an integer from 0 to {SEED_MAX}")
        url = _url(item.get("url"), f"data[{i}].url")
        if safe and not url:
            raise MalformedResponse(f"data[{i}] is marked safe but has no url")
        upscaled = item.get("upscaled_resolution")
        prompt = item.get("prompt")
        style = item.get("style_type")
        out.append(
            UpstreamImage(
                url=url if safe else None,
                prompt=printable(prompt, MAX_PROMPT_CHARS) if isinstance(prompt, str) else "",
                resolution=_size(item.get("resolution"), f"data[{i}].resolution"),
                upscaled_resolution=_size(upscaled, f"data[{i}].upscaled_resolution") if upscaled is not None else None,
                is_image_safe=safe,
                seed=seed,
                style_type=style if isinstance(style, str) and style in _STYLE_TYPES else None,
            )
        )
    return out


# ---------------------------------------------------------------- 4.0 and /v2 answers

GENERATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_JSON_TEXT_CHARS = 20_000  # one string of a JSON prompt
MAX_JSON_ELEMENTS = 128  # compositional_deconstruction.elements
MAX_JSON_TAGS = 128
MAX_TAG_CHARS = 200
MAX_PALETTE_COLORS = 32
MAX_FAILURE_REASON_CHARS = 100
_HEX6 = re.compile(r"#[0-9a-fA-F]{6}")
_STYLE_TEXTS = ("aesthetics", "art_style", "lighting", "medium", "photo")
# AspectRatioV4 of the official documents (tests hold this equal to the vendored spec's enum).
ASPECT_RATIOS_V4 = ("AUTO", "1x4", "1x3", "1x2", "9x16", "10x16", "2x3", "3x4", "4x5", "1x1", "5x4", "4x3", "3x2",
                    "16x10", "16x9", "2x1", "3x1", "4x1")
_IMAGE_OBJECT_TYPES = frozenset({"image.generation", "image.without-prompt-or-seed"})


@dataclass(frozen=True)
class Acknowledged:
    """A /v2 answer that only accepted the work (``generation_id``, no ``data``): poll it."""

    generation_id: str


def _generation_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not GENERATION_ID.fullmatch(value):
        raise MalformedResponse(f"{field} is not a generation id (1-64 of A-Z a-z 0-9 _ -)")
    return value


def _seed(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= SEED_MAX:
        raise MalformedResponse(f"{field} is not an integer from 0 to {SEED_MAX}")
    return value


def _string(value: Any, field: str, cap: int = MAX_JSON_TEXT_CHARS) -> str:
    if not isinstance(value, str):
        raise MalformedResponse(f"{field} is not a string")
    return printable(value, cap)


def _list(value: Any, field: str, cap: int) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedResponse(f"{field} is not a list")
    if len(value) > cap:
        raise MalformedResponse(f"{field} has more than {cap} items")
    return value


def _palette(value: Any, field: str) -> list[str]:
    colors = _list(value, field, MAX_PALETTE_COLORS)
    for i, color in enumerate(colors):
        if not isinstance(color, str) or not _HEX6.fullmatch(color):
            raise MalformedResponse(f"{field}[{i}] is not a #RRGGBB colour")
    return list(colors)


def _bbox(value: Any, field: str) -> list[int]:
    box = _list(value, field, 4)
    if len(box) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1000 for v in box):
        raise MalformedResponse(f"{field} is not 4 integers from 0 to 1000")
    return list(box)


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedResponse(f"{field} is not an object")
    return {k: v for k, v in value.items() if v is not None}  # x-drop-nulls: null is absent


def parse_json_prompt(value: Any, field: str = "json_prompt") -> dict[str, Any]:
    """An upstream's V4JsonPrompt, rebuilt from the fields the spec declares (unknown keys
    dropped; strings printable and capped; lists capped; bbox and colours checked)."""
    node = _object(value, field)
    out: dict[str, Any] = {"high_level_description": _string(node.get("high_level_description"),
                                                             f"{field}.high_level_description")}
    if "style_description" in node:
        where = f"{field}.style_description"
        style_in = _object(node["style_description"], where)
        style: dict[str, Any] = {k: _string(style_in[k], f"{where}.{k}") for k in _STYLE_TEXTS if k in style_in}
        if "color_palette" in style_in:
            style["color_palette"] = _palette(style_in["color_palette"], f"{where}.color_palette")
        out["style_description"] = style
    where = f"{field}.compositional_deconstruction"
    comp_in = _object(node.get("compositional_deconstruction"), where)
    elements: list[dict[str, Any]] = []
    for i, raw in enumerate(_list(comp_in.get("elements"), f"{where}.elements", MAX_JSON_ELEMENTS)):
        at = f"{where}.elements[{i}]"
        element_in = _object(raw, at)
        kind = element_in.get("type")
        if kind not in ("obj", "text"):
            raise MalformedResponse(f"{at}.type is not 'obj' or 'text'")
        element: dict[str, Any] = {"type": kind}
        if kind == "text":
            element["text"] = _string(element_in.get("text"), f"{at}.text")
        element["desc"] = _string(element_in.get("desc"), f"{at}.desc")
        if "bbox" in element_in:
            element["bbox"] = _bbox(element_in["bbox"], f"{at}.bbox")
        if "color_palette" in element_in:
            element["color_palette"] = _palette(element_in["color_palette"], f"{at}.color_palette")
        elements.append(element)
    out["compositional_deconstruction"] = {"background": _string(comp_in.get("background"), f"{where}.background"),
                                           "elements": elements}
    if "tags" in node:
        tags = _list(node["tags"], f"{field}.tags", MAX_JSON_TAGS)
        out["tags"] = [_string(t, f"{field}.tags[{i}]", MAX_TAG_CHARS) for i, t in enumerate(tags)]
    return out


def parse_magic_prompt(body: Any) -> JsonResult:
    """4.0 magic prompt: ``{json_prompt, aspect_ratio}`` (the ratio resolved when AUTO was asked)."""
    node = _object(body, "response")
    ratio = node.get("aspect_ratio")
    if ratio not in ASPECT_RATIOS_V4:
        raise MalformedResponse("aspect_ratio is not one of the AspectRatioV4 values")
    return JsonResult({"json_prompt": parse_json_prompt(node.get("json_prompt")), "aspect_ratio": ratio})


def parse_v4_describe(body: Any) -> JsonResult:
    """4.0 describe: ``{json_prompt}``."""
    return JsonResult({"json_prompt": parse_json_prompt(_object(body, "response").get("json_prompt"))})


def parse_v2_describe(body: Any, model: str) -> JsonResult:
    """/v2 describe: ``{created, description_id, descriptions[{text}]}`` (ideogram-3) or
    ``{created, description_id, json_prompt}`` (ideogram-4); ``created`` and ``description_id``
    are kept when they are sound."""
    node = _object(body, "response")
    out: dict[str, Any] = {}
    created = node.get("created")
    if isinstance(created, str) and 0 < len(created) <= 64 and created.isprintable():
        out["created"] = created
    description_id = node.get("description_id")
    if isinstance(description_id, str) and GENERATION_ID.fullmatch(description_id):
        out["description_id"] = description_id
    if model == "ideogram-4":
        out["json_prompt"] = parse_json_prompt(node.get("json_prompt"))
    else:
        out["descriptions"] = [{"text": t} for t in parse_descriptions(node)]
    return JsonResult(out)


def parse_v2_images(body: Any, max_images: int, fallback: Size | None = None) -> list[UpstreamImage] | Acknowledged:
    """A /v2 image answer: its items (``resolution``, ``prompt`` and ``seed`` optional: the size
    then comes from the downloaded image — or ``fallback``, the input's, for an unsafe item
    without a link —, the prompt is "", the seed the answer's or 0), or the acknowledgement of
    work to poll (a ``generation_id`` and no ``data``)."""
    node = _object(body, "response")
    generation_id = _generation_id(node["generation_id"], "generation_id") if "generation_id" in node else None
    if "data" not in node:
        if generation_id is None:
            raise MalformedResponse("response has neither data[] nor a generation_id")
        return Acknowledged(generation_id)
    top_seed = _seed(node["seed"], "seed") if "seed" in node else 0
    return _v2_items(node["data"], max_images, top_seed, fallback)


def _v2_items(data: Any, max_images: int, top_seed: int, fallback: Size | None) -> list[UpstreamImage]:
    if not isinstance(data, list) or not data:
        raise MalformedResponse("response has no data[]")
    if len(data) > max_images:
        raise MalformedResponse(f"response has {len(data)} images; {max_images} were asked for")
    out: list[UpstreamImage] = []
    for i, raw in enumerate(data):
        item = _object(raw, f"data[{i}]")
        object_type = item.get("object_type")
        if object_type is not None and object_type not in _IMAGE_OBJECT_TYPES:
            raise MalformedResponse(f"data[{i}].object_type is not an image")
        safe = item.get("is_image_safe")
        if not isinstance(safe, bool):
            raise MalformedResponse(f"data[{i}].is_image_safe is not a boolean")
        url = _url(item.get("url"), f"data[{i}].url")
        if safe and not url:
            raise MalformedResponse(f"data[{i}] is marked safe but has no url")
        resolution = _size(item["resolution"], f"data[{i}].resolution") if "resolution" in item else None
        if resolution is None and not (safe and url):
            if fallback is None:
                raise MalformedResponse(f"data[{i}] has neither a resolution nor an image")
            resolution = fallback
        prompt = item.get("prompt")
        out.append(UpstreamImage(
            url=url if safe else None,
            prompt=printable(prompt, MAX_PROMPT_CHARS) if isinstance(prompt, str) else "",
            resolution=resolution, upscaled_resolution=None, is_image_safe=safe,
            seed=_seed(item["seed"], f"data[{i}].seed") if "seed" in item else top_seed, style_type=None,
        ))
    return out


@dataclass(frozen=True)
class Generation:
    """A polled /v2 generation: ``pending``, ``completed`` (with its images) or ``failed``."""

    status: str
    images: list[UpstreamImage] | None = None
    failure_reason: str | None = None


def parse_generation(body: Any, generation_id: str, max_images: int, fallback: Size | None = None) -> Generation:
    """``GET /v2/generations/{id}``: the status, and the images once completed."""
    node = _object(body, "response")
    if "generation_id" in node and node["generation_id"] != generation_id:
        raise MalformedResponse("generation_id is not the one polled")
    status = node.get("status")
    if status == "pending":
        return Generation("pending")
    if status == "failed":
        reason = node.get("failure_reason")
        return Generation("failed", failure_reason=printable(reason, MAX_FAILURE_REASON_CHARS)
                          if isinstance(reason, str) else None)
    if status != "completed":
        raise MalformedResponse("status is not pending, completed or failed")
    top_seed = _seed(node["seed"], "seed") if "seed" in node else 0
    return Generation("completed", images=_v2_items(node.get("data"), max_images, top_seed, fallback))


Answer = list[UpstreamImage] | DescribeResult | JsonResult | Acknowledged


def parse_answer(request: CanonicalRequest, body: Any) -> Answer:
    """The 200 answer to ``request``, validated: images, descriptions, a JSON document, or the
    acknowledgement of /v2 work to poll. Raises ``MalformedResponse``."""
    op = request.operation
    if op is Operation.DESCRIBE:
        return DescribeResult(parse_descriptions(body))
    if op is Operation.V4_MAGIC_PROMPT:
        return parse_magic_prompt(body)
    if op is Operation.V4_DESCRIBE:
        return parse_v4_describe(body)
    if op.family is Family.V2:
        capability, model = op.v2_parts
        if capability == "describe":
            return parse_v2_describe(body, model)
        return parse_v2_images(body, request.num_images, input_size(request))
    return parse_images(body, request.num_images)


def input_size(request: CanonicalRequest) -> Size | None:
    """The size of the request's first upload (an unsafe /v2 item without a size keeps it)."""
    files = request.image_inputs()
    return files[0][1].size if files else None


def parse_descriptions(body: Any) -> list[str]:
    if not isinstance(body, dict) or not isinstance(body.get("descriptions"), list) or not body["descriptions"]:
        raise MalformedResponse("response has no descriptions[]")
    items = body["descriptions"]
    if len(items) > MAX_DESCRIPTIONS:
        raise MalformedResponse(f"response has more than {MAX_DESCRIPTIONS} descriptions")
    texts = [d.get("text") if isinstance(d, dict) else None for d in items]
    if not all(isinstance(t, str) for t in texts):
        raise MalformedResponse("descriptions[] items need a text string")
    return [printable(t, MAX_DESCRIPTION_CHARS) for t in texts]  # type: ignore[arg-type]


def parse_body(data: bytes) -> Any:
    """An upstream's JSON answer, decoded under the rules for outside JSON (bounded numbers and
    depth, no NaN, no lone surrogates); anything else is a malformed answer."""
    try:
        return loads(data)
    except UntrustedJSON as exc:
        raise MalformedResponse(f"the body is not acceptable JSON ({exc})") from None


def error_message(data: bytes, fallback: str) -> str:
    """The message of an upstream error answer (``error``, ``detail`` or ``message``), unredacted:
    the caller redacts it (``untrusted.outside_text``) with the channel's secrets."""
    try:
        body = loads(data)
    except UntrustedJSON:
        text = data[:2000].decode("utf-8", "replace").strip()
        return text or fallback
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            if isinstance(body.get(key), str) and body[key].strip():
                return body[key]  # type: ignore[no-any-return]
    return data[:2000].decode("utf-8", "replace").strip() or fallback


MAX_RETRY_AFTER_S = 3600.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds in [0, MAX_RETRY_AFTER_S]: delta-seconds or an HTTP-date; None
    when absent or unreadable (``nan``, garbage). Huge values (``inf``, ``1e400``) are clamped."""
    if not value or len(value) > 64:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


def tier_of(request: CanonicalRequest) -> str | None:
    """What a channel's ``models`` filter and the price table key on: the legacy model or
    the V3 rendering speed."""
    model = getattr(request, "model", None)
    if model is not None:
        return model.value
    speed = getattr(request, "rendering_speed", None)
    return speed.value if speed is not None else None
