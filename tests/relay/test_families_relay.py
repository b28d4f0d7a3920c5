"""The relay engine with 4.0 and /v2 requests against the simulated upstream (real HTTP, every
request checked against the official schema by the sim): images, JSON answers, /v2 work that is
only acknowledged and then polled, which channels serve which families, account fields dropped or
kept, resold models; and migration 0008 on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from conftest import SIM_KEY, png_bytes
from ideohub.domain.errors import (
    DeadlineExceeded,
    EngineUnavailable,
    InvalidRequest,
    SafetyRejected,
    UpstreamFailed,
)
from ideohub.domain.operations import ImageResult, JsonResult, Operation, SpecRequest
from ideohub.domain.sizes import Size
from ideohub.engines.base import EngineContext
from ideohub.engines.relay.channels import LEGACY_V3_OPERATIONS, Channel
from ideohub.engines.relay.engine import ChannelDirectory, RelayEngine
from ideohub.engines.relay.router import Router
from ideohub.media.decode import ImageLimits, read_image
from ideohub.net.guard import GuardedClients, GuardPolicy
from ideohub.store import db

V2_GEN4 = Operation("v2-generate-ideogram-4")
V2_GEN3_CUSTOM = Operation("v2-generate-ideogram-3-custom-model")
V2_REMOVE_BG = Operation("v2-remove-background-ideogram-1")
V2_REPLACE_BG = Operation("v2-replace-background-ideogram-3")
V2_NANO = Operation("v2-generate-nano-banana-2")
COLLECTION = "Zm9vYmFyYmF6cXV4cXV1eA"


def image(name: str = "image", w: int = 64, h: int = 48, filename: str = "in.png"):
    return read_image(name, png_bytes(w, h), ImageLimits(), filename=filename)


def channel(name: str, sim, kind: str = "ideogram", **kw: Any) -> Channel:  # type: ignore[no-untyped-def]
    """A channel to a sim; kind ideogram takes official paths and Api-Key, as the sim accepts."""
    if kind == "ideogram":
        return Channel(name=name, kind="ideogram", base_url=sim.base_url, key=SIM_KEY, timeout_s=20.0, **kw)
    return Channel(name=name, kind="relay", base_url=sim.base_url, key=SIM_KEY, timeout_s=20.0, **kw)


def run(channels: list[Channel], request: SpecRequest, seconds: float = 30.0) -> Any:
    async def load() -> list[Channel]:
        return channels

    async def go() -> Any:
        engine = RelayEngine(ChannelDirectory(load, reload_s=3600), router=Router(rng=random.Random(1)))
        ctx = EngineContext(request_id="req_families", deadline=time.monotonic() + seconds, pool=None)  # type: ignore[arg-type]
        try:
            result = await engine.run(request, ctx)
            return result, ctx
        finally:
            await engine.aclose()

    return asyncio.run(go())


def png_size(data: bytes) -> Size:
    with Image.open(io.BytesIO(data)) as im:
        return Size(*im.size)


def only_call(sim):  # type: ignore[no-untyped-def]
    api = sim.api_requests()
    assert len(api) == 1, [(r.path, r.status, r.error) for r in api]
    assert api[0].error is None and api[0].status == 200, api[0].error
    return api[0]


# ---------------------------------------------------------------- the families through the sim


def test_v4_generate(fresh):
    sim = fresh[0]
    request = SpecRequest(op=Operation.V4_GENERATE, params={"text_prompt": "a lighthouse at dusk",
                                                            "resolution": "1024x1024", "rendering_speed": "TURBO"},
                          seed=42)
    (result, ctx) = run([channel("up", sim)], request)
    assert isinstance(result, ImageResult) and len(result.images) == 1 and ctx.channel == "up"
    out = result.images[0]
    assert out.resolution == Size(1024, 1024) == png_size(out.data) and out.seed == 42 and out.is_image_safe
    call = only_call(sim)
    assert call.path == "/v1/ideogram-v4/generate" and call.content_type == "application/json"
    assert call.fields == {"text_prompt": "a lighthouse at dusk", "resolution": "1024x1024",
                           "rendering_speed": "TURBO", "seed": 42}


def test_v4_magic_prompt(fresh):
    sim = fresh[0]
    request = SpecRequest(op=Operation.V4_MAGIC_PROMPT, params={"text_prompt": "a cat", "aspect_ratio": "AUTO"})
    (result, _ctx) = run([channel("up", sim)], request)
    assert isinstance(result, JsonResult) and result.body["aspect_ratio"] == "1x1"
    jp = result.body["json_prompt"]
    assert jp["high_level_description"] and isinstance(jp["compositional_deconstruction"]["elements"], list)
    assert only_call(sim).path == "/v1/ideogram-v4/magic-prompt"


def test_v2_generate_ideogram_4_on_a_relay_channel_that_declares_it(fresh):
    sim = fresh[0]
    request = SpecRequest(op=V2_GEN4, params={"prompt": "two boats", "num_images": 2, "resolution": "1024x1024",
                                              "private": True}, num_images=2, seed=7)
    relay = channel("r", sim, kind="relay", path_style="ideogram", operations=frozenset({V2_GEN4}))
    (result, _ctx) = run([relay], request)
    assert len(result.images) == 2 and all(png_size(i.data) == i.resolution for i in result.images)
    call = only_call(sim)
    assert call.path == "/ideogram/v2/image/generate/ideogram-4" and call.auth == "bearer"
    assert call.fields["private"] is True and call.fields["num_images"] == 2 and call.fields["seed"] == 7
    assert "async" not in call.fields and "webhook_url" not in call.fields


def test_v2_remove_background_takes_the_size_from_the_image(fresh):
    sim = fresh[0]
    request = SpecRequest(op=V2_REMOVE_BG, params={"private": True}, images=(("image", image(w=80, h=56)),))
    (result, _ctx) = run([channel("up", sim)], request)
    (out,) = result.images
    assert out.resolution == png_size(out.data) == Size(80, 56) and out.prompt == "" and out.seed == 0
    call = only_call(sim)
    assert call.content_type == "multipart/form-data" and call.fields["private"] is True
    assert [p["name"] for p in call.parts] == ["image", "private"]


@pytest.mark.parametrize("kind,path_style,prefix", [("ideogram", None, ""), ("relay", "ideogram", "/ideogram"),
                                                    ("relay", "ideogram-v1", "/ideogram")])
def test_an_async_only_v2_operation_is_polled(fresh, kind, path_style, prefix):
    sim = fresh[0]
    sim.configure(async_pending_polls=2)
    try:
        extra: dict[str, Any] = {} if kind == "ideogram" else {"path_style": path_style, "auth": "bearer",
                                                               "operations": frozenset({V2_REPLACE_BG})}
        request = SpecRequest(op=V2_REPLACE_BG, params={"prompt": "on a beach", "private": True},
                              images=(("image", image(w=72, h=40)),))
        started = time.monotonic()
        (result, _ctx) = run([channel("up", sim, kind, **extra)], request)
        (out,) = result.images
        assert out.resolution == png_size(out.data) == Size(72, 40)
        assert time.monotonic() - started >= 1.0 + 1.5  # 1 s, then 1.5 s: two pending answers, then completed
        call = only_call(sim)
        assert call.path == prefix + "/v2/image/replace-background/ideogram-3"
        polls = [r for r in sim.requests if r.kind == "poll"]
        assert len(polls) == 3 and all(p.status == 200 and p.auth_ok for p in polls)
        assert {p.path for p in polls} == {f"{prefix}/v2/generations/{polls[0].path.rsplit('/', 1)[1]}"}
    finally:
        sim.configure(async_pending_polls=1)


def test_a_failed_async_generation_for_content_policy_is_the_callers_422(fresh):
    sim = fresh[0]
    request = SpecRequest(op=V2_REPLACE_BG, params={"prompt": "a failed-generation beach", "private": True},
                          images=(("image", image()),))
    with pytest.raises(SafetyRejected, match="content_policy_violation"):
        run([channel("up", sim)], request)


def test_a_malformed_poll_answer_fails_over(fresh):
    a, b = fresh
    a.faults("malformed_json", path="/v2/generations/*", count=None)
    request = SpecRequest(op=V2_REPLACE_BG, params={"prompt": "on a beach", "private": True},
                          images=(("image", image()),))
    (result, ctx) = run([channel("a", a, priority=10), channel("b", b)], request)
    assert ctx.channel == "b" and len(result.images) == 1
    assert [r.kind for r in a.requests] == ["api", "poll"]
    a.faults("malformed_json", path="/v2/generations/*", count=None)
    with pytest.raises(UpstreamFailed, match="malformed response while polling"):
        run([channel("a", a)], request)


def test_a_transient_poll_error_is_retried_on_the_same_channel(fresh):
    a, b = fresh
    a.faults("status", status=503, path="/v2/generations/*", count=1)
    request = SpecRequest(op=V2_REPLACE_BG, params={"prompt": "on a beach", "private": True},
                          images=(("image", image()),))
    (result, ctx) = run([channel("a", a, priority=10), channel("b", b)], request)
    assert ctx.channel == "a" and len(result.images) == 1 and b.requests == []
    assert [r.status for r in a.requests if r.kind == "poll"] == [503, 200, 200]  # 503, pending, completed


def test_the_deadline_bounds_polling(fresh):
    sim = fresh[0]
    sim.configure(async_pending_polls=50)
    try:
        request = SpecRequest(op=V2_REPLACE_BG, params={"prompt": "on a beach", "private": True},
                              images=(("image", image()),))
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            run([channel("up", sim)], request, seconds=3.0)
        assert time.monotonic() - started < 6.0
    finally:
        sim.configure(async_pending_polls=1)


def test_a_generation_failing_for_another_reason_fails_over():
    """Scripted upstreams: ``a`` accepts the work and reports it failed (not for content), ``b``
    completes it; the caller gets ``b``'s image, and ``a`` is blamed (it cools down)."""
    polled: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if request.method == "POST":
            return httpx.Response(200, json={"generation_id": f"gen_{host[0]}"})
        polled.append(str(request.url))
        if host == "a.up":
            return httpx.Response(200, json={"generation_id": "gen_a", "status": "failed", "created": "x",
                                             "failure_reason": "internal_error"})
        return httpx.Response(200, json={"generation_id": "gen_b", "status": "completed", "created": "x",
                                         "data": [{"is_image_safe": True, "url": "https://cdn.test/b.png",
                                                   "object_type": "image.generation"}]})

    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    async def no_sleep(_s: float) -> None:
        return None

    channels = [Channel(name=n, kind="ideogram", base_url=f"http://{n}.up", key=SIM_KEY, priority=p)
                for n, p in (("a", 10), ("b", 0))]

    async def load() -> list[Channel]:
        return channels

    async def go() -> Any:
        router = Router(rng=random.Random(1))
        engine = RelayEngine(
            ChannelDirectory(load, reload_s=3600), router=router,
            client=httpx.AsyncClient(transport=httpx.MockTransport(api)),
            downloads=GuardedClients(GuardPolicy(), resolver=resolve, inner=lambda: httpx.MockTransport(
                lambda r: httpx.Response(200, content=png_bytes(30, 20)))),
            sleep=no_sleep)
        ctx = EngineContext(request_id="r", deadline=time.monotonic() + 30, pool=None)  # type: ignore[arg-type]
        try:
            return await engine.run(SpecRequest(op=V2_REPLACE_BG, params={"prompt": "p"},
                                                images=(("image", image()),)), ctx), ctx, await router.status("a")
        finally:
            await engine.aclose()

    result, ctx, a_state = asyncio.run(go())
    assert ctx.channel == "b" and result.images[0].resolution == Size(30, 20)
    assert polled == ["http://a.up/v2/generations/gen_a", "http://b.up/v2/generations/gen_b"]
    assert a_state.failures == 1 and a_state.cooling
    assert [(a.channel, a.outcome, a.images) for a in ctx.attempts] == [("a", "failed", 0), ("b", "ok", 1)]


# ---------------------------------------------------------------- which channel serves what


def test_a_relay_channel_without_operations_refuses_4_0_while_an_ideogram_channel_serves_it(fresh):
    relay_sim, official_sim = fresh
    relay = channel("relay", relay_sim, kind="relay", path_style="ideogram", priority=100)
    assert relay.operations == LEGACY_V3_OPERATIONS
    request = SpecRequest(op=Operation.V4_GENERATE, params={"text_prompt": "a cat", "resolution": "1024x1024"})
    (result, ctx) = run([relay, channel("official", official_sim)], request)
    assert ctx.channel == "official" and len(result.images) == 1
    assert relay_sim.api_requests() == [] and len(official_sim.api_requests()) == 1
    with pytest.raises(EngineUnavailable, match="only when its operations list it"):
        run([relay], request)


@pytest.mark.parametrize("allowed", [False, True])
def test_account_fields_are_dropped_unless_the_channel_allows_them(fresh, allowed):
    sim = fresh[0]
    request = SpecRequest(op=V2_GEN4, params={"prompt": "a cat", "resolution": "1024x1024", "private": True,
                                              "target_collection_id": COLLECTION})
    run([channel("up", sim, account_fields=allowed)], request)
    fields = only_call(sim).fields
    assert ("target_collection_id" in fields) is allowed and fields["prompt"] == "a cat"
    if allowed:
        assert fields["target_collection_id"] == COLLECTION


def test_a_required_account_field_goes_only_to_a_channel_that_allows_it(fresh):
    a, b = fresh
    request = SpecRequest(op=V2_GEN3_CUSTOM, params={"prompt": "a cat", "custom_model_uri": "model/m/version/1",
                                                     "private": True})
    with pytest.raises(InvalidRequest, match="custom_model_uri"):
        run([channel("a", a)], request)
    assert a.api_requests() == []
    (_result, ctx) = run([channel("a", a, priority=10), channel("b", b, account_fields=True)], request)
    assert ctx.channel == "b" and only_call(b).fields["custom_model_uri"] == "model/m/version/1"
    assert a.api_requests() == []


def test_a_resold_model_no_channel_declares_is_a_400_naming_it(fresh):
    a, b = fresh
    request = SpecRequest(op=V2_NANO, params={"prompt": "a cat", "private": True})
    relay_all = channel("r", b, kind="relay", operations=frozenset(o for o in Operation if not o.resold))
    with pytest.raises(InvalidRequest) as refused:
        run([channel("official", a), relay_all], request)
    assert refused.value.status == 400
    text = str(refused.value)
    assert "model" in text and "nano-banana-2" in text and "v2-generate-nano-banana-2" in text
    assert a.api_requests() == [] and b.api_requests() == []  # never another model, never a 503
    offered = channel("official", a, operations=frozenset({V2_NANO}))
    (result, ctx) = run([offered], request)
    assert ctx.channel == "official" and len(result.images) == 1
    assert only_call(a).path == "/v2/image/generate/nano-banana-2"


# ---------------------------------------------------------------- migration 0008


INSERT = ("INSERT INTO channels (name, kind, base_url, auth, path_style, key_ciphertext, operations, models, "
          "priority, weight, max_in_flight, connect_timeout_s, timeout_s, enabled, cost_multiplier, source, "
          "created_at, updated_at, consecutive_failures) VALUES ({n}, {k}, 'http://x', 'bearer', 'ideogram', 'x', "
          "{o}, NULL, 0, 1, 10, 10, 180, {t}, 1, 'cli', '2025-01-01', '2025-01-01', 0)")
ROWS = [("relay_null", "relay", None), ("relay_json_null", "relay", "null"), ("relay_listed", "relay", '["upscale"]'),
        ("ideogram_null", "ideogram", None), ("ideogram_json_null", "ideogram", "null")]
EXPECTED = sorted(o.value for o in LEGACY_V3_OPERATIONS)


def check_migrated(rows: dict[str, Any]) -> None:
    assert rows["relay_null"] == EXPECTED and rows["relay_json_null"] == EXPECTED
    assert rows["relay_listed"] == ["upscale"]
    assert rows["ideogram_null"] is None and rows["ideogram_json_null"] is None


def test_migration_0008_on_sqlite(tmp_path: Path):
    import json

    url = f"sqlite:///{tmp_path / 'ideohub.db'}"
    db.upgrade(url, "0007")
    conn = sqlite3.connect(tmp_path / "ideohub.db")
    for name, kind, ops in ROWS:
        conn.execute(INSERT.format(n="?", k="?", o="?", t="1"), (name, kind, ops))
    conn.commit()
    db.upgrade(url)
    got = conn.execute("SELECT name, operations, account_fields FROM channels").fetchall()
    check_migrated({n: json.loads(o) if o is not None else None for n, o, _a in got})
    assert {a for _n, _o, a in got} == {0}
    conn.close()


def test_migration_0008_on_postgresql(pg_url: str):
    import psycopg

    db.upgrade(pg_url, "0007")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for name, kind, ops in ROWS:
            conn.execute(INSERT.format(n="%s", k="%s", o="%s::json", t="true"), (name, kind, ops))
    db.upgrade(pg_url)
    with psycopg.connect(pg_url) as conn:
        got = conn.execute("SELECT name, operations, account_fields FROM channels").fetchall()
    check_migrated({n: o for n, o, _a in got})
    assert {a for _n, _o, a in got} == {False}


def test_channels_add_account_fields_option_and_the_stored_defaults(tmp_path: Path):
    import os
    import subprocess
    import sys

    from ideohub.config import Secrets, load_settings
    from ideohub.engines.relay.channel_store import ChannelStore
    from ideohub.engines.relay.channels import SecretBox
    from ideohub.store.repository import Repository

    data = tmp_path / "data"

    def cli(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "ideohub.cli", "channels", "add", *args, "--key", SIM_KEY,
                               "--data-dir", str(data)], capture_output=True, text=True, env=dict(os.environ),
                              timeout=120)
        assert done.returncode == 0, done.stderr

    cli("plain", "--base-url", "https://relay.example")
    cli("trusted", "--base-url", "https://relay.example", "--account-fields", "--operations", "v4-generate")
    cli("official", "--kind", "ideogram")
    settings = load_settings(data_dir=data)

    async def go() -> list[Channel]:
        repo = Repository.connect(settings.db_url, Secrets.load(settings).key_pepper)
        try:
            return await ChannelStore(repo.session, SecretBox(Secrets.load(settings).channel_key)).list()
        finally:
            await repo.close()

    stored = {c.name: c for c in asyncio.run(go())}
    assert stored["plain"].account_fields is False and stored["plain"].operations == LEGACY_V3_OPERATIONS
    assert stored["trusted"].account_fields is True and stored["trusted"].operations == {Operation.V4_GENERATE}
    assert stored["official"].operations is None and stored["official"].public()["account_fields"] is False
