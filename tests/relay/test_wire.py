"""Faithful translation: every canonical request, written in the upstream's wire format and
parsed back by the official dialect's parser, is the same request."""

from __future__ import annotations

import json

import pytest

from conftest import mask_bytes, png_bytes
from ideohub.api.dialects import ENDPOINTS
from ideohub.api.dialects.fields import Fields, UploadedFile
from ideohub.domain import enums as E
from ideohub.domain.operations import (
    ColorMember,
    ColorPalette,
    DescribeRequest,
    EditRequest,
    GenerateRequest,
    Operation,
    ReframeRequest,
    RemixRequest,
    UpscaleRequest,
    V3EditRequest,
    V3GenerateRequest,
    V3GenerateTransparentRequest,
    V3InpaintRequest,
    V3ReframeRequest,
    V3RemixRequest,
    V3ReplaceBackgroundRequest,
)
from ideohub.engines.relay.channels import Channel
from ideohub.engines.relay.wire import to_wire
from ideohub.media.decode import ImageLimits, read_image

LIMITS = ImageLimits()


def img(name: str, w: int = 32, h: int = 32, seed: int = 0):
    return read_image(name, png_bytes(w, h, seed), LIMITS, filename=f"{name}.png")


def mask(name: str = "mask", w: int = 32, h: int = 32):
    return read_image(name, mask_bytes(w, h), LIMITS, filename=f"{name}.png")


PALETTE = ColorPalette(members=(ColorMember("#b470b3", 0.5), ColorMember("#fff")))

CASES = [
    GenerateRequest(prompt="a cat", model=E.Model.V_2, aspect_ratio=E.AspectRatio.ASPECT_16_10,
                    magic_prompt_option=E.MagicPrompt.ON, magic_prompt_version=E.MagicPromptVersion.V_0_3, seed=7,
                    style_type=E.StyleType.ANIME, negative_prompt="dogs", num_images=3,
                    color_palette=ColorPalette(name=E.ColorPaletteName.PASTEL)),
    GenerateRequest(prompt="plain", model=E.Model.V_2A_TURBO, resolution="RESOLUTION_1280_800"),
    RemixRequest(prompt="remix it", image_file=img("image_file"), image_weight=77, model=E.Model.V_1, seed=3),
    EditRequest(image_file=img("image_file"), mask=mask(), prompt="hat", model=E.Model.V_2_TURBO,
                magic_prompt_option=E.MagicPrompt.OFF, num_images=2, seed=9, style_type=E.StyleType.REALISTIC),
    ReframeRequest(image_file=img("image_file"), resolution="RESOLUTION_1536_512", model=E.Model.V_2, num_images=2),
    UpscaleRequest(image_file=img("image_file"), prompt="sharper", resemblance=55, detail=90, num_images=2, seed=1),
    UpscaleRequest(image_file=img("image_file")),
    DescribeRequest(image_file=img("image_file"), describe_model_version=E.DescribeModelVersion.V_2),
    V3GenerateRequest(prompt="json body", rendering_speed=E.RenderingSpeed.TURBO, aspect_ratio=E.AspectRatioV3.R_16x9,
                      style_codes=("AAFF5733", "0011AABB"), color_palette=PALETTE, num_images=2, seed=5,
                      magic_prompt=E.MagicPrompt.AUTO, negative_prompt="blur"),
    V3GenerateRequest(prompt="with files", resolution="1280x800", style_type=E.StyleTypeV3.FICTION,
                      style_reference_images=(img("style_reference_images", seed=1), img("style_reference_images", seed=2)),
                      character_reference_images=(img("character_reference_images", seed=3),),
                      character_reference_images_mask=(mask("character_reference_images_mask"),),
                      style_preset=None, custom_model_uri="model/mine/version/2"),
    V3RemixRequest(prompt="remix", image=img("image"), image_weight=60, style_preset=E.StylePreset("80S_ILLUSTRATION")),
    V3EditRequest(prompt="edit", image=img("image"), mask=mask(), rendering_speed=E.RenderingSpeed.QUALITY,
                  style_codes=("AAFF5733",)),
    V3InpaintRequest(prompt="inpaint", image=img("image"), mask=mask(), magic_prompt=E.MagicPrompt.ON),
    V3ReframeRequest(image=img("image"), resolution="512x1536", num_images=4, color_palette=PALETTE),
    V3ReplaceBackgroundRequest(image=img("image"), prompt="forest", rendering_speed=E.RenderingSpeed.FLASH,
                               style_reference_images=(img("style_reference_images"),)),
    V3GenerateTransparentRequest(prompt="sticker", upscale_factor=E.UpscaleFactor.X2,
                                 aspect_ratio=E.AspectRatioV3.R_1x1, num_images=2),
]


def fields_from_wire(wire) -> Fields:
    if wire.json_body is not None:
        return Fields.from_json_object(json.loads(json.dumps(wire.json_body)), LIMITS)
    f = Fields(limits=LIMITS)
    for name, (filename, data, ctype) in wire.parts:
        if filename is None:
            f.values.setdefault(name, []).append(data.decode())
        else:
            f.files.setdefault(name, []).append(UploadedFile(data, filename, ctype))
    return f


@pytest.mark.parametrize("request_", CASES, ids=lambda r: r.operation.value)
def test_round_trip(request_):
    wire = to_wire(request_)
    parsed = ENDPOINTS[request_.operation].parse(fields_from_wire(wire))
    assert parsed == request_


def test_json_parts_carry_their_content_type():
    wire = to_wire(CASES[2])  # legacy remix: image_request is a JSON part
    names = [(n, fn, ct) for n, (fn, _d, ct) in wire.parts]
    assert ("image_request", None, "application/json") in names
    assert ("image_file", "image_file.png", "image/png") in names
    v3 = to_wire(CASES[13])
    assert ("color_palette", None, "application/json") in [(n, fn, ct) for n, (fn, _d, ct) in v3.parts]


def test_generate_without_files_is_json_and_legacy_generate_wraps_image_request():
    assert set(to_wire(CASES[0]).json_body) == {"image_request"}
    assert to_wire(CASES[8]).json_body["style_codes"] == ["AAFF5733", "0011AABB"]
    assert to_wire(CASES[9]).parts is not None  # files force multipart


def test_repeated_parts_for_arrays():
    wire = to_wire(CASES[9])
    names = [n for n, _ in wire.parts]
    assert names.count("style_reference_images") == 2


@pytest.mark.parametrize(
    "path_style,op,expected",
    [
        ("official", Operation.GENERATE, "http://u/generate"),
        ("official", Operation.V3_GENERATE, "http://u/v1/ideogram-v3/generate"),
        ("ideogram", Operation.UPSCALE, "http://u/ideogram/upscale"),
        ("ideogram", Operation.V3_REMIX, "http://u/ideogram/v1/ideogram-v3/remix"),
        ("ideogram-v1", Operation.GENERATE, "http://u/ideogram/v1/generate"),
        ("ideogram-v1", Operation.V3_GENERATE, "http://u/ideogram/v1/ideogram-v3/generate"),
    ],
)
def test_channel_paths(path_style, op, expected):
    ch = Channel(name="c", kind="relay", base_url="http://u/", key="k", path_style=path_style)
    assert ch.url_for(op) == expected


def test_channel_auth_styles_and_secret_never_in_listing():
    official = Channel(name="o", kind="ideogram", base_url="https://api.ideogram.ai", key="s3cret", auth="bearer")
    assert official.auth_headers() == {"Api-Key": "s3cret"}  # the official API only takes Api-Key
    relay = Channel(name="r", kind="relay", base_url="http://r", key="s3cret", auth="bearer")
    assert relay.auth_headers() == {"Authorization": "Bearer s3cret"}
    assert "s3cret" not in json.dumps(relay.public()) and "s3cret" not in repr(relay)
