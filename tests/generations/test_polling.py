"""Polling (issue 8, item 2): ``GET /v1|v2/generations/{id}``, with and without ``/ideogram``,
through a real server. Every answer is checked against the official ``GenerationResponse``
(vendored July-2026 document) and its drop-nulls rule; a completed generation answers exactly
the items of its synchronous answer; failures carry a fixed code; accounts are isolated; ids
are checked; polling has its own per-account limit."""

from __future__ import annotations

import json

import pytest
from test_state_contract import REDIS_URL, _require_redis

from ideohub.domain.errors import SafetyRejected, UpstreamFailed
from ideohub.domain.generations import GENERATION_ID, FailureReason

from .support import (
    PNG,
    TURBO_PRICE,
    V3,
    as_answered,
    check_generation_response,
    gated,
    headers,
    new_key,
    poll,
    poll_until,
    sync_v3,
)

PATHS = ["/v1/generations/", "/v2/generations/", "/ideogram/v1/generations/", "/ideogram/v2/generations/"]


def test_a_sync_request_polled_on_every_path_answers_its_very_items(start_server):
    srv, _gate = gated(start_server)
    generation_id, answer = sync_v3(srv)
    assert GENERATION_ID.fullmatch(generation_id)
    for path in PATHS:
        for style in ("api-key", "bearer"):
            r = poll(srv, generation_id, path, style=style)
            assert r.status_code == 200, (path, r.text)
            assert r.headers["content-type"] == "application/json"
            assert r.headers["cache-control"] == "no-store"
            assert "x-ideohub-generation-id" not in r.headers  # a poll admits nothing
            body = r.json()
            check_generation_response(body)
            assert body["generation_id"] == generation_id and body["status"] == "completed"
            assert as_answered(body) == answer["data"]  # the same items, the same signed URLs (same expiry)
            assert body["usage_cost_usd_micros"] == 2 * TURBO_PRICE
    for item in answer["data"]:
        assert srv.client.get(item["url"]).status_code == 200


def test_a_legacy_request_polled_answers_its_items(start_server):
    srv, _gate = gated(start_server)
    r = srv.client.post("/generate", headers=headers(srv.key),
                        json={"image_request": {"prompt": "a cat", "model": "V_2_TURBO", "num_images": 3}})
    assert r.status_code == 200, r.text
    body = poll(srv, r.headers["x-ideohub-generation-id"], "/ideogram/v2/generations/").json()
    check_generation_response(body)
    assert as_answered(body) == r.json()["data"] and len(body["data"]) == 3


@pytest.mark.parametrize("how", ["query", "json", "multipart"])
def test_async_submission_is_pending_then_completed(start_server, how):
    srv, gate = gated(start_server)
    gate.hold()
    fields = {"prompt": "a lighthouse at dusk", "rendering_speed": "TURBO", "num_images": 2}
    if how == "query":
        r = srv.client.post(V3 + "?async=true", headers=headers(srv.key), json=fields)
    elif how == "json":
        r = srv.client.post(V3, headers=headers(srv.key), json={**fields, "async": True})
    else:
        parts = {name: (None, str(value)) for name, value in {**fields, "async": "true"}.items()}
        r = srv.client.post(V3, headers=headers(srv.key), files=parts)
        assert r.request.headers["content-type"].startswith("multipart/form-data")
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["generation_id"]
    generation_id = r.json()["generation_id"]
    gate.entered.wait(30)
    pending = poll(srv, generation_id).json()
    check_generation_response(pending)
    assert pending["status"] == "pending" and pending["generation_id"] == generation_id
    gate.release()
    done = poll_until(srv, generation_id, "completed")
    check_generation_response(done)
    assert done["created"] == pending["created"]
    assert len(done["data"]) == 2 and done["usage_cost_usd_micros"] == 2 * TURBO_PRICE
    for item in done["data"]:
        assert item["url"].startswith(srv.base_url + "/images/")
        assert srv.client.get(item["url"]).status_code == 200


def test_unsafe_images_are_in_data_and_not_charged(start_server):
    srv, gate = gated(start_server)
    gate.unsafe = True
    generation_id, answer = sync_v3(srv, num_images=3)
    body = poll(srv, generation_id).json()
    check_generation_response(body)
    assert as_answered(body) == answer["data"]
    assert [item["is_image_safe"] for item in body["data"]] == [True, True, False]
    assert body["data"][-1]["url"] is None  # the item exactly as the synchronous answer has it
    assert body["usage_cost_usd_micros"] == 2 * TURBO_PRICE  # the unsafe one is not charged


@pytest.mark.parametrize(("error", "status", "reason"), [
    (UpstreamFailed("every channel failed: up (HTTP 500)"), 502, FailureReason.UPSTREAM_FAILED),
    (SafetyRejected(SafetyRejected.IMAGE), 422, FailureReason.CONTENT_POLICY_VIOLATION),
])
def test_a_failed_generation_shows_its_failure_reason_and_no_data(start_server, error, status, reason):
    srv, gate = gated(start_server)
    gate.fail = error
    r = srv.client.post(V3, headers=headers(srv.key), json={"prompt": "a cat", "rendering_speed": "TURBO"})
    assert r.status_code == status
    synchronous = r.headers["x-ideohub-generation-id"]
    asynchronous = srv.client.post(V3, headers=headers(srv.key),
                                   json={"prompt": "a cat", "rendering_speed": "TURBO", "async": True}).json()
    for generation_id in (synchronous, asynchronous["generation_id"]):
        body = poll_until(srv, generation_id, "failed")
        check_generation_response(body)
        assert body["failure_reason"] == reason.value  # a fixed code, never the upstream's text
        assert "channel" not in json.dumps(body)


def test_another_accounts_generation_is_404_like_an_unknown_id(start_server):
    srv, _gate = gated(start_server)
    account, key = new_key(srv)
    generation_id, _answer = sync_v3(srv, key=key)
    _same_account, sibling = new_key(srv, account)
    assert poll(srv, generation_id, key=sibling).json()["status"] == "completed"  # any key of the account
    _other, stranger = new_key(srv)
    foreign = poll(srv, generation_id, key=stranger)
    unknown = poll(srv, "A" * 22, key=stranger)
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["detail"] == unknown.json()["detail"] == "generation_id: no such generation"
    assert poll(srv, generation_id, key=srv.key).status_code == 404  # the default account is another account


@pytest.mark.parametrize("bad", ["short", "A" * 23, "A" * 21 + "+", "A" * 21 + "=", "A" * 21 + "%20", "%C3%A9" * 11])
def test_a_malformed_id_is_400_naming_generation_id(start_server, bad):
    srv, _gate = gated(start_server)
    for path in ("/v1/generations/", "/v2/generations/"):
        r = poll(srv, bad, path)
        assert r.status_code == 400, r.text
        assert r.json()["detail"].startswith("generation_id: must be 22 URL-safe base64 characters")


def test_polling_needs_a_valid_key(start_server):
    srv, _gate = gated(start_server)
    generation_id, _ = sync_v3(srv)
    assert srv.client.get("/v1/generations/" + generation_id).status_code == 401
    r = srv.client.get("/v2/generations/" + generation_id, headers={"Api-Key": "ih_not-a-key"})
    assert r.status_code == 401 and "www-authenticate" in r.headers


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "redis"])
def test_polling_has_its_own_limit_per_account_apart_from_rpm(start_server, shared):
    options = {}
    if shared:  # the limiter every instance shares (a fresh account: its keys are its own)
        _require_redis()
        options["redis_url"] = REDIS_URL
    srv, _gate = gated(start_server, poll_limit=3, poll_window_s=3600, **options)
    account, key = new_key(srv, rpm=2)
    generation_id, _ = sync_v3(srv, key=key)  # one of the key's 2 requests per minute
    for _ in range(3):
        assert poll(srv, generation_id, key=key).status_code == 200
    sync_v3(srv, key=key)  # the polls did not use the key's rpm
    refused = poll(srv, generation_id, key=key)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 1200  # one poll every 3600/3 s
    assert refused.json()["detail"] == "polling is limited to 3 requests per 3600 s per account"
    _same, sibling = new_key(srv, account)
    assert poll(srv, generation_id, key=sibling).status_code == 429  # per account, not per key
    r = srv.client.get("/ideogram/tasks/" + generation_id, headers=headers(key))  # task queries are polls too
    assert r.status_code == 429 and r.json()["code"] == 429 and "retry-after" in r.headers
    _other, stranger = new_key(srv)
    assert poll(srv, generation_id, key=stranger).status_code == 404  # other accounts poll on


def test_expired_links_still_poll_but_answer_410(start_server):
    srv, _gate = gated(start_server, url_ttl_s=0)  # links expire the second they are signed
    generation_id, answer = sync_v3(srv)
    body = poll(srv, generation_id).json()
    check_generation_response(body)
    assert body["status"] == "completed" and as_answered(body) == answer["data"]
    for item in body["data"]:
        assert srv.client.get(item["url"]).status_code == 410


def test_describe_polls_with_its_descriptions(start_server):
    srv, _gate = gated(start_server)
    r = srv.client.post("/describe", headers=headers(srv.key), files={"image_file": ("in.png", PNG, "image/png")})
    assert r.status_code == 200, r.text
    body = poll(srv, r.headers["x-ideohub-generation-id"], "/v2/generations/").json()
    check_generation_response(body)
    assert body["descriptions"] == r.json()["descriptions"]
    assert body["usage_cost_usd_micros"] > 0
