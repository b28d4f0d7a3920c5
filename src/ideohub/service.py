"""The generation path behind the HTTP layer, assembled from its stages (``ideohub.stages``):

admission → dispatch (run here, or enqueue for a worker) → execution → delivery → settlement.

A synchronous caller of the embedded default runs its generation in its own task (admission
records it as running under this process: authentication, admission and settlement are the
only three transactions). Otherwise the generation is queued: the caller subscribes to its end,
enqueues it, and waits (synchronous) or answers ``{"generation_id"}`` at once (asynchronous).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .config import Settings
from .console.sessions import delete_expired as delete_expired_sessions
from .domain.errors import DeadlineExceeded, IdeohubError
from .domain.generations import PENDING_STATES, Mode, Submission
from .domain.operations import CanonicalRequest, Operation
from .domain.prices import PriceTable, Quote
from .engines.base import WorkerPool
from .engines.registry import engine_names
from .gate.limits import Limiter, MemoryLimiter
from .media.signing import UrlSigner
from .media.storage import Storage
from .observability import Metrics
from .reconciler import Reconciler
from .stages.admission import IDEMPOTENCY_TTL, Admission, Earlier
from .stages.delivery import Delivery
from .stages.execution import Execution
from .stages.job import DeliveredImage, Job, Outcome
from .stages.runner import Runner
from .stages.settlement import Abandoned, Settlement
from .store.generations import GenerationStore
from .store.ledger import Ledger
from .store.models import ApiKey, StoredImage
from .store.repository import Repository, _aware, new_id, utcnow

__all__ = ["Service", "Outcome", "DeliveredImage", "Submitted", "Replayed", "Abandoned", "IdempotencyConflict",
           "IDEMPOTENCY_TTL"]

log = logging.getLogger("ideohub.service")
PARTIAL_WRITE_GRACE_S = 3600  # a temporary file this old was left by a crash mid-write


@dataclass
class Submitted:
    """What the HTTP layer answers with: the finished outcome (sync), or the id alone (async)."""

    generation_id: str
    request_id: str
    submission: Submission
    created_at: datetime
    outcome: Outcome | None = None
    request: CanonicalRequest | None = None  # as admitted (its seed fixed); None for a replay


class Replayed(IdeohubError):
    """A generation's recorded failure, answered to a caller who did not run it (an
    ``Idempotency-Key`` retry, or a synchronous caller whose generation ran on a worker)."""

    title = ""  # the problem handler's title for ``status`` (api.problems)

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class IdempotencyConflict(IdeohubError):
    status = 409
    title = "Conflict"




class Service:
    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        storage: Storage,
        signer: UrlSigner,
        engines: dict[Operation, Any],
        pool: WorkerPool,
        metrics: Metrics | None = None,
        *,
        ledger: Ledger | None = None,
        prices: PriceTable | None = None,
        limiter: Limiter | None = None,
        render: Callable[[Outcome], bytes] | None = None,
        instance_id: str | None = None,
        dispatch: Any = None,
        classifier: Any = None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.storage = storage
        self.signer = signer
        self.engines = engines
        self.pool = pool
        self.metrics = metrics or Metrics()
        self.ledger = ledger or Ledger(repo.session)
        self.prices = prices or PriceTable.load()
        self.limiter: Limiter = limiter or MemoryLimiter(lease_s=settings.request_timeout_s + settings.reservation_grace_s)
        self.instance_id = instance_id or new_id("proc")
        self.store = GenerationStore(repo.session, self.ledger, getattr(repo, "tx", None))
        self.settlement = Settlement(self.store, self.prices, self.metrics, settings.url_ttl_s)
        self.runner = Runner(settings, self.store, self.ledger, storage, self.prices, self.limiter,
                             Execution(engines, pool, settings.request_timeout_s, self.metrics),
                             Delivery(storage, signer, classifier), self.settlement, self.metrics, self.instance_id,
                             render)
        if dispatch is None:
            from .dispatch.local import LocalDispatch

            dispatch = LocalDispatch(self.runner, engines)
        self.dispatch = dispatch
        self.runner.publish = dispatch.publish
        try:
            names = engine_names(settings)
        except ValueError:
            names = {}
        names.update({op: getattr(e, "name", "") for op, e in engines.items()})
        self.admission = Admission(settings, self.store, repo, self.ledger, self.prices, self.limiter, storage,
                                   names, dispatch.available)
        self.reconciler = Reconciler(settings, self.store, self.runner, dispatch)
        self.last_released = 0

    @property
    def render(self) -> Callable[[Outcome], bytes] | None:
        return self.runner.render

    @property
    def outbox_changed(self) -> Callable[[], None]:
        return self.settlement.outbox_changed

    @outbox_changed.setter
    def outbox_changed(self, wake: Callable[[], None]) -> None:
        self.settlement.outbox_changed = wake  # the app sets it: wakes the webhook sender

    # ------------------------------------------------------------ submission

    async def handle(self, operation: Operation, parse: Callable[[], Awaitable[CanonicalRequest]], key: ApiKey,
                     request_id: str, render: Callable[[Outcome], bytes] | None = None) -> Outcome:
        """A synchronous generation from a parser that returns only the request (tests)."""

        async def parse_sync() -> tuple[CanonicalRequest, Submission]:
            return await parse(), Submission()

        submitted = await self.submit(operation, parse_sync, key, request_id, render=render)
        assert submitted.outcome is not None
        return submitted.outcome

    async def submit(
        self,
        operation: Operation,
        parse: Callable[[], Awaitable[tuple[CanonicalRequest, Submission]]],
        key: ApiKey,
        request_id: str,
        *,
        render: Callable[[Outcome], bytes] | None = None,
        idempotency_key: str | None = None,
        on_admitted: Callable[[str], None] | None = None,
    ) -> Submitted:
        """Admit a generation, then run it here (embedded, sync), or queue it and wait (sync) or
        answer its id (async). A request that would be refused is refused before anything runs."""
        inline = self.dispatch.inline and not self.runner.stopping

        async def parse_and_place() -> tuple[CanonicalRequest, Submission]:
            request, submission = await parse()
            placed["inline"] = inline and submission.mode is Mode.SYNC
            return request, submission

        placed = {"inline": False}
        admitted = await self.admission.admit(operation, parse_and_place, key, request_id,
                                              idempotency_key=idempotency_key,
                                              inline_owner=lambda: self.instance_id if placed["inline"] else None)
        if isinstance(admitted, Earlier):
            return await self._replay(request_id, key, operation, admitted, on_admitted)
        job = admitted
        if placed["inline"]:
            # admitted as running: the row says so, but it was not staged (its caller runs it, now)
            if on_admitted is not None:
                on_admitted(job.generation_id)
            outcome = await self.runner.run_admitted(job, render)
            return Submitted(job.generation_id, request_id, job.submission, job.created_at, outcome, job.request)
        return await self._queue(job, render, on_admitted)

    async def quote(self, operation: Operation, parse: Callable[[], Awaitable[tuple[CanonicalRequest, Submission]]],
                    key: ApiKey, request_id: str) -> Quote:
        """A dry run: validated and priced exactly as the request would be, nothing run or reserved."""
        return await self.admission.quote(operation, parse, key, request_id)

    async def _queue(self, job: Job, render: Callable[[Outcome], bytes] | None,
                     on_admitted: Callable[[str], None] | None) -> Submitted:
        submitted = Submitted(job.generation_id, job.request_id, job.submission, job.created_at, request=job.request)
        if on_admitted is not None:
            on_admitted(job.generation_id)
        async with self.dispatch.waiting(job.generation_id) as ended:  # subscribed before the enqueue
            try:
                await self.dispatch.enqueue(job.generation_id, job.operation, job if self.dispatch.inline else None)
            except BaseException as exc:  # never queued: refunded at once, the caller told why
                await self.runner.abort(job, exc)
                raise
            if job.submission.mode is Mode.ASYNC:
                return submitted
            record = await self._wait(job.generation_id, ended)
        submitted.outcome = self._answer(record, job.operation, job.generation_id)
        return submitted

    async def _wait(self, generation_id: str, ended: asyncio.Event) -> Any:
        """Until the generation ends — woken by the notification of its end, then the record is
        read — at most its queue wait plus its run time. The record is also re-read every
        ``stale_after_s`` without a notification: a worker killed between recording the end and
        publishing it (or a lost publish) delays the answer by that much, not by the whole deadline."""
        deadline = time.monotonic() + self.settings.max_queue_wait_s + self.settings.request_timeout_s + 30
        recheck_s = max(0.5, self.settings.stale_after_s)
        while True:
            try:
                await asyncio.wait_for(ended.wait(), max(0.0, min(recheck_s, deadline - time.monotonic())))
            except TimeoutError:
                pass
            ended.clear()
            record = await self.repo.get_generation(generation_id)
            if record is None or record.state not in PENDING_STATES or time.monotonic() >= deadline:
                return record

    async def _wait_for(self, generation_id: str) -> Any:
        """``_wait`` for a generation someone else submitted: subscribe, then re-check the record."""
        async with self.dispatch.waiting(generation_id) as ended:
            record = await self.repo.get_generation(generation_id)
            if record is None or record.state not in PENDING_STATES:
                return record
            return await self._wait(generation_id, ended)

    def _answer(self, record: Any, operation: Operation, generation_id: str) -> Outcome:
        if record is None:
            raise DeadlineExceeded("the generation's record is gone")
        if record.state == "failed":
            raise Replayed(record.status_code or 500, record.error or "the generation failed")
        if record.state != "done" or record.result is None:
            raise DeadlineExceeded(f"the generation is still running; poll /v1/generations/{generation_id}")
        return Outcome(operation, body=record.result.encode())

    async def _replay(self, request_id: str, key: ApiKey, operation: Operation, earlier: Earlier,
                      on_admitted: Callable[[str], None] | None) -> Submitted:
        """The answer an ``Idempotency-Key`` retry gets: the first request's, never charged again.
        A synchronous retry of a pending generation waits for it."""
        if earlier.fingerprint != earlier.mine:
            await self._record_replay(request_id, key, operation, "failed", 409, earlier.request_id)
            raise IdempotencyConflict("Idempotency-Key: was used for a different request in the last 24 hours")
        record = await self.repo.get_request(earlier.request_id)
        admitting_until = time.monotonic() + min(30.0, self.settings.request_timeout_s)
        while record is None and time.monotonic() < admitting_until:
            await asyncio.sleep(0.05)  # the first request is still being admitted (a moment, at most)
            record = await self.repo.get_request(earlier.request_id)
        if record is None:
            raise IdempotencyConflict("Idempotency-Key: its first request is no longer on record")
        if record.generation_id and on_admitted is not None:
            on_admitted(record.generation_id)
        submission = Submission(Mode(record.mode or "sync"))
        if record.state in PENDING_STATES and record.generation_id and submission.mode is Mode.SYNC:
            record = await self._wait_for(record.generation_id)
        failed = record.state == "failed" or record.generation_id is None
        await self._record_replay(request_id, key, operation, "failed" if failed else "done", record.status_code,
                                  earlier.request_id)
        if failed:
            raise Replayed(record.status_code or 500, record.error or "the first request failed")
        submitted = Submitted(record.generation_id, earlier.request_id, submission, _aware(record.created_at))
        if submission.mode is Mode.SYNC:
            if record.result is None:
                raise DeadlineExceeded("the first request with this Idempotency-Key is still running; "
                                       f"poll /v1/generations/{record.generation_id}")
            submitted.outcome = Outcome(Operation(record.operation), body=record.result.encode())
        return submitted

    async def _record_replay(self, request_id: str, key: ApiKey, operation: Operation, state: str,
                             status: int | None, first_id: str) -> None:
        now = utcnow()
        await self.store.record_refusal({
            "id": request_id, "key_id": key.id, "operation": operation.value, "params": {"replay_of": first_id},
            "state": state, "images": 0, "created_at": now, "updated_at": now, "finished_at": now,
            "account_id": key.account_id, "price_micros": 0, "status_code": status})

    # ------------------------------------------------------------ liveness, shutdown, sweeping

    async def stop(self) -> None:
        await self.dispatch.aclose()

    async def heartbeat(self) -> None:
        await self.store.heartbeat(self.instance_id,
                                   self.settings.request_timeout_s + self.settings.reservation_grace_s)

    async def take_over(self, now: datetime | None = None) -> int:
        """One reconciler pass; returns how many generations it took over (requeued or ended)."""
        done = await self.reconciler.run_once(now)
        return done["requeued"] + done["abandoned"] + done["expired"]

    async def sweep(self, now: datetime | None = None) -> int:
        """Delete expired images (file and row), release abandoned reservations, drop usage past
        its retention, and expired console sessions; returns how many images were deleted (``last_released``: reservations)."""
        now = now or utcnow()
        self.last_released = await self.ledger.release_expired(now)
        if self.last_released:
            log.warning('{"sweeper": "released abandoned reservations", "count": %d}', self.last_released)
        total = 0
        for batch in (self.repo.expired_images, self.repo.images_of_failed_requests):
            while True:
                rows = await batch(now)
                if not rows:
                    break
                await self._unstore(rows)
                total += len(rows)
        await self.storage.sweep_partial(now.timestamp() - PARTIAL_WRITE_GRACE_S)
        await self.repo.delete_expired_idempotency(now)
        await delete_expired_sessions(self.repo.session, now)
        await self.repo.delete_usage_before(now - timedelta(days=self.settings.usage_retention_days))
        return total

    async def _unstore(self, rows: list[StoredImage]) -> None:
        """Files first, then rows: an interruption leaves rows (which the sweeper finds), never files."""
        for row in rows:
            await self.storage.delete(row.storage_key)
        await self.repo.delete_images([r.id for r in rows])
