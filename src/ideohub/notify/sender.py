"""One delivery attempt: POST the stored body to the target, through the outbound guard.

- The target is judged again now (``TargetPolicy``: https and public addresses only, unless the
  host is in ``webhook_allowed_hosts``), and the connection goes to the address that was checked
  (``net.guard.GuardedTransport``): a name that now resolves to a private address fails the
  attempt, and nothing is sent.
- ``webhook_timeout_s`` bounds the whole attempt (resolving, connecting, sending, the answer).
- Redirects are not followed: a 3xx is a failed attempt.
- The answer's body is read up to ``webhook_max_response_bytes`` and discarded.

Every attempt uses one shared connection pool (bounded); the guard runs per request, so a pooled
connection is reused only for a request whose target passed the check again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from ..domain.untrusted import printable
from ..logs import scrub
from ..net.fetch import TooLarge, read_capped
from ..net.guard import GuardedTransport, PinnedHTTPTransport, Refused, check_url
from .targets import TargetPolicy

USER_AGENT = "ideohub-webhooks/1"


@dataclass(frozen=True)
class AttemptResult:
    status: int | None  # the target's HTTP status, if it answered
    error: str | None  # why the attempt failed (safe to store and log), None when delivered

    @property
    def delivered(self) -> bool:
        return self.error is None


def safe_url(url: str) -> str:
    """The target as logs and records show it: no query string or fragment (they often carry a
    receiver's token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    if parts.query:
        shown += "?[redacted]"
    return printable(shown, 300)


class _Borrowed(httpx.AsyncBaseTransport):
    """The shared pool, lent to one attempt's client (closing that client leaves it open)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        pass


class Sender:
    def __init__(self, policy: TargetPolicy, *, timeout_s: float, max_response_bytes: int,
                 max_connections: int = 64, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.policy = policy
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        self._pool = inner if inner is not None else PinnedHTTPTransport(
            httpx.Limits(max_connections=max_connections, max_keepalive_connections=min(16, max_connections)))

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._post(url, body, headers)
        except TimeoutError:
            return AttemptResult(None, f"no answer within {self.timeout_s:g} s")
        except Refused as exc:
            return AttemptResult(None, self._reason(url, f"refused by the outbound guard: {exc}"))
        except httpx.HTTPError as exc:
            return AttemptResult(None, self._reason(url, f"{exc.__class__.__name__}: {exc}"))
        except OSError as exc:
            return AttemptResult(None, self._reason(url, f"{exc.__class__.__name__}: {exc}"))

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        origin = check_url(url)
        if origin.scheme != "https" and not self.policy.is_allowed_host(origin.host):
            raise Refused("the target is not https")
        transport = GuardedTransport(self.policy.guard(origin), resolver=self.policy.resolver,
                                     inner=_Borrowed(self._pool))
        timeout = httpx.Timeout(self.timeout_s)
        async with httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False,
                                     timeout=timeout) as client:
            request = client.build_request("POST", url, content=body, headers={
                **headers, "User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
            response = await client.send(request, stream=True)
            try:
                try:
                    await read_capped(response, self.max_response_bytes)
                except TooLarge:
                    pass  # the answer is discarded anyway; its status decides
            finally:
                await response.aclose()
        status = response.status_code
        if 200 <= status < 300:
            return AttemptResult(status, None)
        if 300 <= status < 400:
            return AttemptResult(status, f"answered {status} (redirects are not followed)")
        return AttemptResult(status, f"answered {status}")

    @staticmethod
    def _reason(url: str, text: str) -> str:
        return printable(scrub(text.replace(url, safe_url(url))), 500)

    async def aclose(self) -> None:
        await self._pool.aclose()
