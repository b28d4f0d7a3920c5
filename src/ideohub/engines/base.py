"""The engine contract: one small protocol per operation, and the bounded pool heavy work runs in.

An engine takes one canonical request and returns a result; it never sees HTTP. Every
engine sets ``is_image_safe`` on what it returns (local engines run the classifier; relayed
images carry the upstream's verdict).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from ..domain.errors import Busy, DeadlineExceeded
from ..domain.operations import (
    DescribeRequest,
    DescribeResult,
    EditRequest,
    GenerateRequest,
    ImageResult,
    ReframeRequest,
    RemixRequest,
    UpscaleRequest,
    V3EditRequest,
    V3GenerateRequest,
    V3GenerateTransparentRequest,
    V3ReframeRequest,
    V3RemixRequest,
    V3ReplaceBackgroundRequest,
)

Req = TypeVar("Req", contravariant=True)
Res = TypeVar("Res", covariant=True)
T = TypeVar("T")


@dataclass
class Attempt:
    """One call to an upstream, for the usage record and cost reconciliation."""

    channel: str
    outcome: str  # ok, failed, auth, timeout, rejected, download_failed
    status_code: int | None
    latency_s: float
    images: int = 0  # images the upstream produced (what it may bill for)
    cost_multiplier: float = 1.0


@dataclass
class EngineContext:
    request_id: str
    deadline: float  # time.monotonic() by which the result must be ready
    pool: "WorkerPool"
    engine_seconds: float = 0.0  # time spent waiting on engines/upstreams (for the overhead header)
    queue_seconds: float = 0.0  # time spent waiting for a worker (reported as X-Ideohub-Queue-Ms)
    attempts: list[Attempt] = field(default_factory=list)
    channel: str | None = None  # the upstream that produced the result, if any
    journal: "AttemptJournal | None" = None  # records attempts as they start (a run that may die mid-call)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def attempt_started(self, channel: str, images: int, cost_multiplier: float) -> Any:
        """Before an upstream call: with a journal, its row is written now (at its worst-case
        cost), so a process killed mid-call still leaves the attempt on record."""
        if self.journal is None:
            return None
        return await self.journal.started(channel, images, cost_multiplier)

    async def attempt_ended(self, token: Any, attempt: Attempt) -> None:
        self.attempts.append(attempt)
        if self.journal is not None and token is not None:
            await self.journal.ended(token, attempt)


class AttemptJournal(Protocol):
    async def started(self, channel: str, images: int, cost_multiplier: float) -> Any: ...
    async def ended(self, token: Any, attempt: Attempt) -> None: ...


class Engine(Protocol, Generic[Req, Res]):
    name: str

    async def run(self, request: Req, ctx: EngineContext) -> Res: ...


# One protocol per operation: what an engine for that operation must accept and return.
GenerateEngine = Engine[GenerateRequest, ImageResult]
RemixEngine = Engine[RemixRequest, ImageResult]
EditEngine = Engine[EditRequest, ImageResult]
ReframeEngine = Engine[ReframeRequest, ImageResult]
UpscaleEngine = Engine[UpscaleRequest, ImageResult]
DescribeEngine = Engine[DescribeRequest, DescribeResult]
V3GenerateEngine = Engine[V3GenerateRequest, ImageResult]
V3RemixEngine = Engine[V3RemixRequest, ImageResult]
V3EditEngine = Engine[V3EditRequest, ImageResult]  # also serves inpaint
V3ReframeEngine = Engine[V3ReframeRequest, ImageResult]
V3ReplaceBackgroundEngine = Engine[V3ReplaceBackgroundRequest, ImageResult]
V3GenerateTransparentEngine = Engine[V3GenerateTransparentRequest, ImageResult]


class WorkerPool:
    """Threads for CPU-heavy work (inference, encoding) with a bounded queue.

    ``workers`` jobs run at once and ``queue_size`` more may wait; beyond that ``run`` raises
    ``Busy`` (503 + Retry-After estimated from recent job times) instead of queueing without
    bound. A job whose deadline passes while it waits is never started. A running job cannot
    be interrupted (native code), so its slot is held until it really finishes.
    """

    def __init__(self, workers: int = 1, queue_size: int = 4) -> None:
        self.workers = max(1, workers)
        self.capacity = self.workers + max(0, queue_size)
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="ideohub-worker")
        self._lock = threading.Lock()
        self._pending = 0
        self._avg_s = 5.0  # EWMA of job duration, seeds the first Retry-After

    @property
    def pending(self) -> int:
        return self._pending

    def _retry_after(self) -> int:
        return max(1, round(self._avg_s * self._pending / self.workers))

    async def run(self, fn: Callable[..., T], *args: Any, deadline: float, ctx: EngineContext | None = None) -> T:
        """Run ``fn(*args)`` on a worker; ``ctx.queue_seconds`` gets the time it waited for one."""
        with self._lock:
            if self._pending >= self.capacity:
                raise Busy(
                    f"all {self.workers} workers are busy and {self.capacity - self.workers} requests are queued",
                    retry_after=self._retry_after(),
                )
            self._pending += 1

        submitted = time.monotonic()

        def job() -> T:
            start = time.monotonic()
            if ctx is not None:
                ctx.queue_seconds += start - submitted
            if start >= deadline:
                raise DeadlineExceeded("the request's deadline passed while it was queued")
            try:
                return fn(*args)
            finally:
                self._avg_s = 0.7 * self._avg_s + 0.3 * (time.monotonic() - start)

        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, job)
        future.add_done_callback(lambda _f: self._release())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            future.add_done_callback(lambda f: f.exception())  # the result is dropped; silence "never retrieved"
            raise DeadlineExceeded("the request did not finish before its deadline") from None

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
