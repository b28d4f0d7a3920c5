"""The bounded worker pool: 503 + Retry-After when full, deadlines honoured, no unbounded queue.

Nothing here waits on time: jobs signal events when they start, and the pool's own FIFO order
(one worker) says when an earlier job has finished."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from ideohub.domain.errors import Busy, DeadlineExceeded
from ideohub.engines.base import WorkerPool


async def until_started(event: threading.Event) -> None:
    """Wait for a job (in a worker thread) to signal that it is running."""
    assert await asyncio.to_thread(event.wait, 30), "the job never started"


def test_full_queue_answers_busy_with_retry_after():
    pool = WorkerPool(workers=1, queue_size=1)
    started, gate = threading.Event(), threading.Event()

    def blocker() -> bool:
        started.set()
        return gate.wait(30)

    async def main() -> None:
        first = asyncio.create_task(pool.run(blocker, deadline=time.monotonic() + 60))
        await until_started(started)  # the worker is busy
        second = asyncio.create_task(pool.run(lambda: 2, deadline=time.monotonic() + 60))
        await asyncio.sleep(0)  # one turn of the loop: the task takes its queue slot (no time passes)
        assert pool.pending == 2
        with pytest.raises(Busy) as info:
            await pool.run(lambda: 3, deadline=time.monotonic() + 60)
        assert info.value.status == 503 and info.value.retry_after >= 1
        gate.set()
        assert await first is True and await second == 2
        assert pool.pending == 0
        assert await pool.run(lambda: 4, deadline=time.monotonic() + 60) == 4  # capacity is back

    asyncio.run(main())
    pool.shutdown()


def test_deadline_exceeded_and_queued_job_never_starts():
    pool = WorkerPool(workers=1, queue_size=2)
    ran: list[str] = []
    started, gate = threading.Event(), threading.Event()

    def slow() -> None:
        ran.append("slow")
        started.set()
        gate.wait(30)

    def late() -> None:
        ran.append("late")

    async def main() -> None:
        running = asyncio.create_task(pool.run(slow, deadline=time.monotonic() + 60))
        await until_started(started)
        with pytest.raises(DeadlineExceeded):  # a deadline already past: answered at once
            await pool.run(late, deadline=time.monotonic())
        assert pool.pending == 2  # the running job and the expired one still hold their slots
        gate.set()
        await running
        # one worker runs jobs in order, so once this one is done the expired one has been
        # handled (and its slot released, which the loop does before resuming us)
        assert await pool.run(lambda: "next", deadline=time.monotonic() + 60) == "next"
        assert pool.pending == 0

    asyncio.run(main())
    assert ran == ["slow"]  # the queued job saw its deadline had passed and never ran
    pool.shutdown()
