"""The management layer behind the CLI and the admin API, over real HTTP, real CLI processes and a
real database: one set of rules (the CLI and the API agree on defaults and money errors), keys
edited with every limit, channels added, tested, edited and removed on a running server, the
request log with filters and a cursor, one request in detail, the dashboard's figures equal to
what was charged, and the price table."""

from __future__ import annotations

from dataclasses import dataclass

import json
import os
from decimal import Decimal
from typing import Any

import httpx
import pytest
from conftest import SIM_KEY
from conftest import sim_channel as channel

from ideohub.store import db

TOKEN = "admin-token-" + "q" * 32
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
V3_PATH = "/v1/ideogram-v3/generate"


def v3(n: int = 1, prompt: str = "a lighthouse") -> dict[str, Any]:
    return {"json": {"prompt": prompt, "rendering_speed": "TURBO", "num_images": n}}


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def cli(srv, *args: str) -> CliResult:  # type: ignore[no-untyped-def]
    """``ideohub ARGS`` over the server's data directory, in this process (Typer's runner: the
    same command code as the installed script, without a second interpreter's start-up)."""
    from typer.testing import CliRunner

    from ideohub.cli import app

    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("IDEOHUB_")}
    env["IDEOHUB_DATA_DIR"] = str(srv.settings.data_dir)
    if srv.settings.database_url:
        env["IDEOHUB_DATABASE_URL"] = srv.settings.database_url
    for name in ("default_rpm", "default_max_images_in_flight"):
        value = getattr(srv.settings, name)
        if value is not None:
            env[f"IDEOHUB_{name.upper()}"] = str(value)
    for name in ("prices", "groups"):  # tables: JSON in the environment
        if getattr(srv.settings, name):
            env[f"IDEOHUB_{name.upper()}"] = json.dumps(getattr(srv.settings, name))
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


def problem(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["status"] == status and body["detail"], body
    return body["detail"]


def get(srv, path: str, **kw: Any) -> Any:  # type: ignore[no-untyped-def]
    r = srv.client.get(path, headers=ADMIN, **kw)
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.json()


def no_secret(text: str, *secrets: str) -> None:
    for s in secrets:
        assert s not in text


# ------------------------------------------------------------ 1. one set of rules


def test_the_cli_and_the_admin_api_agree_on_defaults_and_money(start_server):
    srv = start_server(admin_token=TOKEN, default_rpm=7, default_max_images_in_flight=3)
    account = srv.client.post("/admin/accounts", headers=ADMIN, json={"name": "acme"}).json()["id"]

    # a key made either way, without limits of its own, gets the server's defaults
    api_key = srv.client.post("/admin/keys", headers=ADMIN, json={"account_id": account, "name": "api"}).json()
    out = cli(srv, "keys", "create", "--account", account, "--name", "cli")
    assert out.returncode == 0, out.stderr
    keys = {k["name"]: k for k in get(srv, "/admin/keys", params={"account_id": account})}
    assert set(keys) == {"api", "cli"}
    for k in keys.values():
        assert (k["rpm"], k["max_images_in_flight"], k["status"], k["spent_usd"]) == (7, 3, "active", "0")
    assert api_key["rpm"] == 7 and api_key["max_images_in_flight"] == 3

    # the same money errors, naming the field each caller knows it by
    for amount in ["abc", "1.0000001", "-1", "0", "NaN", "1e30", "Infinity"]:
        detail = problem(srv.client.post(f"/admin/accounts/{account}/topup", headers=ADMIN, json={"usd": amount}), 400)
        assert detail.startswith("usd: ")
        out = cli(srv, "topup", account, "--", amount)
        assert out.returncode == 2, (amount, out.stderr)
        assert " ".join(out.stderr.split()) == "USD: " + detail.removeprefix("usd: "), amount
    for bad in ["-1", "abc", "0.0000001"]:  # spending caps: one rule too
        detail = problem(srv.client.post("/admin/keys", headers=ADMIN, json={"spend_cap_usd": bad}), 400)
        out = cli(srv, "keys", "create", "--spend-cap", bad)
        assert out.returncode == 2 and detail.removeprefix("spend_cap_usd: ") in " ".join(out.stderr.split())
    # an adjustment needs a note either way
    assert "note" in problem(srv.client.post(f"/admin/accounts/{account}/adjust", headers=ADMIN, json={"usd": "1"}), 400)
    out = cli(srv, "adjust", account, "--note", " ", "1")
    assert out.returncode == 2 and "--note" in out.stderr
    # unknown price group, the same rule
    assert problem(srv.client.post("/admin/accounts", headers=ADMIN, json={"name": "x", "group": "gold"}), 400) \
        .startswith("group: unknown group 'gold'")
    out = cli(srv, "accounts", "create", "x", "--group", "gold")
    assert out.returncode == 2 and "--group: unknown group 'gold'" in " ".join(out.stderr.split())
    # a misspelt field is named, never dropped (a typo'd group must not make a default-group account)
    for path, body in [("/admin/accounts", {"name": "y", "gruop": "gold"}),
                       (f"/admin/accounts/{account}/topup", {"usd": "1", "nots": "x"}),
                       (f"/admin/accounts/{account}/adjust", {"usd": "1", "note": "n", "notes": "x"})]:
        detail = problem(srv.client.post(path, headers=ADMIN, json=body), 400)
        assert detail.startswith(next(k for k in body if k not in ("name", "usd", "note"))), (path, detail)
    assert "y" not in [a["name"] for a in get(srv, "/admin/accounts")]
    assert get(srv, f"/admin/accounts/{account}")["balance_usd"] == "0"  # nothing moved


def test_keys_are_edited_with_every_limit(start_server):
    srv = start_server(admin_token=TOKEN)
    account = srv.client.post("/admin/accounts", headers=ADMIN, json={"name": "acme"}).json()["id"]
    created = srv.client.post("/admin/keys", headers=ADMIN, json={
        "account_id": account, "name": "ci", "rpm": 5, "spend_cap_usd": "2", "allowed_operations": ["upscale"]}).json()
    kid, secret = created["id"], created["key"]
    r = srv.client.patch(f"/admin/keys/{kid}", headers=ADMIN, json={
        "rpm": 9, "spend_cap_usd": None, "allowed_operations": ["v3-generate", "upscale"], "name": "renamed",
        "expires_at": "2099-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    k = r.json()
    assert (k["rpm"], k["spend_cap_usd"], k["allowed_operations"], k["name"]) == \
        (9, None, ["v3-generate", "upscale"], "renamed")
    assert k["expires_at"].startswith("2099-01-01T00:00:00") and k["max_images_in_flight"] is None
    no_secret(r.text, secret, secret[10:])
    # only what is sent changes; null clears
    k = srv.client.patch(f"/admin/keys/{kid}", headers=ADMIN, json={"max_images_in_flight": 2}).json()
    assert (k["rpm"], k["max_images_in_flight"]) == (9, 2)
    k = srv.client.patch(f"/admin/keys/{kid}", headers=ADMIN, json={"rpm": None, "expires_at": None}).json()
    assert (k["rpm"], k["expires_at"], k["max_images_in_flight"]) == (None, None, 2)
    for body, field in [({"rpm": 0}, "rpm"), ({"rpm": 2**31}, "rpm"), ({"allowed_operations": ["paint"]}, "allowed_operations"),
                        ({"spend_cap_usd": "-1"}, "spend_cap_usd"), ({"expires_at": "soon"}, "expires_at"),
                        ({"colour": "red"}, "colour"), ({"name": "a\x00b"}, "name")]:
        assert field in problem(srv.client.patch(f"/admin/keys/{kid}", headers=ADMIN, json=body), 400), body
    problem(srv.client.patch("/admin/keys/key_nope", headers=ADMIN, json={"rpm": 3}), 404)
    # the CLI edits through the same rules
    out = cli(srv, "keys", "edit", kid, "--rpm", "11", "--clear", "max-images-in-flight", "--spend-cap", "0.25")
    assert out.returncode == 0, out.stderr
    k = next(k for k in get(srv, "/admin/keys") if k["id"] == kid)
    assert (k["rpm"], k["max_images_in_flight"], k["spend_cap_usd"], k["name"]) == (11, None, "0.25", "renamed")
    assert cli(srv, "keys", "edit", kid, "--clear", "colour").returncode == 2
    bad = cli(srv, "keys", "edit", kid, "--spend-cap", "-1")
    assert bad.returncode == 2 and "--spend-cap: must not be negative" in bad.stderr
    assert cli(srv, "keys", "edit", "key_nope", "--rpm", "3").returncode == 1
    assert srv.client.delete(f"/admin/keys/{kid}", headers=ADMIN).status_code == 204
    problem(srv.client.patch(f"/admin/keys/{kid}", headers=ADMIN, json={"rpm": 3}), 409)
    listed = get(srv, "/admin/keys", params={"account_id": account})
    assert [k["status"] for k in listed] == ["revoked"] and listed[0]["revoked"] is True
    assert get(srv, "/admin/keys", params={"account_id": "acct_nobody"}) == []
    ops = get(srv, "/admin/operations")
    assert {"operation": "v3-generate", "family": "3.0", "path": "/v1/ideogram-v3/generate"} in ops
    assert len(ops) == len({o["operation"] for o in ops}) > 50


# ------------------------------------------------------------ 2. channels on a running server


def test_a_channels_health_lists_its_latest_failed_attempts(start_server, fresh):
    """Besides the stored last error, the last hour's latest failures (when, what, status), newest
    first; the caller's own rejected input is no error of the channel."""
    from ideohub.sim.faults import Fault

    sim = fresh[0]
    srv = start_server("config", engine_config={"*": "relay"}, channels=[channel("flaky", sim)], admin_token=TOKEN)
    assert srv.post(V3_PATH, **v3()).status_code == 200
    (ch,) = get(srv, "/admin/channels")
    assert ch["health"]["recent_errors"] == [] and ch["health"]["errors_1h"] == 0
    sim.faults(Fault("status", status=502))
    assert srv.post(V3_PATH, **v3()).status_code >= 500
    assert srv.post(V3_PATH, json={"prompt": ""}).status_code == 400  # the caller's fault: never reaches it
    (ch,) = get(srv, "/admin/channels")
    (err,) = ch["health"]["recent_errors"]
    assert (err["outcome"], err["status_code"]) == ("failed", 502) and err["at"]
    assert ch["health"]["errors_1h"] == 1 and ch["health"]["attempts_1h"] == 2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_recent_errors_are_each_channels_newest_however_many_others_had(backend, tmp_path, request):
    """Five per channel, newest first, from the database: a channel failing a thousand times does not
    hide another's one failure; successes and attempts without a verdict are no errors."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from ideohub.store.db import create_engine_async, sessionmaker_for, sync_url
    from ideohub.store.usage import channel_totals

    url = f"sqlite:///{(tmp_path / 'e.db').resolve()}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    db.upgrade(url)
    now = datetime.now(UTC)
    rows = [{"request_id": f"r{i}", "channel": "noisy", "outcome": "failed", "status_code": 500, "latency_ms": 1.0,
             "images": 0, "cost_micros": 0, "created_at": now - timedelta(seconds=i)} for i in range(1000)]
    rows += [{"request_id": "q1", "channel": "quiet", "outcome": o, "status_code": c, "latency_ms": 1.0, "images": 0,
              "cost_micros": 0, "created_at": now - timedelta(seconds=2000 + k)}
             for k, (o, c) in enumerate([("ok", 200), ("auth", 401), ("released", None), ("started", None)])]
    engine = sa.create_engine(sync_url(url))
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO upstream_attempts (request_id, channel, outcome, status_code, latency_ms, images, "
                          "cost_micros, created_at) VALUES (:request_id, :channel, :outcome, :status_code, :latency_ms, "
                          ":images, :cost_micros, :created_at)"), rows)
    engine.dispose()

    async def read() -> dict:
        e = create_engine_async(url)
        try:
            return await channel_totals(sessionmaker_for(e), now - timedelta(hours=1), recent_errors=5)
        finally:
            await e.dispose()

    got = asyncio.run(read())
    assert [(x["outcome"], x["status_code"]) for x in got["quiet"]["recent_errors"]] == [("auth", 401)]
    noisy = got["noisy"]["recent_errors"]
    assert len(noisy) == 5 and [x["at"] for x in noisy] == sorted((x["at"] for x in noisy), reverse=True)
    assert noisy[0]["at"] >= now - timedelta(seconds=1)


def test_a_fleet_api_instance_closes_every_reader_of_the_shared_channel_state(start_server, fresh, monkeypatch):
    """An instance without a relay engine reads channel health from Redis through a short-lived
    reader per route: every one opened is closed, whatever the route and however it ends."""
    import redis

    from ideohub.engines.relay import redis_state

    redis_url = os.environ.get("IDEOHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("IDEOHUB_REQUIRE_SERVICES") == "1":
            raise
        pytest.skip(f"Redis at {redis_url} is unreachable: {exc}")
    opened, closed = [], []
    real_init, real_close = redis_state.RedisChannelState.__init__, redis_state.RedisChannelState.aclose

    def init(self, *a: Any, **kw: Any) -> None:  # type: ignore[no-untyped-def]
        real_init(self, *a, **kw)
        opened.append(self)

    async def aclose(self) -> None:  # type: ignore[no-untyped-def]
        closed.append(self)
        await real_close(self)

    monkeypatch.setattr(redis_state.RedisChannelState, "__init__", init)
    monkeypatch.setattr(redis_state.RedisChannelState, "aclose", aclose)
    srv = start_server(admin_token=TOKEN, redis_url=redis_url)  # no engines: a fleet's API instance
    body = {"name": "far", "base_url": fresh[0].base_url, "key": SIM_KEY, "auth": "api-key", "path_style": "official"}
    assert srv.client.post("/admin/channels", headers=ADMIN, json=body).status_code == 201
    assert srv.client.patch("/admin/channels/far", headers=ADMIN, json={"weight": 2}).status_code == 200
    assert srv.client.post("/admin/channels/far/test", headers=ADMIN).json()["ok"] is True
    assert [c["name"] for c in get(srv, "/admin/channels")] == ["far"]
    problem(srv.client.patch("/admin/channels/far", headers=ADMIN, json={"weight": 0}), 400)  # ends in an error
    problem(srv.client.post("/admin/channels/nope/test", headers=ADMIN), 404)
    assert srv.client.delete("/admin/channels/far", headers=ADMIN).status_code == 204
    assert len(opened) >= 7 and sorted(map(id, closed)) == sorted(map(id, opened))


def test_channels_add_test_edit_and_remove_on_a_running_server(start_server, fresh):
    sim = fresh[0]
    srv = start_server("config", engine_config={"*": "relay"}, admin_token=TOKEN)
    assert srv.post(V3_PATH, **v3()).status_code == 503  # no channel yet

    body = {"name": "hub", "base_url": sim.base_url, "key": SIM_KEY, "auth": "api-key", "path_style": "official",
            "priority": 3, "operations": "3.0,legacy", "timeout_s": 5}
    r = srv.client.post("/admin/channels", headers=ADMIN, json=body)
    assert r.status_code == 201, r.text
    ch = r.json()
    no_secret(r.text, SIM_KEY)
    assert (ch["name"], ch["kind"], ch["auth"], ch["path_style"], ch["priority"], ch["weight"], ch["max_in_flight"],
            ch["source"], ch["enabled"]) == ("hub", "relay", "api-key", "official", 3, 1, 10, "api", True)
    assert ch["operations_text"] == "legacy,3.0" and ch["health"]["state"] == "ok"
    assert "v3-generate" in ch["operations"] and ch["timeout_s"] == 5.0
    # takes effect at once on this server (and on others within channel_reload_s)
    assert srv.post(V3_PATH, **v3()).status_code == 200

    assert "exists" in problem(srv.client.post("/admin/channels", headers=ADMIN, json=body), 409)
    for change, field in [({"weight": 0}, "weight"), ({"weight": True}, "weight"), ({"kind": "openai"}, "kind"),
                          ({"base_url": "ftp://x"}, "base_url"), ({"operations": ["v9"]}, "operations"),
                          ({"name": "has space"}, "name"), ({"key": "a b"}, "key"), ({"timeout_s": 0}, "timeout_s"),
                          ({"colour": "red"}, "colour")]:
        detail = problem(srv.client.post("/admin/channels", headers=ADMIN, json={**body, "name": "n2", **change}), 400)
        assert field in detail, (change, detail)
        no_secret(detail, SIM_KEY)
    problem(srv.client.post("/admin/channels", headers=ADMIN, json={"name": "nokey", "base_url": sim.base_url}), 400)

    r = srv.client.post("/admin/channels/hub/test", headers=ADMIN)
    assert r.status_code == 200 and r.json()["ok"] is True, r.text
    assert r.json()["status_code"] in (400, 422) and r.json()["latency_ms"] >= 0

    # a wrong key: the probe says so; PATCH without "key" keeps the stored one
    r = srv.client.patch("/admin/channels/hub", headers=ADMIN, json={"key": "wrong-key-123"})
    assert r.status_code == 200 and "wrong-key-123" not in r.text
    t = srv.client.post("/admin/channels/hub/test", headers=ADMIN).json()
    assert t["ok"] is False and t["status_code"] in (401, 403) and "rejected the key" in t["detail"]
    no_secret(repr(t), "wrong-key-123", SIM_KEY)
    srv.client.patch("/admin/channels/hub", headers=ADMIN, json={"key": SIM_KEY})
    r = srv.client.patch("/admin/channels/hub", headers=ADMIN, json={"priority": 7, "weight": 4})
    assert (r.json()["priority"], r.json()["weight"], r.json()["auth"]) == (7, 4, "api-key")
    assert srv.client.post("/admin/channels/hub/test", headers=ADMIN).json()["ok"] is True  # the key was kept
    assert "renamed" in problem(srv.client.patch("/admin/channels/hub", headers=ADMIN, json={"name": "other"}), 400)
    problem(srv.client.patch("/admin/channels/nope", headers=ADMIN, json={"weight": 2}), 404)
    problem(srv.client.post("/admin/channels/nope/test", headers=ADMIN), 404)

    # health: the last hour's attempts, median latency
    assert srv.post(V3_PATH, **v3()).status_code == 200
    (listed,) = get(srv, "/admin/channels")
    h = listed["health"]
    assert h["attempts_1h"] >= 2 and h["errors_1h"] == 0 and h["latency_ms_p50"] is not None
    assert h["in_flight"] == 0 and h["state"] == "ok" and h["consecutive_failures"] == 0

    # disable (at once on this server), enable, then the CLI sees the same channel
    r = srv.client.patch("/admin/channels/hub", headers=ADMIN, json={"enabled": False})
    assert r.json()["health"]["state"] == "disabled"
    assert srv.post(V3_PATH, **v3()).status_code == 503
    srv.client.patch("/admin/channels/hub", headers=ADMIN, json={"enabled": True})
    assert srv.post(V3_PATH, **v3()).status_code == 200
    out = cli(srv, "channels", "test", "hub")
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
    out = cli(srv, "channels", "edit", "hub", "--weight", "5", "--max-in-flight", "3")
    assert out.returncode == 0, out.stderr
    (edited,) = get(srv, "/admin/channels")
    assert (edited["weight"], edited["max_in_flight"], edited["priority"], edited["source"]) == (5, 3, 7, "cli")
    assert cli(srv, "channels", "test", "hub").returncode == 0  # the stored key stayed
    bad = cli(srv, "channels", "edit", "hub", "--weight", "0")
    assert bad.returncode == 2 and "weight must be an integer from 1 to 1000" in bad.stderr
    assert cli(srv, "channels", "edit", "nope", "--weight", "2").returncode == 1
    listed = cli(srv, "channels", "list")
    assert "hub" in listed.stdout and SIM_KEY not in listed.stdout

    # a channel added by the CLI is listed (source cli) and removed by the API
    out = cli(srv, "channels", "add", "clichan", "--base-url", sim.base_url, "--key", "wrong-key-456",
              "--auth", "api-key", "--path-style", "official")
    assert out.returncode == 0, out.stderr
    by_name = {c["name"]: c for c in get(srv, "/admin/channels")}
    assert by_name["clichan"]["source"] == "cli"
    assert srv.client.post("/admin/channels/clichan/test", headers=ADMIN).json()["ok"] is False
    assert cli(srv, "channels", "test", "clichan").returncode == 1
    assert srv.client.delete("/admin/channels/clichan", headers=ADMIN).status_code == 204
    problem(srv.client.delete("/admin/channels/clichan", headers=ADMIN), 404)
    assert [c["name"] for c in get(srv, "/admin/channels")] == ["hub"]


# ------------------------------------------------------------ 3. the request log, detail, figures, prices


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_request_log_detail_stats_and_prices(start_server, fresh, backend, request):
    overrides: dict[str, Any] = {}
    if backend == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
        db.upgrade(overrides["database_url"])
    srv = start_server("config", engine_config={"*": "relay"}, channels=[channel("up", fresh[0])], admin_token=TOKEN,
                       prices={"v3-generate": {"TURBO": 0.04}}, groups={"vip": 0.5}, **overrides)
    acct_a = srv.client.post("/admin/accounts", headers=ADMIN, json={"name": "a"}).json()["id"]
    acct_b = srv.client.post("/admin/accounts", headers=ADMIN, json={"name": "b", "group": "vip"}).json()["id"]
    for acct in (acct_a, acct_b):
        srv.client.post(f"/admin/accounts/{acct}/topup", headers=ADMIN, json={"usd": "1"})
    ka = srv.client.post("/admin/keys", headers=ADMIN, json={"account_id": acct_a}).json()
    kb = srv.client.post("/admin/keys", headers=ADMIN, json={"account_id": acct_b}).json()

    def call(key: str, spec: dict[str, Any], path: str = V3_PATH) -> httpx.Response:
        return srv.client.post(path, headers={"Api-Key": key}, **spec)

    assert call(ka["key"], v3(2, "secret prompt alpha")).status_code == 200  # $0.08
    assert call(ka["key"], v3(1)).status_code == 200  # $0.04
    assert call(kb["key"], v3(1)).status_code == 200  # vip: $0.02
    assert call(kb["key"], {"json": {"prompt": ""}}).status_code == 400  # refused: recorded, not charged

    # ---- the log: newest first, filters, a cursor that walks every row once
    page = get(srv, "/admin/requests")
    items = page["items"]
    assert len(items) >= 4 and page["next_before"] is None
    assert [i["created_at"] for i in items] == sorted((i["created_at"] for i in items), reverse=True)
    mine = get(srv, "/admin/requests", params={"key_id": ka["id"]})["items"]
    assert [i["price_usd"] for i in mine] == ["0.04", "0.08"] and all(i["account_id"] == acct_a for i in mine)
    assert {i["state"] for i in mine} == {"done"} and {i["channel"] for i in mine} == {"up"}
    done_b = get(srv, "/admin/requests", params={"account_id": acct_b, "state": "done"})["items"]
    assert [i["price_usd"] for i in done_b] == ["0.02"]
    assert get(srv, "/admin/requests", params={"operation": "upscale"})["items"] == []
    assert len(get(srv, "/admin/requests", params={"status_code": "200", "channel": "up"})["items"]) == 3
    assert get(srv, "/admin/requests", params={"since": "2999-01-01T00:00:00Z"})["items"] == []
    assert len(get(srv, "/admin/requests", params={"until": "2999-01-01T00:00:00Z"})["items"]) == len(items)
    seen, before = [], None
    while True:
        params = {"limit": "1", **({"before": before} if before else {})}
        p = get(srv, "/admin/requests", params=params)
        seen += [i["id"] for i in p["items"]]
        before = p["next_before"]
        if before is None:
            break
    assert seen == [i["id"] for i in items]
    for params, field in [({"operation": "paint"}, "operation"), ({"state": "lost"}, "state"),
                          ({"status_code": "99"}, "status_code"), ({"status_code": "x"}, "status_code"),
                          ({"since": "yesterday"}, "since"), ({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"),
                          ({"before": "garbage!"}, "before"), ({"colour": "red"}, "colour")]:
        r = srv.client.get("/admin/requests", headers=ADMIN, params=params)
        assert problem(r, 400).startswith(field), (params, r.text)

    # ---- one request in detail: attempts, charge, live images; no prompt without log_prompts
    first = mine[-1]
    d = get(srv, f"/admin/requests/{first['id']}")
    assert d["price_usd"] == "0.08" and d["images_delivered"] == 2 and d["generation_id"] == first["generation_id"]
    assert [(a["channel"], a["outcome"], a["status_code"], a["images"]) for a in d["attempts"]] == [("up", "ok", 200, 2)]
    assert d["attempts"][0]["cost_usd"] == "0.08"  # the table's price of the row (no group), 2 × $0.04
    assert "prompt" not in d["params"] and "secret prompt alpha" not in repr(d)
    assert d["params"]["rendering_speed"] == "TURBO" and d["started_at"]
    assert len(d["images"]) == 2
    for image in d["images"]:
        got = srv.client.get(image["url"])
        assert got.status_code == 200 and got.headers["content-type"] == image["media_type"]
        assert image["width"] > 0 and image["expires_at"]
    problem(srv.client.get("/admin/requests/req_nope", headers=ADMIN), 404)

    # ---- figures: exactly what was charged
    stats = get(srv, "/admin/stats", params={"hours": "24", "bucket": "hour"})
    assert stats["bucket"] == "hour" and 24 <= len(stats["buckets"]) <= 26
    assert sum(b["requests"] for b in stats["buckets"]) == len(items)
    revenue = sum(Decimal(b["revenue_usd"]) for b in stats["buckets"])
    balances = [Decimal(get(srv, f"/admin/accounts/{a}")["balance_usd"]) for a in (acct_a, acct_b)]
    assert revenue == Decimal("0.14") == 2 - sum(balances)
    assert sum(b["errors"] for b in stats["buckets"]) == 1 and sum(b["images"] for b in stats["buckets"]) == 4
    assert sum(Decimal(b["upstream_cost_usd"]) for b in stats["buckets"]) == Decimal("0.16")
    ops = {o["operation"]: o for o in stats["by_operation"]}
    assert ops["v3-generate"]["revenue_usd"] == "0.14" and ops["v3-generate"]["requests"] == 4
    (up,) = stats["by_channel"]
    assert (up["channel"], up["attempts"], up["errors"], up["upstream_cost_usd"]) == ("up", 3, 0, "0.16")
    assert up["latency_ms_p50"] is not None and up["latency_ms_p50"] >= 0
    days = get(srv, "/admin/stats")
    assert days["bucket"] == "day" and days["hours"] == 168 and len(days["buckets"]) in (7, 8)
    assert sum(Decimal(b["revenue_usd"]) for b in days["buckets"]) == Decimal("0.14")
    # ---- scoped to one operation or one channel: the same figures, narrowed, in every part
    assert stats["operation"] is None and stats["channel"] is None

    def totals(s: dict) -> tuple:
        b = s["buckets"]
        return (sum(x["requests"] for x in b), sum(x["images"] for x in b), sum(x["errors"] for x in b),
                sum(Decimal(x["revenue_usd"]) for x in b), sum(Decimal(x["upstream_cost_usd"]) for x in b))

    whole = get(srv, "/admin/stats", params={"hours": "24", "operation": "v3-generate"})
    assert whole["operation"] == "v3-generate" and totals(whole) == totals(stats)
    assert whole["by_operation"] == stats["by_operation"] and whole["by_channel"] == stats["by_channel"]
    none = get(srv, "/admin/stats", params={"hours": "24", "operation": "v3-remix"})
    assert totals(none) == (0, 0, 0, 0, 0) and none["by_operation"] == [] and none["by_channel"] == []
    served = [i for i in items if i["channel"] == "up"]
    on_up = get(srv, "/admin/stats", params={"hours": "24", "channel": "up"})
    assert on_up["channel"] == "up" and totals(on_up) == (
        len(served), sum(i["images"] for i in served), sum(i["state"] == "failed" for i in served),
        sum(Decimal(i["price_usd"]) for i in served), Decimal("0.16"))
    assert on_up["by_channel"] == stats["by_channel"]
    assert totals(get(srv, "/admin/stats", params={"hours": "24", "channel": "elsewhere"})) == (0, 0, 0, 0, 0)
    for params, field in [({"hours": "0"}, "hours"), ({"hours": "8761"}, "hours"), ({"bucket": "week"}, "bucket"),
                          ({"operation": "paint"}, "operation"), ({"channel": "x" * 65}, "channel"),
                          ({"channel": "caf\u00e9"}, "channel")]:
        assert problem(srv.client.get("/admin/stats", headers=ADMIN, params=params), 400).startswith(field)

    # ---- the CLI reads the same log, figures and prices through the same layer
    out = cli(srv, "requests", "list", "--key", ka["id"])
    assert out.returncode == 0, out.stderr
    rows = [[c.strip() for c in line.split("│")] for line in out.stdout.splitlines() if line.startswith("│")]
    assert [(r[1], r[5], r[10]) for r in rows] == [(i["id"], i["operation"], i["price_usd"]) for i in mine]
    out = cli(srv, "requests", "list", "--limit", "1")
    assert out.returncode == 0 and "more: --before " in out.stderr
    shown = json.loads(cli(srv, "requests", "show", first["id"]).stdout)
    assert (shown["price_usd"], shown["attempts"][0]["cost_usd"], shown["params"]) == ("0.08", "0.08", d["params"])
    assert [i["url"] for i in shown["images"]] == [None, None]  # the CLI signs no links
    for args, option in [(["requests", "list", "--operation", "paint"], "--operation: unknown operation"),
                         (["requests", "list", "--since", "yesterday"], "--since: must be an ISO 8601"),
                         (["requests", "list", "--limit", "500"], "--limit: must be an integer from 1 to 200"),
                         (["requests", "show", "req_nope"], "no such request"),
                         (["stats", "--hours", "0"], "--hours: must be an integer from 1 to 8760"),
                         (["stats", "--operation", "paint"], "--operation: unknown operation"),
                         (["usage", "--days", "0"], "--days: must be an integer from 1 to 3650")]:
        out = cli(srv, *args)
        assert out.returncode in (1, 2) and option in " ".join(out.stderr.split()), (args, out.stderr)
    out = cli(srv, "stats", "--hours", "24", "--channel", "up")
    assert out.returncode == 0 and "channel up" in out.stdout, out.stderr
    rows = [line.split("│") for line in out.stdout.split("┏")[1].splitlines() if line.startswith("│")]
    assert sum(int(r[2]) for r in rows) == totals(on_up)[0]
    assert sum(Decimal(r[4]) for r in rows) == totals(on_up)[3]
    problem(srv.client.get("/admin/usage", headers=ADMIN, params={"days": "3651"}), 400)

    # ---- the effective price table (the CLI prints the same rows)
    prices = get(srv, "/admin/prices")
    out = cli(srv, "prices")
    assert out.returncode == 0, out.stderr
    printed = [[c.strip() for c in line.split("│")] for line in out.stdout.splitlines() if line.startswith("│")]
    assert [(r[1], r[2], r[5], r[-2]) for r in printed] == [
        (p["operation"], p["tier"], p["usd"], p["source"]) for p in prices["rows"]]
    assert prices["groups"] == {"default": 1.0, "vip": 0.5}
    rows = {(r["operation"], r["tier"], r["character_reference"], r["upscale_factor"]): r for r in prices["rows"]}
    assert rows[("v3-generate", "TURBO", False, "X1")] | {} == {
        "operation": "v3-generate", "tier": "TURBO", "character_reference": False, "upscale_factor": "X1",
        "usd": "0.04", "by_group": {"default": "0.04", "vip": "0.02"}, "source": "override"}
    assert rows[("v3-generate", "QUALITY", False, "X1")]["source"] == "default"
    assert sum(r["source"] == "override" for r in prices["rows"]) == 1


def test_every_admin_route_needs_the_operator(start_server):
    srv = start_server(admin_token=TOKEN, console_signin_per_minute=1000)  # 36 wrong tokens, not a guesser
    routes = [("GET", "/admin/operations"), ("GET", "/admin/channels"), ("POST", "/admin/channels"),
              ("PATCH", "/admin/channels/x"), ("DELETE", "/admin/channels/x"), ("POST", "/admin/channels/x/test"),
              ("GET", "/admin/requests"), ("GET", "/admin/requests/x"), ("GET", "/admin/stats"),
              ("GET", "/admin/prices"), ("PATCH", "/admin/keys/x"), ("GET", "/admin/keys?account_id=x")]
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Api-Key": srv.key},
                        {"Authorization": f"Bearer {srv.key}"}):
            r = srv.client.request(method, path, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.status_code)
    off = start_server()
    for method, path in routes:
        assert off.client.request(method, path, headers=ADMIN, json={}).status_code == 404
