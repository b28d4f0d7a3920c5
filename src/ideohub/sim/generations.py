"""Async generations: what a /v2 request answered with an acknowledgement (``async: true``, a
``webhook_url``, or an async-only endpoint) produced, until it is polled at
``GET /v2/generations/{id}`` (or ``/v1/generations/{id}``).

The result is made at once (its image links are signed when the request arrives) but reported
``pending`` for the first ``pending_polls`` polls, so a client's polling loop is exercised; then
``completed`` with the images, or ``failed`` when the prompt carried the sim's failure marker.
Bounded: the oldest generations are forgotten past ``max_entries`` (a poll then gets 404).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

GENERATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # URL-safe base64


@dataclass
class Generation:
    generation_id: str
    created: str
    items: list[dict[str, Any]]  # what the sim knows of each image (``answers.fill_items`` shapes them)
    object_type: str  # the poll answer's ``object_type`` for these items
    pending_polls: int  # polls still to be answered "pending"
    failure_reason: str | None = None  # set: the generation ends "failed"

    @property
    def status(self) -> str:
        if self.pending_polls > 0:
            return "pending"
        return "failed" if self.failure_reason else "completed"


class GenerationStore:
    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max(1, max_entries)
        self._items: OrderedDict[str, Generation] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, generation: Generation) -> None:
        with self._lock:
            self._items[generation.generation_id] = generation
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def poll(self, generation_id: str) -> tuple[Generation, str] | None:
        """The generation and the status this poll reports (counting the poll), or None."""
        with self._lock:
            generation = self._items.get(generation_id)
            if generation is None:
                return None
            status = generation.status
            if generation.pending_polls > 0:
                generation.pending_polls -= 1
            return generation, status

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
