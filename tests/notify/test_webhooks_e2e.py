"""Webhooks and task callbacks end to end: a real ideohub server (engines: an in-test painter, or
the simulated upstream as a relay channel), a real receiver on loopback, and a verifier written
from the spec that checks every delivery against the JWKS fetched over HTTP. Time moves by the
server's injected wall clock, never by sleeping."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from conftest import Running, ThreadedServer, free_port, png_bytes, sim_channel
from openapi import _validator, validate_response

from ideohub import spec
from ideohub.api.app import create_app
from ideohub.config import Secrets, load_settings
from ideohub.domain.errors import UpstreamFailed
from ideohub.domain.operations import DescribeRequest, DescribeResult, ImageOutput, ImageResult, Operation
from ideohub.domain.sizes import Size
from ideohub.notify.outbox import Outbox
from ideohub.store import db
from ideohub.store.repository import Repository
from notify.harness import Wall
from notify.receiver import Receiver
from notify.verifier import fetch_jwks, verify

V3 = "/v1/ideogram-v3/generate"
PNG = png_bytes(64, 48)
DAY = 24 * 3600


class Painter:
    """An engine for every operation: one small image; or a failure; or held until released."""

    name = "painter"

    def __init__(self) -> None:
        self.fail = False
        self.gate: threading.Event | None = None

    async def run(self, request: Any, ctx: Any) -> Any:
        if self.gate is not None:
            await asyncio.to_thread(self.gate.wait, 60)
        if self.fail:
            raise UpstreamFailed("the painter failed")
        if isinstance(request, DescribeRequest):
            return DescribeResult(["a small test picture"])
        return ImageResult([ImageOutput(data=PNG, media_type="image/png", resolution=Size(1024, 1024),
                                        prompt=request.prompt_text or "", seed=request.seed or 7, is_image_safe=True)])


@dataclass
class Hub:
    srv: Running
    app: Any
    wall: Wall

    def advance(self, seconds: float) -> None:
        """Move the server's wall clock and wait for a full delivery pass at the new time."""
        self.wall.advance(seconds)
        self.settle()

    def catch_up(self) -> None:
        """Rows just written (stamped with the real time) become due."""
        self.wall.catch_up()
        self.settle()

    def settle(self) -> None:
        """Wake the delivery worker and wait until a pass has started and ended after this call."""
        deliverer = self.app.state.webhooks.deliverer
        seen = deliverer.passes
        self.app.state.webhooks.wake_threadsafe()
        self.until("a delivery pass", lambda: deliverer.passes >= seen + 2)

    def deliveries(self, generation_id: str) -> list[Any]:
        async def go() -> list[Any]:
            repo = Repository.connect(self.srv.settings.db_url, Secrets.load(self.srv.settings).key_pepper)
            try:
                return await Outbox(repo.session).of_generation(generation_id)
            finally:
                await repo.close()

        return asyncio.run(go())

    def record(self, generation_id: str) -> Any:
        async def go() -> Any:
            repo = Repository.connect(self.srv.settings.db_url, Secrets.load(self.srv.settings).key_pepper)
            try:
                return await repo.get_generation(generation_id)
            finally:
                await repo.close()

        return asyncio.run(go())

    def until(self, what: str, check: Any, budget_s: float = 30.0) -> Any:
        """Wait for another thread's work (a bound, not a timing assertion)."""
        deadline = time.monotonic() + budget_s
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"{what}: not within {budget_s} s")

    def delivery_state(self, generation_id: str, kind: str = "webhook", seq: int | None = None) -> Any:
        views = [d for d in self.deliveries(generation_id) if d.kind == kind and (seq is None or d.seq == seq)]
        return views[-1] if views else None

    def wait_attempts(self, generation_id: str, attempts: int, kind: str = "webhook") -> Any:
        return self.until(f"{attempts} recorded attempts", lambda: (
            (d := self.delivery_state(generation_id, kind)) is not None and d.attempts >= attempts and d))


@pytest.fixture
def hub(tmp_path) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    servers: list[ThreadedServer] = []
    clients: list[httpx.Client] = []

    def start(engine_objects: Any = None, **overrides: Any) -> Hub:
        """``engine_objects``: exactly these engines, or None for what the settings configure."""
        port = free_port()
        overrides.setdefault("webhook_allowed_hosts", ["127.0.0.1"])
        settings = load_settings(data_dir=tmp_path / f"data-{port}", port=port, **overrides)
        db.upgrade(settings.db_url)
        app = create_app(settings, engines=engine_objects)
        wall = Wall(lead_s=-3600)  # behind: rows become due at catch_up (a slow start cannot shift the first attempt)
        app.state.wall_clock = wall  # the delivery worker's (and the JWKS's) wall clock
        servers.append(ThreadedServer(app, port).__enter__())
        client = httpx.Client(base_url=settings.base_url, timeout=60)
        clients.append(client)
        running = Running(settings.base_url, "", settings, client)
        _key_id, running.key = running.create_key()
        return Hub(running, app, wall)

    yield start
    for c in clients:
        c.close()
    for s in reversed(servers):
        s.__exit__(None, None, None)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def painted(hub, **overrides: Any) -> tuple[Hub, Painter]:  # type: ignore[no-untyped-def]
    painter = Painter()
    return hub({op: painter for op in Operation}, **overrides), painter


def submit(h: Hub, url: str, body: dict[str, Any] | None = None) -> str:
    r = h.srv.post(V3, json={"prompt": "a lighthouse", "rendering_speed": "TURBO", "seed": 5, **(body or {}),
                             "webhook_url": url})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"generation_id"}
    h.until("the webhook is owed", lambda: h.delivery_state(r.json()["generation_id"]))
    h.catch_up()
    return r.json()["generation_id"]


# ---------------------------------------------------------------- webhooks


def test_a_completed_generation_posts_the_sync_body_plus_its_id_signed(hub, receiver):
    h, _painter = painted(hub)
    gid = submit(h, receiver.url("/hook"))
    [got] = receiver.wait_for("/hook", 1)
    jwks = fetch_jwks(h.srv.base_url)
    assert verify(got.headers, got.body, jwks) == "wh1"
    assert got.headers["x-ideogram-webhook-generation-id"] == gid
    body = json.loads(got.body)
    rec = h.record(gid)
    assert body == {"generation_id": gid, **json.loads(rec.result)}  # the synchronous answer, plus the id
    assert "status" not in body  # as Ideogram sends it
    validate_response({k: v for k, v in body.items() if k != "generation_id"}, Operation.V3_GENERATE)
    assert httpx.get(body["data"][0]["url"]).status_code == 200  # our signed link, live
    h.until("delivered", lambda: h.delivery_state(gid).state == "delivered")
    # the legacy family too: webhook_url as a sibling of image_request; the same account, the same user id
    r = h.srv.post("/generate", json={"image_request": {"prompt": "a boat", "model": "V_2"},
                                      "webhook_url": receiver.url("/legacy")})
    assert r.status_code == 200, r.text
    h.until("the webhook is owed", lambda: h.delivery_state(r.json()["generation_id"]))
    h.catch_up()
    [legacy] = receiver.wait_for("/legacy", 1)
    verify(legacy.headers, legacy.body, jwks)
    assert legacy.headers["x-ideogram-webhook-user-id"] == got.headers["x-ideogram-webhook-user-id"]
    validate_response({k: v for k, v in json.loads(legacy.body).items() if k != "generation_id"}, Operation.GENERATE)


def test_a_failed_generation_posts_its_failure(hub, receiver):
    h, painter = painted(hub)
    painter.fail = True
    gid = submit(h, receiver.url("/hook"))
    [got] = receiver.wait_for("/hook", 1)
    verify(got.headers, got.body, fetch_jwks(h.srv.base_url))
    body = json.loads(got.body)
    assert set(body) == {"generation_id", "created", "status", "failure_reason"}
    assert (body["generation_id"], body["status"], body["failure_reason"]) == (gid, "failed", "upstream_failed")
    datetime.fromisoformat(body["created"])


def test_retried_with_backoff_after_an_error_then_delivered(hub, receiver):
    h, _painter = painted(hub)
    receiver.plan("/hook", "500")
    gid = submit(h, receiver.url("/hook"))
    first = h.wait_attempts(gid, 1)
    assert (first.state, first.last_status) == ("pending", 500)
    h.advance(9)  # a pass at +9 s: too early
    assert h.delivery_state(gid).attempts == 1 and len(receiver.at("/hook")) == 1
    h.advance(1)
    second, third = receiver.wait_for("/hook", 2)[0], receiver.wait_for("/hook", 2)[1]
    jwks = fetch_jwks(h.srv.base_url)
    for got in (second, third):
        verify(got.headers, got.body, jwks)
    assert second.body == third.body  # the same stored body, signed afresh
    assert int(third.headers["x-ideogram-webhook-timestamp"]) >= int(second.headers["x-ideogram-webhook-timestamp"]) + 10
    done = h.until("delivered", lambda: (d := h.delivery_state(gid)).state == "delivered" and d)
    assert (done.attempts, done.last_status) == (2, 200)
    metrics = h.srv.client.get("/metrics").text
    assert 'ideohub_deliveries_total{kind="webhook",outcome="retried"} 1.0' in metrics
    assert 'ideohub_deliveries_total{kind="webhook",outcome="delivered"} 1.0' in metrics


def test_dead_once_the_links_expire(hub, receiver):
    h, _painter = painted(hub, url_ttl_s=25, admin_token="admin-" + "t" * 20)
    receiver.default = "500"
    gid = submit(h, receiver.url("/hook"))
    h.wait_attempts(gid, 1)  # t=0 → next at 10
    h.advance(10)
    dead = h.until("dead", lambda: (d := h.delivery_state(gid)).state == "dead" and d)  # next would be 30 > 25
    assert (dead.attempts, dead.last_status) == (2, 500)
    h.advance(DAY)
    assert len(receiver.at("/hook")) == 2
    assert 'ideohub_deliveries_total{kind="webhook",outcome="dead"} 1.0' in h.srv.client.get("/metrics").text
    view = h.srv.client.get(f"/admin/generations/{gid}", headers={"Authorization": "Bearer admin-" + "t" * 20})
    assert view.status_code == 200, view.text
    assert view.json()["state"] == "done"  # the generation completed; its webhook is what died
    assert [(d["kind"], d["state"], d["attempts"]) for d in view.json()["deliveries"]] == [("webhook", "dead", 2)]


def test_a_hanging_target_does_not_hold_up_another(hub, receiver):
    other = Receiver().start()
    try:
        h, _painter = painted(hub)
        receiver.default = "hang"
        slow = submit(h, receiver.url("/slow"))
        receiver.wait_for("/slow", 1)
        fast = submit(h, other.url("/hook"))
        [got] = other.wait_for("/hook", 1)
        verify(got.headers, got.body, fetch_jwks(h.srv.base_url))
        h.until("delivered", lambda: h.delivery_state(fast).state == "delivered")
        assert h.delivery_state(slow).attempts == 0  # still waiting on its answer
    finally:
        other.stop()


def test_a_redirect_is_a_failed_attempt_and_not_followed(hub, receiver):
    h, _painter = painted(hub)
    receiver.plan("/hook", "redirect")
    gid = submit(h, receiver.url("/hook"))
    d = h.wait_attempts(gid, 1)
    assert (d.state, d.last_status) == ("pending", 302)
    assert receiver.at("/elsewhere") == []


@pytest.mark.parametrize("url", [
    "http://example.com/hook",  # not https
    "ftp://example.com/hook",
    "https://10.1.2.3/hook",  # private
    "https://192.168.0.10/hook",
    "https://localhost:8443/hook",  # loopback by name (127.0.0.1 itself is this server's allowed host)
    "https://[::1]/hook",
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata
    "https://[fd00:ec2::254]/latest/meta-data/",
    "https://user:pw@example.com/hook",
])
def test_unacceptable_targets_are_refused_at_submission(hub, url):
    h, _painter = painted(hub)
    r = h.srv.post(V3, json={"prompt": "a lighthouse", "webhook_url": url})
    assert r.status_code == 400, r.text
    assert "webhook_url" in r.json()["detail"]
    assert "x-ideohub-generation-id" not in r.headers  # refused before anything was admitted
    r = h.srv.post(V3 + "?webhook_url=" + url, json={"prompt": "a lighthouse"})
    assert r.status_code == 400 and "webhook_url" in r.json()["detail"]


def test_key_rotation_signs_new_deliveries_with_the_new_key(hub, receiver):
    h, _painter = painted(hub)
    submit(h, receiver.url("/one"))
    [one] = receiver.wait_for("/one", 1)
    assert one.headers["x-ideogram-webhook-key-id"] == "wh1"
    rotated = subprocess.run([sys.executable, "-m", "ideohub.cli", "rotate-webhook-key", "--data-dir",
                              str(h.srv.settings.data_dir)], check=False, capture_output=True, text=True,
                             timeout=120,
                             env={**os.environ})
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.strip().splitlines()[-1] == "wh2"
    jwks = h.until("the running server publishes wh2",
                   lambda: (j := fetch_jwks(h.srv.base_url))["keys"][0]["kid"] == "wh2" and j)  # no restart
    assert [k["kid"] for k in jwks["keys"]] == ["wh2", "wh1"]
    _validator(spec.MID_2026, "WebhookSigningJwks").validate(jwks)
    assert h.srv.client.get("/ideogram/v1/.well-known/jwks.json").json() == jwks  # relay-style path, no key
    r = h.srv.client.get("/v1/.well-known/jwks.json")
    assert r.headers["content-type"] == "application/json" and "cache-control" in r.headers
    for key in Secrets.load(h.srv.settings).webhook_ring.keys:
        assert key.private.private_bytes_raw().hex() not in r.text
    submit(h, receiver.url("/two"))
    [two] = receiver.wait_for("/two", 1)
    assert two.headers["x-ideogram-webhook-key-id"] == "wh2" and verify(two.headers, two.body, jwks) == "wh2"
    assert verify(one.headers, one.body, jwks) == "wh1"  # the earlier delivery still verifies
    h.advance(7 * DAY + 60)
    later = fetch_jwks(h.srv.base_url)
    assert [k["kid"] for k in later["keys"]] == ["wh2"]  # retired more than 7 days ago: gone


def test_relayed_through_the_simulated_upstream(hub, fresh, receiver):
    h = hub(None, engines={"*": "relay"}, channels=[sim_channel("up", fresh[0])])
    gid = submit(h, receiver.url("/hook"))
    [got] = receiver.wait_for("/hook", 1)
    verify(got.headers, got.body, fetch_jwks(h.srv.base_url))
    body = json.loads(got.body)
    assert body["generation_id"] == gid and body["data"][0]["url"].startswith(h.srv.base_url + "/images/")


# ---------------------------------------------------------------- task callbacks


def task_submit(h: Hub, url: str) -> str:
    r = h.srv.post("/ideogram" + V3, json={"prompt": "a lighthouse", "rendering_speed": "TURBO",
                                            "callback_url": url})
    assert r.status_code == 200, r.text
    assert r.json()["code"] == 0 and r.json()["data"]["task_status"] == "submitted"
    task_id = r.json()["data"]["task_id"]
    h.until("processing is owed", lambda: h.delivery_state(task_id, "callback", seq=1))
    h.catch_up()
    return task_id


def test_task_callbacks_report_processing_then_succeed(hub, receiver):
    h, painter = painted(hub)
    painter.gate = threading.Event()
    task_id = task_submit(h, receiver.url("/cb"))
    [processing] = receiver.wait_for("/cb", 1)
    painter.gate.set()
    h.until("succeed is owed", lambda: h.delivery_state(task_id, "callback", seq=2))
    h.catch_up()
    succeed = receiver.wait_for("/cb", 2)[1]
    jwks = fetch_jwks(h.srv.base_url)
    for got in (processing, succeed):
        assert verify(got.headers, got.body, jwks) == "wh1"  # signed like webhooks
        assert got.headers["x-ideogram-webhook-generation-id"] == task_id
    first, second = json.loads(processing.body), json.loads(succeed.body)
    assert "code" not in first and "data" not in first  # the bare task object, no envelope
    assert (first["task_id"], first["task_status"]) == (task_id, "processing")
    assert (second["task_id"], second["task_status"]) == (task_id, "succeed")
    assert second["task_result"]["images"][0]["index"] == 0
    assert second["updated_at"] >= first["updated_at"]


def test_an_older_task_status_is_never_delivered_after_a_newer_one(hub, receiver):
    h, painter = painted(hub)
    painter.gate = threading.Event()
    receiver.plan("/cb", "500")  # processing fails first, and is due again in 10 s
    task_id = task_submit(h, receiver.url("/cb"))
    h.wait_attempts(task_id, 1, kind="callback")
    painter.gate.set()  # succeed is written, superseding the processing still owed
    h.until("succeed is owed", lambda: h.delivery_state(task_id, "callback", seq=2))
    h.catch_up()
    [_processing, succeed] = receiver.wait_for("/cb", 2)
    assert json.loads(succeed.body)["task_status"] == "succeed"
    h.until("succeed delivered", lambda: (d := h.delivery_state(task_id, "callback", seq=2)) and d.state == "delivered")
    h.advance(3600)  # far past the processing row's retry time
    assert h.delivery_state(task_id, "callback", seq=1).state == "superseded"
    assert [json.loads(r.body)["task_status"] for r in receiver.at("/cb")] == ["processing", "succeed"]


def test_4_0_and_v2_generations_are_delivered_by_signed_webhook(hub, receiver):
    """The 2026 families: ``webhook_url`` as 4.0's query parameter on an ``/async/`` path, and as a
    /v2 body field; each delivery is the path's synchronous body plus its id, signed."""
    h, _painter = painted(hub)
    jwks = fetch_jwks(h.srv.base_url)
    r = h.srv.post("/v1/ideogram-v4/async/generate", params={"webhook_url": receiver.url("/v4")},
                   json={"text_prompt": "a lighthouse", "seed": 9})
    assert r.status_code == 200 and set(r.json()) == {"generation_id"}, r.text
    v4 = r.json()["generation_id"]
    r = h.srv.post("/ideogram/v2/image/generate/ideogram-4", json={
        "prompt": "a lighthouse", "seed": 9, "webhook_url": receiver.url("/v2")})
    assert r.status_code == 200 and r.json() == {"generation_id": r.json()["generation_id"], "seed": 9}, r.text
    v2 = r.json()["generation_id"]
    for gid in (v4, v2):
        h.until("the webhook is owed", lambda gid=gid: h.delivery_state(gid))
    h.catch_up()
    [got4] = receiver.wait_for("/v4", 1)
    [got2] = receiver.wait_for("/v2", 1)
    for got, gid in ((got4, v4), (got2, v2)):
        verify(got.headers, got.body, jwks)
        assert got.headers["x-ideogram-webhook-generation-id"] == gid
        assert json.loads(got.body) == {"generation_id": gid, **json.loads(h.record(gid).result)}
    body2 = json.loads(got2.body)
    assert body2["seed"] == 9 and body2["data"][0]["asset_id"] and httpx.get(body2["data"][0]["url"]).status_code == 200
    assert "asset_id" not in got4.body.decode()  # 4.0 on /v1 keeps its own shape
