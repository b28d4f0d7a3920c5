"""All database access the server and CLI need, as one async class over a session factory."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..domain.untrusted import printable
from .db import Transactions, create_engine_async, sessionmaker_for
from .models import Account, ApiKey, Delivery, IdempotencyKey, RequestRecord, StoredImage, UpstreamAttempt

KEY_PREFIX = "ih_"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(dt: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(10)}"


def generate_key() -> str:
    """256 bits of entropy, URL-safe, recognisable by its prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(pepper: bytes, key: str) -> str:
    """Fast keyed hash, looked up by index: keys are random, so no slow password hash is needed."""
    return hmac.new(pepper, key.encode("utf-8"), hashlib.sha256).hexdigest()


_KEY_ATTRS = [(prop.key, prop.columns[0].name) for prop in ApiKey.__mapper__.column_attrs]
_AUTHENTICATE = (
    select(*ApiKey.__table__.columns, Account.__table__.c.group_name.label("account_group"))
    .select_from(ApiKey.__table__.outerjoin(Account.__table__, Account.__table__.c.id == ApiKey.__table__.c.account_id))
    .where(ApiKey.__table__.c.key_hash == bindparam("digest"))
)


def add_deliveries(s: Any, request_id: str, deliveries: Any, now: datetime) -> None:
    """The outbox rows a state change owes, in the caller's transaction (a synchronous connection);
    a task callback supersedes the pending ones of the same generation with a lower ``seq``."""
    for d in deliveries:
        if d["kind"] == "callback":
            s.execute(update(Delivery).where(
                Delivery.generation_id == d["generation_id"], Delivery.kind == "callback",
                Delivery.state == "pending", Delivery.seq < d["seq"]).values(state="superseded"))
        s.execute(insert(Delivery).values(
            request_id=request_id, state="pending", attempts=0, next_attempt_at=now, created_at=now, **d))


class Repository:
    def __init__(self, engine: AsyncEngine, pepper: bytes) -> None:
        self.engine = engine
        self.session = sessionmaker_for(engine)
        self.tx = Transactions(engine)  # the request path's statements (authentication here; store.generations)
        self._pepper = pepper

    @classmethod
    def connect(cls, url: str, pepper: bytes) -> "Repository":
        return cls(create_engine_async(url), pepper)

    async def close(self) -> None:
        self.tx.dispose()
        await self.engine.dispose()

    # ------------------------------------------------------------ keys

    async def create_key(
        self,
        name: str = "",
        *,
        account_id: str = "acct_default",
        rpm: int | None = None,
        max_images_in_flight: int | None = None,
        expires_at: datetime | None = None,
        allowed_operations: list[str] | None = None,
        spend_cap_micros: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key; without an account it belongs to the default account (unlimited credit)."""
        plaintext = generate_key()
        row = ApiKey(
            id=new_id("key"),
            name=name,
            key_hash=hash_key(self._pepper, plaintext),
            prefix=plaintext[:10],
            created_at=utcnow(),
            account_id=account_id,
            rpm=rpm,
            max_images_in_flight=max_images_in_flight,
            expires_at=expires_at,
            allowed_operations=allowed_operations,
            spend_cap_micros=spend_cap_micros,
            committed_micros=0,
        )
        async with self.session.begin() as s:
            s.add(row)
        return row, plaintext

    async def list_keys(self, account_id: str | None = None) -> list[ApiKey]:
        """Every key (oldest first), or one account's."""
        q = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if account_id is not None:
            q = q.where(ApiKey.account_id == account_id)
        async with self.session() as s:
            return list((await s.scalars(q)).all())

    async def get_key(self, key_id: str) -> ApiKey | None:
        async with self.session() as s:
            return await s.get(ApiKey, key_id)

    async def update_key(self, key_id: str, values: dict[str, Any]) -> ApiKey | None:
        """Change a key's name or limits (``manage.keys`` checked them); None if there is no such key."""
        async with self.session.begin() as s:
            if values:
                await s.execute(update(ApiKey).where(ApiKey.id == key_id).values(**values))
            return await s.get(ApiKey, key_id)

    async def revoke_key(self, key_id: str) -> bool:
        async with self.session.begin() as s:
            res = await s.execute(
                update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
            )
            return res.rowcount == 1

    async def authenticate(self, plaintext: str) -> ApiKey | None:
        """The active key for this secret, or None. Not cached: a revoke takes effect at once,
        from any process (the CLI revokes while the server runs)."""
        digest = hash_key(self._pepper, plaintext)
        found = await self.tx.read(lambda conn: conn.execute(_AUTHENTICATE, {"digest": digest}).first())
        if found is None:
            return None
        fields = found._mapping
        row = ApiKey(**{attr: fields[col] for attr, col in _KEY_ATTRS})
        if row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
            return None
        # the account's price group, read with the key: admission needs no second query (None: no such account)
        row.account_group = fields["account_group"]  # type: ignore[attr-defined]
        if row.expires_at is not None and _aware(row.expires_at) <= utcnow():
            return None
        return row

    # ------------------------------------------------------------ request record

    async def start_request(
        self, request_id: str, key_id: str | None, operation: str, account_id: str | None = None
    ) -> datetime:
        """The record of a request as it arrives; returns its ``created_at``."""
        now = utcnow()
        async with self.session.begin() as s:
            s.add(
                RequestRecord(
                    id=request_id, key_id=key_id, operation=operation, params={}, state="received",
                    created_at=now, updated_at=now, account_id=account_id, price_micros=0,
                )
            )
        return now

    async def update_request(self, request_id: str, state: str, **values: Any) -> None:
        """The record's new state (and values), owing no notification."""
        await self.finish(request_id, state, **values)

    # ------------------------------------------------------------ generations

    async def finish(self, request_id: str, state: str, deliveries: list[dict[str, Any]] = (),  # type: ignore[assignment]
                     **values: Any) -> None:
        """A generation's new state and the notifications it owes, in one transaction (the outbox
        is durable: a state change is never recorded without its webhook or callback). A task
        callback supersedes the pending ones of the same generation with a lower ``seq``."""
        now = utcnow()
        if state in ("done", "failed"):
            values["finished_at"] = now
        if values.get("error") is not None:  # may quote outside text: never a NUL (PostgreSQL refuses it) or a secret
            values["error"] = printable(values["error"], 1000)
        async with self.session.begin() as s:
            await s.execute(update(RequestRecord).where(RequestRecord.id == request_id)
                            .values(state=state, updated_at=now, **values))
            await s.run_sync(add_deliveries, request_id, deliveries, now)

    async def get_generation(self, generation_id: str) -> RequestRecord | None:
        async with self.session() as s:
            return await s.scalar(select(RequestRecord).where(RequestRecord.generation_id == generation_id))

    async def get_generations(self, generation_ids: list[str]) -> list[RequestRecord]:
        if not generation_ids:
            return []
        async with self.session() as s:
            q = select(RequestRecord).where(RequestRecord.generation_id.in_(generation_ids))
            return list((await s.scalars(q)).all())

    async def claim_idempotency(self, account_id: str, key: str, fingerprint: str, request_id: str,
                                ttl: timedelta) -> tuple[str, str] | None:
        """Record that ``key`` made ``request_id``; or, if the account used it within ``ttl``,
        return (the request it made, that request's fingerprint)."""
        now = utcnow()
        row = {"account_id": account_id, "key": key, "request_hash": fingerprint, "request_id": request_id,
               "created_at": now, "expires_at": now + ttl}
        for _ in range(2):
            try:
                async with self.session.begin() as s:
                    await s.execute(insert(IdempotencyKey).values(**row))
                return None
            except IntegrityError:
                async with self.session.begin() as s:
                    existing = await s.get(IdempotencyKey, (account_id, key))
                    if existing is None:
                        continue
                    if _aware(existing.expires_at) > now:
                        return existing.request_id, existing.request_hash
                    await s.delete(existing)  # expired: the key is free again
        raise RuntimeError("could not claim an idempotency key")

    async def delete_expired_idempotency(self, now: datetime) -> None:
        async with self.session.begin() as s:
            await s.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at < now))

    async def get_request(self, request_id: str) -> RequestRecord | None:
        async with self.session() as s:
            return await s.get(RequestRecord, request_id)

    async def query_requests(self, *, limit: int, before: tuple[datetime, str] | None = None,
                             since: datetime | None = None, until: datetime | None = None,
                             **equal: Any) -> list[RequestRecord]:
        """The request log, newest first: ``equal`` filters columns by equality (``account_id``,
        ``key_id``, ``operation``, ``state``, ``status_code``, ``channel``; None is no filter);
        ``before`` is the keyset cursor (created_at, id) of the last row of the previous page."""
        q = select(RequestRecord)
        for column, value in equal.items():
            if value is not None:
                q = q.where(getattr(RequestRecord, column) == value)
        if since is not None:
            q = q.where(RequestRecord.created_at >= since)
        if until is not None:
            q = q.where(RequestRecord.created_at < until)
        if before is not None:
            at, rid = before
            q = q.where(or_(RequestRecord.created_at < at, and_(RequestRecord.created_at == at, RequestRecord.id < rid)))
        q = q.order_by(RequestRecord.created_at.desc(), RequestRecord.id.desc()).limit(limit)
        async with self.session() as s:
            return list((await s.scalars(q)).all())

    async def request_attempts(self, request_id: str) -> list[UpstreamAttempt]:
        async with self.session() as s:
            q = select(UpstreamAttempt).where(UpstreamAttempt.request_id == request_id).order_by(UpstreamAttempt.id)
            return list((await s.scalars(q)).all())

    async def request_images(self, request_id: str) -> list[StoredImage]:
        async with self.session() as s:
            q = select(StoredImage).where(StoredImage.request_id == request_id).order_by(StoredImage.id)
            return list((await s.scalars(q)).all())

    async def delete_usage_before(self, cutoff: datetime) -> None:
        """Retention: usage older than the cutoff goes (the ledger is kept: it is the money's history)."""
        async with self.session.begin() as s:
            await s.execute(delete(UpstreamAttempt).where(UpstreamAttempt.created_at < cutoff))
            # a request whose images are still being served stays until the image sweeper removes them
            await s.execute(
                delete(RequestRecord).where(
                    RequestRecord.created_at < cutoff, RequestRecord.id.notin_(select(StoredImage.request_id))
                )
            )

    # ------------------------------------------------------------ images

    async def add_images(self, rows: list[StoredImage]) -> None:
        async with self.session.begin() as s:
            s.add_all(rows)

    async def get_asset(self, asset_id: str, account_id: str, now: datetime) -> StoredImage | None:
        """One of the account's stored results, if it has not expired (a /v2 RESPONSE asset)."""
        async with self.session() as s:
            q = (select(StoredImage).join(RequestRecord, RequestRecord.id == StoredImage.request_id)
                 .where(StoredImage.id == asset_id, StoredImage.expires_at > now,
                        RequestRecord.account_id == account_id, RequestRecord.state == "done"))
            return await s.scalar(q)

    async def expired_images(self, now: datetime, limit: int = 500) -> list[StoredImage]:
        async with self.session() as s:
            q = select(StoredImage).where(StoredImage.expires_at < now).limit(limit)
            return list((await s.scalars(q)).all())

    async def images_of_failed_requests(self, _now: datetime, limit: int = 500) -> list[StoredImage]:
        """Images whose request failed after they were recorded (a crash between storing and
        settling): never served, so the sweeper deletes them."""
        async with self.session() as s:
            failed = select(RequestRecord.id).where(RequestRecord.state == "failed")
            q = select(StoredImage).where(StoredImage.request_id.in_(failed)).limit(limit)
            return list((await s.scalars(q)).all())

    async def delete_images(self, ids: list[str]) -> None:
        if ids:
            async with self.session.begin() as s:
                await s.execute(delete(StoredImage).where(StoredImage.id.in_(ids)))
