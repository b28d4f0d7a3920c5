"""An S3-compatible server for tests (moto's, on a free loopback port, started by the tests
themselves), and ideohub instances that share one database and one bucket (a fleet).

Import the fixtures into a test module: ``from s3 import fleet, s3_bucket, s3_server  # noqa: F401``.
"""

from __future__ import annotations

import secrets as _secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Running, ThreadedServer, free_port
from ideohub.api.app import create_app
from ideohub.config import load_settings
from ideohub.store import db

ACCESS_KEY_ID = "AKIDTESTONLY0000"
SECRET_ACCESS_KEY = "s3-test-secret-never-logged-0123456789"
REGION = "us-east-1"
SECRET_FILES = ("secrets.json", "secret.key")  # what an instance must share to verify another's links


@dataclass
class S3Server:
    endpoint_url: str

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY)

    def new_bucket(self) -> "S3Bucket":
        name = f"ideohub-test-{_secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return S3Bucket(self, name)


@dataclass
class S3Bucket:
    server: S3Server
    name: str

    def settings(self, prefix: str = "", **extra: Any) -> dict[str, Any]:
        """The ``Settings`` fields that put an instance's images in this bucket."""
        return {"storage_url": f"s3://{self.name}/{prefix}", "s3_endpoint_url": self.server.endpoint_url,
                "s3_region": REGION, "s3_access_key_id": ACCESS_KEY_ID, "s3_secret_access_key": SECRET_ACCESS_KEY,
                **extra}

    def keys(self) -> list[str]:
        pages = self.server.client().get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.server.client().get_object(Bucket=self.name, Key=key)["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        self.server.client().put_object(Bucket=self.name, Key=key, Body=data)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> S3Bucket:
    """A fresh, empty bucket for one test."""
    return s3_server.new_bucket()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator:
    """``start(name, engines=..., share_with=other, **settings)``: an instance with its own data
    directory; ``share_with`` gives it the other's database and secrets (one fleet), and its API key;
    with ``same_dir`` it runs on the other's data directory itself."""
    servers: list[ThreadedServer] = []
    clients: list[httpx.Client] = []

    def start(name: str, engines: dict | str | None = None, *, share_with: Running | None = None,
              same_dir: bool = False, **overrides: Any) -> Running:
        port = free_port()
        data_dir = tmp_path / name
        if share_with is not None and same_dir:  # the same data directory (and so database and secrets)
            data_dir = share_with.settings.data_dir
        elif share_with is not None:
            data_dir.mkdir(mode=0o700)
            for file in SECRET_FILES:
                if (share_with.settings.data_dir / file).exists():
                    shutil.copy2(share_with.settings.data_dir / file, data_dir / file)
            overrides.setdefault("database_url", share_with.settings.db_url)
        settings = load_settings(data_dir=data_dir, port=port, **overrides)
        db.upgrade(settings.db_url)
        app = create_app(settings, engines=None if engines == "config" else (engines or {}))
        servers.append(ThreadedServer(app, port).__enter__())
        client = httpx.Client(base_url=settings.base_url, timeout=60)
        clients.append(client)
        running = Running(settings.base_url, "", settings, client)
        running.key = share_with.key if share_with is not None else running.create_key()[1]
        return running

    yield start
    for c in clients:
        c.close()
    for s in reversed(servers):
        s.__exit__(None, None, None)
