"""The simulated Ideogram upstream, over real HTTP: spec-shaped answers on every endpoint and
dialect path, real PNG downloads behind signed expiring links, faults, auth, and validation by
the official OpenAPI request schema (independent of ideohub's own parsers)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from ideohub.api.dialects import ENDPOINTS, all_paths
from ideohub.domain.operations import Family, Operation
from ideohub.sim import FAULT_KINDS, Fault, SimConfig, SimulatedUpstream
from ideohub.sim.__main__ import config_from_args, parse_args
from ideohub.sim.upstream import multipart_parts
from openapi import request_validator, schema_name, validator  # tests/openapi.py: the vendored official schemas

KEY = "test-upstream-key"


# ---------------------------------------------------------------- helpers


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    yy, xx = np.mgrid[0:height, 0:width]
    arr = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").convert(mode).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def mask(width: int, height: int) -> bytes:
    arr = np.full((height, width), 255, np.uint8)
    arr[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 0
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


IMG = png(256, 256)
BIG = png(1024, 1024)
MASK = mask(256, 256)
BIG_MASK = mask(1024, 1024)


def assert_spec_shape(body: dict[str, Any], schema_name: str, base_url: str) -> None:
    validator(schema_name).validate(body)
    if schema_name == "DescribeResponse":
        assert body["descriptions"] and all(isinstance(d["text"], str) and d["text"] for d in body["descriptions"])
        return
    created = datetime.fromisoformat(body["created"])
    assert created.tzinfo is not None and re.search(r"[+-]\d\d:\d\d$", body["created"])
    url_re = re.compile(re.escape(base_url) + r"/api/images/ephemeral/[A-Za-z0-9_-]+\.png\?exp=\d+&sig=[0-9a-f]{64}$")
    for item in body["data"]:
        assert re.fullmatch(r"\d+x\d+", item["resolution"])
        if item["is_image_safe"]:
            assert url_re.match(item["url"]), item["url"]
        else:
            assert item["url"] is None


def f(name: str, data: bytes, filename: str = "in.png", ctype: str = "image/png") -> tuple[str, Any]:
    return (name, (filename, data, ctype))


def t(name: str, value: Any, ctype: str = "text/plain") -> tuple[str, Any]:
    return (name, (None, value if isinstance(value, str) else json.dumps(value), ctype))


# operation → (httpx kwargs, expected resolution, expected upscaled_resolution, num_images)
CASES: dict[Operation, tuple[dict[str, Any], str | None, str | None, int]] = {
    Operation.GENERATE: (
        {"json": {"image_request": {"prompt": "a lighthouse", "aspect_ratio": "ASPECT_16_9", "seed": 7,
                                    "num_images": 2, "magic_prompt_option": "ON", "style_type": "REALISTIC"}}},
        "1312x736", None, 2,
    ),
    Operation.REMIX: (
        {"files": [f("image_file", IMG), t("image_request", {"prompt": "a lighthouse", "resolution": "RESOLUTION_1024_768",
                                                              "magic_prompt_option": "OFF", "image_weight": 70},
                                           "application/json")]},
        "1024x768", None, 1,
    ),
    Operation.EDIT: (
        {"files": [f("image_file", IMG), f("mask", MASK, "mask.png"), t("prompt", "a red door"), t("model", "V_2")]},
        "256x256", None, 1,
    ),
    Operation.REFRAME: (
        {"files": [f("image_file", IMG), t("resolution", "RESOLUTION_1280_768"), t("model", "V_2_TURBO")]},
        "1280x768", None, 1,
    ),
    Operation.UPSCALE: (
        {"files": [f("image_file", IMG), t("image_request", {"resemblance": 55, "detail": 90}, "application/json")]},
        "256x256", "512x512", 1,
    ),
    Operation.DESCRIBE: ({"files": [f("image_file", IMG), t("describe_model_version", "V_3")]}, None, None, 1),
    Operation.V3_GENERATE: (
        {"json": {"prompt": "a cat on a couch", "aspect_ratio": "9x16", "rendering_speed": "TURBO", "style_type": "AUTO"}},
        "736x1312", None, 1,
    ),
    Operation.V3_REMIX: (
        {"files": [f("image", IMG), t("prompt", "a cat"), t("resolution", "1024x1024"), t("image_weight", "30")]},
        "1024x1024", None, 1,
    ),
    Operation.V3_EDIT: (
        {"files": [f("image", BIG), f("mask", BIG_MASK, "mask.png"), t("prompt", "a hat"), t("num_images", "2")]},
        "1024x1024", None, 2,
    ),
    Operation.V3_INPAINT: (
        {"files": [f("image", BIG), f("mask", BIG_MASK, "mask.png"), t("prompt", "a hat"),
                   t("color_palette", {"name": "PASTEL"}, "application/json")]},
        "1024x1024", None, 1,
    ),
    Operation.V3_REFRAME: ({"files": [f("image", IMG), t("resolution", "512x1536")]}, "512x1536", None, 1),
    Operation.V3_REPLACE_BACKGROUND: (
        {"files": [f("image", BIG), t("prompt", "Add a forest in the background"), t("magic_prompt", "ON"),
                   t("rendering_speed", "QUALITY")]},
        "1024x1024", None, 1,
    ),
    Operation.V3_GENERATE_TRANSPARENT: (
        {"json": {"prompt": "a sticker of a fox", "upscale_factor": "X2", "aspect_ratio": "1x1"}},
        "1024x1024", "2048x2048", 1,
    ),
}
ROUTES = [(op, path) for op, ep in ENDPOINTS.items() for path in all_paths(ep)]


@pytest.fixture(scope="module")
def sim():
    with SimulatedUpstream(SimConfig(api_keys=(KEY,))) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean(request):  # type: ignore[no-untyped-def]
    yield
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").reset()


@pytest.fixture
def client(sim):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=sim.base_url, timeout=30) as c:
        yield c


@pytest.fixture
def fresh():  # type: ignore[no-untyped-def]
    """A private sim for tests that change its config."""
    with SimulatedUpstream(SimConfig(api_keys=(KEY,), warm_sizes=())) as running:
        yield running


def post(client: httpx.Client, path: str, style: str = "api-key", key: str = KEY, **kwargs: Any) -> httpx.Response:
    headers = {"Api-Key": key} if style == "api-key" else {"Authorization": f"Bearer {key}"}
    return client.post(path, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)


def generate(client: httpx.Client, prompt: str = "a cat", path: str = "/generate", **params: Any) -> httpx.Response:
    return post(client, path, json={"image_request": {"prompt": prompt, **params}})


def decode(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


# ---------------------------------------------------------------- every endpoint, every dialect


def test_routes_cover_every_endpoint_and_dialect() -> None:
    # the legacy and 3.0 endpoints (4.0 and /v2 are covered by test_new_families.py)
    classic = {op for op in Operation if op.family in (Family.LEGACY, Family.V3)}
    assert {op for op, _ in ROUTES} == classic == set(CASES)
    paths = {p for _, p in ROUTES}
    assert {"/generate", "/ideogram/generate", "/ideogram/v1/generate", "/v1/ideogram-v3/generate",
            "/ideogram/v1/ideogram-v3/generate", "/v1/ideogram-v3/generate-transparent"} <= paths


@pytest.mark.parametrize(("op", "path"), ROUTES, ids=[p for _, p in ROUTES])
def test_endpoint_answers_in_spec_shape(sim, client, op: Operation, path: str) -> None:
    kwargs, resolution, upscaled, n = CASES[op]
    style = "api-key" if path == op.official_path else "bearer"
    resp = post(client, path, style=style, **kwargs)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert_spec_shape(body, schema_name(op), sim.base_url)

    rec = sim.requests[-1]
    assert (rec.kind, rec.method, rec.path, rec.operation, rec.status) == ("api", "POST", path, op.value, 200)
    assert rec.auth == style and rec.auth_ok and KEY not in json.dumps(rec.to_dict())
    assert rec.fields is not None and rec.error is None
    if "json" in kwargs:
        assert rec.content_type == "application/json" and rec.parts is None
    else:
        assert rec.content_type == "multipart/form-data"
        assert [p["name"] for p in rec.parts] == [name for name, _ in kwargs["files"]]

    if op is Operation.DESCRIBE:
        assert set(body) == {"descriptions"}
        return
    assert len(body["data"]) == n
    for item in body["data"]:
        assert item["resolution"] == resolution
        assert item.get("upscaled_resolution") == upscaled
        assert ("style_type" in item) == (op is not Operation.V3_GENERATE_TRANSPARENT)
        image = decode(client.get(item["url"]).content)
        assert f"{image.width}x{image.height}" == (upscaled or resolution)
        if op is Operation.V3_GENERATE_TRANSPARENT:
            alpha = np.asarray(image.getchannel("A"))
            assert image.mode == "RGBA" and alpha.min() == 0 and alpha.max() == 255
        else:
            assert image.mode == "RGB"


def test_prompt_seed_and_style_follow_the_request(client) -> None:
    body = generate(client, "a lighthouse", aspect_ratio="ASPECT_16_9", seed=7, num_images=2,
                    magic_prompt_option="ON", style_type="REALISTIC").json()
    assert [d["seed"] for d in body["data"]] == [7, 7]
    assert all(d["prompt"] == "a lighthouse, highly detailed, cinematic lighting" for d in body["data"])
    assert all(d["style_type"] == "REALISTIC" for d in body["data"])
    assert len({d["url"] for d in body["data"]}) == 2

    off = generate(client, "a lighthouse", magic_prompt_option="OFF").json()["data"][0]
    assert off["prompt"] == "a lighthouse" and off["style_type"] == "GENERAL"
    assert 0 <= off["seed"] <= 2_147_483_647
    auto = post(client, "/v1/ideogram-v3/generate", json={"prompt": "a fox", "magic_prompt": "AUTO"}).json()
    assert auto["data"][0]["prompt"] == "a fox, highly detailed, cinematic lighting"
    v1 = generate(client, "x", model="V_1", aspect_ratio="ASPECT_16_9").json()["data"][0]
    assert v1["resolution"] == "1280x720"  # the V_1 size table


def test_v3_generate_accepts_multipart_too(sim, client) -> None:
    resp = post(client, "/v1/ideogram-v3/generate", files=[t("prompt", "a cat"), t("resolution", "1280x800"),
                                                            t("style_codes", "AAFF5733"), t("style_codes", "0011AAFF")])
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"][0]["resolution"] == "1280x800"
    assert sim.requests[-1].fields["style_codes"] == ["AAFF5733", "0011AAFF"]


def test_request_log_records_parts_and_fields_without_the_key(sim, client) -> None:
    kwargs = CASES[Operation.REMIX][0]
    post(client, "/ideogram/remix", style="bearer", **kwargs)
    rec = sim.requests[-1]
    assert rec.parts == [
        {"name": "image_file", "filename": "in.png", "content_type": "image/png"},
        {"name": "image_request", "filename": None, "content_type": "application/json"},
    ]
    assert rec.fields["image_request"] == {"prompt": "a lighthouse", "resolution": "RESOLUTION_1024_768",
                                           "magic_prompt_option": "OFF", "image_weight": 70}
    assert rec.fields["image_file"] == {"filename": "in.png", "content_type": "image/png", "bytes": len(IMG),
                                        "size": "256x256"}
    assert "authorization" not in rec.headers and "api-key" not in rec.headers
    over_http = client.get("/_sim/requests").json()["requests"]
    assert over_http[-1]["parts"] == rec.parts and KEY not in json.dumps(over_http)


def test_multipart_part_parser() -> None:
    req = httpx.Request("POST", "http://x/", files=[f("image", b"\x89PNG data", "my photo.png"), t("prompt", "hi"),
                                                    t("color_palette", {"name": "EMBER"}, "application/json")])
    parts = multipart_parts(req.read(), req.headers["content-type"])
    assert parts == [
        {"name": "image", "filename": "my photo.png", "content_type": "image/png"},
        {"name": "prompt", "filename": None, "content_type": "text/plain"},
        {"name": "color_palette", "filename": None, "content_type": "application/json"},
    ]


# ---------------------------------------------------------------- images and links


def test_links_are_signed_expiring_and_served_as_png(sim, client) -> None:
    before = int(time.time())
    url = generate(client).json()["data"][0]["url"]
    exp = int(re.search(r"exp=(\d+)", url).group(1))
    assert before + 3600 <= exp <= int(time.time()) + 3600
    ok = client.get(url)
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
    assert decode(ok.content).size == (1024, 1024)

    sig = re.search(r"sig=([0-9a-f]{64})", url).group(1)
    tampered = url.replace(sig, ("0" if sig[0] != "0" else "1") + sig[1:])
    longer = url.replace(f"exp={exp}", f"exp={exp + 10}")
    other_id = re.sub(r"ephemeral/[A-Za-z0-9_-]{12}", "ephemeral/AAAAAAAAAAAA", url)  # the id's random part
    assert other_id != url
    unsigned = url.split("?")[0]
    for bad in (tampered, longer, other_id, unsigned):
        resp = client.get(bad)
        assert resp.status_code == 403 and resp.json()["status"] == 403, bad


def test_ttl_follows_the_config(fresh) -> None:
    fresh.configure(url_ttl_s=5)
    with httpx.Client(base_url=fresh.base_url) as c:
        url = generate(c).json()["data"][0]["url"]
        exp = int(re.search(r"exp=(\d+)", url).group(1))
        assert exp - time.time() <= 5
        assert c.get(url).status_code == 200


def test_unsafe_outputs_have_no_url(sim, client) -> None:
    body = generate(client, "an unsafe-output scene", num_images=2).json()
    assert_spec_shape(body, "GenerateImageResponse", sim.base_url)
    assert [(d["is_image_safe"], d["url"]) for d in body["data"]] == [(False, None), (False, None)]
    body = post(client, "/v1/ideogram-v3/generate", json={"prompt": "partly-unsafe", "num_images": 3}).json()
    assert_spec_shape(body, "ImageGenerationResponseV3", sim.base_url)
    assert [d["is_image_safe"] for d in body["data"]] == [False, True, False]


def test_banned_prompt_and_unsafe_upload_are_422(client) -> None:
    resp = generate(client, "something FORBIDDEN here")
    assert resp.status_code == 422
    assert resp.json() == {"error": "Prompt provided failed safety check due to the inclusion of prohibited content."}
    resp = post(client, "/describe", files=[f("image_file", IMG, "unsafe-input.png")])
    assert resp.status_code == 422 and resp.json()["error"].startswith("Image provided failed safety check")


def test_images_are_encoded_once_per_size(sim, client) -> None:
    generate(client, "warm", resolution="RESOLUTION_1152_704", seed=1)
    encodes = sim.stats()["png_encodes"]
    for _ in range(5):
        url = generate(client, "again", resolution="RESOLUTION_1152_704", seed=1).json()["data"][0]["url"]
        assert client.get(url).status_code == 200
    assert sim.stats()["png_encodes"] == encodes


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "field"),
    [
        ("/generate", {"json": {"image_request": {"prompt": "x", "num_images": 9}}}, 400, "image_request.num_images"),
        ("/generate", {"json": {"image_request": {"prompt": "x", "aspect_ratio": "ASPECT_1_1",
                                                  "resolution": "RESOLUTION_1024_1024"}}}, 400, "image_request.aspect_ratio"),
        ("/ideogram/generate", {"json": {"image_request": {"model": "V_2"}}}, 400, "image_request.prompt"),
        ("/generate", {"json": {"prompt": "x"}}, 400, "image_request"),
        ("/generate", {"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "body"),
        ("/v1/ideogram-v3/generate", {"json": {"prompt": "x", "aspect_ratio": "16:9"}}, 400, "aspect_ratio"),
        ("/v1/ideogram-v3/generate", {"json": {"prompt": "x", "style_codes": ["AAFF5733"], "style_type": "AUTO"}},
         400, "style_codes"),
        ("/v1/ideogram-v3/edit", {"files": [f("image", BIG), f("mask", MASK), t("prompt", "x")]}, 400, "mask"),
        ("/edit", {"files": [f("image_file", IMG), f("mask", MASK), t("prompt", "x"), t("model", "V_1")]}, 400, "model"),
        ("/ideogram/v1/remix", {"files": [t("image_request", {"prompt": "x"}, "application/json")]}, 400, "image_file"),
        ("/v1/ideogram-v3/reframe", {"files": [f("image", IMG), t("resolution", "1000x1000")]}, 400, "resolution"),
        ("/describe", {"files": [f("image_file", b"GIF89a not an image")]}, 400, "image_file"),
        ("/remix", {"json": {"image_request": {"prompt": "x"}}}, 415, "Content-Type"),
        ("/generate", {"content": b"prompt=x", "headers": {"Content-Type": "text/plain"}}, 415, "Content-Type"),
    ],
)
def test_bad_input_is_a_problem_naming_the_field(sim, client, path, kwargs, status, field) -> None:
    resp = post(client, path, **kwargs)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["type"] == "about:blank" and body["status"] == status and body["title"]
    assert body["detail"].startswith(field + ":"), body["detail"]
    rec = sim.requests[-1]
    assert rec.status == status and rec.error == body["detail"] and rec.fields is None


def test_oversized_body_is_413(fresh) -> None:
    fresh.configure(max_body_bytes=10_000)
    with httpx.Client(base_url=fresh.base_url) as c:
        resp = post(c, "/v1/ideogram-v3/remix", files=[f("image", BIG), t("prompt", "x")])
    assert resp.status_code == 413 and resp.json()["detail"].startswith("body:")


# ---------------------------------------------------------------- the official schema as the oracle


def test_the_sim_imports_none_of_our_request_handling() -> None:
    """The oracle must not share code with what it checks: no ideohub.api, media, engines or service."""
    code = ("import sys, ideohub.sim, ideohub.sim.__main__; "
            "print(sorted(m for m in sys.modules if m.startswith(('ideohub.api', 'ideohub.media', "
            "'ideohub.engines', 'ideohub.service', 'ideohub.store'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def _our_parser_verdict(op: Operation, body: dict[str, Any]) -> str | None:
    """What ideohub's own parser says of a JSON body: None (accepted) or the error detail."""
    from ideohub.api.dialects.fields import Fields
    from ideohub.domain.errors import IdeohubError
    from ideohub.media.decode import ImageLimits

    try:
        ENDPOINTS[op].parse(Fields.from_json_object(body, ImageLimits()))
    except IdeohubError as exc:
        return exc.detail
    return None


# (path, body, our parser accepts it, the official schema accepts it, the sim's detail when refused)
DISAGREEMENTS = [
    # JSON Schema draft 4 (OpenAPI 3.0): 5.0 is a number, not an integer; our parser takes it as 5
    ("/generate", {"image_request": {"prompt": "x", "seed": 5.0}}, True, False,
     "image_request.seed: 5.0 is not of type 'integer'"),
    # style_codes is an array; our parser wraps a bare string
    ("/v1/ideogram-v3/generate", {"prompt": "x", "style_codes": "AAFF5733"}, True, False,
     "style_codes: 'AAFF5733' is not of type 'array'"),
    # the schema has no minLength on prompt; our parser refuses an empty one
    ("/generate", {"image_request": {"prompt": ""}}, False, True, None),
]


@pytest.mark.parametrize(("path", "body", "ours", "official", "detail"), DISAGREEMENTS,
                         ids=["float-seed", "bare-style-code", "empty-prompt"])
def test_the_sim_answers_per_the_official_schema_not_our_parsers(sim, client, path, body, ours, official, detail):
    op = next(op for op, ep in ENDPOINTS.items() if ep.path == path)
    assert (_our_parser_verdict(op, body) is None) == ours, "our parser changed: pick another disagreement"
    assert request_validator(path, "application/json").is_valid(body) == official
    resp = post(client, path, json=body)
    rec = sim.requests[-1]
    if official:
        assert resp.status_code == 200, resp.text
        assert rec.error is None and rec.fields == body
    else:
        assert resp.status_code == 400 and resp.json()["detail"] == detail
        assert rec.error == detail and rec.fields is None


def _mis_encode(monkeypatch, change) -> None:  # type: ignore[no-untyped-def]
    """Break our relay's request building the way a real bug would (wrapping ``wire.to_wire``)."""
    from ideohub.engines.relay import wire

    original = wire.to_wire

    def broken(request, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = original(request, *args, **kwargs)
        change(out)
        return out

    monkeypatch.setattr(wire, "to_wire", broken)


def _legacy_magic_name(out) -> None:  # type: ignore[no-untyped-def]
    """The V3 field is ``magic_prompt``; the legacy name sneaks in."""
    out.json_body["magic_prompt_option"] = out.json_body.pop("magic_prompt")


def _codes_as_one_json_part(out) -> None:  # type: ignore[no-untyped-def]
    """Arrays go as repeated parts; one JSON-array part is a different (invalid) request."""
    codes = [p for p in out.parts if p[0] == "style_codes"]
    out.parts = [p for p in out.parts if p[0] != "style_codes"]
    out.parts.append(("style_codes", (None, json.dumps([c[1][1].decode() for c in codes]).encode(), "text/plain")))


@pytest.mark.parametrize(("change", "path", "kwargs", "detail"), [
    (_legacy_magic_name, "/v1/ideogram-v3/generate", {"json": {"prompt": "a fox", "magic_prompt": "ON"}},
     "magic_prompt_option: is not a field of GenerateImageRequestV3"),
    (_codes_as_one_json_part, "/v1/ideogram-v3/remix",
     {"files": [f("image", IMG), t("prompt", "a fox"), t("style_codes", "AAFF5733"), t("style_codes", "0011AAFF")]},
     'style_codes[0]: \'["AAFF5733", "0011AAFF"]\' does not match'),
], ids=["field-name", "array-encoding"])
def test_a_relay_bug_in_our_outgoing_request_is_caught_by_the_sim(start_server, sim, monkeypatch, change, path,
                                                                    kwargs, detail) -> None:
    """What makes every relay test a check of our requests: break the encoding, the sim refuses it."""
    srv = start_server("config", engine_config={"*": "relay"}, channels=[
        {"name": "up", "kind": "relay", "base_url": sim.base_url, "key": KEY, "auth": "api-key",
         "path_style": "official", "timeout_s": 5.0}])
    assert srv.post(path, **kwargs).status_code == 200  # the real encoding passes
    assert [r.error for r in sim.api_requests()] == [None]
    _mis_encode(monkeypatch, change)
    resp = srv.post(path, **kwargs)
    refused = sim.refused_requests()
    assert len(refused) == 1 and refused[0].error.startswith(detail), refused
    assert refused[0].status == 400 and resp.status_code == 400, resp.text  # passed through, never retried


def test_multipart_text_is_coerced_to_the_schema_types(sim, client) -> None:
    files = [t("prompt", "a cat"), t("num_images", "2"), t("seed", "0"), t("enable_copyright_detection", "true"),
             t("style_codes", "AAFF5733"), t("style_codes", "0011aaff"),
             t("color_palette", {"members": [{"color_hex": "#b470b3", "color_weight": 0.5}]}, "application/json"),
             f("character_reference_images", IMG, "face.png"), f("character_reference_images_mask", MASK, "m.png")]
    resp = post(client, "/v1/ideogram-v3/generate", files=files)
    assert resp.status_code == 200, resp.text
    fields = sim.requests[-1].fields
    assert fields["num_images"] == 2 and fields["seed"] == 0 and fields["enable_copyright_detection"] is True
    assert fields["style_codes"] == ["AAFF5733", "0011aaff"]
    assert fields["color_palette"] == {"members": [{"color_hex": "#b470b3", "color_weight": 0.5}]}
    assert fields["character_reference_images"] == [{"filename": "face.png", "content_type": "image/png",
                                                     "bytes": len(IMG), "size": "256x256"}]
    assert len(resp.json()["data"]) == 2


MULTIPART_REFUSALS = [
    ("integer", [t("prompt", "x"), t("num_images", "2.0")], "num_images: '2.0' is not of type 'integer'"),
    ("long-integer", [t("prompt", "x"), t("seed", "9" * 5000)], "seed: '9999999999"),
    ("boolean", [t("prompt", "x"), t("enable_copyright_detection", "yes")], "enable_copyright_detection: 'yes' is not"),
    ("json-part", [t("prompt", "x"), t("color_palette", "PASTEL", "application/json")], "color_palette: is not valid JSON"),
    ("json-part-type", [t("prompt", "x"), t("color_palette", {"name": "PASTEL"}, "text/csv")],
     "color_palette: the spec sends this part as application/json"),
    ("repeated", [t("prompt", "x"), t("prompt", "y")], "prompt: is sent more than once"),
    ("file-as-text", [t("prompt", "x"), t("style_reference_images", "not a file")],
     "style_reference_images: must be a file part"),
    ("text-as-file", [f("prompt", b"a cat", "p.txt", "text/plain")], "prompt: must be a text part"),
    ("undeclared", [t("prompt", "x"), t("magic_prompt_option", "ON")],
     "magic_prompt_option: is not a field of GenerateImageRequestV3"),
    ("enum", [t("prompt", "x"), t("rendering_speed", "turbo")], "rendering_speed: 'turbo' is not one of"),
    ("pattern", [t("prompt", "x"), t("style_codes", "XYZ")], "style_codes[0]: 'XYZ' does not match"),
    ("palette-xor", [t("prompt", "x"), t("color_palette", {"name": "PASTEL", "members": [{"color_hex": "#fff"}]},
                                         "application/json")], "color_palette: "),
    ("not-an-image", [t("prompt", "x"), f("style_reference_images", b"GIF89a....", "a.gif", "image/gif")],
     "style_reference_images: is not a readable JPEG, PNG or WebP image"),
    ("two-characters", [t("prompt", "x"), f("character_reference_images", IMG), f("character_reference_images", IMG)],
     "character_reference_images: supports 1 image at most"),
    ("mask-count", [t("prompt", "x"), f("character_reference_images_mask", MASK)],
     "character_reference_images_mask: must match the number"),
    ("codes-and-refs", [t("prompt", "x"), t("style_codes", "AAFF5733"), f("style_reference_images", IMG)],
     "style_codes: cannot be used together with style_reference_images"),
    ("preset-and-codes", [t("prompt", "x"), t("style_codes", "AAFF5733"), t("style_preset", "BAUHAUS")],
     "style_preset: cannot be used together"),
    ("aspect-and-resolution", [t("prompt", "x"), t("aspect_ratio", "1x1"), t("resolution", "1024x1024")],
     "aspect_ratio: cannot be used together with resolution"),
    ("custom-model", [t("prompt", "x"), t("custom_model_uri", "my-model")], "custom_model_uri: must have the form"),
]


@pytest.mark.parametrize(("parts", "detail"), [c[1:] for c in MULTIPART_REFUSALS], ids=[c[0] for c in MULTIPART_REFUSALS])
def test_multipart_refusals_name_the_field_and_rule(sim, client, parts, detail) -> None:
    resp = post(client, "/v1/ideogram-v3/generate", files=parts)
    assert resp.status_code == 400, resp.text
    assert resp.json()["detail"].startswith(detail), resp.json()["detail"]
    assert sim.requests[-1].error == resp.json()["detail"] and sim.requests[-1].fields is None


JSON_REFUSALS = [
    ("nan", b'{"prompt": "x", "seed": NaN}', "body: is not valid JSON"),
    ("surrogate", b'{"prompt": "\\ud800"}', "prompt: holds a lone surrogate"),
    ("deep", b'{"prompt": "x", "negative_prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "body: is nested too deeply"),
    ("huge-int", b'{"prompt": "x", "seed": ' + b"9" * 5000 + b"}", "body: is not valid JSON"),
    ("array", b'["prompt"]', "body: must be a JSON object"),
    ("file-in-json", b'{"prompt": "x", "style_reference_images": ["a.png"]}',
     "style_reference_images: files can only be sent as multipart/form-data"),
]


@pytest.mark.parametrize(("raw", "detail"), [c[1:] for c in JSON_REFUSALS], ids=[c[0] for c in JSON_REFUSALS])
def test_json_refusals(sim, client, raw, detail) -> None:
    resp = post(client, "/v1/ideogram-v3/generate", content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["detail"].startswith(detail), resp.json()["detail"]


@pytest.mark.parametrize(("image_request", "detail"), [
    ({"prompt": "x", "model": "V_1", "style_type": "REALISTIC"}, "image_request.style_type: is not supported by model V_1"),
    ({"prompt": "x", "model": "V_2A", "negative_prompt": "blur"}, "image_request.negative_prompt: is only available"),
    ({"prompt": "x", "model": "V_1_TURBO", "color_palette": {"name": "PASTEL"}}, "image_request.color_palette: is not"),
    ({"prompt": "x", "image_weight": 50}, "image_request.image_weight: is not a field of ImageRequest"),
])
def test_legacy_model_gates(sim, client, image_request, detail) -> None:
    resp = post(client, "/generate", json={"image_request": image_request})
    assert resp.status_code == 400 and resp.json()["detail"].startswith(detail), resp.text


def test_truncated_multipart_is_refused(sim, client) -> None:
    req = httpx.Request("POST", "http://x/", files=[t("prompt", "a cat")])
    body = req.read()
    resp = post(client, "/v1/ideogram-v3/generate", content=body[: len(body) - 10],
                headers={"Content-Type": req.headers["content-type"]})
    assert resp.status_code == 400 and resp.json()["detail"].startswith("body:"), resp.text


def test_strict_fields_can_be_relaxed(fresh) -> None:
    with httpx.Client(base_url=fresh.base_url) as c:
        body = {"prompt": "x", "unknown_knob": 1}
        assert post(c, "/v1/ideogram-v3/generate", json=body).status_code == 400
        fresh.configure(strict_fields=False)
        assert post(c, "/v1/ideogram-v3/generate", json=body).status_code == 200
        assert post(c, "/v1/ideogram-v3/generate", files=[t("prompt", "x"), t("unknown_knob", "1")]).status_code == 200


# ---------------------------------------------------------------- auth


@pytest.mark.parametrize("path", [p for _, p in ROUTES if not p.startswith("/ideogram")])
def test_auth_failures(sim, client, path: str) -> None:
    op = next(op for op, ep in ENDPOINTS.items() if ep.path == path)
    expected = 403 if op in (Operation.REMIX, Operation.UPSCALE, Operation.V3_REMIX) else 401
    kwargs = CASES[op][0]
    missing = client.post(path, **kwargs)
    wrong = post(client, path, key="nope", **kwargs)
    wrong_bearer = post(client, path, style="bearer", key="nope", **kwargs)
    basic = client.post(path, headers={"Authorization": f"Basic {KEY}"}, **kwargs)
    for resp in (missing, wrong, wrong_bearer, basic):
        assert resp.status_code == expected, resp.text
        assert resp.json()["status"] == expected
    assert [r.auth for r in sim.requests[-4:]] == [None, "api-key", "bearer", "other"]
    assert not any(r.auth_ok for r in sim.requests[-4:])


def test_auth_styles_and_keys_are_configurable(fresh) -> None:
    fresh.configure(auth_styles=("api-key",), api_keys=("k1", "k2"))
    with httpx.Client(base_url=fresh.base_url) as c:
        assert generate_with(c, {"Api-Key": "k2"}).status_code == 200
        assert generate_with(c, {"Authorization": "Bearer k1"}).status_code == 401
        fresh.configure(auth_styles=("bearer",))
        assert generate_with(c, {"Authorization": "bearer k1"}).status_code == 200
        assert generate_with(c, {"Api-Key": "k1"}).status_code == 401
        fresh.configure(require_auth=False)
        assert generate_with(c, {}).status_code == 200


def generate_with(c: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return c.post("/generate", headers=headers, json={"image_request": {"prompt": "x"}})


# ---------------------------------------------------------------- faults


def test_fault_kinds_are_the_documented_ones() -> None:
    assert set(FAULT_KINDS) == {"latency", "status", "hang", "malformed_json", "truncated_download",
                                "expired_links", "unauthorized"}
    assert Fault.from_dict({"status": 429}).retry_after == 1
    assert Fault.from_dict({"hang": True, "hang_s": 2}).kind == "hang"
    assert Fault.from_dict({"latency_s": 0.5}).kind == "latency"
    assert Fault("truncated_download").on == "download"
    with pytest.raises(ValueError):
        Fault("explode")
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "status", "status": 429, "colour": "red"})


def test_429_with_retry_after_then_recovers(sim, client) -> None:
    sim.faults("status", status=429, retry_after=3, count=2)
    for _ in range(2):
        resp = generate(client)
        assert resp.status_code == 429 and resp.headers["Retry-After"] == "3"
        assert resp.json()["status"] == 429
    assert generate(client).status_code == 200
    assert [r.fault for r in sim.requests] == ["status", "status", None]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_faults(sim, client, status: int) -> None:
    sim.faults(status=status)
    resp = generate(client)
    assert resp.status_code == status and resp.json()["status"] == status
    assert generate(client).status_code == 200


def test_fault_with_a_raw_body(sim, client) -> None:
    sim.faults("status", status=502, body="<html>bad gateway</html>")
    resp = generate(client)
    assert resp.status_code == 502 and resp.text == "<html>bad gateway</html>"
    assert resp.headers["content-type"].startswith("text/plain")
    sim.faults("status", status=400, body='{"detail": "prompt: too long"}')
    resp = generate(client)
    assert resp.status_code == 400 and resp.json() == {"detail": "prompt: too long"}


def test_latency_fault_and_config_latency(sim, client, fresh) -> None:
    sim.faults("latency", latency_s=0.8)  # wide enough that a loaded CI machine cannot blur the two calls
    start = time.monotonic()
    assert generate(client).status_code == 200
    assert time.monotonic() - start >= 0.8
    start = time.monotonic()
    generate(client)  # the fault was used up: no delay
    assert time.monotonic() - start < 0.8
    fresh.configure(latency_s=0.2)
    with httpx.Client(base_url=fresh.base_url) as c:
        start = time.monotonic()
        assert post(c, "/v1/ideogram-v3/generate", json={"prompt": "x"}).status_code == 200
        assert time.monotonic() - start >= 0.2


def test_hang_outlasts_the_client_timeout(sim, client) -> None:
    sim.faults("hang", hang_s=20)
    start = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        post(client, "/generate", json={"image_request": {"prompt": "x"}}, timeout=0.3)
    assert time.monotonic() - start < 5
    assert generate(client).status_code == 200  # consumed
    deadline = time.monotonic() + 3
    while sim.stats()["in_flight"] and time.monotonic() < deadline:  # the hang ends when the client leaves
        time.sleep(0.02)
    assert sim.stats()["in_flight"] == 0


def test_short_hang_then_answers(sim, client) -> None:
    sim.faults(hang=True, hang_s=0.2)
    start = time.monotonic()
    assert generate(client).status_code == 200
    assert time.monotonic() - start >= 0.2


def test_malformed_json(sim, client) -> None:
    sim.faults("malformed_json", path="/ideogram/v1/ideogram-v3/generate")
    resp = post(client, "/ideogram/v1/ideogram-v3/generate", json={"prompt": "x"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.content)


def test_truncated_download(sim, client) -> None:
    url = generate(client).json()["data"][0]["url"]
    sim.faults("truncated_download")
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(url)
    assert client.get(url).status_code == 200
    assert [r.fault for r in sim.requests if r.kind == "download"] == ["truncated_download", None]


def test_expired_links(sim, client) -> None:
    sim.faults("expired_links")
    url = generate(client).json()["data"][0]["url"]
    assert int(re.search(r"exp=(\d+)", url).group(1)) < time.time()
    resp = client.get(url)
    assert resp.status_code == 410 and resp.json()["status"] == 410
    assert client.get(generate(client).json()["data"][0]["url"]).status_code == 200


def test_unauthorized_fault_uses_the_endpoints_auth_status(sim, client) -> None:
    sim.faults("unauthorized", count=2)
    assert generate(client).status_code == 401
    assert post(client, "/ideogram/remix", **CASES[Operation.REMIX][0]).status_code == 403
    assert generate(client).status_code == 200


def test_faults_match_by_path_and_operation(sim, client) -> None:
    sim.faults("status", status=503, path="/v1/ideogram-v3/generate")  # the official path covers relay aliases
    assert generate(client).status_code == 200
    assert post(client, "/ideogram/v1/ideogram-v3/generate", json={"prompt": "x"}).status_code == 503
    sim.faults("status", status=500, path="/ideogram/generate")  # an exact relay path
    assert generate(client, path="/generate").status_code == 200
    assert generate(client, path="/ideogram/generate").status_code == 500
    sim.faults("status", status=502, path="v3-remix")
    assert post(client, "/v1/ideogram-v3/remix", **CASES[Operation.V3_REMIX][0]).status_code == 502


def test_persistent_fault_until_cleared(sim, client) -> None:
    sim.faults("status", status=503, count=None)
    assert [generate(client).status_code for _ in range(3)] == [503, 503, 503]
    assert len(sim.pending_faults()) == 1
    sim.clear_faults()
    assert generate(client).status_code == 200


def test_control_endpoints_over_http(sim, client) -> None:
    resp = client.post("/_sim/faults", json={"faults": [{"status": 429, "retry_after": 7, "count": 1},
                                                        {"kind": "malformed_json"}]})
    assert resp.status_code == 200 and resp.json()["queued"] == 2
    assert [f["kind"] for f in client.get("/_sim/faults").json()["faults"]] == ["status", "malformed_json"]
    first = generate(client)
    assert first.status_code == 429 and first.headers["Retry-After"] == "7"
    second = generate(client)
    assert second.status_code == 200 and not second.text.endswith("}")  # the malformed body
    assert generate(client).status_code == 200
    assert client.post("/_sim/faults", json={"kind": "nope"}).status_code == 400
    assert len(client.get("/_sim/requests").json()["requests"]) == 3
    assert client.post("/_sim/reset").status_code == 200
    assert client.get("/_sim/requests").json()["requests"] == []
    assert client.get("/_sim/faults").json()["faults"] == []
    assert "url_secret" in client.get("/_sim/config").json()["config"]
    assert KEY not in client.get("/_sim/config").text


def test_in_flight_limit(fresh) -> None:
    fresh.configure(max_in_flight=1)
    fresh.faults("hang", hang_s=0.5)
    with httpx.Client(base_url=fresh.base_url) as a, httpx.Client(base_url=fresh.base_url) as b:
        slow: list[int] = []
        th = threading.Thread(target=lambda: slow.append(generate(a).status_code))
        th.start()
        deadline = time.monotonic() + 3
        while fresh.stats()["in_flight"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        resp = generate(b)
        th.join()
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "1"
    assert slow == [200]


def test_reset_ends_a_hang(sim, client) -> None:
    sim.faults("hang", hang_s=30)
    result: list[int] = []
    th = threading.Thread(target=lambda: result.append(generate(client).status_code))
    th.start()
    time.sleep(0.2)
    sim.reset()
    th.join(timeout=5)
    assert result == [200]


# ---------------------------------------------------------------- standalone


def test_cli_arguments() -> None:
    cfg = config_from_args(parse_args(["--port", "0", "--key", "a", "--key", "b", "--ttl", "60", "--latency-s", "0.01",
                                       "--config-json", '{"banned_words": ["nope"], "url_secret": "00ff"}']))
    assert cfg.api_keys == ("a", "b") and cfg.url_ttl_s == 60 and cfg.latency_s == 0.01
    assert cfg.banned_words == ("nope",) and cfg.url_secret == b"\x00\xff"


def test_subprocess_mode() -> None:
    config = SimConfig(api_keys=("sub-key",), warm_sizes=())
    with SimulatedUpstream(config, subprocess=True) as sub, httpx.Client(base_url=sub.base_url, timeout=30) as c:
        assert sub.api_key == "sub-key" and sub.port > 0
        sub.faults("status", status=503)
        assert post(c, "/generate", key="sub-key", json={"image_request": {"prompt": "x"}}).status_code == 503
        body = post(c, "/ideogram/v1/ideogram-v3/generate", style="bearer", key="sub-key", json={"prompt": "x"}).json()
        assert_spec_shape(body, "ImageGenerationResponseV3", sub.base_url)
        assert decode(c.get(body["data"][0]["url"]).content).size == (1024, 1024)
        recs = sub.requests
        assert [(r.kind, r.status, r.fault) for r in recs] == [("api", 503, "status"), ("api", 200, None),
                                                              ("download", 200, None)]
        assert recs[1].auth == "bearer" and recs[1].fields == {"prompt": "x"}
        sub.configure(url_ttl_s=10)
        url = post(c, "/generate", key="sub-key", json={"image_request": {"prompt": "x"}}).json()["data"][0]["url"]
        assert int(re.search(r"exp=(\d+)", url).group(1)) <= time.time() + 10
        sub.reset()
        assert sub.requests == [] and sub.pending_faults() == []
