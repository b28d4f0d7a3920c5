"""Where admitted generations go to be run, and how their waiters learn they ended.

- ``local.LocalDispatch`` (the embedded default, no set-up): this process runs them — a
  synchronous one in its caller's task, an asynchronous one in the background.
- ``redis.RedisDispatch`` (``queue_url``): API instances only admit and enqueue generation ids
  on Redis streams (one per operation, through Taskiq's stream broker: consumer groups,
  acknowledgements, redelivery of what a dead consumer held); ``ideohub worker`` processes run
  them; completion is published on a Redis channel every instance listens to.

Both implement ``Dispatch``; the stages (``ideohub.stages``) are the same.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

import asyncio

from ..domain.errors import IdeohubError
from ..domain.generations import Mode
from ..domain.operations import Operation
from ..stages.job import Job


class QueueUnavailable(IdeohubError):
    """The queue could not take the generation (Redis unreachable): refunded, retry later."""

    status = 503
    title = "Service Unavailable"


class Dispatch(Protocol):
    inline: bool  # a synchronous generation runs in its caller's task (admitted as running)

    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
    async def available(self, operation: Operation, mode: Mode) -> None:
        """Raise ``EngineUnavailable`` naming the operation when nothing could run it."""
        ...
    async def enqueue(self, generation_id: str, operation: Operation, job: Job | None = None) -> None: ...
    def waiting(self, generation_id: str) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        """Subscribed before the enqueue: the event is set when the generation may have ended."""
        ...
    async def publish(self, generation_id: str) -> None: ...


class Waiters:
    """This process's waiters, by generation id (several may wait for one: an idempotent retry)."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}

    @contextlib.asynccontextmanager
    async def waiting(self, generation_id: str) -> AsyncIterator[asyncio.Event]:
        event = asyncio.Event()
        self._events.setdefault(generation_id, set()).add(event)
        try:
            yield event
        finally:
            events = self._events.get(generation_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._events[generation_id]

    def wake(self, generation_id: str) -> None:
        for event in self._events.get(generation_id, ()):
            event.set()

    def wake_all(self) -> None:
        """After a lost subscription: every waiter re-checks its record."""
        for events in self._events.values():
            for event in events:
                event.set()
