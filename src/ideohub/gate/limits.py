"""Per-key limits: requests per minute (GCRA) and images in flight, answered with 429 and
``Retry-After``. ``MemoryLimiter`` serves one process; ``RedisLimiter`` (``gate.redis``)
shares the same semantics across every process on one Redis.

GCRA: each key has a theoretical arrival time (TAT). A request is allowed when
``TAT - now <= period - period/limit`` (so a burst of ``limit`` requests fits in one period, and
then one every ``period/limit`` seconds); allowing it moves TAT forward by ``period/limit``. The
period is 60 s for a key's ``rpm``; other limits (polling: 1,000 per 10 s per account) pass their own.

Images in flight are leases (request id → images) that expire after ``lease_s``, so a crashed
process cannot hold a key's capacity for ever.

Both backends make the same decision from the same inputs; tests/test_state_contract.py runs one
suite against both, with an injected clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from ..domain.errors import RateLimited

WINDOW_S = 60.0
# Float rounding: ``limit`` additions of ``period/limit`` (1,000 × 0.01 s) can land a hair past the
# period and refuse the last request of a burst; decisions allow this much slack (the Lua does too).
TOLERANCE_S = 0.001
PRUNE_AT = 10_000  # MemoryLimiter drops passed TATs once it holds this many keys


class Limiter(Protocol):
    async def hit(self, key_id: str, rpm: int, period_s: float = WINDOW_S, count: bool = True) -> None:
        """Count one request; raise ``RateLimited`` when over ``rpm`` requests per ``period_s``.
        ``count=False`` only asks: it raises the same way but counts nothing."""
        ...

    async def acquire_images(self, key_id: str, lease_id: str, images: int, limit: int) -> None:
        """Take ``images`` of the key's ``limit``; raise ``RateLimited`` when it would exceed it."""
        ...

    async def release_images(self, key_id: str, lease_id: str) -> None: ...

    async def aclose(self) -> None: ...


def gcra_decide(tat: float, now: float, rpm: int, period_s: float = WINDOW_S) -> tuple[bool, float, float]:
    """(allowed, new TAT, retry-after seconds) for one request under ``rpm`` per ``period_s``."""
    interval = period_s / rpm
    tat = max(tat, now)
    allow_at = tat - (period_s - interval)
    if now + TOLERANCE_S < allow_at:
        return False, tat, allow_at - now
    return True, tat + interval, 0.0


def limit_text(limit: int, period_s: float) -> str:
    """The 429's detail (callers with their own wording catch ``RateLimited`` and say it)."""
    if period_s == WINDOW_S:
        return f"this key is limited to {limit} requests per minute"
    return f"this key is limited to {limit} requests per {period_s:g} s"


class MemoryLimiter:
    def __init__(self, lease_s: float = 900.0, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: seconds on any monotonic scale; tests inject one to move time on without sleeping."""
        self._tat: dict[str, float] = {}
        self._prune_at = PRUNE_AT
        self._leases: dict[str, dict[str, tuple[int, float]]] = {}
        self.lease_s = lease_s
        self.clock = clock

    async def hit(self, key_id: str, rpm: int, period_s: float = WINDOW_S, count: bool = True) -> None:
        now = self.clock()
        allowed, tat, retry = gcra_decide(self._tat.get(key_id, now), now, rpm, period_s)
        if not allowed:
            raise RateLimited(limit_text(rpm, period_s), math.ceil(retry))
        if count:
            self._tat[key_id] = tat
            if len(self._tat) > self._prune_at:
                self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget keys whose TAT has passed (the same as a fresh key), so keys that come and go
        (client addresses) cannot grow the table without bound; the threshold doubles while most
        entries are still live."""
        self._tat = {k: t for k, t in self._tat.items() if t > now}
        self._prune_at = max(PRUNE_AT, 2 * len(self._tat))

    async def acquire_images(self, key_id: str, lease_id: str, images: int, limit: int) -> None:
        now = self.clock()
        leases = {k: v for k, v in self._leases.get(key_id, {}).items() if v[1] > now}
        used = sum(n for n, _exp in leases.values())
        if used + images > limit:
            raise RateLimited(
                f"this key may have {limit} images in flight; {used} are in flight and this request asks for {images}",
                1, max_inflight=limit,
            )
        leases[lease_id] = (images, now + self.lease_s)
        self._leases[key_id] = leases

    async def release_images(self, key_id: str, lease_id: str) -> None:
        self._leases.get(key_id, {}).pop(lease_id, None)

    async def aclose(self) -> None:
        return None
