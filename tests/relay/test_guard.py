"""The outbound guard (``ideohub.net.guard``): URL rules, address rules (a private address only
for a channel's exact origin), redirects under the same rules with nothing requested where they
are refused (``httpx.MockTransport``), and, on real sockets, that the connection goes to the
address that was checked even when DNS answers differently later (rebinding)."""

from __future__ import annotations

import asyncio
import ipaddress

import httpx
import pytest

from conftest import png_bytes
from ideohub.net.fetch import TooLarge, open_stream, read_capped
from ideohub.net.guard import (
    GuardedClients,
    GuardedTransport,
    GuardPolicy,
    Origin,
    PinnedBackend,
    Refused,
    check_url,
    is_public_address,
)

PUBLIC = "93.184.216.34"
TIMEOUT = httpx.Timeout(5.0)


def resolver(table: dict[str, list[str]]):
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise OSError("no such host")
        return table[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


# ---------------------------------------------------------------- URL and address rules


@pytest.mark.parametrize("url", [
    "ftp://cdn.example/a.png", "javascript:alert(1)", "file:///etc/passwd", "http:///a.png", "//cdn.example/a.png",
    "https://user:pw@cdn.example/a.png", "https://cdn.example/a.png\r\nX-Injected: 1", "https://cdn.example/a b.png",
    "https://cdn.example/\ta.png", "https://cdn.example/\x00", "https://cdn.example:99999/a.png",
    "https://cdn.example:-1/a.png", "http://[::1/a.png", "https://cdn.example/" + "a" * 2100, "", None, 42,
])
def test_unacceptable_urls_are_refused(url):
    with pytest.raises(Refused):
        check_url(url)


def test_origin_is_scheme_host_and_port_normalised():
    assert check_url("HTTPS://CDN.Example/a.png") == Origin("https", "cdn.example", 443)
    assert check_url("http://127.0.0.1:8080/x") == Origin("http", "127.0.0.1", 8080)
    assert check_url("http://[::1]:9/x") == Origin("http", "::1", 9)
    assert check_url("http://bücher.example/x").host == "xn--bcher-kva.example"


@pytest.mark.parametrize("address,public", [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True), ("127.0.0.1", False), ("10.1.2.3", False),
    ("192.168.0.1", False), ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("::1", False),
    ("fd00::1", False), ("fe80::1", False), ("::ffff:127.0.0.1", False), ("64:ff9b::7f00:1", False),
    ("2002:7f00:1::", False), ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo → 127.0.0.1
])
def test_public_addresses_judged_by_the_ipv4_they_carry(address, public):
    assert is_public_address(ipaddress.ip_address(address)) is public


def test_private_addresses_only_for_the_exact_trusted_origin():
    policy = GuardPolicy(("*.cloudfront.net",)).trusting("http://127.0.0.1:9000")
    assert policy.allowed_addresses(Origin("http", "127.0.0.1", 9000), ["127.0.0.1"]) == ["127.0.0.1"]
    for other in (Origin("http", "127.0.0.1", 6379), Origin("http", "127.0.0.1", 5432),
                  Origin("https", "127.0.0.1", 9000), Origin("http", "localhost", 9000)):
        with pytest.raises(Refused):
            policy.allowed_addresses(other, ["127.0.0.1"])
    # a public host: every address must be public
    assert policy.allowed_addresses(Origin("https", "img.example", 443), [PUBLIC]) == [PUBLIC]
    with pytest.raises(Refused):
        policy.allowed_addresses(Origin("https", "img.example", 443), [PUBLIC, "10.0.0.7"])
    with pytest.raises(Refused):
        policy.allowed_addresses(Origin("https", "img.example", 443), [])
    # the operator's configured image hosts are trusted wherever they resolve; patterns never match addresses
    assert policy.allowed_addresses(Origin("https", "d1.cloudfront.net", 443), ["10.0.0.7"]) == ["10.0.0.7"]
    assert not GuardPolicy(("*",)).host_allowed("127.0.0.1")


# ---------------------------------------------------------------- redirects and status (MockTransport)


def guarded(handler, table: dict[str, list[str]], policy: GuardPolicy | None = None):
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return handler(request)

    transport = GuardedTransport(policy or GuardPolicy(), resolver=resolver(table), inner=httpx.MockTransport(record))
    return httpx.AsyncClient(transport=transport), seen


async def fetch(client: httpx.AsyncClient, url: str) -> tuple[int, bytes]:
    async with open_stream(client, url, timeout=TIMEOUT) as response:
        return response.status_code, await read_capped(response, 1 << 20)


IMG = png_bytes(8, 8)


@pytest.mark.parametrize("target", [
    "http://127.0.0.1:6379/", "http://10.0.0.1/latest/meta-data", "http://internal.test/x.png",
    "http://[::1]:5432/", "gopher://img.example/x",
])
def test_redirect_to_a_private_address_is_refused_and_nothing_is_requested_there(target):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "img.example":
            return httpx.Response(302, headers={"Location": target})
        return httpx.Response(200, content=IMG)

    async def go() -> list[str]:
        client, seen = guarded(handler, {"img.example": [PUBLIC], "internal.test": ["10.9.9.9"]})
        async with client:
            with pytest.raises(Refused):
                await fetch(client, "https://img.example/a.png")
        return seen

    assert asyncio.run(go()) == ["https://img.example/a.png"]


def test_redirects_followed_up_to_three_hops_under_the_same_rules():
    def handler(request: httpx.Request) -> httpx.Response:
        hop = int(request.url.params.get("hop", "0"))
        if hop < int(request.url.params.get("hops", "0")):
            return httpx.Response(307, headers={"Location": f"/a.png?hop={hop + 1}&hops={request.url.params['hops']}"})
        return httpx.Response(200, content=IMG)

    async def go() -> None:
        client, seen = guarded(handler, {"img.example": [PUBLIC]})
        async with client:
            assert await fetch(client, "https://img.example/a.png?hops=3") == (200, IMG)
            assert len(seen) == 4
            seen.clear()
            with pytest.raises(Refused):
                await fetch(client, "https://img.example/a.png?hops=4")
            assert len(seen) == 4  # the fifth URL is never requested

    asyncio.run(go())


def test_status_is_passed_back_and_the_cap_applies_while_reading():
    sent: list[int] = []

    async def body():
        for _ in range(1000):
            sent.append(1)
            yield b"x" * 1000

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/gone.png":
            return httpx.Response(410)
        if request.url.path == "/declared.png":
            return httpx.Response(200, headers={"Content-Length": str(10 ** 9)}, content=b"")
        return httpx.Response(200, stream=_Stream(body()))

    async def go() -> None:
        client, _seen = guarded(handler, {"img.example": [PUBLIC]})
        async with client:
            assert (await fetch(client, "https://img.example/gone.png"))[0] == 410
            async with open_stream(client, "https://img.example/big.png", timeout=TIMEOUT) as response:
                with pytest.raises(TooLarge):
                    await read_capped(response, 10_000)
            assert len(sent) <= 11  # stopped at the cap, not after 1 MB
            async with open_stream(client, "https://img.example/declared.png", timeout=TIMEOUT) as response:
                with pytest.raises(TooLarge):
                    await read_capped(response, 10_000)

    asyncio.run(go())


class _Stream(httpx.AsyncByteStream):
    def __init__(self, gen) -> None:  # type: ignore[no-untyped-def]
        self.gen = gen

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        async for chunk in self.gen:
            yield chunk


def test_cancellation_closes_the_stream():
    closed = asyncio.Event()
    started = asyncio.Event()

    class Hanging(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            started.set()
            yield b"\x89PNG\r\n\x1a\n" + b"\0" * 8
            await asyncio.Event().wait()

        async def aclose(self) -> None:
            closed.set()

    async def go() -> None:
        client, _ = guarded(lambda r: httpx.Response(200, stream=Hanging()), {"img.example": [PUBLIC]})
        async with client:
            task = asyncio.ensure_future(fetch(client, "https://img.example/a.png"))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert closed.is_set()

    asyncio.run(go())


def test_a_connection_the_guard_did_not_check_is_refused():
    async def go() -> None:
        with pytest.raises(Refused):
            await PinnedBackend().connect_tcp("127.0.0.1", 6379, timeout=1)

    asyncio.run(go())


def test_clients_are_per_key_and_trust_only_their_own_origin():
    async def go() -> None:
        clients = GuardedClients(GuardPolicy(), inner=lambda: httpx.MockTransport(lambda r: httpx.Response(200)))
        a = clients.client("a", Origin.of("http://127.0.0.1:9000"))
        assert clients.client("a", Origin.of("http://127.0.0.1:9000")) is a
        b = clients.client("b", Origin.of("http://127.0.0.1:9001"))
        assert a is not b  # separate pools: a connection checked for a is never b's
        assert (await a.get("http://127.0.0.1:9000/x")).status_code == 200
        with pytest.raises(Refused):
            await a.get("http://127.0.0.1:9001/x")  # b's origin is not a's
        moved = clients.client("a", Origin.of("http://127.0.0.1:9002"))
        assert moved is not a
        await clients.aclose()

    asyncio.run(go())


# ---------------------------------------------------------------- real sockets: DNS rebinding


async def _http_server(host: str, hits: list[str], body: bytes):
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(host)
        try:
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(serve, host, 0)


def test_dns_rebinding_connects_to_the_checked_address_only():
    """First answer "public" (127.0.0.2 plays a public server here), every later one 127.0.0.1:
    the fetch must reach 127.0.0.2, the loopback listener on the same port must see nothing, and
    the name is resolved once per request (the connection never resolves it again)."""

    async def go() -> None:
        hits: list[str] = []
        public = await _http_server("127.0.0.2", hits, IMG)
        port = public.sockets[0].getsockname()[1]
        try:
            private = await asyncio.start_server(lambda r, w: (hits.append("127.0.0.1"), w.close()), "127.0.0.1", port)
        except OSError:
            public.close()
            pytest.skip("cannot bind 127.0.0.1 on the same port")
        answers = [["127.0.0.2"]]
        calls: list[str] = []

        async def rebinding(host: str, p: int) -> list[str]:
            calls.append(host)
            return answers.pop(0) if answers else ["127.0.0.1"]

        policy = GuardPolicy(is_public=lambda ip: str(ip) == "127.0.0.2")
        client = httpx.AsyncClient(transport=GuardedTransport(policy, resolver=rebinding))
        try:
            assert await fetch(client, f"http://rebind.test:{port}/a.png") == (200, IMG)
            assert calls == ["rebind.test"] and hits == ["127.0.0.2"]
            with pytest.raises(Refused):  # the name now points at loopback: refused before any connection
                await fetch(client, f"http://rebind.test:{port}/b.png")
            assert "127.0.0.1" not in hits
        finally:
            await client.aclose()
            public.close()
            private.close()

    asyncio.run(go())
