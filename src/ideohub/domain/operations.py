"""Operations and their canonical requests and results.

Every HTTP dialect parses into exactly one of the request types below; engines, billing and
the request record see nothing else. Attribute names are the official wire names, so a
request can be written back to any dialect field by field (the relay engine does that).

Construction enforces the semantic rules of reference §10 (ranges, XOR rules, model gates),
so an invalid canonical request cannot exist. Parsers only do syntax: types, enums, files.
``None`` means "the caller did not send it"; defaults that are harmless to send are filled in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar

from .enums import (
    EDIT_MODELS,
    NEGATIVE_PROMPT_MODELS,
    NO_COLOR_PALETTE_MODELS,
    V1_MODELS,
    AspectRatio,
    AspectRatioV3,
    ColorPaletteName,
    DescribeModelVersion,
    MagicPrompt,
    MagicPromptVersion,
    Model,
    RenderingSpeed,
    StylePreset,
    StyleType,
    StyleTypeV3,
    UpscaleFactor,
)
from .errors import InvalidRequest
from .sizes import LEGACY_RESOLUTIONS, V3_RESOLUTIONS, Size, size_for_aspect

SEED_MAX = 2_147_483_647
NUM_IMAGES_MAX = 8
REFERENCE_SET_MAX_BYTES = 10 * 1024 * 1024
_HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")
_STYLE_CODE = re.compile(r"^[0-9A-Fa-f]{8}$")
_CUSTOM_MODEL_URI = re.compile(r"^model/[^/\s]+/version/[^/\s]+$")


class Family(StrEnum):
    """The API generations an endpoint belongs to; each has its own dialect and answer shapes."""

    LEGACY = "legacy"  # /generate, /remix, … (2024)
    V3 = "3.0"  # /v1/ideogram-v3/* (2025)
    V4 = "4.0"  # /v1/ideogram-v4/*, /v1/ideogram-v45/* (2026)
    V2 = "v2"  # /v2/image/{capability}/{model} (October 2026)


# The /v2 API: one path per capability × model (Ideogram's October-2026 OpenAPI). Models of other
# vendors that Ideogram resells are relayed only through a channel that declares them and only
# with a price the operator set (``RESOLD_MODELS``); never substituted.
V2_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "generate": ("auto", "ideogram-2", "ideogram-2a", "ideogram-3", "ideogram-3-character", "ideogram-3-custom-model",
                 "ideogram-3-transparent", "ideogram-4", "ideogram-4-5", "ideogram-4-custom-model",
                 "ideogram-4-transparent",
                 "gpt-image-2", "gpt-image-2-5-flare", "gpt-image-2-5-sunburst", "nano-banana-2", "nano-banana-pro",
                 "p-image-ideogram", "z-image"),
    "remix": ("auto", "ideogram-3", "ideogram-3-character", "ideogram-3-custom-model", "ideogram-4"),
    "inpaint": ("ideogram-3", "ideogram-3-character", "ideogram-3-custom-model"),
    "reframe": ("ideogram-3", "nano-banana-2"),
    "upscale": ("auto", "nano-banana-pro", "topaz-bloom-2", "topaz-redefine"),
    "remove-background": ("ideogram-1",),
    "replace-background": ("ideogram-3", "gpt-image-2"),
    "describe": ("ideogram-3", "ideogram-4"),
}
RESOLD_MODELS = frozenset({"gpt-image-2", "gpt-image-2-5-flare", "gpt-image-2-5-sunburst", "nano-banana-2",
                           "nano-banana-pro", "p-image-ideogram", "z-image", "topaz-bloom-2", "topaz-redefine"})

_MEMBERS = [
    ("GENERATE", "generate"), ("REMIX", "remix"), ("EDIT", "edit"), ("REFRAME", "reframe"), ("UPSCALE", "upscale"),
    ("DESCRIBE", "describe"),
    ("V3_GENERATE", "v3-generate"), ("V3_REMIX", "v3-remix"), ("V3_EDIT", "v3-edit"), ("V3_INPAINT", "v3-inpaint"),
    ("V3_REFRAME", "v3-reframe"), ("V3_REPLACE_BACKGROUND", "v3-replace-background"),
    ("V3_GENERATE_TRANSPARENT", "v3-generate-transparent"),
    ("V4_GENERATE", "v4-generate"), ("V4_REMIX", "v4-remix"), ("V4_GENERATE_TRANSPARENT", "v4-generate-transparent"),
    ("V4_MAGIC_PROMPT", "v4-magic-prompt"), ("V4_DESCRIBE", "v4-describe"), ("V45_GENERATE", "v45-generate"),
    *[(f"V2_{cap}_{model}".upper().replace("-", "_"), f"v2-{cap}-{model}")
      for cap, models in V2_CAPABILITIES.items() for model in models],
]


class _OperationBase(StrEnum):
    """An endpoint's operation: what admission, engines, prices and channels key on. Values are
    stable names (``generate``, ``v3-remix``, ``v4-generate``, ``v2-generate-ideogram-4``)."""

    @property
    def family(self) -> Family:
        v = self.value
        if v.startswith("v2-"):
            return Family.V2
        if v.startswith(("v4-", "v45-")):
            return Family.V4
        return Family.V3 if v.startswith("v3-") else Family.LEGACY

    @property
    def is_v3(self) -> bool:
        return self.family is Family.V3

    @property
    def v2_parts(self) -> tuple[str, str]:
        """(capability, model) of a /v2 operation."""
        rest = self.value.removeprefix("v2-")
        for cap in V2_CAPABILITIES:
            if rest.startswith(cap + "-"):
                return cap, rest[len(cap) + 1:]
        raise ValueError(f"{self.value} is not a /v2 operation")

    @property
    def resold(self) -> bool:
        """A model of another vendor that Ideogram resells (/v2 only)."""
        return self.family is Family.V2 and self.v2_parts[1] in RESOLD_MODELS

    @property
    def official_path(self) -> str:
        """The path on api.ideogram.ai, e.g. ``/upscale``, ``/v1/ideogram-v3/generate``,
        ``/v1/ideogram-v45/generate`` or ``/v2/image/generate/ideogram-4``."""
        family = self.family
        if family is Family.V2:
            cap, model = self.v2_parts
            return f"/v2/image/{cap}/{model}"
        if family is Family.V4:
            version, _, rest = self.value.partition("-")
            return f"/v1/ideogram-{version}/{rest}"
        if family is Family.V3:
            return "/v1/ideogram-v3/" + self.value.removeprefix("v3-")
        return "/" + self.value


# Built from the table above (the /v2 members follow V2_CAPABILITIES): Operation.V2_GENERATE_IDEOGRAM_4 …
Operation = _OperationBase("Operation", _MEMBERS)  # type: ignore[call-arg]


# ---------------------------------------------------------------- value objects


@dataclass(frozen=True)
class ImageInput:
    """An uploaded image, already sniffed and size-checked by ``media.decode``."""

    data: bytes = field(repr=False)
    media_type: str  # image/png, image/jpeg or image/webp: from the bytes, never the name
    width: int
    height: int
    filename: str | None = None

    @property
    def size(self) -> Size:
        return Size(self.width, self.height)

    def summary(self) -> dict[str, Any]:
        return {"type": self.media_type, "size": str(self.size), "bytes": len(self.data)}


@dataclass(frozen=True)
class ColorMember:
    color_hex: str
    color_weight: float | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"color_hex": self.color_hex}
        if self.color_weight is not None:
            out["color_weight"] = self.color_weight
        return out


@dataclass(frozen=True)
class ColorPalette:
    """Exactly one of a preset ``name`` or 1–8 ``members``."""

    name: ColorPaletteName | None = None
    members: tuple[ColorMember, ...] | None = None

    def __post_init__(self) -> None:
        if (self.name is None) == (self.members is None):
            raise InvalidRequest("color_palette", "must have exactly one of 'name' or 'members'")
        if self.members is not None:
            if not 1 <= len(self.members) <= 8:
                raise InvalidRequest("color_palette.members", "must have 1 to 8 members")
            for i, m in enumerate(self.members):
                if not _HEX_COLOR.fullmatch(m.color_hex):
                    raise InvalidRequest(f"color_palette.members[{i}].color_hex", "must be #RGB or #RRGGBB hex")
                if m.color_weight is not None and not 0.05 <= m.color_weight <= 1.0:
                    raise InvalidRequest(f"color_palette.members[{i}].color_weight", "must be between 0.05 and 1.0")

    def to_wire(self) -> dict[str, Any]:
        if self.name is not None:
            return {"name": self.name.value}
        return {"members": [m.to_wire() for m in self.members or ()]}


# ---------------------------------------------------------------- rule helpers


def check_range(name: str, value: int | None, lo: int, hi: int) -> None:
    if value is not None and not lo <= value <= hi:
        raise InvalidRequest(name, f"must be an integer from {lo} to {hi}")


def _check_prompt(prompt: str | None, *, required: bool = True) -> None:
    if prompt is None or not prompt.strip():
        if required:
            raise InvalidRequest("prompt", "is required and must not be empty")


def _exclusive(a_name: str, a: Any, b_name: str, b: Any) -> None:
    if a is not None and b is not None:
        raise InvalidRequest(a_name, f"cannot be used together with {b_name}")


# ---------------------------------------------------------------- base


@dataclass(frozen=True, kw_only=True)
class CanonicalRequest:
    operation: ClassVar[Operation]

    num_images: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        check_range("num_images", self.num_images, 1, NUM_IMAGES_MAX)
        check_range("seed", self.seed, 0, SEED_MAX)

    def image_inputs(self) -> list[tuple[str, ImageInput]]:
        """Every uploaded file as (wire field name, image), in field order."""
        out: list[tuple[str, ImageInput]] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ImageInput):
                out.append((f.name, value))
            elif isinstance(value, tuple) and value and isinstance(value[0], ImageInput):
                out.extend((f.name, v) for v in value)
        return out

    def wire_params(self) -> dict[str, Any]:
        """Non-file fields that were set, in wire form (enums as strings, palette as a dict)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or isinstance(value, ImageInput):
                continue
            if isinstance(value, tuple):
                if value and isinstance(value[0], ImageInput):
                    continue
                value = list(value)
            elif isinstance(value, ColorPalette):
                value = value.to_wire()
            elif isinstance(value, StrEnum):
                value = value.value
            out[f.name] = value
        return out

    def summary(self) -> dict[str, Any]:
        """What the request record keeps: parameters and image metadata, never image bytes."""
        out = self.wire_params()
        for name, image in self.image_inputs():
            out.setdefault(name, []).append(image.summary())
        return out

    @property
    def prompt_text(self) -> str | None:
        return getattr(self, "prompt", None)


# ---------------------------------------------------------------- legacy endpoints


@dataclass(frozen=True, kw_only=True)
class GenerateRequest(CanonicalRequest):
    """``POST /generate`` (``image_request`` JSON)."""

    operation: ClassVar[Operation] = Operation.GENERATE

    prompt: str
    model: Model = Model.V_2
    aspect_ratio: AspectRatio | None = None
    resolution: str | None = None  # legacy RESOLUTION_W_H
    magic_prompt_option: MagicPrompt | None = None
    magic_prompt_version: MagicPromptVersion | None = None
    style_type: StyleType | None = None
    negative_prompt: str | None = None
    color_palette: ColorPalette | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_prompt(self.prompt)
        _exclusive("aspect_ratio", self.aspect_ratio, "resolution", self.resolution)
        if self.resolution is not None and self.resolution not in LEGACY_RESOLUTIONS:
            raise InvalidRequest("resolution", "must be one of the RESOLUTION_<W>_<H> values")
        if self.style_type is not None and self.model in V1_MODELS:
            raise InvalidRequest("style_type", f"must not be specified for model {self.model.value}")
        if self.negative_prompt is not None and self.model not in NEGATIVE_PROMPT_MODELS:
            raise InvalidRequest("negative_prompt", "is only available for models V_1, V_1_TURBO, V_2 and V_2_TURBO")
        if self.color_palette is not None and self.model in NO_COLOR_PALETTE_MODELS:
            raise InvalidRequest("color_palette", f"is not supported by model {self.model.value}")

    @property
    def output_size(self) -> Size:
        if self.resolution is not None:
            return LEGACY_RESOLUTIONS[self.resolution]
        return size_for_aspect(self.aspect_ratio or AspectRatio.ASPECT_1_1, self.model)


@dataclass(frozen=True, kw_only=True)
class RemixRequest(GenerateRequest):
    """``POST /remix``: ``image_file`` + ``image_request`` (JSON string part)."""

    operation: ClassVar[Operation] = Operation.REMIX

    image_file: ImageInput
    image_weight: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("image_weight", self.image_weight, 1, 100)


def check_mask(mask: ImageInput, image: ImageInput, mask_field: str = "mask") -> None:
    """Size rule only; the black-and-white and not-all-white rules need pixels (``media.masks``)."""
    if mask.size != image.size:
        raise InvalidRequest(mask_field, f"must be the same size as the image ({mask.size} vs {image.size})")


@dataclass(frozen=True, kw_only=True)
class EditRequest(CanonicalRequest):
    """``POST /edit``: flat multipart; only V_2 and V_2_TURBO."""

    operation: ClassVar[Operation] = Operation.EDIT

    image_file: ImageInput
    mask: ImageInput
    prompt: str
    model: Model
    magic_prompt_option: MagicPrompt | None = None
    style_type: StyleType | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_prompt(self.prompt)
        if self.model not in EDIT_MODELS:
            raise InvalidRequest("model", "edit is only supported for V_2 and V_2_TURBO")
        check_mask(self.mask, self.image_file)


@dataclass(frozen=True, kw_only=True)
class ReframeRequest(CanonicalRequest):
    """``POST /reframe``: flat multipart; ``resolution`` and ``model`` required."""

    operation: ClassVar[Operation] = Operation.REFRAME

    image_file: ImageInput
    resolution: str
    model: Model
    style_type: StyleType | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.resolution not in LEGACY_RESOLUTIONS:
            raise InvalidRequest("resolution", "must be one of the RESOLUTION_<W>_<H> values")
        if self.style_type is not None and self.model in V1_MODELS:
            raise InvalidRequest("style_type", f"must not be specified for model {self.model.value}")

    @property
    def output_size(self) -> Size:
        return LEGACY_RESOLUTIONS[self.resolution]


@dataclass(frozen=True, kw_only=True)
class UpscaleRequest(CanonicalRequest):
    """``POST /upscale``: ``image_file`` + ``image_request`` (all optional)."""

    operation: ClassVar[Operation] = Operation.UPSCALE

    image_file: ImageInput
    prompt: str | None = None
    resemblance: int = 50
    detail: int = 50
    magic_prompt_option: MagicPrompt | None = None
    magic_prompt_version: MagicPromptVersion | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("resemblance", self.resemblance, 1, 100)
        check_range("detail", self.detail, 1, 100)


@dataclass(frozen=True, kw_only=True)
class DescribeRequest(CanonicalRequest):
    """``POST /describe``: ``image_file`` (+ ``describe_model_version``)."""

    operation: ClassVar[Operation] = Operation.DESCRIBE

    image_file: ImageInput
    describe_model_version: DescribeModelVersion = DescribeModelVersion.V_3

    def wire_params(self) -> dict[str, Any]:
        # describe has neither num_images nor seed on the wire
        return {"describe_model_version": self.describe_model_version.value}


# ---------------------------------------------------------------- V3 endpoints


def _check_v3_style(req: Any, *, has_style_type: bool) -> None:
    codes = getattr(req, "style_codes", None)
    if codes is not None:
        if not codes:
            raise InvalidRequest("style_codes", "must not be empty when given")
        for code in codes:
            if not _STYLE_CODE.fullmatch(code):
                raise InvalidRequest("style_codes", f"'{code}' is not an 8-character hexadecimal code")
        if getattr(req, "style_reference_images", None):
            raise InvalidRequest("style_codes", "cannot be used together with style_reference_images")
        if has_style_type and req.style_type is not None:
            raise InvalidRequest("style_codes", "cannot be used together with style_type")
    preset = getattr(req, "style_preset", None)
    if preset is not None and (codes is not None or getattr(req, "style_reference_images", None)):
        raise InvalidRequest("style_preset", "cannot be used together with style_codes or style_reference_images")
    uri = getattr(req, "custom_model_uri", None)
    if uri is not None and not _CUSTOM_MODEL_URI.fullmatch(uri):
        raise InvalidRequest("custom_model_uri", "must have the form model/<model_name>/version/<version_name>")
    refs = getattr(req, "style_reference_images", None)
    if refs and sum(len(i.data) for i in refs) > REFERENCE_SET_MAX_BYTES:
        raise InvalidRequest("style_reference_images", "must total at most 10 MB")
    chars = getattr(req, "character_reference_images", None)
    masks = getattr(req, "character_reference_images_mask", None)
    if chars:
        if len(chars) > 1:
            raise InvalidRequest("character_reference_images", "at most 1 image is supported")
        if sum(len(i.data) for i in chars) > REFERENCE_SET_MAX_BYTES:
            raise InvalidRequest("character_reference_images", "must total at most 10 MB")
    if masks:
        if len(masks) != len(chars or ()):
            raise InvalidRequest(
                "character_reference_images_mask", "count must equal the number of character_reference_images"
            )
        for m, c in zip(masks, chars or ()):
            check_mask(m, c, "character_reference_images_mask")


@dataclass(frozen=True, kw_only=True)
class _V3Styled(CanonicalRequest):
    rendering_speed: RenderingSpeed = RenderingSpeed.DEFAULT
    color_palette: ColorPalette | None = None
    style_codes: tuple[str, ...] | None = None
    style_preset: StylePreset | None = None  # type: ignore[valid-type]
    style_reference_images: tuple[ImageInput, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class V3GenerateRequest(_V3Styled):
    operation: ClassVar[Operation] = Operation.V3_GENERATE

    prompt: str
    resolution: str | None = None
    aspect_ratio: AspectRatioV3 | None = None
    magic_prompt: MagicPrompt | None = None
    negative_prompt: str | None = None
    style_type: StyleTypeV3 | None = None
    custom_model_uri: str | None = None
    character_reference_images: tuple[ImageInput, ...] | None = None
    character_reference_images_mask: tuple[ImageInput, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_prompt(self.prompt)
        _exclusive("aspect_ratio", self.aspect_ratio, "resolution", self.resolution)
        if self.resolution is not None and self.resolution not in V3_RESOLUTIONS:
            raise InvalidRequest("resolution", "must be one of the ResolutionV3 values such as 1024x1024")
        _check_v3_style(self, has_style_type=True)

    @property
    def output_size(self) -> Size:
        if self.resolution is not None:
            return V3_RESOLUTIONS[self.resolution]
        return size_for_aspect(self.aspect_ratio or AspectRatioV3.R_1x1)


@dataclass(frozen=True, kw_only=True)
class V3RemixRequest(V3GenerateRequest):
    operation: ClassVar[Operation] = Operation.V3_REMIX

    image: ImageInput
    image_weight: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("image_weight", self.image_weight, 1, 100)


@dataclass(frozen=True, kw_only=True)
class V3EditRequest(_V3Styled):
    """``/v1/ideogram-v3/edit`` (legacy name) — same schema as inpaint; output keeps the input size."""

    operation: ClassVar[Operation] = Operation.V3_EDIT

    image: ImageInput
    mask: ImageInput
    prompt: str
    magic_prompt: MagicPrompt | None = None
    style_type: StyleTypeV3 | None = None
    custom_model_uri: str | None = None
    character_reference_images: tuple[ImageInput, ...] | None = None
    character_reference_images_mask: tuple[ImageInput, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_prompt(self.prompt)
        check_mask(self.mask, self.image)
        _check_v3_style(self, has_style_type=True)


@dataclass(frozen=True, kw_only=True)
class V3InpaintRequest(V3EditRequest):
    operation: ClassVar[Operation] = Operation.V3_INPAINT


@dataclass(frozen=True, kw_only=True)
class V3ReframeRequest(_V3Styled):
    operation: ClassVar[Operation] = Operation.V3_REFRAME

    image: ImageInput
    resolution: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.resolution not in V3_RESOLUTIONS:
            raise InvalidRequest("resolution", "must be one of the ResolutionV3 values such as 1024x1024")
        _check_v3_style(self, has_style_type=False)

    @property
    def output_size(self) -> Size:
        return V3_RESOLUTIONS[self.resolution]


@dataclass(frozen=True, kw_only=True)
class V3ReplaceBackgroundRequest(_V3Styled):
    operation: ClassVar[Operation] = Operation.V3_REPLACE_BACKGROUND

    image: ImageInput
    prompt: str
    magic_prompt: MagicPrompt | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_prompt(self.prompt)
        _check_v3_style(self, has_style_type=False)


@dataclass(frozen=True, kw_only=True)
class V3GenerateTransparentRequest(CanonicalRequest):
    operation: ClassVar[Operation] = Operation.V3_GENERATE_TRANSPARENT

    prompt: str
    upscale_factor: UpscaleFactor = UpscaleFactor.X1
    aspect_ratio: AspectRatioV3 | None = None
    rendering_speed: RenderingSpeed = RenderingSpeed.DEFAULT
    magic_prompt: MagicPrompt | None = None
    negative_prompt: str | None = None
    custom_model_uri: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_prompt(self.prompt)
        _check_v3_style(self, has_style_type=False)

    @property
    def output_size(self) -> Size:
        return size_for_aspect(self.aspect_ratio or AspectRatioV3.R_1x1)


# ---------------------------------------------------------------- 4.0 and /v2 endpoints

NamedImage = tuple[str, ImageInput]  # (wire field, image)
# Fields that reach the operator's own upstream account, not the request: relayed only where the
# channel allows it (``Channel.account_fields``).
ACCOUNT_FIELDS = frozenset({"target_collection_id", "custom_model_uri", "magic_prompt_system_prompt_config_id"})


@dataclass(frozen=True, kw_only=True)
class SpecRequest(CanonicalRequest):
    """A request of the 4.0 and /v2 families, kept in its official wire form.

    These families are many (a /v2 path per capability × model) and their schemas are Ideogram's
    own: the dialect (``api.dialects.spec``) validates each body against the vendored official
    request schema plus the rules a schema cannot say (``domain.spec_rules``), and the request
    carries the validated fields as sent, so a relay forwards them faithfully and a local engine
    reads them by their official names. ``num_images`` and ``seed`` mirror the fields of the same
    name (admission fixes the seed; ``wire_params`` writes it back)."""

    op: Operation
    params: dict[str, Any] = field(default_factory=dict)  # every non-file field, JSON-typed
    images: tuple[NamedImage, ...] = ()  # uploaded (or resolved) files, in field order
    seedless: bool = False  # the path's schema has no ``seed`` (describe, magic prompt, /v2 remix ideogram-4 …)

    @property  # type: ignore[override]
    def operation(self) -> Operation:  # type: ignore[override]
        return self.op

    @property
    def has_seed(self) -> bool:
        """Whether the endpoint has a ``seed`` field (admission fixes one only where it does)."""
        return not self.seedless

    def image_inputs(self) -> list[tuple[str, ImageInput]]:
        return list(self.images)

    def wire_params(self) -> dict[str, Any]:
        out = dict(self.params)
        if self.seed is not None and self.has_seed:
            out["seed"] = self.seed
        return out

    def summary(self) -> dict[str, Any]:
        out = self.wire_params()
        for name, image in self.images:
            out.setdefault(name, []).append(image.summary())
        return out

    @property
    def prompt_text(self) -> str | None:
        for name in ("prompt", "text_prompt"):
            value = self.params.get(name)
            if isinstance(value, str):
                return value
        return None

    def image(self, name: str) -> ImageInput | None:
        return next((image for field_name, image in self.images if field_name == name), None)

    @property
    def output_size(self) -> Size | None:
        """The size asked for (a ``WxH`` resolution), else the input image's; None when neither says."""
        resolution = self.params.get("resolution")
        if isinstance(resolution, str):
            width, _, height = resolution.partition("x")
            if width.isdigit() and height.isdigit():
                return Size(int(width), int(height))
        image = self.image("image")
        return image.size if image is not None else None


REQUEST_TYPES: dict[Operation, type[CanonicalRequest]] = {
    t.operation: t
    for t in (
        GenerateRequest,
        RemixRequest,
        EditRequest,
        ReframeRequest,
        UpscaleRequest,
        DescribeRequest,
        V3GenerateRequest,
        V3RemixRequest,
        V3EditRequest,
        V3InpaintRequest,
        V3ReframeRequest,
        V3ReplaceBackgroundRequest,
        V3GenerateTransparentRequest,
    )
}


# ---------------------------------------------------------------- results


@dataclass
class ImageOutput:
    """One produced image. ``is_image_safe`` None means "not yet classified": the service runs
    its classifier. A relayed image carries the upstream's verdict and is trusted."""

    data: bytes | None = field(repr=False)
    media_type: str
    resolution: Size
    prompt: str
    seed: int
    is_image_safe: bool | None = None
    upscaled_resolution: Size | None = None
    style_type: str | None = None


@dataclass
class ImageResult:
    images: list[ImageOutput]


@dataclass
class DescribeResult:
    descriptions: list[str]


@dataclass
class JsonResult:
    """A result that is a JSON document, not images: 4.0's magic prompt (``{json_prompt,
    aspect_ratio}``) and describe (``{json_prompt}``), validated before it gets here."""

    body: dict[str, Any]
