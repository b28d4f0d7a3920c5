"""Every image request is a generation (issue 8, items 1, 3, 4): an id in a header on every answer
after admission, async submission on every endpoint, and ``Idempotency-Key`` — through a real
server with the simulated upstream as the relay channel, and the ledger checked after each case.

Restarts (a process killed with generations pending) are in tests/test_generation_takeover.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx
import pytest
from conftest import png_bytes, sim_channel

from ideohub.config import Secrets
from ideohub.domain.generations import GENERATION_ID
from ideohub.store.ledger import Ledger
from ideohub.store.repository import Repository

V3 = "/v1/ideogram-v3/generate"
TURBO = {"prompt": "a lighthouse at dusk", "rendering_speed": "TURBO"}
TURBO_PRICE = 30_000


def relay(start_server, sims, **overrides: Any):  # type: ignore[no-untyped-def]
    return start_server("config", engine_config={"*": "relay"}, channels=[sim_channel("up", sims[0])], **overrides)


def _repo(srv) -> Repository:  # type: ignore[no-untyped-def]
    return Repository.connect(srv.settings.db_url, Secrets.load(srv.settings).key_pepper)


def funded_key(srv, usd_micros: int = 1_000_000) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    async def go() -> tuple[str, str]:
        repo = _repo(srv)
        try:
            ledger = Ledger(repo.session)
            account = await ledger.create_account("gen")
            await ledger.topup(account.id, usd_micros)
            _row, key = await repo.create_key("k", account_id=account.id)
            return account.id, key
        finally:
            await repo.close()

    return asyncio.run(go())


def money(srv, account_id: str) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """(balance, charged, ledger sum) of an account."""

    async def go() -> tuple[int, int, int]:
        repo = _repo(srv)
        try:
            ledger = Ledger(repo.session)
            account = await ledger.get_account(account_id)
            return account.balance_micros, await ledger.charged(account_id), await ledger.ledger_sum(account_id)
        finally:
            await repo.close()

    return asyncio.run(go())


def record(srv, generation_id: str) -> Any:  # type: ignore[no-untyped-def]
    async def go() -> Any:
        repo = _repo(srv)
        try:
            return await repo.get_generation(generation_id)
        finally:
            await repo.close()

    return asyncio.run(go())


def wait_done(srv, generation_id: str, budget_s: float = 60) -> Any:  # type: ignore[no-untyped-def]
    """The record once it has ended (the background generation runs in the server's loop)."""
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        rec = record(srv, generation_id)
        if rec is not None and rec.state in ("done", "failed"):
            return rec
        time.sleep(0.05)  # polling another thread's work: there is no event to wait on from here
    raise AssertionError(f"generation {generation_id} did not end in {budget_s} s")


# ---------------------------------------------------------------- the id


def test_sync_answers_carry_the_generation_id_and_are_unchanged(start_server, fresh):
    srv = relay(start_server, fresh)
    r = srv.post(V3, json={**TURBO, "seed": 3})
    assert r.status_code == 200
    gid = r.headers["x-ideohub-generation-id"]
    assert GENERATION_ID.fullmatch(gid)
    body = r.json()
    assert set(body) == {"created", "data"}  # no generation id inside the synchronous body
    rec = record(srv, gid)
    assert rec.state == "done" and rec.mode == "sync" and rec.result == r.text  # stored byte for byte
    assert rec.id == r.headers["x-request-id"]


def test_5xx_answers_carry_the_generation_id(start_server, fresh):
    srv = relay(start_server, fresh)
    fresh[0].faults("status", status=500, count=None)
    r = srv.post(V3, json=TURBO)
    assert r.status_code == 502
    gid = r.headers["x-ideohub-generation-id"]
    rec = record(srv, gid)
    assert rec.state == "failed" and rec.failure_reason == "upstream_failed"


def test_refusals_at_admission_have_no_generation(start_server, fresh):
    srv = relay(start_server, fresh)
    r = srv.post(V3, json={"prompt": ""})
    assert r.status_code == 400 and "x-ideohub-generation-id" not in r.headers


def test_a_seedless_request_gets_its_seed_fixed_at_admission(start_server, fresh):
    srv = relay(start_server, fresh)
    r = srv.post(V3, json=TURBO)
    sent = fresh[0].api_requests()[-1].fields
    assert isinstance(sent["seed"], int) and r.json()["data"][0]["seed"] == sent["seed"]


# ---------------------------------------------------------------- async submission


@pytest.mark.parametrize("how", ["query", "json", "multipart", "legacy-json"])
def test_async_answers_at_once_with_the_id_and_completes_in_the_background(start_server, fresh, how):
    srv = relay(start_server, fresh)
    account, key = funded_key(srv)
    h = {"Api-Key": key}
    if how == "query":
        r = srv.client.post(V3 + "?async=true", json=TURBO, headers=h)
    elif how == "json":
        r = srv.client.post(V3, json={**TURBO, "async": True}, headers=h)
    elif how == "multipart":
        r = srv.client.post(V3, data={**TURBO, "async": "true"}, files={"unused": ("x", b"1")}, headers=h)
    else:
        r = srv.client.post("/generate", json={"image_request": {"prompt": "x", "model": "V_2_TURBO"}, "async": True},
                            headers=h)
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["generation_id"] and GENERATION_ID.fullmatch(r.json()["generation_id"])
    rec = wait_done(srv, r.json()["generation_id"])
    assert rec.state == "done" and rec.mode == "async" and rec.resume is None
    price = TURBO_PRICE if how != "legacy-json" else 50_000  # legacy V_2_TURBO
    assert money(srv, account) == (1_000_000 - price, price, 1_000_000 - price)
    assert json.loads(rec.result)["data"][0]["url"].startswith(srv.base_url + "/images/")


def test_async_refusals_are_synchronous_with_todays_status(start_server, fresh):
    srv = relay(start_server, fresh)
    account, key = funded_key(srv, usd_micros=10_000)  # less than one TURBO image
    h = {"Api-Key": key}
    assert srv.client.post(V3 + "?async=true", json=TURBO, headers=h).status_code == 402
    assert srv.client.post(V3 + "?async=true", json={"prompt": ""}, headers=h).status_code == 400
    assert srv.client.post(V3 + "?async=maybe", json=TURBO, headers=h).json()["detail"].startswith("async: ")
    assert money(srv, account) == (10_000, 0, 10_000)


def test_a_failed_async_generation_is_refunded(start_server, fresh):
    srv = relay(start_server, fresh)
    account, key = funded_key(srv)
    fresh[0].faults("status", status=503, count=None)
    r = srv.client.post(V3 + "?async=true", json=TURBO, headers={"Api-Key": key})
    rec = wait_done(srv, r.json()["generation_id"])
    assert rec.state == "failed" and rec.failure_reason == "upstream_failed" and rec.result is None
    assert money(srv, account) == (1_000_000, 0, 1_000_000)


@pytest.mark.parametrize("url,rule", [
    ("http://example.com/hook", "https"),
    ("https://127.0.0.1/hook", "loopback"),
    ("https://169.254.169.254/latest/meta-data", "metadata"),
    ("https://10.0.0.1/x", "private"),
    ("not a url", "https URL"),
])
def test_webhook_targets_are_checked_at_submission(start_server, fresh, url, rule):
    srv = relay(start_server, fresh)
    r = srv.post(V3, json={**TURBO, "webhook_url": url})
    assert r.status_code == 400 and r.json()["detail"].startswith("webhook_url: ") and rule in r.json()["detail"]
    assert not fresh[0].api_requests()


# ---------------------------------------------------------------- Idempotency-Key


def test_a_retry_is_the_same_generation_and_is_never_charged_again(start_server, fresh):
    srv = relay(start_server, fresh)
    account, key = funded_key(srv)
    h = {"Api-Key": key, "Idempotency-Key": "order-42"}
    first = srv.client.post(V3, json=TURBO, headers=h)
    second = srv.client.post(V3, json=TURBO, headers=h)
    assert first.status_code == second.status_code == 200
    assert second.content == first.content  # the same answer, byte for byte
    assert second.headers["x-ideohub-generation-id"] == first.headers["x-ideohub-generation-id"]
    assert len(fresh[0].api_requests()) == 1
    assert money(srv, account) == (1_000_000 - TURBO_PRICE, TURBO_PRICE, 1_000_000 - TURBO_PRICE)


def test_the_same_multipart_request_with_another_boundary_is_the_same_request(start_server, fresh):
    srv = relay(start_server, fresh)
    png = png_bytes(64, 48)
    h = {"Api-Key": srv.key, "Idempotency-Key": "remix-1"}
    answers = [srv.client.post("/v1/ideogram-v3/remix", headers=h, data={"prompt": "ink", "image_weight": "60"},
                               files={"image": ("a.png", png, "image/png")}) for _ in range(2)]
    assert answers[0].content == answers[1].content and len(fresh[0].api_requests()) == 1


def test_the_same_key_for_another_request_is_409(start_server, fresh):
    srv = relay(start_server, fresh)
    h = {"Api-Key": srv.key, "Idempotency-Key": "k-1"}
    assert srv.client.post(V3, json=TURBO, headers=h).status_code == 200
    r = srv.client.post(V3, json={**TURBO, "prompt": "something else"}, headers=h)
    assert r.status_code == 409 and r.json()["detail"].startswith("Idempotency-Key: ")
    r = srv.client.post(V3 + "?async=true", json=TURBO, headers=h)  # async is part of the request
    assert r.status_code == 409


def test_keys_are_scoped_to_the_account(start_server, fresh):
    srv = relay(start_server, fresh)
    _a, key_a = funded_key(srv)
    _b, key_b = funded_key(srv)
    for key in (key_a, key_b):
        assert srv.client.post(V3, json=TURBO, headers={"Api-Key": key, "Idempotency-Key": "same"}).status_code == 200
    assert len(fresh[0].api_requests()) == 2


def test_a_failed_first_request_is_replayed_as_the_same_failure(start_server, fresh):
    srv = relay(start_server, fresh)
    account, key = funded_key(srv)
    fresh[0].faults("status", status=500, count=None)
    h = {"Api-Key": key, "Idempotency-Key": "fails"}
    first = srv.client.post(V3, json=TURBO, headers=h)
    fresh[0].reset()  # the upstream is healthy now, but the key names the failed generation
    second = srv.client.post(V3, json=TURBO, headers=h)
    assert first.status_code == second.status_code == 502
    assert first.json()["detail"] == second.json()["detail"]
    assert not fresh[0].api_requests()
    assert money(srv, account) == (1_000_000, 0, 1_000_000)


def test_an_async_retry_gets_the_same_acknowledgement(start_server, fresh):
    srv = relay(start_server, fresh)
    account, key = funded_key(srv)
    h = {"Api-Key": key, "Idempotency-Key": "async-1"}
    first = srv.client.post(V3 + "?async=true", json=TURBO, headers=h)
    second = srv.client.post(V3 + "?async=true", json=TURBO, headers=h)
    assert first.json() == second.json()
    wait_done(srv, first.json()["generation_id"])
    assert money(srv, account)[1] == TURBO_PRICE


def test_a_synchronous_retry_of_a_pending_generation_waits_for_it(start_server, fresh):
    """The first call is still running (the upstream takes 1.5 s); the retry waits and gets
    the same answer, without a second upstream call or charge."""
    srv = relay(start_server, fresh)
    account, key = funded_key(srv)
    fresh[0].configure(latency_s=1.5)
    h = {"Api-Key": key, "Idempotency-Key": "slow"}

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=60) as client:
            first = asyncio.create_task(client.post(V3, json=TURBO, headers=h))
            await asyncio.sleep(0.5)  # the first is admitted and upstream by now (the upstream's own delay is 1.5 s)
            second = await client.post(V3, json=TURBO, headers=h)
            return [await first, second]

    first, second = asyncio.run(both())
    assert first.status_code == second.status_code == 200 and first.content == second.content
    assert len(fresh[0].api_requests()) == 1
    assert money(srv, account)[1] == TURBO_PRICE


@pytest.mark.parametrize("value", [b"", b"with space", b"x" * 256, "ünïcode".encode()])
def test_a_malformed_idempotency_key_is_400(start_server, fresh, value):
    srv = relay(start_server, fresh)
    r = srv.client.post(V3, json=TURBO, headers={"Api-Key": srv.key, "Idempotency-Key": value})
    assert r.status_code == 400 and r.json()["detail"].startswith("Idempotency-Key: ")


def test_queue_time_is_reported_apart_from_overhead(start_server, fresh):
    srv = relay(start_server, fresh)
    r = srv.post(V3, json=TURBO)
    assert re.fullmatch(r"\d+\.\d\d", r.headers["x-ideohub-overhead-ms"])
    assert "x-ideohub-queue-ms" not in r.headers  # the relay never waits for a worker


def test_a_caller_that_timed_out_retries_and_is_not_charged_twice(start_server, fresh):
    """The caller gives up after 0.5 s while the upstream takes 1.5 s; the generation goes on
    and is charged once. The retry with the same Idempotency-Key gets the finished answer; the
    generation is also readable by its id (the record is the source of truth)."""
    srv = relay(start_server, fresh)
    account, key = funded_key(srv)
    fresh[0].configure(latency_s=1.5)
    h = {"Api-Key": key, "Idempotency-Key": "impatient"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(srv.base_url + V3, json=TURBO, headers=h, timeout=0.5)
    retry = srv.client.post(V3, json=TURBO, headers=h)
    assert retry.status_code == 200
    rec = wait_done(srv, retry.headers["x-ideohub-generation-id"])
    assert rec.result == retry.text
    assert len(fresh[0].api_requests()) == 1
    assert money(srv, account) == (1_000_000 - TURBO_PRICE, TURBO_PRICE, 1_000_000 - TURBO_PRICE)


def test_a_bad_idempotency_key_without_a_valid_api_key_is_401(start_server, fresh):
    """Authentication comes first: an unauthenticated caller learns nothing about its other headers."""
    srv = relay(start_server, fresh)
    r = srv.client.post(V3, json=TURBO, headers={"Api-Key": "ih_wrong", "Idempotency-Key": "with space"})
    assert r.status_code == 401
