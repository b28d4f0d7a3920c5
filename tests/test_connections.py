"""Slow or greedy clients never hold the server, and the server starts or fails clearly (issue 7).

Today's uvicorn set-up kept 1,000 connections trickling a header byte every 15 s open for good
(no header deadline, the keep-alive timer reset by every byte, no connection cap) until the file
limit made every normal request fail; ``serve`` on a busy port printed "listening" and never
exited. Here the real server runs as a subprocess (``ideohub serve``) with small caps, and the
attacks come from several loopback source addresses (127.0.0.x) so that per-client and total
caps can be told apart. Counts are bounded; waits are bounds, never measurements.
"""

from __future__ import annotations

import errno
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ideohub.api.server import (MAX_PIPELINE, ConnectionLimits, ServerStartError, TrustedProxies, bind_listener,
                                client_key)
from ideohub.config import Settings

HEADER_TIMEOUT_S = 1.5
MAX_CONNECTIONS = 40
PER_CLIENT = 10
ADMIN_TOKEN = "admin-secret-for-tests"
PROXY = "127.0.0.2"  # the trusted reverse proxy; every other 127.0.0.x is a direct client
RSS_BUDGET_KB = 200 * 1024

CONNECTION_ENV = {
    "IDEOHUB_ENGINES": "{}",
    "IDEOHUB_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    "IDEOHUB_KEEPALIVE_TIMEOUT_S": "1",
    "IDEOHUB_BODY_TIMEOUT_S": "120",  # held requests stay held for the whole test
    "IDEOHUB_SEND_TIMEOUT_S": "1.5",
    "IDEOHUB_MAX_HEADER_BYTES": "8192",
    "IDEOHUB_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    "IDEOHUB_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
    "IDEOHUB_TRUSTED_PROXIES": json.dumps([PROXY]),
    "IDEOHUB_ADMIN_TOKEN": ADMIN_TOKEN,
}


# ---------------------------------------------------------------------------- the server process


def server_env(data_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDEOHUB_")}
    env.update({"IDEOHUB_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "IDEOHUB_LOG_LEVEL": "WARNING", **extra})
    return env


class ServerProcess:
    """``ideohub serve --port 0`` in a subprocess; the port comes from its "listening" line and
    the first API key from stdout."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.env = server_env(data_dir, env)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.port = 0
        self.key = ""
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> "ServerProcess":
        self.proc = subprocess.Popen([sys.executable, "-m", "ideohub.cli", "serve", "--port", "0"], env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=lambda s=stream, k=sink: k.extend(iter(s.readline, "")), daemon=True).start()
        deadline = time.monotonic() + 120
        while not self.port:
            found = [m for line in list(self.stderr) if (m := re.search(r"listening on http://[^:]+:(\d+)", line))]
            if found:
                self.port = int(found[0].group(1))
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("server did not start: " + "".join(self.stderr)[-2000:])
            else:
                time.sleep(0.05)
        self.key = next((line.strip() for line in self.stdout if line.startswith("ih_")), "")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def status_kb(self, field: str) -> int:
        """VmRSS (now) or VmHWM (peak) of the server process, in kB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_until_serving(self, budget_s: float = 30.0) -> int | None:
        """The status of a normal request, retried while the server finishes closing what a test
        left open. ``Connection: close`` and reading to the server's close: once seen, the server
        has released this connection too."""
        deadline = time.monotonic() + budget_s
        while True:
            try:
                sock = connect(self.port)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                response, _ = read_until_closed(sock, 10)
                sock.close()
            except OSError:
                response = b""
            if status(response) == 200 or time.monotonic() > deadline:
                return status(response)
            time.sleep(0.1)


# ---------------------------------------------------------------------------- raw clients


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def readable(socks: list[socket.socket], timeout: float) -> list[socket.socket]:
    """``select`` for any number of sockets (select.select stops at descriptor 1024)."""
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        return [key.fileobj for key, _ in sel.select(max(0.0, timeout))]  # type: ignore[misc]


def read_until_closed(sock: socket.socket, budget_s: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or the budget ends (False)."""
    data = b""
    deadline = time.monotonic() + budget_s
    while (left := deadline - time.monotonic()) > 0:
        if not readable([sock], left):
            break
        try:
            chunk = sock.recv(65536)
        except OSError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def read_response(sock: socket.socket, budget_s: float = 10.0) -> bytes:
    """One whole response (with a Content-Length) on a connection that stays open."""
    data = b""
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        head, sep, body = data.partition(b"\r\n\r\n")
        length = header(data, "content-length") if sep else None
        if length is not None and len(body) >= int(length):
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def status(response: bytes) -> int | None:
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", response)
    return int(m.group(1)) if m else None


def header(response: bytes, name: str) -> str | None:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    values = [line.split(":", 1)[1].strip() for line in head if line.lower().startswith(name.lower() + ":")]
    return values[0] if values else None


def problem(response: bytes) -> dict:
    body = json.loads(response.split(b"\r\n\r\n", 1)[1])
    assert set(body) == {"type", "title", "status", "detail"}
    assert header(response, "content-type") == "application/json"
    return body


def hold(port: int, source: str, forwarded_for: str | None = None) -> socket.socket:
    """A request that stays in flight: an admin POST whose declared body never comes."""
    sock = connect(port, source)
    xff = f"X-Forwarded-For: {forwarded_for}\r\n" if forwarded_for else ""
    sock.sendall(f"POST /admin/accounts HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: 100\r\n{xff}\r\n{{".encode())
    return sock


def answers(socks: list[socket.socket], budget_s: float = 3.0) -> dict[int, bytes]:
    """The sockets that got an answer (and were closed) within the budget; the others are held."""
    got: dict[int, bytes] = {}
    deadline = time.monotonic() + budget_s
    while (left := deadline - time.monotonic()) > 0:
        waiting = [s for i, s in enumerate(socks) if i not in got]
        ready = readable(waiting, left)
        for s in ready:
            got[socks.index(s)] = read_until_closed(s, 5)[0]
        if not ready:
            break
    return got


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("connections"), CONNECTION_ENV) as proc:
        yield proc


@pytest.fixture
def quiet(server: ServerProcess) -> Iterator[ServerProcess]:
    """Each test starts and ends with the server serving normally (its counts back to zero)."""
    assert server.wait_until_serving() == 200
    yield server
    assert server.wait_until_serving() == 200


# ---------------------------------------------------------------------------- deadlines


def test_slow_headers_are_cut_off_by_the_deadline_and_memory_stays_flat(quiet):
    """A header byte every 0.3 s used to keep a connection forever: each byte reset the timer."""
    srv = quiet
    rss_before = srv.status_kb("VmRSS")
    socks = [connect(srv.port, f"127.0.0.{11 + i % 3}") for i in range(24)]
    for s in socks:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
    closed: dict[int, bytes] = {}
    deadline = time.monotonic() + 20 * HEADER_TIMEOUT_S  # a bound on the test, far beyond the deadline
    while len(closed) < len(socks) and time.monotonic() < deadline:
        for i, s in enumerate(socks):
            if i in closed:
                continue
            try:
                s.sendall(b"X")
            except OSError:
                closed[i] = read_until_closed(s, 2)[0]
                continue
            if readable([s], 0):
                closed[i] = read_until_closed(s, 5)[0]
        time.sleep(0.3)
    peak = srv.status_kb("VmRSS")
    close_all(socks)
    assert len(closed) == len(socks), f"{len(socks) - len(closed)} trickling connections were still open"
    answered = [r for r in closed.values() if r]
    assert answered, "a connection that sent part of a request gets a 408 before the close"
    for response in answered:
        assert status(response) == 408
        assert header(response, "connection") == "close"
        assert "did not arrive within" in problem(response)["detail"]
    assert peak - rss_before < RSS_BUDGET_KB


def test_idle_connections_are_closed(quiet):
    socks = [connect(quiet.port, "127.0.0.14") for _ in range(PER_CLIENT)]
    results = [read_until_closed(s, 20 * HEADER_TIMEOUT_S) for s in socks]
    close_all(socks)
    assert all(closed for _data, closed in results)
    assert all(data == b"" for data, _closed in results), "nothing was asked, so nothing is answered"


def test_kept_alive_connection_idle_then_trickling(quiet):
    """After a response: idle → closed by the keep-alive timeout; trickling the next request's
    head → 408 at the header deadline, counted from the end of that response."""
    request = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    idle, trickle = connect(quiet.port, "127.0.0.15"), connect(quiet.port, "127.0.0.15")
    slow = iter(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 10_000)
    for s in (idle, trickle):
        s.sendall(request)
        first = read_response(s)
        assert status(first) == 200 and header(first, "connection") is None  # kept alive
        if s is trickle:
            s.sendall(bytes([next(slow)]))  # at once, so the keep-alive timeout does not apply
    response, closed = b"", False
    deadline = time.monotonic() + 20 * HEADER_TIMEOUT_S
    while not closed and time.monotonic() < deadline:
        response, closed = read_until_closed(trickle, 0.3)
        if not closed:
            try:
                trickle.sendall(bytes([next(slow)]))
            except OSError:
                response, closed = read_until_closed(trickle, 5)
    assert closed and status(response) == 408
    assert read_until_closed(idle, 20 * HEADER_TIMEOUT_S) == (b"", True)
    close_all([idle, trickle])


def test_oversized_headers_are_431(quiet):
    sock = connect(quiet.port, "127.0.0.16")
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + b"X-Big: " + b"a" * 20_000 + b"\r\n")
    except OSError:
        pass
    response, closed = read_until_closed(sock, 10)
    sock.close()
    assert closed and status(response) == 431
    assert "8192 bytes" in problem(response)["detail"]


def test_malformed_http_is_a_400_problem(quiet):
    sock = connect(quiet.port, "127.0.0.16")
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost t\x01\r\n\r\n")
    response, closed = read_until_closed(sock, 10)
    sock.close()
    assert closed and status(response) == 400
    assert problem(response)["status"] == 400


def test_a_response_left_unread_drops_the_connection(quiet):
    """A client that asks and never reads would otherwise hold its connection and a task forever:
    once the server cannot write for send_timeout_s it drops the connection (a reset)."""
    sock = connect(quiet.port, "127.0.0.17")
    sock.setblocking(False)
    request = b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n"
    for _ in range(5000):  # pipelined, never reading; stops when the server stops reading too
        try:
            sock.send(request)
        except OSError:
            break
    error = 0
    deadline = time.monotonic() + 60  # a bound on the test, far beyond the 1.5 s send timeout
    while not error and time.monotonic() < deadline:
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        time.sleep(0.2)
    sock.close()
    assert error == errno.ECONNRESET


def test_pipelining_works_and_is_bounded(quiet):
    """A few pipelined requests are answered in order; a whole read of them (uvicorn would queue
    thousands, each with its own request state) drops the connection at the pipeline cap."""
    request = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    few = connect(quiet.port, "127.0.0.18")
    few.sendall(request * 4 + b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data, closed = read_until_closed(few, 30)
    many = connect(quiet.port, "127.0.0.18")
    many.sendall(request * 2000)
    flood, flood_closed = read_until_closed(many, 30)
    close_all([few, many])
    assert closed and data.count(b"HTTP/1.1 200 OK") == 5
    assert flood_closed and flood.count(b"HTTP/1.1 200 OK") <= MAX_PIPELINE + 1


# ---------------------------------------------------------------------------- the rules, in-process


def test_the_forwarded_client_is_the_right_most_untrusted_entry():
    trusted = TrustedProxies(["10.0.0.0/8", "192.0.2.1"])
    assert trusted.client("10.0.0.5", [b"198.51.100.1, 203.0.113.9, 10.1.1.1"]) == "203.0.113.9"
    assert trusted.client("10.0.0.5", [b"198.51.100.1", b"192.0.2.1"]) == "198.51.100.1"  # two headers, joined
    assert trusted.client("10.0.0.5", [b"203.0.113.9:5555"]) == "203.0.113.9"
    assert trusted.client("10.0.0.5", [b"[2001:db8::1]:443"]) == "2001:db8::1"
    assert trusted.client("10.0.0.5", [b"10.0.0.1, 10.0.0.2"]) == "10.0.0.1"  # all proxies: the first
    assert trusted.client("10.0.0.5", []) == "10.0.0.5"
    assert "::ffff:10.1.2.3" in trusted and "11.0.0.1" not in trusted and "not-an-ip" not in trusted
    assert trusted.as_uvicorn() == ["10.0.0.0/8", "192.0.2.1/32"]


def test_ipv6_clients_are_counted_per_64_prefix():
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::7") == "2001:db8:1:2::/64"
    assert client_key("::ffff:203.0.113.9") == "203.0.113.9"


def test_connection_limits_count_and_release():
    limits = ConnectionLimits(Settings(max_connections=3, max_connections_per_client=2, trusted_proxies=["10.0.0.1"]))
    assert limits.open_connection("203.0.113.1") is None
    assert limits.open_connection("203.0.113.1") is None
    refused = limits.open_connection("203.0.113.1")
    assert refused is not None and refused.status == 429 and refused.retry_after == 1
    assert limits.open_connection("10.0.0.1") is None  # a proxy: not counted per client
    full = limits.open_connection("203.0.113.2")
    assert full is not None and full.status == 503 and full.retry_after == 5
    limits.close_connection("203.0.113.1")
    assert limits.open_connection("203.0.113.2") is None
    assert limits.start("198.51.100.1") is None and limits.start("198.51.100.1") is None
    assert limits.start("198.51.100.1") is not None
    limits.finish("198.51.100.1")
    assert limits.start("198.51.100.1") is None


def test_a_bad_trusted_proxy_is_a_start_error():
    with pytest.raises(ServerStartError, match="'proxy.internal' is not an IP address or network"):
        TrustedProxies(["proxy.internal"])


def test_bind_listener_names_the_busy_port():
    first = bind_listener("127.0.0.1", 0)
    port = first.getsockname()[1]
    try:
        with pytest.raises(ServerStartError) as info:
            bind_listener("127.0.0.1", port)
    finally:
        first.close()
    assert str(info.value) == (f"port {port} on 127.0.0.1 is already in use: stop the other process or pick "
                               "another --port")
    with pytest.raises(ServerStartError, match="cannot resolve host"):
        bind_listener("no-such-host.invalid", 0)


# ---------------------------------------------------------------------------- caps


def test_connection_cap_answers_503_and_frees_up(quiet):
    srv = quiet
    socks = [hold(srv.port, f"127.0.0.{20 + i // PER_CLIENT}") for i in range(MAX_CONNECTIONS)]
    extra = connect(srv.port, "127.0.0.25")
    extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    got = answers([*socks, extra])
    close_all([*socks, extra])
    assert len(got) == 1, f"exactly one connection is over the cap, {len(got)} were answered"
    (response,) = got.values()
    assert status(response) == 503
    assert header(response, "retry-after") == "5" and header(response, "connection") == "close"
    assert f"limit of {MAX_CONNECTIONS} open connections" in problem(response)["detail"]
    assert srv.wait_until_serving() == 200  # the attackers are gone: a free slot serves again


def test_per_client_cap_answers_429_without_touching_other_clients(quiet):
    srv = quiet
    socks = [hold(srv.port, "127.0.0.30") for _ in range(PER_CLIENT + 1)]
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.31"))
    try:
        other_status = other.get(srv.url("/healthz"), timeout=10).status_code
    finally:
        other.close()
    got = answers(socks)
    close_all(socks)
    assert other_status == 200
    assert len(got) == 1
    (response,) = got.values()
    assert status(response) == 429 and header(response, "retry-after") == "1"
    assert header(response, "connection") == "close"
    assert "open connections from your address" in problem(response)["detail"]


def test_an_untrusted_peers_forwarded_for_is_ignored(quiet):
    socks = [hold(quiet.port, "127.0.0.40", forwarded_for=f"198.51.100.{i}") for i in range(PER_CLIENT + 1)]
    got = answers(socks)
    close_all(socks)
    assert len(got) == 1, "counted by the peer address, whatever X-Forwarded-For claims"
    (response,) = got.values()
    assert status(response) == 429


def test_a_trusted_proxys_clients_are_counted_by_their_forwarded_address(quiet):
    """The proxy itself is not capped (it carries many clients); each forwarded client is, by the
    right-most untrusted X-Forwarded-For entry (what a client writes to the left is ignored)."""
    srv = quiet
    socks = [hold(srv.port, PROXY, forwarded_for="198.51.100.7" if i % 2 else f"10.9.9.{i}, 198.51.100.7")
             for i in range(PER_CLIENT + 1)]
    other = connect(srv.port, PROXY)
    other.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 198.51.100.8\r\nConnection: close\r\n\r\n")
    other_response, _ = read_until_closed(other, 10)
    got = answers(socks)
    close_all([*socks, other])
    assert status(other_response) == 200, "another client behind the same proxy is served"
    assert len(got) == 1, f"{PER_CLIENT} requests of one forwarded client are held, the next is refused"
    (response,) = got.values()
    assert status(response) == 429 and header(response, "connection") == "close"
    assert "concurrent requests from your address" in problem(response)["detail"]


# ---------------------------------------------------------------------------- request.client


ECHO_SERVER = textwrap.dedent("""
    import json, sys
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from ideohub.api.server import ServerStartError, bind_listener, run_server
    from ideohub.config import Settings

    mode, trusted = sys.argv[1], json.loads(sys.argv[2])

    async def echo(request):
        return JSONResponse({"client": request.client.host})

    async def lifespan(app):
        if mode == "fail":
            raise RuntimeError("the model file is missing\\nsecond line of detail")
        yield

    import contextlib
    app = Starlette(routes=[Route("/", echo)], lifespan=contextlib.asynccontextmanager(lifespan))
    sock = bind_listener("127.0.0.1", 0)
    try:
        run_server(app, Settings(trusted_proxies=trusted), sock,
                   on_ready=lambda: print(sock.getsockname()[1], flush=True))
    except ServerStartError as exc:
        print("ServerStartError:", exc, flush=True)
        sys.exit(3)
""")


@pytest.mark.parametrize("trusted", [[], [PROXY], ["127.0.0.0/30"]])
def test_request_client_believes_forwarded_for_only_from_a_trusted_proxy(trusted):
    """uvicorn's own proxy handling used to trust 127.0.0.1 by default; it now uses our list."""
    proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, "serve", json.dumps(trusted)],
                            stdout=subprocess.PIPE, text=True, env=server_env(Path("."), {}))
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())

        def client_seen(source: str) -> str:
            sock = connect(port, source)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.1, 198.51.100.9\r\n"
                         b"Connection: close\r\n\r\n")
            response, _ = read_until_closed(sock, 10)
            sock.close()
            return json.loads(response.split(b"\r\n\r\n", 1)[1])["client"]

        assert client_seen("127.0.0.1") == ("198.51.100.9" if "127.0.0.0/30" in trusted else "127.0.0.1")
        assert client_seen(PROXY) == ("198.51.100.9" if trusted else PROXY)
        assert client_seen("127.0.0.9") == "127.0.0.9"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)


def test_a_failing_lifespan_is_one_line():
    done = subprocess.run([sys.executable, "-c", ECHO_SERVER, "fail", "[]"], capture_output=True, text=True,
                          env=server_env(Path("."), {}), timeout=60)
    assert done.returncode == 3
    assert done.stdout.strip() == "ServerStartError: start-up failed: the model file is missing"
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------------- start-up failures


def serve_once(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ideohub.cli", "serve", *args], capture_output=True, text=True,
                          env=server_env(data_dir, {"IDEOHUB_ENGINES": "{}", **(env or {})}), timeout=120)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_port_in_use_exits_with_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = serve_once(tmp_path, "--port", str(port))
    line = one_error_line(done)
    assert f"port {port} on 127.0.0.1 is already in use" in line and "--port" in line
    assert not (tmp_path / "ideohub.db").exists(), "the port is checked before anything else starts"


def test_unreachable_postgresql_exits_with_one_line(tmp_path):
    done = serve_once(tmp_path, "--port", "0", env={"IDEOHUB_DATABASE_URL": "postgresql://ideohub@127.0.0.1:1/ideohub"})
    line = one_error_line(done)
    assert "cannot connect to the database" in line and "database_url" in line


def test_unmigrated_postgresql_exits_with_one_line_saying_to_upgrade(tmp_path, pg_url):
    done = serve_once(tmp_path, "--port", "0", env={"IDEOHUB_DATABASE_URL": pg_url})
    line = one_error_line(done)
    assert "never migrated" in line and "ideohub db upgrade" in line


@pytest.mark.parametrize("env, named", [
    ({"IDEOHUB_MAX_CONNECTIONS": "lots"}, "max_connections"),
    ({"IDEOHUB_TRUSTED_PROXIES": '["proxy.internal"]'}, "trusted_proxies"),
])
def test_bad_configuration_exits_with_one_line(tmp_path, env, named):
    done = serve_once(tmp_path, "--port", "0", env=env)
    assert done.returncode == 2
    line = one_error_line(done)
    assert "configuration error" in line and named in line


def test_an_engine_that_cannot_start_exits_with_one_error_line(tmp_path):
    done = serve_once(tmp_path, "--port", "0", env={"IDEOHUB_ENGINES": '{"upscale": "no-such-engine"}'})
    assert done.returncode != 0 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no-such-engine" in errors[0], done.stderr
    assert "listening" not in done.stderr
