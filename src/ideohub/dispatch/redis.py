"""The fleet's queue on Redis (``queue_url``).

Why Taskiq's Redis *stream* broker (``taskiq_redis.RedisStreamBroker``): a Redis stream with a
consumer group gives exactly the guarantees the generation path needs — a message is delivered
to one consumer, stays pending until it is acknowledged (``XACK``), and the pending messages of
a consumer that died are claimed by another (``XAUTOCLAIM`` after ``idle_timeout``). Taskiq is
maintained, asyncio-native and uses redis-py, which ideohub already depends on; we use its broker
layer only (``kick``/``listen``), because the message is just a generation id: the database is
the source of truth, and a worker claims the generation there before it runs anything.

One stream per operation (``ideohub:queue:<operation>``), so a worker reads only what it
declared (``ideohub worker --operations upscale``). Workers announce themselves in a sorted set
per operation (``ideohub:workers:<operation>``, scored by when their heartbeat expires): a
synchronous call for an operation no live worker serves is answered 503 at once. Completion is
published on ``ideohub:finished``; each API instance keeps one subscription for all its waiters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..domain.errors import EngineUnavailable
from ..domain.generations import Mode
from ..domain.operations import Operation
from ..stages.job import Job
from . import QueueUnavailable, Waiters

log = logging.getLogger("ideohub.dispatch")

FINISHED = "ideohub:finished"
GROUP = "ideohub-workers"
STREAM_MAXLEN = 100_000  # approximate trim; a message trimmed unread is re-enqueued by the reconciler


def stream(operation: Operation) -> str:
    return f"ideohub:queue:{operation.value}"


def registry_key(operation: Operation) -> str:
    return f"ideohub:workers:{operation.value}"


RECLAIM_EVERY_S = 5.0


def make_broker(url: str, operations: list[Operation], *, idle_timeout_s: float, consumer: str | None = None) -> Any:
    """Taskiq's stream broker over the operations' streams. ``consumer_id="0"``: a consumer group
    created after messages were added still delivers them."""
    from taskiq.acks import AckableMessage
    from taskiq_redis import RedisStreamBroker

    class Broker(RedisStreamBroker):  # type: ignore[misc]
        """Taskiq's ``listen`` claims what dead consumers left (``XAUTOCLAIM``) on every stream after
        every message it reads — one round trip per operation stream per generation — and never
        while the queue is idle. Here: every ``RECLAIM_EVERY_S``, busy or idle; the rest is its own."""

        async def listen(self) -> Any:
            streams = {self.queue_name: ">", **self.additional_streams}
            reclaimed_at = 0.0
            async with Redis(connection_pool=self.connection_pool) as conn:
                while True:
                    fetched = await conn.xreadgroup(self.consumer_group_name, self.consumer_name, streams,
                                                    block=self.block, noack=False, count=self.count)
                    for name, messages in fetched or []:
                        for msg_id, msg in messages:
                            yield AckableMessage(data=msg[b"data"], ack=self._ack_generator(id=msg_id, queue_name=name))
                    if time.monotonic() - reclaimed_at < RECLAIM_EVERY_S:
                        continue
                    reclaimed_at = time.monotonic()
                    for name in streams:
                        claimed = await conn.xautoclaim(name, self.consumer_group_name, self.consumer_name,
                                                        min_idle_time=self.idle_timeout,
                                                        count=self.unacknowledged_batch_size)
                        for msg_id, msg in claimed[1]:
                            if msg:  # (a trimmed entry comes back empty)
                                yield AckableMessage(data=msg[b"data"], ack=self._ack_generator(id=msg_id, queue_name=name))

    first, *rest = operations
    return Broker(
        url, queue_name=stream(first), consumer_group_name=GROUP, consumer_name=consumer, consumer_id="0",
        xread_block=1000, xread_count=1, maxlen=STREAM_MAXLEN, idle_timeout=int(idle_timeout_s * 1000),
        additional_streams={stream(op): ">" for op in rest},
        socket_timeout=30, socket_connect_timeout=5,
    )


def message(generation_id: str, operation: Operation) -> Any:
    from taskiq.message import BrokerMessage

    body = json.dumps({"generation_id": generation_id, "operation": operation.value}).encode()
    return BrokerMessage(task_id=generation_id, task_name="ideohub.generation", message=body,
                         labels={"queue_name": stream(operation)})


def parse_message(data: bytes | str) -> tuple[str, Operation] | None:
    try:
        doc = json.loads(data)
        return str(doc["generation_id"]), Operation(doc["operation"])
    except (ValueError, KeyError, TypeError):
        return None


class RedisDispatch:
    inline = False

    def __init__(self, url: str, *, idle_timeout_s: float) -> None:
        self.url = url
        self.broker = make_broker(url, list(Operation), idle_timeout_s=idle_timeout_s)
        self.redis = Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self.waiters = Waiters()
        self._listener: asyncio.Task[None] | None = None
        self._serves: dict[Operation, tuple[float, bool]] = {}  # cached for a second
        self._started = False

    async def start(self) -> None:
        try:
            await self.broker.startup()  # creates the consumer groups, so nothing enqueued is skipped
            self._started = True
        except (RedisError, OSError) as exc:
            log.warning("the queue is unreachable at start-up (%s); retrying on first use", exc.__class__.__name__)
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def available(self, operation: Operation, mode: Mode) -> None:
        if mode is Mode.SYNC and not await self.serves(operation):
            raise EngineUnavailable(
                f"no live worker serves {operation.official_path} (operation '{operation.value}'); "
                f"start one with `ideohub worker --operations {operation.value}`, or submit it asynchronously "
                f"to wait in line")

    async def serves(self, operation: Operation) -> bool:
        now = time.monotonic()
        cached = self._serves.get(operation)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            live = await self.redis.zcount(registry_key(operation), time.time(), "+inf") > 0
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(f"the queue is unreachable ({exc.__class__.__name__}); retry later") from None
        self._serves[operation] = (now + 1.0, live)
        return live

    async def live_workers(self) -> dict[str, int]:
        """Workers whose heartbeat is current, per operation (for the metrics)."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        for op in Operation:
            pipe.zcount(registry_key(op), now, "+inf")
        counts = await pipe.execute()
        return {op.value: int(n) for op, n in zip(Operation, counts)}

    async def enqueue(self, generation_id: str, operation: Operation, job: Job | None = None) -> None:
        try:
            if not self._started:
                await self.broker.startup()
                self._started = True
            await self.broker.kick(message(generation_id, operation))
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(f"the queue is unreachable ({exc.__class__.__name__}); "
                                   f"nothing was charged, retry later") from None

    def waiting(self, generation_id: str) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        return self.waiters.waiting(generation_id)

    async def publish(self, generation_id: str) -> None:
        self.waiters.wake(generation_id)  # waiters here need no round trip
        try:
            await self.redis.publish(FINISHED, generation_id)
        except (RedisError, OSError):
            log.warning("could not publish the end of generation %s; its waiters re-check at their deadline",
                        generation_id)

    async def _listen(self) -> None:
        """One subscription for every waiter of this process; after a lost connection every
        waiter re-checks its record, then the subscription is made again."""
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(FINISHED)
                self.waiters.wake_all()  # anything that ended while we were not subscribed
                async for msg in pubsub.listen():
                    data = msg.get("data")
                    if isinstance(data, bytes):
                        self.waiters.wake(data.decode(errors="replace"))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                self.waiters.wake_all()
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        with contextlib.suppress(Exception):
            await self.broker.shutdown()
        await self.redis.aclose()
