"""A pure-ASGI middleware (no per-request task overhead): request id, the
``X-Ideohub-Overhead-Ms`` header (time not spent waiting on engines or upstreams), and one
structured log line per request — metadata only, never image bytes or secrets."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..store.repository import new_id

log = logging.getLogger("ideohub.access")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        request_id = state.setdefault("request_id", new_id("req"))
        state.setdefault("engine_seconds", 0.0)
        status_holder = {"status": 0}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                queue_s = state.get("queue_seconds", 0.0)
                overhead_ms = (time.perf_counter() - started - state.get("engine_seconds", 0.0) - queue_s) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                if not any(k.lower() == b"x-content-type-options" for k, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))  # every answer: no type sniffing
                headers.append((b"x-ideohub-overhead-ms", f"{max(0.0, overhead_ms):.2f}".encode()))
                if queue_s:
                    headers.append((b"x-ideohub-queue-ms", f"{queue_s * 1000:.2f}".encode()))
                if "generation_id" in state:  # on every answer once admitted, errors included
                    headers.append((b"x-ideohub-generation-id", state["generation_id"].encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            state_obj = getattr(getattr(scope.get("app"), "state", None), "ideohub", None)
            if state_obj is not None and "operation" in state:
                endpoint = state["operation"]
                m = state_obj.metrics
                m.requests.labels(endpoint, str(status_holder["status"])).inc()
                m.latency.labels(endpoint).observe(elapsed)
                m.overhead.labels(endpoint).observe(max(0.0, elapsed - state.get("engine_seconds", 0.0)))
            if log.isEnabledFor(logging.INFO):
                record = {
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status_holder["status"],
                    "ms": round(elapsed * 1000, 2),
                    "engine_ms": round(state.get("engine_seconds", 0.0) * 1000, 2),
                }
                for extra in ("key_id", "operation", "prompt"):
                    if extra in state:
                        record[extra] = state[extra]
                log.info("request", extra={"fields": record})  # logs.py: the record's keys become the line's fields
