"""The embedded default: this process runs every generation it admits."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import logging

from ..domain.errors import EngineUnavailable, IdeohubError
from ..domain.generations import Mode
from ..domain.operations import Operation
from ..stages.job import Job
from ..stages.runner import Runner
from . import Waiters

log = logging.getLogger("ideohub.dispatch")


class LocalDispatch:
    inline = True

    def __init__(self, runner: Runner, engines: dict[Operation, Any]) -> None:
        self.runner = runner
        self.engines = engines
        self.waiters = Waiters()
        self._tasks: set[asyncio.Task[Any]] = set()
        runner.publish = self.publish

    async def start(self) -> None:
        return None

    async def available(self, operation: Operation, mode: Mode) -> None:
        if operation not in self.engines:
            raise EngineUnavailable(
                f"no engine is configured for {operation.official_path} (operation '{operation.value}'). "
                f"Configure one in the [engines] table of the config file, e.g. "
                f'engines."{operation.value}" = "relay" with an upstream channel, '
                f"or IDEOHUB_ENGINES='{{\"{operation.value}\": \"...\"}}'. "
                f"Engines: local-upscaler (upscale) and relay (every operation, through upstream channels)."
            )

    async def enqueue(self, generation_id: str, operation: Operation, job: Job | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._quietly(generation_id, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quietly(self, generation_id: str, job: Job | None) -> None:
        try:
            await self.runner.run_queued(generation_id, job)
        except asyncio.CancelledError:
            pass  # handed back (shutting down) or recorded as failed by the runner
        except IdeohubError as exc:
            log.debug("generation %s failed: %s", generation_id, exc)  # recorded as the generation's failure by the runner
        except Exception:
            log.exception("generation %s failed unexpectedly", generation_id)

    def waiting(self, generation_id: str) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        return self.waiters.waiting(generation_id)

    async def publish(self, generation_id: str) -> None:
        self.waiters.wake(generation_id)

    async def aclose(self) -> None:
        """Shutting down: running generations with staged inputs are handed back (queued for the
        next start or another process); the rest fail with a refund as they are cancelled."""
        self.runner.stopping = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
