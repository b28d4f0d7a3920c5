"""The request path's stages, each without a server (issue 9): admission writes the reservation and
the record together or nothing; delivery deletes what it wrote when a later step fails; settlement
moves the money once whichever of two runs gets there; and a synchronous request of the embedded
default costs three database transactions — authentication, admission, settlement.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, select

from ideohub.domain.errors import PaymentRequired
from ideohub.domain.generations import Mode, Submission
from ideohub.domain.operations import ImageResult, V3GenerateRequest
from ideohub.stages.runner import job_shell
from ideohub.store.generations import NotHeld, TooManyPending
from ideohub.store.models import RequestRecord, Reservation
from ideohub.store.repository import new_id
from test_service_failures import OP, Fixed, World, _image


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def parser(mode: Mode = Mode.SYNC, num_images: int = 1):  # type: ignore[no-untyped-def]
    async def parse():  # type: ignore[no-untyped-def]
        return V3GenerateRequest(prompt="a cat", num_images=num_images), Submission(mode)

    return parse


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_synchronous_request_costs_three_transactions(tmp_path, backend, request):
    overrides = {} if backend == "sqlite" else {"database_url": request.getfixturevalue("pg_url")}

    async def go() -> None:
        w = World(tmp_path, **overrides)
        key = await w.funded_key()
        _row, plaintext = await w.repo.create_key("tx", account_id=key.account_id)
        service = w.service(Fixed([_image()]))
        transactions = []
        for engine in (w.repo.engine.sync_engine, w.repo.tx.sync):  # (SQLite: the request path runs on the second)
            if engine is not None:
                event.listen(engine, "begin", lambda conn: transactions.append(1))
        caller = await w.repo.authenticate(plaintext)  # what the HTTP layer does first
        outcome = await service.submit(OP, parser(), caller, new_id("req"), render=lambda o: b"{}")
        assert outcome.outcome is not None and outcome.outcome.body == b"{}"
        assert len(transactions) == 3, len(transactions)
        await w.repo.close()

    run(go())


def test_admission_refused_for_money_writes_one_failed_record_and_holds_nothing(tmp_path):
    async def go() -> None:
        w = World(tmp_path)
        key = await w.funded_key(usd_micros=10)  # less than one image costs
        service = w.service(Fixed([_image()]))
        rid = new_id("req")
        with pytest.raises(PaymentRequired):
            await service.admission.admit(OP, parser(Mode.ASYNC), key, rid)
        async with w.repo.session() as s:
            record = await s.get(RequestRecord, rid)
            held = (await s.scalars(select(Reservation))).all()
        assert record.state == "failed" and record.status_code == 402 and record.generation_id is None
        assert held == [] and list(w.settings.images_dir.iterdir()) == []
        await w.repo.close()

    run(go())


def test_admission_bounds_pending_generations_per_account(tmp_path):
    async def go() -> None:
        w = World(tmp_path, max_pending_per_account=2)
        key = await w.funded_key()
        service = w.service(Fixed([_image()]))
        for _ in range(2):
            await service.admission.admit(OP, parser(Mode.ASYNC), key, new_id("req"))
        with pytest.raises(TooManyPending) as refused:
            await service.admission.admit(OP, parser(Mode.ASYNC), key, new_id("req"))
        assert refused.value.status == 429 and refused.value.retry_after >= 1
        await w.repo.close()

    run(go())


def test_delivery_discards_what_it_wrote_when_settlement_fails(tmp_path):
    async def go() -> None:
        w = World(tmp_path)
        key = await w.funded_key()
        service = w.service(Fixed([_image(), _image()]))
        job = await service.admission.admit(OP, parser(num_images=2), key, new_id("req"),
                                            inline_owner="proc_other")  # another process's lease
        with pytest.raises(Exception):
            await service.runner.run_admitted(job)  # settlement refuses: the lease is not ours
        assert list(w.settings.images_dir.iterdir()) == []
        await w.repo.close()

    run(go())


def test_of_two_runs_of_one_generation_exactly_one_settles(tmp_path):
    async def go() -> None:
        w = World(tmp_path)
        key = await w.funded_key()
        service = w.service(Fixed([_image()]))
        job = await service.admission.admit(OP, parser(Mode.ASYNC), key, new_id("req"))
        first = await service.store.claim(job.generation_id, "proc_a", job.created_at)
        assert first is not None
        assert await service.store.claim(job.generation_id, "proc_b", job.created_at) is None  # a live lease
        delivered = await service.runner.delivery.deliver(job, ImageResult([_image()]))
        await service.settlement.complete(job, "proc_a", delivered, b"{}", [], None, 1.0)
        with pytest.raises(NotHeld):  # a late second run cannot settle or refund
            await service.settlement.complete(job, "proc_b", delivered, b"{}", [], None, 1.0)
        assert not await service.settlement.fail(job_shell(first), job.request_id, "proc_b", RuntimeError("late"))
        balance, charged = ((await w.ledger.get_account(key.account_id)).balance_micros,
                            await w.ledger.charged(key.account_id))
        assert charged == 60_000 and balance == 1_000_000 - 60_000
        await w.repo.close()

    run(go())
