"""The Ideogram 3.0 dialect: ``/v1/ideogram-v3/*``, flat fields (multipart; generate and
generate-transparent also JSON), image part ``image``, ``magic_prompt`` (not
``magic_prompt_option``), arrays as repeated parts, ``color_palette`` as a JSON string. Reference §6."""

from __future__ import annotations

from typing import Any

from ...domain.enums import AspectRatioV3, MagicPrompt, RenderingSpeed, StylePreset, StyleTypeV3, UpscaleFactor
from ...domain.operations import (
    V3EditRequest,
    V3GenerateRequest,
    V3GenerateTransparentRequest,
    V3InpaintRequest,
    V3ReframeRequest,
    V3RemixRequest,
    V3ReplaceBackgroundRequest,
)
from ...domain.sizes import V3_RESOLUTIONS
from ...media.masks import check_mask_pixels
from .fields import Fields, build

_RES_HINT = " (use a ResolutionV3 value such as 1024x1024)"


def _styling(f: Fields) -> dict[str, Any]:
    """Fields every styled V3 operation shares."""
    return dict(
        seed=f.integer("seed"),
        num_images=f.integer("num_images", 1),
        rendering_speed=f.enum("rendering_speed", RenderingSpeed, RenderingSpeed.DEFAULT),
        color_palette=f.color_palette(),
        style_codes=f.string_list("style_codes"),
        style_preset=f.enum("style_preset", StylePreset),
        style_reference_images=f.file_list("style_reference_images"),
    )


def _characters(f: Fields) -> dict[str, Any]:
    return dict(
        style_type=f.enum("style_type", StyleTypeV3),
        custom_model_uri=f.text("custom_model_uri"),
        character_reference_images=f.file_list("character_reference_images"),
        character_reference_images_mask=f.file_list("character_reference_images_mask"),
    )


def _generate_fields(f: Fields) -> dict[str, Any]:
    return dict(
        prompt=f.text("prompt", required=True),
        resolution=f.choice("resolution", V3_RESOLUTIONS, hint=_RES_HINT),
        aspect_ratio=f.enum("aspect_ratio", AspectRatioV3),
        magic_prompt=f.enum("magic_prompt", MagicPrompt),
        negative_prompt=f.text("negative_prompt"),
        **_styling(f),
        **_characters(f),
    )


def parse_generate(f: Fields) -> V3GenerateRequest:
    return build(V3GenerateRequest, **_generate_fields(f))


def parse_remix(f: Fields) -> V3RemixRequest:
    return build(V3RemixRequest, image=f.file("image"), image_weight=f.integer("image_weight", 50), **_generate_fields(f))


def _parse_edit(f: Fields, cls: type[V3EditRequest]) -> V3EditRequest:
    req = build(
        cls,
        image=f.file("image"),
        mask=f.file("mask"),
        prompt=f.text("prompt", required=True),
        magic_prompt=f.enum("magic_prompt", MagicPrompt),
        **_styling(f),
        **_characters(f),
    )
    check_mask_pixels(req.mask)
    return req


def parse_edit(f: Fields) -> V3EditRequest:
    return _parse_edit(f, V3EditRequest)


def parse_inpaint(f: Fields) -> V3EditRequest:
    return _parse_edit(f, V3InpaintRequest)


def parse_reframe(f: Fields) -> V3ReframeRequest:
    return build(
        V3ReframeRequest,
        image=f.file("image"),
        resolution=f.choice("resolution", V3_RESOLUTIONS, required=True, hint=_RES_HINT),
        **_styling(f),
    )


def parse_replace_background(f: Fields) -> V3ReplaceBackgroundRequest:
    return build(
        V3ReplaceBackgroundRequest,
        image=f.file("image"),
        prompt=f.text("prompt", required=True),
        magic_prompt=f.enum("magic_prompt", MagicPrompt),
        **_styling(f),
    )


def parse_generate_transparent(f: Fields) -> V3GenerateTransparentRequest:
    return build(
        V3GenerateTransparentRequest,
        prompt=f.text("prompt", required=True),
        seed=f.integer("seed"),
        upscale_factor=f.enum("upscale_factor", UpscaleFactor, UpscaleFactor.X1),
        aspect_ratio=f.enum("aspect_ratio", AspectRatioV3),
        rendering_speed=f.enum("rendering_speed", RenderingSpeed, RenderingSpeed.DEFAULT),
        magic_prompt=f.enum("magic_prompt", MagicPrompt),
        negative_prompt=f.text("negative_prompt"),
        num_images=f.integer("num_images", 1),
        custom_model_uri=f.text("custom_model_uri"),
    )
