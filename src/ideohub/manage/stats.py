"""Dashboard figures from SQL aggregates (SQLite and PostgreSQL alike): per hour or day, per
operation and per channel — requests, images, revenue (what was charged), upstream cost, errors.
A scope narrows every figure to one operation (its requests and their attempts) and/or one channel
(the requests it served and its own attempts), so each has its own charts over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from ..domain.errors import InvalidRequest
from ..domain.prices import micros_to_usd
from ..store.usage import BUCKETS, GROUPINGS, channel_totals, operation_totals, request_buckets, usage_report

MAX_HOURS = 8760
DEFAULT_HOURS = 168
MAX_USAGE_DAYS = 3650


def check_window(hours: object, bucket: object) -> tuple[int, str]:
    """``hours`` 1…8760 (default 168); ``bucket`` hour|day (default: hour up to 72 hours, else day)."""
    if hours is None or hours == "":
        hours = DEFAULT_HOURS
    if isinstance(hours, str):
        text = hours.strip()
        hours = int(text) if text.isascii() and text.isdigit() and len(text) < 8 else -1
    if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= MAX_HOURS:
        raise InvalidRequest("hours", f"must be an integer from 1 to {MAX_HOURS}")
    if bucket is None or bucket == "":
        bucket = "hour" if hours <= 72 else "day"
    if bucket not in BUCKETS:
        raise InvalidRequest("bucket", f"must be one of {', '.join(BUCKETS)}")
    return hours, str(bucket)


def floor(t: datetime, bucket: str) -> datetime:
    t = t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0) if bucket == "day" else t


def _rate(errors: int, requests: int) -> float:
    return round(errors / requests, 4) if requests else 0.0


def check_scope(operation: object, channel: object) -> dict[str, str | None]:
    """``operation`` (a known one) and ``channel`` (a name), each optional; the request log's rules."""
    from .requests import parse_filters

    given = {"operation": operation, "channel": channel}
    for field, value in given.items():
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(field, "must be a string")
    found = parse_filters({k: v for k, v in given.items() if v}, tuple(given))
    return {k: found.get(k) for k in given}


async def stats(session: async_sessionmaker, hours: object = None, bucket: object = None,
                now: datetime | None = None, operation: object = None, channel: object = None) -> dict[str, Any]:
    hours, bucket = check_window(hours, bucket)
    scope = check_scope(operation, channel)
    now = now or datetime.now(UTC)
    since = now - timedelta(hours=hours)
    found = {r["start"]: r for r in await request_buckets(session, since, bucket, **scope)}
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    buckets = []
    start = floor(since, bucket)
    while start <= now:  # every bucket of the window, empty ones too (a chart needs them)
        r = found.get(start, {"requests": 0, "images": 0, "revenue_micros": 0, "upstream_cost_micros": 0, "errors": 0})
        buckets.append({"start": start, "requests": r["requests"], "images": r["images"],
                        "revenue_usd": micros_to_usd(r["revenue_micros"]),
                        "upstream_cost_usd": micros_to_usd(r["upstream_cost_micros"]), "errors": r["errors"],
                        "error_rate": _rate(r["errors"], r["requests"])})
        start += step
    by_operation = [{"operation": r["operation"], "requests": r["requests"], "images": r["images"],
                     "revenue_usd": micros_to_usd(r["revenue_micros"]),
                     "upstream_cost_usd": micros_to_usd(r["upstream_cost_micros"]), "errors": r["errors"]}
                    for r in await operation_totals(session, since, **scope)]
    by_channel = [{"channel": c["channel"], "attempts": c["attempts"], "errors": c["errors"],
                   "upstream_cost_usd": micros_to_usd(c["upstream_cost_micros"]), "latency_ms_p50": c["latency_ms_p50"]}
                  for c in sorted((await channel_totals(session, since, **scope)).values(), key=lambda c: c["channel"])]
    return {"hours": hours, "bucket": bucket, **scope, "buckets": buckets, "by_operation": by_operation,
            "by_channel": by_channel}


async def usage(session: async_sessionmaker, days: object = 30, by: object = None,
                now: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
    """Totals per day, key or operation (``by``; all three when None) over the last ``days``
    (1…3650): requests, images, what was charged, what upstreams cost, failures, mean latency."""
    if isinstance(days, str):
        text = days.strip()
        days = int(text) if text.isascii() and text.isdigit() and len(text) < 8 else -1
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_USAGE_DAYS:
        raise InvalidRequest("days", f"must be an integer from 1 to {MAX_USAGE_DAYS}")
    if by is not None and by not in GROUPINGS:
        raise InvalidRequest("by", f"must be one of {', '.join(GROUPINGS)}")
    since = (now or datetime.now(UTC)) - timedelta(days=days)
    return {g: await usage_report(session, since, g) for g in ([by] if by else GROUPINGS)}
