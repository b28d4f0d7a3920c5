"""The runner: execution → delivery → settlement for one job, under this process's lease.

A job arrives either already running (the embedded default runs a synchronous request in its
caller's task: admission recorded it as running under this process) or as a generation id from
the queue, which the runner first claims (queued → running; a generation that finished, or that
another live worker holds, is not run again) and rebuilds from its record and staged inputs.
Whatever happens, the money moves once (settlement's compare-and-set), the key's images lease is
released, staged inputs are deleted, and the generation's waiters are told it ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from ..config import Settings
from ..domain.documents import document_files, from_document
from ..domain.errors import DeadlineExceeded, IdeohubError
from ..domain.generations import Mode, Submission
from ..domain.operations import DescribeResult, JsonResult, Operation
from ..domain.prices import PriceTable
from ..gate.limits import Limiter
from ..media.storage import Storage
from ..observability import Metrics
from ..store.generations import GenerationStore, NotHeld
from ..store.ledger import DEFAULT_ACCOUNT, Ledger
from ..store.models import RequestRecord
from ..store.repository import _aware, utcnow
from .delivery import Delivered, Delivery
from .execution import Execution
from .job import Job, Outcome
from .settlement import Abandoned, Settlement

log = logging.getLogger("ideohub.runner")
MAX_RUNS = 3  # a generation whose runs keep dying (a poison input) fails after this many


class Runner:
    def __init__(self, settings: Settings, store: GenerationStore, ledger: Ledger, storage: Storage,
                 prices: PriceTable, limiter: Limiter, execution: Execution, delivery: Delivery,
                 settlement: Settlement, metrics: Metrics, owner: str,
                 render: Callable[[Outcome], bytes] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.ledger = ledger
        self.storage = storage
        self.prices = prices
        self.limiter = limiter
        self.execution = execution
        self.delivery = delivery
        self.settlement = settlement
        self.metrics = metrics
        self.owner = owner
        self.render = render
        self.publish: Callable[[str], Awaitable[None]] = _nothing  # the dispatcher's: wakes waiters
        self.stopping = False
        self.running: dict[str, asyncio.Task[Any]] = {}  # generation id → the task running it

    # ------------------------------------------------------------ entry points

    async def run_admitted(self, job: Job, render: Callable[[Outcome], bytes] | None = None) -> Outcome:
        """A job admission recorded as running under this process (the caller waits in its task)."""
        return await self._run(job, render or self.render, time.perf_counter())

    async def run_queued(self, generation_id: str, job: Job | None = None) -> Outcome | None:
        """Claim a queued generation (or one whose lease expired) and run it; None when it is not
        claimable. ``job``: the admitted job, when the admitting process runs it itself."""
        started = time.perf_counter()
        now = utcnow()
        record = await self.store.claim(generation_id, self.owner, now - timedelta(seconds=self.settings.stale_after_s),
                                        lambda record: self.settlement.started(job_shell(record)),
                                        queued_after=now - timedelta(seconds=self.settings.max_queue_wait_s))
        if record is None:  # finished, held by a live worker, or waited too long (the reconciler ends it)
            return None
        runs = record.runs or 1
        if runs > 1:
            self.metrics.redeliveries.inc()
            await self.storage.delete_prefix(f"{generation_id}-")  # what an earlier run left
        if runs > MAX_RUNS:
            await self.expire(record, Abandoned(f"the generation's run stopped {MAX_RUNS} times; nothing was charged"),
                              owner=self.owner)
            return None
        if job is None:
            try:
                job = await self.load(record)
            except IdeohubError as exc:
                await self.expire(record, exc, owner=self.owner)
                return None
        job.run = runs
        task = asyncio.current_task()
        if task is not None:
            self.running[generation_id] = task
        try:
            return await self._run(job, self.render, started)
        finally:
            self.running.pop(generation_id, None)

    async def load(self, record: RequestRecord) -> Job:
        """A queued generation rebuilt from its record and staged inputs (on any worker)."""
        files: dict[str, bytes] = {}
        for name in document_files(record.resume):
            data = await self.storage.get(name)
            if data is None:
                raise Abandoned(f"the generation's staged input {name} is gone")
            files[name] = data
        if not record.resume:
            raise Abandoned("the generation's inputs were not staged (its caller ran it and stopped)")
        request = from_document(record.resume, files)
        group = record.resume.get("price_group") or await self.store.account_group(record.account_id or DEFAULT_ACCOUNT)
        quote = self.prices.quote(request, group or "default")
        job = job_shell(record)
        job.request, job.quote, job.staged = request, quote, list(files)
        job.resumable = True
        job.leased = True  # whether the admitting process took an images lease is not recorded: releasing is idempotent
        return job

    async def expire(self, record: RequestRecord, exc: BaseException, owner: str | None = None) -> bool:
        """End a generation that will not run (again): refund, failed, notifications, cleanup."""
        job = job_shell(record)
        job.staged = document_files(record.resume)
        return await self.abort(job, exc, owner)

    async def abort(self, job: Job, exc: BaseException, owner: str | None = None) -> bool:
        """End a job that did not run (never enqueued, waited too long, abandoned). False when
        someone else ended it first (then nothing is touched)."""
        ended = await self.settlement.fail(job, job.request_id, owner, exc, latency_ms=None)
        if ended:
            for name in job.staged:
                await self.storage.delete(name)
            await self.storage.delete_prefix(f"{job.generation_id}-")
            await self.limiter.release_images(job.key_id, job.request_id)
            await self._ended(job)
        return ended

    # ------------------------------------------------------------ the stages

    async def _run(self, job: Job, render: Callable[[Outcome], bytes] | None, started: float) -> Outcome:
        ctx = self.execution.context(job)
        if job.resumable:  # may die mid-call and run again elsewhere: its attempts are written as they start
            ctx.journal = self.settlement.journal(job)
        delivered: Delivered | None = None
        handed_back = False
        try:
            report = await self.execution.run(job, ctx)
            if isinstance(report.result, DescribeResult):
                outcome = Outcome(job.operation, descriptions=report.result.descriptions)
            elif isinstance(report.result, JsonResult):
                outcome = Outcome(job.operation, document=report.result.body)
            else:
                delivered = await self.delivery.deliver(job, report.result)
                outcome = Outcome(job.operation, images=delivered.images)
            outcome.generation_id, outcome.request = job.generation_id, job.request
            outcome.engine_seconds, outcome.queue_seconds = report.engine_seconds, report.queue_seconds
            if render is not None:
                outcome.body = render(outcome)
            await self.settlement.complete(job, self.owner, delivered, outcome.body,
                                           [] if ctx.journal else report.attempts, report.channel,
                                           (time.perf_counter() - started) * 1000)
            return outcome
        except BaseException as exc:
            if delivered is not None:
                await self.delivery.discard(delivered.rows)
            if isinstance(exc, asyncio.CancelledError) and self.stopping and job.resumable:
                handed_back = await self.store.hand_back(job.request_id, self.owner)
                if handed_back:
                    raise  # shutting down: queued again for the next start or another worker
            failure: BaseException = exc
            if isinstance(exc, NotHeld):
                failure = DeadlineExceeded("the request's reservation expired before it completed; nothing was charged")
            await self.settlement.fail(job, job.request_id, self.owner, failure, [] if ctx.journal else ctx.attempts,
                                       ctx.channel, (time.perf_counter() - started) * 1000)
            if failure is not exc:
                raise failure from None
            raise
        finally:
            if not handed_back:
                for name in job.staged:
                    await self.storage.delete(name)
                job.staged = []
            if job.leased:
                job.leased = False
                await self.limiter.release_images(job.key_id, job.request_id)
            await self._ended(job)

    async def _ended(self, job: Job) -> None:
        """Wake the generation's waiters: only a synchronous caller (or an idempotent retry of one)
        waits for an end; an asynchronous generation is polled or told by webhook."""
        if job.submission.mode is Mode.SYNC:
            await self.publish(job.generation_id)


def job_shell(record: RequestRecord) -> Job:
    """A job from its record alone (no request, no quote): enough to say how it ended."""
    submission = Submission(Mode(record.mode or "sync"), record.webhook_url, record.callback_url)
    return Job(record.id, record.generation_id or "", Operation(record.operation), None,  # type: ignore[arg-type]
               record.key_id or "", record.account_id or DEFAULT_ACCOUNT, None,  # type: ignore[arg-type]
               submission, _aware(record.created_at), record.engine or "", run=record.runs or 1)


async def _nothing(_generation_id: str) -> None:
    return None
