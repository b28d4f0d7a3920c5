"""What the sim checks beyond reading the body: the official schema (jsonschema), undeclared
fields (strict mode), the uploaded images (Pillow), the cross-field rules the schema cannot
express — written here from the API reference's validation checklist (§10) and, for 4.0 and
/v2, from the contract notes (§3–4: one of text_prompt/json_prompt, no FLASH yet, image_weight
keeps the input's aspect, an upload xor its asset identifier), not taken from ideohub's domain —
and the sizes of the images an accepted legacy or 3.0 request produces (``outputs`` has 4.0/v2).

The sim holds no assets, so every ``*_asset_identifier(s)`` is the official 404: ideohub must
turn its own stored results into uploads before relaying, and a leaked identifier shows here.
"""

from __future__ import annotations

import io
import math
import re
from collections import deque
from typing import Any

import jsonschema
from PIL import Image

from ..domain.enums import AspectRatio, AspectRatioV3, Model
from ..domain.operations import Family, Operation
from ..domain.sizes import LEGACY_RESOLUTIONS, V3_RESOLUTIONS, Size, size_for_aspect
from .intake import SimFile, SimInputError
from .schema import BodySchema, flatten

IMAGE_REQUEST_OPS = frozenset({Operation.GENERATE, Operation.REMIX, Operation.UPSCALE})
REFERENCE_SET_MAX_BYTES = 10 * 1024 * 1024  # "maximum total size 10MB across all style references"
_V1 = {"V_1", "V_1_TURBO"}
_NEGATIVE_PROMPT_MODELS = {"V_1", "V_1_TURBO", "V_2", "V_2_TURBO"}
_NO_PALETTE_MODELS = {"V_1", "V_1_TURBO", "V_2A", "V_2A_TURBO"}
_EDIT_MODELS = {"V_2", "V_2_TURBO"}
_CUSTOM_MODEL_URI = re.compile(r"model/[^/\s]+/version/[^/\s]+")
_UPSCALE_FACTORS = {"X1": 1, "X2": 2, "X4": 4}
_IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_V4_PROMPTED = {Operation.V4_GENERATE, Operation.V45_GENERATE, Operation.V4_GENERATE_TRANSPARENT}
_ASPECT_TOLERANCE = 0.02  # |log(ratio a / ratio b)|: 1024x1024 and 1000x1000 are one aspect, 4:3 and 3:2 are not


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _path(parts: deque[Any]) -> str:
    out = ""
    for p in parts:
        out = _join(out, p)
    return out


# ---------------------------------------------------------------- the schema


def check_undeclared(body: BodySchema, instance: dict[str, Any]) -> None:
    """Strict mode: a property the official schema does not declare is refused (the real API
    may ignore it; a strict sim catches a misspelt or misplaced field in our requests)."""
    stack: list[tuple[dict[str, Any], Any, str, str]] = [
        ({"$ref": f"#/components/schemas/{body.name}"}, instance, "", body.name)]
    while stack:
        node, value, path, title = stack.pop()
        node = flatten(body.schema, node)
        if not isinstance(value, dict) or "properties" not in node or "oneOf" in node or "anyOf" in node:
            continue
        for key, item in value.items():
            sub = node["properties"].get(key)
            if sub is None:
                raise SimInputError(_join(path, key), f"is not a field of {title}")
            resolved = flatten(body.schema, sub)
            stack.append((sub, item, _join(path, key), resolved.get("title", _join(path, key))))


def validate(body: BodySchema, instance: dict[str, Any]) -> None:
    """The official schema's verdict; the detail names the deepest failing field and the rule."""
    error = jsonschema.exceptions.best_match(body.validator.iter_errors(instance))
    if error is None:
        return
    path = _path(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [p for p in error.validator_value if p not in error.instance]
        if missing:
            raise SimInputError(_join(path, missing[0]), "is required")
    raise SimInputError(path or "body", error.message)


# ---------------------------------------------------------------- images


def check_images(files: list[SimFile], max_bytes: int, max_pixels: int) -> None:
    """Each upload is a JPEG, PNG or WebP (the spec's list) within the size limits; its pixel
    size is read from the header (Pillow decodes nothing more)."""
    for f in files:
        if len(f.data) > max_bytes:
            raise SimInputError(f.field_name, f"is larger than {max_bytes} bytes")
        try:
            with Image.open(io.BytesIO(f.data)) as im:
                fmt, (w, h) = im.format, im.size
        except Exception:  # noqa: BLE001 - any failure to read the header is the caller's 400
            raise SimInputError(f.field_name, "is not a readable JPEG, PNG or WebP image") from None
        if fmt not in _IMAGE_TYPES:
            raise SimInputError(f.field_name, f"is {fmt}; only JPEG, WebP and PNG are supported")
        if w * h > max_pixels:
            raise SimInputError(f.field_name, f"has {w}x{h} pixels, more than {max_pixels}")
        f.media_type, f.width, f.height = _IMAGE_TYPES[fmt], w, h


# ---------------------------------------------------------------- §10: rules across fields


def request_fields(op: Operation, values: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The object holding the generation fields (legacy ``image_request`` or the body) and its prefix."""
    if op in IMAGE_REQUEST_OPS:
        inner = values.get("image_request")
        return (inner if isinstance(inner, dict) else {}), "image_request."
    return values, ""


def check_rules(op: Operation, values: dict[str, Any], files: dict[str, list[SimFile]],
                declared: frozenset[str] = frozenset()) -> None:
    """The rules across fields of ``op``'s family; ``declared``: the body's top-level field names."""
    f, pre = request_fields(op, values)
    family = op.family
    if family is Family.LEGACY:
        _legacy_rules(op, f, pre)
    elif family is Family.V3:
        _v3_rules(f, files)
    elif family is Family.V4:
        _v4_rules(op, f, files)
    else:
        _v2_rules(op, f, files, declared)
    image = files.get("image") or files.get("image_file")
    if image and files.get("mask"):  # §10.5: /edit, 3.0 edit and inpaint, /v2 inpaint
        _same_size(image[0], files["mask"][0])


def _same_size(image: SimFile, mask: SimFile) -> None:
    if (mask.width, mask.height) != (image.width, image.height):
        raise SimInputError("mask", f"must be the same size as the image ({image.width}x{image.height}), "
                                    f"not {mask.width}x{mask.height}")


def _legacy_rules(op: Operation, f: dict[str, Any], pre: str) -> None:
    if "aspect_ratio" in f and "resolution" in f:  # §10.1
        raise SimInputError(pre + "aspect_ratio", "cannot be used together with resolution")
    if op in (Operation.UPSCALE, Operation.DESCRIBE):
        return
    model = f.get("model") or "V_2"  # §10.8: the default model
    if op is Operation.EDIT and model not in _EDIT_MODELS:  # §10.2
        raise SimInputError(pre + "model", f"/edit supports only V_2 and V_2_TURBO, not {model}")
    if "style_type" in f and model in _V1:
        raise SimInputError(pre + "style_type", f"is not supported by model {model}")
    if "negative_prompt" in f and model not in _NEGATIVE_PROMPT_MODELS:
        raise SimInputError(pre + "negative_prompt", f"is only available for V_1, V_1_TURBO, V_2 and V_2_TURBO, not {model}")
    if "color_palette" in f and model in _NO_PALETTE_MODELS:
        raise SimInputError(pre + "color_palette", f"is not supported by model {model}")


def _v3_rules(f: dict[str, Any], files: dict[str, list[SimFile]]) -> None:
    if "aspect_ratio" in f and "resolution" in f:  # §10.3
        raise SimInputError("aspect_ratio", "cannot be used together with resolution")
    style_refs = files.get("style_reference_images", [])
    if f.get("style_codes"):
        if style_refs:
            raise SimInputError("style_codes", "cannot be used together with style_reference_images")
        if "style_type" in f:
            raise SimInputError("style_codes", "cannot be used together with style_type")
    if "style_preset" in f and (f.get("style_codes") or style_refs):  # the reference's reading (v2 docs)
        raise SimInputError("style_preset", "cannot be used together with style codes or style reference images")
    chars = files.get("character_reference_images", [])
    if len(chars) > 1:
        raise SimInputError("character_reference_images", f"supports 1 image at most, got {len(chars)}")
    masks = files.get("character_reference_images_mask", [])
    if masks and len(masks) != len(chars):
        raise SimInputError("character_reference_images_mask",
                            f"must match the number of character_reference_images ({len(chars)}), got {len(masks)}")
    for name in ("style_reference_images", "character_reference_images"):
        total = sum(len(x.data) for x in files.get(name, []))
        if total > REFERENCE_SET_MAX_BYTES:
            raise SimInputError(name, f"total {total} bytes, more than the {REFERENCE_SET_MAX_BYTES} allowed")
    uri = f.get("custom_model_uri")
    if isinstance(uri, str) and not _CUSTOM_MODEL_URI.fullmatch(uri):
        raise SimInputError("custom_model_uri", "must have the form model/<model_name>/version/<version_name>")


# ---------------------------------------------------------------- 4.0 and /v2: the contract's §3–4


def _v4_rules(op: Operation, f: dict[str, Any], files: dict[str, list[SimFile]]) -> None:
    if op in _V4_PROMPTED:  # §3.1: "Supply exactly one of text_prompt or json_prompt"
        text, structured = _given(f.get("text_prompt")), f.get("json_prompt") is not None
        if text and structured:
            raise SimInputError("text_prompt", "cannot be used together with json_prompt (send exactly one)")
        if not text and not structured:
            raise SimInputError("text_prompt", "one of text_prompt or json_prompt is required")
    if f.get("rendering_speed") == "FLASH":  # §3.1: "coming soon; currently return a 400"
        raise SimInputError("rendering_speed", "FLASH is not available for Ideogram 4.0 yet")
    uri = f.get("custom_model_uri")
    if isinstance(uri, str) and not _CUSTOM_MODEL_URI.fullmatch(uri):
        raise SimInputError("custom_model_uri", "must have the form model/<model_name>/version/<version_name>")
    if op is Operation.V4_REMIX:
        _weight_keeps_aspect(f, files)


def _given(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _weight_keeps_aspect(f: dict[str, Any], files: dict[str, list[SimFile]]) -> None:
    """§3.3/§4.3: ``image_weight`` with a ``resolution`` of another aspect ratio than the input is a 400."""
    resolution, image = f.get("resolution"), files.get("image")
    if f.get("image_weight") is None or not isinstance(resolution, str) or not image:
        return
    w, _, h = resolution.partition("x")
    if not (w.isdigit() and h.isdigit()) or not int(w) or not int(h):
        return
    source = image[0]
    if abs(math.log((int(w) / int(h)) / (source.width / source.height))) > _ASPECT_TOLERANCE:
        raise SimInputError("image_weight", f"cannot be used with a resolution ({resolution}) whose aspect ratio "
                                            f"differs from the image's ({source.width}x{source.height})")


def asset_pairs(declared: frozenset[str]) -> list[tuple[str, str, bool]]:
    """(upload field, asset-identifier field, one required) for each upload the body also takes
    by asset identifier: ``image``/``image_asset_identifier`` (exactly one), ``images``/
    ``image_asset_identifiers`` and ``style_reference_images``/``style_reference_asset_identifiers``
    (at most one)."""
    out = []
    for name in sorted(declared):
        if name.endswith("_asset_identifier"):
            upload, one = name.removesuffix("_asset_identifier"), True
        elif name.endswith("_asset_identifiers"):
            stem = name.removesuffix("_asset_identifiers")
            upload, one = ("images" if stem == "image" else stem + "_images"), False
        else:
            continue
        if upload in declared:
            out.append((upload, name, one))
    return out


def _v2_rules(op: Operation, f: dict[str, Any], files: dict[str, list[SimFile]], declared: frozenset[str]) -> None:
    for upload, by_id, one in asset_pairs(declared):  # §4.3–4.6: an upload xor its asset identifier
        sent = [n for n in (upload, by_id) if f.get(n) not in (None, [])]
        if len(sent) == 2:
            raise SimInputError(upload, f"cannot be used together with {by_id} (send one)")
        if one and not sent:
            raise SimInputError(upload, f"one of {upload} or {by_id} is required")
    if op.v2_parts == ("remix", "ideogram-4"):
        _weight_keeps_aspect(f, files)
    for name in sorted(f):  # the sim holds no assets: any reference to one is the official 404
        if name.endswith(("_asset_identifier", "_asset_identifiers")) and f[name] not in (None, []):
            raise SimInputError(name, "asset not found (the simulated upstream holds no assets: "
                                      "send the image itself)", 404)


# ---------------------------------------------------------------- what an accepted request produces


def _aspect_size(value: str, legacy: bool, model: str | None) -> Size:
    aspect: AspectRatio | AspectRatioV3 = AspectRatio(value) if legacy else AspectRatioV3(value)
    return size_for_aspect(aspect, Model(model) if model in Model.__members__ else None)


def output_sizes(op: Operation, values: dict[str, Any], files: dict[str, list[SimFile]]) -> tuple[Size, Size | None]:
    """(``resolution``, ``upscaled_resolution``) of the images an accepted request produces."""
    f, _ = request_fields(op, values)
    if op in (Operation.EDIT, Operation.UPSCALE):
        image = files["image_file"][0]
        size = Size(image.width, image.height)
        return size, (Size(size.width * 2, size.height * 2) if op is Operation.UPSCALE else None)
    if op in (Operation.V3_EDIT, Operation.V3_INPAINT, Operation.V3_REPLACE_BACKGROUND):
        image = files["image"][0]
        return Size(image.width, image.height), None
    if op is Operation.V3_GENERATE_TRANSPARENT:
        size = _aspect_size(f.get("aspect_ratio") or "1x1", False, None)
        factor = _UPSCALE_FACTORS[f.get("upscale_factor") or "X1"]
        return size, (Size(size.width * factor, size.height * factor) if factor > 1 else None)
    if f.get("resolution"):
        return (LEGACY_RESOLUTIONS if not op.is_v3 else V3_RESOLUTIONS)[f["resolution"]], None
    if op.is_v3:
        return _aspect_size(f.get("aspect_ratio") or "1x1", False, None), None
    return _aspect_size(f.get("aspect_ratio") or "ASPECT_1_1", True, f.get("model")), None
