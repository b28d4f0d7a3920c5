"""What the polling and task-query tests share: an engine the test can hold, accounts and keys
made through the real repository, a poll-until helper, and the official schema oracle."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime
from typing import Any

import httpx
from conftest import Running, png_bytes
from openapi import _validator

from ideohub import spec
from ideohub.config import Secrets
from ideohub.domain.errors import IdeohubError
from ideohub.domain.operations import (
    CanonicalRequest,
    DescribeRequest,
    DescribeResult,
    ImageOutput,
    ImageResult,
    Operation,
)
from ideohub.domain.sizes import Size
from ideohub.store.ledger import Ledger
from ideohub.store.repository import Repository

PNG = png_bytes(64, 48)
V3 = "/v1/ideogram-v3/generate"
TURBO_PRICE = 30_000  # V3 TURBO, per image (domain/prices.toml)
BUDGET_S = 60.0  # how long a background generation may take to end before a test gives up


class Gate:
    """An engine for every operation. ``hold()`` makes the next runs wait until ``release()``;
    ``entered`` is set once a run has begun (the record already says it started). ``fail`` makes
    runs raise it; ``unsafe`` marks the last image of each result unsafe."""

    name = "gate"

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()
        self.fail: IdeohubError | None = None
        self.unsafe = False

    def hold(self) -> None:
        self.open.clear()
        self.entered.clear()

    def release(self) -> None:
        self.open.set()

    async def run(self, request: CanonicalRequest, ctx: Any) -> Any:
        self.entered.set()
        await asyncio.to_thread(self.open.wait, BUDGET_S)
        if self.fail is not None:
            raise self.fail
        if isinstance(request, DescribeRequest):
            return DescribeResult(["a small test picture", "a gradient"])
        n = request.num_images
        return ImageResult([ImageOutput(data=PNG, media_type="image/png", resolution=Size(64, 48),
                                        prompt=request.prompt_text or "", seed=(request.seed or 0) + i,
                                        is_image_safe=not (self.unsafe and i == n - 1))
                            for i in range(n)])


def gated(start_server, **overrides: Any) -> tuple[Running, Gate]:  # type: ignore[no-untyped-def]
    gate = Gate()
    return start_server({op: gate for op in Operation}, **overrides), gate


def _repo(srv: Running) -> Repository:
    return Repository.connect(srv.settings.db_url, Secrets.load(srv.settings).key_pepper)


def new_key(srv: Running, account: str | None = None, **options: Any) -> tuple[str, str]:
    """(account id, key): a key of ``account``, or of a new funded account when None."""

    async def go() -> tuple[str, str]:
        repo = _repo(srv)
        try:
            account_id = account
            if account_id is None:
                ledger = Ledger(repo.session)
                created = await ledger.create_account("polling")
                await ledger.topup(created.id, 10_000_000)
                account_id = created.id
            _row, key = await repo.create_key("k", account_id=account_id, **options)
            return account_id, key
        finally:
            await repo.close()

    return asyncio.run(go())


def headers(key: str, style: str = "api-key") -> dict[str, str]:
    return {"Api-Key": key} if style == "api-key" else {"Authorization": f"Bearer {key}"}


def poll(srv: Running, generation_id: str, path: str = "/v1/generations/", key: str | None = None,
         style: str = "api-key") -> httpx.Response:
    return srv.client.get(path + generation_id, headers=headers(key or srv.key, style))


def poll_until(srv: Running, generation_id: str, status: str, key: str | None = None) -> dict[str, Any]:
    """Poll, as a client does, until the generation reaches ``status`` (a final one)."""
    deadline = time.monotonic() + BUDGET_S
    while True:
        r = poll(srv, generation_id, key=key)
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] == status:
            return body
        assert body["status"] == "pending", body
        assert time.monotonic() < deadline, f"still {body['status']} after {BUDGET_S} s"
        time.sleep(0.02)


def as_answered(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A completed ``GenerationResponse``'s items as the synchronous answer had them: each polled
    item also carries its ``object_type`` and, when it was stored, the ``asset_id`` that names its
    file in our signed URL (October 2026's ``ImageGenerationObject``)."""
    items = []
    for item in body["data"]:
        item = dict(item)
        kind = item.pop("object_type")
        assert kind == ("image.generation" if "prompt" in item and "seed" in item else "image.without-prompt-or-seed")
        asset = item.pop("asset_id", None)
        if item.get("url"):
            assert asset is not None and f"/images/{asset}." in item["url"]
        else:
            assert asset is None
        items.append(item)
    return items


def check_generation_response(body: dict[str, Any]) -> None:
    """Ideogram's ``GenerationResponse`` (the vendored July-2026 document) and its ``x-drop-nulls``:
    absent fields are left out, never null; what each status carries."""
    _validator(spec.MID_2026, "GenerationResponse").validate(body)
    assert None not in body.values(), body
    assert datetime.fromisoformat(body["created"]).utcoffset() is not None
    extra = set(body) - {"generation_id", "status", "created"}
    if body["status"] == "pending":
        assert extra == set(), body
    elif body["status"] == "failed":
        assert extra == {"failure_reason"}, body
    elif "descriptions" in body:
        assert extra == {"descriptions", "usage_cost_usd_micros"}, body
    else:
        assert extra == {"response_type", "data", "usage_cost_usd_micros"}, body
        assert body["response_type"] == "url"


def sync_v3(srv: Running, key: str | None = None, num_images: int = 2) -> tuple[str, dict[str, Any]]:
    """A synchronous V3 generate: (generation id from its header, the answer)."""
    r = srv.client.post(V3, headers=headers(key or srv.key),
                        json={"prompt": "a lighthouse at dusk", "rendering_speed": "TURBO", "num_images": num_images})
    assert r.status_code == 200, r.text
    return r.headers["x-ideohub-generation-id"], r.json()


def async_v3(srv: Running, key: str | None = None, **extra: Any) -> str:
    body = {"prompt": "a lighthouse at dusk", "rendering_speed": "TURBO", "num_images": 2, "async": True, **extra}
    r = srv.client.post(V3, headers=headers(key or srv.key), json=body)
    assert r.status_code == 200, r.text
    return r.json()["generation_id"]


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
