"""Money is exact: the price table, reserve → settle | refund exactly once, 402 before any
work, 200 concurrent requests against a balance for exactly 50 images, and a server killed
between reserve and settle — on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from conftest import FakeClock, free_port
from ideohub.config import Secrets
from ideohub.domain import enums as E
from ideohub.domain.operations import GenerateRequest, UpscaleRequest, V3GenerateRequest, V3GenerateTransparentRequest
from ideohub.domain.prices import PriceError, PriceTable, accepted_keys, usd_to_micros
from ideohub.media.decode import ImageLimits, read_image
from ideohub.sim.runner import SimulatedUpstream
from ideohub.sim.upstream import SimConfig
from ideohub.store import db
from ideohub.store.ledger import Ledger
from ideohub.store.repository import Repository

SIM_KEY = "sim-billing-key"


# ------------------------------------------------------------ the price table


def test_seed_prices_and_per_image_vs_per_input():
    t = PriceTable.load()
    q = lambda req: t.quote(req)  # noqa: E731
    assert q(GenerateRequest(prompt="x", model=E.Model.V_2, num_images=3)).total_micros == 3 * 80_000
    assert q(GenerateRequest(prompt="x", model=E.Model.V_2A_TURBO)).unit_micros == 25_000
    assert q(GenerateRequest(prompt="x", model=E.Model.V_1_TURBO)).unit_micros == 20_000
    assert q(V3GenerateRequest(prompt="x", rendering_speed=E.RenderingSpeed.TURBO)).unit_micros == 30_000
    assert q(V3GenerateRequest(prompt="x", rendering_speed=E.RenderingSpeed.FLASH)).unit_micros == 30_000
    assert q(V3GenerateRequest(prompt="x")).unit_micros == 60_000
    assert q(V3GenerateRequest(prompt="x", rendering_speed=E.RenderingSpeed.QUALITY)).unit_micros == 90_000
    char = read_image("character_reference_images", _png(), ImageLimits())
    cq = q(V3GenerateRequest(prompt="x", rendering_speed=E.RenderingSpeed.QUALITY, character_reference_images=(char,)))
    assert cq.unit_micros == 200_000
    assert q(V3GenerateTransparentRequest(prompt="x", rendering_speed=E.RenderingSpeed.TURBO)).unit_micros == 40_000
    up = q(UpscaleRequest(image_file=char, num_images=4))
    assert (up.unit_micros, up.units, up.total_micros) == (60_000, 1, 60_000)  # per input image
    assert up.charge_for(4) == 60_000 and up.charge_for(0) == 0
    gen = q(GenerateRequest(prompt="x", model=E.Model.V_2, num_images=4))
    assert gen.charge_for(3) == 3 * 80_000  # only delivered images are charged


def _png() -> bytes:
    from conftest import png_bytes

    return png_bytes(16, 16)


def test_every_accepted_combination_has_a_price_and_gaps_fail_at_start(tmp_path):
    table = PriceTable.load()
    for key in accepted_keys():
        assert table.base_micros(key) > 0, key
    gap = tmp_path / "prices.toml"
    gap.write_text((Path(__file__).resolve().parents[1] / "src/ideohub/domain/prices.toml").read_text()
                   .replace("V_2A_TURBO = 0.025\n", "", 1))
    with pytest.raises(PriceError, match="generate.V_2A_TURBO"):
        PriceTable.load(gap)


def test_overrides_groups_and_exact_decimal():
    t = PriceTable.load(overrides={"generate": {"V_2": 0.07}}, groups={"vip": 0.5, "resale": "1.25"})
    req = GenerateRequest(prompt="x", model=E.Model.V_2)
    assert t.quote(req).unit_micros == 70_000
    assert t.quote(req, "vip").unit_micros == 35_000
    assert t.quote(req, "resale").unit_micros == 87_500
    assert usd_to_micros(0.1) + usd_to_micros(0.2) == usd_to_micros("0.3")  # no float drift
    with pytest.raises(PriceError):
        t.quote(req, "nope")


# ------------------------------------------------------------ the ledger, on both databases


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    db.upgrade(url)
    return url


def test_reserve_settle_refund_exactly_once(db_url):
    async def go() -> None:
        repo = Repository.connect(db_url, b"p" * 32)
        ledger = Ledger(repo.session)
        try:
            acct = await ledger.create_account("a")
            await ledger.topup(acct.id, 1_000_000)
            await repo.start_request("r1", None, "generate", acct.id)
            await ledger.reserve("r1", acct.id, None, 300_000, timedelta(minutes=5))
            assert (await ledger.get_account(acct.id)).balance_micros == 700_000
            assert await ledger.settle("r1", 100_000)
            assert not await ledger.settle("r1", 100_000)  # never twice
            assert not await ledger.refund("r1")  # nor refunded after settling
            assert (await ledger.get_account(acct.id)).balance_micros == 900_000
            await repo.start_request("r2", None, "generate", acct.id)
            await ledger.reserve("r2", acct.id, None, 900_000, timedelta(minutes=5))
            with pytest.raises(Exception) as info:  # 402 before any work
                await ledger.reserve("r3", acct.id, None, 1, timedelta(minutes=5))
            assert info.value.status == 402
            assert await ledger.refund("r2") and not await ledger.refund("r2")
            assert (await ledger.get_account(acct.id)).balance_micros == 900_000
            assert await ledger.ledger_sum(acct.id) == 900_000  # the ledger explains the balance
            assert await ledger.charged(acct.id) == 100_000
            # an abandoned reservation is released by the sweeper, once
            await repo.start_request("r4", None, "generate", acct.id)
            await ledger.reserve("r4", acct.id, None, 500_000, timedelta(seconds=-1))
            assert await ledger.release_expired() == 1 and await ledger.release_expired() == 0
            assert not await ledger.settle("r4", 500_000)
            assert (await ledger.get_account(acct.id)).balance_micros == 900_000
            # a key's spending cap
            key, _ = await repo.create_key("capped", account_id=acct.id, spend_cap_micros=150_000)
            await repo.start_request("r5", key.id, "generate", acct.id)
            await ledger.reserve("r5", acct.id, key.id, 100_000, timedelta(minutes=5))
            with pytest.raises(Exception) as info:
                await ledger.reserve("r6", acct.id, key.id, 100_000, timedelta(minutes=5))
            assert info.value.status == 402 and "cap" in info.value.detail
            assert (await ledger.get_account(acct.id)).balance_micros == 800_000  # the failed reserve rolled back
        finally:
            await repo.close()

    asyncio.run(go())


# ------------------------------------------------------------ 200 concurrent requests


@pytest.fixture(scope="module")
def sim():
    with SimulatedUpstream(SimConfig(api_keys=(SIM_KEY,))) as s:
        yield s


def _billing_server(start_server, sim, **overrides):
    return start_server(
        "config", engine_config={"*": "relay"},
        channels=[{"name": "up", "kind": "relay", "base_url": sim.base_url, "key": SIM_KEY, "auth": "api-key",
                   "path_style": "official", "max_in_flight": 500}],
        max_connections_per_client=500,  # 200 concurrent connections from one loopback client
        max_pending_per_account=0,  # unbounded: these tests are about money; the bound has its own (test_queue)
        **overrides,
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_200_concurrent_requests_against_a_balance_for_exactly_50_images(start_server, sim, backend, request):
    overrides = {} if backend == "sqlite" else {"database_url": request.getfixturevalue("pg_url")}
    if backend == "postgresql":
        db.upgrade(overrides["database_url"])
    srv = _billing_server(start_server, sim, **overrides)
    settings = srv.settings

    async def setup() -> tuple[str, str]:
        repo = Repository.connect(settings.db_url, Secrets.load(settings).key_pepper)
        try:
            ledger = Ledger(repo.session)
            acct = await ledger.create_account("fifty")
            await ledger.topup(acct.id, 50 * 30_000)  # 50 TURBO images
            _row, key = await repo.create_key("k", account_id=acct.id)
            return acct.id, key
        finally:
            await repo.close()

    account_id, key = asyncio.run(setup())

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=120, limits=limits) as client:
            return await asyncio.gather(*(
                client.post("/v1/ideogram-v3/generate", headers={"Api-Key": key},
                            json={"prompt": f"image {i}", "rendering_speed": "TURBO"})
                for i in range(200)
            ))

    responses = asyncio.run(fire())
    statuses = sorted(r.status_code for r in responses)
    ok = [r for r in responses if r.status_code == 200]
    assert len(ok) == 50 and statuses.count(402) == 150, statuses
    assert sum(len(r.json()["data"]) for r in ok) == 50

    async def check() -> None:
        repo = Repository.connect(settings.db_url, Secrets.load(settings).key_pepper)
        try:
            ledger = Ledger(repo.session)
            assert (await ledger.get_account(account_id)).balance_micros == 0
            assert await ledger.ledger_sum(account_id) == 0  # 1.50 in, 1.50 out
            assert await ledger.charged(account_id) == 50 * 30_000
        finally:
            await repo.close()

    asyncio.run(check())


def test_failed_and_unsafe_images_are_not_charged(start_server, sim):
    clock = FakeClock()
    srv = _billing_server(start_server, sim, relay_cooldown_s=0.1, clock=clock)

    async def setup() -> tuple[str, str]:
        repo = Repository.connect(srv.settings.db_url, Secrets.load(srv.settings).key_pepper)
        try:
            ledger = Ledger(repo.session)
            acct = await ledger.create_account("b")
            await ledger.topup(acct.id, 1_000_000)
            return acct.id, (await repo.create_key("k", account_id=acct.id))[1]
        finally:
            await repo.close()

    account_id, key = asyncio.run(setup())
    h = {"Api-Key": key}
    sim.faults("status", status=500, count=1)
    assert srv.client.post("/v1/ideogram-v3/generate", headers=h, json={"prompt": "x"}).status_code == 502
    clock.advance(0.2)  # past the channel's cooldown
    r = srv.client.post("/v1/ideogram-v3/generate", headers=h, json={"prompt": "partly-unsafe", "num_images": 3})
    assert r.status_code == 200 and sum(d["url"] is not None for d in r.json()["data"]) == 1

    async def balance() -> int:
        repo = Repository.connect(srv.settings.db_url, b"")
        try:
            return (await Ledger(repo.session).get_account(account_id)).balance_micros
        finally:
            await repo.close()

    assert asyncio.run(balance()) == 1_000_000 - 60_000  # the 502 refunded; 1 of 3 images charged


# ------------------------------------------------------------ a server killed between reserve and settle


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_killed_server_reservation_is_released_by_the_sweeper(tmp_path, sim, backend, request):
    data = tmp_path / "data"
    port = free_port()
    env = {**os.environ, "IDEOHUB_DATA_DIR": str(data), "IDEOHUB_PORT": str(port),
           "IDEOHUB_REQUEST_TIMEOUT_S": "8", "IDEOHUB_RESERVATION_GRACE_S": "1",
           "IDEOHUB_ENGINES": '{"*": "relay"}',
           "IDEOHUB_CHANNELS": f'[{{"name": "slow", "kind": "relay", "base_url": "{sim.base_url}", "key": "{SIM_KEY}",'
                               f' "auth": "api-key", "path_style": "official", "timeout_s": 30}}]'}
    if backend == "postgresql":
        env["IDEOHUB_DATABASE_URL"] = request.getfixturevalue("pg_url")
        db.upgrade(env["IDEOHUB_DATABASE_URL"])
    cli = lambda *a: subprocess.run([sys.executable, "-m", "ideohub.cli", *a], env=env, capture_output=True,  # noqa: E731
                                    text=True, timeout=120)
    account_id = cli("accounts", "create", "crash").stdout.strip().splitlines()[-1]
    assert cli("topup", account_id, "1").returncode == 0
    key = cli("keys", "create", "--account", account_id).stdout.strip().splitlines()[-1]
    server = subprocess.Popen([sys.executable, "-m", "ideohub.cli", "serve"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        sim.faults("hang", hang_s=30, count=1)

        async def fire() -> None:
            async with httpx.AsyncClient(timeout=30) as client:
                try:
                    await client.post(base + "/v1/ideogram-v3/generate", headers={"Api-Key": key},
                                      json={"prompt": "never settled", "rendering_speed": "QUALITY", "num_images": 2})
                except httpx.HTTPError:
                    pass

        async def run() -> None:
            task = asyncio.create_task(fire())
            for _ in range(100):  # wait until the money is held
                await asyncio.sleep(0.05)
                out = await asyncio.to_thread(cli, "balance", account_id)  # never block the loop
                if out.stdout.strip().splitlines()[-1] != "1":
                    break
            os.kill(server.pid, signal.SIGKILL)  # between reserve and settle
            await task

        asyncio.run(run())
        server.wait(10)
        assert Decimal(cli("balance", account_id).stdout.strip().splitlines()[-1]) == Decimal("0.82")  # 2 × 0.09 held
        time.sleep(9.2)  # past request_timeout_s + reservation_grace_s (generous: CLI calls are slow under load)
        swept = cli("sweep")
        assert swept.returncode == 0 and "released 1 reservations" in swept.stdout, swept.stdout + swept.stderr
        assert Decimal(cli("balance", account_id).stdout.strip().splitlines()[-1]) == Decimal("1")
        assert "released 0 reservations" in cli("sweep").stdout  # nothing moves twice
    finally:
        if server.poll() is None:
            server.kill()
        sim.reset()
