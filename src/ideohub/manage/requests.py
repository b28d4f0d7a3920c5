"""The request log: filtered pages (newest first, keyset cursor on ``(created_at, id)``) and one
request in detail — its parameters, upstream attempts, charge and its images at signed URLs while
they live. Operators see everything; a key holder sees their own account's requests, without
channels, engines or upstream attempts. Prompts appear only with ``log_prompts``."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..config import Settings
from ..domain.errors import InvalidRequest, NotFound
from ..domain.operations import Operation
from ..domain.prices import micros_to_usd
from ..store.ledger import DEFAULT_ACCOUNT
from ..store.models import RequestRecord
from ..store.repository import Repository, utcnow
from ..store.usage import REQUEST_STATES

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
OPERATOR_FILTERS = ("account_id", "key_id", "operation", "state", "status_code", "channel", "since", "until",
                    "limit", "before")
HOLDER_FILTERS = ("key_id", "operation", "state", "since", "until", "limit", "before")
# request fields that carry the caller's text (kept out of answers unless log_prompts is on)
PROMPT_FIELDS = frozenset({"prompt", "negative_prompt", "text_prompt", "json_prompt", "style_description",
                           "magic_prompt_text"})
_HIDDEN_FROM_HOLDERS = ("channel", "engine")


def _aware(t: datetime | None) -> datetime | None:
    return t if t is None or t.tzinfo is not None else t.replace(tzinfo=UTC)


def encode_cursor(record: RequestRecord) -> str:
    raw = json.dumps([_aware(record.created_at).isoformat(), record.id], separators=(",", ":"))  # type: ignore[union-attr]
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str, field: str = "before") -> tuple[datetime, str]:
    try:
        if len(value) > 200:
            raise ValueError
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        at, rid = json.loads(raw)
        if not isinstance(at, str) or not isinstance(rid, str) or len(rid) > 40:
            raise ValueError
        when = datetime.fromisoformat(at)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest(field, "is not a cursor this server issued (use next_before of the previous page)") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)), rid


def _time(value: str, field: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRequest(field, "must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _int(value: str, field: str, lo: int, hi: int) -> int:
    text = value.strip()
    if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 12 or not lo <= int(text) <= hi:
        raise InvalidRequest(field, f"must be an integer from {lo} to {hi}")
    return int(text)


def _ident(value: str, field: str, max_chars: int) -> str:
    if len(value) > max_chars or not value.isascii() or not value.isprintable():
        raise InvalidRequest(field, f"must be at most {max_chars} printable ASCII characters")
    return value


def parse_filters(query: Mapping[str, str | None], allowed: tuple[str, ...] = OPERATOR_FILTERS) -> dict[str, Any]:
    """Query parameters → checked filters; 400 naming the parameter for anything else."""
    unknown = sorted(k for k in query if k not in allowed)
    if unknown:
        raise InvalidRequest(unknown[0][:40], f"is not a filter; filters: {', '.join(allowed)}")
    out: dict[str, Any] = {"limit": DEFAULT_LIMIT}
    for field, value in query.items():
        if value is None or value == "":
            continue
        if field in ("account_id", "key_id"):
            out[field] = _ident(value, field, 40)
        elif field == "channel":
            out[field] = _ident(value, field, 64)
        elif field == "operation":
            if value not in Operation._value2member_map_:
                raise InvalidRequest(field, f"unknown operation {value[:80]!r} (GET /admin/operations lists them)")
            out[field] = value
        elif field == "state":
            if value not in REQUEST_STATES:
                raise InvalidRequest(field, f"must be one of {', '.join(REQUEST_STATES)}")
            out[field] = value
        elif field == "status_code":
            out[field] = _int(value, field, 100, 599)
        elif field in ("since", "until"):
            out[field] = _time(value, field)
        elif field == "limit":
            out[field] = _int(value, field, 1, MAX_LIMIT)
        elif field == "before":
            out[field] = decode_cursor(value)
    return out


def request_item(r: RequestRecord, *, operator: bool = True) -> dict[str, Any]:
    item = {"id": r.id, "generation_id": r.generation_id, "account_id": r.account_id or DEFAULT_ACCOUNT,
            "key_id": r.key_id, "operation": r.operation, "state": r.state, "status_code": r.status_code,
            "channel": r.channel, "engine": r.engine, "mode": r.mode, "images": r.images or 0,
            "price_usd": micros_to_usd(r.price_micros or 0), "latency_ms": r.latency_ms,
            "created_at": _aware(r.created_at), "finished_at": _aware(r.finished_at), "error": r.error,
            "failure_reason": r.failure_reason}
    if not operator:
        for field in _HIDDEN_FROM_HOLDERS:
            item.pop(field)
    return item


def visible_params(params: dict[str, Any] | None, log_prompts: bool) -> dict[str, Any]:
    """The request's parameters (never image bytes: the record keeps only their summary); the
    caller's prompts only when the operator chose to keep them (``log_prompts``)."""
    params = dict(params or {})
    if not log_prompts:
        for field in PROMPT_FIELDS:
            params.pop(field, None)
        inner = params.get("image_request")
        if isinstance(inner, dict):
            params["image_request"] = {k: v for k, v in inner.items() if k not in PROMPT_FIELDS}
    return params


class Requests:
    def __init__(self, settings: Settings, repo: Repository, signer: Any = None) -> None:
        """``signer``: the image URL signer (``media.signing.UrlSigner``); without one (the CLI)
        images are listed without URLs."""
        self.settings = settings
        self.repo = repo
        self.signer = signer

    async def page(self, filters: dict[str, Any], *, account_id: str | None = None,
                   operator: bool = True) -> dict[str, Any]:
        """One page of the log; ``account_id`` confines it to one account (a key holder's)."""
        f = dict(filters)
        limit = f.pop("limit", DEFAULT_LIMIT)
        before = f.pop("before", None)
        since, until = f.pop("since", None), f.pop("until", None)
        if account_id is not None:
            f["account_id"] = account_id
        rows = await self.repo.query_requests(limit=limit + 1, before=before, since=since, until=until, **f)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": [request_item(r, operator=operator) for r in rows],
                "next_before": encode_cursor(rows[-1]) if more and rows else None}

    async def detail(self, request_id: str, *, account_id: str | None = None, operator: bool = True) -> dict[str, Any]:
        """One request; 404 for an unknown id or (``account_id``) another account's."""
        if len(request_id) > 40:
            raise NotFound("request_id: no such request")
        record = await self.repo.get_request(request_id)
        if record is None or (account_id is not None and (record.account_id or DEFAULT_ACCOUNT) != account_id):
            raise NotFound("request_id: no such request")
        out = request_item(record, operator=operator)
        out["params"] = visible_params(record.params, self.settings.log_prompts)
        out["started_at"] = _aware(record.started_at)
        if operator:
            out["attempts"] = [{"channel": a.channel, "outcome": a.outcome, "status_code": a.status_code,
                                "latency_ms": round(a.latency_ms, 1), "images": a.images,
                                "cost_usd": micros_to_usd(a.cost_micros or 0), "created_at": _aware(a.created_at)}
                               for a in await self.repo.request_attempts(request_id)]
        now = utcnow()
        images = []
        for image in await self.repo.request_images(request_id):
            expires = _aware(image.expires_at)
            live = record.state == "done" and expires is not None and expires > now
            images.append({"url": self._url(image.storage_key, expires) if live else None, "width": image.width,
                           "height": image.height, "media_type": image.media_type, "expires_at": expires})
        out["images_delivered"] = out["images"]  # the item's count; ``images`` becomes the list
        out["images"] = images
        return out

    def _url(self, storage_key: str, expires: datetime | None) -> str | None:
        """A link that expires with the image itself (signed as if at ``expires - ttl``)."""
        if self.signer is None or expires is None:
            return None
        url, _exp = self.signer.sign(storage_key, now=expires.timestamp() - self.signer.ttl_s)
        return url
