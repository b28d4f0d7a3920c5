"""The money and the files stay exact when a request fails late (issue 7, items 8 and 11):

- ``request_timeout_s`` bounds the whole engine call (a relayed download trickling past it
  used to return 200 after the sweeper had released the reservation: delivered free);
- a settle that finds its reservation already released fails the request — nothing is
  delivered free, and the images it stored are deleted;
- the answer is rendered before the money moves, so a failure rendering it refunds;
- an image's row is written before its file, and a failure deletes both; the sweeper removes
  images of failed requests and temporary files left by an interrupted write.

The engines here are small in-test engines implementing the engine protocol (the contract the
service relies on); storage, database and ledger are the real ones.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import png_bytes

from ideohub.config import Secrets, load_settings
from ideohub.domain.generations import Submission
from ideohub.domain.operations import ImageOutput, ImageResult, Operation, V3GenerateRequest
from ideohub.domain.sizes import Size
from ideohub.engines.base import WorkerPool
from ideohub.media.signing import UrlSigner
from ideohub.media.storage import LocalStorage
from ideohub.service import Service
from ideohub.store import db
from ideohub.store.ledger import Ledger
from ideohub.store.models import RequestRecord, StoredImage
from ideohub.store.repository import Repository, new_id, utcnow

PNG = png_bytes(32, 32)
OP = Operation.V3_GENERATE


def _image(prompt: str = "a cat") -> ImageOutput:
    return ImageOutput(data=PNG, media_type="image/png", resolution=Size(32, 32), prompt=prompt, seed=1,
                       is_image_safe=True)


class Fixed:
    """Returns ``images`` (after ``delay`` seconds, or after ``before`` runs)."""

    name = "fixed"

    def __init__(self, images: list[ImageOutput], delay: float = 0.0, before: Any = None) -> None:
        self.images, self.delay, self.before = images, delay, before

    async def run(self, request: Any, ctx: Any) -> ImageResult:
        if self.before is not None:
            await self.before(ctx)
        if self.delay:
            await asyncio.sleep(self.delay)  # the engine's own work, which the deadline must cut short
        return ImageResult(list(self.images))


class FailingStorage(LocalStorage):
    """Real files on disk; the ``fail_on``-th put raises (a full disk, a lost bucket)."""

    def __init__(self, root: Path, fail_on: int) -> None:
        super().__init__(root)
        self.fail_on, self.puts = fail_on, 0

    async def put(self, key: str, data: bytes) -> None:
        self.puts += 1
        if self.puts == self.fail_on:
            raise OSError("no space left on device")
        await super().put(key, data)


class World:
    def __init__(self, tmp: Path, storage: LocalStorage | None = None, **overrides: Any) -> None:
        self.settings = load_settings(data_dir=tmp, **overrides)
        db.upgrade(self.settings.db_url)
        secrets = Secrets.load(self.settings)
        self.repo = Repository.connect(self.settings.db_url, secrets.key_pepper)
        self.storage = storage or LocalStorage(self.settings.images_dir)
        self.ledger = Ledger(self.repo.session)
        self.signer = UrlSigner(secrets.signing_keys, secrets.active_kid, "http://test", 3600)

    def service(self, engine: Any) -> Service:
        return Service(self.settings, self.repo, self.storage, self.signer, {OP: engine}, WorkerPool(1, 1),
                       ledger=self.ledger)

    async def funded_key(self, usd_micros: int = 1_000_000) -> Any:
        account = await self.ledger.create_account("t")
        await self.ledger.topup(account.id, usd_micros)
        row, _ = await self.repo.create_key("t", account_id=account.id)
        return row

    async def call(self, service: Service, key: Any, render: Any = None) -> tuple[str, Any]:
        request_id = new_id("req")

        async def parse() -> V3GenerateRequest:
            return V3GenerateRequest(prompt="a cat", num_images=len(getattr(service.engines[OP], "images", [1])) or 1)

        try:
            return request_id, await service.handle(OP, parse, key, request_id, render=render)
        except Exception as exc:  # the HTTP layer renders it; here we look at what it left behind
            return request_id, exc

    async def state(self, request_id: str, account_id: str) -> dict[str, Any]:
        async with self.repo.session() as s:
            record = await s.get(RequestRecord, request_id)
            images = (await s.execute(StoredImage.__table__.select())).all()
        return {
            "record": record.state, "status": record.status_code, "error": record.error,
            "charged": await self.ledger.charged(account_id), "ledger": await self.ledger.ledger_sum(account_id),
            "balance": (await self.ledger.get_account(account_id)).balance_micros,
            "rows": len(images), "files": sorted(p.name for p in self.settings.images_dir.iterdir()),
        }


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_the_deadline_bounds_the_whole_engine_call(tmp_path):
    async def go() -> None:
        w = World(tmp_path, request_timeout_s=0.3)
        key = await w.funded_key()
        request_id, outcome = await w.call(w.service(Fixed([_image()], delay=30)), key)
        assert getattr(outcome, "status", None) == 504, outcome
        st = await w.state(request_id, key.account_id)
        assert (st["record"], st["status"], st["charged"], st["balance"]) == ("failed", 504, 0, 1_000_000)
        assert st["rows"] == 0 and st["files"] == []
        await w.repo.close()

    run(go())


def test_a_released_reservation_fails_the_request_instead_of_delivering_free(tmp_path):
    async def go() -> None:
        w = World(tmp_path)
        key = await w.funded_key()

        async def sweeper_runs_meanwhile(_ctx: Any) -> None:
            assert await w.ledger.release_expired(utcnow() + timedelta(days=1)) == 1

        request_id, outcome = await w.call(w.service(Fixed([_image()], before=sweeper_runs_meanwhile)), key)
        assert getattr(outcome, "status", None) == 504, outcome
        st = await w.state(request_id, key.account_id)
        assert st["record"] == "failed" and st["charged"] == 0 and st["balance"] == 1_000_000
        assert st["rows"] == 0 and st["files"] == [], "nothing of the undelivered result survives"
        await w.repo.close()

    run(go())


def test_a_failure_rendering_the_answer_refunds_and_deletes(tmp_path):
    async def go() -> None:
        w = World(tmp_path)
        key = await w.funded_key()

        def render(_outcome: Any) -> bytes:
            return "\ud800".encode()  # what a lone surrogate in an answer did after the charge

        request_id, outcome = await w.call(w.service(Fixed([_image()])), key, render=render)
        assert isinstance(outcome, UnicodeEncodeError)
        st = await w.state(request_id, key.account_id)
        assert st["record"] == "failed" and st["status"] == 500
        assert st["charged"] == 0 and st["ledger"] == 1_000_000
        assert st["rows"] == 0 and st["files"] == []
        await w.repo.close()

    run(go())


def test_a_storage_failure_midway_leaves_no_file_and_no_row(tmp_path):
    async def go() -> None:
        storage = FailingStorage(tmp_path / "images", fail_on=2)
        w = World(tmp_path, storage=storage)
        key = await w.funded_key()
        request_id, outcome = await w.call(w.service(Fixed([_image(), _image(), _image()])), key)
        assert isinstance(outcome, OSError)
        st = await w.state(request_id, key.account_id)
        assert st["record"] == "failed" and st["charged"] == 0
        assert st["rows"] == 0 and st["files"] == []
        await w.repo.close()

    run(go())


def test_success_charges_and_keeps_rows_and_files(tmp_path):
    async def go() -> None:
        w = World(tmp_path)
        key = await w.funded_key()
        request_id, outcome = await w.call(w.service(Fixed([_image(), _image()])), key, render=lambda o: b"{}")
        assert outcome.body == b"{}"
        st = await w.state(request_id, key.account_id)
        assert st["record"] == "done" and st["charged"] == 2 * 60_000 and st["rows"] == 2 and len(st["files"]) == 2
        await w.repo.close()

    run(go())


def test_what_a_crash_between_storing_and_settling_leaves_is_removed(tmp_path):
    """What a crash between delivery (files written) and settlement leaves: files named by the
    generation's prefix with no rows, a running record whose lease then expires, and a temporary
    file of a write that never finished. The reconciler fails the generation with a refund and
    deletes its files; the sweeper removes the partial write; a done request's images stay."""

    async def go() -> None:
        w = World(tmp_path)
        key = await w.funded_key()
        service = w.service(Fixed([_image()]))
        done_id, _ = await w.call(service, key, render=lambda o: b"{}")
        crashed_id = new_id("req")

        async def parse():  # type: ignore[no-untyped-def]
            return V3GenerateRequest(prompt="a cat", num_images=1), Submission()

        dead = "proc_dead"  # admitted as running under a process that then died
        job = await service.admission.admit(OP, parse, key, crashed_id, inline_owner=dead)
        await service.runner.delivery.deliver(job, ImageResult([_image()]))  # stored, then the process died
        partial = w.settings.images_dir / ".tmp-interrupted"
        partial.write_bytes(b"half an image")
        old = time.time() - 2 * 3600
        os.utime(partial, (old, old))
        before = await w.state(crashed_id, key.account_id)
        assert before["record"] == "running" and before["rows"] == 1 and len(before["files"]) == 3

        assert await service.take_over(utcnow() + timedelta(seconds=w.settings.stale_after_s + 1)) == 1
        await service.sweep()
        after = await w.state(crashed_id, key.account_id)
        assert after["record"] == "failed"
        assert after["rows"] == 1 and len(after["files"]) == 1, after["files"]
        assert (await w.state(done_id, key.account_id))["record"] == "done"
        assert after["balance"] == 1_000_000 - 60_000  # the done request paid; the crashed one was refunded
        await w.repo.close()

    run(go())


@pytest.mark.parametrize("error", ["upstream said \x00 nul", "pair \ud800 broken", "x" * 5000])
def test_any_error_text_can_be_recorded(tmp_path, error):
    """A NUL in an error detail made the failure unrecordable on PostgreSQL (the record stayed
    'received'); the repository stores every error printable and bounded."""

    async def go() -> None:
        w = World(tmp_path)
        await w.repo.start_request("req_x", None, OP.value)
        await w.repo.update_request("req_x", "failed", error=error, status_code=502)
        record = await w.repo.get_request("req_x")
        assert record.state == "failed" and "\x00" not in record.error and len(record.error) <= 1000
        record.error.encode("utf-8")
        await w.repo.close()

    run(go())


def test_errors_with_nul_are_recorded_on_postgresql(pg_url, tmp_path):
    async def go() -> None:
        db.upgrade(pg_url)
        secrets = Secrets.load(load_settings(data_dir=tmp_path))
        repo = Repository.connect(pg_url, secrets.key_pepper)
        await repo.start_request("req_pg", None, OP.value)
        await repo.update_request("req_pg", "failed", error="upstream: \x00 bad", status_code=502)
        assert (await repo.get_request("req_pg")).state == "failed"
        await repo.close()

    run(go())
