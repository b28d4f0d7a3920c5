"""What an accepted 4.0 or /v2 request produces: how many images, of which size, with or without
an alpha channel, and the prompt the answer reports — read from the request's official field
names, written here from the contract (§3–4 of the async/v2/v4 notes), not from ideohub's code.

Sizes: an explicit ``resolution``/``size`` (``WxH``) wins; then ``custom_width``/``custom_height``;
then an aspect ratio scaled to a tier (``resolution_tier``, ``output_resolution``, ``1k``/``2k``
``resolution``) or, without a tier, the 3.0 size table; then what the capability keeps (the input's
size for remix, inpaint, reframe, replace- and remove-background; input × factor for upscale);
else 1024x1024. 4.0 answers must report a ``ResolutionV4`` value, so a 4.0 remix without a resolution
takes the ``ResolutionV4`` value closest in aspect to the input (then in pixel count). The sim
draws real PNGs, so an output is scaled down to at most ``max_pixels`` (a sim limit, not the API's).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from ..domain.enums import AspectRatioV3
from ..domain.operations import Family, Operation
from ..domain.sizes import Size, size_for_aspect
from .intake import SimFile
from .schema import SimEndpoint, flatten

DEFAULT_SIZE = Size(1024, 1024)
_WXH = re.compile(r"^(\d{2,5})x(\d{2,5})$")
_RATIO = re.compile(r"^(\d{1,3})[x:](\d{1,3})$")
_TIERS = {"1k": 1024, "2k": 2048, "4k": 4096, "8k": 8192}
_INPUT_SHAPED = {"inpaint", "reframe", "replace-background", "remove-background", "remix"}
_V4_GENERATE = {"v4-generate", "v45-generate", "v4-generate-transparent"}


@dataclass(frozen=True)
class Output:
    size: Size
    count: int
    alpha: bool


def _wxh(value: Any) -> Size | None:
    m = _WXH.match(value) if isinstance(value, str) else None
    return Size(int(m.group(1)), int(m.group(2))) if m else None


def _ratio(value: Any) -> tuple[int, int] | None:
    m = _RATIO.match(value) if isinstance(value, str) else None
    if not m or not int(m.group(1)) or not int(m.group(2)):
        return None
    return int(m.group(1)), int(m.group(2))


def _tier(values: dict[str, Any]) -> int | None:
    for name in ("resolution_tier", "output_resolution", "resolution"):
        value = values.get(name)
        if isinstance(value, str) and value.lower() in _TIERS:
            return _TIERS[value.lower()]
    return None


def _round16(x: float) -> int:
    return max(16, int(round(x / 16)) * 16)


def _scaled(ratio: tuple[int, int], long_edge: int | None) -> Size:
    w, h = ratio
    if long_edge is None:  # about a megapixel: the 3.0 table where it has the ratio
        key = f"{w}x{h}"
        if key in {a.value for a in AspectRatioV3}:
            return size_for_aspect(AspectRatioV3(key))
        area = 1024 * 1024
        return Size(_round16(math.sqrt(area * w / h)), _round16(math.sqrt(area * h / w)))
    if w >= h:
        return Size(long_edge, _round16(long_edge * h / w))
    return Size(_round16(long_edge * w / h), long_edge)


def requested_size(values: dict[str, Any]) -> Size | None:
    """The size the request asks for, if it asks for one."""
    for name in ("resolution", "size"):
        size = _wxh(values.get(name))
        if size is not None:
            return size
    w, h = values.get("custom_width"), values.get("custom_height")
    if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
        return Size(w, h)
    ratio, tier = _ratio(values.get("aspect_ratio")), _tier(values)
    if ratio is None and tier is None:
        return None
    return _scaled(ratio or (1, 1), tier)


def closest(candidates: list[Size], target: Size) -> Size:
    """The candidate closest in aspect ratio to ``target``, then in pixel count."""
    def distance(c: Size) -> tuple[float, float]:
        return (abs(math.log((c.width / c.height) / (target.width / target.height))),
                abs(math.log(c.pixels / target.pixels)))

    return min(candidates, key=distance)


def resolutions_v4(endpoint: SimEndpoint) -> list[Size]:
    """The ``ResolutionV4`` values of the endpoint's document."""
    node = flatten(endpoint.doc, {"$ref": "#/components/schemas/ResolutionV4"})
    return [s for s in (_wxh(v) for v in node.get("enum", [])) if s is not None]


def _input(files: dict[str, list[SimFile]]) -> Size | None:
    for name in ("image", "image_file"):
        if files.get(name):
            f = files[name][0]
            return Size(f.width, f.height)
    return None


def _factor(value: Any, default: int) -> int:
    """``x2``/``X4``/``8`` → 2/4/8."""
    text = str(value).lower().lstrip("x") if value is not None else ""
    return int(text) if text.isdigit() and int(text) > 0 else default


def _upscaled(endpoint: SimEndpoint, values: dict[str, Any], source: Size) -> Size:
    """``upscale_factor`` (x2 when omitted), or a ``resolution_tier`` for the long edge (2K when omitted)."""
    tier = _tier(values)
    if tier is None and endpoint.declares("resolution_tier") and not endpoint.declares("upscale_factor"):
        tier = _TIERS["2k"]
    if tier is None:
        factor = _factor(values.get("upscale_factor"), 2)
        return Size(source.width * factor, source.height * factor)
    scale = tier / max(source.width, source.height)
    return Size(max(1, round(source.width * scale)), max(1, round(source.height * scale)))


def _fit(size: Size, max_pixels: int) -> Size:
    if size.pixels <= max_pixels:
        return size
    scale = math.sqrt(max_pixels / size.pixels)
    return Size(max(1, int(size.width * scale)), max(1, int(size.height * scale)))


def _v4_size(endpoint: SimEndpoint, values: dict[str, Any], source: Size | None) -> Size:
    """A ``ResolutionV4`` value: the requested one; for a remix the closest to the input; for a
    transparent generation the closest to its aspect ratio and tier; else 1024x1024."""
    asked = _wxh(values.get("resolution"))
    if asked is not None:
        return asked
    table = resolutions_v4(endpoint) or [DEFAULT_SIZE]
    if source is not None:
        return closest(table, source)
    if "aspect_ratio" in values or "output_resolution" in values:
        return closest(table, _scaled(_ratio(values.get("aspect_ratio")) or (1, 1), _tier(values) or 1024))
    return DEFAULT_SIZE


def _input_shaped(endpoint: SimEndpoint, source: Size | None) -> Size | None:
    """What a capability that keeps the input's shape makes of it (None: it does not, or no input)."""
    capability, model = endpoint.operation.v2_parts
    if source is None or capability not in _INPUT_SHAPED:
        return None
    if (capability, model) == ("remix", "ideogram-4"):  # answers in ResolutionV4 terms
        return closest(resolutions_v4(endpoint) or [DEFAULT_SIZE], source)
    return source


def _v2_size(endpoint: SimEndpoint, values: dict[str, Any], source: Size | None) -> Size:
    capability = endpoint.operation.v2_parts[0]
    if capability == "upscale":
        return _upscaled(endpoint, values, source or DEFAULT_SIZE)
    size = requested_size(values) or _input_shaped(endpoint, source) or DEFAULT_SIZE
    if capability == "generate":  # 3.0 transparent: upscale_factor x1, x2, x4
        factor = _factor(values.get("upscale_factor"), 1)
        size = Size(size.width * factor, size.height * factor)
    return size


def plan(endpoint: SimEndpoint, values: dict[str, Any], files: dict[str, list[SimFile]],
         max_pixels: int) -> Output:
    """Size, count and alpha of the images a 4.0 or /v2 request produces."""
    op = endpoint.operation
    source = _input(files)
    if op.family is Family.V4:
        return Output(_v4_size(endpoint, values, source), 1, op is Operation.V4_GENERATE_TRANSPARENT)
    size = _fit(_v2_size(endpoint, values, source), max_pixels)
    capability, model = op.v2_parts
    alpha = (capability == "remove-background" or model.endswith("-transparent")
             or values.get("background") == "transparent")
    count = values.get("num_images") if isinstance(values.get("num_images"), int) else 1
    return Output(size, count, alpha)


# ---------------------------------------------------------------- prompts


def prompt_text(values: dict[str, Any]) -> str:
    """The request's prompt as text: ``prompt``/``text_prompt``, or a ``json_prompt`` as compact JSON."""
    for name in ("prompt", "text_prompt"):
        if isinstance(values.get(name), str):
            return values[name]
    if isinstance(values.get("json_prompt"), dict):
        return json.dumps(values["json_prompt"], separators=(",", ":"), ensure_ascii=False)
    return ""


def magic_applies(endpoint: SimEndpoint, values: dict[str, Any], when_omitted: bool) -> bool:
    """4.0 generate rewrites every ``text_prompt``; /v2 endpoints with ``magic_prompt`` rewrite on
    ``on``/``auto`` (an omitted one counts as ``auto`` when ``when_omitted``)."""
    if endpoint.operation.value in _V4_GENERATE:
        return isinstance(values.get("text_prompt"), str)
    if not endpoint.declares("magic_prompt"):
        return False
    value = values.get("magic_prompt")
    if value is None:
        return when_omitted
    return str(value).lower() in ("on", "auto")
