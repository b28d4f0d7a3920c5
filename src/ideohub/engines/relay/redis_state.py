"""``RedisChannelState``: the router's channel state shared by every process on one Redis.

Per channel, two keys with the channel name as hash tag (so both live on one cluster slot):

- ``<prefix>ch:{<name>}`` — a hash: ``failures`` (consecutive), ``open_until`` (the cooldown
  deadline, Redis ``TIME`` seconds) and ``probe_until`` (the half-open probe is out until then).
  It is forgotten ``state_ttl_s`` after the last failure's cooldown ends (checked against ``now``
  by every script, and the key's TTL collects it); a success deletes it.
- ``<prefix>ch:{<name>}:slots`` — a sorted set of in-flight slots, member = a token, score =
  expiry. A crashed process's slots (and its probe) stop counting after ``lease_s``.

``take`` and ``give_back`` are each one Lua script, so the check and the change are atomic
across processes: the in-flight maximum holds across them, a cooldown opened by one is seen by
all, and only one of them sends the half-open probe. Each process remembers the tokens of the
slots it holds, so ``give_back`` frees one of its own.

The rules are ``MemoryChannelState``'s, step for step (tests/test_state_contract.py holds them
equal); like ``RedisLimiter``, the time is Redis ``TIME`` unless a ``clock`` is injected.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ...gate.redis import LUA_NOW, connect, now_arg, run_script
from .router import BUSY_WAIT_S, ChannelStatus, CooldownPolicy, Outcome

log = logging.getLogger("ideohub.relay")

WHAT = "the shared channel state (Redis)"

# The breaker in KEYS[1] as of ``now``; one that has been quiet for the state TTL after its
# cooldown is forgotten (deleted), exactly when the key's own TTL would have removed it.
STATE_LUA = LUA_NOW + """
local function load_state(ttl)
  local st = redis.call('HMGET', KEYS[1], 'failures', 'open_until', 'probe_until')
  local failures = tonumber(st[1]) or 0
  local open_until = tonumber(st[2]) or 0
  local probe_until = tonumber(st[3]) or 0
  if failures > 0 and now >= open_until + ttl then
    redis.call('DEL', KEYS[1])
    return 0, 0, 0
  end
  return failures, open_until, probe_until
end
"""

# KEYS[1] state hash, KEYS[2] slots zset; ARGV[1] now, ARGV[2] token, ARGV[3] max_in_flight,
# ARGV[4] lease_s, ARGV[5] busy wait, ARGV[6] state TTL → {1, "0"} slot taken, or {0, "<seconds to wait>"}
TAKE_LUA = STATE_LUA + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now))
local failures, open_until, probe_until = load_state(tonumber(ARGV[6]))
if now < open_until then
  return {0, fmt(open_until - now)}
end
local half_open = failures > 0
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) or (half_open and probe_until > now) then
  return {0, ARGV[5]}
end
local lease_s = tonumber(ARGV[4])
redis.call('ZADD', KEYS[2], fmt(now + lease_s), ARGV[2])
redis.call('PEXPIRE', KEYS[2], math.ceil(lease_s * 1000) + pad_ms)
if half_open then
  redis.call('HSET', KEYS[1], 'probe_until', fmt(now + lease_s))
end
return {1, '0'}
"""

# KEYS as above; ARGV[1] now, ARGV[2] token, ARGV[3] outcome (ok|failed|auth|released), ARGV[4] base,
# ARGV[5] max, ARGV[6] auth cooldown, ARGV[7] the Retry-After floor (``CooldownPolicy.retry_floor``),
# ARGV[8] state TTL → the cooldown opened, in seconds ("0" for ok)
GIVE_BACK_LUA = STATE_LUA + """
load_state(tonumber(ARGV[8]))
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[1], 'probe_until')
if ARGV[3] == 'released' then
  return '0'
end
if ARGV[3] == 'ok' then
  redis.call('DEL', KEYS[1])
  return '0'
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local max_s = tonumber(ARGV[5])
local cooldown
if ARGV[3] == 'auth' then
  cooldown = tonumber(ARGV[6])
else
  cooldown = math.min(max_s, tonumber(ARGV[4]) * 2 ^ math.min(failures - 1, 64))
end
cooldown = math.max(cooldown, tonumber(ARGV[7]))
redis.call('HSET', KEYS[1], 'open_until', fmt(now + cooldown))
redis.call('PEXPIRE', KEYS[1], math.ceil((cooldown + tonumber(ARGV[8])) * 1000) + pad_ms)
return fmt(cooldown)
"""

# KEYS as above; ARGV[1] now, ARGV[2] state TTL → {in_flight, failures, "<cooldown left>", probing 0/1}
STATUS_LUA = STATE_LUA + """
local failures, open_until, probe_until = load_state(tonumber(ARGV[2]))
local in_flight = redis.call('ZCOUNT', KEYS[2], '(' .. fmt(now), '+inf')
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
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``lease_s``: how long an in-flight slot (or probe) of a crashed process keeps counting;
        it must outlast the longest attempt (the request timeout is a safe choice). ``clock``:
        None reads Redis ``TIME`` (every process agrees); tests inject one instead of sleeping."""
        self.redis = client or connect(url)
        self.lease_s = lease_s
        self.prefix = prefix
        self.state_ttl_s = state_ttl_s
        self.clock = clock
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
            self._take, self._keys(name),
            [now_arg(self.clock), token, max_in_flight, self.lease_s, BUSY_WAIT_S, self.state_ttl_s], WHAT,
        )
        if int(taken):
            self._held.setdefault(name, []).append(token)
            return None
        return float(wait)

    async def give_back(self, name: str, outcome: Outcome, retry_after: float | None, policy: CooldownPolicy) -> None:
        held = self._held.get(name)
        token = held.pop() if held else ""
        args = [now_arg(self.clock), token, Outcome(outcome).value, policy.base_s, policy.max_s, policy.auth_s,
                policy.retry_floor(retry_after), self.state_ttl_s]
        try:
            await self._give_back(keys=self._keys(name), args=args)
        except RedisError as exc:  # the slot and probe expire after lease_s; the outcome is lost
            log.warning("could not record the outcome of channel %s in redis: %s", name, exc.__class__.__name__)

    async def status(self, name: str) -> ChannelStatus:
        result = await run_script(self._status, self._keys(name), [now_arg(self.clock), self.state_ttl_s], WHAT)
        in_flight, failures, left, probing = result  # type: ignore[misc]
        return ChannelStatus(int(in_flight), int(failures), float(left), bool(int(probing)))

    async def aclose(self) -> None:
        await self.redis.aclose()
