"""Settlement: one transaction that records the image rows, moves the money (charge or refund,
exactly once — the reservation is closed by a compare-and-set), writes the final state with the
webhook or task callback it owes, and records every upstream attempt with what it may have cost
us. Only the run holding the generation's lease settles it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ..domain.errors import IdeohubError
from ..domain.generations import FailureReason, failure_reason
from ..domain.prices import PER_INPUT, PriceTable, Quote
from ..engines.base import Attempt
from ..notify import payloads
from ..notify.payloads import TASK_FAILED, TASK_PROCESSING, TASK_SUCCEED
from ..observability import Metrics
from ..store.generations import GenerationStore
from ..store.repository import utcnow
from .delivery import Delivered
from .job import Job

log = logging.getLogger("ideohub.settlement")


class Abandoned(IdeohubError):
    """The process running a generation stopped, and it could not run again."""

    status = 503
    title = "Service Unavailable"


class Settlement:
    def __init__(self, store: GenerationStore, prices: PriceTable, metrics: Metrics, url_ttl_s: float,
                 outbox_changed: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.prices = prices
        self.metrics = metrics
        self.url_ttl_s = url_ttl_s
        self.outbox_changed = outbox_changed  # wakes this process's webhook sender

    async def complete(self, job: Job, owner: str, delivered: Delivered | None, body: bytes | None,
                       attempts: list[Attempt], channel: str | None, latency_ms: float) -> None:
        """Raises ``store.generations.NotHeld`` (and writes nothing) if this run lost its lease or
        its reservation: the caller then discards what it stored."""
        count = delivered.count if delivered is not None else 1  # a description is one delivery
        answer = body.decode() if body is not None else None
        values = {"images": count if delivered is not None else 1, "status_code": 200, "channel": channel,
                  "result": answer, "latency_ms": latency_ms, "resume": None}
        notes = self.notifications(job, answer=answer)
        await self.store.complete(job.request_id, owner, job.quote.charge_for(count),
                                  delivered.rows if delivered is not None else [], values, notes,
                                  self.attempt_rows(job.quote, attempts))
        if notes:
            self.outbox_changed()
        self.metrics.generations_finished.labels("completed").inc()

    async def fail(self, job: Job | None, request_id: str, owner: str | None, exc: BaseException,
                   attempts: list[Attempt] = (), channel: str | None = None,  # type: ignore[assignment]
                   latency_ms: float | None = None, quote: Quote | None = None) -> bool:
        """Refund, failed state (one of the documented reasons), the notifications owed. False when
        another run or process already ended the generation (nothing is written)."""
        status = exc.status if isinstance(exc, IdeohubError) else 500
        error = exc.detail if isinstance(exc, IdeohubError) else f"{exc.__class__.__name__}: internal error"
        reason = FailureReason.ABANDONED if isinstance(exc, Abandoned) else failure_reason(status)
        values: dict[str, Any] = {"status_code": status, "error": error, "channel": channel,
                                  "failure_reason": reason.value, "latency_ms": latency_ms}
        notes = self.notifications(job, failure=reason.value) if job is not None else []
        quote = quote or (job.quote if job is not None else None)
        rows = self.attempt_rows(quote, attempts) if quote is not None else []
        try:
            ended = await self.store.fail(request_id, owner, values, notes, rows)
        except Exception:  # the record must not mask the original error; the sweeper releases the money
            log.exception("could not record the failure of request %s", request_id)
            return False
        if ended:
            if notes:
                self.outbox_changed()
            self.metrics.generations_finished.labels("failed").inc()
        return ended

    # ------------------------------------------------------------ what is owed

    def notifications(self, job: Job, *, answer: str | None = None, failure: str | None = None) -> list[dict[str, Any]]:
        """The webhook (Ideogram's) and the task callback a final state owes, for the outbox."""
        out: list[dict[str, Any]] = []
        if job.submission.webhook_url:
            payload = (payloads.webhook_completed(job.generation_id, answer) if answer is not None
                       else payloads.webhook_failed(job.generation_id, job.created_at, failure or ""))
            out.append({"generation_id": job.generation_id, "kind": "webhook", "url": job.submission.webhook_url,
                        "payload": payload, "seq": 0, "expires_at": self._expires()})
        status = TASK_SUCCEED if answer is not None else TASK_FAILED
        out += self.callback(job, status, utcnow(), failure=failure, answer=answer)
        return out

    def callback(self, job: Job, status: str, updated: datetime, *, failure: str | None = None,
                 answer: str | None = None) -> list[dict[str, Any]]:
        if not job.submission.callback_url:
            return []
        task = payloads.task_object(job.generation_id, status, job.created_at, updated, failure, answer)
        return [{"generation_id": job.generation_id, "kind": "callback", "url": job.submission.callback_url,
                 "payload": payloads.compact(task), "seq": payloads.TASK_ORDER[status],
                 "expires_at": self._expires()}]

    def started(self, job: Job) -> list[dict[str, Any]]:
        return self.callback(job, TASK_PROCESSING, utcnow())

    def _expires(self) -> datetime:
        return utcnow() + timedelta(seconds=self.url_ttl_s)

    def attempt_rows(self, quote: Quote, attempts: list[Attempt]) -> list[dict[str, Any]]:
        return [self.attempt_row(quote, a) for a in attempts]

    def attempt_row(self, quote: Quote, a: Attempt) -> dict[str, Any]:
        """One usage row per upstream attempt, with what it may have cost us: the channel's cost
        multiplier × the list price of the images it produced (a timed-out attempt is counted as if
        it produced them all, since the upstream may still bill it)."""
        units = (1 if a.images else 0) if quote.key.operation in PER_INPUT else a.images
        return {"channel": a.channel, "outcome": a.outcome, "status_code": a.status_code,
                "latency_ms": a.latency_s * 1000, "images": a.images,
                "cost_micros": round(self.prices.base_micros(quote.key) * units * a.cost_multiplier)}

    def journal(self, job: Job) -> "Journal":
        return Journal(self, job)


class Journal:
    """Upstream attempts written as they start, at their worst-case cost, and corrected when they
    end: for a run that may be killed mid-call and run again elsewhere (a queued generation), so
    every attempt the upstream may bill is on record. A synchronous run in its caller's task (which
    is never run again) records its attempts at settlement instead: one transaction fewer each."""

    def __init__(self, settlement: Settlement, job: Job) -> None:
        self.settlement = settlement
        self.job = job

    async def started(self, channel: str, images: int, cost_multiplier: float) -> Any:
        row = self.settlement.attempt_row(self.job.quote, Attempt(channel, "started", None, 0.0, images,
                                                                  cost_multiplier))
        return await self.settlement.store.attempt_started(self.job.request_id, row)

    async def ended(self, token: Any, attempt: Attempt) -> None:
        await self.settlement.store.attempt_ended(token, self.settlement.attempt_row(self.job.quote, attempt))
