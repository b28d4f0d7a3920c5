"""Answers of the 4.0 and /v2 endpoints, built in each endpoint's official 200 schema.

The /v2 family alone has dozens of response components that differ in small ways (``width`` and
``height`` on inpaint and reframe, ``generation_kind`` on 4.5, nothing but ``generation_id`` on
async-only tools). Rather than a hand-written shape per path, an answer is *filled* from the
schema: every declared property the sim knows a value for (``generation_id``, ``seed``,
``data``, ``created``…) is set, every other required one gets a plain value of its type, and
nothing undeclared is added. So the answer follows the document even where we did not foresee a
field, and ideohub's relay is tested against what the official service would send.

Also here: the answers that are not images — 4.0 magic prompt and describe (the sim's structured
``V4JsonPrompt``), /v2 describe, and /v2 ``?dry_run=true`` price quotes.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from .schema import SimEndpoint, flatten, resolve

# The two flat blocks every sim picture has (images.py draws them), in V4 bbox terms:
# [y_min, x_min, y_max, x_max] on a 1000×1000 canvas.
_BLOCKS = ([125, 125, 500, 500], [500, 500, 875, 875])
_PALETTE = ["#C81E5A", "#1EA0DC", "#F0C828"]
_BACKGROUND = "a soft gradient from red on the right to blue at the bottom"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def new_id() -> str:
    """22 URL-safe base64 characters, like Ideogram's generation and description ids."""
    return secrets.token_urlsafe(16)


# ---------------------------------------------------------------- filling a schema


def fill(root: dict[str, Any], node: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
    """An object of schema ``node``: each declared property from ``known``, each other required
    property a plain value of its type. A known None (an unsafe image's ``url``) is sent as null
    where the property is nullable and the schema does not drop nulls (``x-drop-nulls``), else left out."""
    node = flatten(root, node)
    required = set(node.get("required", []))
    keep_nulls = not node.get("x-drop-nulls")
    out: dict[str, Any] = {}
    for name, sub in node.get("properties", {}).items():
        if known.get(name) is not None:
            out[name] = known[name]
        elif name in known and keep_nulls and flatten(root, sub).get("nullable") is True:
            out[name] = None
        elif name in required:
            out[name] = sample(root, sub)
    return out


def sample(root: dict[str, Any], node: dict[str, Any]) -> Any:
    """A value the schema accepts: the first enum value, the minimum, a date, a URL, …"""
    node = flatten(root, node)
    for key in ("oneOf", "anyOf"):
        if key in node:
            return sample(root, node[key][0])
    if node.get("enum"):
        return next(v for v in node["enum"] if v is not None)
    kind = node.get("type")
    if kind == "string":
        fmt = node.get("format")
        if fmt == "date-time":
            return now_iso()
        if fmt == "uri":
            return "https://sim.invalid/"
        return "s" * max(1, node.get("minLength", 3))
    if kind in ("integer", "number"):
        return max(0, node.get("minimum", 0))
    if kind == "boolean":
        return False
    if kind == "array":
        return [sample(root, node.get("items", {})) for _ in range(node.get("minItems", 0))]
    return fill(root, node, {})


def data_item_node(root: dict[str, Any], node: dict[str, Any], object_type: str) -> dict[str, Any] | None:
    """The schema of one ``data`` entry of ``node``; where entries are discriminated (the poll's
    ``GenerationResponse``), the one mapped to ``object_type``. None if there is no ``data``."""
    prop = flatten(root, node).get("properties", {}).get("data")
    if prop is None:
        return None
    items = resolve(root, flatten(root, prop).get("items", {}))
    mapping = items.get("discriminator", {}).get("mapping", {})
    if object_type in mapping:
        return resolve(root, {"$ref": mapping[object_type]})
    if "oneOf" in items:
        return resolve(root, items["oneOf"][0])
    return items


def fill_items(root: dict[str, Any], node: dict[str, Any], items: list[dict[str, Any]],
               object_type: str = "image.generation") -> list[dict[str, Any]]:
    """``items`` (everything the sim knows of each image) in the schema of ``node``'s ``data``."""
    item_node = data_item_node(root, node, object_type)
    if item_node is None:
        return []
    return [fill(root, item_node, {**item, "object_type": object_type}) for item in items]


def poll_object_type(root: dict[str, Any], node: dict[str, Any]) -> str:
    """How a poll labels the images of an answer of schema ``node``: images without prompt and
    seed (remove-background) or generated images (the rest, and async-only answers with no ``data``)."""
    item = data_item_node(root, node, "image.generation")
    if item is not None and "prompt" not in flatten(root, item).get("properties", {}):
        return "image.without-prompt-or-seed"
    return "image.generation"


# ---------------------------------------------------------------- 4.0 structured prompts


def v4_json_prompt(text: str, *, bbox: bool, style: bool, tags: bool) -> dict[str, Any]:
    """A valid ``V4JsonPrompt`` for ``text``: the picture the sim draws (two blocks over a
    gradient), with bounding boxes, style descriptions and tags only where asked for."""
    elements: list[dict[str, Any]] = [
        {"type": "obj", "desc": text},
        {"type": "text", "text": "SIM", "desc": "a small white caption"},
    ]
    for element, box, colour in zip(elements, _BLOCKS, _PALETTE):
        if bbox:
            element["bbox"] = list(box)
        element["color_palette"] = [colour]
    out: dict[str, Any] = {
        "high_level_description": text,
        "compositional_deconstruction": {"background": _BACKGROUND, "elements": elements},
    }
    if style:
        out["style_description"] = {
            "aesthetics": "clean and flat", "art_style": "geometric abstraction", "lighting": "even, shadowless",
            "medium": "digital illustration", "photo": "none", "color_palette": list(_PALETTE),
        }
    if tags:
        out["tags"] = ["simulated", "gradient", "geometric"]
    return out


# ---------------------------------------------------------------- answers without images


def magic_prompt(endpoint: SimEndpoint, values: dict[str, Any], suffix: str) -> dict[str, Any]:
    """4.0 magic prompt: the text (with the sim's magic suffix) as a ``V4JsonPrompt``; AUTO → 1x1."""
    aspect = values.get("aspect_ratio") or "AUTO"
    known = {"json_prompt": v4_json_prompt(values["text_prompt"] + suffix, bbox=True, style=True, tags=False),
             "aspect_ratio": "1x1" if aspect == "AUTO" else aspect}
    return fill(endpoint.doc, endpoint.response_node(), known)


def describe(endpoint: SimEndpoint, values: dict[str, Any], caption: str) -> dict[str, Any]:
    """4.0 describe (a ``V4JsonPrompt`` of the caption with bounding boxes unless ``include_bbox``
    is false, style descriptions and tags only when asked) or /v2 describe of either model."""
    json_prompt = v4_json_prompt(caption, bbox=values.get("include_bbox", True) is not False,
                                 style=values.get("include_style_descriptions") is True,
                                 tags=values.get("include_tags") is True)
    known = {"created": now_iso(), "description_id": new_id(), "descriptions": [{"text": caption}],
             "json_prompt": json_prompt}
    return fill(endpoint.doc, endpoint.response_node(), known)


def quote(endpoint: SimEndpoint, values: dict[str, Any], usd_micros_per_image: int) -> dict[str, Any]:
    """A ``PriceQuote`` at the sim's flat price per image (the sim knows no real prices)."""
    capability, model = endpoint.operation.v2_parts
    count = values["num_images"] if isinstance(values.get("num_images"), int) else 1
    usd_micros = count * usd_micros_per_image
    known = {"object": "price_quote", "billing_identifier": f"{model}_{capability}".replace("-", "_"),
             "quantity": count, "usd_micros": usd_micros, "credit_millis": usd_micros // 20, "qualifier": "exact"}
    return fill(endpoint.doc, {"$ref": "#/components/schemas/PriceQuote"}, known)
