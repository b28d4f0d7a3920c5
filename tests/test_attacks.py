"""Body attacks against the real server process: it answers having stopped reading, and its
memory stays flat (issue 7, items 1 and 2).

Today's main parsed a chunked 600 MB JSON body to ``POST /admin/accounts`` before checking the
token (RSS 449 → 2,238 MB, then 401), buffered 1 GB of chunked JSON before its 413, spooled a
2 GB file part, and accepted 390 MB urlencoded bodies and 800 MB of unused file parts with 200.
Here the caps are small (set below) and each attack sends 25× the cap; the server must answer
(401/404/413/408) and close, so the client cannot send it all, while the server's RSS — sampled
during the attack, and its VmHWM — grows by less than 200 MB. The full-size versions of these
attacks are in bench/attacks.py.
"""

from __future__ import annotations

import json
import selectors
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from test_connections import ServerProcess, connect, header, problem, read_until_closed, status

MB = 1024 * 1024
RSS_BUDGET_KB = 200 * 1024
CAPS = {
    "IDEOHUB_ENGINES": "{}",  # a request that passes intake answers 503 (no engine)
    "IDEOHUB_MAX_BODY_BYTES": str(2 * MB),
    "IDEOHUB_MAX_TEXT_BODY_BYTES": str(256 * 1024),
    "IDEOHUB_MAX_SMALL_BODY_BYTES": str(64 * 1024),
    "IDEOHUB_MAX_UPLOAD_BYTES": str(1 * MB),
    "IDEOHUB_MAX_PARTS": "16",
    "IDEOHUB_BODY_TIMEOUT_S": "1.5",
    "IDEOHUB_ADMIN_TOKEN": "admin-secret-for-tests",
}
ATTACK_BYTES = 50 * MB
IMAGE_PATH = "/v1/ideogram-v3/generate"
BOUNDARY = "attackboundary7MA4YWxkTrZu0gW"


# ---------------------------------------------------------------------------- bodies that keep coming


def endless(prefix: bytes, filler: bytes, total: int) -> Iterator[bytes]:
    """``prefix`` then ``filler`` repeated until ``total`` bytes: a body that never ends in time."""
    yield prefix
    sent = len(prefix)
    while sent < total:
        yield filler
        sent += len(filler)


def json_body(total: int) -> Iterator[bytes]:
    return endless(b'{"prompt": "', b"a" * 65536, total)


def urlencoded_body(total: int) -> Iterator[bytes]:
    return endless(b"prompt=", b"a" * 65536, total)


def file_part_body(total: int, name: str = "image_file") -> Iterator[bytes]:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + b"\x89PNG\r\n\x1a\n"
    return endless(head, b"\0" * 65536, total)


def unused_parts_body(total: int, part_bytes: int = 512 * 1024) -> Iterator[bytes]:
    """A used field, then file parts the endpoint has no use for, one after the other."""
    yield f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na cat\r\n'.encode()
    sent, n = 0, 0
    while sent < total:
        yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"unused_{n}\"; filename=\"x.bin\"\r\n"
               "Content-Type: application/octet-stream\r\n\r\n").encode()
        for _ in range(part_bytes // 65536):
            yield b"\0" * 65536
        yield b"\r\n"
        sent, n = sent + part_bytes, n + 1
    yield f"--{BOUNDARY}--\r\n".encode()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


# ---------------------------------------------------------------------------- a client that keeps sending


@dataclass
class Outcome:
    sent: int  # body bytes (chunk framing included) the kernel took from the client
    response: bytes
    closed: bool  # the server closed (or reset) the connection
    seconds: float

    @property
    def status(self) -> int | None:
        return status(self.response)


def push(port: int, path: str, headers: dict[str, str], body: Iterator[bytes], *, chunked: bool = True,
         budget_s: float = 60.0) -> Outcome:
    """Send a request whose body keeps coming, reading whatever the server answers meanwhile, and
    keep sending after the answer: a server that stopped reading closes, so the sending fails
    before the end. Stops at the server's close, at the body's end, or at the budget."""
    sock = connect(port)
    sock.setblocking(False)
    lines = [f"POST {path} HTTP/1.1", "Host: attack", *(f"{k}: {v}" for k, v in headers.items())]
    lines.append("Transfer-Encoding: chunked" if chunked else "")
    pending = ("\r\n".join(lines) + ("\r\n\r\n" if chunked else "\r\n")).encode()
    head_left, sent, response, closed, done = len(pending), 0, b"", False, False
    started = time.monotonic()
    while time.monotonic() - started < budget_s and not closed:
        if not pending and not done:
            chunk = next(body, None)
            if chunk is None:
                done, pending = True, b"0\r\n\r\n" if chunked else b""
            else:
                pending = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0))
            events = sel.select(1.0)
        mask = events[0][1] if events else 0
        can_read, writable = bool(mask & selectors.EVENT_READ), bool(mask & selectors.EVENT_WRITE)
        if can_read:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            closed = not data
            response += data
        if writable and not closed:
            try:
                n = sock.send(pending)
            except OSError:
                more, _ = read_until_closed(sock, 5)
                response, closed = response + more, True
                break
            pending = pending[n:]
            sent += max(0, n - head_left)
            head_left = max(0, head_left - n)
        if done and not pending and (complete(response) or not can_read):
            if not complete(response):
                more, closed = read_until_closed(sock, 5)
                response += more
            break
    sock.close()
    return Outcome(sent, response, closed, time.monotonic() - started)


def complete(response: bytes) -> bool:
    head, sep, body = response.partition(b"\r\n\r\n")
    length = header(response, "content-length") if sep else None
    return length is not None and len(body) >= int(length)


@dataclass
class Memory:
    """The server's memory around an attack: VmRSS before, the highest sample during, after, and
    VmHWM (the kernel's own peak) before and after."""

    server: ServerProcess
    samples: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "Memory":
        self.before = self.server.status_kb("VmRSS")
        self.hwm_before = self.server.status_kb("VmHWM")
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(0.05):
            self.samples.append(self.server.status_kb("VmRSS"))

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.after = self.server.status_kb("VmRSS")
        self.hwm_after = self.server.status_kb("VmHWM")

    @property
    def peak(self) -> int:
        return max([self.before, self.after, *self.samples])

    def assert_flat(self) -> None:
        assert self.peak - self.before < RSS_BUDGET_KB, f"RSS grew {(self.peak - self.before) // 1024} MB"
        assert self.hwm_after - self.hwm_before < RSS_BUDGET_KB, "the peak RSS (VmHWM) grew past the budget"


# ---------------------------------------------------------------------------- the attacks


@dataclass(frozen=True)
class Attack:
    name: str
    path: str
    headers: Callable[[str], dict[str, str]]  # key → headers
    body: Callable[[int], Iterator[bytes]]  # total bytes → chunks
    expect: int
    chunked: bool = True


def json_headers(key: str | None) -> dict[str, str]:
    return {"Content-Type": "application/json", **({"Api-Key": key} if key else {})}


ATTACKS = [
    Attack("admin JSON, no token", "/admin/accounts", lambda key: json_headers(None), json_body, 401),
    Attack("chunked JSON, no key", IMAGE_PATH, lambda key: json_headers(None), json_body, 401),
    Attack("chunked JSON", IMAGE_PATH, json_headers, json_body, 413),
    Attack("one huge file part", "/upscale", lambda key: {"Content-Type": MULTIPART, "Api-Key": key},
           file_part_body, 413),
    Attack("one huge file part, declared length", "/upscale",
           lambda key: {"Content-Type": MULTIPART, "Api-Key": key, "Content-Length": str(ATTACK_BYTES)},
           file_part_body, 413, chunked=False),
    Attack("huge urlencoded", IMAGE_PATH,
           lambda key: {"Content-Type": "application/x-www-form-urlencoded", "Api-Key": key}, urlencoded_body, 413),
    Attack("many unused file parts", IMAGE_PATH, lambda key: {"Content-Type": MULTIPART, "Api-Key": key},
           unused_parts_body, 413),
]


def run_attack(server: ServerProcess, attack: Attack, total: int, budget_s: float = 60.0) -> tuple[Outcome, Memory]:
    with Memory(server) as memory:
        outcome = push(server.port, attack.path, attack.headers(server.key), attack.body(total),
                       chunked=attack.chunked, budget_s=budget_s)
    return outcome, memory


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("attacks"), CAPS) as proc:
        assert proc.key.startswith("ih_")
        yield proc


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_body_attack_is_refused_having_stopped_reading(server, attack):
    outcome, memory = run_attack(server, attack, ATTACK_BYTES)
    assert outcome.status == attack.expect, outcome.response[:300]
    assert header(outcome.response, "connection") == "close"
    assert problem(outcome.response)["status"] == attack.expect
    assert outcome.closed, "the server closed the connection"
    assert outcome.sent < ATTACK_BYTES, "the server stopped reading: the client could not send it all"
    memory.assert_flat()


def test_admin_disabled_is_404_without_reading(tmp_path):
    caps = {k: v for k, v in CAPS.items() if k != "IDEOHUB_ADMIN_TOKEN"}
    with ServerProcess(tmp_path, caps) as proc:
        outcome, memory = run_attack(proc, ATTACKS[0], ATTACK_BYTES)
    assert outcome.status == 404 and outcome.closed
    assert header(outcome.response, "connection") == "close"
    assert outcome.sent < ATTACK_BYTES
    memory.assert_flat()


def test_unused_parts_under_the_caps_are_dropped_while_streaming(server):
    """Parts the endpoint does not use are discarded as they stream (never spooled), and
    otherwise ignored: the request goes on to its engine (none here: 503)."""
    body = list(unused_parts_body(3 * 512 * 1024))  # 1.5 MB of unused parts, under the 2 MB total
    with Memory(server) as memory:
        outcome = push(server.port, IMAGE_PATH, {"Content-Type": MULTIPART, "Api-Key": server.key}, iter(body))
    assert outcome.status == 503, outcome.response[:300]
    assert outcome.sent >= sum(map(len, body)), "all of it was read"
    memory.assert_flat()


def test_a_stalled_body_is_408(server):
    sock = connect(server.port)
    sock.sendall(f"POST {IMAGE_PATH} HTTP/1.1\r\nHost: attack\r\nApi-Key: {server.key}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"prompt\": \"a".encode())
    response, closed = read_until_closed(sock, 60)
    sock.close()
    assert closed and status(response) == 408
    assert header(response, "connection") == "close"
    assert "stalled" in problem(response)["detail"]


def test_the_server_still_serves_after_the_attacks(server):
    sock = connect(server.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    response, _ = read_until_closed(sock, 10)
    sock.close()
    assert status(response) == 200
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["status"] == "ok"

