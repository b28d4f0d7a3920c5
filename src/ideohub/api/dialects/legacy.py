"""The legacy dialect: ``/generate`` (JSON ``image_request``), ``/remix`` and ``/upscale``
(``image_file`` + ``image_request`` JSON string part), ``/edit`` and ``/reframe`` (flat
multipart), ``/describe`` (``image_file`` + ``describe_model_version``). Reference §5."""

from __future__ import annotations

from typing import Any

from ...domain.enums import (
    AspectRatio,
    DescribeModelVersion,
    MagicPrompt,
    MagicPromptVersion,
    Model,
    StyleType,
)
from ...domain.operations import (
    DescribeRequest,
    EditRequest,
    GenerateRequest,
    ReframeRequest,
    RemixRequest,
    UpscaleRequest,
)
from ...domain.sizes import LEGACY_RESOLUTIONS
from ...media.masks import check_mask_pixels
from .fields import Fields, build

_RES_HINT = " (use a RESOLUTION_<W>_<H> value such as RESOLUTION_1024_1024)"


def _image_request_fields(r: Fields) -> dict[str, Any]:
    """The ``ImageRequest`` fields shared by /generate and /remix."""
    return dict(
        prompt=r.text("prompt", required=True),
        model=r.enum("model", Model, default=Model.V_2),
        aspect_ratio=r.enum("aspect_ratio", AspectRatio),
        resolution=r.choice("resolution", LEGACY_RESOLUTIONS, hint=_RES_HINT),
        magic_prompt_option=r.enum("magic_prompt_option", MagicPrompt),
        magic_prompt_version=r.enum("magic_prompt_version", MagicPromptVersion),
        seed=r.integer("seed"),
        style_type=r.enum("style_type", StyleType),
        negative_prompt=r.text("negative_prompt"),
        num_images=r.integer("num_images", 1),
        color_palette=r.color_palette(),
    )


def parse_generate(f: Fields) -> GenerateRequest:
    r = f.nested_json("image_request")
    return build(GenerateRequest, r.prefix, **_image_request_fields(r))


def parse_remix(f: Fields) -> RemixRequest:
    image = f.file("image_file")
    r = f.nested_json("image_request")
    return build(
        RemixRequest, r.prefix, image_file=image, image_weight=r.integer("image_weight", 50), **_image_request_fields(r)
    )


def parse_upscale(f: Fields) -> UpscaleRequest:
    image = f.file("image_file")
    r = f.nested_json("image_request")
    return build(
        UpscaleRequest,
        r.prefix,
        image_file=image,
        prompt=r.text("prompt"),
        resemblance=r.integer("resemblance", 50),
        detail=r.integer("detail", 50),
        magic_prompt_option=r.enum("magic_prompt_option", MagicPrompt),
        magic_prompt_version=r.enum("magic_prompt_version", MagicPromptVersion),
        num_images=r.integer("num_images", 1),
        seed=r.integer("seed"),
    )


def parse_edit(f: Fields) -> EditRequest:
    req = build(
        EditRequest,
        image_file=f.file("image_file"),
        mask=f.file("mask"),
        prompt=f.text("prompt", required=True),
        model=f.enum("model", Model, required=True),
        magic_prompt_option=f.enum("magic_prompt_option", MagicPrompt),
        num_images=f.integer("num_images", 1),
        seed=f.integer("seed"),
        style_type=f.enum("style_type", StyleType),
    )
    check_mask_pixels(req.mask)
    return req


def parse_reframe(f: Fields) -> ReframeRequest:
    return build(
        ReframeRequest,
        image_file=f.file("image_file"),
        resolution=f.choice("resolution", LEGACY_RESOLUTIONS, required=True, hint=_RES_HINT),
        model=f.enum("model", Model, required=True),
        num_images=f.integer("num_images", 1),
        seed=f.integer("seed"),
        style_type=f.enum("style_type", StyleType),
    )


def parse_describe(f: Fields) -> DescribeRequest:
    return build(
        DescribeRequest,
        image_file=f.file("image_file"),
        describe_model_version=f.enum("describe_model_version", DescribeModelVersion, DescribeModelVersion.V_3),
    )
