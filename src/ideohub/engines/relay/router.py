"""Choosing a channel for each attempt.

Priority tiers, highest first; weighted random within a tier. A retry never reuses a channel
already tried for the request. A failing channel is cooled down for a time that doubles with
each consecutive failure (or the upstream's ``Retry-After``, whichever is longer); when the
time is up it is half-open: one probe request may go through, and its outcome closes the
breaker or opens it again. Per-channel in-flight limits are respected.

The choice is made here; the state it reads and changes (in-flight slots, failures, cooldown
deadline, the half-open probe) sits behind ``ChannelStates``: ``MemoryChannelState`` for one
process, ``RedisChannelState`` (``relay.redis_state``) shared by every process on one Redis.
Taking a slot is one atomic check-and-take, so two processes can never both take the last slot
or both send the half-open probe.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from ...domain.errors import RateLimited
from ...domain.operations import Operation
from .channels import Channel


class Outcome(StrEnum):
    OK = "ok"  # includes the upstream rejecting the caller's input: the channel itself is fine
    FAILED = "failed"  # 429, 5xx, timeout, connection error, malformed response
    AUTH = "auth"  # 401/403/402 from the upstream: the channel's key is bad or out of credit
    RELEASED = "released"  # no verdict: our own error, the caller's cancellation, our deadline


BUSY_WAIT_S = 1.0  # the Retry-After for a channel at its in-flight limit or with a probe out


@dataclass(frozen=True)
class CooldownPolicy:
    base_s: float = 5.0
    max_s: float = 300.0
    auth_s: float = 300.0

    def retry_floor(self, retry_after: float | None) -> float:
        """The upstream's Retry-After as a lower bound of the cooldown, capped at ``max_s``;
        0 when it is absent, not positive or not a number."""
        if retry_after is None or not retry_after > 0:  # also NaN
            return 0.0
        return min(float(retry_after), self.max_s)

    def cooldown(self, failures: int, outcome: Outcome, retry_after: float | None) -> float:
        """How long a channel cools down after its ``failures``-th consecutive failure (the
        Redis state computes the same in Lua; the contract suite holds them equal)."""
        if outcome is Outcome.AUTH:
            cooldown = self.auth_s
        else:
            cooldown = min(self.max_s, self.base_s * 2.0 ** min(failures - 1, 64))
        return max(cooldown, self.retry_floor(retry_after))


@dataclass(frozen=True)
class ChannelStatus:
    """A backend-neutral view of one channel's state (for tests, listings and metrics)."""

    in_flight: int
    failures: int
    cooldown_left_s: float  # 0 when not cooling
    probing: bool

    @property
    def cooling(self) -> bool:
        return self.cooldown_left_s > 0


class ChannelStates(Protocol):
    """Both backends behave identically (tests/test_state_contract.py): a slot (and a probe) is a
    lease that stops counting ``lease_s`` after it was taken, so a crashed holder cannot block a
    channel for ever; a breaker that stays quiet for ``state_ttl_s`` after its cooldown ends is
    forgotten (closed, failures 0)."""

    async def take(self, name: str, max_in_flight: int) -> float | None:
        """Atomically take an in-flight slot of ``name`` if it is below ``max_in_flight``, not
        cooling, and (when half-open) no probe is out; the slot is then the probe. None when
        taken, else the seconds to wait (cooldown left, or ``BUSY_WAIT_S``)."""
        ...

    async def give_back(self, name: str, outcome: Outcome, retry_after: float | None, policy: CooldownPolicy) -> None:
        """Free one slot taken by this process and record the outcome: OK closes the breaker,
        a failure counts and (re)opens it for ``policy.cooldown(...)``; any release ends a probe."""
        ...

    async def status(self, name: str) -> ChannelStatus: ...

    async def aclose(self) -> None: ...


@dataclass
class ChannelState:
    slots: dict[str, float] = field(default_factory=dict)  # slot token → lease expiry
    failures: int = 0  # consecutive
    open_until: float = 0.0  # cooldown deadline
    probe_until: float = 0.0  # the half-open probe is out until then

    def cooling(self, now: float) -> bool:
        return now < self.open_until

    def probing(self, now: float) -> bool:
        return self.probe_until > now


class MemoryChannelState:
    """Per-process state (no awaits inside, so each operation is atomic on the event loop); the
    same rules as ``RedisChannelState``, step for step."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, lease_s: float = 900.0, state_ttl_s: float = 86400.0
    ) -> None:
        self.clock = clock
        self.lease_s = lease_s
        self.state_ttl_s = state_ttl_s
        self.states: dict[str, ChannelState] = {}
        self._held: dict[str, list[str]] = {}  # tokens of the slots taken, per channel
        self._tokens = 0

    def state(self, name: str, now: float | None = None) -> ChannelState:
        """The channel's state at ``now``: expired slots dropped, a long-quiet breaker forgotten."""
        now = self.clock() if now is None else now
        st = self.states.setdefault(name, ChannelState())
        if st.failures > 0 and now >= st.open_until + self.state_ttl_s:
            st.failures, st.open_until, st.probe_until = 0, 0.0, 0.0
        st.slots = {token: expiry for token, expiry in st.slots.items() if expiry > now}
        return st

    async def take(self, name: str, max_in_flight: int) -> float | None:
        now = self.clock()
        st = self.state(name, now)
        if st.cooling(now):
            return st.open_until - now
        half_open = st.failures > 0
        if len(st.slots) >= max_in_flight or (half_open and st.probing(now)):
            return BUSY_WAIT_S
        self._tokens += 1
        token = str(self._tokens)
        st.slots[token] = now + self.lease_s
        self._held.setdefault(name, []).append(token)
        if half_open:
            st.probe_until = now + self.lease_s
        return None

    async def give_back(self, name: str, outcome: Outcome, retry_after: float | None, policy: CooldownPolicy) -> None:
        now = self.clock()
        st = self.state(name, now)
        held = self._held.get(name)
        if held:
            st.slots.pop(held.pop(), None)
        st.probe_until = 0.0
        if Outcome(outcome) is Outcome.RELEASED:  # the slot is free; failures and cooldown stay as they were
            return
        if Outcome(outcome) is Outcome.OK:
            st.failures, st.open_until = 0, 0.0
            return
        st.failures += 1
        st.open_until = now + policy.cooldown(st.failures, Outcome(outcome), retry_after)

    async def status(self, name: str) -> ChannelStatus:
        now = self.clock()
        st = self.state(name, now)
        left = st.open_until - now if st.cooling(now) else 0.0
        return ChannelStatus(len(st.slots), st.failures, left, st.probing(now))

    async def aclose(self) -> None:
        return None


class NoChannel(Exception):
    """No channel serves this operation at all (→ 503 from the engine)."""


class Router:
    def __init__(
        self,
        *,
        base_cooldown_s: float = 5.0,
        max_cooldown_s: float = 300.0,
        auth_cooldown_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        states: ChannelStates | None = None,
    ) -> None:
        """``clock`` is the memory state's clock; a shared state keeps its own (Redis ``TIME``)."""
        self.policy = CooldownPolicy(base_cooldown_s, max_cooldown_s, auth_cooldown_s)
        self.rng = rng or random.Random()
        self.states: ChannelStates = states if states is not None else MemoryChannelState(clock)

    async def acquire(
        self, channels: Iterable[Channel], operation: Operation, tier: str | None, tried: set[str]
    ) -> Channel | None:
        """A channel for the next attempt, with its in-flight slot taken; None when every
        eligible channel was tried already. Raises ``NoChannel`` if none serves the operation
        and ``RateLimited`` (429 + Retry-After) if the untried ones are all busy or cooling."""
        eligible = [c for c in channels if c.serves(operation, tier)]
        if not eligible:
            raise NoChannel(operation.value)
        untried = [c for c in eligible if c.name not in tried]
        if not untried:
            return None
        waits: list[float] = []
        for priority in sorted({c.priority for c in untried}, reverse=True):
            # Weighted random among the tier's ready channels: draw by weight, try to take a
            # slot atomically, and draw again among the rest if that one is busy or cooling.
            candidates = [c for c in untried if c.priority == priority]
            while candidates:
                chosen = self.rng.choices(candidates, weights=[c.weight for c in candidates])[0]
                wait = await self.states.take(chosen.name, chosen.max_in_flight)
                if wait is None:
                    return chosen
                waits.append(wait)
                candidates.remove(chosen)
        if tried:
            return None  # the caller reports the failures it has seen
        retry_after = max(1, math.ceil(min(waits))) if waits else 1
        raise RateLimited("every upstream channel for this operation is busy or cooling down", retry_after)

    async def release(self, channel: Channel, outcome: Outcome, retry_after: float | None = None) -> None:
        await self.states.give_back(channel.name, outcome, retry_after, self.policy)

    async def status(self, name: str) -> ChannelStatus:
        return await self.states.status(name)

    async def cooling(self, name: str) -> bool:
        return (await self.states.status(name)).cooling

    async def aclose(self) -> None:
        await self.states.aclose()
