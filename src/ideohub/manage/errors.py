"""Errors the management layer adds to the domain's (which carry their HTTP status)."""

from __future__ import annotations

from ..domain.errors import IdeohubError, InvalidRequest


class Conflict(IdeohubError):
    """The item exists already (a channel name), or is in a state that forbids the change."""

    status = 409
    title = "Conflict"


def text_field(value: object, field: str, max_chars: int, *, required: bool = False) -> str:
    """Text an operator stores: the same rule as every API text field (no control characters —
    a NUL is a 500 on PostgreSQL — no unpaired surrogates), within the column's width."""
    from ..domain.untrusted import check_text

    if not isinstance(value, str):
        raise InvalidRequest(field, "must be a string")
    if required and not value.strip():
        raise InvalidRequest(field, "must not be empty")
    problem = check_text(value, max_chars)
    if problem:
        raise InvalidRequest(field, problem)
    return value
