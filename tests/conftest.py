"""Shared fixtures: a real ideohub server on a free loopback port, with its own data directory."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ideohub.api.app import create_app  # noqa: E402
from ideohub.api.server import uvicorn_config  # noqa: E402
from ideohub.config import Secrets, Settings, load_settings  # noqa: E402
from ideohub.store import db  # noqa: E402
from ideohub.store.repository import Repository  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadedServer:
    """The server ``ideohub serve`` runs (our protocol, deadlines and caps), in a background
    thread; stops cleanly."""

    def __init__(self, app, port: int) -> None:  # type: ignore[no-untyped-def]
        settings = getattr(app, "ideohub_settings", None) or Settings()
        self.server = uvicorn.Server(uvicorn_config(app, settings, host="127.0.0.1", port=port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ThreadedServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class Running:
    base_url: str
    key: str
    settings: Settings
    client: httpx.Client

    def auth(self, style: str = "api-key") -> dict[str, str]:
        return {"Api-Key": self.key} if style == "api-key" else {"Authorization": f"Bearer {self.key}"}

    def post(self, path: str, style: str = "api-key", **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
        headers = {**self.auth(style), **kwargs.pop("headers", {})}
        return self.client.post(path, headers=headers, **kwargs)

    def create_key(self) -> tuple[str, str]:
        async def go():  # type: ignore[no-untyped-def]
            secrets = Secrets.load(self.settings)
            repo = Repository.connect(self.settings.db_url, secrets.key_pepper)
            try:
                row, plaintext = await repo.create_key("test")
                return row.id, plaintext
            finally:
                await repo.close()

        return asyncio.run(go())

    def revoke(self, key_id: str) -> bool:
        async def go():  # type: ignore[no-untyped-def]
            repo = Repository.connect(self.settings.db_url, Secrets.load(self.settings).key_pepper)
            try:
                return await repo.revoke_key(key_id)
            finally:
                await repo.close()

        return asyncio.run(go())


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    stack: list[ThreadedServer] = []
    clients: list[httpx.Client] = []

    def start(engines: dict | str | None = None, *, engine_config: dict | None = None, clock=None,  # type: ignore[no-untyped-def]
              **overrides) -> Running:  # type: ignore[no-untyped-def]
        """``engines``: None → no engines at all; "config" → the engines the settings configure
        (``engine_config`` sets the settings' ``engines`` table); a dict → exactly those."""
        if engine_config is not None:
            overrides["engines"] = engine_config
        port = free_port()
        data_dir = tmp_path / f"data-{port}"
        settings = load_settings(data_dir=data_dir, port=port, **overrides)
        db.upgrade(settings.db_url)
        app = create_app(settings, engines=None if engines == "config" else (engines or {}), clock=clock)
        server = ThreadedServer(app, port).__enter__()
        stack.append(server)
        client = httpx.Client(base_url=settings.base_url, timeout=120)
        clients.append(client)
        running = Running(settings.base_url, "", settings, client)
        _key_id, running.key = running.create_key()
        return running

    yield start
    for c in clients:
        c.close()
    for s in reversed(stack):
        s.__exit__(None, None, None)


SIM_KEY = "sim-secret-key-0123456789"  # what the simulated upstreams of the shared fixtures accept


@pytest.fixture(scope="module")
def sims() -> Iterator[list]:
    """Two simulated upstreams (real HTTP servers), shared by a module's tests."""
    from ideohub.sim import SimConfig, SimulatedUpstream

    started = [SimulatedUpstream(SimConfig(api_keys=(SIM_KEY,))).start() for _ in range(2)]
    yield started
    for s in started:
        s.stop()


@pytest.fixture
def fresh(sims: list) -> Iterator[list]:
    """The shared upstreams with no faults, log or latency left by an earlier test."""
    for s in sims:
        s.reset()
        s.configure(latency_s=0.0)
    yield sims
    for s in sims:
        s.reset()
        s.configure(latency_s=0.0)


def sim_channel(name: str, sim, path_style: str = "official", auth: str = "api-key",  # type: ignore[no-untyped-def]
                kind: str = "relay", **extra) -> dict:
    """A ``[[channels]]`` entry for a simulated upstream (``kind="ideogram"`` forces its own auth and paths)."""
    opts = {"name": name, "kind": kind, "base_url": sim.base_url, "key": SIM_KEY, "auth": auth,
            "path_style": path_style, "timeout_s": 5.0, **extra}
    if kind == "ideogram":
        opts.pop("auth"), opts.pop("path_style")
    return opts


class FakeClock:
    """A monotonic clock that moves only when a test says so (cooldowns, reload intervals)."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def png_bytes(width: int = 64, height: int = 48, seed: int = 0, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    channels = 4 if mode == "RGBA" else 3
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // max(1, width - 1)), (yy * 255 // max(1, height - 1)), (xx + yy) % 256], -1)
    arr = (base + rng.integers(0, 24, size=(height, width, 3))).clip(0, 255).astype(np.uint8)
    if channels == 4:
        arr = np.concatenate([arr, np.full((height, width, 1), 200, np.uint8)], -1)
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "PNG")
    return buf.getvalue()


def encode(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


def mask_bytes(width: int, height: int, fmt: str = "PNG") -> bytes:
    """White with a black rectangle in the middle (black = edit)."""
    arr = np.full((height, width), 255, np.uint8)
    arr[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 0
    return encode(arr, fmt)


def _service_required() -> bool:
    return os.environ.get("IDEOHUB_REQUIRE_SERVICES") == "1"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards. CI (IDEOHUB_REQUIRE_SERVICES=1)
    fails rather than skips when PostgreSQL is unreachable."""
    import secrets as _secrets

    import psycopg

    base = os.environ.get("IDEOHUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if _service_required():
            pytest.fail(f"PostgreSQL is required but unreachable at {base}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {base}")
    name = f"ideohub_t_{_secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
