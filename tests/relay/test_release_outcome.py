"""``Outcome.RELEASED`` (our own error, the caller's cancellation, our deadline): the slot is freed
and a half-open probe ends, but failures and the cooldown stay as they were, in both the
per-process and the Redis channel state."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from ideohub.engines.relay.router import CooldownPolicy, MemoryChannelState, Outcome

POLICY = CooldownPolicy(base_s=5, max_s=60, auth_s=300)
REDIS_URL = os.environ.get("IDEOHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def make(kind: str, clock: Clock):  # type: ignore[no-untyped-def]
    if kind == "memory":
        return MemoryChannelState(clock)
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("IDEOHUB_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is required but unreachable: {exc}")
        pytest.skip(f"Redis unreachable at {REDIS_URL}")
    from ideohub.engines.relay.redis_state import RedisChannelState

    return RedisChannelState(REDIS_URL, prefix=f"ideohub-test:{uuid.uuid4().hex[:12]}:", clock=clock)


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_released_frees_the_slot_and_changes_no_verdict(kind):
    clock = Clock()

    async def go() -> None:
        st = make(kind, clock)
        try:
            assert await st.take("c", 1) is None
            await st.give_back("c", Outcome.RELEASED, None, POLICY)
            s = await st.status("c")
            assert (s.in_flight, s.failures, s.cooling) == (0, 0, False)
            # a failing channel: RELEASED neither counts another failure nor closes the breaker
            assert await st.take("c", 1) is None
            await st.give_back("c", Outcome.FAILED, None, POLICY)
            clock.t += 6  # cooldown over: half-open, the next slot is the probe
            assert await st.take("c", 1) is None
            assert (await st.status("c")).probing
            await st.give_back("c", Outcome.RELEASED, None, POLICY)
            s = await st.status("c")
            assert (s.in_flight, s.failures, s.cooling, s.probing) == (0, 1, False, False)
            assert await st.take("c", 1) is None  # the probe is free to be sent again
            await st.give_back("c", Outcome.OK, None, POLICY)
            assert (await st.status("c")).failures == 0
        finally:
            await st.aclose()

    asyncio.run(go())
