"""Routing: priority tiers, weights, no reuse of a tried channel, filters, and the cooldown
policy. The channel state the router reads (in-flight slots, cooldowns, half-open probes, 429
with Retry-After) is proven once for both backends in tests/test_state_contract.py."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from ideohub.domain.operations import Operation
from ideohub.engines.relay.channels import Channel
from ideohub.engines.relay.router import CooldownPolicy, MemoryChannelState, NoChannel, Outcome, Router

OP = Operation.V3_GENERATE


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def ch(name: str, priority: int = 0, weight: int = 1, max_in_flight: int = 10, **kw) -> Channel:
    return Channel(name=name, kind="relay", base_url=f"http://{name}", key="k", priority=priority, weight=weight,
                   max_in_flight=max_in_flight, **kw)


def router(clock: Clock | None = None) -> Router:
    return Router(base_cooldown_s=5, max_cooldown_s=60, auth_cooldown_s=300, clock=clock or Clock(),
                  rng=random.Random(1))


def test_higher_priority_first_then_weighted_within_tier():
    async def go() -> Counter:
        r = router()
        chans = [ch("low", priority=0), ch("a", priority=5, weight=3), ch("b", priority=5, weight=1)]
        picks: Counter = Counter()
        for _ in range(2000):
            c = await r.acquire(chans, OP, None, set())
            picks[c.name] += 1
            await r.release(c, Outcome.OK)
        return picks

    picks = asyncio.run(go())
    assert picks["low"] == 0
    assert 2.4 < picks["a"] / picks["b"] < 3.8


def test_weighted_choice_skips_busy_channels_in_the_tier():
    async def go() -> Counter:
        r = router()
        busy, a, b = ch("busy", weight=50, max_in_flight=1), ch("a", weight=3), ch("b", weight=1)
        assert await r.acquire([busy], OP, None, set()) is busy  # now full
        picks: Counter = Counter()
        for _ in range(2000):
            c = await r.acquire([busy, a, b], OP, None, set())
            picks[c.name] += 1
            await r.release(c, Outcome.OK)
        return picks

    picks = asyncio.run(go())
    assert picks["busy"] == 0
    assert 2.4 < picks["a"] / picks["b"] < 3.8


def test_retries_never_reuse_a_tried_channel_and_end_with_none():
    async def go() -> list[str]:
        r = router()
        chans = [ch("a"), ch("b"), ch("c")]
        tried: set[str] = set()
        order = []
        while (c := await r.acquire(chans, OP, None, tried)) is not None:
            order.append(c.name)
            tried.add(c.name)
            await r.release(c, Outcome.FAILED)
        return order

    assert sorted(asyncio.run(go())) == ["a", "b", "c"]


def test_falls_to_lower_tier_when_the_top_is_cooling():
    async def go() -> None:
        r = router()
        hi, lo = ch("hi", priority=9), ch("lo", priority=0)
        c = await r.acquire([hi, lo], OP, None, set())
        assert c is hi
        await r.release(c, Outcome.FAILED)
        assert await r.acquire([hi, lo], OP, None, set()) is lo

    asyncio.run(go())


def test_operation_and_model_filters_and_disabled():
    async def go() -> None:
        r = router()
        only_upscale = ch("u", operations=frozenset({Operation.UPSCALE}))
        turbo = ch("t", models=frozenset({"TURBO"}))
        off = ch("off", enabled=False)
        with pytest.raises(NoChannel):
            await r.acquire([only_upscale, off], OP, "DEFAULT", set())
        with pytest.raises(NoChannel):
            await r.acquire([turbo], OP, "QUALITY", set())
        assert await r.acquire([turbo], OP, "TURBO", set()) is turbo

    asyncio.run(go())


def test_cooldown_policy_caps_and_never_overflows():
    p = CooldownPolicy(base_s=5, max_s=60, auth_s=300)
    assert [p.cooldown(n, Outcome.FAILED, None) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 60]
    assert p.cooldown(5000, Outcome.FAILED, None) == 60
    assert p.cooldown(1, Outcome.FAILED, 1000) == 60  # Retry-After is capped too
    assert p.cooldown(1, Outcome.FAILED, float("inf")) == 60 and p.cooldown(1, Outcome.FAILED, float("nan")) == 5
    assert p.cooldown(1, Outcome.AUTH, None) == 300
    assert isinstance(router().states, MemoryChannelState)
