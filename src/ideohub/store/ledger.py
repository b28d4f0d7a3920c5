"""Accounts and money: top-ups, reserve → settle | refund | release, each exactly once.

Every movement is an append-only ledger row written in the same transaction as the balance
it moves. Correct under concurrency on SQLite and PostgreSQL alike because every check is
part of the statement that changes the row (``UPDATE … WHERE balance >= amount RETURNING``):
the database serialises writers on the row, there is no read-then-write window.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..domain.errors import NotFound, PaymentRequired
from ..domain.money import CREDIT_KINDS, Credit, check_credit
from ..domain.prices import micros_to_usd
from .models import Account, ApiKey, LedgerEntry, RequestRecord, Reservation
from .repository import new_id, utcnow

DEFAULT_ACCOUNT = "acct_default"

# The per-request path (reserve, then settle | refund | release) as Core statements on the tables,
# built once: the same SQL, in the same transactions, as the ORM-enabled ``update(Account)`` and
# ``session.add`` emitted, without the ORM's per-statement work (statement construction, bulk-update
# evaluation, unit-of-work flush): that was about half the client CPU of a request's money handling
# on PostgreSQL and two thirds on SQLite (bench/billing.py).
_accounts, _keys = Account.__table__, ApiKey.__table__
_reservations, _ledger, _requests = Reservation.__table__, LedgerEntry.__table__, RequestRecord.__table__
_HOLD = (
    update(_accounts)
    .where(_accounts.c.id == bindparam("account"),
           or_(_accounts.c.unlimited.is_(True), _accounts.c.balance_micros >= bindparam("amount")))
    .values(balance_micros=_accounts.c.balance_micros - bindparam("amount"))
    .returning(_accounts.c.balance_micros)
)
_COMMIT_KEY = (
    update(_keys)
    .where(_keys.c.id == bindparam("key"),
           or_(_keys.c.spend_cap_micros.is_(None),
               _keys.c.committed_micros + bindparam("amount") <= _keys.c.spend_cap_micros))
    .values(committed_micros=_keys.c.committed_micros + bindparam("amount"))
    .returning(_keys.c.committed_micros)
)
_CLOSE = (
    update(_reservations)
    .where(_reservations.c.request_id == bindparam("rid"), _reservations.c.state == "held")
    .values(state=bindparam("new_state"))
    .returning(_reservations.c.account_id, _reservations.c.key_id, _reservations.c.amount_micros)
)
_GIVE_BACK = (
    update(_accounts).where(_accounts.c.id == bindparam("account"))
    .values(balance_micros=_accounts.c.balance_micros + bindparam("back")).returning(_accounts.c.balance_micros)
)
_UNCOMMIT_KEY = (
    update(_keys).where(_keys.c.id == bindparam("key"))
    .values(committed_micros=_keys.c.committed_micros - bindparam("back"))
)
_PRICE = update(_requests).where(_requests.c.id == bindparam("rid")).values(price_micros=bindparam("charge"))
_INSERT_RESERVATION = insert(_reservations)
_INSERT_ENTRY = insert(_ledger)


class Ledger:
    def __init__(self, session: async_sessionmaker) -> None:
        self.session = session

    # ------------------------------------------------------------ accounts

    async def create_account(self, name: str, group: str = "default", unlimited: bool = False) -> Account:
        row = Account(id=new_id("acct"), name=name, group_name=group, balance_micros=0, unlimited=unlimited,
                      created_at=utcnow())
        async with self.session.begin() as s:
            s.add(row)
        return row

    async def get_account(self, account_id: str) -> Account | None:
        async with self.session() as s:
            return await s.get(Account, account_id)

    async def list_accounts(self) -> list[Account]:
        async with self.session() as s:
            return list((await s.scalars(select(Account).order_by(Account.created_at))).all())

    async def topup(self, account_id: str, micros: int, note: str | None = None) -> int:
        """Add credit (positive only: ``money.check_credit``); returns the new balance."""
        return await self._credit(account_id, check_credit("topup", micros, note))

    async def adjust(self, account_id: str, micros: int, note: str | None) -> int:
        """Correct a balance either way, with a note saying why; returns the new balance."""
        return await self._credit(account_id, check_credit("adjust", micros, note))

    async def _credit(self, account_id: str, credit: Credit) -> int:
        async with self.session.begin() as s:
            balance = await s.scalar(
                update(Account).where(Account.id == account_id)
                .values(balance_micros=Account.balance_micros + credit.micros).returning(Account.balance_micros)
            )
            if balance is None:
                raise NotFound(f"no account {account_id}")
            s.add(self._entry(account_id, None, None, credit.kind, credit.micros, balance, credit.note))
        return balance

    # ------------------------------------------------------------ requests

    async def reserve(
        self, request_id: str, account_id: str, key_id: str | None, amount: int, ttl: timedelta
    ) -> int:
        """Hold ``amount`` before any work; 402 if the balance or the key's cap cannot cover it."""
        async with self.session.begin() as s:
            return await self.hold(s, request_id, account_id, key_id, amount, ttl)

    async def hold(self, s: AsyncSession, request_id: str, account_id: str, key_id: str | None, amount: int,
                   ttl: timedelta) -> int:
        """``reserve`` inside the caller's transaction."""
        return await s.run_sync(hold, request_id, account_id, key_id, amount, ttl)

    async def settle(self, request_id: str, charge: int) -> bool:
        """Charge ``charge`` (≤ the reservation) and return the rest. False if the reservation
        was already settled, refunded or released: nothing moves twice."""
        return await self._close(request_id, "settled", charge)

    async def is_held(self, request_id: str) -> bool:
        """Whether the request's reservation is still held (nobody settled, refunded or released it)."""
        async with self.session() as s:
            return (await s.scalar(select(Reservation.state).where(Reservation.request_id == request_id))) == "held"

    async def refund(self, request_id: str) -> bool:
        return await self._close(request_id, "refunded", 0)

    async def release_expired(self, now: datetime | None = None) -> int:
        """The sweeper: reservations left behind by a crashed process go back to their account."""
        now = now or utcnow()
        async with self.session() as s:
            stale = (await s.scalars(
                select(Reservation.request_id).where(Reservation.state == "held", Reservation.expires_at < now)
            )).all()
        released = 0
        for request_id in stale:
            if await self._close(request_id, "released", 0):
                released += 1
                async with self.session.begin() as s:
                    await s.execute(
                        update(RequestRecord)
                        .where(RequestRecord.id == request_id, RequestRecord.state.notin_(("done", "failed")))
                        .values(state="failed", error="abandoned (the process handling it stopped)",
                                failure_reason="abandoned", resume=None, updated_at=now, finished_at=now)
                    )
        return released

    async def _close(self, request_id: str, state: str, charge: int) -> bool:
        async with self.session.begin() as s:
            return await self.close(s, request_id, state, charge)

    async def close(self, s: AsyncSession, request_id: str, state: str, charge: int, *,
                    record_price: bool = True) -> bool:
        """``close`` inside the caller's transaction."""
        return await s.run_sync(close, request_id, state, charge, record_price)

    # ------------------------------------------------------------ reading

    async def ledger_sum(self, account_id: str) -> int:
        async with self.session() as s:
            return int(await s.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(LedgerEntry.account_id == account_id)
            ) or 0)

    async def charged(self, account_id: str) -> int:
        """Total charged to an account: what reservations held minus what came back."""
        async with self.session() as s:
            q = select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(
                and_(LedgerEntry.account_id == account_id, LedgerEntry.kind.notin_(CREDIT_KINDS))
            )
            return -int(await s.scalar(q) or 0)

    @staticmethod
    def _entry(account_id: str, key_id: str | None, request_id: str | None, kind: str, amount: int, balance: int,
               note: str | None = None) -> LedgerEntry:
        return LedgerEntry(account_id=account_id, key_id=key_id, request_id=request_id, kind=kind,
                           amount_micros=amount, balance_after=balance, note=note, created_at=utcnow())



# ------------------------------------------------------------ the two movements, on a synchronous connection
# (inside a caller's transaction: the async Ledger methods run them with run_sync; the request path's
# transactions (store.generations) run them with everything else the transaction writes)


def hold(s: Any, request_id: str, account_id: str, key_id: str | None, amount: int, ttl: timedelta) -> int:
    """Hold ``amount`` before any work; 402 if the balance or the key's cap cannot cover it."""
    balance = s.scalar(_HOLD, {"account": account_id, "amount": amount})
    if balance is None:
        have = s.scalar(select(Account.balance_micros).where(Account.id == account_id))
        if have is None:
            raise NotFound(f"the key's account {account_id} does not exist")
        raise PaymentRequired(
            f"insufficient balance: this request costs ${micros_to_usd(amount)}, "
            f"the account has ${micros_to_usd(have)}"
        )
    if key_id is not None:
        committed = s.scalar(_COMMIT_KEY, {"key": key_id, "amount": amount})
        if committed is None:
            raise PaymentRequired("this key's spending cap would be exceeded by this request")  # rolls back
    now = utcnow()
    s.execute(_INSERT_RESERVATION, {
        "request_id": request_id, "account_id": account_id, "key_id": key_id, "amount_micros": amount,
        "state": "held", "created_at": now, "expires_at": now + ttl,
    })
    s.execute(_INSERT_ENTRY, _row(account_id, key_id, request_id, "reserve", -amount, balance))
    return balance


def close(s: Any, request_id: str, state: str, charge: int, record_price: bool = True) -> bool:
    """Settle (``state="settled"``), refund or release; False if the reservation is no longer held.
    ``record_price=False``: the caller writes the request's ``price_micros`` in its own update."""
    row = (s.execute(_CLOSE, {"rid": request_id, "new_state": state})).first()
    if row is None:
        return False
    account_id, key_id, amount = row
    charge = max(0, min(charge, amount))
    back = amount - charge
    # the request's price before the balance: it locks only this request's row, so the
    # account's row (hot when many requests share an account) is held one statement less
    if record_price:
        s.execute(_PRICE, {"rid": request_id, "charge": charge})
    balance = s.scalar(_GIVE_BACK, {"account": account_id, "back": back})
    if key_id is not None and back:
        s.execute(_UNCOMMIT_KEY, {"key": key_id, "back": back})
    kind = {"settled": "settle", "refunded": "refund", "released": "release"}[state]
    note = f"charged {charge}" if state == "settled" else None
    s.execute(_INSERT_ENTRY, _row(account_id, key_id, request_id, kind, back, balance, note))
    return True


def _row(account_id: str, key_id: str | None, request_id: str | None, kind: str, amount: int, balance: int,
         note: str | None = None) -> dict:
    """A ledger row's values for ``_INSERT_ENTRY`` (what ``Ledger._entry`` is for the ORM)."""
    return {"account_id": account_id, "key_id": key_id, "request_id": request_id, "kind": kind,
            "amount_micros": amount, "balance_after": balance, "note": note, "created_at": utcnow()}
