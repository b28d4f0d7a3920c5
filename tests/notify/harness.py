"""Shared pieces of the notification tests: a wall clock that moves only when told, an outbox
on a real SQLite database, and a delivery worker wired to them."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ideohub.config import Secrets, load_settings
from ideohub.notify.keys import StaticWebhookKeys, new_static_ring
from ideohub.notify.outbox import Outbox
from ideohub.notify.sender import Sender
from ideohub.notify.targets import TargetPolicy
from ideohub.notify.worker import Deliverer
from ideohub.observability import Metrics
from ideohub.store import db
from ideohub.store.models import Delivery
from ideohub.store.repository import Repository


class Wall:
    """Unix time that moves only when a test says so. The service stamps outbox rows with the real
    time, so ``catch_up`` (called once a row has been written) puts this clock a little ahead of
    the real one, making the row due; from then on only ``advance`` moves it."""

    LEAD_S = 5.0

    def __init__(self, lead_s: float = LEAD_S) -> None:
        """``lead_s`` < 0 starts it behind the real time: nothing written before the first
        ``catch_up`` is due, so a first attempt happens at a known wall time, never at a pass the
        poll timer starts on its own before the test moves the clock."""
        self.now = time.time() + lead_s

    def __call__(self) -> float:
        return self.now

    def catch_up(self) -> None:
        self.now = max(self.now, time.time() + self.LEAD_S)

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Bench:
    """An outbox on its own SQLite database and a worker that sends from it."""

    def __init__(self, tmp_path: Path, *, allowed: tuple[str, ...] = ("127.0.0.1",), timeout_s: float = 5.0,
                 resolver: Any = None, database_url: str | None = None, **worker: Any) -> None:
        settings = load_settings(data_dir=tmp_path / "data", database_url=database_url)
        self.settings = settings
        db.upgrade(settings.db_url)
        self.pepper = Secrets.load(settings).key_pepper
        self.wall = Wall()
        self.ring = new_static_ring()
        self.metrics = Metrics()
        policy = TargetPolicy(list(allowed), **({"resolver": resolver} if resolver else {}))
        self.sender_args = dict(policy=policy, timeout_s=timeout_s, worker=worker)
        self.repo: Repository | None = None

    async def __aenter__(self) -> Bench:
        self.repo = Repository.connect(self.settings.db_url, self.pepper)
        self.deliverer = self.new_deliverer()
        return self

    def new_deliverer(self) -> Deliverer:
        args = self.sender_args
        sender = Sender(args["policy"], timeout_s=args["timeout_s"], max_response_bytes=64 * 1024)
        assert self.repo is not None
        return Deliverer(Outbox(self.repo.session), sender, StaticWebhookKeys(self.ring), retry_base_s=10.0,
                         metrics=self.metrics, clock=self.wall, **args["worker"])

    async def __aexit__(self, *exc: object) -> None:
        await self.deliverer.stop()
        await self.deliverer.sender.aclose()
        assert self.repo is not None
        await self.repo.close()

    async def enqueue(self, url: str, payload: str = '{"generation_id":"x","data":[]}', *, kind: str = "webhook",
                      seq: int = 0, generation_id: str | None = None, ttl_s: float = 24 * 3600,
                      account_id: str = "acct_test") -> tuple[str, int]:
        """A generation's record and one outbox row for it, written as the service writes them."""
        assert self.repo is not None
        gid = generation_id or secrets.token_urlsafe(16)
        request_id = f"req_{secrets.token_hex(8)}"
        await self.repo.start_request(request_id, None, "generate", account_id)
        self.wall.catch_up()
        expires = datetime.fromtimestamp(self.wall.now, UTC) + timedelta(seconds=ttl_s)
        await self.repo.finish(request_id, "done", deliveries=[{
            "generation_id": gid, "kind": kind, "url": url, "payload": payload, "seq": seq, "expires_at": expires}])
        rows = await self.rows(gid)
        return gid, rows[-1].id

    async def rows(self, generation_id: str) -> list[Delivery]:
        assert self.repo is not None
        async with self.repo.session() as s:
            return list((await s.scalars(select(Delivery).where(Delivery.generation_id == generation_id)
                                         .order_by(Delivery.id))).all())

    async def row(self, delivery_id: int) -> Delivery:
        assert self.repo is not None
        async with self.repo.session() as s:
            row = await s.get(Delivery, delivery_id)
            assert row is not None
            return row

    async def step(self, deliverer: Deliverer | None = None) -> int:
        """One pass, and every attempt it started, to the end."""
        d = deliverer or self.deliverer
        started = await d.run_once()
        await d.drain()
        return started


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def counter(metrics: Metrics, kind: str, outcome: str) -> float:
    return metrics.registry.get_sample_value("ideohub_deliveries_total", {"kind": kind, "outcome": outcome}) or 0.0
