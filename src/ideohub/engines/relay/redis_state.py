"""``RedisChannelState``: the router's channel state shared by every process on one Redis.

Per channel, two keys with the channel name as hash tag (so both live on one cluster slot):

- ``<prefix>ch:{<name>}`` — a hash: ``failures`` (consecutive), ``open_until`` (the cooldown
  deadline, Redis ``TIME`` seconds) and ``probe_until`` (the half-open probe is out until then).
  It expires ``state_ttl_s`` after the last failure's cooldown ends; a success deletes it.
- ``<prefix>ch:{<name>}:slots`` — a sorted set of in-flight slots, member = a token, score =
  expiry. A crashed process's slots (and its probe) stop counting after ``lease_s``.

``take`` and ``give_back`` are each one Lua script, so the check and the change are atomic
across processes: the in-flight maximum holds across them, a cooldown opened by one is seen by
all, and only one of them sends the half-open probe. Each process remembers the tokens of the
slots it holds, so ``give_back`` frees one of its own.
"""

from __future__ import annotations

import logging
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ...gate.redis import LUA_NOW, connect, run_script
from .router import BUSY_WAIT_S, ChannelStatus, CooldownPolicy, Outcome

log = logging.getLogger("ideohub.relay")

WHAT = "the shared channel state (Redis)"

# KEYS[1] state hash, KEYS[2] slots zset; ARGV[1] token, ARGV[2] max_in_flight, ARGV[3] lease_s,
# ARGV[4] busy wait → {1, "0"} slot taken, or {0, "<seconds to wait>"}
TAKE_LUA = LUA_NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now))
local st = redis.call('HMGET', KEYS[1], 'failures', 'open_until', 'probe_until')
local failures = tonumber(st[1]) or 0
local open_until = tonumber(st[2]) or 0
local probe_until = tonumber(st[3]) or 0
if now < open_until then
  return {0, fmt(open_until - now)}
end
local half_open = failures > 0
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) or (half_open and probe_until > now) then
  return {0, ARGV[4]}
end
local lease_s = tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], fmt(now + lease_s), ARGV[1])
redis.call('PEXPIRE', KEYS[2], math.ceil(lease_s * 1000) + 1000)
if half_open then
  redis.call('HSET', KEYS[1], 'probe_until', fmt(now + lease_s))
end
return {1, '0'}
"""

# KEYS as above; ARGV[1] token, ARGV[2] outcome (ok|failed|auth), ARGV[3] base, ARGV[4] max,
# ARGV[5] auth cooldown, ARGV[6] upstream Retry-After (0: none), ARGV[7] state TTL
# → the cooldown opened, in seconds ("0" for ok)
GIVE_BACK_LUA = LUA_NOW + """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], 'probe_until')
if ARGV[2] == 'ok' then
  redis.call('DEL', KEYS[1])
  return '0'
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local max_s = tonumber(ARGV[4])
local cooldown
if ARGV[2] == 'auth' then
  cooldown = tonumber(ARGV[5])
else
  cooldown = math.min(max_s, tonumber(ARGV[3]) * 2 ^ math.min(failures - 1, 64))
end
local retry_after = tonumber(ARGV[6])
if retry_after > 0 then
  cooldown = math.max(cooldown, math.min(retry_after, max_s))
end
redis.call('HSET', KEYS[1], 'open_until', fmt(now + cooldown))
redis.call('PEXPIRE', KEYS[1], math.ceil((cooldown + tonumber(ARGV[7])) * 1000))
return fmt(cooldown)
"""

# KEYS as above → {in_flight, failures, "<cooldown left>", probing 0/1}
STATUS_LUA = LUA_NOW + """
local in_flight = redis.call('ZCOUNT', KEYS[2], '(' .. fmt(now), '+inf')
local st = redis.call('HMGET', KEYS[1], 'failures', 'open_until', 'probe_until')
local failures = tonumber(st[1]) or 0
local open_until = tonumber(st[2]) or 0
local probe_until = tonumber(st[3]) or 0
local left = 0
if now < open_until then left = open_until - now end
local probing = 0
if probe_until > now then probing = 1 end
return {in_flight, failures, fmt(left), probing}
"""


class RedisChannelState:
    def __init__(
        self,
        url: str,
        *,
        lease_s: float = 900.0,
        prefix: str = "ideohub:",
        state_ttl_s: float = 86400.0,
        client: Redis | None = None,
    ) -> None:
        """``lease_s``: how long an in-flight slot (or probe) of a crashed process keeps counting;
        it must outlast the longest attempt (the request timeout is a safe choice)."""
        self.redis = client or connect(url)
        self.lease_s = lease_s
        self.prefix = prefix
        self.state_ttl_s = state_ttl_s
        self._held: dict[str, list[str]] = {}
        self._take = self.redis.register_script(TAKE_LUA)
        self._give_back = self.redis.register_script(GIVE_BACK_LUA)
        self._status = self.redis.register_script(STATUS_LUA)

    def _keys(self, name: str) -> list[str]:
        base = f"{self.prefix}ch:{{{name}}}"
        return [base, base + ":slots"]

    async def take(self, name: str, max_in_flight: int) -> float | None:
        token = uuid.uuid4().hex
        taken, wait = await run_script(  # type: ignore[misc]
            self._take, self._keys(name), [token, max_in_flight, self.lease_s, BUSY_WAIT_S], WHAT
        )
        if int(taken):
            self._held.setdefault(name, []).append(token)
            return None
        return float(wait)

    async def give_back(self, name: str, outcome: Outcome, retry_after: float | None, policy: CooldownPolicy) -> None:
        held = self._held.get(name)
        token = held.pop() if held else ""
        args = [token, Outcome(outcome).value, policy.base_s, policy.max_s, policy.auth_s, retry_after or 0,
                self.state_ttl_s]
        try:
            await self._give_back(keys=self._keys(name), args=args)
        except RedisError as exc:  # the slot and probe expire after lease_s; the outcome is lost
            log.warning("could not record the outcome of channel %s in redis: %s", name, exc.__class__.__name__)

    async def status(self, name: str) -> ChannelStatus:
        result = await run_script(self._status, self._keys(name), [], WHAT)
        in_flight, failures, left, probing = result  # type: ignore[misc]
        return ChannelStatus(int(in_flight), int(failures), float(left), bool(int(probing)))

    async def aclose(self) -> None:
        await self.redis.aclose()
