"""Execution: the engine, under ``request_timeout_s`` counted from here (time waiting in line
has its own limit, ``max_queue_wait_s``). An async generation that finds the engine's worker pool
full waits for room within its deadline: its caller was promised a result, not a 503."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..domain.errors import Busy, DeadlineExceeded, UpstreamFailed
from ..domain.generations import Mode
from ..domain.operations import DescribeResult
from ..engines.base import EngineContext, WorkerPool
from ..observability import Metrics
from .job import Job, Report


class Execution:
    def __init__(self, engines: dict[Any, Any], pool: WorkerPool, timeout_s: float, metrics: Metrics) -> None:
        self.engines = engines
        self.pool = pool
        self.timeout_s = timeout_s
        self.metrics = metrics

    def context(self, job: Job) -> EngineContext:
        return EngineContext(request_id=job.request_id, deadline=time.monotonic() + self.timeout_s, pool=self.pool)

    async def run(self, job: Job, ctx: EngineContext) -> Report:
        """The engine's result as a ``Report``; ``ctx`` keeps the attempts made so far, so a failure
        still records what the upstreams may bill."""
        engine = self.engines[job.operation]
        started = time.perf_counter()
        self.metrics.images_in_flight.inc(job.request.num_images)
        try:
            async with asyncio.timeout(self.timeout_s):  # bounds every attempt and download
                result = await self._call(engine, job, ctx)
        except TimeoutError:
            raise DeadlineExceeded(
                f"the request did not finish within request_timeout_s ({self.timeout_s:g} s)") from None
        finally:
            self.metrics.images_in_flight.dec(job.request.num_images)
        if isinstance(result, DescribeResult) and not result.descriptions:
            raise UpstreamFailed(f"engine {engine.name} returned no description")
        # engines that know their wait time (the relay) report it; for the rest all of it is engine time
        engine_seconds = ctx.engine_seconds or (time.perf_counter() - started - ctx.queue_seconds)
        return Report(result, engine_seconds, ctx.queue_seconds, list(ctx.attempts), ctx.channel)

    async def _call(self, engine: Any, job: Job, ctx: EngineContext) -> Any:
        while True:
            try:
                return await engine.run(job.request, ctx)
            except Busy as exc:
                if job.submission.mode is not Mode.ASYNC:
                    raise
                waited = time.perf_counter()
                await asyncio.sleep(min(exc.retry_after, max(0.05, ctx.remaining())))
                ctx.queue_seconds += time.perf_counter() - waited
