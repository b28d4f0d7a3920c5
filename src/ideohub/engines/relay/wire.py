"""Canonical request → the upstream's wire format, and the upstream's response → our result.

Faithful to the official encoding rules (reference §2): ``/generate`` is JSON
``{"image_request": …}``; ``/remix`` and ``/upscale`` send ``image_file`` plus an
``image_request`` part holding JSON (``Content-Type: application/json``); ``/edit``,
``/reframe`` and ``/describe`` are flat parts; V3 endpoints are flat parts with arrays as
repeated parts and ``color_palette`` as a JSON part — or a JSON body for V3 generate and
generate-transparent when there are no files, as the official samples send it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ...domain.operations import CanonicalRequest, Operation
from ...domain.sizes import Size

_IMAGE_REQUEST_OPS = {Operation.GENERATE, Operation.REMIX, Operation.UPSCALE}
_JSON_OK_OPS = {Operation.GENERATE, Operation.V3_GENERATE, Operation.V3_GENERATE_TRANSPARENT}
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}

FilePart = tuple[str, tuple[str | None, bytes, str]]


@dataclass
class WireRequest:
    json_body: dict[str, Any] | None = None
    parts: list[FilePart] | None = None  # multipart parts in order; text parts have no filename

    def httpx_kwargs(self) -> dict[str, Any]:
        if self.json_body is not None:
            return {"json": self.json_body}
        return {"files": self.parts}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_wire(request: CanonicalRequest) -> WireRequest:
    op = request.operation
    params = request.wire_params()
    files = request.image_inputs()
    if op in _JSON_OK_OPS and not files:
        return WireRequest(json_body={"image_request": params} if op in _IMAGE_REQUEST_OPS else params)
    parts: list[FilePart] = []
    for name, image in files:
        filename = image.filename or f"{name}.{_EXT.get(image.media_type, 'png')}"
        parts.append((name, (filename, image.data, image.media_type)))
    if op in _IMAGE_REQUEST_OPS:
        parts.append(("image_request", (None, json.dumps(params).encode(), "application/json")))
        return WireRequest(parts=parts)
    for name, value in params.items():
        if isinstance(value, dict):
            parts.append((name, (None, json.dumps(value).encode(), "application/json")))
        elif isinstance(value, list):
            parts.extend((name, (None, _text(v).encode(), "text/plain")) for v in value)
        else:
            parts.append((name, (None, _text(value).encode(), "text/plain")))
    return WireRequest(parts=parts)


class MalformedResponse(ValueError):
    """The upstream answered 200 with a body that is not the spec's shape."""


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
    if not isinstance(value, str) or "x" not in value:
        raise MalformedResponse(f"{field} is not a WxH string")
    try:
        return Size.parse(value)
    except ValueError:
        raise MalformedResponse(f"{field} is not a WxH string") from None


def parse_images(body: Any) -> list[UpstreamImage]:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list) or not body["data"]:
        raise MalformedResponse("response has no data[]")
    out: list[UpstreamImage] = []
    for i, item in enumerate(body["data"]):
        if not isinstance(item, dict):
            raise MalformedResponse(f"data[{i}] is not an object")
        safe = item.get("is_image_safe")
        url = item.get("url")
        seed = item.get("seed")
        if not isinstance(safe, bool) or not isinstance(seed, int) or (url is not None and not isinstance(url, str)):
            raise MalformedResponse(f"data[{i}] lacks is_image_safe, seed or a valid url")
        if safe and not url:
            raise MalformedResponse(f"data[{i}] is marked safe but has no url")
        upscaled = item.get("upscaled_resolution")
        out.append(
            UpstreamImage(
                url=url if safe else None,
                prompt=item.get("prompt") if isinstance(item.get("prompt"), str) else "",
                resolution=_size(item.get("resolution"), f"data[{i}].resolution"),
                upscaled_resolution=_size(upscaled, f"data[{i}].upscaled_resolution") if upscaled else None,
                is_image_safe=safe,
                seed=seed,
                style_type=item.get("style_type") if isinstance(item.get("style_type"), str) else None,
            )
        )
    return out


def parse_descriptions(body: Any) -> list[str]:
    if not isinstance(body, dict) or not isinstance(body.get("descriptions"), list) or not body["descriptions"]:
        raise MalformedResponse("response has no descriptions[]")
    texts = [d.get("text") for d in body["descriptions"] if isinstance(d, dict)]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise MalformedResponse("descriptions[] items need a text string")
    return texts  # type: ignore[return-value]


def tier_of(request: CanonicalRequest) -> str | None:
    """What a channel's ``models`` filter and the price table key on: the legacy model or
    the V3 rendering speed."""
    model = getattr(request, "model", None)
    if model is not None:
        return model.value
    speed = getattr(request, "rendering_speed", None)
    return speed.value if speed is not None else None
