"""Tables. Migrations (Alembic, ``store/migrations``) create them; never ``create_all`` in prod."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    """An API key, stored only as HMAC-SHA256(server pepper, key): a leaked table opens nothing."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public id, e.g. key_3f9c…
    name: Mapped[str] = mapped_column(String(200), default="")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to recognise a key in listings
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"), nullable=True, index=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    allowed_operations: Mapped[list | None] = mapped_column(JSON, nullable=True)  # None: every operation
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)  # requests per minute; None: no limit
    max_images_in_flight: Mapped[int | None] = mapped_column(Integer, nullable=True)
    spend_cap_micros: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    committed_micros: Mapped[int] = mapped_column(BigInteger, default=0)  # settled spend + open reservations


class RequestRecord(Base):
    """One row per API request: queued → running → done, or failed (or failed at once: refused)."""

    __tablename__ = "requests"
    __table_args__ = (Index("ix_requests_account_state", "account_id", "state"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True, index=True)
    operation: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict] = mapped_column(JSON, default=dict)  # parameter summary, never image bytes
    state: Mapped[str] = mapped_column(String(16), index=True)
    engine: Mapped[str | None] = mapped_column(String(64), nullable=True)
    images: Mapped[int] = mapped_column(Integer, default=0)  # images delivered
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    account_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    tier: Mapped[str | None] = mapped_column(String(32), nullable=True)  # model or rendering speed
    price_micros: Mapped[int] = mapped_column(BigInteger, default=0)  # what was charged
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # the generation (domain.generations): rows from before 0005 have none
    generation_id: Mapped[str | None] = mapped_column(String(22), nullable=True, unique=True, index=True)
    mode: Mapped[str | None] = mapped_column(String(8), nullable=True)  # sync | async
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    callback_url: Mapped[str | None] = mapped_column(Text, nullable=True)  # the task dialect's
    result: Mapped[str | None] = mapped_column(Text, nullable=True)  # the synchronous answer's body, exactly
    failure_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    resume: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # an async generation's wire request + staged files
    owner: Mapped[str | None] = mapped_column(String(40), nullable=True)  # the process running it
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the queue (issue 9): when it was last enqueued, and how many runs it has had (take-overs count)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    runs: Mapped[int | None] = mapped_column(Integer, nullable=True)


class StoredImage(Base):
    """A result image we serve. The sweeper deletes the file and the row after ``expires_at``."""

    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    storage_key: Mapped[str] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(Integer)
    etag: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_images_expires_at", "expires_at"),)


class ChannelRow(Base):
    """An upstream channel. ``key_ciphertext`` is the Fernet-sealed secret, never the plaintext."""

    __tablename__ = "channels"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    base_url: Mapped[str] = mapped_column(String(500))
    auth: Mapped[str] = mapped_column(String(16))
    path_style: Mapped[str] = mapped_column(String(16))
    key_ciphertext: Mapped[str] = mapped_column(Text)
    operations: Mapped[list | None] = mapped_column(JSON, nullable=True)
    models: Mapped[list | None] = mapped_column(JSON, nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    max_in_flight: Mapped[int] = mapped_column(Integer, default=10)
    connect_timeout_s: Mapped[float] = mapped_column(Float, default=10.0)
    timeout_s: Mapped[float] = mapped_column(Float, default=180.0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    cost_multiplier: Mapped[float] = mapped_column(Float, default=1.0)
    # forward the fields that act on the operator's own upstream account (migration 0008)
    account_fields: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(16), default="cli")  # "config" rows are upserted at start-up
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # health, written only on transitions (ok → failing, failing → ok, a cooldown starting)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    cooling_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)  # redacted, printable
    last_ok_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Account(Base):
    """Prepaid balance in integer micro-dollars. ``unlimited`` accounts are never refused for
    credit (the embedded default account); their balance still records what they spent."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    group_name: Mapped[str] = mapped_column(String(64), default="default")
    balance_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    unlimited: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Reservation(Base):
    """Money held for one request: held → settled | refunded | released (by the sweeper)."""

    __tablename__ = "reservations"

    request_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True)
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LedgerEntry(Base):
    """Append-only: every movement of a balance, written in the same transaction as the balance."""

    __tablename__ = "ledger"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UpstreamAttempt(Base):
    """One call to an upstream channel, with what it cost us (even when it failed, since a
    timed-out upstream may still bill)."""

    __tablename__ = "upstream_attempts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(40), index=True)
    channel: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(24))
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    images: Mapped[int] = mapped_column(Integer, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class IdempotencyKey(Base):
    """``Idempotency-Key`` → the generation it made, per account, for 24 h."""

    __tablename__ = "idempotency_keys"

    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))  # the parsed request, files by their hashes
    request_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Delivery(Base):
    """The outbox: one webhook or task callback to POST, at least once, until it is answered 2xx
    or its generation's links expire (then ``dead``). ``seq`` orders a task's status callbacks."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(40), index=True)
    generation_id: Mapped[str] = mapped_column(String(22), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # webhook | callback
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)  # the JSON body, exactly as it will be sent
    seq: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16))  # pending | delivered | dead | superseded
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (Index("ix_deliveries_due", "state", "next_attempt_at"),)


class SecretRow(Base):
    """One server secret, sealed (AES-256-GCM) under the master secret by ``store.secrets``; never
    plaintext. ``version`` grows with every write, so a running process notices a rotation by
    reading the versions alone."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)  # key_pepper, signing_keys, … or verifier
    value: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConsoleSession(Base):
    """A signed-in operator console (``console.sessions``). Neither the cookie nor the admin token is
    stored: ``id_hash`` and ``admin_fingerprint`` are HMAC-SHA256 of them under the key pepper, so a
    leaked table opens nothing, and a changed admin token no longer matches any row."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    admin_fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    client: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the address it signed in from
