"""A reverse proxy on loopback that serves a server under a path prefix, as operators run one."""

from __future__ import annotations

from typing import Any

import httpx


class PrefixProxy:
    """A reverse proxy on loopback serving the server under ``/hub``: strips the prefix, sends the
    upstream's own Host (as nginx's ``proxy_pass`` does by default) and X-Forwarded-For/-Proto."""

    def __init__(self, upstream: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if not self.path.startswith("/hub/"):
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                headers.update({"X-Forwarded-For": "192.0.2.50", "X-Forwarded-Proto": "http"})
                r = httpx.request(self.command, upstream + self.path[len("/hub"):], headers=headers, content=body,
                                  follow_redirects=False, timeout=30)
                self.send_response(r.status_code)
                for k, v in r.headers.multi_items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
