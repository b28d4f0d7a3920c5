"""How the caller asked to be answered: ``async``, ``webhook_url`` (Ideogram's, and our extension
on every endpoint) and ``callback_url`` (the resellers' task dialect), read from the query string
or the body's top-level fields — a sibling of ``image_request`` in legacy JSON, never inside it."""

from __future__ import annotations

from starlette.datastructures import QueryParams

from ..domain.errors import InvalidRequest
from ..domain.generations import Mode, Submission
from ..notify.targets import TargetPolicy
from .dialects.fields import Fields
_TRUE, _FALSE = {"true", "1"}, {"false", "0", ""}


def _value(fields: Fields, query: QueryParams, name: str) -> object:
    if name in query:
        return query.get(name)
    raw = fields.values.get(name)
    if fields.from_json:
        return raw
    return raw[-1] if raw else None


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidRequest("async", "must be true or false")


def _url(value: object, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(name, "must be a string (an https URL)")
    return value.strip()


async def read_submission(fields: Fields, query: QueryParams, targets: TargetPolicy,
                          always_async: bool = False) -> Submission:
    """``always_async``: 4.0's ``/async/`` paths, which answer ``{"generation_id"}`` at once."""
    raw_async = _value(fields, query, "async")
    asked_async = (_flag(raw_async) if raw_async is not None else False) or always_async
    webhook = _url(_value(fields, query, "webhook_url"), "webhook_url")
    callback = _url(_value(fields, query, "callback_url"), "callback_url")
    if webhook and callback:
        raise InvalidRequest("callback_url", "cannot be used together with webhook_url")
    for name, url in (("webhook_url", webhook), ("callback_url", callback)):
        if url is not None:
            await targets.check(url, name)
    mode = Mode.ASYNC if (asked_async or webhook or callback) else Mode.SYNC
    return Submission(mode, webhook, callback)


def wants_task_dialect(fields: Fields | None, query: QueryParams) -> bool:
    """Whether the caller speaks the task dialect (errors keep its envelope)."""
    if "callback_url" in query:
        return True
    return fields is not None and bool(fields.values.get("callback_url"))
