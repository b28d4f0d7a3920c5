"""A generation's record through its life, one transaction per step (issue 9: a relayed request
costs at most three — authentication, admission, settlement — plus a claim when it waited in line).

- ``admit``: the pending bounds, the reservation and the record's first state, together.
- ``claim``: queued → running under this worker's lease (or a lease that expired), with the
  task callback that says so.
- ``complete`` / ``fail``: the image rows, the charge or the refund, the final state, the
  notifications owed and the upstream attempts, together; only by the lease holder, so of two
  runs of one generation exactly one settles.
- the reconciler's queries: queued too long (waited past ``max_queue_wait_s``), queued but maybe
  never enqueued, running under an expired lease.

The database is the source of truth; the queue only carries generation ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, insert, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from ..domain.errors import Retryable
from ..domain.generations import PENDING_STATES
from ..domain.untrusted import printable
from . import ledger
from .db import Transactions
from .ledger import Ledger
from .models import Account, RequestRecord, Reservation, StoredImage, UpstreamAttempt
from .repository import _aware, add_deliveries, utcnow

_requests = RequestRecord.__table__
_images = StoredImage.__table__
_accounts = Account.__table__
RUNNING_STATES = ("running", "stored", "received")  # "stored"/"received": rows from before issue 9

# the per-request statements, built once (as store.ledger's): no statement construction per request
_PENDING = _requests.c.state.in_(("queued", *RUNNING_STATES))
_PENDING_COUNTS = select(
    func.coalesce(func.sum(case((_requests.c.account_id == bindparam("account"), 1), else_=0)), 0), func.count()
).select_from(_requests).where(_PENDING)
# the SET columns come from the execution's parameters (all but the b_ ones)
_FINISH = update(_requests).where(_requests.c.id == bindparam("b_rid"), _requests.c.owner == bindparam("b_owner"),
                                  _requests.c.state.in_(RUNNING_STATES))
_INSERT_IMAGE = insert(_images)


_RECORD_ATTRS = [(prop.key, prop.columns[0].name) for prop in RequestRecord.__mapper__.column_attrs]


def _image_row(image: StoredImage) -> dict[str, Any]:
    return {c.key: getattr(image, c.key) for c in _images.columns}


class TooManyPending(Retryable):
    """The account (or the whole server) has as many generations queued or running as allowed."""

    status = 429
    title = "Too Many Requests"


class NotHeld(Exception):
    """The generation's lease or reservation is no longer this run's: another run (or the sweeper)
    took it over, so this one must not settle."""


@dataclass(frozen=True)
class Bounds:
    per_account: int | None
    total: int | None
    retry_after: int = 5


class GenerationStore:
    def __init__(self, session: async_sessionmaker, ledger: Ledger, transactions: Transactions | None = None) -> None:
        self.session = session
        self.ledger = ledger
        # the request path's transactions: synchronous functions of a connection, run in one hop
        self.tx = transactions or Transactions(session.kw["bind"])

    # ------------------------------------------------------------ admission

    async def admit(self, row: dict[str, Any], *, amount: int, ttl: timedelta, bounds: Bounds) -> None:
        """The reservation and the record in one transaction, refused (429) over the pending
        bounds. ``row`` is the whole record; nothing is written when anything refuses."""
        await self.tx.begin(_admit, row, amount, ttl, bounds)

    async def record_refusal(self, row: dict[str, Any]) -> None:
        """A request refused before it became a generation (bad input, no credit, …): one row."""
        if row.get("error") is not None:
            row["error"] = printable(row["error"], 1000)
        await self.tx.begin(lambda s: s.execute(insert(_requests), row))

    # ------------------------------------------------------------ running

    async def claim(self, generation_id: str, owner: str, stale_before: datetime, deliveries: Any = None,
                    queued_after: datetime | None = None) -> RequestRecord | None:
        """Queued → running under ``owner``'s lease; also a running one whose lease expired
        (heartbeat before ``stale_before``). None when it is not claimable: finished, running under a
        live lease, or queued since before ``queued_after`` (waited too long: the reconciler fails
        it). ``deliveries(record)`` gives the notifications the start owes. For a queued generation
        ``heartbeat_at`` is when it (re-)entered the queue. The record comes back detached."""
        return await self.tx.begin(_claim, generation_id, owner, stale_before, deliveries, queued_after)

    async def account_group(self, account_id: str) -> str | None:
        """The account's price group (None: no such account), to quote a generation a worker runs."""
        return await self.tx.read(lambda c: c.scalar(select(_accounts.c.group_name)
                                                      .where(_accounts.c.id == account_id)))

    async def hand_back(self, request_id: str, owner: str) -> bool:
        """A running generation this process stops holding (shutdown): queued again, for any worker."""
        now = utcnow()
        async with self.session.begin() as s:
            res = await s.execute(update(_requests)
                                  .where(_requests.c.id == request_id, _requests.c.owner == owner,
                                         _requests.c.state.in_(RUNNING_STATES))
                                  .values(state="queued", owner=None, enqueued_at=now, heartbeat_at=now,
                                          updated_at=now, runs=func.coalesce(_requests.c.runs, 1) - 1))
            return res.rowcount == 1

    async def complete(self, request_id: str, owner: str, charge: int, images: Sequence[StoredImage],
                       values: dict[str, Any], deliveries: Iterable[dict[str, Any]],
                       attempts: Iterable[dict[str, Any]]) -> None:
        """Settlement: image rows, charge, final state, notifications and attempts, or nothing
        (``NotHeld``) when the lease or the reservation is no longer this run's."""
        await self.tx.begin(_complete, request_id, owner, charge, list(images), values, list(deliveries),
                            list(attempts))

    async def fail(self, request_id: str, owner: str | None, values: dict[str, Any],
                   deliveries: Iterable[dict[str, Any]] = (), attempts: Iterable[dict[str, Any]] = (),
                   *, from_states: tuple[str, ...] = ("queued", *RUNNING_STATES)) -> bool:
        """The failure: refund (if still held), final state, notifications, attempts — only if the
        generation is still pending (and ``owner``'s, when given). False: someone else ended it."""
        if values.get("error") is not None:  # may quote outside text: never a NUL or a secret
            values["error"] = printable(values["error"], 1000)
        try:
            await self.tx.begin(_fail, request_id, owner, values, list(deliveries), list(attempts), from_states)
        except NotHeld:
            return False
        return True

    async def attempt_started(self, request_id: str, row: dict[str, Any]) -> int:
        """An upstream attempt's row before the call (the journal of a run that may die mid-call)."""
        async with self.session.begin() as s:
            return int(await s.scalar(insert(UpstreamAttempt.__table__)
                                      .values(request_id=request_id, created_at=utcnow(), **row)
                                      .returning(UpstreamAttempt.__table__.c.id)))

    async def attempt_ended(self, attempt_id: int, row: dict[str, Any]) -> None:
        async with self.session.begin() as s:
            await s.execute(update(UpstreamAttempt.__table__).where(UpstreamAttempt.__table__.c.id == attempt_id)
                            .values(**row))

    async def heartbeat(self, owner: str, reservation_ttl_s: float) -> None:
        """``owner`` is alive: its running generations' leases renewed, their money held longer."""
        now = utcnow()
        mine = select(_requests.c.id).where(_requests.c.owner == owner, _requests.c.state.in_(RUNNING_STATES))
        async with self.session.begin() as s:
            await s.execute(update(_requests).where(_requests.c.owner == owner, _requests.c.state.in_(RUNNING_STATES))
                            .values(heartbeat_at=now))
            await s.execute(update(Reservation).where(Reservation.state == "held", Reservation.request_id.in_(mine))
                            .values(expires_at=now + timedelta(seconds=reservation_ttl_s)))

    # ------------------------------------------------------------ the reconciler's queries

    async def queued_before(self, cutoff: datetime, limit: int = 200) -> list[RequestRecord]:
        """Queued generations last enqueued before ``cutoff``: maybe never enqueued (a crash
        between admission and enqueue), or lost with a Redis restart."""
        async with self.session() as s:
            q = (select(RequestRecord).where(RequestRecord.state == "queued", RequestRecord.enqueued_at < cutoff)
                 .order_by(RequestRecord.created_at).limit(limit))
            return list((await s.scalars(q)).all())

    async def requeued(self, request_id: str, enqueued_at: datetime | None) -> bool:
        """Mark one re-enqueue (compare-and-set, so two reconcilers do not both enqueue)."""
        now = utcnow()
        cond = [_requests.c.id == request_id, _requests.c.state == "queued"]
        cond.append(_requests.c.enqueued_at.is_(None) if enqueued_at is None else _requests.c.enqueued_at == enqueued_at)
        async with self.session.begin() as s:
            res = await s.execute(update(_requests).where(*cond).values(enqueued_at=now))
            return res.rowcount == 1

    async def waited_too_long(self, queued_before: datetime, limit: int = 200) -> list[RequestRecord]:
        """Queued generations that entered the queue (admission, or a take-over) before ``queued_before``."""
        async with self.session() as s:
            q = (select(RequestRecord).where(RequestRecord.state == "queued", RequestRecord.heartbeat_at < queued_before)
                 .limit(limit))
            return list((await s.scalars(q)).all())

    async def lease_expired(self, stale_before: datetime, limit: int = 200) -> list[RequestRecord]:
        async with self.session() as s:
            q = (select(RequestRecord)
                 .where(RequestRecord.generation_id.is_not(None), RequestRecord.state.in_(RUNNING_STATES),
                        RequestRecord.heartbeat_at < stale_before)
                 .order_by(RequestRecord.created_at).limit(limit))
            return list((await s.scalars(q)).all())

    async def requeue_expired(self, record: RequestRecord) -> bool:
        """A running generation whose lease expired goes back to the queue (compare-and-set on the
        lease as read)."""
        now = utcnow()
        async with self.session.begin() as s:
            res = await s.execute(update(_requests)
                                  .where(_requests.c.id == record.id, _requests.c.state.in_(RUNNING_STATES),
                                         _requests.c.heartbeat_at == record.heartbeat_at)
                                  .values(state="queued", owner=None, enqueued_at=now, heartbeat_at=now,
                                          updated_at=now))
            return res.rowcount == 1

    async def pending_counts(self) -> dict[str, tuple[int, datetime]]:
        """Generations by pending state — how many, and when the oldest was created — for the
        metrics (one grouped query over the ``state`` index)."""
        async with self.session() as s:
            rows = (await s.execute(select(_requests.c.state, func.count(), func.min(_requests.c.created_at)).where(
                _requests.c.state.in_(PENDING_STATES), _requests.c.generation_id.is_not(None))
                .group_by(_requests.c.state))).all()
        return {state: (int(n), _aware(oldest)) for state, n, oldest in rows}


# ------------------------------------------------------------ the transactions (synchronous: store.db.Transactions)


def _admit(s: Any, row: dict[str, Any], amount: int, ttl: timedelta, bounds: Bounds) -> None:
    if bounds.per_account or bounds.total:
        mine, total = s.execute(_PENDING_COUNTS, {"account": row["account_id"]}).one()
        mine, total = int(mine or 0), int(total or 0)
        if bounds.per_account and mine >= bounds.per_account:
            raise TooManyPending(f"this account has {mine} generations queued or running "
                                 f"(at most {bounds.per_account}); retry when one has finished",
                                 retry_after=bounds.retry_after)
        if bounds.total and total >= bounds.total:
            raise TooManyPending(f"the server has {total} generations queued or running (at most "
                                 f"{bounds.total}); retry later", retry_after=bounds.retry_after)
    ledger.hold(s, row["id"], row["account_id"], row["key_id"], amount, ttl)
    s.execute(insert(_requests), row)


def _complete(s: Any, request_id: str, owner: str, charge: int, images: list[StoredImage], values: dict[str, Any],
              deliveries: list[dict[str, Any]], attempts: list[dict[str, Any]]) -> None:
    now = utcnow()
    res = s.execute(_FINISH, {"state": "done", "updated_at": now, "finished_at": now, "price_micros": charge,
                              **values, "b_rid": request_id, "b_owner": owner})
    if res.rowcount != 1:
        raise NotHeld("the generation's lease was taken over")
    if not ledger.close(s, request_id, "settled", charge, record_price=False):
        raise NotHeld("the generation's reservation was released")
    if images:
        s.execute(_INSERT_IMAGE, [_image_row(i) for i in images])
    add_deliveries(s, request_id, deliveries, now)
    _add_attempts(s, request_id, attempts, now)


def _fail(s: Any, request_id: str, owner: str | None, values: dict[str, Any], deliveries: list[dict[str, Any]],
          attempts: list[dict[str, Any]], from_states: tuple[str, ...]) -> None:
    now = utcnow()
    cond = [_requests.c.id == request_id, _requests.c.state.in_(from_states)]
    if owner is not None:
        cond.append(_requests.c.owner == owner)
    res = s.execute(update(_requests).where(*cond)
                    .values(state="failed", updated_at=now, finished_at=now, resume=None, **values))
    if res.rowcount != 1:
        raise NotHeld("someone else ended it")  # rolls back
    ledger.close(s, request_id, "refunded", 0, record_price=False)  # its price stays 0
    add_deliveries(s, request_id, deliveries, now)
    _add_attempts(s, request_id, attempts, now)


def _claim(s: Any, generation_id: str, owner: str, stale_before: datetime, deliveries: Any,
           queued_after: datetime | None) -> RequestRecord | None:
    now = utcnow()
    queued = _requests.c.state == "queued"
    if queued_after is not None:
        queued = queued & (_requests.c.heartbeat_at >= queued_after)
    claimable = queued | (_requests.c.state.in_(RUNNING_STATES) & (_requests.c.heartbeat_at < stale_before))
    row = s.execute(update(_requests).where(_requests.c.generation_id == generation_id, claimable)
                    .values(state="running", owner=owner, heartbeat_at=now, started_at=now, updated_at=now,
                            runs=func.coalesce(_requests.c.runs, 0) + 1)
                    .returning(*_requests.columns)).first()
    if row is None:
        return None
    record = RequestRecord(**{attr: row._mapping[col] for attr, col in _RECORD_ATTRS})
    if deliveries is not None:
        add_deliveries(s, record.id, deliveries(record), now)
    return record


def _add_attempts(s: Any, request_id: str, attempts: Iterable[dict[str, Any]], now: datetime) -> None:
    rows = [{"request_id": request_id, "created_at": now, **a} for a in attempts]
    if rows:
        s.execute(insert(UpstreamAttempt.__table__), rows)
