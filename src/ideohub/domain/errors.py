"""Domain errors. Each carries the HTTP status it maps to; one handler in ``api`` renders them.

Bad input is always one of these, never a bare exception, so it can never become a 500.
"""

from __future__ import annotations


class IdeohubError(Exception):
    status: int = 500
    title: str = "Internal Server Error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(IdeohubError):
    """A field broke a rule. ``detail`` always names the field and the rule."""

    status = 400
    title = "Bad Request"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class PayloadTooLarge(IdeohubError):
    status = 413
    title = "Payload Too Large"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field


class UnsupportedMediaType(IdeohubError):
    status = 415
    title = "Unsupported Media Type"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field


class SafetyRejected(IdeohubError):
    """Rendered as the spec's ``{"error": ...}`` 422 body, not problem JSON."""

    status = 422
    title = "Unprocessable Entity"

    PROMPT = "Prompt provided failed safety check due to the inclusion of prohibited content."
    IMAGE = "Image provided failed safety check due to the inclusion of prohibited content."


class Unauthorized(IdeohubError):
    status = 401
    title = "Unauthorized"


class Forbidden(IdeohubError):
    status = 403
    title = "Forbidden"


class PaymentRequired(IdeohubError):
    status = 402
    title = "Payment Required"


class NotFound(IdeohubError):
    status = 404
    title = "Not Found"


class RequestTimeout(IdeohubError):
    """The client stopped sending its request (a stalled body)."""

    status = 408
    title = "Request Timeout"


class Retryable(IdeohubError):
    """An error the client may retry after ``retry_after`` seconds (sent as ``Retry-After``)."""

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = max(1, int(retry_after))


class RateLimited(Retryable):
    status = 429
    title = "Too Many Requests"

    def __init__(self, detail: str, retry_after: int = 1, max_inflight: int | None = None) -> None:
        super().__init__(detail, retry_after)
        self.max_inflight = max_inflight  # the key's images-in-flight limit, when that is what was hit


class Busy(Retryable):
    """The bounded worker queue is full: 503 with ``Retry-After`` instead of waiting without bound."""

    status = 503
    title = "Service Unavailable"


class EngineUnavailable(IdeohubError):
    """No engine is configured for an operation: 503 that says how to configure one."""

    status = 503
    title = "Service Unavailable"


class DeadlineExceeded(IdeohubError):
    status = 504
    title = "Gateway Timeout"


class UpstreamFailed(IdeohubError):
    """Every eligible upstream channel failed; the message names channels, never secrets."""

    status = 502
    title = "Bad Gateway"
