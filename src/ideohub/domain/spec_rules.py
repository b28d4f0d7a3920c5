"""The rules of the 4.0 and /v2 requests that a JSON schema cannot say (or says unreadably).

The official request schema of each path is checked by the dialect (``api.dialects.spec``);
these run after it, on the validated fields, and each error names the field and the rule:

- 4.0 generate: exactly one of ``text_prompt`` or ``json_prompt``; ``FLASH`` is refused as
  Ideogram refuses it ("coming soon"); a prompt is never blank.
- A V4 JSON prompt's elements are read by their ``type`` (the schema's discriminator), so a bad
  ``bbox`` is reported as a bad bbox, not as "valid under none of the schemas".
- Remix: ``image_weight`` together with a ``resolution`` of another aspect ratio than the input
  image is refused (4.0 on /v1 and /v2).
- /v2: an image is sent as a file or as an asset identifier, never both, and one of them is
  required where the schema needs an image.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import InvalidRequest
from .operations import Family, ImageInput, Operation

_HEX6 = re.compile(r"^#[0-9a-fA-F]{6}$")
# (file field, asset identifier field) pairs of the /v2 bodies
IMAGE_PAIRS = (("image", "image_asset_identifier"), ("mask", "mask_asset_identifier"),
               ("images", "image_asset_identifiers"), ("style_reference_images", "style_reference_asset_identifiers"),
               ("character_reference_images", "character_reference_asset_identifiers"))
_PROMPTED_GENERATE = (Operation.V4_GENERATE, Operation.V45_GENERATE, Operation.V4_GENERATE_TRANSPARENT)


def check(op: Operation, params: dict[str, Any], files: dict[str, list[ImageInput]],
          declared: frozenset[str]) -> None:
    """``declared``: the top-level properties of the path's request schema."""
    for name in ("prompt", "text_prompt"):
        value = params.get(name)
        if isinstance(value, str) and not value.strip():
            raise InvalidRequest(name, "must not be empty")
    if op in _PROMPTED_GENERATE:
        has_text, has_json = "text_prompt" in params, "json_prompt" in params
        if has_text == has_json:
            raise InvalidRequest("text_prompt", "send exactly one of text_prompt or json_prompt")
    if "json_prompt" in params:
        check_json_prompt(params["json_prompt"], "json_prompt")
    if op.family is Family.V4 and params.get("rendering_speed") == "FLASH":
        raise InvalidRequest("rendering_speed", "FLASH is not available for Ideogram 4.0 yet; "
                                                "use TURBO, DEFAULT or QUALITY")
    for file_field, asset_field in IMAGE_PAIRS:
        if file_field in declared and asset_field in declared:
            sent_file, sent_asset = bool(files.get(file_field)), asset_field in params
            if sent_file and sent_asset:
                raise InvalidRequest(asset_field, f"cannot be used together with {file_field}")
            if not sent_file and not sent_asset and file_field == "image":
                raise InvalidRequest(file_field, f"is required: send the image as a file part or {asset_field}")
    image = (files.get("image") or [None])[0]
    if "image_weight" in params and "resolution" in params and image is not None:
        check_same_aspect(params["resolution"], image)


def check_same_aspect(resolution: str, image: ImageInput) -> None:
    width, _, height = resolution.partition("x")
    if not (width.isdigit() and height.isdigit()):
        return  # not a WxH value: the schema's enum has answered already
    if int(width) * image.height != int(height) * image.width:
        raise InvalidRequest("image_weight", f"cannot be used with a resolution ({resolution}) whose aspect ratio "
                                             f"differs from the input image's ({image.width}x{image.height})")


def check_json_prompt(value: Any, name: str) -> None:
    """The V4 JSON prompt's structure, with messages that name the element and the rule."""
    if not isinstance(value, dict):
        raise InvalidRequest(name, "must be a JSON object (a V4 JSON prompt)")
    if not isinstance(value.get("high_level_description"), str):
        raise InvalidRequest(f"{name}.high_level_description", "is required and must be a string")
    style = value.get("style_description")
    if style is not None:
        if not isinstance(style, dict):
            raise InvalidRequest(f"{name}.style_description", "must be an object")
        _palette(style.get("color_palette"), f"{name}.style_description.color_palette")
    comp = value.get("compositional_deconstruction")
    where = f"{name}.compositional_deconstruction"
    if not isinstance(comp, dict):
        raise InvalidRequest(where, "is required and must be an object")
    if not isinstance(comp.get("background"), str):
        raise InvalidRequest(f"{where}.background", "is required and must be a string")
    elements = comp.get("elements")
    if not isinstance(elements, list):
        raise InvalidRequest(f"{where}.elements", "is required and must be an array")
    for i, element in enumerate(elements):
        at = f"{where}.elements[{i}]"
        if not isinstance(element, dict):
            raise InvalidRequest(at, "must be an object")
        kind = element.get("type")
        if kind not in ("obj", "text"):
            raise InvalidRequest(f"{at}.type", "must be 'obj' or 'text'")
        if not isinstance(element.get("desc"), str):
            raise InvalidRequest(f"{at}.desc", "is required and must be a string")
        if kind == "text" and not isinstance(element.get("text"), str):
            raise InvalidRequest(f"{at}.text", "is required for a text element and must be a string")
        bbox = element.get("bbox")
        if bbox is not None and not (
                isinstance(bbox, list) and len(bbox) == 4
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1000 for v in bbox)):
            raise InvalidRequest(f"{at}.bbox", "must be four integers from 0 to 1000: [y_min, x_min, y_max, x_max]")
        _palette(element.get("color_palette"), f"{at}.color_palette")


def _palette(value: Any, name: str) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(c, str) and _HEX6.fullmatch(c) for c in value):
        raise InvalidRequest(name, "must be a list of #RRGGBB colours")
