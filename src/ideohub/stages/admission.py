"""Admission: everything that can refuse a request, before anything runs — permission (before
any upload is decoded), rpm, parse, prompt policy, engine availability, idempotency, quote,
the key's images lease — then the pending bounds, the reservation and the record's first state
in one transaction. A refused request leaves one failed record and nothing else."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from ..config import Settings
from ..domain.documents import to_document
from ..domain.errors import Forbidden, IdeohubError, SafetyRejected
from ..domain.generations import Mode, Submission, fingerprint, new_generation_id
from ..domain.operations import SEED_MAX, CanonicalRequest, Operation
from ..domain.prices import PriceTable, Quote
from ..engines.registry import ADMISSION_CHECKS
from ..gate.limits import Limiter
from ..media.storage import Storage
from ..store.generations import Bounds, GenerationStore
from ..store.ledger import DEFAULT_ACCOUNT, Ledger
from ..store.models import ApiKey
from ..store.repository import Repository, utcnow
from .delivery import EXTENSIONS
from .job import Job

log = logging.getLogger("ideohub.admission")
IDEMPOTENCY_TTL = timedelta(hours=24)
Parse = Callable[[], Awaitable[tuple[CanonicalRequest, Submission]]]


@dataclass(frozen=True)
class Earlier:
    """An ``Idempotency-Key`` the account used within 24 hours: the request it made."""

    request_id: str
    fingerprint: str
    mine: str


class Admission:
    def __init__(self, settings: Settings, store: GenerationStore, repo: Repository, ledger: Ledger,
                 prices: PriceTable, limiter: Limiter, storage: Storage, engine_names: dict[Operation, str],
                 available: Callable[[Operation, Mode], Awaitable[None]]) -> None:
        self.settings = settings
        self.store = store
        self.repo = repo
        self.ledger = ledger
        self.prices = prices
        self.limiter = limiter
        self.storage = storage
        self.engine_names = engine_names
        self.engine_checks = {op: ADMISSION_CHECKS[name.split(":")[0]] for op, name in engine_names.items()
                              if name.split(":")[0] in ADMISSION_CHECKS}
        self.available = available  # raises EngineUnavailable when nothing can run the operation
        self._banned = [t.lower() for t in settings.banned_prompt_terms if t.strip()]
        s = settings
        self.bounds = Bounds(s.max_pending_per_account or None, s.max_pending or None)
        self.inline_ttl = timedelta(seconds=s.request_timeout_s + s.reservation_grace_s)
        self.queued_ttl = timedelta(seconds=s.max_queue_wait_s + s.request_timeout_s + s.reservation_grace_s)

    async def admit(self, operation: Operation, parse: Parse, key: ApiKey, request_id: str, *,
                    inline_owner: str | None | Callable[[], str | None] = None,
                    idempotency_key: str | None = None) -> Job | Earlier:
        """The admitted job, queued (``inline_owner`` None: its inputs staged for whichever worker
        runs it) or already running under ``inline_owner`` (the caller runs it now; a callable is
        asked once the request is parsed). Refusals raise, with their record written."""
        started = time.perf_counter()
        account_id = key.account_id or DEFAULT_ACCOUNT
        job: Job | None = None
        try:
            request, submission = await self._parsed(operation, parse, key)
            await self.available(operation, submission.mode)
            group = await self._group(key, account_id)
            if idempotency_key is not None:
                mine = fingerprint(request, submission)
                earlier = await self.repo.claim_idempotency(account_id, idempotency_key, mine, request_id,
                                                            IDEMPOTENCY_TTL)
                if earlier is not None:
                    return Earlier(earlier[0], earlier[1], mine)
            quote = self.prices.quote(request, group)
            job = Job(request_id, new_generation_id(), operation, with_seed(request), key.id, account_id, quote,
                      submission, utcnow(), self.engine_names.get(operation, ""))
            max_images = key.max_images_in_flight or self.settings.default_max_images_in_flight
            if max_images:
                await self.limiter.acquire_images(key.id, request_id, request.num_images, max_images)
                job.leased = True
            if callable(inline_owner):
                inline_owner = inline_owner()
            resume = await self.stage(job, group) if inline_owner is None else None
            await self.store.admit(self.record(job, resume, inline_owner), amount=quote.total_micros,
                                   ttl=self.queued_ttl if inline_owner is None else self.inline_ttl,
                                   bounds=self.bounds)
            return job
        except BaseException as exc:  # refused: the caller gets the error, nothing is owed later
            await self.refused(request_id, key, operation, account_id, exc, started)
            if job is not None:
                await self.release(job)
            raise

    async def quote(self, operation: Operation, parse: Parse, key: ApiKey, request_id: str) -> Quote:
        """A dry run (``?dry_run=true``): every check a real request passes before it would be run —
        permission, rpm, parse, prompt policy, the account's group — and its price from the same
        table, with nothing run, reserved or leased; it needs no engine, so it is answered even when
        nothing serves the operation. Refusals are recorded like a real request's."""
        started = time.perf_counter()
        account_id = key.account_id or DEFAULT_ACCOUNT
        try:
            request, _submission = await self._parsed(operation, parse, key)
            return self.prices.quote(request, await self._group(key, account_id))
        except BaseException as exc:
            await self.refused(request_id, key, operation, account_id, exc, started)
            raise

    async def _parsed(self, operation: Operation, parse: Parse, key: ApiKey) -> tuple[CanonicalRequest, Submission]:
        """What a real request and a quote both pass first, in this order: the key's permission
        (before any upload is decoded), its rpm, the parse, the prompt policy and the engine's checks."""
        if key.allowed_operations is not None and operation.value not in key.allowed_operations:
            raise Forbidden(f"this key may not use {operation.official_path} (operation '{operation.value}')")
        rpm = key.rpm or self.settings.default_rpm
        if rpm:
            await self.limiter.hit(key.id, rpm)
        request, submission = await parse()
        self.check(operation, request)
        return request, submission

    def record(self, job: Job, resume: dict[str, Any] | None, inline_owner: str | None) -> dict[str, Any]:
        now = job.created_at
        running = inline_owner is not None
        return {
            "id": job.request_id, "key_id": job.key_id, "operation": job.operation.value,
            "params": job.request.summary(), "state": "running" if running else "queued", "engine": job.engine_name,
            "images": 0, "created_at": now, "updated_at": now, "account_id": job.account_id,
            "tier": job.quote.key.tier, "price_micros": 0, "generation_id": job.generation_id,
            "mode": job.submission.mode.value, "webhook_url": job.submission.webhook_url,
            "callback_url": job.submission.callback_url, "resume": resume, "owner": inline_owner,
            "heartbeat_at": now, "started_at": now if running else None, "enqueued_at": None if running else now,
            "runs": 1 if running else 0,
        }

    async def stage(self, job: Job, group: str | None = None) -> dict[str, Any]:
        """The request as a document for the record (with the account's price group it was quoted
        in, so the worker quotes it the same without reading the account), its uploads in storage
        (never in a queue message); deleted at settlement."""
        doc, files = to_document(
            job.request, lambda n, image: f"in-{job.generation_id}-{n}.{EXTENSIONS.get(image.media_type, 'png')}")
        for name, data in files.items():
            await self.storage.put(name, data)
            job.staged.append(name)
        job.resumable = True
        return {**doc, "price_group": group} if group is not None else doc

    async def release(self, job: Job) -> None:
        """What admission took for a job: the key's images lease; its staged inputs when asked."""
        if job.leased:
            job.leased = False
            await self.limiter.release_images(job.key_id, job.request_id)

    async def refused(self, request_id: str, key: ApiKey, operation: Operation, account_id: str,
                      exc: BaseException, started: float) -> None:
        status = exc.status if isinstance(exc, IdeohubError) else 500
        error = exc.detail if isinstance(exc, IdeohubError) else f"{exc.__class__.__name__}: internal error"
        now = utcnow()
        try:
            await self.store.record_refusal({
                "id": request_id, "key_id": key.id, "operation": operation.value, "params": {}, "state": "failed",
                "images": 0, "created_at": now, "updated_at": now, "finished_at": now, "account_id": account_id,
                "price_micros": 0, "status_code": status, "error": error,
                "latency_ms": (time.perf_counter() - started) * 1000})
        except Exception:  # never mask the refusal itself
            log.exception("could not record the refusal of %s", request_id)

    async def _group(self, key: ApiKey, account_id: str) -> str:
        """The account's price group: read with the key when it was authenticated."""
        if hasattr(key, "account_group"):
            if key.account_group is None:
                raise Forbidden(f"the key's account {account_id} no longer exists")
            return key.account_group
        account = await self.ledger.get_account(account_id)
        if account is None:
            raise Forbidden(f"the key's account {account_id} no longer exists")
        return account.group_name

    def check(self, operation: Operation, request: CanonicalRequest) -> None:
        """The prompt policy, and the checks of the engine that will run it (the local upscaler's
        factor and pixel bounds): refused here, nothing is reserved or queued."""
        self.check_prompt(request)
        engine_check = self.engine_checks.get(operation)
        if engine_check is not None:
            engine_check(self.settings, request)

    def check_prompt(self, request: CanonicalRequest) -> None:
        prompt = (request.prompt_text or "").lower()
        if prompt and any(term in prompt for term in self._banned):
            raise SafetyRejected(SafetyRejected.PROMPT)


def with_seed(request: CanonicalRequest) -> CanonicalRequest:
    """The seed fixed at admission, so a generation that runs again reproduces its images
    (describe has no seed on the wire)."""
    if request.seed is not None or request.operation is Operation.DESCRIBE or not getattr(request, "has_seed", True):
        return request
    return replace(request, seed=random.randint(0, SEED_MAX))
