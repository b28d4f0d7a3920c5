"""The console's access rules without a server: origins as browsers write them, the precheck the
body-limit middleware shares with ``operator_denial``, the CSP for an object store, and the
session store on a real SQLite database (expiry, a changed admin token, the sweeper)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ideohub.config import Settings
from ideohub.console.auth import cross_site_denial, own_origins, precheck
from ideohub.console.routes import CSP, security_headers
from ideohub.console.sessions import ConsoleSessions, delete_expired
from ideohub.domain.errors import Forbidden, NotFound, Unauthorized
from ideohub.store import db
from ideohub.store.db import create_engine_async, sessionmaker_for

TOKEN = "unit-admin-token-0123456789"
PEPPER = b"p" * 32


def settings(**overrides) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(admin_token=TOKEN, port=8000, **overrides)


def test_own_origins_are_written_as_browsers_write_them():
    s = settings(public_base_url="https://Console.Example:443/prefix/")
    assert own_origins(s, "http", "127.0.0.1:8000") == {"https://console.example", "http://127.0.0.1:8000"}
    assert own_origins(settings(), "https", "[::1]:8443") == {"http://127.0.0.1:8000", "https://[::1]:8443"}
    assert own_origins(settings(), "http", "bad host:port:x") == {"http://127.0.0.1:8000"}
    ok = {"host": "hub.internal:8000"}
    for origin in ["http://127.0.0.1:8000", "http://hub.internal:8000", "HTTP://HUB.INTERNAL:8000"]:
        assert cross_site_denial(settings(), {**ok, "origin": origin}, "http") is None, origin
    for origin in ["null", "http://hub.internal:8001", "https://hub.internal:8000", "http://evil.example",
                   "http://127.0.0.1:8000@evil.example", "http://hub.internal:8000/path", "", "file://",
                   "http://[::1", "http://hub.internal:99999", "http://hub.internal:8000?x", "\x00"]:
        assert isinstance(cross_site_denial(settings(), {**ok, "origin": origin}, "http"), Forbidden), origin
    assert isinstance(cross_site_denial(settings(), {**ok, "sec-fetch-site": "Cross-Site"}, "http"), Forbidden)
    for site in ["same-origin", "same-site", "none"]:
        assert cross_site_denial(settings(), {**ok, "sec-fetch-site": site}, "http") is None


def test_precheck_decides_everything_but_the_session_lookup():
    sessions = ConsoleSessions(None, PEPPER)  # type: ignore[arg-type]  # derivations only
    cookie = "c" * 43
    jar = {"cookie": f"other=1; ideohub_console={cookie}", "host": "127.0.0.1:8000"}
    csrf = sessions.csrf_token(cookie)

    assert isinstance(precheck(Settings(), "GET", {}, "http").denial, NotFound)
    assert precheck(settings(), "POST", {"authorization": f"Bearer {TOKEN}"}, "http") == precheck(settings(), "GET", {
        "authorization": f"bearer {TOKEN}"}, "http")
    assert precheck(settings(), "POST", {"authorization": f"Bearer {TOKEN}"}, "http").denial is None
    for auth in ["Bearer wrong", f"Basic {TOKEN}", TOKEN]:  # a header decides alone: the cookie is not consulted
        assert isinstance(precheck(settings(), "GET", {**jar, "authorization": auth}, "http").denial, Unauthorized)
    assert isinstance(precheck(settings(), "GET", {"api-key": TOKEN}, "http").denial, Unauthorized)

    assert precheck(settings(), "GET", jar, "http", sessions).cookie == cookie  # a read: on to the lookup
    assert precheck(settings(), "HEAD", jar, "http", sessions).cookie == cookie
    for method in ["POST", "PATCH", "PUT", "DELETE", "OPTIONS"]:
        assert isinstance(precheck(settings(), method, jar, "http", sessions).denial, Forbidden), method
        wrong = precheck(settings(), method, {**jar, "x-csrf-token": csrf[:-1] + "A"}, "http", sessions)
        assert isinstance(wrong.denial, Forbidden)
        right = precheck(settings(), method, {**jar, "x-csrf-token": csrf}, "http", sessions)
        assert right.denial is None and right.cookie == cookie
    crossed = precheck(settings(), "GET", {**jar, "sec-fetch-site": "cross-site"}, "http", sessions)
    assert isinstance(crossed.denial, Forbidden) and crossed.cookie is None


def test_derivations_are_distinct_and_keyed():
    one, two = ConsoleSessions(None, PEPPER), ConsoleSessions(None, b"q" * 32)  # type: ignore[arg-type]
    cookie = "abc"
    assert len({one.id_hash(cookie), one.csrf_token(cookie), one.admin_fingerprint(cookie)}) == 3
    assert one.csrf_token(cookie) != two.csrf_token(cookie) and one.id_hash(cookie) != two.id_hash(cookie)
    assert one.csrf_matches(cookie, one.csrf_token(cookie)) and not one.csrf_matches(cookie, two.csrf_token(cookie))
    assert not one.csrf_matches(cookie, None) and not one.csrf_matches(cookie, "\udc80")


def test_csp_adds_the_signed_links_origin_and_the_object_store_only_for_redirected_images():
    own = " http://127.0.0.1:8000"  # links are signed for public_base_url, or this address
    assert security_headers(settings())["Content-Security-Policy"] == CSP.format(img=own, connect="")
    public = security_headers(settings(public_base_url="https://hub.example:8443/ideo"))["Content-Security-Policy"]
    assert "img-src 'self' blob: data: https://hub.example:8443; script-src" in public
    s = settings(image_delivery="redirect", storage_url="s3://bucket/p",
                 s3_endpoint_url="http://key:secret@127.0.0.1:9000")
    csp = security_headers(s)["Content-Security-Policy"]
    assert f"img-src 'self' blob: data:{own} http://127.0.0.1:9000 http://*.127.0.0.1:9000;" in csp
    assert "connect-src 'self' http://127.0.0.1:9000 http://*.127.0.0.1:9000;" in csp
    assert "secret" not in csp and "key@" not in csp  # never the endpoint's credentials
    aws = security_headers(settings(image_delivery="redirect", storage_url="s3://bucket"))["Content-Security-Policy"]
    assert "https://*.amazonaws.com" in aws and "script-src 'self';" in aws


def test_the_store_expires_ends_and_sweeps(tmp_path):
    url = f"sqlite:///{(tmp_path / 'unit.db').resolve()}"
    db.upgrade(url)

    async def go() -> None:
        engine = create_engine_async(url)
        try:
            store = ConsoleSessions(sessionmaker_for(engine), PEPPER)
            now = datetime(2026, 1, 1, tzinfo=UTC)
            opened = await store.open(TOKEN, 12, now, "192.0.2.1")
            assert opened.expires_at == now + timedelta(hours=12)
            active = await store.active(opened.cookie, TOKEN, now + timedelta(hours=11))
            assert active is not None and active.csrf_token == opened.csrf_token
            assert await store.active(opened.cookie, TOKEN, now + timedelta(hours=12)) is None  # expiry is exclusive
            assert await store.active(opened.cookie, TOKEN + "x", now) is None  # another admin token
            assert await store.active(opened.cookie, None, now) is None
            assert await store.active(opened.cookie + "x", TOKEN, now) is None
            assert await store.active("x" * 100, TOKEN, now) is None
            later = await store.open(TOKEN, 1, now, None)
            assert await delete_expired(store._session, now + timedelta(hours=2)) == 1  # `later` only
            assert await store.active(later.cookie, TOKEN, now) is None
            assert await store.end(opened.cookie) and not await store.end(opened.cookie)
            assert await store.active(opened.cookie, TOKEN, now) is None
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_origins_are_compared_as_browsers_send_them():
    from ideohub.console.routes import _origin

    assert _origin("https://Hub.Example:443/prefix/") == _origin("https://hub.example") == "https://hub.example"
    assert _origin("http://user:pw@127.0.0.1:8080/x") == "http://127.0.0.1:8080"
    assert _origin("http://[::1]:80") == "http://[::1]"
    assert _origin("ftp://x") is None and _origin("http://x:port") is None and _origin(None) is None
