"""What only the Redis backends do, through a real Redis (``IDEOHUB_TEST_REDIS_URL``, default
``redis://127.0.0.1:6379/0``): state shared by two limiters or routers as two processes would
use them, atomic check-and-take under concurrency, the default clock (Redis ``TIME``), Redis
being down, and two real server processes whose per-key rate limit holds across both. The
behaviour both backends share is in tests/test_state_contract.py.

Without a reachable Redis these tests are skipped, or fail when ``IDEOHUB_REQUIRE_SERVICES=1``
(as in CI)."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from conftest import free_port

from ideohub.config import Secrets, load_settings
from ideohub.domain.errors import RateLimited
from ideohub.domain.operations import Operation
from ideohub.engines.relay.channels import Channel
from ideohub.engines.relay.redis_state import RedisChannelState
from ideohub.engines.relay.router import Outcome, Router
from ideohub.gate.redis import RedisLimiter, SharedStateUnavailable
from ideohub.store import db
from ideohub.store.repository import Repository

REDIS_URL = os.environ.get("IDEOHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
OP = Operation.V3_GENERATE


def _delete_matching(pattern: str) -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=pattern, count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        message = f"Redis at {REDIS_URL} is unreachable ({exc.__class__.__name__}: {exc})"
        if os.environ.get("IDEOHUB_REQUIRE_SERVICES") == "1":
            pytest.fail(message + "; IDEOHUB_REQUIRE_SERVICES=1 requires it")
        pytest.skip(message)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; everything under it is deleted afterwards."""
    p = f"ideohub-test:{uuid.uuid4().hex[:12]}:"
    yield p
    _delete_matching(p + "*")


def ch(name: str, max_in_flight: int = 10, **kw) -> Channel:
    return Channel(name=name, kind="relay", base_url=f"http://{name}", key="k", max_in_flight=max_in_flight, **kw)


class FakeClock:
    """Time shared by the "processes" of a test, moved on instead of slept through."""

    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def shared_router(url: str, prefix: str, lease_s: float = 60.0, clock: FakeClock | None = None, **kw) -> Router:
    """A router as one server process would build it (its own Redis connection)."""
    states = RedisChannelState(url, prefix=prefix, lease_s=lease_s, clock=clock)
    return Router(rng=random.Random(), states=states, **kw)


# ---------------------------------------------------------------- RedisLimiter


def test_gcra_allows_rpm_then_429_with_retry_after_across_limiters(redis_url, prefix):
    async def go() -> None:
        one, two = (RedisLimiter(redis_url, lease_s=60, prefix=prefix) for _ in range(2))
        try:
            for i in range(5):  # alternating between two "processes"
                await (one if i % 2 else two).hit("key_a", 5)
            with pytest.raises(RateLimited) as info:
                await one.hit("key_a", 5)
            assert info.value.status == 429 and 1 <= info.value.retry_after <= 12  # one every 60/5 s
            with pytest.raises(RateLimited):
                await two.hit("key_a", 5)
            await one.hit("key_b", 5)  # other keys are untouched
            ttl = await one.redis.pttl(prefix + "rpm:key_a")
            assert 0 < ttl <= 61_000  # the state disappears once it no longer matters
        finally:
            await one.aclose()
            await two.aclose()

    asyncio.run(go())


def test_default_clock_is_redis_time_not_the_process_clock(redis_url, prefix):
    """Without an injected clock the scripts read Redis ``TIME`` (so processes with skewed clocks
    agree): the stored arrival time is on Redis's scale, not this process's monotonic clock."""

    async def go() -> None:
        limiter = RedisLimiter(redis_url, prefix=prefix)
        try:
            before = await limiter.redis.time()
            await limiter.hit("k", 1)  # TAT = now + 60
            after = await limiter.redis.time()
            tat = float(await limiter.redis.get(prefix + "rpm:k"))
            assert before[0] + before[1] / 1e6 <= tat - 60 <= after[0] + after[1] / 1e6
        finally:
            await limiter.aclose()

    asyncio.run(go())


def test_images_in_flight_are_shared_by_two_limiters(redis_url, prefix):
    async def go() -> None:
        one, two = RedisLimiter(redis_url, prefix=prefix), RedisLimiter(redis_url, prefix=prefix)
        try:
            await one.acquire_images("k", "req_a", 3, 4)
            with pytest.raises(RateLimited) as info:
                await two.acquire_images("k", "req_b", 2, 4)
            assert info.value.status == 429 and info.value.retry_after == 1
            assert "3 are in flight" in info.value.detail and "asks for 2" in info.value.detail
            await two.acquire_images("k", "req_c", 1, 4)  # exactly up to the limit
            await two.acquire_images("other", "req_d", 4, 4)  # per key
            await one.release_images("k", "req_a")
            await two.acquire_images("k", "req_b", 2, 4)
            await one.release_images("k", "req_a")  # releasing twice is harmless
            members = await one.redis.zrange(prefix + "img:k", 0, -1)
            assert sorted(members) == ["1:req_c", "2:req_b"]
        finally:
            await one.aclose()
            await two.aclose()

    asyncio.run(go())


def test_a_crashed_process_lease_expires(redis_url, prefix):
    async def go() -> None:
        clock = FakeClock()
        crashed = RedisLimiter(redis_url, lease_s=60, prefix=prefix, clock=clock)
        await crashed.acquire_images("k", "req_lost", 4, 4)
        await crashed.aclose()  # never released
        alive = RedisLimiter(redis_url, lease_s=60, prefix=prefix, clock=clock)
        try:
            with pytest.raises(RateLimited):
                await alive.acquire_images("k", "req_new", 1, 4)
            clock.t += 60
            await alive.acquire_images("k", "req_new", 4, 4)
        finally:
            await alive.aclose()

    asyncio.run(go())


def test_unreachable_redis_is_a_503_never_a_silent_allow():
    async def go() -> None:
        url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
        limiter = RedisLimiter(url)
        router = Router(states=RedisChannelState(url))
        try:
            with pytest.raises(SharedStateUnavailable) as info:
                await limiter.hit("k", 5)
            assert info.value.status == 503 and info.value.retry_after >= 1
            assert "127.0.0.1" not in info.value.detail
            with pytest.raises(SharedStateUnavailable):
                await limiter.acquire_images("k", "r", 1, 4)
            await limiter.release_images("k", "r")  # logged; the lease would expire by itself
            with pytest.raises(SharedStateUnavailable) as info:
                await router.acquire([ch("a")], OP, None, set())
            assert info.value.status == 503
            await router.release(ch("a"), Outcome.OK)  # logged, never raised from a release
        finally:
            await limiter.aclose()
            await router.aclose()

    asyncio.run(asyncio.wait_for(go(), 60))  # a hang guard only: the client gives up after ~2 s


def test_server_answers_503_with_retry_after_when_redis_is_down(start_server):
    srv = start_server(redis_url=f"redis://127.0.0.1:{free_port()}/0", default_rpm=5)
    r = srv.post("/v1/ideogram-v3/generate", json={"prompt": "x"})
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
    assert "Redis" in r.json()["detail"]


# ---------------------------------------------------------------- RedisChannelState


def test_in_flight_maximum_is_shared_by_two_routers(redis_url, prefix):
    async def go() -> None:
        one, two = shared_router(redis_url, prefix), shared_router(redis_url, prefix)
        a = ch("a", max_in_flight=2)
        try:
            assert await one.acquire([a], OP, None, set()) is a
            assert await two.acquire([a], OP, None, set()) is a
            assert (await one.status("a")).in_flight == 2
            with pytest.raises(RateLimited) as info:
                await one.acquire([a], OP, None, set())
            assert info.value.status == 429 and info.value.retry_after >= 1
            await two.release(a, Outcome.OK)
            assert await one.acquire([a], OP, None, set()) is a
            await one.release(a, Outcome.OK)
            await one.release(a, Outcome.OK)
            assert (await two.status("a")).in_flight == 0
        finally:
            await one.aclose()
            await two.aclose()

    asyncio.run(go())


def test_concurrent_takes_never_exceed_the_maximum(redis_url, prefix):
    async def go() -> None:
        routers = [shared_router(redis_url, prefix) for _ in range(2)]
        a = ch("a", max_in_flight=3)

        async def one(i: int) -> bool:
            try:
                await routers[i % 2].acquire([a], OP, None, set())
                return True
            except RateLimited:
                return False

        try:
            results = await asyncio.gather(*(one(i) for i in range(40)))
            assert sum(results) == 3
            assert (await routers[0].status("a")).in_flight == 3
        finally:
            for r in routers:
                await r.aclose()

    asyncio.run(go())


def test_cooldown_opened_by_one_router_is_seen_by_the_other(redis_url, prefix):
    async def go() -> None:
        clock = FakeClock()
        one = shared_router(redis_url, prefix, clock=clock, base_cooldown_s=30, max_cooldown_s=60, auth_cooldown_s=300)
        two = shared_router(redis_url, prefix, clock=clock, base_cooldown_s=30, max_cooldown_s=60, auth_cooldown_s=300)
        a, b, lo = ch("a", priority=5), ch("b", priority=5), ch("lo", priority=0)
        try:
            c = await one.acquire([a], OP, None, set())
            await one.release(c, Outcome.FAILED)
            assert await two.cooling("a")
            status = await two.status("a")
            assert status.failures == 1 and status.cooldown_left_s == 30
            with pytest.raises(RateLimited) as info:
                await two.acquire([a], OP, None, set())
            assert info.value.retry_after == 30
            # a cooling channel is skipped: the same tier first, then lower tiers
            assert await two.acquire([a, b, lo], OP, None, set()) is b
            await two.release(b, Outcome.AUTH)
            assert (await one.status("b")).cooldown_left_s == 300
            assert await one.acquire([a, b, lo], OP, None, set()) is lo
            await one.release(lo, Outcome.FAILED, retry_after=45)  # the upstream's Retry-After wins
            assert (await two.status("lo")).cooldown_left_s == 45
            assert await two.acquire([a, b, lo], OP, None, {"x"}) is None  # all cooling after a try: caller reports
            clock.t += 30
            assert await two.acquire([a], OP, None, set()) is a  # the probe, seen as out by the other
            assert (await one.status("a")).probing
        finally:
            await one.aclose()
            await two.aclose()

    asyncio.run(go())


def test_only_one_half_open_probe_across_routers(redis_url, prefix):
    async def go() -> None:
        clock = FakeClock()
        one = shared_router(redis_url, prefix, clock=clock, base_cooldown_s=5, max_cooldown_s=60)
        two = shared_router(redis_url, prefix, clock=clock, base_cooldown_s=5, max_cooldown_s=60)
        a = ch("a")
        try:
            await one.release(await one.acquire([a], OP, None, set()), Outcome.FAILED)
            clock.t += 5
            assert not await two.cooling("a")
            # both routers race for the probe: exactly one gets it
            got = await asyncio.gather(*(r.acquire([a], OP, None, set()) for r in (one, two)),
                                       return_exceptions=True)
            winners = [r for r, g in zip((one, two), got) if g is a]
            assert len(winners) == 1 and isinstance(next(g for g in got if g is not a), RateLimited)
            prober, other = winners[0], (two if winners[0] is one else one)
            assert (await other.status("a")).probing
            with pytest.raises(RateLimited):
                await other.acquire([a], OP, None, set())
            await prober.release(a, Outcome.FAILED)  # the probe failed: open again, twice as long
            status = await other.status("a")
            assert status.failures == 2 and not status.probing and status.cooldown_left_s == 10
            clock.t += 10
            assert await other.acquire([a], OP, None, set()) is a  # the next probe
            await other.release(a, Outcome.OK)  # closes the breaker for everyone
            status = await prober.status("a")
            assert (status.failures, status.in_flight, status.probing, status.cooling) == (0, 0, False, False)
            held = [await prober.acquire([a], OP, None, set()) for _ in range(3)]  # closed: no probe limit
            assert held == [a, a, a]
        finally:
            await one.aclose()
            await two.aclose()

    asyncio.run(go())


def test_a_crashed_process_slot_and_probe_expire(redis_url, prefix):
    async def go() -> None:
        clock = FakeClock()
        crashed = shared_router(redis_url, prefix, lease_s=60, clock=clock, base_cooldown_s=5)
        a = ch("a", max_in_flight=1)
        await crashed.release(await crashed.acquire([a], OP, None, set()), Outcome.FAILED)
        clock.t += 5
        await crashed.acquire([a], OP, None, set())  # takes the only slot and the probe, then dies
        await crashed.aclose()
        alive = shared_router(redis_url, prefix, lease_s=60, clock=clock, base_cooldown_s=5)
        try:
            with pytest.raises(RateLimited):
                await alive.acquire([a], OP, None, set())
            clock.t += 60
            assert await alive.acquire([a], OP, None, set()) is a
        finally:
            await alive.aclose()

    asyncio.run(go())


# ---------------------------------------------------------------- two server processes


def _wait_ready(proc: subprocess.Popen, base_url: str, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling a real subprocess that is starting: there is no event to wait on
    pytest.fail(f"server at {base_url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def test_rpm_holds_across_two_server_processes(redis_url, tmp_path):
    data = tmp_path / "data"
    settings = load_settings(data_dir=data)
    db.upgrade(settings.db_url)  # once, before either server starts: they share the SQLite file
    secrets = Secrets.load(settings)

    async def create_key() -> tuple[str, str]:
        repo = Repository.connect(settings.db_url, secrets.key_pepper)
        try:
            row, plaintext = await repo.create_key("shared", rpm=5)
            return row.id, plaintext
        finally:
            await repo.close()

    key_id, key = asyncio.run(create_key())
    env = {**os.environ, "IDEOHUB_REDIS_URL": redis_url, "HF_HUB_OFFLINE": "1"}
    env.pop("IDEOHUB_DATA_DIR", None)
    servers: list[tuple[subprocess.Popen, str, Path]] = []
    try:
        for _ in range(2):
            port = free_port()
            log = tmp_path / f"server-{port}.log"
            with log.open("w") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "ideohub.cli", "serve", "--port", str(port), "--data-dir", str(data)],
                    env=env, stdout=out, stderr=subprocess.STDOUT,
                )
            servers.append((proc, f"http://127.0.0.1:{port}", log))
        for proc, base_url, log in servers:
            _wait_ready(proc, base_url, log)

        answers: list[tuple[int, int, httpx.Response]] = []  # (server index, request index, response)
        for i in range(12):
            _proc, base_url, _log = servers[i % 2]
            r = httpx.post(f"{base_url}/v1/ideogram-v3/generate", json={"prompt": "a lighthouse"},
                           headers={"Api-Key": key}, timeout=30)
            answers.append((i % 2, i, r))
        passed = [(s, r) for s, _i, r in answers if r.status_code != 429]
        limited = [(s, r) for s, _i, r in answers if r.status_code == 429]
        assert len(passed) == 5, [(s, i, r.status_code, r.text[:200]) for s, i, r in answers]
        for _s, r in passed:  # through the limiter; no upstream channel is configured
            assert r.status_code == 503 and "channel" in r.text, r.text
        assert len(limited) == 7
        for _s, r in limited:
            assert int(r.headers["retry-after"]) >= 1
        # the first five pass, alternating servers; after them both servers refuse: each let fewer
        # than 5 through itself, so only the shared state can have stopped it
        assert [i for _s, i, r in answers if r.status_code != 429] == [0, 1, 2, 3, 4]
        assert {s for s, _r in limited} == {0, 1}
    finally:
        for proc, _base_url, _log in servers:
            proc.terminate()
        for proc, _base_url, _log in servers:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        _delete_matching(f"ideohub:rpm:{key_id}")
        _delete_matching(f"ideohub:img:{key_id}")
