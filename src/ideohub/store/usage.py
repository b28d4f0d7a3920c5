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


async def usage_report(session: async_sessionmaker, since: datetime, by: str) -> list[dict[str, Any]]:
    if by not in GROUPINGS:
        raise ValueError(f"group by one of {', '.join(GROUPINGS)}")
    async with session() as s:
        dialect = s.bind.dialect.name
        rq = {"day": _day(RequestRecord.created_at, dialect), "key": RequestRecord.key_id,
              "operation": RequestRecord.operation}[by]
        rows = (await s.execute(
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
            .order_by(rq)
        )).all()
        # what the upstreams cost us, attributed to the same groups through the request
        aq = {"day": _day(UpstreamAttempt.created_at, dialect), "key": RequestRecord.key_id,
              "operation": RequestRecord.operation}[by]
        costs = dict((await s.execute(
            select(aq, func.coalesce(func.sum(UpstreamAttempt.cost_micros), 0))
            .select_from(UpstreamAttempt)
            .join(RequestRecord, RequestRecord.id == UpstreamAttempt.request_id)
            .where(UpstreamAttempt.created_at >= since)
            .group_by(aq)
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
