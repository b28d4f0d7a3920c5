"""The simulated upstream's 4.0 and /v2 endpoints, over real HTTP: every served operation answers a
valid request in its official 200 schema (checked here against the vendored document, with a
local oracle that shares no code with the sim), links real PNGs of the stated size, refuses what
the contract refuses with the field named, and runs the async flow (acknowledgement, then
``pending`` → ``completed`` at ``GET /v2/generations/{id}``)."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest
from PIL import Image

from ideohub.domain.operations import Family, Operation
from ideohub.sim import SimConfig, SimulatedUpstream
from ideohub.sim.schema import endpoints
from sim.test_upstream import mask, png
from openapi import component_validator, document_with, path_response_validator

KEY = "test-new-families-key"
GENERATION_PATH = "/v2/generations/{generation_id}"


# ---------------------------------------------------------------- the oracle: the vendored documents


def response_validator(path: str, method: str = "post") -> jsonschema.Validator:
    """The official 200 schema of ``path`` in the newest vendored document declaring it (tests/openapi.py:
    pinned documents, shared with no code of the sim)."""
    return path_response_validator(path, method)


# ---------------------------------------------------------------- helpers


IMG = png(256, 256)
WIDE = png(400, 300)  # 4:3
BIG = png(1024, 1024)
BIG_MASK = mask(1024, 1024)
ASSET = {"asset_id": "7uS_VESkRI6O3-sVgHQp_A", "asset_type": "RESPONSE"}
JSON_PROMPT = {"high_level_description": "a lighthouse at dusk",
               "compositional_deconstruction": {"background": "a calm sea", "elements": [
                   {"type": "obj", "desc": "a lighthouse", "bbox": [100, 400, 900, 600], "color_palette": ["#FFAA00"]},
                   {"type": "text", "text": "HOME", "desc": "bold letters"}]}}


def f(name: str, data: bytes, filename: str = "in.png") -> tuple[str, Any]:
    return (name, (filename, data, "image/png"))


def t(name: str, value: Any, ctype: str = "text/plain") -> tuple[str, Any]:
    return (name, (None, value if isinstance(value, str) else json.dumps(value), ctype))


class Case:
    """One valid request: httpx kwargs, the size of each image, how many, whether they have alpha."""

    def __init__(self, kwargs: dict[str, Any], size: str | None = None, n: int = 1, alpha: bool = False) -> None:
        self.kwargs, self.size, self.n, self.alpha = kwargs, size, n, alpha


# Keyed by operation value: every 4.0 and /v2 operation the sim serves must have one.
CASES: dict[str, Case] = {
    "v4-generate": Case({"json": {"text_prompt": "a lighthouse", "resolution": "1280x720", "seed": 7}}, "1280x720"),
    "v4-remix": Case({"files": [f("image", WIDE), t("text_prompt", "a fox"), t("image_weight", "40")]}, "1152x864"),
    "v4-generate-transparent": Case({"json": {"text_prompt": "a sticker", "aspect_ratio": "16x9"}}, "1280x720",
                                    alpha=True),
    "v4-magic-prompt": Case({"json": {"text_prompt": "a cat", "aspect_ratio": "AUTO"}}),
    "v4-describe": Case({"files": [f("image_file", IMG), t("include_tags", "true")]}),
    "v45-generate": Case({"files": [t("json_prompt", JSON_PROMPT, "application/json")]}, "1024x1024"),
    "v2-generate-auto": Case({"json": {"prompt": "a cat", "num_images": 2}}, "1024x1024", 2),
    "v2-generate-ideogram-2": Case({"json": {"prompt": "a cat", "aspect_ratio": "16x9"}}, "1312x736"),
    "v2-generate-ideogram-2a": Case({"json": {"prompt": "a cat", "magic_prompt": "off"}}, "1024x1024"),
    "v2-generate-ideogram-3": Case({"files": [t("prompt", "a cat"), t("resolution", "1280x800")]}, "1280x800"),
    "v2-generate-ideogram-3-character": Case({"files": [t("prompt", "a hero"), f("character_reference_images", IMG)]},
                                             "1024x1024"),
    "v2-generate-ideogram-3-custom-model": Case({"json": {"prompt": "a cat", "custom_model_uri": "model/m/version/1"}},
                                                "1024x1024"),
    "v2-generate-ideogram-3-transparent": Case({"json": {"prompt": "a sticker", "upscale_factor": "x2"}}, "2048x2048",
                                               alpha=True),
    "v2-generate-ideogram-4": Case({"json": {"prompt": "a cat", "resolution": "896x1120", "num_images": 2,
                                             "private": True}}, "896x1120", 2),
    "v2-generate-ideogram-4-5": Case({"json": {"prompt": "a cat", "size": "1440x2560", "quality": "high"}},
                                     "1440x2560"),
    "v2-generate-ideogram-4-custom-model": Case({"json": {"prompt": "a cat", "custom_model_uri": "model/m/version/1"}},
                                                "1024x1024"),
    "v2-generate-ideogram-4-transparent": Case({"json": {"prompt": "a sticker", "aspect_ratio": "1x1",
                                                         "output_resolution": "1k"}}, "1024x1024", alpha=True),
    "v2-generate-gpt-image-2": Case({"json": {"prompt": "a cat"}}, "1024x1024"),
    "v2-generate-gpt-image-2-5-flare": Case({"json": {"prompt": "a logo", "background": "transparent"}}, "1024x1024",
                                            alpha=True),
    "v2-generate-gpt-image-2-5-sunburst": Case({"files": [t("prompt", "a cat"), f("images", IMG)]}, "1024x1024"),
    "v2-generate-nano-banana-2": Case({"json": {"prompt": "a cat", "aspect_ratio": "16:9", "resolution_tier": "1K"}},
                                      "1024x576"),
    "v2-generate-nano-banana-pro": Case({"json": {"prompt": "a cat"}}, "1024x1024"),
    "v2-generate-p-image-ideogram": Case({"json": {"prompt": "a cat", "resolution": "2k", "aspect_ratio": "1x1"}},
                                         "2048x2048"),
    "v2-generate-z-image": Case({"json": {"prompt": "a cat"}}, "1024x1024"),
    "v2-remix-auto": Case({"files": [f("image", IMG), t("prompt", "make it snowy")]}, "256x256"),
    "v2-remix-ideogram-3": Case({"files": [f("image", IMG), t("prompt", "snowy"), t("resolution", "1024x1024")]},
                                "1024x1024"),
    "v2-remix-ideogram-3-character": Case({"files": [f("image", IMG), t("prompt", "snowy")]}, "256x256"),
    "v2-remix-ideogram-3-custom-model": Case({"files": [f("image", IMG), t("prompt", "snowy"),
                                                        t("custom_model_uri", "model/m/version/1")]}, "256x256"),
    "v2-remix-ideogram-4": Case({"files": [f("image", WIDE), t("prompt", "snowy"), t("image_weight", "60")]},
                                "1152x864"),
    "v2-inpaint-ideogram-3": Case({"files": [f("image", BIG), f("mask", BIG_MASK, "m.png"), t("prompt", "a hat")]},
                                  "1024x1024"),
    "v2-inpaint-ideogram-3-character": Case({"files": [f("image", BIG), f("mask", BIG_MASK, "m.png"),
                                                       t("prompt", "a hat")]}, "1024x1024"),
    "v2-inpaint-ideogram-3-custom-model": Case({"files": [f("image", BIG), f("mask", BIG_MASK, "m.png"),
                                                          t("prompt", "a hat"),
                                                          t("custom_model_uri", "model/m/version/1")]}, "1024x1024"),
    "v2-reframe-ideogram-3": Case({"files": [f("image", IMG), t("resolution", "1280x800")]}, "1280x800"),
    "v2-reframe-nano-banana-2": Case({"files": [f("image", IMG), t("aspect_ratio", "16:9")]}, "1312x736"),
    "v2-upscale-auto": Case({"files": [f("image", IMG), t("upscale_factor", "x4")]}, "1024x1024"),
    "v2-upscale-nano-banana-pro": Case({"files": [f("image", IMG)]}, "2048x2048"),
    "v2-upscale-topaz-bloom-2": Case({"files": [f("image", IMG), t("upscale_factor", "x2")]}, "512x512"),
    "v2-upscale-topaz-redefine": Case({"files": [f("image", IMG)]}, "512x512"),
    "v2-remove-background-ideogram-1": Case({"files": [f("image", IMG)]}, "256x256", alpha=True),
    "v2-replace-background-ideogram-3": Case({"files": [f("image", IMG), t("prompt", "a forest")]}, "256x256"),
    "v2-replace-background-gpt-image-2": Case({"files": [f("image", IMG), t("prompt", "a forest")]}, "256x256"),
    "v2-describe-ideogram-3": Case({"files": [f("image", IMG)]}),
    "v2-describe-ideogram-4": Case({"files": [f("image", IMG), t("include_style_descriptions", "true")]}),
}
SERVED = [op for op in endpoints() if op.family in (Family.V4, Family.V2)]


@pytest.fixture(scope="module")
def sim():
    with SimulatedUpstream(SimConfig(api_keys=(KEY,), warm_sizes=())) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean(request):  # type: ignore[no-untyped-def]
    yield
    if "sim" in request.fixturenames:
        running = request.getfixturevalue("sim")
        running.reset()
        running.configure(async_pending_polls=1)


@pytest.fixture
def client(sim):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=sim.base_url, timeout=30, headers={"Api-Key": KEY}) as c:
        yield c


def decode(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def poll(client: httpx.Client, generation_id: str, path: str = "/v2/generations/") -> httpx.Response:
    return client.get(path + generation_id)


def completed(client: httpx.Client, generation_id: str) -> dict[str, Any]:
    """Poll until the generation leaves ``pending``; every answer is in the official schema."""
    for _ in range(10):
        resp = poll(client, generation_id)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        response_validator(GENERATION_PATH, "get").validate(body)
        if body["status"] != "pending":
            return body
    raise AssertionError("still pending after 10 polls")


def check_images(client: httpx.Client, items: list[dict[str, Any]], case: Case) -> None:
    assert len(items) == case.n
    for item in items:
        if "resolution" in item:
            assert item["resolution"] == case.size
        image = decode(client.get(item["url"]).content)
        assert f"{image.width}x{image.height}" == case.size
        assert (image.mode == "RGBA") == case.alpha
        if case.alpha:
            alpha = np.asarray(image.getchannel("A"))
            assert alpha.min() == 0 and alpha.max() == 255


# ---------------------------------------------------------------- every operation


def test_every_new_operation_is_served_and_has_a_case() -> None:
    served = {op.value for op in SERVED}
    assert served, "no 4.0 or /v2 operation is served: is the October-2026 extract vendored?"
    assert served <= set(CASES), sorted(served - set(CASES))
    for op in SERVED:  # served exactly when a vendored document declares the path, from the newest one
        assert endpoints()[op].document == document_with(op.official_path)


@pytest.mark.parametrize("op", SERVED, ids=[op.value for op in SERVED])
def test_valid_request_is_answered_in_the_official_schema(sim, client, op: Operation) -> None:
    case = CASES[op.value]
    path = op.official_path
    resp = client.post(path, **case.kwargs)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    response_validator(path).validate(body)
    rec = sim.api_requests()[-1]
    assert (rec.path, rec.operation, rec.status, rec.error) == (path, op.value, 200, None)

    if op is Operation.V4_MAGIC_PROMPT:
        assert body["aspect_ratio"] == "1x1"
        assert body["json_prompt"]["high_level_description"].startswith("a cat")
        return
    if op in (Operation.V4_DESCRIBE, Operation.V2_DESCRIBE_IDEOGRAM_4):
        prompt = body["json_prompt"]
        elements = prompt["compositional_deconstruction"]["elements"]
        assert all("bbox" in e for e in elements)  # include_bbox defaults to true
        assert ("tags" in prompt) == (op is Operation.V4_DESCRIBE)
        assert ("style_description" in prompt) == (op is Operation.V2_DESCRIBE_IDEOGRAM_4)
        return
    if op is Operation.V2_DESCRIBE_IDEOGRAM_3:
        assert body["descriptions"][0]["text"]
        return
    if "data" not in body:  # async-only: an acknowledgement, the result by polling
        assert set(body) <= {"generation_id", "seed", "width", "height"}
        done = completed(client, body["generation_id"])
        assert done["status"] == "completed" and done["response_type"] == "url"
        check_images(client, done["data"], case)
        if "width" in body:
            assert f"{body['width']}x{body['height']}" == case.size
        return
    check_images(client, body["data"], case)
    if "width" in body:
        assert f"{body['width']}x{body['height']}" == case.size
    if "seed" in body and op.family is Family.V2:
        assert all(item.get("seed", body["seed"]) == body["seed"] for item in body["data"])


@pytest.mark.parametrize("op", [Operation.V4_GENERATE, Operation.V2_GENERATE_IDEOGRAM_4])
def test_relay_alias_path(sim, client, op: Operation) -> None:
    case = CASES[op.value]
    resp = client.post("/ideogram" + op.official_path, **case.kwargs)
    assert resp.status_code == 200, resp.text
    response_validator(op.official_path).validate(resp.json())
    assert client.post("/ideogram/v1" + op.official_path, **case.kwargs).status_code == 404  # legacy alias only


def test_v4_generate_with_a_json_prompt_as_a_multipart_part(sim, client) -> None:
    resp = client.post("/v1/ideogram-v4/generate", files=[t("json_prompt", JSON_PROMPT, "application/json"),
                                                           t("resolution", "1024x1024"), t("seed", "3")])
    assert resp.status_code == 200, resp.text
    item = resp.json()["data"][0]
    assert json.loads(item["prompt"]) == JSON_PROMPT  # a JSON prompt skips the magic prompt
    assert item["seed"] == 3
    assert sim.api_requests()[-1].fields["json_prompt"] == JSON_PROMPT


def test_magic_prompt_follows_the_request(client) -> None:
    text = client.post("/v1/ideogram-v4/generate", json={"text_prompt": "a fox"}).json()["data"][0]
    assert text["prompt"] == "a fox, highly detailed, cinematic lighting" and text["resolution"] == "1024x1024"
    off = client.post("/v2/image/generate/ideogram-4", json={"prompt": "a fox", "magic_prompt": "off"}).json()
    assert off["data"][0]["prompt"] == "a fox"
    auto = client.post("/v2/image/generate/ideogram-4", json={"prompt": "a fox", "seed": 11}).json()
    assert auto["data"][0]["prompt"] == "a fox, highly detailed, cinematic lighting" and auto["seed"] == 11
    remix = client.post("/v2/image/remix/ideogram-4", files=[f("image", IMG), t("prompt", "snowy")]).json()
    assert remix["data"][0]["prompt"] == "snowy"  # an editing instruction: no magic prompt
    aspect = client.post("/v1/ideogram-v4/magic-prompt", json={"text_prompt": "a fox", "aspect_ratio": "16x9"}).json()
    assert aspect["aspect_ratio"] == "16x9"


def test_private_is_accepted_and_recorded(sim, client) -> None:
    for private in (True, False):
        resp = client.post("/v2/image/generate/ideogram-4", json={"prompt": "x", "private": private})
        assert resp.status_code == 200
        assert sim.api_requests()[-1].fields["private"] is private


def test_safety_markers_on_the_new_families(client) -> None:
    body = client.post("/v2/image/generate/ideogram-4", json={"prompt": "partly-unsafe", "num_images": 3}).json()
    response_validator("/v2/image/generate/ideogram-4").validate(body)
    assert [(d["is_image_safe"], d.get("url")) for d in body["data"]][0] == (False, None)
    assert [d["is_image_safe"] for d in body["data"]] == [False, True, False]
    v4 = client.post("/v1/ideogram-v4/generate", json={"text_prompt": "an unsafe-output scene"}).json()
    response_validator("/v1/ideogram-v4/generate").validate(v4)
    assert v4["data"][0]["is_image_safe"] is False and v4["data"][0]["url"] is None
    banned = client.post("/v2/image/generate/ideogram-4", json={"prompt": "FORBIDDEN"})
    assert banned.status_code == 422 and banned.json()["error"].startswith("Prompt provided failed safety check")
    structured = client.post("/v1/ideogram-v4/generate",
                             json={"json_prompt": {**JSON_PROMPT, "high_level_description": "forbidden"}})
    assert structured.status_code == 422
    upload = client.post("/v2/image/upscale/auto", files=[f("image", IMG, "unsafe-input.png")])
    assert upload.status_code == 422


# ---------------------------------------------------------------- refusals


REFUSALS = [
    ("v4-nothing", "/v1/ideogram-v4/generate", {"json": {"resolution": "1024x1024"}}, 400,
     "text_prompt: one of text_prompt or json_prompt is required"),
    ("v4-both", "/v1/ideogram-v4/generate", {"json": {"text_prompt": "x", "json_prompt": JSON_PROMPT}}, 400,
     "text_prompt: cannot be used together with json_prompt"),
    ("v45-both", "/v1/ideogram-v45/generate", {"files": [t("text_prompt", "x"),
                                                          t("json_prompt", JSON_PROMPT, "application/json")]}, 400,
     "text_prompt: cannot be used together with json_prompt"),
    ("v4-flash", "/v1/ideogram-v4/generate", {"json": {"text_prompt": "x", "rendering_speed": "FLASH"}}, 400,
     "rendering_speed: FLASH is not available"),
    ("v4-bbox", "/v1/ideogram-v4/generate",
     {"json": {"json_prompt": {**JSON_PROMPT, "compositional_deconstruction": {"background": "sea", "elements": [
         {"type": "obj", "desc": "a boat", "bbox": [0, 0, 1001, 10]}]}}}}, 400,
     "json_prompt.compositional_deconstruction.elements[0]"),
    ("v4-palette", "/v1/ideogram-v4/generate",
     {"json": {"json_prompt": {**JSON_PROMPT, "style_description": {"color_palette": ["#fff"]}}}}, 400,
     "json_prompt.style_description.color_palette[0]: '#fff' does not match"),
    ("v4-resolution", "/v1/ideogram-v4/generate", {"json": {"text_prompt": "x", "resolution": "1000x1000"}}, 400,
     "resolution: '1000x1000' is not one of"),
    ("v4-remix-weight-aspect", "/v1/ideogram-v4/remix",
     {"files": [f("image", WIDE), t("text_prompt", "x"), t("image_weight", "50"), t("resolution", "1024x1024")]}, 400,
     "image_weight: cannot be used with a resolution (1024x1024)"),
    ("v4-remix-json", "/v1/ideogram-v4/remix", {"json": {"text_prompt": "x"}}, 415, "Content-Type:"),
    ("v4-magic-prompt-missing", "/v1/ideogram-v4/magic-prompt", {"json": {"aspect_ratio": "1x1"}}, 400,
     "text_prompt: is required"),
    ("v2-missing-prompt", "/v2/image/generate/ideogram-4", {"json": {"num_images": 1}}, 400, "prompt: is required"),
    ("v2-empty-prompt", "/v2/image/generate/ideogram-4", {"json": {"prompt": ""}}, 400, "prompt: ''"),
    ("v2-upper-enum", "/v2/image/generate/ideogram-4", {"json": {"prompt": "x", "rendering_speed": "TURBO"}}, 400,
     "rendering_speed: 'TURBO' is not one of"),
    ("v2-undeclared", "/v2/image/generate/ideogram-4", {"json": {"prompt": "x", "magic_prompt_option": "ON"}}, 400,
     "magic_prompt_option: is not a field of GenerateImageIdeogramV4Request"),
    ("v2-image-and-asset", "/v2/image/remix/ideogram-4",
     {"files": [f("image", IMG), t("image_asset_identifier", ASSET, "application/json"), t("prompt", "x")]}, 400,
     "image: cannot be used together with image_asset_identifier"),
    ("v2-no-image", "/v2/image/remix/ideogram-4", {"files": [t("prompt", "x")]}, 400,
     "image: one of image or image_asset_identifier is required"),
    ("v2-mask-and-asset", "/v2/image/inpaint/ideogram-3",
     {"files": [f("image", BIG), f("mask", BIG_MASK), t("mask_asset_identifier", ASSET, "application/json"),
                t("prompt", "x")]}, 400, "mask: cannot be used together with mask_asset_identifier"),
    ("v2-mask-size", "/v2/image/inpaint/ideogram-3", {"files": [f("image", BIG), f("mask", mask(256, 256)),
                                                                t("prompt", "x")]}, 400, "mask: must be the same size"),
    ("v2-remix-weight-aspect", "/v2/image/remix/ideogram-4",
     {"files": [f("image", WIDE), t("prompt", "x"), t("image_weight", "50"), t("resolution", "2048x2048")]}, 400,
     "image_weight: cannot be used with a resolution"),
    ("v2-asset", "/v2/image/remix/ideogram-4", {"json": {"prompt": "x", "image_asset_identifier": ASSET}}, 404,
     "image_asset_identifier: asset not found"),
    ("v2-images-and-assets", "/v2/image/generate/ideogram-4-5",
     {"files": [t("prompt", "x"), f("images", IMG), t("image_asset_identifiers", ASSET, "application/json")]}, 400,
     "images: cannot be used together with image_asset_identifiers"),
    ("v2-assets", "/v2/image/generate/ideogram-4-5", {"json": {"prompt": "x", "image_asset_identifiers": [ASSET]}}, 404,
     "image_asset_identifiers: asset not found"),
    ("v2-style-assets", "/v2/image/generate/ideogram-3",
     {"json": {"prompt": "x", "style_reference_asset_identifiers": [ASSET]}}, 404,
     "style_reference_asset_identifiers: asset not found"),
    ("v2-remove-background-asset", "/v2/image/remove-background/ideogram-1",
     {"json": {"image_asset_identifier": ASSET}}, 404, "image_asset_identifier: asset not found"),
    ("v2-bad-asset", "/v2/image/remix/ideogram-4",
     {"json": {"prompt": "x", "image_asset_identifier": {"asset_id": "x"}}}, 400,
     "image_asset_identifier.asset_type: is required"),
]


@pytest.mark.parametrize(("path", "kwargs", "status", "detail"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refusals_name_the_field(sim, client, path, kwargs, status, detail) -> None:
    resp = client.post(path, **kwargs)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == status and body["detail"].startswith(detail), body["detail"]
    rec = sim.api_requests()[-1]
    assert rec.error == body["detail"] and rec.fields is None


def test_remix_keeps_the_input_aspect_without_a_resolution(client) -> None:
    tall = png(300, 600)  # 1:2 → the ResolutionV4 value of that aspect nearest in pixels
    body = client.post("/v1/ideogram-v4/remix", files=[f("image", tall), t("text_prompt", "x")]).json()
    assert body["data"][0]["resolution"] == "720x1440"
    same = client.post("/v1/ideogram-v4/remix", files=[f("image", WIDE), t("text_prompt", "x"), t("image_weight", "5"),
                                                         t("resolution", "2304x1728")])
    assert same.status_code == 200 and same.json()["data"][0]["resolution"] == "2304x1728"  # 4:3 too: allowed


# ---------------------------------------------------------------- async


def test_async_request_is_acknowledged_then_polled_to_completion(sim, client) -> None:
    resp = client.post("/v2/image/generate/ideogram-4", json={"prompt": "a cat", "async": True, "seed": 5,
                                                              "num_images": 2})
    assert resp.status_code == 200, resp.text
    ack = resp.json()
    response_validator("/v2/image/generate/ideogram-4").validate(ack)
    assert set(ack) == {"generation_id", "seed"} and ack["seed"] == 5
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", ack["generation_id"])

    first = poll(client, ack["generation_id"])
    assert first.status_code == 200
    response_validator(GENERATION_PATH, "get").validate(first.json())
    assert first.json()["status"] == "pending" and "data" not in first.json()

    done = poll(client, ack["generation_id"]).json()
    response_validator(GENERATION_PATH, "get").validate(done)
    assert done["status"] == "completed" and done["generation_id"] == ack["generation_id"]
    assert [d["object_type"] for d in done["data"]] == ["image.generation"] * 2
    assert all(d["seed"] == 5 for d in done["data"])
    check_images(client, done["data"], Case({}, "1024x1024", 2))
    for path in ("/v1/generations/", "/ideogram/v2/generations/", "/ideogram/v1/generations/"):
        again = poll(client, ack["generation_id"], path)
        assert again.status_code == 200 and again.json()["status"] == "completed", path
    polls = [r for r in sim.requests if r.kind == "poll"]
    assert len(polls) == 5 and all(r.status == 200 and r.auth_ok for r in polls)
    assert len(sim.api_requests()) == 1  # polls are not counted as generation requests


def test_webhook_url_makes_a_request_async(client) -> None:
    resp = client.post("/v2/image/remix/ideogram-4", files=[f("image", IMG), t("prompt", "x"),
                                                            t("webhook_url", "https://hooks.example.com/ideogram")])
    ack = resp.json()
    assert resp.status_code == 200 and "data" not in ack
    done = completed(client, ack["generation_id"])
    assert done["status"] == "completed" and done["data"][0]["resolution"] == "1024x1024"


def test_remove_background_async_polls_images_without_prompt(client) -> None:
    ack = client.post("/v2/image/remove-background/ideogram-1", files=[f("image", IMG), t("async", "true")]).json()
    response_validator("/v2/image/remove-background/ideogram-1").validate(ack)
    assert set(ack) == {"generation_id"}
    done = completed(client, ack["generation_id"])
    assert done["data"][0]["object_type"] == "image.without-prompt-or-seed"
    check_images(client, done["data"], Case({}, "256x256", alpha=True))


def test_pending_polls_are_configurable(sim, client) -> None:
    sim.configure(async_pending_polls=3)
    gid = client.post("/v2/image/generate/ideogram-4", json={"prompt": "x", "async": True}).json()["generation_id"]
    assert [poll(client, gid).json()["status"] for _ in range(5)] == ["pending"] * 3 + ["completed"] * 2
    sim.configure(async_pending_polls=0)
    gid = client.post("/v2/image/generate/ideogram-4", json={"prompt": "x", "async": True}).json()["generation_id"]
    assert poll(client, gid).json()["status"] == "completed"


def test_failed_generation(client) -> None:
    gid = client.post("/v2/image/generate/ideogram-4",
                      json={"prompt": "a failed-generation", "async": True}).json()["generation_id"]
    done = completed(client, gid)
    assert done["status"] == "failed" and done["failure_reason"] == "content_policy_violation"
    assert "data" not in done


def test_poll_needs_auth_and_a_known_id(sim, client) -> None:
    gid = client.post("/v2/image/generate/ideogram-4", json={"prompt": "x", "async": True}).json()["generation_id"]
    with httpx.Client(base_url=sim.base_url) as anonymous:
        assert anonymous.get(f"/v2/generations/{gid}").status_code == 401
        assert anonymous.get(f"/v2/generations/{gid}", headers={"Api-Key": "nope"}).status_code == 401
    assert poll(client, gid).json()["status"] == "pending"  # the refused polls did not count
    missing = poll(client, "AAAAAAAAAAAAAAAAAAAAAA")
    assert missing.status_code == 404 and missing.json()["detail"].startswith("generation_id:")
    bad = poll(client, "not*base64")
    assert bad.status_code == 400 and bad.json()["detail"].startswith("generation_id:")
    sim.reset()
    assert poll(client, gid).status_code == 404  # reset forgets async generations


# ---------------------------------------------------------------- faults


def test_faults_match_the_new_paths(sim, client) -> None:
    sim.faults("status", status=503, path="/v2/image/generate/ideogram-4")  # covers the /ideogram alias
    assert client.post("/v1/ideogram-v4/generate", json={"text_prompt": "x"}).status_code == 200
    assert client.post("/ideogram/v2/image/generate/ideogram-4", json={"prompt": "x"}).status_code == 503
    sim.faults("status", status=429, path="v4-remix", retry_after=2)
    resp = client.post("/v1/ideogram-v4/remix", **CASES["v4-remix"].kwargs)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "2"
    sim.faults("malformed_json", path="/v2/image/*")
    assert not client.post("/v2/image/generate/ideogram-4", json={"prompt": "x"}).text.endswith("}")
    sim.faults("unauthorized", path="v2-generate-ideogram-4")
    assert client.post("/v2/image/generate/ideogram-4", json={"prompt": "x"}).status_code == 401


def test_faults_apply_to_polls(sim, client) -> None:
    gid = client.post("/v2/image/generate/ideogram-4", json={"prompt": "x", "async": True}).json()["generation_id"]
    sim.faults("status", status=503, path="/v2/generations/*")
    assert poll(client, gid).status_code == 503
    assert poll(client, gid).json()["status"] == "pending"  # the failed poll did not count
    assert [r.fault for r in sim.requests if r.kind == "poll"] == ["status", None]


def test_expired_links_fault(sim, client) -> None:
    sim.faults("expired_links", path="v2-generate-ideogram-4")
    url = client.post("/v2/image/generate/ideogram-4", json={"prompt": "x"}).json()["data"][0]["url"]
    assert client.get(url).status_code == 410


# ---------------------------------------------------------------- dry run


def test_dry_run_is_validated_and_quoted_not_run(sim, client) -> None:
    encodes = sim.stats()["png_encodes"]
    resp = client.post("/v2/image/generate/ideogram-4?dry_run=true",
                       json={"prompt": "a forbidden cat", "num_images": 2})
    assert resp.status_code == 200, resp.text  # no safety review on a quote
    quote = resp.json()
    component_validator("PriceQuote").validate(quote)
    assert quote["object"] == "price_quote" and quote["quantity"] == 2 and quote["usd_micros"] == 60_000
    assert sim.stats()["png_encodes"] == encodes and sim.stats()["async_generations"] == 0
    assert sim.api_requests()[-1].query == "dry_run=true"
    refused = client.post("/v2/image/generate/ideogram-4?dry_run=true", json={"num_images": 2})
    assert refused.status_code == 400 and refused.json()["detail"].startswith("prompt: is required")
    bad = client.post("/v2/image/generate/ideogram-4?dry_run=maybe", json={"prompt": "x"})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("dry_run:")
    normal = client.post("/v2/image/generate/ideogram-4?dry_run=false", json={"prompt": "x"})
    assert normal.status_code == 200 and "data" in normal.json()
    assert "data" in client.post("/v1/ideogram-v4/generate?dry_run=true", json={"text_prompt": "x"}).json()
