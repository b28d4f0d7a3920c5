"""``/upscale`` on the embedded default: a real 2x image from the local ncnn upscaler, at a
signed URL that stops working when tampered with, schema-valid, deterministic per seed."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import png_bytes
from ideohub.domain.operations import Operation
from openapi import validate_response


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    # module-scoped server on the default engines (upscale → local-upscaler)
    from conftest import Running, ThreadedServer, free_port
    from ideohub.api.app import create_app
    from ideohub.config import load_settings
    import httpx

    port = free_port()
    settings = load_settings(data_dir=tmp_path_factory.mktemp("up"), port=port)
    with ThreadedServer(create_app(settings), port):
        with httpx.Client(base_url=settings.base_url, timeout=300) as client:
            running = Running(settings.base_url, "", settings, client)
            running.key = running.create_key()[1]
            yield running


def upscale(srv, image: bytes, request: dict, path: str = "/upscale", style: str = "api-key", name="in.png"):
    return srv.post(path, style=style, files={"image_file": (name, image, "image/png")},
                    data={"image_request": json.dumps(request)})


def fetch(srv, url: str) -> np.ndarray:
    r = srv.client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(r.content)))


def test_real_2x_upscale_at_a_signed_url(srv):
    src = png_bytes(64, 48, seed=3)
    r = upscale(srv, src, {"resemblance": 55, "detail": 90, "prompt": "a test card", "seed": 12345})
    assert r.status_code == 200, r.text
    body = r.json()
    validate_response(body, Operation.UPSCALE)
    item = body["data"][0]
    assert item["resolution"] == "64x48" and item["upscaled_resolution"] == "128x96"
    assert item["is_image_safe"] is True and item["seed"] == 12345 and item["prompt"] == "a test card"
    out = fetch(srv, item["url"])
    assert out.shape == (96, 128, 3)
    # a real upscale: close to the input's content (not a blank or a copy of something else)
    ref = np.asarray(Image.open(io.BytesIO(src)).convert("RGB").resize((128, 96), Image.Resampling.LANCZOS))
    assert np.abs(out.astype(int) - ref.astype(int)).mean() < 20
    tampered = item["url"].replace("exp=", "exp=1")
    assert srv.client.get(tampered).status_code == 403


def test_seed_determinism_variations_and_relay_dialect(srv):
    src = png_bytes(40, 40, seed=5)
    a = upscale(srv, src, {"seed": 7, "num_images": 2}).json()["data"]
    b = upscale(srv, src, {"seed": 7, "num_images": 2}, path="/ideogram/upscale", style="bearer",
                name="image.jpg").json()["data"]
    digest = lambda item: hashlib.sha256(srv.client.get(item["url"]).content).hexdigest()  # noqa: E731
    assert [d["seed"] for d in a] == [7, 8]
    assert digest(a[0]) == digest(b[0]) and digest(a[1]) == digest(b[1])  # same seed → same bytes
    assert digest(a[0]) != digest(a[1])  # variations differ
    c = upscale(srv, src, {"seed": 8}).json()["data"][0]
    assert digest(c) == digest(a[1])  # image i carries seed + i and reproduces alone


def test_rgba_and_empty_request(srv):
    rgba = png_bytes(32, 32, mode="RGBA")
    r = upscale(srv, rgba, {})
    assert r.status_code == 200
    out = fetch(srv, r.json()["data"][0]["url"])
    assert out.shape == (64, 64, 4)
