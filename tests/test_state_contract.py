"""One contract for shared state: every test here runs against the per-process backend and the
Redis backend (``MemoryLimiter``/``RedisLimiter``, ``MemoryChannelState``/``RedisChannelState``)
and expects the same answers, to the exact ``Retry-After`` and cooldown.

Time is a ``FakeClock`` injected into both (Redis then takes ``now`` from the script's
arguments instead of ``TIME``), so nothing sleeps. The Redis half needs
``IDEOHUB_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``): unreachable, it is skipped, or
fails when ``IDEOHUB_REQUIRE_SERVICES=1`` (as in CI). Each Redis test has its own key prefix.
What only Redis does (atomicity under concurrency, two processes sharing state, Redis down)
is in tests/test_redis_limits.py.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis

from ideohub.domain.errors import RateLimited
from ideohub.domain.operations import Operation
from ideohub.engines.relay.channels import Channel
from ideohub.engines.relay.redis_state import RedisChannelState
from ideohub.engines.relay.router import (
    BUSY_WAIT_S,
    ChannelStates,
    ChannelStatus,
    CooldownPolicy,
    MemoryChannelState,
    Outcome,
    Router,
)
from ideohub.gate.limits import Limiter, MemoryLimiter
from ideohub.gate.redis import RedisLimiter

REDIS_URL = os.environ.get("IDEOHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
OP = Operation.V3_GENERATE
POLICY = CooldownPolicy(base_s=5, max_s=60, auth_s=300)
LEASE_S = 60.0  # long enough that Redis's real-time TTLs never matter within a test
STATE_TTL_S = 600.0


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


_redis_checked: dict[str, str | None] = {}


def _require_redis() -> None:
    """Skip (or, with IDEOHUB_REQUIRE_SERVICES=1, fail) when Redis cannot be reached."""
    if REDIS_URL not in _redis_checked:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
            _redis_checked[REDIS_URL] = None
        except redis.RedisError as exc:
            _redis_checked[REDIS_URL] = f"Redis at {REDIS_URL} is unreachable ({exc.__class__.__name__}: {exc})"
        finally:
            client.close()
    message = _redis_checked[REDIS_URL]
    if message:
        if os.environ.get("IDEOHUB_REQUIRE_SERVICES") == "1":
            pytest.fail(message + "; IDEOHUB_REQUIRE_SERVICES=1 requires it")
        pytest.skip(message)


def _delete_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class Backend:
    """Builds limiters and channel states of one kind, all on one fake clock; closes them."""

    def __init__(self, kind: str, prefix: str) -> None:
        self.kind = kind
        self.prefix = prefix
        self.clock = FakeClock()
        self._made: list[Any] = []

    def limiter(self, lease_s: float = LEASE_S) -> Limiter:
        made: Limiter
        if self.kind == "memory":
            made = MemoryLimiter(lease_s=lease_s, clock=self.clock)
        else:
            made = RedisLimiter(REDIS_URL, lease_s=lease_s, prefix=self.prefix, clock=self.clock)
        self._made.append(made)
        return made

    def states(self, lease_s: float = LEASE_S, state_ttl_s: float = STATE_TTL_S) -> ChannelStates:
        made: ChannelStates
        if self.kind == "memory":
            made = MemoryChannelState(self.clock, lease_s=lease_s, state_ttl_s=state_ttl_s)
        else:
            made = RedisChannelState(REDIS_URL, lease_s=lease_s, state_ttl_s=state_ttl_s, prefix=self.prefix,
                                     clock=self.clock)
        self._made.append(made)
        return made

    def run(self, scenario: Callable[[], Awaitable[None]]) -> None:
        """Run one scenario in a fresh event loop and close what it built in the same loop."""

        async def go() -> None:
            try:
                await scenario()
            finally:
                for made in self._made:
                    await made.aclose()

        asyncio.run(go())


def _backend(kind: str) -> Iterator[Backend]:
    if kind == "memory":
        yield Backend(kind, "")
        return
    _require_redis()
    prefix = f"ideohub-test:{uuid.uuid4().hex[:12]}:"
    try:
        yield Backend(kind, prefix)
    finally:
        _delete_prefix(prefix)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield from _backend(request.param)


async def retry_after(call: Awaitable[None]) -> int | None:
    """None when the call passed, else the Retry-After of its 429."""
    try:
        await call
    except RateLimited as exc:
        assert exc.status == 429
        return exc.retry_after
    return None


# ---------------------------------------------------------------- requests per minute (GCRA)


def test_rpm_burst_then_429_with_retry_after_then_one_per_interval(backend: Backend):
    async def scenario() -> None:
        lim, clock = backend.limiter(), backend.clock
        assert [await retry_after(lim.hit("k", 5)) for _ in range(5)] == [None] * 5  # a burst of rpm
        assert await retry_after(lim.hit("k", 5)) == 12  # then one every 60/5 s
        clock.advance(11.5)
        assert await retry_after(lim.hit("k", 5)) == 1  # 0.5 s left, rounded up
        clock.advance(0.5)
        assert await retry_after(lim.hit("k", 5)) is None  # recovered after exactly the interval
        assert await retry_after(lim.hit("k", 5)) == 12
        clock.advance(60)
        assert [await retry_after(lim.hit("k", 5)) for _ in range(6)] == [None] * 5 + [12]  # a full minute: full burst

    backend.run(scenario)


def test_rpm_refused_requests_do_not_count_and_keys_are_separate(backend: Backend):
    async def scenario() -> None:
        lim, clock = backend.limiter(), backend.clock
        for _ in range(120):  # rpm 120: one every 0.5 s after the burst
            await lim.hit("k", 120)
        for _ in range(5):
            assert await retry_after(lim.hit("k", 120)) == 1
        clock.advance(0.5)
        assert await retry_after(lim.hit("k", 120)) is None  # the refusals did not push it back
        assert await retry_after(lim.hit("k", 120)) == 1
        assert await retry_after(lim.hit("other", 120)) is None
        assert await retry_after(lim.hit("slow", 1)) is None
        assert await retry_after(lim.hit("slow", 1)) == 60

    backend.run(scenario)


def test_asking_without_counting_answers_the_same_and_moves_nothing(backend: Backend):
    """``count=False`` (an admin token that is right still waits out a lockout its guesses earned)."""
    async def scenario() -> None:
        lim, clock = backend.limiter(), backend.clock
        for _ in range(50):
            assert await retry_after(lim.hit("k", 3, count=False)) is None  # asking never uses the burst
        assert [await retry_after(lim.hit("k", 3)) for _ in range(3)] == [None] * 3
        assert await retry_after(lim.hit("k", 3, count=False)) == 20  # locked: the same answer as a hit
        clock.advance(20)
        assert await retry_after(lim.hit("k", 3, count=False)) is None
        assert await retry_after(lim.hit("k", 3)) is None
        assert await retry_after(lim.hit("k", 3)) == 20

    backend.run(scenario)


def test_a_limit_over_any_period_bursts_then_spaces_requests(backend: Backend):
    """GCRA over an arbitrary window (polling: ``poll_limit`` per ``poll_window_s``): a burst of
    ``limit`` fits in one period, then one every ``period/limit`` seconds."""
    async def scenario() -> None:
        lim, clock = backend.limiter(), backend.clock
        assert [await retry_after(lim.hit("p", 4, 10.0)) for _ in range(5)] == [None] * 4 + [3]  # 2.5 s, rounded up
        clock.advance(2.0)
        assert await retry_after(lim.hit("p", 4, 10.0)) == 1  # 0.5 s left
        clock.advance(0.5)
        assert await retry_after(lim.hit("p", 4, 10.0)) is None
        assert await retry_after(lim.hit("p", 4, 10.0)) == 3
        clock.advance(10.0)  # a whole period: the whole burst again
        assert [await retry_after(lim.hit("p", 4, 10.0)) for _ in range(5)] == [None] * 4 + [3]
        with pytest.raises(RateLimited) as info:
            await lim.hit("p", 4, 10.0)
        assert info.value.detail == "this key is limited to 4 requests per 10 s"
        # the default period is still a minute (rpm), and other keys are untouched
        assert [await retry_after(lim.hit("m", 2)) for _ in range(3)] == [None, None, 30]
        with pytest.raises(RateLimited) as info:
            await lim.hit("m", 2)
        assert info.value.detail == "this key is limited to 2 requests per minute"

    backend.run(scenario)


def test_polling_sized_limit_1000_per_10_s(backend: Backend):
    async def scenario() -> None:
        lim, clock = backend.limiter(), backend.clock
        for _ in range(1000):
            await lim.hit("poll:acct", 1000, 10.0)
        assert await retry_after(lim.hit("poll:acct", 1000, 10.0)) == 1  # 10 ms, never under a second
        clock.advance(0.01)  # one interval: room for exactly one more
        assert await retry_after(lim.hit("poll:acct", 1000, 10.0)) is None
        assert await retry_after(lim.hit("poll:acct", 1000, 10.0)) == 1
        assert await retry_after(lim.hit("poll:other", 1000, 10.0)) is None

    backend.run(scenario)


# ---------------------------------------------------------------- images in flight


def test_images_in_flight_limit_and_release(backend: Backend):
    async def scenario() -> None:
        lim = backend.limiter()
        await lim.acquire_images("k", "req_a", 3, 4)
        with pytest.raises(RateLimited) as info:
            await lim.acquire_images("k", "req_b", 2, 4)
        assert info.value.status == 429 and info.value.retry_after == 1
        assert "3 are in flight" in info.value.detail and "asks for 2" in info.value.detail
        await lim.acquire_images("k", "req_c", 1, 4)  # exactly up to the limit
        await lim.acquire_images("other", "req_d", 4, 4)  # per key
        assert await retry_after(lim.acquire_images("k", "req_e", 1, 4)) == 1
        await lim.release_images("k", "req_a")
        await lim.acquire_images("k", "req_b", 2, 4)
        await lim.release_images("k", "req_a")  # releasing twice is harmless
        await lim.release_images("k", "never_taken")
        assert await retry_after(lim.acquire_images("k", "req_f", 2, 4)) == 1  # 3 still held (b, c)
        await lim.acquire_images("k", "req_f", 1, 4)

    backend.run(scenario)


def test_images_leases_expire_after_lease_s(backend: Backend):
    async def scenario() -> None:
        lim, clock = backend.limiter(lease_s=60), backend.clock
        await lim.acquire_images("k", "lost", 2, 4)  # never released (its holder crashed)
        clock.advance(30)
        await lim.acquire_images("k", "newer", 2, 4)
        assert await retry_after(lim.acquire_images("k", "x", 1, 4)) == 1
        clock.advance(29.5)
        assert await retry_after(lim.acquire_images("k", "x", 1, 4)) == 1  # 0.5 s before "lost" expires
        clock.advance(0.5)
        await lim.acquire_images("k", "x", 2, 4)  # "lost" no longer counts; "newer" still does
        assert await retry_after(lim.acquire_images("k", "y", 1, 4)) == 1
        clock.advance(30)
        await lim.acquire_images("k", "y", 2, 4)  # "newer" gone too

    backend.run(scenario)


# ---------------------------------------------------------------- channel slots


FRESH = ChannelStatus(in_flight=0, failures=0, cooldown_left_s=0.0, probing=False)


def test_channel_slots_max_in_flight_take_and_give_back(backend: Backend):
    async def scenario() -> None:
        st = backend.states()
        assert await st.status("a") == FRESH
        assert [await st.take("a", 2) for _ in range(2)] == [None, None]
        assert await st.take("a", 2) == BUSY_WAIT_S
        assert await st.status("a") == ChannelStatus(2, 0, 0.0, False)
        assert await st.take("b", 2) is None  # per channel
        assert await st.take("a", 3) is None  # the maximum is the caller's, per take
        await st.give_back("a", Outcome.OK, None, POLICY)
        assert (await st.status("a")).in_flight == 2
        assert await st.take("a", 3) is None
        for _ in range(3):
            await st.give_back("a", Outcome.OK, None, POLICY)
        await st.give_back("a", Outcome.OK, None, POLICY)  # more releases than takes: harmless
        assert await st.status("a") == FRESH
        assert (await st.status("b")).in_flight == 1

    backend.run(scenario)


def test_a_slot_that_is_never_given_back_expires_after_lease_s(backend: Backend):
    async def scenario() -> None:
        st, clock = backend.states(lease_s=60), backend.clock
        assert await st.take("a", 1) is None  # its holder crashes
        clock.advance(59.5)
        assert await st.take("a", 1) == BUSY_WAIT_S
        assert (await st.status("a")).in_flight == 1
        clock.advance(0.5)
        assert (await st.status("a")).in_flight == 0
        assert await st.take("a", 1) is None

    backend.run(scenario)


# ---------------------------------------------------------------- cooldowns and the breaker


async def fail_once(st: ChannelStates, name: str, outcome: Outcome = Outcome.FAILED,
                    retry: float | None = None) -> None:
    assert await st.take(name, 10) is None
    await st.give_back(name, outcome, retry, POLICY)


def test_cooldown_doubles_per_consecutive_failure_up_to_its_cap(backend: Backend):
    async def scenario() -> None:
        st, clock = backend.states(), backend.clock
        seen = []
        for _ in range(6):
            await fail_once(st, "a")
            status = await st.status("a")
            assert status.cooling and not status.probing and status.in_flight == 0
            seen.append((status.failures, status.cooldown_left_s))
            assert await st.take("a", 10) == status.cooldown_left_s  # cooling: wait for the rest
            clock.advance(status.cooldown_left_s)  # half-open again: the next take is the probe
        assert seen == [(1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0), (5, 60.0), (6, 60.0)]
        await fail_once(st, "b")  # other channels are untouched by a's history
        assert (await st.status("b")).cooldown_left_s == 5.0

    backend.run(scenario)


def test_cooldown_counts_down_and_ends_exactly(backend: Backend):
    async def scenario() -> None:
        st, clock = backend.states(), backend.clock
        await fail_once(st, "a")
        clock.advance(3.5)
        assert await st.take("a", 10) == 1.5
        assert (await st.status("a")).cooldown_left_s == 1.5
        clock.advance(1.5)
        assert await st.status("a") == ChannelStatus(0, 1, 0.0, False)  # half-open, nothing out yet

    backend.run(scenario)


@pytest.mark.parametrize(
    ("retry", "expected"),
    [(45.0, 45.0), (2.0, 5.0), (1000.0, 60.0), (math.inf, 60.0), (math.nan, 5.0), (0.0, 5.0), (-3.0, 5.0),
     (None, 5.0)],
)
def test_upstream_retry_after_longer_than_the_cooldown_wins_capped_at_max(backend: Backend, retry, expected):
    async def scenario() -> None:
        st = backend.states()
        await fail_once(st, "a", retry=retry)
        assert (await st.status("a")).cooldown_left_s == expected
        assert await st.take("a", 10) == expected

    backend.run(scenario)


def test_auth_failure_cools_for_the_auth_cooldown(backend: Backend):
    async def scenario() -> None:
        st, clock = backend.states(), backend.clock
        await fail_once(st, "a", Outcome.AUTH)
        assert await st.status("a") == ChannelStatus(0, 1, 300.0, False)  # not capped by max_s
        await fail_once(st, "b", Outcome.AUTH, retry=1000.0)  # a Retry-After (capped at max_s) is shorter
        assert (await st.status("b")).cooldown_left_s == 300.0
        clock.advance(300)
        assert await st.take("a", 10) is None  # the probe
        await st.give_back("a", Outcome.FAILED, None, POLICY)  # a plain failure after it: the doubling rule
        assert await st.status("a") == ChannelStatus(0, 2, 10.0, False)

    backend.run(scenario)


def test_half_open_lets_one_probe_through_and_a_failed_probe_reopens_longer(backend: Backend):
    async def scenario() -> None:
        st, clock = backend.states(), backend.clock
        await fail_once(st, "a")
        clock.advance(5)
        assert await st.take("a", 10) is None  # the probe
        assert await st.status("a") == ChannelStatus(1, 1, 0.0, True)
        assert await st.take("a", 10) == BUSY_WAIT_S  # only one at a time
        await st.give_back("a", Outcome.FAILED, 7.0, POLICY)  # the probe failed
        assert await st.status("a") == ChannelStatus(0, 2, 10.0, False)

    backend.run(scenario)


def test_a_successful_probe_closes_the_breaker(backend: Backend):
    async def scenario() -> None:
        st, clock = backend.states(), backend.clock
        await fail_once(st, "a")
        clock.advance(5)
        assert await st.take("a", 10) is None
        await st.give_back("a", Outcome.OK, None, POLICY)
        assert await st.status("a") == FRESH
        assert [await st.take("a", 10) for _ in range(3)] == [None] * 3  # closed: no probe limit
        await st.give_back("a", Outcome.FAILED, None, POLICY)
        assert (await st.status("a")).cooldown_left_s == 5.0  # counting starts afresh

    backend.run(scenario)


def test_a_probe_that_is_never_given_back_expires_after_lease_s(backend: Backend):
    async def scenario() -> None:
        st, clock = backend.states(lease_s=60), backend.clock
        await fail_once(st, "a")
        clock.advance(5)
        assert await st.take("a", 10) is None  # the probe; its holder crashes
        clock.advance(59.5)
        assert await st.take("a", 10) == BUSY_WAIT_S
        clock.advance(0.5)
        assert await st.status("a") == ChannelStatus(0, 1, 0.0, False)
        assert await st.take("a", 10) is None  # the next probe

    backend.run(scenario)


def test_a_quiet_breaker_is_forgotten_after_the_state_ttl(backend: Backend):
    async def scenario() -> None:
        st, clock = backend.states(state_ttl_s=STATE_TTL_S), backend.clock
        await fail_once(st, "a")
        clock.advance(5)
        assert await st.take("a", 10) is None
        await st.give_back("a", Outcome.FAILED, None, POLICY)  # 2 failures, 10 s
        clock.advance(10 + STATE_TTL_S - 0.5)
        assert (await st.status("a")).failures == 2  # still half-open
        clock.advance(0.5)
        assert await st.status("a") == FRESH
        await fail_once(st, "a")
        assert (await st.status("a")).cooldown_left_s == 5.0  # the count started again

    backend.run(scenario)


def test_an_outcome_given_back_without_a_slot_still_counts(backend: Backend):
    async def scenario() -> None:
        st = backend.states()
        await st.give_back("a", Outcome.FAILED, None, POLICY)
        assert await st.status("a") == ChannelStatus(0, 1, 5.0, False)

    backend.run(scenario)


# ---------------------------------------------------------------- the router over either state


def ch(name: str, priority: int = 0, max_in_flight: int = 10) -> Channel:
    return Channel(name=name, kind="relay", base_url=f"http://{name}", key="k", priority=priority,
                   max_in_flight=max_in_flight)


def test_router_skips_busy_and_cooling_channels_and_answers_429_with_the_shortest_wait(backend: Backend):
    async def scenario() -> None:
        r = Router(base_cooldown_s=5, max_cooldown_s=60, auth_cooldown_s=300, rng=random.Random(1),
                   states=backend.states())
        hi, lo = ch("hi", priority=9), ch("lo", priority=0, max_in_flight=1)
        assert await r.acquire([hi, lo], OP, None, set()) is hi
        await r.release(hi, Outcome.FAILED, retry_after=12)
        assert await r.acquire([hi, lo], OP, None, set()) is lo  # the top tier cools: the next one
        with pytest.raises(RateLimited) as info:  # lo is full (1 s), hi cools (12 s)
            await r.acquire([hi, lo], OP, None, set())
        assert info.value.retry_after == 1
        assert await r.acquire([hi, lo], OP, None, {"lo"}) is None  # after a try: the caller reports
        await r.release(lo, Outcome.AUTH)
        with pytest.raises(RateLimited) as info:
            await r.acquire([hi, lo], OP, None, set())
        assert info.value.retry_after == 12
        backend.clock.advance(12)
        assert await r.acquire([hi, lo], OP, None, set()) is hi  # hi's probe
        assert (await r.status("hi")).probing

    backend.run(scenario)


# ---------------------------------------------------------------- the two backends side by side


def _script(seed: int, steps: int) -> list[tuple]:
    rng = random.Random(seed)
    advances = [0.0, 0.0, 0.1, 0.25, 0.5, 1.0, 1 / 3, 3.0, 5.0, 8.6, 12.0, 30.0, 59.5, 60.0, 120.0, 700.0]
    return [(rng.random(), rng.choice(advances), rng.choice(["a", "b"]), rng.randrange(1, 5),
             rng.choice([1, 5, 7, 120]), rng.choice(list(Outcome)), rng.choice([None, 3.0, 45.0, 1e9, math.nan]))
            for _ in range(steps)]


def test_memory_and_redis_give_identical_answers_to_the_same_script():
    """A seeded random mix of every operation and clock step, run on both backends: every answer
    (Retry-After, waits, status, refusals) must be the same."""
    _require_redis()
    prefix = f"ideohub-test:{uuid.uuid4().hex[:12]}:"

    async def play(b: Backend) -> list[object]:
        lim, st = b.limiter(lease_s=60), b.states(lease_s=60, state_ttl_s=300)
        held: dict[str, list[str]] = {"a": [], "b": []}
        log: list[object] = []
        for i, (pick, advance, name, images, rpm, outcome, retry) in enumerate(_script(7, 600)):
            b.clock.advance(advance)
            if pick < 0.25:
                period = (60.0, 10.0, 2.5)[i % 3]  # one key per limit: the minute (rpm) and other periods
                log.append(("hit", await retry_after(lim.hit(f"{name}:{period:g}", rpm, period))))
            elif pick < 0.4:
                lease = f"r{i}"
                got = await retry_after(lim.acquire_images(name, lease, images, 6))
                if got is None:
                    held[name].append(lease)
                log.append(("acquire", got))
            elif pick < 0.5:
                if held[name]:
                    await lim.release_images(name, held[name].pop(0))
            elif pick < 0.75:
                log.append(("take", await st.take(name, 2)))
            elif pick < 0.95:
                await st.give_back(name, outcome, retry, POLICY)
            log.append(("status", name, await st.status(name)))
        return log

    logs: list[list[object]] = []
    for kind in ("memory", "redis"):
        b = Backend(kind, prefix)
        result: list[list[object]] = []

        async def collect(b: Backend = b, result: list[list[object]] = result) -> None:
            result.append(await play(b))

        try:
            b.run(collect)
        finally:
            if kind == "redis":
                _delete_prefix(prefix)
        logs.append(result[0])
    memory, shared = logs
    assert len(memory) == len(shared)
    for step, (m, s) in enumerate(zip(memory, shared)):
        assert m == s, f"step {step}: memory {m} != redis {s}"
    kinds = {entry[0] for entry in memory}  # the script did exercise everything
    assert {"hit", "acquire", "take", "status"} <= kinds
    assert any(e[0] == "status" and e[2].cooling for e in memory)
    assert any(e[0] == "status" and e[2].probing for e in memory)
    assert any(e[0] == "hit" and e[1] for e in memory) and any(e[0] == "take" and e[1] for e in memory)


def test_the_memory_limiter_forgets_keys_whose_time_has_passed():
    """Keys that come and go (client addresses on the sign-in limit) do not grow it without bound."""
    from ideohub.gate.limits import PRUNE_AT, MemoryLimiter

    now = [0.0]
    lim = MemoryLimiter(clock=lambda: now[0])

    async def scenario() -> None:
        for i in range(3 * PRUNE_AT):
            await lim.hit(f"client-{i}", 10)
            now[0] += 1.0  # each key's one hit has passed 6 s later
        assert len(lim._tat) <= PRUNE_AT + 1
        await lim.hit("client-last", 1)
        assert await retry_after(lim.hit("client-last", 1)) == 60  # live keys are kept

    asyncio.run(scenario())
