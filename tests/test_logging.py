"""Structured request logs: one JSON line per request with its id; metadata only, prompts
only when ``log_prompts`` is on, never keys or image bytes."""

from __future__ import annotations

import json
import logging

import pytest

from conftest import png_bytes


def access_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "ideohub.access"]


@pytest.mark.parametrize("log_prompts", [False, True])
def test_one_json_line_per_request_without_secrets(start_server, caplog, log_prompts):
    caplog.set_level(logging.INFO)
    srv = start_server(log_prompts=log_prompts)
    r = srv.post("/v1/ideogram-v3/generate", json={"prompt": "a secret garden"})
    assert r.status_code == 503
    srv.post("/upscale", files={"image_file": ("a.png", png_bytes(), "image/png")}, data={"image_request": "{}"})
    lines = access_lines(caplog)
    first = next(line for line in lines if line["path"] == "/v1/ideogram-v3/generate")
    assert first["request_id"] == r.headers["x-request-id"] and first["status"] == 503
    assert first["operation"] == "v3-generate" and first["key_id"].startswith("key_")
    assert ("prompt" in first) is log_prompts
    text = caplog.text
    assert srv.key not in text
    assert ("a secret garden" in text) is log_prompts
    assert "IHDR" not in text  # no image bytes
