"""Logs are JSON lines exactly as documented (README: ts, level, logger, then message or the
event's fields; exception as one field), from our loggers, uvicorn's and libraries', and never
carry a key, a token, a signed URL or a query string — including httpx's per-call lines, which
used to print full signed upstream URLs."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from conftest import png_bytes
from ideohub.logs import QUIET, UVICORN, add_secrets, configure_logging, event, scrub
from ideohub.sim.runner import SimulatedUpstream
from ideohub.sim.upstream import SimConfig

SIM_KEY = "sim-logging-key-0123456789abcdef"
TOKEN = "admin-token-" + "L" * 32
ACCESS_FIELDS = {"request_id", "method", "path", "status", "ms", "engine_ms"}


@pytest.fixture
def json_logs() -> Iterator:
    """configure_logging into a buffer; the root and library loggers restored afterwards."""
    names = ["", *UVICORN, *QUIET]
    saved = {n: (lg.level, list(lg.handlers), lg.propagate) for n in names for lg in [logging.getLogger(n)]}
    stream = io.StringIO()
    handlers = []

    def install(level: str = "INFO", **kwargs) -> io.StringIO:  # type: ignore[no-untyped-def]
        handlers.append(configure_logging(level, stream=stream, **kwargs))
        return stream

    yield install
    for h in handlers:
        logging.getLogger().removeHandler(h)
    for n, (level, hs, propagate) in saved.items():
        lg = logging.getLogger(n)
        lg.setLevel(level)
        lg.handlers[:] = hs
        lg.propagate = propagate


def parse(stream: io.StringIO) -> list[dict]:
    lines = stream.getvalue().splitlines()
    objects = [json.loads(line) for line in lines]  # every line is one JSON object
    for obj in objects:
        assert isinstance(obj, dict) and list(obj)[:3] == ["ts", "level", "logger"], obj
        assert obj["ts"].endswith("Z") and datetime.fromisoformat(obj["ts"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0
        assert obj["level"] in ("debug", "info", "warning", "error", "critical")
        assert ("message" in obj) != bool(set(obj) - {"ts", "level", "logger", "message", "exception", "stack"})
    return objects


@pytest.fixture(scope="module")
def sim():
    s = SimulatedUpstream(SimConfig(api_keys=(SIM_KEY,))).start()
    yield s
    s.stop()


def relay(start_server, sim, **overrides):  # type: ignore[no-untyped-def]
    channel = {"name": "up", "kind": "relay", "base_url": sim.base_url, "key": SIM_KEY, "auth": "api-key",
               "path_style": "official", "timeout_s": 5.0}
    return start_server("config", engine_config={"*": "relay"}, channels=[channel], **overrides)


@pytest.mark.parametrize("log_prompts", [False, True])
def test_json_lines_with_the_access_record_as_fields_and_no_secrets(start_server, sim, json_logs, log_prompts):
    srv = relay(start_server, sim, log_prompts=log_prompts, admin_token=TOKEN)
    stream = json_logs("INFO", secrets=[TOKEN])  # after the servers started: uvicorn configures its loggers then
    r = srv.post("/v1/ideogram-v3/generate", json={"prompt": "a secret garden", "rendering_speed": "TURBO"})
    assert r.status_code == 200, r.text
    url = r.json()["data"][0]["url"]
    sig = re.search(r"sig=([0-9a-f]+)", url).group(1)
    assert httpx.get(url, timeout=30).status_code == 200
    srv.post("/upscale", files={"image_file": ("a.png", png_bytes(), "image/png")}, data={"image_request": "{}"})
    srv.client.get("/admin/accounts", headers={"Authorization": f"Bearer {TOKEN}"})

    objects = parse(stream)
    access = [o for o in objects if o["logger"] == "ideohub.access"]
    first = next(o for o in access if o["path"] == "/v1/ideogram-v3/generate")
    assert ACCESS_FIELDS <= set(first) and "message" not in first  # fields, not a JSON string in "message"
    assert first["request_id"] == r.headers["x-request-id"] and first["status"] == 200 and first["method"] == "POST"
    assert first["operation"] == "v3-generate" and first["key_id"].startswith("key_")
    assert isinstance(first["ms"], float) and isinstance(first["engine_ms"], float)
    assert ("prompt" in first) is log_prompts
    image_line = next(o for o in access if o["path"].startswith("/images/"))
    assert image_line["status"] == 200

    text = stream.getvalue()
    assert not [o for o in objects if o["logger"].startswith(("httpx", "httpcore"))]  # at WARNING
    assert srv.key not in text and SIM_KEY not in text and TOKEN not in text
    assert sig not in text and "?exp=" not in text and not re.search(r"\?[^\s\"]*=", text)
    assert ("a secret garden" in text) is log_prompts
    assert "IHDR" not in text  # no image bytes


def test_every_logger_goes_through_the_same_formatter_and_scrubber(json_logs):
    stream = json_logs("INFO", secrets=["operator-secret-value"])
    signed = "https://img.example/images/img_1.png?exp=1700000000&kid=k3&sig=" + "ab" * 32
    logging.getLogger("ideohub.relay").warning("download %s failed; Authorization: Bearer %s", signed,
                                               "sk-live-0123456789abcdef0123456789abcdef")
    logging.getLogger("uvicorn.error").error("uvicorn says: operator-secret-value")
    add_secrets(["chan-k3y"])  # a short channel key, registered when loaded
    logging.getLogger("ideohub.relay").info("channel up uses chan-k3y")
    logging.getLogger("httpx").info("HTTP Request: GET %s \"HTTP/1.1 200 OK\"", signed)  # quieted
    logging.getLogger("httpx").warning("retrying %s", signed)
    logging.getLogger("ideohub.service").warning('{"sweeper": "released abandoned reservations", "count": 2}')
    event(logging.getLogger("ideohub.test"), logging.INFO, "custom", kind="x", ts="forged", level="forged")
    try:
        raise ValueError(f"boom while fetching {signed}\nsecond line")
    except ValueError:
        logging.getLogger("ideohub.api").exception("unhandled error on %s", "/v1/x?api_key=abcdef")
    logging.getLogger("ideohub.debug").debug("not at INFO")

    objects = parse(stream)
    by_logger = {o["logger"]: o for o in objects}
    assert any(o.get("message") == "channel up uses [redacted]" for o in objects)
    assert set(by_logger) == {"ideohub.relay", "uvicorn.error", "httpx", "ideohub.service", "ideohub.test",
                              "ideohub.api"}
    assert by_logger["httpx"]["message"].startswith("retrying https://img.example/images/img_1.png")
    assert by_logger["ideohub.service"] == {**by_logger["ideohub.service"], "sweeper": "released abandoned reservations",
                                            "count": 2}
    assert "message" not in by_logger["ideohub.service"]
    custom = by_logger["ideohub.test"]
    assert custom["kind"] == "x" and custom["level"] == "info" and custom["ts"] != "forged"  # fixed fields win
    exc = by_logger["ideohub.api"]
    assert exc["level"] == "error" and "Traceback" in exc["exception"] and "ValueError: boom" in exc["exception"]
    assert exc["message"] == "unhandled error on /v1/x"
    text = stream.getvalue()
    assert len(text.splitlines()) == len(objects) == 7  # one line each, the traceback included
    for leaked in ("chan-k3y", "ab" * 32, "1700000000", "sk-live-0123456789abcdef", "operator-secret-value", "abcdef", "?exp"):
        assert leaked not in text, leaked


@pytest.mark.parametrize("text,gone,kept", [
    ("GET http://127.0.0.1:9/images/a.png?exp=1&kid=k1&sig=ff00 200", ["exp=1", "ff00"], ["/images/a.png"]),
    ("exp=17&kid=k2&sig=deadbeef", ["deadbeef", "17"], []),
    ("postgresql://ideohub:pw-123456@db/x", ["pw-123456"], ["db/x"]),
    ('{"authorization": "Bearer abcdefghijkl"}', ["abcdefghijkl"], []),
    ("key ih_" + "A" * 43, ["A" * 43], []),
])
def test_scrub(text, gone, kept):
    out = scrub(text)
    for g in gone:
        assert g not in out
    for k in kept:
        assert k in out


def test_a_bad_level_is_a_clear_error(json_logs):
    with pytest.raises(ValueError, match="log_level"):
        json_logs("LOUD")


def test_query_strings_without_an_equals_sign_are_scrubbed_too():
    """A webhook target like https://hook.example/x?secrettoken carries its secret bare."""
    from ideohub.logs import scrub

    assert scrub("POST https://hook.example/x?secrettoken failed") == "POST https://hook.example/x failed"
    assert scrub("is it valid? yes") == "is it valid? yes"  # prose keeps its question marks
