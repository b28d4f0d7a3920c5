"""The relay engine: one canonical request → upstream channels until one succeeds.

- The upstream request body is built once, before any channel is chosen: input we cannot
  encode (a lone surrogate that got past a parser) is the caller's 400 and reaches no channel.
- Only the upstream's own behaviour counts against a channel. Retries go to a channel not yet
  tried, on 429, 5xx, timeouts, connection errors and malformed answers; an upstream
  401/402/403 cools the channel down and fails over too. An exception of ours, the caller's
  cancellation and our own deadline free the channel's slot without a verdict.
- An upstream 4xx about the input is never retried: its message reaches the caller, redacted,
  as our 400 (or the spec's 422 ``{"error"}`` for safety).
- Every value in an upstream answer is validated before use (``wire``); more images than asked
  is a malformed answer (fail over), so extras are never downloaded, stored or delivered.
- Every image is downloaded at once behind the outbound guard (``ideohub.net.guard``), streamed
  with the size cap applied while reading, within the request's deadline, and handed back as
  bytes for the service to store and sign: the upstream's links never reach the client. If any
  image cannot be fetched the request fails as a whole with a generic 502 (the specifics, which
  could map our network, go to the log).
- Channel health is written to the database only on transitions (``HealthLog``).
- 4.0 and /v2: channels serve the operations they declare (``Channel.declares``); a model Ideogram
  resells from another vendor that no channel declares is the caller's 400 naming the model.
  The fields that act on the operator's upstream account reach only channels that allow them
  (``account_fields``; the body is encoded with and without them, once each). A /v2 answer that
  only acknowledges the work (``generation_id``, no ``data``) is polled at
  ``GET /v2/generations/{id}`` on the same channel with its credentials — 1 s, then ×1.5, at
  most 10 s apart, within the channel's timeout and the request's deadline — until it completes
  (its images), fails for content policy (the caller's 422) or fails otherwise (fail over).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

from ...domain.errors import (
    DeadlineExceeded,
    EngineUnavailable,
    IdeohubError,
    InvalidRequest,
    RateLimited,
    SafetyRejected,
    UpstreamFailed,
)
from ...domain.operations import (
    CanonicalRequest,
    DescribeResult,
    Family,
    ImageOutput,
    ImageResult,
    JsonResult,
    Operation,
)
from ...domain.sizes import Size
from ...domain.untrusted import outside_text
from ...media.decode import sniff_media_type
from ...net.fetch import TooLarge, Unacceptable, open_stream, read_capped
from ...net.guard import GuardedClients, GuardPolicy, Refused
from ...observability import Metrics
from ..base import Attempt, EngineContext
from .channels import Channel, ChannelHealth, ChannelKind
from .router import NoChannel, Outcome, Router
from .wire import (
    MAX_SIDE,
    Acknowledged,
    EncodedBody,
    MalformedResponse,
    UpstreamImage,
    encode_request,
    error_message,
    has_account_fields,
    input_size,
    parse_answer,
    parse_body,
    parse_generation,
    parse_retry_after,
    required_account_field,
    tier_of,
)

log = logging.getLogger("ideohub.relay")

DEFAULT_DOWNLOAD_HOSTS = ("ideogram.ai", "*.ideogram.ai", "*.cloudfront.net")
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024  # one image (Settings.max_download_bytes)
MAX_ANSWER_BYTES = 4 * 1024 * 1024  # an upstream's JSON answer (8 items with 20,000-character prompts fit)
MAX_ERROR_BYTES = 64 * 1024  # an upstream's error answer: only its message is used
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)  # per read / connect; the deadline bounds the whole
DOWNLOAD_FAILED = "could not download the generated images from the upstream"
HEALTH_REFRESH = timedelta(minutes=5)  # a healthy channel's last_ok_at is rewritten at most this often
POLL_FIRST_S = 1.0  # polling an acknowledged /v2 generation: the first wait,
POLL_FACTOR = 1.5  # each next one this much longer,
POLL_MAX_S = 10.0  # never more than this apart
MAX_POLLS = 1000  # a bound of its own, whatever the clock says
MAX_POLL_ERRORS = 5  # consecutive 429/5xx/connection errors while polling before failing over


class UpstreamRejected(IdeohubError):
    """The upstream refused the caller's input: passed through (redacted), never retried."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = "Bad Request" if status == 400 else "Unprocessable Entity" if status == 422 else "Client Error"


class _Retryable(Exception):
    """The upstream's failure: counts against the channel, and the next channel is tried."""

    def __init__(self, reason: str, outcome: Outcome = Outcome.FAILED, retry_after: float | None = None,
                 throttled: bool = False, status: int | None = None, timed_out: bool = False,
                 may_bill: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcome = outcome
        self.retry_after = retry_after
        self.throttled = throttled
        self.status = status
        self.timed_out = timed_out
        self.may_bill = may_bill  # accepted work we stopped following: the upstream may still bill it


class _DeadlineReached(Exception):
    """The request's own deadline (not the channel's timeout) cut the upstream call short."""


class DownloadFailed(Exception):
    def __init__(self, reason: str, *, refused: bool = False, deadline: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason  # for the log only
        self.refused = refused  # the guard refused the upstream's URL: the channel's fault
        self.deadline = deadline  # the request's deadline passed: nobody's verdict
        self.produced = 0  # images the upstream generated (and may bill) before the download failed


class HealthLog(Protocol):
    """Where channel health transitions are written (``ChannelStore``)."""

    async def record_failure(self, name: str, failures: int, cooling_until: datetime | None, error: str) -> None: ...

    async def record_ok(self, name: str, at: datetime) -> None: ...


@dataclass
class ChannelDirectory:
    """The current channel list, re-read from the database at most every ``reload_s``:
    channels added, disabled or enabled from the CLI take effect without a restart."""

    load: Callable[[], Awaitable[list[Channel]]]
    reload_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _cached: list[Channel] | None = None
    _loaded_at: float = 0.0
    _lock: asyncio.Lock | None = None

    async def current(self) -> list[Channel]:
        if self._cached is not None and self.clock() - self._loaded_at < self.reload_s:
            return self._cached
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._cached is None or self.clock() - self._loaded_at >= self.reload_s:
                self._cached = await self.load()
                self._loaded_at = self.clock()
        return self._cached

    def invalidate(self) -> None:
        """Re-read at the next use (an edit made through this process applies at once)."""
        self._loaded_at = float("-inf")


def _no_channel_message(channels: list[Channel], op: Operation, tier: str | None) -> str:
    what = op.official_path + (f" for {tier}" if tier else "")
    disabled = sorted(c.name for c in channels if not c.enabled and c.matches(op, tier))
    if disabled:
        return (f"every upstream channel that serves {what} is disabled ({', '.join(disabled)}); "
                f"enable one with `ideohub channels enable NAME`")
    hint = ""
    if op.family in (Family.V4, Family.V2) and any(c.kind is ChannelKind.RELAY for c in channels):
        hint = f" (a relay channel serves {op.value} only when its operations list it)"
    return (f"no upstream channel serves {what}{hint}; "
            f"add one with `ideohub channels add` or in the config file's [[channels]]")


def _resold_message(op: Operation) -> str:
    model = op.v2_parts[1]
    return (f"{model} is another vendor's model that Ideogram resells, and no upstream channel here offers it; "
            f"an operator offers it by listing {op.value} in a channel's operations (`ideohub channels add NAME "
            f"--operations {op.value} …` or operations in the config file's [[channels]]) and setting its price")


def _image_size(data: bytes) -> Size:
    """The size in a downloaded image's header (no decode)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DownloadFailed(f"the image header cannot be read ({exc.__class__.__name__})") from None
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise DownloadFailed(f"the image is {width}x{height}; sides must be 1 to {MAX_SIDE}")
    return Size(width, height)


def _image_head(head: bytes) -> None:
    if sniff_media_type(head) is None:
        raise Unacceptable("the download is not a JPEG, PNG or WebP image")


def _log(event: str, **fields: Any) -> None:
    log.warning(json.dumps({"event": event, **fields}, ensure_ascii=False))


class RelayEngine:
    name = "relay"

    def __init__(
        self,
        directory: ChannelDirectory,
        *,
        router: Router | None = None,
        metrics: Metrics | None = None,
        client: httpx.AsyncClient | None = None,
        downloads: GuardedClients | None = None,
        max_download_bytes: int = MAX_DOWNLOAD_BYTES,
        download_attempts: int = 3,
        health: HealthLog | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``client`` calls the channels' APIs (their base URLs are the operator's own);
        ``downloads`` fetches the images the upstreams point at, one guarded pool per channel."""
        self.directory = directory
        self.router = router or Router()
        self.metrics = metrics or Metrics()
        self.client = client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50), follow_redirects=False
        )
        self.downloads = downloads or GuardedClients(GuardPolicy(DEFAULT_DOWNLOAD_HOSTS))
        self.max_download_bytes = max_download_bytes
        self.download_attempts = download_attempts
        self.health = health
        self.now = now
        self.sleep = sleep

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.downloads.aclose()

    async def run(self, request: CanonicalRequest, ctx: EngineContext) -> Any:
        op = request.operation
        tier = tier_of(request)
        body = encode_request(request)  # InvalidRequest (400) here: no channel is chosen, none is blamed
        # without the account fields, for the channels that do not allow them
        bodies = {True: body, False: encode_request(request, account_fields=False) if has_account_fields(request)
                  else body}
        channels = await self.directory.current()
        if op.resold and not any(c.declares(op) for c in channels):
            raise InvalidRequest("model", _resold_message(op))
        needed = required_account_field(request)
        if needed is not None:
            allowed = [c for c in channels if c.account_fields]
            if any(c.declares(op) for c in channels) and not any(c.declares(op) for c in allowed):
                raise InvalidRequest(needed, f"acts on the operator's own upstream account and no channel serving "
                                             f"{op.official_path} forwards such fields (an operator allows it with "
                                             f"account_fields = true on a channel)")
            channels = allowed
        tried: set[str] = set()
        failures: list[str] = []
        throttled: list[float] = []  # Retry-After of upstream 429s
        while True:
            try:
                channel = await self.router.acquire(channels, op, tier, tried)
            except NoChannel:
                raise EngineUnavailable(_no_channel_message(channels, op, tier)) from None
            if channel is None:
                if throttled and len(throttled) == len(failures):  # every upstream said "slow down"
                    raise RateLimited("every upstream channel is rate limiting: " + "; ".join(failures),
                                      retry_after=math.ceil(min(throttled)))
                raise UpstreamFailed("every upstream channel failed: " + "; ".join(failures))
            tried.add(channel.name)
            result = await self._use(channel, request, bodies[channel.account_fields], ctx)
            if not isinstance(result, _Retryable):
                ctx.channel = channel.name
                return result
            failures.append(f"{channel.name}: {result.reason}")
            if result.throttled:
                throttled.append(result.retry_after or 1.0)
            _log("upstream attempt failed", upstream=channel.name, request_id=ctx.request_id, reason=result.reason)
            if ctx.remaining() <= 0:
                raise UpstreamFailed("deadline reached; " + "; ".join(failures))

    async def _use(self, channel: Channel, request: CanonicalRequest, body: EncodedBody, ctx: EngineContext) -> Any:
        """One attempt on ``channel`` with its slot held: the result, or the ``_Retryable`` to fail
        over on. The slot is always given back; only the upstream's behaviour is a verdict."""
        started = time.perf_counter()
        outcome, retry_after, reason = Outcome.RELEASED, None, ""
        label, status, images = "error", None, 0  # an exception of ours unless set below
        cancelled = False
        self.metrics.channel_in_flight.labels(channel.name).inc()
        try:
            journaled = await ctx.attempt_started(channel.name, request.num_images, channel.cost_multiplier)
        except BaseException:
            self.metrics.channel_in_flight.labels(channel.name).dec()
            await self._give_back(channel, Outcome.RELEASED, None, "")
            raise
        try:
            try:
                result = await self._attempt(channel, request, body, ctx)
            except _Retryable as exc:
                outcome, retry_after, reason, status = exc.outcome, exc.retry_after, exc.reason, exc.status
                # a timed-out upstream may still generate (and bill) the images
                label, images = ("timeout", request.num_images) if exc.timed_out else (
                    exc.outcome.value, request.num_images if exc.may_bill else 0)
                return exc
            except (UpstreamRejected, SafetyRejected) as exc:
                outcome, label, status = Outcome.OK, "rejected", exc.status
                raise
            except DownloadFailed as exc:
                label, status, images = "download_failed", 200, exc.produced
                outcome = Outcome.FAILED if exc.refused else Outcome.RELEASED if exc.deadline else Outcome.OK
                reason = "its image links were refused by the download guard" if exc.refused else DOWNLOAD_FAILED
                _log("image download failed", upstream=channel.name, request_id=ctx.request_id,
                     reason=outside_text(exc.reason, [channel.key]))
                if exc.deadline:
                    raise DeadlineExceeded("the request's deadline passed while downloading the images") from None
                raise UpstreamFailed(f"{channel.name}: {DOWNLOAD_FAILED}") from None
            except _DeadlineReached:
                label, images = "timeout", request.num_images
                raise DeadlineExceeded(f"the request's deadline passed while waiting for {channel.name}") from None
            except asyncio.CancelledError:  # the caller went away, or the service's deadline
                cancelled = True
                label, images = "cancelled", request.num_images  # the upstream may still bill
                raise
            label, status = "ok", 200
            images = len(result.images) if isinstance(result, ImageResult) else 1
            outcome = Outcome.OK
            return result
        finally:
            self.metrics.channel_in_flight.labels(channel.name).dec()
            attempt = Attempt(channel.name, label, status, time.perf_counter() - started, images, channel.cost_multiplier)
            try:
                await asyncio.shield(ctx.attempt_ended(journaled, attempt))
            except Exception:  # the attempt's row keeps its worst-case cost; never mask the outcome
                _log("could not record an upstream attempt", upstream=channel.name, request_id=ctx.request_id)
            if outcome is not Outcome.RELEASED or label == "download_failed":  # the upstream's doing, not ours
                self.metrics.upstream_attempts.labels(channel.name, label if label != "timeout" else "failed").inc()
            settle = self._give_back(channel, outcome, retry_after, reason)
            if cancelled:
                await asyncio.shield(settle)  # a second cancellation must not leak the slot
            else:
                await settle

    async def _give_back(self, channel: Channel, outcome: Outcome, retry_after: float | None, reason: str) -> None:
        await self.router.release(channel, outcome, retry_after)
        if outcome is Outcome.RELEASED:
            return
        self.metrics.channel_cooldown.labels(channel.name).set(0 if outcome is Outcome.OK else 1)
        if self.health is None:
            return
        now = self.now()
        try:
            if outcome is Outcome.OK:
                h = channel.health
                if h is None or h.failures > 0 or h.last_ok_at is None or now - h.last_ok_at >= HEALTH_REFRESH:
                    await self.health.record_ok(channel.name, now)
                    channel.health = ChannelHealth(0, None, h.last_error if h else None, now)
                return
            state = await self.router.status(channel.name)
            until = now + timedelta(seconds=state.cooldown_left_s) if state.cooldown_left_s > 0 else None
            error = outside_text(reason, [channel.key])
            await self.health.record_failure(channel.name, max(1, state.failures), until, error)
            channel.health = ChannelHealth(max(1, state.failures), until, error,
                                           channel.health.last_ok_at if channel.health else None)
        except Exception as exc:  # health is for listings: never fail a request over it
            _log("could not record channel health", upstream=channel.name, error=exc.__class__.__name__)

    async def _attempt(self, channel: Channel, request: CanonicalRequest, body: EncodedBody, ctx: EngineContext) -> Any:
        budget = ctx.remaining()
        if budget <= 0:
            raise _DeadlineReached()
        timeout = min(channel.timeout_s, budget)
        ours = budget < channel.timeout_s  # the request's deadline bounds this call, not the channel's timeout
        until = time.monotonic() + timeout  # the whole attempt, polling included
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):  # the whole call: a trickling answer cannot outlast it
                status, headers, data = await self._call(channel, request.operation, body, timeout)
        except (TimeoutError, httpx.TimeoutException):
            if ours:
                raise _DeadlineReached() from None
            raise _Retryable(f"timed out after {timeout:g}s", timed_out=True) from None
        except httpx.HTTPError as exc:
            raise _Retryable(f"connection error ({exc.__class__.__name__})") from None
        except TooLarge:
            raise _Retryable(f"malformed response (larger than {MAX_ANSWER_BYTES} bytes)", status=200) from None
        finally:
            elapsed = time.perf_counter() - started
            ctx.engine_seconds += elapsed
            self.metrics.upstream_latency.labels(channel.name).observe(elapsed)
        if status in (401, 402, 403):
            raise _Retryable(f"upstream answered {status} (key rejected or out of credit)", Outcome.AUTH, status=status)
        if status in (408, 429) or status >= 500:
            raise _Retryable(f"upstream answered {status}", retry_after=parse_retry_after(headers.get("retry-after")),
                             throttled=status == 429, status=status)
        if status == 422:
            raise SafetyRejected(outside_text(error_message(data, "rejected by the upstream"), [channel.key]))
        if 400 <= status < 500 and status != 404:
            message = outside_text(error_message(data, f"HTTP {status}"), [channel.key])
            raise UpstreamRejected(400 if status not in (413, 415) else status,
                                   f"the upstream rejected the request: {message}")
        if status != 200:
            raise _Retryable(f"upstream answered {status}", status=status)
        try:
            answer = parse_answer(request, parse_body(data))
        except MalformedResponse as exc:
            raise _Retryable(f"malformed response ({exc})", status=status) from None
        if isinstance(answer, (DescribeResult, JsonResult)):
            return answer
        if isinstance(answer, Acknowledged):
            items = await self._poll(channel, request, answer.generation_id, ctx, until, ours, timeout)
        else:
            items = answer
        started = time.perf_counter()
        try:
            async with asyncio.timeout(max(0.0, ctx.remaining())):
                return ImageResult(await self._download_all(channel, items))
        except TimeoutError:
            failed = DownloadFailed("the request's deadline passed during the download", deadline=True)
            failed.produced = len(items)
            raise failed from None
        except DownloadFailed as exc:
            exc.produced = len(items)
            raise
        finally:
            ctx.engine_seconds += time.perf_counter() - started

    async def _poll(self, channel: Channel, request: CanonicalRequest, generation_id: str, ctx: EngineContext,
                    until: float, ours: bool, timeout: float) -> list[UpstreamImage]:
        """Follow an acknowledged /v2 generation on ``channel`` until it completes (its images),
        fails (content policy: the caller's 422; else fail over) or time is up (``until``: the
        channel's timeout, or the request's deadline when ``ours``)."""
        url = channel.generation_url(generation_id)  # the id was checked against GENERATION_ID
        fallback = input_size(request)
        delay, errors, last = POLL_FIRST_S, 0, "no answer"

        def time_up() -> Exception:
            if ours:
                return _DeadlineReached()
            return _Retryable(f"timed out after {timeout:g}s (generation still {last})", timed_out=True)

        for _ in range(MAX_POLLS):
            left = until - time.monotonic()
            if left <= 0:
                raise time_up()
            await self.sleep(min(delay, left))
            delay = min(delay * POLL_FACTOR, POLL_MAX_S)
            left = until - time.monotonic()
            if left <= 0:
                raise time_up()
            started = time.perf_counter()
            try:
                async with asyncio.timeout(left):
                    status, headers, data = await self._send(channel, "GET", url, None, None, left)
            except (TimeoutError, httpx.TimeoutException):
                raise time_up() from None
            except httpx.HTTPError as exc:
                errors += 1
                last = f"unknown: connection error ({exc.__class__.__name__}) while polling"
                if errors >= MAX_POLL_ERRORS:
                    raise _Retryable(last, may_bill=True) from None
                continue
            except TooLarge:
                raise _Retryable(f"malformed response (a poll answer larger than {MAX_ANSWER_BYTES} bytes)",
                                 status=200, may_bill=True) from None
            finally:
                ctx.engine_seconds += time.perf_counter() - started
            if status in (401, 402, 403):
                raise _Retryable(f"upstream answered {status} while polling (key rejected or out of credit)",
                                 Outcome.AUTH, status=status, may_bill=True)
            if status in (408, 429) or status >= 500:
                errors += 1
                last = f"unknown: upstream answered {status} while polling"
                if errors >= MAX_POLL_ERRORS:
                    raise _Retryable(last, status=status, may_bill=True)
                wait = parse_retry_after(headers.get("retry-after"))
                if wait:
                    delay = max(delay, min(wait, POLL_MAX_S))
                continue
            if status != 200:
                raise _Retryable(f"upstream answered {status} while polling generation {generation_id}",
                                 status=status, may_bill=True)
            errors = 0
            try:
                generation = parse_generation(parse_body(data), generation_id, request.num_images, fallback)
            except MalformedResponse as exc:
                raise _Retryable(f"malformed response while polling ({exc})", status=200, may_bill=True) from None
            last = generation.status
            if generation.status == "completed":
                return generation.images or []
            if generation.status == "failed":
                if generation.failure_reason == "content_policy_violation":
                    raise SafetyRejected("the upstream refused to generate this content (content_policy_violation)")
                raise _Retryable(f"the upstream's generation failed ({generation.failure_reason or 'no reason given'})",
                                 status=200)
        raise _Retryable(f"the generation was still {last} after {MAX_POLLS} polls", may_bill=True)

    async def _call(self, channel: Channel, operation: Operation, body: EncodedBody,
                    timeout: float) -> tuple[int, httpx.Headers, bytes]:
        """POST the prepared body; the answer read with a cap (an error answer's beyond the cap is
        dropped: only its message would have been used)."""
        return await self._send(channel, "POST", channel.url_for(operation), body.content, body.content_type, timeout)

    async def _send(self, channel: Channel, method: str, url: str, content: bytes | None, content_type: str | None,
                    timeout: float) -> tuple[int, httpx.Headers, bytes]:
        headers = {**channel.auth_headers(), "Accept": "application/json", "Accept-Encoding": "identity"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        async with self.client.stream(
            method, url, content=content, headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(channel.connect_timeout_s, timeout)),
        ) as response:
            if response.status_code == 200:
                return 200, response.headers, await read_capped(response, MAX_ANSWER_BYTES)
            try:
                data = await read_capped(response, MAX_ERROR_BYTES)
            except TooLarge:
                data = b""
            return response.status_code, response.headers, data

    async def _download_all(self, channel: Channel, items: list[UpstreamImage]) -> list[ImageOutput]:
        """Every image at once; the first failure cancels the rest (their streams are closed)."""
        client = self.downloads.client(channel.name, channel.origin)
        tasks = {i: asyncio.ensure_future(self._download(client, item.url)) for i, item in enumerate(items) if item.url}
        try:
            if tasks:
                await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks.values():
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks.values(), return_exceptions=True)
        for task in tasks.values():
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        outputs = []
        for i, item in enumerate(items):
            data, media_type = tasks[i].result() if i in tasks else (None, "image/png")
            resolution = item.resolution
            if resolution is None:  # not stated (/v2 remove-background): the image's own header says
                if data is None:
                    raise DownloadFailed("an image without a stated size has no link")
                resolution = _image_size(data)
            outputs.append(
                ImageOutput(
                    data=data, media_type=media_type, resolution=resolution, prompt=item.prompt, seed=item.seed,
                    is_image_safe=item.is_image_safe, upscaled_resolution=item.upscaled_resolution,
                    style_type=item.style_type,
                )
            )
        return outputs

    async def _download(self, client: httpx.AsyncClient, url: str) -> tuple[bytes, str]:
        """One image: transient failures are retried; a refusal, an oversized or non-image body
        and a link that is gone are not (they would only fail again, at our cost)."""
        last = "no attempt"
        for attempt in range(self.download_attempts):
            if attempt:
                await self.sleep(0.2 * 2 ** (attempt - 1))
            try:
                async with open_stream(client, url, timeout=DOWNLOAD_TIMEOUT) as response:
                    status = response.status_code
                    if status != 200:
                        last = f"HTTP {status}"
                        if 400 <= status < 500 and status not in (408, 429):
                            raise DownloadFailed(last)  # expired, missing or forbidden links do not come back
                        continue
                    data = await read_capped(response, self.max_download_bytes, check_head=_image_head)
                    return data, sniff_media_type(data) or "image/png"
            except Refused as exc:
                raise DownloadFailed(f"refused by the guard: {exc}", refused=True) from None
            except (TooLarge, Unacceptable) as exc:
                raise DownloadFailed(str(exc)) from None
            except httpx.HTTPError as exc:  # includes truncated bodies (RemoteProtocolError)
                last = exc.__class__.__name__
        raise DownloadFailed(last)
