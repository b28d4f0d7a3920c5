"""Scriptable faults: a FIFO of ``Fault`` entries, each consumed by the next matching requests.

One fault applies per request: the first queued entry whose scope and path match, and that
still has uses left. ``count=None`` keeps an entry in force until the queue is cleared.
Every served family matches the same way (``/v2/image/generate/ideogram-4``, ``v4-remix``,
``/v2/image/*``); polls of async generations take "api" faults by their path
(``/v2/generations/*``), as they have no operation.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..domain.operations import Operation

FAULT_KINDS = (
    "latency",  # sleep latency_s, then answer normally
    "status",  # answer `status` (429 carries Retry-After) with problem JSON (or `body`)
    "hang",  # stall hang_s seconds (past the client's timeout), then answer normally
    "malformed_json",  # 200, Content-Type application/json, a broken body
    "truncated_download",  # image download: Content-Length larger than the bytes sent, then close
    "expired_links",  # 200, but every URL's exp is already in the past (download → 410)
    "unauthorized",  # the endpoint's auth failure (401; 403 on /remix, /upscale, V3 remix) even with a valid key
)
SCOPES = ("api", "download", "any")
_FLAG_KINDS = ("hang", "malformed_json", "truncated_download", "expired_links", "unauthorized")


@dataclass
class Fault:
    kind: str
    count: int | None = 1  # how many matching requests it applies to; None = until cleared
    path: str | None = None  # request path, an operation's official path (covers its relay aliases),
    #                          an operation name ("v3-generate"), or a prefix ending in "*"
    on: str | None = None  # "api" | "download" | "any"; default: "download" for truncated_download, else "api"
    status: int | None = None  # kind "status": 429, 500, 502, 503, …; kind "unauthorized": override 401/403
    retry_after: int | None = None  # Retry-After seconds (always sent with 429; default 1)
    latency_s: float = 0.0  # extra delay before the fault acts (any kind)
    hang_s: float = 60.0  # kind "hang": the longest stall; ends early when the client disconnects or on reset
    body: str | None = None  # kind "status": raw body instead of problem JSON

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(FAULT_KINDS)}")
        if self.on is None:
            self.on = "download" if self.kind == "truncated_download" else "api"
        if self.on not in SCOPES:
            raise ValueError(f"fault 'on' must be one of {', '.join(SCOPES)}")
        if self.kind == "status":
            if self.status is None:
                self.status = 500
            if not 400 <= self.status <= 599:
                raise ValueError("a status fault needs a 4xx or 5xx status")
            if self.status == 429 and self.retry_after is None:
                self.retry_after = 1
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1 (or None for 'until cleared')")
        if self.latency_s < 0 or self.hang_s < 0:
            raise ValueError("latency_s and hang_s must not be negative")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Fault":
        """Also takes the shorthand ``{"status": 429}``, ``{"latency_s": 0.5}``, ``{"hang": true}``…"""
        data = dict(data)
        if "kind" not in data:
            flags = [k for k in _FLAG_KINDS if data.get(k)]
            if len(flags) > 1:
                raise ValueError(f"a fault has one kind, got {flags}")
            if flags:
                data["kind"] = flags[0]
            elif data.get("status") is not None:
                data["kind"] = "status"
            elif data.get("latency_s"):
                data["kind"] = "latency"
            else:
                raise ValueError("a fault needs 'kind' (or one of status, latency_s, " + ", ".join(_FLAG_KINDS) + ")")
        for k in _FLAG_KINDS:
            data.pop(k, None)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, scope: str, path: str, operation: Operation | None) -> bool:
        if self.on != "any" and self.on != scope:
            return False
        p = self.path
        if p is None or p == path:
            return True
        if p.endswith("*"):
            return path.startswith(p[:-1])
        if operation is not None:
            return p == operation.official_path or p == operation.value
        return False


class FaultQueue:
    def __init__(self) -> None:
        self._items: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self._items.extend(faults)

    def take(self, scope: str, path: str, operation: Operation | None = None) -> Fault | None:
        if not self._items:  # the common case, without the lock
            return None
        with self._lock:
            for i, f in enumerate(self._items):
                if f.matches(scope, path, operation):
                    if f.count is not None:
                        f.count -= 1
                        if f.count <= 0:
                            del self._items[i]
                    return f
        return None

    def pending(self) -> list[Fault]:
        with self._lock:
            return [Fault(**asdict(f)) for f in self._items]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
