"""The relay engine against a scripted upstream (``httpx.MockTransport``): our own failures
never count against a channel, every upstream value is validated before use, downloads are
capped while streaming and bounded by the deadline, cancellation frees the slot, upstream error
text is redacted, and channel health is written only on transitions."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from conftest import png_bytes
from ideohub.domain import enums as E
from ideohub.domain.errors import (
    DeadlineExceeded,
    EngineUnavailable,
    InvalidRequest,
    RateLimited,
    SafetyRejected,
    UpstreamFailed,
)
from ideohub.domain.operations import GenerateRequest, ImageResult, RemixRequest, V3GenerateRequest, V3RemixRequest
from ideohub.engines.base import EngineContext
from ideohub.engines.relay.channels import Channel, ChannelHealth
from ideohub.engines.relay.engine import ChannelDirectory, RelayEngine, UpstreamRejected
from ideohub.engines.relay.router import Router
from ideohub.engines.relay.wire import parse_retry_after
from ideohub.media.decode import ImageLimits, read_image
from ideohub.net.guard import GuardedClients, GuardPolicy

KEY = "chan-secret-0123456789abcdef"
IMG = png_bytes(16, 16)
PUBLIC = "93.184.216.34"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def answer(n: int = 1, host: str = "cdn.test", **item: Any) -> dict[str, Any]:
    base = {"prompt": "a cat", "resolution": "1024x1024", "is_image_safe": True, "seed": 7}
    return {"created": "2025-01-01T00:00:00Z",
            "data": [{**base, "url": f"https://{host}/{i}.png", **item} for i in range(n)]}


class Upstream:
    """Per-channel scripted API answers plus an image host; records what was requested."""

    def __init__(self) -> None:
        self.api: dict[str, Callable[[httpx.Request], Any]] = {}
        self.api_calls: list[str] = []
        self.downloads: list[str] = []
        self.image: Callable[[httpx.Request], httpx.Response] = lambda r: httpx.Response(200, content=IMG)

    async def handle_api(self, request: httpx.Request) -> httpx.Response:
        name = request.url.host.split(".")[0]
        self.api_calls.append(name)
        result = self.api.get(name, lambda r: answer())(request)
        if asyncio.iscoroutine(result):
            result = await result
        return result if isinstance(result, httpx.Response) else httpx.Response(200, json=result)

    def handle_download(self, request: httpx.Request) -> httpx.Response:
        self.downloads.append(str(request.url))
        return self.image(request)


class Health:
    def __init__(self) -> None:
        self.writes: list[tuple[str, Any]] = []

    async def record_failure(self, name: str, failures: int, cooling_until: datetime | None, error: str) -> None:
        self.writes.append(("failure", (name, failures, cooling_until, error)))

    async def record_ok(self, name: str, at: datetime) -> None:
        self.writes.append(("ok", name))


def make(channels: list[Channel] | None = None, *, clock: Clock | None = None, max_download_bytes: int = 1 << 20,
         health: Health | None = None) -> tuple[RelayEngine, Upstream, Router]:
    up = Upstream()
    channels = channels if channels is not None else [channel("a")]

    async def load() -> list[Channel]:
        return channels

    async def resolve(host: str, port: int) -> list[str]:
        return {"cdn.test": [PUBLIC], "evil.test": [PUBLIC]}.get(host, ["10.0.0.9"])

    router = Router(base_cooldown_s=5, clock=clock or Clock(), rng=random.Random(1))

    async def no_sleep(_s: float) -> None:
        return None

    engine = RelayEngine(
        ChannelDirectory(load, reload_s=3600), router=router,
        client=httpx.AsyncClient(transport=httpx.MockTransport(up.handle_api)),
        downloads=GuardedClients(GuardPolicy(), resolver=resolve,
                                 inner=lambda: httpx.MockTransport(up.handle_download)),
        max_download_bytes=max_download_bytes, health=health, sleep=no_sleep,
    )
    return engine, up, router


def channel(name: str, priority: int = 0, **kw: Any) -> Channel:
    return Channel(name=name, kind="relay", base_url=f"http://{name}.up", key=KEY, priority=priority, **kw)


def ctx(seconds: float = 60.0) -> EngineContext:
    deadline = time.monotonic() + seconds
    return EngineContext(request_id="req_test", deadline=deadline, pool=None)  # type: ignore[arg-type]


V3 = V3GenerateRequest(prompt="a cat")


def run(engine: RelayEngine, request: Any = V3, context: EngineContext | None = None) -> Any:
    async def go() -> Any:
        try:
            return await engine.run(request, context or ctx())
        finally:
            await engine.aclose()

    return asyncio.run(go())


async def status(router: Router, name: str = "a"):  # type: ignore[no-untyped-def]
    return await router.status(name)


def state(router: Router, name: str = "a"):  # type: ignore[no-untyped-def]
    return asyncio.run(status(router, name))


# ---------------------------------------------------------------- 1. our failures are not the channel's


LONE = "\ud800"
_IMG_IN = read_image("image", IMG, ImageLimits(), filename="in.png")


@pytest.mark.parametrize("request_,field", [
    (V3GenerateRequest(prompt=f"a {LONE} cat"), "prompt"),
    (V3GenerateRequest(prompt="ok", negative_prompt=LONE), "negative_prompt"),
    (GenerateRequest(prompt=LONE, model=E.Model.V_2), "image_request.prompt"),
    (RemixRequest(prompt=LONE, image_file=read_image("image_file", IMG, ImageLimits())), "image_request.prompt"),
    (V3RemixRequest(prompt=LONE, image=_IMG_IN), "prompt"),
], ids=["v3-json", "v3-negative", "legacy-json", "legacy-multipart", "v3-multipart"])
def test_unencodable_input_is_the_callers_400_and_reaches_no_channel(request_, field):
    engine, up, router = make()
    with pytest.raises(InvalidRequest) as info:
        run(engine, request_)
    assert info.value.field == field and info.value.status == 400
    assert up.api_calls == []
    st = state(router)
    assert st.failures == 0 and st.in_flight == 0 and not st.cooling


def test_an_exception_of_ours_frees_the_slot_without_a_failure(monkeypatch):
    engine, up, router = make()

    async def broken(*_a: Any) -> Any:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(engine, "_download_all", broken)
    context = ctx()
    with pytest.raises(RuntimeError):
        run(engine, V3, context)
    assert up.api_calls == ["a"]
    st = state(router)
    assert st.failures == 0 and st.in_flight == 0 and not st.cooling
    assert [a.outcome for a in context.attempts] == ["error"]


def test_cancellation_while_waiting_for_the_upstream_frees_the_slot_and_records_the_attempt():
    engine, up, router = make()
    entered = asyncio.Event()

    async def hang(_r: httpx.Request) -> httpx.Response:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError

    up.api["a"] = hang
    request = V3GenerateRequest(prompt="a cat", num_images=3)
    context = ctx()

    async def go() -> None:
        task = asyncio.ensure_future(engine.run(request, context))
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        st = await router.status("a")
        assert st.failures == 0 and st.in_flight == 0 and not st.cooling and not st.probing
        await engine.aclose()

    asyncio.run(go())
    [attempt] = context.attempts
    assert attempt.outcome == "cancelled" and attempt.images == 3  # the upstream may still bill


def test_cancellation_during_a_download_closes_its_stream():
    engine, up, router = make()
    started, closed = asyncio.Event(), asyncio.Event()

    class Hanging(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            started.set()
            yield IMG[:16]
            await asyncio.Event().wait()

        async def aclose(self) -> None:
            closed.set()

    up.image = lambda r: httpx.Response(200, stream=Hanging())
    context = ctx()

    async def go() -> None:
        task = asyncio.ensure_future(engine.run(V3, context))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert closed.is_set()
        st = await router.status("a")
        assert st.failures == 0 and st.in_flight == 0
        await engine.aclose()

    asyncio.run(go())
    assert [a.outcome for a in context.attempts] == ["cancelled"]


def test_our_deadline_during_a_trickling_download_is_no_verdict_on_the_channel():
    engine, up, router = make()

    class Trickle(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield IMG[:16]
            while True:
                await asyncio.sleep(0.02)
                yield b"\0"

    up.image = lambda r: httpx.Response(200, stream=Trickle())
    context = ctx(0.3)
    with pytest.raises(DeadlineExceeded):
        run(engine, V3, context)
    st = state(router)
    assert st.failures == 0 and st.in_flight == 0
    assert [(a.outcome, a.images) for a in context.attempts] == [("download_failed", 1)]


# ---------------------------------------------------------------- 2. every upstream value validated


DEEP = b"[" * 100_000 + b"]" * 100_000
MALFORMED: dict[str, Any] = {
    "100k-deep": DEEP,
    "nan": b'{"data": [{"url": "https://cdn.test/0.png", "prompt": "p", "resolution": "1024x1024", '
           b'"is_image_safe": true, "seed": NaN}]}',
    "lone-surrogate": b'{"data": [{"url": "https://cdn.test/0.png", "prompt": "\\ud800", "resolution": "1024x1024", '
                      b'"is_image_safe": true, "seed": 1}]}',
    "seed-1e30": answer(seed=10 ** 30),
    "seed-50-digits": json.dumps(answer()).replace('"seed": 7', '"seed": ' + "9" * 50).encode(),
    "seed-negative": answer(seed=-1),
    "seed-bool": answer(seed=True),
    "seed-float": answer(seed=1.5),
    "resolution-0x0": answer(resolution="0x0"),
    "resolution-huge": answer(resolution="99999999999x1024"),
    "resolution-17k": answer(resolution="16385x1024"),
    "resolution-text": answer(resolution="big"),
    "upscaled-0x0": answer(upscaled_resolution="0x0"),
    "url-crlf": answer(url="https://cdn.test/a.png\r\nX-Injected: 1"),
    "url-space": answer(url="https://cdn.test/a b.png"),
    "url-javascript": answer(url="javascript:alert(1)"),
    "url-file": answer(url="file:///etc/passwd"),
    "url-bad-port": answer(url="https://cdn.test:99999/a.png"),
    "url-broken-ipv6": answer(url="http://[::1/a.png"),
    "url-too-long": answer(url="https://cdn.test/" + "a" * 3000),
    "url-number": answer(url=5),
    "safe-without-url": answer(url=None),
    "1000-images-for-1": answer(1000, host="evil.test"),
    "2-images-for-1": answer(2, host="evil.test"),
    "no-data": {"data": []},
    "not-json": b"<html>",
    "not-object": b"[1, 2]",
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_answers_fail_over_and_nothing_of_theirs_is_fetched(body):
    engine, up, router = make([channel("a", priority=1), channel("b")])
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    up.api["a"] = lambda r: httpx.Response(200, content=content, headers={"Content-Type": "application/json"})
    context = ctx()
    result = run(engine, V3, context)
    assert isinstance(result, ImageResult) and len(result.images) == 1
    assert up.api_calls == ["a", "b"] and context.channel == "b"
    assert not [u for u in up.downloads if "evil.test" in u]  # extras are never downloaded
    assert state(router, "a").failures == 1 and state(router, "b").failures == 0
    assert [a.outcome for a in context.attempts] == ["failed", "ok"]


def test_values_are_made_safe_to_echo_and_store():
    engine, up, _router = make()
    up.api["a"] = lambda r: answer(prompt="x\x00y\x07" + "z" * 50_000, style_type="<script>")
    [image] = run(engine).images
    assert "\x00" not in image.prompt and "\x07" not in image.prompt and len(image.prompt) <= 20_000
    assert image.style_type is None  # not a known style type: dropped
    engine, up, _router = make()
    up.api["a"] = lambda r: answer(style_type="FICTION")
    assert run(engine).images[0].style_type == "FICTION"


def test_describe_texts_are_bounded():
    from ideohub.domain.operations import DescribeRequest

    engine, up, _ = make([channel("a", priority=1), channel("b")])
    up.api["a"] = lambda r: {"descriptions": [{"text": "t"}] * 100}
    up.api["b"] = lambda r: {"descriptions": [{"text": "ok\x00" + "w" * 50_000}]}
    result = run(engine, DescribeRequest(image_file=read_image("image_file", IMG, ImageLimits())))
    assert up.api_calls == ["a", "b"]
    assert "\x00" not in result.descriptions[0] and len(result.descriptions[0]) <= 20_000


@pytest.mark.parametrize("value,expected", [
    ("7", 7.0), ("0", 0.0), ("1.5", 1.5), ("inf", 3600.0), ("Infinity", 3600.0), ("1e400", 3600.0),
    ("99999999999999999999", 3600.0), ("-5", 0.0), ("-inf", 0.0), ("nan", None), ("garbage", None), ("", None),
    (None, None), ("x" * 100, None), ("Wed, 01 Jan 2025 00:00:30 GMT", 30.0), ("Wed, 01 Jan 2025 00:00:00 GMT", 0.0),
    ("Tue, 31 Dec 2024 23:00:00 GMT", 0.0), ("Sat, 01 Jan 2200 00:00:00 GMT", 3600.0), ("Mon, 99 Foo 2025", None),
])
def test_retry_after_is_parsed_finite_and_clamped(value, expected):
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after(value, now) == expected


@pytest.mark.parametrize("retry_after", ["inf", "nan", "1e400", "-1", "Sat, 01 Jan 2200 00:00:00 GMT", "soon"])
def test_hostile_retry_after_never_breaks_the_answer(retry_after):
    engine, up, _router = make()
    up.api["a"] = lambda r: httpx.Response(429, headers={"Retry-After": retry_after}, json={"detail": "slow down"})
    with pytest.raises(RateLimited) as info:
        run(engine)
    assert 1 <= info.value.retry_after <= 3600


# ---------------------------------------------------------------- 3. downloads: capped while streaming, not retried


class Counting(httpx.AsyncByteStream):
    def __init__(self, head: bytes, chunks: int, size: int = 1000) -> None:
        self.head, self.chunks, self.size, self.sent = head, chunks, size, 0

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield self.head
        for _ in range(self.chunks):
            self.sent += 1
            yield b"\0" * self.size


def test_an_oversized_download_stops_at_the_cap_and_is_not_retried():
    engine, up, router = make(max_download_bytes=10_000)
    streams: list[Counting] = []

    def big(_r: httpx.Request) -> httpx.Response:
        streams.append(Counting(IMG[:16], 15_000))  # 15 MB against a 10 kB cap
        return httpx.Response(200, stream=streams[-1])

    up.image = big
    context = ctx()
    with pytest.raises(UpstreamFailed) as info:
        run(engine, V3, context)
    assert info.value.detail == "a: could not download the generated images from the upstream"
    assert len(up.downloads) == 1 and streams[0].sent <= 11  # read up to the cap, once
    assert [a.outcome for a in context.attempts] == ["download_failed"]
    assert state(router).failures == 0  # the channel answered; the image was the problem


def test_a_declared_oversized_download_is_not_read_at_all():
    engine, up, _ = make(max_download_bytes=10_000)
    stream = Counting(IMG[:16], 100)
    up.image = lambda r: httpx.Response(200, headers={"Content-Length": "1500000000"}, stream=stream)
    with pytest.raises(UpstreamFailed):
        run(engine)
    assert stream.sent == 0 and len(up.downloads) == 1


def test_a_download_that_is_not_an_image_is_refused_from_its_first_bytes():
    engine, up, _ = make()
    stream = Counting(b"<html><body>oops", 100)
    up.image = lambda r: httpx.Response(200, stream=stream)
    with pytest.raises(UpstreamFailed):
        run(engine)
    assert stream.sent == 0 and len(up.downloads) == 1


def test_transient_download_failures_are_retried():
    engine, up, _ = make()
    answers = [httpx.Response(503), httpx.Response(200, content=IMG)]
    up.image = lambda r: answers.pop(0)
    assert run(engine).images[0].data == IMG
    assert len(up.downloads) == 2


def test_image_links_to_a_private_address_are_refused_with_a_generic_502():
    engine, up, router = make([channel("a", priority=1), channel("b")])
    up.api["a"] = lambda r: answer(host="127.0.0.1:6379")
    with pytest.raises(UpstreamFailed) as info:
        run(engine)
    assert info.value.detail == "a: could not download the generated images from the upstream"
    assert "6379" not in info.value.detail and up.downloads == []
    assert state(router).failures == 1  # the channel handed us links we refuse: its fault


# ---------------------------------------------------------------- status mapping and redaction


@pytest.mark.parametrize("status,outcome", [(500, "failed"), (502, "failed"), (404, "failed"), (408, "failed"),
                                            (401, "auth"), (402, "auth"), (403, "auth"), (302, "failed")])
def test_upstream_failures_fail_over(status, outcome):
    engine, up, router = make([channel("a", priority=1), channel("b")])
    up.api["a"] = lambda r: httpx.Response(status, json={"detail": "no"})
    context = ctx()
    assert len(run(engine, V3, context).images) == 1
    assert [a.outcome for a in context.attempts] == [outcome, "ok"]
    assert state(router).cooling


LEAK = f"bad request; headers were Authorization: Bearer {KEY}, Api-Key: {KEY}, x-api-key={KEY}; key {KEY}"


@pytest.mark.parametrize("status,error", [(400, UpstreamRejected), (413, UpstreamRejected), (422, SafetyRejected)])
def test_upstream_error_text_is_passed_through_redacted_and_never_retried(status, error):
    engine, up, router = make([channel("a", priority=1), channel("b")])
    up.api["a"] = lambda r: httpx.Response(status, json={"detail": LEAK + "\x00"})
    with pytest.raises(error) as info:
        run(engine)
    detail = info.value.detail
    assert KEY not in detail and "\x00" not in detail
    assert "bad request" in detail and up.api_calls == ["a"]
    assert state(router).failures == 0


def test_only_disabled_channels_answer_503_saying_how_to_enable_them():
    engine, _up, _ = make([channel("a", enabled=False), channel("b", enabled=False, operations=frozenset())])
    with pytest.raises(EngineUnavailable) as info:
        run(engine)
    detail = info.value.detail
    assert "disabled (a)" in detail and "ideohub channels enable NAME" in detail and "add one" not in detail
    engine, _up, _ = make([])
    with pytest.raises(EngineUnavailable) as info:
        run(engine)
    assert "ideohub channels add" in info.value.detail


# ---------------------------------------------------------------- health: written on transitions only


def test_health_is_written_on_transitions_only():
    clock = Clock()
    health = Health()
    now = datetime(2025, 1, 1, tzinfo=UTC)
    a = channel("a", health=ChannelHealth(last_ok_at=now))
    engine, up, router = make([a], clock=clock, health=health)
    engine.now = lambda: now

    async def go() -> None:
        for _ in range(5):  # healthy and recently ok: no write at all
            await engine.run(V3, ctx())
        assert health.writes == []
        up.api["a"] = lambda r: httpx.Response(503, text=f"down; Bearer {KEY}")
        with pytest.raises(UpstreamFailed):
            await engine.run(V3, ctx())
        [(kind, (name, failures, until, error))] = health.writes
        assert (kind, name, failures) == ("failure", "a", 1) and until == now + timedelta(seconds=5)
        assert KEY not in error
        clock.t += 6  # cooldown over: the half-open probe succeeds
        up.api.pop("a")
        for _ in range(5):
            await engine.run(V3, ctx())
        assert health.writes[1:] == [("ok", "a")]  # one recovery write, not one per request
        await engine.aclose()

    asyncio.run(go())
