"""Every 4.0 and /v2 endpoint end to end: our server, a channel, the simulated upstream (which
checks each request we relay against the official request schema of its path), and back.

For each endpoint: the client's request is itself valid under the official request schema (JSON
bodies), the answer is valid under the official response schema of its path, its images are
ours (signed, downloadable, the stated size), the upstream saw ``private: true`` and never our
asynchronous fields; a dry-run quote equals what the same request is then charged. The async
variants, webhooks-free polling and the channel rules (a relay channel serves only the families
it declares) are checked too. Oracles: the vendored official documents (``tests/openapi.py``).
"""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
from PIL import Image

from conftest import mask_bytes, png_bytes
from conftest import sim_channel as channel
from ideohub.domain.operations import Family, Operation
from openapi import component_validator, path_request_validator, path_response_validator

IMG = png_bytes(64, 64)
MASK = mask_bytes(64, 64)
FILE = ("in.png", IMG, "image/png")
PROMPT = "a lighthouse at dusk"


def request_for(op: Operation) -> dict[str, Any]:
    """A valid request as a client of the official API sends it: ``json`` or ``files``/``data``."""
    v = op.value
    if op is Operation.V4_REMIX:
        return {"files": {"image": FILE}, "data": {"text_prompt": PROMPT, "image_weight": "40"}}
    if op is Operation.V4_DESCRIBE:
        return {"files": {"image_file": FILE}, "data": {"include_tags": "true"}}
    if op is Operation.V4_MAGIC_PROMPT:
        return {"json": {"text_prompt": PROMPT, "aspect_ratio": "16x9"}}
    if op in (Operation.V4_GENERATE, Operation.V45_GENERATE, Operation.V4_GENERATE_TRANSPARENT):
        return {"json": {"text_prompt": PROMPT, "rendering_speed": "TURBO", "seed": 11}}
    cap, model = op.v2_parts
    extra: dict[str, Any] = {}
    if "custom-model" in model:
        extra["custom_model_uri"] = "model/house-style/version/3"
    if cap == "generate":
        body = {"prompt": PROMPT, **extra}
        if model in ("ideogram-3", "ideogram-4", "ideogram-2"):
            body.update(num_images=2, rendering_speed="turbo")
        if model == "ideogram-4-5":
            body["quality"] = "high"
        return {"json": body}
    if cap in ("remix", "replace-background"):
        return {"files": {"image": FILE}, "data": {"prompt": PROMPT, **extra}}
    if cap == "inpaint":
        return {"files": {"image": FILE, "mask": ("m.png", MASK, "image/png")}, "data": {"prompt": PROMPT, **extra}}
    if cap == "reframe":
        return {"files": {"image": FILE}, "data": {"resolution": "512x1536"}}
    if cap == "upscale":
        return {"files": {"image": FILE}, "data": {"upscale_factor": "x2"}}
    if cap in ("remove-background", "describe"):
        return {"files": {"image": FILE}}
    raise AssertionError(v)


IDEOGRAM_OPS = [op for op in Operation if op.family in (Family.V4, Family.V2) and not op.resold]


def relay_server(start_server, channels: list[dict[str, Any]], **overrides: Any):
    return start_server("config", engine_config={"*": "relay"}, channels=channels, relay_cooldown_s=0.3,
                        **overrides)


@pytest.fixture
def official(start_server, fresh):
    """One official-kind channel on the sim (every Ideogram endpoint; account fields forwarded, so
    the custom-model endpoints, which require ``custom_model_uri``, can be relayed)."""
    sim = fresh[0]
    srv = relay_server(start_server, [channel("up", sim, kind="ideogram", account_fields=True)])
    return srv, sim


def check_images(srv, body: dict[str, Any]) -> None:
    for item in body.get("data", []):
        if item.get("url") is None:
            continue
        assert item["url"].startswith(srv.base_url + "/images/")  # ours, never the upstream's link
        r = srv.client.get(item["url"])
        assert r.status_code == 200
        with Image.open(io.BytesIO(r.content)) as im:
            if "resolution" in item:
                assert f"{im.width}x{im.height}" == item["resolution"]


@pytest.mark.parametrize("op", IDEOGRAM_OPS, ids=[o.value for o in IDEOGRAM_OPS])
def test_every_endpoint_through_a_channel(official, op):
    srv, sim = official
    req = request_for(op)
    if "json" in req:
        path_request_validator(op.official_path, "application/json").validate(req["json"])
    r = srv.post(op.official_path, **req)
    assert r.status_code == 200, r.text
    body = r.json()
    path_response_validator(op.official_path).validate(body)
    check_images(srv, body)
    relayed = [x for x in sim.api_requests() if x.status == 200]
    assert relayed, "nothing reached the upstream"
    sent = relayed[-1].fields or {}
    assert "async" not in sent and "webhook_url" not in sent
    if op.family is Family.V2 and "private" in _declared(op):
        assert sent.get("private") is True
    if op.family is Family.V2 and "data" in body:
        assert all("asset_id" in item for item in body["data"] if item.get("url"))
    else:
        assert "asset_id" not in r.text  # 4.0 on /v1 keeps its shape exactly


def _declared(op: Operation) -> set[str]:
    from openapi import document, document_with

    doc = document(document_with(op.official_path))
    content = doc["paths"][op.official_path]["post"]["requestBody"]["content"]
    names: set[str] = set()
    for media in content.values():
        ref = media["schema"]["$ref"].rsplit("/", 1)[1]
        names |= set(doc["components"]["schemas"][ref].get("properties", {}))
    return names


@pytest.mark.parametrize("op", [Operation.V4_GENERATE, Operation.V2_GENERATE_IDEOGRAM_4,
                                Operation.V2_REMIX_IDEOGRAM_3, Operation.V2_UPSCALE_AUTO],
                         ids=lambda o: o.value)
def test_dry_run_quotes_equal_the_charges(official, op):
    srv, sim = official
    req = request_for(op)
    before = len(sim.api_requests())
    q = srv.post(op.official_path + "?dry_run=true", **request_for(op))
    assert q.status_code == 200, q.text
    assert len(sim.api_requests()) == before  # a quote reaches no upstream
    quote = q.json()
    component_validator("PriceQuote").validate(quote)
    assert quote["credit_millis"] * 20 == quote["usd_micros"]
    r = srv.post(op.official_path, **req)
    assert r.status_code == 200, r.text
    generation_id = r.json().get("generation_id") or _last_generation(srv)
    polled = srv.client.get(f"/v2/generations/{generation_id}", headers=srv.auth()).json()
    assert polled["usage_cost_usd_micros"] == quote["usd_micros"]


def _last_generation(srv) -> str:
    """/v1 4.0 answers carry no generation id: the newest on record."""
    import asyncio

    from generations.support import _repo
    from ideohub.store.models import RequestRecord
    from sqlalchemy import select

    async def go() -> str:
        repo = _repo(srv)
        try:
            async with repo.session() as s:
                q = select(RequestRecord.generation_id).where(RequestRecord.state == "done")
                return (await s.scalars(q.order_by(RequestRecord.created_at.desc()).limit(1))).one()
        finally:
            await repo.close()

    return asyncio.run(go())


def poll_done(srv, generation_id: str, path: str = "/v2/generations/") -> dict[str, Any]:
    for _ in range(300):
        body = srv.client.get(path + generation_id, headers=srv.auth()).json()
        if body["status"] != "pending":
            return body
        time.sleep(0.05)
    raise AssertionError("still pending")


def test_async_variants_and_polling(official):
    srv, _sim = official
    r = srv.post("/v1/ideogram-v4/async/generate", json={"text_prompt": PROMPT})
    assert r.status_code == 200, r.text
    path_response_validator("/v1/ideogram-v4/async/generate").validate(r.json())
    assert set(r.json()) == {"generation_id"}
    done = poll_done(srv, r.json()["generation_id"], "/v1/generations/")
    path_response_validator("/v1/generations/{generation_id}", "get").validate(done)
    assert done["status"] == "completed" and done["data"][0]["object_type"] == "image.generation"
    v2 = srv.post("/ideogram/v2/image/generate/ideogram-4", json={"prompt": PROMPT, "async": True, "seed": 5})
    assert v2.status_code == 200 and v2.json() == {"generation_id": v2.json()["generation_id"], "seed": 5}
    done = poll_done(srv, v2.json()["generation_id"])
    path_response_validator("/v2/generations/{generation_id}", "get").validate(done)
    assert done["data"][0]["seed"] >= 0 and done["data"][0]["asset_id"]


def test_the_april_2026_shape_of_4_0_generate(official):
    srv, sim = official
    r = srv.post("/v1/ideogram-v4/generate", json={"prompt": PROMPT, "magic_prompt_option": "OFF", "seed": 3})
    assert r.status_code == 200, r.text
    sent = sim.api_requests()[-1].fields
    assert sent["text_prompt"] == PROMPT and "prompt" not in sent and "magic_prompt_option" not in sent
    bad = srv.post("/v1/ideogram-v4/generate", json={"prompt": PROMPT, "magic_prompt_option": "SOMETIMES"})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("magic_prompt_option")


@pytest.mark.parametrize("body,field", [
    ({"text_prompt": PROMPT, "json_prompt": {"high_level_description": "x", "compositional_deconstruction": {
        "background": "sky", "elements": []}}}, "text_prompt"),
    ({}, "text_prompt"),
    ({"text_prompt": PROMPT, "rendering_speed": "FLASH"}, "rendering_speed"),
    ({"json_prompt": {"high_level_description": "x", "compositional_deconstruction": {
        "background": "sky", "elements": [{"type": "obj", "desc": "a boat", "bbox": [0, 0, 1001, 5]}]}}},
     "json_prompt.compositional_deconstruction.elements[0].bbox"),
    ({"json_prompt": {"high_level_description": "x", "style_description": {"color_palette": ["red"]},
                      "compositional_deconstruction": {"background": "sky", "elements": []}}},
     "json_prompt.style_description.color_palette"),
    ({"text_prompt": PROMPT, "resolution": "999x999"}, "resolution"),
])
def test_4_0_generate_refusals_name_the_field(official, body, field):
    srv, sim = official
    before = len(sim.api_requests())
    r = srv.post("/v1/ideogram-v4/generate", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith(field)
    assert len(sim.api_requests()) == before  # refused here, never relayed


def test_remix_weight_with_another_aspect_is_refused(official):
    srv, _sim = official
    r = srv.post("/v1/ideogram-v4/remix", files={"image": FILE},
                 data={"text_prompt": PROMPT, "image_weight": "50", "resolution": "1280x720"})
    assert r.status_code == 400 and r.json()["detail"].startswith("image_weight")


def test_a_result_is_remixed_as_a_response_asset(official):
    srv, sim = official
    first = srv.post("/v2/image/generate/ideogram-4", json={"prompt": PROMPT}).json()
    asset = first["data"][0]["asset_id"]
    r = srv.post("/v2/image/remix/ideogram-4", json={
        "prompt": "as a watercolor", "image_asset_identifier": {"asset_id": asset, "asset_type": "RESPONSE"}})
    assert r.status_code == 200, r.text
    relayed = sim.api_requests()[-1]
    assert "image_asset_identifier" not in relayed.fields and relayed.fields["image"]["bytes"] > 0  # as bytes


def test_a_relay_channel_serves_only_the_families_it_declares(start_server, fresh):
    sim = fresh[0]
    srv = relay_server(start_server, [channel("old", sim, "ideogram", "bearer", "relay")])
    assert srv.post("/v1/ideogram-v3/generate", json={"prompt": PROMPT}).status_code == 200
    r = srv.post("/v2/image/generate/ideogram-4", json={"prompt": PROMPT})
    assert r.status_code == 503 and "/v2/image/generate/ideogram-4" in r.json()["detail"]
    srv2 = relay_server(start_server, [channel("new", fresh[1], "ideogram", "bearer", "relay",
                                               operations=["v2-generate-ideogram-4", "v4-generate"])])
    assert srv2.post("/ideogram/v2/image/generate/ideogram-4", json={"prompt": PROMPT}).status_code == 200
    assert srv2.post("/v1/ideogram-v4/generate", json={"text_prompt": PROMPT}).status_code == 200


def test_account_fields_are_dropped_unless_the_channel_allows_them(start_server, fresh):
    sim = fresh[0]
    srv = relay_server(start_server, [channel("up", sim, kind="ideogram")])
    r = srv.post("/v2/image/generate/ideogram-4", json={"prompt": PROMPT, "target_collection_id": "A" * 22})
    assert r.status_code == 200, r.text
    sent = sim.api_requests()[-1].fields
    assert "target_collection_id" not in sent and sent["private"] is True


def test_resold_models_need_a_declaring_channel_and_a_price(start_server, fresh):
    sim = fresh[0]
    srv = relay_server(start_server, [channel("up", sim, kind="ideogram")])
    r = srv.post("/v2/image/generate/gpt-image-2", json={"prompt": PROMPT})
    assert r.status_code == 400 and "gpt-image-2" in r.json()["detail"]
    priced = relay_server(start_server, [channel("up", sim, kind="ideogram")],
                          prices={"v2-generate-gpt-image-2": {"*": 0.05}})
    r = priced.post("/v2/image/generate/gpt-image-2", json={"prompt": PROMPT})
    assert r.status_code == 400 and "gpt-image-2" in r.json()["detail"]  # priced, but no channel declares it
    declared = relay_server(start_server, [channel("up", sim, kind="ideogram",
                                                   operations=["v2-generate-gpt-image-2"])],
                            prices={"v2-generate-gpt-image-2": {"*": 0.05}})
    r = declared.post("/v2/image/generate/gpt-image-2", json={"prompt": PROMPT})
    assert r.status_code == 200, r.text
    quote = declared.post("/v2/image/generate/gpt-image-2?dry_run=true", json={"prompt": PROMPT}).json()
    assert quote["usd_micros"] == 50_000


def test_magic_prompt_and_describe_documents(official):
    srv, _sim = official
    m = srv.post("/ideogram/v1/ideogram-v4/magic-prompt", json={"text_prompt": PROMPT})
    assert m.status_code == 200, m.text
    path_response_validator("/v1/ideogram-v4/magic-prompt").validate(m.json())
    d = srv.post("/v2/image/describe/ideogram-4", files={"image": FILE})
    assert d.status_code == 200, d.text
    path_response_validator("/v2/image/describe/ideogram-4").validate(d.json())
    q = srv.post("/v2/image/describe/ideogram-4?dry_run=true", files={"image": FILE})
    assert q.status_code == 400 and q.json()["detail"].startswith("dry_run")
