"""The HTTP dialects: one parser per endpoint, keyed by official path.

Relay vendors serve the same endpoints under ``/ideogram`` + official path (AiHubMix,
OpenAI-Hub) and ``/ideogram/v1`` + legacy path (AI-YIAPI); the parsers are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...domain.operations import CanonicalRequest, Operation
from . import legacy, v3
from .fields import Fields, UploadedFile

__all__ = ["ENDPOINTS", "Endpoint", "Fields", "UploadedFile", "all_paths"]


@dataclass(frozen=True)
class Endpoint:
    operation: Operation
    parse: Callable[[Fields], CanonicalRequest]
    json_body: bool  # accepts application/json
    multipart: bool  # accepts multipart/form-data
    auth_status: int = 401  # the spec answers 403 on /remix, /upscale, /v1/ideogram-v3/remix

    @property
    def path(self) -> str:
        return self.operation.official_path


ENDPOINTS: dict[Operation, Endpoint] = {
    e.operation: e
    for e in (
        Endpoint(Operation.GENERATE, legacy.parse_generate, json_body=True, multipart=False),
        Endpoint(Operation.REMIX, legacy.parse_remix, json_body=False, multipart=True, auth_status=403),
        Endpoint(Operation.EDIT, legacy.parse_edit, json_body=False, multipart=True),
        Endpoint(Operation.REFRAME, legacy.parse_reframe, json_body=False, multipart=True),
        Endpoint(Operation.UPSCALE, legacy.parse_upscale, json_body=False, multipart=True, auth_status=403),
        Endpoint(Operation.DESCRIBE, legacy.parse_describe, json_body=False, multipart=True),
        Endpoint(Operation.V3_GENERATE, v3.parse_generate, json_body=True, multipart=True),
        Endpoint(Operation.V3_REMIX, v3.parse_remix, json_body=False, multipart=True, auth_status=403),
        Endpoint(Operation.V3_EDIT, v3.parse_edit, json_body=False, multipart=True),
        Endpoint(Operation.V3_INPAINT, v3.parse_inpaint, json_body=False, multipart=True),
        Endpoint(Operation.V3_REFRAME, v3.parse_reframe, json_body=False, multipart=True),
        Endpoint(Operation.V3_REPLACE_BACKGROUND, v3.parse_replace_background, json_body=False, multipart=True),
        Endpoint(Operation.V3_GENERATE_TRANSPARENT, v3.parse_generate_transparent, json_body=True, multipart=True),
    )
}

RELAY_PREFIX = "/ideogram"
RELAY_V1_PREFIX = "/ideogram/v1"


def all_paths(endpoint: Endpoint) -> list[str]:
    """Every path an endpoint answers on: official, ``/ideogram`` + official, and for
    legacy endpoints ``/ideogram/v1`` + legacy path."""
    paths = [endpoint.path, RELAY_PREFIX + endpoint.path]
    if not endpoint.operation.is_v3:
        paths.append(RELAY_V1_PREFIX + endpoint.path)
    return paths
