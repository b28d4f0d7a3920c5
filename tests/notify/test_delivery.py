"""The delivery worker against a real outbox (SQLite) and a real receiver on loopback: signatures
on every attempt, retries with backoff on the injected clock, dead when the links expire, no
redirects, a slow target that holds up nobody else, one send per attempt across processes, the
target judged again at delivery, task callbacks never out of order, and no query string in logs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest

from notify.harness import Bench, as_utc, counter
from notify.receiver import Receiver
from notify.verifier import verify

PAYLOAD = '{"generation_id":"gen","created":"2026-01-01T00:00:00+00:00","data":[{"url":"https://x/y.png"}]}'


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_delivered_exactly_as_stored_and_signed(tmp_path, receiver):
    async def go() -> None:
        async with Bench(tmp_path) as b:
            gid, did = await b.enqueue(receiver.url("/hook"), PAYLOAD)
            assert await b.step() == 1
            [got] = receiver.at("/hook")
            assert got.body == PAYLOAD.encode()
            assert got.headers["content-type"] == "application/json"
            assert got.headers["x-ideogram-webhook-generation-id"] == gid
            assert len(got.headers["x-ideogram-webhook-user-id"]) == 22
            assert int(got.headers["x-ideogram-webhook-timestamp"]) == int(b.wall.now)
            assert verify(got.headers, got.body, b.ring.jwks(b.wall.now)) == b.ring.active.kid
            row = await b.row(did)
            assert (row.state, row.attempts, row.last_status) == ("delivered", 1, 200)
            assert counter(b.metrics, "webhook", "delivered") == 1
            assert await b.step() == 0  # never sent twice

    run(go())


def test_retries_double_from_the_base_and_each_attempt_is_signed_afresh(tmp_path, receiver):
    receiver.plan("/hook", "500", "500")

    async def go() -> None:
        async with Bench(tmp_path) as b:
            _gid, did = await b.enqueue(receiver.url("/hook"), PAYLOAD)
            assert await b.step() == 1
            row = await b.row(did)
            assert (row.state, row.attempts, row.last_status) == ("pending", 1, 500)
            assert as_utc(row.next_attempt_at).timestamp() == pytest.approx(b.wall.now + 10)
            assert await b.step() == 0  # not before its time
            b.wall.advance(10)
            assert await b.step() == 1
            row = await b.row(did)
            assert as_utc(row.next_attempt_at).timestamp() == pytest.approx(b.wall.now + 20)  # doubled
            b.wall.advance(19)
            assert await b.step() == 0
            b.wall.advance(1)
            assert await b.step() == 1
            row = await b.row(did)
            assert (row.state, row.attempts, row.last_status) == ("delivered", 3, 200)
            got = receiver.at("/hook")
            stamps = [g.headers["x-ideogram-webhook-timestamp"] for g in got]
            assert len(set(stamps)) == 3  # a new timestamp (and signature) on every attempt
            for g in got:
                verify(g.headers, g.body, b.ring.jwks(b.wall.now))
                assert g.body == PAYLOAD.encode()
            assert counter(b.metrics, "webhook", "retried") == 2 and counter(b.metrics, "webhook", "delivered") == 1

    run(go())


def test_dead_when_the_next_attempt_would_come_after_the_links_expire(tmp_path, receiver):
    receiver.default = "500"

    async def go() -> None:
        async with Bench(tmp_path) as b:
            _gid, did = await b.enqueue(receiver.url("/hook"), PAYLOAD, ttl_s=35)
            await b.step()  # t=0 → next at 10
            b.wall.advance(10)
            await b.step()  # t=10 → next at 30
            b.wall.advance(20)
            await b.step()  # t=30 → next would be 70, after the expiry at 35: dead
            row = await b.row(did)
            assert (row.state, row.attempts, row.last_status) == ("dead", 3, 500)
            b.wall.advance(3600)
            assert await b.step() == 0
            assert len(receiver.at("/hook")) == 3
            assert counter(b.metrics, "webhook", "dead") == 1 and counter(b.metrics, "webhook", "retried") == 2

    run(go())


def test_a_row_found_after_its_expiry_is_dead_without_an_attempt(tmp_path, receiver):
    async def go() -> None:
        async with Bench(tmp_path) as b:
            _gid, did = await b.enqueue(receiver.url("/hook"), PAYLOAD, ttl_s=5)
            b.wall.advance(6)  # e.g. the server was down until after the links expired
            await b.step()
            row = await b.row(did)
            assert (row.state, row.attempts) == ("dead", 0)
            assert receiver.at("/hook") == []

    run(go())


def test_redirects_are_not_followed(tmp_path, receiver):
    receiver.plan("/hook", "redirect")

    async def go() -> None:
        async with Bench(tmp_path) as b:
            _gid, did = await b.enqueue(receiver.url("/hook"), PAYLOAD)
            await b.step()
            row = await b.row(did)
            assert (row.state, row.last_status) == ("pending", 302) and "redirect" in row.last_error
            assert receiver.at("/elsewhere") == []

    run(go())


def test_an_oversized_answer_is_read_up_to_the_cap(tmp_path, receiver):
    receiver.plan("/hook", "big")

    async def go() -> None:
        async with Bench(tmp_path) as b:
            _gid, did = await b.enqueue(receiver.url("/hook"), PAYLOAD)
            await b.step()
            assert (await b.row(did)).state == "delivered"  # 2xx decides; the body is discarded

    run(go())


def test_a_hanging_target_holds_up_no_other_delivery(tmp_path, receiver):
    other = Receiver().start()
    receiver.plan("/slow", "hang", "hang")

    async def go() -> None:
        async with Bench(tmp_path, timeout_s=60) as b:
            _g1, slow = await b.enqueue(receiver.url("/slow"), PAYLOAD)
            _g2, slow_too = await b.enqueue(receiver.url("/slow"), PAYLOAD)
            _g3, fast = await b.enqueue(other.url("/hook"), PAYLOAD)
            assert await b.deliverer.run_once() == 3
            await asyncio.to_thread(other.wait_for, "/hook", 1)
            while (await b.row(fast)).state != "delivered":
                await asyncio.sleep(0.01)
            assert {slow, slow_too} <= set(b.deliverer._tasks)  # still hanging, each on its own task

    try:
        run(go())
    finally:
        other.stop()


def test_a_slow_origin_uses_only_its_own_slots(tmp_path, receiver):
    """With every slot of one origin taken, the scan moves past its rows to other targets."""
    other = Receiver().start()
    receiver.default = "hang"

    async def go() -> None:
        async with Bench(tmp_path, timeout_s=60, per_origin=2, batch=2) as b:
            for _ in range(5):
                await b.enqueue(receiver.url("/slow"), PAYLOAD)
            _g, fast = await b.enqueue(other.url("/hook"), PAYLOAD)
            assert await b.deliverer.run_once() == 3  # two to the slow origin, then past its rows
            await asyncio.to_thread(other.wait_for, "/hook", 1)
            while (await b.row(fast)).state != "delivered":
                await asyncio.sleep(0.01)

    try:
        run(go())
    finally:
        other.stop()


def test_two_processes_never_send_the_same_attempt(tmp_path, receiver):
    async def go() -> None:
        async with Bench(tmp_path) as b:
            await b.enqueue(receiver.url("/hook"), PAYLOAD)
            second = b.new_deliverer()
            try:
                started = await asyncio.gather(b.deliverer.run_once(), second.run_once())
                await b.deliverer.drain()
                await second.drain()
            finally:
                await second.stop()
                await second.sender.aclose()
            assert sorted(started) == [0, 1]
            assert len(receiver.at("/hook")) == 1

    run(go())


def test_a_target_is_judged_again_at_delivery(tmp_path, receiver):
    """A name that resolved to a public address at submission and to a private one now (DNS
    rebinding), and http to a host no longer allowed: failed attempts, and nothing is sent."""
    port = receiver.server.server_address[1]

    async def rebinding(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async def go() -> None:
        async with Bench(tmp_path, allowed=(), resolver=rebinding) as b:
            _g1, rebound = await b.enqueue(f"https://hooks.example.com:{port}/hook", PAYLOAD)
            _g2, plain = await b.enqueue(receiver.url("/hook"), PAYLOAD)  # http, 127.0.0.1 not allowed
            await b.step()
            for did in (rebound, plain):
                row = await b.row(did)
                assert row.state == "pending" and row.attempts == 1 and row.last_status is None
                assert "refused by the outbound guard" in row.last_error
            assert receiver.requests == []

    run(go())


def test_an_older_task_status_is_never_delivered_after_a_newer_one(tmp_path, receiver):
    async def go() -> None:
        async with Bench(tmp_path) as b:
            gid, newer = await b.enqueue(receiver.url("/cb"), '{"task_status":"succeed"}', kind="callback", seq=2)
            await b.step()
            assert (await b.row(newer)).state == "delivered"
            _gid, older = await b.enqueue(receiver.url("/cb"), '{"task_status":"processing"}', kind="callback",
                                          seq=1, generation_id=gid)  # late (e.g. written by a slow process)
            await b.step()
            assert (await b.row(older)).state == "superseded"
            assert [r.body for r in receiver.at("/cb")] == [b'{"task_status":"succeed"}']
            assert counter(b.metrics, "callback", "superseded") == 1

    run(go())


def test_a_task_status_waits_for_the_previous_one_in_flight(tmp_path, receiver):
    receiver.plan("/cb", "hang")

    async def go() -> None:
        async with Bench(tmp_path, timeout_s=1) as b:
            gid, first = await b.enqueue(receiver.url("/cb"), '{"task_status":"processing"}', kind="callback", seq=1)
            assert await b.deliverer.run_once() == 1  # processing: in flight (the target hangs)
            await asyncio.to_thread(receiver.wait_for, "/cb", 1)
            # succeed is written meanwhile (the pending processing row is superseded by it)
            _gid, second = await b.enqueue(receiver.url("/cb"), '{"task_status":"succeed"}', kind="callback", seq=2,
                                           generation_id=gid)
            assert await b.deliverer.run_once() == 0  # not while processing is still being sent
            await b.deliverer.drain()  # processing times out
            assert (await b.row(first)).state == "superseded"  # its failure did not bring it back
            assert await b.step() == 1
            assert (await b.row(second)).state == "delivered"
            b.wall.advance(3600)
            await b.step()
            assert [r.body for r in receiver.at("/cb")] == [b'{"task_status":"processing"}',
                                                            b'{"task_status":"succeed"}']

    run(go())


def test_logs_never_show_a_target_query_string(tmp_path, receiver, caplog):
    receiver.plan("/hook", "500")
    url = receiver.url("/hook", "token=s3cr3t-receiver-token&x=1")

    async def go() -> None:
        async with Bench(tmp_path) as b:
            await b.enqueue(url, PAYLOAD)
            await b.step()
            b.wall.advance(10)
            await b.step()

    with caplog.at_level(logging.INFO, logger="ideohub.notify"):
        run(go())
    lines = [r for r in caplog.records if r.name == "ideohub.notify"]
    assert [r.fields["outcome"] for r in lines] == ["retried", "delivered"]  # type: ignore[attr-defined]
    for record in lines:
        text = record.getMessage() + json.dumps(record.fields)  # type: ignore[attr-defined]
        assert "s3cr3t" not in text and "token=" not in text
        assert record.fields["target"] == receiver.url("/hook") + "?[redacted]"  # type: ignore[attr-defined]
    assert receiver.at("/hook")[0].query == "token=s3cr3t-receiver-token&x=1"  # sent as given


def test_finished_rows_are_deleted_after_the_retention_pending_ones_never(tmp_path, receiver):
    receiver.plan("/pending", *["500"] * 10)

    async def go() -> None:
        async with Bench(tmp_path, retention_s=3600.0) as b:
            _g1, done = await b.enqueue(receiver.url("/done"), PAYLOAD)
            _g2, owed = await b.enqueue(receiver.url("/pending"), PAYLOAD, ttl_s=10 * 24 * 3600)
            await b.step()
            await b.deliverer.prune()
            assert (await b.row(done)).state == "delivered"  # younger than the retention: kept
            b.wall.advance(3601)
            await b.deliverer.prune()
            async with b.repo.session() as s:  # type: ignore[union-attr]
                from ideohub.store.models import Delivery

                assert await s.get(Delivery, done) is None
                assert (await s.get(Delivery, owed)).state == "pending"  # type: ignore[union-attr]

    run(go())


def test_claims_and_retries_on_postgresql(tmp_path, receiver, pg_url):
    """The claim compares timestamps for equality: the same on PostgreSQL's timestamptz."""
    receiver.plan("/hook", "500")

    async def go() -> None:
        async with Bench(tmp_path, database_url=pg_url) as b:
            _gid, did = await b.enqueue(receiver.url("/hook"), PAYLOAD)
            second = b.new_deliverer()
            try:
                started = await asyncio.gather(b.deliverer.run_once(), second.run_once())
                await b.deliverer.drain()
                await second.drain()
            finally:
                await second.stop()
                await second.sender.aclose()
            assert sorted(started) == [0, 1]
            row = await b.row(did)
            assert (row.state, row.attempts, row.last_status) == ("pending", 1, 500)
            b.wall.advance(10)
            assert await b.step() == 1
            assert (await b.row(did)).state == "delivered"
            assert len(receiver.at("/hook")) == 2

    run(go())
