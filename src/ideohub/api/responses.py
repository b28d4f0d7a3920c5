"""The spec's response bodies (reference §7), built from a service ``Outcome``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..domain.operations import Operation
from ..service import Outcome

# generate-transparent responses carry no style_type (official example)
_NO_STYLE_TYPE = {Operation.V3_GENERATE_TRANSPARENT}


def created_now() -> str:
    """ISO-8601 with offset, as the API sends it: ``2024-12-15T17:32:00.965408+00:00``."""
    return datetime.now(UTC).isoformat()


def render(outcome: Outcome) -> dict[str, Any]:
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
