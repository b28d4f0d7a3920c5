"""The HTTP dialects: one parser per endpoint, keyed by official path.

Relay vendors serve the same endpoints under ``/ideogram`` + official path (AiHubMix,
OpenAI-Hub) and ``/ideogram/v1`` + legacy path (AI-YIAPI); the parsers are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ...domain.operations import CanonicalRequest, Family, Operation
from . import legacy, spec, v3
from .fields import Fields, UploadedFile

__all__ = ["ENDPOINTS", "SPEC_ENDPOINTS", "Endpoint", "Fields", "UploadedFile", "all_endpoints", "all_paths",
           "image_paths"]


@dataclass(frozen=True)
class Endpoint:
    operation: Operation
    parse: Callable[[Fields], CanonicalRequest]
    json_body: bool  # accepts application/json
    multipart: bool  # accepts multipart/form-data
    text_fields: frozenset[str]  # top-level fields read (the official request schema's properties)
    file_fields: frozenset[str] = frozenset()  # file parts read; any other part is discarded while streaming
    auth_status: int = 401  # the spec answers 403 on /remix, /upscale, /v1/ideogram-v3/remix
    official: str | None = None  # the path, where it is not the operation's own (4.0's async variants)
    always_async: bool = False  # 4.0's /async/ paths: answered {"generation_id"} at once
    quotable: bool = True  # takes ?dry_run=true (every generation endpoint; not describe or magic prompt)
    max_upload_bytes: int | None = None  # per file, where the spec says (4.0, /v2); else max_upload_bytes

    @property
    def path(self) -> str:
        return self.official or self.operation.official_path

    @property
    def kept_fields(self) -> frozenset[str]:
        """What the intake keeps: the endpoint's own fields and how the caller wants the answer."""
        return self.text_fields | SUBMISSION_FIELDS


# Top-level on every endpoint (api.submission): Ideogram's async fields, our extension beyond 4.0
SUBMISSION_FIELDS = frozenset({"async", "webhook_url", "callback_url"})


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The fields of each endpoint, as Ideogram's OpenAPI declares them (tests/api check the two agree).
_V3_STYLE = "seed num_images rendering_speed color_palette style_codes style_preset"
_V3_CHARACTER = "style_type custom_model_uri"
_V3_CHARACTER_FILES = "character_reference_images character_reference_images_mask"
_V3_GENERATE = f"prompt resolution aspect_ratio magic_prompt negative_prompt {_V3_STYLE} {_V3_CHARACTER}"
_V3_EDIT = f"prompt magic_prompt {_V3_STYLE} {_V3_CHARACTER}"

ENDPOINTS: dict[Operation, Endpoint] = {
    e.operation: e
    for e in (
        Endpoint(Operation.GENERATE, legacy.parse_generate, json_body=True, multipart=False,
                 text_fields=_names("image_request")),
        Endpoint(Operation.REMIX, legacy.parse_remix, json_body=False, multipart=True,
                 text_fields=_names("image_request"), file_fields=_names("image_file"), auth_status=403),
        Endpoint(Operation.EDIT, legacy.parse_edit, json_body=False, multipart=True,
                 text_fields=_names("prompt model magic_prompt_option num_images seed style_type"),
                 file_fields=_names("image_file mask")),
        Endpoint(Operation.REFRAME, legacy.parse_reframe, json_body=False, multipart=True,
                 text_fields=_names("resolution model num_images seed style_type"), file_fields=_names("image_file")),
        Endpoint(Operation.UPSCALE, legacy.parse_upscale, json_body=False, multipart=True,
                 text_fields=_names("image_request"), file_fields=_names("image_file"), auth_status=403),
        Endpoint(Operation.DESCRIBE, legacy.parse_describe, json_body=False, multipart=True,
                 text_fields=_names("describe_model_version"), file_fields=_names("image_file"), quotable=False),
        Endpoint(Operation.V3_GENERATE, v3.parse_generate, json_body=True, multipart=True,
                 text_fields=_names(_V3_GENERATE),
                 file_fields=_names(f"style_reference_images {_V3_CHARACTER_FILES}")),
        Endpoint(Operation.V3_REMIX, v3.parse_remix, json_body=False, multipart=True,
                 text_fields=_names(f"image_weight {_V3_GENERATE}"),
                 file_fields=_names(f"image style_reference_images {_V3_CHARACTER_FILES}"), auth_status=403),
        Endpoint(Operation.V3_EDIT, v3.parse_edit, json_body=False, multipart=True,
                 text_fields=_names(_V3_EDIT),
                 file_fields=_names(f"image mask style_reference_images {_V3_CHARACTER_FILES}")),
        Endpoint(Operation.V3_INPAINT, v3.parse_inpaint, json_body=False, multipart=True,
                 text_fields=_names(_V3_EDIT),
                 file_fields=_names(f"image mask style_reference_images {_V3_CHARACTER_FILES}")),
        Endpoint(Operation.V3_REFRAME, v3.parse_reframe, json_body=False, multipart=True,
                 text_fields=_names(f"resolution {_V3_STYLE}"), file_fields=_names("image style_reference_images")),
        Endpoint(Operation.V3_REPLACE_BACKGROUND, v3.parse_replace_background, json_body=False, multipart=True,
                 text_fields=_names(f"prompt magic_prompt {_V3_STYLE}"),
                 file_fields=_names("image style_reference_images")),
        Endpoint(Operation.V3_GENERATE_TRANSPARENT, v3.parse_generate_transparent, json_body=True, multipart=True,
                 text_fields=_names("prompt seed upscale_factor aspect_ratio rendering_speed magic_prompt "
                                    "negative_prompt num_images custom_model_uri")),
    )
}

# 4.0's asynchronous variants (``webhook_url`` as a query parameter): path → operation
ASYNC_VARIANTS = {
    "/v1/ideogram-v4/async/generate": Operation.V4_GENERATE,
    "/v1/ideogram-v4/async/remix": Operation.V4_REMIX,
    "/v1/ideogram-v4/async/generate-transparent": Operation.V4_GENERATE_TRANSPARENT,
    "/v1/ideogram-v45/async/generate": Operation.V45_GENERATE,
}
_UNQUOTABLE = frozenset({Operation.V4_DESCRIBE, Operation.V4_MAGIC_PROMPT})
_MB = 1024 * 1024
# The largest file each path takes, as Ideogram's documentation of October 2026 states it (the
# /v2 remix and upscale inputs 50 MB, describe 10 MB, the rest 25 MB).
_V2_UPLOAD_MB = {"remix": 50, "upscale": 50, "describe": 10}
_V4_UPLOAD_MB = {Operation.V4_DESCRIBE: 10}


def upload_limit(op: Operation) -> int:
    if op.family is Family.V2:
        return _V2_UPLOAD_MB.get(op.v2_parts[0], 25) * _MB
    return _V4_UPLOAD_MB.get(op, 25) * _MB


def _spec_endpoint(op: Operation, path: str, always_async: bool = False) -> Endpoint | None:
    found = spec.bodies_for(path)
    if found is None:
        return None  # a path no vendored document declares (logged by nothing: it is simply not served)
    april = spec.APRIL_2026 if op in spec.APRIL_OPS else frozenset()
    quotable = op not in _UNQUOTABLE and not (op.family is Family.V2 and op.v2_parts[0] == "describe")
    return Endpoint(op, partial(spec.parse, op, path), json_body="application/json" in found.bodies,
                    multipart=any(mt != "application/json" for mt in found.bodies),
                    text_fields=found.text_fields | april, file_fields=found.file_fields,
                    official=path if path != op.official_path else None, always_async=always_async,
                    quotable=quotable, max_upload_bytes=upload_limit(op))


def _spec_endpoints() -> list[Endpoint]:
    out = [_spec_endpoint(op, op.official_path) for op in Operation if op.family in (Family.V4, Family.V2)]
    out += [_spec_endpoint(op, path, always_async=True) for path, op in ASYNC_VARIANTS.items()]
    return [e for e in out if e is not None]


# The 4.0 and /v2 endpoints: every path of theirs that a vendored official document declares
SPEC_ENDPOINTS: list[Endpoint] = _spec_endpoints()

RELAY_PREFIX = "/ideogram"
RELAY_V1_PREFIX = "/ideogram/v1"


def all_endpoints() -> list[Endpoint]:
    return [*ENDPOINTS.values(), *SPEC_ENDPOINTS]


def all_paths(endpoint: Endpoint) -> list[str]:
    """Every path an endpoint answers on: official, ``/ideogram`` + official, and for
    legacy endpoints ``/ideogram/v1`` + legacy path."""
    paths = [endpoint.path, RELAY_PREFIX + endpoint.path]
    if endpoint.operation.family is Family.LEGACY:
        paths.append(RELAY_V1_PREFIX + endpoint.path)
    return paths


def image_paths() -> frozenset[str]:
    """Every path of every image endpoint (what the body limits treat as an image request)."""
    return frozenset(p for e in all_endpoints() for p in all_paths(e))
