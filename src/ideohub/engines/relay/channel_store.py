"""Channels in the database: the CLI edits them, config-file channels are upserted at
start-up, and running servers re-read them within ``reload_s`` (no restart needed).

A relay row's ``operations`` is always an explicit list (``Channel`` fills in the legacy and 3.0
operations when none are given; migration 0008 wrote the same list into the relay rows that
had NULL), so a relay channel never starts serving a family its operator did not declare."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import async_sessionmaker

from ...domain.operations import Operation
from ...domain.untrusted import printable
from ...store.models import ChannelRow
from ...store.repository import utcnow
from .channels import Channel, ChannelHealth, SecretBox

MAX_ERROR_CHARS = 300


def _aware(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return dt if dt is None or dt.tzinfo is not None else dt.replace(tzinfo=UTC)


class ChannelStore:
    def __init__(self, session: async_sessionmaker, box: SecretBox) -> None:
        self.session = session
        self.box = box

    def _to_channel(self, row: ChannelRow) -> Channel:
        return Channel(
            name=row.name, kind=row.kind, base_url=row.base_url, key=self.box.open(row.key_ciphertext),  # type: ignore[arg-type]
            auth=row.auth, path_style=row.path_style,  # type: ignore[arg-type]
            operations=frozenset(Operation(o) for o in row.operations) if row.operations is not None else None,
            models=frozenset(row.models) if row.models is not None else None,
            priority=row.priority, weight=row.weight, max_in_flight=row.max_in_flight,
            connect_timeout_s=row.connect_timeout_s, timeout_s=row.timeout_s, enabled=row.enabled,
            cost_multiplier=row.cost_multiplier, account_fields=bool(row.account_fields),
            health=ChannelHealth(row.consecutive_failures or 0, _aware(row.cooling_until), row.last_error,
                                 _aware(row.last_ok_at)),
        )

    async def upsert(self, ch: Channel, source: str = "cli") -> None:
        now = utcnow()
        values: dict[str, Any] = dict(
            kind=ch.kind.value, base_url=ch.base_url, auth=ch.auth.value, path_style=ch.path_style.value,
            key_ciphertext=self.box.seal(ch.key),
            operations=sorted(o.value for o in ch.operations) if ch.operations is not None else None,
            models=sorted(ch.models) if ch.models is not None else None,
            priority=ch.priority, weight=ch.weight, max_in_flight=ch.max_in_flight,
            connect_timeout_s=ch.connect_timeout_s, timeout_s=ch.timeout_s, enabled=ch.enabled,
            cost_multiplier=ch.cost_multiplier, account_fields=ch.account_fields, source=source, updated_at=now,
        )
        async with self.session.begin() as s:  # one statement: processes starting together never collide
            insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
            await s.execute(insert(ChannelRow).values(name=ch.name, created_at=now, **values)
                            .on_conflict_do_update(index_elements=[ChannelRow.name], set_=values))

    async def list(self) -> list[Channel]:
        async with self.session() as s:
            rows = (await s.scalars(select(ChannelRow).order_by(ChannelRow.priority.desc(), ChannelRow.name))).all()
        return [self._to_channel(r) for r in rows]

    async def sources(self) -> dict[str, str]:
        """Where each channel came from (``config``, ``cli`` or ``api``), by name."""
        async with self.session() as s:
            return dict((await s.execute(select(ChannelRow.name, ChannelRow.source))).all())

    async def get(self, name: str) -> Channel | None:
        async with self.session() as s:
            row = await s.get(ChannelRow, name)
        return self._to_channel(row) if row else None

    async def set_enabled(self, name: str, enabled: bool) -> bool:
        async with self.session.begin() as s:
            res = await s.execute(
                update(ChannelRow).where(ChannelRow.name == name).values(enabled=enabled, updated_at=utcnow())
            )
            return res.rowcount == 1

    async def remove(self, name: str) -> bool:
        async with self.session.begin() as s:
            row = await s.get(ChannelRow, name)
            if row is None:
                return False
            await s.delete(row)
            return True

    async def record_failure(self, name: str, failures: int, cooling_until: datetime | None, error: str) -> None:
        """A failure transition (ok → failing, or a new cooldown). ``error`` must be redacted."""
        values = dict(consecutive_failures=failures, cooling_until=cooling_until,
                      last_error=printable(error, MAX_ERROR_CHARS))
        async with self.session.begin() as s:
            await s.execute(update(ChannelRow).where(ChannelRow.name == name).values(**values))

    async def record_ok(self, name: str, at: datetime) -> None:
        """A recovery (failing → ok), or the periodic refresh of ``last_ok_at``."""
        values = dict(consecutive_failures=0, cooling_until=None, last_ok_at=at)
        async with self.session.begin() as s:
            await s.execute(update(ChannelRow).where(ChannelRow.name == name).values(**values))
