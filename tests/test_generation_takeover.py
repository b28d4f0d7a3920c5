"""A process killed with generations pending (issue 8: "a restart of the process loses nothing"):
on restart, after ``stale_after_s``, an async generation runs again from its staged inputs and is
charged once; a sync one (its caller is gone) fails as ``abandoned`` with a refund. The ledger is
exact afterwards. Real processes: ``ideohub serve`` (SIGKILLed), the simulated upstream, the CLI.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from conftest import SIM_KEY, free_port

from ideohub.config import Secrets, load_settings
from ideohub.store import db
from ideohub.store.ledger import Ledger
from ideohub.store.repository import Repository

V3 = "/v1/ideogram-v3/generate"


class Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.base = f"http://127.0.0.1:{env['IDEOHUB_PORT']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Server":
        self.proc = subprocess.Popen([sys.executable, "-m", "ideohub.cli", "serve"], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, "ideohub serve exited"
            time.sleep(0.1)  # a starting subprocess: no event to wait on
        raise AssertionError("ideohub serve did not start")

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def _records(data: Path, env: dict[str, str]) -> dict[str, tuple[str, str | None]]:
    settings = load_settings(data_dir=data, database_url=env.get("IDEOHUB_DATABASE_URL"))

    async def go() -> dict[str, tuple[str, str | None]]:
        repo = Repository.connect(settings.db_url, Secrets.load(settings).key_pepper)
        try:
            from sqlalchemy import select

            from ideohub.store.models import RequestRecord

            async with repo.session() as s:
                rows = (await s.execute(select(RequestRecord.generation_id, RequestRecord.state,
                                               RequestRecord.failure_reason)
                                        .where(RequestRecord.generation_id.is_not(None)))).all()
            return {g: (st, fr) for g, st, fr in rows}
        finally:
            await repo.close()

    return asyncio.run(go())


def _ledger_exact(data: Path, env: dict[str, str], account: str) -> tuple[int, int]:
    settings = load_settings(data_dir=data, database_url=env.get("IDEOHUB_DATABASE_URL"))

    async def go() -> tuple[int, int]:
        repo = Repository.connect(settings.db_url, Secrets.load(settings).key_pepper)
        try:
            ledger = Ledger(repo.session)
            balance = (await ledger.get_account(account)).balance_micros
            assert await ledger.ledger_sum(account) == balance  # the ledger explains the balance
            return balance, await ledger.charged(account)
        finally:
            await repo.close()

    return asyncio.run(go())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_pending_generations_survive_a_killed_process(tmp_path, sims, backend, request):
    sim = sims[0]
    sim.reset()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDEOHUB_")}
    env.update({
        "IDEOHUB_DATA_DIR": str(data), "IDEOHUB_PORT": str(free_port()), "IDEOHUB_ENGINES": '{"*": "relay"}',
        "IDEOHUB_HEARTBEAT_S": "0.3", "IDEOHUB_STALE_AFTER_S": "1.5", "IDEOHUB_REQUEST_TIMEOUT_S": "60",
        "IDEOHUB_CHANNELS": f'[{{"name": "up", "kind": "relay", "base_url": "{sim.base_url}", "key": "{SIM_KEY}", '
                            f'"auth": "api-key", "path_style": "official", "timeout_s": 30}}]',
    })
    if backend == "postgresql":
        env["IDEOHUB_DATABASE_URL"] = request.getfixturevalue("pg_url")
        db.upgrade(env["IDEOHUB_DATABASE_URL"])

    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "ideohub.cli", *args], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().splitlines()[-1]

    account = cli("accounts", "create", "crash")
    cli("topup", account, "1")
    key = cli("keys", "create", "--account", account)
    h = {"Api-Key": key}
    first = Server(env).start()
    try:
        sim.faults("hang", hang_s=60, count=2)  # both generations are upstream when the process dies
        async_id = httpx.post(first.base + V3 + "?async=true", headers=h, timeout=30,
                              json={"prompt": "resume me", "rendering_speed": "TURBO", "num_images": 2}).json()["generation_id"]
        sync_answer: dict[str, httpx.Response | Exception] = {}

        def sync_call() -> None:
            try:
                sync_answer["r"] = httpx.post(first.base + V3, headers=h, timeout=60,
                                              json={"prompt": "lost caller", "rendering_speed": "QUALITY"})
            except httpx.HTTPError as exc:
                sync_answer["r"] = exc

        caller = threading.Thread(target=sync_call)
        caller.start()
        for _ in range(200):  # until both are held upstream
            if len(sim.api_requests()) >= 2:
                break
            time.sleep(0.05)
        assert len(sim.api_requests()) == 2
        assert Decimal(cli("balance", account)) == Decimal("1") - Decimal("0.06") - Decimal("0.09")
        first.kill()
        caller.join(30)
        assert isinstance(sync_answer["r"], Exception)  # the caller lost its connection
        sim.reset()  # the upstream answers again

        second = Server(env).start()
        try:
            deadline = time.monotonic() + 60
            states: dict[str, tuple[str, str | None]] = {}
            while time.monotonic() < deadline:
                states = _records(data, env)
                if all(st in ("done", "failed") for st, _ in states.values()):
                    break
                time.sleep(0.2)  # the new process takes over after stale_after_s
            sync_id = next(g for g in states if g != async_id)
            assert states[async_id] == ("done", None), states
            assert states[sync_id] == ("failed", "abandoned"), states
            assert len(sim.api_requests()) == 1  # the async generation ran again, once
            balance, charged = _ledger_exact(data, env, account)
            assert charged == 60_000 and balance == 1_000_000 - 60_000  # 2 TURBO images, the QUALITY one refunded
            staged = [p.name for p in (data / "images").iterdir() if p.name.startswith("in-")]
            assert staged == [], "staged inputs are deleted once the generation ends"
        finally:
            second.stop()
    finally:
        first.stop()
        sim.reset()
