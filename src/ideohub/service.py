"""One request's path behind the HTTP layer, in one place:

parse (the dialect's parser) → prompt policy → engine for the operation → store every
result image → signed URLs. The request record follows along: received → running →
stored → done, or failed with the error. A failure after some images were stored deletes
them again: nothing half-written survives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import Settings
from .domain.errors import (
    DeadlineExceeded,
    EngineUnavailable,
    Forbidden,
    IdeohubError,
    SafetyRejected,
    UpstreamFailed,
)
from .domain.prices import PER_INPUT, PriceTable, Quote
from .gate.limits import Limiter, MemoryLimiter
from .domain.operations import CanonicalRequest, DescribeResult, ImageOutput, ImageResult, Operation
from .engines.base import EngineContext, WorkerPool
from .media.signing import UrlSigner
from .observability import Metrics
from .media.storage import Storage
from .store.ledger import DEFAULT_ACCOUNT, Ledger
from .store.models import ApiKey, StoredImage
from .store.repository import Repository, new_id, utcnow

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
    body: bytes | None = None  # the answer, rendered before the money moved


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
        self._banned = [t.lower() for t in settings.banned_prompt_terms if t.strip()]
        self.last_released = 0
        self._reservation_ttl = timedelta(seconds=settings.request_timeout_s + settings.reservation_grace_s)

    async def handle(
        self,
        operation: Operation,
        parse: Callable[[], Awaitable[CanonicalRequest]],
        key: ApiKey,
        request_id: str,
        render: Callable[[Outcome], bytes] | None = None,
    ) -> Outcome:
        """Gate → engine → storage → render → settle, with the request record and the money kept
        exact: a failure anywhere (rendering the answer included) refunds the reservation exactly
        once, and the images it stored are deleted again."""
        started = time.perf_counter()
        account_id = key.account_id or DEFAULT_ACCOUNT
        await self.repo.start_request(request_id, key.id, operation.value, account_id)
        reserved = leased = False
        ctx: EngineContext | None = None
        quote: Quote | None = None
        stored: list[StoredImage] = []
        try:
            rpm = key.rpm or self.settings.default_rpm
            if rpm:
                await self.limiter.hit(key.id, rpm)
            request = await parse()
            if key.allowed_operations is not None and operation.value not in key.allowed_operations:
                raise Forbidden(f"this key may not use {operation.official_path} (operation '{operation.value}')")
            self.check_prompt(request)
            engine = self.engine_for(operation)
            account = await self.ledger.get_account(account_id)
            if account is None:
                raise Forbidden(f"the key's account {account_id} no longer exists")
            quote = self.prices.quote(request, account.group_name)
            max_images = key.max_images_in_flight or self.settings.default_max_images_in_flight
            if max_images:
                await self.limiter.acquire_images(key.id, request_id, request.num_images, max_images)
                leased = True
            await self.ledger.reserve(request_id, account_id, key.id, quote.total_micros, self._reservation_ttl)
            reserved = True
            await self.repo.update_request(
                request_id, "running", params=request.summary(), engine=engine.name, tier=quote.key.tier
            )
            ctx = EngineContext(
                request_id=request_id,
                deadline=time.monotonic() + self.settings.request_timeout_s,
                pool=self.pool,
            )
            engine_started = time.perf_counter()
            self.metrics.images_in_flight.inc(request.num_images)
            try:
                # the deadline bounds the whole engine call: upstream attempts and downloads included
                async with asyncio.timeout(self.settings.request_timeout_s):
                    result = await engine.run(request, ctx)
            except TimeoutError:
                raise DeadlineExceeded(
                    f"the request did not finish within request_timeout_s ({self.settings.request_timeout_s:g} s)"
                ) from None
            finally:
                self.metrics.images_in_flight.dec(request.num_images)
            # engines that know their wait time (the relay) report it; for the rest all of it is engine time
            engine_seconds = ctx.engine_seconds or (time.perf_counter() - engine_started)
            if isinstance(result, DescribeResult):
                if not result.descriptions:
                    raise UpstreamFailed(f"engine {engine.name} returned no description")
                delivered, outcome = 1, Outcome(operation, descriptions=result.descriptions)
            else:
                images, stored = await self._store(request_id, operation, result)
                delivered = sum(1 for i in images if i.url is not None)
                outcome = Outcome(operation, images=images)
            outcome.engine_seconds = engine_seconds
            if render is not None:
                outcome.body = render(outcome)
            if not await self.ledger.settle(request_id, quote.charge_for(delivered)):
                reserved = False  # the sweeper released it: delivering now would be delivering free
                raise DeadlineExceeded("the request's reservation expired before it completed; nothing was charged")
            reserved = False
            await self.repo.update_request(
                request_id, "done", images=delivered, status_code=200, channel=ctx.channel,
                latency_ms=(time.perf_counter() - started) * 1000,
            )
            return outcome
        except BaseException as exc:
            status = exc.status if isinstance(exc, IdeohubError) else 500
            error = exc.detail if isinstance(exc, IdeohubError) else f"{exc.__class__.__name__}: internal error"
            try:
                if stored:
                    await self._unstore(stored)
                if reserved:
                    await self.ledger.refund(request_id)
                await self.repo.update_request(
                    request_id, "failed", status_code=status, error=error,
                    channel=ctx.channel if ctx else None, latency_ms=(time.perf_counter() - started) * 1000,
                )
            except Exception:  # the record must not mask the original error; the sweeper releases the money
                log.exception("could not record the failure of request %s", request_id)
            raise
        finally:
            if leased:
                await self.limiter.release_images(key.id, request_id)
            if ctx is not None and ctx.attempts and quote is not None:
                await self._record_attempts(request_id, ctx, quote)

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
        await self.repo.delete_usage_before(now - timedelta(days=self.settings.usage_retention_days))
        return total

