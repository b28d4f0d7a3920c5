"""The HTTP server process: uvicorn with our own connection rules, so that a slow or greedy
client never holds the server.

uvicorn (httptools) has no deadline for request headers, resets its keep-alive timer on every
byte, buffers headers without a size limit and has no connection cap, so ``GuardedProtocol``
adds, per connection:

- an absolute deadline from accept (and from the end of the previous response on a kept-alive
  connection) to complete request headers: 408 problem JSON if part of a request arrived, then
  close; a connection that sent nothing is closed silently (``header_timeout_s``);
- a cap on the size of request headers (``max_header_bytes``) → 431;
- a concurrent-connection cap (``max_connections``) → 503 + ``Retry-After`` at accept;
- a per-client cap (``max_connections_per_client``) → 429 + ``Retry-After``: connections per peer
  address at accept, or, when the peer is a trusted proxy, concurrent requests per forwarded
  client (right-most untrusted ``X-Forwarded-For`` entry) once headers are complete;
- a response the client leaves unread for ``send_timeout_s`` drops the connection.

Keep-alive idle time is uvicorn's own timer (``keepalive_timeout_s``); the header deadline still
bounds a kept-alive connection that trickles bytes. Body caps and stalls are the ASGI layer's
(``api.body_limits``). Refusals are written before any request byte is read, with
``Connection: close``; bodies follow ``api.problems`` (type/title/status/detail).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import logging
import resource
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..config import Settings

log = logging.getLogger("ideohub.server")

FD_RESERVE = 256  # descriptors kept free of client connections: database, files, upstream sockets
RETRY_AFTER_FULL_S = 5  # 503: the server is at max_connections
RETRY_AFTER_CLIENT_S = 1  # 429: this client is at its own cap
MAX_PIPELINE = 32  # requests queued behind the one in progress; uvicorn would parse a whole read's worth

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ServerStartError(Exception):
    """The server could not start; ``str(exc)`` is one line saying what to do."""


# ---------------------------------------------------------------------------- admission rules


@dataclass(frozen=True)
class Refusal:
    status: int
    detail: str
    retry_after: int | None = None


class TrustedProxies:
    """Addresses and networks whose ``X-Forwarded-For`` is believed; empty: never believed."""

    def __init__(self, entries: list[str]) -> None:
        networks: list[Network] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ServerStartError(
                    f"trusted_proxies: {entry!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)"
                ) from None
        self.networks = networks

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, host: str) -> bool:
        address = _address(host)
        return address is not None and any(address in net for net in self.networks)

    def as_uvicorn(self) -> list[str]:
        """The same list for uvicorn's proxy-headers middleware, so ``request.client`` agrees."""
        return [str(net) for net in self.networks]

    def client(self, peer: str, forwarded_for: list[bytes]) -> str:
        """The client a trusted ``peer`` forwards for: the right-most ``X-Forwarded-For`` entry
        that is not itself a trusted proxy (entries to its left are the client's own claims).
        The same rule as uvicorn's middleware; the peer when the header is absent."""
        entries = [e.strip() for e in b",".join(forwarded_for).decode("latin-1").split(",") if e.strip()]
        for entry in reversed(entries):
            host = _strip_port(entry)
            if host not in self:
                return host
        return _strip_port(entries[0]) if entries else peer


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _strip_port(entry: str) -> str:
    if entry.startswith("["):  # [v6]:port
        return entry[1:entry.find("]")] if "]" in entry else entry
    if entry.count(":") == 1:  # v4:port
        return entry.rsplit(":", 1)[0]
    return entry


def client_key(host: str) -> str:
    """What the per-client cap counts: an IPv4 address, or an IPv6 /64 (one subscriber's
    prefix: a host can pick any address inside it)."""
    address = _address(host)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address) if address is not None else host[:100]


class ConnectionLimits:
    """The counts every connection of one server process shares (one event loop: no locks)."""

    def __init__(self, settings: Settings, max_connections: int | None = None) -> None:
        self.max_connections = max_connections if max_connections is not None else settings.max_connections
        self.max_per_client = settings.max_connections_per_client
        self.header_timeout_s = settings.header_timeout_s
        self.send_timeout_s = settings.send_timeout_s
        self.max_header_bytes = settings.max_header_bytes
        self.trusted = TrustedProxies(settings.trusted_proxies)
        self.open = 0
        self.per_client: dict[str, int] = {}

    def open_connection(self, peer: str) -> Refusal | None:
        """Count a new connection, or say why it is refused (then nothing is counted)."""
        if self.open >= self.max_connections:
            return Refusal(503, f"the server is at its limit of {self.max_connections} open connections; "
                                "retry shortly", RETRY_AFTER_FULL_S)
        if peer not in self.trusted:  # a proxy carries many clients: those are counted per request
            refusal = self.start(client_key(peer), "open connections")
            if refusal:
                return refusal
        self.open += 1
        return None

    def close_connection(self, peer: str) -> None:
        self.open -= 1
        if peer not in self.trusted:
            self.finish(client_key(peer))

    def start(self, key: str, what: str = "concurrent requests") -> Refusal | None:
        count = self.per_client.get(key, 0)
        if count >= self.max_per_client:
            return Refusal(429, f"too many {what} from your address (limit {self.max_per_client}); "
                                "finish or close the others first", RETRY_AFTER_CLIENT_S)
        self.per_client[key] = count + 1
        return None

    def finish(self, key: str) -> None:
        count = self.per_client.get(key, 0) - 1
        if count > 0:
            self.per_client[key] = count
        else:
            self.per_client.pop(key, None)


def problem_body(refusal: Refusal) -> bytes:
    return json.dumps({"type": "about:blank", "title": HTTPStatus(refusal.status).phrase,
                       "status": refusal.status, "detail": refusal.detail}, separators=(",", ":")).encode()


def problem_headers(refusal: Refusal, body: bytes) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if refusal.retry_after is not None:
        headers.append((b"retry-after", str(refusal.retry_after).encode()))
    return headers


def refusal_app(refusal: Refusal) -> Callable[..., Any]:
    """An ASGI app answering the refusal (used once headers are complete, in place of ours)."""
    body = problem_body(refusal)

    async def app(_scope: Any, _receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": refusal.status, "headers": problem_headers(refusal, body)})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return app


# ---------------------------------------------------------------------------- the protocol


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and caps above. ``limits`` is set on a
    subclass made per server (``protocol_for``), since uvicorn builds protocols from a class."""

    limits: ConnectionLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peer = ""
        self._counted = False  # counted in limits.open (released on connection_lost)
        self._refused = False  # answered at accept: nothing more is read
        self._via_proxy = False
        self._held: list[tuple[Any, str]] = []  # (cycle, client key) of forwarded requests in flight
        self._head_deadline: asyncio.TimerHandle | None = None
        self._send_deadline: asyncio.TimerHandle | None = None
        self._reading_head = True  # the next bytes belong to a request head
        self._head_bytes = 0  # bytes of the current request head so far

    # -- connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._peer = self.client[0] if self.client else ""
        refusal = self.limits.open_connection(self._peer)
        if refusal is not None:
            self._refused = True
            self._answer_and_close(refusal)
            return
        self._counted = True
        self._via_proxy = self._peer in self.limits.trusted
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel(self._head_deadline)
        self._cancel(self._send_deadline)
        self._head_deadline = self._send_deadline = None
        for _cycle, key in self._held:
            self.limits.finish(key)
        self._held.clear()
        if self._counted:
            self._counted = False
            self.limits.close_connection(self._peer)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._reading_head and self._head_bytes > self.limits.max_header_bytes and not self.transport.is_closing():
            self._answer_and_close(Refusal(431, f"the request headers exceed {self.limits.max_header_bytes} bytes"))

    # -- parser callbacks

    def on_headers_complete(self) -> None:
        if len(self.pipeline) >= MAX_PIPELINE:  # stops the parser: feed_data raises, and the connection is dropped
            raise OverflowError(f"more than {MAX_PIPELINE} pipelined requests")
        self._cancel(self._head_deadline)
        self._head_deadline = None
        self._reading_head = False
        self._head_bytes = 0
        if not self._via_proxy:
            super().on_headers_complete()
            return
        forwarded = [value for name, value in self.headers if name == b"x-forwarded-for"]
        key = client_key(self.limits.trusted.client(self._peer, forwarded))
        refusal = self.limits.start(key)
        if refusal is None:
            super().on_headers_complete()
            self._held.append((self.cycle, key))
            return
        app, self.app = self.app, refusal_app(refusal)
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        for held in [h for h in self._held if h[0].response_complete]:
            self._held.remove(held)
            self.limits.finish(held[1])
        next_is_waiting = bool(self.pipeline)
        super().on_response_complete()
        if not next_is_waiting and not self.transport.is_closing():
            self._arm_head_deadline()

    # -- write side: a response the client does not read

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_deadline is None:
            self._send_deadline = self.loop.call_later(self.limits.send_timeout_s, self._send_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel(self._send_deadline)
        self._send_deadline = None

    def _send_stalled(self) -> None:
        self._send_deadline = None
        self._drop(reset=True)

    # -- refusals

    def send_400_response(self, msg: str) -> None:
        """Malformed HTTP: problem JSON like every other error (uvicorn's is plain text)."""
        self._answer_and_close(Refusal(400, "the request is not valid HTTP/1.1"))

    def _unsupported_upgrade_warning(self) -> None:
        """Upgrades (WebSocket, h2c) are not served; one log line per request would let a client flood the log."""

    def _arm_head_deadline(self) -> None:
        self._cancel(self._head_deadline)
        self._head_deadline = self.loop.call_later(self.limits.header_timeout_s, self._head_deadline_passed)

    def _head_deadline_passed(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if self._head_bytes and (self.cycle is None or self.cycle.response_complete):
            self._answer_and_close(Refusal(408, f"the request headers did not arrive within "
                                                f"{self.limits.header_timeout_s:g} s"))
        else:  # nothing of a request arrived: an idle connection, closed as keep-alive ones are
            self.transport.close()

    def _answer_and_close(self, refusal: Refusal) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            self._drop()  # a response is under way: no room for another on this connection
            return
        body = problem_body(refusal)
        head = [STATUS_LINE[refusal.status]]
        for name, value in [*self.server_state.default_headers, *problem_headers(refusal, body)]:
            head += [name, b": ", value, b"\r\n"]
        self.transport.write(b"".join([*head, b"\r\n", body]))
        self.transport.close()

    def _drop(self, reset: bool = False) -> None:
        """Close now, without an answer. ``reset``: discard unsent bytes and send RST (a plain
        close would keep them queued for a client that never reads)."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app's next send is dropped, not written to a closed transport
        if reset:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
        else:
            self.transport.close()

    @staticmethod
    def _cancel(handle: asyncio.TimerHandle | None) -> None:
        if handle is not None:
            handle.cancel()


def protocol_for(limits: ConnectionLimits) -> type[GuardedProtocol]:
    return type("IdeohubProtocol", (GuardedProtocol,), {"limits": limits})


# ---------------------------------------------------------------------------- process start


def bind_listener(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """Bind and listen before anything slow starts, so a busy port fails at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise ServerStartError(f"cannot resolve host {host!r}: pass an IP address or a known name to --host") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only; a live listener still conflicts
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ServerStartError(_bind_advice(host, port, exc)) from None
    sock.set_inheritable(True)
    return sock


def _bind_advice(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use: stop the other process or pick another --port"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port} on {host}: pick a port above 1023 or run with that right"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine: pick another --host (127.0.0.1 or 0.0.0.0)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def raise_open_file_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE toward the hard limit (never lower it); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_limits(settings: Settings) -> ConnectionLimits:
    """Limits for this process; ``max_connections`` is lowered (with a warning) when the open-file
    limit cannot hold it, so the cap answers 503 before accept() starts failing for everyone."""
    limits = ConnectionLimits(settings)  # validates trusted_proxies
    soft = raise_open_file_limit(settings.max_connections + FD_RESERVE)
    if soft != resource.RLIM_INFINITY and soft - FD_RESERVE < settings.max_connections:
        fitted = max(1, soft - FD_RESERVE)
        log.warning("max_connections %d does not fit the open-file limit %d; using %d (raise `ulimit -n`)",
                    settings.max_connections, soft, fitted)
        limits = ConnectionLimits(settings, max_connections=fitted)
    return limits


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The one server configuration (``serve``, and the tests' in-process servers): our protocol
    with its deadlines and caps, proxy headers only from ``trusted_proxies``, no access log of
    uvicorn's own (ours is JSON)."""
    limits = connection_limits(settings)
    trusted = limits.trusted.as_uvicorn()
    options: dict[str, Any] = dict(
        http=protocol_for(limits),
        ws="none",
        lifespan="on",
        proxy_headers=bool(trusted),  # no trusted proxy: forwarded headers are never believed
        forwarded_allow_ips=trusted,
        timeout_keep_alive=settings.keepalive_timeout_s,  # call_later takes floats
        log_config=None,
        log_level=None,
        access_log=False,
    )
    return uvicorn.Config(app, **{**options, **overrides})


class _LifespanProbe:
    """Passes lifespan through, keeping the start-up failure's reason as one line (Starlette
    reports a whole traceback)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.failure: str | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def quiet_send(message: Any) -> None:
            if message["type"] == "lifespan.startup.failed":
                message = {"type": message["type"], "message": ""}
            await send(message)

        try:
            await self.app(scope, receive, quiet_send)
        except BaseException as exc:
            if self.failure is None:
                self.failure = one_line(exc)
            raise


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None] | None) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            logging.getLogger("uvicorn.error").disabled = False
            if self.on_ready is not None:
                self.on_ready()


def run_server(app: Any, settings: Settings, sock: socket.socket, *,
               on_ready: Callable[[], None] | None = None) -> None:
    """Serve ``app`` on the bound ``sock`` until a signal stops it. Raises ``ServerStartError``
    (one line) when the app's lifespan start-up fails; ``on_ready`` runs once it is serving."""
    probe = _LifespanProbe(app)
    config = uvicorn_config(probe, settings)
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    uvicorn_log.disabled = True  # its start-up lines would repeat the failure as a traceback
    server = _Server(config, on_ready)
    try:
        server.run(sockets=[sock])
    except SystemExit:
        if not server.started:
            raise ServerStartError(f"start-up failed: {probe.failure or 'see the log above'}") from None
        raise
    finally:
        uvicorn_log.disabled = False
        sock.close()
    if not server.started:
        raise ServerStartError(f"start-up failed: {probe.failure or 'the server stopped before serving'}")
