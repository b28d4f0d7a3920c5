"""/v2 on the embedded default, no upstream: ``/v2/image/upscale/auto`` on the local upscaler
(x2 one pass, x4 two, x8 refused unless enabled, ``max_output_pixels``), dry-run quotes equal to
the charges that follow, asynchronous submission and polling, RESPONSE assets (a result used as
the next request's input), and /v2's error bodies. Every answer is checked against the official
response schema of its path (the vendored October-2026 extract), never against our own code."""

from __future__ import annotations

import asyncio
import io
import json
import time

import httpx
import pytest
from PIL import Image

from conftest import Running, ThreadedServer, free_port, png_bytes
from openapi import component_validator, path_response_validator

UPSCALE = "/v2/image/upscale/auto"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from ideohub.api.app import create_app
    from ideohub.config import load_settings

    port = free_port()
    settings = load_settings(data_dir=tmp_path_factory.mktemp("v2"), port=port, max_output_pixels=200 * 200,
                             default_max_images_in_flight=2)
    with ThreadedServer(create_app(settings), port):
        with httpx.Client(base_url=settings.base_url, timeout=300) as client:
            running = Running(settings.base_url, "", settings, client)
            running.key = running.create_key()[1]
            yield running


def get(srv, path: str, key: str | None = None) -> httpx.Response:
    return srv.client.get(path, headers={"Api-Key": key or srv.key})


def zero_balance_key(srv) -> str:
    """A key of a new account with no money."""
    from ideohub.store.ledger import Ledger
    from generations.support import _repo

    async def go() -> str:
        repo = _repo(srv)
        try:
            account = await Ledger(repo.session).create_account("broke")
            return (await repo.create_key("k", account_id=account.id))[1]
        finally:
            await repo.close()

    return asyncio.run(go())


def upscale(srv, image: bytes, path: str = UPSCALE, **data):
    return srv.post(path, files={"image": ("in.png", image, "image/png")}, data=data)


def size_of(srv, url: str) -> tuple[int, int]:
    r = srv.client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(r.content)).size


def test_x2_and_x4_are_real_upscales_in_the_official_shape(srv):
    src = png_bytes(40, 30, seed=4)
    r = upscale(srv, src, upscale_factor="x2", seed="99")
    assert r.status_code == 200, r.text
    body = r.json()
    path_response_validator(UPSCALE).validate(body)
    assert body["seed"] == 99 and (body["width"], body["height"]) == (80, 60)
    item = body["data"][0]
    assert item["asset_id"] and size_of(srv, item["url"]) == (80, 60)
    r4 = upscale(srv, src, path="/ideogram" + UPSCALE, upscale_factor="x4")
    assert r4.status_code == 200, r4.text
    assert size_of(srv, r4.json()["data"][0]["url"]) == (160, 120)  # two passes of the x2 model


def test_x8_and_output_pixels_are_refused_before_anything_is_charged(srv):
    src = png_bytes(40, 30)
    r = upscale(srv, src, upscale_factor="x8")
    assert r.status_code == 400 and "upscale_allow_x8" in r.json()["detail"]
    big = png_bytes(120, 120)
    r = upscale(srv, big, upscale_factor="x2")  # 240x240 > 200x200
    assert r.status_code == 400 and "max_output_pixels" in r.json()["detail"]
    r = upscale(srv, src, upscale_factor="x3")
    assert r.status_code == 400 and r.json()["detail"].startswith("upscale_factor")


def test_dry_run_quotes_what_the_request_then_costs(srv):
    src = png_bytes(40, 30)
    q = srv.post(UPSCALE + "?dry_run=true", files={"image": ("in.png", src, "image/png")},
                 data={"upscale_factor": "x4"})
    assert q.status_code == 200, q.text
    quote = q.json()
    component_validator("PriceQuote").validate(quote)
    assert quote == {"object": "price_quote", "billing_identifier": "upscale_x4", "quantity": 1,
                     "usd_micros": 120_000, "credit_millis": 6000, "qualifier": "exact"}
    r = upscale(srv, src, upscale_factor="x4")
    gen = r.json()["generation_id"]
    polled = get(srv, f"/v2/generations/{gen}").json()
    assert polled["usage_cost_usd_micros"] == quote["usd_micros"]


def test_async_ack_polling_and_a_result_reused_as_a_response_asset(srv):
    src = png_bytes(40, 30)
    r = upscale(srv, src, upscale_factor="x2", **{"async": "true"})
    assert r.status_code == 200, r.text
    ack = r.json()
    assert set(ack) == {"generation_id", "seed", "width", "height"}  # UpscaleToolResponse without data
    path_response_validator(UPSCALE).validate(ack)
    for _ in range(600):
        polled = get(srv, f"/v2/generations/{ack['generation_id']}").json()
        if polled["status"] != "pending":
            break
        time.sleep(0.1)
    path_response_validator("/v2/generations/{generation_id}", "get").validate(polled)
    assert polled["status"] == "completed"
    asset = polled["data"][0]["asset_id"]
    # the result as the next request's input, without uploading it again
    again = srv.post(UPSCALE, json={"image_asset_identifier": {"asset_id": asset, "asset_type": "RESPONSE"},
                                    "upscale_factor": "x2"})
    assert again.status_code == 200, again.text
    assert size_of(srv, again.json()["data"][0]["url"]) == (160, 120)
    from generations.support import new_key

    _account, stranger = new_key(srv)  # another account: its 404 is the unknown asset's
    theirs = srv.client.post(UPSCALE, headers={"Api-Key": stranger}, json={
        "image_asset_identifier": {"asset_id": asset, "asset_type": "RESPONSE"}})
    assert theirs.status_code == 404 and "no such asset" in theirs.json()["detail"]
    missing = srv.post(UPSCALE, json={"image_asset_identifier": {"asset_id": "nope", "asset_type": "RESPONSE"}})
    assert missing.status_code == 404 and "image_asset_identifier.asset_id" in missing.json()["detail"]
    other = srv.post(UPSCALE, json={"image_asset_identifier": {"asset_id": asset, "asset_type": "UPLOAD"}})
    assert other.status_code == 400 and "asset_type" in other.json()["detail"]
    both = srv.post(UPSCALE, files={"image": ("in.png", src, "image/png")},
                    data={"image_asset_identifier": json.dumps({"asset_id": asset, "asset_type": "RESPONSE"})})
    assert both.status_code == 400 and both.json()["detail"].startswith("image_asset_identifier")


def test_v2_402_and_429_are_generation_error_responses(srv):
    from generations.support import new_key

    src = png_bytes(40, 30)
    broke = zero_balance_key(srv)
    r = srv.client.post(UPSCALE, headers={"Api-Key": broke}, files={"image": ("in.png", src, "image/png")})
    assert r.status_code == 402
    component_validator("GenerationErrorResponse").validate(r.json())
    assert r.json()["reject_reason"] == "insufficient_funds" and r.json()["error"]
    legacy = srv.client.post("/upscale", headers={"Api-Key": broke}, files={"image_file": ("in.png", src, "image/png")}, data={"image_request": "{}"})
    assert legacy.status_code == 402 and legacy.json()["title"] == "Payment Required"  # other families: unchanged
    _account, slow = new_key(srv, rpm=1)
    codes = []
    for _ in range(2):
        r = srv.client.post(UPSCALE, headers={"Api-Key": slow}, files={"image": ("in.png", src, "image/png")})
        codes.append(r.status_code)
    assert codes == [200, 429]
    component_validator("GenerationErrorResponse").validate(r.json())
    assert r.json()["reject_reason"] == "inflight_limit" and r.headers["Retry-After"]


def test_dry_run_is_our_extension_on_the_older_families_too(srv):
    src = png_bytes(40, 30)
    q = srv.post("/upscale?dry_run=true", files={"image_file": ("in.png", src, "image/png")},
                 data={"image_request": json.dumps({"num_images": 2})})
    assert q.status_code == 200, q.text
    quote = q.json()
    component_validator("PriceQuote").validate(quote)
    assert quote["billing_identifier"] == "upscale" and quote["quantity"] == 1 and quote["usd_micros"] == 60_000
    r = srv.post("/upscale?async=true", files={"image_file": ("in.png", src, "image/png")},
                 data={"image_request": json.dumps({"num_images": 2})})
    gen = r.json()["generation_id"]
    for _ in range(600):
        polled = get(srv, f"/v1/generations/{gen}").json()
        if polled["status"] != "pending":
            break
        time.sleep(0.1)
    assert polled["usage_cost_usd_micros"] == quote["usd_micros"]
    bad = srv.post("/describe?dry_run=true", files={"image_file": ("in.png", src, "image/png")})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("dry_run")
    odd = srv.post("/upscale?dry_run=maybe", files={"image_file": ("in.png", src, "image/png")},
                   data={"image_request": "{}"})
    assert odd.status_code == 400 and odd.json()["detail"].startswith("dry_run")


def test_a_quote_needs_no_engine_and_holds_no_images_in_flight(srv):
    body = {"prompt": "a lighthouse", "rendering_speed": "QUALITY", "num_images": 3}
    assert srv.post("/v1/ideogram-v3/generate", json=body).status_code == 429  # 3 images; the key may have 2
    assert srv.post("/v1/ideogram-v3/generate", json={**body, "num_images": 2}).status_code == 503  # no channel
    q = srv.post("/v1/ideogram-v3/generate?dry_run=true", json=body)
    assert q.status_code == 200, q.text
    assert q.json()["billing_identifier"] == "v3_generate_quality" and q.json()["usd_micros"] == 3 * 90_000
    v2 = srv.post("/v2/image/generate/ideogram-3?dry_run=true",
                  json={"prompt": "a lighthouse", "rendering_speed": "turbo", "num_images": 2})
    assert v2.status_code == 200 and v2.json()["billing_identifier"] == "v3_generate_turbo", v2.text
    assert v2.json()["usd_micros"] == 2 * 30_000


def test_a_json_part_sent_as_a_file_is_read_as_its_text(srv):
    """Some clients send multipart JSON parts with a filename: 4.0's ``json_prompt`` is still read."""
    prompt = {"high_level_description": "a lighthouse", "compositional_deconstruction": {
        "background": "sea", "elements": [{"type": "text", "text": "HELLO", "desc": "a sign", "bbox": [1, 2, 3, 4]}]}}
    q = srv.post("/v1/ideogram-v4/generate?dry_run=true",
                 files={"json_prompt": ("prompt.json", json.dumps(prompt).encode(), "application/json")},
                 data={"rendering_speed": "QUALITY"})
    assert q.status_code == 200, q.text
    assert q.json()["billing_identifier"] == "v4_generate_quality" and q.json()["usd_micros"] == 100_000
    bad = srv.post("/v1/ideogram-v4/generate?dry_run=true",
                   files={"json_prompt": ("prompt.json", b"{not json", "application/json")})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("json_prompt")


def test_an_expired_response_asset_is_404(srv):
    from datetime import timedelta

    from sqlalchemy import update

    from generations.support import _repo
    from ideohub.store.models import StoredImage
    from ideohub.store.repository import utcnow

    r = upscale(srv, png_bytes(40, 30), upscale_factor="x2")
    asset = r.json()["data"][0]["asset_id"]
    body = {"image_asset_identifier": {"asset_id": asset, "asset_type": "RESPONSE"}, "upscale_factor": "x2"}
    assert srv.post(UPSCALE + "?dry_run=true", json=body).status_code == 200  # live: it can be named

    async def expire() -> None:
        repo = _repo(srv)
        try:
            async with repo.session.begin() as s:
                await s.execute(update(StoredImage).where(StoredImage.id == asset)
                                .values(expires_at=utcnow() - timedelta(seconds=1)))
        finally:
            await repo.close()

    asyncio.run(expire())
    gone = srv.post(UPSCALE, json=body)
    assert gone.status_code == 404 and "no such asset" in gone.json()["detail"]


def test_hostile_numbers_and_unknown_models_get_clear_errors(srv):
    r = srv.post("/v2/image/generate/ideogram-4?dry_run=true", json={"prompt": "x", "seed": 10 ** 40})
    assert r.status_code == 400 and r.json()["detail"] == "seed: must be a number of at most 40 characters"
    nested = {"high_level_description": "x", "compositional_deconstruction": {
        "background": "b", "elements": [{"type": "obj", "desc": "d", "bbox": [1, 2, 3, 10 ** 50]}]}}
    r = srv.post("/v1/ideogram-v4/generate?dry_run=true", json={"json_prompt": nested})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("json_prompt.compositional_deconstruction.elements[0].bbox[3]: must be a number")
    for path in ("/v2/image/generate/ideogram-9", "/ideogram/v2/image/generate/ideogram-9"):
        r = srv.post(path, json={"prompt": "x"})
        assert r.status_code == 404 and r.json()["detail"].startswith("model: ideogram-9 is not a generate model")
        assert "ideogram-4" in r.json()["detail"]
    r = srv.post("/v2/image/paint/ideogram-4", json={"prompt": "x"})
    assert r.status_code == 404 and r.json()["detail"].startswith("capability: ")
