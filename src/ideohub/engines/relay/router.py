"""Choosing a channel for each attempt.

Priority tiers, highest first; weighted random within a tier. A retry never reuses a channel
already tried for the request. A failing channel is cooled down for a time that doubles with
each consecutive failure (or the upstream's ``Retry-After``, whichever is longer); when the
time is up it is half-open: one probe request may go through, and its outcome closes the
breaker or opens it again. Per-channel in-flight limits are respected.

The state is per process for now; ``ChannelState`` is the unit a shared (Redis) backend replaces.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from ...domain.errors import RateLimited
from ...domain.operations import Operation
from .channels import Channel


class Outcome(StrEnum):
    OK = "ok"  # includes the upstream rejecting the caller's input: the channel itself is fine
    FAILED = "failed"  # 429, 5xx, timeout, connection error, malformed response
    AUTH = "auth"  # 401/403/402 from the upstream: the channel's key is bad or out of credit


@dataclass
class ChannelState:
    in_flight: int = 0
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False

    def cooling(self, now: float) -> bool:
        return now < self.open_until

    def half_open(self, now: float) -> bool:
        return self.failures > 0 and not self.cooling(now)


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
    ) -> None:
        self.base_cooldown_s = base_cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.auth_cooldown_s = auth_cooldown_s
        self.clock = clock
        self.rng = rng or random.Random()
        self.states: dict[str, ChannelState] = {}

    def state(self, name: str) -> ChannelState:
        return self.states.setdefault(name, ChannelState())

    def acquire(
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
        now = self.clock()
        waits: list[float] = []
        for priority in sorted({c.priority for c in untried}, reverse=True):
            ready: list[Channel] = []
            for c in (c for c in untried if c.priority == priority):
                st = self.state(c.name)
                if st.cooling(now):
                    waits.append(st.open_until - now)
                elif st.in_flight >= c.max_in_flight or (st.half_open(now) and st.probing):
                    waits.append(1.0)
                else:
                    ready.append(c)
            if ready:
                chosen = self.rng.choices(ready, weights=[c.weight for c in ready])[0]
                st = self.state(chosen.name)
                st.in_flight += 1
                if st.half_open(now):
                    st.probing = True
                return chosen
        if tried:
            return None  # the caller reports the failures it has seen
        retry_after = max(1, math.ceil(min(waits))) if waits else 1
        raise RateLimited("every upstream channel for this operation is busy or cooling down", retry_after)

    def release(self, channel: Channel, outcome: Outcome, retry_after: float | None = None) -> None:
        st = self.state(channel.name)
        st.in_flight = max(0, st.in_flight - 1)
        st.probing = False
        if outcome is Outcome.OK:
            st.failures = 0
            st.open_until = 0.0
            return
        st.failures += 1
        if outcome is Outcome.AUTH:
            cooldown = self.auth_cooldown_s
        else:
            cooldown = min(self.max_cooldown_s, self.base_cooldown_s * 2 ** (st.failures - 1))
        if retry_after:
            cooldown = max(cooldown, min(retry_after, self.max_cooldown_s))
        st.open_until = self.clock() + cooldown

    def cooling(self, name: str) -> bool:
        return self.state(name).cooling(self.clock())
