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
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from ...domain.enums import StyleType, StyleTypeV3
from ...domain.errors import InvalidRequest
from ...domain.operations import SEED_MAX, CanonicalRequest, Operation
from ...domain.sizes import Size
from ...domain.untrusted import UntrustedJSON, loads, printable
from ...net.guard import Refused, check_url

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


def to_wire(request: CanonicalRequest) -> WireRequest:
    """The upstream request for ``request``; raises ``InvalidRequest`` for text that cannot be
    encoded (a lone surrogate that got past a parser), naming the field."""
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


def encode_request(request: CanonicalRequest) -> EncodedBody:
    """``to_wire`` + ``encode``: what the relay sends, built once per request."""
    return to_wire(request).encode()


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
    resolution: Size
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
