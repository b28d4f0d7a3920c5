"""Every endpoint, every dialect, one behaviour.

Every official and relay path answers; each endpoint takes exactly the content types the
reference gives it (§1, §2); every way of authenticating works and every failure is the
right 401/403; each way a client can spell the same request (JSON or multipart, repeated
parts or comma-joined, ``image_request`` as a text, JSON or file part, Api-Key or Bearer,
official or relay path) reaches the engine as the same canonical request; fields an
endpoint does not define are ignored; banned prompts get the spec's safety 422; the request
record keeps a row per authenticated request and never image bytes.

The servers here have no engine for the matrix (a valid request answers 503 naming the
operation, since validation runs first) and a recording engine for the equivalence tests.
This module also holds the request builders the validation tables use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from conftest import Running, ThreadedServer, free_port, mask_bytes, png_bytes

from ideohub.api.app import create_app
from ideohub.config import load_settings
from ideohub.domain.errors import SafetyRejected
from ideohub.domain.operations import (
    CanonicalRequest,
    DescribeRequest,
    DescribeResult,
    ImageOutput,
    ImageResult,
    Operation,
)
from ideohub.domain.sizes import Size
from ideohub.store import db

from ideohub.domain.operations import Family as _Family, Operation as _Operation

# the legacy and 3.0 families; 4.0 and /v2 are tested in tests/families
OLD_FAMILIES = [o for o in _Operation if o.family in (_Family.LEGACY, _Family.V3)]

Op = Operation

# ---------------------------------------------------------------- servers


@contextlib.contextmanager
def serve(data_root: Path, engines: dict | None = None, **overrides: Any) -> Iterator[Running]:
    """A real server on a free port (like conftest's ``start_server``, but usable at module scope)."""
    port = free_port()
    settings = load_settings(data_dir=data_root / f"data-{port}", port=port, **overrides)
    db.upgrade(settings.db_url)
    with ThreadedServer(create_app(settings, engines=engines or {}), port), httpx.Client(
        base_url=settings.base_url, timeout=60
    ) as client:
        running = Running(settings.base_url, "", settings, client)
        _key_id, running.key = running.create_key()
        yield running


BANNED = "forbidden"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """No engines: a valid request answers 503 engine-unavailable, an invalid one its 4xx."""
    with serve(tmp_path_factory.mktemp("api"), banned_prompt_terms=[BANNED]) as running:
        yield running


class Recorder:
    """An engine for every operation that keeps what it was given and returns one tiny image."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[CanonicalRequest] = []

    async def run(self, request: CanonicalRequest, ctx: Any) -> Any:
        self.seen.append(request)
        if isinstance(request, DescribeRequest):
            return DescribeResult(["a small test picture"])
        return ImageResult([ImageOutput(data=PNG, media_type="image/png", resolution=Size(64, 48),
                                        prompt=request.prompt_text or "", seed=request.seed or 7, is_image_safe=True)])


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Recorder]]:
    recorder = Recorder()
    with serve(tmp_path_factory.mktemp("rec"), engines={op: recorder for op in Op}) as running:
        yield running, recorder


# ---------------------------------------------------------------- request builders

PNG = png_bytes(64, 48)
MASK = mask_bytes(64, 48)
DROP = object()  # remove a field from the minimal request


@dataclass(frozen=True)
class File:
    """A multipart part with a filename (a file); ``filename=None`` makes it a text part with a type."""

    data: bytes
    filename: str | None = "image.png"
    content_type: str | None = "image/png"


def encode_multipart(parts: list[tuple[str, Any]]) -> tuple[bytes, str]:
    boundary = "ideohub-" + secrets.token_hex(8)
    out = bytearray()
    for name, value in parts:
        out += f"--{boundary}\r\n".encode()
        if isinstance(value, File):
            disposition = f'form-data; name="{name}"'
            if value.filename is not None:
                disposition += f'; filename="{value.filename}"'
            out += f"Content-Disposition: {disposition}\r\n".encode()
            if value.content_type:
                out += f"Content-Type: {value.content_type}\r\n".encode()
            out += b"\r\n" + value.data + b"\r\n"
        else:
            data = value if isinstance(value, bytes) else str(value).encode()
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


@dataclass(frozen=True)
class Body:
    """One HTTP request body for one operation's endpoint."""

    op: Operation
    content: bytes
    content_type: str | None

    def send(self, srv: Running, path: str | None = None, style: str = "api-key",
             headers: dict[str, str] | None = None) -> httpx.Response:
        hdrs = {"Content-Type": self.content_type} if self.content_type else {}
        return srv.post(path or self.op.official_path, style=style, content=self.content,
                        headers={**hdrs, **(headers or {})})

    def __repr__(self) -> str:  # short ids in failure messages
        return f"Body({self.op.value}, {self.content_type}, {len(self.content)} bytes)"


PROMPT = "a lighthouse at dusk"

# The smallest valid request per endpoint (reference §5, §6).
MINIMAL: dict[Operation, dict[str, Any]] = {
    Op.GENERATE: {"prompt": PROMPT},
    Op.REMIX: {"image_file": File(PNG), "prompt": PROMPT},
    Op.EDIT: {"image_file": File(PNG), "mask": File(MASK), "prompt": PROMPT, "model": "V_2"},
    Op.REFRAME: {"image_file": File(PNG), "resolution": "RESOLUTION_1024_1024", "model": "V_2"},
    Op.UPSCALE: {"image_file": File(PNG)},
    Op.DESCRIBE: {"image_file": File(PNG)},
    Op.V3_GENERATE: {"prompt": PROMPT},
    Op.V3_REMIX: {"image": File(PNG), "prompt": PROMPT},
    Op.V3_EDIT: {"image": File(PNG), "mask": File(MASK), "prompt": PROMPT},
    Op.V3_INPAINT: {"image": File(PNG), "mask": File(MASK), "prompt": PROMPT},
    Op.V3_REFRAME: {"image": File(PNG), "resolution": "1024x1024"},
    Op.V3_REPLACE_BACKGROUND: {"image": File(PNG), "prompt": PROMPT},
    Op.V3_GENERATE_TRANSPARENT: {"prompt": PROMPT},
}

# Legacy endpoints whose fields live in ``image_request`` (a JSON object, or a JSON string part).
NESTED = {Op.GENERATE, Op.REMIX, Op.UPSCALE}
TOP_LEVEL = {"image_file", "image_request"}


def _part_value(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def req(op: Operation, *, as_json: bool = False, **changes: Any) -> Body:
    """The minimal request for ``op`` with ``changes`` applied (``DROP`` removes a field).

    Legacy /generate, /remix, /upscale: every field but ``image_file``/``image_request`` goes
    into ``image_request`` (give ``image_request=`` to replace it whole). Multipart: a list value
    becomes repeated parts, a dict a JSON string part. ``as_json``: a JSON body (V3
    generate and generate-transparent)."""
    merged = {k: v for k, v in {**MINIMAL[op], **changes}.items() if v is not DROP}
    if op in NESTED:
        top = {k: v for k, v in merged.items() if k in TOP_LEVEL}
        top.setdefault("image_request", {k: v for k, v in merged.items() if k not in TOP_LEVEL})
        if "image_request" in changes and changes["image_request"] is DROP:
            del top["image_request"]
        if op is Op.GENERATE:
            return json_body(op, top)
        merged = top
    if as_json:
        return json_body(op, merged)
    parts: list[tuple[str, Any]] = []
    for name, value in merged.items():
        for item in value if isinstance(value, list) else [value]:
            parts.append((name, _part_value(item)))
    return multipart(op, parts)


def json_body(op: Operation, obj: Any) -> Body:
    return Body(op, json.dumps(obj).encode(), "application/json")


def multipart(op: Operation, parts: list[tuple[str, Any]]) -> Body:
    content, ctype = encode_multipart(parts)
    return Body(op, content, ctype)


def raw(op: Operation, content: bytes, content_type: str | None) -> Body:
    return Body(op, content, content_type)


# ---------------------------------------------------------------- assertions


def assert_problem(resp: httpx.Response, status: int, field: str | None = None, rule: str | None = None) -> dict:
    """RFC 7807 problem JSON, ``Content-Type: application/json``; ``detail`` is
    ``"<field>: <rule>"`` and names the field."""
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status and body["type"] == "about:blank"
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    if field is not None:
        assert body["detail"].startswith(field + ": "), body["detail"]
    if rule is not None:
        assert rule in body["detail"], body["detail"]
    return body


def assert_engine_unavailable(resp: httpx.Response, op: Operation) -> None:
    """What a valid request gets from a server with no engines: 503 naming the operation."""
    body = assert_problem(resp, 503)
    assert op.official_path in body["detail"] and f"'{op.value}'" in body["detail"], body["detail"]


# ---------------------------------------------------------------- every path answers

LEGACY_PATHS = {"/generate": Op.GENERATE, "/remix": Op.REMIX, "/edit": Op.EDIT, "/reframe": Op.REFRAME,
                "/upscale": Op.UPSCALE, "/describe": Op.DESCRIBE}
V3_PATHS = {f"/v1/ideogram-v3/{name}": op for name, op in [
    ("generate", Op.V3_GENERATE), ("remix", Op.V3_REMIX), ("edit", Op.V3_EDIT), ("inpaint", Op.V3_INPAINT),
    ("reframe", Op.V3_REFRAME), ("replace-background", Op.V3_REPLACE_BACKGROUND),
    ("generate-transparent", Op.V3_GENERATE_TRANSPARENT)]}
OFFICIAL = {**LEGACY_PATHS, **V3_PATHS}
ALL_PATHS: dict[str, Operation] = {
    **OFFICIAL,
    **{"/ideogram" + p: op for p, op in OFFICIAL.items()},  # AiHubMix, OpenAI-Hub
    **{"/ideogram/v1" + p: op for p, op in LEGACY_PATHS.items()},  # AI-YIAPI
}
FORBIDDEN_NOT_UNAUTHORIZED = {Op.REMIX, Op.UPSCALE, Op.V3_REMIX}  # the spec answers 403 there

# One invalid request per endpoint (a required field left out) and the field its 400 names.
MISSING_REQUIRED: dict[Operation, tuple[str, str]] = {
    Op.GENERATE: ("prompt", "image_request.prompt"),
    Op.REMIX: ("image_file", "image_file"),
    Op.EDIT: ("mask", "mask"),
    Op.REFRAME: ("resolution", "resolution"),
    Op.UPSCALE: ("image_request", "image_request"),
    Op.DESCRIBE: ("image_file", "image_file"),
    Op.V3_GENERATE: ("prompt", "prompt"),
    Op.V3_REMIX: ("image", "image"),
    Op.V3_EDIT: ("mask", "mask"),
    Op.V3_INPAINT: ("mask", "mask"),
    Op.V3_REFRAME: ("resolution", "resolution"),
    Op.V3_REPLACE_BACKGROUND: ("prompt", "prompt"),
    Op.V3_GENERATE_TRANSPARENT: ("prompt", "prompt"),
}

path_params = pytest.mark.parametrize("path,op", list(ALL_PATHS.items()), ids=list(ALL_PATHS))


def test_the_path_table_is_complete():
    assert len(ALL_PATHS) == 6 * 3 + 7 * 2 == 32
    # the legacy and 3.0 families (4.0 and /v2: tests/families)
    assert set(ALL_PATHS.values()) == set(OLD_FAMILIES)


@path_params
def test_every_path_answers_valid_with_503_and_invalid_with_400(server, path, op):
    assert_engine_unavailable(req(op).send(server, path), op)
    missing, field = MISSING_REQUIRED[op]
    assert_problem(req(op, **{missing: DROP}).send(server, path), 400, field, "required")


def test_other_paths_and_methods_are_problem_json(server):
    assert_problem(server.post("/v1/ideogram-v3/nope", json={"prompt": "x"}), 404)
    assert_problem(server.client.get("/generate", headers=server.auth()), 405)


# ---------------------------------------------------------------- content types

CONTENT_TYPE_CASES = [
    # legacy /generate: JSON only
    pytest.param(req(Op.GENERATE), 503, id="generate-json"),
    pytest.param(raw(Op.GENERATE, json.dumps({"image_request": {"prompt": "x"}}).encode(),
                     "application/json; charset=utf-8"), 503, id="generate-json-charset"),
    pytest.param(multipart(Op.GENERATE, [("image_request", json.dumps({"prompt": "x"}))]), 415,
                 id="generate-multipart"),
    # /remix, /upscale: image_file + image_request JSON string part, as text, as a typed part, as a file part
    pytest.param(req(Op.REMIX), 503, id="remix-multipart"),
    pytest.param(multipart(Op.REMIX, [("image_file", File(PNG)), ("image_request",
                 File(b'{"prompt": "x"}', None, "application/json"))]), 503, id="remix-image_request-typed-part"),
    pytest.param(multipart(Op.REMIX, [("image_file", File(PNG)), ("image_request",
                 File(b'{"prompt": "x"}', "request.json", "application/json"))]), 503, id="remix-image_request-file"),
    pytest.param(json_body(Op.REMIX, {"image_request": {"prompt": "x"}}), 415, id="remix-json"),
    pytest.param(req(Op.UPSCALE, image_request='{"resemblance": 55, "detail": 90}'), 503, id="upscale-multipart"),
    pytest.param(json_body(Op.UPSCALE, {"image_request": {}}), 415, id="upscale-json"),
    # /edit, /reframe flat multipart; /describe image_file (+ describe_model_version)
    pytest.param(req(Op.EDIT), 503, id="edit-multipart"),
    pytest.param(json_body(Op.EDIT, {"prompt": "x", "model": "V_2"}), 415, id="edit-json"),
    pytest.param(req(Op.REFRAME), 503, id="reframe-multipart"),
    pytest.param(req(Op.DESCRIBE, describe_model_version="V_2"), 503, id="describe-multipart"),
    pytest.param(json_body(Op.DESCRIBE, {}), 415, id="describe-json"),
    # V3: multipart everywhere, JSON too on generate and generate-transparent
    pytest.param(req(Op.V3_GENERATE), 503, id="v3-generate-multipart"),
    pytest.param(req(Op.V3_GENERATE, as_json=True), 503, id="v3-generate-json"),
    pytest.param(raw(Op.V3_GENERATE, b"prompt=a+cat&num_images=2", "application/x-www-form-urlencoded"), 503,
                 id="v3-generate-urlencoded"),
    pytest.param(req(Op.V3_GENERATE_TRANSPARENT), 503, id="v3-transparent-multipart"),
    pytest.param(req(Op.V3_GENERATE_TRANSPARENT, as_json=True), 503, id="v3-transparent-json"),
    *[pytest.param(json_body(op, {"prompt": "x"}), 415, id=f"{op.value}-json")
      for op in (Op.V3_REMIX, Op.V3_EDIT, Op.V3_INPAINT, Op.V3_REFRAME, Op.V3_REPLACE_BACKGROUND)],
    # neither
    *[pytest.param(raw(op, b"prompt: a cat", "text/plain"), 415, id=f"{op.value}-text-plain") for op in OLD_FAMILIES],
    *[pytest.param(raw(op, b"", None), 415, id=f"{op.value}-no-content-type") for op in OLD_FAMILIES],
    pytest.param(raw(Op.V3_GENERATE, b"<prompt>x</prompt>", "application/xml"), 415, id="v3-generate-xml"),
]


@pytest.mark.parametrize("body,status", CONTENT_TYPE_CASES)
def test_content_types(server, body, status):
    resp = body.send(server)
    if status == 503:
        assert_engine_unavailable(resp, body.op)
    else:
        assert_problem(resp, status, "Content-Type")


# ---------------------------------------------------------------- authentication


@path_params
def test_missing_or_invalid_key_is_401_or_403(server, path, op):
    status = 403 if op in FORBIDDEN_NOT_UNAUTHORIZED else 401
    body = req(op)
    hdrs = {"Content-Type": body.content_type or ""}
    cases = [
        {},
        {"Api-Key": "ih_not-a-key"},
        {"Authorization": "Bearer ih_not-a-key"},
        {"Authorization": f"Basic {server.key}"},  # only Bearer is a key scheme
        {"Authorization": "Bearer"},
    ]
    for auth in cases:
        resp = server.client.post(path, content=body.content, headers={**hdrs, **auth})
        problem = assert_problem(resp, status)
        assert "API key" in problem["detail"]
        assert problem["title"] == ("Forbidden" if status == 403 else "Unauthorized")
        if status == 401:
            assert "Bearer" in resp.headers["www-authenticate"]
    # authentication comes before validation: an invalid body without a key is still 401/403
    resp = server.client.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
    assert_problem(resp, status)


@pytest.mark.parametrize("header", ["Api-Key", "api-key", "API-KEY", "Authorization", "authorization"])
@pytest.mark.parametrize("op", [Op.GENERATE, Op.REMIX, Op.V3_GENERATE, Op.V3_REMIX])
def test_every_header_spelling_authenticates(server, header, op):
    value = f"Bearer {server.key}" if header.lower() == "authorization" else server.key
    body = req(op)
    resp = server.client.post(op.official_path, content=body.content,
                              headers={"Content-Type": body.content_type, header: value})
    assert_engine_unavailable(resp, op)


def test_bearer_scheme_is_case_insensitive_and_style_helpers_work(server):
    body = req(Op.V3_GENERATE)
    for scheme in ("Bearer", "bearer", "BEARER"):
        hdrs = {"Content-Type": body.content_type, "Authorization": f"{scheme} {server.key}"}
        resp = server.client.post(Op.V3_GENERATE.official_path, content=body.content, headers=hdrs)
        assert_engine_unavailable(resp, Op.V3_GENERATE)
    assert_engine_unavailable(body.send(server, style="bearer"), Op.V3_GENERATE)
    assert_engine_unavailable(body.send(server, "/ideogram/v1/ideogram-v3/generate", style="bearer"), Op.V3_GENERATE)


def test_revoked_key_stops_working_at_once(server):
    key_id, key = server.create_key()
    body = req(Op.GENERATE)
    send = lambda path, k: server.client.post(path, content=body.content,
                                              headers={"Content-Type": body.content_type, "Api-Key": k})
    assert_engine_unavailable(send("/generate", key), Op.GENERATE)
    assert server.revoke(key_id)
    for path in ("/generate", "/ideogram/generate", "/ideogram/v1/generate"):
        assert_problem(send(path, key), 401, rule="revoked")
    remix = req(Op.REMIX)
    resp = server.client.post("/remix", content=remix.content, headers={"Content-Type": remix.content_type,
                                                                          "Authorization": f"Bearer {key}"})
    assert_problem(resp, 403, rule="revoked")
    assert_engine_unavailable(send("/generate", server.key), Op.GENERATE)  # other keys are untouched


# ---------------------------------------------------------------- one behaviour


def canonical(r: CanonicalRequest, keep_seed: bool = False) -> tuple:
    """What an engine sees, with image bytes by digest (file names do not matter). A request sent
    without a seed gets one fixed at admission (random), so the seed is left out unless asked."""
    images = [(n, i.media_type, i.width, i.height, hashlib.sha256(i.data).hexdigest()) for n, i in r.image_inputs()]
    params = r.wire_params()
    if not keep_seed:
        params.pop("seed", None)
    return type(r).__name__, params, images


def seen_for(recording: tuple[Running, Recorder], body: Body, path: str | None = None, style: str = "api-key"):
    srv, recorder = recording
    before = len(recorder.seen)
    resp = body.send(srv, path, style=style)
    assert resp.status_code == 200, resp.text
    assert len(recorder.seen) == before + 1
    return recorder.seen[-1], resp


# A representative request per endpoint, with options set, for the path/auth equivalence test.
RICH: dict[Operation, dict[str, Any]] = {
    Op.GENERATE: {"model": "V_2_TURBO", "aspect_ratio": "ASPECT_16_10", "num_images": 2, "seed": 5,
                  "style_type": "DESIGN", "negative_prompt": "blur", "magic_prompt_option": "OFF",
                  "color_palette": {"name": "PASTEL"}},
    Op.REMIX: {"image_weight": 70, "resolution": "RESOLUTION_1280_800", "seed": 9},
    Op.EDIT: {"model": "V_2_TURBO", "num_images": "3", "seed": "11", "style_type": "REALISTIC"},
    Op.REFRAME: {"model": "V_2A", "num_images": "2", "seed": "0"},
    Op.UPSCALE: {"resemblance": 55, "detail": 90, "prompt": "sharper"},
    Op.DESCRIBE: {"describe_model_version": "V_2"},
    Op.V3_GENERATE: {"aspect_ratio": "16x9", "num_images": "2", "rendering_speed": "TURBO", "style_type": "AUTO",
                     "color_palette": {"members": [{"color_hex": "#b470b3", "color_weight": 0.5}]}},
    Op.V3_REMIX: {"image_weight": "60", "resolution": "800x1280", "style_codes": ["AAFF5733"]},
    Op.V3_EDIT: {"magic_prompt": "ON", "style_preset": "WATERCOLOR", "num_images": "2"},
    Op.V3_INPAINT: {"magic_prompt": "ON", "style_preset": "WATERCOLOR", "num_images": "2"},
    Op.V3_REFRAME: {"resolution": "512x1536", "rendering_speed": "QUALITY", "style_codes": ["12345678", "ABCDEF01"]},
    Op.V3_REPLACE_BACKGROUND: {"magic_prompt": "ON", "rendering_speed": "QUALITY", "seed": "1"},
    Op.V3_GENERATE_TRANSPARENT: {"upscale_factor": "X2", "aspect_ratio": "2x3",
                                 "custom_model_uri": "model/m/version/1"},
}


@pytest.mark.parametrize("op", OLD_FAMILIES, ids=[o.value for o in OLD_FAMILIES])
def test_same_request_on_every_path_and_auth_style_is_one_canonical_request(recording, op):
    paths = [p for p, o in ALL_PATHS.items() if o is op]
    body = req(op, **RICH[op])
    seen = [canonical(seen_for(recording, body, path, style)[0]) for path in paths for style in ("api-key", "bearer")]
    assert len(seen) == 2 * len(paths) and all(s == seen[0] for s in seen)


V3_SPELLINGS = [
    # the same V3 generate request spelled five ways
    req(Op.V3_GENERATE, style_codes=["AAFF5733", "12345678"], num_images=2, color_palette={"name": "EMBER"}),
    multipart(Op.V3_GENERATE, [("prompt", PROMPT), ("style_codes", "AAFF5733,12345678"), ("num_images", "2"),
                               ("color_palette", File(b'{"name": "EMBER"}', None, "application/json"))]),
    multipart(Op.V3_GENERATE, [("prompt", PROMPT), ("style_codes", '["AAFF5733", "12345678"]'), ("num_images", " 2 "),
                               ("color_palette", '{"name":"EMBER"}')]),
    json_body(Op.V3_GENERATE, {"prompt": PROMPT, "style_codes": ["AAFF5733", "12345678"], "num_images": 2,
                               "color_palette": {"name": "EMBER"}}),
    json_body(Op.V3_GENERATE, {"prompt": PROMPT, "style_codes": "AAFF5733,12345678", "num_images": 2,
                               "color_palette": '{"name": "EMBER"}'}),
    raw(Op.V3_GENERATE, b"prompt=a+lighthouse+at+dusk&style_codes=AAFF5733&style_codes=12345678&num_images=2"
        b"&color_palette=%7B%22name%22%3A%22EMBER%22%7D", "application/x-www-form-urlencoded"),
]


def test_v3_dialect_spellings_are_one_canonical_request(recording):
    seen = [seen_for(recording, b)[0] for b in V3_SPELLINGS]
    first = seen[0]
    assert first.style_codes == ("AAFF5733", "12345678") and first.num_images == 2
    assert first.color_palette.to_wire() == {"name": "EMBER"}
    assert all(canonical(s) == canonical(first) for s in seen)


def test_legacy_spellings_are_one_canonical_request(recording):
    ir = {"prompt": PROMPT, "image_weight": 60, "aspect_ratio": "ASPECT_3_2"}
    spellings = [
        multipart(Op.REMIX, [("image_file", File(PNG)), ("image_request", json.dumps(ir))]),
        multipart(Op.REMIX, [("image_request", File(json.dumps(ir).encode(), None, "application/json")),
                             ("image_file", File(PNG, "blob", "application/octet-stream"))]),
        multipart(Op.REMIX, [("image_file", File(PNG, "image.jpg", "image/jpeg")),
                             ("image_request", File(json.dumps(ir).encode(), "ir.json", "application/json"))]),
        multipart(Op.REMIX, [("image_file", File(PNG, "photo", None)), ("image_request", json.dumps(ir)),
                             ("extra", "ignored")]),
    ]
    seen = [seen_for(recording, b)[0] for b in spellings]
    assert seen[0].image_weight == 60 and seen[0].image_file.media_type == "image/png"
    assert all(canonical(s) == canonical(seen[0]) for s in seen)


@pytest.mark.parametrize("op,defaults", [
    (Op.GENERATE, {"model": "V_2", "num_images": 1}),
    (Op.REMIX, {"model": "V_2", "image_weight": 50, "num_images": 1}),
    (Op.UPSCALE, {"resemblance": 50, "detail": 50, "num_images": 1}),
    (Op.DESCRIBE, {"describe_model_version": "V_3"}),
    (Op.V3_GENERATE, {"rendering_speed": "DEFAULT", "num_images": 1}),
    (Op.V3_REMIX, {"image_weight": 50, "rendering_speed": "DEFAULT"}),
    (Op.V3_GENERATE_TRANSPARENT, {"upscale_factor": "X1", "rendering_speed": "DEFAULT"}),
], ids=lambda v: v.value if isinstance(v, Operation) else "defaults")
def test_defaults_when_omitted(recording, op, defaults):
    seen, _ = seen_for(recording, req(op))
    params = seen.wire_params()
    assert {k: params.get(k) for k in defaults} == defaults


def test_results_have_the_spec_shape(recording):
    _, resp = seen_for(recording, req(Op.V3_GENERATE, seed=3))
    body = resp.json()
    assert set(body) == {"created", "data"} and len(body["data"]) == 1
    item = body["data"][0]
    assert {"url", "prompt", "resolution", "is_image_safe", "seed"} <= set(item)
    assert item["resolution"] == "64x48" and item["is_image_safe"] is True and item["seed"] == 3
    _, resp = seen_for(recording, req(Op.DESCRIBE))
    assert resp.json() == {"descriptions": [{"text": "a small test picture"}]}


# ---------------------------------------------------------------- fields an endpoint does not define


def test_ai_yiapi_generate_example_with_extra_fields(recording):
    """The AI-YIAPI example (``/ideogram/v1/generate``), with unknown fields at both levels; its
    placeholder ``"resolution": "string"`` is left out (not a RESOLUTION_* value, and it may not
    be combined with aspect_ratio)."""
    payload = {
        "image_request": {
            "model": "V_2", "magic_prompt_option": "AUTO", "prompt": "A serene tropical beach scene.",
            "aspect_ratio": "ASPECT_10_16", "seed": 12345, "style_type": "GENERAL", "negative_prompt": "string",
            "image_weight": 50, "rendering_speed": "TURBO", "style_codes": ["nothex"], "webhook": "x",
        },
        "model": "dall-e-3", "stream": False, "n": 2,
    }
    seen, _ = seen_for(recording, json_body(Op.GENERATE, payload), "/ideogram/v1/generate", style="bearer")
    params = seen.wire_params()
    assert (params["seed"], params["aspect_ratio"], params["negative_prompt"]) == (12345, "ASPECT_10_16", "string")
    assert not {"image_weight", "rendering_speed", "style_codes", "webhook", "n"} & set(params)


def test_aihubmix_v3_examples_ignore_fields_the_endpoint_does_not_define(recording):
    """AiHubMix's V3 replace-background example sends ``style_type`` (not a field of that endpoint)."""
    data = {"prompt": "bird playing with a cat in the snow, pixel art style", "rendering_speed": "QUALITY",
            "num_images": "1", "seed": "1", "magic_prompt": "AUTO", "style_type": "AUTO"}
    parts = [*data.items(), ("image", File(PNG, "image.png", None)), ("style_reference_images", File(PNG, "ref.png"))]
    seen, _ = seen_for(recording, multipart(Op.V3_REPLACE_BACKGROUND, parts),
                       "/ideogram/v1/ideogram-v3/replace-background")
    assert not hasattr(seen, "style_type") and seen.rendering_speed == "QUALITY" and seen.seed == 1
    assert len(seen.style_reference_images) == 1
    # even a value that would be invalid where the field exists is ignored where it does not
    for op, extra in [(Op.V3_REPLACE_BACKGROUND, {"style_type": "NOT_A_STYLE", "aspect_ratio": "bad"}),
                      (Op.V3_REFRAME, {"style_type": "bad", "prompt": "", "negative_prompt": "x"}),
                      (Op.V3_EDIT, {"aspect_ratio": "bad", "resolution": "bad", "negative_prompt": "x"}),
                      (Op.V3_GENERATE_TRANSPARENT, {"resolution": "bad", "style_codes": "bad", "style_type": "bad"}),
                      (Op.REFRAME, {"prompt": "", "negative_prompt": "x", "aspect_ratio": "bad"}),
                      (Op.EDIT, {"aspect_ratio": "bad", "image_request": "{"}),
                      (Op.DESCRIBE, {"num_images": "99", "seed": "-1", "image_request": "{"}),
                      (Op.UPSCALE, {"model": "bad", "aspect_ratio": "bad", "style_type": "bad"}),
                      (Op.V3_GENERATE, {"magic_prompt_option": "bad", "model": "V_1", "image_request": "{"})]:
        seen, _ = seen_for(recording, req(op, **extra))
        assert not set(extra) & set(seen.wire_params())


def test_aihubmix_v3_remix_example(recording):
    data = {"prompt": "bird playing with a cat in the snow, pixel art style", "image_weight": "60",
            "rendering_speed": "QUALITY", "num_images": "1", "seed": "1", "aspect_ratio": "16x9",
            "magic_prompt": "AUTO", "style_type": "AUTO", "negative_prompt": "blurry, bad anatomy, watermark"}
    parts = [*data.items(), ("image", File(PNG, "image.jpeg", "image/jpeg"))]
    seen, _ = seen_for(recording, multipart(Op.V3_REMIX, parts), "/ideogram/v1/ideogram-v3/remix")
    assert (seen.image_weight, seen.aspect_ratio, seen.style_type) == (60, "16x9", "AUTO")


# ---------------------------------------------------------------- safety


@pytest.mark.parametrize("body", [
    req(Op.GENERATE, prompt=f"a {BANNED} thing"),
    req(Op.REMIX, prompt=f"A {BANNED.upper()} thing"),
    req(Op.EDIT, prompt=BANNED),
    req(Op.UPSCALE, prompt=f"{BANNED}!"),
    req(Op.V3_GENERATE, prompt=f"x {BANNED}"),
    req(Op.V3_GENERATE, as_json=True, prompt=f"x {BANNED}"),
    req(Op.V3_REPLACE_BACKGROUND, prompt=BANNED),
    req(Op.V3_GENERATE_TRANSPARENT, as_json=True, prompt=BANNED.title()),
], ids=repr)
def test_banned_prompt_is_safety_422_error_body(server, body):
    resp = body.send(server)
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {"error": SafetyRejected.PROMPT}


def test_banned_term_does_not_hide_a_validation_error(server):
    assert_problem(req(Op.GENERATE, prompt=BANNED, num_images=0).send(server), 400, "image_request.num_images")


# ---------------------------------------------------------------- the request record


def test_request_record_rows(server):
    sent: list[tuple[str | None, Operation, int]] = []

    def send(body: Body, path: str | None = None, **kw: Any) -> None:
        resp = body.send(server, path, **kw)
        sent.append((resp.headers.get("x-request-id"), body.op, resp.status_code))

    send(req(Op.GENERATE, num_images=0))
    send(req(Op.V3_EDIT, mask=File(png_bytes(32, 32))), "/ideogram/v1/ideogram-v3/edit")
    send(req(Op.REMIX, image_file=File(b"%PDF-1.7 not an image", "doc.pdf", "application/pdf")))
    send(req(Op.V3_GENERATE, prompt=BANNED))
    send(req(Op.UPSCALE), style="bearer")
    send(req(Op.DESCRIBE), headers={"Api-Key": "ih_wrong"})  # unauthenticated: no row
    resp = server.client.post("/describe", headers={"Content-Type": "application/json"}, content=b"{}")
    sent.append((resp.headers.get("x-request-id"), Op.DESCRIBE, resp.status_code))  # no key: no row

    engine = sa.create_engine(server.settings.db_url)
    try:
        with engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(sa.text(
                "select id, key_id, operation, params, state, status_code, error from requests"))}
            raw_params = [r[0] for r in conn.execute(sa.text("select params from requests"))]
    finally:
        engine.dispose()
    expected = [(400, "image_request.num_images"), (400, "mask"), (415, "image_file"), (422, None), (503, None)]
    for (rid, op, status), (want_status, field) in zip(sent, expected):
        assert status == want_status
        row = rows[rid]
        assert row.operation == op.value and row.state == "failed" and row.status_code == want_status
        assert row.key_id and row.error
        if field:
            assert row.error.startswith(field + ": ")
    for rid, _op, status in sent[5:]:
        assert status == 401 and rid not in rows
    # parameter summaries only: no image bytes (the PNG signature, base64 or raw) in any row
    for params in raw_params:
        text = params if isinstance(params, str) else json.dumps(params)
        assert "PNG" not in text and "iVBOR" not in text and len(text) < 2000


def test_request_record_keeps_parameters_and_image_metadata(recording):
    srv, _ = recording
    _, resp = seen_for(recording, req(Op.V3_REMIX, seed=4))
    engine = sa.create_engine(srv.settings.db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text("select operation, state, params, images from requests where id = :id"),
                               {"id": resp.headers["x-request-id"]}).one()
    finally:
        engine.dispose()
    params = row.params if isinstance(row.params, dict) else json.loads(row.params)
    assert (row.operation, row.state, row.images) == ("v3-remix", "done", 1)
    assert params["prompt"] == PROMPT and params["seed"] == 4
    assert params["image"] == [{"type": "image/png", "size": "64x48", "bytes": len(PNG)}]


@pytest.mark.parametrize("op", [o for o in OLD_FAMILIES if o is not Op.DESCRIBE], ids=lambda o: o.value)
def test_a_seed_is_fixed_at_admission(recording, op):
    """So a generation that runs again (a take-over, a redelivery) reproduces its images."""
    seen, _resp = seen_for(recording, req(op))
    assert isinstance(seen.seed, int) and 0 <= seen.seed <= 2_147_483_647
    seen_again, _ = seen_for(recording, req(op, seed=77))
    assert seen_again.seed == 77


def test_describe_gets_no_seed(recording):
    seen, _ = seen_for(recording, req(Op.DESCRIBE))
    assert seen.seed is None and "seed" not in seen.wire_params()
