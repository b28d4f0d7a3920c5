"""The delivery worker: every serving process runs one. It sends due outbox rows, at least once,
without letting one target hold up the others.

Each pass reads due ``pending`` rows, oldest first, in bounded pages; claims each one
atomically (``Outbox.claim``: two processes never send the same attempt) and sends it in its own
task. At most ``concurrency`` attempts run at once, at most ``per_origin`` to one origin (a dead
or slow target ties up only its own slots; the scan continues past its rows), and a task's
callbacks go one at a time, in order. A pass runs when ``wake()`` is called (the service calls
it after writing rows), when an attempt ends, and every ``poll_s`` otherwise.

Outcomes: a 2xx answer → ``delivered``. Anything else (an error status, a redirect, a timeout, a
refused or unreachable target) → retried after ``retry_base_s`` doubling per attempt (at most
``MAX_BACKOFF_S``) while the generation's links live; an attempt that would come after
``expires_at`` is not made, and the row is ``dead``. A task callback whose later status was
already delivered is ``superseded`` instead of sent (never an older status after a newer one).

``clock`` is wall time (unix seconds), injected so tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ..logs import event
from . import signing
from .keys import WebhookKeySource
from .outbox import Due, Outbox
from .sender import AttemptResult, Sender, safe_url

log = logging.getLogger("ideohub.notify")

MAX_BACKOFF_S = 3600.0  # retries keep coming at least hourly until the links expire
LEASE_EXTRA_S = 30.0  # a claimed row is left alone for the attempt's timeout plus this
PRUNE_EVERY_S = 3600.0


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> str:
    """The key of the per-origin limit (scheme, host, port)."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return f"{scheme}://{(parts.hostname or '').lower()}:{parts.port or _DEFAULT_PORTS.get(scheme, 0)}"
    except ValueError:
        return "?"


class Deliverer:
    def __init__(self, outbox: Outbox, sender: Sender, keys: WebhookKeySource, *, retry_base_s: float,
                 metrics: Any = None, clock: Callable[[], float] = time.time, poll_s: float = 1.0,
                 concurrency: int = 32, per_origin: int = 4, batch: int = 100, max_scan: int = 1000,
                 retention_s: float | None = None) -> None:
        self.outbox = outbox
        self.sender = sender
        self.keys = keys
        self.retry_base_s = retry_base_s
        self.metrics = metrics
        self.clock = clock
        self.poll_s = poll_s
        self.concurrency = concurrency
        self.per_origin = per_origin
        self.batch = batch
        self.max_scan = max_scan
        self.lease_s = sender.timeout_s + LEASE_EXTRA_S
        self._wake = asyncio.Event()
        self._tasks: dict[int, asyncio.Task[None]] = {}  # delivery id → its attempt
        self._origins: Counter[str] = Counter()
        self._tasks_of: set[str] = set()  # generations with a callback attempt in flight
        self.passes = 0  # passes completed (tests wait for one instead of sleeping)
        self.retention_s = retention_s  # finished rows older than this are deleted (None: kept)
        self._pruned_at = float("-inf")

    # ------------------------------------------------------------ scheduling

    def wake(self) -> None:
        """New rows were written (or a slot freed): run a pass soon. Event-loop thread only."""
        self._wake.set()

    def backoff(self, attempt: int) -> float:
        """Seconds before the attempt after ``attempt`` (1-based): base, 2×base, 4×base, …"""
        return min(self.retry_base_s * 2 ** min(attempt - 1, 30), MAX_BACKOFF_S)

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.run_once()
                await self.prune()
            except Exception as exc:  # the database: no traceback (its parameters would show targets and bodies)
                first_line = (str(exc).splitlines() or [""])[0][:300]
                event(log, logging.ERROR, "delivery pass failed; retrying at the next interval",
                      error=f"{exc.__class__.__name__}: {first_line}")
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                pass

    async def run_once(self) -> int:
        """One pass: start every due attempt there is room for; returns how many started."""
        now_s = self.clock()
        now = _dt(now_s)
        started = scanned = 0
        after: tuple[datetime, int] | None = None
        while len(self._tasks) < self.concurrency and scanned < self.max_scan:
            rows = await self.outbox.due(now, self.batch, after)
            scanned += len(rows)
            for row in rows:
                if len(self._tasks) >= self.concurrency:
                    break
                if await self._consider(row, now_s):
                    started += 1
            if len(rows) < self.batch:
                break
            after = (rows[-1].next_attempt_at, rows[-1].id)
        self.passes += 1
        return started

    async def prune(self) -> None:
        """Finished rows (delivered, dead, superseded) go with the usage they belong to, checked
        hourly; pending rows are never deleted."""
        now_s = self.clock()
        if self.retention_s is None or now_s - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now_s
        await self.outbox.delete_finished_before(_dt(now_s - self.retention_s))

    async def _consider(self, row: Due, now_s: float) -> bool:
        if row.id in self._tasks:
            return False
        origin = _origin(row.url)
        if self._origins[origin] >= self.per_origin:
            return False
        if row.kind == "callback" and row.generation_id in self._tasks_of:
            return False  # the task's previous status is still being sent: this one goes after it
        lease = _dt(now_s + self.lease_s)
        if not await self.outbox.claim(row, lease):
            return False  # another process took it
        if now_s >= row.expires_at.timestamp():
            if await self.outbox.dead(row, lease, _dt(now_s), None, "its links expired before it could be sent",
                                      attempted=False):
                self._count(row, "dead")
                self._log(row, "dead", None, "its links expired before it could be sent", logging.WARNING)
            return False
        self._origins[origin] += 1
        if row.kind == "callback":
            self._tasks_of.add(row.generation_id)
        task = asyncio.get_running_loop().create_task(self._attempt(row, lease))
        self._tasks[row.id] = task
        task.add_done_callback(lambda _t: self._done(row, origin))
        return True

    def _done(self, row: Due, origin: str) -> None:
        self._tasks.pop(row.id, None)
        self._origins[origin] -= 1
        if self._origins[origin] <= 0:
            del self._origins[origin]
        if row.kind == "callback":
            self._tasks_of.discard(row.generation_id)
        self._wake.set()

    # ------------------------------------------------------------ one attempt

    async def _attempt(self, row: Due, lease: datetime) -> None:
        try:
            if row.kind == "callback" and await self.outbox.newer_delivered(row):
                if await self.outbox.supersede(row, lease):
                    self._count(row, "superseded")
                    self._log(row, "superseded", None, "a later status was already delivered", logging.INFO)
                return
            body = row.payload.encode("utf-8")
            headers = signing.headers(self.keys.current(), row.generation_id, signing.user_id(row.account_id),
                                      int(self.clock()), body)
            result = await self.sender.post(row.url, body, headers)
            await self._settle(row, lease, result)
        except asyncio.CancelledError:
            raise  # shutting down: the lease runs out and another pass (or process) sends it again
        except Exception as exc:  # our side (the database): the lease runs out and the row is taken again
            event(log, logging.ERROR, "delivery", delivery_id=row.id, kind=row.kind, outcome="unrecorded",
                  error=f"could not record the attempt ({exc.__class__.__name__}); it is sent again after its lease")

    async def _settle(self, row: Due, lease: datetime, result: AttemptResult) -> None:
        now_s = self.clock()
        if result.delivered:
            assert result.status is not None
            if await self.outbox.delivered(row, lease, _dt(now_s), result.status):
                self._count(row, "delivered")
                self._log(row, "delivered", result.status, None, logging.INFO)
            return
        error = result.error or "failed"
        at = now_s + self.backoff(row.attempts + 1)
        if at >= row.expires_at.timestamp():
            if await self.outbox.dead(row, lease, _dt(now_s), result.status, error):
                self._count(row, "dead")
                self._log(row, "dead", result.status, error, logging.WARNING)
            return
        if await self.outbox.retry(row, lease, _dt(at), result.status, error):
            self._count(row, "retried")
            self._log(row, "retried", result.status, error, logging.WARNING)

    def _count(self, row: Due, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.deliveries.labels(row.kind, outcome).inc()

    def _log(self, row: Due, outcome: str, status: int | None, error: str | None, level: int) -> None:
        fields: dict[str, Any] = {"delivery_id": row.id, "kind": row.kind, "generation_id": row.generation_id,
                                  "target": safe_url(row.url), "outcome": outcome, "attempt": row.attempts + 1}
        if status is not None:
            fields["status"] = status
        if error is not None:
            fields["error"] = error
        event(log, level, "delivery", **fields)

    # ------------------------------------------------------------ life

    async def drain(self) -> None:
        """Until the attempts in flight end (tests)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks.values()))

    async def stop(self) -> None:
        """Attempts in flight are cancelled; their rows are sent again after the lease."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)


class Webhooks:
    """What a serving process holds for notifications: the signing keys (also published as the
    JWKS; ``keys``: ``Secrets.webhook_key_source``, which follows rotations), the sender and the
    delivery worker, all on one wall clock."""

    def __init__(self, settings: Any, session: Any, targets: Any, metrics: Any = None,
                 clock: Callable[[], float] | None = None, poll_s: float = 1.0, *, keys: WebhookKeySource) -> None:
        self.clock: Callable[[], float] = clock or time.time
        self.keys = keys
        self.sender = Sender(targets, timeout_s=settings.webhook_timeout_s,
                             max_response_bytes=settings.webhook_max_response_bytes)
        self.deliverer = Deliverer(Outbox(session), self.sender, self.keys, retry_base_s=settings.webhook_retry_base_s,
                                   metrics=metrics, clock=self.clock, poll_s=poll_s,
                                   retention_s=settings.usage_retention_days * 24 * 3600.0)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def jwks(self) -> dict[str, Any]:
        return self.keys.current().jwks(self.clock())

    def wake(self) -> None:
        """New outbox rows in this process (the service's hook)."""
        self.deliverer.wake()

    def wake_threadsafe(self) -> None:
        """The same, from another thread (tests that move the clock)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.deliverer.wake)

    def start(self) -> asyncio.Task[None]:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self.deliverer.run())
        return self._task

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.deliverer.stop()
        await self.sender.aclose()


__all__ = ["MAX_BACKOFF_S", "Deliverer", "Webhooks"]
