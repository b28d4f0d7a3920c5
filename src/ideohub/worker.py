"""``ideohub worker``: runs the generations API instances enqueue (``queue_url``).

A worker reads the streams of the operations it declared (``--operations``; default: every
operation its configured engines serve), at most ``worker_concurrency`` at once. For each
message it claims the generation in the database (a finished one, or one another live worker
holds, is acknowledged and dropped), runs it through the stages, and acknowledges the message
after settlement. While it lives it renews its generations' leases (``heartbeat_s``), announces
what it serves (``ideohub:workers:<operation>``), reconciles, and sends webhooks.

SIGTERM drains: no new message is taken; running generations get ``drain_s`` to finish, then
they are handed back (queued again, re-enqueued) for another worker. SIGKILL loses nothing
either: the leases expire and the reconciler of any process queues them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from .config import Settings
from .dispatch.redis import make_broker, parse_message, registry_key
from .domain.operations import Operation
from .runtime import Runtime, every
from .store.repository import new_id

log = logging.getLogger("ideohub.worker")


class NothingToServe(ValueError):
    pass


class Worker:
    def __init__(self, settings: Settings, operations: set[Operation] | None = None, *, drain_s: float = 30.0,
                 engines: dict[Operation, Any] | None = None, worker_id: str | None = None) -> None:
        if not settings.queue_url:
            raise NothingToServe("a worker needs queue_url (IDEOHUB_QUEUE_URL), the Redis URL API instances enqueue on")
        from .api.responses import render_json

        self.settings = settings
        self.id = worker_id or new_id("wrk")
        self.drain_s = drain_s
        self.runtime = Runtime(settings, engines=engines, operations=operations or set(Operation),
                               render=render_json, instance_id=self.id)
        self.served: list[Operation] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event, ready: Any = None) -> None:
        rt = self.runtime
        try:
            service = await rt.service()
            self.served = [op for op in Operation if op in service.engines]
            if not self.served:
                raise NothingToServe("none of the declared operations has an engine configured on this worker")
            broker = make_broker(self.settings.queue_url or "", self.served, idle_timeout_s=self.settings.stale_after_s,
                                 consumer=self.id)
            await broker.startup()
            secrets = await rt.secrets()
            from .notify.targets import TargetPolicy
            from .notify.worker import Webhooks

            repo = await rt.repo()
            webhooks = Webhooks(self.settings, repo.session, TargetPolicy(self.settings.webhook_allowed_hosts),
                                rt.metrics, keys=secrets.webhook_key_source)
            service.outbox_changed = webhooks.wake
            webhooks.start()
            s = self.settings
            await self._beat()  # announced before it says it is ready: a sync call may come at once
            loops = [asyncio.create_task(every(s.heartbeat_s, self._beat, "worker heartbeat")),
                     asyncio.create_task(every(s.reconcile_interval_s, service.take_over, "reconciler")),
                     secrets.start()]
            log.info('{"worker": "%s", "serves": %s}', self.id, [op.value for op in self.served])
            if ready is not None:
                ready(self)
            try:
                await self._consume(broker, service, stop)
                await self._drain(service)
                await self._give_back_unread(broker)
            finally:
                for loop in loops:
                    loop.cancel()
                await self._unregister()
                await webhooks.aclose()
                with contextlib.suppress(Exception):
                    await broker.shutdown()
        finally:
            await rt.aclose()

    async def _beat(self) -> None:
        """Leases renewed, and this worker announced for another ``stale_after_s``."""
        service = await self.runtime.service()
        await service.heartbeat()
        dispatch = await self.runtime.dispatch()
        until = time.time() + self.settings.stale_after_s
        pipe = dispatch.redis.pipeline(transaction=False)
        for op in self.served:
            pipe.zadd(registry_key(op), {self.id: until})
            pipe.zremrangebyscore(registry_key(op), "-inf", time.time())
        await pipe.execute()

    async def _unregister(self) -> None:
        with contextlib.suppress(Exception):
            dispatch = await self.runtime.dispatch()
            for op in self.served:
                await dispatch.redis.zrem(registry_key(op), self.id)

    async def _consume(self, broker: Any, service: Any, stop: asyncio.Event) -> None:
        """Take a message only when a slot is free, so a busy worker never holds messages another
        worker could run."""
        slots = asyncio.Semaphore(self.settings.worker_concurrency)
        stopped = asyncio.create_task(stop.wait())
        messages = broker.listen()
        try:
            while not stop.is_set():
                await slots.acquire()
                # the next read takes as many messages as there are free slots (one round trip for a burst)
                broker.count = max(1, self.settings.worker_concurrency - len(self._tasks))
                nxt = asyncio.ensure_future(messages.__anext__())
                await asyncio.wait({nxt, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done():
                    # the read is abandoned; a message Redis hands it as it goes stays pending for this
                    # consumer, and _give_back_unread adds it again once the worker has drained
                    nxt.cancel()
                    slots.release()
                    break
                try:
                    msg = nxt.result()
                except Exception as exc:  # Redis went away: a new listener after a pause
                    slots.release()
                    log.warning("the queue is unreachable (%s); retrying", exc.__class__.__name__)
                    await asyncio.sleep(1.0)
                    messages = broker.listen()
                    continue
                task = asyncio.create_task(self._handle(msg, service, slots))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            stopped.cancel()

    async def _handle(self, msg: Any, service: Any, slots: asyncio.Semaphore) -> None:
        parsed = parse_message(msg.data)
        try:
            if parsed is not None:
                await service.runner.run_queued(parsed[0])
        except asyncio.CancelledError:  # drained: handed back, so queued for another worker now
            if parsed is not None:
                with contextlib.suppress(Exception):
                    await service.dispatch.enqueue(parsed[0], parsed[1])
        except Exception:
            pass  # recorded as the generation's failure by the runner
        finally:
            slots.release()
            with contextlib.suppress(Exception):
                await msg.ack()

    async def _give_back_unread(self, broker: Any) -> None:
        """Messages Redis delivered to this worker that it never ran (a blocking read answered just
        as it stopped): added again for another worker and acknowledged here, instead of waiting
        for another worker to claim them after ``stale_after_s``."""
        from redis.asyncio import Redis

        from .dispatch.redis import GROUP, stream

        async with Redis(connection_pool=broker.connection_pool) as r:
            for op in self.served:
                pending = await r.xpending_range(stream(op), GROUP, "-", "+", 1000, consumername=self.id)
                for entry in pending:
                    found = await r.xrange(stream(op), entry["message_id"], entry["message_id"])
                    if found:
                        await r.xadd(stream(op), found[0][1])
                    await r.xack(stream(op), GROUP, entry["message_id"])

    async def _drain(self, service: Any) -> None:
        if self._tasks:
            log.info('{"worker": "%s", "draining": %d}', self.id, len(self._tasks))
            await asyncio.wait(list(self._tasks), timeout=self.drain_s)
        service.runner.stopping = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
