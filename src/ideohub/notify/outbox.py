"""The outbox's queries (the ``deliveries`` table; rows are written by ``Repository.finish`` in
the transaction that changes the generation's state).

A row is claimed before it is sent: ``UPDATE … SET next_attempt_at = <lease end> WHERE id = …
AND state = 'pending' AND next_attempt_at = <the value read>``, so of two processes that read
the same due row only one sends it; a process that dies mid-attempt leaves the row to be taken
again when the lease ends (at least once). Every later write of that attempt is conditional on
the lease it holds, so a row that was superseded meanwhile stays superseded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..domain.untrusted import printable
from ..store.models import Delivery, RequestRecord

PENDING, DELIVERED, DEAD, SUPERSEDED = "pending", "delivered", "dead", "superseded"


@dataclass(frozen=True)
class Due:
    id: int
    generation_id: str
    kind: str  # webhook | callback
    url: str
    payload: str
    seq: int
    attempts: int
    next_attempt_at: datetime  # exactly as read: the claim compares against it
    expires_at: datetime
    account_id: str


@dataclass(frozen=True)
class DeliveryView:
    """A delivery as the generation's record shows it (no payload, no URL)."""

    kind: str
    seq: int
    state: str
    attempts: int
    last_status: int | None
    delivered_at: datetime | None
    next_attempt_at: datetime | None  # while pending

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "state": self.state, "attempts": self.attempts}
        if self.last_status is not None:
            out["last_status"] = self.last_status
        if self.delivered_at is not None:
            out["delivered_at"] = self.delivered_at.isoformat()
        if self.next_attempt_at is not None:
            out["next_attempt_at"] = self.next_attempt_at.isoformat()
        return out


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Outbox:
    def __init__(self, session: async_sessionmaker[AsyncSession]) -> None:
        self.session = session

    async def due(self, now: datetime, limit: int, after: tuple[datetime, int] | None = None) -> list[Due]:
        """Pending rows whose time has come, oldest first; ``after`` continues a scan (keyset)."""
        q = (select(Delivery.id, Delivery.generation_id, Delivery.kind, Delivery.url, Delivery.payload,
                    Delivery.seq, Delivery.attempts, Delivery.next_attempt_at, Delivery.expires_at,
                    RequestRecord.account_id)
             .outerjoin(RequestRecord, RequestRecord.id == Delivery.request_id)
             .where(Delivery.state == PENDING, Delivery.next_attempt_at <= now)
             .order_by(Delivery.next_attempt_at, Delivery.id).limit(limit))
        if after is not None:
            at, last_id = after
            q = q.where(or_(Delivery.next_attempt_at > at, and_(Delivery.next_attempt_at == at, Delivery.id > last_id)))
        async with self.session() as s:
            rows = (await s.execute(q)).all()
        return [Due(r.id, r.generation_id, r.kind, r.url, r.payload, r.seq, r.attempts, r.next_attempt_at,
                    _utc(r.expires_at), r.account_id or "") for r in rows]

    async def claim(self, row: Due, lease_until: datetime) -> bool:
        """This process sends ``row`` now (see the module docstring)."""
        async with self.session.begin() as s:
            res = await s.execute(update(Delivery)
                                  .where(Delivery.id == row.id, Delivery.state == PENDING,
                                         Delivery.next_attempt_at == row.next_attempt_at)
                                  .values(next_attempt_at=lease_until))
            return res.rowcount == 1

    async def _settle(self, row: Due, lease_until: datetime, **values: Any) -> bool:
        async with self.session.begin() as s:
            res = await s.execute(update(Delivery)
                                  .where(Delivery.id == row.id, Delivery.state == PENDING,
                                         Delivery.next_attempt_at == lease_until)
                                  .values(**values))
            return res.rowcount == 1

    async def delivered(self, row: Due, lease_until: datetime, now: datetime, status: int) -> bool:
        return await self._settle(row, lease_until, state=DELIVERED, attempts=row.attempts + 1, last_status=status,
                                  last_error=None, delivered_at=now, next_attempt_at=now)

    async def retry(self, row: Due, lease_until: datetime, at: datetime, status: int | None, error: str) -> bool:
        return await self._settle(row, lease_until, attempts=row.attempts + 1, last_status=status,
                                  last_error=printable(error, 500), next_attempt_at=at)

    async def dead(self, row: Due, lease_until: datetime, now: datetime, status: int | None, error: str,
                   attempted: bool = True) -> bool:
        return await self._settle(row, lease_until, state=DEAD, attempts=row.attempts + (1 if attempted else 0),
                                  last_status=status, last_error=printable(error, 500), next_attempt_at=now)

    async def supersede(self, row: Due, lease_until: datetime) -> bool:
        return await self._settle(row, lease_until, state=SUPERSEDED)

    async def newer_delivered(self, row: Due) -> bool:
        """Whether a later status of the same task was already delivered (an older one must not
        follow it)."""
        async with self.session() as s:
            found = await s.scalar(select(Delivery.id).where(
                Delivery.generation_id == row.generation_id, Delivery.kind == row.kind,
                Delivery.seq > row.seq, Delivery.state == DELIVERED).limit(1))
        return found is not None

    async def of_generation(self, generation_id: str) -> list[DeliveryView]:
        """The generation's deliveries, oldest first: for its record (e.g. the polling endpoint
        or an admin view: a ``dead`` webhook is visible there)."""
        async with self.session() as s:
            rows = (await s.scalars(select(Delivery).where(Delivery.generation_id == generation_id)
                                    .order_by(Delivery.id))).all()
        return [DeliveryView(r.kind, r.seq, r.state, r.attempts, r.last_status,
                             _utc(r.delivered_at) if r.delivered_at else None,
                             _utc(r.next_attempt_at) if r.state == PENDING else None) for r in rows]

    async def delete_finished_before(self, cutoff: datetime) -> int:
        """Retention: finished rows created before ``cutoff`` (pending ones are still owed)."""
        async with self.session.begin() as s:
            res = await s.execute(delete(Delivery).where(Delivery.state != PENDING, Delivery.created_at < cutoff))
            return res.rowcount or 0
