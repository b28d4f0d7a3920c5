"""The bounded worker pool: 503 + Retry-After when full, deadlines honoured, no unbounded queue."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from ideohub.domain.errors import Busy, DeadlineExceeded
from ideohub.engines.base import WorkerPool


def test_full_queue_answers_busy_with_retry_after():
    pool = WorkerPool(workers=1, queue_size=1)
    gate = threading.Event()

    async def main() -> None:
        first = asyncio.create_task(pool.run(gate.wait, deadline=time.monotonic() + 10))
        second = asyncio.create_task(pool.run(lambda: 2, deadline=time.monotonic() + 10))
        await asyncio.sleep(0.05)
        with pytest.raises(Busy) as info:
            await pool.run(lambda: 3, deadline=time.monotonic() + 10)
        assert info.value.status == 503 and info.value.retry_after >= 1
        gate.set()
        assert await first is True and await second == 2
        assert pool.pending == 0
        assert await pool.run(lambda: 4, deadline=time.monotonic() + 10) == 4  # capacity is back

    asyncio.run(main())
    pool.shutdown()


def test_deadline_exceeded_and_queued_job_never_starts():
    pool = WorkerPool(workers=1, queue_size=2)
    started: list[str] = []
    gate = threading.Event()

    def slow() -> None:
        started.append("slow")
        gate.wait(5)

    def late() -> None:
        started.append("late")

    async def main() -> None:
        running = asyncio.create_task(pool.run(slow, deadline=time.monotonic() + 10))
        await asyncio.sleep(0.05)
        with pytest.raises(DeadlineExceeded):
            await pool.run(late, deadline=time.monotonic() + 0.1)
        assert pool.pending == 2  # the running job and the expired one still hold their slots
        gate.set()
        await running
        await asyncio.sleep(0.05)
        assert pool.pending == 0

    asyncio.run(main())
    assert started == ["slow"]  # the queued job saw its deadline had passed and never ran
    pool.shutdown()
