"""Channel health and the probe, through the management layer on real components: the stored
health (shared by every instance) and the live state in Redis (what a fleet's API instance,
which runs no relay itself, reads), and the probe's verdicts without a secret or a credential."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from conftest import free_port

from ideohub.config import load_settings
from ideohub.engines.relay.router import CooldownPolicy, Outcome
from ideohub.manage import Manager
from ideohub.store import db
from ideohub.store.repository import Repository
from ideohub.store.secrets import open_secrets

REDIS_URL = os.environ.get("IDEOHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
KEY = "upstream-secret-" + "z" * 20


def with_manager(tmp_path, fn, **overrides: Any):  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path / "data", **overrides)
    db.upgrade(settings.db_url)

    async def go():  # type: ignore[no-untyped-def]
        engine = db.create_engine_async(settings.db_url)
        try:
            secrets = await open_secrets(settings, engine)
            return await fn(Manager(settings, Repository(engine, secrets.key_pepper), channel_key=secrets.channel_key))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_health_reads_the_stored_state_and_the_shared_live_state(tmp_path):
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("IDEOHUB_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis at {REDIS_URL} is unreachable: {exc}")
        pytest.skip("Redis unreachable")
    busy, hot = f"busy-{uuid.uuid4().hex[:8]}", f"hot-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)

    async def go(m: Manager) -> dict[str, dict[str, Any]]:
        channels = m.channels()
        for name in (busy, hot, "tired", "off"):
            await channels.add({"name": name, "base_url": "https://user:hunter2@relay.example", "key": KEY})
        await channels.store.record_failure("tired", 2, now - timedelta(minutes=1), "upstream answered 503")
        await channels.set_enabled("off", False)
        shared = await m.shared_live_state()  # no relay engine in this process: Redis holds the live state
        assert shared is not None
        try:
            assert await shared.take(busy, 10) is None and await shared.take(busy, 10) is None
            assert await shared.take(hot, 10) is None
            await shared.give_back(hot, Outcome.FAILED, 30.0, CooldownPolicy())
            return {v["name"]: v for v in await m.channels(live=shared).views()}
        finally:
            await shared.aclose()

    try:
        views = with_manager(tmp_path, go, redis_url=REDIS_URL)
    finally:
        for name in (busy, hot):
            keys = list(client.scan_iter(match=f"ideohub:ch:{{{name}}}*"))
            if keys:
                client.delete(*keys)
        client.close()
    assert views[busy]["health"]["in_flight"] == 2 and views[busy]["health"]["state"] == "ok"
    h = views[hot]["health"]
    assert h["state"] == "cooling" and h["consecutive_failures"] == 1
    assert timedelta(seconds=20) < h["cooling_until"] - now < timedelta(seconds=40)
    tired = views["tired"]["health"]
    assert (tired["state"], tired["consecutive_failures"], tired["last_error"]) == ("failing", 2, "upstream answered 503")
    assert views["off"]["health"]["state"] == "disabled"
    for v in views.values():
        assert v["base_url"] == "https://***@relay.example" and KEY not in repr(v) and "hunter2" not in repr(v)
        assert v["operations_text"] == "legacy,3.0" and v["source"] == "cli"


def test_the_probe_says_unreachable_or_unexpected_without_credentials(tmp_path, start_server):
    srv = start_server()  # answers 404 on a path that is not ours: "unexpected"
    dead = free_port()

    async def go(m: Manager) -> list[Any]:
        channels = m.channels()
        await channels.add({"name": "dead", "base_url": f"http://127.0.0.1:{dead}", "key": KEY, "connect_timeout_s": 2})
        await channels.add({"name": "odd", "base_url": f"http://user:hunter2@127.0.0.1:{srv.settings.port}/x",
                            "key": KEY})
        # an edit that sends back the listing's masked URL keeps the stored credentials
        masked = (await channels.view("odd"))["base_url"]
        assert masked == f"http://***@127.0.0.1:{srv.settings.port}/x"
        await channels.update("odd", {"base_url": masked, "weight": 2})
        kept = await channels.get("odd")
        assert kept.base_url == f"http://user:hunter2@127.0.0.1:{srv.settings.port}/x" and kept.weight == 2
        return [await channels.test("dead"), await channels.test("odd")]

    dead_result, odd_result = with_manager(tmp_path, go)
    assert (dead_result.ok, dead_result.status_code, dead_result.verdict) == (False, None, "unreachable")
    assert "ConnectError" in dead_result.detail
    assert (odd_result.ok, odd_result.status_code, odd_result.verdict) == (False, 404, "unexpected")
    assert "http://***@127.0.0.1" in odd_result.detail
    for r in (dead_result, odd_result):
        assert KEY not in repr(r) and "hunter2" not in repr(r)
