"""Routing: priority tiers, weights, no reuse of a tried channel, cooldown with half-open
probing, in-flight limits and 429 when everything is busy."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ideohub.domain.errors import RateLimited
from ideohub.domain.operations import Operation
from ideohub.engines.relay.channels import Channel
from ideohub.engines.relay.router import NoChannel, Outcome, Router

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
    r = router()
    chans = [ch("low", priority=0), ch("a", priority=5, weight=3), ch("b", priority=5, weight=1)]
    picks = Counter()
    for _ in range(2000):
        c = r.acquire(chans, OP, None, set())
        picks[c.name] += 1
        r.release(c, Outcome.OK)
    assert picks["low"] == 0
    assert 2.4 < picks["a"] / picks["b"] < 3.8


def test_retries_never_reuse_a_tried_channel_and_end_with_none():
    r = router()
    chans = [ch("a"), ch("b"), ch("c")]
    tried: set[str] = set()
    order = []
    while (c := r.acquire(chans, OP, None, tried)) is not None:
        order.append(c.name)
        tried.add(c.name)
        r.release(c, Outcome.FAILED)
    assert sorted(order) == ["a", "b", "c"]


def test_cooldown_doubles_honours_retry_after_and_recovers_through_one_probe():
    clock = Clock()
    r = router(clock)
    a = ch("a")
    c = r.acquire([a], OP, None, set())
    r.release(c, Outcome.FAILED)
    assert r.cooling("a")
    with pytest.raises(RateLimited) as info:
        r.acquire([a], OP, None, set())
    assert info.value.retry_after == 5
    clock.t += 5.1
    probe = r.acquire([a], OP, None, set())  # half-open: one probe goes through
    with pytest.raises(RateLimited):
        r.acquire([a], OP, None, set())  # ...and only one
    r.release(probe, Outcome.FAILED)
    assert r.state("a").open_until - clock.t == pytest.approx(10)  # doubled
    clock.t += 10.1
    probe = r.acquire([a], OP, None, set())
    r.release(probe, Outcome.OK)
    assert not r.cooling("a") and r.state("a").failures == 0
    c = r.acquire([a], OP, None, set())
    r.release(c, Outcome.FAILED, retry_after=42)
    assert r.state("a").open_until - clock.t == pytest.approx(42)
    c2 = ch("b")
    got = r.acquire([c2], OP, None, set())
    r.release(got, Outcome.AUTH)
    assert r.state("b").open_until - clock.t == pytest.approx(300)


def test_in_flight_limit_then_429():
    r = router()
    a = ch("a", max_in_flight=2)
    held = [r.acquire([a], OP, None, set()) for _ in range(2)]
    with pytest.raises(RateLimited) as info:
        r.acquire([a], OP, None, set())
    assert info.value.status == 429 and info.value.retry_after >= 1
    r.release(held[0], Outcome.OK)
    assert r.acquire([a], OP, None, set()) is a


def test_falls_to_lower_tier_when_the_top_is_cooling():
    r = router()
    hi, lo = ch("hi", priority=9), ch("lo", priority=0)
    c = r.acquire([hi, lo], OP, None, set())
    assert c is hi
    r.release(c, Outcome.FAILED)
    assert r.acquire([hi, lo], OP, None, set()) is lo


def test_operation_and_model_filters_and_disabled():
    r = router()
    only_upscale = ch("u", operations=frozenset({Operation.UPSCALE}))
    turbo = ch("t", models=frozenset({"TURBO"}))
    off = ch("off", enabled=False)
    with pytest.raises(NoChannel):
        r.acquire([only_upscale, off], OP, "DEFAULT", set())
    with pytest.raises(NoChannel):
        r.acquire([turbo], OP, "QUALITY", set())
    assert r.acquire([turbo], OP, "TURBO", set()) is turbo
