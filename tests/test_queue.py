"""The fleet's queue (issue 9), on a real Redis and a real database, with the simulated upstream as
the channel: an API instance that only admits and enqueues, and ``ideohub.worker.Worker``s (in
threads of this process, each with its own event loop) that run what it enqueues.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest
import redis
from conftest import sim_channel

from ideohub.config import load_settings
from ideohub.domain.operations import Operation
from ideohub.store.models import RequestRecord
from ideohub.worker import Worker
from test_generations import _repo, funded_key, money

V3 = "/v1/ideogram-v3/generate"
TURBO = {"prompt": "a lighthouse", "rendering_speed": "TURBO"}
REDIS_URL = os.environ.get("IDEOHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def queue_url() -> str:
    """A Redis database of its own, emptied: the streams, the registry and the channel are ours."""
    base = REDIS_URL.rsplit("/", 1)[0]
    url = f"{base}/5"
    try:
        redis.Redis.from_url(url).flushdb()
    except redis.RedisError as exc:
        if os.environ.get("IDEOHUB_REQUIRE_SERVICES"):
            raise
        pytest.skip(f"Redis unreachable: {exc}")
    return url


class WorkerThread:
    """A ``Worker`` on its own loop in a thread; ``stop`` drains it like SIGTERM."""

    def __init__(self, settings: Any, operations: set[Operation] | None = None, drain_s: float = 5.0) -> None:
        self.worker = Worker(settings, operations, drain_s=drain_s)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def go() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await self.worker.run(self._stop, lambda _w: self.ready.set())

        try:
            asyncio.run(go())
        except BaseException as exc:  # reported by start()/stop()
            self.error = exc
            self.ready.set()

    def start(self) -> "WorkerThread":
        self.thread.start()
        assert self.ready.wait(60), "the worker did not start"
        if self.error is not None:
            raise self.error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self.thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(60)


@pytest.fixture
def fleet(start_server, fresh):  # type: ignore[no-untyped-def]
    workers: list[WorkerThread] = []
    url = queue_url()

    def api(**overrides: Any):  # type: ignore[no-untyped-def]
        return start_server("config", engine_config={"*": "relay"}, channels=[sim_channel("up", fresh[0])],
                            queue_url=url, heartbeat_s=0.2, **overrides)

    def worker(srv, operations: set[Operation] | None = None, **overrides: Any) -> WorkerThread:  # type: ignore[no-untyped-def]
        # a fleet has one public URL (the load balancer's): the links a worker signs point there
        settings = load_settings(data_dir=srv.settings.data_dir, public_base_url=srv.settings.base_url,
                                 **{**_shared(srv.settings), **overrides})
        w = WorkerThread(settings, operations).start()
        workers.append(w)
        return w

    yield api, worker, fresh
    for w in workers:
        w.stop()


def _shared(settings: Any) -> dict[str, Any]:
    keys = ("database_url", "queue_url", "engines", "channels", "heartbeat_s", "stale_after_s", "max_queue_wait_s",
            "max_pending_per_account", "request_timeout_s", "secret_key")
    return {k: getattr(settings, k) for k in keys}


def records(srv) -> list[RequestRecord]:  # type: ignore[no-untyped-def]
    async def go() -> list[RequestRecord]:
        repo = _repo(srv)
        try:
            from sqlalchemy import select

            async with repo.session() as s:
                return list((await s.scalars(select(RequestRecord).where(RequestRecord.generation_id.is_not(None)))).all())
        finally:
            await repo.close()

    return asyncio.run(go())


def wait_until(check, budget_s: float = 30) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)  # another thread's or process's work: nothing here to wait on
    raise AssertionError("condition not met in time")


def test_sync_calls_run_on_a_worker_and_the_api_instance_runs_no_engine(fleet):
    api, worker, sims = fleet
    srv = api()
    account, key = funded_key(srv)
    w = worker(srv)
    r = srv.client.post(V3, json=TURBO, headers={"Api-Key": key})
    assert r.status_code == 200, r.text
    url = r.json()["data"][0]["url"]
    assert srv.client.get(url).status_code == 200
    [rec] = records(srv)
    assert rec.state == "done" and rec.owner == w.worker.id and rec.runs == 1
    balance, charged, ledger = money(srv, account)
    assert charged > 0 and balance == 1_000_000 - charged == ledger
    assert len(sims[0].api_requests()) == 1


def test_a_sync_call_no_live_worker_serves_answers_503_naming_it_and_costs_nothing(fleet):
    api, worker, sims = fleet
    srv = api()
    account, key = funded_key(srv)
    worker(srv, {Operation.UPSCALE})  # alive, but serves another operation
    r = srv.client.post(V3, json=TURBO, headers={"Api-Key": key})
    assert r.status_code == 503
    assert "v3-generate" in r.text and "ideohub worker" in r.text
    assert money(srv, account)[1] == 0 and sims[0].api_requests() == []


def test_async_work_waits_in_line_until_a_worker_comes(fleet):
    api, worker, sims = fleet
    srv = api()
    account, key = funded_key(srv)
    r = srv.client.post(V3 + "?async=true", json=TURBO, headers={"Api-Key": key})
    assert r.status_code == 200, r.text
    gid = r.json()["generation_id"]
    assert srv.client.get(f"/v1/generations/{gid}", headers={"Api-Key": key}).json()["status"] == "pending"
    worker(srv)
    done = wait_until(lambda: (g := srv.client.get(f"/v1/generations/{gid}", headers={"Api-Key": key}).json())
                      ["status"] == "completed" and g)
    assert done["data"][0]["url"]


def test_an_unreachable_queue_answers_503_and_refunds(fleet, start_server, fresh):
    closed = "redis://127.0.0.1:1/0"
    srv = start_server("config", engine_config={"*": "relay"}, channels=[sim_channel("up", fresh[0])], queue_url=closed)
    account, key = funded_key(srv)
    r = srv.client.post(V3 + "?async=true", json=TURBO, headers={"Api-Key": key})
    assert r.status_code == 503 and "queue" in r.text
    assert money(srv, account) == (1_000_000, 0, 1_000_000)
    [rec] = records(srv)
    assert rec.state == "failed" and rec.status_code == 503


def test_pending_generations_are_bounded_per_account_with_429_and_retry_after(fleet):
    api, worker, sims = fleet
    srv = api(max_pending_per_account=2)
    account, key = funded_key(srv)
    for _ in range(2):
        assert srv.client.post(V3 + "?async=true", json=TURBO, headers={"Api-Key": key}).status_code == 200
    before = money(srv, account)
    r = srv.client.post(V3 + "?async=true", json=TURBO, headers={"Api-Key": key})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "at most 2" in r.text
    _other_account, other_key = funded_key(srv)  # another account is not held back
    assert srv.client.post(V3 + "?async=true", json=TURBO, headers={"Api-Key": other_key}).status_code == 200
    assert money(srv, account) == before  # the refused one reserved nothing


def test_a_generation_redelivered_after_it_completed_is_not_run_again(fleet):
    api, worker, sims = fleet
    srv = api()
    _account, key = funded_key(srv)
    w = worker(srv)
    assert srv.client.post(V3, json=TURBO, headers={"Api-Key": key}).status_code == 200
    [rec] = records(srv)
    from ideohub.dispatch.redis import make_broker, message

    async def redeliver() -> None:
        broker = make_broker(srv.settings.queue_url, [Operation.V3_GENERATE], idle_timeout_s=30)
        await broker.startup()
        await broker.kick(message(rec.generation_id, Operation.V3_GENERATE))
        await broker.shutdown()

    asyncio.run(redeliver())
    time.sleep(1.5)  # the worker takes the message and must drop it; nothing observable to wait on
    [after] = records(srv)
    assert after.state == "done" and after.runs == 1 and len(sims[0].api_requests()) == 1
    assert w.thread.is_alive()


def test_a_sync_caller_is_answered_when_the_end_is_recorded_but_never_published(fleet, monkeypatch):
    """A worker killed between recording a generation's end and publishing it: the waiting
    instance re-reads the record every stale_after_s instead of sleeping to its deadline."""
    async def lost(self, generation_id: str) -> None:  # the publish that never happened, in every process
        return None

    from ideohub.dispatch.redis import RedisDispatch

    monkeypatch.setattr(RedisDispatch, "publish", lost)
    api, worker, sims = fleet
    srv = api(stale_after_s=1.0)
    _account, key = funded_key(srv)
    worker(srv, stale_after_s=1.0)
    started = time.monotonic()
    r = srv.client.post(V3, json=TURBO, headers={"Api-Key": key})
    waited = time.monotonic() - started
    assert r.status_code == 200, r.text
    [rec] = records(srv)
    assert rec.state == "done"
    # without the re-read it answers only at its deadline: max_queue_wait_s + request_timeout_s + 30 s
    assert waited < 20, waited


def test_a_generation_queued_past_max_queue_wait_fails_with_a_refund(fleet):
    api, worker, sims = fleet
    srv = api(max_queue_wait_s=0.5, reconcile_interval_s=0.2)
    account, key = funded_key(srv)
    r = srv.client.post(V3 + "?async=true", json=TURBO, headers={"Api-Key": key})
    gid = r.json()["generation_id"]
    failed = wait_until(lambda: (g := srv.client.get(f"/v1/generations/{gid}", headers={"Api-Key": key}).json())
                        ["status"] == "failed" and g, budget_s=20)
    assert failed["failure_reason"] == "timeout"
    assert money(srv, account) == (1_000_000, 0, 1_000_000)


def test_a_queued_generations_upstream_attempts_are_on_record_while_they_run(fleet):
    """A worker killed mid-call must leave the attempt the upstream may bill: a queued generation's
    attempt is written when it starts (at its worst-case cost) and corrected when it ends."""
    api, worker, sims = fleet
    sims[0].configure(latency_s=1.5)
    srv = api()
    _account, key = funded_key(srv)
    worker(srv)
    r = srv.client.post(V3 + "?async=true", json=TURBO, headers={"Api-Key": key})
    gid = r.json()["generation_id"]

    def attempts() -> list[Any]:
        async def go() -> list[Any]:
            repo = _repo(srv)
            try:
                from sqlalchemy import select

                from ideohub.store.models import UpstreamAttempt

                async with repo.session() as s:
                    return list((await s.execute(select(UpstreamAttempt.outcome, UpstreamAttempt.cost_micros))).all())
            finally:
                await repo.close()

        return asyncio.run(go())

    during = wait_until(attempts, budget_s=20)
    assert [o for o, _ in during] == ["started"] and during[0][1] > 0  # mid-call: on record, at full cost
    wait_until(lambda: srv.client.get(f"/v1/generations/{gid}", headers={"Api-Key": key}).json()["status"]
               == "completed")
    after = attempts()
    assert [o for o, _ in after] == ["ok"] and after[0][1] == during[0][1]


def test_a_drained_worker_hands_its_generation_back_and_another_completes_it(fleet):
    """SIGTERM (the worker's stop event): no new message is taken; what runs past ``drain_s`` is
    handed back — queued again — and another worker completes it, charged once."""
    api, worker, sims = fleet
    sims[0].configure(latency_s=3.0)
    srv = api()
    account, key = funded_key(srv)
    first = worker(srv)
    first.worker.drain_s = 0.2
    gid = srv.client.post(V3 + "?async=true", json=TURBO, headers={"Api-Key": key}).json()["generation_id"]
    wait_until(lambda: any(r.state == "running" and r.owner == first.worker.id for r in records(srv)))
    first.stop()
    [rec] = records(srv)
    assert rec.state == "queued" and rec.owner is None
    sims[0].configure(latency_s=0.0)
    second = worker(srv)
    done = wait_until(lambda: (g := srv.client.get(f"/v1/generations/{gid}", headers={"Api-Key": key}).json())
                      ["status"] == "completed" and g)
    assert done["data"][0]["url"]
    [rec] = records(srv)
    assert rec.owner == second.worker.id
    balance, charged, ledger = money(srv, account)
    assert charged == 1_000_000 - balance == 1_000_000 - ledger and charged > 0


def test_4_0_and_v2_generations_run_on_workers_with_their_uploads_and_assets_staged(start_server, fresh):
    """A /v2 remix's upload and a RESPONSE asset travel through storage to the worker (never in the
    message); the worker rebuilds the request from its record and relays it faithfully."""
    from conftest import png_bytes

    url = queue_url()
    ops = ["v2-generate-ideogram-4", "v2-remix-ideogram-4", "v4-generate"]
    srv = start_server("config", engine_config={"*": "relay"}, queue_url=url, heartbeat_s=0.2,
                       channels=[sim_channel("up", fresh[0], "ideogram", "bearer", operations=ops)])
    settings = load_settings(data_dir=srv.settings.data_dir, public_base_url=srv.settings.base_url,
                             **_shared(srv.settings))
    w = WorkerThread(settings, None).start()
    try:
        _account, key = funded_key(srv)
        headers = {"Api-Key": key}
        r = srv.client.post("/v2/image/remix/ideogram-4", headers=headers,
                            files={"image": ("in.png", png_bytes(64, 48), "image/png")},
                            data={"prompt": "as a watercolor", "image_weight": "30"})
        assert r.status_code == 200, r.text
        sent = fresh[0].api_requests()[-1].fields
        assert sent["image"]["size"] == "64x48" and sent["image_weight"] == 30 and sent["private"] is True
        asset = r.json()["data"][0]["asset_id"]
        again = srv.client.post("/v2/image/remix/ideogram-4", headers=headers, json={
            "prompt": "as a woodcut", "async": True,
            "image_asset_identifier": {"asset_id": asset, "asset_type": "RESPONSE"}})
        assert again.status_code == 200 and set(again.json()) == {"generation_id", "seed"}, again.text
        gid = again.json()["generation_id"]
        done = wait_until(lambda: (b := srv.client.get(f"/v2/generations/{gid}", headers=headers).json())
                          ["status"] != "pending" and b)
        assert done["status"] == "completed", done
        assert fresh[0].api_requests()[-1].fields["image"]["bytes"] > 0  # the asset went upstream as bytes
        assert all(rec.owner == w.worker.id for rec in records(srv))
    finally:
        w.stop()
