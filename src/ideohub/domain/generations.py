"""Generations: every image request is one, from admission to its final state.

A generation has a ``generation_id`` (22 URL-safe base64 characters, as Ideogram's) assigned at
admission. Its record moves queued → running → done, or → failed; callers see three
states (Ideogram's ``GenerationResponse.status``): pending, completed, failed. A failed
generation carries one ``FailureReason`` — a fixed, documented code, never upstream text.

How the caller gets the result (``Mode``) does not change what a generation is: ``sync`` waits
in the HTTP call, ``async`` answers ``{"generation_id"}`` at once and is polled, delivered by a
signed webhook, or reported to a task callback.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from .operations import CanonicalRequest

GENERATION_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")


def new_generation_id() -> str:
    """128 random bits, URL-safe base64 without padding: 22 characters."""
    return secrets.token_urlsafe(16)


class Mode(StrEnum):
    SYNC = "sync"
    ASYNC = "async"


class Status(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"


PENDING_STATES = ("queued", "running", "received", "stored")  # the last two: records from before issue 9
STATUS_OF_STATE = {"queued": Status.PENDING, "received": Status.PENDING, "running": Status.PENDING,
                   "stored": Status.PENDING, "done": Status.COMPLETED, "failed": Status.FAILED}


class FailureReason(StrEnum):
    """Why a generation failed. Documented in the README; the HTTP detail stays in the record."""

    CONTENT_POLICY_VIOLATION = "content_policy_violation"  # a safety refusal (422)
    INVALID_INPUT = "invalid_input"  # the upstream refused the input (400, 413, 415)
    UPSTREAM_RATE_LIMITED = "upstream_rate_limited"  # every upstream said "slow down" (429)
    UPSTREAM_FAILED = "upstream_failed"  # every upstream failed or none could serve it (502, 503)
    TIMEOUT = "timeout"  # request_timeout_s passed (504)
    ABANDONED = "abandoned"  # the process running it stopped and it could not be resumed
    INTERNAL_ERROR = "internal_error"  # our own fault (500)


def failure_reason(status: int) -> FailureReason:
    """The reason for a failure answered with HTTP ``status``."""
    if status == 422:
        return FailureReason.CONTENT_POLICY_VIOLATION
    if status in (400, 413, 415):
        return FailureReason.INVALID_INPUT
    if status == 429:
        return FailureReason.UPSTREAM_RATE_LIMITED
    if status in (502, 503):
        return FailureReason.UPSTREAM_FAILED
    if status in (408, 504):
        return FailureReason.TIMEOUT
    return FailureReason.INTERNAL_ERROR


@dataclass(frozen=True)
class Submission:
    """How the caller asked to be answered, read from the request's top-level fields and query
    (never from inside ``image_request``). A ``webhook_url`` or ``callback_url`` makes it async."""

    mode: Mode = Mode.SYNC
    webhook_url: str | None = None
    callback_url: str | None = None  # the resellers' task dialect (our extension)

    @property
    def task_dialect(self) -> bool:
        return self.callback_url is not None


def fingerprint(request: CanonicalRequest, submission: Submission) -> str:
    """What makes two requests "the same" for ``Idempotency-Key``: the parsed fields, each uploaded
    file by its SHA-256, the operation and the delivery options — not the multipart boundary, the
    field order or the encoding they arrived in."""
    doc = {
        "operation": request.operation.value,
        "params": request.wire_params(),
        "files": [[name, hashlib.sha256(image.data).hexdigest()] for name, image in request.image_inputs()],
        "mode": submission.mode.value,
        "webhook_url": submission.webhook_url,
        "callback_url": submission.callback_url,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
