"""The outbound-connection guard (SSRF): which URLs we may fetch, and connecting only to the
address that was checked.

Rules (``GuardPolicy``):

- A URL must be ``http(s)``, at most ``MAX_URL_CHARS``, with no whitespace, control characters
  or ``user:password@``, and a valid host and port.
- A host matching one of ``allowed_hosts`` (fnmatch patterns the operator configured) is allowed
  wherever it resolves: that is the operator's explicit trust.
- Any other host is allowed when every address it resolves to is public (``is_global``; IPv4
  mapped, 6to4, Teredo and NAT64 addresses are judged by the IPv4 address inside).
- A private, loopback, link-local or otherwise non-public address is allowed only when the URL is
  exactly one of ``trusted_origins`` (scheme, host and port: a channel's own base URL), so an
  upstream on 127.0.0.1 cannot make us connect to Redis on :6379 of the same host.

``GuardedTransport`` resolves each request's host once, checks the answer, and pins it: the
connection pool's network backend (``PinnedBackend``) connects to one of those checked addresses
and never resolves the name again (no DNS-rebinding window); TLS still verifies and sends SNI for
the host name. A connection the guard did not check is refused (fail closed). ``GuardedClients``
keeps one pool per key (per channel), so a connection checked for one channel's origin is never
reused for another channel's request.

``Refused`` carries the specific reason for the log; callers show clients a generic message (the
specifics would map which ports listen on our side).
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx

MAX_URL_CHARS = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f-\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]


class Refused(Exception):
    """The guard refused a URL or a connection. ``str()`` is for the log only."""


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str  # lower case; IDNA-encoded; IPv6 without brackets
    port: int

    @classmethod
    def of(cls, url: str) -> "Origin":
        """The origin of an acceptable URL; raises ``Refused`` for anything else."""
        return check_url(url)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def check_url(url: object) -> Origin:
    """Syntax rules for a URL we are asked to fetch; its origin, or ``Refused``."""
    if not isinstance(url, str) or not url:
        raise Refused("the URL is not a string")
    if len(url) > MAX_URL_CHARS:
        raise Refused(f"the URL is longer than {MAX_URL_CHARS} characters")
    if _BAD_CHARS.search(url):
        raise Refused("the URL holds whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii").lower()
    except (ValueError, UnicodeError, httpx.InvalidURL):
        raise Refused("the URL cannot be parsed") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise Refused("the URL is not http(s)")
    if not host or not parts.hostname:
        raise Refused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise Refused("the URL carries credentials")
    if port is not None and not 1 <= port <= 65535:
        raise Refused("the URL's port is out of range")
    return Origin(scheme, host, port or _DEFAULT_PORTS[scheme])


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def is_public_address(ip: IPAddress) -> bool:
    """Globally routable, judging IPv4-in-IPv6 forms by the IPv4 address they carry."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return inner.is_global
    return ip.is_global


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class GuardPolicy:
    allowed_hosts: tuple[str, ...] = ()  # fnmatch patterns, trusted wherever they resolve
    trusted_origins: frozenset[Origin] = frozenset()  # exact origins allowed on private addresses
    is_public: Callable[[IPAddress], bool] = field(default=is_public_address, compare=False)

    def trusting(self, *origins: Origin | str) -> "GuardPolicy":
        """The same policy, also trusting these exact origins (a channel's base URL)."""
        extra = {o if isinstance(o, Origin) else Origin.of(o) for o in origins}
        return replace(self, trusted_origins=self.trusted_origins | frozenset(extra))

    def host_allowed(self, host: str) -> bool:
        if _literal(host) is not None:  # patterns name hosts; an address is judged by what it is
            return False
        return any(fnmatchcase(host, pattern.lower()) for pattern in self.allowed_hosts)

    def needs_no_check(self, origin: Origin) -> bool:
        return origin in self.trusted_origins or self.host_allowed(origin.host)

    def allowed_addresses(self, origin: Origin, addresses: Iterable[str]) -> list[str]:
        """The addresses we may connect to for ``origin``; ``Refused`` if it may not be reached."""
        found = list(dict.fromkeys(addresses))
        if not found:
            raise Refused(f"{origin.host} has no address")
        if self.needs_no_check(origin):
            return found
        for address in found:
            try:
                ip = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                raise Refused(f"{origin.host} resolved to something that is not an address") from None
            if not self.is_public(ip):
                raise Refused(f"{origin} resolves to a non-public address ({ip}) and is not a trusted origin")
        return found


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# (host, port) → the addresses checked for the request being sent in this task
_PINNED: contextvars.ContextVar[dict[tuple[str, int], tuple[str, ...]] | None] = contextvars.ContextVar(
    "ideohub_net_pinned", default=None
)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to the addresses ``GuardedTransport`` checked for this request."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pinned = (_PINNED.get() or {}).get((host.lower(), port))
        if not pinned:
            raise Refused(f"a connection to {host}:{port} was not checked by the guard")
        last: Exception | None = None
        for address in pinned:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:  # try the next checked address
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise Refused("unix sockets are never reachable through the guard")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PinnedHTTPTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with a pool whose network backend is ``PinnedBackend``. No proxy from the
    environment: the guard must judge the real destination."""

    def __init__(self, limits: httpx.Limits = httpx.Limits(max_connections=50, max_keepalive_connections=10),
                 backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        super().__init__(limits=limits, trust_env=False)
        # httpx has no public hook for the network backend; the pool it builds is replaced by the
        # same pool with ours (the rest of the transport, exception mapping included, is unchanged)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(backend),
        )


class GuardedTransport(httpx.AsyncBaseTransport):
    """Checks every request's URL and resolved addresses before ``inner`` sees it, and pins the
    checked addresses for ``PinnedBackend``. ``inner`` defaults to ``PinnedHTTPTransport``; tests
    pass an ``httpx.MockTransport`` to exercise the rules without a network."""

    def __init__(self, policy: GuardPolicy, *, resolver: Resolver = system_resolver,
                 inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = inner if inner is not None else PinnedHTTPTransport()

    async def _addresses(self, origin: Origin, timeout: float | None) -> list[str]:
        literal = _literal(origin.host)
        if literal is not None:
            return [str(literal)]
        try:
            with anyio.fail_after(timeout):
                return await self.resolver(origin.host, origin.port)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"resolving {origin.host} timed out") from None
        except OSError as exc:
            raise Refused(f"cannot resolve {origin.host} ({exc.__class__.__name__})") from None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        origin = check_url(str(request.url))
        timeout = (request.extensions.get("timeout") or {}).get("connect")
        allowed = self.policy.allowed_addresses(origin, await self._addresses(origin, timeout))
        token = _PINNED.set({(origin.host, origin.port): tuple(allowed)})
        try:
            return await self.inner.handle_async_request(request)
        finally:
            _PINNED.reset(token)

    async def aclose(self) -> None:
        await self.inner.aclose()


InnerFactory = Callable[[], httpx.AsyncBaseTransport]


class GuardedClients:
    """One guarded ``httpx.AsyncClient`` (with its own pool) per key, each trusting its own origin
    on top of ``policy``. A key whose trusted origin changes gets a fresh client."""

    def __init__(self, policy: GuardPolicy, *, resolver: Resolver = system_resolver,
                 inner: InnerFactory | None = None) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = inner
        self._clients: dict[str, tuple[Origin | None, httpx.AsyncClient]] = {}

    def client(self, key: str, trusted: Origin | None = None) -> httpx.AsyncClient:
        current = self._clients.get(key)
        if current is not None and current[0] == trusted:
            return current[1]
        if current is not None:  # the origin changed: drop the old pool (closed in the background)
            _close_later(current[1])
        policy = self.policy.trusting(trusted) if trusted is not None else self.policy
        transport = GuardedTransport(policy, resolver=self.resolver,
                                     inner=self.inner() if self.inner is not None else None)
        client = httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)
        self._clients[key] = (trusted, client)
        return client

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for _trusted, client in clients.values():
            await client.aclose()


_closing: set[asyncio.Task[None]] = set()


def _close_later(client: httpx.AsyncClient) -> None:
    try:
        task = asyncio.get_running_loop().create_task(client.aclose())
    except RuntimeError:
        return
    _closing.add(task)
    task.add_done_callback(_closing.discard)
