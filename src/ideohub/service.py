"""One generation's path behind the HTTP layer, in one place:

admission (rpm, parse, permission, prompt policy, idempotency, quote, images lease, seed fixed,
reservation, the generation's record) → execution (the engine, under a deadline that starts
here) → delivery (storage, signed URLs) → rendering → settlement (charge, final state and the
webhook or callback it owes, in one transaction). A failure anywhere refunds the reservation
exactly once and deletes what was stored: nothing half-written survives.

A synchronous caller waits for execution in its HTTP call; an asynchronous one gets the
generation id at once and execution runs in this process's background. Every pending generation
carries this process's id and heartbeat: when a process dies, another (or the next start) takes
its generations over after ``stale_after_s`` — an async one runs again from its staged inputs;
a sync one (its caller is gone) fails with a refund.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import Settings
from .domain.documents import document_files, from_document, to_document
from .domain.errors import (
    Busy,
    DeadlineExceeded,
    EngineUnavailable,
    Forbidden,
    IdeohubError,
    SafetyRejected,
    UpstreamFailed,
)
from .domain.generations import (
    PENDING_STATES,
    FailureReason,
    Mode,
    Submission,
    failure_reason,
    fingerprint,
    new_generation_id,
)
from .domain.prices import PER_INPUT, PriceTable, Quote
from .gate.limits import Limiter, MemoryLimiter
from .domain.operations import SEED_MAX, CanonicalRequest, DescribeResult, ImageOutput, ImageResult, Operation
from .engines.base import EngineContext, WorkerPool
from .media.signing import UrlSigner
from .observability import Metrics
from .media.storage import Storage
from .store.ledger import DEFAULT_ACCOUNT, Ledger
from .store.models import ApiKey, StoredImage
from .notify import payloads
from .notify.payloads import TASK_FAILED, TASK_PROCESSING, TASK_SUCCEED
from .store.repository import Repository, _aware, new_id, utcnow

log = logging.getLogger("ideohub.service")

_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
PARTIAL_WRITE_GRACE_S = 3600  # a temporary file this old was left by a crash mid-write


@dataclass
class DeliveredImage:
    output: ImageOutput
    url: str | None  # None when the image failed the safety check


@dataclass
class Outcome:
    operation: Operation
    images: list[DeliveredImage] | None = None
    descriptions: list[str] | None = None
    engine_seconds: float = 0.0
    queue_seconds: float = 0.0  # waiting for a worker (not overhead, not engine time)
    body: bytes | None = None  # the answer, rendered before the money moved


@dataclass
class Generation:
    """One admitted generation while this process runs it."""

    request_id: str
    generation_id: str
    operation: Operation
    request: CanonicalRequest
    key_id: str
    account_id: str
    quote: Quote
    engine: Any
    submission: Submission
    created_at: datetime
    leased: bool = False
    staged: list[str] = field(default_factory=list)  # storage keys of inputs kept for a resume


@dataclass
class Submitted:
    """What the HTTP layer answers with: the finished outcome (sync), or the id alone (async)."""

    generation_id: str
    request_id: str
    submission: Submission
    created_at: datetime
    outcome: Outcome | None = None


class Replayed(IdeohubError):
    """The stored failure of the generation an ``Idempotency-Key`` retry points at."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = _TITLES.get(status, "Error")


class Abandoned(IdeohubError):
    """The process running a generation stopped, and it could not run again."""

    status = 503
    title = "Service Unavailable"


class IdempotencyConflict(IdeohubError):
    status = 409
    title = "Conflict"


_TITLES = {400: "Bad Request", 402: "Payment Required", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
           413: "Payload Too Large", 415: "Unsupported Media Type", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
IDEMPOTENCY_TTL = timedelta(hours=24)


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
        self.render = render  # the answer's bytes (the HTTP layer's renderer); per call for tests
        self.instance_id = instance_id or new_id("proc")
        self._banned = [t.lower() for t in settings.banned_prompt_terms if t.strip()]
        self.last_released = 0
        self._reservation_ttl = timedelta(seconds=settings.request_timeout_s + settings.reservation_grace_s)
        self._background: set[asyncio.Task[Any]] = set()
        self._finished: dict[str, asyncio.Event] = {}  # generation id → set when it ends (in-process waiters)
        self._stopping = False
        self.outbox_changed: Callable[[], None] = lambda: None  # the app sets it: wakes the delivery worker

    # ------------------------------------------------------------ admission

    async def handle(
        self,
        operation: Operation,
        parse: Callable[[], Awaitable[CanonicalRequest]],
        key: ApiKey,
        request_id: str,
        render: Callable[[Outcome], bytes] | None = None,
    ) -> Outcome:
        """A synchronous generation from a parser that returns only the request."""

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
        """Admit a generation, then run it here (sync) or in the background (async). A request
        that would be refused is refused here, before anything runs, with its own status."""
        started = time.perf_counter()
        account_id = key.account_id or DEFAULT_ACCOUNT
        created = await self.repo.start_request(request_id, key.id, operation.value, account_id)
        reserved = False
        gen: Generation | None = None
        try:
            rpm = key.rpm or self.settings.default_rpm
            if rpm:
                await self.limiter.hit(key.id, rpm)
            request, submission = await parse()
            if key.allowed_operations is not None and operation.value not in key.allowed_operations:
                raise Forbidden(f"this key may not use {operation.official_path} (operation '{operation.value}')")
            self.check_prompt(request)
            engine = self.engine_for(operation)
            account = await self.ledger.get_account(account_id)
            if account is None:
                raise Forbidden(f"the key's account {account_id} no longer exists")
            if idempotency_key is not None:
                mine = fingerprint(request, submission)
                earlier = await self.repo.claim_idempotency(account_id, idempotency_key, mine, request_id,
                                                            IDEMPOTENCY_TTL)
                if earlier is not None:
                    return await self._replay(request_id, earlier, mine, submission, on_admitted)
            quote = self.prices.quote(request, account.group_name)
            request = _with_seed(request)
            gen = Generation(request_id, new_generation_id(), operation, request, key.id, account_id, quote, engine,
                             submission, created)
            max_images = key.max_images_in_flight or self.settings.default_max_images_in_flight
            if max_images:
                await self.limiter.acquire_images(key.id, request_id, request.num_images, max_images)
                gen.leased = True
            await self.ledger.reserve(request_id, account_id, key.id, quote.total_micros, self._reservation_ttl)
            reserved = True
            resume = await self._stage(gen) if submission.mode is Mode.ASYNC else None
            now = utcnow()
            await self.repo.update_request(
                request_id, "running", params=request.summary(), engine=engine.name, tier=quote.key.tier,
                generation_id=gen.generation_id, mode=submission.mode.value, webhook_url=submission.webhook_url,
                callback_url=submission.callback_url, resume=resume, owner=self.instance_id, heartbeat_at=now,
                started_at=now if submission.mode is Mode.SYNC else None,  # a sync one runs right away
            )
        except BaseException as exc:  # refused at admission: the caller gets the error, nothing is owed later
            await self._record_failure(request_id, exc, reserved=reserved, started=started)
            if gen is not None:
                await self._release(gen)
            raise
        self._finished[gen.generation_id] = asyncio.Event()
        if on_admitted is not None:
            on_admitted(gen.generation_id)
        submitted = Submitted(gen.generation_id, request_id, submission, gen.created_at)
        if submission.mode is Mode.ASYNC:
            self._spawn(self._execute(gen, render, started))
            return submitted
        submitted.outcome = await self._execute(gen, render, started)
        return submitted

    async def _replay(self, request_id: str, earlier: tuple[str, str], mine: str, submission: Submission,
                      on_admitted: Callable[[str], None] | None) -> Submitted:
        """The answer an ``Idempotency-Key`` retry gets: the first request's, never charged again.
        A synchronous retry of a pending generation waits for it."""
        first_id, first_fingerprint = earlier
        if first_fingerprint != mine:
            raise IdempotencyConflict("Idempotency-Key: was used for a different request in the last 24 hours")
        record = await self.repo.get_request(first_id)
        admitting_until = time.monotonic() + self.settings.request_timeout_s
        while record is not None and record.state == "received" and time.monotonic() < admitting_until:
            await asyncio.sleep(0.05)  # the first request is still being admitted (a moment, at most)
            record = await self.repo.get_request(first_id)
        if record is None:
            raise IdempotencyConflict("Idempotency-Key: its first request is no longer on record")
        if record.generation_id and on_admitted is not None:
            on_admitted(record.generation_id)
        if record.state in PENDING_STATES and record.generation_id and submission.mode is Mode.SYNC:
            record = await self._wait(record.generation_id)
        await self.repo.finish(request_id, "done" if record.state != "failed" else "failed",
                               status_code=record.status_code, params={"replay_of": first_id})
        if record.state == "failed" or record.generation_id is None:
            raise Replayed(record.status_code or 500, record.error or "the first request failed")
        submitted = Submitted(record.generation_id, first_id, submission, _aware(record.created_at))
        if submission.mode is Mode.SYNC:
            if record.result is None:
                raise DeadlineExceeded("the first request with this Idempotency-Key is still running; "
                                       f"poll /v1/generations/{record.generation_id}")
            submitted.outcome = Outcome(Operation(record.operation), body=record.result.encode())
        return submitted

    async def _wait(self, generation_id: str) -> Any:
        """Until the generation ends (this process wakes its own waiters; a poll of the record
        covers one run elsewhere), at most ``request_timeout_s``."""
        deadline = time.monotonic() + self.settings.request_timeout_s
        while True:
            record = await self.repo.get_generation(generation_id)
            if record is None or record.state not in PENDING_STATES or time.monotonic() >= deadline:
                return record
            event = self._finished.get(generation_id)
            try:
                if event is not None:
                    await asyncio.wait_for(event.wait(), min(1.0, max(0.0, deadline - time.monotonic())))
                else:
                    await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                pass

    async def _stage(self, gen: Generation) -> dict[str, Any]:
        """What an async generation needs to run again after a restart: its canonical request as a
        document, and its uploaded images in storage (deleted once it ends)."""
        doc, files = to_document(
            gen.request, lambda n, image: f"in-{gen.generation_id}-{n}.{_EXT.get(image.media_type, 'png')}")
        for name, data in files.items():
            await self.storage.put(name, data)
            gen.staged.append(name)
        return doc

    # ------------------------------------------------------------ execution, delivery, settlement

    async def _execute(self, gen: Generation, render: Callable[[Outcome], bytes] | None, started: float) -> Outcome:
        render = render or self.render
        ctx = EngineContext(request_id=gen.request_id, deadline=time.monotonic() + self.settings.request_timeout_s,
                            pool=self.pool)
        stored: list[StoredImage] = []
        reserved = True
        request, quote = gen.request, gen.quote
        try:
            if gen.submission.mode is Mode.ASYNC:  # (a sync generation's start was recorded at admission)
                began = utcnow()
                await self._finish(gen.request_id, "running", started_at=began,
                                   deliveries=self._callback(gen, TASK_PROCESSING, began))
            engine_started = time.perf_counter()
            self.metrics.images_in_flight.inc(request.num_images)
            try:
                # the deadline bounds the whole engine call: upstream attempts and downloads included
                async with asyncio.timeout(self.settings.request_timeout_s):
                    result = await self._run_engine(gen, ctx)
            except TimeoutError:
                raise DeadlineExceeded(
                    f"the request did not finish within request_timeout_s ({self.settings.request_timeout_s:g} s)"
                ) from None
            finally:
                self.metrics.images_in_flight.dec(request.num_images)
            # engines that know their wait time (the relay) report it; for the rest all of it is engine time
            engine_seconds = ctx.engine_seconds or (time.perf_counter() - engine_started - ctx.queue_seconds)
            if isinstance(result, DescribeResult):
                if not result.descriptions:
                    raise UpstreamFailed(f"engine {gen.engine.name} returned no description")
                delivered, outcome = 1, Outcome(gen.operation, descriptions=result.descriptions)
            else:
                images, stored = await self._store(gen.request_id, gen.operation, result)
                delivered = sum(1 for i in images if i.url is not None)
                outcome = Outcome(gen.operation, images=images)
            outcome.engine_seconds = engine_seconds
            outcome.queue_seconds = ctx.queue_seconds
            if render is not None:
                outcome.body = render(outcome)
            if not await self.ledger.settle(gen.request_id, quote.charge_for(delivered)):
                reserved = False  # the sweeper released it: delivering now would be delivering free
                raise DeadlineExceeded("the request's reservation expired before it completed; nothing was charged")
            reserved = False
            answer = outcome.body.decode() if outcome.body is not None else None
            await self._finish(
                gen.request_id, "done", images=delivered, status_code=200, channel=ctx.channel, result=answer,
                latency_ms=(time.perf_counter() - started) * 1000, resume=None,
                deliveries=self._notifications(gen, answer=answer),
            )
            self.metrics.generations_finished.labels("completed").inc()
            return outcome
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and self._stopping and gen.staged:
                raise  # shutting down: left pending for the next start (or another process) to resume
            if stored:
                await self._unstore(stored)
            await self._record_failure(gen.request_id, exc, reserved=reserved, started=started, gen=gen,
                                       channel=ctx.channel)
            raise
        finally:
            await self._release(gen)
            if ctx.attempts:
                await self._record_attempts(gen.request_id, ctx, quote)

    async def _run_engine(self, gen: Generation, ctx: EngineContext) -> Any:
        """The engine call. An async generation that finds the worker pool full waits for room
        (within its deadline) instead of failing: its caller was promised a result, not a 503."""
        while True:
            try:
                return await gen.engine.run(gen.request, ctx)
            except Busy as exc:
                if gen.submission.mode is not Mode.ASYNC:
                    raise
                waited = time.perf_counter()
                await asyncio.sleep(min(exc.retry_after, max(0.05, ctx.remaining())))
                ctx.queue_seconds += time.perf_counter() - waited

    async def _record_failure(self, request_id: str, exc: BaseException, *, reserved: bool, started: float,
                              gen: Generation | None = None, channel: str | None = None) -> None:
        """The failure recorded once (refund, final state, the webhook/callback an admitted
        generation owes); a generation's ``failure_reason`` is one of the documented codes."""
        status = exc.status if isinstance(exc, IdeohubError) else 500
        error = exc.detail if isinstance(exc, IdeohubError) else f"{exc.__class__.__name__}: internal error"
        values: dict[str, Any] = {"status_code": status, "error": error, "channel": channel,
                                  "latency_ms": (time.perf_counter() - started) * 1000}
        deliveries: list[dict[str, Any]] = []
        if gen is not None:
            reason = FailureReason.ABANDONED if isinstance(exc, Abandoned) else failure_reason(status)
            values.update(failure_reason=reason.value, resume=None)
            deliveries = self._notifications(gen, failure=reason.value)
        try:
            if reserved:
                await self.ledger.refund(request_id)
            await self._finish(request_id, "failed", deliveries=deliveries, **values)
            if gen is not None:
                self.metrics.generations_finished.labels("failed").inc()
        except Exception:  # the record must not mask the original error; the sweeper releases the money
            log.exception("could not record the failure of request %s", request_id)

    async def _finish(self, request_id: str, state: str, deliveries: list[dict[str, Any]] = (),  # type: ignore[assignment]
                      **values: Any) -> None:
        """The record's new state with the notifications it owes (one transaction), then the
        delivery worker woken for them."""
        await self.repo.finish(request_id, state, deliveries=deliveries, **values)
        if deliveries:
            self.outbox_changed()

    async def _release(self, gen: Generation) -> None:
        """What a generation holds while it runs: the key's images lease, its staged inputs, waiters."""
        if gen.leased:
            gen.leased = False
            await self.limiter.release_images(gen.key_id, gen.request_id)
        if not (self._stopping and gen.staged):
            for name in gen.staged:
                await self.storage.delete(name)
            gen.staged = []
        event = self._finished.pop(gen.generation_id, None)
        if event is not None:
            event.set()

    # ------------------------------------------------------------ notifications owed

    def _notifications(self, gen: Generation, *, answer: str | None = None,
                       failure: str | None = None) -> list[dict[str, Any]]:
        """The webhook (Ideogram's) and the task callback a final state owes, for the outbox."""
        out: list[dict[str, Any]] = []
        expires = utcnow() + timedelta(seconds=self.settings.url_ttl_s)
        if gen.submission.webhook_url:
            payload = (payloads.webhook_completed(gen.generation_id, answer) if answer is not None
                       else payloads.webhook_failed(gen.generation_id, gen.created_at, failure or ""))
            out.append({"generation_id": gen.generation_id, "kind": "webhook", "url": gen.submission.webhook_url,
                        "payload": payload, "seq": 0, "expires_at": expires})
        status = TASK_SUCCEED if answer is not None else TASK_FAILED
        out += self._callback(gen, status, utcnow(), failure=failure, answer=answer)
        return out

    def _callback(self, gen: Generation, status: str, updated: datetime, *, failure: str | None = None,
                  answer: str | None = None) -> list[dict[str, Any]]:
        if not gen.submission.callback_url:
            return []
        task = payloads.task_object(gen.generation_id, status, gen.created_at, updated, failure, answer)
        return [{"generation_id": gen.generation_id, "kind": "callback", "url": gen.submission.callback_url,
                 "payload": payloads.compact(task), "seq": payloads.TASK_ORDER[status],
                 "expires_at": utcnow() + timedelta(seconds=self.settings.url_ttl_s)}]

    # ------------------------------------------------------------ background work, liveness, take-over

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def quietly() -> None:
            try:
                await coro
            except (Exception, asyncio.CancelledError):
                pass  # recorded as the generation's failure (or left for a resume) by _execute

        task = asyncio.get_running_loop().create_task(quietly())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self) -> None:
        """Shutting down: background generations with staged inputs stay pending for the next
        start (or another process) to resume; the rest fail with a refund as they are cancelled."""
        self._stopping = True
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background), timeout=10)

    async def heartbeat(self) -> None:
        await self.repo.heartbeat(self.instance_id, self._reservation_ttl.total_seconds())

    async def take_over(self, now: datetime | None = None) -> int:
        """Generations whose process stopped beating ``stale_after_s`` ago: an async one runs again
        from its staged inputs (its reservation still held); any other fails with a refund and the
        notifications it owes. Returns how many were taken over."""
        now = now or utcnow()
        cutoff = now - timedelta(seconds=self.settings.stale_after_s)
        taken = 0
        for record in await self.repo.stale_generations(cutoff, self.instance_id):
            if not await self.repo.claim(record, self.instance_id):
                continue
            taken += 1
            gen = await self._rebuild(record)
            if gen is not None:
                self._finished[gen.generation_id] = asyncio.Event()
                self._spawn(self._execute(gen, None, time.perf_counter()))
                continue
            submission = Submission(Mode(record.mode or "sync"), record.webhook_url, record.callback_url)
            ghost = Generation(record.id, record.generation_id, Operation(record.operation), None,  # type: ignore[arg-type]
                               record.key_id or "", record.account_id or DEFAULT_ACCOUNT, None, None,  # type: ignore[arg-type]
                               submission, _aware(record.created_at))
            held = await self.ledger.is_held(record.id)
            await self._record_failure(record.id, Abandoned("the process running it stopped"), reserved=held,
                                       started=time.perf_counter(), gen=ghost)
            for name in document_files(record.resume):
                await self.storage.delete(name)
        return taken

    async def _rebuild(self, record: Any) -> Generation | None:
        """An async generation from its record, if it can run again: inputs staged, money held."""
        if record.mode != Mode.ASYNC.value or not record.resume or not await self.ledger.is_held(record.id):
            return None
        files: dict[str, bytes] = {}
        for name in document_files(record.resume):
            data = await self.storage.get(name)
            if data is None:
                return None
            files[name] = data
        try:
            request = from_document(record.resume, files)
            engine = self.engine_for(request.operation)
            account = await self.ledger.get_account(record.account_id or DEFAULT_ACCOUNT)
            quote = self.prices.quote(request, account.group_name if account else "default")
        except IdeohubError:
            return None
        await self._unstore(await self.repo.images_of_request(record.id))  # what the first run stored, unsettled
        submission = Submission(Mode.ASYNC, record.webhook_url, record.callback_url)
        return Generation(record.id, record.generation_id, request.operation, request, record.key_id or "",
                          record.account_id or DEFAULT_ACCOUNT, quote, engine, submission, _aware(record.created_at),
                          staged=list(files))

    async def _record_attempts(self, request_id: str, ctx: EngineContext, quote: Quote) -> None:
        """One usage row per upstream attempt, with what it may have cost us: the channel's
        cost multiplier × the list price of the images it produced (a timed-out attempt is
        counted as if it produced them all, since the upstream may still bill it)."""
        base = self.prices.base_micros(quote.key)
        rows = []
        for a in ctx.attempts:
            units = (1 if a.images else 0) if quote.key.operation in PER_INPUT else a.images
            rows.append((a, round(base * units * a.cost_multiplier)))
        try:
            await self.repo.add_attempts(request_id, rows)
        except Exception:
            log.exception("could not record upstream attempts of %s", request_id)

    def check_prompt(self, request: CanonicalRequest) -> None:
        prompt = (request.prompt_text or "").lower()
        if prompt and any(term in prompt for term in self._banned):
            raise SafetyRejected(SafetyRejected.PROMPT)

    def engine_for(self, operation: Operation) -> Any:
        engine = self.engines.get(operation)
        if engine is None:
            raise EngineUnavailable(
                f"no engine is configured for {operation.official_path} (operation '{operation.value}'). "
                f"Configure one in the [engines] table of the config file, e.g. "
                f'engines."{operation.value}" = "relay" with an upstream channel, '
                f"or IDEOHUB_ENGINES='{{\"{operation.value}\": \"...\"}}'. "
                f"Engines: local-upscaler (upscale) and relay (every operation, through upstream channels)."
            )
        return engine

    async def _store(
        self, request_id: str, operation: Operation, result: ImageResult
    ) -> tuple[list[DeliveredImage], list[StoredImage]]:
        """Record every safe image, then write its file: a file never exists without its row (a
        crash in between leaves rows of a failed request, which the sweeper deletes with their
        files). On any failure here what was written is deleted again."""
        if not result.images:
            raise UpstreamFailed("the engine returned no images")  # never a 200 with empty data
        rows: list[StoredImage] = []
        delivered: list[DeliveredImage] = []
        blobs: list[bytes] = []
        now = utcnow()
        for output in result.images:
            if output.is_image_safe is None:
                raise RuntimeError("engine contract: is_image_safe must be set")
            if not output.is_image_safe or output.data is None:
                delivered.append(DeliveredImage(output, None))
                continue
            image_id = new_id("img")
            key = f"{image_id}.{_EXT.get(output.media_type, 'png')}"
            url, exp = self.signer.sign(key)
            size = output.upscaled_resolution or output.resolution
            rows.append(
                StoredImage(
                    id=image_id, request_id=request_id, storage_key=key, media_type=output.media_type,
                    width=size.width, height=size.height, bytes=len(output.data), etag=image_id,
                    created_at=now, expires_at=datetime.fromtimestamp(exp, UTC),
                )
            )
            blobs.append(output.data)
            delivered.append(DeliveredImage(output, url))
        if rows:
            await self.repo.add_images(rows)
        try:
            for row, data in zip(rows, blobs):
                await self.storage.put(row.storage_key, data)
            await self.repo.update_request(request_id, "stored", images=len(rows))
        except BaseException:
            await self._unstore(rows)
            raise
        if rows:
            self.metrics.images_stored.labels(operation.value).inc(len(rows))
        return delivered, rows

    async def _unstore(self, rows: list[StoredImage]) -> None:
        """Files first, then rows: an interruption leaves rows (which the sweeper finds), never files."""
        for row in rows:
            await self.storage.delete(row.storage_key)
        await self.repo.delete_images([r.id for r in rows])

    async def sweep(self, now: datetime | None = None) -> int:
        """Delete expired images (file and row), release abandoned reservations, drop usage past
        its retention; returns how many images were deleted (``last_released``: reservations)."""
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
        await self.repo.delete_usage_before(now - timedelta(days=self.settings.usage_retention_days))
        return total



def _with_seed(request: CanonicalRequest) -> CanonicalRequest:
    """The seed fixed at admission, so a generation that runs again reproduces its images
    (describe has no seed on the wire)."""
    if request.seed is not None or request.operation is Operation.DESCRIBE:
        return request
    return replace(request, seed=random.randint(0, SEED_MAX))

