"""What one admitted generation carries from stage to stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..domain.generations import Submission
from ..domain.operations import CanonicalRequest, DescribeResult, ImageOutput, ImageResult, JsonResult, Operation
from ..domain.prices import Quote
from ..engines.base import Attempt


@dataclass
class Job:
    request_id: str
    generation_id: str
    operation: Operation
    request: CanonicalRequest
    key_id: str
    account_id: str
    quote: Quote
    submission: Submission
    created_at: datetime
    engine_name: str
    leased: bool = False  # holds the key's images lease (in the admitting process's limiter)
    staged: list[str] = field(default_factory=list)  # storage keys of its inputs, for whichever worker runs it
    run: int = 1  # which run of the generation this is (a take-over runs it again)
    resumable: bool = False  # its request is on its record and its inputs staged: another run can take it

    @property
    def output_prefix(self) -> str:
        """Every stored result is named ``<generation_id>-<run>-<n>.<ext>``: what a crashed run
        wrote is found by the generation's prefix, and two runs never share a name."""
        return f"{self.generation_id}-{self.run}-"


@dataclass
class Report:
    """What execution produced: the engine's result, where the time went, every upstream attempt."""

    result: ImageResult | DescribeResult | JsonResult
    engine_seconds: float
    queue_seconds: float
    attempts: list[Attempt]
    channel: str | None


@dataclass
class DeliveredImage:
    output: ImageOutput
    url: str | None  # None when the image failed the safety check
    asset_id: str | None = None  # the stored image's id (a /v2 RESPONSE asset); None when not stored


@dataclass
class Outcome:
    """A finished generation as the HTTP layer renders it."""

    operation: Operation
    images: list[DeliveredImage] | None = None
    descriptions: list[str] | None = None
    document: dict | None = None  # a JSON result (4.0 magic prompt and describe, /v2 describe)
    generation_id: str | None = None
    request: CanonicalRequest | None = None  # as admitted: the /v2 answers echo its seed and sizes
    engine_seconds: float = 0.0
    queue_seconds: float = 0.0  # waiting for a worker (not overhead, not engine time)
    body: bytes | None = None  # the answer, rendered before the money moved
