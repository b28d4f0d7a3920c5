"""The relay engine: one canonical request → upstream channels until one succeeds.

- Retries go to a channel not yet tried, on 429, 5xx, timeouts, connection errors and
  malformed responses; an upstream 401/402/403 cools the channel down and fails over too.
- An upstream 4xx about the input is never retried: its message reaches the caller as our
  400 (or the spec's 422 ``{"error"}`` for safety).
- Every image is downloaded at once (with retries) and handed back as bytes for the service
  to store and sign: the upstream's short-lived links never reach the client. If any image
  cannot be fetched the request fails as a whole (502).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from ...domain.errors import EngineUnavailable, IdeohubError, RateLimited, SafetyRejected, UpstreamFailed
from ...domain.operations import CanonicalRequest, DescribeResult, ImageOutput, ImageResult, Operation
from ...media.decode import sniff_media_type
from ...observability import Metrics
from ..base import Attempt, EngineContext
from .channels import Channel
from .router import NoChannel, Outcome, Router
from .wire import MalformedResponse, UpstreamImage, parse_descriptions, parse_images, tier_of, to_wire

log = logging.getLogger("ideohub.relay")


DEFAULT_DOWNLOAD_HOSTS = ("ideogram.ai", "*.ideogram.ai", "*.cloudfront.net")
MAX_IMAGE_BYTES = 64 * 1024 * 1024


class UpstreamRejected(IdeohubError):
    """The upstream refused the caller's input: passed through, never retried."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = "Bad Request" if status == 400 else "Unprocessable Entity" if status == 422 else "Client Error"


class _Retryable(Exception):
    def __init__(
        self,
        reason: str,
        outcome: Outcome = Outcome.FAILED,
        retry_after: float | None = None,
        throttled: bool = False,
        status: int | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcome = outcome
        self.retry_after = retry_after
        self.throttled = throttled
        self.status = status
        self.timed_out = timed_out


class DownloadFailed(Exception):
    produced = 0  # images the upstream generated (and may bill) before the download failed


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _upstream_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            if isinstance(body.get(key), str):
                return body[key]
    return str(body)[:300]


@dataclass
class ChannelDirectory:
    """The current channel list, re-read from the database at most every ``reload_s``:
    channels added, disabled or enabled from the CLI take effect without a restart."""

    load: Callable[[], Awaitable[list[Channel]]]
    reload_s: float = 1.0
    _cached: list[Channel] | None = None
    _loaded_at: float = 0.0
    _lock: asyncio.Lock | None = None

    async def current(self) -> list[Channel]:
        now = time.monotonic()
        if self._cached is not None and now - self._loaded_at < self.reload_s:
            return self._cached
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._cached is None or time.monotonic() - self._loaded_at >= self.reload_s:
                self._cached = await self.load()
                self._loaded_at = time.monotonic()
        return self._cached


class DownloadGuard:
    """SSRF guard for image downloads: the channel's own host, an allow-listed image host,
    or a host whose every address is public. Never loopback/private/link-local otherwise."""

    def __init__(self, allowed_hosts: tuple[str, ...] = DEFAULT_DOWNLOAD_HOSTS) -> None:
        self.allowed_hosts = allowed_hosts

    async def check(self, url: str, channel: Channel) -> None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise DownloadFailed(f"refusing to fetch a non-http(s) image URL from {channel.name}")
        if host == (urlsplit(channel.base_url).hostname or "").lower():
            return
        if any(fnmatch(host, pattern) for pattern in self.allowed_hosts):
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
        except OSError:
            raise DownloadFailed(f"cannot resolve image host {host}") from None
        for info in infos:
            if not ipaddress.ip_address(info[4][0]).is_global:
                raise DownloadFailed(f"refusing to fetch an image from non-public address of {host}")


class RelayEngine:
    name = "relay"

    def __init__(
        self,
        directory: ChannelDirectory,
        *,
        router: Router | None = None,
        metrics: Metrics | None = None,
        client: httpx.AsyncClient | None = None,
        guard: DownloadGuard | None = None,
        download_attempts: int = 3,
    ) -> None:
        self.directory = directory
        self.router = router or Router()
        self.metrics = metrics or Metrics()
        self.client = client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50), follow_redirects=False
        )
        self.guard = guard or DownloadGuard()
        self.download_attempts = download_attempts

    async def aclose(self) -> None:
        await self.client.aclose()

    async def run(self, request: CanonicalRequest, ctx: EngineContext) -> Any:
        op = request.operation
        tier = tier_of(request)
        channels = await self.directory.current()
        tried: set[str] = set()
        failures: list[str] = []
        throttled: list[float] = []  # Retry-After of upstream 429s
        while True:
            try:
                channel = await self.router.acquire(channels, op, tier, tried)
            except NoChannel:
                raise EngineUnavailable(
                    f"no upstream channel serves {op.official_path}"
                    + (f" for {tier}" if tier else "")
                    + "; add one with `ideohub channels add` or in the config file's [[channels]]"
                ) from None
            if channel is None:
                if throttled and len(throttled) == len(failures):  # every upstream said "slow down"
                    raise RateLimited("every upstream channel is rate limiting: " + "; ".join(failures),
                                      retry_after=math.ceil(min(throttled)))
                raise UpstreamFailed("every upstream channel failed: " + "; ".join(failures))
            tried.add(channel.name)
            self.metrics.channel_in_flight.labels(channel.name).inc()
            attempt_started = time.perf_counter()

            def record(outcome: str, status: int | None, images: int) -> None:
                ctx.attempts.append(Attempt(channel.name, outcome, status, time.perf_counter() - attempt_started,
                                            images, channel.cost_multiplier))

            try:
                result = await self._attempt(channel, request, ctx)
            except _Retryable as exc:
                # a timed-out upstream may still generate (and bill) the images
                record("timeout" if exc.timed_out else exc.outcome.value, exc.status,
                       request.num_images if exc.timed_out else 0)
                await self.router.release(channel, exc.outcome, exc.retry_after)
                self.metrics.upstream_attempts.labels(channel.name, exc.outcome.value).inc()
                self.metrics.channel_cooldown.labels(channel.name).set(1)
                failures.append(f"{channel.name}: {exc.reason}")
                if exc.throttled:
                    throttled.append(exc.retry_after or 1.0)
                log.warning('{"upstream": "%s", "request_id": "%s", "failed": "%s"}', channel.name, ctx.request_id,
                            exc.reason)
                if ctx.remaining() <= 0:
                    raise UpstreamFailed("deadline reached; " + "; ".join(failures)) from None
                continue
            except (UpstreamRejected, SafetyRejected) as exc:
                record("rejected", exc.status, 0)
                await self.router.release(channel, Outcome.OK)
                self.metrics.upstream_attempts.labels(channel.name, "rejected").inc()
                raise
            except DownloadFailed as exc:
                record("download_failed", 200, exc.produced)
                await self.router.release(channel, Outcome.OK)
                self.metrics.upstream_attempts.labels(channel.name, "download_failed").inc()
                raise UpstreamFailed(f"{channel.name}: could not download the generated images: {exc}") from None
            except BaseException:
                record("error", None, 0)
                await self.router.release(channel, Outcome.FAILED)
                raise
            finally:
                self.metrics.channel_in_flight.labels(channel.name).dec()
            produced = len(result.images) if isinstance(result, ImageResult) else 1
            record("ok", 200, produced)
            ctx.channel = channel.name
            await self.router.release(channel, Outcome.OK)
            self.metrics.upstream_attempts.labels(channel.name, "ok").inc()
            self.metrics.channel_cooldown.labels(channel.name).set(0)
            return result

    async def _attempt(self, channel: Channel, request: CanonicalRequest, ctx: EngineContext) -> Any:
        timeout = min(channel.timeout_s, max(0.1, ctx.remaining()))
        wire = to_wire(request)
        started = time.perf_counter()
        try:
            response = await self.client.post(
                channel.url_for(request.operation),
                headers={**channel.auth_headers(), "Accept": "application/json"},
                timeout=httpx.Timeout(timeout, connect=min(channel.connect_timeout_s, timeout)),
                **wire.httpx_kwargs(),
            )
        except httpx.TimeoutException:
            raise _Retryable(f"timed out after {timeout:.0f}s", timed_out=True) from None
        except httpx.HTTPError as exc:
            raise _Retryable(f"connection error ({exc.__class__.__name__})") from None
        finally:
            elapsed = time.perf_counter() - started
            ctx.engine_seconds += elapsed
            self.metrics.upstream_latency.labels(channel.name).observe(elapsed)
        status = response.status_code
        if status in (401, 402, 403):
            raise _Retryable(f"upstream answered {status} (key rejected or out of credit)", Outcome.AUTH, status=status)
        if status in (408, 429) or status >= 500:
            raise _Retryable(f"upstream answered {status}", retry_after=_retry_after(response), throttled=status == 429,
                             status=status)
        if status == 422:
            raise SafetyRejected(_upstream_message(response))
        if 400 <= status < 500 and status != 404:
            raise UpstreamRejected(400 if status not in (413, 415) else status,
                                   f"the upstream rejected the request: {_upstream_message(response)}")
        if status != 200:
            raise _Retryable(f"upstream answered {status}", status=status)
        try:
            body = response.json()
            if request.operation is Operation.DESCRIBE:
                return DescribeResult(parse_descriptions(body))
            items = parse_images(body)
        except (ValueError, MalformedResponse) as exc:
            raise _Retryable(f"malformed response ({exc})", status=status) from None
        try:
            return ImageResult(await self._download_all(channel, items, ctx))
        except DownloadFailed as exc:
            exc.produced = len(items)
            raise

    async def _download_all(self, channel: Channel, items: list[UpstreamImage], ctx: EngineContext) -> list[ImageOutput]:
        started = time.perf_counter()
        try:
            blobs = await asyncio.gather(
                *(self._download(channel, item.url) if item.url else _none() for item in items)
            )
        finally:
            ctx.engine_seconds += time.perf_counter() - started
        outputs = []
        for item, blob in zip(items, blobs):
            data, media_type = blob if blob else (None, "image/png")
            outputs.append(
                ImageOutput(
                    data=data, media_type=media_type, resolution=item.resolution, prompt=item.prompt, seed=item.seed,
                    is_image_safe=item.is_image_safe, upscaled_resolution=item.upscaled_resolution,
                    style_type=item.style_type,
                )
            )
        return outputs

    async def _download(self, channel: Channel, url: str) -> tuple[bytes, str]:
        last = "no attempt"
        for attempt in range(self.download_attempts):
            if attempt:
                await asyncio.sleep(0.2 * 2 ** (attempt - 1))
            try:
                current = url
                for _hop in range(4):
                    await self.guard.check(current, channel)
                    response = await self.client.get(current, timeout=httpx.Timeout(60, connect=10))
                    if response.is_redirect and "location" in response.headers:
                        current = urljoin(current, response.headers["location"])
                        continue
                    break
                if response.status_code != 200:
                    last = f"HTTP {response.status_code}"
                    if response.status_code in (403, 404, 410):
                        break  # expired or missing links do not come back
                    continue
                data = response.content
                media_type = sniff_media_type(data)
                if media_type is None or len(data) > MAX_IMAGE_BYTES:
                    last = "the download is not a JPEG, PNG or WebP image"
                    continue
                return data, media_type
            except httpx.HTTPError as exc:  # includes truncated bodies (RemoteProtocolError)
                last = exc.__class__.__name__
        raise DownloadFailed(last)


async def _none() -> None:
    return None
