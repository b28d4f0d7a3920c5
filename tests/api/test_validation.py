"""Validation and errors: every rule of reference §10 (and §3, §5, §6), one table row each.

The server has no engines, so a valid request answers 503 naming the operation (validation
runs first) and an invalid one its 4xx. Every 4xx is RFC 7807 problem JSON whose ``detail``
is ``"<field>: <rule>"``: legacy fields inside ``image_request`` are named
``image_request.<field>``, file parts and flat fields by their own name.

Row: ``bad(id, body, field, rule fragment[, status])`` or ``ok(id, body)``.
"""

from __future__ import annotations

import io
import json
import random
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import Running, encode, mask_bytes, png_bytes
from PIL import Image

from ideohub.domain.operations import Operation

from .test_endpoints import (
    ALL_PATHS,
    BANNED,
    DROP,
    MINIMAL,
    PNG,
    Body,
    File,
    assert_engine_unavailable,
    assert_problem,
    json_body,
    multipart,
    raw,
    req,
    serve,
)

from ideohub.domain.operations import Family as _Family, Operation as _Operation

# the legacy and 3.0 families; 4.0 and /v2 are tested in tests/families
OLD_FAMILIES = [o for o in _Operation if o.family in (_Family.LEGACY, _Family.V3)]

Op = Operation


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One server for the module, no engines: a valid request answers 503 engine-unavailable."""
    with serve(tmp_path_factory.mktemp("validation"), banned_prompt_terms=[BANNED]) as running:
        yield running


def bad(id: str, body: Body, field: str, rule: str, status: int = 400) -> Any:
    return pytest.param(body, status, field, rule, id=id)


def ok(id: str, body: Body) -> Any:
    return pytest.param(body, 503, None, None, id=id)


def check(srv: Running, body: Body, status: int, field: str | None, rule: str | None) -> None:
    resp = body.send(srv)
    if status == 503:
        assert_engine_unavailable(resp, body.op)
    else:
        assert_problem(resp, status, field, rule)


# ---------------------------------------------------------------- images used by the rows


def image(arr: np.ndarray, fmt: str = "PNG", **save: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **save)
    return buf.getvalue()


def flat_mask(value: int, w: int = 64, h: int = 48) -> bytes:
    return encode(np.full((h, w), value, np.uint8))


RGB = np.asarray(Image.open(io.BytesIO(PNG)).convert("RGB"))
JPEG = image(RGB, "JPEG")
WEBP = image(RGB, "WEBP")
GIF = image(RGB, "GIF")
BMP = image(RGB, "BMP")
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
TEXT = b"this is a text file, not an image\n"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48"/>'
CORRUPT_PNG = b"\x89PNG\r\n\x1a\n" + bytes(random.Random(1).getrandbits(8) for _ in range(512))
TRUNCATED_PNG = PNG[:20]
GREY_MASK = flat_mask(128)
WHITE_MASK = flat_mask(255)
BLACK_MASK = flat_mask(0)
RGB_MASK = encode(np.repeat(np.asarray(Image.open(io.BytesIO(mask_bytes(64, 48))))[..., None], 3, axis=2))
JPEG_MASK = mask_bytes(64, 48, "JPEG")
SMALL_MASK = mask_bytes(32, 32)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 20000) -> bytes:
    """A valid 1-bit PNG of side x side pixels: about 48 KB on the wire, 400 MB decoded."""
    z = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims ``width`` x ``height``."""
    data = bytearray(JPEG)
    i = 2
    while data[i] == 0xFF and data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


BOMB = png_bomb()


def members(n: int, **member: Any) -> dict:
    return {"members": [{"color_hex": "#A1B2C3", "color_weight": 0.5, **member} for _ in range(n)]}


# ---------------------------------------------------------------- legacy /generate (JSON image_request)

G = lambda **kw: req(Op.GENERATE, **kw)
IR = "image_request."

LEGACY_GENERATE = [
    ok("minimal", G()),
    # enums are exact (§3, §10.7)
    ok("aspect ASPECT_16_10", G(aspect_ratio="ASPECT_16_10")),
    ok("aspect ASPECT_1_3", G(aspect_ratio="ASPECT_1_3")),
    bad("aspect lower-case", G(aspect_ratio="aspect_1_1"), IR + "aspect_ratio", "is not one of"),
    bad("aspect V3 spelling", G(aspect_ratio="16x9"), IR + "aspect_ratio", "is not one of"),
    bad("aspect SPECT typo", G(aspect_ratio="SPECT_16_10"), IR + "aspect_ratio", "is not one of"),
    bad("aspect not a string", G(aspect_ratio=11), IR + "aspect_ratio", "must be a string"),
    ok("model V_3", G(model="V_3")),
    ok("model AUTO", G(model="AUTO")),
    bad("model lower-case", G(model="v_2"), IR + "model", "is not one of"),
    bad("model unknown", G(model="V_4"), IR + "model", "is not one of"),
    bad("style_type lower-case", G(style_type="realistic"), IR + "style_type", "is not one of"),
    bad("style_type V3-only value", G(style_type="STYLISH"), IR + "style_type", "is not one of"),
    ok("style_type RENDER_3D", G(style_type="RENDER_3D")),
    bad("magic_prompt_option", G(magic_prompt_option="on"), IR + "magic_prompt_option", "is not one of"),
    ok("magic_prompt_version V_0_8", G(magic_prompt_version="V_0_8")),
    bad("magic_prompt_version", G(magic_prompt_version="V_1"), IR + "magic_prompt_version", "is not one of"),
    # ranges (§10.1)
    bad("num_images 0", G(num_images=0), IR + "num_images", "from 1 to 8"),
    bad("num_images 9", G(num_images=9), IR + "num_images", "from 1 to 8"),
    ok("num_images 1", G(num_images=1)),
    ok("num_images 8", G(num_images=8)),
    ok("num_images 2.0", G(num_images=2.0)),
    bad("num_images 2.5", G(num_images=2.5), IR + "num_images", "must be an integer"),
    bad("num_images string in JSON", G(num_images="2"), IR + "num_images", "must be an integer"),
    bad("num_images boolean", G(num_images=True), IR + "num_images", "must be an integer"),
    bad("seed -1", G(seed=-1), IR + "seed", "from 0 to 2147483647"),
    bad("seed 2^31", G(seed=2147483648), IR + "seed", "from 0 to 2147483647"),
    ok("seed 0", G(seed=0)),
    ok("seed 2^31-1", G(seed=2147483647)),
    ok("seed null", G(seed=None)),
    # required
    bad("prompt missing", G(prompt=DROP), IR + "prompt", "is required"),
    bad("prompt empty", G(prompt=""), IR + "prompt", "is required"),
    bad("prompt blank", G(prompt="   "), IR + "prompt", "must not be empty"),
    bad("prompt not a string", G(prompt=123), IR + "prompt", "must be a string"),
    # aspect_ratio XOR resolution; legacy resolution values
    bad("aspect and resolution", G(aspect_ratio="ASPECT_1_1", resolution="RESOLUTION_1024_1024"),
        IR + "aspect_ratio", "cannot be used together with resolution"),
    ok("resolution RESOLUTION_1280_800", G(resolution="RESOLUTION_1280_800")),
    bad("resolution V3 spelling", G(resolution="1024x1024"), IR + "resolution", "RESOLUTION_<W>_<H>"),
    bad("resolution only in V3 list", G(resolution="RESOLUTION_800_1280"), IR + "resolution", "not a supported"),
    bad("resolution placeholder", G(resolution="string"), IR + "resolution", "not a supported"),
    # model gates (§10.2)
    bad("style_type with V_1", G(model="V_1", style_type="GENERAL"), IR + "style_type", "model V_1"),
    bad("style_type with V_1_TURBO", G(model="V_1_TURBO", style_type="AUTO"), IR + "style_type", "V_1_TURBO"),
    ok("style_type with V_2", G(model="V_2", style_type="GENERAL")),
    ok("style_type with V_2A_TURBO", G(model="V_2A_TURBO", style_type="GENERAL")),
    bad("negative_prompt with V_2A", G(model="V_2A", negative_prompt="x"), IR + "negative_prompt", "only available"),
    bad("negative_prompt with V_2A_TURBO", G(model="V_2A_TURBO", negative_prompt="x"), IR + "negative_prompt",
        "only available"),
    bad("negative_prompt with V_3", G(model="V_3", negative_prompt="x"), IR + "negative_prompt", "only available"),
    ok("negative_prompt with V_1", G(model="V_1", negative_prompt="x")),
    ok("negative_prompt with V_2_TURBO", G(model="V_2_TURBO", negative_prompt="x")),
    *[bad(f"color_palette with {m}", G(model=m, color_palette={"name": "PASTEL"}), IR + "color_palette",
          f"not supported by model {m}") for m in ("V_1", "V_1_TURBO", "V_2A", "V_2A_TURBO")],
    ok("color_palette with V_2", G(model="V_2", color_palette={"name": "PASTEL"})),
    ok("color_palette with V_2_TURBO", G(model="V_2_TURBO", color_palette=members(2))),
    # color_palette shape (§3.11)
    bad("palette name and members", G(color_palette={"name": "EMBER", **members(1)}), IR + "color_palette",
        "exactly one"),
    bad("palette empty object", G(color_palette={}), IR + "color_palette", "exactly one"),
    bad("palette 0 members", G(color_palette=members(0)), IR + "color_palette.members", "1 to 8"),
    bad("palette 9 members", G(color_palette=members(9)), IR + "color_palette.members", "1 to 8"),
    ok("palette 8 members", G(color_palette=members(8))),
    bad("palette weight 0.04", G(color_palette=members(1, color_weight=0.04)),
        IR + "color_palette.members[0].color_weight", "0.05 and 1.0"),
    bad("palette weight 1.01", G(color_palette=members(1, color_weight=1.01)),
        IR + "color_palette.members[0].color_weight", "0.05 and 1.0"),
    bad("palette weight string", G(color_palette=members(1, color_weight="0.5")),
        IR + "color_palette.members[0].color_weight", "must be a number"),
    ok("palette weight 0.05 and 1", G(color_palette={"members": [{"color_hex": "#abc", "color_weight": 1},
                                                                  {"color_hex": "#ABCDEF", "color_weight": 0.05}]})),
    ok("palette weight omitted", G(color_palette={"members": [{"color_hex": "#abc"}]})),
    bad("palette hex 5 digits", G(color_palette=members(1, color_hex="#12345")),
        IR + "color_palette.members[0].color_hex", "#RGB or #RRGGBB"),
    bad("palette hex without #", G(color_palette=members(1, color_hex="123456")),
        IR + "color_palette.members[0].color_hex", "#RGB or #RRGGBB"),
    bad("palette hex not hex", G(color_palette=members(1, color_hex="#GGGGGG")),
        IR + "color_palette.members[0].color_hex", "#RGB or #RRGGBB"),
    bad("palette hex trailing newline", G(color_palette=members(1, color_hex="#abc\n")),
        IR + "color_palette.members[0].color_hex", "#RGB or #RRGGBB"),
    bad("palette hex missing", G(color_palette={"members": [{"color_weight": 0.5}]}),
        IR + "color_palette.members[0].color_hex", "is required"),
    bad("palette bad preset", G(color_palette={"name": "NEON"}), IR + "color_palette.name", "is not one of"),
    bad("palette lower-case preset", G(color_palette={"name": "pastel"}), IR + "color_palette.name", "is not one of"),
    bad("palette malformed JSON string", G(color_palette='{"name": '), IR + "color_palette", "is not valid JSON"),
    bad("palette not an object", G(color_palette=["PASTEL"]), IR + "color_palette", "must be an object"),
    bad("palette members not a list", G(color_palette={"members": "#abc"}), IR + "color_palette.members",
        "must be an array"),
    # image_request itself, and the body
    bad("image_request missing", G(image_request=DROP), "image_request", "is required"),
    bad("image_request null", G(image_request=None), "image_request", "is required"),
    bad("image_request malformed JSON string", G(image_request='{"prompt": '), "image_request", "is not valid JSON"),
    bad("image_request an array", G(image_request=[{"prompt": "x"}]), "image_request", "must be a JSON object"),
    bad("image_request a number", G(image_request=5), "image_request", "must be a JSON object"),
    ok("image_request as a JSON string", G(image_request='{"prompt": "x"}')),
    bad("body an array", json_body(Op.GENERATE, [{"image_request": {"prompt": "x"}}]), "body",
        "must be a JSON object"),
    bad("body a string", json_body(Op.GENERATE, "image_request"), "body", "must be a JSON object"),
    bad("body empty", raw(Op.GENERATE, b"", "application/json"), "body", "must be a JSON object"),
    bad("body malformed JSON", raw(Op.GENERATE, b'{"image_request": {', "application/json"), "body",
        "is not valid JSON"),
    bad("body not UTF-8", raw(Op.GENERATE, b'{"image_request": "\xff\xfe"}', "application/json"), "body",
        "is not valid JSON"),
]

# ---------------------------------------------------------------- legacy /remix, /upscale (image_request JSON string)

R = lambda **kw: req(Op.REMIX, **kw)
U = lambda **kw: req(Op.UPSCALE, **kw)

LEGACY_REMIX_UPSCALE = [
    ok("remix minimal", R()),
    bad("remix image_file missing", R(image_file=DROP), "image_file", "is required"),
    bad("remix image_file as a text part", R(image_file="aGVsbG8="), "image_file", "must be sent as a file part"),
    bad("remix two image_files", R(image_file=[File(PNG), File(PNG)]), "image_file", "only one file"),
    bad("remix image_request missing", R(image_request=DROP), "image_request", "is required"),
    bad("remix image_request malformed", R(image_request='{"prompt": "x",'), "image_request", "is not valid JSON"),
    bad("remix image_request empty", R(image_request=""), "image_request", "is not valid JSON"),
    bad("remix image_request array", R(image_request="[1]"), "image_request", "must be a JSON object"),
    bad("remix image_request string", R(image_request='"a cat"'), "image_request", "must be a JSON object"),
    bad("remix prompt missing", R(prompt=DROP), IR + "prompt", "is required"),
    bad("remix image_weight 0", R(image_weight=0), IR + "image_weight", "from 1 to 100"),
    bad("remix image_weight 101", R(image_weight=101), IR + "image_weight", "from 1 to 100"),
    ok("remix image_weight 1", R(image_weight=1)),
    ok("remix image_weight 100", R(image_weight=100)),
    bad("remix image_weight string", R(image_weight="60"), IR + "image_weight", "must be an integer"),
    bad("remix num_images 9", R(num_images=9), IR + "num_images", "from 1 to 8"),
    bad("remix seed -1", R(seed=-1), IR + "seed", "from 0 to 2147483647"),
    bad("remix aspect and resolution", R(aspect_ratio="ASPECT_1_1", resolution="RESOLUTION_1024_1024"),
        IR + "aspect_ratio", "cannot be used together"),
    bad("remix negative_prompt with V_2A", R(model="V_2A", negative_prompt="x"), IR + "negative_prompt",
        "only available"),
    bad("remix style_type with V_1", R(model="V_1", style_type="GENERAL"), IR + "style_type", "model V_1"),
    bad("remix palette with V_1_TURBO", R(model="V_1_TURBO", color_palette={"name": "MELON"}), IR + "color_palette",
        "not supported"),
    bad("remix aspect lower-case", R(aspect_ratio="aspect_16_9"), IR + "aspect_ratio", "is not one of"),
    ok("upscale image_request {}", U()),
    ok("upscale official sample", U(resemblance=55, detail=90)),
    bad("upscale image_file missing", U(image_file=DROP), "image_file", "is required"),
    bad("upscale image_request missing", U(image_request=DROP), "image_request", "is required"),
    bad("upscale image_request malformed", U(image_request="{resemblance: 5}"), "image_request", "is not valid JSON"),
    bad("upscale resemblance 0", U(resemblance=0), IR + "resemblance", "from 1 to 100"),
    bad("upscale resemblance 101", U(resemblance=101), IR + "resemblance", "from 1 to 100"),
    bad("upscale detail 0", U(detail=0), IR + "detail", "from 1 to 100"),
    bad("upscale detail 101", U(detail=101), IR + "detail", "from 1 to 100"),
    ok("upscale resemblance 1 detail 100", U(resemblance=1, detail=100)),
    ok("upscale resemblance 100 detail 1", U(resemblance=100, detail=1)),
    bad("upscale num_images 0", U(num_images=0), IR + "num_images", "from 1 to 8"),
    bad("upscale seed 2^31", U(seed=2147483648), IR + "seed", "from 0 to 2147483647"),
    bad("upscale magic_prompt_option", U(magic_prompt_option="auto"), IR + "magic_prompt_option", "is not one of"),
]

# ---------------------------------------------------------------- legacy /edit, /reframe (flat), /describe

E = lambda **kw: req(Op.EDIT, **kw)
RF = lambda **kw: req(Op.REFRAME, **kw)
D = lambda **kw: req(Op.DESCRIBE, **kw)

LEGACY_FLAT = [
    ok("edit minimal", E()),
    ok("edit V_2_TURBO", E(model="V_2_TURBO")),
    bad("edit model missing", E(model=DROP), "model", "is required"),
    bad("edit model empty", E(model=""), "model", "is required"),
    *[bad(f"edit model {m}", E(model=m), "model", "only supported for V_2 and V_2_TURBO")
      for m in ("V_1", "V_1_TURBO", "V_2A", "V_2A_TURBO", "V_3", "AUTO")],
    bad("edit model lower-case", E(model="v_2"), "model", "is not one of"),
    bad("edit prompt missing", E(prompt=DROP), "prompt", "is required"),
    bad("edit prompt blank", E(prompt="  "), "prompt", "must not be empty"),
    bad("edit image_file missing", E(image_file=DROP), "image_file", "is required"),
    bad("edit mask missing", E(mask=DROP), "mask", "is required"),
    bad("edit mask other size", E(mask=File(SMALL_MASK)), "mask", "same size as the image"),
    bad("edit mask grey", E(mask=File(GREY_MASK)), "mask", "only black and white"),
    bad("edit mask all white", E(mask=File(WHITE_MASK)), "mask", "must not be all white"),
    bad("edit mask photo", E(mask=File(PNG)), "mask", "only black and white"),
    ok("edit mask all black", E(mask=File(BLACK_MASK))),
    ok("edit mask RGB", E(mask=File(RGB_MASK))),
    ok("edit mask JPEG", E(mask=File(JPEG_MASK, "mask.jpg", "image/jpeg"))),
    bad("edit num_images 9", E(num_images="9"), "num_images", "from 1 to 8"),
    bad("edit num_images 0", E(num_images="0"), "num_images", "from 1 to 8"),
    ok("edit num_images 8", E(num_images="8")),
    bad("edit num_images word", E(num_images="two"), "num_images", "must be an integer"),
    bad("edit num_images decimal", E(num_images="1.5"), "num_images", "must be an integer"),
    bad("edit seed -1", E(seed="-1"), "seed", "from 0 to 2147483647"),
    bad("edit seed 2^31", E(seed="2147483648"), "seed", "from 0 to 2147483647"),
    ok("edit seed 2^31-1", E(seed="2147483647")),
    bad("edit seed with underscore", E(seed="1_000"), "seed", "must be an integer"),
    bad("edit seed non-ASCII digits", E(seed="\uff11\uff12"), "seed", "must be an integer"),
    bad("edit style_type lower-case", E(style_type="anime"), "style_type", "is not one of"),
    bad("edit magic_prompt_option", E(magic_prompt_option="YES"), "magic_prompt_option", "is not one of"),
    ok("edit optional fields empty", E(seed="", num_images="", style_type="", magic_prompt_option="")),
    ok("reframe minimal", RF()),
    bad("reframe resolution missing", RF(resolution=DROP), "resolution", "is required"),
    bad("reframe model missing", RF(model=DROP), "model", "is required"),
    bad("reframe image_file missing", RF(image_file=DROP), "image_file", "is required"),
    bad("reframe resolution V3 spelling", RF(resolution="1024x1024"), "resolution", "RESOLUTION_<W>_<H>"),
    bad("reframe resolution only in V3", RF(resolution="RESOLUTION_800_1280"), "resolution", "not a supported"),
    ok("reframe RESOLUTION_1280_800", RF(resolution="RESOLUTION_1280_800")),
    bad("reframe style_type with V_1", RF(model="V_1", style_type="GENERAL"), "style_type", "model V_1"),
    bad("reframe style_type with V_1_TURBO", RF(model="V_1_TURBO", style_type="GENERAL"), "style_type", "V_1_TURBO"),
    ok("reframe style_type with V_2", RF(style_type="GENERAL")),
    bad("reframe num_images 9", RF(num_images="9"), "num_images", "from 1 to 8"),
    bad("reframe model unknown", RF(model="V_9"), "model", "is not one of"),
    ok("describe minimal", D()),
    *[ok(f"describe {v}", D(describe_model_version=v)) for v in ("V_2", "V_3", "CUSTOM")],
    bad("describe_model_version V_1", D(describe_model_version="V_1"), "describe_model_version", "is not one of"),
    bad("describe_model_version lower-case", D(describe_model_version="v_3"), "describe_model_version",
        "is not one of"),
    bad("describe image_file missing", D(image_file=DROP), "image_file", "is required"),
    bad("describe image instead of image_file", D(image_file=DROP, image=File(PNG)), "image_file", "is required"),
]

# ---------------------------------------------------------------- V3 generate (multipart and JSON)

V = lambda **kw: req(Op.V3_GENERATE, **kw)
VJ = lambda **kw: req(Op.V3_GENERATE, as_json=True, **kw)
REF = File(PNG, "ref.png")

V3_GENERATE = [
    ok("minimal", V()),
    ok("aspect 16x9", V(aspect_ratio="16x9")),
    ok("aspect 1x2 (V3 only)", V(aspect_ratio="1x2")),
    bad("aspect colon", V(aspect_ratio="16:9"), "aspect_ratio", "is not one of"),
    bad("aspect upper X", V(aspect_ratio="16X9"), "aspect_ratio", "is not one of"),
    bad("aspect legacy spelling", V(aspect_ratio="ASPECT_16_9"), "aspect_ratio", "is not one of"),
    ok("resolution 1024x1024", V(resolution="1024x1024")),
    ok("resolution 800x1280 (V3 only)", V(resolution="800x1280")),
    bad("resolution legacy spelling", V(resolution="RESOLUTION_1024_1024"), "resolution", "ResolutionV3"),
    bad("resolution legacy-only size", V(resolution="640x1024"), "resolution", "not a supported"),
    bad("resolution upper X", V(resolution="1024X1024"), "resolution", "not a supported"),
    bad("aspect and resolution", V(aspect_ratio="1x1", resolution="1024x1024"), "aspect_ratio",
        "cannot be used together with resolution"),
    bad("aspect and resolution (JSON)", VJ(aspect_ratio="1x1", resolution="1024x1024"), "aspect_ratio",
        "cannot be used together"),
    bad("num_images 0", V(num_images=0), "num_images", "from 1 to 8"),
    bad("num_images 9", V(num_images=9), "num_images", "from 1 to 8"),
    ok("num_images 1", V(num_images=1)),
    ok("num_images 8", V(num_images=8)),
    bad("num_images 9 (JSON)", VJ(num_images=9), "num_images", "from 1 to 8"),
    bad("num_images string (JSON)", VJ(num_images="2"), "num_images", "must be an integer"),
    bad("seed -1", V(seed=-1), "seed", "from 0 to 2147483647"),
    bad("seed 2^31", V(seed=2147483648), "seed", "from 0 to 2147483647"),
    ok("seed 0", V(seed=0)),
    bad("prompt missing", V(prompt=DROP), "prompt", "is required"),
    bad("prompt empty", V(prompt=""), "prompt", "is required"),
    bad("prompt missing (JSON)", VJ(prompt=DROP), "prompt", "is required"),
    bad("prompt not a string (JSON)", VJ(prompt=["a", "b"]), "prompt", "must be a string"),
    ok("rendering_speed FLASH", V(rendering_speed="FLASH")),
    ok("rendering_speed BALANCED", V(rendering_speed="BALANCED")),
    bad("rendering_speed", V(rendering_speed="fast"), "rendering_speed", "is not one of"),
    bad("magic_prompt lower-case", V(magic_prompt="on"), "magic_prompt", "is not one of"),
    ok("style_type FICTION", V(style_type="FICTION")),
    bad("style_type legacy-only", V(style_type="RENDER_3D"), "style_type", "is not one of"),
    ok("negative_prompt", V(negative_prompt="blur")),
    # style_codes (§3.12): repeated parts, comma-joined, JSON array; 8 hex; exclusions
    ok("style_codes repeated", V(style_codes=["AAFF5733", "12345678"])),
    ok("style_codes comma-joined", V(style_codes="AAFF5733, 12345678")),
    ok("style_codes JSON array part", V(style_codes='["AAFF5733","abcdef01"]')),
    ok("style_codes array (JSON)", VJ(style_codes=["AAFF5733", "12345678"])),
    bad("style_codes 7 chars", V(style_codes="AAFF573"), "style_codes", "'AAFF573' is not an 8-character"),
    bad("style_codes 9 chars", V(style_codes="AAFF57330"), "style_codes", "8-character hexadecimal"),
    bad("style_codes not hex", V(style_codes="GGGGGGGG"), "style_codes", "8-character hexadecimal"),
    bad("style_codes second repeated bad", V(style_codes=["AAFF5733", "XYZ"]), "style_codes", "'XYZ'"),
    bad("style_codes second comma-joined bad", V(style_codes="AAFF5733,XYZ12345"), "style_codes", "'XYZ12345'"),
    bad("style_codes bad (JSON)", VJ(style_codes=["AAFF5733", "nothex!!"]), "style_codes", "'nothex!!'"),
    bad("style_codes trailing newline", V(style_codes='["AAFF5733\\n"]'), "style_codes", "8-character"),
    bad("style_codes not strings (JSON)", VJ(style_codes=[12345678]), "style_codes", "list of strings"),
    bad("style_codes empty JSON array part", V(style_codes="[]"), "style_codes", "must not be empty"),
    bad("style_codes malformed JSON array part", V(style_codes='["AAFF5733"'), "style_codes", "valid JSON array"),
    ok("style_codes empty part (not sent)", V(style_codes="")),
    bad("style_codes with style_type", V(style_codes="AAFF5733", style_type="AUTO"), "style_codes",
        "cannot be used together with style_type"),
    bad("style_codes with style_type (JSON)", VJ(style_codes=["AAFF5733"], style_type="GENERAL"), "style_codes",
        "style_type"),
    bad("style_codes with style_reference_images", V(style_codes="AAFF5733", style_reference_images=[REF]),
        "style_codes", "cannot be used together with style_reference_images"),
    ok("style_reference_images x2", V(style_reference_images=[REF, REF], style_type="AUTO")),
    # style_preset
    ok("style_preset", V(style_preset="WATERCOLOR")),
    ok("style_preset 80S_ILLUSTRATION", V(style_preset="80S_ILLUSTRATION")),
    bad("style_preset lower-case", V(style_preset="watercolor"), "style_preset", "is not one of"),
    bad("style_preset with style_codes", V(style_preset="WATERCOLOR", style_codes="AAFF5733"), "style_preset",
        "cannot be used together with style_codes"),
    bad("style_preset with style_reference_images", V(style_preset="WATERCOLOR", style_reference_images=[REF]),
        "style_preset", "style_reference_images"),
    # color_palette as a JSON string part (§2)
    ok("palette preset", V(color_palette={"name": "PASTEL"})),
    ok("palette members", V(color_palette=members(3))),
    ok("palette object (JSON)", VJ(color_palette={"name": "ULTRAMARINE"})),
    bad("palette malformed JSON", V(color_palette='{"name": "PASTEL"'), "color_palette", "is not valid JSON"),
    bad("palette bare name", V(color_palette="PASTEL"), "color_palette", "is not valid JSON"),
    bad("palette JSON string value", V(color_palette='"PASTEL"'), "color_palette", "must be an object"),
    bad("palette name and members", V(color_palette={"name": "PASTEL", **members(1)}), "color_palette",
        "exactly one"),
    bad("palette 0 members", V(color_palette=members(0)), "color_palette.members", "1 to 8"),
    bad("palette 9 members", V(color_palette=members(9)), "color_palette.members", "1 to 8"),
    ok("palette 8 members", V(color_palette=members(8))),
    bad("palette weight 0.04", V(color_palette=members(2, color_weight=0.04)),
        "color_palette.members[0].color_weight", "0.05 and 1.0"),
    bad("palette weight 1.5", V(color_palette=members(1, color_weight=1.5)),
        "color_palette.members[0].color_weight", "0.05 and 1.0"),
    bad("palette hex #RGBA", V(color_palette=members(1, color_hex="#abcd")),
        "color_palette.members[0].color_hex", "#RGB or #RRGGBB"),
    bad("palette bad preset", V(color_palette={"name": "NEON"}), "color_palette.name", "is not one of"),
    bad("palette bad preset (JSON)", VJ(color_palette={"name": "NEON"}), "color_palette.name", "is not one of"),
    # character references (§10.3)
    ok("one character reference", V(character_reference_images=[REF])),
    ok("character reference with mask", V(character_reference_images=[REF], character_reference_images_mask=[
        File(mask_bytes(64, 48))])),
    bad("two character references", V(character_reference_images=[REF, REF]), "character_reference_images",
        "at most 1"),
    bad("character mask without image", V(character_reference_images_mask=[File(mask_bytes(64, 48))]),
        "character_reference_images_mask", "count must equal"),
    bad("two masks for one image", V(character_reference_images=[REF], character_reference_images_mask=[
        File(mask_bytes(64, 48)), File(mask_bytes(64, 48))]), "character_reference_images_mask", "count must equal"),
    bad("character mask other size", V(character_reference_images=[REF], character_reference_images_mask=[
        File(SMALL_MASK)]), "character_reference_images_mask", "same size"),
    # custom_model_uri
    ok("custom_model_uri", V(custom_model_uri="model/my-custom-model/version/1")),
    bad("custom_model_uri bare name", V(custom_model_uri="my-custom-model"), "custom_model_uri",
        "model/<model_name>/version/<version_name>"),
    bad("custom_model_uri empty name", V(custom_model_uri="model//version/1"), "custom_model_uri", "model/<"),
    bad("custom_model_uri empty version", V(custom_model_uri="model/m/version/"), "custom_model_uri", "model/"),
    bad("custom_model_uri extra segment", V(custom_model_uri="model/m/version/1/x"), "custom_model_uri", "model/"),
    bad("custom_model_uri trailing newline", V(custom_model_uri="model/m/version/1\n"), "custom_model_uri",
        "model/"),
    bad("custom_model_uri (JSON)", VJ(custom_model_uri="models/m/versions/1"), "custom_model_uri", "model/"),
    # the body (JSON)
    bad("body an array (JSON)", json_body(Op.V3_GENERATE, [{"prompt": "x"}]), "body", "must be a JSON object"),
    bad("body null (JSON)", json_body(Op.V3_GENERATE, None), "body", "must be a JSON object"),
    bad("body malformed (JSON)", raw(Op.V3_GENERATE, b"{prompt: x}", "application/json"), "body", "not valid JSON"),
    bad("multipart without boundary", raw(Op.V3_GENERATE, b"prompt=x", "multipart/form-data"), "body",
        "multipart/form-data"),
]

# ---------------------------------------------------------------- other V3 endpoints

VR = lambda **kw: req(Op.V3_REMIX, **kw)
VF = lambda **kw: req(Op.V3_REFRAME, **kw)
VB = lambda **kw: req(Op.V3_REPLACE_BACKGROUND, **kw)
VT = lambda **kw: req(Op.V3_GENERATE_TRANSPARENT, **kw)
VTJ = lambda **kw: req(Op.V3_GENERATE_TRANSPARENT, as_json=True, **kw)


def v3_edit_rows(op: Operation) -> list[Any]:
    X = lambda **kw: req(op, **kw)
    n = op.value
    return [
        ok(f"{n} minimal", X()),
        bad(f"{n} image missing", X(image=DROP), "image", "is required"),
        bad(f"{n} image_file instead of image", X(image=DROP, image_file=File(PNG)), "image", "is required"),
        bad(f"{n} mask missing", X(mask=DROP), "mask", "is required"),
        bad(f"{n} mask other size", X(mask=File(SMALL_MASK)), "mask", "same size as the image"),
        bad(f"{n} mask grey", X(mask=File(GREY_MASK)), "mask", "only black and white"),
        bad(f"{n} mask all white", X(mask=File(WHITE_MASK)), "mask", "must not be all white"),
        ok(f"{n} mask JPEG", X(mask=File(JPEG_MASK, "m.jpg", "image/jpeg"))),
        bad(f"{n} prompt missing", X(prompt=DROP), "prompt", "is required"),
        bad(f"{n} num_images 9", X(num_images=9), "num_images", "from 1 to 8"),
        bad(f"{n} seed -1", X(seed=-1), "seed", "from 0 to 2147483647"),
        bad(f"{n} style_codes with style_type", X(style_codes="AAFF5733", style_type="REALISTIC"), "style_codes",
            "style_type"),
        bad(f"{n} two character references", X(character_reference_images=[REF, REF]),
            "character_reference_images", "at most 1"),
        bad(f"{n} palette weight", X(color_palette=members(1, color_weight=0)),
            "color_palette.members[0].color_weight", "0.05 and 1.0"),
        bad(f"{n} style_preset lower-case", X(style_preset="bauhaus"), "style_preset", "is not one of"),
        bad(f"{n} custom_model_uri", X(custom_model_uri="m1"), "custom_model_uri", "model/"),
    ]


V3_OTHERS = [
    ok("remix minimal", VR()),
    bad("remix image missing", VR(image=DROP), "image", "is required"),
    bad("remix image_file instead of image", VR(image=DROP, image_file=File(PNG)), "image", "is required"),
    bad("remix prompt missing", VR(prompt=DROP), "prompt", "is required"),
    bad("remix image_weight 0", VR(image_weight=0), "image_weight", "from 1 to 100"),
    bad("remix image_weight 101", VR(image_weight=101), "image_weight", "from 1 to 100"),
    ok("remix image_weight 1", VR(image_weight=1)),
    ok("remix image_weight 100", VR(image_weight=100)),
    bad("remix image_weight word", VR(image_weight="sixty"), "image_weight", "must be an integer"),
    bad("remix aspect and resolution", VR(aspect_ratio="16x9", resolution="1312x736"), "aspect_ratio",
        "cannot be used together"),
    bad("remix resolution legacy", VR(resolution="RESOLUTION_1312_736"), "resolution", "ResolutionV3"),
    bad("remix style_codes with style_type", VR(style_codes=["AAFF5733"], style_type="AUTO"), "style_codes",
        "style_type"),
    bad("remix num_images 9", VR(num_images=9), "num_images", "from 1 to 8"),
    *v3_edit_rows(Op.V3_EDIT),
    *v3_edit_rows(Op.V3_INPAINT),
    ok("reframe minimal", VF()),
    ok("reframe 512x1536", VF(resolution="512x1536")),
    bad("reframe resolution missing", VF(resolution=DROP), "resolution", "is required"),
    bad("reframe resolution legacy", VF(resolution="RESOLUTION_1024_1024"), "resolution", "ResolutionV3"),
    bad("reframe resolution unknown", VF(resolution="1000x1000"), "resolution", "not a supported"),
    bad("reframe image missing", VF(image=DROP), "image", "is required"),
    bad("reframe num_images 0", VF(num_images=0), "num_images", "from 1 to 8"),
    bad("reframe style_codes bad", VF(style_codes="AAFF57"), "style_codes", "8-character"),
    bad("reframe style_preset with style_codes", VF(style_preset="BAUHAUS", style_codes="AAFF5733"),
        "style_preset", "style_codes"),
    bad("reframe style_codes with references", VF(style_codes="AAFF5733", style_reference_images=[REF]),
        "style_codes", "style_reference_images"),
    bad("reframe palette preset", VF(color_palette={"name": "ember"}), "color_palette.name", "is not one of"),
    ok("replace-background minimal", VB()),
    ok("replace-background official example", VB(prompt="Add a forest in the background", magic_prompt="ON",
                                                  rendering_speed="QUALITY")),
    bad("replace-background prompt missing", VB(prompt=DROP), "prompt", "is required"),
    bad("replace-background image missing", VB(image=DROP), "image", "is required"),
    bad("replace-background style_codes with references", VB(style_codes="AAFF5733", style_reference_images=[REF]),
        "style_codes", "style_reference_images"),
    bad("replace-background palette malformed", VB(color_palette="{"), "color_palette", "is not valid JSON"),
    bad("replace-background rendering_speed", VB(rendering_speed="turbo"), "rendering_speed", "is not one of"),
    bad("replace-background magic_prompt", VB(magic_prompt="TRUE"), "magic_prompt", "is not one of"),
    bad("replace-background num_images 9", VB(num_images=9), "num_images", "from 1 to 8"),
    ok("transparent minimal", VT()),
    ok("transparent X4", VT(upscale_factor="X4")),
    ok("transparent X2 (JSON)", VTJ(upscale_factor="X2", aspect_ratio="9x16")),
    bad("transparent upscale_factor X3", VT(upscale_factor="X3"), "upscale_factor", "is not one of"),
    bad("transparent upscale_factor lower-case", VT(upscale_factor="x2"), "upscale_factor", "is not one of"),
    bad("transparent upscale_factor number (JSON)", VTJ(upscale_factor=2), "upscale_factor", "must be a string"),
    bad("transparent aspect legacy", VT(aspect_ratio="ASPECT_1_1"), "aspect_ratio", "is not one of"),
    bad("transparent custom_model_uri", VTJ(custom_model_uri="model/x"), "custom_model_uri", "model/"),
    bad("transparent num_images 9", VT(num_images=9), "num_images", "from 1 to 8"),
    bad("transparent seed 2^31 (JSON)", VTJ(seed=2**31), "seed", "from 0 to 2147483647"),
    bad("transparent prompt missing (JSON)", VTJ(prompt=DROP), "prompt", "is required"),
    bad("transparent rendering_speed", VTJ(rendering_speed="SLOW"), "rendering_speed", "is not one of"),
]

# ---------------------------------------------------------------- uploaded files (type from the bytes)

FILES = [
    ok("blob octet-stream", R(image_file=File(PNG, "blob", "application/octet-stream"))),
    ok("PNG bytes named image.jpg", R(image_file=File(PNG, "image.jpg", "image/jpeg"))),
    ok("no name extension, no type", R(image_file=File(PNG, "upload", None))),
    ok("JPEG", VR(image=File(JPEG, "photo.jpg", "image/jpeg"))),
    ok("WebP named .png", VR(image=File(WEBP, "photo.png", "image/png"))),
    ok("mask as blob", E(mask=File(mask_bytes(64, 48), "blob", "application/octet-stream"))),
    ok("style reference as blob", V(style_reference_images=[File(JPEG, "blob", "application/octet-stream")])),
    bad("text file", R(image_file=File(TEXT, "notes.txt", "text/plain")), "image_file",
        "only JPEG, PNG and WebP", 415),
    bad("text named .png", VR(image=File(TEXT, "image.png", "image/png")), "image", "only JPEG, PNG and WebP", 415),
    bad("PDF", D(image_file=File(PDF, "doc.pdf", "application/pdf")), "image_file", "only JPEG, PNG and WebP", 415),
    bad("PDF as octet-stream", U(image_file=File(PDF, "blob", "application/octet-stream")), "image_file",
        "only JPEG, PNG and WebP", 415),
    bad("GIF", VB(image=File(GIF, "a.gif", "image/gif")), "image", "only JPEG, PNG and WebP", 415),
    bad("BMP", VF(image=File(BMP, "a.bmp", "image/bmp")), "image", "only JPEG, PNG and WebP", 415),
    bad("SVG", RF(image_file=File(SVG, "a.svg", "image/svg+xml")), "image_file", "only JPEG, PNG and WebP", 415),
    bad("mask PDF", E(mask=File(PDF, "mask.pdf", "application/pdf")), "mask", "only JPEG", 415),
    bad("style reference text", V(style_reference_images=[REF, File(TEXT, "r.txt")]), "style_reference_images",
        "only JPEG", 415),
    bad("character reference PDF", V(character_reference_images=[File(PDF)]), "character_reference_images",
        "only JPEG", 415),
    bad("corrupt PNG", R(image_file=File(CORRUPT_PNG)), "image_file", "could not be read as image/png"),
    bad("truncated PNG", VR(image=File(TRUNCATED_PNG)), "image", "could not be read as image/png"),
    bad("corrupt JPEG", VB(image=File(b"\xff\xd8\xff\xe0" + b"\x00" * 64, "x.jpg", "image/jpeg")), "image",
        "could not be read as image/jpeg"),
    bad("corrupt WebP", VF(image=File(b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 16)), "image",
        "could not be read as image/webp"),
    bad("empty file", D(image_file=File(b"")), "image_file", "file is empty"),
    bad("corrupt mask pixels", E(mask=File(mask_bytes(64, 48)[:-40])), "mask", "corrupt"),
    bad("decompression bomb PNG", R(image_file=File(BOMB, "bomb.png")), "image_file", "20000x20000", 413),
    bad("decompression bomb as mask", E(mask=File(BOMB)), "mask", "pixels", 413),
    bad("JPEG claiming 60000x60000", VR(image=File(jpeg_claiming(60000, 60000), "x.jpg")), "image", "pixels", 413),
]

def group(name: str, rows: list[Any]) -> list[Any]:
    return [pytest.param(*p.values, id=f"{name}: {p.id}") for p in rows]


ALL_RULES = [
    *group("generate", LEGACY_GENERATE), *group("legacy", LEGACY_REMIX_UPSCALE), *group("legacy", LEGACY_FLAT),
    *group("v3-generate", V3_GENERATE), *group("v3", V3_OTHERS), *group("files", FILES),
]
rules = pytest.mark.parametrize("body,status,field,rule", ALL_RULES)


@rules
def test_rule(server, body, status, field, rule):
    check(server, body, status, field, rule)


def test_rule_ids_are_unique():
    ids = [p.id for p in ALL_RULES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_bomb_is_rejected_from_its_header(server):
    """The bomb decodes to 400 MB; rejecting it from the header takes milliseconds."""
    started = time.perf_counter()
    resp = VR(image=File(BOMB)).send(server)
    assert_problem(resp, 413, "image", "400000000 pixels")
    assert time.perf_counter() - started < 2.0


# ---------------------------------------------------------------- configured limits

LIMITS = {"max_upload_bytes": 100_000, "max_input_pixels": 256 * 256, "max_body_bytes": 600_000}
BIG = png_bytes(300, 300)  # ~180 KB of noise
WIDE = encode(np.zeros((200, 400, 3), np.uint8))  # 80,000 pixels in a few hundred bytes


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with serve(tmp_path_factory.mktemp("limits"), **LIMITS) as running:
        yield running


@pytest.mark.parametrize("body,status,field,rule", [
    ok("under both limits", R()),
    bad("file over max_upload_bytes", R(image_file=File(BIG)), "image_file", "limit", 413),
    bad("V3 image over max_upload_bytes", VR(image=File(BIG)), "image", "limit", 413),
    bad("mask over max_upload_bytes", E(mask=File(BIG)), "mask", "limit", 413),
    bad("style reference over max_upload_bytes", V(style_reference_images=[File(BIG)]), "style_reference_images",
        "limit", 413),
    bad("image over max_input_pixels", D(image_file=File(WIDE)), "image_file", "the limit is 65536 pixels", 413),
    bad("bomb under the byte limit", VB(image=File(BOMB)), "image", "pixels", 413),
    bad("body over max_body_bytes", VJ(prompt="x" * 700_000), "body", "limit", 413),
])
def test_configured_limits(limited, body, status, field, rule):
    assert len(BOMB) < LIMITS["max_upload_bytes"] < len(BIG)
    check(limited, body, status, field, rule)


# ---------------------------------------------------------------- never a 500 for bad input

ODD_VALUES: list[Any] = [
    "", " ", "\x00", "NaN", "Infinity", "-0", "1e3", "0x10", "9" * 5000, "-" + "9" * 30, "\uff11", "1_0", "true",
    "null", "[]", "{}", "[" * 5000, '{"a":' * 5000, '{"name": null, "members": null}', '{"members": [null]}',
    '{"members": [{"color_hex": 5, "color_weight": "x"}]}',
    '{"members": [{"color_hex": "#abc", "color_weight": 1e999}]}',
    '{"name": ["PASTEL"]}', '{"name": {"x": 1}}', "\u202e\ud7ff", "A" * 20000, "AAFF5733," * 500, "ASPECT_1_1",
    "1x1", "RESOLUTION_1024_1024", "1024x1024", "V_2", "X2", "model/a/version/b",
]
JSON_ODD_VALUES: list[Any] = [
    None, True, 0, -1, 2**64, 1e308, 1.5, [], {}, [None], [[["x"]]], {"name": None}, {"members": [1, 2]},
    {"members": [{"color_hex": "#abc", "color_weight": True}]}, "x" * 10000, "\x00",
]
FIELD_NAMES = sorted({
    "prompt", "model", "aspect_ratio", "resolution", "magic_prompt_option", "magic_prompt_version", "seed",
    "style_type", "negative_prompt", "num_images", "color_palette", "image_weight", "resemblance", "detail",
    "describe_model_version", "rendering_speed", "magic_prompt", "style_codes", "style_preset", "custom_model_uri",
    "upscale_factor", "image_request",
})
FILE_NAMES = ["image_file", "image", "mask", "style_reference_images", "character_reference_images",
              "character_reference_images_mask"]
ODD_FILES = [PNG, b"", TEXT, CORRUPT_PNG, TRUNCATED_PNG, JPEG[:50], b"RIFF\xff\xff\xff\xffWEBP", GREY_MASK,
             BLACK_MASK, SMALL_MASK, jpeg_claiming(1, 0), jpeg_claiming(65535, 65535)]


def garbage_bodies(op: Operation, rng: random.Random) -> list[Body]:
    bodies = [
        raw(op, b"", "application/json"),
        raw(op, b"\xff\xfe\x00garbage", "application/json"),
        raw(op, b"[" * 100_000, "application/json"),
        raw(op, b'{"image_request": ' * 50_000, "application/json"),
        raw(op, json.dumps({"image_request": "[" * 100_000, "prompt": "x"}).encode(), "application/json"),
        raw(op, b'{"prompt": "x", "num_images": 1e999, "seed": NaN}', "application/json"),
        raw(op, b"\x00" * 64, "multipart/form-data; boundary=xyz"),
        raw(op, b'--xyz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nunterminated',
            "multipart/form-data; boundary=xyz"),
        raw(op, b"--xyz--\r\n", "multipart/form-data; boundary=xyz"),
        raw(op, b"prompt=x", "multipart/form-data; boundary="),
        raw(op, b"prompt=%ff%fe&num_images=%00", "application/x-www-form-urlencoded"),
        raw(op, b"garbage", "application/octet-stream"),
        raw(op, b"garbage", "multipart/mixed; boundary=xyz"),
        raw(op, json.dumps({"prompt": "x"}).encode(), "application/json; charset=utf-16"),
        raw(op, b"{}", "image/png"),
        multipart(op, [("image_request", "[" * 100_000), ("color_palette", '{"a":' * 20_000),
                       ("style_codes", "[" * 100_000), ("prompt", "x")]),
        multipart(op, [(f"field{i}", "x") for i in range(300)]),
        multipart(op, [("image", File(PNG)) for _ in range(70)]),
        multipart(op, [*MINIMAL[op].items(), ("image_file", File(BOMB)), ("image", File(BOMB))]),
    ]
    for _ in range(40):  # the minimal request with random fields set to odd values
        fields: dict[str, Any] = dict(MINIMAL[op])
        for name in rng.sample(FIELD_NAMES, rng.randint(1, 4)):
            fields[name] = rng.choice(ODD_VALUES)
        for name in rng.sample(FILE_NAMES, rng.randint(0, 2)):
            fields[name] = [File(rng.choice(ODD_FILES), rng.choice(["blob", "a.png", None]),
                                 rng.choice(["image/png", "application/octet-stream", None]))
                            for _ in range(rng.randint(1, 2))]
        bodies.append(multipart(op, [(k, item) for k, v in fields.items()
                                     for item in (v if isinstance(v, list) else [v])]))
    for _ in range(15):  # JSON bodies with odd JSON values
        obj: dict[str, Any] = {k: v for k, v in MINIMAL[op].items() if not isinstance(v, File)}
        for name in rng.sample(FIELD_NAMES, rng.randint(1, 4)):
            obj[name] = rng.choice(JSON_ODD_VALUES)
        if rng.random() < 0.5:
            obj = {"image_request": obj}
        bodies.append(json_body(op, obj))
    return bodies


ODD_HEADERS = [
    {"Content-Type": "multipart/form-data; boundary=\"unclosed"},
    {"Content-Type": ";;;"},
    {"Content-Type": "multipart/form-data; boundary=" + "x" * 200},
    {"Content-Type": "APPLICATION/JSON"},
    {"Content-Type": "application/json", "Content-Encoding": "gzip"},
    {"Api-Key": "x" * 8000},
    {"Api-Key": b"\xff\xfe\x80"},
    {"Authorization": b"Bearer \xff\xfe"},
]


@pytest.mark.parametrize("op", OLD_FAMILIES, ids=[o.value for o in OLD_FAMILIES])
def test_garbage_never_gives_a_500(server, op):
    rng = random.Random(op.value)
    paths = [p for p, o in ALL_PATHS.items() if o is op]
    seen: set[int] = set()
    for i, body in enumerate(garbage_bodies(op, rng)):
        resp = body.send(server, paths[i % len(paths)])
        seen.add(resp.status_code)
        assert resp.status_code < 500 or resp.status_code == 503, f"{body}: {resp.status_code} {resp.text[:300]}"
        assert resp.headers["content-type"] == "application/json"
        if resp.status_code == 422:
            assert set(resp.json()) == {"error"}
        else:
            assert_problem(resp, resp.status_code)
        if resp.status_code == 503:
            assert_engine_unavailable(resp, op)
    assert 400 in seen


@pytest.mark.parametrize("headers", ODD_HEADERS, ids=range(len(ODD_HEADERS)))
def test_odd_headers_never_give_a_500(server, headers):
    for path, op in ALL_PATHS.items():
        body = req(op)
        hdrs = {"Content-Type": body.content_type or "", **headers}
        try:
            resp = server.client.post(path, content=body.content, headers={**server.auth(), **hdrs})
        except (httpx.LocalProtocolError, httpx.RemoteProtocolError):
            continue  # a header the client refuses to send, or a request the server's HTTP layer drops
        assert resp.status_code < 500 or resp.status_code == 503, f"{path}: {resp.status_code} {resp.text[:300]}"
        if resp.status_code == 503:
            assert_engine_unavailable(resp, op)
        else:
            assert_problem(resp, resp.status_code)
