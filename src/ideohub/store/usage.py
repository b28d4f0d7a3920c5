"""Usage reports from the request record and the upstream attempts: per day, key or
operation — requests, images delivered, what was charged, what upstreams cost, errors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Date, case, cast, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from .models import RequestRecord, UpstreamAttempt

GROUPINGS = ("day", "key", "operation")


def _day(col, dialect: str):  # type: ignore[no-untyped-def]
    return func.date(col) if dialect == "sqlite" else cast(col, Date)


def _requests_in(q, operation: str | None, channel: str | None):  # type: ignore[no-untyped-def]
    """Only the requests of ``operation`` and those ``channel`` served (a dashboard's scope)."""
    if operation is not None:
        q = q.where(RequestRecord.operation == operation)
    if channel is not None:
        q = q.where(RequestRecord.channel == channel)
    return q


def _attempts_in(q, operation: str | None, channel: str | None, joined: bool = False):  # type: ignore[no-untyped-def]
    """Only the attempts made on ``channel`` for requests of ``operation`` (joined: the query already
    joins the request)."""
    if operation is not None:
        if not joined:
            q = q.join(RequestRecord, RequestRecord.id == UpstreamAttempt.request_id)
        q = q.where(RequestRecord.operation == operation)
    if channel is not None:
        q = q.where(UpstreamAttempt.channel == channel)
    return q


async def usage_report(session: async_sessionmaker, since: datetime, by: str, operation: str | None = None,
                       channel: str | None = None) -> list[dict[str, Any]]:
    if by not in GROUPINGS:
        raise ValueError(f"group by one of {', '.join(GROUPINGS)}")
    async with session() as s:
        dialect = s.bind.dialect.name
        rq = {"day": _day(RequestRecord.created_at, dialect), "key": RequestRecord.key_id,
              "operation": RequestRecord.operation}[by]
        rows = (await s.execute(_requests_in(
            select(
                rq.label("group"),
                func.count().label("requests"),
                func.coalesce(func.sum(RequestRecord.images), 0).label("images"),
                func.coalesce(func.sum(RequestRecord.price_micros), 0).label("charged_micros"),
                func.coalesce(func.sum(case((RequestRecord.state == "failed", 1), else_=0)), 0).label("failed"),
                func.avg(RequestRecord.latency_ms).label("avg_latency_ms"),
            )
            .where(RequestRecord.created_at >= since)
            .group_by(rq)
            .order_by(rq), operation, channel)
        )).all()
        # what the upstreams cost us, attributed to the same groups through the request
        aq = {"day": _day(UpstreamAttempt.created_at, dialect), "key": RequestRecord.key_id,
              "operation": RequestRecord.operation}[by]
        costs = dict((await s.execute(_attempts_in(
            select(aq, func.coalesce(func.sum(UpstreamAttempt.cost_micros), 0))
            .select_from(UpstreamAttempt)
            .join(RequestRecord, RequestRecord.id == UpstreamAttempt.request_id)
            .where(UpstreamAttempt.created_at >= since)
            .group_by(aq), operation, channel, joined=True)
        )).all())
    return [
        {
            by: str(r.group) if r.group is not None else None,
            "requests": int(r.requests),
            "images": int(r.images),
            "charged_micros": int(r.charged_micros),
            "upstream_cost_micros": int(costs.get(r.group, 0) or 0),
            "failed": int(r.failed),
            "avg_latency_ms": round(float(r.avg_latency_ms), 1) if r.avg_latency_ms is not None else None,
        }
        for r in rows
    ]


# ------------------------------------------------------------ time buckets, stats and the request log
# (``manage.stats`` and ``manage.requests`` read these; the SQL works on SQLite and PostgreSQL alike)

BUCKETS = ("hour", "day")
REQUEST_STATES = ("received", "queued", "running", "done", "failed")
ATTEMPT_OK = ("ok", "rejected")  # attempt labels that are no error of the channel (rejected: the caller's input)
ATTEMPT_FAILED = ("failed", "auth")  # the channel's own failures (not "started" or "released": no verdict)
P50_SAMPLE = 20_000  # SQLite has no percentile function: at most this many recent latencies are read


def _bucket(col, dialect: str, bucket: str):  # type: ignore[no-untyped-def]
    """The UTC hour or day a timestamp falls in (SQLite keeps UTC text; PostgreSQL's session time zone
    is not assumed)."""
    if dialect == "sqlite":
        return func.strftime("%Y-%m-%d %H:00:00" if bucket == "hour" else "%Y-%m-%d 00:00:00", col)
    return func.date_trunc(bucket, func.timezone("UTC", col))


def as_utc(value: Any) -> datetime:
    """A bucket's start as the database answered it (SQLite text, PostgreSQL naive UTC) → aware UTC."""
    from datetime import UTC

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _failed():  # type: ignore[no-untyped-def]
    return func.coalesce(func.sum(case((RequestRecord.state == "failed", 1), else_=0)), 0)


def _attempt_errors():  # type: ignore[no-untyped-def]
    return func.coalesce(func.sum(case((UpstreamAttempt.outcome.in_(ATTEMPT_OK), 0), else_=1)), 0)


async def request_buckets(session: async_sessionmaker, since: datetime, bucket: str,
                          account_id: str | None = None, operation: str | None = None,
                          channel: str | None = None) -> list[dict[str, Any]]:
    """Per hour or day: requests, images, revenue, upstream cost and failed requests (of one
    operation, or served by one channel, when asked)."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    async with session() as s:
        dialect = s.bind.dialect.name
        b = _bucket(RequestRecord.created_at, dialect, bucket)
        q = (select(b.label("start"), func.count().label("requests"),
                    func.coalesce(func.sum(RequestRecord.images), 0).label("images"),
                    func.coalesce(func.sum(RequestRecord.price_micros), 0).label("revenue"),
                    _failed().label("errors"))
             .where(RequestRecord.created_at >= since).group_by(b))
        if account_id is not None:
            q = q.where(RequestRecord.account_id == account_id)
        rows = (await s.execute(_requests_in(q, operation, channel))).all()
        ab = _bucket(UpstreamAttempt.created_at, dialect, bucket)
        cq = (select(ab, func.coalesce(func.sum(UpstreamAttempt.cost_micros), 0))
              .where(UpstreamAttempt.created_at >= since).group_by(ab))
        if account_id is not None:
            cq = cq.join(RequestRecord, RequestRecord.id == UpstreamAttempt.request_id).where(
                RequestRecord.account_id == account_id)
        cq = _attempts_in(cq, operation, channel, joined=account_id is not None)
        costs = {as_utc(k): int(v or 0) for k, v in (await s.execute(cq)).all()}
    out = {as_utc(r.start): {"start": as_utc(r.start), "requests": int(r.requests), "images": int(r.images),
                             "revenue_micros": int(r.revenue), "upstream_cost_micros": 0, "errors": int(r.errors)}
           for r in rows}
    for start, cost in costs.items():
        out.setdefault(start, {"start": start, "requests": 0, "images": 0, "revenue_micros": 0,
                               "upstream_cost_micros": 0, "errors": 0})["upstream_cost_micros"] = cost
    return sorted(out.values(), key=lambda r: r["start"])


async def operation_totals(session: async_sessionmaker, since: datetime, operation: str | None = None,
                           channel: str | None = None) -> list[dict[str, Any]]:
    """Per operation: requests, images, revenue, upstream cost and failed requests."""
    rows = await usage_report(session, since, "operation", operation, channel)
    return [{"operation": r["operation"], "requests": r["requests"], "images": r["images"],
             "revenue_micros": r["charged_micros"], "upstream_cost_micros": r["upstream_cost_micros"],
             "errors": r["failed"]} for r in rows]


async def channel_totals(session: async_sessionmaker, since: datetime, operation: str | None = None,
                         channel: str | None = None, recent_errors: int = 0) -> dict[str, dict[str, Any]]:
    """Per channel, from the upstream attempts since ``since``: attempts, errors (anything but ok or
    the caller's own rejected input), upstream cost and the median latency; with ``recent_errors``,
    also that many of its latest failed attempts (when, outcome, status code), newest first."""
    async with session() as s:
        dialect = s.bind.dialect.name
        rows = (await s.execute(_attempts_in(
            select(UpstreamAttempt.channel, func.count(), _attempt_errors(),
                   func.coalesce(func.sum(UpstreamAttempt.cost_micros), 0))
            .where(UpstreamAttempt.created_at >= since).group_by(UpstreamAttempt.channel), operation, channel)
        )).all()
        if dialect == "postgresql":
            p50 = dict((await s.execute(_attempts_in(
                select(UpstreamAttempt.channel,
                       func.percentile_cont(0.5).within_group(UpstreamAttempt.latency_ms))
                .where(UpstreamAttempt.created_at >= since).group_by(UpstreamAttempt.channel), operation, channel)
            )).all())
        else:
            samples: dict[str, list[float]] = {}
            for name, latency in (await s.execute(_attempts_in(
                select(UpstreamAttempt.channel, UpstreamAttempt.latency_ms)
                .where(UpstreamAttempt.created_at >= since)
                .order_by(UpstreamAttempt.created_at.desc()).limit(P50_SAMPLE), operation, channel)
            )).all():
                samples.setdefault(name, []).append(float(latency))
            p50 = {c: _median(v) for c, v in samples.items()}
        failed: dict[str, list[dict[str, Any]]] = {}
        if recent_errors > 0:  # each channel's newest failures, however many another channel had
            newest = func.row_number().over(partition_by=UpstreamAttempt.channel,
                                            order_by=(UpstreamAttempt.created_at.desc(), UpstreamAttempt.id.desc()))
            ranked = _attempts_in(
                select(UpstreamAttempt.channel, UpstreamAttempt.outcome, UpstreamAttempt.status_code,
                       UpstreamAttempt.created_at, newest.label("n"))
                .where(UpstreamAttempt.created_at >= since, UpstreamAttempt.outcome.in_(ATTEMPT_FAILED)),
                operation, channel).subquery()
            for name, outcome, status, at, _n in (await s.execute(
                select(ranked).where(ranked.c.n <= recent_errors).order_by(ranked.c.channel, ranked.c.n)
            )).all():
                failed.setdefault(name, []).append({"at": as_utc(at), "outcome": outcome, "status_code": status})
    return {c: {"channel": c, "attempts": int(n), "errors": int(e), "upstream_cost_micros": int(cost or 0),
                "latency_ms_p50": round(float(p50[c]), 1) if p50.get(c) is not None else None,
                "recent_errors": failed.get(c, [])}
            for c, n, e, cost in rows}


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


async def tool_usage(session: async_sessionmaker, account_id: str, since: datetime,
                     bucket: str) -> list[dict[str, Any]]:
    """One account's charged usage per hour or day, operation, tier and key (its /v2/account/usage)."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    async with session() as s:
        b = _bucket(RequestRecord.created_at, s.bind.dialect.name, bucket)
        rows = (await s.execute(
            select(b.label("start"), RequestRecord.operation, RequestRecord.tier, RequestRecord.key_id,
                   func.count().label("requests"), func.coalesce(func.sum(RequestRecord.images), 0).label("images"),
                   func.coalesce(func.sum(RequestRecord.price_micros), 0).label("charged"))
            .where(RequestRecord.account_id == account_id, RequestRecord.created_at >= since)
            .group_by(b, RequestRecord.operation, RequestRecord.tier, RequestRecord.key_id)
        )).all()
    return sorted(({"start": as_utc(r.start), "operation": r.operation, "tier": r.tier, "key_id": r.key_id,
                    "requests": int(r.requests), "images": int(r.images), "charged_micros": int(r.charged)}
                   for r in rows), key=lambda r: (r["start"], r["operation"], r["tier"] or "", r["key_id"] or ""))
