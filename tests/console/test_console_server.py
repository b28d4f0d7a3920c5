"""The console's server side (issue 12) against real servers over real sockets: the pages and
static files with their headers, operator sign-in, the session cookie and its CSRF rules on the
admin API, sign-out, expiry on an injected wall clock, a changed admin token, the sign-in rate
limit, a console disabled without admin_token, the image API deaf to cookies, and sessions
shared by two instances over one database (SQLite file; PostgreSQL with Redis for the limits).
The browser side is tests/browser."""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
import sqlalchemy as sa
from conftest import FakeClock, Running, ThreadedServer, free_port
from prefix_proxy import PrefixProxy

from ideohub.api.app import create_app
from ideohub.config import load_settings
from ideohub.console.routes import STATIC_DIR
from ideohub.store import db

TOKEN = "console-admin-token-0123456789abcdef"
# images also from the address links are signed for (public_base_url, or this server's own)
CSP = re.compile(r"default-src 'self'; img-src 'self' blob: data: http://127\.0\.0\.1:\d+; script-src 'self'; "
                 r"style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
SECRET_KEY = "console-test-master-secret-0123456789abcdef"
REDIS_URL = os.environ.get("IDEOHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
V3_PATH = "/v1/ideogram-v3/generate"


class Wall:
    """A wall clock (unix seconds) that moves when the test says so: ``app.state.wall_clock``."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return datetime.now(UTC).timestamp() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Server:
    running: Running
    wall: Wall

    @property
    def client(self) -> httpx.Client:
        return self.running.client

    @property
    def url(self) -> str:
        return self.running.base_url


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """``serve(**settings)``: a real server (our protocol) with an injected wall clock; pass the same
    ``database_url`` and ``secret_key`` to two of them for two instances of one fleet."""
    servers: list[ThreadedServer] = []
    clients: list[httpx.Client] = []

    def start(clock: Any = None, wall: Wall | None = None, port: int | None = None, **overrides: Any) -> Server:
        port = port or free_port()
        settings = load_settings(data_dir=tmp_path / f"data-{port}", port=port, **overrides)
        db.upgrade(settings.db_url)
        app = create_app(settings, engines={}, clock=clock)
        app.state.wall_clock = wall = wall or Wall()
        servers.append(ThreadedServer(app, port).__enter__())
        local = f"http://127.0.0.1:{port}"  # where the tests reach it, whatever public_base_url says
        client = httpx.Client(base_url=local, timeout=30)
        clients.append(client)
        running = Running(local, "", settings, client)
        _key_id, running.key = running.create_key()
        return Server(running, wall)

    yield start
    for c in clients:
        c.close()
    for s in reversed(servers):
        s.__exit__(None, None, None)


def sign_in(srv: Server, token: str = TOKEN, **headers: str) -> httpx.Response:
    return httpx.post(srv.url + "/console/api/session", json={"admin_token": token}, headers=headers, timeout=30)


@dataclass
class Session:
    cookie: str
    csrf: str
    expires_at: datetime
    set_cookie: str

    def headers(self, csrf: bool = True) -> dict[str, str]:
        return {"Cookie": f"ideohub_console={self.cookie}", **({"X-CSRF-Token": self.csrf} if csrf else {})}


def signed_in(srv: Server, **headers: str) -> Session:
    r = sign_in(srv, **headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"role", "csrf_token", "expires_at"} and body["role"] == "operator"
    raw = r.headers["set-cookie"]
    jar = SimpleCookie()
    jar.load(raw)
    return Session(jar["ideohub_console"].value, body["csrf_token"],
                   datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")), raw)


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["status"] == status and body["detail"]
    return body


def assert_console_headers(r: httpx.Response) -> None:
    assert CSP.fullmatch(r.headers["content-security-policy"]), r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"


def accounts(srv: Server) -> list[str]:
    r = srv.client.get("/admin/accounts", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    return sorted(a["name"] for a in r.json())


def raw_get(srv: Server, path: str) -> tuple[int, dict[str, str], bytes]:
    """A request line sent exactly as written (httpx would normalise ``..`` away)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.running.settings.port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def session_rows(url: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(db.sync_url(url))
    try:
        with engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(sa.text("SELECT * FROM console_sessions"))]
    finally:
        engine.dispose()


# ------------------------------------------------------------ pages and static files


def test_pages_and_static_files_with_their_headers(serve):
    srv = serve(admin_token=TOKEN)
    r = srv.client.get("/console", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "console/"  # relative: a path prefix survives
    assert_console_headers(r)

    r = srv.client.get("/console/")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.content == (STATIC_DIR / "index.html").read_bytes()
    assert_console_headers(r)
    assert r.headers["cache-control"] == "no-cache" and r.headers["etag"]
    again = srv.client.get("/console/", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == r.headers["etag"]
    head = srv.client.head("/console/")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(r.content))

    expected = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
    files = [p for p in STATIC_DIR.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert any(p.suffix == ".js" for p in files)
    for file in files:
        name = file.relative_to(STATIC_DIR).as_posix()
        r = srv.client.get(f"/console/static/{name}")
        assert r.status_code == 200, name
        assert r.content == file.read_bytes(), name
        if file.suffix in expected:
            assert r.headers["content-type"] == expected[file.suffix], name
        assert r.headers["cache-control"] == "no-cache" and r.headers["etag"], name
        assert_console_headers(r)

    # nothing outside static/ (the package's Python, the data directory) is reachable
    for path in ["/console/static/../routes.py", "/console/static/%2e%2e/routes.py", "/console/static/..%2froutes.py",
                 "/console/static/%2e%2e%2f%2e%2e%2fconfig.py", "/console/static//etc/passwd",
                 "/console/static/..\\routes.py", "/console/static/%00", "/console/static/", "/console/static/.x",
                 "/console/static/index.html/..", "/console/../config.py", "/console/static/./index.html",
                 "/console/static/" + "a/" * 150]:
        status, headers, body = raw_get(srv, path)
        assert status == (400 if "%00" in path else 404), (path, status)  # a NUL is refused before routing
        assert b"import" not in body and b"root:" not in body, path
        assert headers["x-content-type-options"] == "nosniff", path

    r = srv.client.get("/console/nothing-here")
    assert "no console page" in problem(r, 404)["detail"]
    assert_console_headers(r)
    r = srv.client.put("/console/api/session", json={})
    assert problem(r, 405) and r.headers["allow"] == "DELETE, GET, POST"
    assert_console_headers(r)


def test_console_disabled_without_admin_token_still_serves_key_holders(serve):
    srv = serve()
    assert srv.client.get("/console/api/config").json() == {"operator_enabled": False, "session_hours": 12.0}
    r = sign_in(srv, "anything")
    assert problem(r, 404)["detail"] == "the operator console is disabled: no admin_token is configured"
    assert "set-cookie" not in r.headers
    assert srv.client.get("/console/").status_code == 200  # the key holders' sign-in page
    problem(srv.client.get("/console/api/session"), 401)
    r = srv.client.get("/admin/accounts", headers={"Cookie": "ideohub_console=x", "X-CSRF-Token": "y"})
    assert "admin_token" in problem(r, 404)["detail"]


# ------------------------------------------------------------ sign-in, cookie, CSRF, sign-out


def test_sign_in_session_csrf_and_sign_out(serve):
    srv = serve(admin_token=TOKEN, console_session_hours=0.5)
    assert srv.client.get("/console/api/config").json() == {"operator_enabled": True, "session_hours": 0.5}

    # ---- refusals: the wrong token (no hint of the right one), non-JSON, malformed
    for wrong in ["wrong", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), " " + TOKEN]:
        r = sign_in(srv, wrong)
        body = problem(r, 401)
        assert "admin_token" in body["detail"] and TOKEN not in r.text and TOKEN[:8] not in r.text
        assert "set-cookie" not in r.headers
        assert_console_headers(r)
    r = httpx.post(srv.url + "/console/api/session", data={"admin_token": TOKEN})  # a form: never
    assert "Content-Type" in problem(r, 415)["detail"]
    r = httpx.post(srv.url + "/console/api/session", content=b"{not json", headers={"Content-Type": "application/json"})
    assert problem(r, 400)["detail"].startswith("body:")
    for payload, field in [({}, "admin_token"), ({"admin_token": 5}, "admin_token"),
                           ({"admin_token": ""}, "admin_token"), ({"admin_token": "x" * 5000}, "admin_token"),
                           ({"admin_token": TOKEN, "role": "x"}, "role"), ([TOKEN], "body")]:
        r = httpx.post(srv.url + "/console/api/session", json=payload)
        assert problem(r, 400)["detail"].startswith(field), payload
    assert session_rows(srv.running.settings.db_url) == []

    # ---- sign-in: the cookie's attributes, the answer, and only a hash in the database
    before = datetime.now(UTC)
    s = signed_in(srv)
    attrs = [a.strip().lower() for a in s.set_cookie.split(";")]
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/" in attrs and "max-age=1800" in attrs
    assert "secure" not in attrs  # plain http on loopback
    assert len(s.cookie) == 43 and len(s.csrf) >= 43 and s.csrf != s.cookie
    assert before + timedelta(minutes=29) < s.expires_at <= datetime.now(UTC) + timedelta(minutes=30, seconds=1)
    (row,) = session_rows(srv.running.settings.db_url)
    assert s.cookie not in json.dumps(row, default=str) and s.csrf not in json.dumps(row, default=str)
    assert TOKEN not in json.dumps(row, default=str) and row["client"] == "127.0.0.1"

    r = httpx.get(srv.url + "/console/api/session", headers=s.headers(csrf=False))
    assert r.status_code == 200 and r.json()["csrf_token"] == s.csrf and r.headers["cache-control"] == "no-store"
    assert datetime.fromisoformat(r.json()["expires_at"].replace("Z", "+00:00")) == s.expires_at
    problem(httpx.get(srv.url + "/console/api/session"), 401)
    problem(httpx.get(srv.url + "/console/api/session", headers={"Cookie": "ideohub_console=forged"}), 401)

    # ---- the admin API with the cookie: reads need no token; changes need X-CSRF-Token
    r = httpx.get(srv.url + "/admin/accounts", headers=s.headers(csrf=False))
    assert r.status_code == 200, r.text
    names = accounts(srv)
    for headers in [s.headers(csrf=False), {**s.headers(csrf=False), "X-CSRF-Token": "wrong"},
                    {**s.headers(csrf=False), "X-CSRF-Token": s.csrf[:-1]},
                    {**s.headers(), "Origin": "http://evil.example"}, {**s.headers(), "Origin": "null"},
                    {**s.headers(), "Sec-Fetch-Site": "cross-site"},
                    {**s.headers(), "Origin": srv.url.replace("127.0.0.1", "localhost")}]:
        r = httpx.post(srv.url + "/admin/accounts", json={"name": "mallory"}, headers=headers)
        detail = problem(r, 403)["detail"]
        assert any(k in detail for k in ("X-CSRF-Token", "Origin", "Sec-Fetch-Site")), detail
    # a plain cross-site HTML form: urlencoded, no CSRF header, the browser's Origin and Sec-Fetch-Site
    form = {**s.headers(csrf=False), "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site",
            "Content-Type": "application/x-www-form-urlencoded"}
    for method, path in [("POST", "/admin/accounts"), ("POST", "/admin/keys"), ("DELETE", "/console/api/session")]:
        r = httpx.request(method, srv.url + path, content=b"name=mallory", headers=form)
        problem(r, 403)
    r = httpx.post(srv.url + "/admin/accounts", content=b"name=mallory",
                   headers={**s.headers(csrf=False), "Content-Type": "application/x-www-form-urlencoded"})
    problem(r, 403)
    assert accounts(srv) == names  # nothing changed
    assert httpx.get(srv.url + "/console/api/session", headers=s.headers(csrf=False)).status_code == 200

    r = httpx.post(srv.url + "/admin/accounts", json={"name": "made-by-console"},
                   headers={**s.headers(), "Origin": srv.url, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 201, r.text
    assert "made-by-console" in accounts(srv)

    # ---- the Bearer admin token: no CSRF, and it wins over a cookie
    r = httpx.post(srv.url + "/admin/accounts", json={"name": "by-script"},
                   headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 201, r.text
    r = httpx.post(srv.url + "/admin/accounts", json={"name": "x"},
                   headers={**s.headers(), "Authorization": "Bearer wrong"})
    assert "Bearer" in problem(r, 401)["detail"]
    r = httpx.get(srv.url + "/admin/accounts", headers={**s.headers(), "Authorization": f"Basic {TOKEN}"})
    problem(r, 401)

    # ---- sign-out: needs the CSRF header; ends the session everywhere and clears the cookie
    problem(httpx.delete(srv.url + "/console/api/session", headers=s.headers(csrf=False)), 403)
    problem(httpx.delete(srv.url + "/console/api/session",
                         headers={**s.headers(), "Sec-Fetch-Site": "cross-site"}), 403)
    assert httpx.get(srv.url + "/console/api/session", headers=s.headers(csrf=False)).status_code == 200
    r = httpx.delete(srv.url + "/console/api/session", headers=s.headers())
    assert r.status_code == 204 and r.content == b""
    cleared = [a.strip().lower() for a in r.headers["set-cookie"].split(";")]
    assert cleared[0].startswith("ideohub_console=") and "max-age=0" in cleared and "path=/" in cleared
    assert_console_headers(r)
    assert session_rows(srv.running.settings.db_url) == []
    problem(httpx.get(srv.url + "/console/api/session", headers=s.headers(csrf=False)), 401)
    r = httpx.get(srv.url + "/admin/accounts", headers=s.headers())
    assert "sign in again" in problem(r, 401)["detail"]
    assert httpx.delete(srv.url + "/console/api/session").status_code == 204  # no session: nothing to end


def test_admin_checks_run_before_the_body_is_read(serve):
    """The body-limit middleware refuses a cookie without its CSRF token before reading the body
    (403, not the 413 the declared size would earn), and lets through what only the session
    lookup can judge (the route then answers 401)."""
    srv = serve(admin_token=TOKEN)
    s = signed_in(srv)
    huge = {"Content-Length": str(50 * 1024 * 1024), "Content-Type": "application/json"}

    def send(headers: dict[str, str]) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", srv.running.settings.port, timeout=30)
        try:
            conn.putrequest("POST", "/admin/accounts")
            for k, v in {**huge, **headers}.items():
                conn.putheader(k, v)
            conn.endheaders()
            r = conn.getresponse()
            assert r.getheader("connection") == "close"
            return r.status
        finally:
            conn.close()

    assert send(s.headers(csrf=False)) == 403
    assert send({**s.headers(), "Sec-Fetch-Site": "cross-site"}) == 403
    assert send({**s.headers(), "X-CSRF-Token": "forged"}) == 403
    assert send({"Cookie": "ideohub_console=forged"}) == 403  # a change without X-CSRF-Token
    assert send(s.headers()) == 413  # a valid session: on to the size cap
    r = httpx.post(srv.url + "/admin/accounts", json={"name": "ok"}, headers=s.headers())
    assert r.status_code == 201, r.text


def test_image_and_account_apis_never_accept_the_cookie(serve):
    srv = serve(admin_token=TOKEN)
    s = signed_in(srv)
    for method, path in [("POST", V3_PATH), ("POST", "/generate"), ("GET", "/v1/generations/abc"),
                         ("GET", "/v2/account/balance"), ("GET", "/v2/account/api-keys")]:
        r = httpx.request(method, srv.url + path, headers={**s.headers(), "Content-Type": "application/json"},
                          content=b'{"prompt": "a cat"}' if method == "POST" else None)
        assert r.status_code == 401, (path, r.status_code, r.text)
    # the admin token is no API key either, and a cookie next to a key changes nothing
    assert httpx.post(srv.url + V3_PATH, json={"prompt": "a cat"}, headers={"Api-Key": TOKEN}).status_code == 401


# ------------------------------------------------------------ expiry and a changed admin token


def test_sessions_expire_and_end_when_the_admin_token_changes(serve, tmp_path):
    url = f"sqlite:///{(tmp_path / 'shared.db').resolve()}"
    srv = serve(admin_token=TOKEN, database_url=url, secret_key=SECRET_KEY)
    s = signed_in(srv)
    assert s.expires_at - datetime.now(UTC) > timedelta(hours=11, minutes=59)  # 12 h by default
    srv.wall.advance(11.9 * 3600)
    assert httpx.get(srv.url + "/admin/accounts", headers=s.headers()).status_code == 200
    srv.wall.advance(0.1 * 3600 + 1)
    assert "sign in again" in problem(httpx.get(srv.url + "/admin/accounts", headers=s.headers()), 401)["detail"]
    problem(httpx.get(srv.url + "/console/api/session", headers=s.headers()), 401)
    assert len(session_rows(url)) == 1
    fresh = signed_in(srv)  # the next sign-in sweeps the expired rows
    assert len(session_rows(url)) == 1
    assert httpx.get(srv.url + "/console/api/session", headers=fresh.headers()).json()["csrf_token"] == fresh.csrf

    # the same database, restarted with another admin token: every session has ended
    other = serve(admin_token=TOKEN + "-rotated", database_url=url, secret_key=SECRET_KEY, wall=srv.wall)
    r = httpx.get(other.url + "/admin/accounts", headers=fresh.headers())
    assert "admin_token changed" in problem(r, 401)["detail"]
    problem(httpx.get(other.url + "/console/api/session", headers=fresh.headers()), 401)
    problem(sign_in(other), 401)  # the old token no longer signs in there
    assert signed_in(other, token=TOKEN + "-rotated").csrf


# ------------------------------------------------------------ the sign-in rate limit


def test_sign_in_attempts_are_rate_limited_per_client(serve):
    clock = FakeClock()
    srv = serve(admin_token=TOKEN, clock=clock, trusted_proxies=["127.0.0.1"])
    client_a = {"X-Forwarded-For": "203.0.113.7"}
    for _ in range(10):
        problem(sign_in(srv, "wrong", **client_a), 401)
    r = sign_in(srv, TOKEN, **client_a)  # the 11th attempt in the minute, even with the right token
    body = problem(r, 429)
    assert "10 attempts per minute" in body["detail"] and int(r.headers["retry-after"]) >= 1
    assert "set-cookie" not in r.headers
    assert_console_headers(r)
    s = signed_in(srv, **{"X-Forwarded-For": "203.0.113.8"})  # another client is not affected
    row = [r for r in session_rows(srv.running.settings.db_url)][0]
    assert row["client"] == "203.0.113.8"
    assert s.csrf
    clock.advance(60)
    assert signed_in(srv, **client_a).csrf  # a minute later: allowed again


def test_bearer_guesses_at_the_admin_api_share_the_sign_in_limit(serve):
    """The admin token can be guessed on any /admin route too: wrong Bearers count against the same
    per-address budget as sign-ins, and a locked-out address is refused even with the right token
    (so the 429 says nothing about the guess). Right Bearers count nothing: scripts are not slowed."""
    clock = FakeClock()
    srv = serve(admin_token=TOKEN, clock=clock, trusted_proxies=["127.0.0.1"])
    guesser, script = {"X-Forwarded-For": "203.0.113.9"}, {"X-Forwarded-For": "203.0.113.10"}

    def admin(token: str, client: dict[str, str]) -> httpx.Response:
        return httpx.get(srv.url + "/admin/accounts", headers={"Authorization": f"Bearer {token}", **client})

    for _ in range(30):
        assert admin(TOKEN, script).status_code == 200
    assert signed_in(srv, **script).csrf  # thirty right Bearers used none of the ten attempts
    for i in range(9):
        problem(admin(f"guess-{i}", guesser), 401)
    problem(sign_in(srv, "guess-9", **guesser), 401)  # sign-ins and Bearers share one budget
    r = admin("guess-10", guesser)
    assert "10 attempts per minute" in problem(r, 429)["detail"] and int(r.headers["retry-after"]) >= 1
    r = admin(TOKEN, guesser)  # the right token waits out the lockout too
    assert problem(r, 429) and "accounts" not in r.text
    problem(httpx.post(srv.url + "/admin/accounts", json={"name": "x"},
                       headers={"Authorization": "Bearer guess-11", **guesser}), 429)
    assert admin(TOKEN, script).status_code == 200  # another address is not affected
    clock.advance(6)  # one attempt's worth of the budget back
    assert admin(TOKEN, guesser).status_code == 200


def test_admin_token_attempts_are_a_503_when_the_shared_limiter_is_unreachable(serve):
    """Never a pass (and never a 500): without Redis the attempt cannot be counted."""
    srv = serve(admin_token=TOKEN, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    for r in (httpx.get(srv.url + "/admin/accounts", headers={"Authorization": f"Bearer {TOKEN}"}),
              httpx.get(srv.url + "/admin/accounts", headers={"Authorization": "Bearer wrong"}),
              sign_in(srv, TOKEN)):
        assert "Redis" in problem(r, 503)["detail"]


def test_https_behind_a_trusted_proxy_sets_a_secure_cookie(serve):
    srv = serve(admin_token=TOKEN, trusted_proxies=["127.0.0.1"])
    proxied = {"X-Forwarded-For": "198.51.100.4", "X-Forwarded-Proto": "https"}
    s = signed_in(srv, **proxied)
    assert "secure" in [a.strip().lower() for a in s.set_cookie.split(";")]
    # the browser's Origin is the https address the proxy serves under this Host
    page = {**s.headers(), **proxied, "Origin": f"https://127.0.0.1:{srv.running.settings.port}"}
    assert httpx.post(srv.url + "/admin/accounts", json={"name": "via-proxy"}, headers=page).status_code == 201
    r = httpx.post(srv.url + "/admin/accounts", json={"name": "x"}, headers={**page, "Origin": "https://other.example"})
    problem(r, 403)
    # public_base_url names the origin too (a proxy that rewrites Host)
    public = serve(admin_token=TOKEN, public_base_url="https://console.example")
    s = signed_in(public)
    assert "secure" in [a.strip().lower() for a in s.set_cookie.split(";")]
    r = httpx.post(public.url + "/admin/accounts", json={"name": "public"},
                   headers={**s.headers(), "Origin": "https://console.example"})
    assert r.status_code == 201, r.text


# ------------------------------------------------------------ a fleet: two instances, one database


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_session_works_on_every_instance(serve, tmp_path, backend, request):
    overrides: dict[str, Any] = {"admin_token": TOKEN, "secret_key": SECRET_KEY, "trusted_proxies": ["127.0.0.1"]}
    if backend == "sqlite":
        overrides["database_url"] = f"sqlite:///{(tmp_path / 'fleet.db').resolve()}"
    else:
        overrides["database_url"] = request.getfixturevalue("pg_url")
        overrides["redis_url"] = REDIS_URL
        db.upgrade(overrides["database_url"])
    wall, clock = Wall(), FakeClock()  # the limiter's clock stands still: 10 attempts per minute, exactly
    one = serve(wall=wall, clock=clock, **overrides)
    two = serve(wall=wall, clock=clock, **overrides)
    client = {"X-Forwarded-For": f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"}

    s = signed_in(one, **client)
    r = httpx.get(two.url + "/console/api/session", headers={**s.headers(csrf=False), **client})
    assert r.status_code == 200 and r.json()["csrf_token"] == s.csrf
    r = httpx.post(two.url + "/admin/accounts", json={"name": f"fleet-{backend}"}, headers={**s.headers(), **client})
    assert r.status_code == 201, r.text
    assert f"fleet-{backend}" in accounts(one)
    assert httpx.delete(two.url + "/console/api/session", headers={**s.headers(), **client}).status_code == 204
    problem(httpx.get(one.url + "/admin/accounts", headers={**s.headers(), **client}), 401)

    if backend == "postgresql":  # the sign-in limit is shared through Redis: 10 per minute over both
        for i in range(9):  # the sign-in above was the first
            problem(sign_in(one if i % 2 else two, "wrong", **client), 401)
        problem(sign_in(one, **client), 429)
        problem(sign_in(two, **client), 429)


# ------------------------------------------------------------ behind a reverse proxy, under a path prefix


def test_the_console_works_behind_a_reverse_proxy_under_a_path_prefix(serve):
    server_port = free_port()  # the proxy starts first: public_base_url names it
    proxy = PrefixProxy(f"http://127.0.0.1:{server_port}")
    try:
        srv = serve(admin_token=TOKEN, port=server_port, trusted_proxies=["127.0.0.1"],
                    public_base_url=proxy.url + "/hub")
        with httpx.Client(base_url=proxy.url, timeout=30) as page:
            r = page.get("/hub/console", follow_redirects=True)
            assert r.status_code == 200 and str(r.url) == proxy.url + "/hub/console/"
            assert r.content == (STATIC_DIR / "index.html").read_bytes()
            assert page.get("/hub/console/static/app.js").status_code == 200
            # /docs too: every URL of the page resolves under the prefix
            docs = page.get("/hub/docs")
            assert docs.status_code == 200
            found = [a or b for a, b in re.findall(r"""(?:src|href)="([^"]+)"|url: '([^']+)'""", docs.text)]
            assert len(found) == 4
            for url in found:
                assert page.get(urljoin(proxy.url + "/hub/docs", url)).status_code == 200, url
            r = page.post("/hub/console/api/session", json={"admin_token": TOKEN}, headers={"Origin": proxy.url})
            assert r.status_code == 200, r.text
            csrf = r.json()["csrf_token"]
            assert page.cookies.get("ideohub_console")
            # reached through public_base_url: the cookie stays under its prefix, away from other apps
            assert "path=/hub;" in r.headers["set-cookie"].lower().replace(" ", "")
            r = page.post("/hub/admin/accounts", json={"name": "behind-proxy"},
                          headers={"Origin": proxy.url, "X-CSRF-Token": csrf, "Sec-Fetch-Site": "same-origin"})
            assert r.status_code == 201, r.text
            assert page.get("/hub/console/api/session").json()["csrf_token"] == csrf
            (row,) = session_rows(srv.running.settings.db_url)
            assert row["client"] == "192.0.2.50"  # the forwarded client, from a trusted proxy
            r = page.delete("/hub/console/api/session", headers={"Origin": proxy.url, "X-CSRF-Token": csrf})
            assert r.status_code == 204
            assert {c.lower().replace(" ", "").split("path=")[1].split(";")[0]
                    for c in r.headers.get_list("set-cookie")} == {"/", "/hub"}  # removed wherever it was set
            assert page.get("/hub/console/api/session").status_code == 401
    finally:
        proxy.close()
