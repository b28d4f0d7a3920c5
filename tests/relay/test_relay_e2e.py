"""Every endpoint through a real HTTP hop to the simulated upstream, in each channel dialect,
and the failure behaviour: failover, cooldown and recovery, no retry on 4xx, retries never
reuse a failed channel, re-hosting under our signed URLs, no secret in any response or log."""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any

import pytest
from PIL import Image

from conftest import SIM_KEY, FakeClock, mask_bytes, png_bytes
from conftest import sim_channel as channel
from ideohub.domain.operations import Family, Operation
from openapi import validate_response

IMG = png_bytes(64, 64)
MASK = mask_bytes(64, 64)
LEGACY_V3_OPERATIONS_IN_ORDER = [op for op in Operation if op.family in (Family.LEGACY, Family.V3)]


def request_for(op: Operation, prompt: str = "a lighthouse at dusk") -> tuple[str, dict[str, Any]]:
    """A valid request for each endpoint, as a client of the official API sends it."""
    file = ("in.png", IMG, "image/png")
    if op is Operation.GENERATE:
        return op.official_path, {"json": {"image_request": {"prompt": prompt, "model": "V_2_TURBO", "num_images": 2,
                                                             "seed": 42, "magic_prompt_option": "ON"}}}
    if op is Operation.REMIX:
        return op.official_path, {"files": {"image_file": file},
                                  "data": {"image_request": json.dumps({"prompt": prompt, "image_weight": 60})}}
    if op is Operation.UPSCALE:
        return op.official_path, {"files": {"image_file": file},
                                  "data": {"image_request": json.dumps({"prompt": prompt, "resemblance": 55})}}
    if op is Operation.EDIT:
        return op.official_path, {"files": {"image_file": file, "mask": ("m.png", MASK, "image/png")},
                                  "data": {"prompt": prompt, "model": "V_2"}}
    if op is Operation.REFRAME:
        return op.official_path, {"files": {"image_file": file},
                                  "data": {"resolution": "RESOLUTION_1280_800", "model": "V_2"}}
    if op is Operation.DESCRIBE:
        return op.official_path, {"files": {"image_file": file}}
    if op is Operation.V3_GENERATE:
        return op.official_path, {"json": {"prompt": prompt, "rendering_speed": "TURBO", "aspect_ratio": "16x9",
                                           "style_codes": ["AAFF5733"], "num_images": 2}}
    if op is Operation.V3_GENERATE_TRANSPARENT:
        return op.official_path, {"json": {"prompt": prompt, "upscale_factor": "X2"}}
    if op is Operation.V3_REMIX:
        return op.official_path, {"files": [("image", file)],
                                  "data": {"prompt": prompt, "image_weight": "70", "style_type": "FICTION"}}
    if op in (Operation.V3_EDIT, Operation.V3_INPAINT):
        return op.official_path, {"files": [("image", file), ("mask", ("m.png", MASK, "image/png"))],
                                  "data": {"prompt": prompt, "rendering_speed": "QUALITY"}}
    if op is Operation.V3_REFRAME:
        return op.official_path, {"files": [("image", file)], "data": {"resolution": "512x1536"}}
    if op is Operation.V3_REPLACE_BACKGROUND:
        return op.official_path, {"files": [("image", file)],
                                  "data": {"prompt": prompt, "color_palette": json.dumps({"name": "PASTEL"})}}
    raise AssertionError(op)


def relay_server(start_server, channels: list[dict[str, Any]], **overrides: Any):
    return start_server("config", engine_config={"*": "relay"}, channels=channels, relay_cooldown_s=0.3,
                        **overrides)


DIALECTS = [
    ("official", "api-key", "ideogram", "/"),  # kind=ideogram: Api-Key, official paths
    ("ideogram", "bearer", "relay", "/ideogram/"),  # AiHubMix / OpenAI-Hub
    ("ideogram-v1", "bearer", "relay", "/ideogram/v1/"),  # AI-YIAPI (legacy paths)
]


@pytest.mark.parametrize("path_style,auth,kind,prefix", DIALECTS, ids=[d[0] for d in DIALECTS])
def test_every_endpoint_through_each_channel_dialect(start_server, fresh, path_style, auth, kind, prefix):
    sim = fresh[0]
    srv = relay_server(start_server, [channel("up", sim, path_style, auth, kind)])
    for op in LEGACY_V3_OPERATIONS_IN_ORDER:  # 4.0 and /v2: tests/relay/test_families_relay.py
        sim.clear_requests()
        path, kwargs = request_for(op)
        r = srv.post(path, **kwargs)
        assert r.status_code == 200, (op, r.text)
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        validate_response(body, op, input_size="64x64")
        api = sim.api_requests()
        assert len(api) == 1 and api[0].status == 200 and api[0].auth == auth
        expected_prefix = "/ideogram" if (path_style != "official" and (op.is_v3 or path_style == "ideogram")) else ""
        if path_style == "ideogram-v1" and not op.is_v3:
            expected_prefix = "/ideogram/v1"
        assert api[0].path == expected_prefix + op.official_path
        if op is Operation.DESCRIBE:
            assert body["descriptions"][0]["text"]
            continue
        for item in body["data"]:
            assert item["url"].startswith(srv.base_url + "/images/"), "clients only ever see our URLs"
            assert sim.base_url not in item["url"]
            img = srv.client.get(item["url"])
            assert img.status_code == 200 and img.headers["content-type"] == "image/png"
            w, h = Image.open(io.BytesIO(img.content)).size
            assert f"{w}x{h}" == item.get("upscaled_resolution", item["resolution"])
        if op is Operation.GENERATE:  # the upstream's magic prompt and seed are kept
            assert body["data"][0]["prompt"].startswith("a lighthouse at dusk,")
            assert body["data"][0]["seed"] == 42 and len(body["data"]) == 2
        if op is Operation.V3_GENERATE_TRANSPARENT:
            assert "style_type" not in body["data"][0] and "upscaled_resolution" in body["data"][0]


def test_relay_paths_and_bearer_auth_on_our_side_too(start_server, fresh):
    srv = relay_server(start_server, [channel("up", fresh[0])])
    path, kwargs = request_for(Operation.V3_GENERATE)
    assert srv.post("/ideogram" + path, style="bearer", **kwargs).status_code == 200
    path, kwargs = request_for(Operation.GENERATE)
    assert srv.post("/ideogram/v1" + path, style="bearer", **kwargs).status_code == 200


def test_failover_to_next_channel_and_no_reuse_of_failed_channel(start_server, fresh):
    a, b = fresh
    srv = relay_server(start_server, [channel("a", a, priority=10), channel("b", b, priority=0)])
    a.faults("status", status=500, count=None)
    path, kwargs = request_for(Operation.V3_GENERATE)
    r = srv.post(path, **kwargs)
    assert r.status_code == 200
    assert len(a.api_requests()) == 1 and len(b.api_requests()) == 1  # one try each, a never retried


def test_every_channel_failing_gives_502_naming_channels_never_secrets(start_server, fresh, caplog):
    a, b = fresh
    caplog.set_level(logging.DEBUG)
    srv = relay_server(start_server, [channel("alpha", a), channel("beta", b)])
    a.faults("status", status=503, count=None)
    b.faults("malformed_json", count=None)
    path, kwargs = request_for(Operation.GENERATE)
    r = srv.post(path, **kwargs)
    assert r.status_code == 502
    detail = r.json()["detail"]
    assert "alpha" in detail and "beta" in detail and SIM_KEY not in r.text
    assert len(a.api_requests()) == 1 and len(b.api_requests()) == 1
    assert SIM_KEY not in caplog.text and srv.key not in caplog.text


def test_cooldown_then_half_open_probe_recovers(start_server, fresh):
    a, b = fresh
    clock = FakeClock()
    srv = relay_server(start_server, [channel("a", a, priority=10), channel("b", b)], clock=clock)
    a.faults("status", status=500, count=1)
    path, kwargs = request_for(Operation.V3_GENERATE)
    assert srv.post(path, **kwargs).status_code == 200  # a failed, b served
    assert srv.post(path, **kwargs).status_code == 200  # a is cooling: straight to b
    assert len(a.api_requests()) == 1 and len(b.api_requests()) == 2
    clock.advance(0.4)  # cooldown (0.3 s) over: a is half-open and gets the probe
    assert srv.post(path, **kwargs).status_code == 200
    assert len(a.api_requests()) == 2 and len(b.api_requests()) == 2
    metrics = srv.client.get("/metrics").text
    assert 'ideohub_upstream_attempts_total{channel="a",outcome="failed"} 1.0' in metrics
    assert 'ideohub_channel_cooldown{channel="a"} 0.0' in metrics


def test_input_errors_are_passed_through_and_never_retried(start_server, fresh):
    a, b = fresh
    srv = relay_server(start_server, [channel("a", a, priority=1), channel("b", b)])
    a.faults("status", status=400, count=1, body=json.dumps({"detail": "prompt: too long for this model"}))
    path, kwargs = request_for(Operation.V3_GENERATE)
    r = srv.post(path, **kwargs)
    assert r.status_code == 400 and "too long for this model" in r.json()["detail"]
    assert len(a.api_requests()) == 1 and not b.api_requests()
    # the upstream's prompt safety verdict: 422 {"error": ...}, not retried elsewhere
    path, kwargs = request_for(Operation.V3_GENERATE, prompt="something forbidden")
    r = srv.post(path, **kwargs)
    assert r.status_code == 422 and set(r.json()) == {"error"}
    assert not b.api_requests()


def test_429_with_retry_after_is_honoured(start_server, fresh):
    a = fresh[0]
    srv = relay_server(start_server, [channel("a", a)])
    a.faults("status", status=429, retry_after=7, count=1)
    path, kwargs = request_for(Operation.V3_GENERATE)
    r = srv.post(path, **kwargs)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 7
    r = srv.post(path, **kwargs)  # the channel cools down for Retry-After: no call goes out
    assert r.status_code == 429 and len(a.api_requests()) == 1


def test_hang_past_timeout_fails_over(start_server, fresh):
    a, b = fresh
    srv = relay_server(start_server, [channel("a", a, priority=1, timeout_s=0.5), channel("b", b)])
    a.faults("hang", hang_s=5, count=1)
    path, kwargs = request_for(Operation.UPSCALE)
    started = time.monotonic()
    r = srv.post(path, **kwargs)
    assert r.status_code == 200 and time.monotonic() - started < 4
    assert len(b.api_requests()) == 1


def test_upstream_auth_failure_cools_channel_and_fails_over(start_server, fresh):
    a, b = fresh
    srv = relay_server(start_server, [channel("a", a, priority=1), channel("b", b)])
    a.faults("unauthorized", count=1)
    path, kwargs = request_for(Operation.V3_REMIX)
    assert srv.post(path, **kwargs).status_code == 200
    assert srv.post(path, **kwargs).status_code == 200
    assert len(a.api_requests()) == 1  # a stays in its (long) auth cooldown


def test_truncated_download_is_retried_then_whole_request_fails(start_server, fresh):
    a = fresh[0]
    srv = relay_server(start_server, [channel("a", a)])
    a.faults("truncated_download", count=1)
    path, kwargs = request_for(Operation.GENERATE)
    r = srv.post(path, **kwargs)
    assert r.status_code == 200 and len(r.json()["data"]) == 2  # one retry fixed it
    stored = len(list(srv.settings.images_dir.glob("*.png")))
    a.faults("truncated_download", count=None)
    r = srv.post(path, **kwargs)
    assert r.status_code == 502 and "download" in r.json()["detail"]
    assert len(list(srv.settings.images_dir.glob("*.png"))) == stored  # nothing half-written survives
    a.clear_faults()
    a.faults("expired_links", count=1)
    assert srv.post(path, **kwargs).status_code == 502


def test_unsafe_items_keep_url_null(start_server, fresh):
    srv = relay_server(start_server, [channel("a", fresh[0])])
    r = srv.post("/v1/ideogram-v3/generate", json={"prompt": "partly-unsafe scene", "num_images": 3})
    assert r.status_code == 200
    data = r.json()["data"]
    assert [d["is_image_safe"] for d in data] == [False, True, False]
    assert data[0]["url"] is None and data[1]["url"].startswith(srv.base_url)


def test_channels_added_from_cli_apply_to_running_server(start_server, fresh):
    import subprocess
    import sys

    clock = FakeClock()
    srv = start_server("config", engine_config={"*": "relay"}, channel_reload_s=0.2, clock=clock)
    path, kwargs = request_for(Operation.V3_GENERATE)
    assert srv.post(path, **kwargs).status_code == 503  # no channel yet
    out = subprocess.run(
        [sys.executable, "-m", "ideohub.cli", "channels", "add", "live", "--base-url", fresh[0].base_url,
         "--key", SIM_KEY, "--auth", "api-key", "--path-style", "official", "--data-dir", str(srv.settings.data_dir)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert SIM_KEY not in out.stdout + out.stderr
    clock.advance(0.3)  # past channel_reload_s: the server re-reads the channels
    assert srv.post(path, **kwargs).status_code == 200
    listed = subprocess.run([sys.executable, "-m", "ideohub.cli", "channels", "list", "--data-dir",
                             str(srv.settings.data_dir)], capture_output=True, text=True, timeout=60)
    assert "live" in listed.stdout and SIM_KEY not in listed.stdout
    # encrypted at rest: scan the database files from another process (closing a descriptor on a
    # SQLite file inside the server's own process would drop SQLite's POSIX locks)
    scan = subprocess.run([sys.executable, "-c", "import sys,glob; sys.exit(any(sys.argv[1].encode() in open(f,'rb').read() "
                           "for f in glob.glob(sys.argv[2] + '/ideohub.db*')))", SIM_KEY, str(srv.settings.data_dir)])
    assert scan.returncode == 0
    tested = subprocess.run([sys.executable, "-m", "ideohub.cli", "channels", "test", "live", "--data-dir",
                             str(srv.settings.data_dir)], capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0 and "ok" in tested.stdout
    subprocess.run([sys.executable, "-m", "ideohub.cli", "channels", "disable", "live", "--data-dir",
                    str(srv.settings.data_dir)], check=True, capture_output=True, timeout=60)
    clock.advance(0.3)  # past channel_reload_s: the server re-reads the channels
    assert srv.post(path, **kwargs).status_code == 503


def test_overhead_header_and_request_metrics(start_server, fresh):
    srv = relay_server(start_server, [channel("a", fresh[0])])
    fresh[0].configure(latency_s=0.2)
    try:
        path, kwargs = request_for(Operation.V3_GENERATE)
        r = srv.post(path, **kwargs)
        overhead = float(r.headers["x-ideohub-overhead-ms"])
        assert 0 <= overhead < 200  # the 200 ms upstream wait is not ours
        assert r.headers["x-request-id"].startswith("req_")
    finally:
        fresh[0].configure(latency_s=0.0)
    m = srv.client.get("/metrics").text
    assert 'ideohub_requests_total{endpoint="v3-generate",status="200"} 1.0' in m
    assert "ideohub_images_stored_total" in m and "ideohub_request_seconds_bucket" in m
