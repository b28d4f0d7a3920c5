"""The spec's response bodies (reference §7), built from a service ``Outcome``: the legacy and
3.0 shapes (byte for byte as before), 4.0's, and the /v2 shapes, which follow each path's own
response schema in the vendored official document (which top-level fields it has — ``seed``,
``width``/``height``, ``created`` … — and which fields its image objects have). Images on /v2
carry an ``asset_id`` (our extension: the id a later request names as a RESPONSE asset)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from typing import Any

from .. import spec
from ..domain.operations import CanonicalRequest, Family, Operation
from ..domain.prices import Quote, billing_identifier
from ..service import Outcome
from ..spec.schemas import flatten

# generate-transparent responses carry no style_type (official example)
_NO_STYLE_TYPE = {Operation.V3_GENERATE_TRANSPARENT}


def created_now() -> str:
    """ISO-8601 with offset, as the API sends it: ``2024-12-15T17:32:00.965408+00:00``."""
    return datetime.now(UTC).isoformat()


def render(outcome: Outcome) -> dict[str, Any]:
    family = outcome.operation.family
    if family is Family.V2:
        return _render_v2(outcome)
    if outcome.document is not None:  # 4.0 magic prompt and describe: their documents as they are
        return outcome.document
    if family is Family.V4:
        return {"created": created_now(), "data": [
            {"url": item.url, "prompt": item.output.prompt, "resolution": str(item.output.resolution),
             "is_image_safe": bool(item.output.is_image_safe) and item.url is not None, "seed": item.output.seed}
            for item in outcome.images or []]}
    if outcome.descriptions is not None:
        return {"descriptions": [{"text": t} for t in outcome.descriptions]}
    data = []
    for item in outcome.images or []:
        out = item.output
        obj: dict[str, Any] = {
            "url": item.url,
            "prompt": out.prompt,
            "resolution": str(out.resolution),
            "is_image_safe": bool(out.is_image_safe) and item.url is not None,
            "seed": out.seed,
        }
        if out.upscaled_resolution is not None and out.upscaled_resolution != out.resolution:
            obj["upscaled_resolution"] = str(out.upscaled_resolution)
        if out.style_type is not None and outcome.operation not in _NO_STYLE_TYPE:
            obj["style_type"] = out.style_type
        data.append(obj)
    return {"created": created_now(), "data": data}


def render_json(outcome: Outcome) -> bytes:
    """The answer's bytes, exactly as ``JSONResponse`` renders them (compact, UTF-8): rendered by
    whichever process ran the generation, before the money moves, and stored with its record."""
    from starlette.responses import JSONResponse

    return JSONResponse(render(outcome)).body


# ---------------------------------------------------------------- /v2

GENERATION_KIND = "sampling"  # Ideogram's GenerationKind: one model run (not a multi-step "workflow")


@cache
def _shape(path: str) -> tuple[frozenset[str], frozenset[str]]:
    """(top-level fields, image object fields) of ``path``'s 200 response schema."""
    found = spec.newest_with(path)
    if found is None:
        return frozenset({"generation_id", "data"}), frozenset()
    _name, doc = found
    schema = doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    top = flatten(doc, schema)
    props = top.get("properties", {})
    items = flatten(doc, props["data"]["items"]).get("properties", {}) if "data" in props else {}
    return frozenset(props), frozenset(items)


def _size_of(outcome: Outcome) -> tuple[int, int] | None:
    if outcome.images:
        out = outcome.images[0].output
        size = out.upscaled_resolution or out.resolution
        return size.width, size.height
    return None


def _render_v2(outcome: Outcome) -> dict[str, Any]:
    top, item_fields = _shape(outcome.operation.official_path)
    body: dict[str, Any] = {}
    if "created" in top:
        body["created"] = created_now()
    if "generation_id" in top:
        body["generation_id"] = outcome.generation_id
    if "generation_kind" in top:
        body["generation_kind"] = GENERATION_KIND
    if "description_id" in top:
        body["description_id"] = outcome.generation_id
    request = outcome.request
    if "seed" in top:
        seed = request.seed if request is not None else None
        body["seed"] = seed if seed is not None else (outcome.images[0].output.seed if outcome.images else 0)
    size = _size_of(outcome)
    if size is not None and "width" in top:
        body["width"], body["height"] = size
    if outcome.document is not None:
        body.update({k: v for k, v in outcome.document.items() if k in top and k not in body})
    if outcome.images is not None:
        body["data"] = [_image_v2(item, item_fields) for item in outcome.images]
    return body


def _image_v2(item: Any, fields: frozenset[str]) -> dict[str, Any]:
    out = item.output
    size = out.upscaled_resolution or out.resolution
    safe = bool(out.is_image_safe) and item.url is not None
    candidates = {"asset_id": item.asset_id, "is_image_safe": safe, "prompt": out.prompt, "resolution": str(size),
                  "seed": out.seed, "url": item.url, "width": size.width, "height": size.height}
    # an image is reachable on every path, also where the path's schema lists no image fields
    # (replace-background answers {generation_id} alone): asset id, size, link and its safety
    obj = {k: v for k, v in candidates.items() if k in fields or k in ("asset_id", "resolution", "url", "is_image_safe")}
    if obj.get("asset_id") is None:
        obj.pop("asset_id", None)
    return obj


def acknowledgement(operation: Operation, generation_id: str, request: CanonicalRequest | None) -> dict[str, Any]:
    """The answer to an asynchronous submission: ``{"generation_id"}``, and on /v2 the fields
    the path's response schema has besides its results (``seed``, ``width``/``height``). The seed
    is the one fixed at admission; a path that takes no seed (/v2 remix ideogram-4) lets the
    upstream choose, so its acknowledgement says 0 and the images carry their own seeds."""
    body: dict[str, Any] = {"generation_id": generation_id}
    if operation.family is not Family.V2:
        return body
    top, _items = _shape(operation.official_path)
    if "generation_kind" in top:
        body["generation_kind"] = GENERATION_KIND
    if "seed" in top:
        body["seed"] = request.seed if request is not None and request.seed is not None else 0
    size = getattr(request, "output_size", None) if request is not None else None
    if "width" in top and size is not None:
        body["width"], body["height"] = size.width, size.height
    return body


def price_quote(quote: Quote) -> dict[str, Any]:
    """Ideogram's ``PriceQuote``: the charge when every image is delivered (unsafe images are not
    charged), in micro-dollars and in credits (1 credit = $0.02, so credit millis = micros / 20)."""
    micros = quote.total_micros
    return {"object": "price_quote", "billing_identifier": billing_identifier(quote.key), "quantity": quote.units,
            "usd_micros": micros,
            "credit_millis": int((Decimal(micros) / 20).quantize(Decimal(1), rounding=ROUND_HALF_UP)),
            "qualifier": "exact"}
