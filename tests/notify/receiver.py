"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 (the standard library's,
one thread per connection) that records every request's raw body and headers and answers as the
test tells it, per path: ``"200"``, ``"500"``, ``"hang"`` (never answers until the receiver
stops), ``"redirect"`` (302 to ``/elsewhere`` on the same receiver) or ``"big"`` (200 with a body
far over any sensible cap)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Received:
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    answer: str


@dataclass
class Receiver:
    requests: list[Received] = field(default_factory=list)
    plans: dict[str, list[str]] = field(default_factory=dict)  # path → answers still to give, in order
    default: str = "200"

    def __post_init__(self) -> None:
        self._changed = threading.Condition()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = urlsplit(self.path)
                answer = receiver._next(parts.path)
                receiver._record(Received(parts.path, parts.query, {k.lower(): v for k, v in self.headers.items()},
                                          body, answer))
                if answer == "hang":
                    receiver._release.wait(120)
                    self.close_connection = True
                    return
                if answer == "redirect":
                    self._answer(302, b"", {"Location": "/elsewhere"})
                elif answer == "big":
                    self._answer(200, b"x" * (2 * 1024 * 1024))
                else:
                    self._answer(int(answer), b'{"ok":true}')

            def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str = "/hook", query: str = "") -> str:
        return self.base_url + path + (f"?{query}" if query else "")

    def plan(self, path: str, *answers: str) -> None:
        with self._changed:
            self.plans.setdefault(path, []).extend(answers)

    def _next(self, path: str) -> str:
        with self._changed:
            queue = self.plans.get(path)
            return queue.pop(0) if queue else self.default

    def _record(self, received: Received) -> None:
        with self._changed:
            self.requests.append(received)
            self._changed.notify_all()

    def at(self, path: str) -> list[Received]:
        with self._changed:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 30.0) -> list[Received]:
        """The first ``count`` requests to ``path``, waiting for them (a bound, not a timing check)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len([r for r in self.requests if r.path == path]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [(r.path, r.answer) for r in self.requests]
                    raise AssertionError(f"expected {count} requests to {path}; got {got}")
                self._changed.wait(left)
            return [r for r in self.requests if r.path == path][:count]

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
