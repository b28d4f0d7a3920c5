"""``RedisLimiter``: the ``MemoryLimiter``'s semantics shared by every process on one Redis.

Each decision is one Lua script, so it is atomic across processes, and by default every script
reads the time from Redis (``TIME``), never from the calling process, so servers with skewed
clocks still agree. An injected ``clock`` (tests) is passed to the scripts as ``now`` instead.
Every decision compares stored deadlines with ``now``; key TTLs (real time) only collect garbage.

- Requests per minute: GCRA, the theoretical arrival time (TAT) of the key in a string with a
  TTL (it disappears once it is in the past, which is the same as a fresh key).
- Images in flight: a sorted set of leases per key, member ``"<images>:<lease id>"``, score =
  expiry. Expired leases are dropped before counting, so a crashed process's leases stop
  counting after ``lease_s``; the set itself expires with its longest lease.

If Redis cannot be reached the request fails with a 503 (``SharedStateUnavailable``), never
silently allowed; releasing a lease while Redis is down is logged and left to expire.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from ..domain.errors import Busy, RateLimited
from .limits import TOLERANCE_S, WINDOW_S, limit_text

log = logging.getLogger("ideohub.redis")

# Lua shared by the scripts: ARGV[1] is ``now`` in seconds from an injected clock, or '' for the
# Redis server's clock (to the microsecond). Times are stored with full double precision, so a
# decision here is bit-for-bit the one ``MemoryLimiter`` makes from the same inputs. Key TTLs
# (real time) only collect garbage; ``pad_ms`` is added to each, an hour when the clock is
# injected, since such a clock need not keep pace with real time.
LUA_NOW = """
local now
local pad_ms = 1000
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
  pad_ms = 3600000
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.17g', x) end
"""

# KEYS[1] TAT key; ARGV[1] now, ARGV[2] interval = period/limit, ARGV[3] window = period (60 s for rpm),
# ARGV[4] tolerance (limits.TOLERANCE_S), ARGV[5] '1' to count the request, '0' only to ask
# → {1, "0"} allowed (TAT moved on when counted), or {0, "<retry-after seconds>"}
GCRA_LUA = LUA_NOW + """
local interval = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local allow_at = tat - (window - interval)
if now + tonumber(ARGV[4]) < allow_at then
  return {0, fmt(allow_at - now)}
end
if ARGV[5] == '0' then return {1, '0'} end
local new_tat = tat + interval
redis.call('SET', KEYS[1], fmt(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + pad_ms)
return {1, '0'}
"""

# KEYS[1] leases zset; ARGV[1] now, ARGV[2] lease id, ARGV[3] images, ARGV[4] limit, ARGV[5] lease_s
# → {1, used before} taken, or {0, used} refused
ACQUIRE_LUA = LUA_NOW + """
local lease_id = ARGV[2]
local images = math.floor(tonumber(ARGV[3]))
local limit = tonumber(ARGV[4])
local lease_s = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now))
local used, same = 0, nil
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local n, id = string.match(m, '^(%d+):(.*)$')
  if n then
    used = used + tonumber(n)
    if id == lease_id then same = m end
  end
end
if used + images > limit then
  return {0, used}
end
if same then redis.call('ZREM', KEYS[1], same) end
redis.call('ZADD', KEYS[1], fmt(now + lease_s), tostring(images) .. ':' .. lease_id)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) * 1000) + pad_ms)
return {1, used}
"""

# KEYS[1] leases zset; ARGV[1] lease id → number of members removed
RELEASE_LUA = """
local removed = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local n, id = string.match(m, '^(%d+):(.*)$')
  if id == ARGV[1] then removed = removed + redis.call('ZREM', KEYS[1], m) end
end
return removed
"""


LIMITS = "the shared rate-limit store (Redis)"


class SharedStateUnavailable(Busy):
    """Redis (shared limits and channel state) cannot be reached: 503, never a silent allow."""

    def __init__(self, what: str = LIMITS) -> None:
        super().__init__(f"{what} is unreachable; try again shortly", retry_after=2)


Clock = Callable[[], float]


def now_arg(clock: Clock | None) -> float | str:
    """The ``now`` argument of every script: the injected clock's reading, or '' for Redis ``TIME``."""
    return "" if clock is None else float(clock())


def connect(url: str) -> Redis:
    """An async client that gives up quickly: a request waits at most a few seconds for an
    unreachable Redis before it is answered 503."""
    return Redis.from_url(
        url,
        socket_connect_timeout=2.0,
        socket_timeout=2.0,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
        decode_responses=True,
    )


async def run_script(script: AsyncScript, keys: list[str], args: list[object], what: str = LIMITS) -> object:
    """Run one script; any Redis error becomes a 503 naming ``what`` (the URL, which may hold a
    password, and the error are logged, never sent to the client)."""
    try:
        return await script(keys=keys, args=args)
    except RedisError as exc:
        log.error("%s failed: %s: %s", what, exc.__class__.__name__, exc)
        raise SharedStateUnavailable(what) from None


class RedisLimiter:
    def __init__(
        self,
        url: str,
        lease_s: float = 900.0,
        prefix: str = "ideohub:",
        client: Redis | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``clock``: None (the default) reads Redis ``TIME``, so every process agrees; tests
        inject one to move time on without sleeping."""
        self.redis = client or connect(url)
        self.lease_s = lease_s
        self.prefix = prefix
        self.clock = clock
        self._gcra = self.redis.register_script(GCRA_LUA)
        self._acquire = self.redis.register_script(ACQUIRE_LUA)
        self._release = self.redis.register_script(RELEASE_LUA)

    def _rpm_key(self, key_id: str) -> str:
        return f"{self.prefix}rpm:{key_id}"

    def _images_key(self, key_id: str) -> str:
        return f"{self.prefix}img:{key_id}"

    async def hit(self, key_id: str, rpm: int, period_s: float = WINDOW_S, count: bool = True) -> None:
        key = self._rpm_key(key_id)
        args = [now_arg(self.clock), period_s / rpm, period_s, TOLERANCE_S, "1" if count else "0"]
        allowed, retry = await run_script(self._gcra, [key], args)  # type: ignore[misc]
        if not int(allowed):
            raise RateLimited(limit_text(rpm, period_s), math.ceil(float(retry)))

    async def acquire_images(self, key_id: str, lease_id: str, images: int, limit: int) -> None:
        taken, used = await run_script(  # type: ignore[misc]
            self._acquire, [self._images_key(key_id)], [now_arg(self.clock), lease_id, images, limit, self.lease_s]
        )
        if not int(taken):
            raise RateLimited(
                f"this key may have {limit} images in flight; {used} are in flight and this request asks for {images}",
                1, max_inflight=limit,
            )

    async def release_images(self, key_id: str, lease_id: str) -> None:
        try:
            await self._release(keys=[self._images_key(key_id)], args=[lease_id])
        except RedisError as exc:  # the lease expires by itself after lease_s
            log.warning("could not release images lease %s of %s: %s", lease_id, key_id, exc.__class__.__name__)

    async def aclose(self) -> None:
        await self.redis.aclose()
